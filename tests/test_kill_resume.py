"""kill -9 of `arsearch train` mid-job, then `arsearch train --resume`: bit-exact with an uninterrupted run.

The job runs `arsearch.cli.main(["train", ...])` in a forked child (the CLI's own code path without
paying the interpreter start-up). The child freezes at a known point — two iterations past its last
checkpoint — and says so through a file; the test then SIGKILLs it there, so the kill lands
mid-job every time, whatever the machine's load, and the work past the checkpoint is lost.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from pathlib import Path

import pytest
import torch

from arsearch import checkpoint as ckpt
from arsearch.cli import main
from arsearch.config import to_toml
from tests.support import assert_same_state, make_job

pytestmark = pytest.mark.multiprocess

CHECKPOINT_EVERY, FREEZE_AT = 4, 6      # the child dies at iteration 6; the latest checkpoint is iteration 4

CASES = {
    "rl": ("rl", {"ars.version": "v2t", "ars.iterations": 10, "task.horizon": 30, "eval.every": 3}),
    "prioritized": ("digits", {"ars.version": "v2t", "ars.iterations": 10, "sampling.alpha": 0.7, "eval.every": 3}),
    "population": ("population", {"ars.iterations": 10, "population.epoch": 2, "eval.every": 3,
                                  "population.strategies": ["annealing", "culling"],
                                  "population.annealing.schedule": "adaptive"}),
}


def _train_and_freeze(config_path: str, marker: str) -> None:
    """In the child: `arsearch train`, frozen (not finished) at the evaluation of iteration FREEZE_AT."""
    from arsearch.trainer import Trainer

    real = Trainer.evaluate

    def evaluate(self):
        metrics = real(self)
        if self.iteration == FREEZE_AT:
            Path(marker).write_text(str(os.getpid()))
            threading.Event().wait()                    # until the SIGKILL
        return metrics

    Trainer.evaluate = evaluate
    os._exit(main(["train", config_path, "--quiet"]))


def write_config(directory: Path, preset: str, overrides: dict) -> Path:
    directory.mkdir(parents=True)
    path = directory / "job.toml"
    cfg = make_job(preset, directory / "run", **{**overrides, "checkpoint.every": CHECKPOINT_EVERY})
    path.write_text(to_toml(cfg))
    return path


@pytest.mark.parametrize("case", list(CASES))
def test_kill_9_then_resume_is_bit_exact(tmp_path, case):
    if case == "rl":
        pytest.importorskip("gymnasium")
    preset, overrides = CASES[case]
    killed = write_config(tmp_path / "killed", preset, overrides)
    marker = tmp_path / "frozen"
    child = multiprocessing.get_context("fork").Process(target=_train_and_freeze, args=(str(killed), str(marker)))
    child.start()
    try:
        deadline = time.monotonic() + 600
        while not marker.exists():          # polled: no fixed sleep, however slow the machine
            assert child.is_alive(), f"the job ended (exit code {child.exitcode}) before reaching iteration {FREEZE_AT}"
            assert time.monotonic() < deadline, f"the job did not reach iteration {FREEZE_AT} in 600 s"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
        child.join()
    finally:
        if child.is_alive():
            child.kill()
            child.join()
    assert child.exitcode == -signal.SIGKILL
    run = killed.parent / "run"
    assert ckpt.latest(run).name == f"iter_{CHECKPOINT_EVERY:07d}.pt" and not (run / "final.pt").exists()

    assert main(["train", str(killed), "--resume", "--quiet"]) == 0
    straight = write_config(tmp_path / "straight", preset, overrides)
    assert main(["train", str(straight), "--quiet"]) == 0

    resumed = torch.load(run / "final.pt", weights_only=True)
    reference = torch.load(straight.parent / "run" / "final.pt", weights_only=True)
    assert resumed["iteration"] == reference["iteration"] == overrides["ars.iterations"]
    for key in ("model", "task", "learner"):            # θ, V2 statistics, counters, sampler, population
        assert_same_state(resumed[key], reference[key], key)
    if case == "population":      # the adaptive temperature moved, and travelled through the checkpoint
        annealing = next(s["state"] for s in resumed["learner"]["strategies"] if s["name"] == "annealing")
        assert annealing["adaptive_t"] != 0.05      # population preset: t0 = 0.05
    if case == "prioritized":      # so did non-uniform priorities
        priorities = resumed["task"]["sampler"]["priorities"]
        assert priorities.min() < priorities.max()
