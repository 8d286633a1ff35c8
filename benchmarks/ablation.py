"""Population strategies against single learners at equal budget: a resumable benchmark.

    nice -n 10 python benchmarks/ablation.py --task digits                 # 5 seeds, ~10 min on 2 cores
    nice -n 10 python benchmarks/ablation.py --task swimmer --seeds 10 --workers 8
    nice -n 10 python benchmarks/ablation.py --task hopper --seeds 5 --workers 8
    nice -n 15 python benchmarks/ablation.py --task rastrigin ackley           # 10 seeds, 100 and 1000 dims, ~20 min
    python benchmarks/ablation.py --report-only                             # rebuild the report from the cache
    python benchmarks/ablation.py --smoke                                   # every task and variant, tiny budgets

Every run (task, variant, seed) is cached as JSON under ``reports/data/ablation/<task>/`` with
its fully resolved job config, and skipped when it is there with the same config (a run cached
before a default changed is stale and runs again), so an interrupted or partial campaign resumes where it stopped and
several invocations (one per task, on different machines) fill the same cache. The report
(``reports/ablation.md`` and ``reports/ablation.png``) is rebuilt from whatever the cache holds
after every invocation, and lists the cells still missing. ``--smoke`` writes to
``reports/data/ablation-smoke/`` and ``reports/ablation-smoke.md`` instead, never mixing with the
real cache.

Budgets go through the job's ``[stop]`` table, so every run of a task spends the same: training
forward examples on digits, training episodes on Swimmer and Hopper (every learner, annealing's
re-scoring and epoch-evaluation fitness included; evaluation is counted apart). All variants of
a task run on the same seeds. Strategies run at their defaults (the unit-free coefficients of
docs/population.md); nothing is tuned per task.

Tasks (the issue's regimes):

- **digits**: 64-16-10 MLP, accuracy at an equal forward-example budget;
- **swimmer**: Swimmer-v5, horizon 1000, the paper's V1 settings per learner (N = 1, b = 1,
  α = 0.02, ν = 0.01); success = evaluation return ≥ 325 within 2000 episodes;
- **hopper**: Hopper-v5, horizon 1000, the paper's V2-t settings (N = 8, b = 4, α = 0.01,
  ν = 0.025, survival bonus shift 1); episodes to an evaluation return ≥ 3120 within 6000;
- **rastrigin-100, rastrigin-1000, ackley-100, ackley-1000** (``--task rastrigin`` runs both
  dimensions, as does ``--task ackley``): ``task.kind = "function"``, the benchmark's value f(θ)
  at an equal budget of 64,000 function evaluations (lower is better), θ₀ uniform over the usual
  domain [−w, w]^d (w = 5.12, 32.768). ARS V1-t with N = 8, b = 4 and its step and noise in units
  of the domain (α = 0.01·w, ν = 0.04·w: one rule for both functions, not tuned per variant).
  The multimodal home ground of annealing, tabu and particle swarms: the textbook expects them
  to beat a single local searcher here.

Variants: one learner with N directions (``single_n``), one with K·N directions and K·b kept
(``single_kn``), a population of K learners with no strategy (``none``), each strategy alone,
PBT exploit/explore with per-learner step size and noise spread over [v/3, 3v] (``pbt``), and
everything together (``all``). On digits also the fitness choice: culling with the fitness of the
last iteration alone (``culling_last``) and with an epoch evaluation (``culling_eval``); the
plain ``culling`` uses the default exponential moving average.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STRATEGIES = ["culling", "annealing", "tabu", "pso"]
K = 4   # learners in every population variant

TASKS = {
    "digits": {
        "budget_key": "forward_examples", "metric": "eval/accuracy", "seeds": 5,
        "budget": 491_520,              # = 120 population iterations of 4 × 2·8 candidates × 64 examples
        "smoke_budget": 40_960,
        "job": {"task": {"dataset": "digits", "hidden": [16], "batch_size": 64},
                "ars": {"version": "v1t", "directions": 8, "top": 4, "step_size": 0.1, "noise": 0.03},
                "population": {"size": K, "epoch": 10},
                "eval": {"every": 10}},
        "extra": ["culling_last", "culling_eval"],
    },
    "swimmer": {
        "budget_key": "episodes", "metric": "eval/return", "seeds": 10, "target": 325.0,
        "criterion": "success rate", "budget": 2000, "smoke_budget": 24,
        "job": {"task": {"kind": "rl", "env": "Swimmer-v5", "policy": "linear", "horizon": 1000,
                         "eval_episodes": 5},
                "ars": {"version": "v1", "directions": 1, "top": 1, "step_size": 0.02, "noise": 0.01},
                "population": {"size": K, "epoch": 10},
                "eval": {"every_episodes": 80}},
        "smoke_job": {"task": {"horizon": 50, "eval_episodes": 1}, "eval": {"every_episodes": 8},
                      "population": {"epoch": 1}},
        "extra": [],
    },
    "hopper": {
        "budget_key": "episodes", "metric": "eval/return", "seeds": 5, "target": 3120.0,
        "criterion": "episodes to target", "budget": 6000, "smoke_budget": 128,
        "job": {"task": {"kind": "rl", "env": "Hopper-v5", "policy": "linear", "horizon": 1000,
                         "eval_episodes": 5, "shift": 1.0},
                "ars": {"version": "v2t", "directions": 8, "top": 4, "step_size": 0.01, "noise": 0.025},
                "population": {"size": K, "epoch": 5},
                "eval": {"every_episodes": 256}},
        "smoke_job": {"task": {"horizon": 30, "eval_episodes": 1}, "eval": {"every_episodes": 64},
                      "population": {"epoch": 1}},
        "extra": [],
    },
}


def function_task(function: str, dim: int, half_width: float) -> dict:
    return {
        "budget_key": "forward_examples", "metric": "eval/value", "minimize": True, "seeds": 10,
        "budget": 64_000,               # = 1000 population iterations of 4 × 2·8 candidates (one evaluation each)
        "smoke_budget": 1_280, "fmt": ".4g", "spend_label": "function evaluations (forward examples)",
        "job": {"task": {"kind": "function", "function": function, "dim": dim},
                "ars": {"version": "v1t", "directions": 8, "top": 4, "step_size": round(0.01 * half_width, 6),
                        "noise": round(0.04 * half_width, 6)},
                "population": {"size": K, "epoch": 10},
                "eval": {"every": 25}},
        "extra": [],
    }


for _function, _w in (("rastrigin", 5.12), ("ackley", 32.768)):
    for _dim in (100, 1000):
        TASKS[f"{_function}-{_dim}"] = function_task(_function, _dim, _w)
# --task names that stand for several tasks
ALIASES = {"rastrigin": ["rastrigin-100", "rastrigin-1000"], "ackley": ["ackley-100", "ackley-1000"]}


def variants(task: str) -> list[str]:
    return ["single_n", "single_kn", "none", *STRATEGIES, "pbt", "all", *TASKS[task]["extra"]]


def merge(dst: dict, src: dict) -> dict:
    for key, value in src.items():
        if isinstance(value, dict) and isinstance(dst.get(key), dict):
            merge(dst[key], value)
        else:
            dst[key] = copy.deepcopy(value)
    return dst


def job_data(task: str, variant: str, seed: int, smoke: bool, directory: str) -> dict:
    spec = TASKS[task]
    data = copy.deepcopy(spec["job"])
    if smoke:
        merge(data, spec.get("smoke_job", {}))
    data["seed"] = seed
    data["ars"]["iterations"] = 10 ** 7          # the [stop] budget ends the run, not the iteration count
    data["tracking"] = {"enabled": False}
    data["checkpoint"] = {"dir": directory, "every": 10 ** 7}
    stop = {spec["budget_key"]: spec["smoke_budget"] if smoke else spec["budget"]}
    if "target" in spec:
        stop["target"] = {"metric": spec["metric"], "value": spec["target"]}
    data["stop"] = stop
    pop, ars = data["population"], data["ars"]
    if variant in ("single_n", "single_kn"):
        del data["population"]
        if variant == "single_kn":
            ars["directions"] *= K
            ars["top"] *= K
        return data
    base = variant.split("_")[0]
    pop["strategies"] = {"none": [], "all": [*STRATEGIES, "pbt"]}.get(base, [base])
    if base in ("pbt", "all"):
        pop["init"] = {"step_size": [ars["step_size"] / 3, ars["step_size"] * 3],
                       "noise": [ars["noise"] / 3, ars["noise"] * 3]}
    if variant.endswith("_last"):
        pop["fitness"] = "last"
    if variant.endswith("_eval"):
        pop["fitness"] = "eval"
    return data


def cache_dir(smoke: bool) -> Path:
    return ROOT / "reports" / "data" / ("ablation-smoke" if smoke else "ablation")


def cache_path(task: str, variant: str, seed: int, smoke: bool) -> Path:
    return cache_dir(smoke) / task / variant / f"seed{seed}.json"


def resolved(task: str, variant: str, seed: int, smoke: bool) -> dict:
    """The fully resolved job config of a run (code defaults included), as cached with its result:
    a cached run whose config differs (a default changed since) is stale and runs again."""
    from arsearch.config import load_job, to_dict

    data = to_dict(load_job(data=job_data(task, variant, seed, smoke, "-")))
    for where_it_is_logged in ("checkpoint", "tracking"):     # neither changes what a run computes
        data.pop(where_it_is_logged, None)
    return json.loads(json.dumps(data))


def cached(task: str, variant: str, seed: int, smoke: bool) -> bool:
    path = cache_path(task, variant, seed, smoke)
    if not path.exists():
        return False
    saved = json.loads(path.read_text()).get("config")
    return saved is not None and _with_defaults(saved) == resolved(task, variant, seed, smoke)


def _with_defaults(saved: dict) -> dict | None:
    """A cached run's config with the keys added to arsearch since it ran set to their defaults (a new
    key's default leaves the job as it was); None when a key it names no longer exists."""
    from arsearch.config import ConfigError, load_job, to_dict

    try:
        data = to_dict(load_job(data={**saved, "checkpoint": {"dir": "-"}}))
    except ConfigError:
        return None
    for where_it_is_logged in ("checkpoint", "tracking"):
        data.pop(where_it_is_logged, None)
    return json.loads(json.dumps(data))


