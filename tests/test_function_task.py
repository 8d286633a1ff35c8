"""`task.kind = "function"`: a point (or a model's parameters) scored by a benchmark or a user function."""

import math

import pytest
import torch
from torch import nn

from arsearch.config import ConfigError, load_job
from arsearch.tasks import build_task
from arsearch.tasks.function import BENCHMARKS, FunctionTask
from arsearch.trainer import Trainer


def job(tmp_path, task=None, ars=None, **tables):
    data = {"seed": 3, "task": {"kind": "function", "dim": 8, **(task or {})},
            "ars": {"directions": 8, "top": 4, "iterations": 60, "step_size": 0.05, "noise": 0.1, **(ars or {})},
            "eval": {"every": 20}, "tracking": {"enabled": False},
            "checkpoint": {"dir": str(tmp_path / "run"), "every": 1000}, **tables}
    return load_job(data=data)


def run(cfg):
    trainer = Trainer(cfg, progress=False)
    start = trainer.task.value()
    return start, trainer.run(), trainer


# user functions, named as "tests.test_function_task:NAME"
def shifted_sphere(x):                       # batched: (P, d) -> (P,)
    return (x - 1.0).pow(2).sum(-1)


def one_point(x):                            # one point: (d,) -> a number
    assert x.ndim == 1
    return float((x + 2.0).pow(2).sum())


def tiny_model(seed: int = 0):
    torch.manual_seed(seed)
    return nn.Linear(3, 1)


def output_at_ones(model):                   # a model's value: its output on a fixed input, squared
    return float(model(torch.ones(1, 3)).pow(2).sum())


@pytest.mark.parametrize("name", list(BENCHMARKS))
def test_builtin_benchmarks_have_their_known_minimum(name):
    bench = BENCHMARKS[name]
    for d in (2, 5, 100):
        x = torch.full((1, d), -2.903534 if name == "styblinski_tang" else 1.0 if name == "rosenbrock" else 0.0,
                       dtype=torch.float64)
        assert float(bench.fn(x)[0]) == pytest.approx(bench.minimum(d), abs=1e-6 * d)
        assert float(bench.fn(x + 0.3)[0]) > bench.minimum(d)


@pytest.mark.parametrize("function", ["sphere", "rastrigin"])
def test_ars_lowers_the_value_measurably(tmp_path, function):
    start, result, _ = run(job(tmp_path, task={"function": function}))
    assert result["eval/value"] < 0.6 * start
    assert result["eval/gap"] == pytest.approx(result["eval/value"])        # both minima are 0
    assert result["count/evaluations"] == result["count/forward_examples"] == 60 * 2 * 8


def test_sequential_and_vectorized_agree(tmp_path):
    results = [run(job(tmp_path / b, ars={"backend": b, "iterations": 20}))[1]["eval/value"]
               for b in ("sequential", "vectorized")]
    assert results[0] == pytest.approx(results[1], rel=1e-5)


@pytest.mark.parametrize("strategies", [["culling"], ["annealing"], ["tabu"], ["pso"], ["pbt"]])
def test_populations_run_on_a_function(tmp_path, strategies):
    cfg = job(tmp_path, ars={"iterations": 20}, population={"size": 3, "epoch": 5, "strategies": strategies})
    start, result, _ = run(cfg)
    assert math.isfinite(result["eval/value"]) and result["eval/value"] < start


def test_a_user_function_batched_or_of_one_point(tmp_path):
    _, result, trainer = run(job(tmp_path / "a", task={"function": "tests.test_function_task:shifted_sphere",
                                                       "init_scale": 3.0}))
    assert result["eval/value"] < 5 and "eval/gap" not in result    # no known minimum
    assert trainer.task.batched
    _, result, trainer = run(job(tmp_path / "b", task={"function": "tests.test_function_task:one_point"},
                                 ars={"iterations": 10}))
    assert not trainer.task.batched and math.isfinite(result["eval/value"])


def test_a_models_parameters_scored_by_a_function_of_the_model(tmp_path):
    cfg = job(tmp_path, task={"function": "tests.test_function_task:output_at_ones"},
              model={"factory": "tests.test_function_task:tiny_model"})
    task = build_task(cfg)
    assert isinstance(task.model, nn.Linear) and not hasattr(task.model, "x")
    before = {k: v.clone() for k, v in task.model.state_dict().items()}
    params = {k: torch.stack([v, v + 1]) for k, v in task.model.named_parameters()}
    scores = task.score_params(params, None)
    assert scores.shape == (2,) and all(torch.equal(before[k], v) for k, v in task.model.state_dict().items())
    start, result, _ = run(cfg)
    assert result["eval/value"] < 0.1 * start
    from arsearch.config import applicable

    assert "dim" not in applicable(cfg)["task"] and "init_scale" not in applicable(cfg)["task"]


def test_a_target_on_the_value_is_reached_from_below_and_budgets_count_evaluations(tmp_path):
    cfg = job(tmp_path, task={"function": "sphere"}, ars={"iterations": 1000},
              stop={"target": {"metric": "eval/value", "value": 30.0}, "forward_examples": 20_000})
    _, result, trainer = run(cfg)
    assert trainer.stop_reason in ("target", "forward_examples") or result["eval/value"] <= 30.0
    assert result["eval/value"] <= 30.0 or result["count/evaluations"] >= 20_000
    cfg = job(tmp_path / "b", task={"function": "rastrigin"}, ars={"iterations": 1000},
              stop={"forward_examples": 320})
    _, result, _ = run(cfg)
    assert result["count/evaluations"] == 320


@pytest.mark.parametrize("task,match", [
    ({"function": "himmelblau"}, "task.function = 'himmelblau' is not a built-in"),
    ({"function": "rosenbrock", "dim": 1}, "rosenbrock needs dim >= 2"),
    ({"dim": 0}, "task.dim = 0 is out of range"),
    ({"function": "no_such_module_xyz:f"}, "task.function"),
])
def test_bad_function_settings_are_refused_by_name(tmp_path, task, match):
    with pytest.raises((ConfigError, ValueError), match=match):
        cfg = job(tmp_path, task=task)
        build_task(cfg)


def test_a_resumed_function_run_equals_an_uninterrupted_one(tmp_path):
    full = run(job(tmp_path / "full", ars={"iterations": 30}))[1]
    half = job(tmp_path / "half", ars={"iterations": 15}, checkpoint={"dir": str(tmp_path / "half"), "every": 5})
    run(half)
    rest = job(tmp_path / "half", ars={"iterations": 30}, checkpoint={"dir": str(tmp_path / "half"), "every": 5})
    trainer = Trainer(rest, progress=False)
    trainer.resume()
    assert trainer.run()["eval/value"] == pytest.approx(full["eval/value"], rel=1e-6)


def test_the_task_class_declares_its_plugin_facts():
    cfg = load_job(data={"task": {"kind": "function", "function": "ackley"}})
    assert FunctionTask.objective(cfg) == ("eval/value", "minimize")
    assert FunctionTask.evaluates(cfg) == ("value", "gap")
