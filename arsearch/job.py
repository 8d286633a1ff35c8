"""One training job from start to end, written once: `arsearch train`, `posttrain` and a study's trials.

    with Job(config, resume=args.resume, overwrite=args.overwrite) as job:
        result = job.run()

Entering the `with` sets the job up in an order that refuses bad input before anything is
written: the checkpoint directory (a file? read-only? another run's checkpoints?), the `Trainer`
(dataset or model imported, environment made, `[model] checkpoint` loaded), the checkpoint to
resume, the directory's lock (another run in it?), and only then the tracking run, so a refused
job leaves neither files nor an MLflow run. Leaving it, on success, error and signal alike, ends
the tracking run (FINISHED, FAILED, or KILLED with the signal as `arsearch.stopped_by`), closes
the trainer (learner processes, environments, backend) and releases the directory (a job that
never began training takes away the directories it created, if empty). A setup step that fails undoes the
steps before it the same way, and the error propagates: the caller maps it to its exit code.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from .callbacks import Callback
from .config import JobConfig


def train_tracking(config: JobConfig, resume_run_id: str | None):
    """`arsearch train`'s MLflow run (None when tracking is off); TrackingError when the store is unusable."""
    from .tracking import train_callback

    return train_callback(config, resume_run_id=resume_run_id)


class Job:
    """The lifecycle of one training job as a context manager; `run()` inside it trains.

    `tracking(config, resume_run_id)` starts the job's MLflow callback (or returns None): by
    default `train`'s, which continues the run a resumed checkpoint names; None for no tracking
    (a study trial's run belongs to the study). `task` is a task already built and loaded
    (post-training's), which the job then owns and closes. Only the process that writes
    checkpoints (rank 0 under torchrun) checks and claims the checkpoint directory.
    """

    def __init__(self, config: JobConfig, *, resume: bool = False, overwrite: bool = False, force: bool = False,
                 callbacks: list[Callback] | None = None, progress: bool = True, task=None,
                 tracking: Callable | None = train_tracking):
        self.config, self.resume, self.overwrite, self.force = config, resume, overwrite, force
        self._callbacks, self._progress, self._task = list(callbacks or []), progress, task
        self._tracking = tracking
        self.trainer = None          # the Trainer, once built
        self.tracker = None          # the MLflow callback, once its run started
        self.claim = None            # the directory's lock (`checkpoint.ClaimedDir`)
        self.started = False         # whether `run()` began: an error after it is a training error
        self.result: dict | None = None

    def __enter__(self) -> Job:
        try:
            self._set_up()
        except BaseException as e:          # Ctrl-C included: undo what was set up, then re-raise
            self._tear_down(e)
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._tear_down(exc)

    def run(self) -> dict:
        """Train (from the resumed checkpoint, if any); the job's result, also in metrics.json."""
        self.started = True
        self.result = self.trainer.run(resume=self.resume)
        return self.result

    # -- setup and teardown ------------------------------------------------------------------------
    def _set_up(self) -> None:
        from .checkpoint import ClaimedDir, check_dir
        from .trainer import Trainer

        config = self.config
        from .launch import writes_files

        claim = writes_files()      # torchrun's other ranks (other machines among them) write nothing
        if claim:
            keep = config.model.checkpoint if getattr(config, "model", None) is not None else None
            check_dir(config.checkpoint.dir, self.resume, self.overwrite, keep=keep)
        self.trainer = Trainer(config, callbacks=self._callbacks, progress=self._progress, task=self._task)
        if self.resume:
            self.trainer.resume(force=self.force)
        if claim:
            # claimed only now, when every check that can refuse the job has passed: --overwrite
            # deletes the old checkpoints only for a job that will run
            self.claim = ClaimedDir(config.checkpoint.dir, overwrite=self.overwrite and not self.resume,
                                    resume=self.resume)
        if self._tracking is not None:
            self.tracker = self._tracking(config, self.trainer.tracking_run_id)
            if self.tracker is not None:
                self.trainer.callbacks.append(self.tracker)
                self.trainer.tracking_run_id = self.tracker.run_id   # in every checkpoint: --resume continues it

    def _tear_down(self, error: BaseException | None) -> None:
        try:
            if self.tracker is not None and not self.tracker.ended:
                self._end_run(error)
        finally:
            try:
                if self.trainer is not None:
                    self.trainer.close(failed=error is not None)
                elif self._task is not None:      # handed in, and no trainer was built to close it
                    self._task.close()
            finally:
                if self.claim is not None:
                    # a job refused or stopped before training takes away the directories it created
                    # (if empty); once training began the directory is the run's, and stays
                    self.claim.release(remove=not self.started)
                    self.claim = None

    def _end_run(self, error: BaseException | None) -> None:
        """Close the MLflow run rather than leave it RUNNING: KILLED by a signal, FAILED by an error."""
        import signal

        from .interrupt import TrainingInterrupted

        tags: dict[str, str] = {}
        if error is None:
            status = "FINISHED"
        elif isinstance(error, (TrainingInterrupted, KeyboardInterrupt)):
            status = "KILLED"
            # posttrain's ExportInterrupted and a study's StudyInterrupted carry their signal too
            signum = getattr(error, "signum", None) or signal.SIGINT
            tags["arsearch.stopped_by"] = signal.Signals(signum).name
        else:
            status = "FAILED"
        tracker, trainer = self.tracker, self.trainer
        if self.result is None:       # training did not reach its end: the run's last metrics and artifacts too
            tracker.terminate = True
            tracker.finish({"iterations": trainer.iteration}, trainer.history, ok=False, status=status,
                           tags=tags or None)
        else:                         # trained, and the caller's work after it (posttrain's export) stopped
            tracker.set_tags(tags)
            tracker.end(status)


def preflight(config: JobConfig, *, resume: bool = False, overwrite: bool = False, force: bool = False,
              world: int = 1, writer: bool = True) -> None:
    """Every check a `Job` makes before work, made without starting it: what `train --nproc` runs in the
    launcher, so that a job its ranks would refuse is refused in seconds, before torchrun starts.
    The task (dataset or model imported, environment made), enough directions for the `world` ranks
    of all machines, and, on the machine that writes (`writer`: node rank 0), the checkpoint directory,
    the checkpoint to resume (it exists and was written by this job) and the directory's lock
    (another run in it?). Another node's checkpoint.dir is never written, and may not exist there."""
    from filelock import FileLock, Timeout

    from . import checkpoint as ckpt
    from .tasks import build_task

    if config.ars.directions < world:
        raise ValueError(f"ars.directions = {config.ars.directions} must be >= the number of ranks ({world}, on "
                         f"every machine together): each rank scores at least one direction")
    keep = config.model.checkpoint if getattr(config, "model", None) is not None else None
    if writer:
        ckpt.check_dir(config.checkpoint.dir, resume, overwrite, keep=keep)
    task = build_task(config)
    task.close()
    if not writer:
        return
    if resume:
        path = ckpt.resumable(config.checkpoint.dir)
        if path is None:
            raise ckpt.CheckpointError(f"--resume: no checkpoint in {config.checkpoint.dir}")
        ckpt.check_same_job(ckpt.peek(path).get("config", ""), config, path, force=force)
    lock_file = os.path.join(config.checkpoint.dir, ".arsearch.lock")
    if os.path.exists(lock_file):
        lock = FileLock(lock_file)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            raise ckpt.CheckpointError(f"checkpoint.dir {config.checkpoint.dir} is in use by another arsearch run "
                                       f"(it holds {lock_file}); give this run another checkpoint.dir") from None
        lock.release()
