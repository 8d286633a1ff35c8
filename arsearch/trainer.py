"""One ARS training job: build the task, run iterations, evaluate, checkpoint, resume."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch

from . import checkpoint as ckpt
from .ars import DivergenceError
from .backends import make_backend
from .callbacks import Callback
from .config import BUDGETS, ConfigError, JobConfig, to_toml
from .learner import ARSLearner, make_learner  # noqa: F401 (ARSLearner: re-exported from here, as before)
from .noise import make_noise
from .spaces import FullSpace, ParameterSpace
from .tasks import build_task
from .timeline import mark


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
        mark("task built")
        self.model = self.task.model
        if task is None and config.model is not None and config.model.checkpoint:
            # start from pretrained weights ([model] checkpoint); post-training passes a loaded task
            from .weights import load_weights

            load_weights(self.task, config.model.checkpoint)
        self.space = build_space(config, self.model)
        # before the noise table, the backend and the learner allocate anything: refuse what cannot fit
        from .memory import check_job

        check_job(config, self.task, self.space.dim)
        if config.compress is not None:
            from .compress import compression_callbacks

            self.callbacks[:0] = compression_callbacks(config)   # first, so other callbacks see its metrics
        self.noise = make_noise(config.ars.noise_source, config.ars.table_size, config.ars.noise_rank,
                                getattr(self.space, "shapes", None))
        self.backend = make_backend(config.ars.backend, config)
        if not getattr(self.backend, "is_writer", True):  # a distributed rank other than 0: no logs, no files
            self.is_writer, self.progress, self.callbacks = False, False, []
        # from the learner registry: "population" with a [population] table, else the backend's own
        self.learner = make_learner(config, self.task, self.space, self.noise, self.backend)
        self.iteration = 0
        self.history: list[dict[str, float]] = []
        self.last_eval: dict[str, float] = {}
        self.last_eval_iteration = -1   # the iteration `last_eval` was taken at
        self._resumed_train: dict[str, float] = {}   # train/* of the checkpoint's iteration (until a step runs)
        self.stop_reason: str | None = None
        self.elapsed = 0.0
        self.dir = Path(config.checkpoint.dir)
        self.last_checkpoint: Path | None = None
        self.stop_requested = False
        self._stop_signum: int | None = None    # the signal `_signalled` found
        # SIGINT/SIGTERM handlers of the running command (train, posttrain): stop and save at an
        # iteration boundary; None in threads (study trials) and where no command installed them.
        # Under torchrun every rank has them, and the ranks agree on the iteration to stop after
        from .interrupt import active

        self.signals = active()
        self.tracking_run_id: str | None = None   # the MLflow run, kept in checkpoints so --resume continues it
        self.resumed_from: Path | None = None
        self.closed = False
        self._check_target_metric()

    def _check_target_metric(self) -> None:
        stop = self.config.stop
        known = getattr(self.task, "eval_metrics", ())
        if stop is None or stop.target is None or not known or not stop.target.metric.startswith("eval/"):
            return
        if stop.target.metric[len("eval/"):] not in known:
            raise ConfigError(f"stop.target.metric = {stop.target.metric!r}: this task's evaluation does not report "
                              f"it, so the target could never be checked; it reports "
                              f"{', '.join('eval/' + k for k in known)}")

    def request_stop(self) -> None:
        """Ask the loop to finish after the current iteration (a callback's early stop)."""
        self.stop_requested = True

    # -- checkpoints -------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"format": ckpt.FORMAT, "iteration": self.iteration, "model": self.model.state_dict(),
                "task": self.task.state_dict(), "learner": self.learner.state_dict(),
                "elapsed": self.elapsed, "config": to_toml(self.config),
                "last_eval": dict(self.last_eval), "last_eval_iteration": self.last_eval_iteration,
                "last_train": self._last_train(),
                **({"tracking_run_id": self.tracking_run_id} if self.tracking_run_id else {}),
                **({"space": self.space.state_dict()} if hasattr(self.space, "state_dict") else {})}

    def save_checkpoint(self, name: str | None = None) -> Path | None:
        if not self.is_writer:
            return None
        path = self.dir / name if name else ckpt.numbered(self.dir, self.iteration)
        if self.signals is not None:      # a signal during the write waits until the file is complete
            self.signals.saving = True
        try:
            ckpt.save(path, self.state_dict())
        finally:
            if self.signals is not None:
                self.signals.saving = False
        self.last_checkpoint = path
        for cb in self.callbacks:
            cb.on_checkpoint(self, path)
        return path

    def load_checkpoint(self, path, state: dict | None = None) -> None:
        """Restore the job from the checkpoint at `path` (or from `state`, its contents already read)."""
        if state is None:
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
        self.last_eval = {k: float(v) for k, v in state.get("last_eval", {}).items()}
        self.last_eval_iteration = int(state.get("last_eval_iteration", -1))
        self._resumed_train = {k: float(v) for k, v in state.get("last_train", {}).items()}
        self.last_checkpoint = Path(path)
        self.tracking_run_id = state.get("tracking_run_id") or self.tracking_run_id
        return state

    # -- the loop ----------------------------------------------------------------------------------
    def evaluate(self) -> dict[str, float]:
        metrics = {f"eval/{k}": v for k, v in self.task.evaluate().items()}
        self.last_eval, self.last_eval_iteration = metrics, self.iteration
        return metrics

    def _counters(self) -> dict[str, float]:
        return {f"count/{k}": float(v) for k, v in self.task.counters.items()}

    # -- stopping: budgets, target, cap ------------------------------------------------------------
    def spent(self) -> dict[str, float]:
        """What the job has spent on training so far, per budget name (evaluation not included)."""
        c = self.task.counters
        return {"episodes": c.get("episodes", 0), "env_steps": c.get("env_steps", 0),
                "forward_examples": c.get("forward_examples", 0), "seconds": self.elapsed}

    def fraction_done(self) -> float:
        """The fraction of the job done: the furthest of iterations / ars.iterations and spent / budget."""
        stop, spent = self.config.stop, self.spent()
        done = [self.iteration / max(1, self.config.ars.iterations)]
        if stop is not None:
            done += [spent[name] / getattr(stop, name) for name in BUDGETS if getattr(stop, name)]
        return min(1.0, max(done))

    def _budget_exhausted(self) -> str | None:
        stop = self.config.stop
        if stop is None:
            return None
        spent = self.spent()
        return next((name for name in BUDGETS if getattr(stop, name) and spent[name] >= getattr(stop, name)), None)

    def target_reached(self, metrics: dict[str, float]) -> bool:
        stop = self.config.stop
        if stop is None or stop.target is None:
            return False
        value = metrics.get(stop.target.metric)
        return value is not None and math.isfinite(value) and stop.reached(value)

    def _eval_due(self, episodes_before: int) -> bool:
        e = self.config.eval
        if e.every_episodes:    # the evaluation grid is in episodes: one per multiple of every_episodes crossed
            return self.task.counters.get("episodes", 0) // e.every_episodes > episodes_before // e.every_episodes
        return self.iteration % e.every == 0

    def _last_train(self) -> dict[str, float]:
        row = self.history[-1] if self.history else self._resumed_train
        return {k: v for k, v in row.items() if k.startswith("train/")}

    def _stop_on_resume(self) -> str | None:
        """A resumed job that had already met a target or budget at its checkpoint stops there again."""
        if self.last_eval_iteration == self.iteration and self.target_reached({**self.last_eval, **self._last_train()}):
            return "target"
        return self._budget_exhausted()

    def resume(self, force: bool = False) -> Path:
        """Load the latest checkpoint of checkpoint.dir, refusing one whose job differs in seed, directions or
        model, or (unless `force`) in a key that changes the training from here on."""
        import sys

        share = getattr(self.backend, "share_file", None)
        if share is None:
            path = ckpt.resumable(self.dir)
            data = None
        else:
            # distributed: the writer's checkpoint.dir holds the checkpoints (on node rank 0; the other
            # machines may not see it), so the writer reads the file and every rank loads those bytes
            found = [ckpt.resumable(self.dir)] if self.is_writer else [None]
            data = share(lambda: found[0].read_bytes() if found[0] is not None else None)
            name = share(lambda: str(found[0]).encode() if found[0] is not None else None)
            path = Path(name.decode()) if name is not None else None
        if path is None:
            raise ckpt.CheckpointError(f"--resume: no checkpoint in {self.dir}" + (
                "" if self.is_writer or share is None else " on node rank 0 (the machine that writes them)"))
        saved = ckpt.peek(path, map_location=self.device, data=data)
        changed = ckpt.check_same_job(saved.get("config", ""), self.config, path, force=force)
        if changed and self.is_writer:
            print("arsearch: --force: resuming with changed keys: " + "; ".join(changed), file=sys.stderr, flush=True)
        self.load_checkpoint(path, state=saved)
        self.resumed_from = path
        if self.is_writer:
            print(f"arsearch: resuming from {path} (iteration {self.iteration})", file=sys.stderr, flush=True)
        return path

    def run(self, resume: bool = False) -> dict:
        cfg = self.config
        if resume and self.resumed_from is None:
            self.resume()
        for cb in self.callbacks:
            cb.on_start(self)
        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=cfg.ars.iterations, initial=self.iteration, unit="it", dynamic_ncols=True)
        mark("training")
        start = time.perf_counter() - self.elapsed
        self.stop_reason = self._stop_on_resume() if resume else None
        signalled = False
        try:
            while self.stop_reason is None and self.iteration < cfg.ars.iterations:
                episodes_before = self.task.counters.get("episodes", 0)
                self.task.progress = self.fraction_done()
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
                exhausted = self._budget_exhausted()
                if self._eval_due(episodes_before) or self.iteration == cfg.ars.iterations or exhausted:
                    evals = self.evaluate()
                    self.history[-1].update(evals)
                    # decided before the callbacks see the evaluation, so a pruner's report and the stop agree
                    if self.target_reached(self.history[-1]):
                        self.stop_reason = "target"
                    for cb in self.callbacks:
                        cb.on_eval(self, self.iteration, evals)
                if self.stop_reason is None and exhausted:
                    self.stop_reason = exhausted
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
                if self._signalled():
                    signalled = True
                    break
            if self.stop_reason is None:
                self.stop_reason = "iterations" if self.iteration >= cfg.ars.iterations else "requested"
        finally:
            if bar is not None:
                bar.close()
            self.learner.close()   # a learner with processes of its own (hogwild) stops them, even on error
        if signalled and self.iteration < cfg.ars.iterations:
            raise self._interrupted()
        return self._finish()

    def _signalled(self) -> bool:
        """Whether a SIGINT/SIGTERM asks the job to stop after this iteration (every rank of a
        distributed job calls this each iteration and gets the same answer). A study's in-process
        trial has no handlers of its own: the study command's first signal stops it here, at the same
        boundary, so that it saves a checkpoint its re-queued trial resumes from."""
        if self.signals is None:
            from .interrupt import study_signals

            study = study_signals()
            self._stop_signum = study.signum if study is not None else None
            return self._stop_signum is not None
        signum = self.backend.agree_stop(self.signals.signum or 0)
        if signum and self.signals.signum is None:      # another rank got it first
            self.signals.adopt(signum)
        self._stop_signum = signum or None
        return bool(signum)

    def _interrupted(self):
        """Save the state at this iteration boundary (what --resume continues from), then stop."""
        from .interrupt import TrainingInterrupted

        path = self.last_checkpoint
        if path is None or path != ckpt.numbered(self.dir, self.iteration):
            path = self.save_checkpoint() if self.iteration > 0 else self.last_checkpoint
        self.close()
        return TrainingInterrupted(self._stop_signum, self.iteration, path)

    def _check_finite(self) -> None:
        # tensor by tensor when the space has them: `vector()` would copy the whole model
        tensors = self.space.params if isinstance(self.space, FullSpace) else [self.space.vector()]
        if not all(bool(torch.isfinite(t).all()) for t in tensors):
            raise DivergenceError("a parameter became NaN or inf")

    def _finish(self) -> dict:
        evals = self.last_eval if self.last_eval_iteration == self.iteration else self.evaluate()
        final = self.save_checkpoint("final.pt")
        spent = self.spent()
        result = {"iterations": self.iteration, **evals, **self._last_train(),
                  **self._counters(), "time/elapsed_s": self.elapsed,
                  # the budgets this task kind spends (0 when nothing was spent yet): no RL counters for a
                  # supervised or generate job
                  **{f"count/{k}": float(spent[k]) for k in BUDGETS
                     if k != "seconds" and k in getattr(self.task, "spends", BUDGETS)},
                  "stop/reason": self.stop_reason or "iterations",
                  "stop/target_reached": float(self.stop_reason == "target"),
                  "checkpoint": str(final) if final else None}
        summary = getattr(self.learner, "summary", None)     # a population's lineage and hyperparameters
        if summary is not None:
            result.update(summary())
        result = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in result.items()}
        if self.is_writer:
            (self.dir / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
        for cb in self.callbacks:
            cb.on_end(self, result)
        self.close()
        return result

    def close(self, failed: bool = False) -> None:
        """Stop the learner's processes, close the task's environments and the backend; a second call
        does nothing. After a failure a distributed rank skips the backend's closing barrier: a peer
        rank that died would hold it there until the timeout, and the exit frees the group anyway."""
        if self.closed:
            return
        self.closed = True
        try:
            self.learner.close()
            self.task.close()
        finally:
            if not (failed and self.config.ars.backend == "distributed"):
                self.backend.close()
