"""The strategy interface: one small object with one job, acting on a `Population`.

A population calls its strategies in list order at two moments:

- ``after_step(population, iteration, previous, batch)``: after every ARS iteration, with the
  learners' θ before the step in `previous` (K, d). Only strategies that judge single steps use
  it (simulated-annealing acceptance);
- ``on_epoch(population, epoch)``: every ``population.epoch`` iterations (epoch = 1, 2, ...).
  Culling, tabu repulsion and the particle-swarm move act here.

A strategy reads and writes ``population.thetas`` (K, d) in place and reads
``population.fitness`` (K,), higher is better, and may read each learner's hyperparameters
``population.step_sizes``, ``population.noises`` (K,), the RMS length of its latest ARS step
``population.step_length`` (K,) and the spread of its latest candidates' scores
``population.score_spread`` (K,) — the units that make coefficients unit-free. Randomness comes from
``population.generator(name, counter)``, a pure function of (job seed, strategy, counter), so a
resumed run draws exactly what an uninterrupted one would. Per-learner state (velocities,
personal bests) follows learners that are cloned through ``on_clone``. ``state_dict`` must hold
only tensors, numbers, strings and lists, so checkpoints stay ``weights_only``-loadable.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from ..registry import Plugin


@dataclass
class NoSettings:
    """The config table of a strategy without settings."""


class Strategy(Plugin):
    name = "strategy"
    # the dataclass of its ``[population.<name>]`` table; `arsearch.config` builds the job
    # config's population table from these (one per registered strategy)
    Config: type = NoSettings
    # candidates it scores per learner per iteration beyond the ARS step's 2N (spend estimates)
    extra_candidates: int = 0

    @classmethod
    def from_settings(cls, settings) -> Strategy:
        """Build from its config table (a `Config` instance)."""
        return cls(**dataclasses.asdict(settings))

    @classmethod
    def from_config(cls, config) -> Strategy:
        """Build from a `JobConfig` (its table ``population.<name>``)."""
        pc = config.population
        return cls.from_settings(getattr(pc, cls.name))

    def bind(self, population) -> None:
        """Called once the population exists: allocate per-learner state here."""

    def after_step(self, population, iteration: int, previous: torch.Tensor, batch) -> dict[str, float]:
        return {}

    def on_epoch(self, population, epoch: int) -> dict[str, float]:
        return {}

    def on_clone(self, population, dst: int, src: int) -> None:
        """Learner `dst` has just been replaced by a copy of learner `src`."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if isinstance(v, (int, float, str)))
        return f"{type(self).__name__}({fields})"
