"""An interrupted study trial resumes into the same job (issue 22 item 1): a real SIGTERM to a real
`arsearch study run`, then the next `study run` continues the trial from its checkpoint, in its MLflow
run, with the pruner's reports of the interrupted part carried over, and ends with the value an
uninterrupted trial of the same parameters gets. Also: two workers opening the study at the same
moment queue an interrupted trial once (item 2)."""

import os
import signal
import subprocess
import sys

import optuna
import pytest

from arsearch.study import load_study, open_study
from tests.support.recovery import run, start, wait_for, wait_for_trial_under_way
from tests.support.study import REPO, env, write_study
from tests.test_orphans import no_survivors, tree

pytestmark = pytest.mark.multiprocess

ITERATIONS = 1500


def _study(directory, extra: str = "", seeds: str = ""):
    path = write_study(directory, study='pruner = "none"\nsampler = "random"\n' + extra,
                       space='"ars.iterations" = { low = 10, high = 100000 }\n', iterations=ITERATIONS)
    if seeds:
        text = path.read_text().replace("\n[space]", seeds + "\n[space]")
        path.write_text(text)
    study, _ = open_study(load_study(path))
    study.enqueue_trial({"ars.iterations": ITERATIONS})
    return path, study


def _interrupt(cwd, path, study):
    proc = start(cwd, "study", "run", str(path), "--n-trials", "1", "--quiet")
    wait_for_trial_under_way(study, proc)
    family = tree(proc.pid)
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 143, err
    assert "Traceback" not in err, err
    no_survivors(family, timeout=30)
    first = study.get_trials()[0]
    assert first.state == optuna.trial.TrialState.FAIL and first.user_attrs["interrupted"] == "SIGTERM"
    return first


def _uninterrupted(cwd, monkeypatch, extra: str, seeds: str = "") -> float:
    """The value of the same trial run to its end without a signal, in a study of its own."""
    from arsearch.cli import main

    fresh = cwd / "fresh"
    fresh.mkdir()
    monkeypatch.chdir(fresh)                      # the study's storage and directories are relative
    path, study = _study(fresh, extra + "tracking = false\n", seeds=seeds)
    assert main(["study", "run", str(path), "--n-trials", "1", "--quiet"]) == 0
    return study.get_trials()[0].value


@pytest.mark.parametrize("subprocess_trials", [False, True], ids=["in-process", "subprocess"])
def test_an_interrupted_trial_resumes_into_the_same_run_and_ends_as_if_never_stopped(tmp_cwd, subprocess_trials,
                                                                                    monkeypatch):
    extra = "subprocess = true\n" if subprocess_trials else ""
    path, study = _study(tmp_cwd, extra)
    first = _interrupt(tmp_cwd, path, study)
    trial_dir = tmp_cwd / "runs" / "studies" / "tiny" / "trial_00000"
    saved = sorted(trial_dir.glob("iter_*.pt"))
    assert len(saved) == 1, saved                   # one checkpoint, where the signal stopped the job
    stopped_at = int(saved[0].stem.split("_")[1])
    assert 0 < stopped_at < ITERATIONS

    again = run(tmp_cwd, "study", "run", str(path), "--n-trials", "1", "--quiet", timeout=600)
    assert again.returncode == 0, again.stderr
    assert "trial 0 of study 'tiny' was interrupted (SIGTERM): queued again" in again.stderr
    log = (trial_dir / "train.log").read_text() if subprocess_trials else again.stderr
    assert f"resuming from {saved[0]}" in log or f"resuming from {saved[0].relative_to(tmp_cwd)}" in log, log
    if subprocess_trials:                           # the interrupted run's lines are kept above the resumed one's
        assert log.index("stopped by SIGTERM") < log.index("resuming from")

    trials = study.get_trials()
    assert [(t.number, t.state) for t in trials] == [(0, optuna.trial.TrialState.FAIL),
                                                    (1, optuna.trial.TrialState.COMPLETE)]
    resumed = trials[1]
    assert resumed.user_attrs["requeued_from"] == 0
    assert resumed.user_attrs["mlflow_run_id"] == first.user_attrs["mlflow_run_id"]
    assert resumed.user_attrs["checkpoint_dir"] == str(trial_dir.relative_to(tmp_cwd))
    # the pruner sees the whole curve: the interrupted part's reports, then the resumed job's
    steps = sorted(resumed.intermediate_values)
    assert set(first.intermediate_values) <= set(steps) and steps[0] == min(first.intermediate_values)
    assert steps[-1] > max(first.intermediate_values)

    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_cwd / 'mlflow.db'}")
    runs = [r for r in client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
            if r.data.tags.get("arsearch.role") == "trial"]
    assert len(runs) == 1                           # one job, one run
    trial_run = runs[0]
    assert trial_run.info.run_id == first.user_attrs["mlflow_run_id"]
    assert trial_run.info.status == "FINISHED" and trial_run.data.tags["arsearch.trial"] == "1"
    assert "arsearch.stopped_by" not in trial_run.data.tags
    assert trial_run.data.tags["arsearch.requeued_from"] == "0"
    history = [m.step for m in client.get_metric_history(trial_run.info.run_id, "train/score")]
    assert history == sorted(set(history)), "train/score steps restarted or repeated"
    assert history[0] <= 5 and history[-1] == ITERATIONS and any(s > stopped_at for s in history)

    # the same parameters, never interrupted, give the same value (a resumed job is bit-exact)
    assert _uninterrupted(tmp_cwd, monkeypatch, extra) == resumed.value


