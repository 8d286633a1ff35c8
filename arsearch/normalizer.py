"""Running observation normalisation for ARS V2 / V2-t.

The paper normalises each state by the mean and standard deviation of every state seen so far
during training. The statistics live in module buffers (so they are checkpointed with the
model) and change only between iterations: within an iteration all 2N candidates see the same
normalisation, and the states they visit are summed into a `StateStats` that is merged after
the update (and all-reduced first in the distributed backend).
"""

from __future__ import annotations

import torch
from torch import nn


class StateStats:
    """Count, sum and sum of squares of the states seen in one iteration, as one flat tensor."""

    def __init__(self, shape: tuple[int, ...], packed: torch.Tensor | None = None):
        self.shape = tuple(shape)
        n = int(torch.Size(shape).numel())
        self.packed = packed if packed is not None else torch.zeros(1 + 2 * n, dtype=torch.float64)

    def add(self, states) -> None:
        x = torch.as_tensor(states).detach().to("cpu", torch.float64).reshape(-1, self.packed.numel() // 2)
        n = x.shape[1]
        self.packed[0] += x.shape[0]
        self.packed[1:1 + n] += x.sum(0)
        self.packed[1 + n:] += (x * x).sum(0)

    def add_moments(self, count: int, total, total_sq) -> None:
        """Add pre-summed moments (numpy or torch), as RL rollouts accumulate them."""
        n = (self.packed.numel() - 1) // 2
        self.packed[0] += count
        self.packed[1:1 + n] += torch.as_tensor(total, dtype=torch.float64).reshape(-1)
        self.packed[1 + n:] += torch.as_tensor(total_sq, dtype=torch.float64).reshape(-1)

    def __iadd__(self, other: StateStats) -> StateStats:
        self.packed += other.packed
        return self

    @property
    def count(self) -> float:
        return float(self.packed[0])


class RunningNorm(nn.Module):
    """x ↦ (x − mean) / std with the running statistics of all states seen so far."""

    def __init__(self, shape: int | tuple[int, ...], eps: float = 1e-8):
        super().__init__()
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        self.shape = shape
        self.eps = eps
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("mean", torch.zeros(shape, dtype=torch.float64))
        self.register_buffer("m2", torch.zeros(shape, dtype=torch.float64))
        # When set (by the `ARS` optimizer in V2 mode), every input seen is summed in here.
        self.recording: StateStats | None = None

    def new_stats(self) -> StateStats:
        return StateStats(self.shape)

    def std(self) -> torch.Tensor:
        if self.count < 2:
            return torch.ones_like(self.mean)
        std = (self.m2 / self.count).sqrt()
        return torch.where(std < self.eps, torch.ones_like(std), std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.recording is not None:
            self.recording.add(x.detach())
        mean = self.mean.to(x.dtype)
        std = self.std().to(x.dtype)
        return (x - mean) / std

    @torch.no_grad()
    def update(self, stats: StateStats) -> None:
        """Merge a batch of statistics (Chan et al.'s parallel algorithm)."""
        n_b = stats.count
        if n_b == 0:
            return
        k = self.mean.numel()
        total, total_sq = stats.packed[1:1 + k].view(self.shape), stats.packed[1 + k:].view(self.shape)
        mean_b = total / n_b
        m2_b = (total_sq - n_b * mean_b * mean_b).clamp_min(0)
        n_a = float(self.count)
        n = n_a + n_b
        delta = mean_b - self.mean
        self.mean += delta * (n_b / n)
        self.m2 += m2_b + delta * delta * (n_a * n_b / n)
        self.count += n_b
