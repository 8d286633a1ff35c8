"""The vectorized backend's candidate forwards compute what the formed candidates θ ± ν·δ_k compute.

`shared_mlp_forward` never forms the 2N parameter vectors (the first layer's x·Wᵀ is shared, each ±
pair shares x·δᵀ, later layers read per-layer perturbed weights, narrow layers run as W·hᵀ), and
`ScratchModel` scores one candidate as a plain call of a private copy of the model; both are checked
here against `functional_call` on the formed candidates, for full-rank and low-rank directions, in
groups of any size, with V2 normalisation and with the model changing between calls.
"""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call

from arsearch.noise import iteration_seeds, make_noise
from arsearch.tasks.supervised import ScratchModel, shared_mlp_forward
from arsearch.trainer import Trainer
from tests.support import make_job


def explicit(model, space, dense, scale, x):
    theta, outs = space.vector(), []
    for sign in (1.0, -1.0):
        for delta in dense:
            params = space.expand((theta + sign * scale * delta).unsqueeze(0))
            outs.append(functional_call(model, {k: v[0] for k, v in params.items()}, (x,)))
    return torch.stack(outs)


@pytest.mark.parametrize("rank", [0, 2])
@pytest.mark.parametrize("activation,version", [("relu", "v1t"), ("tanh", "v2t")])
def test_shared_forward_equals_the_formed_candidates_in_groups_of_any_size(tmp_path, rank, activation, version):
    # hidden layers wide and narrow (12 < batch rows: the W·hᵀ orientation), V2's normaliser in front
    cfg = make_job("digits", tmp_path / "run", **{"task.hidden": [40, 12], "task.activation": activation,
                                                  "ars.version": version, "ars.noise_rank": rank,
                                                  "task.batch_size": 24})
    trainer = Trainer(cfg, progress=False)
    task, space = trainer.task, trainer.space
    if task.normalizer is not None:        # a normaliser that does something
        stats = task.normalizer.new_stats()
        stats.add(task.x_train[:100])
        task.normalizer.update(stats)
    batch = task.batch(0)
    noise = make_noise("seed", rank=rank, shapes=space.shapes)
    seeds = iteration_seeds(1, 2, 5)
    dirs = noise.parts(seeds, space.sizes, space.shapes)
    want = explicit(task.model, space, dirs.dense(), 0.05, batch.x)
    for pairs in (0, 1, 2, 5):
        got = shared_mlp_forward(task.model, space, dirs, 0.05, batch.x, pairs)
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5, msg=f"groups of {pairs} pairs")
    # the backend's scores are those of the candidates, + then −
    rp, rm = trainer.backend.evaluate(space, task, noise, seeds, 0.05, batch)
    losses = task.per_example_loss(want, batch.y).mean(-1)
    torch.testing.assert_close(torch.cat([rp, rm]).float(), -losses, rtol=1e-5, atol=1e-5)


def test_shared_forward_declines_what_it_cannot_compute(tmp_path):
    cnn = Trainer(make_job("digits", tmp_path / "cnn", **{"task.model": "cnn"}), progress=False)
    dirs = cnn.noise.parts(iteration_seeds(0, 0, 3), cnn.space.sizes, cnn.space.shapes)
    assert shared_mlp_forward(cnn.task.model, cnn.space, dirs, 0.1, cnn.task.batch(0).x) is None


def test_scratch_model_scores_a_candidate_as_functional_call_and_follows_the_model(tmp_path):
    trainer = Trainer(make_job("digits", tmp_path / "run", **{"task.model": "cnn", "ars.version": "v2t"}),
                      progress=False)
    model, space, x = trainer.task.model, trainer.space, trainer.task.batch(0).x
    scratch = ScratchModel(model)
    theta = space.vector()
    for step in range(3):
        candidate = theta + 0.1 * torch.randn_like(theta)
        params = space.expand(candidate.unsqueeze(0))
        partial = {k: v for i, (k, v) in enumerate(params.items()) if i % 2 == 0}   # some tensors only
        want = functional_call(model, {k: v[0] for k, v in partial.items()}, (x,))
        torch.testing.assert_close(scratch(partial, x), want, msg=f"call {step}")
        with torch.no_grad():                    # the model moves on: its tensors and V2 buffers change
            for p in model.parameters():
                p.add_(0.01)
            for b in model.buffers():
                if b.is_floating_point():
                    b.add_(0.5)
    # a buffer registered anew (hogwild's workers give V2's statistics private clones) is followed too
    norm = trainer.task.normalizer
    norm.register_buffer("mean", norm.mean.clone() + 3.0)
    params = space.expand(theta.unsqueeze(0))
    torch.testing.assert_close(scratch(params, x), functional_call(model, {k: v[0] for k, v in params.items()}, (x,)))
    before = [p.clone() for p in model.parameters()]
    scratch(space.expand((theta + 1.0).unsqueeze(0)), x)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters())), "the model itself was written"
