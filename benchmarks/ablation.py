"""Ablation of the population strategies: each on and off, several seeds, equal budget.

    nice -n 10 python benchmarks/ablation.py                 # default: 5 seeds, ~8 min on 2 busy cores
    python benchmarks/ablation.py --seeds 10 --scale 3 --workers 16   # a bigger run on a big machine

For each task (digits with a 64-16-10 MLP; Swimmer-v5 with a linear policy) and each variant, a
job runs until it has spent the same budget — forward passes of single examples on digits
(`count/forward_examples`, which includes annealing's 2K extra scores and prioritised sampling's
priority updates), episodes on Swimmer (`count/episodes`) — and the best learner is then scored
on held-out data (test accuracy; mean return of 3 evaluation episodes, fixed reset seeds, not
counted in the budget). Variants: a population of K learners with no strategy ("none"), each
strategy alone, PSO with weaker coefficients ("pso_soft"), all four together, one learner with K·N directions (same candidates per
iteration), and on digits prioritised mini-batches with no strategy. Writes reports/ablation.md
and reports/ablation.png.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STRATEGIES = ["culling", "annealing", "tabu", "pso"]
# PSO with the textbook coefficients moves learners by about their distance to the bests every
# epoch; "pso_soft" is the same strategy with a weaker pull, to tell the idea from its defaults
PSO_SOFT = {"inertia": 0.5, "cognitive": 0.3, "social": 0.3}

TASKS = {
    "digits": {
        "budget_key": "forward_examples",
        "metric": "eval/accuracy",
        "iterations": 120,   # the budget is what "none" spends in this many iterations
        "job": {"task": {"dataset": "digits", "hidden": [16], "batch_size": 64},
                "ars": {"directions": 8, "top": 4, "step_size": 0.1, "noise": 0.03},
                "population": {"size": 4, "epoch": 10,
                               "culling": {"fraction": 0.5, "mutation": 0.0},
                               "annealing": {"schedule": "exponential", "t0": 0.02, "decay": 0.8},
                               "tabu": {"repulsion": 0.1, "memory": 5, "radius": 0.05},
                               "pso": {}}},
        "extra": ["sampling"],
    },
    "swimmer": {
        "budget_key": "episodes",
        "metric": "eval/return",
        "iterations": 15,
        "job": {"task": {"kind": "rl", "env": "Swimmer-v5", "policy": "linear", "horizon": 80,
                         "eval_episodes": 3},
                "ars": {"directions": 2, "top": 2, "step_size": 0.02, "noise": 0.03},
                "population": {"size": 4, "epoch": 3,
                               "culling": {"fraction": 0.5, "mutation": 0.0},
                               "annealing": {"schedule": "exponential", "t0": 1.0, "decay": 0.8},
                               "tabu": {"repulsion": 0.1, "memory": 5, "radius": 0.01},
                               "pso": {}}},
        "extra": [],
    },
}


def variants(task: str) -> list[str]:
    return ["none", *STRATEGIES, "pso_soft", "all", "single", *TASKS[task]["extra"]]


def job_data(task: str, variant: str, seed: int, scale: float) -> dict:
    import copy

    spec = TASKS[task]
    data = copy.deepcopy(spec["job"])
    data["seed"] = seed
    data["ars"]["iterations"] = 10 ** 6          # the budget stops the run, not the iteration count
    data["tracking"] = {"enabled": False}
    data["checkpoint"] = {"dir": f"/tmp/arsearch-ablation/{os.getpid()}"}
    pop = data["population"]
    pop["strategies"] = {"none": [], "all": list(STRATEGIES), "sampling": [], "pso_soft": ["pso"]}.get(variant, [variant])
    if variant == "pso_soft":
        pop["pso"] = dict(PSO_SOFT)
    if variant == "single":
        k = pop["size"]
        data["ars"]["directions"] *= k
        data["ars"]["top"] *= k
        del data["population"]
    if variant == "sampling":
        data["sampling"] = {"alpha": 0.6, "beta": 0.4}
    return data


def budget(task: str, scale: float) -> int:
    spec = TASKS[task]
    pop, ars = spec["job"]["population"], spec["job"]["ars"]
    per_candidate = spec["job"]["task"].get("batch_size", 1) if spec["budget_key"] == "forward_examples" else 1
    return int(round(spec["iterations"] * scale)) * pop["size"] * 2 * ars["directions"] * per_candidate


def run_one(args) -> dict:
    task, variant, seed, scale = args
    import torch

    torch.set_num_threads(1)
    from arsearch.config import load_job
    from arsearch.trainer import Trainer

    config = load_job(data=job_data(task, variant, seed, scale))
    if variant == "sampling":   # β anneals over the iterations the budget allows
        config.ars.iterations = int(round(TASKS[task]["iterations"] * scale))
    trainer = Trainer(config, progress=False)
    if variant == "sampling":
        trainer.task.sampler.iterations = config.ars.iterations
    limit, key = budget(task, scale), TASKS[task]["budget_key"]
    start, iteration = time.perf_counter(), 0
    while trainer.task.counters.get(key, 0) < limit:
        trainer.learner.step(iteration)
        iteration += 1
    score = trainer.evaluate()[TASKS[task]["metric"]]
    trainer.task.close()
    return {"task": task, "variant": variant, "seed": seed, "score": float(score), "iterations": iteration,
            "spent": int(trainer.task.counters[key]), "seconds": time.perf_counter() - start}


def t_quantile(df: int) -> float:
    from scipy import stats

    return float(stats.t.ppf(0.975, df))


def mean_ci(values) -> tuple[float, float]:
    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return float(v.mean()), float("nan")
    return float(v.mean()), t_quantile(len(v) - 1) * float(v.std(ddof=1)) / math.sqrt(len(v))


def welch(a, b) -> tuple[float, float]:
    """Difference of means a − b and the half-width of its 95% CI (Welch–Satterthwaite)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return float(a.mean() - b.mean()), 0.0
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    return float(a.mean() - b.mean()), t_quantile(max(1, int(df))) * se


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every budget")
    parser.add_argument("--workers", type=int, default=1, help="processes (default 1: the machine is shared)")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--out", default=str(ROOT / "reports"))
    args = parser.parse_args(argv)
    jobs = [(t, v, s, args.scale) for t in args.tasks for v in variants(t) for s in range(args.seeds)]
    start = time.perf_counter()
    results = []
    if args.workers > 1:
        with ProcessPoolExecutor(args.workers) as pool:
            results = list(pool.map(run_one, jobs))
    else:
        for j in jobs:
            results.append(run_one(j))
            r = results[-1]
            print(f"{r['task']:8s} {r['variant']:10s} seed {r['seed']}: {r['score']:.4f} "
                  f"({r['iterations']} it, {r['seconds']:.1f}s)", flush=True)
    wall = time.perf_counter() - start
    write_report(results, args, wall, Path(args.out))
    return 0


