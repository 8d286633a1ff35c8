"""Perturbation directions, regenerated from integer seeds.

A direction is never stored: it is a pure function of an integer seed and the chunk sizes of
the parameter space, so a sequential step needs no noise buffer, and workers exchange seeds and
scores, never tensors. Directions are drawn chunk by chunk (one chunk per parameter tensor) so
that the memory-light path never materialises a full d-vector.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch


def iteration_seeds(seed: int, iteration: int, count: int, stream: int = 0) -> list[int]:
    """The `count` direction seeds of one iteration; independent across (seed, stream, iteration)."""
    state = np.random.SeedSequence([int(seed), int(stream), int(iteration)]).generate_state(count)
    return [int(s) for s in state]


class SeedNoise:
    """δ ~ N(0, I), drawn from a `torch.Generator` seeded with the direction's seed."""

    name = "seed"

    def chunks(self, seed: int, sizes: Sequence[int], device, dtype) -> Iterator[torch.Tensor]:
        gen = torch.Generator(device=device)
        gen.manual_seed(int(seed))
        for n in sizes:
            yield torch.randn(n, generator=gen, device=device, dtype=dtype)

    def fill(self, seed: int, out: Sequence[torch.Tensor]) -> None:
        """Write the direction of `seed` into `out`, one contiguous tensor per chunk (the same numbers
        `chunks` yields: `randn(out=)` draws exactly what `randn(n)` draws, without a temporary)."""
        gen = torch.Generator(device=out[0].device)
        gen.manual_seed(int(seed))
        for part in out:
            torch.randn(part.shape, generator=gen, out=part)

    def direction(self, seed: int, sizes: Sequence[int], device="cpu", dtype=torch.float32) -> torch.Tensor:
        return self.directions([seed], sizes, device, dtype)[0]

    @torch.no_grad()
    def perturb_(self, seed: int, space, alpha: float) -> None:
        """θ += alpha·δ(seed) in the parameter space `space`, chunk by chunk (the sequential backend)."""
        space.add_(self.chunks(seed, space.sizes, space.device, space.dtype), alpha)

    def directions(self, seeds: Sequence[int], sizes: Sequence[int], device="cpu", dtype=torch.float32):
        """The (N, d) matrix of the directions of `seeds`, each row drawn in place (no stack, no cat)."""
        out = torch.empty(len(seeds), int(sum(sizes)), device=device, dtype=dtype)
        for row, seed in zip(out, seeds):
            self.fill(seed, torch.split(row, list(sizes)))
        return out

    def parts(self, seeds: Sequence[int], sizes: Sequence[int], shapes=None, device="cpu",
              dtype=torch.float32) -> Directions:
        """N directions as `Directions`: one (N, d) matrix, each chunk a column block of it (a view)."""
        return Directions.from_matrix(self.directions(seeds, sizes, device, dtype), sizes, shapes)


class TableNoise(SeedNoise):
    """A shared table of Gaussian numbers; a direction is a slice at a seed-derived offset.

    This is the original ARS implementation's trick: slicing costs nothing, so directions of
    a small model come much cheaper than drawing them. The table must be larger than d.
    """

    name = "table"

    def __init__(self, size: int = 10_000_000, seed: int = 12345):
        gen = torch.Generator().manual_seed(seed)
        self.table = torch.randn(int(size), generator=gen)
        self._on_device: dict = {}

    def _table(self, device, dtype) -> torch.Tensor:
        key = (str(device), dtype)
        if key not in self._on_device:
            self._on_device[key] = self.table.to(device=device, dtype=dtype)
        return self._on_device[key]

    def chunks(self, seed, sizes, device, dtype):
        total = int(sum(sizes))
        if total >= self.table.numel():
            raise ValueError(f"noise table of {self.table.numel()} numbers is too small for d={total}; "
                             "raise ars.table_size or use ars.noise_source = \"seed\"")
        table = self._table(device, dtype)
        offset = int(seed) % (table.numel() - total)
        for n in sizes:
            yield table[offset:offset + n]
            offset += n

    def fill(self, seed, out):
        for part, chunk in zip(out, self.chunks(seed, [p.numel() for p in out], out[0].device, out[0].dtype)):
            part.copy_(chunk.view_as(part))


