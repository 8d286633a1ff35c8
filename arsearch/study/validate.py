"""Held-out validation: the study's top configurations, and its enqueued baselines, rerun on fresh seeds.

A study picks its best configuration on its tuning seeds, so its estimate of that configuration is
biased upwards (the winner's curse; on RL, one seed's luck). `validate_study` reruns the top
``[study.validate] top`` configurations and every ``[[enqueue]]`` baseline on ``seeds`` fresh
seeds, drawn from a stream of the study's seed generator disjoint from the tuning seeds, and
answers three questions on them: which configuration wins on seeds the search never saw (with a
bootstrap interval), how well the tuning estimates predicted the fresh results (Spearman's rank
correlation), and, paired on the same fresh seeds, how likely the winner is to beat the baseline
(the probability of improvement, P(X > Y), as rliable defines it, and a paired Wilcoxon test).

Each (configuration, fresh seed) job is a row of the study's table (``arsearch.val:<config>:<seed>``),
written as the job ends: an interrupted validation resumes with the jobs that are missing. Jobs run
as `arsearch train` subprocesses, ``parallel`` at a time (one per CPU core or GPU by default).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

from ..config import apply_overrides, load_job
from .race import job_for_seed, run_seeds, seed_objective, seed_row
from .seeds import SeedTable, bootstrap_interval

log = logging.getLogger("arsearch.study")

SUMMARY_ATTR = "arsearch.validation"


class _NoTrial:
    """What a validation job's runner needs of an Optuna trial: nothing is reported or pruned."""

    number = -1

    def set_user_attr(self, key, value) -> None:
        pass

    def report(self, value, step) -> None:
        pass

    def should_prune(self) -> bool:
        return False


def candidates(spec, table: SeedTable, tuning: list[int]) -> list[dict]:
    """The configurations to validate: the `top` best completed ones by their tuning aggregate (ties:
    more seeds first), then the enqueued baselines not among them."""
    objective = seed_objective(spec)
    ranked = []
    for cid, info in table.configs().items():
        rows = table.rows(cid)
        seeds = [s for s in tuning if s in rows]
        if not seeds or info.get("raced_out") or info.get("completed") is None:
            continue
        ranked.append({"config": cid, "overrides": info["overrides"], "trials": info.get("trials", []),
                       "baseline": bool(info.get("baseline")),
                       "tuning": {"value": objective.value([rows[s] for s in seeds]), "n": len(seeds),
                                  "seeds": seeds}})
    external = []
    for cid, info in table.configs().items():
        if info.get("external"):
            external.append({"config": cid, "overrides": info["overrides"], "trials": [], "baseline": False,
                             "label": info["external"], "tuning": info.get("external_tuning") or
                             {"value": math.nan, "n": 0, "seeds": []}})
    ranked = [c for c in ranked if c["config"] not in {e["config"] for e in external}]
    sign = -1.0 if objective.aggregate_direction == "maximize" else 1.0
    ranked.sort(key=lambda c: (sign * c["tuning"]["value"], -c["tuning"]["n"]))
    top = ranked[:spec.settings.validate.top]
    for rank, c in enumerate(ranked):
        c["rank"] = rank + 1
    if spec.settings.validate.baselines:
        top += [c for c in ranked[spec.settings.validate.top:] if c["baseline"]]
    return top + external


def add_external(table: SeedTable, overrides: dict, label: str, tuning: dict | None = None) -> str:
    """A configuration from outside this study (e.g. another study's best), validated on the same fresh
    seeds; `tuning` is that study's own estimate of it ({"value", "n"})."""
    from .seeds import config_id

    cid = config_id(overrides)
    table.register(cid, overrides, -1)
    table.mark(cid, external=label, external_tuning={"seeds": [], **(tuning or {"value": math.nan, "n": 0})})
    return cid