def write_report(results, args, wall, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    by = {}
    for r in results:
        by.setdefault((r["task"], r["variant"]), []).append(r)
    lines = ["# Population strategies: ablation", "",
             f"Regenerate: `nice -n 10 python benchmarks/ablation.py --seeds {args.seeds} --scale {args.scale}"
             f"{' --workers ' + str(args.workers) if args.workers > 1 else ''}` "
             f"({wall / 60:.1f} min wall-clock here, {args.workers} process(es), 2 shared CPU cores, "
             "torch.set_num_threads(1)).", "",
             "What is measured: the held-out score of the best learner after an **equal budget** per run "
             "(forward passes of single examples on digits, including annealing's extra scoring and the "
             "priority updates of prioritised sampling; training episodes on Swimmer, including annealing's). "
             "Each variant is run with seeds 0.." + str(args.seeds - 1) + "; the table gives the mean ± the "
             "half-width of the 95% confidence interval (Student t), and the difference to `none` (the same "
             "population with no strategy) with its 95% CI (Welch). A difference whose CI contains 0 is not "
             "a measured effect.", ""]
    fig, axes = plt.subplots(1, len(args.tasks), figsize=(6 * len(args.tasks), 4), squeeze=False)
    for ax, task in zip(axes[0], args.tasks):
        spec = TASKS[task]
        job = spec["job"]
        lines += [f"## {task}", "",
                  f"Job: `{job['task']}`, ARS `{job['ars']}`, population size {job['population']['size']}, "
                  f"epoch {job['population']['epoch']} iterations. Strategy settings: "
                  + ", ".join(f"{s} `{job['population'][s]}`" for s in STRATEGIES) + ".",
                  f"Budget: {budget(task, args.scale):,} {spec['budget_key'].replace('_', ' ')} per run "
                  f"(what `none` spends in {int(round(spec['iterations'] * args.scale))} iterations). "
                  f"Score: `{spec['metric']}` of the best learner.", "",
                  "| variant | mean ± 95% CI | Δ vs none ± 95% CI | iterations | per-seed scores |",
                  "|---|---|---|---|---|"]
        base = [r["score"] for r in by[(task, "none")]]
        names, means, cis = [], [], []
        for v in variants(task):
            rows = by.get((task, v), [])
            scores = [r["score"] for r in rows]
            m, ci = mean_ci(scores)
            d, dci = welch(scores, base) if v != "none" else (0.0, 0.0)
            verdict = "" if v == "none" else (" (better)" if d - dci > 0 else " (worse)" if d + dci < 0 else "")
            its = f"{np.mean([r['iterations'] for r in rows]):.0f}"
            lines.append(f"| {v} | {m:.4g} ± {ci:.2g} | {'—' if v == 'none' else f'{d:+.3g} ± {dci:.2g}{verdict}'} "
                         f"| {its} | {', '.join(f'{s:.3g}' for s in scores)} |")
            names.append(v)
            means.append(m)
            cis.append(ci)
        lines.append("")
        ax.bar(names, means, yerr=cis, capsize=4, color=["#888"] + ["#4a7ab5"] * (len(names) - 1))
        ax.set_title(f"{task}: {spec['metric']} at equal budget ({args.seeds} seeds, 95% CI)")
        ax.tick_params(axis="x", rotation=30)
        lo = min(m - (c if c == c else 0) for m, c in zip(means, cis))
        hi = max(m + (c if c == c else 0) for m, c in zip(means, cis))
        ax.set_ylim(lo - 0.1 * (hi - lo + 1e-9), hi + 0.1 * (hi - lo + 1e-9))
    fig.tight_layout()
    fig.savefig(out / "ablation.png", dpi=110)
    lines += ["![ablation](ablation.png)", ""]
    (out / "ablation.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out / 'ablation.md'} and {out / 'ablation.png'}")


if __name__ == "__main__":
    sys.exit(main())
