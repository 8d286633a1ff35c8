"""No child outlives its command: kill -9 of `arsearch train` takes its torchrun and ranks, or its hogwild
workers, with it (issue 22). The process tree is listed after the kill."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from tests.support import job_data
from tests.support.recovery import start, wait_for


def tree(pid: int) -> list[int]:
    """Every live descendant of `pid` (by walking /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def alive(pids: list[int]) -> list[int]:
    """The pids still running (zombies awaiting their reaper count as gone)."""
    live = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] != "Z":
                    live.append(pid)
        except OSError:
            pass
    return live


def write_job(cwd, **overrides):
    import tomli_w

    data = job_data("digits", cwd / "run", **{"ars.iterations": 100000, "tracking.enabled": False,
                                               "checkpoint.every": 50, **overrides})
    (cwd / "job.toml").write_text(tomli_w.dumps(data))
    return cwd / "job.toml"


@pytest.mark.multiprocess
@pytest.mark.parametrize("how", [["--nproc", "2"], ["--set", "ars.backend=hogwild", "--set", "ars.workers=2"]],
                         ids=["distributed", "hogwild"])
def test_kill_9_of_train_leaves_no_process_behind(tmp_cwd, how):
    job = write_job(tmp_cwd)
    proc = start(tmp_cwd, "train", str(job), *how)
    wait_for(lambda: list((tmp_cwd / "run").glob("iter_*.pt")), timeout=240, what="the first checkpoint", proc=proc)
    family = tree(proc.pid)
    assert len(family) >= 2, family            # torchrun and 2 ranks, or 2 workers (and a resource tracker)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # ranks get SIGTERM and stop after saving (bounded by the job's own stop path); workers die at once
    deadline = time.time() + 60
    while alive(family) and time.time() < deadline:
        time.sleep(0.2)
    left = alive(family)
    listing = subprocess.run(["ps", "-o", "pid,ppid,stat,args", "-p", ",".join(map(str, left))],
                             capture_output=True, text=True).stdout if left else ""
    assert not left, f"orphans after kill -9 of the parent:\n{listing}"
