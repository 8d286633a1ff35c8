"""Particle-swarm velocity on top of each learner's ARS steps.

Every epoch, each learner k keeps a velocity v_k, a personal best p_k (the θ at which its
fitness was highest so far) and the swarm shares the global best g (the best personal best).

``units = "step"`` (the job config's default): the pulls are measured in the learner's own ARS
step length ℓ_k (``population.step_length``, the RMS length ‖Δθ‖₂/√d of its latest ARS step):

    v_k ← w·v_k + ℓ_k·[c1·r1 ⊙ û(p_k − θ_k) + c2·r2 ⊙ û(g − θ_k)],    θ_k ← θ_k + v_k

with û(a) = a/‖a‖_rms (0 for a = 0) and r1, r2 ~ U(0, 1) drawn per coordinate. A pull is then
never longer than c·ℓ_k, however far the bests are, and the velocity stays below
(c1 + c2)·ℓ_k/(1 − w) ≈ 11·ℓ_k with the textbook constriction coefficients of Clerc & Kennedy
(w = 0.7298, c1 = c2 = 1.49618), the defaults, which are then safe.

``units = "absolute"`` (the class's default, the textbook rule):
v_k ← w·v_k + c1·r1 ⊙ (p_k − θ_k) + c2·r2 ⊙ (g − θ_k). Every epoch it moves a learner by about
its distance to the bests, which the ablation found harmful with these coefficients.

The ARS iterations of the epoch are the local search; the velocity is added to what they moved.
Fitness is the population's (see `Population.fitness`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..fields import choice, number
from .base import Strategy


@dataclass
class PSOConfig:
    """``[population.pso]``."""

    inertia: float = number(0.7298, 0.0)
    cognitive: float = number(1.49618, 0.0)
    social: float = number(1.49618, 0.0)
    units: str = choice("step", "step", "absolute")


def unit_rms(a: torch.Tensor) -> torch.Tensor:
    """Rows of `a` divided by their RMS norm ‖a‖₂/√d (zero rows stay zero)."""
    norm = a.double().pow(2).mean(-1, keepdim=True).sqrt().to(a.dtype)
    return torch.where(norm > 0, a / norm.clamp_min(1e-30), torch.zeros_like(a))


class ParticleSwarm(Strategy):
    name = "pso"
    Config = PSOConfig

    def __init__(self, inertia: float = 0.7298, cognitive: float = 1.49618, social: float = 1.49618,
                 units: str = "absolute"):
        if inertia < 0 or cognitive < 0 or social < 0:
            raise ValueError("pso: inertia, cognitive and social must be >= 0")
        if units not in ("step", "absolute"):
            raise ValueError(f"pso: units must be 'step' or 'absolute', got {units!r}")
        self.inertia, self.cognitive, self.social, self.units = inertia, cognitive, social, units
        self.velocity = self.personal_best = self.personal_fitness = None

    def bind(self, population):
        self.velocity = torch.zeros_like(population.thetas)
        self.personal_best = population.thetas.clone()
        self.personal_fitness = torch.full((population.size,), float("-inf"), dtype=torch.float64)

    def update(self, thetas: torch.Tensor, r1: torch.Tensor, r2: torch.Tensor,
               step_length: torch.Tensor | None = None) -> torch.Tensor:
        """The velocity formula (returns the new velocities; the global best is the best personal best).

        With `step_length` (K,) the pulls are unit vectors times each learner's step length."""
        g = self.personal_best[int(torch.argmax(self.personal_fitness))]
        to_p, to_g = self.personal_best - thetas, g - thetas
        if step_length is not None:
            ell = step_length.to(thetas.device, thetas.dtype).unsqueeze(1)
            to_p, to_g = ell * unit_rms(to_p), ell * unit_rms(to_g)
        return self.inertia * self.velocity + self.cognitive * r1 * to_p + self.social * r2 * to_g

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
        self.velocity = self.update(thetas, r1, r2, population.step_length if self.units == "step" else None)
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
