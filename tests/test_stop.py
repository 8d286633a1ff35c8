"""[stop]: runs end exactly at a budget or a target, count everything they spend, resume bit-exact."""

import json

import pytest
import torch

from arsearch.callbacks import Callback
from arsearch.cli import main
from arsearch.config import ConfigError, load_job
from arsearch.trainer import Trainer
from tests.support import make_job

# the tiny digits job: 2·N candidates of batch_size examples per iteration
PER_ITERATION = 2 * 8 * 64


def rl_job(tmp_path, **overrides):
    base = {
        "task": {"kind": "rl", "env": "Swimmer-v5", "policy": "linear", "horizon": 30, "eval_episodes": 1},
        "ars": {"version": "v1", "directions": 3, "top": 3, "iterations": 50, "step_size": 0.02, "noise": 0.03},
        "eval": {"every": 1000}, "tracking": {"enabled": False},
        "checkpoint": {"dir": str(tmp_path / "run"), "every": 1000},
    }
    return load_job(data=base, overrides=overrides)


def comparable(result: dict) -> dict:
    return {k: v for k, v in result.items() if k not in ("time/elapsed_s", "checkpoint")}


def test_a_run_stops_exactly_at_a_forward_budget(tmp_path):
    budget = 5 * PER_ITERATION - 100          # met during the fifth iteration
    cfg = make_job("digits", tmp_path / "run", **{"checkpoint.every": 5, "ars.iterations": 100,
                                                  "stop.forward_examples": budget})
    result = Trainer(cfg, progress=False).run()
    assert result["iterations"] == 5
    assert result["stop/reason"] == "forward_examples" and result["stop/target_reached"] == 0.0
    assert result["count/forward_examples"] == 5 * PER_ITERATION
    assert "count/episodes" not in result and "count/env_steps" not in result   # not an RL job: no RL counters
    # evaluation is counted apart: the test set went through the model, the training count did not move
    assert result["count/eval_forward_examples"] > 0
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["stop/reason"] == "forward_examples"


def test_iterations_stay_a_cap(tmp_path):
    cfg = make_job("digits", tmp_path / "run", **{"checkpoint.every": 5, "stop.forward_examples": 10 ** 9})
    result = Trainer(cfg, progress=False).run()
    assert result["iterations"] == 10 and result["stop/reason"] == "iterations"


def test_an_rl_run_stops_exactly_at_an_episode_budget_and_evaluates_on_an_episode_grid(tmp_path):
    evals = []

    class Evals(Callback):
        def on_eval(self, trainer, iteration, metrics):
            evals.append((iteration, trainer.task.counters["episodes"]))

    cfg = rl_job(tmp_path, **{"stop.episodes": 40, "eval.every_episodes": 10})
    result = Trainer(cfg, callbacks=[Evals()], progress=False).run()
    # 6 training episodes an iteration: 40 is met at iteration 7 (42 episodes)
    assert result["iterations"] == 7 and result["count/episodes"] == 42
    assert result["stop/reason"] == "episodes"
    assert result["count/env_steps"] == 42 * 30 == result["count/forward_examples"]   # Swimmer never ends early
    # one evaluation per multiple of 10 episodes crossed (12, 24, 30, 42), plus none extra at the end
    assert evals == [(2, 12), (4, 24), (5, 30), (7, 42)]
    assert result["count/eval_episodes"] == 4 and result["count/eval_env_steps"] == 4 * 30


def eval_curve(tmp_path, metric, **overrides):
    """(iteration, value, forward_examples) at each evaluation of a run without a target."""
    trainer = Trainer(make_job("digits", tmp_path / "run", **{"checkpoint.every": 5, **overrides}), progress=False)
    trainer.run()
    return [(r["iteration"], r[metric], r["count/forward_examples"]) for r in trainer.history if metric in r]


