"""Tabu repulsion: learners other than the best are pushed away from visited solutions.

Every epoch, with b the current best learner's θ:

1. repulsion from the best: θ_k ← θ_k + repulsion·(θ_k − b) for every k ≠ best (the distance
   to the best grows by the factor 1 + repulsion);
2. b joins a memory of the last `memory` bests; each is the centre of a tabu ball of radius
   `radius`, and a learner (other than the best) inside a ball is moved out to its surface,
   along the line from the centre (a random direction for a learner sitting on the centre,
   e.g. a fresh clone).

Distances are root-mean-square per coordinate, ‖a − b‖₂/√d, so a radius means the same for a
small and a large model.
"""

from __future__ import annotations

import torch

from .base import Strategy


def rms_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """‖a − b‖₂/√d along the last dimension (broadcasts)."""
    return (a - b).double().pow(2).mean(-1).sqrt()


class Tabu(Strategy):
    name = "tabu"

    def __init__(self, repulsion: float = 0.1, memory: int = 5, radius: float = 0.05):
        if repulsion < 0 or memory < 0 or radius < 0:
            raise ValueError("tabu: repulsion, memory and radius must be >= 0")
        self.repulsion, self.memory_size, self.radius = repulsion, memory, radius
        self.memory: list[torch.Tensor] = []

    @classmethod
    def from_config(cls, config):
        t = config.population.tabu
        return cls(repulsion=t.repulsion, memory=t.memory, radius=t.radius)

    @torch.no_grad()
    def on_epoch(self, population, epoch):
        thetas, best = population.thetas, population.best
        b = thetas[best].clone()
        others = torch.ones(population.size, dtype=torch.bool, device=thetas.device)
        others[best] = False
        if self.repulsion > 0:
            thetas[others] += self.repulsion * (thetas[others] - b)
        pushed = 0
        if self.memory_size > 0:
            self.memory = ([*self.memory, b.cpu()])[-self.memory_size:]
            if self.radius > 0:
                gen = population.generator(self.name, epoch)
                for centre in self.memory:
                    centre = centre.to(thetas.device, thetas.dtype)
                    for k in torch.nonzero(others).flatten().tolist():
                        dist = float(rms_distance(thetas[k], centre))
                        if dist >= self.radius:
                            continue
                        if dist > 0:
                            direction = (thetas[k] - centre) / dist
                        else:
                            direction = torch.randn(population.dim, generator=gen, dtype=torch.float64)
                            direction = (direction / direction.pow(2).mean().sqrt()).to(thetas.device, thetas.dtype)
                        thetas[k] = centre + self.radius * direction
                        pushed += 1
        return {"tabu/pushed": float(pushed), "tabu/memory": float(len(self.memory))}

    def state_dict(self):
        return {"memory": [m.clone() for m in self.memory]}

    def load_state_dict(self, state):
        self.memory = [m.clone() for m in state.get("memory", [])]
