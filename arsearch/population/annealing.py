"""Simulated-annealing acceptance of each learner's ARS steps.

What is compared: after every iteration, each learner's θ before the step (θ_old) and after it
(θ_new) are scored on *that iteration's* mini-batch (or RL reset seeds), the same data its 2N
perturbed candidates were scored on. With Δ = score(θ_old) − score(θ_new) (> 0: the step made
the mini-batch loss or the return worse), an improving step (Δ ≤ 0) is always kept and a
worsening one is kept with probability exp(−Δ/(T·σ_k)), otherwise reverted. This costs 2K extra
forward passes (or episodes) per iteration, which the job's counters include.

T has no units: it is measured in σ_k, the standard deviation of learner k's 2N candidate
scores in the same iteration (``population.score_spread``, the σ_R by which ARS divides its
step). A worsening as large as the spread of the candidates is kept with probability e^(−1/T),
whatever the task's score scale (a loss near 0.1 or a return near 3000). That is
``units = "spread"``, the job config's default; ``units = "score"`` (the class's default, the
original rule) counts T in score units (σ_k = 1).

T follows a schedule over epochs e = 0, 1, 2, ... or over the job's progress p (0..1):

- ``adaptive`` (the default): T starts at t0; after each epoch it is multiplied by `decay` if
  more than `target_acceptance` of the worsening steps were kept, divided by it if fewer;
- ``exponential``: T = t0·decay^e
- ``linear``: T = t0·(1 − p), p = the fraction of the job done before the iteration
  (`Task.progress`: iterations of ``ars.iterations`` or spend of a ``[stop]`` budget, whichever
  is further), so T reaches 0 where the job ends, whatever ends it
- ``logarithmic``: T = t0·ln 2 / ln(e + 2) (the classic slow schedule; T = t0 at e = 0)

T never goes below `t_min`. ``difficulty`` > 0 makes acceptance harder as epochs pass: Δ is
weighed by (1 + difficulty·e), i.e. T_eff = T / (1 + difficulty·e).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..fields import choice, number
from .base import Strategy

SCHEDULES = ("exponential", "linear", "logarithmic", "adaptive")


@dataclass
class AnnealingConfig:
    """``[population.annealing]``; t0 and t_min are in units of the candidates' score spread."""

    schedule: str = choice("adaptive", *SCHEDULES)
    t0: float = number(1.0, 0.0, low_open=True)
    decay: float = number(0.95, 0.0, 1.0, low_open=True)
    t_min: float = number(1e-4, 0.0)
    target_acceptance: float = number(0.3, 0.0, 1.0, low_open=True)
    difficulty: float = number(0.0, 0.0)
    units: str = choice("spread", "spread", "score")


def acceptance_probability(delta: torch.Tensor, temperature) -> torch.Tensor:
    """P(keep) = 1 for Δ ≤ 0, exp(−Δ/T) otherwise (0 where T = 0); T a number or one per Δ."""
    delta = delta.double()
    t = torch.as_tensor(temperature, dtype=torch.float64).expand_as(delta)
    worse = torch.where(t > 0, torch.exp(-delta.clamp_min(0) / t.clamp_min(1e-300)), torch.zeros_like(delta))
    return torch.where(delta <= 0, torch.ones_like(delta), worse)


class Annealing(Strategy):
    name = "annealing"
    Config = AnnealingConfig
    extra_candidates = 2        # `after_step` re-scores θ before and after the step

    def __init__(self, schedule: str = "adaptive", t0: float = 1.0, decay: float = 0.95, t_min: float = 1e-4,
                 target_acceptance: float = 0.3, difficulty: float = 0.0, units: str = "score"):
        if schedule not in SCHEDULES:
            raise ValueError(f"annealing: unknown schedule {schedule!r}; allowed: {', '.join(SCHEDULES)}")
        if t0 <= 0 or not 0 < decay <= 1 or t_min < 0 or difficulty < 0:
            raise ValueError("annealing: need t0 > 0, 0 < decay <= 1, t_min >= 0, difficulty >= 0")
        if units not in ("spread", "score"):
            raise ValueError(f"annealing: units must be 'spread' or 'score', got {units!r}")
        self.units = units
        self.schedule, self.t0, self.decay, self.t_min = schedule, t0, decay, t_min
        self.target_acceptance, self.difficulty = target_acceptance, difficulty
        self.adaptive_t = t0
        self._reset_window()

    @classmethod
    def from_settings(cls, settings):
        a = settings
        return cls(schedule=a.schedule, t0=a.t0, decay=a.decay, t_min=a.t_min,
                   target_acceptance=a.target_acceptance, difficulty=a.difficulty, units=a.units)

    def _reset_window(self, size: int = 0) -> None:
        # counts over the current epoch, per learner: steps, kept steps, worsening steps, kept worsening
        self.window = torch.zeros(4, size, dtype=torch.float64)

    def bind(self, population):
        self._reset_window(population.size)

    def base_temperature(self, epoch: int, progress: float = 0.0) -> float:
        if self.schedule == "exponential":
            return self.t0 * self.decay ** epoch
        if self.schedule == "linear":
            return self.t0 * max(0.0, 1.0 - progress)
        if self.schedule == "logarithmic":
            return self.t0 * math.log(2) / math.log(epoch + 2)
        return self.adaptive_t

    def temperature(self, epoch: int, progress: float = 0.0) -> float:
        return max(self.t_min, self.base_temperature(epoch, progress) / (1.0 + self.difficulty * epoch))

    @torch.no_grad()
    def after_step(self, population, iteration, previous, batch):
        epoch = iteration // population.epoch
        t = self.temperature(epoch, population.progress)
        old = population.score_thetas(previous, batch)
        new = population.score_thetas(population.thetas, batch)
        delta = old - new
        # σ_k: T in units of the spread of learner k's candidate scores this iteration
        scale = population.score_spread.double().cpu() if self.units == "spread" else torch.ones_like(delta)
        gen = population.generator(self.name, iteration)
        u = torch.rand(len(delta), generator=gen, dtype=torch.float64)
        keep = u < acceptance_probability(delta, t * scale)
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
