"""Compression: pruning, weight sharing, and the search spaces they open."""

import pytest
import torch
from torch.func import functional_call, vmap

from arsearch.compress import (
    CompressedSpace,
    compressed_form,
    decompress,
    form_bytes,
    magnitude_masks,
    pruning_schedule,
    share_weights,
)
from arsearch.config import ConfigError
from arsearch.examples import two_layer_net
from arsearch.noise import SeedNoise
from arsearch.trainer import Trainer
from tests.support import make_job


def model(seed=0):
    torch.manual_seed(seed)
    return two_layer_net(16, 4)   # body.0.weight (64,16), body.0.bias, head.weight (4,64), head.bias


def snapshot(m):
    return {k: v.detach().clone() for k, v in m.named_parameters()}


def perturb(space, seed=1, alpha=0.5):
    space.add_(SeedNoise().chunks(seed, space.sizes, space.device, space.dtype), alpha)


def assert_tied(space):
    for name, cb in space.codebooks.items():
        p = space.params[name]
        expected = cb[space.indices[name]]
        if name in space.masks:
            expected = torch.where(space.masks[name], expected, torch.zeros(()))
        assert torch.equal(p, expected), name
        assert p.unique().numel() <= cb.numel() + 1


def assert_pruned_zero(space):
    for name, mask in space.masks.items():
        assert (space.params[name][~mask] == 0).all(), name


def test_magnitude_masks_global_and_layer():
    w = {"a": torch.arange(1., 11.).view(2, 5), "b": -torch.arange(11., 21.).view(2, 5)}
    g = magnitude_masks(w, 0.5, "global")
    assert g["a"].sum() == 0 and g["b"].all()          # the 10 smallest |w| are all in "a"
    layer = magnitude_masks(w, 0.3, "layer")
    assert [int(m.sum()) for m in layer.values()] == [7, 7]
    assert not layer["a"].view(-1)[:3].any() and layer["a"].view(-1)[3:].all()
    # gradual: a mask only shrinks, and the fraction counts all weights
    again = magnitude_masks({"a": torch.ones(2, 5) * 100, "b": w["b"]}, 0.6, "global", masks=g)
    assert not again["a"].any() and int(again["b"].sum()) == 8


def test_share_weights_linear_init_and_codebook_size():
    torch.manual_seed(0)
    w = torch.randn(50, 20)
    mask = w.abs() > 0.5
    cb, idx = share_weights(w, mask, 3)
    assert cb.numel() == 8 and idx.shape == w.shape
    shared = cb[idx][mask]
    assert (shared - w[mask]).abs().max() < (w[mask].max() - w[mask].min()) / 8
    # k-means converged: every weight points at its nearest centroid
    nearest = (w[mask].unsqueeze(1) - cb.unsqueeze(0)).abs().argmin(1)
    assert torch.equal(idx[mask], nearest)
    assert (idx[~mask] == 0).all()
    # ... and every centroid is the mean of its members (the linear initialisation alone is not)
    live = w[mask].double()
    for j in range(cb.numel()):
        members = live[idx[mask] == j]
        assert members.numel() > 0
        assert float(cb[j]) == pytest.approx(float(members.mean()), abs=1e-6)
    # the same fixed point as an independent 1-D Lloyd from the same linear start
    assert torch.allclose(cb.double(), lloyd_1d(live, cb.numel()), atol=1e-6)


def lloyd_1d(values, k, iterations=1000):
    """Plain Lloyd iterations on a line, from k centroids spaced evenly between min and max."""
    import numpy as np

    x = values.numpy()
    c = np.linspace(x.min(), x.max(), k)
    for _ in range(iterations):
        label = np.abs(x[:, None] - c[None, :]).argmin(1)
        new = np.array([x[label == j].mean() if (label == j).any() else c[j] for j in range(k)])
        if np.array_equal(new, c):
            break
        c = new
    return torch.as_tensor(c)


