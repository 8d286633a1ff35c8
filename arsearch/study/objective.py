"""The Optuna objective: one trial = one ARS training job, in this process or as a subprocess.

In-process trials run a `Trainer` with a `PruningCallback` (intermediate evaluation scores go
to `trial.report`, and `trial.should_prune()` stops the job). Subprocess trials run
`arsearch train <trial TOML>` (with `--nproc P` for the distributed backend, under `torchrun`)
with `CUDA_VISIBLE_DEVICES` taken from a `DevicePool`, so that concurrent trials never share a
GPU; the child appends its evaluations to the file named by `ARSEARCH_EVAL_LOG`, which this
process tails, reports to Optuna and answers by terminating the child when the pruner says so.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import optuna

from ..callbacks import Callback
from ..config import ConfigError, JobConfig, to_toml
from .space import StudySpec

EVAL_LOG_ENV = "ARSEARCH_EVAL_LOG"


def job_metrics(config: JobConfig, task) -> list[str]:
    """The metrics a job's result holds, which a study may optimise: eval/* (asked of the task),
    train/*, count/* (the counters its task kind declares) and time/elapsed_s."""
    from ..config import task_of

    evals = [f"eval/{k}" for k in task.evaluate()]
    counters = [f"count/{c}" for c in task_of(config).counters]
    return [*evals, "train/score", "train/score_max", "train/step_scale", *counters, "time/elapsed_s"]


class TrialFailed(RuntimeError):
    """A trial that could not produce its objective values (the reason is stored on the trial)."""


class Reporter:
    """Sends a trial's evaluations to Optuna (`trial.report`) and raises TrialPruned when the pruner says so.

    The step is the iteration (``spend=None``, one report every `every` iterations) or the trial's
    spend (`arsearch.study.spend`): with a `grid`, the spend rounded down to it, one report per grid
    step, so that trials of different N meet at the same steps; without, the raw spend at every
    `every` iterations. With a `target` (value, whether it is a loss), the reported value is the
    gap to it (lower is better, as the spend-to-target objective), and a trial is never pruned at
    the evaluation where it reaches the target.
    """

    def __init__(self, trial, metric: str, report: bool = True, every: int = 1, spend: str | None = None,
                 grid: int = 0, target: tuple[float, bool] | None = None):
        self.trial, self.metric, self.report, self.every = trial, metric, report, every
        self.spend, self.grid, self.target = spend, grid, target
        self.last_step = -1

    def __call__(self, iteration: int, row: dict) -> None:
        value = row.get(self.metric)
        if not self.report or value is None or not math.isfinite(value):
            return
        if self.spend is None:
            if iteration % self.every:
                return
            step = int(iteration)
        else:
            from .spend import SPEND_KEYS, as_step

            spent = row.get(SPEND_KEYS[self.spend])
            if spent is None:
                return
            step = as_step(self.spend, spent)
            if self.grid:
                step = step // self.grid * self.grid
                if step == 0:           # less than one grid step spent: no equal-spend peer to compare with
                    return
            elif iteration % self.every:
                return
            if step <= self.last_step:
                return
        reached = False
        if self.target is not None:
            goal, is_loss = self.target
            value = value - goal if is_loss else goal - value
            reached = value <= 0
        self.trial.report(float(value), step=step)
        self.last_step = step
        if not reached and self.trial.should_prune():
            at = f"{self.spend} {step}" if self.spend else f"iteration {iteration}"
            raise optuna.TrialPruned(f"pruned at {at} with {self.metric} = {row.get(self.metric):.6g}")


class PruningCallback(Callback):
    """Reports evaluations of the study's metric to the trial (every `every` iterations, or through a
    spend-stepped `reporter`) and raises TrialPruned when the pruner says so."""

    def __init__(self, trial: optuna.Trial, metric: str, report: bool = True, every: int = 1,
                 reporter: Reporter | None = None):
        self.reporter = reporter or Reporter(trial, metric, report, every)

    def on_eval(self, trainer, iteration: int, metrics: dict[str, float]) -> None:
        row = trainer.history[-1] if trainer.history else {}
        self.reporter(iteration, {**row, **metrics})


def report_every(config: JobConfig, max_reports: int) -> int:
    """Iterations between reports to Optuna: every evaluation, thinned to at most `max_reports` per
    trial (0 = no limit). A report and a should_prune cost a few storage round trips (10-50 ms on
    SQLite), which a long trial evaluating every few iterations should not pay each time."""
    every = config.eval.every
    evals = max(config.ars.iterations // every, 1)
    if max_reports <= 0 or evals <= max_reports:
        return every
    return every * math.ceil(evals / max_reports)


class EvalLogCallback(Callback):
    """Appends JSON lines to `path`: {"iteration", "train": {...}} per iteration and {"iteration",
    "metrics": {...}} per evaluation. Lines are written (and flushed) at each evaluation, so the
    reader sees every iteration line before the evaluation that follows it."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._pending: list[str] = []

    def on_iteration(self, trainer, iteration, metrics) -> None:
        if trainer.is_writer:
            self._pending.append(json.dumps({"iteration": iteration, "train": _finite(metrics)}))

    def on_eval(self, trainer, iteration, metrics) -> None:
        if trainer.is_writer:
            self._pending.append(json.dumps({"iteration": iteration, "metrics": _finite(metrics)}))
            self._write()

    def on_end(self, trainer, result) -> None:
        if trainer.is_writer:
            self._write()

    def _write(self) -> None:
        if self._pending:
            with self.path.open("a") as f:
                f.write("\n".join(self._pending) + "\n")
                f.flush()
            self._pending = []


def _finite(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)}


def eval_log_callback() -> EvalLogCallback | None:
    path = os.environ.get(EVAL_LOG_ENV)
    return EvalLogCallback(path) if path else None


class DevicePool:
    """GPU ids handed out to subprocess trials, one lock file per device (fcntl.flock).

    Locks are held by open file descriptions, so they exclude concurrent trials in threads of this
    process *and* in other `arsearch study run` processes on the same machine, and a killed worker
    releases its devices automatically.
    """

    def __init__(self, devices: list[int] | None = None, lock_dir: str | Path | None = None):
        if devices is None:
            try:
                import torch

                devices = list(range(torch.cuda.device_count()))
            except Exception:                 # noqa: BLE001
                devices = []
        self.devices = list(devices)
        self.lock_dir = Path(lock_dir or Path(tempfile.gettempdir()) / "arsearch-gpu-locks")

    def acquire(self, count: int, poll: float = 0.5, stop: threading.Event | None = None) -> tuple[list[int], list]:
        if count > len(self.devices):
            raise TrialFailed(f"the trial needs {count} GPU(s) but the device pool has {len(self.devices)}: "
                              f"{self.devices}")
        self.lock_dir.mkdir(parents=True, exist_ok=True)
        while True:
            held: list[tuple[int, Any]] = []
            for dev in self.devices:
                f = open(self.lock_dir / f"gpu{dev}.lock", "a")   # noqa: SIM115 - kept open while held
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    f.close()
                    continue
                held.append((dev, f))
                if len(held) == count:
                    return [d for d, _ in held], [h for _, h in held]
            self.release([h for _, h in held])
            if stop is not None and stop.is_set():
                raise TrialFailed("stopped while waiting for a free GPU")
            time.sleep(poll)

    @staticmethod
    def release(handles: list) -> None:
        for f in handles:
            try:
                fcntl.flock(f, fcntl.LOCK_UN)
            finally:
                f.close()


def _kill_group(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """Stop the child and everything it started (torchrun's ranks): SIGTERM, then SIGKILL."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


def train_command(config_path: Path, config: JobConfig, resume: bool = False, overwrite: bool = False) -> list[str]:
    cmd = [sys.executable, "-m", "arsearch.cli", "train", str(config_path), "--quiet",
           "--set", "tracking.enabled=false"]
    if config.ars.backend == "distributed":
        cmd += ["--nproc", str(config.ars.nproc)]
    if resume:
        cmd += ["--resume"]
    elif overwrite:
        cmd += ["--overwrite"]
    return cmd


def restart_mode(job_dir: Path) -> tuple[bool, bool]:
    """(resume, overwrite) for a job whose directory a killed worker may have left: resume from its
    last iteration checkpoint; a directory holding only a final checkpoint (the job ended, its result
    was never stored) is trained again from the start."""
    from .. import checkpoint as ckpt

    if ckpt.latest(job_dir) is not None:
        return True, False
    return False, bool(ckpt.existing(job_dir))


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the thread that started it dies (Linux), so a trial's
    job never outlives a killed worker (kill -9 included)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)     # PR_SET_PDEATHSIG
    except Exception:                                                         # noqa: BLE001 - not Linux
        pass


def devices_needed(config: JobConfig, pool: DevicePool) -> int:
    """GPUs a subprocess trial takes from the pool: one per rank when GPUs exist and the job may use them."""
    if not pool.devices or config.task.device == "cpu" and config.ars.backend != "distributed":
        return 0
    return config.ars.nproc if config.ars.backend == "distributed" else 1


def run_subprocess_trial(trial, config: JobConfig, trial_dir: Path, metric: str, report: bool,
                         pool: DevicePool, on_line=None, poll: float = 0.2, every: int = 1,
                         reporter: Reporter | None = None, resume: bool = False, overwrite: bool = False,
                         stop: threading.Event | None = None, label: str = "",
                         env_extra: dict[str, str] | None = None) -> tuple[dict, list[dict]]:
    """Run `arsearch train` for this trial; returns (metrics.json, history). Raises TrialPruned/TrialFailed.

    `resume`: continue the job in `trial_dir` from its checkpoint; `stop` (set by another thread) ends
    the job early with TrialFailed; `label` ("seed 42") names the job in the trial's attributes."""
    reporter = reporter or Reporter(trial, metric, report, every)
    trial_dir.mkdir(parents=True, exist_ok=True)
    config_path = trial_dir / "config.toml"
    # what this worker runs (tracking is switched off on its command line); the header says how to
    # train the same job again by hand without touching this trial's directory or the study's runs
    again = f"runs/{trial_dir.parent.name}-{trial_dir.name}"
    config_path.write_text(f"# trial {trial.number}: run by arsearch study run (do not rerun it here). To train this job "
                           f"again:\n#   arsearch train {config_path} --set checkpoint.dir={again} "
                           f"--set tracking.experiment=arsearch\n" + to_toml(config))
    eval_log = trial_dir / "evals.jsonl"
    eval_log.unlink(missing_ok=True)
    (trial_dir / "metrics.json").unlink(missing_ok=True)
    env = {**os.environ, **(env_extra or {})}
    env[EVAL_LOG_ENV] = str(eval_log)
    env.setdefault("PYTHONPATH", os.pathsep.join(p for p in sys.path if p))
    count = devices_needed(config, pool)
    devices, handles = pool.acquire(count, stop=stop) if count else ([], [])
    suffix = f" ({label})" if label else ""
    if count:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, devices))
        trial.set_user_attr("devices" + suffix, devices)
    history: list[dict] = []
    log_path = trial_dir / "train.log"
    try:
        with log_path.open("w") as log_file:
            proc = subprocess.Popen(train_command(config_path, config, resume, overwrite), env=env, stdout=log_file,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    preexec_fn=_die_with_parent)
            trial.set_user_attr("pid" + suffix, proc.pid)
            offset, partial = 0, ""
            try:
                while True:
                    done = proc.poll() is not None
                    if eval_log.exists():
                        with eval_log.open() as f:
                            f.seek(offset)
                            chunk = f.read()
                            offset = f.tell()
                        lines = (partial + chunk).split("\n")
                        partial = lines.pop()          # an incomplete last line waits for the next read
                        for line in lines:
                            if not line.strip():
                                continue
                            event = json.loads(line)
                            _merge(history, event)
                            if on_line is not None:
                                on_line(event)
                            if "metrics" in event:   # the merged row: this iteration's counters and its evaluation
                                reporter(event["iteration"], history[-1])
                    if done:
                        break
                    if stop is not None and stop.is_set():
                        raise TrialFailed(f"stopped{suffix}: another job of this trial failed or was pruned")
                    time.sleep(poll)
            except BaseException:
                _kill_group(proc)
                raise
            rc = proc.returncode
    finally:
        DevicePool.release(handles)
    if rc != 0:
        tail = log_path.read_text().strip().splitlines()[-5:]
        raise TrialFailed(f"arsearch train exited with code {rc}: " + " | ".join(tail))
    return json.loads((trial_dir / "metrics.json").read_text()), history


def _merge(history: list[dict], event: dict) -> None:
    it = event["iteration"]
    row = history[-1] if history and history[-1]["iteration"] == it else None
    if row is None:
        row = {"iteration": it}
        history.append(row)
    row.update(event.get("train", {}))
    row.update(event.get("metrics", {}))


class _MetricsOnly(Callback):
    def __init__(self, child):
        self.child = child

    def on_iteration(self, trainer, iteration, metrics) -> None:
        self.child.on_iteration(trainer, iteration, metrics)

    def on_eval(self, trainer, iteration, metrics) -> None:
        self.child.on_eval(trainer, iteration, metrics)


class Objective:
    """Callable for `study.optimize`: resolves the trial's config, trains, returns the metric(s)."""

    def __init__(self, spec: StudySpec, study_name: str, tracker=None, pool: DevicePool | None = None):
        self.spec, self.study_name, self.tracker = spec, study_name, tracker
        s = spec.settings
        self.pool = pool or DevicePool(s.gpus or None)
        self.output = Path(s.output) / study_name

    def __call__(self, trial: optuna.Trial):
        s = self.spec.settings
        try:
            overrides, config = self.spec.resolve(trial)
        except ConfigError as e:
            trial.set_user_attr("fail_reason", f"invalid config: {e}")
            raise
        trial_dir = self.output / f"trial_{trial.number:05d}"
        config.checkpoint.dir = str(trial_dir)
        config.tracking.experiment = s.experiment or self.study_name
        config.tracking.run_name = f"{self.study_name}/trial-{trial.number}"
        trial.set_user_attr("overrides", overrides)
        trial.set_user_attr("checkpoint_dir", str(trial_dir))
        report = not self.spec.multi_objective          # Optuna prunes single-objective studies only
        child = self.tracker.child(trial, config) if self.tracker is not None else None
        history: list[dict] = []
        result: dict = {}
        state, reason = "FAIL", ""
        try:
            if s.seeds.active:          # a configuration on shared seeds, raced or not (arsearch.study.race)
                value = self._seeded(trial, overrides, config, child, result)
                state = "COMPLETE"
                trial.set_user_attr("result", {k: v for k, v in result.items() if isinstance(v, (int, float, str))})
                return value
            reporter = self._reporter(trial, config, report)
            if s.subprocess or config.ars.backend == "distributed":
                def on_line(event):
                    if child is not None and "train" in event:
                        child.on_iteration(None, event["iteration"], event["train"])
                    if child is not None and "metrics" in event:
                        child.on_eval(None, event["iteration"], event["metrics"])
                result, history = run_subprocess_trial(trial, config, trial_dir, s.metric, report, self.pool,
                                                       on_line=on_line, reporter=reporter)
            else:
                from ..trainer import Trainer

                callbacks: list[Callback] = [PruningCallback(trial, s.metric, reporter=reporter)]
                if child is not None:
                    # per-iteration metrics only: the child run is finished below, once the state is known
                    callbacks.insert(0, _MetricsOnly(child))
                trainer = Trainer(config, callbacks=callbacks, progress=False)
                try:
                    result = trainer.run()
                finally:
                    history = trainer.history
                    if not result:          # pruned or failed: run() did not reach _finish
                        result = {"iterations": trainer.iteration, **trainer.last_eval}
                        trainer.task.close()
                        trainer.backend.close()
            if s.objective == "spend_to_target":
                value = self._spend_to_target(trial, config, result)
                result[f"study/{s.metric}"] = value
                state = "COMPLETE"
                trial.set_user_attr("result", {k: v for k, v in result.items() if isinstance(v, (int, float, str))})
                return value
            values = []
            for m in s.metrics:
                v = result.get(m)
                if not isinstance(v, (int, float)) or not math.isfinite(v):
                    raise TrialFailed(f"metric {m!r} is {v!r} in the result; available: "
                                      f"{', '.join(k for k in result if '/' in k)}")
                values.append(float(v))
            state = "COMPLETE"
            trial.set_user_attr("result", {k: v for k, v in result.items() if isinstance(v, (int, float, str))})
            return values[0] if len(values) == 1 else values
        except optuna.TrialPruned:
            state = "PRUNED"
            raise
        except Exception as e:
            reason = f"{type(e).__name__}: {e}" if not isinstance(e, TrialFailed) else str(e)
            trial.set_user_attr("fail_reason", reason[:2000])
            trial.set_user_attr("traceback", traceback.format_exc()[-4000:])
            raise
        finally:
            if child is not None:
                self.tracker.finish_child(child, trial, state, result, history, reason)
                # sent before Optuna records the trial's state: a worker killed after COMPLETE must
                # not leave a run without its final metrics and artifacts
                from ..tracking import FINISH_TIMEOUT

                child.wait(FINISH_TIMEOUT)

    def seed_parallel(self, config: JobConfig, wanted: int) -> int:
        """Seed jobs this worker runs at once: `wanted`, else one per GPU of the pool or per CPU core."""
        if wanted:
            return wanted
        if self.pool.devices and devices_needed(config, self.pool):
            return max(1, len(self.pool.devices) // devices_needed(config, self.pool))
        return max(1, os.cpu_count() or 1)

    def _seeded(self, trial, overrides: dict, config: JobConfig, child, result: dict) -> float:
        """The trial's configuration on the study's shared tuning seeds (see arsearch.study.race)."""
        from .race import SeededTrial

        s = self.spec.settings
        parallel = self.seed_parallel(config, s.seeds.parallel)
        run_job = self.job_runner(trial, child, parallel)

        def on_seed(cid, seed, row, index):
            if child is not None and index >= 0 and cid == trial.user_attrs.get("config_id", cid):
                child.log_metrics({"seed/value": row["value"], "seed/seed": seed}, step=index)
        race = SeededTrial(self.spec, trial.study, self.output, run_job, parallel, on_seed=on_seed)
        return race(trial, overrides, config, result)

    def job_runner(self, trial, child, parallel: int):
        """run_job(config, job_dir, primary, stop) for seed jobs: a subprocess each when several run at
        once (or the study asks for subprocesses), else in this process. Only the `primary` job reports
        to the pruner and to the trial's MLflow curves. A job whose directory holds checkpoints (its
        worker was killed) resumes from them."""
        s = self.spec.settings
        report = not self.spec.multi_objective
        threads = max(1, (os.cpu_count() or 1) // parallel)

        def run_job(config: JobConfig, job_dir: Path, primary: bool, stop: threading.Event):
            reporter = self._reporter(trial, config, report and primary)
            resume, overwrite = restart_mode(job_dir)
            if parallel > 1 or s.subprocess or config.ars.backend == "distributed":
                def on_line(event):
                    if child is not None and primary and "train" in event:
                        child.on_iteration(None, event["iteration"], event["train"])
                    if child is not None and primary and "metrics" in event:
                        child.on_eval(None, event["iteration"], event["metrics"])
                return run_subprocess_trial(trial, config, job_dir, s.metric, report and primary, self.pool,
                                            on_line=on_line, reporter=reporter, resume=resume,
                                            overwrite=overwrite, stop=stop,
                                            label=f"seed {config.seed}",
                                            env_extra={"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS",
                                                                                         str(threads))})
            if overwrite:
                import shutil

                shutil.rmtree(job_dir)
            return self._in_process(trial, config, reporter, child if primary else None, resume)
        return run_job

    def _in_process(self, trial, config: JobConfig, reporter: Reporter, child, resume: bool = False):
        from ..trainer import Trainer

        callbacks: list[Callback] = [PruningCallback(trial, self.spec.settings.metric, reporter=reporter)]
        if child is not None:
            callbacks.insert(0, _MetricsOnly(child))
        trainer = Trainer(config, callbacks=callbacks, progress=False)
        result: dict = {}
        try:
            result = trainer.run(resume=resume)
        finally:
            if not result:
                trainer.task.close()
                trainer.backend.close()
        return result, trainer.history

    def _reporter(self, trial, config: JobConfig, report: bool) -> Reporter:
        """Reports stepped by spend; for spend-to-target, the gap to the target is what is reported."""
        from .spend import report_grid

        s = self.spec.settings
        grid = report_grid(config, s.spend, s.report_grid, s.max_reports)
        # without a grid, reports are thinned by iteration; evaluations on an episode grid fall on any
        # iteration, so then every one is reported
        every = 1 if config.eval.every_episodes else report_every(config, s.max_reports)
        if s.objective != "spend_to_target":
            return Reporter(trial, s.metric, report, every, s.spend, grid)
        target = self._target(config)
        return Reporter(trial, target.metric, report, every, s.spend, grid, target=(target.value, "loss" in target.metric))

    def _target(self, config: JobConfig):
        spend = self.spec.settings.spend
        if config.stop is None or config.stop.target is None or not getattr(config.stop, spend):
            raise TrialFailed(f"objective = 'spend_to_target' needs stop.target and stop.{spend} > 0, but this "
                              f"trial's config has [stop] = {config.stop}")
        return config.stop.target

    def _spend_to_target(self, trial, config: JobConfig, result: dict) -> float:
        """The spend when the target was reached; a trial that missed it is censored at budget × penalty."""
        from .spend import SPEND_KEYS

        s = self.spec.settings
        self._target(config)
        spent = result.get(SPEND_KEYS[s.spend])
        reached = result.get("stop/target_reached") == 1.0
        trial.set_user_attr("censored", not reached)
        trial.set_user_attr("spend", spent)
        if reached:
            return float(spent)
        return float(getattr(config.stop, s.spend)) * s.censored_penalty