SEEDS = "\n[study.seeds]\ntuning = 2\nparallel = 1\n"


def test_an_interrupted_seeded_trial_resumes_its_unfinished_seed_job(tmp_cwd, monkeypatch):
    """[study.seeds]: each seed job has its own checkpoint directory; the one a signal stopped resumes."""
    path, study = _study(tmp_cwd, "tracking = false\n", seeds=SEEDS)
    _interrupt(tmp_cwd, path, study)
    configs = tmp_cwd / "runs" / "studies" / "tiny" / "configs"
    stopped = [d for d in configs.glob("*/seed_*") if list(d.glob("iter_*.pt")) and not (d / "final.pt").exists()]
    assert stopped, list(configs.rglob("*"))         # the seed jobs the signal stopped, each with its checkpoint
    saved = {d: sorted(d.glob("iter_*.pt"))[-1] for d in stopped}
    again = run(tmp_cwd, "study", "run", str(path), "--n-trials", "1", "--quiet", timeout=600)
    assert again.returncode == 0, again.stderr
    for d, checkpoint in saved.items():             # in this process, or in the seed job's own train.log
        said = again.stderr + ((d / "train.log").read_text() if (d / "train.log").exists() else "")
        assert f"resuming from {checkpoint.relative_to(tmp_cwd)}" in said or f"resuming from {checkpoint}" in said, said
    resumed = study.get_trials()[1]
    assert resumed.state == optuna.trial.TrialState.COMPLETE and resumed.user_attrs["requeued_from"] == 0

    assert _uninterrupted(tmp_cwd, monkeypatch, "", seeds=SEEDS) == resumed.value


ROUNDS = 6
OPEN_AT_ONCE = """
import os, sys, time
sys.path.insert(0, {repo!r})
import optuna
from arsearch.study.runner import make_storage, requeue_interrupted
study = optuna.load_study(study_name="tiny", storage=make_storage("sqlite:///optuna.db"))
study.get_trials()
open({barrier!r} + f".ready{{os.getpid()}}", "w").close()
while not os.path.exists({barrier!r}):
    time.sleep(0.0005)
requeue_interrupted(study)      # what every worker does when it opens the study (`open_study`)
"""


def test_two_workers_opening_the_study_at_once_queue_an_interrupted_trial_once(tmp_cwd):
    """Released from one barrier, two processes re-queue the interrupted trials of a study, ROUNDS times
    over (the check-then-enqueue of the old code queued a trial twice in most rounds)."""
    path = write_study(tmp_cwd, study='sampler = "random"\npruner = "none"\ntracking = false\n', iterations=4)
    study, _ = open_study(load_study(path))
    dist = {"ars.step_size": optuna.distributions.FloatDistribution(0.005, 0.05, log=True)}
    for round_ in range(ROUNDS):
        study.add_trial(optuna.trial.create_trial(
            state=optuna.trial.TrialState.FAIL, params={"ars.step_size": 0.01 + round_ / 1000},
            distributions=dist, user_attrs={"interrupted": "SIGTERM"}))
        barrier = tmp_cwd / f"go{round_}"
        code = OPEN_AT_ONCE.format(repo=str(REPO), path=str(path), barrier=str(barrier))
        procs = [subprocess.Popen([sys.executable, "-c", code], cwd=tmp_cwd, env=env(), stderr=subprocess.PIPE,
                                  text=True) for _ in range(2)]
        wait_for(lambda barrier=barrier: len(list(tmp_cwd.glob(f"{barrier.name}.ready*"))) == 2, timeout=120,
                 what="both workers ready")
        barrier.touch()
        for p in procs:
            _, err = p.communicate(timeout=120)
            assert p.returncode == 0, err
    trials = study.get_trials()
    requeued = [t.user_attrs["requeued_from"] for t in trials if "requeued_from" in t.user_attrs]
    interrupted = [t.number for t in trials if "interrupted" in t.user_attrs]
    assert sorted(requeued) == interrupted, requeued     # each interrupted trial queued exactly once
