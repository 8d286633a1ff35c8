"""Studies: workers started at the same moment on a fresh storage, `study create`, validation before the
first trial, masked passwords, and MLflow runs of killed workers ended by the next one."""

import os
import signal
import time

import optuna
import pytest

from arsearch.cli import main
from arsearch.config import ConfigError
from arsearch.study import load_existing, load_study, open_study
from arsearch.tracking import redact
from tests.support.recovery import run, start, wait_for_trial_under_way
from tests.support.study import fresh_postgres_schema, write_study

COMPLETE, FAIL = optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL


def _together(cwd, n, *args):
    barrier = cwd / "go"
    procs = [start(cwd, *args, barrier=barrier) for _ in range(n)]
    time.sleep(10)                                   # every process has imported everything and waits
    barrier.touch()
    return [p.communicate(timeout=400) + (p.returncode,) for p in procs]


@pytest.mark.multiprocess
def test_two_workers_started_together_on_fresh_sqlite_and_mlflow(tmp_cwd):
    path = write_study(tmp_cwd, study='sampler = "random"\npruner = "none"\n', iterations=4)
    results = _together(tmp_cwd, 2, "study", "run", str(path), "--n-trials", "2", "--quiet")
    assert [r[2] for r in results] == [0, 0], results
    study = optuna.load_study(study_name="tiny", storage="sqlite:///optuna.db")
    assert len(study.trials) == 4 and all(t.state == COMPLETE for t in study.trials)
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_cwd / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    assert sorted(r.data.tags.get("arsearch.role") for r in runs) == ["study"] + ["trial"] * 4
    assert all(r.info.status == "FINISHED" for r in runs if r.data.tags.get("arsearch.role") == "trial")


@pytest.mark.multiprocess
@pytest.mark.postgres
def test_two_workers_started_together_on_a_fresh_postgres_schema(tmp_cwd):
    url = fresh_postgres_schema()                     # no tables at all: both workers create them at once
    path = write_study(tmp_cwd, study=f'storage = "{url}"\ntracking = false\nsampler = "random"\npruner = "none"\n',
                       iterations=4)
    results = _together(tmp_cwd, 2, "study", "run", str(path), "--n-trials", "1", "--quiet")
    assert [r[2] for r in results] == [0, 0], results
    study = load_existing(url, "tiny")
    assert [t.state for t in study.trials] == [COMPLETE, COMPLETE]


def test_study_create_then_join(tmp_cwd, capsys):
    path = write_study(tmp_cwd)
    assert main(["study", "create", str(path)]) == 0
    assert "study 'tiny' created in sqlite:///optuna.db (0 trials); MLflow experiment 'tiny' ready" in \
        capsys.readouterr().out
    assert main(["study", "create", str(path)]) == 0
    assert "already exists" in capsys.readouterr().out


def test_metric_the_job_never_reports_is_refused_before_anything_is_written(tmp_cwd, capsys):
    path = write_study(tmp_cwd, study='metric = "eval/nonexistent"\n')
    assert main(["study", "run", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "study metric 'eval/nonexistent' is not reported by this job; it reports: eval/loss, eval/accuracy" in err
    assert not (tmp_cwd / "optuna.db").exists() and not (tmp_cwd / "mlflow.db").exists()


def test_unknown_dataset_in_the_base_is_refused_before_anything_is_written(tmp_cwd, capsys):
    path = write_study(tmp_cwd)
    base = (tmp_cwd / "base.toml").read_text().replace('dataset = "digits"', 'dataset = "nosuch_pkg:load"')
    (tmp_cwd / "base.toml").write_text(base)
    assert main(["study", "run", str(path), "--quiet"]) == 2
    assert "study.base: dataset 'nosuch_pkg:load': cannot import module 'nosuch_pkg'" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_cwd)) == ["base.toml", "study.toml"]


