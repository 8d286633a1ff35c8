"""Ctrl-C and SIGTERM to `arsearch study run`, with in-process and subprocess trials (issue 22 item 1):
one line and no traceback, the running trial recorded FAIL and tagged interrupted, its MLflow run ended
KILLED, no new trial started, a subprocess trial's child given the same signal (it saves a checkpoint),
and no process left behind."""

import os
import signal

import optuna
import pytest

from arsearch.study import load_study, open_study
from tests.support.recovery import start, wait_for_trial_under_way
from tests.support.study import write_study
from tests.test_orphans import no_survivors, tree

pytestmark = pytest.mark.multiprocess


@pytest.mark.parametrize("sig,subprocess_trials", [(signal.SIGTERM, False), (signal.SIGINT, False),
                                                   (signal.SIGTERM, True)],
                         ids=["sigterm-in-process", "ctrl-c-in-process", "sigterm-subprocess"])
def test_signal_to_study_run_interrupts_the_trial_and_ends_its_runs(tmp_cwd, sig, subprocess_trials):
    extra = "subprocess = true\n" if subprocess_trials else ""
    path = write_study(tmp_cwd, study='pruner = "none"\nsampler = "random"\n' + extra,
                       space='"ars.iterations" = { low = 10, high = 100000 }\n')
    study, _ = open_study(load_study(path))
    study.enqueue_trial({"ars.iterations": 100000})
    proc = start(tmp_cwd, "study", "run", str(path), "--n-trials", "3", "--quiet")
    wait_for_trial_under_way(study, proc)
    family = tree(proc.pid)
    if sig == signal.SIGINT:
        os.killpg(proc.pid, sig)            # a terminal's Ctrl-C (a subprocess trial has its own session)
    else:
        os.kill(proc.pid, sig)
    _, err = proc.communicate(timeout=180)
    name = signal.Signals(sig).name
    assert proc.returncode == 128 + sig, err
    assert "Traceback" not in err and f"arsearch: stopped by {name}" in err, err
    no_survivors(family, timeout=30)

    trials = study.get_trials()
    assert len(trials) == 1                                    # no new trial started after the signal
    assert trials[0].state == optuna.trial.TrialState.FAIL
    assert trials[0].user_attrs["interrupted"] == name and "fail_reason" not in trials[0].user_attrs
    # the next `study run` (any worker opening the study) queues the interrupted trial again, once
    for _ in range(2):
        again, _ = open_study(load_study(path))
    queued = [t for t in again.get_trials() if t.number != 0]
    assert [(t.state, t.system_attrs.get("fixed_params"), t.user_attrs) for t in queued] == [
        (optuna.trial.TrialState.WAITING, {"ars.iterations": 100000}, {"requeued_from": 0})]
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_cwd / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    trial_run = next(r for r in runs if r.data.tags.get("arsearch.role") == "trial")
    parent = next(r for r in runs if r.data.tags.get("arsearch.role") == "study")
    assert trial_run.info.status == "KILLED" and trial_run.data.tags["arsearch.stopped_by"] == name
    assert trial_run.info.run_name == "trial-0 interrupted"
    assert parent.info.status != "RUNNING"
    if subprocess_trials:                  # the child got the signal, saved where it stopped, and said so
        trial_dir = tmp_cwd / "runs" / "studies" / "tiny" / "trial_00000"
        log = (trial_dir / "train.log").read_text()
        assert f"stopped by {name} at iteration" in log, log
        assert list(trial_dir.glob("iter_*.pt"))
