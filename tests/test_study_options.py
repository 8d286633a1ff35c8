"""Study options each exercised once: samplers, pruners, `when` on base-config keys, and the MLflow
runs of pruned, failed and retried trials under one reused parent run."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from arsearch.study import load_study, open_study, run_study
from tests.support.study import write_study

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

COMPLETE, PRUNED, FAIL = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED,
                          optuna.trial.TrialState.FAIL)
SPACE = '"ars.step_size" = { low = 1e-7, high = 0.1, log = true }\n"ars.noise" = { low = 0.01, high = 0.05 }\n'
GOOD, BAD = {"ars.step_size": 0.05, "ars.noise": 0.03}, {"ars.step_size": 1e-7, "ars.noise": 0.03}


def study_with(tmp_cwd, sampler: str, pruner: str, n_trials: int, iterations: int = 20, enqueue=(GOOD, BAD)):
    spec = load_study(write_study(tmp_cwd, iterations=iterations, space=SPACE,
                                  study=f'n_trials = {n_trials}\ntracking = false\nsampler = "{sampler}"\n'
                                        f'pruner = "{pruner}"\nstartup_trials = 1\nstorage = "journal:optuna.log"\n'))
    study, _ = open_study(spec)
    for params in enqueue:
        study.enqueue_trial(params)
    run_study(spec)
    return study, study.get_trials()


@pytest.mark.parametrize("sampler,cls,mark", [("cmaes", optuna.samplers.CmaEsSampler, "cma:"),
                                              ("gp", optuna.samplers.GPSampler, "gp:")])
def test_model_based_samplers_propose_after_the_startup_trial(tmp_cwd, sampler, cls, mark):
    study, trials = study_with(tmp_cwd, sampler, "none", n_trials=3, iterations=5, enqueue=(GOOD,))
    assert isinstance(study.sampler, cls)
    assert [t.state for t in trials] == [COMPLETE] * 3
    # after the one startup trial the model proposes both keys jointly (Optuna marks such trials)
    assert not any(k.startswith(mark) for k in trials[0].system_attrs)
    assert all(any(k.startswith(mark) for k in t.system_attrs) for t in trials[1:])
    for t in trials:
        assert 1e-7 <= t.params["ars.step_size"] <= 0.1 and 0.01 <= t.params["ars.noise"] <= 0.05


def reported(trial) -> list:
    """The steps a trial reported at (iterations, or whatever unit the study reports in)."""
    return sorted(trial.intermediate_values)


def test_successive_halving_prunes_a_trial_that_learns_nothing(tmp_cwd):
    # at its last rung the flat trial is below the promotion quantile of the two
    study, trials = study_with(tmp_cwd, "random", "successive_halving", n_trials=2)
    assert isinstance(study.pruner, optuna.pruners.SuccessiveHalvingPruner)
    assert [t.state for t in trials] == [COMPLETE, PRUNED]
    last = reported(trials[1])[-1]
    assert trials[1].intermediate_values[last] < trials[0].intermediate_values[last]


def test_hyperband_runs_brackets_of_successive_halving(tmp_cwd):
    study, trials = study_with(tmp_cwd, "random", "hyperband", n_trials=3)
    assert isinstance(study.pruner, optuna.pruners.HyperbandPruner)
    assert trials[0].state == COMPLETE and all(t.state in (COMPLETE, PRUNED) for t in trials)
    # every trial was assigned a bracket and recorded the rungs it completed
    assert all(any(k.startswith("completed_rung_") for k in t.system_attrs) for t in trials)


def test_wilcoxon_pruner_compares_with_the_best_trial_step_by_step(tmp_cwd):
    # Wilcoxon pairs the evaluations this trial shares with the best trial; with 4 of them it
    # cannot reach p < 0.1 unless every one is worse, which the flat trial's first one is not
    study, trials = study_with(tmp_cwd, "random", "wilcoxon", n_trials=2)
    assert isinstance(study.pruner, optuna.pruners.WilcoxonPruner)
    steps = reported(trials[0])
    assert len(steps) == 4 and reported(trials[1]) == steps          # the evaluations of 20 iterations
    flat = trials[1].intermediate_values
    assert flat[steps[0]] > trials[0].intermediate_values[steps[0]] and trials[1].state == COMPLETE


def test_when_conditions_on_base_config_keys(tmp_path):
    # the tiny base job has ars.version = "v1t" and ars.backend = "vectorized"
    space = ('"ars.top" = { low = 1, high = 4, when = { "ars.version" = "v1t" } }\n'
             '"ars.vector_chunk" = { low = 1, high = 8, when = { "ars.backend" = "sequential" } }\n'
             '"task.hidden" = { choice = [[8], [16]], when = { "ars.backend" = ["sequential", "vectorized"] } }\n')
    spec = load_study(write_study(tmp_path, space=space))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(5):
        trial = study.ask()
        overrides, config = spec.resolve(trial)
        assert set(trial.params) == {"ars.top", "task.hidden"}      # base v1t: yes; base vectorized: not sequential
        assert config.ars.top == overrides["ars.top"] and config.ars.vector_chunk == 0
        study.tell(trial, 0.0)
    # a key sampled earlier in the file takes precedence over the base config's value
    spec = load_study(write_study(tmp_path, space='"ars.version" = { choice = ["v1", "v1t"] }\n' + space))
    for version in ("v1", "v1t"):
        trial = optuna.trial.FixedTrial({"ars.version": version, "ars.top": 2, "task.hidden": "8"})
        overrides, config = spec.resolve(trial)
        assert ("ars.top" in overrides) == (version == "v1t")


@pytest.mark.usefixtures("mlflow_db")
def test_mlflow_runs_of_pruned_failed_and_retried_trials_under_one_parent(tmp_cwd):
    from mlflow import MlflowClient

    space = SPACE + '"task.dataset" = { choice = ["digits", "no_such_module:data"] }\n'
    path = write_study(tmp_cwd, iterations=10, space=space,
                       study='n_trials = 3\nsampler = "random"\npruner = "median"\nstartup_trials = 1\n')
    spec = load_study(path)
    study, _ = open_study(spec)
    study.enqueue_trial({**GOOD, "task.dataset": "digits"})
    study.enqueue_trial({**BAD, "task.dataset": "digits"})                   # pruned by the median rule
    study.enqueue_trial({**GOOD, "task.dataset": "no_such_module:data"})     # fails: the module is missing
    run_study(spec)
    # a worker that died mid-trial: Optuna's retry callback re-enqueues the trial (as after kill -9)
    optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)(study, study.get_trials()[2])
    spec.settings.n_trials = 1
    run_study(spec)                                      # a second session of the same study

    client = MlflowClient(f"sqlite:///{Path.cwd() / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    parents = [r for r in runs if r.data.tags.get("arsearch.role") == "study"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"       # reused, closed again
    assert parents[0].info.run_id == study.user_attrs["mlflow_parent_run_id"]
    children = {int(r.data.tags["arsearch.trial"]): r for r in runs if r.data.tags.get("arsearch.role") == "trial"}
    assert sorted(children) == [0, 1, 2, 3]
    assert all(r.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for r in children.values())
    states = {n: (r.info.status, r.data.tags["arsearch.state"]) for n, r in children.items()}
    assert states == {0: ("FINISHED", "COMPLETE"), 1: ("KILLED", "PRUNED"), 2: ("FAILED", "FAIL"),
                      3: ("FAILED", "FAIL")}
    assert "no_such_module" in children[2].data.tags["arsearch.fail_reason"]
    assert children[3].data.tags["arsearch.retry_of"] == "2"
    assert "arsearch.retry_of" not in children[2].data.tags
