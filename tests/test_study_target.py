"""Studies that optimise spend-to-target: censoring, spend-stepped reports, equal-spend pruning."""

import optuna
import pytest

from arsearch.config import ConfigError
from arsearch.reports import markdown_table, write_report
from arsearch.study import load_study, open_study, run_study
from arsearch.study.objective import Reporter
from tests.support.study import write_study

COMPLETE, PRUNED = optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED
PER_ITERATION = 2 * 4 * 64          # the tiny digits job of tests.support.study: 2·N candidates × batch

TARGET = '[stop]\nforward_examples = {budget}\ntarget = {{ metric = "eval/accuracy", value = {value} }}\n'

RL_BASE = """
seed = 0
[task]
kind = "rl"
env = "Swimmer-v5"
horizon = 30
eval_episodes = 1
[ars]
version = "v1"
directions = 2
top = 2
iterations = 100
[eval]
every_episodes = 12
[tracking]
enabled = false
[checkpoint]
dir = "runs/rl"
every = 1000
[stop]
episodes = 60
target = { metric = "eval/return", value = 1000.0 }
"""


def target_study(directory, budget=15 * PER_ITERATION, value=0.2, study="", space=""):
    path = write_study(directory, study='objective = "spend_to_target"\ntracking = false\n' + study, space=space,
                       iterations=20)
    base = directory / "base.toml"
    base.write_text(base.read_text().replace("every = 5", "every = 1") + TARGET.format(budget=budget, value=value))
    return path


def test_spend_to_target_scores_the_spend_and_censors_a_trial_that_misses(tmp_cwd, monkeypatch):
    budget = 15 * PER_ITERATION
    spec = load_study(target_study(tmp_cwd, budget=budget, study='n_trials = 2\npruner = "none"\n',
                                   space='"ars.step_size" = { low = 1e-7, high = 0.1, log = true }\n'))
    assert spec.settings.metrics == ["forward_examples_to_target"] and spec.settings.directions == ["minimize"]
    study, _ = open_study(spec)
    study.enqueue_trial({"ars.step_size": 0.1})             # reaches 0.2 at iteration 11
    study.enqueue_trial({"ars.step_size": 1e-7})            # learns next to nothing
    run_study(spec)
    reached, missed = study.get_trials()
    assert reached.state == missed.state == COMPLETE
    # reached: the value is the spend at the evaluation where accuracy first reached 0.2
    result = reached.user_attrs["result"]
    assert not reached.user_attrs["censored"] and result["stop/reason"] == "target"
    assert reached.value == result["count/forward_examples"] < budget
    assert reached.value % PER_ITERATION == 0                # evaluated every iteration: the exact spend
    # missed: censored at the budget times the default penalty
    assert missed.user_attrs["censored"] and missed.user_attrs["result"]["stop/reason"] == "forward_examples"
    assert missed.value == 2.0 * budget
    assert study.best_trial.number == reached.number
    table = markdown_table(study)
    assert "| target |" in table and "censored" in table and "reached" in table
    monkeypatch.setattr("arsearch.reports.study_plots", lambda *a, **kw: [])    # plots are tested elsewhere, and slow
    readme = write_report(study, tmp_cwd / "reports").read_text()
    assert "Censored: 1 completed trial" in readme


def test_censored_penalty_is_configurable(tmp_cwd):
    spec = load_study(target_study(tmp_cwd, budget=3 * PER_ITERATION, value=0.99,
                                   study='n_trials = 1\npruner = "none"\ncensored_penalty = 3.5\n'))
    study, _ = open_study(spec)
    run_study(spec)
    (t,) = study.get_trials()
    assert t.user_attrs["censored"] and t.value == 3.5 * 3 * PER_ITERATION


