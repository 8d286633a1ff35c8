"""Running studies: trials are training jobs; pruning, failures, multi-objective, subprocess trials, show/report."""

import os
import threading
from pathlib import Path

import optuna
import pytest

from arsearch.cli import main
from arsearch.config import load_job
from arsearch.study import DevicePool, PruningCallback, load_study, open_study, run_study
from arsearch.study.objective import TrialFailed, run_subprocess_trial
from tests.support.study import write_study

COMPLETE, PRUNED, FAIL = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED,
                          optuna.trial.TrialState.FAIL)


class AlwaysPrune(optuna.pruners.BasePruner):
    def prune(self, study, trial) -> bool:
        return True


def mlflow_runs(experiment):
    from mlflow import MlflowClient

    # an absolute path: MLflow caches stores by URI, so a relative one would reach an earlier test's file
    client = MlflowClient(f"sqlite:///{Path.cwd() / 'mlflow.db'}")
    exp = client.get_experiment_by_name(experiment)
    return client, client.search_runs([exp.experiment_id])


@pytest.mark.usefixtures("mlflow_db")
def test_study_trials_are_tracked_as_nested_runs(tmp_cwd):
    path = write_study(tmp_cwd, study="n_trials = 3\nsampler = \"random\"\n",
                       space='"ars.step_size" = { low = 0.005, high = 0.05, log = true }\n'
                             '"ars.backend" = { choice = ["sequential", "vectorized"] }\n')
    assert main(["study", "run", str(path), "--quiet"]) == 0
    study = optuna.load_study(study_name="tiny", storage="sqlite:///optuna.db")
    trials = study.get_trials()
    assert [t.state for t in trials] == [COMPLETE] * 3
    for t in trials:
        # every evaluation reached Optuna, stepped by forward examples spent (2·4 candidates × 64 an iteration)
        assert sorted(t.intermediate_values) == [5 * 512, 10 * 512]
        assert t.value == t.intermediate_values[10 * 512]
    client, runs = mlflow_runs("tiny")
    parents = [r for r in runs if r.data.tags.get("arsearch.role") == "study"]
    children = [r for r in runs if r.data.tags.get("arsearch.role") == "trial"]
    assert len(parents) == 1 and len(children) == 3
    parent = parents[0]
    assert {a.path for a in client.list_artifacts(parent.info.run_id, "plots")} >= {
        "plots/optimization_history.png", "plots/param_importances.png", "plots/parallel_coordinate.png"}
    assert parent.data.metrics["trials/complete"] == 3
    by_number = {int(r.data.tags["arsearch.trial"]): r for r in children}
    for t in trials:
        run = by_number[t.number]
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.tags["arsearch.study"] == "tiny" and run.data.tags["arsearch.state"] == "COMPLETE"
        assert run.info.status == "FINISHED"
        # params: the full resolved config, with the trial's own values
        assert float(run.data.params["ars.step_size"]) == pytest.approx(t.params["ars.step_size"])
        assert run.data.params["ars.backend"] == t.params["ars.backend"]
        assert run.data.params["task.hidden"] == "[16]"
        assert len(client.get_metric_history(run.info.run_id, "train/score")) == 10
        assert run.data.metrics["eval/accuracy"] == pytest.approx(t.value)
        arts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"config.toml", "learning_curve.png", "checkpoint"} <= arts
        local = client.download_artifacts(run.info.run_id, "config.toml", str(tmp_cwd))
        config = load_job(local)                                  # a ready-to-run job config
        assert config.ars.step_size == pytest.approx(t.params["ars.step_size"])


def test_failed_trial_keeps_its_reason_and_the_study_goes_on(tmp_cwd):
    spec = load_study(write_study(tmp_cwd, study="n_trials = 3\ntracking = false\n",
                                  space='"task.dataset" = { choice = ["digits", "no_such_module:data"] }\n'))
    study, _ = open_study(spec)
    study.enqueue_trial({"task.dataset": "no_such_module:data"})
    study.enqueue_trial({"task.dataset": "digits"})
    study.enqueue_trial({"task.dataset": "no_such_module:data"})
    run_study(spec)
    states = [t.state for t in study.get_trials()]
    assert states == [FAIL, COMPLETE, FAIL]
    reason = study.trials[0].user_attrs["fail_reason"]
    assert "no_such_module" in reason


