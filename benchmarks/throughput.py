"""Throughput of one ARS iteration against plain batched inference, measured in the same run.

One iteration = 2N perturbed candidates scored on one mini-batch of digits, the top-b step
applied. Every variant is compared with the *inference limit*: the faster of

- one plain forward of all 2N×batch inputs through the unperturbed model, and
- the same inputs in cache-sized calls (the vectorized backend's automatic chunk of candidates),

so the limit is the best plain inference of the same inputs, not a forward that runs out of cache.
Variants: the sequential and vectorized backends with full-rank seed noise and table noise, low-rank
directions (``ars.noise_rank`` r = 1, 4, 16) and the `torcheggroll` package (EGGROLL for PyTorch,
the `bench` extra) doing the same 2N-member antithetic step. Measurements are interleaved (limit,
variants, limit, ...) and the median of each is reported, so ratios hold on a shared machine.

    python benchmarks/throughput.py [--reps 9] [--threads 1] [--large-n 4] [--skip-large]

The large model (an MLP of ~50.6M parameters) uses N = 4 (8 candidates) and batch 64 by default
(issue 23's table); a full-rank direction of it is 200 MB, which is the point. Its full-rank,
sequential and torcheggroll rows (seconds an iteration) get `--slow-reps` repetitions (2).

Besides whole iterations, each model gets the parts that explain a ratio, measured in the same
interleaved rounds: drawing the N full-rank seed-noise directions alone, and for low rank the
scoring of the 2N candidates and the step (Σ w_k·A_k·B_kᵀ/√r into every weight matrix) apart.
Every verdict names its target (× limit ≤ 1.11, i.e. ≥ 0.9 of the limit) and, where missed, the
measured part that misses it.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from arsearch.backends.vectorized import VectorizedBackend  # noqa: E402
from arsearch.config import load_job  # noqa: E402
from arsearch.noise import iteration_seeds  # noqa: E402
from arsearch.trainer import Trainer  # noqa: E402

# name: (task keys, directions N, batch)
SMALL = {"MLP 64-256-10": ({"model": "mlp", "hidden": [256]}, 32, 256),
         "CNN (conv 8, conv 16, linear)": ({"model": "cnn", "channels": [8, 16]}, 32, 256)}
LARGE = "MLP 64-4096×4-10"
LARGE_KEYS = {"model": "mlp", "hidden": [4096] * 4}
SMALL_VARIANTS = [("sequential", "seed", 0), ("vectorized", "seed", 0), ("vectorized", "table", 0),
                  ("sequential", "seed", 4), ("vectorized", "seed", 1), ("vectorized", "seed", 4),
                  ("vectorized", "seed", 16)]
LARGE_VARIANTS = [("sequential", "seed", 0), ("vectorized", "seed", 0), ("vectorized", "table", 0),
                  ("vectorized", "seed", 1), ("vectorized", "seed", 4), ("vectorized", "seed", 16)]
EGGROLL_RANK = 4
TARGET = 1.11             # × limit: at least 0.9 of the inference limit


def trainer_for(keys: dict, n: int, batch: int, backend: str, noise: str, rank: int, device: str,
                table_size: int) -> Trainer:
    cfg = load_job(data={
        "task": {"dataset": "digits", "batch_size": batch, "device": device, **keys},
        "ars": {"directions": n, "top": max(1, n // 4), "backend": backend, "noise_source": noise,
                "table_size": table_size, "noise_rank": rank},
        "tracking": {"enabled": False}, "checkpoint": {"dir": "/tmp/arsearch-throughput"},
    })
    return Trainer(cfg, progress=False)


def label(variant) -> str:
    backend, noise, rank = variant
    return f"{backend} ({noise} noise)" if rank == 0 else f"{backend} (low rank r = {rank})"


def timed(fn) -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def eggroll_step(model, n: int, batch, rank: int):
    """torcheggroll's ES step on the same mini-batch with 2N antithetic members, or None if absent."""
    try:
        from torcheggroll import TorchEggrollES
    except ImportError:
        return None
    es = TorchEggrollES(model, pop_size=2 * n, sigma=0.03, lr=0.02, rank=rank)
    return lambda: es.step(batch.x, F.cross_entropy, batch.y)


