"""Noise hygiene: the random numbers behind different layers, candidates and iterations are independent.

The ES-at-scale code drew every layer's noise from the same seed (es-at-scale #46), so the
first numbers of each layer's direction were the same numbers: correlated noise across layers,
which no accuracy test notices. Here the drawn tensors themselves are tested, for every noise
source (seed, table) and rank (full, and low rank's factors A, B and full-rank vectors):

- between the tensors (layers) of one direction,
- between the directions (candidates) of one iteration, in each learner's stream,
- between iterations, and between the streams of a population's learners,

each pair by Pearson's r on aligned entries (a shorter tensor against the same-length start of the
longer one, which is exactly where a reused seed repeats itself), with scipy's exact p-value under
independence. The family must pass Bonferroni (no pair below α/M) and Fisher's combined test (no
excess of small correlations). Aligned correlation is what matters for ARS: the step and the
candidates' scores see directions only through inner products of aligned entries. (Table noise
shares numbers between two directions whose offsets are within d, shifted, as in the original
ARS; shifted copies are not aligned, so they are not correlated in that sense.)

The check has power: the same function flags a seed reused across layers, across candidates,
across iterations and across low-rank factors (the deliberately broken variants at the end).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy import stats

from arsearch.noise import LowRankNoise, SeedNoise, TableNoise, iteration_seeds, make_noise

# an MLP-like space: weight matrices of different shapes, with biases
SHAPES = [(48, 40), (48,), (32, 48), (32,), (10, 32), (10,)]
SIZES = [int(np.prod(s)) for s in SHAPES]
N, ITERATIONS, STREAMS, SEED = 8, 3, 2, 2024
ALPHA = 1e-3          # family-wise: a correct generator fails with probability about this


def make(source: str, rank: int, base=None):
    if base is not None:
        return LowRankNoise(rank, SHAPES, base)
    return make_noise(source, table_size=200_000, rank=rank, shapes=SHAPES)


def drawn(noise, seeds) -> list[list[np.ndarray]]:
    """Per direction, the tensors the noise drew: full rank one per parameter tensor (the columns of
    the (N, d) matrix the vectorized backend scores), low rank A and B per matrix and each vector."""
    dirs = noise.parts(seeds, SIZES, SHAPES)
    out = [[] for _ in seeds]
    for part in dirs.parts:
        pieces = [part[0], part[1]] if isinstance(part, tuple) else [part]
        for piece in pieces:
            for k, row in enumerate(piece.reshape(len(seeds), -1)):
                out[k].append(row.double().numpy())
    return out


def correlation_pvalues(pairs) -> list[tuple[str, float]]:
    """(label, two-sided p of Pearson's r under independence) for each (label, x, y), aligned prefix.

    The p-value is scipy's `pearsonr` one for normal data, t = r·√((n−2)/(1−r²)) ~ t(n−2), computed
    for all pairs at once."""
    labels, r, n = [], [], []
    for label, x, y in pairs:
        m = min(len(x), len(y))
        if m < 8:
            continue
        x, y = x[:m] - x[:m].mean(), y[:m] - y[:m].mean()
        labels.append(label)
        r.append(float(x @ y / np.sqrt((x @ x) * (y @ y))))
        n.append(m)
    r, n = np.clip(np.array(r), -1 + 1e-15, 1 - 1e-15), np.array(n)
    t = np.abs(r) * np.sqrt((n - 2) / (1 - r * r))
    pvalues = np.maximum(2 * stats.t.sf(t, n - 2), 1e-300)
    return list(zip(labels, pvalues.tolist()))


def hygiene_violations(noise, seeds_of=iteration_seeds) -> list[str]:
    """What is not independent in `noise`'s draws (empty when nothing is), and the marginal check."""
    # tensors[stream][iteration][direction][tensor]
    tensors = [[drawn(noise, seeds_of(SEED, t, N, stream=s)) for t in range(ITERATIONS)] for s in range(STREAMS)]
    families = {"layers": [], "candidates": [], "iterations": [], "streams": []}
    for s, t in itertools.product(range(STREAMS), range(ITERATIONS)):
        for k, direction in enumerate(tensors[s][t]):
            for i, j in itertools.combinations(range(len(direction)), 2):
                families["layers"].append((f"stream {s} it {t} dir {k}: tensor {i} vs {j}", direction[i], direction[j]))
        for k, k2 in itertools.combinations(range(N), 2):
            for i, (a, b) in enumerate(zip(tensors[s][t][k], tensors[s][t][k2])):
                families["candidates"].append((f"stream {s} it {t}: dir {k} vs {k2}, tensor {i}", a, b))
    for s, (t, t2) in itertools.product(range(STREAMS), itertools.combinations(range(ITERATIONS), 2)):
        for k, k2 in itertools.product(range(N), repeat=2):      # any direction of one against any of the other
            for i, (a, b) in enumerate(zip(tensors[s][t][k], tensors[s][t2][k2])):
                families["iterations"].append((f"stream {s}: it {t} dir {k} vs it {t2} dir {k2}, tensor {i}", a, b))
    for t, k in itertools.product(range(ITERATIONS), range(N)):
        for i, (a, b) in enumerate(zip(tensors[0][t][k], tensors[1][t][k])):
            families["streams"].append((f"it {t} dir {k}: stream 0 vs 1, tensor {i}", a, b))

    problems = []
    for name, pairs in families.items():
        pvalues = correlation_pvalues(pairs)
        assert len(pvalues) > 20, f"{name}: too few pairs to test"
        label, smallest = min(pvalues, key=lambda item: item[1])
        if smallest < ALPHA / len(pvalues):          # Bonferroni over the family
            problems.append(f"{name}: {label} correlated (p = {smallest:.2g}, {len(pvalues)} pairs)")
        combined = stats.combine_pvalues([p for _, p in pvalues], method="fisher").pvalue
        if combined < ALPHA:                         # many small correlations, none alone significant
            problems.append(f"{name}: excess correlation over {len(pvalues)} pairs (Fisher p = {combined:.2g})")
    pooled = np.concatenate([x for stream in tensors for it in stream for d in it for x in d])
    ks = stats.kstest(pooled, "norm").pvalue
    if ks < ALPHA:
        problems.append(f"marginal: the {len(pooled)} drawn numbers are not N(0, 1) (KS p = {ks:.2g})")
    return problems


@pytest.mark.parametrize("rank", [0, 1, 4])
@pytest.mark.parametrize("source", ["seed", "table"])
def test_drawn_noise_is_independent_across_layers_candidates_iterations_and_streams(source, rank):
    assert hygiene_violations(make(source, rank)) == []


@pytest.mark.parametrize("rank", [0, 1, 4])
@pytest.mark.parametrize("source", ["seed", "table"])
def test_every_path_draws_the_tested_numbers(source, rank):
    # the sequential backend and the optimizer read `chunks`, the vectorized backend `parts`: the same δ
    noise = make(source, rank)
    seeds = iteration_seeds(SEED, 0, N)
    dense = noise.parts(seeds, SIZES, SHAPES).dense()
    for k, seed in enumerate(seeds):
        torch.testing.assert_close(torch.cat(list(noise.chunks(seed, SIZES, "cpu", torch.float32))), dense[k],
                                   rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(noise.directions(seeds, SIZES), dense, rtol=1e-6, atol=1e-6)


# -- the check has power: deliberately broken generators fail it ----------------------------------------

class SeedPerLayer(SeedNoise):
    """es-at-scale #46: every parameter tensor's noise drawn from a generator seeded with the same seed."""

    def fill(self, seed, out):
        for part in out:
            torch.randn(part.shape, generator=torch.Generator().manual_seed(int(seed)), out=part)


class SeedPerFactor(SeedNoise):
    """The same bug in low rank: every factor (A, B of each matrix, each vector) restarts the seed."""

    def __init__(self, factor_sizes):
        self.factor_sizes = factor_sizes

    def fill(self, seed, out):
        (row,) = out
        for part in torch.split(row, self.factor_sizes):
            torch.randn(part.shape, generator=torch.Generator().manual_seed(int(seed)), out=part)


def test_the_check_flags_a_seed_reused_across_layers():
    problems = hygiene_violations(SeedPerLayer())
    assert any(p.startswith("layers:") for p in problems), problems


def test_the_check_flags_a_seed_reused_across_lowrank_factors():
    broken = LowRankNoise(2, SHAPES, SeedPerFactor(LowRankNoise(2, SHAPES).factor_sizes))
    problems = hygiene_violations(broken)
    assert any(p.startswith("layers:") for p in problems), problems


def test_the_check_flags_seeds_reused_across_candidates_iterations_or_streams():
    def same_for_every_direction(seed, iteration, count, stream=0):
        return iteration_seeds(seed, iteration, 1, stream) * count

    def ignores_the_iteration(seed, iteration, count, stream=0):
        return iteration_seeds(seed, 0, count, stream)

    def ignores_the_stream(seed, iteration, count, stream=0):
        return iteration_seeds(seed, iteration, count, 0)

    def off_by_one(seed, iteration, count, stream=0):
        # a subtler bug: iteration t's directions 1.. are iteration t+1's directions 0..
        return [int(s) for s in np.random.SeedSequence([seed, stream]).generate_state(count + ITERATIONS)[
            iteration:iteration + count]]

    for seeds_of, family in [(same_for_every_direction, "candidates"), (ignores_the_iteration, "iterations"),
                             (ignores_the_stream, "streams"), (off_by_one, "iterations")]:
        for source in ("seed", "table"):
            problems = hygiene_violations(make(source, 0), seeds_of)
            assert any(p.startswith(f"{family}:") for p in problems), (seeds_of.__name__, source, problems)


def test_the_check_flags_a_small_correlation_that_no_single_pair_shows():
    class Leaky(SeedNoise):
        """Each tensor mixes in 15% of the first tensor's numbers: r ≈ 0.15, far below one pair's noise."""

        def fill(self, seed, out):
            super().fill(seed, out)
            first = out[0]
            for part in out[1:]:
                n = min(part.numel(), first.numel())
                part.view(-1)[:n].mul_(0.989).add_(first.view(-1)[:n], alpha=0.15)

    problems = hygiene_violations(Leaky())
    assert any(p.startswith("layers:") for p in problems), problems


def test_table_noise_is_drawn_from_its_table_at_the_seeds_offsets():
    # the table's own contract (the reference implementation relies on it), read through `parts`
    noise = TableNoise(50_000, seed=3)
    seeds = iteration_seeds(SEED, 1, N)
    dense = noise.parts(seeds, SIZES).dense()
    d = sum(SIZES)
    for k, seed in enumerate(seeds):
        offset = seed % (50_000 - d)
        torch.testing.assert_close(dense[k], noise.table[offset:offset + d])