def test_pruner_stops_a_bad_trial(tmp_cwd):
    spec = load_study(write_study(tmp_cwd, iterations=20,
                                  study="n_trials = 2\ntracking = false\npruner = \"median\"\nstartup_trials = 1\n",
                                  space='"ars.step_size" = { low = 1e-7, high = 0.1, log = true }\n'))
    study, _ = open_study(spec)
    study.enqueue_trial({"ars.step_size": 0.05})
    study.enqueue_trial({"ars.step_size": 1e-7})      # learns nothing: worse than the median at some eval
    run_study(spec)
    first, second = study.get_trials()
    assert first.state == COMPLETE and second.state == PRUNED
    assert max(second.intermediate_values) < 20 * 512          # steps are forward examples spent


def test_pruning_callback_stops_training(tmp_cwd):
    from arsearch.trainer import Trainer

    write_study(tmp_cwd)
    config = load_job("base.toml", ["ars.iterations=50", "checkpoint.dir=runs/p"])
    trial = optuna.create_study(pruner=AlwaysPrune()).ask()
    trainer = Trainer(config, callbacks=[PruningCallback(trial, "eval/accuracy")], progress=False)
    with pytest.raises(optuna.TrialPruned):
        trainer.run()
    assert trainer.iteration == 5


def test_multi_objective_study(tmp_cwd):
    path = write_study(tmp_cwd, study='n_trials = 2\ntracking = false\nsampler = "nsga2"\npruner = "none"\n'
                                      'metrics = ["eval/accuracy", "count/forward_examples"]\n',
                       space='"ars.directions" = { low = 2, high = 8 }\n')
    assert main(["study", "run", str(path), "--quiet"]) == 0
    study = optuna.load_study(study_name="tiny", storage="sqlite:///optuna.db")
    assert len(study.directions) == 2
    for t in study.trials:
        assert t.state == COMPLETE and len(t.values) == 2
        assert t.values[1] == t.user_attrs["result"]["count/forward_examples"] > 0


@pytest.mark.multiprocess
@pytest.mark.usefixtures("mlflow_db", "gpu_lock_dir")
def test_subprocess_trials_stream_evaluations_to_optuna_and_mlflow(tmp_cwd):
    # task.device = "auto" may use a GPU, so the trial takes one from the pool (gpus = [7]): on a
    # CPU-only machine the child still runs, with CUDA_VISIBLE_DEVICES=7 hiding nothing useful
    path = write_study(tmp_cwd, iterations=15, study="n_trials = 1\nsubprocess = true\ngpus = [7]\n",
                       space='"task.device" = "auto"\n')
    assert main(["study", "run", str(path), "--quiet"]) == 0
    (trial,) = optuna.load_study(study_name="tiny", storage="sqlite:///optuna.db").trials
    assert trial.state == COMPLETE and sorted(trial.intermediate_values) == [5 * 512, 10 * 512, 15 * 512]
    assert trial.user_attrs["devices"] == [7]
    assert (tmp_cwd / "runs/studies/tiny/trial_00000/evals.jsonl").exists()
    client, runs = mlflow_runs("tiny")
    child = next(r for r in runs if r.data.tags.get("arsearch.role") == "trial")
    assert len(client.get_metric_history(child.info.run_id, "train/score")) == 15
    assert [m.step for m in client.get_metric_history(child.info.run_id, "eval/accuracy")] == [5, 10, 15]


@pytest.mark.multiprocess
def test_subprocess_trial_is_terminated_when_pruned(tmp_cwd):
    write_study(tmp_cwd)
    config = load_job("base.toml", ["ars.iterations=100000", "checkpoint.dir=runs/sub"])
    study = optuna.create_study(pruner=AlwaysPrune())
    trial = study.ask()
    with pytest.raises(optuna.TrialPruned):
        run_subprocess_trial(trial, config, tmp_cwd / "runs/sub", "eval/accuracy", True, DevicePool([]))
    pid = trial.user_attrs["pid"]
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert study.trials[0].intermediate_values == {5: pytest.approx(study.trials[0].intermediate_values[5])}
    assert not (tmp_cwd / "runs/sub/metrics.json").exists()


