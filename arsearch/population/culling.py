"""Genetic culling: the worst learners are replaced by (optionally mutated) clones of the best."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..fields import number
from .base import Strategy


@dataclass
class CullingConfig:
    """``[population.culling]``."""

    fraction: float = number(0.5, 0.0, 1.0)
    mutation: float = number(0.0, 0.0)


class Culling(Strategy):
    """Every epoch, rank the learners by fitness; the worst ``floor(fraction·K)`` of them (never the
    best itself) become copies of the best — θ together with its step size and noise (the exploit
    of population-based training; `Population.clone`) — plus Gaussian noise of standard deviation
    `mutation` per coordinate. ``fraction = 0.5, mutation = 0`` is "kill the worse half, clone the
    best". Hyperparameters are copied, not perturbed: the "pbt" strategy adds the explore step."""

    name = "culling"
    Config = CullingConfig

    def __init__(self, fraction: float = 0.5, mutation: float = 0.0):
        if not 0.0 <= fraction <= 1.0 or mutation < 0:
            raise ValueError(f"culling: fraction must be in [0, 1] and mutation >= 0, got {fraction}, {mutation}")
        self.fraction, self.mutation = fraction, mutation

    def count(self, size: int) -> int:
        return min(int(math.floor(self.fraction * size + 1e-9)), size - 1)

    @torch.no_grad()
    def on_epoch(self, population, epoch):
        n = self.count(population.size)
        if n == 0:
            return {"culling/replaced": 0.0}
        order = torch.argsort(population.fitness, descending=True, stable=True)
        best = int(order[0])
        gen = population.generator(self.name, epoch)
        for k in order[population.size - n:].tolist():
            population.clone(k, best)
            if self.mutation > 0:
                noise = torch.randn(population.dim, generator=gen, dtype=population.thetas.dtype)
                population.thetas[k] += self.mutation * noise.to(population.thetas.device)
        return {"culling/replaced": float(n)}
