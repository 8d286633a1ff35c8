"""Throughput of one ARS iteration against the machine's limit, measured in the same run.

One iteration = 2N perturbed candidates (N = 32) scored on one mini-batch of 256 digits, the
top-b step applied. The limit is the time of one plain forward pass of all 2N×256 inputs through
the unperturbed model: the same arithmetic with nothing of ARS around it. Measurements are
interleaved (limit, backends, limit, ...) and the median of each is reported, so the ratios hold
even when other processes share the CPU.

    python benchmarks/throughput.py [--reps 15] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from arsearch.config import load_job  # noqa: E402
from arsearch.trainer import Trainer  # noqa: E402

MODELS = {"MLP 64-256-10": {"model": "mlp", "hidden": [256]},
          "CNN (conv 8, conv 16, linear)": {"model": "cnn", "channels": [8, 16]}}
VARIANTS = [("sequential", "seed"), ("vectorized", "seed"), ("vectorized", "table")]


def trainer_for(model_keys: dict, backend: str, noise: str, tmp: str, device: str) -> Trainer:
    cfg = load_job(data={
        "task": {"dataset": "digits", "batch_size": 256, "device": device, **model_keys},
        "ars": {"directions": 32, "top": 8, "backend": backend, "noise_source": noise, "table_size": 2_000_000},
        "tracking": {"enabled": False}, "checkpoint": {"dir": tmp},
    })
    return Trainer(cfg, progress=False)


def timed(fn) -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--name", default="throughput", help="report name under reports/")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rows = []
    for model_name, keys in MODELS.items():
        trainers = {v: trainer_for(keys, *v, "/tmp/arsearch-throughput", args.device) for v in VARIANTS}
        reference = trainers[VARIANTS[0]]
        x = reference.task.batch(0).x.repeat(64, 1)     # all 2N×256 inputs
        model = reference.model
        d = reference.space.dim

        @torch.no_grad()
        def limit(model=model, x=x):
            model(x)

        times = {"limit": []} | {v: [] for v in VARIANTS}
        for it in range(args.reps + 2):
            t = timed(limit)
            if it >= 2:                                 # two warm-up rounds
                times["limit"].append(t)
            for v, trainer in trainers.items():
                t = timed(lambda tr=trainer, i=it: tr.learner.step(i))
                if it >= 2:
                    times[v].append(t)
        base = statistics.median(times["limit"])
        rows.append((model_name, d, "plain forward of 2N×256 inputs (limit)", base, 1.0))
        for v in VARIANTS:
            med = statistics.median(times[v])
            rows.append((model_name, d, f"{v[0]} ({v[1]} noise)", med, med / base))

    from benchmarks.common import write_report

    lines = ["# Throughput of one ARS iteration", "", "{HEADER}",
             f"N = 32 directions (64 candidates), batch 256, digits; device {args.device}; {args.threads} CPU threads; median of {args.reps} "
             "interleaved repetitions. Target: vectorized within **1.25×** of the limit.", "",
             "| model | d | what | time per iteration | × limit | candidates/s |", "|---|---|---|---|---|---|"]
    verdicts = []
    for model_name, d, what, t, ratio in rows:
        lines.append(f"| {model_name} | {d:,} | {what} | {t * 1e3:.2f} ms | {ratio:.2f} | {64 / t:,.0f} |")
        if what.startswith("vectorized"):
            verdicts.append(f"- {model_name}, {what}: {ratio:.2f}× the limit — target "
                            f"{'met' if ratio <= 1.25 else 'missed'}.")
    lines += ["", "## Verdict", "", *verdicts, "",
              "The iteration also draws N directions of dimension d (seed noise: one `torch.randn` per parameter "
              "tensor per direction; table noise: slices of a shared Gaussian table), forms the 2N perturbed "
              "parameter sets and applies the step (a (N)×(N, d) product): that work is what separates an iteration "
              "from the plain forward, and it grows with d, not with the batch. Drawing N·d Gaussians from seeds "
              "(615k numbers for the MLP) costs about as much as the MLP's whole forward pass; table noise removes "
              "that cost. MLPs take a fused path (one `baddbmm` per layer for all candidates, in-place activations); "
              "other models, like the CNN, go through `vmap(functional_call)`.",
              "",
              "The 'limit' is not a floor for every model: one forward pass of 16,384 images through the CNN holds "
              "tens of MB of activations, out of cache, while 64 forward passes of 256 images stay in cache — which "
              "is why the sequential backend can beat it on the CNN.", ""]
    path = write_report(args.name, "\n".join(lines))
    print(path.read_text())


if __name__ == "__main__":
    main()
