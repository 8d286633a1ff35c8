"""`arsearch ui` as a user meets it: from a virtualenv that is not activated, on the runs table."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from arsearch.cli import main
from tests.support.study import REPO, write_study


def test_ui_runs_mlflow_with_this_interpreter():
    from arsearch.tracking import ui_command

    cmd = ui_command("sqlite:///x.db", "0.0.0.0", 5123)
    assert cmd[:4] == [sys.executable, "-m", "mlflow", "ui"]
    assert cmd[cmd.index("--host") + 1] == "0.0.0.0" and cmd[cmd.index("--port") + 1] == "5123"
    assert cmd[cmd.index("--workers") + 1] == "1"


def test_ui_on_a_missing_store_is_a_usage_error_and_creates_nothing(tmp_cwd, capsys, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert main(["ui"]) == 2
    assert "no MLflow tracking store at sqlite:///mlflow.db" in capsys.readouterr().err
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///elsewhere.db")
    assert main(["ui"]) == 2
    assert "sqlite:///elsewhere.db" in capsys.readouterr().err
    assert list(tmp_cwd.iterdir()) == []


@pytest.mark.usefixtures("mlflow_db")
def test_runs_table_links_are_sorted_by_the_objective_and_tag_old_experiments(tmp_cwd):
    from mlflow import MlflowClient

    from arsearch.tracking import EXPERIMENT_KIND_TAG, MODEL_TRAINING, experiment_links

    uri = f"sqlite:///{tmp_cwd / 'mlflow.db'}"
    client = MlflowClient(uri)
    old = client.create_experiment("made-by-hand")            # as an older arsearch left it: no kind tag
    client.create_run(old, run_name="r")
    client.create_experiment("empty")
    path = write_study(tmp_cwd, study='n_trials = 1\npruner = "none"\nmetric = "eval/accuracy"\ndirection = "maximize"\n',
                       iterations=5)
    assert main(["study", "run", str(path), "--quiet"]) == 0
    links = {name: (url, n) for name, url, n in experiment_links(uri, "http://127.0.0.1:5000")}
    assert set(links) == {"made-by-hand", "tiny"}                # experiments without runs are left out
    url, n = links["tiny"]
    assert n == 2 and "/#/experiments/" in url and "workflowType=machine_learning" in url
    assert "orderByKey=metrics.%60eval%2Faccuracy%60&orderByAsc=false" in url
    assert "orderByKey" not in links["made-by-hand"][0]
    assert client.get_experiment(old).tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.multiprocess
@pytest.mark.usefixtures("mlflow_db")
def test_ui_starts_from_an_unactivated_venv_and_serves_the_store(tmp_cwd):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_cwd / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("seen")
    client.create_run(exp, run_name="visible")
    script = Path(sys.executable).parent / "arsearch"
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "arsearch.cli"]
    port = _free_port()
    # no venv on PATH and no MLFLOW_* variables: what `.venv/bin/arsearch ui` meets in a fresh shell
    env = {"HOME": os.environ.get("HOME", "/tmp"), "PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}
    log = (tmp_cwd / "ui.log").open("w")
    proc = subprocess.Popen([*cmd, "ui", "--port", str(port)], cwd=tmp_cwd, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 180
        while True:
            try:
                with urllib.request.urlopen(base + "/health", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    pytest.fail("arsearch ui did not answer:\n" + (tmp_cwd / "ui.log").read_text()[-3000:])
                time.sleep(0.5)
        with urllib.request.urlopen(f"{base}/api/2.0/mlflow/experiments/get-by-name?experiment_name=seen",
                                    timeout=10) as reply:
            served = json.loads(reply.read())["experiment"]
        assert served["experiment_id"] == exp
        assert {"key": "mlflow.experimentKind", "value": "custom_model_development"} in served["tags"]
        out = (tmp_cwd / "ui.log").read_text()
        assert "not installed" not in out
        assert f"{base}/#/experiments/{exp}/runs?workflowType=machine_learning" in out
        # MLflow's own run links drop the view; the hint says how to keep runs in the model-training view
        assert 'chose "Model training" once' in out
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(30)
