"""The study file: search space parsing, types from the job config, conditional keys, errors."""

import optuna
import pytest

from arsearch.config import ConfigError
from arsearch.study import load_study
from arsearch.study.space import job_key_type
from tests.support.study import write_study


def test_key_types_come_from_the_job_config():
    assert job_key_type("ars.step_size") is float
    assert job_key_type("ars.directions") is int
    assert job_key_type("population.culling.fraction") is float    # inside an optional section
    with pytest.raises(ConfigError, match="'ars.stepsize'.*allowed: .*step_size"):
        job_key_type("ars.stepsize")


def test_space_kinds_and_conditional_keys(tmp_path):
    space = """
"ars.iterations" = 7
"ars.directions" = { low = 4, high = 16, step = 4 }
"ars.step_size" = { low = 0.001, high = 0.1, log = true }
"ars.backend" = { choice = ["sequential", "vectorized"] }
"population.size" = { low = 2, high = 4 }
"population.strategies" = { subset = ["culling", "tabu"] }
"population.culling.fraction" = { low = 0.1, high = 0.9, when = { "population.strategies" = "culling" } }
"population.tabu.repulsion" = { low = 0.0, high = 1.0, when = { "population.strategies" = "tabu" } }
"ars.noise" = { low = 0.01, high = 0.02, when = { "ars.backend" = ["sequential"] } }
"""
    spec = load_study(write_study(tmp_path, space=space))
    kinds = {p.key: p.kind for p in spec.params}
    assert kinds == {"ars.iterations": "fixed", "ars.directions": "int", "ars.step_size": "float",
                     "ars.backend": "choice", "population.size": "int", "population.strategies": "subset",
                     "population.culling.fraction": "float", "population.tabu.repulsion": "float",
                     "ars.noise": "float"}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen_with, seen_without = 0, 0
    for _ in range(30):
        trial = study.ask()
        overrides, config = spec.resolve(trial)
        assert config.ars.iterations == 7 and config.ars.directions in (4, 8, 12, 16)
        assert isinstance(config.ars.directions, int) and 0.001 <= config.ars.step_size <= 0.1
        strategies = overrides["population.strategies"]
        assert config.population.strategies == strategies
        # a conditional key is suggested exactly when its parent holds the value
        assert ("population.culling.fraction" in trial.params) == ("culling" in strategies)
        assert ("population.tabu.repulsion" in trial.params) == ("tabu" in strategies)
        assert ("ars.noise" in trial.params) == (config.ars.backend == "sequential")
        if "culling" in strategies:
            seen_with += 1
            assert config.population.culling.fraction == trial.params["population.culling.fraction"]
        else:
            seen_without += 1
            assert config.population.culling.fraction == 0.5        # the default, untouched
        study.tell(trial, 0.0)
    assert seen_with and seen_without
    assert not spec.multi_objective and spec.settings.metric == "eval/accuracy"
    assert spec.settings.direction == "maximize"


def test_list_choices_become_labels(tmp_path):
    space = '"task.hidden" = { choice = [[16], [32, 16]] }\n'
    spec = load_study(write_study(tmp_path, space=space))
    trial = optuna.create_study().ask()
    overrides, config = spec.resolve(trial)
    assert trial.params["task.hidden"] in ("16", "32+16")
    assert config.task.hidden in ([16], [32, 16])


@pytest.mark.parametrize("space, message", [
    ('"ars.nope" = { low = 1, high = 2 }', r"space.'ars.nope'.*'nope' unknown in ars"),
    ('"ars.directions" = { low = 1.5, high = 4 }', "integer key"),
    ('"ars.step_size" = { low = 0.0, high = 0.1, log = true }', "log = true needs low > 0"),
    ('"ars.step_size" = { low = 0.2, high = 0.1 }', "low = 0.2 must be <= high"),
    ('"ars.backend" = { choice = ["vectorized", "warp"] }', "'warp' is not allowed"),
    ('"ars.version" = { low = 1, high = 2 }', "needs a numeric key"),
    ('"ars.step_size" = { low = 0.1, high = 0.2, lg = true }', "unknown field"),
    ('"ars.step_size" = { low = 0.1, high = 0.2, when = { "ars.nope" = 1 } }', "'nope' unknown"),
    ('"ars.step_size" = { low = 0.1, high = 0.2, when = { "ars.backend" = "sequential" } }\n'
     '"ars.backend" = { choice = ["sequential"] }', "must be declared before"),
])
def test_bad_space_is_refused_with_the_key(tmp_path, space, message):
    with pytest.raises(ConfigError, match=message):
        load_study(write_study(tmp_path, space=space + "\n"))


