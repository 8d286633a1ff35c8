"""MLflow tracking of `arsearch train` and of studies: SQLite, a real `mlflow server` over HTTP, failures."""

import json
import socket

import pytest

from arsearch.cli import main
from tests.support.study import runs_of, write_study


@pytest.mark.usefixtures("mlflow_db")
def test_train_logs_one_run_with_batched_metrics(tmp_cwd, monkeypatch, capsys):
    from mlflow import MlflowClient

    calls = []
    original = MlflowClient.log_batch
    monkeypatch.setattr(MlflowClient, "log_batch",
                        lambda self, run_id, metrics=(), params=(), tags=(), **kw:
                        calls.append(len(metrics)) or original(self, run_id, metrics, params, tags, **kw))
    write_study(tmp_cwd, iterations=60)
    assert main(["train", "base.toml", "--quiet", "--set", "tracking.run_name=demo"]) == 0
    client, runs = runs_of("sqlite:///mlflow.db", "tiny")
    (run,) = runs
    assert run.info.run_name == "demo" and run.info.status == "FINISHED"
    assert run.data.params["ars.directions"] == "4" and run.data.params["tracking.experiment"] == "tiny"
    history = client.get_metric_history(run.info.run_id, "train/score")
    assert [m.step for m in history] == list(range(1, 61))
    points = sum(calls)
    metric_batches = [n for n in calls if n]
    assert points >= 60 * 3 and len(metric_batches) <= 3       # 60 iterations in a handful of requests
    assert run.data.metrics["eval/accuracy"] == json.loads((tmp_cwd / "runs/tiny/metrics.json").read_text())[
        "eval/accuracy"]
    arts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.toml", "learning_curve.png", "checkpoint"} <= arts
    assert [a.path for a in client.list_artifacts(run.info.run_id, "checkpoint")] == ["checkpoint/final.pt"]
    # the way to the run, on stderr (stdout stays the result's JSON), opening MLflow's training view
    out, err = capsys.readouterr()
    json.loads(out)
    assert (f"MLflow run {run.info.run_id}: http://127.0.0.1:5000/#/experiments/{run.info.experiment_id}/runs/"
            f"{run.info.run_id}?workflowType=machine_learning") in err
    assert "arsearch ui --tracking-uri sqlite:///mlflow.db" in err


@pytest.mark.usefixtures("mlflow_db")
def test_tracking_failure_never_loses_the_training_result(tmp_cwd, monkeypatch, caplog):
    from mlflow import MlflowClient

    def broken(self, *args, **kwargs):
        raise ConnectionError("tracking store went away")

    write_study(tmp_cwd, iterations=60)
    monkeypatch.setattr(MlflowClient, "log_artifact", broken)
    original = MlflowClient.log_batch
    sent = []

    def flaky(self, run_id, metrics=(), params=(), tags=(), **kw):
        if metrics:
            sent.append(1)
            if len(sent) > 1:
                raise ConnectionError("tracking store went away")
        return original(self, run_id, metrics, params, tags, **kw)
    monkeypatch.setattr(MlflowClient, "log_batch", flaky)
    assert main(["train", "base.toml", "--quiet"]) == 0
    result = json.loads((tmp_cwd / "runs/tiny/metrics.json").read_text())
    assert result["iterations"] == 60 and (tmp_cwd / "runs/tiny/final.pt").exists()
    assert "MLflow tracking stopped for this run" in caplog.text


def test_dead_tracking_server_is_reported_before_training(tmp_cwd, capsys):
    write_study(tmp_cwd)
    # a port bound but never listening: connections are refused, and no other process can take it
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    uri = f"http://127.0.0.1:{held.getsockname()[1]}"
    assert main(["train", "base.toml", "--quiet", "--set", f"tracking.uri={uri}"]) == 2
    err = capsys.readouterr().err
    assert f"MLflow tracking server {uri} is not reachable" in err and "tracking.enabled = false" in err
    assert not (tmp_cwd / "runs").exists()                      # nothing started
    path = write_study(tmp_cwd, study="n_trials = 1\n")
    assert main(["study", "run", str(path), "--tracking-uri", uri, "--quiet"]) == 2
    assert "is not reachable" in capsys.readouterr().err
    held.close()


@pytest.mark.multiprocess
def test_study_over_http_to_a_real_mlflow_server(mlflow_server, tmp_cwd):
    path = write_study(tmp_cwd, study=f'n_trials = 1\ntracking_uri = "{mlflow_server}"\nexperiment = "http-study"\n')
    assert main(["study", "run", str(path), "--quiet"]) == 0
    client, runs = runs_of(mlflow_server, "http-study")
    parent = next(r for r in runs if r.data.tags.get("arsearch.role") == "study")
    children = [r for r in runs if r.data.tags.get("arsearch.role") == "trial"]
    assert len(children) == 1
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert len(client.get_metric_history(child.info.run_id, "train/score")) == 10
        assert "config.toml" in {a.path for a in client.list_artifacts(child.info.run_id)}
    assert "plots/optimization_history.png" in {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    # and `arsearch train` logs its own run to the same server
    assert main(["train", "base.toml", "--quiet", "--set", f"tracking.uri={mlflow_server}"]) == 0
    _, runs = runs_of(mlflow_server, "tiny")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