def test_reports_are_stepped_by_spend_so_the_pruner_compares_trials_of_different_n_at_equal_spend(tmp_cwd):
    # N = 8 spends 1024 forward examples an iteration, N = 2 spends 256: with a grid of 1024 both
    # report at 1024, 2048, ..., which is where Optuna's median pruner compares them
    path = write_study(tmp_cwd, iterations=40, study='n_trials = 2\ntracking = false\npruner = "median"\n'
                                                     'startup_trials = 1\nreport_grid = 1024\nmax_reports = 0\n',
                       space='"ars.directions" = { choice = [2, 8] }\n"ars.top" = 2\n'
                             '"ars.step_size" = { low = 1e-7, high = 0.1, log = true }\n')
    (tmp_cwd / "base.toml").write_text((tmp_cwd / "base.toml").read_text().replace("every = 5", "every = 1"))
    spec = load_study(path)
    study, _ = open_study(spec)
    study.enqueue_trial({"ars.directions": 8, "ars.step_size": 0.05})
    study.enqueue_trial({"ars.directions": 2, "ars.step_size": 1e-7})     # learns nothing
    run_study(spec)
    good, bad = study.get_trials()
    assert good.state == COMPLETE and bad.state == PRUNED
    assert sorted(good.intermediate_values) == [1024 * i for i in range(1, 41)]
    # the bad trial reported on the same grid of spend, and was stopped at one of its points
    assert set(bad.intermediate_values) <= set(good.intermediate_values)
    assert bad.user_attrs.get("result", {}) == {}
    assert max(bad.intermediate_values) < 40 * 256


def test_score_objective_reports_spend_as_the_step(tmp_cwd):
    spec = load_study(write_study(tmp_cwd, study='n_trials = 1\ntracking = false\npruner = "none"\n'))
    assert spec.settings.spend == "forward_examples"
    study, _ = open_study(spec)
    run_study(spec)
    (t,) = study.get_trials()
    assert sorted(t.intermediate_values) == [5 * PER_ITERATION, 10 * PER_ITERATION]


def test_rl_trials_of_different_n_report_on_the_episode_grid_and_are_censored(tmp_cwd):
    pytest.importorskip("gymnasium")
    (tmp_cwd / "base.toml").write_text(RL_BASE)
    path = tmp_cwd / "study.toml"
    path.write_text('[study]\nname = "rl"\nbase = "base.toml"\nstorage = "sqlite:///optuna.db"\n'
                    'objective = "spend_to_target"\nspend = "episodes"\nn_trials = 2\ntracking = false\n'
                    'pruner = "none"\nmax_reports = 0\n'
                    '[space]\n"ars.directions" = { choice = [2, 3] }\n"ars.top" = 2\n')
    spec = load_study(path)
    assert spec.settings.metrics == ["episodes_to_target"]
    study, _ = open_study(spec)
    study.enqueue_trial({"ars.directions": 2})
    study.enqueue_trial({"ars.directions": 3})
    run_study(spec)
    trials = study.get_trials()
    for t in trials:
        assert t.state == COMPLETE and t.user_attrs["censored"] and t.value == 2.0 * 60
        # 4 or 6 episodes an iteration, evaluated at every 12 crossed: the same steps for both
        assert sorted(t.intermediate_values) == [12, 24, 36, 48, 60]
        # the reported value is the gap to the target (lower is better, as the objective)
        assert all(v > 0 for v in t.intermediate_values.values())
    assert [t.user_attrs["result"]["count/episodes"] for t in trials] == [60, 60]


class AlwaysPrune(optuna.pruners.BasePruner):
    def prune(self, study, trial) -> bool:
        return True


def test_a_trial_is_never_pruned_at_the_evaluation_where_it_reaches_the_target():
    trial = optuna.create_study(pruner=AlwaysPrune()).ask()
    reporter = Reporter(trial, "eval/return", spend="episodes", grid=10, target=(325.0, False))
    reporter(3, {"eval/return": 400.0, "count/episodes": 24})       # reached: reported, not pruned
    assert trial.study.trials[0].intermediate_values == {20: -75.0}
    reporter(4, {"eval/return": 300.0, "count/episodes": 29})       # same grid step: not reported again
    with pytest.raises(optuna.TrialPruned, match=r"pruned at 30 episodes \(iteration 5\)"):
        reporter(5, {"eval/return": 300.0, "count/episodes": 36})
    loss = Reporter(optuna.create_study(pruner=AlwaysPrune()).ask(), "eval/loss", spend="forward_examples",
                    target=(0.2, True))
    with pytest.raises(optuna.TrialPruned):
        loss(1, {"eval/loss": 0.5, "count/forward_examples": 512})
    assert loss.trial.study.trials[0].intermediate_values == {512: pytest.approx(0.3)}