def run_one(args) -> dict:
    task, variant, seed, smoke = args
    import torch

    torch.set_num_threads(1)
    from arsearch.config import load_job
    from arsearch.trainer import Trainer

    spec = TASKS[task]
    with tempfile.TemporaryDirectory(prefix="arsearch-ablation-") as tmp:
        data = job_data(task, variant, seed, smoke, tmp)
        config = load_job(data=data)
        trainer = Trainer(config, progress=False)
        initial = trainer.task.value() if hasattr(trainer.task, "value") else None   # a function task's f(θ₀)
        start = time.perf_counter()
        result = trainer.run()
    key = f"count/{spec['budget_key']}"
    curve = [(float(h[key]), float(h[spec["metric"]])) for h in trainer.history if spec["metric"] in h]
    out = {"task": task, "variant": variant, "seed": seed, "smoke": smoke,
           "score": float(result[spec["metric"]]), "spent": float(result[key]),
           "iterations": int(result["iterations"]), "stop": result.get("stop/reason"),
           "seconds": time.perf_counter() - start, "curve": curve,
           "config": resolved(task, variant, seed, smoke)}
    if "target" in spec:
        hit = next((spent for spent, value in curve if value >= spec["target"]), None)
        out["reached"] = hit is not None
        out["to_target"] = hit
    if initial is not None:
        out["initial"] = initial
    if "lineage" in result:
        out["final_hyperparameters"] = result.get("hyperparameters")
    path = cache_path(task, variant, seed, smoke)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = path.with_suffix(".tmp")
    tmp_path.write_text(json.dumps(out, indent=1) + "\n")
    tmp_path.replace(path)                       # atomic: a killed run never leaves half a cache file
    return out


