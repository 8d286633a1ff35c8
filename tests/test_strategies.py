"""Each population strategy on small cases a reader can check by hand (no training)."""

import math
from types import SimpleNamespace

import pytest
import torch

from arsearch.population import Annealing, Culling, ParticleSwarm, Population, Tabu
from arsearch.population.annealing import acceptance_probability
from arsearch.population.tabu import rms_distance


class FakePopulation:
    """Just the surface strategies use: thetas, fitness, best, generator, clone, score_thetas, progress."""

    generator = Population.generator
    progress = 0.0

    def __init__(self, thetas, fitness, strategies=(), epoch=1, scores=None):
        self.thetas = torch.as_tensor(thetas, dtype=torch.float32).clone()
        self.fitness = torch.as_tensor(fitness, dtype=torch.float64)
        self.size, self.dim = self.thetas.shape
        self.best = int(torch.argmax(self.fitness))
        self.strategies, self.epoch = list(strategies), epoch
        self.config = SimpleNamespace(seed=0)
        self.scores = scores          # callable thetas -> scores, for annealing
        for s in self.strategies:
            s.bind(self)

    clone = Population.clone

    def score_thetas(self, thetas, batch):
        return self.scores(thetas)


# -- culling -----------------------------------------------------------------------------------
@pytest.mark.parametrize("size,fraction,expected", [(8, 0.5, 4), (5, 0.5, 2), (4, 0.25, 1), (4, 1.0, 3), (4, 0.1, 0)])
def test_culling_replaces_exactly_the_worst_fraction_with_the_best(size, fraction, expected):
    thetas = torch.arange(size, dtype=torch.float32).unsqueeze(1).repeat(1, 3)   # learner k is (k, k, k)
    fitness = torch.tensor([3.0, 9.0, 1.0, 7.0, 5.0, 0.0, 8.0, 2.0][:size])
    pop = FakePopulation(thetas, fitness)
    culling = Culling(fraction=fraction)
    metrics = culling.on_epoch(pop, 1)
    assert metrics["culling/replaced"] == expected
    order = torch.argsort(fitness, descending=True)
    worst, kept = set(order[size - expected:].tolist()), order[:size - expected].tolist()
    best = int(order[0])
    for k in range(size):
        if k in worst:
            assert torch.equal(pop.thetas[k], thetas[best]) and pop.fitness[k] == fitness[best]
        else:
            assert torch.equal(pop.thetas[k], thetas[k])
    assert set(kept) | worst == set(range(size))


def test_culling_mutation_adds_gaussian_noise_of_the_given_scale():
    pop = FakePopulation(torch.zeros(4, 20000), [4.0, 3.0, 2.0, 1.0])
    Culling(fraction=0.5, mutation=0.1).on_epoch(pop, 1)
    assert torch.equal(pop.thetas[:2], torch.zeros(2, 20000))
    for k in (2, 3):
        assert abs(float(pop.thetas[k].std()) - 0.1) < 0.005 and abs(float(pop.thetas[k].mean())) < 0.005
    assert not torch.equal(pop.thetas[2], pop.thetas[3])


def test_culling_carries_strategy_state_to_the_clones():
    pso = ParticleSwarm()
    pop = FakePopulation(torch.eye(3), [1.0, 2.0, 0.0], strategies=[pso])
    pso.velocity[:] = 5.0
    pso.personal_fitness[:] = torch.tensor([1.0, 2.0, 0.0], dtype=torch.float64)
    Culling(fraction=0.34).on_epoch(pop, 1)                      # replaces learner 2 by learner 1
    assert torch.equal(pso.personal_best[2], pso.personal_best[1]) and pso.personal_fitness[2] == 2.0
    assert torch.equal(pso.velocity[2], torch.zeros(3)) and torch.equal(pso.velocity[0], torch.full((3,), 5.0))