class LowRankNoise(SeedNoise):
    """Low-rank directions (EGGROLL, arXiv 2511.16652): δ = A·Bᵀ/√r for every weight matrix.

    A parameter tensor of shape (m, n, ...) is treated as an m×n' matrix (n' = n·...); its part
    of a direction is A·Bᵀ/√r with A (m×r) and B (n'×r) drawn by `base` from the direction's
    seed, r = min(rank, m, n') (a larger r adds no rank). Vectors (biases) stay full rank. A
    direction therefore costs r·(m+n') numbers per matrix instead of m·n', and every entry of
    δ still has unit variance.

    `chunks` and `directions` return the dense δ, so every backend and the `ARS` optimizer work
    unchanged (sequential: one dense matrix alive at a time); `factors` returns the factors of N
    directions at once, which the vectorized backend uses for the shared-GEMM candidate forward
    (``x·Wᵀ ± ν·(x·B)·Aᵀ/√r``) and the one-product step Σ_k w_k·A_k·B_kᵀ/√r.
    """

    name = "lowrank"

    def __init__(self, rank: int, shapes: Sequence[Sequence[int]], base: SeedNoise | None = None):
        if int(rank) < 1:
            raise ValueError(f"noise rank must be >= 1 (0 means full rank: use SeedNoise), got {rank}")
        self.rank = int(rank)
        self.base = base if base is not None else SeedNoise()
        self.shapes = [tuple(int(n) for n in s) for s in shapes]
        self.sizes = [int(np.prod(s)) if s else 1 for s in self.shapes]
        # per chunk: (m, n', r) for a matrix, None for a vector
        self.matrices = [(s[0], size // s[0], min(self.rank, s[0], size // s[0])) if len(s) >= 2 and size else None
                         for s, size in zip(self.shapes, self.sizes)]
        self.factor_sizes = []
        for size, mat in zip(self.sizes, self.matrices):
            self.factor_sizes += [size] if mat is None else [mat[0] * mat[2], mat[1] * mat[2]]

    def numbers_per_direction(self) -> int:
        """How many random numbers one direction costs (r·(m+n') per matrix, the size per vector)."""
        return int(sum(self.factor_sizes))

    def _check(self, sizes: Sequence[int]) -> None:
        if [int(n) for n in sizes] != self.sizes:
            raise ValueError("low-rank noise (ars.noise_rank > 0) was built for parameter tensors of sizes "
                             f"{self.sizes}, but the space asks for chunks {list(sizes)}: low-rank directions need "
                             "the full parameter space (not a compressed one); set ars.noise_rank = 0")

    def _numbers(self, seed, device, dtype) -> torch.Tensor:
        """All of a direction's factor numbers, drawn by `base` as one chunk (one `randn` call)."""
        return next(iter(self.base.chunks(seed, [self.numbers_per_direction()], device, dtype)))

    def chunks(self, seed, sizes, device, dtype):
        self._check(sizes)
        raw = iter(torch.split(self._numbers(seed, device, dtype), self.factor_sizes))
        for mat in self.matrices:
            if mat is None:
                yield next(raw)
            else:
                m, n, r = mat
                a, b = next(raw).view(m, r), next(raw).view(n, r)
                yield (a @ b.T).mul_(r ** -0.5).view(-1)

    def fill(self, seed, out):
        for part, chunk in zip(out, self.chunks(seed, [p.numel() for p in out], out[0].device, out[0].dtype)):
            part.copy_(chunk.view_as(part))

    @torch.no_grad()
    def perturb_(self, seed: int, space, alpha: float) -> None:
        """θ += alpha·δ(seed), each matrix by one in-place `addmm_` of its factors (W += alpha/√r·A·Bᵀ):
        one read and write of the weights, where adding the dense chunk first writes A·Bᵀ/√r to a
        temporary and then reads it back (reports/throughput.md, GPT-2 rows). A space that is not the
        model's tensors one for one (its `params`) takes the dense chunks."""
        params = getattr(space, "params", None)
        if not isinstance(params, list) or [p.numel() for p in params] != self.sizes:
            return super().perturb_(seed, space, alpha)
        raw = iter(torch.split(self._numbers(seed, space.device, space.dtype), self.factor_sizes))
        for p, mat in zip(params, self.matrices):
            if mat is None:
                p.add_(next(raw).view_as(p), alpha=alpha)
            else:
                m, n, r = mat
                a, b = next(raw).view(m, r), next(raw).view(n, r)
                p.view(m, n).addmm_(a, b.T, alpha=alpha * r ** -0.5)

    def parts(self, seeds, sizes, shapes=None, device="cpu", dtype=torch.float32) -> Directions:
        self._check(sizes)
        return self.factors(seeds, device, dtype)

    def factors(self, seeds: Sequence[int], device="cpu", dtype=torch.float32) -> Directions:
        """The N directions of `seeds` in factored form (the same numbers `chunks` draws)."""
        numbers = torch.empty(len(seeds), self.numbers_per_direction(), device=device, dtype=dtype)
        for row, seed in zip(numbers, seeds):             # (N, numbers per direction), drawn in place
            self.base.fill(seed, [row])
        raw = iter(torch.split(numbers, self.factor_sizes, dim=1))
        parts = []
        for mat in self.matrices:
            if mat is None:
                parts.append(next(raw).contiguous())
            else:
                m, n, r = mat
                a, b = next(raw).reshape(-1, m, r), next(raw).reshape(-1, n, r)
                parts.append((a.contiguous(), b.contiguous(), r ** -0.5))
        return Directions(parts, self.shapes)


class Directions:
    """N directions, one part per parameter tensor, in the layout the candidate forward reads.

    ``parts[i]`` is, for parameter tensor i, either a (N, size) tensor (full rank: a column block
    of the (N, d) matrix `matrix` when there is one, a view, so nothing is copied) or a triple
    (A (N, m, r), B (N, n', r), 1/√r) with δ_k = A_k·B_kᵀ/√r (low rank). The vectorized backend
    scores candidates from it without forming θ ± ν·δ_k where the task can
    (`Task.score_directions`), and steps with `add_to` / `combine`.
    """

    def __init__(self, parts: list, shapes: list[tuple[int, ...]] | None = None, matrix: torch.Tensor | None = None):
        self.parts, self.shapes, self.matrix = parts, shapes, matrix

    @classmethod
    def from_matrix(cls, matrix: torch.Tensor, sizes: Sequence[int], shapes=None) -> Directions:
        return cls(list(torch.split(matrix, list(sizes), dim=1)), shapes, matrix)

    def __len__(self) -> int:
        first = self.parts[0]
        return len(first[0] if isinstance(first, tuple) else first)

    def take(self, index) -> Directions:
        """The directions at positions `index` (a slice or a list of positions)."""
        if not isinstance(index, slice):
            index = torch.as_tensor(index, dtype=torch.long)
        if self.matrix is not None:
            return Directions.from_matrix(self.matrix[index], [p.shape[1] for p in self.parts], self.shapes)
        return Directions([(p[0][index], p[1][index], p[2]) if isinstance(p, tuple) else p[index]
                           for p in self.parts], self.shapes)

    def dense(self) -> torch.Tensor:
        """The (N, d) matrix of the directions (for backends or models without a factored path)."""
        if self.matrix is not None:
            return self.matrix
        cols = [torch.bmm(p[0], p[1].transpose(1, 2)).mul_(p[2]).flatten(1) if isinstance(p, tuple) else p
                for p in self.parts]
        return torch.cat(cols, dim=1)

    @torch.no_grad()
    def add_to(self, params: Sequence[torch.Tensor], weights: torch.Tensor) -> None:
        """params[i] += Σ_k w_k·δ_k in place; each matrix by one `addmm_` (no m×n temporary)."""
        for p, part in zip(params, self.parts):
            if isinstance(part, tuple):
                a, b, scale = part
                n, m, r = a.shape
                w = weights.to(a.dtype).to(a.device)
                aw = (a * (w * scale).view(-1, 1, 1)).transpose(0, 1).reshape(m, n * r)
                p.view(m, -1).addmm_(aw, b.transpose(0, 1).reshape(-1, n * r).T)
            else:
                p.add_((weights.to(part.dtype).to(part.device) @ part).view_as(p))

    def combine(self, weights: torch.Tensor) -> list[torch.Tensor]:
        """Σ_k w_k·δ_k, chunk by chunk (flat): each matrix as one (m, N·r)×(N·r, n') product."""
        out = []
        for p in self.parts:
            if isinstance(p, tuple):
                a, b, scale = p
                w = weights.to(a.dtype).to(a.device)
                n, m, r = a.shape
                aw = (a * (w * scale).view(-1, 1, 1)).transpose(0, 1).reshape(m, n * r)
                out.append((aw @ b.transpose(0, 1).reshape(-1, n * r).T).view(-1))
            else:
                out.append(weights.to(p.dtype).to(p.device) @ p)
        return out


def make_noise(source: str = "seed", table_size: int = 10_000_000, rank: int = 0,
               shapes: Sequence[Sequence[int]] | None = None) -> SeedNoise:
    """The noise of `ars.noise_source` (seed or table); low rank on top when `rank` > 0."""
    if source == "seed":
        base = SeedNoise()
    elif source == "table":
        base = TableNoise(table_size)
    else:
        raise ValueError(f"unknown noise source {source!r}; allowed: 'seed', 'table'")
    if rank < 0:
        raise ValueError(f"ars.noise_rank must be >= 0 (0 = full rank), got {rank}")
    if rank == 0:
        return base
    if shapes is None:
        raise ValueError("ars.noise_rank > 0 needs the parameter tensors' shapes: low-rank directions work on the "
                         "full parameter space only (not a compressed one); set ars.noise_rank = 0")
    return LowRankNoise(rank, shapes, base)
