"""Tabu repulsion: learners other than the best are pushed away from visited solutions.

Every epoch, with b the current best learner's θ and S the population's spread — the mean RMS
distance of the other learners to b (when every learner sits on b, e.g. right after culling,
S is the mean RMS length of the learners' latest ARS steps, ``population.step_length``):

1. repulsion from the best: every k ≠ best moves a distance repulsion·S straight away from b,
   θ_k ← θ_k + repulsion·S·(θ_k − b)/‖θ_k − b‖ (a learner sitting on b is left to step 2);
2. b joins a memory of the last `memory` bests; each is the centre of a tabu ball of radius
   radius·S, and a learner (other than the best) inside a ball is moved out to its surface,
   along the line from the centre (a random direction for a learner sitting on the centre,
   e.g. a fresh clone).

Both coefficients are fractions of the spread, so they mean the same for a small and a large
model, early (learners close together) and late. This is ``units = "spread"``, the job config's
default. ``units = "absolute"`` (the class's default, the original rule) instead multiplies each
learner's distance to b by 1 + repulsion and uses `radius` as an absolute RMS distance.
Distances are root-mean-square per coordinate, ‖a − b‖₂/√d.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..fields import choice, number
from .base import Strategy


@dataclass
class TabuConfig:
    """``[population.tabu]``; repulsion and radius are fractions of the population's spread."""

    repulsion: float = number(0.1, 0.0)
    memory: int = number(5, 0)
    radius: float = number(0.25, 0.0)
    units: str = choice("spread", "spread", "absolute")


def rms_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """‖a − b‖₂/√d along the last dimension (broadcasts)."""
    return (a - b).double().pow(2).mean(-1).sqrt()


def spread(population, best: int) -> float:
    """S: mean RMS distance of the other learners to learner `best`, or their mean step length."""
    others = torch.ones(population.size, dtype=torch.bool)
    others[best] = False
    if not others.any():
        return 0.0
    dist = rms_distance(population.thetas, population.thetas[best]).cpu()
    s = float(dist[others].mean())
    if s == 0:
        lengths = getattr(population, "step_length", None)
        s = float(lengths.double().mean()) if lengths is not None else 0.0
    return s


class Tabu(Strategy):
    name = "tabu"
    Config = TabuConfig

    def __init__(self, repulsion: float = 0.1, memory: int = 5, radius: float = 0.05, units: str = "absolute"):
        if repulsion < 0 or memory < 0 or radius < 0:
            raise ValueError("tabu: repulsion, memory and radius must be >= 0")
        if units not in ("spread", "absolute"):
            raise ValueError(f"tabu: units must be 'spread' or 'absolute', got {units!r}")
        self.repulsion, self.memory_size, self.radius, self.units = repulsion, memory, radius, units
        self.memory: list[torch.Tensor] = []

    @torch.no_grad()
    def on_epoch(self, population, epoch):
        thetas, best = population.thetas, population.best
        b = thetas[best].clone()
        relative = self.units == "spread"
        s = spread(population, best) if relative else 1.0
        others = torch.ones(population.size, dtype=torch.bool, device=thetas.device)
        others[best] = False
        if self.repulsion > 0 and not relative:
            thetas[others] += self.repulsion * (thetas[others] - b)
        elif self.repulsion > 0 and s > 0:
            away = thetas[others] - b
            dist = away.double().pow(2).mean(-1).sqrt().to(thetas.dtype).unsqueeze(1)
            step = torch.where(dist > 0, away / dist.clamp_min(1e-30), torch.zeros_like(away))
            thetas[others] += self.repulsion * s * step
        pushed = 0
        radius = self.radius * s
        if self.memory_size > 0:
            self.memory = ([*self.memory, b.cpu()])[-self.memory_size:]
            if radius > 0:
                gen = population.generator(self.name, epoch)
                for centre in self.memory:
                    centre = centre.to(thetas.device, thetas.dtype)
                    for k in torch.nonzero(others).flatten().tolist():
                        dist = float(rms_distance(thetas[k], centre))
                        if dist >= radius:
                            continue
                        if dist > 0:
                            direction = (thetas[k] - centre) / dist
                        else:
                            direction = torch.randn(population.dim, generator=gen, dtype=torch.float64)
                            direction = (direction / direction.pow(2).mean().sqrt()).to(thetas.device, thetas.dtype)
                        thetas[k] = centre + radius * direction
                        pushed += 1
        return {"tabu/pushed": float(pushed), "tabu/memory": float(len(self.memory)), **({"tabu/spread": s} if relative else {})}

    def state_dict(self):
        return {"memory": [m.clone() for m in self.memory]}

    def load_state_dict(self, state):
        self.memory = [m.clone() for m in state.get("memory", [])]