# -- annealing ----------------------------------------------------------------------------------
def test_acceptance_probability_formula():
    p = acceptance_probability(torch.tensor([-1.0, 0.0, 0.5, 2.0]), 0.5)
    assert torch.allclose(p, torch.tensor([1.0, 1.0, math.exp(-1.0), math.exp(-4.0)], dtype=torch.float64))
    assert torch.equal(acceptance_probability(torch.tensor([-1.0, 1.0]), 0.0), torch.tensor([1.0, 0.0]).double())


@pytest.mark.parametrize("delta,t", [(0.5, 1.0), (0.2, 0.1), (1.0, 2.0)])
def test_annealing_acceptance_frequency_matches_boltzmann(delta, t):
    """Every learner's step worsens the score by Δ: the fraction kept must be exp(−Δ/T)."""
    k, rounds = 250, 40
    old = torch.zeros(k, 2)
    new = torch.ones(k, 2)
    # score = −Δ·(first coordinate): θ_old scores 0, θ_new scores −Δ (worse by Δ)
    pop = FakePopulation(new, torch.zeros(k), scores=lambda th: -delta * th[:, 0].double())
    annealing = Annealing(schedule="exponential", t0=t, decay=1.0, t_min=0.0)
    annealing.bind(pop)
    kept = 0
    for it in range(rounds):
        pop.thetas = new.clone()
        annealing.after_step(pop, it, old, None)
        kept += int((pop.thetas[:, 0] == 1.0).sum())
        assert set(pop.thetas[:, 0].tolist()) <= {0.0, 1.0}     # each step kept or fully reverted
    n = k * rounds
    p = math.exp(-delta / t)
    assert abs(kept / n - p) < 4 * math.sqrt(p * (1 - p) / n)


def test_annealing_always_keeps_improving_steps():
    pop = FakePopulation(torch.ones(50, 1), torch.zeros(50), scores=lambda th: th[:, 0].double())
    annealing = Annealing(t0=1e-9, t_min=0.0)
    annealing.bind(pop)
    m = annealing.after_step(pop, 0, torch.zeros(50, 1), None)
    assert torch.equal(pop.thetas, torch.ones(50, 1)) and m["population/acceptance_rate"] == 1.0


def test_annealing_schedules():
    exp = Annealing("exponential", t0=2.0, decay=0.5, t_min=0.0)
    assert [exp.temperature(e) for e in range(3)] == [2.0, 1.0, 0.5]
    lin = Annealing("linear", t0=1.0, t_min=0.0)          # over the job's progress, not epochs
    assert [lin.temperature(7, p) for p in (0.0, 0.25, 0.5, 0.75, 1.0)] == [1.0, 0.75, 0.5, 0.25, 0.0]
    log = Annealing("logarithmic", t0=1.0, t_min=0.0)
    assert log.temperature(0) == pytest.approx(1.0) and log.temperature(6) == pytest.approx(math.log(2) / math.log(8))
    floor = Annealing("exponential", t0=1.0, decay=0.1, t_min=0.05)
    assert floor.temperature(5) == 0.05
    hard = Annealing("exponential", t0=1.0, decay=1.0, t_min=0.0, difficulty=0.5)
    assert [hard.temperature(e) for e in range(3)] == [1.0, 1 / 1.5, 0.5]


def test_adaptive_schedule_moves_temperature_toward_the_target_rate():
    pop = FakePopulation(torch.ones(100, 1), torch.zeros(100), scores=lambda th: -th[:, 0].double())
    ad = Annealing("adaptive", t0=100.0, decay=0.5, t_min=0.0, target_acceptance=0.3)
    ad.bind(pop)
    ad.after_step(pop, 0, torch.zeros(100, 1), None)     # Δ = 1 at T = 100: ~99% kept, above target
    ad.on_epoch(pop, 1)
    assert ad.temperature(1) == 50.0
    ad.adaptive_t = 0.01
    pop.thetas = torch.ones(100, 1)
    ad.after_step(pop, 1, torch.zeros(100, 1), None)     # T = 0.01: nothing kept, below target
    ad.on_epoch(pop, 2)
    assert ad.temperature(2) == 0.02


