"""Low-rank directions (ars.noise_rank): the factored forward equals explicit perturbation, the
step equals the weighted sum, resume is bit-exact on every backend, and the optimizer takes r."""

import datetime
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn
from torch.func import functional_call

from arsearch import checkpoint as ckpt
from arsearch.ars import ARS
from arsearch.backends.vectorized import VectorizedBackend
from arsearch.config import ConfigError
from arsearch.noise import LowRankNoise, TableNoise, make_noise
from arsearch.spaces import FullSpace
from arsearch.tasks.supervised import shared_mlp_forward
from arsearch.trainer import Trainer
from tests.support import StopAt, make_job

SEEDS = [3, 14, 15, 92, 65]


def digits_trainer(tmp_path, **overrides):
    return Trainer(make_job("digits", tmp_path / "run", **{"checkpoint.every": 5, "ars.noise_rank": 2, **overrides}),
                   progress=False)


# -- the noise ----------------------------------------------------------------------------------
def test_each_weight_matrix_gets_a_rank_r_direction_and_vectors_stay_full_rank():
    shapes = [(16, 64), (16,), (10, 16), (10,)]
    noise = LowRankNoise(3, shapes)
    sizes = [16 * 64, 16, 160, 10]
    chunks = list(noise.chunks(7, sizes, "cpu", torch.float32))
    assert [c.numel() for c in chunks] == sizes
    assert torch.linalg.matrix_rank(chunks[0].view(16, 64)) == 3
    assert torch.linalg.matrix_rank(chunks[2].view(10, 16)) == 3
    assert noise.numbers_per_direction() == 3 * (16 + 64) + 16 + 3 * (10 + 16) + 10
    # a direction is a pure function of its seed; another seed gives another direction
    assert torch.equal(noise.direction(7, sizes), noise.direction(7, sizes))
    assert not torch.equal(noise.direction(7, sizes), noise.direction(8, sizes))
    # unit variance per entry, as full-rank directions: A·Bᵀ/√r
    big = LowRankNoise(4, [(400, 500)]).direction(1, [200_000])
    assert abs(float(big.std()) - 1.0) < 0.05


def test_rank_is_capped_by_the_matrix_and_a_vector_space_is_rejected():
    noise = LowRankNoise(8, [(2, 5)])
    assert noise.matrices == [(2, 5, 2)]
    with pytest.raises(ValueError, match="full parameter space"):
        list(noise.chunks(1, [3, 7], "cpu", torch.float32))
    with pytest.raises(ValueError, match="noise_rank"):
        make_noise("seed", rank=2, shapes=None)
    with pytest.raises(ValueError, match=">= 0"):
        make_noise("seed", rank=-1, shapes=[(2, 2)])


