"""Particle-swarm velocity on top of each learner's ARS steps.

Every epoch, each learner k keeps a velocity v_k, a personal best p_k (the θ at which its
fitness was highest so far) and the swarm shares the global best g (the best personal best):

    v_k ← w·v_k + c1·r1 ⊙ (p_k − θ_k) + c2·r2 ⊙ (g − θ_k),    θ_k ← θ_k + v_k

with r1, r2 ~ U(0, 1) drawn per coordinate. The ARS iterations of the epoch are the local
search; the velocity is added to what they moved. Defaults are Clerc & Kennedy's constriction
coefficients (w = 0.7298, c1 = c2 = 1.49618). Fitness is the population's (see
`Population.fitness`), so a personal best is judged on the mini-batches of its own iteration.
"""

from __future__ import annotations

import torch

from .base import Strategy


class ParticleSwarm(Strategy):
    name = "pso"

    def __init__(self, inertia: float = 0.7298, cognitive: float = 1.49618, social: float = 1.49618):
        if inertia < 0 or cognitive < 0 or social < 0:
            raise ValueError("pso: inertia, cognitive and social must be >= 0")
        self.inertia, self.cognitive, self.social = inertia, cognitive, social
        self.velocity = self.personal_best = self.personal_fitness = None

    @classmethod
    def from_config(cls, config):
        p = config.population.pso
        return cls(inertia=p.inertia, cognitive=p.cognitive, social=p.social)

    def bind(self, population):
        self.velocity = torch.zeros_like(population.thetas)
        self.personal_best = population.thetas.clone()
        self.personal_fitness = torch.full((population.size,), float("-inf"), dtype=torch.float64)

    def update(self, thetas: torch.Tensor, r1: torch.Tensor, r2: torch.Tensor) -> torch.Tensor:
        """The velocity formula (returns the new velocities; the global best is the best personal best)."""
        g = self.personal_best[int(torch.argmax(self.personal_fitness))]
        return (self.inertia * self.velocity + self.cognitive * r1 * (self.personal_best - thetas)
                + self.social * r2 * (g - thetas))

    @torch.no_grad()
    def on_epoch(self, population, epoch):
        thetas = population.thetas
        fitness = population.fitness.double().cpu()
        improved = fitness > self.personal_fitness
        if improved.any():
            self.personal_fitness[improved] = fitness[improved]
            self.personal_best[improved.to(thetas.device)] = thetas[improved.to(thetas.device)]
        gen = population.generator(self.name, epoch)
        r1 = torch.rand(thetas.shape, generator=gen, dtype=thetas.dtype).to(thetas.device)
        r2 = torch.rand(thetas.shape, generator=gen, dtype=thetas.dtype).to(thetas.device)
        self.velocity = self.update(thetas, r1, r2)
        thetas += self.velocity
        speed = self.velocity.double().pow(2).mean(-1).sqrt()
        return {"pso/speed": float(speed.mean()), "pso/global_best": float(self.personal_fitness.max())}

    def on_clone(self, population, dst, src):
        self.personal_best[dst] = self.personal_best[src]
        self.personal_fitness[dst] = self.personal_fitness[src]
        self.velocity[dst] = 0.0

    def state_dict(self):
        return {"velocity": self.velocity.clone(), "personal_best": self.personal_best.clone(),
                "personal_fitness": self.personal_fitness.clone()}

    def load_state_dict(self, state):
        if "velocity" in state:
            self.velocity = state["velocity"].clone()
            self.personal_best = state["personal_best"].clone()
            self.personal_fitness = state["personal_fitness"].clone()