@pytest.mark.parametrize("metric", ["eval/accuracy", "eval/loss"])
def test_a_run_stops_exactly_at_its_target(tmp_path, metric):
    overrides = {"ars.iterations": 40, "eval.every": 2}
    curve = eval_curve(tmp_path / "free", metric, **overrides)
    # the target is the value of an evaluation in the middle: the first evaluation to reach it ends the run
    better = (lambda a, b: a <= b) if "loss" in metric else (lambda a, b: a >= b)
    value = curve[len(curve) // 2][1]
    iteration, _, spent = next(c for c in curve if better(c[1], value))
    assert iteration < 40
    result = Trainer(make_job("digits", tmp_path / "target", **{"checkpoint.every": 5, **overrides,
                                                                "stop.target": {"metric": metric, "value": value}}),
                     progress=False).run()
    assert result["stop/reason"] == "target" and result["stop/target_reached"] == 1.0
    assert result["iterations"] == iteration and result["count/forward_examples"] == spent
    assert better(result[metric], value)


def test_a_target_never_reached_ends_at_the_budget_unreached(tmp_path):
    cfg = make_job("digits", tmp_path / "run", **{"checkpoint.every": 5, "ars.iterations": 40,
                                                  "stop.forward_examples": 3 * PER_ITERATION,
                                                  "stop.target": {"metric": "eval/accuracy", "value": 1.01}})
    result = Trainer(cfg, progress=False).run()
    assert result["stop/reason"] == "forward_examples" and result["stop/target_reached"] == 0.0
    assert result["iterations"] == 3 and "eval/accuracy" in result


def test_population_annealing_and_prioritised_sampling_spend_counts(tmp_path):
    k, n, batch = 2, 8, 64
    cfg = make_job("digits", tmp_path / "run", **{"checkpoint.every": 5, "ars.iterations": 3,
                                                  "population": {"size": k, "epoch": 2, "strategies": ["annealing"]},
                                                  "sampling": {"alpha": 0.6}})
    result = Trainer(cfg, progress=False).run()
    # every learner's 2N candidates, annealing's 2K re-scorings, one priority update of the batch
    per_iteration = (k * 2 * n + 2 * k + 1) * batch
    assert result["count/forward_examples"] == 3 * per_iteration
    cfg = make_job("digits", tmp_path / "b", **{"checkpoint.every": 5, "ars.iterations": 30,
                                                "stop.forward_examples": 2 * per_iteration,
                                                "population": {"size": k, "epoch": 2, "strategies": ["annealing"]},
                                                "sampling": {"alpha": 0.6}})
    result = Trainer(cfg, progress=False).run()
    assert result["iterations"] == 2 and result["stop/reason"] == "forward_examples"


@pytest.mark.multiprocess
def test_a_hogwild_job_stops_at_its_budget(tmp_path):
    # the workers' counts reach the trainer with each relayed step, so the budget is met as with one process
    cfg = make_job("digits", tmp_path / "run", **{"checkpoint.every": 5, "ars.backend": "hogwild", "ars.iterations": 40,
                                                  "stop.forward_examples": 10 * PER_ITERATION})
    result = Trainer(cfg, progress=False).run()
    assert result["stop/reason"] == "forward_examples"
    assert result["iterations"] == 10 and result["count/forward_examples"] == 10 * PER_ITERATION


class Interrupt(Callback):
    def __init__(self, iteration):
        self.iteration = iteration

    def on_iteration(self, trainer, iteration, metrics):
        if iteration == self.iteration:
            raise KeyboardInterrupt


def test_resume_is_bit_exact_with_a_target_and_a_budget(tmp_path):
    overrides = {"ars.iterations": 40, "eval.every": 2, "checkpoint.every": 3, "stop.forward_examples": 30 * PER_ITERATION}
    curve = eval_curve(tmp_path / "free", "eval/accuracy", **overrides)
    value = curve[len(curve) // 2][1]
    overrides["stop.target"] = {"metric": "eval/accuracy", "value": value}
    full = Trainer(make_job("digits", tmp_path / "full", **overrides), progress=False)
    full_result = full.run()
    stop_at = full_result["iterations"]
    assert full_result["stop/reason"] == "target" and stop_at > 4

    cfg = make_job("digits", tmp_path / "cut", **overrides)
    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg, callbacks=[Interrupt(stop_at - 1)], progress=False).run()
    resumed = Trainer(cfg, progress=False)
    result = resumed.run(resume=True)
    assert torch.equal(resumed.space.vector(), full.space.vector())
    assert comparable(result) == comparable(full_result)

    # resuming a job that already stopped at its checkpoint stops there again, with the same result
    cfg.checkpoint.every = 1
    done = Trainer(cfg, progress=False)
    first = done.run()
    again = Trainer(cfg, progress=False)
    second = again.run(resume=True)
    assert again.iteration == done.iteration == stop_at and not again.history
    assert comparable(second) == comparable(first) == comparable(full_result)


@pytest.mark.parametrize("overrides,match", [
    ({"stop.episodes": -1}, "stop.episodes = -1 is out of range"),
    ({"stop.seconds": -0.5}, "stop.seconds = -0.5 is out of range"),
    ({"stop.forward_examples": 1.5}, "stop.forward_examples: expected an integer"),
    ({"stop.bogus": 1}, "unknown key 'stop.bogus'"),
    ({"stop.target": {"metric": "count/episodes", "value": 3}}, "stop.target.metric .*unknown metric family 'count'"),
    ({"stop.target": {"metric": "return", "value": 3}}, "stop.target.metric .*unknown metric family"),
    ({"stop.target": {"metric": "eval/return", "value": 3}}, "stop.target.metric .*does not report it"),
    ({"stop.target": {"metric": "eval/accuracy"}}, "stop.target.value is missing"),
    ({"stop.target": {"value": 0.9}}, "stop.target.metric is missing"),
    ({"stop.episodes": 100}, "stop.episodes = 100: a supervised task spends no episodes"),
    ({"eval.every_episodes": 100}, "eval.every_episodes = 100: a supervised task spends no episodes"),
    ({"eval.every_episodes": -1}, "eval.every_episodes = -1 is out of range"),
    ({"ars.backend": "distributed", "stop.seconds": 5}, "stop.seconds = 5.0 cannot be used with ars.backend = 'dist"),
])
def test_bad_stop_values_are_refused_naming_the_key(tmp_path, overrides, match):
    with pytest.raises(ConfigError, match=match):
        make_job("digits", tmp_path / "run", **overrides)


def test_a_target_the_task_does_not_evaluate_is_refused_before_training(tmp_path, monkeypatch):
    # a regression dataset evaluates loss only: accuracy passes the config check, the trainer refuses it
    cfg = make_job("digits", tmp_path / "run", **{"task.dataset": "regression",
                                                  "stop.target": {"metric": "eval/accuracy", "value": 0.9}})
    with pytest.raises(ConfigError, match="stop.target.metric = 'eval/accuracy'.*reports eval/loss"):
        Trainer(cfg, progress=False)


def test_cli_exits_2_naming_the_key(tmp_path, capsys):
    config = tmp_path / "job.toml"
    config.write_text('[task]\ndataset = "digits"\n[tracking]\nenabled = false\n[stop]\nepisodes = -5\n')
    assert main(["train", str(config), "--quiet"]) == 2
    assert "stop.episodes = -5" in capsys.readouterr().err
    config.write_text('[task]\ndataset = "digits"\n[tracking]\nenabled = false\n'
                      '[stop]\ntarget = { metric = "time/elapsed_s", value = 3 }\n')
    assert main(["train", str(config), "--quiet"]) == 2
    assert "unknown metric family 'time'" in capsys.readouterr().err


def test_an_rl_resume_keeps_the_episode_grid_and_the_budget(tmp_path):
    overrides = {"stop.episodes": 40, "eval.every_episodes": 10, "checkpoint.every": 3, "ars.version": "v2t",
                 "ars.top": 2}
    full = Trainer(rl_job(tmp_path / "full", **overrides), progress=False)
    full_result = full.run()
    cfg = rl_job(tmp_path / "cut", **overrides)
    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg, callbacks=[Interrupt(5)], progress=False).run()     # after the iteration-3 checkpoint
    resumed = Trainer(cfg, progress=False)
    result = resumed.run(resume=True)
    assert torch.equal(resumed.space.vector(), full.space.vector())
    assert comparable(result) == comparable(full_result)
    assert [h["iteration"] for h in resumed.history if "eval/return" in h] == [4, 5, 7]


