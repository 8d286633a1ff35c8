"""The hogwild backend: W forked workers stepping one shared-memory model (2 processes at most here)."""

import multiprocessing
import os
import signal

import pytest
import torch

from arsearch.backends import WorkerLost
from arsearch.callbacks import Callback
from arsearch.config import ConfigError, to_toml
from arsearch.trainer import Trainer, TrainingDiverged
from tests.support import make_job

pytestmark = pytest.mark.multiprocess


def run(config, callbacks=()):
    trainer = Trainer(config, callbacks=list(callbacks), progress=False)
    return trainer, trainer.run()


@pytest.mark.parametrize("version", ["v1t", "v2t"])
def test_one_worker_equals_the_vectorized_run(tmp_path, version):
    single, _ = run(make_job("digits", tmp_path / "v", **{"ars.version": version}))
    hog, result = run(make_job("digits", tmp_path / "h", **{"ars.version": version, "ars.backend": "hogwild", "ars.workers": 1}))
    for (name, a), (_, b) in zip(single.model.state_dict().items(), hog.model.state_dict().items()):
        assert torch.equal(a, b), name
    assert result["iterations"] == 10
    assert hog.task.counters == single.task.counters   # the workers' counts reach the main process


class SnapshotWorkers(Callback):
    """The worker processes alive while the job runs (close() forgets them, so look before)."""

    def __init__(self):
        self.procs = {}

    def on_iteration(self, trainer, iteration, metrics):
        for proc in multiprocessing.active_children():
            self.procs.setdefault(proc.pid, proc)


def test_two_workers_learn_and_make_exactly_the_configured_updates(tmp_path):
    config = make_job("digits", tmp_path, **{"ars.backend": "hogwild", "ars.workers": 2, "ars.iterations": 40,
                                   "ars.version": "v2t", "eval.every": 40})
    trainer = Trainer(config, callbacks=[workers_seen := SnapshotWorkers()], progress=False)
    before = trainer.evaluate()["eval/loss"]
    result = trainer.run()
    assert result["eval/loss"] < before - 0.1
    assert result["iterations"] == 40 and len(trainer.history) == 40
    workers = {h["hogwild/worker"] for h in trainer.history}
    assert workers == {0.0, 1.0}                      # both workers stepped
    assert result["count/forward_examples"] == 40 * 16 * 64
    assert trainer.learner.steps_received == 40
    assert len(workers_seen.procs) == 2
    assert not any(p.is_alive() for p in workers_seen.procs.values())   # both stopped and reaped
    # V2: the shared normaliser merged every worker's states (one batch of 64 per update)
    assert float(trainer.task.normalizer.count) == 40 * 64
    assert (tmp_path / "final.pt").is_file()


def test_rl_v2_statistics_of_both_workers_are_merged(tmp_path):
    config = make_job("digits", tmp_path, **{"task.kind": "rl", "task.env": "Swimmer-v5", "task.horizon": 30,
                                   "task.eval_episodes": 1, "ars.version": "v2t", "ars.directions": 3,
                                   "ars.top": 2, "ars.iterations": 6, "ars.backend": "hogwild", "ars.workers": 2})
    trainer, result = run(config)
    assert result["count/episodes"] == 6 * 2 * 3
    assert float(trainer.model.norm.count) == result["count/env_steps"] == 6 * 6 * 30


def test_resume_continues_from_the_checkpoint(tmp_path):
    # one worker is deterministic (it equals the vectorized run), so the resumed θ can be checked
    # bit for bit against an uninterrupted run: it must continue from the checkpoint's θ and V2 state
    overrides = {"ars.backend": "hogwild", "ars.workers": 1, "checkpoint.every": 5, "ars.version": "v2t"}
    run(make_job("digits", tmp_path / "r", **{**overrides, "ars.iterations": 5}))
    trainer = Trainer(make_job("digits", tmp_path / "r", **{**overrides, "ars.iterations": 12}), progress=False)
    result = trainer.run(resume=True)
    assert result["iterations"] == 12 and [h["iteration"] for h in trainer.history] == list(range(6, 13))
    straight, _ = run(make_job("digits", tmp_path / "s", **{**overrides, "ars.iterations": 12}))
    for (name, a), (_, b) in zip(straight.model.state_dict().items(), trainer.model.state_dict().items()):
        assert torch.equal(a, b), name
    assert trainer.task.counters == straight.task.counters


class KillWorker(SnapshotWorkers):
    def on_iteration(self, trainer, iteration, metrics):
        super().on_iteration(trainer, iteration, metrics)
        if iteration == 3:
            worker = next(p for p in self.procs.values() if p.name == "arsearch-hogwild-0")
            os.kill(worker.pid, signal.SIGKILL)


def test_a_killed_worker_stops_the_job_with_a_clear_error(tmp_path):
    config = make_job("digits", tmp_path, **{"ars.backend": "hogwild", "ars.workers": 2, "ars.iterations": 100_000})
    trainer = Trainer(config, callbacks=[killer := KillWorker()], progress=False)
    with pytest.raises(WorkerLost, match=r"hogwild worker 0 \(pid \d+\) was killed by signal SIGKILL"):
        trainer.run()
    assert trainer.iteration < 100_000        # detected by polling, not by the job's end
    assert len(killer.procs) == 2
    assert not any(p.is_alive() for p in killer.procs.values())   # the other worker was stopped too


def test_a_failing_worker_reports_its_error(tmp_path):
    config = make_job("digits", tmp_path, **{"ars.backend": "hogwild", "ars.workers": 2, "ars.iterations": 100_000,
                                   "task.model": "tests.support.parallel:raising_model"})
    with pytest.raises(WorkerLost, match="boom: a failure inside the worker"):
        run(config)


def test_a_hung_worker_is_stopped_after_the_timeout(tmp_path):
    config = make_job("digits", tmp_path, **{"ars.backend": "hogwild", "ars.workers": 1, "ars.iterations": 100,
                                   "ars.timeout": 1.0, "task.model": "tests.support.parallel:hanging_model"})
    with pytest.raises(WorkerLost, match="no hogwild worker finished a step in ars.timeout = 1.0 s"):
        run(config)


def test_divergence_in_a_worker_is_a_training_divergence(tmp_path):
    config = make_job("digits", tmp_path, **{"ars.backend": "hogwild", "ars.workers": 2, "ars.step_size": 1e38,
                                   "ars.iterations": 50})
    with pytest.raises(TrainingDiverged):
        run(config)


def test_config_refuses_zero_workers(tmp_path):
    with pytest.raises(ConfigError, match="ars.workers"):
        make_job("digits", tmp_path, **{"ars.backend": "hogwild", "ars.workers": 0})


def test_config_refuses_hogwild_with_a_population(tmp_path):
    with pytest.raises(ConfigError, match="cannot be combined with \\[population\\]"):
        make_job("digits", tmp_path, **{"ars.backend": "hogwild", "population.size": 2})


def test_cli_exits_1_with_the_worker_error(tmp_path, capsys):
    from arsearch.cli import main

    job = tmp_path / "job.toml"
    job.write_text(to_toml(make_job("digits", tmp_path / "run", **{
        "task.model": "tests.support.parallel:raising_model", "task.hidden": [8], "task.batch_size": 32,
        "ars.backend": "hogwild", "ars.directions": 4, "ars.top": 2, "ars.iterations": 1000})))
    assert main(["train", str(job), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "arsearch: error: hogwild worker" in err and "boom" in err
