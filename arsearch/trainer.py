"""One ARS training job: build the task, run iterations, evaluate, checkpoint, resume."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch

from . import checkpoint as ckpt
from .ars import DivergenceError, normalizes_states, update_weights
from .backends import make_backend
from .callbacks import Callback
from .config import JobConfig, to_toml
from .noise import iteration_seeds, make_noise
from .spaces import FullSpace, ParameterSpace
from .tasks import build_task


class ARSLearner:
    """A single ARS learner whose θ lives in the task's model."""

    def __init__(self, config: JobConfig, task, space: ParameterSpace, noise, backend, stream: int = 0):
        self.config, self.task, self.space, self.noise, self.backend = config, task, space, noise, backend
        self.stream = stream

    def step(self, iteration: int) -> dict[str, float]:
        a = self.config.ars
        seeds = iteration_seeds(self.config.seed, iteration, a.directions, stream=self.stream)
        batch = self.task.batch(iteration)
        r_plus, r_minus = self.backend.evaluate(self.space, self.task, self.noise, seeds, a.noise, batch)
        weights = update_weights(r_plus, r_minus, a.step_size, a.top, a.version)
        self.backend.apply(self.space, self.noise, seeds, weights)
        if normalizes_states(a.version) and self.task.normalizer is not None:
            stats = self.backend.merge_stats(self.task.pop_state_stats())
            if stats is not None:
                self.task.normalizer.update(stats)
        self.task.after_step(batch)
        rewards = torch.cat([r_plus, r_minus])
        return {"train/score": float(rewards.mean()), "train/score_max": float(rewards.max()),
                "train/step_scale": float(weights.abs().sum())}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"task.device = {name!r} but no CUDA device is available")
    return device


def build_space(config: JobConfig, model) -> ParameterSpace:
    if config.compress is not None:
        from .compress import build_compressed_space

        return build_compressed_space(config, model)
    return FullSpace(model)


class TrainingDiverged(RuntimeError):
    pass


