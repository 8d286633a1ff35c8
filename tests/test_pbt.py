"""Per-learner hyperparameters, PBT exploit/explore and its lineage, fitness, unit-free coefficients."""

import json
import math

import pytest
import torch

from arsearch import checkpoint as ckpt
from arsearch.ars import update_weights
from arsearch.backends import make_backend
from arsearch.config import ConfigError
from arsearch.noise import iteration_seeds, make_noise
from arsearch.population import Population, PopulationBasedTraining, hyperparameters_at
from arsearch.population.annealing import Annealing
from arsearch.population.pso import ParticleSwarm, unit_rms
from arsearch.population.tabu import Tabu, rms_distance
from arsearch.spaces import FullSpace
from arsearch.tasks import build_task
from arsearch.trainer import Trainer
from tests.support import make_job
from tests.support.study import write_study


def population(cfg):
    torch.manual_seed(cfg.seed)
    task = build_task(cfg)
    space = FullSpace(task.model)
    return Population.from_config(cfg, task, space, make_noise(), make_backend(cfg.ars.backend, cfg))


def pbt_job(tmp_path, **over):
    return make_job("digits", tmp_path / "run", **{
        "population.size": 6, "population.epoch": 2, "population.strategies": ["pbt"],
        "population.init.step_size": [0.01, 0.1], "population.init.noise": [0.01, 0.05], "ars.iterations": 12, **over})


# -- per-learner hyperparameters --------------------------------------------------------------------
def test_ranges_spread_the_learners_log_uniformly_and_are_logged(tmp_path):
    pop = population(pbt_job(tmp_path))
    assert ((pop.step_sizes >= 0.01) & (pop.step_sizes <= 0.1)).all()
    assert ((pop.noises >= 0.01) & (pop.noises <= 0.05)).all()
    assert len(set(pop.step_sizes.tolist())) == 6 and len(set(pop.noises.tolist())) == 6
    assert torch.equal(population(pbt_job(tmp_path)).step_sizes, pop.step_sizes)          # a function of the seed
    assert not torch.equal(population(pbt_job(tmp_path, seed=1)).step_sizes, pop.step_sizes)
    init = [e for e in pop.lineage if e["event"] == "init"]
    assert [e["learner"] for e in init] == list(range(6))
    assert [e["step_size_after"] for e in init] == pop.step_sizes.tolist()
    fixed = population(make_job("digits", tmp_path / "run", **{"population.size": 3}))
    assert fixed.step_sizes.tolist() == [0.05] * 3 and fixed.noises.tolist() == [0.03] * 3
    with pytest.raises(ConfigError, match="population.init.step_size"):
        make_job("digits", tmp_path / "run", **{"population.init.step_size": [0.1, 0.01]})


def test_each_learner_steps_with_its_own_step_size_and_noise(tmp_path):
    cfg = pbt_job(tmp_path, **{"population.strategies": [], "population.size": 3, "ars.backend": "sequential"})
    pop = population(cfg)
    before = pop.thetas.clone()
    task, space, noise = pop.task, pop.space, pop.noise
    batch_seed_state = task.batch(0)               # the batch the step will draw (digits: a pure function of it)
    pop.step(0)
    for k in range(3):
        seeds = iteration_seeds(cfg.seed, 0, cfg.ars.directions, stream=k)
        space.load_(before[k])
        rp, rm = pop.backend.evaluate(space, task, noise, seeds, float(pop.noises[k]), batch_seed_state)
        w = update_weights(rp, rm, float(pop.step_sizes[k]), cfg.ars.top, cfg.ars.version)
        pop.backend.apply(space, noise, seeds, w)
        assert torch.allclose(space.vector(), pop.thetas[k], atol=1e-6)
        assert pop.step_length[k] == pytest.approx(float(rms_distance(pop.thetas[k], before[k])), rel=1e-6)