def measure(name: str, keys: dict, n: int, batch_size: int, variants, reps: int, device: str,
            slow_reps: int | None = None) -> list[tuple]:
    """Rows of one model; full-rank variants and torcheggroll get only `slow_reps` repetitions."""
    table_size = 2_000_000 if name != LARGE else 60_000_000
    trainers = {v: trainer_for(keys, n, batch_size, *v, device, table_size) for v in variants}
    reference = next(iter(trainers.values()))
    task, model, d = reference.task, reference.model, reference.space.dim
    batch = task.batch(0)
    x = batch.x.repeat(2 * n, 1)                         # all 2N×batch inputs
    chunk = min(2 * n, VectorizedBackend(chunk=0).chunk_size(task, batch, 2 * n))
    chunks = torch.split(x, chunk * batch_size)

    @torch.no_grad()
    def one_forward():
        model(x)

    @torch.no_grad()
    def chunked_forward():
        for part in chunks:
            model(part)

    # a new iteration each call: new seeds, so no backend can reuse the previous call's directions
    counters = {v: itertools.count() for v in trainers}
    steps = {label(v): (lambda tr=t, it=counters[v]: tr.learner.step(next(it))) for v, t in trainers.items()}
    step_weights = torch.linspace(-1e-3, 1e-3, n, dtype=torch.float64)
    # the parts: drawing N full-rank directions; low rank's candidate scoring and its step, apart
    seed_trainer = trainers.get(("vectorized", "seed", 0))
    if seed_trainer is not None:
        draws = itertools.count(10_000_000)
        steps["  part: drawing the N seed-noise directions alone"] = (
            lambda tr=seed_trainer: tr.noise.parts(iteration_seeds(0, next(draws), n), tr.space.sizes,
                                                   tr.space.shapes, tr.space.device, tr.space.dtype))
    for v, t in trainers.items():
        if v[0] == "vectorized" and v[2] in (1, 4):
            backend, parts_it = t.learner.backend, itertools.count(20_000_000)

            def score(tr=t, be=backend, it=parts_it):
                seeds = iteration_seeds(0, next(it), n)
                be.evaluate(tr.space, tr.task, tr.noise, seeds, 0.03, batch)
                return seeds

            held = {}
            steps[f"  part: {label(v)}, scoring the 2N candidates"] = (
                lambda score=score, held=held: held.__setitem__("seeds", score()))
            steps[f"  part: {label(v)}, the step (Σ w_k·A_k·B_kᵀ/√r)"] = (
                lambda tr=t, be=backend, held=held: be.apply(tr.space, tr.noise, held["seeds"], step_weights))
    step = eggroll_step(copy.deepcopy(model), n, batch, EGGROLL_RANK)
    if step is not None:
        steps[f"torcheggroll (low rank r = {EGGROLL_RANK})"] = step
    slow_reps = reps if slow_reps is None else slow_reps
    slow = {k for k in steps if "noise)" in k or k.startswith("torcheggroll")} if slow_reps < reps else set()
    times = {"one": [], "chunked": []} | {k: [] for k in steps}
    for it in range(reps + 1):
        for key, fn in [("one", one_forward), ("chunked", chunked_forward), *steps.items()]:
            if it > slow_reps and key in slow:
                continue                                  # the slow variants: fewer repetitions
            t = timed(fn)
            if it >= 1:                                   # one warm-up round
                times[key].append(t)
        print(f"{name}: round {it + 1}/{reps + 1}", file=sys.stderr, flush=True)
    one, chunked = statistics.median(times["one"]), statistics.median(times["chunked"])
    base = min(one, chunked)
    rows = [(name, d, n, batch_size, f"plain forward of 2N×{batch_size} inputs in one call", one, one / base),
            (name, d, n, batch_size, f"plain forward in calls of {chunk} candidates ({chunk * batch_size} inputs)",
             chunked, chunked / base)]
    for key in steps:
        med = statistics.median(times[key])
        rows.append((name, d, n, batch_size, key, med, med / base))
    return rows


GPT2 = "GPT-2 1 GB (posttrain_memory.py's)"
GPT2_RANK, GPT2_N, GPT2_PROMPTS, GPT2_TOKENS = 4, 2, 4, 16


class _LogitsTask:
    """The post-training path's candidate forward without the tokenizer and the reward: a plain
    forward of the same token ids, scored by its last-position log-sum-exp (a few microseconds)."""

    def __init__(self, model):
        self.model = model

    @torch.no_grad()
    def score(self, batch, index: int = 0) -> float:
        return float(self.model(batch).logits[:, -1].logsumexp(-1).mean())


