"""Helpers for the recovery tests: real signals to real `arsearch` processes, mounts, barriers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.study import REPO, env

JOB = """
seed = 0
[task]
dataset = "digits"
hidden = {hidden}
batch_size = 64
[ars]
directions = 8
top = 4
iterations = {iterations}
[eval]
every = 5
[tracking]
enabled = {tracking}
uri = "{uri}"
experiment = "recovery"
[checkpoint]
dir = "{dir}"
every = {every}
"""


def write_job(directory: Path, name: str = "job.toml", *, iterations: int = 2000, every: int = 2,
              tracking: bool = True, ckpt_dir: str = "runs/a", uri: str = "sqlite:///mlflow.db",
              hidden: str = "[16]") -> Path:
    path = Path(directory) / name
    path.write_text(JOB.format(iterations=iterations, every=every, tracking=str(tracking).lower(), uri=uri,
                               dir=ckpt_dir, hidden=hidden))
    return path


def _default_sigint():
    # a background job of a non-interactive shell starts with SIGINT ignored; a terminal's Ctrl-C does not
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(cwd: Path, *args: str, barrier: Path | None = None) -> subprocess.Popen:
    """`arsearch ARGS` in its own session with default signal dispositions; with `barrier`, the
    process imports everything and then waits for that file, so that several start at the same moment."""
    if barrier is None:
        cmd = [sys.executable, "-m", "arsearch.cli", *args]
    else:
        code = ("import os, sys, time\nimport arsearch.cli\n"
                f"while not os.path.exists({str(barrier)!r}): time.sleep(0.005)\n"
                f"sys.exit(arsearch.cli.main({list(args)!r}))\n")
        cmd = [sys.executable, "-c", code]
    return subprocess.Popen(cmd, cwd=cwd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=_default_sigint)


def run(cwd: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    p = start(cwd, *args)
    out, err = p.communicate(timeout=timeout)
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


def wait_for(predicate, timeout: float = 180, what: str = "condition", proc: subprocess.Popen | None = None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process ended (rc {proc.returncode}) before {what}: {proc.communicate()}")
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")



def wait_for_trial_under_way(study, proc: subprocess.Popen, number: int = 0, trials: int | None = None,
                             timeout: float = 300):
    """Until the study's trial `number` is RUNNING and has reported a value (its job is past set-up), while
    `proc` lives; with `trials`, also until the study holds exactly that many."""
    import optuna

    def under_way():
        got = study.get_trials()
        return ((trials is None or len(got) == trials) and len(got) > number
                and got[number].state == optuna.trial.TrialState.RUNNING and got[number].intermediate_values)
    return wait_for(under_way, timeout=timeout, what=f"trial {number} under way", proc=proc)


def checkpoints(directory: Path) -> list[Path]:
    return sorted(Path(directory).glob("iter_*.pt"))


def runs(cwd: Path, experiment: str = "recovery"):
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{Path(cwd) / 'mlflow.db'}")
    exp = client.get_experiment_by_name(experiment)
    return client, ([] if exp is None else client.search_runs([exp.experiment_id]))


def need_root():
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a read-only / tiny tmpfs (as root, chmod does not stop writes)")


@contextmanager
def tmpfs(path: Path, size: str = "64k", readonly: bool = False):
    """A real tmpfs at `path`: read-only, or tiny so that it fills up."""
    need_root()
    path.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (",ro" if readonly else "")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"mount is not allowed here: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


__all__ = ["REPO", "write_job", "start", "run", "wait_for", "wait_for_trial_under_way", "checkpoints", "runs", "tmpfs", "need_root"]
