"""The backend interface."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..noise import SeedNoise
from ..registry import Plugin
from ..spaces import ParameterSpace


@dataclass
class BackendConfig:
    """The ``[ars]`` keys a backend reads beyond the core ones (none here). Each backend declares its
    own beside its class; `arsearch.config` adds every registered backend's keys to ``[ars]``."""


class WorkerLost(RuntimeError):
    """A parallel backend lost a worker process or rank (it died, failed or stopped progressing)."""


class Backend(Plugin):
    """Evaluates the antithetic candidates θ ± ν·δ_k of one iteration and applies the step.

    ``evaluate`` returns (r+, r−), each of shape (N,), for the θ currently held by `space`;
    ``apply`` performs θ ← θ + Σ_k w_k·δ_k in place. The directions are regenerated from
    `seeds` by `noise`, so a backend never needs to keep them (though it may cache them).

    As a plug-in (`arsearch.registry.Plugin`) a backend declares ``Config`` (its keys, flat in
    ``[ars]``), ``check`` (its constraints on a job) and ``unused_keys``.
    """

    name = "base"
    # a backend whose workers need a learner of their own registers it under the backend's name
    # (arsearch.registry.LEARNERS); any other is driven by "ars", or "population" with a population
    Config: type = BackendConfig
    # a job on this backend starts its own processes from the command line (ranks under torchrun):
    # a study runs its trials as subprocesses (`arsearch train --nproc`), never in a thread
    own_processes = False

    @classmethod
    def processes(cls, config) -> int:
        """Processes (and devices, one each) a job on this backend runs."""
        return 1

    @classmethod
    def from_config(cls, config) -> Backend:
        return cls()

    def evaluate(self, space: ParameterSpace, task, noise: SeedNoise, seeds: Sequence[int], scale: float,
                 batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def apply(self, space: ParameterSpace, noise: SeedNoise, seeds: Sequence[int], weights: torch.Tensor) -> None:
        for seed, w in zip(seeds, weights.tolist()):
            if w != 0.0:
                noise.perturb_(seed, space, w)

    def agree_stop(self, signum: int) -> int:
        """The signal every process of the job stops on at this iteration boundary (0: go on), given this
        process's own (0 if none came). One process decides alone; ranks agree (`distributed`)."""
        return signum

    # -- a population of K learners (arsearch.population) -------------------------------------------
    # The defaults loop over the learners with `evaluate` / `apply`, loading each θ into `space`
    # in turn, so every backend works with a population; the vectorized backend overrides them
    # to score all K·2N candidates in one batched call.

    def evaluate_many(self, space: ParameterSpace, task, noise: SeedNoise, thetas: torch.Tensor,
                      seeds: Sequence[Sequence[int]], scale: float, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """(r+, r−), each (K, N), for the K learners' θ (rows of `thetas`) and their seed lists.

        `scale` is the noise ν of every learner, or a (K,) tensor of one ν per learner."""
        r_plus, r_minus = [], []
        for k, (theta, learner_seeds) in enumerate(zip(thetas, seeds)):
            space.load_(theta)
            nu = float(scale[k]) if isinstance(scale, torch.Tensor) else scale
            rp, rm = self.evaluate(space, task, noise, learner_seeds, nu, batch)
            r_plus.append(rp)
            r_minus.append(rm)
        return torch.stack(r_plus), torch.stack(r_minus)

    def apply_many(self, space: ParameterSpace, noise: SeedNoise, thetas: torch.Tensor,
                   seeds: Sequence[Sequence[int]], weights: torch.Tensor) -> torch.Tensor:
        """The K learners' θ after their ARS steps θ_k + Σ_n w_kn·δ_kn, as a new (K, d) tensor."""
        out = torch.empty_like(thetas)
        for k, (theta, learner_seeds) in enumerate(zip(thetas, seeds)):
            space.load_(theta)
            self.apply(space, noise, learner_seeds, weights[k])
            out[k] = space.vector()
        return out

    def score_thetas(self, space: ParameterSpace, task, thetas: torch.Tensor, batch: Any) -> torch.Tensor:
        """Scores (K,) of the parameter vectors `thetas` (K, d) on `batch` (candidate k uses index k)."""
        scores = torch.empty(len(thetas), dtype=torch.float64)
        for k, theta in enumerate(thetas):
            space.load_(theta)
            scores[k] = task.score(batch, k)
        return scores

    def merge_stats(self, stats):
        """V2 state statistics of this process → those of the whole job (identity in one process)."""
        return stats

    def close(self) -> None:
        pass
