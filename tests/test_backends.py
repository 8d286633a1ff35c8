"""Sequential and vectorized backends give the same update; spaces map θ faithfully."""

import pytest
import torch
from torch import nn

from arsearch.backends import make_backend
from arsearch.noise import SeedNoise, iteration_seeds
from arsearch.normalizer import RunningNorm
from arsearch.spaces import FullSpace
from arsearch.trainer import Trainer
from tests.support import make_job


def test_full_space_round_trips_and_expands():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    space = FullSpace(model)
    assert space.dim == 3 * 4 + 4 + 4 * 2 + 2
    theta = torch.arange(space.dim, dtype=torch.float32)
    space.load_(theta)
    assert torch.equal(space.vector(), theta)
    assert torch.equal(model[0].bias, torch.arange(12, 16, dtype=torch.float32))
    batch = torch.stack([theta, -theta])
    params = space.expand(batch)
    assert params["2.weight"].shape == (2, 2, 4)
    assert torch.equal(params["2.weight"][1], -model[2].weight)
    space.add_(space.split(torch.ones(space.dim)), alpha=2.0)
    assert torch.equal(space.vector(), theta + 2)


@pytest.mark.parametrize("model,version", [("mlp", "v1t"), ("cnn", "v1t"), ("mlp", "v2t")])
def test_sequential_and_vectorized_reach_the_same_parameters(tmp_path, model, version):
    results = {}
    for backend in ("sequential", "vectorized"):
        cfg = make_job("digits", tmp_path / backend, **{"ars.backend": backend, "task.model": model,
                                                      "ars.version": version, "ars.iterations": 5})
        trainer = Trainer(cfg, progress=False)
        trainer.run()
        results[backend] = (trainer.space.vector(), trainer.last_eval)
    seq, vec = results["sequential"][0], results["vectorized"][0]
    assert not torch.equal(seq, torch.zeros_like(seq))
    assert torch.allclose(seq, vec, atol=1e-4), (seq - vec).abs().max()


def test_one_iteration_same_scores_and_step(tmp_path):
    cfg = make_job("digits", tmp_path / "run", **{"ars.iterations": 1})
    trainer = Trainer(cfg, progress=False)
    space, task, noise = trainer.space, trainer.task, SeedNoise()
    theta0 = space.vector()
    seeds = iteration_seeds(0, 0, 8)
    batch = task.batch(0)
    seq, vec = make_backend("sequential"), make_backend("vectorized")
    rp_s, rm_s = seq.evaluate(space, task, noise, seeds, 0.03, batch)
    assert torch.allclose(space.vector(), theta0, atol=1e-6)  # restored after the in-place perturbations
    rp_v, rm_v = vec.evaluate(space, task, noise, seeds, 0.03, batch)
    assert torch.allclose(rp_s, rp_v, atol=1e-5) and torch.allclose(rm_s, rm_v, atol=1e-5)
    weights = torch.linspace(-1, 1, 8, dtype=torch.float64)
    seq.apply(space, noise, seeds, weights)
    after_seq = space.vector()
    space.load_(theta0)
    vec.apply(space, noise, seeds, weights)
    assert torch.allclose(after_seq, space.vector(), atol=1e-5)
    expected = theta0 + (weights.float()[:, None] * noise.directions(seeds, space.sizes)).sum(0)
    assert torch.allclose(space.vector(), expected, atol=1e-5)


def test_vectorized_split_over_devices_matches_single_call(tmp_path):
    results = []
    for devices in ([], ["cpu", "cpu"]):
        cfg = make_job("digits", tmp_path / str(len(devices)), **{"ars.devices": devices, "ars.iterations": 3,
                                                                 "ars.vector_chunk": 5})
        trainer = Trainer(cfg, progress=False)
        trainer.run()
        results.append(trainer.space.vector())
    # one device scores the MLP with the shared first-layer GEMM (x·Wᵀ ± ν·x·δᵀ), several devices
    # the formed candidates θ ± ν·δ: the same arithmetic, float32 rounding apart
    assert torch.allclose(results[0], results[1], atol=2e-5)


def test_running_norm_matches_the_statistics_of_all_states_seen():
    norm = RunningNorm(3)
    batches = [torch.randn(50, 3) * 3 + 1 for _ in range(4)]
    for b in batches:
        stats = norm.new_stats()
        stats.add(b)
        norm.update(stats)
    everything = torch.cat(batches).double()
    assert float(norm.count) == 200
    assert torch.allclose(norm.mean, everything.mean(0))
    assert torch.allclose(norm.std(), everything.std(0, unbiased=False))
    x = torch.randn(5, 3)
    assert torch.allclose(norm(x), ((x - everything.mean(0)) / everything.std(0, unbiased=False)).float(), atol=1e-5)


