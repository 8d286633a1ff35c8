"""Seed-robust studies on real `arsearch train` jobs: seeds in parallel processes, `study validate`,
MLflow runs of the validation, and kill -9 of a worker mid-trial losing no finished seed job."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import optuna
import pytest

from tests.support.recovery import run, start, wait_for

# a 20-dimensional sphere: a seed job is a short subprocess (most of it importing torch)
FUNCTION_JOB = """
seed = 0
[task]
kind = "function"
function = "sphere"
dim = 20
init_scale = 1.0
[ars]
version = "v1t"
directions = 4
top = 2
step_size = 0.05
noise = 0.05
iterations = {iterations}
backend = "vectorized"
[eval]
every = 10
[tracking]
uri = "sqlite:///mlflow.db"
experiment = "race"
[checkpoint]
dir = "runs/race"
every = {every}
"""


def write(cwd, study: str, iterations: int = 30, every: int = 1000, space: str = ""):
    (cwd / "base.toml").write_text(FUNCTION_JOB.format(iterations=iterations, every=every))
    (cwd / "study.toml").write_text(
        '[study]\nname = "race"\nbase = "base.toml"\nstorage = "sqlite:///optuna.db"\nmetric = "eval/value"\n'
        'direction = "minimize"\nsampler = "random"\npruner = "none"\n' + study + "\n[space]\n"
        + (space or '"ars.step_size" = { choice = [0.002, 0.05, 0.1] }\n'))
    return cwd / "study.toml"


def rows(study: optuna.Study, prefix: str = "arsearch.run:") -> dict[str, dict]:
    return {k: v for k, v in study.user_attrs.items() if k.startswith(prefix)}


@pytest.mark.multiprocess
def test_a_raced_study_runs_seeds_in_parallel_processes_and_validates_from_the_cli(tmp_cwd):
    import shutil

    from tests.support.study import mlflow_template

    shutil.copy(mlflow_template(), tmp_cwd / "mlflow.db")
    path = write(tmp_cwd, 'n_trials = 3\n[study.seeds]\ntuning = 3\nrace = true\nparallel = 2\n'
                          '[study.validate]\ntop = 2\nseeds = 2\nauto = false\n')
    path.write_text(path.read_text() + '\n[[enqueue]]\n"ars.step_size" = 0.05\n')
    done = run(tmp_cwd, "study", "run", str(path), "--quiet", timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    study = optuna.load_study(study_name="race", storage="sqlite:///optuna.db")
    tuning = study.user_attrs["arsearch.seeds.tuning"]
    assert len(tuning) == 3
    # every seed job ran as its own process with its own seed: one job directory per (configuration, seed)
    jobs = sorted((tmp_cwd / "runs/studies/race/configs").glob("*/seed_*"))
    assert jobs and all(int(j.name[5:]) in tuning for j in jobs)
    assert all((j / "train.log").exists() for j in jobs)
    assert len(rows(study)) == len(jobs)
    first = study.trials[0]                 # the enqueued baseline: the first incumbent
    assert first.params == {"ars.step_size": 0.05} and first.state == optuna.trial.TrialState.COMPLETE

    val = run(tmp_cwd, "study", "validate", str(path), timeout=600)
    assert val.returncode == 0, val.stderr[-3000:]
    assert "held-out validation on 2 fresh seeds" in val.stdout and "<- winner" in val.stdout
    study = optuna.load_study(study_name="race", storage="sqlite:///optuna.db")
    fresh = study.user_attrs["arsearch.seeds.validation"]
    assert len(fresh) == 2 and not set(fresh) & set(tuning)
    summary = study.user_attrs["arsearch.validation"]
    assert summary["complete"] and any(c["baseline"] for c in summary["configs"])
    # validation runs are nested under the study's parent run in MLflow
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_cwd / 'mlflow.db'}")
    mlruns = client.search_runs([client.get_experiment_by_name("race").experiment_id])
    parent = next(r for r in mlruns if r.data.tags.get("arsearch.role") == "study")
    validation = [r for r in mlruns if r.data.tags.get("arsearch.role") == "validation"]
    assert len(validation) == len(summary["configs"])
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in validation)
    # each trial's run: its seeds as labelled steps, and a raced-out trial says where and why
    by_number = {t.number: t for t in study.trials}
    for r in (r for r in mlruns if r.data.tags.get("arsearch.role") == "trial"):
        t = by_number[int(r.data.tags["arsearch.trial"])]
        history = client.get_metric_history(r.info.run_id, "seed/value")
        assert len(history) >= 1 and {int(m.step) for m in history} <= set(range(len(tuning)))
        if "raced_out" in t.user_attrs:
            assert r.data.tags["arsearch.stop_reason"].startswith("raced out after")
            assert r.data.tags["arsearch.pruned_at"].endswith("seeds") and "pruned@" in r.info.run_name
    # `study show` names the validated winner
    shown = run(tmp_cwd, "study", "show", str(path))
    assert shown.returncode == 0 and "validated winner's job config" in shown.stdout
    # validation is resumable: run again, nothing new runs
    again = run(tmp_cwd, "study", "validate", str(path), timeout=600)
    assert again.returncode == 0 and "validating" not in again.stderr


def _pids_of(pattern: str) -> list[int]:
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


@pytest.mark.multiprocess
def test_kill_9_of_a_worker_mid_trial_loses_no_finished_seed_job(tmp_cwd):
    # seeds one after another (subprocess trials, one at a time); heartbeats every second
    path = write(tmp_cwd, 'n_trials = 1\nsubprocess = true\ntracking = false\nheartbeat_interval = 1\n'
                          'grace_period = 3\n[study.seeds]\ntuning = 2\nparallel = 1\n',
                 iterations=3000, every=200, space='"ars.step_size" = { choice = [0.05] }\n')
    worker = start(tmp_cwd, "study", "run", str(path), "--quiet")
    storage = "sqlite:///optuna.db"

    def first_row():
        try:
            study = optuna.load_study(study_name="race", storage=storage)
        except Exception:                       # noqa: BLE001 - not created yet
            return None
        return rows(study) or None
    finished = wait_for(first_row, timeout=300, what="the first seed job to finish", proc=worker)
    assert len(finished) == 1
    (key, row), = finished.items()
    tuning = optuna.load_study(study_name="race", storage=storage).user_attrs["arsearch.seeds.tuning"]
    cut = next(s for s in tuning if str(s) != key.rsplit(":", 1)[1])
    wait_for(lambda: list((tmp_cwd / "runs/studies/race/configs").glob(f"*/seed_{cut}/iter_*.pt")), timeout=120,
             what="the second seed job's first checkpoint")
    os.kill(worker.pid, signal.SIGKILL)         # the worker only: its seed job must not outlive it
    worker.wait()
    wait_for(lambda: not _pids_of(str(tmp_cwd / "runs/studies/race")), timeout=30,
             what="the killed worker's seed job to end")
    time.sleep(4)                               # past the grace period: the trial is stale

    again = run(tmp_cwd, "study", "run", str(path), "--quiet", timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    study = optuna.load_study(study_name="race", storage=storage)
    states = [t.state for t in study.trials]
    assert states == [optuna.trial.TrialState.FAIL, optuna.trial.TrialState.COMPLETE]
    table = rows(study)
    assert table[key] == row                    # the finished seed job's row is the killed trial's: not rerun
    assert len(table) == 2
    other = next(v for k, v in table.items() if k != key)
    assert other["trial"] == 1                  # the cut job was finished by the retry, from its checkpoint
    log = next((tmp_cwd / "runs/studies/race/configs").glob(f"*/seed_{cut}/train.log")).read_text()
    assert "resuming from" in log
    assert len(study.trials[1].user_attrs["seeds"]) == 2


@pytest.mark.multiprocess
@pytest.mark.postgres
def test_two_workers_race_one_study_on_postgres(tmp_cwd):
    from arsearch.study import load_existing
    from tests.support.study import fresh_postgres_schema

    url = fresh_postgres_schema()
    path = write(tmp_cwd, 'tracking = false\n[study.seeds]\ntuning = 3\nrace = true\nparallel = 1\n')
    path.write_text(path.read_text().replace('storage = "sqlite:///optuna.db"', f'storage = "{url}"'))
    assert run(tmp_cwd, "study", "create", str(path)).returncode == 0
    workers = [start(tmp_cwd, "study", "run", str(path), "--n-trials", "3", "--quiet") for _ in range(2)]
    results = [w.communicate(timeout=600) + (w.returncode,) for w in workers]
    assert [r[2] for r in results] == [0, 0], [r[1][-2000:] for r in results]
    study = load_existing(url, "race")
    assert len(study.trials) == 6
    assert all(t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED) for t in study.trials), \
        [(t.state, t.user_attrs.get("fail_reason"), t.user_attrs.get("traceback")) for t in study.trials]
    tuning = study.user_attrs["arsearch.seeds.tuning"]
    # both workers used the one stored seed list, and every row is a (configuration, tuning seed) pair
    assert all(int(k.rsplit(":", 1)[1]) in tuning for k in rows(study))
    raced = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    assert all("raced_out" in t.user_attrs for t in raced)
