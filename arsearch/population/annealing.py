"""Simulated-annealing acceptance of each learner's ARS steps.

What is compared: after every iteration, each learner's θ before the step (θ_old) and after it
(θ_new) are scored on *that iteration's* mini-batch (or RL reset seeds), the same data its 2N
perturbed candidates were scored on. With Δ = score(θ_old) − score(θ_new) (> 0: the step made
the mini-batch loss or the return worse), an improving step (Δ ≤ 0) is always kept and a
worsening one is kept with probability exp(−Δ/T), otherwise reverted. This costs 2K extra
forward passes (or episodes) per iteration, which the job's counters include.

T is in score units (loss or return) and follows a schedule over epochs e = 0, 1, 2, ...:

- ``exponential``: T = t0·decay^e
- ``linear``: T = t0·(1 − e/E), E = the job's number of epochs (iterations / epoch)
- ``logarithmic``: T = t0·ln 2 / ln(e + 2) (the classic slow schedule; T = t0 at e = 0)
- ``adaptive``: T starts at t0; after each epoch it is multiplied by `decay` if more than
  `target_acceptance` of the worsening steps were kept, divided by it if fewer.

T never goes below `t_min`. ``difficulty`` > 0 makes acceptance harder as epochs pass: Δ is
weighed by (1 + difficulty·e), i.e. T_eff = T / (1 + difficulty·e).
"""

from __future__ import annotations

import math

import torch

from .base import Strategy

SCHEDULES = ("exponential", "linear", "logarithmic", "adaptive")


def acceptance_probability(delta: torch.Tensor, temperature: float) -> torch.Tensor:
    """P(keep) = 1 for Δ ≤ 0, exp(−Δ/T) otherwise (0 when T = 0)."""
    delta = delta.double()
    if temperature <= 0:
        return (delta <= 0).double()
    return torch.where(delta <= 0, torch.ones_like(delta), torch.exp(-delta.clamp_min(0) / temperature))


class Annealing(Strategy):
    name = "annealing"

    def __init__(self, schedule: str = "exponential", t0: float = 1.0, decay: float = 0.95, t_min: float = 1e-4,
                 target_acceptance: float = 0.3, difficulty: float = 0.0, epochs: int | None = None):
        if schedule not in SCHEDULES:
            raise ValueError(f"annealing: unknown schedule {schedule!r}; allowed: {', '.join(SCHEDULES)}")
        if t0 <= 0 or not 0 < decay <= 1 or t_min < 0 or difficulty < 0:
            raise ValueError("annealing: need t0 > 0, 0 < decay <= 1, t_min >= 0, difficulty >= 0")
        self.schedule, self.t0, self.decay, self.t_min = schedule, t0, decay, t_min
        self.target_acceptance, self.difficulty, self.epochs = target_acceptance, difficulty, epochs
        self.adaptive_t = t0
        self._reset_window()

    @classmethod
    def from_config(cls, config):
        a = config.population.annealing
        epochs = max(1, config.ars.iterations // config.population.epoch)
        return cls(schedule=a.schedule, t0=a.t0, decay=a.decay, t_min=a.t_min,
                   target_acceptance=a.target_acceptance, difficulty=a.difficulty, epochs=epochs)

    def _reset_window(self, size: int = 0) -> None:
        # counts over the current epoch, per learner: steps, kept steps, worsening steps, kept worsening
        self.window = torch.zeros(4, size, dtype=torch.float64)

    def bind(self, population):
        self._reset_window(population.size)

    def base_temperature(self, epoch: int) -> float:
        if self.schedule == "exponential":
            return self.t0 * self.decay ** epoch
        if self.schedule == "linear":
            total = self.epochs or 1
            return self.t0 * max(0.0, 1.0 - epoch / total)
        if self.schedule == "logarithmic":
            return self.t0 * math.log(2) / math.log(epoch + 2)
        return self.adaptive_t

    def temperature(self, epoch: int) -> float:
        return max(self.t_min, self.base_temperature(epoch) / (1.0 + self.difficulty * epoch))

    @torch.no_grad()
    def after_step(self, population, iteration, previous, batch):
        epoch = iteration // population.epoch
        t = self.temperature(epoch)
        old = population.score_thetas(previous, batch)
        new = population.score_thetas(population.thetas, batch)
        delta = old - new
        gen = population.generator(self.name, iteration)
        u = torch.rand(len(delta), generator=gen, dtype=torch.float64)
        keep = u < acceptance_probability(delta, t)
        revert = (~keep).to(population.thetas.device)
        if revert.any():
            population.thetas[revert] = previous.to(population.thetas)[revert]
        worse = delta > 0
        self.window += torch.stack([torch.ones_like(delta), keep.double(), worse.double(), (keep & worse).double()])
        return {"population/acceptance_rate": float(keep.double().mean()),
                "annealing/temperature": t,
                "annealing/worse_steps": float(worse.sum()),
                **{f"population/learner_{k}/acceptance": float(self.window[1, k] / self.window[0, k])
                   for k in range(len(delta))}}

    def worse_acceptance(self) -> float:
        worse = float(self.window[2].sum())
        return float(self.window[3].sum()) / worse if worse else float("nan")

    def on_epoch(self, population, epoch):
        rate = self.worse_acceptance()
        if self.schedule == "adaptive" and rate == rate:   # not NaN: some worsening steps were judged
            self.adaptive_t = self.adaptive_t * self.decay if rate > self.target_acceptance else self.adaptive_t / self.decay
            self.adaptive_t = max(self.adaptive_t, self.t_min)
        self._reset_window(population.size)
        return {"annealing/worse_acceptance": rate} if rate == rate else {}

    def on_clone(self, population, dst, src):
        self.window[:, dst] = self.window[:, src]

    def state_dict(self):
        return {"adaptive_t": self.adaptive_t, "window": self.window.clone()}

    def load_state_dict(self, state):
        self.adaptive_t = float(state.get("adaptive_t", self.t0))
        if "window" in state:
            self.window = state["window"].clone()
