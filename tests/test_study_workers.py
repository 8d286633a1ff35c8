"""Several `arsearch study run` processes on one storage: PostgreSQL workers, and a worker killed with kill -9."""

import os
import signal
import subprocess
import time
import uuid

import optuna
import pytest

from arsearch.study import load_existing, load_study, open_study
from tests.support.study import arsearch_cmd, env, write_study

pytestmark = pytest.mark.multiprocess

COMPLETE, FAIL = optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL


def postgres_url() -> str:
    url = os.environ.get("ARSEARCH_TEST_POSTGRES")
    if not url:
        if os.environ.get("CI"):
            pytest.fail("ARSEARCH_TEST_POSTGRES is not set: .ci/services.sh did not start PostgreSQL")
        pytest.skip("no PostgreSQL here: source .ci/services.sh to run this test")
    return url


@pytest.mark.postgres
def test_two_workers_share_one_postgres_study(tmp_cwd, spawn):
    url = postgres_url()
    name = f"pg-{uuid.uuid4().hex[:8]}"
    path = write_study(tmp_cwd, name=name, study=f'storage = "{url}"\ntracking = false\nsampler = "random"\n'
                                                 'pruner = "none"\n')
    open_study(load_study(path))          # the storage and study are created once, before the workers
    workers = [spawn(arsearch_cmd("study", "run", str(path), "--n-trials", "3", "--quiet"),
                     env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for _ in range(2)]
    outputs = [w.communicate(timeout=240)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    study = load_existing(url, name)
    trials = study.get_trials()
    assert len(trials) == 6 and all(t.state == COMPLETE for t in trials)
    assert sorted(t.number for t in trials) == list(range(6))
    assert len({t.params["ars.step_size"] for t in trials}) == 6       # no trial was proposed or run twice
    assert len({t.user_attrs["checkpoint_dir"] for t in trials}) == 6
    optuna.delete_study(study_name=name, storage=study._storage)


def test_worker_killed_mid_trial_is_retried_by_the_next(tmp_cwd, spawn, run_cli):
    path = write_study(tmp_cwd, study="tracking = false\npruner = \"none\"\nheartbeat_interval = 1\n"
                                      "grace_period = 3\nmax_retry = 1\n",
                       space='"ars.iterations" = { low = 10, high = 1500 }\n')
    study, _ = open_study(load_study(path))
    study.enqueue_trial({"ars.iterations": 10})
    study.enqueue_trial({"ars.iterations": 1500})
    first = spawn(arsearch_cmd("study", "run", str(path), "--n-trials", "2", "--quiet"),
                  env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600            # a bound for a hung worker only: polled, never waited out
    while True:                                  # wait until trial 1 is mid-training (it has reported)
        trials = study.get_trials()
        if len(trials) == 2 and trials[1].state == optuna.trial.TrialState.RUNNING and trials[1].intermediate_values:
            break
        assert first.poll() is None and time.monotonic() < deadline, "trial 1 never got under way"
        time.sleep(0.2)
    done_before = study.get_trials()[0]
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    time.sleep(3.5)   # at least the grace period (3 s): its heartbeat is stale (a busy machine only waits longer)
    second = run_cli(arsearch_cmd("study", "run", str(path), "--n-trials", "1", "--quiet"), timeout=300, env=env())
    assert second.returncode == 0, second.stdout + second.stderr
    t0, t1, t2 = study.get_trials()
    assert t0.state == COMPLETE and t0.value == done_before.value           # completed trial untouched
    assert t0.datetime_complete == done_before.datetime_complete
    assert t1.state == FAIL                                                 # the killed trial
    assert t2.state == COMPLETE and t2.params == t1.params                   # ... retried by the next worker
    with pytest.warns(optuna.exceptions.ExperimentalWarning):
        assert optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(t2) == 1
    assert t2.user_attrs["result"]["iterations"] == 1500
