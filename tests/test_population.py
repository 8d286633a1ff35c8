"""A population trained end to end: batched evaluation, best-learner loading, resume, CLI, learning."""

import json
from pathlib import Path

import pytest
import torch

from arsearch import checkpoint as ckpt
from arsearch.backends import make_backend
from arsearch.config import load_job
from arsearch.noise import make_noise
from arsearch.population import Population
from arsearch.spaces import FullSpace
from arsearch.tasks import build_task
from arsearch.trainer import Trainer
from tests.support import assert_same_state, make_job

ROOT = Path(__file__).resolve().parents[1]


def parts(cfg):
    torch.manual_seed(cfg.seed)       # as the trainer does: same initial model
    task = build_task(cfg)
    space = FullSpace(task.model)
    return task, space, make_noise(), make_backend(cfg.ars.backend, cfg)


def test_vectorized_batch_equals_the_per_learner_loop(tmp_path):
    cfg = make_job("population", tmp_path / "run")
    task, space, noise, vec = parts(cfg)
    seq = make_backend("sequential", cfg)
    thetas = space.vector().unsqueeze(0) + 0.1 * torch.randn(3, space.dim)
    seeds = [[11, 12, 13], [21, 22, 23], [31, 32, 33]]
    batch = task.batch(0)
    rp_v, rm_v = vec.evaluate_many(space, task, noise, thetas, seeds, 0.03, batch)
    rp_s, rm_s = seq.evaluate_many(space, task, noise, thetas, seeds, 0.03, batch)
    assert rp_v.shape == (3, 3) and torch.allclose(rp_v, rp_s, atol=1e-5) and torch.allclose(rm_v, rm_s, atol=1e-5)
    w = torch.randn(3, 3, dtype=torch.float64)
    assert torch.allclose(vec.apply_many(space, noise, thetas, seeds, w),
                          seq.apply_many(space, noise, thetas, seeds, w), atol=1e-5)
    assert torch.allclose(vec.score_thetas(space, task, thetas, batch), seq.score_thetas(space, task, thetas, batch),
                          atol=1e-5)


def test_learner_zero_follows_the_single_learner_and_best_is_loaded(tmp_path):
    cfg = make_job("population", tmp_path / "run", **{"population.strategies": [], "sampling": None})
    single = Trainer(load_job(data=_plain(cfg)), progress=False)
    for i in range(3):
        single.learner.step(i)
    task, space, noise, backend = parts(cfg)
    pop = Population(cfg, task, space, noise, backend)
    for i in range(3):
        m = pop.step(i)
    assert torch.allclose(pop.thetas[0], single.space.vector(), atol=1e-5)
    assert not torch.allclose(pop.thetas[0], pop.thetas[1])        # own direction streams
    assert torch.equal(space.vector(), pop.thetas[pop.best])        # best θ is in the model
    assert m["population/best"] == pytest.approx(float(pop.fitness.max()))
    assert m["population/diversity"] > 0 and m["population/acceptance_rate"] == 1.0
    assert {f"population/learner_{k}/score" for k in range(4)} <= m.keys()


def _plain(cfg):
    from arsearch.config import to_dict

    d = to_dict(cfg)
    d.pop("population", None)
    return d


def test_all_strategies_learn_digits_and_resume_exactly(tmp_path):
    cfg = make_job("population", tmp_path / "run", **{"ars.iterations": 60, "checkpoint.every": 30})
    trainer = Trainer(cfg, progress=False)
    result = trainer.run()
    # chance is 0.1; 16 hidden units, 60 iterations. Seeds 1-6 of this job gave 0.45-0.62 (mean 0.56)
    # before issue 10 and 0.49-0.66 (mean 0.55) after it: a bound at 0.6 tested one seed's luck
    assert result["eval/accuracy"] > 0.4
    last = trainer.history[-1]
    for key in ("population/best", "population/median", "population/acceptance_rate", "population/diversity",
                "annealing/temperature", "culling/replaced", "tabu/pushed", "pso/speed"):
        assert key in last or any(key in h for h in trainer.history), key
    # the checkpoint is weights_only-loadable and holds the best learner in the model
    state = ckpt.load(tmp_path / "run" / "final.pt")
    best = state["learner"]["best"]
    model_theta = torch.cat([v.reshape(-1) for v in state["model"].values()])
    assert torch.allclose(model_theta, state["learner"]["thetas"][best])
    # resume from iteration 30 and land on the same population
    (tmp_path / "run" / "iter_0000060.pt").unlink()
    resumed = Trainer(cfg, progress=False)
    resumed.run(resume=True)
    assert resumed.history[0]["iteration"] == 31
    # exact: θ of every learner, their fitness, each strategy's state, the priorities, the model
    assert_same_state(resumed.learner.state_dict(), trainer.learner.state_dict())
    assert torch.equal(resumed.task.sampler.priorities, trainer.task.sampler.priorities)
    assert_same_state(resumed.model.state_dict(), trainer.model.state_dict())


def test_resume_refuses_a_population_of_another_size(tmp_path):
    cfg = make_job("population", tmp_path / "run", **{"ars.iterations": 10})
    Trainer(cfg, progress=False).run()
    other = Trainer(make_job("population", tmp_path / "run", **{"ars.iterations": 20, "population.size": 3}),
                    progress=False)
    with pytest.raises(ValueError, match="population.size"):
        other.run(resume=True)


def test_rl_population_with_both_backends(tmp_path):
    pytest.importorskip("gymnasium")
    results = {}
    for backend in ("vectorized", "sequential"):
        cfg = load_job(data={"task": {"kind": "rl", "env": "Swimmer-v5", "horizon": 30, "eval_episodes": 1},
                             "ars": {"directions": 2, "top": 2, "iterations": 2, "backend": backend},
                             "population": {"size": 3, "epoch": 1, "strategies": ["annealing", "culling", "pso"]},
                             "tracking": {"enabled": False}, "checkpoint": {"dir": str(tmp_path / backend)}})
        t = Trainer(cfg, progress=False)
        t.run()
        results[backend] = t.learner.thetas
        # 2 iterations × 3 learners × (2·2 candidates + 2 annealing episodes) + 1 evaluation not counted
        assert t.task.counters["episodes"] == 2 * 3 * (4 + 2)
    assert torch.allclose(results["vectorized"], results["sequential"], atol=1e-4)


def test_cli_trains_the_shipped_population_config(tmp_path, capsys):
    from arsearch.cli import main

    args = ["train", str(ROOT / "configs/digits_population.toml"), "--quiet", "--set", "ars.iterations=10",
            "--set", "tracking.enabled=false", "--set", f"checkpoint.dir={tmp_path}/r"]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["iterations"] == 10
    assert main(args + ["--set", 'population.strategies=["culling", "genetic"]']) == 2
    assert "population.strategies[1]" in capsys.readouterr().err