# -- statistics --------------------------------------------------------------------------------------
def t_quantile(df: float) -> float:
    from scipy import stats

    return float(stats.t.ppf(0.975, df))


def mean_ci(values) -> tuple[float, float]:
    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return float(v.mean()) if len(v) else float("nan"), float("nan")
    return float(v.mean()), t_quantile(len(v) - 1) * float(v.std(ddof=1)) / math.sqrt(len(v))


def welch(a, b) -> tuple[float, float]:
    """Difference of means a − b and the half-width of its 95% CI (Welch–Satterthwaite)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 2 or len(b) < 2:
        return float(a.mean() - b.mean()) if len(a) and len(b) else float("nan"), float("nan")
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return float(a.mean() - b.mean()), 0.0
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    return float(a.mean() - b.mean()), t_quantile(df) * se


def wilson(successes: int, n: int) -> tuple[float, float, float]:
    """A proportion and its 95% Wilson score interval."""
    if n == 0:
        return float("nan"), float("nan"), float("nan")
    z, p = 1.959964, successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return p, max(0.0, centre - half), min(1.0, centre + half)


def newcombe(s1: int, n1: int, s2: int, n2: int) -> tuple[float, float, float]:
    """Difference of two proportions p1 − p2 and its 95% CI (Newcombe's hybrid score method)."""
    p1, l1, u1 = wilson(s1, n1)
    p2, l2, u2 = wilson(s2, n2)
    d = p1 - p2
    return d, d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2), d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)


def reached(run: dict, budget: float) -> bool:
    """The run reached the target within the budget. A run stops at the first iteration boundary at
    or past the budget, so its last iteration may pass it (a Hopper population iteration is 64
    episodes: 94 of them are 6016); a target first reached past the budget does not count."""
    return bool(run["reached"]) and float(run["to_target"]) <= budget


def restricted_episodes(run: dict, budget: float) -> float:
    """Episodes to the target, or the whole budget for a run that never reached it within the budget
    (a censored run: its time to target is more than the budget, so the mean is the restricted mean)."""
    return float(run["to_target"]) if reached(run, budget) else float(budget)


def verdict(lo: float, hi: float) -> str:
    if lo != lo or hi != hi:
        return ""
    return " **better**" if lo > 0 else " **worse**" if hi < 0 else ""


