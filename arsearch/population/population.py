"""A population of K ARS learners trained together, with strategies acting on it every epoch."""

from __future__ import annotations

import zlib

import numpy as np
import torch

from ..ars import DivergenceError, normalizes_states, update_weights
from ..noise import iteration_seeds
from .base import Strategy
from .tabu import rms_distance


class Population:
    """K learners, each with its own θ (a row of ``thetas``, (K, d)) and its own direction-seed
    stream (``iteration_seeds(seed, iteration, N, stream=k)``; learner 0 draws what a single
    learner would).

    One ``step(iteration)``: every learner does one ARS iteration on the same mini-batch (or RL
    reset seeds) — with the vectorized backend all K·2N candidates are one batched evaluation,
    other backends loop over the learners — then each strategy's ``after_step`` runs, and every
    `epoch` iterations each strategy's ``on_epoch``, in list order.

    ``fitness`` (K,) is the mean score of a learner's 2N perturbed candidates in the latest
    iteration: free (no extra forward pass), averaged over N directions (and N reset seeds in
    RL), and comparable across learners because they share the batch. The best learner (highest
    fitness) has its θ loaded in the task's model after every step, so the trainer evaluates and
    checkpoints the best. V2 observation statistics are shared: the task's one normaliser sees
    the states of every learner.
    """

    def __init__(self, config, task, space, noise, backend, strategies: list[Strategy] | None = None):
        if config.population is None:
            raise ValueError("Population needs a config with a [population] table")
        pc = config.population
        self.config, self.task, self.space, self.noise, self.backend = config, task, space, noise, backend
        self.size, self.epoch, self.dim = pc.size, pc.epoch, space.dim
        if strategies is None:
            from . import make_strategy

            strategies = [make_strategy(name, config) for name in pc.strategies]
        self.strategies = list(strategies)
        # every learner starts from the model's θ; they part through their own direction streams
        self.thetas = space.vector().detach().clone().unsqueeze(0).repeat(self.size, 1)
        self.fitness = torch.zeros(self.size, dtype=torch.float64)
        self.best = 0
        for s in self.strategies:
            s.bind(self)

    # -- helpers for strategies ------------------------------------------------------------------
    def generator(self, name: str, counter: int) -> torch.Generator:
        """A torch.Generator that is a pure function of (job seed, `name`, `counter`)."""
        state = np.random.SeedSequence([int(self.config.seed), zlib.crc32(name.encode()), int(counter)])
        return torch.Generator().manual_seed(int(state.generate_state(1, np.uint64)[0] >> 1))

    def score_thetas(self, thetas: torch.Tensor, batch) -> torch.Tensor:
        """Scores (K,) of parameter vectors (K, d) on `batch`, through the backend."""
        return self.backend.score_thetas(self.space, self.task, thetas, batch)

    def clone(self, dst: int, src: int) -> None:
        """Learner `dst` becomes a copy of learner `src` (θ, fitness, and every strategy's state)."""
        self.thetas[dst] = self.thetas[src]
        self.fitness[dst] = self.fitness[src]
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

    # -- the learner interface (as trainer.ARSLearner) ----------------------------------------------
    def step(self, iteration: int) -> dict[str, float]:
        a = self.config.ars
        seeds = [iteration_seeds(self.config.seed, iteration, a.directions, stream=k) for k in range(self.size)]
        batch = self.task.batch(iteration)
        previous = self.thetas.clone()
        r_plus, r_minus = self.backend.evaluate_many(self.space, self.task, self.noise, self.thetas, seeds,
                                                     a.noise, batch)
        weights = torch.stack([update_weights(r_plus[k], r_minus[k], a.step_size, a.top, a.version)
                               for k in range(self.size)])
        self.thetas = self.backend.apply_many(self.space, self.noise, self.thetas, seeds, weights)
        rewards = torch.cat([r_plus, r_minus], dim=1)
        self.fitness = rewards.mean(1)
        metrics: dict[str, float] = {"population/acceptance_rate": 1.0}
        for s in self.strategies:
            metrics.update(s.after_step(self, iteration, previous, batch))
        if normalizes_states(a.version) and self.task.normalizer is not None:
            stats = self.backend.merge_stats(self.task.pop_state_stats())
            if stats is not None:
                self.task.normalizer.update(stats)
        self.best = int(torch.argmax(self.fitness))
        if (iteration + 1) % self.epoch == 0:
            epoch = (iteration + 1) // self.epoch
            for s in self.strategies:
                metrics.update(s.on_epoch(self, epoch))
        if not torch.isfinite(self.thetas).all():
            raise DivergenceError("a learner's parameter became NaN or inf")
        self._select_best()
        self.task.after_step(batch)
        dist = self.distances().cpu()
        others = torch.arange(self.size) != self.best
        metrics.update({
            "train/score": float(self.fitness[self.best]),
            "train/score_max": float(rewards.max()),
            "train/step_scale": float(weights.abs().sum(1).mean()),
            "population/best": float(self.fitness.max()),
            "population/median": float(self.fitness.median()),
            "population/mean": float(self.fitness.mean()),
            "population/diversity": float(dist[others].mean()) if others.any() else 0.0,
            "population/best_index": float(self.best),
        })
        for k in range(self.size):
            metrics[f"population/learner_{k}/score"] = float(self.fitness[k])
            metrics[f"population/learner_{k}/distance"] = float(dist[k])
            metrics.setdefault(f"population/learner_{k}/acceptance", 1.0)
        return metrics

    def state_dict(self) -> dict:
        return {"thetas": self.thetas.clone(), "fitness": self.fitness.clone(), "best": self.best,
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
        for s, saved in zip(self.strategies, state.get("strategies", [])):
            s.load_state_dict(saved["state"])
        self.best = int(state.get("best", 0))
        self.space.load_(self.thetas[self.best])
