"""Accuracy and return that low-rank directions reach at the same budget as full-rank ones.

Each (task, rank, seed) is one training job with the same iterations, directions and data as
the others (the same candidate evaluations, so the same budget); only ``ars.noise_rank``
differs (0 = full rank). Every finished run is cached as JSON under ``reports/data/lowrank/``,
so an interrupted benchmark resumes where it stopped and a rerun only fills in what is missing.

    python benchmarks/lowrank.py [--seeds 3] [--tasks digits halfcheetah] [--quick]

- digits: `configs/digits.toml` (MLP 64-64-10, V1-t, N = 32, b = 8), 150 iterations, r = 0, 1, 4, 16;
- HalfCheetah-v5: linear policy (6×17), V2-t, N = 8, b = 4, α = 0.02, ν = 0.03, horizon 1000,
  25 iterations (400 episodes), r = 0, 1 (`--quick`: fewer iterations).

Writes reports/lowrank.md; `benchmarks/throughput.py` quotes its table.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import REPORTS, ROOT  # noqa: E402

DATA = REPORTS / "data" / "lowrank"
TASKS = {
    "digits": {"config": "configs/digits.toml", "ranks": [0, 1, 4, 16], "metric": "eval/accuracy",
               "overrides": {"ars.iterations": 150, "eval.every": 150}, "quick": {"ars.iterations": 60,
                                                                                  "eval.every": 60}},
    "halfcheetah": {"config": None, "ranks": [0, 1], "metric": "eval/return",
                    "overrides": {"task.kind": "rl", "task.env": "HalfCheetah-v5", "task.policy": "linear",
                                  "task.horizon": 1000, "task.eval_episodes": 3, "ars.version": "v2t",
                                  "ars.directions": 8, "ars.top": 4, "ars.step_size": 0.02, "ars.noise": 0.03,
                                  "ars.iterations": 25, "eval.every": 25, "ars.backend": "vectorized"},
                    "quick": {"ars.iterations": 15, "eval.every": 15}},
}


def run_path(task: str, rank: int, seed: int, quick: bool) -> Path:
    return DATA / f"{task}{'-quick' if quick else ''}-r{rank}-s{seed}.json"


def run_one(task: str, rank: int, seed: int, quick: bool) -> dict:
    """One job, or its cached result."""
    path = run_path(task, rank, seed, quick)
    if path.exists():
        return json.loads(path.read_text())
    from arsearch.config import load_job
    from arsearch.trainer import Trainer

    spec = TASKS[task]
    overrides = {**spec["overrides"], **(spec["quick"] if quick else {}), "seed": seed, "ars.noise_rank": rank,
                 "tracking.enabled": False, "checkpoint.dir": f"/tmp/arsearch-lowrank/{path.stem}",
                 "checkpoint.every": 10_000}
    if spec["config"]:
        cfg = load_job(ROOT / spec["config"], overrides=overrides)
    else:
        cfg = load_job(data={}, overrides=overrides)
    trainer = Trainer(cfg, progress=False)
    start = time.perf_counter()
    result = trainer.run()
    record = {"task": task, "rank": rank, "seed": seed, "quick": quick, "metric": spec["metric"],
              "value": float(result[spec["metric"]]), "iterations": cfg.ars.iterations,
              "directions": cfg.ars.directions, "dim": trainer.space.dim,
              "numbers_per_direction": int(getattr(trainer.noise, "numbers_per_direction", lambda: trainer.space.dim)()),
              "seconds": time.perf_counter() - start,
              "counters": {k: v for k, v in result.items() if k.startswith("count/")}}
    DATA.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1))
    return record


def ci95(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95% t-interval."""
    from scipy import stats

    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, math.nan
    return mean, float(stats.t.ppf(0.975, len(values) - 1)) * statistics.stdev(values) / math.sqrt(len(values))


def table(quick: bool | None = None) -> list[str]:
    """The markdown table of every cached run (grouped by task and rank), or [] if none."""
    records = [json.loads(p.read_text()) for p in sorted(DATA.glob("*.json"))] if DATA.exists() else []
    if quick is not None:
        records = [r for r in records if r["quick"] == quick]
    if not records:
        return []
    lines = ["| task | rank | numbers per direction (d) | seeds | iterations × N | mean ± 95% CI | per seed |",
             "|---|---|---|---|---|---|---|"]
    groups: dict = {}
    for r in records:
        groups.setdefault((r["task"], r["quick"], r["rank"]), []).append(r)
    for (task, quick_run, rank), runs in sorted(groups.items()):
        runs.sort(key=lambda r: r["seed"])
        mean, half = ci95([r["value"] for r in runs])
        name = f"{task}{' (quick)' if quick_run else ''}, {runs[0]['metric']}"
        per_seed = ", ".join(f"{r['value']:.3f}" for r in runs)
        lines.append(f"| {name} | {'full' if rank == 0 else rank} | {runs[0]['numbers_per_direction']:,} "
                     f"({runs[0]['dim']:,}) | {len(runs)} | {runs[0]['iterations']} × {runs[0]['directions']} | "
                     f"{mean:.3f} ± {half:.3f} | {per_seed} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--quick", action="store_true", help="fewer iterations (cached separately)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    # seeds innermost-but-one: a partial run already has every rank of the first seeds
    for task in args.tasks:
        for seed in range(args.seeds):
            for rank in TASKS[task]["ranks"]:
                record = run_one(task, rank, seed, args.quick)
                print(f"{task} r={rank} seed={seed}: {record['metric']} = {record['value']:.3f} "
                      f"({record['seconds']:.0f} s)", flush=True)

    from benchmarks.common import write_report

    lines = ["# Low-rank directions at equal budget", "", "{HEADER}",
             "Each row: the same job (iterations, directions, mini-batches or episodes) with only "
             "`ars.noise_rank` changed; the final evaluation, mean and 95% t-interval over seeds. "
             "'numbers per direction' is what one direction costs to draw (d for full rank).", "",
             *table(), "",
             "Runs are cached in `reports/data/lowrank/`; delete a file to rerun that job.", ""]
    path = write_report("lowrank", "\n".join(lines))
    print(path.read_text())


if __name__ == "__main__":
    main()