def test_pruning_schedule_is_cubic_and_reaches_target():
    assert pruning_schedule(0, 0.9, 10) == 0.0
    assert pruning_schedule(10, 0.9, 10) == pytest.approx(0.9)
    assert pruning_schedule(5, 0.9, 10) == pytest.approx(0.9 * (1 - 0.5 ** 3))


def test_unpruned_space_perturbs_only_surviving_weights():
    m = model()
    space = CompressedSpace(m, "unpruned", pending=True)
    space.compress_(0.7)
    space.pending = False
    space._rebuild()
    before = snapshot(m)
    assert space.dim == sum(int(k.sum()) for k in space.masks.values())
    assert space.dim == round(0.3 * (64 * 16 + 4 * 64))
    perturb(space)
    after = snapshot(m)
    for name in ("body.0.bias", "head.bias"):
        assert torch.equal(before[name], after[name])
    for name, mask in space.masks.items():
        assert (after[name][mask] != before[name][mask]).all()
    assert_pruned_zero(space)


def test_centroid_space_perturbs_only_codebooks_and_keeps_ties():
    m = model()
    space = CompressedSpace(m, "centroids", pending=True)
    space.compress_(0.5, bits=2)
    space.pending = False
    space._rebuild()
    assert space.dim == 8   # 2 weight tensors x 4 centroids
    before = snapshot(m)
    for s in range(3):
        perturb(space, seed=s)
    after = snapshot(m)
    assert torch.equal(before["body.0.bias"], after["body.0.bias"]) and torch.equal(before["head.bias"], after["head.bias"])
    assert not torch.equal(before["head.weight"], after["head.weight"])
    assert_tied(space)
    assert_pruned_zero(space)


def test_all_space_with_sharing_includes_biases_and_keeps_constraints():
    m = model()
    space = CompressedSpace(m, "all", pending=True)
    space.compress_(0.5, bits=3)
    space.pending = False
    space._rebuild()
    assert space.dim == 8 + 8 + 64 + 4
    before = snapshot(m)
    perturb(space)
    after = snapshot(m)
    assert all(not torch.equal(before[k], after[k]) for k in before)
    assert_tied(space)
    assert_pruned_zero(space)


def test_layer_list_space_perturbs_only_those_layers():
    m = model()
    space = CompressedSpace(m, ["head"], pending=True)
    space.compress_(0.5)
    space.pending = False
    space._rebuild()
    assert space.names == ["head.weight", "head.bias"]
    before = snapshot(m)
    perturb(space)
    after = snapshot(m)
    assert torch.equal(before["body.0.weight"], after["body.0.weight"])
    assert torch.equal(before["body.0.bias"], after["body.0.bias"])
    assert not torch.equal(before["head.bias"], after["head.bias"])
    assert_pruned_zero(space)


@pytest.mark.parametrize("search", ["all", "centroids", ["body.0"]])
def test_expand_matches_load(search):
    """The vectorized path (expand + functional_call under vmap) sees the same model as load_."""
    m = model()
    space = CompressedSpace(m, search, pending=True)
    space.compress_(0.6, bits=2)
    space.pending = False
    space._rebuild()
    x = torch.randn(5, 16)
    thetas = space.vector() + 0.1 * torch.randn(3, space.dim)
    batched = vmap(lambda p: functional_call(m, p, (x,)))(space.expand(thetas))
    for i in range(3):
        space.load_(thetas[i])
        assert torch.allclose(m(x), batched[i], atol=1e-6)
        assert torch.equal(space.vector(), thetas[i])
        assert_tied(space)
        assert_pruned_zero(space)


def test_bad_search_requests_are_config_errors():
    m = model()
    with pytest.raises(ConfigError, match="needs weight sharing"):
        space = CompressedSpace(m, "centroids", pending=True)
        space.compress_(0.5)
        space.pending = False
        space._rebuild()
    space = CompressedSpace(model(), "unpruned", pending=True)
    with pytest.raises(ConfigError, match="untie"):
        space.compress_(0.5, bits=2)
    with pytest.raises(ConfigError, match="layer 'tail'"):
        CompressedSpace(model(), ["tail"])
    with pytest.raises(ConfigError, match="allowed"):
        CompressedSpace(model(), "weights")


