"""`arsearch train --nproc 2`: torchrun with 2 Gloo ranks on CPU (each start costs a few seconds)."""

import os
import time
from pathlib import Path

import pytest
import torch

from arsearch.config import to_toml
from arsearch.trainer import Trainer
from tests.support import make_job
from tests.support.study import arsearch_cmd, env

pytestmark = [pytest.mark.slow, pytest.mark.multiprocess]

SETTINGS = {"ars.version": "v2t", "ars.iterations": 8, "eval.every": 4}


def write_job(tmp_path, **overrides):
    path = tmp_path / "job.toml"
    path.write_text(to_toml(make_job("digits", "run", **{**SETTINGS, **overrides})))
    return path


def cli(run_cli, tmp_path, *args, timeout=240):
    return run_cli(arsearch_cmd("train", *args), timeout=timeout, cwd=tmp_path, env=env())


def test_nproc_launches_torchrun_and_matches_one_process(tmp_path, run_cli):
    job = write_job(tmp_path)
    out = cli(run_cli, tmp_path, str(job), "--quiet", "--nproc", "2")
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.count('"iterations": 8') == 1          # rank 0 alone prints its result
    single = Trainer(make_job("digits", tmp_path / "single", **SETTINGS), progress=False)
    single.run()
    saved = torch.load(tmp_path / "run" / "final.pt", weights_only=True)["model"]
    for key, value in single.model.state_dict().items():
        torch.testing.assert_close(saved[key], value, rtol=1e-12, atol=1e-12, msg=key)


def test_a_killed_rank_ends_the_job_with_a_clear_error(tmp_path, run_cli):
    job = write_job(tmp_path, **{"task.model": "tests.support.parallel:killed_model"})
    out = cli(run_cli, tmp_path, str(job), "--quiet", "--nproc", "2", "--set", "ars.iterations=100000",
              "--set", "ars.timeout=30")
    assert out.returncode == 1
    assert "distributed job failed: torchrun (2 ranks) exited with code 1" in out.stderr
    assert "SIGKILL" in out.stderr                   # torchrun names the rank that died, and how


@pytest.mark.parametrize("case", ["used_dir", "resume_nothing", "bad_dataset", "bad_key"])
def test_nproc_refuses_what_a_rank_would_refuse_before_any_rank_acts(tmp_path, run_cli, case):
    """The launcher makes the job's own checks: one line, exit 2, nothing from torchrun or a rank (issue 25
    item 1). Torchrun starts while they run (issue 23: start-up), but its ranks wait at the start gate
    (arsearch/startgate.py) and leave silently when the launcher refuses the job."""
    job = write_job(tmp_path)
    args = [str(job), "--quiet", "--nproc", "2"]
    if case == "used_dir":
        assert cli(run_cli, tmp_path, str(job), "--quiet").returncode == 0          # leaves checkpoints in run/
        expected = "already holds checkpoints"
    elif case == "resume_nothing":
        args.append("--resume")
        expected = "--resume: no checkpoint in run"
    elif case == "bad_key":
        # torchrun starts before the launcher reads the config (issue 23), and every rank reads it too:
        # each rank that finds the key wrong waits for the launcher's verdict instead of printing its own
        args += ["--set", "ars.directionz=4"]
        expected = "unknown key 'ars.directionz'"
    else:
        job.write_text(job.read_text().replace('dataset = "digits"', 'dataset = "no_such_dataset"'))
        expected = "no_such_dataset"
    out = cli(run_cli, tmp_path, *args)
    assert out.returncode == 2, out.stderr[-2000:]
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and expected in lines[0], out.stderr
    assert "torch.distributed" not in out.stderr and "SIGTERM" not in out.stderr   # no rank ever acted
    # and no rank outlives the command: those that had started leave at the closed gate
    deadline = time.monotonic() + 15
    while (left := gated_processes(tmp_path)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, f"ranks still running after the launcher refused the job: {left}"


def gated_processes(tmp_path) -> list[int]:
    """Processes started behind a start gate (torchrun, its ranks) whose command line names this test's files."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            environ = (proc / "environ").read_bytes()
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if b"ARSEARCH_START_GATE=" in environ and str(tmp_path) in cmdline:
            found.append(int(proc.name))
    return found
