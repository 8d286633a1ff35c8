"""The backend interface."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..noise import SeedNoise
from ..spaces import ParameterSpace


class WorkerLost(RuntimeError):
    """A parallel backend lost a worker process or rank (it died, failed or stopped progressing)."""


class Backend:
    """Evaluates the antithetic candidates θ ± ν·δ_k of one iteration and applies the step.

    ``evaluate`` returns (r+, r−), each of shape (N,), for the θ currently held by `space`;
    ``apply`` performs θ ← θ + Σ_k w_k·δ_k in place. The directions are regenerated from
    `seeds` by `noise`, so a backend never needs to keep them (though it may cache them).
    """

    name = "base"

    @classmethod
    def from_config(cls, config) -> Backend:
        return cls()

    def evaluate(self, space: ParameterSpace, task, noise: SeedNoise, seeds: Sequence[int], scale: float,
                 batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def apply(self, space: ParameterSpace, noise: SeedNoise, seeds: Sequence[int], weights: torch.Tensor) -> None:
        for seed, w in zip(seeds, weights.tolist()):
            if w != 0.0:
                space.add_(noise.chunks(seed, space.sizes, space.device, space.dtype), w)

    def merge_stats(self, stats):
        """V2 state statistics of this process → those of the whole job (identity in one process)."""
        return stats

    def close(self) -> None:
        pass