def test_compressed_form_round_trips_bit_exact():
    m = model()
    space = CompressedSpace(m, "all", pending=True)
    space.compress_(0.8, bits=4)
    state = m.state_dict()
    form = compressed_form(space, state)
    assert form["indices"]["head.weight"].dtype == torch.uint8
    assert form["indices"]["head.weight"].numel() == int(space.masks["head.weight"].sum())   # survivors only
    assert form["masks"]["head.weight"].numel() == 4 * 64 // 8                              # one bit each
    assert form_bytes(form) < form_bytes(state) / 5
    back = decompress(form)
    assert set(back) == set(state)
    assert all(torch.equal(back[k], state[k]) for k in state)


# the digits job, a little wider and shorter, that the [compress] training tests run
SMALL = {"task.hidden": [32], "ars.directions": 4, "ars.top": 2, "ars.iterations": 12, "ars.step_size": 0.02,
         "eval.every": 6, "checkpoint.every": 6}


@pytest.mark.parametrize("backend,share_bits", [
    ("sequential", 3), ("vectorized", 3), ("distributed", 3),
    pytest.param("hogwild", 0, marks=pytest.mark.multiprocess),
    pytest.param("hogwild", 3, marks=pytest.mark.multiprocess),
])
def test_training_job_keeps_pruned_zero_and_shared_tied(tmp_path, backend, share_bits):
    # hogwild: two workers write the shared θ without a lock; distributed: a world of one in this process
    compress = {"prune": 0.8, "share_bits": share_bits, "search": "all"}
    trainer = Trainer(make_job("digits", tmp_path / "run", **{**SMALL, "ars.backend": backend, "ars.workers": 2,
                                                              "compress": compress}), progress=False)
    start = trainer.space.vector().clone()
    if share_bits:    # two codebooks of 2^3 centroids, and the biases
        assert trainer.space.dim == 2 * 8 + 32 + 10
        assert set(trainer.space.codebooks) == {"1.weight", "3.weight"}
    trainer.run()
    assert not torch.equal(trainer.space.vector(), start)      # it trained
    assert_tied(trainer.space)
    assert_pruned_zero(trainer.space)
    # and what was checkpointed is the same: the model's zeros and ties, the space's codebooks
    saved = torch.load(tmp_path / "run" / "final.pt", weights_only=True)
    for name, value in trainer.model.state_dict().items():
        assert torch.equal(saved["model"][name], value), name
    assert trainer.space.summary()["compress/pruned"] == pytest.approx(0.8, abs=1e-3)


def test_gradual_pruning_shrinks_the_space_and_resumes_exactly(tmp_path):
    compress = dict(prune=0.8, prune_schedule="gradual", prune_iterations=8, prune_every=2, search="unpruned")
    straight = Trainer(make_job("digits", tmp_path / "run", **{**SMALL, "ars.backend": "sequential", "compress": compress}),
                       progress=False)
    full = straight.space.dim
    straight.run()
    dims = [row["compress/search_dim"] for row in straight.history if "compress/search_dim" in row]
    assert [row["iteration"] for row in straight.history if "compress/search_dim" in row] == [2, 4, 6, 8]
    assert dims == sorted(dims, reverse=True) and dims[0] < full
    assert straight.space.summary()["compress/pruned"] == pytest.approx(0.8, abs=1e-3)
    assert_pruned_zero(straight.space)

    resumed = tmp_path / "resumed"
    first = Trainer(make_job("digits", resumed, **{**SMALL, "ars.backend": "sequential", "ars.iterations": 6,
                                                   "compress": compress}), progress=False)
    first.run()
    second = Trainer(make_job("digits", resumed, **{**SMALL, "ars.backend": "sequential", "compress": compress}),
                     progress=False)
    second.run(resume=True)
    assert second.space.dim == straight.space.dim
    for (k, a), b in zip(straight.model.state_dict().items(), second.model.state_dict().values()):
        assert torch.equal(a, b), k