# -- the report --------------------------------------------------------------------------------------
def load_cache(smoke: bool) -> dict:
    by: dict = {}
    root = cache_dir(smoke)
    for path in sorted(root.glob("*/*/seed*.json")):
        r = json.loads(path.read_text())
        if r.get("variant") not in variants(r.get("task", "")) if r.get("task") in TASKS else True:
            continue
        if not cached(r["task"], r["variant"], r["seed"], smoke):
            continue                                  # stale: cached under other defaults
        by.setdefault((r["task"], r["variant"]), {})[r["seed"]] = r
    return by


def task_section(task: str, by: dict, seeds: int, smoke: bool) -> tuple[list[str], list[str]]:
    spec = TASKS[task]
    rl = "target" in spec
    rows = {v: [by.get((task, v), {}).get(s) for s in range(seeds)] for v in variants(task)}
    done = {v: [r for r in rs if r is not None] for v, rs in rows.items()}
    missing = [f"{task}/{v}/seed{s}" for v, rs in rows.items() for s, r in enumerate(rs) if r is None]
    budget = spec["smoke_budget"] if smoke else spec["budget"]
    job = copy.deepcopy(spec["job"])
    if smoke:
        merge(job, spec.get("smoke_job", {}))
    lines = [f"## {task}", "",
             f"Job: task `{job['task']}`, ARS `{job['ars']}` per learner, population K = {K}, epoch "
             f"{job['population']['epoch']} iterations. Budget: {budget:,} training "
             f"{spec.get('spend_label', spec['budget_key'].replace('_', ' '))} per run (`[stop]`). Seeds 0..{seeds - 1}; "
             f"{sum(len(d) for d in done.values())} of {seeds * len(rows)} runs in the cache, "
             f"{sum(r['seconds'] for d in done.values() for r in d) / 60:.1f} min of run time in all "
             "(one thread per run).", ""]
    if not any(done.values()):
        return lines + ["No runs cached yet.", ""], missing
    singles = [v for v in ("single_n", "single_kn") if done[v]]
    if rl:
        target = spec["target"]
        lines += [f"Success = an evaluation return ≥ {target:g} within the budget (evaluation every "
                  f"{job['eval'].get('every_episodes')} training episodes, {job['task']['eval_episodes']} episodes). "
                  "A run stops at the first iteration boundary at or past the budget; a target first reached "
                  "past the budget does not count. "
                  "Success rate with its 95% Wilson interval, differences with Newcombe's interval. Episodes to "
                  f"target with a run that never reached it counted at the budget ({budget:,}): the restricted "
                  "mean of survival analysis, mean ± 95% CI (t), differences with Welch's interval (lower is "
                  f"better). Criterion of the verdict, fixed before the runs by the issue: **{spec['criterion']}**; "
                  "the other columns are context. Final return: mean ± 95% CI (t).", ""]

        def rate(v):
            return sum(reached(r, budget) for r in done[v]), len(done[v])

        def episodes(v):
            return [restricted_episodes(r, budget) for r in done[v]]
        def ranking(v):          # the best single learner on the task's criterion, the other one breaking ties
            by_rate, by_episodes = -rate(v)[0] / rate(v)[1], float(np.mean(episodes(v)))
            return (by_rate, by_episodes) if spec["criterion"] == "success rate" else (by_episodes, by_rate)
        best_single = min(singles, key=ranking) if singles else None
        lines += [f"| variant | runs | success rate [95% CI] | Δ rate vs {best_single} [95% CI] | Δ rate vs none "
                  f"[95% CI] | episodes to target (budget if never) | Δ episodes vs {best_single} | "
                  "Δ episodes vs none | final return |", "|---|---|---|---|---|---|---|---|---|"]
        for v in rows:
            if not done[v]:
                lines.append(f"| {v} | 0 | — | — | — | — | — | — | — |")
                continue
            s, n = rate(v)
            p, lo, hi = wilson(s, n)
            rate_cells, episode_cells = [], []
            for ref in (best_single, "none"):
                if ref is None or ref == v or not done[ref]:
                    rate_cells.append("—")
                    episode_cells.append("—")
                    continue
                d, dlo, dhi = newcombe(s, n, *rate(ref))
                rate_cells.append(f"{d:+.2f} [{dlo:+.2f}, {dhi:+.2f}]{verdict(dlo, dhi)}")
                d, h = welch(episodes(v), episodes(ref))
                episode_cells.append(f"{d:+.0f} ± {h:.0f}{verdict(-d - h, -d + h)}")
            m, ci = mean_ci(episodes(v))
            fm, fci = mean_ci([r["score"] for r in done[v]])
            lines.append(f"| {v} | {n} | {p:.2f} [{lo:.2f}, {hi:.2f}] | {rate_cells[0]} | {rate_cells[1]} | "
                         f"{m:.0f} ± {ci:.0f} | {episode_cells[0]} | {episode_cells[1]} | {fm:.4g} ± {fci:.2g} |")
    else:
        sign, fmt = (-1.0 if spec.get("minimize") else 1.0), spec.get("fmt", ".3f")
        lines += [f"Score: `{spec['metric']}` of the best learner when the budget is spent"
                  f"{' (lower is better)' if sign < 0 else ''}; mean ± half-width "
                  "of the 95% CI (t); differences with Welch's 95% CI. A difference whose CI contains 0 is not "
                  "a measured effect.", ""]

        def scores(v):
            return [r["score"] for r in done[v]]
        best_single = max(singles, key=lambda v: sign * np.mean(scores(v))) if singles else None
        lines += [f"| variant | runs | mean ± 95% CI | Δ vs {best_single} ± 95% CI | Δ vs none ± 95% CI | "
                  "iterations | per-seed |", "|---|---|---|---|---|---|---|"]
        for v in rows:
            if not done[v]:
                lines.append(f"| {v} | 0 | — | — | — | — | — |")
                continue
            m, ci = mean_ci(scores(v))
            cells = []
            for ref in (best_single, "none"):
                if ref is None or ref == v or not done[ref]:
                    cells.append("—")
                    continue
                d, h = welch(scores(v), scores(ref))
                cells.append(f"{d:+{fmt}} ± {h:{fmt}}{verdict(sign * d - h, sign * d + h)}")
            its = np.mean([r["iterations"] for r in done[v]])
            mean_fmt = fmt if "g" in fmt else ".4f"
            lines.append(f"| {v} | {len(done[v])} | {m:{mean_fmt}} ± {ci:{fmt}} | {cells[0]} | {cells[1]} | {its:.0f} | "
                         f"{', '.join(f'{s:{fmt}}' for s in scores(v))} |")
    lines += ["", summary_lines(task, done, best_single, rl, budget), ""]
    if spec.get("minimize") and best_single is not None:
        lines += textbook_lines(task, done, best_single), ""
    return lines, missing


