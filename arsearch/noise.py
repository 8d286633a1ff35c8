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

    def direction(self, seed: int, sizes: Sequence[int], device="cpu", dtype=torch.float32) -> torch.Tensor:
        return torch.cat(list(self.chunks(seed, sizes, device, dtype)))

    def directions(self, seeds: Sequence[int], sizes: Sequence[int], device="cpu", dtype=torch.float32):
        return torch.stack([self.direction(s, sizes, device, dtype) for s in seeds])


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


def make_noise(source: str = "seed", table_size: int = 10_000_000) -> SeedNoise:
    if source == "seed":
        return SeedNoise()
    if source == "table":
        return TableNoise(table_size)
    raise ValueError(f"unknown noise source {source!r}; allowed: 'seed', 'table'")