# -- exploit and explore ----------------------------------------------------------------------------
def test_clone_copies_theta_and_hyperparameters_and_logs_an_exploit(tmp_path):
    pop = population(pbt_job(tmp_path))
    pop.thetas[2] += 1.0
    before = (float(pop.step_sizes[4]), float(pop.noises[4]))
    pop.clone(4, 2)
    assert torch.equal(pop.thetas[4], pop.thetas[2])
    assert pop.step_sizes[4] == pop.step_sizes[2] and pop.noises[4] == pop.noises[2]
    e = pop.lineage[-1]
    assert (e["event"], e["learner"], e["parent"]) == ("exploit", 4, 2)
    assert (e["step_size_before"], e["noise_before"]) == before
    assert (e["step_size_after"], e["noise_after"]) == (float(pop.step_sizes[2]), float(pop.noises[2]))


def test_pbt_replaces_the_bottom_by_the_top_and_perturbs_their_hyperparameters(tmp_path):
    pop = population(pbt_job(tmp_path))
    pop.fitness = torch.tensor([5.0, 0.0, 4.0, 1.0, 3.0, 2.0], dtype=torch.float64)   # ranked 0 2 4 5 3 1
    pop.thetas = torch.arange(6, dtype=torch.float32).unsqueeze(1).repeat(1, pop.dim)
    old_sizes, old_noises = pop.step_sizes.clone(), pop.noises.clone()
    strategy = PopulationBasedTraining(fraction=0.34, resample=0.0, perturb=1.25)   # n = 2: top {0, 2}, bottom {3, 1}
    m = strategy.on_epoch(pop, 1)
    assert m["pbt/replaced"] == 2
    for k in (3, 1):
        parent = int(pop.thetas[k, 0])
        assert parent in (0, 2)                                    # a copy of a top learner's θ
        for new, old in ((pop.step_sizes[k], old_sizes[parent]), (pop.noises[k], old_noises[parent])):
            assert float(new / old) in (pytest.approx(1.25), pytest.approx(0.8))    # explore: ×1.25 or ×0.8
    for k in (0, 2, 4, 5):
        assert pop.step_sizes[k] == old_sizes[k] and pop.thetas[k, 0] == k
    events = [(e["event"], e["learner"]) for e in pop.lineage if e["event"] != "init"]
    assert events == [("exploit", 3), ("explore", 3), ("exploit", 1), ("explore", 1)]
    # resample = 1: every explored value is drawn from the init range
    pop2 = population(pbt_job(tmp_path))
    pop2.fitness = torch.arange(6, dtype=torch.float64)
    PopulationBasedTraining(fraction=0.5, resample=1.0).on_epoch(pop2, 1)
    for k in (0, 1, 2):
        assert 0.01 <= pop2.step_sizes[k] <= 0.1 and 0.01 <= pop2.noises[k] <= 0.05


def test_lineage_is_in_metrics_json_replays_and_resumes_exactly(tmp_path):
    cfg = pbt_job(tmp_path, **{"checkpoint.every": 6})
    trainer = Trainer(cfg, progress=False)
    result = trainer.run()
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    lineage = saved["lineage"]
    assert lineage == trainer.learner.lineage
    assert {e["event"] for e in lineage} == {"init", "exploit", "explore"}
    assert sorted({e["iteration"] for e in lineage if e["event"] != "init"}) == [2, 4, 6, 8, 10, 12]
    replayed = hyperparameters_at(lineage)
    assert [replayed[k]["step_size"] for k in range(6)] == trainer.learner.step_sizes.tolist()
    assert [replayed[k]["noise"] for k in range(6)] == trainer.learner.noises.tolist()
    assert saved["hyperparameters"]["step_size"] == trainer.learner.step_sizes.tolist()
    at6 = hyperparameters_at(lineage, 6)          # the schedule can be read at any iteration
    assert at6 != replayed and set(at6) == set(range(6))
    # the checkpoint holds the lineage (weights_only) and a resumed run ends identically
    state = ckpt.load(tmp_path / "run" / "iter_0000006.pt")
    assert state["learner"]["lineage"] == [e for e in lineage if e["iteration"] <= 6]
    (tmp_path / "run" / "iter_0000012.pt").unlink()
    resumed = Trainer(cfg, progress=False)
    again = resumed.run(resume=True)
    assert resumed.learner.lineage == lineage
    assert torch.equal(resumed.learner.thetas, trainer.learner.thetas)
    assert again["eval/accuracy"] == result["eval/accuracy"]


