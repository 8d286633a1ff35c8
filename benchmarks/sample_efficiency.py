"""Episodes to reach the ARS paper's thresholds on Gymnasium MuJoCo v5, next to the paper's Table 1.

Each run trains with the paper's hyperparameters (Mania et al. 2018, Table 9), evaluates the
unperturbed policy every few iterations (mean return of `eval_episodes` episodes, no shift),
and stops when that mean reaches the threshold or the episode budget is spent. Episodes counted
are training rollouts (2N per iteration), as in the paper; evaluation episodes are not counted.

    python benchmarks/sample_efficiency.py                 # 3 seeds per task, 2 processes
    python benchmarks/sample_efficiency.py --seeds 5 --jobs 4 --tasks Swimmer
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TASKS = {
    # name: (env, version, alpha, N, b, nu, shift, threshold, paper episodes (Table 1), budget, eval every)
    "Swimmer": ("Swimmer-v5", "v1t", 0.02, 1, 1, 0.01, 0.0, 325, 100, 1000, 5),
    "Hopper": ("Hopper-v5", "v2t", 0.01, 8, 4, 0.025, 1.0, 3120, 1973, 8000, 5),
    "HalfCheetah": ("HalfCheetah-v5", "v2t", 0.02, 32, 4, 0.03, 0.0, 3430, 1707, 5000, 2),
}


def run_one(args) -> dict:
    name, seed, budget_scale, deadline = args
    import torch

    torch.set_num_threads(1)
    from arsearch.callbacks import Callback
    from arsearch.config import load_job
    from arsearch.trainer import Trainer

    env, version, alpha, n, b, nu, shift, threshold, _, budget, every = TASKS[name]
    budget = int(budget * budget_scale)
    iterations = math.ceil(budget / (2 * n))
    cfg = load_job(data={
        "seed": seed,
        "task": {"kind": "rl", "env": env, "policy": "linear", "horizon": 1000, "shift": shift, "eval_episodes": 5},
        "ars": {"version": version, "step_size": alpha, "directions": n, "top": b, "noise": nu,
                "iterations": iterations, "backend": "vectorized"},
        "eval": {"every": every}, "tracking": {"enabled": False},
        "checkpoint": {"dir": f"/tmp/arsearch-bench/{name}-{seed}-{os.getpid()}", "every": 10 ** 9},
    })

    class Watch(Callback):
        def __init__(self):
            self.curve, self.reached = [], None

        def on_eval(self, trainer, iteration, metrics):
            episodes = trainer.task.counters.get("episodes", 0)
            self.curve.append((episodes, metrics["eval/return"]))
            if metrics["eval/return"] >= threshold and self.reached is None:
                self.reached = episodes
                trainer.request_stop()
            if deadline and time.time() > deadline:   # the whole benchmark's wall-clock limit
                trainer.request_stop()

    watch = Watch()
    start = time.perf_counter()
    trainer = Trainer(cfg, callbacks=[watch], progress=False)
    result = trainer.run()
    return {"task": name, "seed": seed, "reached_at": watch.reached, "episodes": result["count/episodes"],
            "final_return": watch.curve[-1][1], "best_return": max(r for _, r in watch.curve),
            "wall_s": time.perf_counter() - start, "curve": watch.curve}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--budget-scale", type=float, default=1.0, help="multiply every episode budget")
    parser.add_argument("--swimmer-seeds", type=int, default=None, help="seeds for Swimmer (default: --seeds)")
    parser.add_argument("--deadline", type=float, default=0, help="stop every run after this many seconds (0: none)")
    args = parser.parse_args()

    deadline = time.time() + args.deadline if args.deadline else 0
    seeds = {t: (args.swimmer_seeds or args.seeds) if t == "Swimmer" else args.seeds for t in args.tasks}
    # longest tasks first, so that a --deadline cuts the short ones last
    work = [(t, s, args.budget_scale, deadline) for t in reversed(args.tasks) for s in range(seeds[t])]
    start = time.perf_counter()
    with mp.get_context("spawn").Pool(args.jobs) as pool:
        runs = pool.map(run_one, work, chunksize=1)
    runs.sort(key=lambda r: (list(TASKS).index(r["task"]), r["seed"]))
    total = time.perf_counter() - start

    from benchmarks.common import REPORTS, write_report

    REPORTS.mkdir(exist_ok=True)
    (REPORTS / "sample_efficiency.json").write_text(json.dumps(runs, indent=1))
    _plot(runs, REPORTS / "sample_efficiency.png")
    lines = ["# Sample efficiency on MuJoCo v5 (ARS paper thresholds)", "", "{HEADER}",
             f"Seeds per task: {seeds}; {args.jobs} runs in parallel; total wall-clock {total / 60:.1f} min"
             + (f" (each run stopped at the {args.deadline:.0f} s deadline at the latest)." if args.deadline else "."),
             "Hyperparameters are the paper's (Table 9); environments are Gymnasium's MuJoCo **v5**, not the paper's v1 "
             "(the v1 environments no longer exist), so thresholds are compared across environment versions.", "",
             "| task | version, α, N, b, ν, shift | threshold | paper: episodes | arsearch: episodes to threshold (per seed) "
             "| reached | median episodes | best return (per seed) | wall-clock per run |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name in args.tasks:
        env, version, alpha, n, b, nu, shift, threshold, paper, budget, _ = TASKS[name]
        rs = [r for r in runs if r["task"] == name]
        reached = [r["reached_at"] for r in rs if r["reached_at"] is not None]
        per_seed = ", ".join(str(r["reached_at"]) if r["reached_at"] is not None
                             else f">{int(r['episodes'])}" for r in rs)
        median = sorted(reached)[len(reached) // 2] if len(reached) == len(rs) else "—"
        best = ", ".join(f"{r['best_return']:.0f}" for r in rs)
        wall = ", ".join(f"{r['wall_s']:.0f} s" for r in rs)
        lines.append(f"| {env} | {version}, {alpha}, {n}, {b}, {nu}, {shift} | {threshold} | {paper} | {per_seed} | "
                     f"{len(reached)}/{len(rs)} | {median} | {best} | {wall} |")
    lines += ["", "`>E` means the threshold was not reached within the budget of E training episodes.",
              "Learning curves (evaluation return against training episodes): `sample_efficiency.png`; raw data: "
              "`sample_efficiency.json`.", ""]
    print(write_report("sample_efficiency", "\n".join(lines)))


def _plot(runs, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted({r["task"] for r in runs}, key=list(TASKS).index)
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 3.6), squeeze=False)
    for ax, name in zip(axes[0], names):
        for r in runs:
            if r["task"] == name:
                xs, ys = zip(*r["curve"])
                ax.plot(xs, ys, label=f"seed {r['seed']}")
        ax.axhline(TASKS[name][7], color="k", ls="--", lw=1, label="threshold")
        ax.axvline(TASKS[name][8], color="gray", ls=":", lw=1, label="paper episodes")
        ax.set_title(TASKS[name][0])
        ax.set_xlabel("training episodes")
        ax.set_ylabel("evaluation return")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
