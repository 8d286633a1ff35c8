"""One ARS iteration, written once, and the small protocol every learner follows.

Two layers, as in torch.optim (a functional core under the optimizer classes) and evosax
(``tell`` doing the common work around a strategy's ``_tell``):

- `ars.ars_step` is the functional core for K learners at once: evaluate the antithetic pairs →
  `update_weights` (each learner with its own step size) → apply. The `ARS` optimizer calls it
  with closures over its parameters;
- `Learner.step` is one whole iteration of a task-based learner: direction seeds → batch →
  `ars_step` → ``_after_apply`` hook → V2 state statistics → ``_after_update`` hook →
  ``task.after_step`` → ``train/*`` metrics. `ARSLearner` (one learner), `Population` (K
  learners and their strategies) and the hogwild worker (one asynchronous learner) are
  subclasses that fill in how candidates are evaluated and where θ lives.

The learner protocol the trainer relies on is ``step(iteration) -> metrics``, ``state_dict()``,
``load_state_dict(state)`` and ``close()``. Learners receive their ARS hyperparameters as a
`Hyper`, not the whole job config.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import torch

from .ars import VERSIONS, StepResult, ars_step, normalizes_states
from .noise import iteration_seeds
from .registry import LEARNERS


@dataclass(frozen=True)
class Hyper:
    """The ARS hyperparameters of a learner (``[ars]`` of a job, less the backend's settings)."""

    version: str = "v1t"
    directions: int = 32
    top: int = 8
    step_size: float = 0.02
    noise: float = 0.03
    seed: int = 0          # the job's seed: direction seeds are a function of (seed, stream, iteration)

    def __post_init__(self):
        if self.version not in VERSIONS:
            raise ValueError(f"unknown ARS version {self.version!r}; allowed: {', '.join(VERSIONS)}")
        if self.directions < 1 or not 1 <= self.top <= self.directions:
            raise ValueError(f"need directions >= 1 and 1 <= top <= directions, got {self.directions}, {self.top}")
        if self.step_size <= 0 or self.noise <= 0:
            raise ValueError(f"step_size and noise must be > 0, got {self.step_size}, {self.noise}")

    @classmethod
    def of(cls, config) -> Hyper:
        """A `Hyper` as it is, or the one of a `JobConfig` (its ``[ars]`` table and seed)."""
        if isinstance(config, Hyper):
            return config
        a = config.ars
        return cls(**{f.name: getattr(a, f.name) for f in fields(cls) if f.name != "seed"}, seed=int(config.seed))


class Learner:
    """Base of the trainer's learners: one ARS iteration (`step`) written once, hooks for the rest.

    A subclass says how its candidates are scored and where θ lives (``_evaluate``, ``_apply``)
    and may act after the step is applied (``_after_apply``: annealing's acceptance), after the
    state statistics are merged (``_after_update``: a population's epoch, loading the best θ), and
    on the statistics themselves (``_update_normalizer``: hogwild's shared buffers). Learner k
    draws its directions from stream ``streams[k]`` and uses ``step_sizes[k]``, ``noises[k]``.
    """

    def __init__(self, hyper, task, space, noise, backend, streams: Sequence[int] = (0,)):
        self.hyper = Hyper.of(hyper)
        self.task, self.space, self.noise, self.backend = task, space, noise, backend
        self.streams = list(streams)
        k = len(self.streams)
        self.step_sizes = torch.full((k,), float(self.hyper.step_size), dtype=torch.float64)
        self.noises = torch.full((k,), float(self.hyper.noise), dtype=torch.float64)
        self.last: StepResult | None = None

    # -- the iteration ----------------------------------------------------------------------------
    def step(self, iteration: int) -> dict[str, float]:
        h = self.hyper
        seeds = [iteration_seeds(h.seed, iteration, h.directions, stream=s) for s in self.streams]
        batch = self.task.batch(iteration)
        result = ars_step(lambda s, nu: self._evaluate(s, nu, batch), self._apply, seeds,
                          self.step_sizes, self.noises, h.top, h.version)
        self.last = result
        metrics = result.metrics()
        metrics.update(self._after_apply(iteration, result, batch))
        if normalizes_states(h.version) and self.task.normalizer is not None:
            self._update_normalizer()
        metrics.update(self._after_update(iteration, result))
        self.task.after_step(batch)
        return metrics

    def _evaluate(self, seeds: list[list[int]], noises: torch.Tensor, batch) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def _apply(self, seeds: list[list[int]], weights: torch.Tensor) -> None:
        raise NotImplementedError

    def _after_apply(self, iteration: int, result: StepResult, batch) -> dict[str, float]:
        return {}

    def _update_normalizer(self) -> None:
        stats = self.backend.merge_stats(self.task.pop_state_stats())
        if stats is not None:
            self.task.normalizer.update(stats)

    def _after_update(self, iteration: int, result: StepResult) -> dict[str, float]:
        return {}

    # -- the rest of the protocol ----------------------------------------------------------------
    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def close(self) -> None:
        pass


class ARSLearner(Learner):
    """A single ARS learner whose θ lives in the task's model (the space), stepped in place."""

    def __init__(self, hyper, task, space, noise, backend, stream: int = 0):
        super().__init__(hyper, task, space, noise, backend, streams=(stream,))

    @classmethod
    def from_config(cls, config, task, space, noise, backend) -> ARSLearner:
        return cls(Hyper.of(config), task, space, noise, backend)

    def _evaluate(self, seeds, noises, batch):
        r_plus, r_minus = self.backend.evaluate(self.space, self.task, self.noise, seeds[0], float(noises[0]), batch)
        return r_plus.unsqueeze(0), r_minus.unsqueeze(0)

    def _apply(self, seeds, weights):
        self.backend.apply(self.space, self.noise, seeds[0], weights[0])


# The trainer's learners by name (the registry lines are in arsearch.registry).
REGISTRY = LEARNERS


def learner_name(config) -> str:
    """"population" for a job with a [population] table; else the learner registered under the
    job's backend's name (a backend whose workers need a learner of their own), else "ars". Decided
    from the names alone: the core imports no backend."""
    if getattr(config, "population", None) is not None:
        return "population"
    return config.ars.backend if config.ars.backend in REGISTRY else "ars"


def make_learner(config, task, space, noise, backend, name: str | None = None) -> Learner:
    """The learner for a job (`learner_name`), built by its ``from_config``."""
    return REGISTRY.load(name or learner_name(config)).from_config(config, task, space, noise, backend)