def summary_lines(task: str, done: dict, best_single: str | None, rl: bool, budget: float) -> str:
    """The issue's two criteria for this task, read off the cached runs."""
    if best_single is None:
        return "Verdict: no single-learner runs cached yet."
    pops = [v for v in done if v not in ("single_n", "single_kn") and done[v]]
    beats, harms = [], []
    spec = TASKS[task]

    def outcome(v):
        if not rl:
            sign = -1.0 if spec.get("minimize") else 1.0
            return [sign * r["score"] for r in done[v]]               # oriented: higher is better
        return [-restricted_episodes(r, budget) for r in done[v]]   # fewer episodes is better

    def difference(v, ref) -> tuple[float, float]:
        """The 95% CI of v − ref on the task's criterion, oriented so that > 0 means v is better."""
        if rl and spec["criterion"] == "success rate":
            _, lo, hi = newcombe(sum(reached(r, budget) for r in done[v]), len(done[v]),
                                 sum(reached(r, budget) for r in done[ref]), len(done[ref]))
            return lo, hi
        d, h = welch(outcome(v), outcome(ref))
        return d - h, d + h
    for v in pops:
        lo, _ = difference(v, best_single)
        if lo > 0:
            beats.append(v)
        if done["none"] and v != "none":
            _, hi = difference(v, "none")
            if hi < 0:
                harms.append(v)
    criterion = spec.get("criterion", spec["metric"])
    return (f"Verdict ({task}, on {criterion}): population configurations that beat the best single learner "
            f"({best_single}) with the CI of the difference excluding 0: {', '.join(beats) or 'none'}. Strategies significantly "
            f"worse than `none`: {', '.join(harms) or 'none'}.")


# the strategies the textbook sends to multimodal functions: escaping local minima is their purpose
MULTIMODAL = ["annealing", "tabu", "pso"]
# why the function verdicts come out as they do: written from the cached runs (the numbers in each
# section's diagnostics line are computed); shown under each function task's verdict
_SHARED_CAUSE = (
    "at equal evaluations a population of K = 4 gives each learner a quarter of the iterations, so `none` "
    "starts far behind the best single learner, and annealing, tabu and PSO do not act on what stops ARS "
    "here. Rastrigin's multimodality is per coordinate (about ten basins per coordinate in the domain, 10^d "
    "in all); ARS's own perturbations already smooth it (ν = 0.04·w), and four whole-vector moves cannot "
    "sample that grid: annealing can only undo ARS steps (and spends 2 evaluations per learner per "
    "iteration: 889 iterations instead of 1000), tabu pushes apart learners that are already far apart in "
    "d ≥ 100, and PSO pulls every learner toward the best θ across basin walls, which raises f (worse than "
    "`none` on three of the four tasks). What does help is changing the step: PBT, which spreads α and ν "
    "over [v/3, 3v] and copies the learners whose values work, beats the best single learner on "
    "rastrigin-1000 and ackley-100 (with V1-t the step has a fixed length wherever θ is, so a learner "
    "stalls where that length is too long: the best single learners made at most 7% of their improvement in the budget's "
    "last quarter).")
