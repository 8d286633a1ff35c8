"""The ARS update rule, checked against the paper's formula computed by hand."""

import pytest
import torch

from arsearch.ars import DivergenceError, update_weights
from arsearch.noise import SeedNoise, TableNoise, iteration_seeds


def test_v1t_keeps_top_b_and_scales_by_std_of_their_rewards():
    r_plus = torch.tensor([1.0, 5.0, 2.0, 0.0])
    r_minus = torch.tensor([3.0, 1.0, 2.5, 4.0])
    # max(r+, r-) = [3, 5, 2.5, 4] -> the top 2 are directions 1 and 3
    w = update_weights(r_plus, r_minus, step_size=0.1, top=2, version="v1t")
    used = torch.tensor([5.0, 0.0, 1.0, 4.0], dtype=torch.float64)
    sigma = used.std(unbiased=False)
    expected = torch.zeros(4, dtype=torch.float64)
    expected[1] = 0.1 / (2 * sigma) * (5.0 - 1.0)
    expected[3] = 0.1 / (2 * sigma) * (0.0 - 4.0)
    assert torch.allclose(w, expected)


def test_v1_and_v2_use_every_direction_whatever_top_says():
    r_plus = torch.tensor([1.0, 5.0, 2.0])
    r_minus = torch.tensor([3.0, 1.0, 2.5])
    for version in ("v1", "v2"):
        w = update_weights(r_plus, r_minus, 1.0, top=1, version=version)
        sigma = torch.cat([r_plus, r_minus]).double().std(unbiased=False)
        assert torch.allclose(w, (r_plus - r_minus).double() / (3 * sigma))


def test_equal_rewards_make_no_step():
    w = update_weights(torch.ones(4), torch.ones(4), 0.1, 2, "v1t")
    assert torch.count_nonzero(w) == 0


def test_nan_reward_raises_divergence():
    with pytest.raises(DivergenceError):
        update_weights(torch.tensor([1.0, float("nan")]), torch.zeros(2), 0.1, 1, "v1t")


def test_unknown_version_is_refused():
    with pytest.raises(ValueError, match="v3"):
        update_weights(torch.ones(2), torch.zeros(2), 0.1, 1, "v3")


def test_seeds_are_deterministic_and_distinct_across_streams_and_iterations():
    a = iteration_seeds(0, 5, 8)
    assert a == iteration_seeds(0, 5, 8)
    assert a != iteration_seeds(0, 6, 8)
    assert a != iteration_seeds(0, 5, 8, stream=1)
    assert len(set(a)) == 8


def test_direction_regenerates_identically_chunk_by_chunk():
    noise = SeedNoise()
    sizes = [7, 3, 11]
    full = noise.direction(1234, sizes)
    again = torch.cat(list(noise.chunks(1234, sizes, "cpu", torch.float32)))
    assert torch.equal(full, again)
    assert not torch.equal(full, noise.direction(1235, sizes))
    assert full.shape == (21,)


def test_table_noise_slices_are_views_of_one_table():
    noise = TableNoise(size=1000, seed=0)
    chunks = list(noise.chunks(42, [10, 5], "cpu", torch.float32))
    offset = 42 % (1000 - 15)
    assert torch.equal(torch.cat(chunks), noise.table[offset:offset + 15])
    with pytest.raises(ValueError, match="too small"):
        list(noise.chunks(1, [2000], "cpu", torch.float32))
