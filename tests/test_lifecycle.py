"""`job.Job`, the one lifecycle of a training job: set up in order, torn down on success, error and signal alike."""

import signal

import pytest

from arsearch.callbacks import Callback
from arsearch.checkpoint import CheckpointError, ClaimedDir
from arsearch.interrupt import StopSignals, TrainingInterrupted
from arsearch.job import Job
from tests.support import make_job


def tracked_job(tmp_cwd, **overrides):
    return make_job("digits", tmp_cwd / "runs" / "job", **{"tracking.enabled": True, "tracking.uri": "sqlite:///mlflow.db",
                                                           "tracking.experiment": "lifecycle", **overrides})


def the_run(tmp_cwd):
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_cwd / 'mlflow.db'}")
    exp = client.get_experiment_by_name("lifecycle")
    runs = client.search_runs([exp.experiment_id]) if exp is not None else []
    assert len(runs) <= 1
    return runs[0] if runs else None


def assert_released(job):
    """Closed, and checkpoint.dir free for the next run (its lock released)."""
    assert job.trainer.closed and job.claim is None
    ClaimedDir(job.config.checkpoint.dir, resume=True).release()


class RaiseAt(Callback):
    def __init__(self, iteration, error):
        self.iteration, self.error = iteration, error

    def on_iteration(self, trainer, iteration, metrics):
        if iteration == self.iteration:
            raise self.error


@pytest.mark.usefixtures("mlflow_db")
def test_a_finished_job_ends_its_run_and_releases_everything(tmp_cwd):
    config = tracked_job(tmp_cwd)
    with Job(config, progress=False) as job:
        result = job.run()
    assert result["iterations"] == 10 and (tmp_cwd / "runs/job/final.pt").exists()
    assert_released(job)
    run = the_run(tmp_cwd)
    assert run.info.status == "FINISHED" and run.data.tags["arsearch.stop_reason"] == "iterations"


@pytest.mark.usefixtures("mlflow_db")
def test_an_error_in_training_fails_the_run_and_releases_everything(tmp_cwd):
    config = tracked_job(tmp_cwd)
    job = Job(config, progress=False, callbacks=[RaiseAt(3, RuntimeError("boom"))])
    with pytest.raises(RuntimeError, match="boom"), job:
        job.run()
    assert job.started and job.result is None
    assert_released(job)
    run = the_run(tmp_cwd)
    assert run.info.status == "FAILED"
    # what was trained is logged (the tracker comes after the failing callback: iteration 3 never reached it)
    assert [m.step for m in _history(tmp_cwd, run)] == [1, 2]


def _history(tmp_cwd, run):
    from mlflow import MlflowClient

    return MlflowClient(f"sqlite:///{tmp_cwd / 'mlflow.db'}").get_metric_history(run.info.run_id, "train/score")


@pytest.mark.usefixtures("mlflow_db")
def test_a_signal_saves_kills_the_run_and_names_the_signal(tmp_cwd):
    config = tracked_job(tmp_cwd)

    class Terminate(Callback):
        def on_iteration(self, trainer, iteration, metrics):
            if iteration == 4:
                trainer.signals.signum = signal.SIGTERM     # what StopSignals' handler records

    with StopSignals():
        job = Job(config, progress=False, callbacks=[Terminate()])
        with pytest.raises(TrainingInterrupted) as stopped, job:
            job.run()
    assert stopped.value.iteration == 4 and stopped.value.checkpoint.exists()
    assert_released(job)
    run = the_run(tmp_cwd)
    assert run.info.status == "KILLED" and run.data.tags["arsearch.stopped_by"] == "SIGTERM"
    # --resume continues that same run
    with Job(config, resume=True, progress=False) as job:
        job.run()
    run = the_run(tmp_cwd)
    assert run.info.status == "FINISHED" and [m.step for m in _history(tmp_cwd, run)] == list(range(1, 11))


@pytest.mark.usefixtures("mlflow_db")
def test_a_refused_job_writes_nothing_and_starts_no_run(tmp_cwd):
    config = tracked_job(tmp_cwd)
    with Job(config, progress=False) as job:
        job.run()
    ended = the_run(tmp_cwd).info.run_id
    job = Job(config, progress=False)            # the directory holds that run's checkpoints
    with pytest.raises(CheckpointError, match="already holds checkpoints"), job:
        job.run()
    assert job.trainer is None and job.tracker is None and not job.started
    assert the_run(tmp_cwd).info.run_id == ended
    fresh = tracked_job(tmp_cwd, **{"checkpoint.dir": str(tmp_cwd / "runs/new/job"), "task.device": "cuda:7"})
    with pytest.raises(ValueError), Job(fresh, progress=False):
        pass
    assert not (tmp_cwd / "runs/new").exists()


def test_an_untracked_job_given_a_task_closes_it_when_the_trainer_cannot_be_built(tmp_path, monkeypatch):
    from arsearch.tasks import build_task

    config = make_job("digits", tmp_path / "job")
    task = build_task(config)
    closed = []
    task.close = lambda: closed.append(True)

    def refuse(config, model):
        raise ValueError("no space for this model")
    monkeypatch.setattr("arsearch.trainer.build_space", refuse)
    with pytest.raises(ValueError, match="no space"), Job(config, progress=False, task=task, tracking=None):
        pass
    assert closed == [True] and not (tmp_path / "job").exists()


def test_load_weights_lives_beside_the_weight_files():
    import arsearch.posttrain as posttrain
    import arsearch.weights as weights

    # the trainer loads [model] checkpoint from weights, not from posttrain (no trainer <-> posttrain cycle;
    # tests/test_layers.py checks the imports)
    assert posttrain.load_weights is weights.load_weights and posttrain.base_model is weights.base_model


@pytest.mark.usefixtures("mlflow_db")
def test_posttrain_whose_export_fails_ends_its_run_failed(tmp_cwd, monkeypatch):
    from arsearch.posttrain import posttrain

    config = make_job("posttrain", tmp_cwd / "runs" / "job", **{
        "model.checkpoint": str(tmp_cwd / "pre.pt"), "model.pretrain_epochs": 1, "tracking.enabled": True,
        "tracking.uri": "sqlite:///mlflow.db", "tracking.experiment": "lifecycle"})

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr("arsearch.weights.export", full_disk)
    with pytest.raises(OSError, match="No space"):
        posttrain(config)
    run = the_run(tmp_cwd)
    assert run.info.status == "FAILED" and len(_history(tmp_cwd, run)) == 3     # trained, then the export failed
    ClaimedDir(config.checkpoint.dir, resume=True).release()                    # and the directory is free
