"""Ctrl-C and SIGTERM during `arsearch train` / `posttrain`: stop at an iteration boundary and save.

The first SIGINT or SIGTERM (what a scheduler or `kill` sends) only sets a flag: the training
loop finishes its current iteration, writes a checkpoint there and raises `TrainingInterrupted`,
so that resuming from that checkpoint continues bit-exactly. A second signal while the
iteration is still running stops at once (KeyboardInterrupt; the last periodic checkpoint
stays valid). A checkpoint write is never interrupted: a first signal during it takes effect
once it is complete, a second one is ignored, so a Ctrl-C can never leave a half-written file
(the write is atomic anyway).
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

_active: StopSignals | None = None


class TrainingInterrupted(Exception):
    """Training stopped on a signal; `checkpoint` holds the state at the last finished iteration."""

    def __init__(self, signum: int, iteration: int, checkpoint: Path | None):
        self.signum, self.iteration, self.checkpoint = signum, iteration, checkpoint
        super().__init__(f"{signal.Signals(signum).name} at iteration {iteration}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum          # the shell's convention: 130 for SIGINT, 143 for SIGTERM


class StopSignals:
    """Installs the SIGINT/SIGTERM handlers for the `with` block (main thread only; elsewhere a no-op)."""

    def __init__(self):
        self.signum: int | None = None
        self.saving = False
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

    def _handle(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if self.saving:         # never interrupt a checkpoint write: a first signal takes effect after it
            if self.signum is None:
                self.signum = signum
                print(f"\narsearch: {name} received while a checkpoint is being written: stopping once it is "
                      f"complete", file=sys.stderr, flush=True)
            else:
                print(f"\narsearch: {name} ignored: the checkpoint is being written and will be complete in a "
                      f"moment", file=sys.stderr, flush=True)
            return
        if self.signum is None:
            self.signum = signum
            print(f"\narsearch: {name} received: finishing this iteration, then saving a checkpoint "
                  f"(send it again to stop at once without saving)", file=sys.stderr, flush=True)
            return
        raise KeyboardInterrupt


def active() -> StopSignals | None:
    """The handlers installed by the command now running, if any (a Trainer picks them up)."""
    return _active
