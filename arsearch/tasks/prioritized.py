"""Prioritised mini-batches (Schaul et al. 2015, "Prioritized Experience Replay").

Example i is drawn with probability P(i) = p_i^α / Σ_j p_j^α, where its priority p_i is the
last loss seen for it (examples never seen yet get the current maximum priority, so every
example is visited early). Because the batch is no longer uniform, each drawn example's loss is
weighted by w_i = (n·P(i))^−β / max_j (n·P(j))^−β — the maximum taken over the whole training
set, as in the reference implementation, so weights only scale losses down and a batch's
weights are comparable with the next one's. β grows linearly from its initial value to 1 over
the job (full correction of the bias by the end of training): β = β0 + (1 − β0)·p, with p the
fraction of the job done (`Task.progress`: iterations of ``ars.iterations`` or spend of a
``[stop]`` budget, whichever is further).

The sampler has the `SupervisedTask.sampler` surface: ``sample(iteration, progress) -> (idx,
weights)`` (a pure function of the priorities, the seed, the iteration and the progress) and ``update(idx, losses)``,
which the task calls after each step with the losses of the batch under the updated model.
The priorities are part of ``state_dict`` so that a resumed job samples what it would have.
"""

from __future__ import annotations

import numpy as np
import torch


class PrioritizedSampler:
    def __init__(self, n: int, batch_size: int, seed: int = 0, alpha: float = 0.6, beta: float = 0.4,
                 eps: float = 1e-6):
        if n < 1 or batch_size < 1:
            raise ValueError(f"prioritised sampling needs n >= 1 and batch_size >= 1, got {n}, {batch_size}")
        if alpha < 0 or not 0 <= beta <= 1:
            raise ValueError(f"sampling.alpha must be >= 0 and sampling.beta in [0, 1], got {alpha}, {beta}")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.alpha, self.beta0, self.eps = alpha, beta, eps
        self.priorities = torch.zeros(n, dtype=torch.float64)
        self.seen = torch.zeros(n, dtype=torch.bool)

    def beta(self, progress: float) -> float:
        """β at `progress` (the fraction of the job done, 0..1)."""
        return self.beta0 + (1.0 - self.beta0) * min(1.0, max(0.0, progress))

    def probabilities(self) -> torch.Tensor:
        """P(i) for every example (unseen examples at the current maximum priority)."""
        top = float(self.priorities[self.seen].max()) if self.seen.any() else 1.0
        prio = torch.where(self.seen, self.priorities, torch.full_like(self.priorities, top))
        scaled = prio.clamp_min(self.eps).pow(self.alpha)
        return scaled / scaled.sum()

    def sample(self, iteration: int, progress: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        probs = self.probabilities()
        rng = np.random.default_rng([self.seed, iteration, 0x5052])
        idx = torch.as_tensor(rng.choice(self.n, size=self.batch_size, replace=True, p=probs.numpy()))
        beta = self.beta(progress)
        weights = (self.n * probs[idx]).pow(-beta) / (self.n * probs.min()).pow(-beta)
        return idx, weights.float()

    def update(self, idx: torch.Tensor, losses: torch.Tensor) -> None:
        idx = torch.as_tensor(idx).cpu().long()
        self.priorities[idx] = losses.detach().double().cpu().abs().reshape(-1) + self.eps
        self.seen[idx] = True

    def state_dict(self) -> dict:
        return {"priorities": self.priorities.clone(), "seen": self.seen.clone()}

    def load_state_dict(self, state: dict) -> None:
        if "priorities" in state:
            if state["priorities"].numel() != self.n:
                raise ValueError(f"checkpointed priorities are for {state['priorities'].numel()} examples, "
                                 f"this task has {self.n}")
            self.priorities = state["priorities"].clone().double()
            self.seen = state["seen"].clone().bool()