CAUSES: dict[str, str] = {
    "rastrigin-100": _SHARED_CAUSE + " A single learner with 4000 iterations is the best variant; larger or "
    "smaller α, ν do not help it (side check, seeds 0–2: α, ν ×1 → 620, ×3 → 1111, ×⅓ → 779).",
    "rastrigin-1000": _SHARED_CAUSE + " In 1000 dimensions the 32-direction learner (`single_kn`) is the best "
    "single one: its step averages 16 kept directions.",
    "ackley-100": _SHARED_CAUSE + " Near Ackley's funnel the fixed step is the limit: the 32-direction "
    "learner (`single_kn`, 0.70) and a single learner with α/3 (side check, seeds 0–2: 1.74 against 4.02) "
    "go deeper than `single_n`, and PBT deepest.",
    "ackley-1000": _SHARED_CAUSE + " In 1000 dimensions crossing Ackley's flat plateau takes iterations: the "
    "single learner with all 4000 of them gets to 8.4, the population's learners, with 1000 each, were still "
    "descending when the budget ran out (`none` made half its improvement in the last quarter).",
}


def textbook_lines(task: str, done: dict, best_single: str) -> str:
    """The textbook's claim on a multimodal function, met or not, with the diagnostics behind it."""
    spec = TASKS[task]

    def values(v):
        return [r["score"] for r in done[v]]

    def better(v, ref) -> bool:                 # lower value, the CI of the difference excluding 0
        d, h = welch(values(v), values(ref))
        return d + h < 0
    ran = [v for v in MULTIMODAL if done.get(v)]
    met = [v for v in ran if better(v, best_single)]
    over_none = [v for v in ran if done.get("none") and better(v, "none")]
    fmt = spec.get("fmt", ".4g")
    means = {v: float(np.mean(values(v))) for v in done if done[v]}
    initial = [r["initial"] for r in done[best_single] if "initial" in r]
    start = f" (f(θ₀) {np.mean(initial):{fmt}} on average)" if initial else ""
    line = (f"Textbook claim ({task}): annealing, tabu or PSO beat the best single learner ({best_single}) at equal "
            f"function evaluations: **{'met' if met else 'not met'}**"
            f"{' by ' + ', '.join(met) if met else ''}. Beating a population without a strategy (`none`): "
            f"{', '.join(over_none) or 'none of them'}. Mean final values{start}: "
            + ", ".join(f"{v} {means[v]:{fmt}}" for v in ("single_n", "single_kn", "none", *ran) if v in means) + ".")
    line += " " + descent_line(done, best_single, spec)
    cause = CAUSES.get(task) or CAUSES.get(task.split("-")[0])
    return line + (f" Cause: {cause}" if cause else "")


def value_at(curve: list, spent: float) -> float:
    """A run's evaluated value at the last evaluation at or before `spent` (nan before the first)."""
    before = [v for s, v in curve if s <= spent]
    return before[-1] if before else float("nan")


def descent_line(done: dict, best_single: str, spec: dict) -> str:
    """Whether the learners were still descending when the budget ran out (a learner trapped in a
    local minimum is flat): the share of its final improvement over f(θ₀) made in the budget's last
    quarter, for the best single learner and for a population without a strategy."""
    parts = []
    for v in (best_single, "none"):
        shares = []
        for r in done.get(v, []):
            if not r["curve"] or "initial" not in r:
                continue
            total = r["initial"] - r["curve"][-1][1]
            late = value_at(r["curve"], 0.75 * spec["budget"]) - r["curve"][-1][1]
            if total > 0 and late == late:
                shares.append(late / total)
        if shares:
            its = np.mean([r["iterations"] for r in done[v]])
            share = round(100 * float(np.mean(shares))) + 0          # + 0: no "-0"
            parts.append(f"{v} made {share}% of its improvement in the last quarter of the "
                         f"budget ({its:.0f} iterations{' per learner' if v == 'none' else ''})")
    return ("Still descending at the end: " + "; ".join(parts) + ".") if parts else ""