@pytest.mark.parametrize("compress, match", [({"prune": 0.5, "share_bits": 2, "search": "unpruned"}, "untie"),
                                             ({"prune": 0.5, "search": "centroids"}, "share_bits"),
                                             ({"search": "unpruned"}, "compress.prune")])
def test_inconsistent_compress_tables_fail_before_work(tmp_path, compress, match):
    with pytest.raises(ConfigError, match=match):
        Trainer(make_job("digits", tmp_path / "run", **{**SMALL, "compress": compress}), progress=False)


def test_gradual_needs_iterations(tmp_path):
    with pytest.raises(ConfigError, match="prune_iterations"):
        Trainer(make_job("digits", tmp_path / "run", **{**SMALL, "compress": {"prune": 0.5, "prune_schedule": "gradual"}}),
                progress=False)


class WatchingNoise(SeedNoise):
    """Seed noise that checks each direction chunk is freed before the next one is drawn."""

    def __init__(self):
        self.alive_max = 0
        self.refs = []

    def chunks(self, seed, sizes, device, dtype):
        import weakref

        for chunk in super().chunks(seed, sizes, device, dtype):
            self.refs = [r for r in self.refs if r() is not None]
            self.alive_max = max(self.alive_max, len(self.refs) + 1)
            self.refs.append(weakref.ref(chunk))
            yield chunk
            del chunk


@pytest.mark.parametrize("compressed", [False, True])
def test_sequential_backend_holds_one_direction_chunk_at_a_time(compressed):
    """Memory-light: a direction is regenerated per tensor and never held whole (MeZO-style)."""
    from arsearch.backends.sequential import SequentialBackend
    from arsearch.spaces import FullSpace
    from arsearch.tasks.supervised import SupervisedTask

    m = two_layer_net(16, 4)
    x, y = torch.randn(40, 16), torch.randint(0, 4, (40,))
    task = SupervisedTask(m, x, y, classification=True, batch_size=8)
    if compressed:
        space = CompressedSpace(m, "all", pending=True)
        space.compress_(0.5, bits=2)
    else:
        space = FullSpace(m)
    noise = WatchingNoise()
    backend = SequentialBackend()
    before = space.vector().clone()
    r_plus, r_minus = backend.evaluate(space, task, noise, [1, 2, 3], 0.1, task.batch(0))
    assert noise.alive_max == 1
    assert torch.allclose(space.vector(), before, atol=1e-6)    # perturb, score, restore
    assert not torch.equal(r_plus, r_minus)
    backend.apply(space, noise, [1, 2, 3], torch.tensor([0.1, -0.2, 0.3]))
    assert noise.alive_max == 1


def test_conv_kernels_are_compressed_and_expanded_too():
    from arsearch.models import build_model

    torch.manual_seed(0)
    m = build_model("cnn", input_shape=(64,), output_dim=10, channels=(4, 8))
    space = CompressedSpace(m, "all", scope="layer", pending=True)
    space.compress_(0.5, bits=3)
    assert set(space.codebooks) == {"net.0.weight", "net.2.weight", "net.6.weight"}
    for mask in space.masks.values():
        assert int(mask.sum()) == mask.numel() - round(0.5 * mask.numel())   # per layer
    x = torch.randn(3, 64)
    thetas = space.vector() + 0.05 * torch.randn(2, space.dim)
    batched = vmap(lambda p: functional_call(m, p, (x,)))(space.expand(thetas))
    space.load_(thetas[1])
    assert torch.allclose(m(x), batched[1], atol=1e-5)
    assert_tied(space)
    assert_pruned_zero(space)
