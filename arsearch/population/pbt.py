"""Population-based training (Jaderberg et al. 2017): exploit, then explore the hyperparameters.

Every epoch the learners are ranked by fitness. Each learner in the bottom ``fraction`` (at
least one when K ≥ 2, never the best) is replaced by a copy of a learner drawn uniformly from
the top ``fraction`` — θ together with its step size α and noise ν (**exploit**, truncation
selection; `Population.clone`). Its hyperparameters are then perturbed (**explore**): each of α
and ν is, independently, resampled log-uniformly from its range with probability `resample`,
and otherwise multiplied by `perturb` or by 1/`perturb` (1.25 or 0.8 by default) with equal
probability. The range is ``population.init``'s when given, else [v/3, 3·v] around the
``[ars]`` value v. Every exploit and explore is an event of the population's lineage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..fields import number
from .base import Strategy


@dataclass
class PBTConfig:
    """``[population.pbt]``."""

    fraction: float = number(0.25, 0.0, 0.5)
    resample: float = number(0.25, 0.0, 1.0)
    perturb: float = number(1.25, 1.0)


class PopulationBasedTraining(Strategy):
    name = "pbt"
    Config = PBTConfig

    def __init__(self, fraction: float = 0.25, resample: float = 0.25, perturb: float = 1.25):
        if not 0.0 <= fraction <= 0.5 or not 0.0 <= resample <= 1.0 or perturb < 1.0:
            raise ValueError(f"pbt: need 0 <= fraction <= 0.5, 0 <= resample <= 1 and perturb >= 1, "
                             f"got {fraction}, {resample}, {perturb}")
        self.fraction, self.resample, self.perturb = fraction, resample, perturb

    def count(self, size: int) -> int:
        if size < 2:
            return 0
        return max(1, min(int(math.floor(self.fraction * size + 1e-9)), size // 2))

    def explore(self, population, k: int, gen: torch.Generator) -> None:
        """Perturb learner k's step size and noise (resample with probability `resample`)."""
        values = {}
        for name in ("step_size", "noise"):
            current = float(getattr(population, name + "s")[k])
            low, high = population.hyper_range(name)
            u = torch.rand(2, generator=gen, dtype=torch.float64).tolist()
            if u[0] < self.resample:
                values[name] = math.exp(math.log(low) + u[1] * (math.log(high) - math.log(low)))
            else:
                values[name] = current * (self.perturb if u[1] < 0.5 else 1.0 / self.perturb)
        population.set_hyperparameters(k, event="explore", parent=k, **values)

    @torch.no_grad()
    def on_epoch(self, population, epoch):
        n = self.count(population.size)
        if n == 0:
            return {"pbt/replaced": 0.0}
        order = torch.argsort(population.fitness, descending=True, stable=True).tolist()
        top, bottom = order[:n], order[population.size - n:]
        gen = population.generator(self.name, epoch)
        for k in bottom:
            parent = top[int(torch.randint(len(top), (1,), generator=gen))]
            population.clone(k, parent)
            self.explore(population, k, gen)
        return {"pbt/replaced": float(n), "pbt/step_size_mean": float(population.step_sizes.mean()),
                "pbt/noise_mean": float(population.noises.mean())}
