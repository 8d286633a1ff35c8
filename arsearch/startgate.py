"""The start gate of `train --nproc`: ranks start while the launcher still checks the job.

The launcher's checks (`job.preflight`: directory, task, checkpoint to resume, lock) import torch
and build the task, which took as long as the in-process job's whole start-up; run before
torchrun, they added it to every `--nproc` start. So the launcher starts torchrun first and checks
while torchrun and its ranks import: each rank, once its own imports are done, waits at the gate
before it does anything another process could see (print, claim the directory, write). The
launcher then opens the gate (`go`), or closes it (`stop`) and ends torchrun, so a refused job
still ends with the launcher's one line and exit code 2, and no rank output.

The gate is a directory named by ``ARSEARCH_START_GATE`` in the ranks' environment (torchrun
passes its environment on); the launcher creates a file `go` or `stop` in it. Nothing here imports
torch.
"""

from __future__ import annotations

import os
import sys
import time

from .processes import OwnedTempDir

ENV = "ARSEARCH_START_GATE"
PREFIX = "arsearch-gate-"
POLL_S = 0.02


class StartGate:
    """The launcher's side: a fresh gate directory, its environment entry, `go()` / `stop()`."""

    def __init__(self):
        # removed by close(); after a kill -9 of the launcher, by the next launcher (OwnedTempDir)
        self._dir = OwnedTempDir(PREFIX)
        self.path = self._dir.path

    def env(self, base: dict | None = None) -> dict:
        return {**(os.environ if base is None else base), ENV: self.path}

    def _mark(self, name: str) -> None:
        with open(os.path.join(self.path, name), "w"):
            pass

    def go(self) -> None:
        self._mark("go")

    def stop(self) -> None:
        self._mark("stop")

    def close(self) -> None:
        self._dir.remove()

    def __enter__(self) -> StartGate:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def wait_at_gate(exit_code: int = 2, block: bool = True) -> None:
    """A rank's side: return once the launcher says go; exit at once, silently, if it says stop (or is
    gone). Without a gate in the environment (torchrun started by hand), return at once. With
    `block` False, only leave if the gate is already closed (a check before a rank's imports, so that
    a rank of a refused job does not import torch first)."""
    path = os.environ.get(ENV)
    if not path:
        return
    while True:
        if os.path.exists(os.path.join(path, "go")):
            return
        if os.path.exists(os.path.join(path, "stop")) or not os.path.isdir(path):
            sys.stdout.flush()
            os._exit(exit_code)          # the launcher reports why; nothing of this rank's is printed
        if not block:
            return
        time.sleep(POLL_S)