def test_space_whose_extremes_make_an_invalid_job_is_refused(tmp_cwd):
    path = write_study(tmp_cwd, space='"ars.top" = { low = 2, high = 8 }\n"ars.directions" = { low = 4, high = 16 }\n')
    with pytest.raises(ConfigError, match=r"space: the trial with ars.top = 8, ars.directions = 4 would be an "
                                          r"invalid job: ars.top = 8 must be <= ars.directions = 4"):
        load_study(path)


@pytest.mark.parametrize("url, shown", [
    ("postgresql://alice@host:1/db?password=S3cret", "postgresql://alice@host:1/db?password=***"),
    ("postgresql://alice:p@ss@host:1/db", "postgresql://alice:***@host:1/db"),      # an unencoded @ in it
    ("postgresql://a:b:c@h/db?sslmode=require&PASSWORD=S3cret&x=1",
     "postgresql://a:***@h/db?sslmode=require&PASSWORD=***&x=1"),
    ("http://bob:S3cret@mlflow:5000", "http://bob:***@mlflow:5000"),
    ("sqlite:///mlflow.db", "sqlite:///mlflow.db"), ("mysql://root@localhost/db", "mysql://root@localhost/db")])
def test_every_credential_form_of_a_url_is_masked(url, shown):
    assert redact(url) == shown
    assert redact(f"storage {url} cannot be opened") == f"storage {shown} cannot be opened"


def test_a_query_string_password_never_reaches_the_terminal(tmp_cwd, capsys):
    path = write_study(tmp_cwd, study='storage = "postgresql://alice@127.0.0.1:1/db?password=S3cret-q"\n')
    assert main(["study", "run", str(path), "--quiet"]) == 2
    captured = capsys.readouterr()
    assert "S3cret-q" not in captured.err + captured.out and "password=***" in captured.err


def test_password_is_masked_in_errors_and_mlflow_params(tmp_cwd, capsys):
    url = "postgresql://user:s3cret-pw@127.0.0.1:1/db"
    assert redact(url) == "postgresql://user:***@127.0.0.1:1/db"
    path = write_study(tmp_cwd, study=f'storage = "{url}"\n')
    assert main(["study", "run", str(path), "--quiet"]) == 2
    captured = capsys.readouterr()
    assert "s3cret-pw" not in captured.err + captured.out and "user:***@127.0.0.1" in captured.err
    # the study's MLflow parent run records the storage without its password
    from arsearch.study.runner import StudyTracker
    from arsearch.tracking import connect

    spec = load_study(write_study(tmp_cwd))
    spec.settings.storage = url
    study = optuna.create_study(study_name="tiny")
    client = connect("sqlite:///mlflow.db")
    tracker = StudyTracker(client, "tiny", study, spec)
    tracker.drain()
    params = client.get_run(tracker.parent_id).data.params
    assert params["study.storage"] == "postgresql://user:***@127.0.0.1:1/db"


