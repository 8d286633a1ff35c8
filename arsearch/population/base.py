"""The strategy interface: one small object with one job, acting on a `Population`.

A population calls its strategies in list order at two moments:

- ``after_step(population, iteration, previous, batch)``: after every ARS iteration, with the
  learners' θ before the step in `previous` (K, d). Only strategies that judge single steps use
  it (simulated-annealing acceptance);
- ``on_epoch(population, epoch)``: every ``population.epoch`` iterations (epoch = 1, 2, ...).
  Culling, tabu repulsion and the particle-swarm move act here.

A strategy reads and writes ``population.thetas`` (K, d) in place and reads
``population.fitness`` (K,), higher is better. Randomness comes from
``population.generator(name, counter)``, a pure function of (job seed, strategy, counter), so a
resumed run draws exactly what an uninterrupted one would. Per-learner state (velocities,
personal bests) follows learners that are cloned through ``on_clone``. ``state_dict`` must hold
only tensors, numbers, strings and lists, so checkpoints stay ``weights_only``-loadable.
"""

from __future__ import annotations

import torch


class Strategy:
    name = "strategy"

    @classmethod
    def from_config(cls, config) -> Strategy:
        """Build from a `JobConfig` (the table ``population.<name>``)."""
        return cls()

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