@pytest.mark.parametrize("version", ["v1t", "v2t"])
def test_fused_mlp_forward_equals_vmap_functional_call(tmp_path, version):
    from torch.func import functional_call, vmap

    from arsearch.tasks.supervised import fused_mlp_forward

    cfg = make_job("digits", tmp_path / "run", **{"task.hidden": [16, 8], "task.activation": "tanh", "ars.version": version})
    trainer = Trainer(cfg, progress=False)
    trainer.run()       # V2: a normaliser with non-trivial statistics
    space, model = trainer.space, trainer.model
    thetas = space.vector() + 0.1 * torch.randn(6, space.dim)
    params = space.expand(thetas)
    x = trainer.task.batch(0).x
    fused = fused_mlp_forward(model, params, x)
    assert fused is not None and fused.shape == (6, len(x), 10)
    reference = vmap(lambda p: functional_call(model, p, (x,)))(params)
    assert torch.allclose(fused, reference, atol=1e-5)
    # a model it does not know, or a partial parameter set, is left to the generic path
    assert fused_mlp_forward(nn.Sequential(nn.Linear(64, 4), nn.Sigmoid()), {"0.weight": torch.zeros(2, 4, 64),
                                                                            "0.bias": torch.zeros(2, 4)}, x) is None
    assert fused_mlp_forward(model, {k: v for k, v in params.items() if "bias" not in k}, x) is None


def assert_trained_alike(run, reference, rel: float, abs: float) -> None:
    """Two finished Trainers took the same path: scores per iteration (within rel/abs), final weights, spend."""
    assert [h["train/score"] for h in run.history] == pytest.approx([h["train/score"] for h in reference.history],
                                                                    rel=rel, abs=abs)
    for (name, a), (_, b) in zip(reference.model.state_dict().items(), run.model.state_dict().items()):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6, msg=name)
    assert run.task.counters == reference.task.counters


@pytest.mark.parametrize("kind", ["digits", "rl"])
def test_chunked_vectorized_evaluation_equals_the_unchunked_one(tmp_path, kind):
    """ars.vector_chunk only bounds memory: the scores and the trained θ are the same."""
    if kind == "rl":
        pytest.importorskip("gymnasium")
    runs = {}
    for chunk in (0, 3):      # 3 does not divide the 2N = 8 candidates: a short last chunk
        cfg = make_job(kind, tmp_path / str(chunk), **{"ars.vector_chunk": chunk, "ars.iterations": 3,
                                                        "ars.directions": 4, "ars.top": 2, "ars.version": "v2t"})
        trainer = Trainer(cfg, progress=False)
        trainer.run()
        runs[chunk] = trainer
    whole, chunked = runs[0], runs[3]
    assert_trained_alike(chunked, whole, rel=1e-6, abs=1e-9)
    assert not torch.equal(whole.space.vector(), Trainer(make_job(kind, tmp_path / "x"), progress=False).space.vector())


@pytest.mark.parametrize("kind", ["cnn", "rl"])
def test_one_candidate_per_call_scores_what_one_batched_call_scores(tmp_path, kind):
    """ars.vector_chunk = 1 runs `Task.score_one_by_one` (the CNN's automatic chunk: one plain call per
    candidate, one loss for all; RL: the default loop, each candidate on its own reset seed): the same
    scores, trajectory and spend as all 2N candidates in one `vmap` call."""
    if kind == "rl":
        pytest.importorskip("gymnasium")
    keys = {"task.model": "cnn"} if kind == "cnn" else {}
    runs, calls = {}, []
    for chunk in (1, 8):          # 8 = 2N: one batched call
        cfg = make_job("digits" if kind == "cnn" else "rl", tmp_path / str(chunk), **keys,
                       **{"ars.vector_chunk": chunk, "ars.iterations": 3, "ars.directions": 4, "ars.top": 2,
                          "ars.version": "v2t"})
        trainer = Trainer(cfg, progress=False)
        original = trainer.task.score_one_by_one
        trainer.task.score_one_by_one = lambda params, batch, f=original, c=chunk: calls.append(c) or f(params, batch)
        trainer.run()
        runs[chunk] = trainer
    assert set(calls) == {1}, "the one-by-one path was not taken at vector_chunk = 1 (or was at 2N)"
    one, batched = runs[1], runs[8]
    assert_trained_alike(one, batched, rel=1e-5, abs=1e-6)