def plot(by: dict, tasks: list[str], seeds: int, out: Path, smoke: bool = False) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with_target = any("target" in TASKS[t] for t in tasks)
    fig, axes = plt.subplots(2 if with_target else 1, len(tasks), figsize=(6.5 * len(tasks), 9 if with_target else 4.5),
                             squeeze=False)
    colors = plt.get_cmap("tab20").colors
    for column, task in enumerate(tasks):
        ax = axes[0][column]
        spec = TASKS[task]
        for i, v in enumerate(variants(task)):
            runs = [r for s, r in sorted(by.get((task, v), {}).items()) if s < seeds]
            if not runs:
                continue
            # the curves are on each run's own evaluation grid: interpolate onto a common spend grid
            top = max(r["curve"][-1][0] for r in runs if r["curve"])
            grid = np.linspace(0, top, 50)
            ys = []
            for r in runs:
                xs, vals = zip(*r["curve"]) if r["curve"] else ((0.0,), (float("nan"),))
                # a run stopped at its target keeps its last value
                ys.append(np.interp(grid, xs, vals, left=np.nan, right=vals[-1]))
            ys = np.array(ys)
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)      # grid points before any run's first evaluation
                mean = np.nanmean(ys, 0)
                half = (np.nanstd(ys, 0, ddof=1) / np.sqrt(len(runs)) * t_quantile(len(runs) - 1)
                        if len(runs) > 1 else None)
            style = "--" if v.startswith("single") else "-"
            ax.plot(grid, mean, style, color=colors[i % len(colors)], label=v, lw=1.6 if style == "--" else 1.1)
            if half is not None:
                ax.fill_between(grid, mean - half, mean + half, color=colors[i % len(colors)], alpha=0.08)
        if "target" in spec:
            ax.axhline(spec["target"], color="k", lw=0.8, ls=":")
        if not ax.lines or len(ax.lines) == ("target" in spec):
            ax.text(0.5, 0.5, "no runs cached yet", ha="center", va="center", transform=ax.transAxes)
        if spec.get("minimize") and ax.lines:
            ax.set_yscale("log")
        ax.set_title(f"{task}: {spec['metric']} against spend (mean, 95% CI band)")
        ax.set_xlabel(f"training {spec.get('spend_label', spec['budget_key'].replace('_', ' '))}")
        ax.set_ylabel(spec["metric"])
        if len(ax.lines) > ("target" in spec):
            ax.legend(fontsize=7, ncol=2)
        if with_target:
            success_panel(axes[1][column], task, by, seeds, colors, smoke)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def success_panel(ax, task: str, by: dict, seeds: int, colors, smoke: bool) -> None:
    """The share of seeds that have reached the target against spend: the criterion itself, read
    as an empirical distribution of episodes to target (a seed that never reached it never counts)."""
    spec = TASKS[task]
    if "target" not in spec:
        ax.axis("off")
        return
    budget = spec["smoke_budget"] if smoke else spec["budget"]
    for i, v in enumerate(variants(task)):
        runs = [r for s, r in sorted(by.get((task, v), {}).items()) if s < seeds]
        if not runs:
            continue
        hits = sorted(r["to_target"] for r in runs if reached(r, budget))
        xs = [0.0, *hits, float(budget)]
        ys = [0.0, *[(k + 1) / len(runs) for k in range(len(hits))], len(hits) / len(runs)]
        ax.step(xs, ys, where="post", ls="--" if v.startswith("single") else "-",
                color=colors[i % len(colors)], label=f"{v} ({len(hits)}/{len(runs)})")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"{task}: share of seeds at {spec['metric']} ≥ {spec['target']:g} against spend")
    ax.set_xlabel(f"training {spec['budget_key'].replace('_', ' ')}")
    ax.set_ylabel("share of seeds at target")
    if ax.lines:
        ax.legend(fontsize=7, ncol=2, loc="lower right")
    else:
        ax.text(0.5, 0.5, "no runs cached yet", ha="center", va="center", transform=ax.transAxes)


