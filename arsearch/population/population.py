"""A population of K ARS learners trained together, with strategies acting on it every epoch."""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np
import torch

from ..ars import DivergenceError
from ..fields import listof
from ..learner import Hyper, Learner, StepResult
from .base import Strategy
from .tabu import rms_distance

FITNESS = ("ema", "last", "eval")


@dataclass
class InitConfig:
    """``population.init``: ``[low, high]`` spreads the learners' starting values log-uniformly over
    the range; an empty list starts every learner at the ``[ars]`` value."""

    step_size: list[float] = listof([])
    noise: list[float] = listof([])


def check_range(name: str, values) -> tuple[float, float] | None:
    if not values:
        return None
    if len(values) != 2 or not 0 < values[0] <= values[1]:
        raise ValueError(f"population.init.{name} must be [low, high] with 0 < low <= high, got {list(values)}")
    return float(values[0]), float(values[1])


class Population(Learner):
    """K learners, each with its own θ (a row of ``thetas``, (K, d)), its own step size and noise
    (``step_sizes``, ``noises``, (K,)) and its own direction-seed stream
    (``iteration_seeds(seed, iteration, N, stream=k)``; learner 0 draws what a single learner would).

    One ``step(iteration)`` is the shared iteration of `arsearch.learner.Learner`: every learner
    does one ARS iteration on the same mini-batch (or RL reset seeds) — with the vectorized
    backend all K·2N candidates are one batched evaluation, other backends loop over the
    learners — then each strategy's ``after_step`` runs, and every `epoch` iterations each
    strategy's ``on_epoch``, in list order.

    ``fitness`` (K,), higher is better, is by default (``fitness = "ema"``) an exponential moving
    average over iterations of the mean score of a learner's 2N perturbed candidates:
    f ← β·f + (1 − β)·mean, β = ``fitness_ema``; free (no extra forward pass) and comparable
    across learners because they share the batch. ``"last"`` is the latest mean alone (β = 0);
    ``"eval"`` scores each unperturbed θ_k once more at the end of each epoch on that iteration's
    batch (K forward passes of the batch, or K episodes on its first reset seed, counted against
    the budget). The best learner (highest fitness) has its θ loaded in the task's model after
    every step, so the trainer evaluates and checkpoints the best. V2 observation statistics are
    shared: the task's one normaliser sees the states of every learner.

    Every change of a learner's hyperparameters (its start, an exploit copying another learner,
    an explore perturbing them) is appended to ``lineage``, which the trainer writes to
    ``metrics.json`` and MLflow; `hyperparameters_at` replays it.
    """

    def __init__(self, hyper, task, space, noise, backend, strategies: list[Strategy] | None = None,
                 settings=None):
        if settings is None and getattr(hyper, "population", None) is not None:   # a JobConfig
            settings = hyper.population
        if settings is None:
            raise ValueError("Population needs a config with a [population] table")
        pc = settings
        super().__init__(hyper, task, space, noise, backend, streams=range(pc.size))
        self.size, self.epoch, self.dim = pc.size, pc.epoch, space.dim
        self.fitness_mode = getattr(pc, "fitness", "last")
        if self.fitness_mode not in FITNESS:
            raise ValueError(f"population.fitness = {self.fitness_mode!r}; allowed: {', '.join(FITNESS)}")
        self.fitness_ema = float(getattr(pc, "fitness_ema", 0.0)) if self.fitness_mode == "ema" else 0.0
        init = getattr(pc, "init", None)
        self.ranges = {name: check_range(name, getattr(init, name, [])) for name in ("step_size", "noise")}
        if strategies is None:
            from . import make_strategy

            strategies = [make_strategy(name, getattr(pc, name, None)) for name in pc.strategies]
        self.strategies = list(strategies)
        # every learner starts from the model's θ; they part through their own direction streams
        self.thetas = space.vector().detach().clone().unsqueeze(0).repeat(self.size, 1)
        self.fitness = torch.zeros(self.size, dtype=torch.float64)
        self.step_length = torch.zeros(self.size, dtype=torch.float64)
        self.score_spread = torch.ones(self.size, dtype=torch.float64)
        self.best = 0
        self.steps_done = 0            # iterations done (stamps lineage events)
        self.lineage: list[dict] = []
        self._spread_init()
        for s in self.strategies:
            s.bind(self)

    @property
    def progress(self) -> float:
        """The fraction of the job done before this iteration (`Task.progress`, set by the trainer)."""
        return self.task.progress

    @classmethod
    def from_config(cls, config, task, space, noise, backend) -> Population:
        return cls(Hyper.of(config), task, space, noise, backend, settings=config.population)

    # -- hyperparameters and lineage -------------------------------------------------------------
    def hyper_range(self, name: str) -> tuple[float, float]:
        """The range a hyperparameter is drawn from: ``population.init``'s, else [v/3, 3v] around ``[ars]``."""
        given = self.ranges[name]
        if given is not None:
            return given
        v = float(getattr(self.hyper, name))
        return v / 3.0, v * 3.0

    def _spread_init(self) -> None:
        gen = self.generator("init", 0)
        for name, attr in (("step_size", "step_sizes"), ("noise", "noises")):
            if self.ranges[name] is not None:
                low, high = self.ranges[name]
                u = torch.rand(self.size, generator=gen, dtype=torch.float64)
                getattr(self, attr)[:] = torch.exp(math.log(low) + u * (math.log(high) - math.log(low)))
        for k in range(self.size):
            self._event("init", k, -1, (float(self.step_sizes[k]), float(self.noises[k])))

    def _event(self, event: str, learner: int, parent: int, before: tuple[float, float]) -> None:
        self.lineage.append({"iteration": self.steps_done, "event": event, "learner": learner, "parent": parent,
                             "step_size_before": before[0], "noise_before": before[1],
                             "step_size_after": float(self.step_sizes[learner]),
                             "noise_after": float(self.noises[learner])})

    def set_hyperparameters(self, k: int, *, event: str = "explore", parent: int | None = None,
                            step_size: float | None = None, noise: float | None = None) -> None:
        """Change learner k's step size and/or noise, recording the change in the lineage."""
        before = (float(self.step_sizes[k]), float(self.noises[k]))
        if step_size is not None:
            if not step_size > 0:
                raise ValueError(f"learner {k}: step size must be > 0, got {step_size}")
            self.step_sizes[k] = step_size
        if noise is not None:
            if not noise > 0:
                raise ValueError(f"learner {k}: noise must be > 0, got {noise}")
            self.noises[k] = noise
        self._event(event, k, k if parent is None else parent, before)

    # -- helpers for strategies ------------------------------------------------------------------
    def generator(self, name: str, counter: int) -> torch.Generator:
        """A torch.Generator that is a pure function of (job seed, `name`, `counter`)."""
        seed = self.hyper.seed if hasattr(self, "hyper") else self.config.seed
        state = np.random.SeedSequence([int(seed), zlib.crc32(name.encode()), int(counter)])
        return torch.Generator().manual_seed(int(state.generate_state(1, np.uint64)[0] >> 1))

    def score_thetas(self, thetas: torch.Tensor, batch) -> torch.Tensor:
        """Scores (K,) of parameter vectors (K, d) on `batch`, through the backend."""
        return self.backend.score_thetas(self.space, self.task, thetas, batch)

    def clone(self, dst: int, src: int) -> None:
        """Learner `dst` becomes a copy of learner `src`: θ, fitness, hyperparameters (the exploit of
        population-based training) and every strategy's state."""
        self.thetas[dst] = self.thetas[src]
        self.fitness[dst] = self.fitness[src]
        if hasattr(self, "step_sizes"):
            before = (float(self.step_sizes[dst]), float(self.noises[dst]))
            self.step_sizes[dst], self.noises[dst] = self.step_sizes[src], self.noises[src]
            self.step_length[dst], self.score_spread[dst] = self.step_length[src], self.score_spread[src]
            self._event("exploit", dst, src, before)
        for s in self.strategies:
            s.on_clone(self, dst, src)

    def distances(self) -> torch.Tensor:
        """RMS distance (‖·‖₂/√d) of every learner to the best."""
        return rms_distance(self.thetas, self.thetas[self.best])

    def strategy(self, name: str) -> Strategy | None:
        return next((s for s in self.strategies if s.name == name), None)

    def _select_best(self) -> None:
        self.best = int(torch.argmax(self.fitness))
        self.space.load_(self.thetas[self.best])

    # -- the shared iteration's hooks (arsearch.learner.Learner.step) ------------------------------
    def _evaluate(self, seeds, noises, batch):
        self._previous = self.thetas.clone()
        # one noise for all: a plain float, so every backend's evaluate_many takes it as it always did
        scale = float(noises[0]) if bool((noises == noises[0]).all()) else noises
        return self.backend.evaluate_many(self.space, self.task, self.noise, self.thetas, seeds, scale, batch)

    def _apply(self, seeds, weights):
        self.thetas = self.backend.apply_many(self.space, self.noise, self.thetas, seeds, weights)

    def _after_apply(self, iteration: int, result: StepResult, batch) -> dict[str, float]:
        previous, self._batch = self._previous, batch
        rewards = result.rewards
        self.step_length = rms_distance(self.thetas, previous).cpu()
        self.score_spread = rewards.std(1, unbiased=False)
        mean = rewards.mean(1)
        beta = self.fitness_ema if self.steps_done > 0 else 0.0    # the first iteration has no history
        self.fitness = beta * self.fitness + (1.0 - beta) * mean
        metrics: dict[str, float] = {"population/acceptance_rate": 1.0}
        for s in self.strategies:
            metrics.update(s.after_step(self, iteration, previous, batch))
        return metrics

    def _after_update(self, iteration: int, result: StepResult) -> dict[str, float]:
        metrics: dict[str, float] = {}
        self.steps_done = iteration + 1
        self.best = int(torch.argmax(self.fitness))
        if (iteration + 1) % self.epoch == 0:
            epoch = (iteration + 1) // self.epoch
            if self.fitness_mode == "eval":
                self.fitness = self._evaluate_fitness(self._batch)
                self.best = int(torch.argmax(self.fitness))
            for s in self.strategies:
                metrics.update(s.on_epoch(self, epoch))
        self._batch = None
        if not torch.isfinite(self.thetas).all():
            raise DivergenceError("a learner's parameter became NaN or inf")
        self._select_best()
        dist = self.distances().cpu()
        others = torch.arange(self.size) != self.best
        metrics.update({
            "train/score": float(self.fitness[self.best]),
            "population/best": float(self.fitness.max()),
            "population/median": float(self.fitness.median()),
            "population/mean": float(self.fitness.mean()),
            "population/diversity": float(dist[others].mean()) if others.any() else 0.0,
            "population/best_index": float(self.best),
            "population/step_size_best": float(self.step_sizes[self.best]),
            "population/noise_best": float(self.noises[self.best]),
        })
        for k in range(self.size):
            metrics[f"population/learner_{k}/score"] = float(self.fitness[k])
            metrics[f"population/learner_{k}/distance"] = float(dist[k])
            metrics.setdefault(f"population/learner_{k}/acceptance", 1.0)
        return metrics

    def _evaluate_fitness(self, batch) -> torch.Tensor:
        """Each learner's unperturbed θ scored on `batch` (all learners on the same data / reset seed)."""
        same = self.task.select(batch, [0] * self.size)
        return self.score_thetas(self.thetas, same).double().cpu()

    # -- checkpoints -------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"thetas": self.thetas.clone(), "fitness": self.fitness.clone(), "best": self.best,
                "step_sizes": self.step_sizes.clone(), "noises": self.noises.clone(),
                "step_length": self.step_length.clone(), "score_spread": self.score_spread.clone(),
                "steps_done": self.steps_done, "lineage": [dict(e) for e in self.lineage],
                "strategies": [{"name": s.name, "state": s.state_dict()} for s in self.strategies]}

    def load_state_dict(self, state: dict) -> None:
        if not state:
            return
        thetas = state["thetas"]
        if tuple(thetas.shape) != (self.size, self.dim):
            raise ValueError(f"checkpointed population has shape {tuple(thetas.shape)}, "
                             f"this job has population.size = {self.size} learners of dimension {self.dim}")
        names = [s["name"] for s in state.get("strategies", [])]
        if names != [s.name for s in self.strategies]:
            raise ValueError(f"checkpointed population strategies {names} differ from this job's "
                             f"{[s.name for s in self.strategies]}")
        self.thetas = thetas.clone().to(self.thetas.device, self.thetas.dtype)
        self.fitness = state["fitness"].clone().double()
        for key in ("step_sizes", "noises", "step_length", "score_spread"):
            if key in state:
                setattr(self, key, state[key].clone().double())
        self.steps_done = int(state.get("steps_done", 0))
        if "lineage" in state:
            self.lineage = [dict(e) for e in state["lineage"]]
        for s, saved in zip(self.strategies, state.get("strategies", [])):
            s.load_state_dict(saved["state"])
        self.best = int(state.get("best", 0))
        self.space.load_(self.thetas[self.best])

    def summary(self) -> dict:
        """Extra results for metrics.json: the lineage and the final hyperparameters per learner."""
        return {"lineage": [dict(e) for e in self.lineage],
                "hyperparameters": {"step_size": self.step_sizes.tolist(), "noise": self.noises.tolist()}}


def hyperparameters_at(lineage: list[dict], iteration: int | None = None) -> dict[int, dict[str, float]]:
    """Replay a lineage: each learner's step size and noise after the events up to `iteration`
    (all events when None). Events are applied in order, so a run's hyperparameter schedule can be
    read back from ``metrics.json`` (or MLflow's ``lineage.json``) and replayed."""
    out: dict[int, dict[str, float]] = {}
    for e in lineage:
        if iteration is not None and e["iteration"] > iteration:
            break
        out[int(e["learner"])] = {"step_size": float(e["step_size_after"]), "noise": float(e["noise_after"])}
    return out