def test_schedules_over_the_job_end_where_a_budget_ends_it(tmp_path):
    # ars.iterations = 1000 is only a cap; the forward budget ends the run after 5 iterations, so
    # prioritised β and annealing's linear T run over those 5, not over the cap
    seen: list = []

    class Record(Callback):
        def on_iteration(self, trainer, iteration, metrics):
            seen.append((trainer.task.progress, metrics.get("annealing/temperature")))

    # two learners' candidates + annealing's re-scoring of both + the priority update's batch
    per_iteration = 2 * (2 * 8 * 64) + 2 * 2 * 64 + 64
    cfg = make_job("digits", tmp_path / "run", **{"checkpoint.every": 5, "ars.iterations": 1000,
                                                  "stop.forward_examples": 5 * per_iteration,
                                                  "population.size": 2, "population.strategies": ["annealing"],
                                                  "population.annealing.schedule": "linear",
                                                  "population.annealing.t0": 2.0,
                                                  "sampling.alpha": 0.6, "sampling.beta": 0.4})
    trainer = Trainer(cfg, callbacks=[Record()], progress=False)
    betas = []
    sample = trainer.task.sampler.sample
    trainer.task.sampler.sample = lambda it, progress: betas.append(trainer.task.sampler.beta(progress)) or sample(it, progress)
    result = trainer.run()
    assert result["iterations"] == 5 and result["stop/reason"] == "forward_examples"
    assert [p for p, _ in seen] == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8])
    assert [t for _, t in seen] == pytest.approx([2.0, 1.6, 1.2, 0.8, 0.4])
    assert betas[-1] == pytest.approx(0.4 + 0.6 * 0.8) and betas[0] == pytest.approx(0.4)