@pytest.mark.usefixtures("mlflow_db")
def test_lineage_is_logged_to_mlflow_as_a_table(tmp_cwd):
    from mlflow import MlflowClient

    from arsearch.cli import main

    write_study(tmp_cwd, iterations=4)
    assert main(["train", "base.toml", "--quiet", "--set", "population.size=4", "--set", "population.epoch=2",
                 "--set", 'population.strategies=["pbt"]', "--set", "population.init.step_size=[0.01, 0.1]"]) == 0
    client = MlflowClient(f"sqlite:///{tmp_cwd / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    path = client.download_artifacts(run.info.run_id, "lineage.json", str(tmp_cwd))
    table = json.loads(open(path).read())
    columns = table["columns"]
    rows = [dict(zip(columns, r)) for r in table["data"]]
    metrics = json.loads((tmp_cwd / "runs/tiny/metrics.json").read_text())
    assert len(rows) == len(metrics["lineage"]) > 4
    for row, event in zip(rows, metrics["lineage"]):      # MLflow's JSON keeps 10 decimal places
        assert row == {k: pytest.approx(v, abs=1e-9) if isinstance(v, float) else v for k, v in event.items()}
    assert {"iteration", "event", "learner", "parent", "step_size_before", "step_size_after",
            "noise_before", "noise_after"} <= set(columns)


# -- fitness ----------------------------------------------------------------------------------------
def test_fitness_is_an_exponential_moving_average_of_the_candidates_mean(tmp_path):
    cfg = make_job("digits", tmp_path / "run", **{"population.size": 3, "population.fitness_ema": 0.6})
    pop = population(cfg)
    pop.step(0)
    m1 = pop.last.rewards.mean(1)
    assert torch.equal(pop.fitness, m1)                      # the first iteration has no history
    pop.step(1)
    m2 = pop.last.rewards.mean(1)
    assert torch.allclose(pop.fitness, 0.6 * m1 + 0.4 * m2)
    last = population(make_job("digits", tmp_path / "run", **{"population.size": 3, "population.fitness": "last"}))
    last.step(0)
    last.step(1)
    assert torch.equal(last.fitness, last.last.rewards.mean(1))


def test_epoch_evaluation_fitness_scores_each_theta_and_counts_it(tmp_path):
    cfg = make_job("digits", tmp_path / "run", **{"population.size": 3, "population.epoch": 2, "population.fitness": "eval"})
    pop = population(cfg)
    pop.step(0)
    spent = pop.task.counters["forward_examples"]
    pop.step(1)                                              # an epoch boundary
    per_iteration = 3 * 2 * 8 * 64
    assert pop.task.counters["forward_examples"] - spent == per_iteration + 3 * 64
    batch = pop.task.batch(1)
    expected = pop.backend.score_thetas(pop.space, pop.task, pop.thetas, batch)
    assert torch.allclose(pop.fitness, expected)


# -- unit-free coefficients -------------------------------------------------------------------------
class Fake:
    """The surface the strategies read: thetas, fitness, best, step_length, score_spread, generator, progress."""

    generator = Population.generator
    progress = 0.0

    def __init__(self, thetas, fitness, step_length=None, score_spread=None):
        from types import SimpleNamespace

        self.thetas = torch.as_tensor(thetas, dtype=torch.float32).clone()
        self.fitness = torch.as_tensor(fitness, dtype=torch.float64)
        self.size, self.dim = self.thetas.shape
        self.best = int(torch.argmax(self.fitness))
        self.step_length = torch.as_tensor(step_length if step_length is not None else [0.0] * self.size,
                                           dtype=torch.float64)
        self.score_spread = torch.as_tensor(score_spread if score_spread is not None else [1.0] * self.size,
                                            dtype=torch.float64)
        self.config, self.epoch = SimpleNamespace(seed=0), 1

    def score_thetas(self, thetas, batch):
        return self.scores(thetas)


def test_pso_pulls_are_measured_in_the_learners_step_length():
    x0 = torch.tensor([[0.0, 0.0], [3.0, 4.0], [100.0, -100.0]])
    pop = Fake(x0, [1.0, 3.0, 2.0], step_length=[0.1, 0.2, 0.05])
    pso = ParticleSwarm(units="step")          # textbook constriction coefficients
    pso.bind(pop)
    pso.personal_fitness[:] = torch.tensor([1.0, 3.0, 2.0], dtype=torch.float64)
    pso.on_epoch(pop, 1)                       # p = x0, g = learner 1
    gen = pop.generator("pso", 1)
    _r1, r2 = torch.rand(3, 2, generator=gen), torch.rand(3, 2, generator=gen)   # p = θ: r1 has nothing to scale
    ell = torch.tensor([[0.1], [0.2], [0.05]])
    to_g = x0[1] - x0
    v = 1.49618 * r2 * ell * to_g / to_g.pow(2).mean(-1, keepdim=True).sqrt().clamp_min(1e-30)
    v[1] = 0.0                                 # the global best has no pull to itself
    assert torch.allclose(pso.velocity, v, atol=1e-6) and torch.allclose(pop.thetas, x0 + v, atol=1e-5)
    # however far the bests are, one pull is at most c·ℓ (RMS): 100 away moves learner 2 by ≤ 1.5·0.05
    assert float(rms_distance(pop.thetas[2], x0[2])) <= 1.49618 * 0.05 + 1e-6
    assert torch.equal(unit_rms(torch.zeros(1, 3)), torch.zeros(1, 3))


def test_tabu_moves_are_fractions_of_the_population_spread():
    thetas = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 4.0], [3.0, 3.0]])
    pop = Fake(thetas, [5.0, 1.0, 2.0, 3.0])
    spread = float(rms_distance(thetas[1:], thetas[0]).mean())          # S: mean RMS distance to the best
    Tabu(repulsion=0.5, memory=0, units="spread").on_epoch(pop, 1)
    moved = rms_distance(pop.thetas, thetas)
    assert moved[0] == 0 and torch.allclose(moved[1:], torch.full((3,), 0.5 * spread, dtype=torch.float64))
    # each moved straight away from the best
    for k in (1, 2, 3):
        assert torch.allclose(pop.thetas[k] / pop.thetas[k].norm(), thetas[k] / thetas[k].norm(), atol=1e-6)
    # all learners on the best (a fresh cull): S falls back to the mean ARS step length, radius = 1.0·S
    clones = Fake(torch.zeros(3, 4), [1.0, 0.0, 0.0], step_length=[0.2, 0.2, 0.2])
    Tabu(repulsion=0.5, memory=1, radius=1.0, units="spread").on_epoch(clones, 1)
    d = rms_distance(clones.thetas, torch.zeros(4))
    assert d[0] == 0 and torch.allclose(d[1:], torch.full((2,), 0.2, dtype=torch.float64), atol=1e-6)


def test_annealing_temperature_is_in_units_of_the_candidates_spread():
    """Δ = σ at T = 1 is kept with probability e^-1, whether σ is 0.01 or 1000."""
    k, rounds = 200, 30
    for sigma in (0.01, 1000.0):
        pop = Fake(torch.ones(k, 1), torch.zeros(k), score_spread=[sigma] * k)
        pop.scores = lambda th, s=sigma: -s * th[:, 0].double()        # θ_new scores σ lower than θ_old
        ann = Annealing("exponential", t0=1.0, decay=1.0, t_min=0.0, units="spread")
        ann.bind(pop)
        kept = 0
        for it in range(rounds):
            pop.thetas = torch.ones(k, 1)
            ann.after_step(pop, it, torch.zeros(k, 1), None)
            kept += int((pop.thetas[:, 0] == 1.0).sum())
        p, n = math.exp(-1.0), k * rounds
        assert abs(kept / n - p) < 4 * math.sqrt(p * (1 - p) / n)
    assert Annealing.Config().schedule == "adaptive" and Annealing.Config().units == "spread"
