"""The Optuna objective: one trial = one ARS training job, in this process or as a subprocess.

In-process trials run a `job.Job` (the lifecycle `arsearch train` runs) with a `PruningCallback`
(`reporting`: intermediate evaluation scores go to `trial.report`, and `trial.should_prune()`
stops the job). Subprocess trials run `arsearch train <trial TOML>` (`subprocess_trial`: the
child streams its evaluations back through the file named by `ARSEARCH_EVAL_LOG`, which this
process tails, reports to Optuna and answers by terminating the child when the pruner says so).
"""

from __future__ import annotations

import math
import os
import threading
import traceback
from pathlib import Path

import optuna

from ..callbacks import Callback
from ..config import ConfigError, JobConfig
from ..interrupt import StudyInterrupted, TrainingInterrupted
from .reporting import PruningCallback, Reporter, TrialFailed, report_every
from .space import StudySpec
from .subprocess_trial import (  # noqa: F401 (the protocol's names, importable from here as before)
    EVAL_LOG_ENV,
    DevicePool,
    EvalLogCallback,
    devices_needed,
    eval_log_callback,
    run_subprocess_trial,
    runs_own_processes,
    train_command,
)


def job_metrics(config: JobConfig, task) -> list[str]:
    """The metrics a job's result holds, which a study may optimise: eval/* (asked of the task),
    train/*, count/* (the counters its task kind declares) and time/elapsed_s."""
    from ..config import task_of

    evals = [f"eval/{k}" for k in task.evaluate()]
    counters = [f"count/{c}" for c in task_of(config).counters]
    return [*evals, "train/score", "train/score_max", "train/step_scale", *counters, "time/elapsed_s"]


def restart_mode(job_dir: Path) -> tuple[bool, bool]:
    """(resume, overwrite) for a job whose directory a killed worker may have left: resume from its
    last iteration checkpoint; a directory holding only a final checkpoint (the job ended, its result
    was never stored) is trained again from the start."""
    from .. import checkpoint as ckpt

    if ckpt.latest(job_dir) is not None:
        return True, False
    return False, bool(ckpt.existing(job_dir))


def _so_far(job, result: dict) -> tuple[dict, list[dict]]:
    """(result, history) of an in-process job; for one pruned or failed, the iterations and the last
    evaluation it got to."""
    if job.trainer is None:          # refused before training
        return result, []
    if not result:
        result = {"iterations": job.trainer.iteration, **job.trainer.last_eval}
    return result, job.trainer.history


REQUEUED_FROM = "requeued_from"     # user attr of a trial queued again because a signal stopped trial N


def interrupted_trial(trial: optuna.Trial):
    """The trial (frozen) that `trial` continues, queued again because a signal stopped it; else None."""
    number = trial.user_attrs.get(REQUEUED_FROM)
    if number is None:
        return None
    return next((t for t in trial.study.get_trials(deepcopy=False) if t.number == number), None)


class _MetricsOnly(Callback):
    def __init__(self, child):
        self.child = child

    def on_iteration(self, trainer, iteration, metrics) -> None:
        self.child.on_iteration(trainer, iteration, metrics)

    def on_eval(self, trainer, iteration, metrics) -> None:
        self.child.on_eval(trainer, iteration, metrics)


