"""`arsearch train --nproc 2`: torchrun with 2 Gloo ranks on CPU (each start costs a few seconds)."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from parallel_helpers import tiny_job  # noqa: E402

from arsearch.trainer import Trainer  # noqa: E402

ROOT = HERE.parent
pytestmark = pytest.mark.slow


def cli(tmp_path, *args, timeout=240):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(HERE)]), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "arsearch.cli", "train", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=timeout)


def write_job(tmp_path, **extra) -> Path:
    lines = ['seed = 0', '[task]', 'dataset = "digits"', 'hidden = [16]', 'batch_size = 64',
             *[f"{k} = {v}" for k, v in extra.items()],
             '[ars]', 'version = "v2t"', 'directions = 8', 'top = 4', 'iterations = 8', 'step_size = 0.05',
             '[eval]', 'every = 4', '[tracking]', 'enabled = false', '[checkpoint]', 'dir = "run"', 'every = 100']
    path = tmp_path / "job.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_nproc_launches_torchrun_and_matches_one_process(tmp_path):
    job = write_job(tmp_path)
    out = cli(tmp_path, str(job), "--quiet", "--nproc", "2")
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.count('"iterations": 8') == 1          # rank 0 alone prints its result
    single = Trainer(tiny_job(tmp_path / "single", **{"ars.version": "v2t", "ars.iterations": 8,
                                                     "eval.every": 4}), progress=False)
    single.run()
    saved = torch.load(tmp_path / "run" / "final.pt", weights_only=True)["model"]
    for key, value in single.model.state_dict().items():
        torch.testing.assert_close(saved[key], value, rtol=1e-12, atol=1e-12, msg=key)


def test_a_killed_rank_ends_the_job_with_a_clear_error(tmp_path):
    job = write_job(tmp_path, model='"parallel_helpers:killed_model"')
    start = time.monotonic()
    out = cli(tmp_path, str(job), "--quiet", "--nproc", "2", "--set", "ars.iterations=100000",
              "--set", "ars.timeout=30")
    assert out.returncode == 1
    assert "distributed job failed: torchrun (2 ranks) exited with code 1" in out.stderr
    assert "SIGKILL" in out.stderr                   # torchrun names the rank that died, and how
    assert time.monotonic() - start < 200            # bounded: the survivor fails at once or after ars.timeout