# -- tabu ---------------------------------------------------------------------------------------
def test_tabu_repulsion_pushes_learners_away_from_the_best():
    thetas = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [-1.0, -1.0]])
    pop = FakePopulation(thetas, [5.0, 1.0, 2.0, 3.0])
    Tabu(repulsion=0.5, memory=0).on_epoch(pop, 1)
    expected = torch.tensor([[0.0, 0.0], [1.5, 0.0], [0.0, 3.0], [-1.5, -1.5]])
    assert torch.allclose(pop.thetas, expected)
    before = rms_distance(thetas, thetas[0])
    after = rms_distance(pop.thetas, pop.thetas[0])
    assert after[0] == 0 and (after[1:] > before[1:]).all()


def test_tabu_memory_moves_learners_out_of_the_balls_around_past_bests():
    tabu = Tabu(repulsion=0.0, memory=2, radius=1.0)
    pop = FakePopulation(torch.tensor([[0.0, 0.0], [0.5, 0.5], [0.0, 0.0], [3.0, 3.0]]), [9.0, 1.0, 1.0, 1.0])
    m = tabu.on_epoch(pop, 1)
    assert torch.equal(pop.thetas[0], torch.zeros(2))                       # the best is not moved
    assert torch.allclose(pop.thetas[1], torch.tensor([1.0, 1.0]))          # out along its own direction
    assert float(rms_distance(pop.thetas[2], torch.zeros(2))) == pytest.approx(1.0)   # a clone: random way out
    assert torch.equal(pop.thetas[3], torch.tensor([3.0, 3.0]))             # outside every ball
    assert m["tabu/pushed"] == 2 and len(tabu.memory) == 1
    # the memory keeps the last `memory` bests, and its balls stay tabu after the best moves on
    pop.thetas[0] = torch.tensor([10.0, 10.0])
    pop.thetas[3] = torch.tensor([0.1, 0.0])
    tabu.on_epoch(pop, 2)
    assert float(rms_distance(pop.thetas[3], torch.zeros(2))) == pytest.approx(1.0)
    tabu.on_epoch(pop, 3)
    assert len(tabu.memory) == 2 and torch.equal(tabu.memory[0], torch.tensor([10.0, 10.0]))


# -- particle swarm -----------------------------------------------------------------------------
def test_pso_update_equals_its_formula():
    w, c1, c2 = 0.7298, 1.49618, 1.49618
    pso = ParticleSwarm(w, c1, c2)
    x0 = torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, -1.0]])
    pop = FakePopulation(x0, [1.0, 3.0, 2.0], strategies=[pso], epoch=1)
    pso.on_epoch(pop, 1)                  # personal bests = x0, global best = learner 1
    gen = pop.generator("pso", 1)
    r1, r2 = torch.rand(3, 2, generator=gen), torch.rand(3, 2, generator=gen)
    v1 = c2 * r2 * (x0[1] - x0)          # v0 = 0 and p = x0
    assert torch.allclose(pso.velocity, v1) and torch.allclose(pop.thetas, x0 + v1)
    # second epoch: learner 2 got better than its personal best, learner 0 worse
    x1 = pop.thetas.clone()
    pop.fitness = torch.tensor([0.0, 3.0, 5.0], dtype=torch.float64)
    pso.on_epoch(pop, 2)
    gen = pop.generator("pso", 2)
    r1, r2 = torch.rand(3, 2, generator=gen), torch.rand(3, 2, generator=gen)
    p = torch.stack([x0[0], x0[1], x1[2]])
    g = x1[2]
    v2 = w * v1 + c1 * r1 * (p - x1) + c2 * r2 * (g - x1)
    assert torch.allclose(pso.velocity, v2, atol=1e-6) and torch.allclose(pop.thetas, x1 + v2, atol=1e-6)
    assert pso.personal_fitness.tolist() == [1.0, 3.0, 5.0]