@pytest.mark.parametrize("base", [None, TableNoise(50_000, seed=1)])
def test_factors_dense_and_combine_agree_with_the_chunks(base):
    shapes = [(12, 9), (12,), (4, 12)]
    noise = LowRankNoise(2, shapes, base)
    sizes = [108, 12, 48]
    dirs = noise.factors(SEEDS)
    dense = noise.directions(SEEDS, sizes)
    torch.testing.assert_close(dirs.dense(), dense, rtol=0, atol=1e-6)
    weights = torch.tensor([0.5, -1.0, 0.25, 0.0, 2.0], dtype=torch.float64)
    torch.testing.assert_close(torch.cat(dirs.combine(weights)), weights.float() @ dense, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(dirs.take([1, 3]).dense(), dense[[1, 3]], rtol=0, atol=1e-6)
    params = [torch.ones(12, 9), torch.ones(12), torch.ones(4, 12)]
    dirs.add_to(params, weights)                      # in place, one addmm_ per matrix
    torch.testing.assert_close(torch.cat([p.reshape(-1) for p in params]), 1 + weights.float() @ dense,
                               rtol=1e-5, atol=1e-5)


# -- the candidate forward ----------------------------------------------------------------------
@pytest.mark.parametrize("hidden,activation,version", [([16], "relu", "v1t"), ([24, 8], "tanh", "v2t")])
def test_lowrank_candidate_forward_equals_explicitly_perturbed_weights(tmp_path, hidden, activation, version):
    trainer = digits_trainer(tmp_path, **{"task.hidden": hidden, "task.activation": activation, "ars.version": version,
                                          "ars.noise_rank": 3})
    task, space, noise = trainer.task, trainer.space, trainer.noise
    torch.nn.init.normal_(space.params[-1], std=0.5)     # a non-zero bias everywhere
    batch = task.batch(0)
    if task.normalizer is not None:                      # a non-trivial input normalisation
        task.normalizer.update(task.pop_state_stats())
    scale = 0.2
    dirs = noise.factors(SEEDS, space.device, space.dtype)
    out = shared_mlp_forward(task.model, space, dirs, scale, batch.x)
    theta = space.vector()
    dense = noise.directions(SEEDS, space.sizes)
    explicit = []
    for sign in (1.0, -1.0):
        for delta in dense:
            params = space.expand((theta + sign * scale * delta).unsqueeze(0))
            explicit.append(functional_call(task.model, {k: v[0] for k, v in params.items()}, (batch.x,)))
    torch.testing.assert_close(out, torch.stack(explicit), rtol=1e-4, atol=1e-5)
    # the task's scores agree too, and the candidates do differ from θ
    scores = task.score_directions(space, dirs, scale, batch)
    assert scores.shape == (2 * len(SEEDS),)
    assert scores.unique().numel() > 1


def test_models_without_a_factored_forward_fall_back_to_dense_candidates(tmp_path):
    trainer = digits_trainer(tmp_path, **{"task.model": "cnn", "ars.noise_rank": 2})
    task, space = trainer.task, trainer.space
    dirs = trainer.noise.factors(SEEDS)
    batch = task.batch(0)
    assert task.score_directions(space, dirs, 0.1, batch) is None
    rp, rm = trainer.backend.evaluate(space, task, trainer.noise, SEEDS, 0.1, batch)
    theta = space.vector()
    for k, delta in enumerate(dirs.dense()):
        space.load_(theta + 0.1 * delta)
        assert rp[k] == pytest.approx(task.score(batch), abs=1e-5)
    space.load_(theta)


def test_sequential_and_vectorized_take_the_same_lowrank_steps(tmp_path):
    runs = {}
    for backend in ("sequential", "vectorized"):
        trainer = digits_trainer(tmp_path / backend, **{"ars.backend": backend, "ars.iterations": 4})
        trainer.run()
        runs[backend] = trainer.space.vector()
    torch.testing.assert_close(runs["sequential"], runs["vectorized"], rtol=1e-4, atol=1e-5)


def test_lowrank_learns_digits(tmp_path):
    trainer = digits_trainer(tmp_path, **{"ars.iterations": 40, "task.hidden": [32], "ars.noise_rank": 4})
    before = trainer.task.evaluate()["accuracy"]
    assert trainer.run()["eval/accuracy"] > max(0.4, before + 0.3)


def test_a_compressed_space_with_noise_rank_is_a_clear_error(tmp_path):
    with pytest.raises((ValueError, ConfigError), match="noise_rank"):
        digits_trainer(tmp_path, **{"compress.prune": 0.5, "ars.noise_rank": 2})


# -- the automatic chunk --------------------------------------------------------------------------
def test_automatic_chunk_keeps_a_call_in_cache_and_changes_no_score(tmp_path, monkeypatch):
    trainer = digits_trainer(tmp_path, **{"ars.noise_rank": 0, "task.hidden": [64]})
    task, space, noise = trainer.task, trainer.space, trainer.noise
    batch = task.batch(0)
    per_candidate = task.candidate_bytes(batch)
    assert per_candidate >= 64 * 64 * 4            # at least the hidden layer's output
    monkeypatch.setattr("arsearch.backends.vectorized.CACHE_BYTES", 3 * per_candidate)
    auto, whole = VectorizedBackend(chunk=0), VectorizedBackend(chunk=10_000)
    assert auto.chunk_size(task, batch, 16) == 3
    a = auto.evaluate(space, task, noise, SEEDS, 0.05, batch)
    b = whole.evaluate(space, task, noise, SEEDS, 0.05, batch)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=1e-6, atol=1e-6)


