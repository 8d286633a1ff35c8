"""Start-up timeline: named moments of a command's start, written where ``ARSEARCH_STARTUP_TRACE`` says.

`benchmarks/startup.py` sets it to a file for `train --nproc 2`, and the launcher and each rank append
one line per moment (``<unix time> <role> <moment>``), so the report can say which phase of a
distributed start-up takes the time (torchrun's start, imports, the launcher's checks, the Gloo
rendezvous, building the task) from one real run instead of from parts run alone. Unset (always, in
normal use), `mark` returns at once. Nothing here imports torch.
"""

from __future__ import annotations

import os
import time

ENV = "ARSEARCH_STARTUP_TRACE"


def mark(moment: str) -> None:
    """Append `moment` with the time and this process's role (``launcher`` or ``rank <R>``)."""
    path = os.environ.get(ENV)
    if not path:
        return
    role = f"rank{os.environ['RANK']}" if "RANK" in os.environ else "launcher"
    with open(path, "a") as f:          # one short write per line: the processes' lines do not interleave
        f.write(f"{time.time():.4f} {role} {moment}\n")
