"""Cheaper ways to draw full-rank seed noise? Each candidate generator against `SeedNoise`, measured in one run.

Issue 23 measured drawing the digits MLP's N·d normals (N 32, d 19,210) at 0.25× the inference
limit, the part of a vectorized seed-noise iteration that keeps it above 1.11×. A new generator
would be a named `ars.noise_source` (its own draws, its own reference test) only if it is cheaper,
so each is timed here first, every one filling the same (N, d) matrix from the same N seeds, each
row a pure function of its seed (what the sequential backend regenerates), interleaved rounds,
one warm-up:

- `SeedNoise` as it is: a `torch.Generator` (mt19937) per seed, `torch.randn(out=)` per parameter
  tensor (torch's vectorised Box-Muller on 24-bit uniforms);
- the same generator in one `randn` call per direction (the layout cut afterwards: other numbers,
  as one call draws the tail of a tensor whose size is not a multiple of 16 differently);
- NumPy's bit generators (PCG64, Philox, SFC64; Philox is counter-based) with its float32 ziggurat
  `standard_normal(out=)` written straight into the tensor's memory;
- a counter-based hash (SplitMix64's finaliser on (seed, index) in int64 torch ops) → Box-Muller;
- Box-Muller in torch ops from `uniform_` (two uniforms per pair of normals);
- Box-Muller from 32 random bits per pair of normals (`random_` on int32: 16-bit radius and angle
  uniforms, half the generator calls; tails cut at 4.7σ);
- `randn` in bfloat16, widened.

    python benchmarks/noise_generators.py [--reps 21]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from arsearch.noise import SeedNoise, iteration_seeds  # noqa: E402

SIZES = [64 * 256, 256, 256 * 10, 10]     # the digits MLP 64-256-10: d = 19,210
N = 32


def generators(sizes: list[int], out: torch.Tensor) -> dict:
    d = sum(sizes)
    half = (d + 1) // 2
    noise = SeedNoise()
    bits, radius, angle = torch.empty(half, dtype=torch.int32), torch.empty(half), torch.empty(half)
    index = torch.arange(half, dtype=torch.int64)

    def seed_noise(seeds):
        for row, seed in zip(out, seeds):
            noise.fill(seed, torch.split(row, sizes))

    def randn_row(seeds):
        for row, seed in zip(out, seeds):
            torch.randn(row.shape, generator=torch.Generator().manual_seed(seed), out=row)

    def numpy_normals(bit_generator):
        def draw(seeds):
            rows = out.numpy()
            for row, seed in zip(rows, seeds):
                np.random.Generator(bit_generator(seed)).standard_normal(out=row, dtype=np.float32)
        return draw

    def box_muller(row):
        torch.mul(radius, angle.cos(), out=row[:half])
        torch.mul(radius[:d - half], angle[:d - half].sin(), out=row[half:])

    def hashed(seeds):
        for row, seed in zip(out, seeds):
            z = index * -7046029254386353131 + seed        # SplitMix64 (wrapping int64 arithmetic)
            z = (z ^ (z >> 30)) * -4658895280553007687
            z = (z ^ (z >> 27)) * -7723592293110705685
            z = z ^ (z >> 31)
            torch.sqrt(((z & 0xFFFFFF) + 1).float().mul_(1 / 16777217).log_().mul_(-2), out=radius)
            torch.mul(((z >> 24) & 0xFFFFFF).float(), 2 * math.pi / 16777216, out=angle)
            box_muller(row)

    def uniform_pairs(seeds):
        for row, seed in zip(out, seeds):
            gen = torch.Generator().manual_seed(seed)
            radius.uniform_(generator=gen).neg_().log1p_().mul_(-2).sqrt_()
            angle.uniform_(generator=gen).mul_(2 * math.pi)
            box_muller(row)

    def bits16(seeds):
        for row, seed in zip(out, seeds):
            bits.random_(generator=torch.Generator().manual_seed(seed))
            torch.bitwise_and(bits, 0xFFFF, out=radius.view(torch.int32))
            radius.copy_(radius.view(torch.int32)).add_(1).mul_(1 / 65537).log_().mul_(-2).sqrt_()
            angle.copy_(torch.bitwise_right_shift(bits, 16) & 0xFFFF).mul_(2 * math.pi / 65536)
            box_muller(row)

    def bfloat16(seeds):
        for row, seed in zip(out, seeds):
            row.copy_(torch.randn(row.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.bfloat16))

    return {"SeedNoise (torch.randn per parameter tensor; the `seed` source)": seed_noise,
            "torch.randn, one call per direction": randn_row,
            "NumPy PCG64, float32 ziggurat": numpy_normals(np.random.PCG64),
            "NumPy Philox (counter-based), float32 ziggurat": numpy_normals(np.random.Philox),
            "NumPy SFC64, float32 ziggurat": numpy_normals(np.random.SFC64),
            "counter-based hash (SplitMix64 in torch int64 ops) → Box-Muller": hashed,
            "Box-Muller from torch uniforms": uniform_pairs,
            "Box-Muller from 32 random bits per pair (16-bit uniforms)": bits16,
            "torch.randn in bfloat16, widened": bfloat16}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=21)
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = torch.empty(N, sum(SIZES))
    fns = generators(SIZES, out)
    times = {name: [] for name in fns}
    for it in range(args.reps + 1):
        for name, fn in fns.items():
            seeds = iteration_seeds(0, it, N)
            start = time.perf_counter()
            fn(seeds)
            if it:                                         # one warm-up round
                times[name].append(time.perf_counter() - start)
    base = statistics.median(times[next(iter(fns))])
    base_min = min(times[next(iter(fns))])
    numbers = N * sum(SIZES)
    from benchmarks.common import write_report

    lines = ["# Drawing full-rank seed noise: candidate generators", "", "{HEADER}",
             f"N·d = {N} × {sum(SIZES):,} = {numbers:,} normals (the digits MLP 64-256-10's directions), one "
             f"thread, {args.reps} interleaved rounds after one warm-up; × current = time / SeedNoise's, of the "
             "medians and of the fastest rounds (the fastest round is the one least disturbed by other jobs).", "",
             "| generator | median | × current | fastest | × current | ns per normal (fastest) |",
             "|---|---|---|---|---|---|"]
    for name, ts in times.items():
        med, fast = statistics.median(ts), min(ts)
        lines.append(f"| {name} | {med * 1e3:.2f} ms | {med / base:.2f} | {fast * 1e3:.2f} ms | {fast / base_min:.2f} | "
                     f"{fast / numbers * 1e9:.1f} |")
    best = min(times, key=lambda k: statistics.median(times[k]))
    cheaper = [k for k in times if statistics.median(times[k]) < 0.9 * base and min(times[k]) < 0.9 * base_min]
    import os

    lines += ["", "## Verdict", "",
              f"- Fastest by median: {best}.",
              ("- Cheaper than the current source by ≥ 10% in both the median and the fastest round: "
               + ", ".join(cheaper) + "." if cheaper else
               "- None is ≥ 10% cheaper than the current source in both the median and the fastest round: torch's "
               "CPU `randn` (mt19937 words turned into normals by a vectorised Box-Muller, in cache, one pass) is "
               "the cheapest way measured here to draw Gaussian numbers that are a pure function of a seed, so no "
               "new `ars.noise_source` is added; full-rank seed noise pays N·d normals per iteration, and the ways "
               "to pay fewer are table noise (slices of one shared table) and low rank (r·(m+n) per matrix)."),
              f"- Load average at the end {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores: other jobs share the "
              "machine; the ratios, measured in the same interleaved rounds, are what carries over.", ""]
    path = write_report("noise_generators", "\n".join(lines))
    print(path.read_text())


if __name__ == "__main__":
    main()
