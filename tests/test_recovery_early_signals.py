"""Signals that arrive while a command is still getting ready (issue 22 item 3): Ctrl-C to `arsearch train
--nproc 2` before its ranks have installed their handlers, and SIGTERM to a study worker waiting for a free
GPU of its device pool. Each gives one line and the documented exit code, no traceback, and no process of
the command outlives it."""

import fcntl
import os
import signal
import time

import optuna
import pytest

from tests.support.recovery import start, wait_for, write_job
from tests.test_orphans import no_survivors, tree

pytestmark = pytest.mark.multiprocess


def _ranks_armed(launcher: int) -> int:
    """How many ranks under `launcher` have installed their handlers (`launch.mark_rank_armed`)."""
    armed = 0
    for pid in tree(launcher):
        try:
            status = dict(line.split("=", 1) for line in
                          open(f"/proc/{pid}/environ").read().split("\0") if "=" in line).get("ARSEARCH_RANK_STATUS")
        except OSError:
            continue
        if status and os.path.isdir(status):
            return sum(n.endswith(".armed") for n in os.listdir(status))
    return armed


# when the Ctrl-C comes: once torchrun runs, once both ranks run (importing
# torch), a moment later (at the start gate), and once the ranks are armed (the ordinary path)
STAGES = {"torchrun": 2, "ranks": 4, "ranks+1s": 4, "armed": 4}


@pytest.mark.parametrize("stage", list(STAGES))
def test_ctrl_c_to_train_nproc_at_any_moment_of_its_start_is_one_line(tmp_cwd, stage):
    write_job(tmp_cwd, iterations=200000, tracking=False)
    proc = start(tmp_cwd, "train", "job.toml", "--nproc", "2", "--quiet")
    family: list[int] = []

    def reached():
        family[:] = sorted(set(family) | set(tree(proc.pid)))
        return len(family) + 1 >= STAGES[stage]
    wait_for(reached, timeout=300, what=f"stage {stage}", proc=proc)
    if stage == "ranks+1s":
        time.sleep(1)
    elif stage == "armed":
        wait_for(lambda: _ranks_armed(proc.pid) == 2, timeout=300, what="both ranks armed", proc=proc)
    family[:] = sorted(set(family) | set(tree(proc.pid)))
    os.killpg(proc.pid, signal.SIGINT)              # a terminal's Ctrl-C
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "ChildFailedError" not in err, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert lines[-1].startswith(("arsearch: stopped by SIGINT", "arsearch: interrupted", "resume with:")), err
    if stage != "armed":
        assert len(lines) == 1, err
    no_survivors(family + tree(proc.pid), timeout=30)


def test_sigterm_while_a_study_waits_for_a_free_gpu_stops_it_cleanly(tmp_cwd):
    """The worker's only GPU is held by another process (a flock on its lock file, as another worker holds
    it): the trial waits; SIGTERM stops the worker at once, the trial is recorded interrupted."""
    from arsearch.study import load_study, open_study
    from tests.support.study import write_study

    tmp = tmp_cwd / "tmp"
    (tmp / "arsearch-gpu-locks").mkdir(parents=True)
    held = open(tmp / "arsearch-gpu-locks" / "gpu0.lock", "a")      # noqa: SIM115 - held for the test
    fcntl.flock(held, fcntl.LOCK_EX)
    try:
        path = write_study(tmp_cwd, study='pruner = "none"\nsampler = "random"\ntracking = false\n',
                           space='"ars.step_size" = { low = 0.005, high = 0.05, log = true }\n'
                                 '"ars.backend" = "distributed"\n')
        study, _ = open_study(load_study(path))
        os.environ["TMPDIR"] = str(tmp)             # the worker's lock files (tests.support.recovery.start's env)
        try:
            proc = start(tmp_cwd, "study", "run", str(path), "--n-trials", "1", "--quiet", "--gpus", "0")
        finally:
            del os.environ["TMPDIR"]

        def waiting():
            trials = study.get_trials()
            return trials and trials[0].state == optuna.trial.TrialState.RUNNING
        wait_for(waiting, timeout=300, what="trial 0 waiting for the GPU", proc=proc)
        time.sleep(1)
        family = tree(proc.pid)
        sent = time.time()
        os.kill(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
        assert time.time() - sent < 30
        assert proc.returncode == 143, err
        assert "Traceback" not in err and "arsearch: stopped by SIGTERM" in err, err
        no_survivors(family, timeout=30)
        trial = study.get_trials()[0]
        assert trial.state == optuna.trial.TrialState.FAIL and trial.user_attrs["interrupted"] == "SIGTERM"
        assert "pid" not in trial.user_attrs                  # no job was started
    finally:
        held.close()