class Trainer:
    """Runs one job. ``run()`` returns the final metrics and writes them to ``<checkpoint.dir>/metrics.json``."""

    def __init__(self, config: JobConfig, callbacks: list[Callback] | None = None, progress: bool = True,
                 task=None, is_writer: bool = True):
        self.config = config
        self.callbacks = list(callbacks or [])
        self.progress = progress
        self.is_writer = is_writer      # only one process writes checkpoints (the distributed backend's rank 0)
        torch.manual_seed(config.seed)
        if config.ars.backend == "distributed":  # each rank on its own device (cuda:LOCAL_RANK)
            from .backends.distributed import rank_device

            self.device = rank_device(config.task.device)
        else:
            self.device = resolve_device(config.task.device)
        self.task = task if task is not None else build_task(config, self.device)
        self.model = self.task.model
        if task is None and config.model is not None and config.model.checkpoint:
            # start from pretrained weights ([model] checkpoint); post-training passes a loaded task
            from .posttrain import load_weights

            load_weights(self.task, config.model.checkpoint)
        self.space = build_space(config, self.model)
        if config.compress is not None:
            from .compress import compression_callbacks

            self.callbacks[:0] = compression_callbacks(config)   # first, so other callbacks see its metrics
        self.noise = make_noise(config.ars.noise_source, config.ars.table_size, config.ars.noise_rank,
                                getattr(self.space, "shapes", None))
        self.backend = make_backend(config.ars.backend, config)
        if not getattr(self.backend, "is_writer", True):  # a distributed rank other than 0: no logs, no files
            self.is_writer, self.progress, self.callbacks = False, False, []
        if config.population is not None:
            from .population import Population

            self.learner = Population(config, self.task, self.space, self.noise, self.backend)
        elif config.ars.backend == "hogwild":  # workers step asynchronously; the learner relays their steps
            from .backends.hogwild import HogwildLearner

            self.learner = HogwildLearner(config, self.task, self.space, self.noise, self.backend)
        else:
            self.learner = ARSLearner(config, self.task, self.space, self.noise, self.backend)
        self.iteration = 0
        self.history: list[dict[str, float]] = []
        self.last_eval: dict[str, float] = {}
        self.elapsed = 0.0
        self.dir = Path(config.checkpoint.dir)
        self.last_checkpoint: Path | None = None
        self.stop_requested = False

    def request_stop(self) -> None:
        """Ask the loop to finish after the current iteration (a callback's early stop)."""
        self.stop_requested = True

    # -- checkpoints -------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"format": ckpt.FORMAT, "iteration": self.iteration, "model": self.model.state_dict(),
                "task": self.task.state_dict(), "learner": self.learner.state_dict(),
                "elapsed": self.elapsed, "config": to_toml(self.config),
                **({"space": self.space.state_dict()} if hasattr(self.space, "state_dict") else {})}

    def save_checkpoint(self, name: str | None = None) -> Path | None:
        if not self.is_writer:
            return None
        path = self.dir / name if name else ckpt.numbered(self.dir, self.iteration)
        ckpt.save(path, self.state_dict())
        self.last_checkpoint = path
        for cb in self.callbacks:
            cb.on_checkpoint(self, path)
        return path

    def load_checkpoint(self, path) -> None:
        state = ckpt.load(path, map_location=self.device)
        if not isinstance(state, dict) or state.get("format") != ckpt.FORMAT:
            raise ckpt.CheckpointError(f"{path} is not an arsearch training checkpoint")
        try:
            self.model.load_state_dict(state["model"])
        except RuntimeError as e:
            raise ckpt.CheckpointError(f"{path} does not fit this job's model: {e}") from None
        if "space" in state and hasattr(self.space, "load_state_dict"):
            self.space.load_state_dict(state["space"])   # compression masks and codebooks
        self.task.load_state_dict(state.get("task", {}))
        self.learner.load_state_dict(state.get("learner", {}))
        self.iteration = int(state["iteration"])
        self.elapsed = float(state.get("elapsed", 0.0))
        self.last_checkpoint = Path(path)

    # -- the loop ----------------------------------------------------------------------------------
    def evaluate(self) -> dict[str, float]:
        metrics = {f"eval/{k}": v for k, v in self.task.evaluate().items()}
        self.last_eval = metrics
        return metrics

    def _counters(self) -> dict[str, float]:
        return {f"count/{k}": float(v) for k, v in self.task.counters.items()}

    def run(self, resume: bool = False) -> dict:
        cfg = self.config
        if resume:
            path = ckpt.latest(self.dir)
            if path is None:
                raise ckpt.CheckpointError(f"--resume: no checkpoint in {self.dir}")
            self.load_checkpoint(path)
        for cb in self.callbacks:
            cb.on_start(self)
        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=cfg.ars.iterations, initial=self.iteration, unit="it", dynamic_ncols=True)
        start = time.perf_counter() - self.elapsed
        try:
            while self.iteration < cfg.ars.iterations:
                try:
                    metrics = self.learner.step(self.iteration)
                    self._check_finite()
                except DivergenceError as e:
                    where = (f"the last good checkpoint is {self.last_checkpoint}" if self.last_checkpoint
                             else "no checkpoint had been written yet")
                    raise TrainingDiverged(f"training diverged at iteration {self.iteration}: {e}; {where}") from None
                self.iteration += 1
                self.elapsed = time.perf_counter() - start
                metrics.update(self._counters())
                metrics["time/elapsed_s"] = self.elapsed
                self.history.append({"iteration": self.iteration, **metrics})
                for cb in self.callbacks:
                    cb.on_iteration(self, self.iteration, metrics)
                if self.iteration % cfg.eval.every == 0 or self.iteration == cfg.ars.iterations:
                    evals = self.evaluate()
                    self.history[-1].update(evals)
                    for cb in self.callbacks:
                        cb.on_eval(self, self.iteration, evals)
                if self.iteration % cfg.checkpoint.every == 0:
                    self.save_checkpoint()
                if bar is not None:
                    bar.update(1)
                    post = {"score": f"{metrics['train/score']:.4g}"}
                    key = f"eval/{self.task.metric}"
                    if key in self.last_eval:
                        post[self.task.metric] = f"{self.last_eval[key]:.4g}"
                    bar.set_postfix(post, refresh=False)
                if self.stop_requested:
                    break
        finally:
            if bar is not None:
                bar.close()
            close = getattr(self.learner, "close", None)
            if close is not None:  # a learner with processes of its own (hogwild) stops them, even on error
                close()
        return self._finish()

    def _check_finite(self) -> None:
        if not torch.isfinite(self.space.vector()).all():
            raise DivergenceError("a parameter became NaN or inf")

    def _finish(self) -> dict:
        evals = self.last_eval if self.history and "eval/" + self.task.metric in self.history[-1] else self.evaluate()
        final = self.save_checkpoint("final.pt")
        last_train = self.history[-1] if self.history else {}
        result = {"iterations": self.iteration, **evals,
                  **{k: v for k, v in last_train.items() if k.startswith("train/")},
                  **self._counters(), "time/elapsed_s": self.elapsed,
                  "checkpoint": str(final) if final else None}
        result = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in result.items()}
        if self.is_writer:
            (self.dir / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
        for cb in self.callbacks:
            cb.on_end(self, result)
        self.task.close()
        self.backend.close()
        return result
