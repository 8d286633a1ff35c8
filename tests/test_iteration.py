"""One ARS iteration, written once: the functional core, the learners built on it, the registries."""

import dataclasses

import pytest
import torch

from arsearch import ars, learner
from arsearch.ars import ARS, ars_step, update_weights
from arsearch.backends import make_backend
from arsearch.backends.hogwild import HogwildLearner
from arsearch.config import BACKENDS, STRATEGIES, ConfigError, PopulationConfig, load_job
from arsearch.learner import REGISTRY, ARSLearner, Hyper, Learner, learner_name, make_learner
from arsearch.noise import iteration_seeds, make_noise
from arsearch.population import Population, strategy_class
from arsearch.spaces import FullSpace
from arsearch.tasks import build_task
from tests.support import make_job


def parts(cfg):
    torch.manual_seed(cfg.seed)
    task = build_task(cfg)
    return task, FullSpace(task.model), make_noise(), make_backend(cfg.ars.backend, cfg)


# -- the functional core ----------------------------------------------------------------------------
def test_ars_step_weighs_each_learner_with_its_own_step_size_and_noise():
    r_plus = torch.tensor([[3.0, 1.0, 2.0], [0.5, 0.1, 0.9]], dtype=torch.float64)
    r_minus = torch.tensor([[1.0, 2.0, 0.0], [0.2, 0.4, 0.3]], dtype=torch.float64)
    seen = {}

    def evaluate(seeds, noises):
        seen["noises"] = noises.tolist()
        return r_plus, r_minus

    def apply(seeds, weights):
        seen["weights"] = weights

    result = ars_step(evaluate, apply, [[1, 2, 3], [4, 5, 6]], [0.1, 0.02], [0.03, 0.05], top=2, version="v1t")
    assert seen["noises"] == [0.03, 0.05]
    expected = torch.stack([update_weights(r_plus[0], r_minus[0], 0.1, 2, "v1t"),
                            update_weights(r_plus[1], r_minus[1], 0.02, 2, "v1t")])
    assert torch.equal(seen["weights"], expected) and torch.equal(result.weights, expected)
    assert result.rewards.shape == (2, 6)
    m = result.metrics()
    assert m["train/score_max"] == 3.0 and m["train/step_scale"] == pytest.approx(float(expected.abs().sum(1).mean()))


def test_single_learner_step_equals_the_iteration_written_out(tmp_path):
    """seeds → batch → evaluate → update_weights → apply, by hand, gives the learner's θ bit for bit."""
    cfg = make_job("digits", tmp_path / "run")
    task, space, noise, backend = parts(cfg)
    lrn = ARSLearner(Hyper.of(cfg), task, space, noise, backend)
    task2, space2, noise2, backend2 = parts(cfg)
    a = cfg.ars
    for it in range(3):
        m = lrn.step(it)
        seeds = iteration_seeds(cfg.seed, it, a.directions)
        batch = task2.batch(it)
        rp, rm = backend2.evaluate(space2, task2, noise2, seeds, a.noise, batch)
        w = update_weights(rp, rm, a.step_size, a.top, a.version)
        backend2.apply(space2, noise2, seeds, w)
        task2.after_step(batch)
        assert torch.equal(space.vector(), space2.vector())
        assert m["train/score"] == float(torch.cat([rp, rm]).mean())


def test_every_learner_runs_the_one_iteration(monkeypatch, tmp_path):
    """ARSLearner, Population and the hogwild worker inherit `Learner.step`; the optimizer calls `ars_step`."""
    from arsearch.backends import hogwild

    for cls in (ARSLearner, Population, hogwild._WorkerLearner):
        assert issubclass(cls, Learner)
    assert "step" not in vars(ARSLearner) and "step" not in vars(Population)
    calls = []
    original = ars.ars_step
    monkeypatch.setattr(ars, "ars_step", lambda *a, **k: calls.append("optimizer") or original(*a, **k))
    monkeypatch.setattr(learner, "ars_step", lambda *a, **k: calls.append("learner") or original(*a, **k))
    model = torch.nn.Linear(3, 1)
    opt = ARS(model.parameters(), directions=2, top=2)
    x = torch.randn(8, 3)
    opt.step(lambda: model(x).pow(2).mean())
    cfg = make_job("digits", tmp_path / "run", **{"population.size": 2, "population.epoch": 1})
    task, space, noise, backend = parts(cfg)
    Population.from_config(cfg, task, space, noise, backend).step(0)
    assert calls == ["optimizer", "learner"]