@pytest.mark.parametrize("study, message", [
    ('sampler = "bayes"\n', "study.sampler = 'bayes' is not allowed; allowed: tpe, cmaes, gp, random, nsga2"),
    ('pruner = "early"\n', "study.pruner = 'early' is not allowed"),
    ('n_trials = "ten"\n', "study.n_trials: expected int"),
    ('colour = 1\n', "unknown key 'study.colour'"),
    ('metrics = ["eval/accuracy", "count/forward_examples"]\ndirections = ["maximize"]\n', "2 metrics but 1"),
])
def test_bad_study_settings(tmp_path, study, message):
    with pytest.raises(ConfigError, match=message):
        load_study(write_study(tmp_path, study=study))


def test_multi_objective_defaults(tmp_path):
    spec = load_study(write_study(tmp_path, study='metrics = ["eval/accuracy", "count/forward_examples"]\n'))
    assert spec.multi_objective and spec.settings.directions == ["maximize", "minimize"]


@pytest.mark.parametrize("path", ["quickstart", "digits_strategies", "swimmer", "hopper", "posttrain"])
def test_shipped_studies_load(path):
    from pathlib import Path

    study = Path(__file__).resolve().parents[1] / "studies" / f"{path}.toml"
    if path == "posttrain" and not (study.parent.parent / "configs" / "posttrain_digits.toml").exists():
        pytest.skip("configs/posttrain_digits.toml comes with the post-training issue")
    spec = load_study(study)
    assert spec.params and spec.settings.name


def test_reports_to_optuna_are_thinned_for_long_trials():
    from arsearch.config import load_job
    from arsearch.study.objective import report_every

    assert report_every(load_job(data={"ars": {"iterations": 150}, "eval": {"every": 10}}), 20) == 10
    assert report_every(load_job(data={"ars": {"iterations": 150}, "eval": {"every": 10}}), 10) == 20
    assert report_every(load_job(data={"ars": {"iterations": 1000}, "eval": {"every": 10}}), 20) == 50
    assert report_every(load_job(data={"ars": {"iterations": 1000}, "eval": {"every": 10}}), 0) == 10


ENQUEUE_SPACE = """
"ars.step_size" = { low = 0.005, high = 0.05, log = true }
"ars.directions" = { choice = [4, 8] }
"population.size" = { choice = [1, 2] }
"population.strategies" = { subset = ["culling", "tabu"], when = { "population.size" = 2 } }

[[enqueue]]
"ars.step_size" = 0.02
"population.size" = 2
"population.strategies" = ["tabu"]

[[enqueue]]
"ars.directions" = 8
"""


def test_enqueued_trials_run_first_with_their_values_and_only_once(tmp_path, monkeypatch):
    from arsearch.study import run_study

    monkeypatch.chdir(tmp_path)
    path = write_study(tmp_path, space=ENQUEUE_SPACE, iterations=2)
    study = run_study(load_study(path, {"n_trials": 3, "tracking": False}))
    first, second, third = sorted(study.trials, key=lambda t: t.number)
    assert first.params["ars.step_size"] == 0.02 and first.params["population.size"] == 2
    assert (first.params["population.strategies.tabu"], first.params["population.strategies.culling"]) == (True, False)
    assert second.params["ars.directions"] == 8
    assert "fixed_params" not in third.system_attrs            # sampled: the queue was used up
    # a second worker (or a rerun) of the same study file queues nothing again
    study = run_study(load_study(path, {"n_trials": 1, "tracking": False}))
    assert sum("fixed_params" in t.system_attrs for t in study.trials) == 2 and len(study.trials) == 4


@pytest.mark.parametrize("entry, message", [
    ('"ars.noise" = 0.02', r"enqueue\[0\]: 'ars.noise' is not a key of \[space\]"),
    ('"ars.step_size" = 0.5', r"enqueue\[0\].'ars.step_size': 0.5 is not in the space .*\[0.005, 0.05\]"),
    ('"ars.directions" = 16', r"16 is not in the space of 'ars.directions' \(one of \[4, 8\]\)"),
    ('"population.strategies" = ["pso"]', r"is not in the space of 'population.strategies' \(a subset of"),
    ('"population.size" = 1\n"population.strategies" = ["tabu"]', r"'population.strategies' does not apply"),
])
def test_bad_enqueued_trials_are_refused_with_the_key(tmp_path, entry, message):
    space = ENQUEUE_SPACE.split("[[enqueue]]")[0] + "[[enqueue]]\n" + entry + "\n"
    with pytest.raises(ConfigError, match=message):
        load_study(write_study(tmp_path, space=space))