# -- resume -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend,extra", [("sequential", {"ars.version": "v2t"}), ("vectorized", {}),
                                           ("vectorized", {"ars.noise_source": "table", "ars.table_size": 100_000}),
                                           ("distributed", {})])
def test_lowrank_resume_is_bit_exact(tmp_path, backend, extra):
    overrides = {"ars.backend": backend, "ars.iterations": 8, "checkpoint.every": 4, "ars.noise_rank": 2, **extra}
    full = Trainer(make_job("digits", tmp_path / "full", **overrides), progress=False)
    full_result = full.run()
    cfg = make_job("digits", tmp_path / "cut", **overrides)
    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg, callbacks=[StopAt(6)], progress=False).run()
    assert ckpt.latest(cfg.checkpoint.dir).name == "iter_0000004.pt"
    resumed = Trainer(cfg, progress=False)
    result = resumed.run(resume=True)
    assert torch.equal(resumed.space.vector(), full.space.vector())
    assert result["eval/accuracy"] == full_result["eval/accuracy"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _lowrank_rank(rank: int, world: int, port: int, root: str) -> None:
    """One rank of a 2-rank Gloo group: an uninterrupted run, then a run cut at 4 and resumed to 8."""
    from pathlib import Path

    import torch.distributed as dist

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
    root = Path(root)
    common = {"ars.backend": "distributed", "ars.noise_rank": 2, "ars.directions": 5, "ars.top": 3,
              "ars.version": "v2t"}
    full = Trainer(make_job("digits", root / "full", **common, **{"checkpoint.every": 1000, "ars.iterations": 8}),
                   progress=False)
    full.run()
    cut = {**common, "checkpoint.every": 4}
    Trainer(make_job("digits", root / "cut", **cut, **{"ars.iterations": 4}), progress=False).run()
    dist.barrier()                     # rank 0 has written the checkpoint every rank resumes from
    resumed = Trainer(make_job("digits", root / "cut", **cut, **{"ars.iterations": 8}), progress=False)
    resumed.run(resume=True)
    torch.save({"full": full.space.vector(), "resumed": resumed.space.vector()}, root / f"rank{rank}.pt")
    dist.barrier()
    dist.destroy_process_group()


@pytest.mark.multiprocess
def test_lowrank_resume_is_bit_exact_on_two_gloo_ranks(tmp_path):
    ctx = mp.get_context("spawn")
    port = _free_port()
    procs = [ctx.Process(target=_lowrank_rank, args=(r, 2, port, str(tmp_path))) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=240)
    assert [p.exitcode for p in procs] == [0, 0]
    results = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    for r in results:
        assert torch.equal(r["resumed"], r["full"])
    assert torch.equal(results[0]["full"], results[1]["full"])      # the ranks never drift apart


# -- the optimizer ------------------------------------------------------------------------------------
def _regression():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(128, 6, generator=gen)
    y = x @ torch.randn(6, 3, generator=gen)
    return x, y


def test_optimizer_perturbs_each_weight_matrix_with_rank_r_and_learns():
    x, y = _regression()
    torch.manual_seed(0)
    model = nn.Linear(6, 3)
    opt = ARS(model.parameters(), step_size=0.05, noise=0.05, directions=8, top=4, noise_rank=1)
    theta = model.weight.detach().clone()
    seen = []

    def closure():
        seen.append(model.weight.detach() - theta)
        return nn.functional.mse_loss(model(x), y)

    opt.step(closure)
    assert all(torch.linalg.matrix_rank(d, rtol=1e-3) == 1 for d in seen)   # up to float rounding
    start = float(nn.functional.mse_loss(model(x), y))
    for _ in range(60):
        opt.step(lambda: nn.functional.mse_loss(model(x), y))
    assert float(nn.functional.mse_loss(model(x), y)) < 0.5 * start


def test_optimizer_resume_from_its_state_dict_is_bit_exact():
    x, y = _regression()

    def fresh():
        torch.manual_seed(1)
        model = nn.Linear(6, 3)
        return model, ARS(model.parameters(), directions=4, top=2, noise_rank=2, seed=5)

    def loss(model):
        return lambda: nn.functional.mse_loss(model(x), y)

    a, opt_a = fresh()
    for _ in range(6):
        opt_a.step(loss(a))
    b, opt_b = fresh()
    for _ in range(3):
        opt_b.step(loss(b))
    state, weights = opt_b.state_dict(), {k: v.clone() for k, v in b.state_dict().items()}
    c, opt_c = fresh()
    c.load_state_dict(weights)
    opt_c.load_state_dict(state)
    for _ in range(3):
        opt_c.step(loss(c))
    for key, value in a.state_dict().items():
        assert torch.equal(c.state_dict()[key], value), key


def test_fullspace_knows_its_shapes():
    model = nn.Sequential(nn.Linear(4, 3), nn.Conv2d(2, 5, 3))
    assert FullSpace(model).shapes == [(3, 4), (3,), (5, 2, 3, 3), (5,)]


@pytest.mark.multiprocess
def test_lowrank_hogwild_with_one_worker_resumes_to_the_vectorized_run(tmp_path):
    # one hogwild worker is deterministic (it equals the vectorized run), so its resume can be exact
    common = {"ars.noise_rank": 2, "checkpoint.every": 4}
    single = Trainer(make_job("digits", tmp_path / "v", **common, **{"ars.iterations": 8}), progress=False)
    single.run()
    hog = {"ars.backend": "hogwild", "ars.workers": 1, **common}
    Trainer(make_job("digits", tmp_path / "h", **hog, **{"ars.iterations": 4}), progress=False).run()
    resumed = Trainer(make_job("digits", tmp_path / "h", **hog, **{"ars.iterations": 8}), progress=False)
    assert resumed.run(resume=True)["iterations"] == 8
    assert torch.equal(resumed.space.vector(), single.space.vector())


def test_lowrank_perturbation_in_place_equals_adding_the_dense_chunks():
    """`LowRankNoise.perturb_` (the sequential backend's perturbation and step: W += α/√r·A·Bᵀ by one
    `addmm_` per matrix) moves θ as adding the dense chunks does; a space that is not the model's
    tensors one for one takes the dense chunks."""
    from torch import nn

    from arsearch.noise import LowRankNoise
    from arsearch.spaces import FullSpace

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 9), nn.ReLU(), nn.Linear(9, 4))
    space = FullSpace(model)
    noise = LowRankNoise(3, space.shapes)
    theta = space.vector()
    noise.perturb_(1234, space, 0.7)
    fused = space.vector()
    space.load_(theta)
    with torch.no_grad():
        space.add_(noise.chunks(1234, space.sizes, space.device, space.dtype), 0.7)
    torch.testing.assert_close(fused, space.vector(), rtol=1e-6, atol=1e-6)
    assert not torch.allclose(fused, theta)

    class Flat:                       # a space over one flat tensor: no per-tensor `params` to write into
        def __init__(self, vector):
            self.v, self.sizes, self.device, self.dtype = vector, space.sizes, vector.device, vector.dtype

        def add_(self, chunks, alpha):
            self.v.add_(torch.cat([c.reshape(-1) for c in chunks]), alpha=alpha)

    flat = Flat(theta.clone())
    noise.perturb_(1234, flat, 0.7)
    torch.testing.assert_close(flat.v, fused, rtol=1e-6, atol=1e-6)
