"""The task interface: what every task kind implements, and what it declares as a plug-in.

A task kind is one module under `arsearch.tasks` plus one line in `arsearch.tasks.KINDS`. Its class
declares (class attributes and class methods, read without building the task): the dataclass of its
``[task]`` keys (``Config``), its checks on a job, the metrics it reports, the budgets it spends and
its default objective. `arsearch.config`, the study and checkpoints read these instead of naming kinds.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..normalizer import RunningNorm, StateStats
from ..registry import Plugin


class Task(Plugin):
    """Scores parameter candidates of `self.model`; higher is better.

    - ``batch(iteration)``: the data every candidate of one iteration is scored on (a mini-batch,
      or the environment seeds of the rollouts), so that ± pairs are compared fairly;
    - ``score(batch, index)``: score of the model's current parameters (sequential backend);
      `index` is the candidate's position in [+1..+N, −1..−N], which RL uses to pick a reset seed;
    - ``score_params(params, batch)``: scores (P,) of P parameter sets given as full tensors with a
      leading P dimension (vectorized backend);
    - ``pop_state_stats()``: states seen since the last call, for V2 normalisation;
    - ``evaluate()``: held-out metrics of the current parameters.

    As a plug-in (see `arsearch.registry.Plugin`) a task kind also declares ``Config`` (its keys,
    flat in ``[task]``; a key two kinds share is declared alike by both), ``check``, ``unused_keys``
    and the class-level facts below, which `arsearch.config` and `arsearch.study` ask for.
    """

    # -- the plug-in's declarations ------------------------------------------------------------------
    # the [stop] budgets (and study spends) it counts, besides the wall clock ("seconds")
    spends: tuple[str, ...] = ("forward_examples",)
    default_spend: str = "forward_examples"
    # the counters its results carry as count/<name> (training spend; eval_* are counted apart)
    counters: tuple[str, ...] = ("forward_examples",)
    # the optional job tables it reads ("sampling": prioritised mini-batches)
    reads_tables: tuple[str, ...] = ()
    # metrics of `evaluate()` that are better lower (a target on them is reached from below)
    lower_is_better: tuple[str, ...] = ("loss",)
    # [task] keys that must be the same for a checkpoint to be resumed (they define θ's meaning)
    resume_keys: tuple[str, ...] = ()

    @classmethod
    def evaluates(cls, config) -> tuple[str, ...]:
        """The keys `evaluate()` will return for this job (eval/<key>), known before it is built."""
        return tuple(cls.eval_metrics)

    @classmethod
    def objective(cls, config) -> tuple[str, str]:
        """The default study metric and its direction for this job."""
        name = cls.evaluates(config)[0] if cls.evaluates(config) else cls.metric
        return f"eval/{name}", cls.direction(name)

    @classmethod
    def direction(cls, name: str) -> str:
        return "minimize" if name in cls.lower_is_better else "maximize"

    @classmethod
    def spend_per_candidate(cls, config, spend: str) -> float:
        """One candidate's spend in `spend` (an upper bound where it varies), for study grids and pruners."""
        return float(config.task.batch_size)

    @classmethod
    def spend_per_iteration(cls, config, spend: str) -> float:
        """Spend an iteration adds besides its candidates (prioritised sampling's re-scoring)."""
        return 0.0

    model: nn.Module
    normalizer: RunningNorm | None = None
    metric: str = "score"          # the headline evaluation metric's name, e.g. "accuracy"
    metric_direction: str = "maximize"
    eval_metrics: tuple[str, ...] = ()   # the keys `evaluate()` returns, when known in advance

    def __init__(self):
        self._stats: StateStats | None = None
        self.counters: dict[str, int] = {}
        # the fraction of the job done before this iteration, set by the trainer: the furthest of
        # iterations / ars.iterations and, for each [stop] budget, spent / budget. Schedules that
        # run over the job (prioritised β, annealing's linear T) follow it, so a run ended by a
        # budget completes them. Derived from checkpointed counters, so resume stays bit-exact.
        self.progress = 0.0

    def batch(self, iteration: int) -> Any:
        raise NotImplementedError

    def score(self, batch: Any, index: int = 0) -> float:
        raise NotImplementedError

    def score_params(self, params: dict[str, torch.Tensor], batch: Any) -> torch.Tensor:
        raise NotImplementedError

    def score_one_by_one(self, params: dict[str, torch.Tensor], batch: Any) -> torch.Tensor:
        """Scores (P,) of P candidates (tensors with a leading P dimension, as `score_params` takes),
        each scored by a call of its own on its part of the batch (`for_candidates`): the vectorized
        backend's way for a model whose one candidate's activations already fill the cache. A task
        may override it to share the work around the calls (the supervised task: one loss for all)."""
        count = len(next(iter(params.values())))
        return torch.cat([self.score_params({name: p[k:k + 1] for name, p in params.items()},
                                            self.for_candidates(batch, k, 1)) for k in range(count)])

    def score_directions(self, space, directions, scale: float, batch: Any, pairs: int = 0) -> torch.Tensor | None:
        """Scores (2n,) of θ + ν·δ_k then θ − ν·δ_k for n `directions` (`noise.Directions`: dense rows
        or low-rank factors per parameter tensor) without forming all 2n perturbed parameter vectors,
        or None when the model has no such path (the backend then scores the dense candidates with
        `score_params`). `pairs` > 0: score at most that many ± pairs at a time (cache-sized groups;
        work shared by all candidates, such as a first layer's product with the batch, runs once)."""
        return None

    def candidate_bytes(self, batch: Any) -> int | None:
        """Bytes of activations one candidate's forward on `batch` produces, or None if unknown
        (the vectorized backend sizes its automatic chunk with it)."""
        return None

    def evaluate(self) -> dict[str, float]:
        raise NotImplementedError

    def select(self, batch: Any, directions: list[int]) -> Any:
        """The part of `batch` that the given directions (positions in 0..N−1) are scored on.

        The distributed backend scores a share of the directions per rank; a batch shared by all
        candidates (a mini-batch) is returned whole, a per-direction batch (RL reset seeds) is cut.
        """
        return batch

    def for_candidates(self, batch: Any, start: int, count: int) -> Any:
        """The part of `batch` for candidates start..start+count−1 of one batched call, so that a
        call cut into chunks scores each candidate on what the whole call would (a mini-batch shared
        by all candidates is returned whole; RL reset seeds are picked by the candidate's index)."""
        return batch

    def record_states(self, states) -> None:
        if self.normalizer is not None:
            if self._stats is None:
                self._stats = self.normalizer.new_stats()
            self._stats.add(states)

    def pop_state_stats(self) -> StateStats | None:
        stats, self._stats = self._stats, None
        return stats

    def count(self, key: str, n: int) -> None:
        """Add to a spend counter: episodes, env_steps, forward_examples (training), eval_* (evaluation)."""
        self.counters[key] = self.counters.get(key, 0) + int(n)

    def state_dict(self) -> dict:
        return {"counters": dict(self.counters)}

    def load_state_dict(self, state: dict) -> None:
        self.counters = dict(state.get("counters", {}))

    def after_step(self, batch: Any) -> None:
        """Called once the iteration's step is applied (prioritised sampling updates priorities here)."""

    def close(self) -> None:
        pass