def test_a_population_of_one_without_strategies_is_the_single_learner(tmp_path):
    cfg = make_job("digits", tmp_path / "run", **{"population.size": 1, "population.fitness": "last"})
    plain = make_job("digits", tmp_path / "run")
    single = ARSLearner.from_config(plain, *parts(plain))
    task, space, noise, backend = parts(cfg)
    pop = Population.from_config(cfg, task, space, noise, backend)
    for it in range(4):
        ms, mp = single.step(it), pop.step(it)
        # the single learner's MLP forward shares x·Wᵀ (x·Wᵀ ± ν·x·δᵀ), the population forms θ ± ν·δ:
        # the same arithmetic up to float32 rounding
        assert ms["train/score"] == pytest.approx(mp["train/score"], rel=1e-6, abs=1e-7)
    assert torch.allclose(pop.thetas[0], single.space.vector(), atol=1e-5)


def test_per_learner_noise_batched_equals_the_loop(tmp_path):
    cfg = make_job("digits", tmp_path / "run")
    task, space, noise, vec = parts(cfg)
    seq = make_backend("sequential", cfg)
    thetas = space.vector().unsqueeze(0) + 0.05 * torch.randn(3, space.dim)
    seeds = [[1, 2], [3, 4], [5, 6]]
    nu = torch.tensor([0.01, 0.03, 0.1], dtype=torch.float64)
    batch = task.batch(0)
    rp_v, rm_v = vec.evaluate_many(space, task, noise, thetas, seeds, nu, batch)
    rp_s, rm_s = seq.evaluate_many(space, task, noise, thetas, seeds, nu, batch)
    assert torch.allclose(rp_v, rp_s, atol=1e-5) and torch.allclose(rm_v, rm_s, atol=1e-5)
    one, _ = vec.evaluate_many(space, task, noise, thetas[1:2], seeds[1:2], 0.03, batch)
    assert torch.allclose(one[0], rp_v[1], atol=1e-6)


# -- hyperparameters, not the job config ------------------------------------------------------------
def test_hyper_is_the_ars_table_and_seed(tmp_path):
    cfg = make_job("digits", tmp_path / "run", seed=7)
    h = Hyper.of(cfg)
    assert (h.version, h.directions, h.top, h.step_size, h.noise, h.seed) == ("v1t", 8, 4, 0.05, 0.03, 7)
    assert Hyper.of(h) is h
    with pytest.raises(ValueError, match="version"):
        Hyper(version="v3")
    with pytest.raises(ValueError, match="top"):
        Hyper(directions=2, top=3)
    with pytest.raises(ValueError, match="step_size"):
        Hyper(step_size=0.0)


# -- registries ------------------------------------------------------------------------------------
def test_the_trainer_picks_its_learner_from_the_registry(tmp_path):
    assert learner_name(make_job("digits", tmp_path / "run")) == "ars"
    assert learner_name(make_job("digits", tmp_path / "run", **{"population.size": 2})) == "population"
    assert learner_name(make_job("digits", tmp_path / "run", **{"ars.backend": "hogwild"})) == "hogwild"
    assert set(REGISTRY) == {"ars", "population", "hogwild"}
    cfg = make_job("digits", tmp_path / "run")
    assert type(make_learner(cfg, *parts(cfg))) is ARSLearner
    assert REGISTRY["hogwild"].endswith(HogwildLearner.__name__)
    with pytest.raises(ValueError, match="unknown learner 'nope'"):
        make_learner(cfg, *parts(cfg), name="nope")


def test_config_tables_come_from_the_registries():
    from arsearch.backends import REGISTRY as backend_registry
    from arsearch.population import REGISTRY as strategy_registry

    assert STRATEGIES is strategy_registry and BACKENDS is backend_registry
    names = {f.name for f in dataclasses.fields(PopulationConfig)}
    for name in strategy_registry:
        assert name in names
        field = next(f for f in dataclasses.fields(PopulationConfig) if f.name == name)
        assert field.type is strategy_class(name).Config          # the dataclass beside the strategy's class
    cfg = load_job(data={"population": {"strategies": ["pbt"], "pbt": {"resample": 0.5}}})
    assert cfg.population.pbt.resample == 0.5
    with pytest.raises(ConfigError, match="population.pbt.resample"):
        load_job(data={"population": {"pbt": {"resample": 2.0}}})
    with pytest.raises(ConfigError, match="ars.backend"):
        load_job(data={"ars": {"backend": "quantum"}})
    # each backend's keys come from the Config dataclass beside its class, flat in [ars]
    from arsearch.backends import backend_class
    from arsearch.config import ARSSection

    ars_keys = {f.name for f in dataclasses.fields(ARSSection)}
    for name in backend_registry:
        assert {f.name for f in dataclasses.fields(backend_class(name).Config)} <= ars_keys
    assert {"workers", "timeout", "nproc", "vector_chunk", "devices"} <= ars_keys
    with pytest.raises(ConfigError, match="ars.workers"):
        load_job(data={"ars": {"workers": 0}})