@pytest.mark.multiprocess
def test_killed_worker_runs_are_ended_and_the_rerun_says_which_trial_it_retried(tmp_cwd):
    path = write_study(tmp_cwd, study='pruner = "none"\nheartbeat_interval = 1\ngrace_period = 3\nmax_retry = 1\n',
                       space='"ars.iterations" = { low = 10, high = 1500 }\n')
    study, _ = open_study(load_study(path))
    study.enqueue_trial({"ars.iterations": 10})
    study.enqueue_trial({"ars.iterations": 1500})
    first = start(tmp_cwd, "study", "run", str(path), "--n-trials", "2", "--quiet")
    wait_for_trial_under_way(study, first, number=1, trials=2)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_cwd / 'mlflow.db'}")
    exp = client.get_experiment_by_name("tiny").experiment_id

    def trial_runs():
        return {r.data.tags["arsearch.trial"]: r for r in client.search_runs([exp])
                if r.data.tags.get("arsearch.role") == "trial"}
    runs = trial_runs()
    assert runs["0"].info.status == "FINISHED"                 # flushed before Optuna was told COMPLETE
    assert [a.path for a in client.list_artifacts(runs["0"].info.run_id)] == ["checkpoint", "config.toml",
                                                                              "learning_curve.png"]
    assert runs["1"].info.status == "RUNNING"                  # the fault: the killed trial's run

    # a trial Optuna holds COMPLETE whose run was left RUNNING (its worker died while sending)
    client.update_run(runs["0"].info.run_id, status="RUNNING")
    time.sleep(3.5)                                            # past the grace period
    second = run(tmp_cwd, "study", "run", str(path), "--n-trials", "1", "--quiet", timeout=400)
    assert second.returncode == 0, second.stderr
    assert "trial 1 of study 'tiny' was still RUNNING with no heartbeat (its worker died): marked FAIL and " \
           "re-queued (retry 1 of 1)" in second.stderr
    assert "MLflow run of trial 1 (Optuna: FAIL) was left RUNNING by a killed worker: ended as FAILED" in second.stderr
    assert "MLflow run of trial 0 (Optuna: COMPLETE) was left RUNNING by a killed worker: ended as KILLED" \
        in second.stderr
    runs = trial_runs()
    assert runs["1"].info.status == "FAILED" and runs["0"].info.status == "KILLED"
    assert runs["2"].info.status == "FINISHED" and runs["2"].data.tags["arsearch.retry_of"] == "1"


def test_trial_config_artifact_reruns_elsewhere(tmp_cwd):
    """The config.toml logged with a trial points to a fresh directory, and its run lands beside the trial's
    (the study's experiment), named as a rerun; `study show --config-out` writes the same experiment."""
    path = write_study(tmp_cwd, study='sampler = "random"\npruner = "none"\n', iterations=2)
    assert main(["study", "run", str(path), "--n-trials", "1", "--quiet"]) == 0
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_cwd / 'mlflow.db'}")
    exp = client.get_experiment_by_name("tiny").experiment_id
    trial = next(r for r in client.search_runs([exp]) if r.data.tags.get("arsearch.role") == "trial")
    text = open(client.download_artifacts(trial.info.run_id, "config.toml", str(tmp_cwd))).read()
    assert 'dir = "runs/tiny-trial-0"' in text and 'experiment = "tiny"' in text and 'run_name = "trial-0 rerun"' in text
    assert main(["study", "show", str(path), "--config-out", "best.toml"]) == 0
    best = (tmp_cwd / "best.toml").read_text()
    assert 'experiment = "tiny"' in best and "logs to MLflow experiment 'tiny'" in best


def test_an_interrupted_trial_runs_again_with_its_parameters_on_the_next_study_run(tmp_cwd, caplog):
    """A trial a signal stopped is recorded FAIL with `interrupted` (the real signal: test_recovery_study_signals);
    the next `study run` queues it once with the same parameters and runs it first. A trial that failed on
    its own (no `interrupted`) is not retried."""
    path = write_study(tmp_cwd, study='sampler = "random"\npruner = "none"\n', iterations=4)
    study, _ = open_study(load_study(path))
    dist = {"ars.step_size": optuna.distributions.FloatDistribution(0.005, 0.05, log=True)}
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL, params={"ars.step_size": 0.0123},
                                              distributions=dist, user_attrs={"interrupted": "SIGTERM"}))
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL, params={"ars.step_size": 0.0321},
                                              distributions=dist, user_attrs={"fail_reason": "diverged"}))
    assert main(["study", "run", str(path), "--n-trials", "1", "--quiet"]) == 0
    assert "trial 0 of study 'tiny' was interrupted (SIGTERM): queued again" in caplog.text
    trials = study.get_trials()
    assert [(t.number, t.state.name, t.params) for t in trials[2:]] == [(2, "COMPLETE", {"ars.step_size": 0.0123})]
    assert trials[2].user_attrs["requeued_from"] == 0
    assert main(["study", "run", str(path), "--n-trials", "1", "--quiet"]) == 0     # queued once only
    assert [t.params for t in study.get_trials()].count({"ars.step_size": 0.0123}) == 2