def test_device_pool_never_hands_out_a_gpu_twice(tmp_path):
    pool = DevicePool([3, 4], lock_dir=tmp_path)
    a, ha = pool.acquire(1)
    b, hb = pool.acquire(1)
    assert sorted(a + b) == [3, 4]
    got = []
    waiter = threading.Thread(target=lambda: got.append(pool.acquire(1, poll=0.05)))
    waiter.start()
    waiter.join(0.3)
    assert waiter.is_alive() and not got                 # all devices taken: the third trial waits
    DevicePool.release(ha)
    waiter.join(120)                                     # returns as soon as it has the device
    assert got and got[0][0] == a
    DevicePool.release(hb)
    DevicePool.release(got[0][1])
    with pytest.raises(TrialFailed, match="needs 3 GPU"):
        pool.acquire(3)


def test_show_and_report(tmp_cwd, capsys):
    path = write_study(tmp_cwd, study="n_trials = 2\ntracking = false\n",
                       space='"ars.step_size" = { low = 0.005, high = 0.05 }\n')
    assert main(["study", "run", str(path), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["study", "show", str(path), "--config-out", "best.toml"]) == 0
    out = capsys.readouterr().out
    study = optuna.load_study(study_name="tiny", storage="sqlite:///optuna.db")
    assert f"best trial: {study.best_trial.number}" in out and "| trial | eval/accuracy" in out
    best = load_job("best.toml")
    assert best.ars.step_size == pytest.approx(study.best_params["ars.step_size"])
    # an existing file is not replaced silently
    (tmp_cwd / "best.toml").write_text("# mine")
    assert main(["study", "show", str(path), "--config-out", "best.toml"]) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert (tmp_cwd / "best.toml").read_text() == "# mine"
    assert main(["study", "show", str(path), "--config-out", "best.toml", "--overwrite"]) == 0
    capsys.readouterr()
    assert main(["report", "--storage", "sqlite:///optuna.db", "--study-name", "tiny", "--out", "rep"]) == 0
    readme = (tmp_cwd / "rep/tiny/README.md").read_text()
    assert "## Best trial" in readme and "optimization_history.png" in readme
    assert (tmp_cwd / "rep/tiny/optimization_history.png").stat().st_size > 1000
    # by default a report goes beside the runs, never over a committed reports/ folder
    (tmp_cwd / "reports" / "tiny").mkdir(parents=True)
    (tmp_cwd / "reports" / "tiny" / "README.md").write_text("committed")
    assert main(["report", str(path)]) == 0
    assert (tmp_cwd / "reports/tiny/README.md").read_text() == "committed"
    readme = (tmp_cwd / "runs/reports/tiny/README.md").read_text()
    assert "Regenerate: `arsearch report --storage sqlite:///optuna.db --study-name tiny`" in readme
    assert main(["study", "show", "--storage", "sqlite:///optuna.db", "--study-name", "nope"]) == 2
    assert "no study named 'nope'" in capsys.readouterr().err


def test_bad_study_file_is_a_usage_error(tmp_cwd, capsys):
    path = write_study(tmp_cwd, study='sampler = "bayes"\n')
    assert main(["study", "run", str(path)]) == 2
    assert "study.sampler = 'bayes'" in capsys.readouterr().err


def test_journal_storage_with_parallel_threads(tmp_cwd):
    path = write_study(tmp_cwd, study='storage = "journal:optuna.log"\nn_trials = 2\nn_jobs = 2\ntracking = false\n')
    assert main(["study", "run", str(path), "--quiet"]) == 0
    from arsearch.study import load_existing

    trials = load_existing("journal:optuna.log", "tiny").get_trials()
    assert [t.state for t in trials] == [COMPLETE, COMPLETE]
    assert trials[0].user_attrs["checkpoint_dir"] != trials[1].user_attrs["checkpoint_dir"]