class Objective:
    """Callable for `study.optimize`: resolves the trial's config, trains, returns the metric(s)."""

    def __init__(self, spec: StudySpec, study_name: str, tracker=None, pool: DevicePool | None = None,
                 nodes=None):
        self.spec, self.study_name, self.tracker = spec, study_name, tracker
        self.nodes = nodes          # `launch.Nodes`: this is node rank 0 of several machines a trial's job spans
        s = spec.settings
        self.pool = pool or DevicePool(s.gpus or None)
        self.output = Path(s.output) / study_name
        # trial number -> the Reporter of its primary job, whose full curve the trial stores at its end
        self._curves: dict[int, Reporter] = {}
        # trial number -> (last step, curve) of the interrupted trial it continues (`_carry`)
        self._carried: dict[int, tuple[int, list]] = {}

    def __call__(self, trial: optuna.Trial):
        s = self.spec.settings
        try:
            overrides, config = self.spec.resolve(trial)
        except ConfigError as e:
            trial.set_user_attr("fail_reason", f"invalid config: {e}")
            raise
        # a trial re-queued because a signal stopped trial N (`requeued_from`) continues N's job: its
        # checkpoint directory (or seed jobs' directories), its MLflow run and its reports to the pruner
        previous = interrupted_trial(trial)
        trial_dir = self.output / f"trial_{trial.number:05d}"
        if previous is not None and previous.user_attrs.get("checkpoint_dir"):
            trial_dir = Path(previous.user_attrs["checkpoint_dir"])
        config.checkpoint.dir = str(trial_dir)
        config.tracking.experiment = s.experiment or self.study_name
        config.tracking.run_name = f"{self.study_name}/trial-{trial.number}"
        trial.set_user_attr("overrides", overrides)
        trial.set_user_attr("checkpoint_dir", str(trial_dir))
        report = not self.spec.multi_objective          # Optuna prunes single-objective studies only
        child = None
        if self.tracker is not None:
            run_id = previous.user_attrs.get("mlflow_run_id") if previous is not None else None
            child = self.tracker.child(trial, config, continue_run=run_id,
                                       requeued_from=previous.number if previous is not None else None)
        if previous is not None:
            self._carry(trial, previous)
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
            if s.subprocess or runs_own_processes(config):
                def on_line(event):
                    if child is not None and "train" in event:
                        child.on_iteration(None, event["iteration"], event["train"])
                    if child is not None and "metrics" in event:
                        child.on_eval(None, event["iteration"], event["metrics"])
                resume, overwrite = restart_mode(trial_dir) if previous is not None else (False, False)
                result, history = run_subprocess_trial(trial, config, trial_dir, s.metric, report, self.pool,
                                                       on_line=on_line, reporter=reporter, nodes=self.nodes,
                                                       resume=resume, overwrite=overwrite)
            else:
                # the trial's directory is its own: checkpoints an earlier study of this name left there go,
                # unless this trial continues the interrupted job whose directory it is
                resume = previous is not None and restart_mode(trial_dir)[0]
                job = self._job(trial, config, reporter, child, resume=resume, overwrite=not resume)
                try:
                    with job:
                        result = job.run()
                finally:
                    result, history = _so_far(job, result)
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
        except (StudyInterrupted, TrainingInterrupted) as e:
            # Optuna records it FAIL (it is a KeyboardInterrupt) and re-raises it; the attribute says why,
            # with no fail_reason (an interrupted trial is not a failed configuration). An in-process job
            # stops with TrainingInterrupted once its checkpoint is written (`Trainer._signalled`)
            import signal

            trial.set_user_attr("interrupted", signal.Signals(e.signum).name)
            if not isinstance(e, StudyInterrupted):
                raise StudyInterrupted(e.signum) from None
            raise
        except Exception as e:
            reason = f"{type(e).__name__}: {e}" if not isinstance(e, TrialFailed) else str(e)
            trial.set_user_attr("fail_reason", reason[:2000])
            trial.set_user_attr("traceback", traceback.format_exc()[-4000:])
            raise
        finally:
            self._store_curve(trial)
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
            if child is not None:
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
            reporter = self._reporter(trial, config, report and primary, primary=primary)
            resume, overwrite = restart_mode(job_dir)
            if parallel > 1 or s.subprocess or runs_own_processes(config):
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
                                                                                         str(threads))},
                                            nodes=self.nodes)
            if overwrite:
                import shutil

                shutil.rmtree(job_dir)
            return self._in_process(trial, config, reporter, child if primary else None, resume)
        return run_job

    def _in_process(self, trial, config: JobConfig, reporter: Reporter, child, resume: bool = False):
        with self._job(trial, config, reporter, child, resume=resume) as job:
            return job.run(), job.trainer.history

    def _job(self, trial, config: JobConfig, reporter: Reporter, child, resume: bool = False,
             overwrite: bool = False):
        """An in-process job of this trial: `train`'s lifecycle, reporting to the pruner. Its MLflow
        run is the study's child run (per-iteration metrics only: the study finishes the run once
        the trial's state is known), so the job starts none."""
        from ..job import Job

        callbacks: list[Callback] = [PruningCallback(trial, self.spec.settings.metric, reporter=reporter)]
        if child is not None:
            callbacks.insert(0, _MetricsOnly(child))
        return Job(config, resume=resume, overwrite=overwrite, callbacks=callbacks, progress=False, tracking=None)

    def _reporter(self, trial, config: JobConfig, report: bool, primary: bool = True) -> Reporter:
        """Reports stepped by spend; for spend-to-target, the gap to the target is what is reported.
        The primary job's reporter also keeps the trial's full curve (`_store_curve`)."""
        from .spend import report_grid

        s = self.spec.settings
        grid = report_grid(config, s.spend, s.report_grid, s.max_reports)
        # without a grid, reports are thinned by iteration; evaluations on an episode grid fall on any
        # iteration, so then every one is reported
        every = 1 if config.eval.every_episodes else report_every(config, s.max_reports)
        if s.objective != "spend_to_target":
            reporter = Reporter(trial, s.metric, report, every, s.spend, grid)
        else:
            target = self._target(config)
            reporter = Reporter(trial, target.metric, report, every, s.spend, grid,
                                target=(target.value, "loss" in target.metric))
        if primary:
            self._curves[trial.number] = reporter
            if trial.number in self._carried:
                reporter.carry(*self._carried[trial.number])
        return reporter

    def _carry(self, trial, previous) -> None:
        """Give the re-queued `trial` what the interrupted `previous` reported: its intermediate values
        (so the pruner judges the whole curve, not the part after the resume) and its learning curve.
        The resumed job then reports only the steps after these; a job that had to restart (no
        checkpoint) skips the steps it repeats."""
        values = dict(previous.intermediate_values)
        if values and not self.spec.multi_objective:
            for step, value in sorted(values.items()):
                trial.report(float(value), step=int(step))
        curve = previous.user_attrs.get("curve") or {}
        if curve:
            trial.set_user_attr("curve", curve)
        self._carried[trial.number] = (max(values) if values else -1, curve.get("points", []))

    def _store_curve(self, trial) -> None:
        """Every evaluation of the trial's primary job as the user attribute `curve` (its metric, its
        spend and [spend, value] points), for the report's learning curves: Optuna's intermediate
        values hold only what was reported to the pruner, thinned to `max_reports`."""
        from .reporting import stored_curve

        self._carried.pop(trial.number, None)
        reporter = self._curves.pop(trial.number, None)
        if reporter is not None and reporter.curve:
            try:
                trial.set_user_attr("curve", stored_curve(reporter))
            except Exception as e:        # noqa: BLE001 - a storage hiccup must not change the trial's outcome
                import logging

                logging.getLogger("arsearch.study").warning("trial %d: its learning curve was not stored: %s",
                                                            trial.number, e)

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
