"""Sequential backend: perturb in place, evaluate, restore — the memory of one model.

Each direction is regenerated from its seed chunk by chunk (one parameter tensor at a time, as
MeZO does), so the peak memory is the model plus its largest parameter tensor.
"""

from __future__ import annotations

import torch

from .base import Backend


class SequentialBackend(Backend):
    name = "sequential"

    @torch.no_grad()
    def evaluate(self, space, task, noise, seeds, scale, batch):
        n = len(seeds)
        r_plus, r_minus = torch.empty(n, dtype=torch.float64), torch.empty(n, dtype=torch.float64)

        def perturb(seed, alpha):
            noise.perturb_(seed, space, alpha)     # low rank: A·Bᵀ into each matrix, no dense chunk

        for k, seed in enumerate(seeds):
            perturb(seed, +scale)
            r_plus[k] = task.score(batch, k)
            perturb(seed, -2 * scale)
            r_minus[k] = task.score(batch, n + k)
            perturb(seed, +scale)  # back to θ (up to float rounding)
        return r_plus, r_minus
