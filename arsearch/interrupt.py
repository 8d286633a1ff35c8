"""Ctrl-C and SIGTERM during `arsearch train` / `posttrain`: stop at an iteration boundary and save.

The first SIGINT or SIGTERM (what a scheduler or `kill` sends) only sets a flag: the training
loop finishes its current iteration, writes a checkpoint there and raises `TrainingInterrupted`,
so that resuming from that checkpoint continues bit-exactly. A second signal while the
iteration is still running stops at once (KeyboardInterrupt; the last periodic checkpoint
stays valid). A checkpoint write is never interrupted: a first signal during it takes effect
once it is complete, a second one is ignored, so a Ctrl-C can never leave a half-written file
(the write is atomic anyway).

Under torchrun every rank installs the handlers, and the ranks agree at each iteration boundary
(one all-reduce of the signal number, `Backend.agree_stop`) so that all of them stop after the
same iteration; only rank 0 prints and saves. `arsearch train --nproc P` forwards the signal it
gets to the ranks (they run in sessions of their own, out of the terminal's reach).

`StudySignals` is the same for `arsearch study run` / `validate`: the first signal stops the
running trial(s) at their next iteration boundary, where an in-process job saves a checkpoint, or
forwards the signal to the trial's `arsearch train` child and waits for it to save, then raises
`StudyInterrupted`; the trial is recorded FAIL and tagged as interrupted, its MLflow run ended
KILLED, and the next `study run` resumes it from that checkpoint. A second signal stops at once.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from pathlib import Path

_active: StopSignals | None = None
_study: StudySignals | None = None


def _is_writer() -> bool:
    """Only one process of a torchrun job speaks: rank 0 (or a process outside torchrun)."""
    return os.environ.get("RANK", "0") == "0"


def _say(message: str) -> None:
    if _is_writer():
        print(f"\narsearch: {message}", file=sys.stderr, flush=True)


class TrainingInterrupted(Exception):
    """Training stopped on a signal; `checkpoint` holds the state at the last finished iteration."""

    def __init__(self, signum: int, iteration: int, checkpoint: Path | None):
        self.signum, self.iteration, self.checkpoint = signum, iteration, checkpoint
        super().__init__(f"{signal.Signals(signum).name} at iteration {iteration}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum          # the shell's convention: 130 for SIGINT, 143 for SIGTERM


class ExportInterrupted(KeyboardInterrupt):
    """A signal during posttrain's export, after the fine-tuning ended: the export stops at once and
    leaves no half-written file (each is written under a temporary name and renamed)."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(signal.Signals(signum).name)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class StopSignals:
    """Installs the SIGINT/SIGTERM handlers for the `with` block (main thread only; elsewhere a no-op)."""

    def __init__(self):
        self.signum: int | None = None
        self.saving = False
        self.exporting = False          # posttrain's export: a signal stops it at once (files are renamed in)
        # the stop was adopted from another rank (`adopt`) before this rank's own copy of the signal came:
        # that copy, when it arrives, is the same request, not a second one
        self.adopted = False
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        global _active
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                if signal.getsignal(sig) is signal.SIG_IGN:
                    continue          # ignored on purpose by whoever started us (nohup, a background job)
                self._previous[sig] = signal.signal(sig, self._handle)
            _active = self
        return self

    def __exit__(self, *exc) -> None:
        global _active
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}
        if _active is self:
            _active = None

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def adopt(self, signum: int) -> None:
        """Stop as another rank was asked to (`Backend.agree_stop`): the launcher forwards one signal to
        every rank, and a loaded rank may learn of it from a peer before its own copy is delivered."""
        if self.signum is None:
            self.signum = signum
            self.adopted = True

    def _handle(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if self.adopted:        # this rank's copy of the signal its peers already stopped on
            self.adopted = False
            return
        if self.saving:         # never interrupt a checkpoint write: a first signal takes effect after it
            if self.signum is None:
                self.signum = signum
                _say(f"{name} received while a checkpoint is being written: stopping once it is complete")
            else:
                _say(f"{name} ignored: the checkpoint is being written and will be complete in a moment")
            return
        if self.exporting:      # after training: the export's files are written to temporary names
            self.signum = signum
            raise ExportInterrupted(signum)
        if self.signum is None:
            self.signum = signum
            _say(f"{name} received: finishing this iteration, then saving a checkpoint "
                 f"(send it again to stop at once without saving)")
            return
        raise KeyboardInterrupt


def check_pretraining() -> None:
    """Raise TrainingInterrupted (no checkpoint) if a signal came: posttrain's Adam pretraining calls this
    after every mini-batch, so a SIGTERM stops it within one step rather than after every epoch."""
    if _active is not None and _active.signum is not None:
        raise TrainingInterrupted(_active.signum, 0, None)


def active() -> StopSignals | None:
    """The handlers installed by the command now running, if any (a Trainer picks them up)."""
    return _active


# ---------------------------------------------------------------------------------------------
# `arsearch study run` / `study validate`


class StudyInterrupted(KeyboardInterrupt):
    """The study was stopped by a signal: the running trial ends FAIL (tagged interrupted), no new
    trial starts. A KeyboardInterrupt, so that Optuna records the trial as FAIL and re-raises it."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(f"interrupted by {signal.Signals(signum).name}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class _QuietInterrupt(logging.Filter):
    """Optuna logs a failed trial with its traceback; an interrupted one gets its one line only."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], StudyInterrupted):
            record.exc_info, record.exc_text = None, None
        return True


class StudySignals:
    """SIGINT/SIGTERM handlers for a study command (main thread only). The first signal asks every
    running trial to stop (an in-process trial in `Trainer._signalled`, at its iteration boundary,
    where it saves; a subprocess trial's poll loop forwards the signal to its child; a trial waiting
    for a GPU stops waiting) and calls the `on_stop` hooks (Optuna's `study.stop()`); a second one
    raises `StudyInterrupted` at once in the main thread."""

    def __init__(self):
        self.signum: int | None = None
        self.event = threading.Event()
        self.on_stop: list = []
        self._previous: dict[int, object] = {}
        self._filter = _QuietInterrupt()

    def __enter__(self) -> StudySignals:
        global _study
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                if signal.getsignal(sig) is signal.SIG_IGN:
                    continue
                self._previous[sig] = signal.signal(sig, self._handle)
            _study = self
        logging.getLogger("optuna.study._optimize").addFilter(self._filter)
        return self

    def __exit__(self, *exc) -> None:
        global _study
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}
        logging.getLogger("optuna.study._optimize").removeFilter(self._filter)
        if _study is self:
            _study = None

    def _handle(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if self.signum is not None:
            raise StudyInterrupted(self.signum)
        self.signum = signum
        self.event.set()
        print(f"\narsearch: {name} received: stopping the running trial at its next iteration (a subprocess "
              f"trial saves a checkpoint first); no new trial starts (send it again to stop at once)",
              file=sys.stderr, flush=True)
        for hook in self.on_stop:
            try:
                hook()
            except Exception:              # noqa: BLE001 - e.g. study.stop() outside optimize: nothing to stop
                pass


def study_signals() -> StudySignals | None:
    """The study command's handlers, if a study command installed them."""
    return _study