def measure_gpt2(reps: int) -> list[tuple]:
    """Low rank on the ≥ 1 GB GPT-2 of reports/posttrain.md (a), as the post-training path runs it (the
    sequential backend: a transformer has no shared forward), against 2N plain forwards of the same
    tokens; the perturbations and the step apart, so the per-candidate overhead is named."""
    from transformers import GPT2LMHeadModel

    from arsearch.backends.base import Backend
    from arsearch.backends.sequential import SequentialBackend
    from arsearch.noise import LowRankNoise
    from arsearch.spaces import FullSpace
    from benchmarks.posttrain_memory import big_config

    torch.manual_seed(0)
    model = GPT2LMHeadModel(big_config()).eval()
    space = FullSpace(model)
    noise = LowRankNoise(GPT2_RANK, space.shapes)
    task, n = _LogitsTask(model), GPT2_N
    ids = torch.randint(3, model.config.vocab_size, (GPT2_PROMPTS, GPT2_TOKENS))
    weights = torch.tensor([1e-4, -1e-4], dtype=torch.float64)[:n]
    rounds = itertools.count(30_000_000)

    def plain():
        with torch.no_grad():
            for _ in range(2 * n):
                model(ids)

    def perturbations(dense: bool):
        def run():
            for seed in iteration_seeds(0, next(rounds), n):
                for alpha in (0.01, -0.02, 0.01):
                    if dense:
                        with torch.no_grad():
                            space.add_(noise.chunks(seed, space.sizes, space.device, space.dtype), alpha)
                    else:
                        noise.perturb_(seed, space, alpha)
        return run

    what = f"low rank r = {GPT2_RANK}"
    steps = {
        f"sequential ({what}), scoring the 2N candidates": lambda: SequentialBackend().evaluate(
            space, task, noise, iteration_seeds(0, next(rounds), n), 0.01, ids),
        "  part: the 3 perturbations per direction (+ν, −2ν, +ν), each matrix W += α/√r·A·Bᵀ in place":
            perturbations(dense=False),
        "  part: the same perturbations with the dense chunk A·Bᵀ/√r formed first, then added (before)":
            perturbations(dense=True),
        "  part: the step Σ w_k·A_k·B_kᵀ/√r, direction by direction (sequential)":
            lambda: Backend.apply(SequentialBackend(), space, noise, iteration_seeds(0, next(rounds), n), weights),
        "  part: the step as one (m × N·r)·(N·r × n) product per matrix (vectorized)":
            lambda: noise.factors(iteration_seeds(0, next(rounds), n)).add_to(space.params, weights),
    }
    times = {"plain": []} | {k: [] for k in steps}
    for it in range(reps + 1):
        for key, fn in [("plain", plain), *steps.items()]:
            t = timed(fn)
            if it >= 1:
                times[key].append(t)
        print(f"{GPT2}: round {it + 1}/{reps + 1}", file=sys.stderr, flush=True)
    base = statistics.median(times["plain"])
    d, label_batch = space.dim, f"{GPT2_PROMPTS}×{GPT2_TOKENS} tokens"
    rows = [(GPT2, d, n, label_batch, f"plain forward of the {label_batch}, 2N times", base, 1.0)]
    for key in steps:
        med = statistics.median(times[key])
        rows.append((GPT2, d, n, label_batch, key, med, med / base))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=9)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--large-n", type=int, default=4, help="directions N of the 50M model (batch 64)")
    parser.add_argument("--slow-reps", type=int, default=2,
                        help="repetitions of the 50M model's full-rank, sequential and torcheggroll rows")
    parser.add_argument("--skip-large", action="store_true")
    parser.add_argument("--gpt2-reps", type=int, default=5, help="repetitions of the 1 GB GPT-2 rows")
    parser.add_argument("--skip-gpt2", action="store_true", help="no GPT-2 rows (they need the `hf` extra)")
    parser.add_argument("--name", default="throughput", help="report name under reports/")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rows = []
    for name, (keys, n, batch) in SMALL.items():
        rows += measure(name, keys, n, batch, SMALL_VARIANTS, args.reps, args.device)
    if not args.skip_large:
        rows += measure(LARGE, LARGE_KEYS, args.large_n, 64, LARGE_VARIANTS, args.reps, args.device,
                        min(args.slow_reps, args.reps))

    if not args.skip_gpt2:
        rows += measure_gpt2(args.gpt2_reps)

    from benchmarks.common import REPORTS, write_report

    (REPORTS / "data").mkdir(parents=True, exist_ok=True)
    (REPORTS / "data" / f"{args.name}.json").write_text(json.dumps(
        [dict(zip(("model", "d", "N", "batch", "what", "seconds", "x_limit"), r)) for r in rows], indent=1))
    lines = ["# Throughput of one ARS iteration", "", "{HEADER}",
             f"Digits mini-batches; device {args.device}; {args.threads} CPU thread(s); median of {args.reps} interleaved "
             f"repetitions (large model's full-rank, sequential and torcheggroll rows: {min(args.slow_reps, args.reps)}) "
             "after one warm-up. "
             "The **limit** is the faster of the two plain forwards (× limit = 1.00); candidates/s = 2N / time.",
             "", "| model | d | N | batch | what | time per iteration | × limit | candidates/s |",
             "|---|---|---|---|---|---|---|---|"]
    for model, d, n, batch, what, t, ratio in rows:
        lines.append(f"| {model} | {d:,} | {n} | {batch} | {what} | {t * 1e3:,.1f} ms | {ratio:.2f} | {2 * n / t:,.1f} |")

    def ratio_of(model, what):
        return next((r[6] for r in rows if r[0] == model and r[4] == what), None)

    def n_of(model):
        return next(r[2] for r in rows if r[0] == model)

    def d_of(model):
        return next(r[1] for r in rows if r[0] == model)

    def part_of(model, what):
        return next((r for r in rows if r[0] == model and r[4].strip().startswith(f"part: {what}")), None)

    verdicts = []
    for model in SMALL:
        seq, vec = ratio_of(model, "sequential (seed noise)"), ratio_of(model, "vectorized (seed noise)")
        table = ratio_of(model, "vectorized (table noise)")
        draw = part_of(model, "drawing")
        verdict = (f"- {model}: vectorized (seed noise) {vec:.2f}× the limit — target ≤ {TARGET}: "
                   f"**{'met' if vec <= TARGET else 'missed'}**; never slower than sequential ({seq:.2f}×): "
                   f"**{'met' if vec <= seq else 'missed'}**.")
        if vec > TARGET:
            causes = []
            if draw is not None:
                causes.append(f"drawing the N·d = {n_of(model) * d_of(model):,} normals alone takes "
                              f"{draw[5] * 1e3:.1f} ms = {draw[6]:.2f}× the limit (table noise, which draws none: "
                              f"{table:.2f}×); no generator measured draws them cheaper than torch's `randn` "
                              "(NumPy's PCG64, Philox and SFC64, a counter-based hash, Box-Muller variants: "
                              "[reports/noise_generators.md](noise_generators.md))")
            if model.startswith("CNN"):
                causes.append("the CNN has no shared forward: each candidate is one plain call of a copy of "
                              "the model holding the candidate's weights, and one loss for all candidates (a log-sum-exp over 10 "
                              "classes per example, which the limit does not compute) and the update; sequential "
                              "makes the same calls on the model itself, with a loss per call")
            verdict += " Cause (measured): " + "; ".join(causes) + "."
        verdicts.append(verdict)
    if not args.skip_large:
        for r in (1, 4):
            what = label(("vectorized", "seed", r))
            ratio = ratio_of(LARGE, what)
            verdict = (f"- {LARGE}, low rank r = {r}: {ratio:.2f}× the limit ({1 / ratio:.2f} of it) — target ≤ "
                       f"{TARGET}: **{'met' if ratio <= TARGET else 'missed'}**")
            score, step = part_of(LARGE, f"{what}, scoring"), part_of(LARGE, f"{what}, the step")
            if score is not None and step is not None:
                verdict += (f"; scoring the 2N candidates {score[6]:.2f}× the limit, the step {step[6]:.2f}× "
                            f"(it reads and writes every weight once: {step[5] * 1e3:,.0f} ms)")
            verdicts.append(verdict + ".")
    if not args.skip_gpt2:
        plain = next(r for r in rows if r[0] == GPT2 and r[4].startswith("plain"))
        scoring = next(r for r in rows if r[0] == GPT2 and "scoring" in r[4])
        fused = part_of(GPT2, "the 3 perturbations")
        dense = part_of(GPT2, "the same perturbations")
        seq_step, vec_step = part_of(GPT2, "the step Σ"), part_of(GPT2, "the step as one")
        n2, one = 2 * plain[2], plain[5] / (2 * plain[2])
        overhead = (scoring[5] - plain[5]) / n2
        verdicts.append(
            f"- {GPT2}, {plain[1]:,} parameters, low rank r = {GPT2_RANK}, N = {plain[2]}: scoring the 2N candidates "
            f"(sequential backend, the post-training path) {scoring[6]:.2f}× 2N plain forwards of the same tokens; "
            f"per candidate {overhead * 1e3:,.0f} ms over one plain forward ({one * 1e3:,.0f} ms), i.e. "
            f"{overhead / one:.2f} of a forward. Of it, the perturbations (3 per direction, 1.5 per candidate, each "
            f"W += α/√r·A·Bᵀ in place, one read and write of every weight) take {fused[5] / n2 * 1e3:,.0f} ms "
            f"per candidate; formed as a dense A·Bᵀ/√r first and then added, as before this change, "
            f"{dense[5] / n2 * 1e3:,.0f} ms ({dense[5] / fused[5]:.2f}×). The step: {seq_step[5] * 1e3:,.0f} ms "
            f"direction by direction, {vec_step[5] * 1e3:,.0f} ms as one product per matrix "
            f"({seq_step[6]:.2f}× and {vec_step[6]:.2f}× the 2N forwards). What remains over the forwards is the "
            "perturbations: every candidate's weights must be written before its forward, a pass over the 1 GB "
            "that the forward of 64 tokens does not hide. Removing it takes a factored transformer forward (the "
            "2N candidates stacked in one batch, each Conv1D's h·Wᵀ one GEMM shared by all of them plus the "
            "rank-r corrections ±ν·(h·B_k)·A_kᵀ/√r, the embeddings' and LayerNorms' parts added to their "
            "outputs), as the MLP path does; arsearch has none for transformers yet, so this is the measured "
            "cause of the gap.")
    import os

    verdicts.append(f"- Load average at the end {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (other jobs share "
                    "the machine): every time here grows with it; the ratios, measured in the same interleaved "
                    "rounds, are what carries over.")
    from benchmarks.lowrank import table as lowrank_table

    accuracy = lowrank_table(quick=False)
    if accuracy:
        verdicts.append("- Accuracy / return at equal budget, low rank next to full rank (95% CI over seeds; "
                        "from `benchmarks/lowrank.py`, [reports/lowrank.md](lowrank.md)):")
        verdicts += ["", *accuracy]
    lines += ["", "## Verdict", "", *verdicts, "",
              "## Reading the table", "",
              "- Full-rank directions cost N·d random numbers per iteration (seed noise: `torch.randn`, drawn in place "
              "into one (N, d) matrix; table noise: slices of a shared table). MLPs then take a shared forward: the "
              "first layer's x·Wᵀ runs once on the batch and each ± pair shares its x·δᵀ (one GEMM per direction, "
              "not per candidate: half the plain forward's first-layer work), later layers read the 2N perturbed "
              "weights formed for that layer only. So a full-rank iteration, too, can come in under the limit "
              "once its directions are drawn; what remains above it is the drawing (the `part:` row).",
              "- Low rank (`ars.noise_rank = r`) draws r·(m+n) numbers per m×n weight matrix. MLPs then take a "
              "factored forward: every layer's h·Wᵀ is one GEMM shared by all 2N candidates, plus a rank-r "
              "correction ±ν·(h·B)·Aᵀ/√r per candidate; the step Σ w_k·A_k·B_kᵀ/√r is one (m × N·r)·(N·r × n) "
              "product. The first layer's input is the same mini-batch for every candidate, so its GEMM runs on "
              "the batch once: that is why a low-rank iteration can come in *under* the limit (a plain forward "
              "cannot know its 2N copies of the batch are equal).",
              "- Models without a factored forward (the CNN) score low-rank candidates as dense ones.",
              "- The vectorized backend's automatic chunk (`ars.vector_chunk = 0`) holds one call's activations "
              "(forward-hook sizes) within twice the per-core L2 cache, or within the model's size when that is "
              "larger (the 50M model: all at once); a model whose single candidate already exceeds it (the CNN) "
              "is scored one plain call per candidate, without `vmap`.",
              "- torcheggroll forms each member's dense noise A·Bᵀ and runs `vmap(functional_call)` over 2N "
              "perturbed copies of the weights, so its cost grows like full-rank noise; it uses its own "
              "update rule (fitness-normalised ES), not ARS's top-b step, which costs next to nothing either way.", ""]
    path = write_report(args.name, "\n".join(lines))
    print(path.read_text())


if __name__ == "__main__":
    main()