@pytest.mark.parametrize("study,base_extra,match", [
    ('objective = "spend_to_target"\n', "", "needs stop.target in the base config"),
    ('objective = "spend_to_target"\n', '[stop]\ntarget = { metric = "eval/accuracy", value = 0.9 }\n',
     "needs a budget stop.forward_examples > 0"),
    ('objective = "fastest"\n', "", "study.objective = 'fastest' is not allowed"),
    ('spend = "episodes"\n', "", "study.spend = 'episodes': the base job is a supervised task"),
    ('spend = "days"\n', "", "study.spend = 'days' is not allowed"),
    ('objective = "spend_to_target"\ncensored_penalty = 0.5\n', "", "study.censored_penalty = 0.5 is out of range"),
    ('objective = "spend_to_target"\nmetric = "eval/accuracy"\n',
     '[stop]\nforward_examples = 100\ntarget = { metric = "eval/accuracy", value = 0.9 }\n', "drop metric/metrics"),
    ('report_grid = -1\n', "", "study.report_grid = -1 is out of range"),
])
def test_bad_spend_settings_are_refused(tmp_cwd, study, base_extra, match):
    path = write_study(tmp_cwd, study=study)
    (tmp_cwd / "base.toml").write_text((tmp_cwd / "base.toml").read_text() + base_extra)
    with pytest.raises(ConfigError, match=match):
        load_study(path)


@pytest.mark.parametrize("name", ["swimmer_target", "hopper_target"])
def test_shipped_target_studies_validate_and_run_a_tiny_trial(tmp_cwd, name):
    pytest.importorskip("gymnasium")
    from arsearch.config import apply_overrides
    from tests.support.study import REPO

    spec = load_study(REPO / "studies" / f"{name}.toml", {"n_trials": 1, "tracking": False})
    s = spec.settings
    assert (s.objective, s.spend, s.metrics, s.directions) == ("spend_to_target", "episodes",
                                                               ["episodes_to_target"], ["minimize"])
    assert {"ars.version", "ars.directions", "ars.top", "ars.step_size", "ars.noise", "task.shift",
            "population.strategies", "population.annealing.t0"} <= {p.key for p in spec.params}
    # a tiny version of a trial: short episodes, a 24-episode budget, every strategy switched on
    apply_overrides(spec.base, {"task.horizon": 20, "task.eval_episodes": 1, "stop.episodes": 24,
                                "eval.every_episodes": 8, "checkpoint.every": 1000})
    if name == "hopper_target":      # the file starts from the paper's settings; this test runs its own trial
        assert spec.enqueue == [{"ars.version": "v2t", "ars.directions": 8, "ars.top": 4, "ars.step_size": 0.01,
                                 "ars.noise": 0.025, "task.shift": 1.0, "population.size": 1}]
    spec.enqueue = []
    study, _ = open_study(spec)
    study.enqueue_trial({"ars.directions": 4, "population.size": 2,
                         **{f"population.strategies.{k}": True for k in ("culling", "annealing", "tabu", "pso")}})
    run_study(spec)
    (t,) = study.get_trials()
    assert t.state == COMPLETE, t.user_attrs.get("fail_reason")
    result = t.user_attrs["result"]
    assert result["count/episodes"] >= 24 and t.user_attrs["censored"]   # 20 steps never reach the target
    assert t.value == 2.0 * 24
    # K·2N + 2K (annealing) = 20 episodes an iteration: reports on the 8-episode grid at 16 and 40
    assert t.intermediate_values and all(step % 8 == 0 for step in t.intermediate_values)