def write_report(tasks: list[str], seeds: dict, smoke: bool, note: str) -> Path:
    by = load_cache(smoke)
    name = "ablation-smoke" if smoke else "ablation"
    out = ROOT / "reports"
    lines = [f"# Population strategies against single learners{' (smoke run: tiny budgets, not a measurement)' if smoke else ''}",
             "", "<!-- generated by benchmarks/ablation.py from the runs cached under "
             f"reports/data/{name}/; do not edit by hand -->", "",
             "Regenerate (resumable: cached runs are skipped, the report is rebuilt from the cache):",
             "`nice -n 10 python benchmarks/ablation.py --task digits` · `--task swimmer --seeds 10` · "
             "`--task hopper --seeds 5` · `nice -n 15 python benchmarks/ablation.py --task rastrigin ackley` "
             "(add `--workers P` on a larger machine); `--report-only` rebuilds this file.",
             "", note, ""]
    # every cached seed is reported, even past a task's own count (a campaign run with more seeds)
    seeds = {t: max([seeds[t]] + [s + 1 for (task, _), runs in by.items() if task == t for s in runs])
             for t in tasks}
    all_missing = []
    # the function tasks (f(θ) against evaluations, log scale) get a figure of their own
    groups = [[t for t in tasks if not TASKS[t].get("minimize")], [t for t in tasks if TASKS[t].get("minimize")]]
    for group, suffix in zip(groups, ("", "-functions")):
        if not group:
            continue
        if suffix:
            lines += ["## Multimodal functions (`task.kind = \"function\"`)", "",
                      "The cheap home ground of annealing, tabu and particle swarms: Rastrigin (a grid of local "
                      "minima on a bowl) and Ackley (a rippled plateau around one funnel) at 100 and 1000 "
                      "dimensions, every variant at the same number of function evaluations.", ""]
        sections = []
        for task in group:
            section, missing = task_section(task, by, seeds[task], smoke)
            sections += section
            all_missing += missing
        claims = [line for line in sections if line.startswith("Textbook claim")]
        if claims:
            met = [line.split("(")[1].split(")")[0] for line in claims if "**met**" in line]
            lines += [f"Verdict over the {len(claims)} function tasks: the textbook claim (annealing, tabu or PSO "
                      f"beat the best single learner at equal evaluations) is **{'met' if met else 'not met'}**"
                      f"{' on ' + ', '.join(met) if met else ' on any of them'}; each task's cause is under its "
                      f"table.", ""]
        lines += sections
        lines += [f"![score against spend]({name}{suffix}.png)", ""]
        plot(by, group, max(seeds[t] for t in group), out / f"{name}{suffix}.png", smoke)
    lines += ["## Missing cells", ""]
    if all_missing:
        by_task: dict = {}
        for m in all_missing:
            t, v, s = m.split("/")
            by_task.setdefault((t, v), []).append(s)
        lines += [f"- {t}/{v}: {', '.join(s)}" for (t, v), s in by_task.items()]
    else:
        lines.append("None: every (task, variant, seed) cell is cached.")
    lines.append("")
    path = out / f"{name}.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", nargs="+", choices=[*TASKS, *ALIASES], default=None,
                        help="tasks to run (default: digits when not --smoke; every task with --smoke); "
                             "rastrigin and ackley stand for their 100- and 1000-dimensional tasks")
    parser.add_argument("--seeds", type=int, default=None, help="seeds 0..S-1 (default: the task's own)")
    parser.add_argument("--variants", nargs="+", default=None, help="only these variants")
    parser.add_argument("--workers", type=int, default=1, help="processes (default 1: the machine is shared)")
    parser.add_argument("--smoke", action="store_true", help="tiny budgets, 2 seeds, separate cache and report")
    parser.add_argument("--report-only", action="store_true", help="run nothing; rebuild the report from the cache")
    args = parser.parse_args(argv)
    tasks = [t for name in args.task for t in ALIASES.get(name, [name])] if args.task else \
        (list(TASKS) if args.smoke else ["digits"])
    tasks = list(dict.fromkeys(tasks))
    seeds = {t: args.seeds or (2 if args.smoke else TASKS[t]["seeds"]) for t in TASKS}
    # seed-major: an interrupted campaign leaves whole seeds (every variant on the same seeds), and one
    # invocation keeps its workers busy across seeds instead of waiting for each seed's slowest run
    jobs = [] if args.report_only else [
        (t, v, s, args.smoke) for s in range(max(seeds[t] for t in tasks)) for t in tasks if s < seeds[t]
        for v in variants(t) if (not args.variants or v in args.variants) and not cached(t, v, s, args.smoke)]
    print(f"{len(jobs)} runs to do ({'smoke' if args.smoke else 'full'}); cache {cache_dir(args.smoke)}", flush=True)
    start = time.perf_counter()

    def show(r):
        extra = f", reached at {r['to_target']:.0f}" if r.get("reached") else ""
        print(f"{r['task']:8s} {r['variant']:13s} seed {r['seed']}: {r['score']:.4g} "
              f"({r['iterations']} it, {r['spent']:.0f} spent, {r['seconds']:.1f}s{extra})", flush=True)
    if args.workers > 1 and jobs:
        with ProcessPoolExecutor(args.workers) as pool:
            for f in as_completed([pool.submit(run_one, j) for j in jobs]):
                show(f.result())
    else:
        for j in jobs:
            show(run_one(j))
    wall = time.perf_counter() - start
    report_tasks = list(TASKS) if not args.smoke else tasks
    note = (f"Each run: one process thread (torch.set_num_threads(1)); the machine that ran the last "
            f"invocation had {os.cpu_count()} CPU cores. Run times are per run, wall clock.")
    print(f"{len(jobs)} runs in {wall / 60:.1f} min wall-clock", flush=True)
    # the report always shows each task's own seed count (and any seed cached beyond it), whatever
    # --seeds this invocation ran: a campaign filled seed by seed never hides the other tasks' seeds
    path = write_report(report_tasks, {t: 2 if args.smoke else TASKS[t]["seeds"] for t in TASKS}, args.smoke, note)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