def subprocess_runner(objective_factory, parallel: int):
    """run_job for validation seed jobs: `arsearch train` subprocesses that report to no pruner."""
    import os

    from .objective import run_subprocess_trial

    obj = objective_factory()
    threads = max(1, (os.cpu_count() or 1) // max(parallel, 1))

    def run_job(config, job_dir: Path, primary: bool, stop):
        from .objective import restart_mode

        resume, overwrite = restart_mode(job_dir)
        return run_subprocess_trial(_NoTrial(), config, job_dir, obj.spec.settings.metric, False, obj.pool,
                                    resume=resume, overwrite=overwrite, stop=stop, label=f"seed {config.seed}",
                                    env_extra={"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(threads))})
    return run_job


def validate_study(spec, study, tracker=None, run_job=None) -> dict:
    """Run the missing validation jobs, then summarise, store (``arsearch.validation``) and log the result."""
    from .objective import Objective

    s = spec.settings
    vs = s.validate
    table = SeedTable(study)
    tuning = table.tuning_seeds(s.seeds, s.seed)
    seeds = table.validation_seeds(vs.seeds, s.seed)
    chosen = candidates(spec, table, tuning)
    if not chosen:
        log.warning("study %s: no completed configuration to validate yet", study.study_name)
        return {}
    output = Path(s.output) / study.study_name
    objective = Objective(spec, study.study_name, None)
    parallel = objective.seed_parallel(spec.config_for({}), vs.parallel)
    run_job = run_job or subprocess_runner(lambda: objective, parallel)
    jobs = []
    for c in chosen:
        rows = table.rows(c["config"], validation=True)
        config = load_job(data=apply_overrides(_copy(spec.base), dict(c["overrides"])))
        config.tracking.enabled = False
        for seed in seeds:
            if seed in rows:
                continue
            job = job_for_seed(config, seed, output / "validate" / c["config"] / f"seed_{seed}")
            jobs.append((job, Path(job.checkpoint.dir), False, _recorder(spec, table, c["config"], seed, job)))
    # seed-major: an interrupted validation leaves every configuration with the same fresh seeds
    jobs.sort(key=lambda j: (seeds.index(j[0].seed), [c["config"] for c in chosen].index(
        Path(j[1]).parent.name)))
    if jobs:
        log.info("study %s: validating %d configuration(s) on %d fresh seed(s): %d job(s) to run, %d at a time",
                 study.study_name, len(chosen), len(seeds), len(jobs), parallel)
        _run_claimed(table, jobs, run_job, parallel)
    summary = summarise(spec, table.refresh(), chosen, seeds)
    study.set_user_attr(SUMMARY_ATTR, summary)
    if tracker is not None:
        tracker.log_validation(summary)
    return summary


def _run_claimed(table: SeedTable, jobs: list, run_job, parallel: int) -> None:
    """Run the jobs no other worker has claimed (claiming them), then wait for the rows of the others."""
    import os
    import socket
    import threading

    from .race import Claims, wait_for_others

    token = f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"
    key = {id(j): (Path(j[1]).parent.name, j[0].seed) for j in jobs}
    while True:
        table.refresh()
        missing = [j for j in jobs if key[id(j)][1] not in table.rows(key[id(j)][0], validation=True)]
        if not missing:
            return
        free = [j for j in missing if not table.claimed_elsewhere(*key[id(j)], token, validation=True)]
        with Claims(table, [key[id(j)] for j in free], token, validation=True) as claims:
            mine = [j for j in free if key[id(j)] in claims.won]
            if mine:
                run_seeds(mine, run_job, parallel)
        if not mine:
            wait_for_others()


def _recorder(spec, table: SeedTable, cid: str, seed: int, job):
    def done(result: dict) -> None:
        row = seed_row(result, spec, job, -1)
        table.record(cid, seed, row, validation=True)
        log.info("validation: configuration %s, fresh seed %d: %.6g", cid, seed, row["value"])
    return done


def summarise(spec, table: SeedTable, chosen: list[dict], seeds: list[int]) -> dict:
    from scipy.stats import mannwhitneyu, spearmanr, wilcoxon

    objective = seed_objective(spec)
    name = spec.settings.aggregate
    statistic = {"median": "median", "iqm": "iqm", "km_median": "median"}.get(name, "mean")
    configs = []
    for c in chosen:
        rows = table.rows(c["config"], validation=True)
        have = [s for s in seeds if s in rows]
        values = [objective.per_seed(rows[s]) for s in have]
        successes = [rows[s].get("success") for s in have if rows[s].get("success") is not None]
        configs.append({**c, "fresh": {
            "value": objective.value([rows[s] for s in have]), "n": len(have),
            "interval": list(bootstrap_interval(values, statistic)) if values else [math.nan, math.nan],
            "values": {str(s): rows[s]["value"] for s in have},
            "per_seed": {str(s): v for s, v in zip(have, values)},
            "success": [int(sum(successes)), len(successes)] if successes else None}})
    complete = [c for c in configs if c["fresh"]["n"] == len(seeds)]
    sign = -1.0 if objective.aggregate_direction == "maximize" else 1.0
    ranked = sorted(complete, key=lambda c: sign * c["fresh"]["value"])
    out = {"seeds": seeds, "aggregate": name, "direction": objective.aggregate_direction, "configs": configs,
           "complete": len(complete) == len(configs), "winner": ranked[0]["config"] if ranked else None}
    tuned = [c["tuning"]["value"] for c in complete if not math.isnan(c["tuning"]["value"])]
    fresh = [c["fresh"]["value"] for c in complete if not math.isnan(c["tuning"]["value"])]
    if len(tuned) >= 3 and len(set(tuned)) > 1 and len(set(fresh)) > 1:      # else undefined
        rho, p = spearmanr(tuned, fresh)
        out["rank_correlation"] = {"spearman": float(rho), "p": float(p), "n": len(tuned)}
    baselines = [c for c in complete if c["baseline"]]
    if ranked and baselines:
        win, base = ranked[0], baselines[0]
        x = np.array([win["fresh"]["per_seed"][str(s)] for s in seeds])
        y = np.array([base["fresh"]["per_seed"][str(s)] for s in seeds])
        if sign > 0:                # lower is better: compare negated values, so "greater" is "better"
            x, y = -x, -y
        u = mannwhitneyu(x, y, alternative="two-sided").statistic
        entry = {"winner": win["config"], "baseline": base["config"], "n": len(seeds),
                 "probability_of_improvement": float(u / (len(x) * len(y))),
                 "paired_wins": int(np.sum(x > y)), "paired_ties": int(np.sum(x == y))}
        if win["config"] != base["config"] and np.any(x != y):
            entry["wilcoxon_p"] = float(wilcoxon(x, y, alternative="greater", zero_method="zsplit").pvalue)
        out["vs_baseline"] = entry
    return out


def _copy(data: dict) -> dict:
    return {k: (_copy(v) if isinstance(v, dict) else v) for k, v in data.items()}
