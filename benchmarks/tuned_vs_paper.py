"""Tuned against the paper: a spend-to-target study's best configuration next to the ARS paper's, on fresh seeds.

Stages, each resumable and run by flag (any order, several at once):

    python benchmarks/tuned_vs_paper.py --study swimmer [--n-trials 60] [--n-jobs 2] [--timeout S]
    python benchmarks/tuned_vs_paper.py --study hopper  [--n-trials 30] [--n-jobs 2] [--timeout S]
    python benchmarks/tuned_vs_paper.py --fresh-seeds 5 [--task swimmer] [--jobs 2] [--config tuned|paper]
    python benchmarks/tuned_vs_paper.py --report        # only regenerate the report from the cache
    python benchmarks/tuned_vs_paper.py --smoke --study swimmer --study hopper --fresh-seeds 2

- ``--study T`` runs studies/T_target.toml (the spend-to-target objective: training episodes to
  the paper's threshold, censored at the budget) until it holds ``--n-trials`` finished trials.
  The Optuna storage (``<data>/optuna.db``) is the resumable state; each stage also writes
  ``<data>/study_T.json`` (every trial, the best configuration, the wall clock of each session).
- ``--fresh-seeds K`` trains the best configuration of each finished study and the paper's
  configuration (the study's base, configs/T_target.toml) on seeds 1000..1000+K−1. The study's
  trials all ran with seed 0, so these seeds were never seen by the search. Each finished run is
  cached as ``<data>/T/<tuned|paper>/seed_S.json`` and skipped on a rerun (a tuned run is redone
  when the study's best configuration has changed since).
- Every invocation ends by regenerating ``reports/tuned_vs_paper.md`` (and the learning-curve
  PNGs) from whatever is cached, saying what is still missing.
- ``--raced-study T`` runs studies/T_raced.toml (issue 20: the same space, raced on shared tuning
  seeds) until its seed jobs have spent ``--budget-factor`` (default 2) times the compute of the
  one-seed study (the sum of its trials' wall-clock seconds, one core each; for the raced study the
  CPU time of its seed-job processes, pruned and raced-out ones included, so that a loaded machine
  does not count against it). Writes ``<data>/raced_T.json`` after every trial.
- ``--validate T`` reruns the raced study's top 3 configurations, the paper's settings (its enqueued
  baseline) and the one-seed study's best completed configurations on ``--validate-seeds`` fresh seeds
  (default 10) drawn from the raced study's validation stream, none of them a seed used before.
  Resumable: each (configuration, seed) job is stored as it ends, seed-major.
- ``--smoke``: the same pipeline at toy size (30-step episodes, a 48-episode budget, 3 trials, a
  toy target) into ``reports/data/tuned_vs_paper_smoke/`` and ``reports/tuned_vs_paper_smoke.md``;
  it checks the plumbing, not the claim.

Data root: reports/data/tuned_vs_paper/ (smoke: reports/data/tuned_vs_paper_smoke/).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import multiprocessing as mp
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import REPORTS, ROOT, write_report  # noqa: E402

TASKS = {
    # task: (study file, paper's episodes to the threshold (Table 1), criterion)
    "swimmer": ("studies/swimmer_target.toml", 100, "tuned succeeds on >= 90% of fresh seeds within 1000 episodes"),
    "hopper": ("studies/hopper_target.toml", 1973, "tuned median episodes to 3120 <= 0.5 x the paper's 1973"),
}
FRESH_SEED_BASE = 1000
SMOKE = {   # job keys for the toy version: short episodes, a tiny budget and a target a few iterations reach
    "swimmer": {"task.horizon": 30, "task.eval_episodes": 1, "stop.episodes": 48, "eval.every_episodes": 8,
                "stop.target.value": 5.0, "checkpoint.every": 10 ** 6},
    "hopper": {"task.horizon": 30, "task.eval_episodes": 1, "stop.episodes": 48, "eval.every_episodes": 8,
               "stop.target.value": 40.0, "checkpoint.every": 10 ** 6},
}
SMOKE_TRIALS = 3
RACED = {"hopper": "studies/hopper_raced.toml",     # the same space as TASKS' study, raced on shared seeds
         "swimmer": "studies/swimmer_raced.toml"}
# every seed any earlier run of this benchmark or the ablation used: validation seeds must avoid them
USED_SEEDS = set(range(10)) | set(range(FRESH_SEED_BASE, FRESH_SEED_BASE + 5))


def data_root(smoke: bool) -> Path:
    return REPORTS / "data" / ("tuned_vs_paper_smoke" if smoke else "tuned_vs_paper")


def write_json(path: Path, payload) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=1) + "\n")
    os.replace(tmp, path)


def read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# -- stage 1: the study ----------------------------------------------------------------------------
def load_spec(task: str, smoke: bool, root: Path, n_jobs: int = 1):
    from arsearch.config import apply_overrides
    from arsearch.study import load_study

    study_file, _, _ = TASKS[task]
    spec = load_study(ROOT / study_file, {
        "storage": f"sqlite:///{root / 'optuna.db'}", "tracking": False, "n_jobs": n_jobs,
        # threads share one interpreter: parallel trials run as `arsearch train` processes
        "subprocess": n_jobs > 1, "output": str(ROOT / "runs" / root.name / "studies")})
    if smoke:
        apply_overrides(spec.base, SMOKE[task])
    return spec


def finished(study) -> list:
    import optuna

    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)
    return [t for t in study.get_trials(deepcopy=False) if t.state in done]


def run_study_stage(task: str, args, root: Path) -> None:
    from arsearch.study import open_study, run_study

    spec = load_spec(task, args.smoke, root, args.n_jobs)
    wanted = args.n_trials or (SMOKE_TRIALS if args.smoke else spec.settings.n_trials)
    study, _ = open_study(spec)
    remaining = wanted - len(finished(study))
    start = time.time()
    if remaining > 0:
        spec.settings.n_trials = remaining
        spec.settings.timeout = args.timeout or 0.0
        print(f"[{task}] study {spec.settings.name}: {remaining} more trial(s) to reach {wanted}", flush=True)
        study = run_study(spec)
    else:
        print(f"[{task}] study {spec.settings.name}: already {len(finished(study))} finished trials", flush=True)
    summarise_study(task, spec, study, root, session=(start, time.time(), max(remaining, 0)))


def summarise_study(task: str, spec, study, root: Path, session=None) -> dict:
    """Write <root>/study_<task>.json: every trial, the best configuration, the wall clock per session."""
    import optuna

    path = root / f"study_{task}.json"
    old = read_json(path) or {}
    sessions = old.get("sessions", [])
    if session is not None and session[2] > 0:
        sessions.append({"start": _iso(session[0]), "end": _iso(session[1]), "seconds": session[1] - session[0],
                         "trials_asked": session[2]})
    trials = []
    for t in study.get_trials(deepcopy=False):
        if t.state == optuna.trial.TrialState.RUNNING:
            continue
        duration = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete else None
        trials.append({"number": t.number, "state": t.state.name, "value": t.value,
                       "censored": t.user_attrs.get("censored"), "overrides": t.user_attrs.get("overrides", {}),
                       "seconds": duration, "episodes": t.user_attrs.get("result", {}).get("count/episodes"),
                       "fail_reason": t.user_attrs.get("fail_reason")})
    done = [t for t in trials if t["state"] == "COMPLETE"]
    best = min(done, key=lambda t: t["value"]) if done else None
    summary = {"task": task, "study": spec.settings.name, "study_file": TASKS[task][0], "base": spec.base,
               "objective": f"{spec.settings.spend} to target (censored at budget x {spec.settings.censored_penalty})",
               "sessions": sessions, "trials": trials, "best": best}
    write_json(path, summary)
    return summary


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


# -- stage 1b: the raced study (issue 20) ----------------------------------------------------------------
def load_raced_spec(task: str, smoke: bool, root: Path):
    from arsearch.config import apply_overrides
    from arsearch.study import load_study

    # a journal file: plain text, committed with the report, so a later session resumes the same study
    spec = load_study(ROOT / RACED[task], {
        "storage": f"journal:{root / f'raced_{task}.journal'}", "tracking": False,
        "output": str(ROOT / "runs" / root.name / "studies")})
    if smoke:
        apply_overrides(spec.base, SMOKE[task])
        spec.settings.seeds.tuning, spec.settings.seeds.max_per_config = 4, 3
        spec.settings.validate.seeds = 2
    return spec


def one_seed_compute(task: str, root: Path) -> float:
    """Core-seconds the one-seed study spent: its trials' wall clock (each trial one process, one core)."""
    summary = read_json(root / f"study_{task}.json") or {}
    return sum(t["seconds"] or 0.0 for t in summary.get("trials", []))


def raced_compute(study) -> float:
    """The raced study's seed jobs' wall clock, pruned and raced-out jobs included (shown beside the CPU)."""
    return sum(t.user_attrs.get("job_seconds", 0.0) for t in study.get_trials(deepcopy=False))


def children_cpu() -> float:
    """CPU seconds of every child process this one has waited for: all the seed jobs it ran, cut ones too.
    The budget is counted in CPU, not wall clock: on a loaded machine a job's wall clock overstates it."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_raced_stage(task: str, args, root: Path) -> None:
    from arsearch.study import open_study, run_study

    spec = load_raced_spec(task, args.smoke, root)
    budget = args.budget_factor * one_seed_compute(task, root)
    if not budget:
        print(f"[{task}] the one-seed study has no recorded compute: run --study {task} first", flush=True)
        return
    study, _ = open_study(spec)
    _requeue_interrupted(study)
    old = read_json(root / f"raced_{task}.json") or {}
    prior = old.get("cpu_core_seconds", 0.0) + args.extra_core_seconds
    start, cpu0 = time.time(), children_cpu()
    trials = 0

    def spent() -> float:
        return prior + children_cpu() - cpu0
    counted = {"trials": 0}

    def after_trial(study, trial) -> None:
        # written after every trial: an interrupted stage keeps what it spent; no new trial once the
        # budget is spent (the ones running finish)
        counted["trials"] += 1
        summarise_raced(task, spec, study, root, budget=budget, cpu=spent())
        print(f"[{task}] raced study: {len(finished(study))} trials, {spent():.0f} of {budget:.0f} CPU core-seconds",
              flush=True)
        if (spent() >= budget and not args.smoke) or (args.smoke and len(finished(study)) >= 4) or \
                (args.timeout and time.time() - start > args.timeout):
            study.stop()
    if (spent() < budget and not args.smoke) or (args.smoke and len(finished(study)) < 4):
        # --n-jobs trials at once (threads; each runs its seed jobs as processes): once the incumbent has
        # all its seeds, a challenger's first seed is one process, and a second trial keeps the other core busy
        spec.settings.n_trials, spec.settings.n_jobs = 10 ** 6, args.n_jobs
        study = run_study(spec, callbacks=[after_trial])
    trials = counted["trials"]
    summarise_raced(task, spec, study, root, session=(start, time.time(), trials), budget=budget, cpu=spent())


def _requeue_interrupted(study) -> None:
    """A trial left RUNNING by a stopped benchmark (a journal storage has no heartbeat to notice it) is
    failed and its configuration queued again: its finished seed jobs are rows of the study's table,
    so the requeued trial runs only the seeds that are missing (and resumes a cut one from its checkpoint)."""
    import optuna

    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study.tell(t.number, state=optuna.trial.TrialState.FAIL)
        study.enqueue_trial(t.params)
        print(f"trial {t.number} was interrupted: failed and its configuration queued again", flush=True)


def read_study(spec):
    """The stored study, read only: the report neither appends a create record to a journal nor re-queues a
    trial that a running stage (another process) is still working on, as opening it to run would."""
    import optuna

    from arsearch.study.runner import make_storage

    return optuna.load_study(study_name=spec.settings.name, storage=make_storage(spec.settings.storage))


def summarise_raced(task: str, spec, study, root: Path, session=None, budget: float | None = None,
                    cpu: float | None = None) -> dict:
    import optuna

    path = root / f"raced_{task}.json"
    old = read_json(path) or {}
    sessions = old.get("sessions", [])
    if session is not None and session[2] > 0:
        sessions.append({"start": _iso(session[0]), "end": _iso(session[1]), "seconds": session[1] - session[0],
                         "trials_run": session[2]})
    trials = []
    for t in study.get_trials(deepcopy=False):
        if t.state in (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING):
            continue
        trials.append({"number": t.number, "state": t.state.name, "value": t.value,
                       "config": t.user_attrs.get("config_id"), "overrides": t.user_attrs.get("overrides", {}),
                       "seeds": t.user_attrs.get("seeds", {}), "raced_out": t.user_attrs.get("raced_out"),
                       "job_seconds": t.user_attrs.get("job_seconds", 0.0), "jobs": t.user_attrs.get("jobs", 0),
                       "fail_reason": t.user_attrs.get("fail_reason")})
    summary = {"task": task, "study": spec.settings.name, "study_file": RACED[task], "base": spec.base,
               "tuning_seeds": study.user_attrs.get("arsearch.seeds.tuning"), "sessions": sessions,
               "budget_core_seconds": budget if budget is not None else old.get("budget_core_seconds"),
               "cpu_core_seconds": cpu if cpu is not None else old.get("cpu_core_seconds", 0.0),
               "job_wall_seconds": raced_compute(study), "trials": trials,
               # from the stored rows, so a configuration added later (SMAC3's incumbent) shows while it runs
               "validation": _partial_validation(spec, study) or study.user_attrs.get("arsearch.validation")
               or old.get("validation")}
    write_json(path, summary)
    return summary


def _partial_validation(spec, study) -> dict | None:
    """The validation so far, from the rows stored while its jobs run (the stage writes its summary at the end)."""
    from arsearch.study.seeds import SeedTable
    from arsearch.study.validate import candidates, summarise

    fresh = study.user_attrs.get("arsearch.seeds.validation")
    if not fresh:
        return None
    table = SeedTable(study)
    chosen = candidates(spec, table, study.user_attrs.get("arsearch.seeds.tuning", []))
    if not any(table.rows(c["config"], validation=True) for c in chosen):
        return None
    return summarise(spec, table, chosen, fresh)


def run_validate_stage(task: str, args, root: Path) -> None:
    """The raced study's top 3 and the paper's settings, beside the one-seed study's best completed
    configurations, on the same fresh seeds."""
    from arsearch.study import open_study
    from arsearch.study.seeds import SeedTable
    from arsearch.study.validate import add_external, validate_study

    spec = load_raced_spec(task, args.smoke, root)
    if args.validate_seeds:
        spec.settings.validate.seeds = args.validate_seeds
    study, _ = open_study(spec)
    table = SeedTable(study)
    table.tuning_seeds(spec.settings.seeds, spec.settings.seed)
    fresh = table.validation_seeds(spec.settings.validate.seeds, spec.settings.seed)
    clash = sorted(set(fresh) & (USED_SEEDS | set(study.user_attrs.get("arsearch.seeds.tuning", []))))
    if clash:
        raise SystemExit(f"validation seeds {clash} were used before; change the raced study's seed")
    one_seed = read_json(root / f"study_{task}.json") or {}
    done = sorted((t for t in one_seed.get("trials", []) if t["state"] == "COMPLETE" and not t["censored"]),
                  key=lambda t: t["value"])
    for t in done[:args.one_seed_top]:
        add_external(table, t["overrides"], f"one-seed study trial {t['number']}", {"value": t["value"], "n": 1})
    smac = read_json(root / f"smac_{task}.json")        # the peer (benchmarks/smac_peer.py), when it has run
    if smac:
        inc = smac["incumbent"]
        add_external(table, inc["overrides"], "SMAC3 incumbent", {"value": inc["cost"], "n": inc["seeds"]})
    print(f"[{task}] validating on fresh seeds {fresh}", flush=True)
    summary = validate_study(spec, study)
    summarise_raced(task, spec, study, root)
    from arsearch.study.show import validation_lines

    print("\n".join(validation_lines(summary)), flush=True)


# -- stage 2: fresh seeds ----------------------------------------------------------------------------
def run_one(job: dict) -> dict:
    """Train one configuration on one seed until its target or budget; cache the run as JSON."""
    import torch

    torch.set_num_threads(1)
    from arsearch.callbacks import Callback
    from arsearch.config import load_job
    from arsearch.trainer import Trainer

    cfg = load_job(data=job["config"])
    cfg.seed = job["seed"]
    cfg.tracking.enabled = False
    cfg.checkpoint.dir = job["checkpoint_dir"]
    cfg.checkpoint.every = 10 ** 9

    class Curve(Callback):
        def __init__(self):
            self.points: list[tuple[int, float]] = []

        def on_eval(self, trainer, iteration, metrics):
            self.points.append((int(trainer.task.counters.get("episodes", 0)), float(metrics["eval/return"])))

    curve = Curve()
    start = time.perf_counter()
    result = Trainer(cfg, callbacks=[curve], progress=False).run()
    record = {"task": job["task"], "label": job["label"], "seed": job["seed"], "overrides": job["overrides"],
              "reached": result["stop/target_reached"] == 1.0, "stop_reason": result["stop/reason"],
              "episodes": int(result["count/episodes"]), "iterations": result["iterations"],
              "final_return": result.get("eval/return"), "wall_s": time.perf_counter() - start,
              "train_s": result["time/elapsed_s"], "budget": cfg.stop.episodes, "target": cfg.stop.target.value,
              "curve": curve.points}
    write_json(Path(job["out"]), record)
    return record


def fresh_jobs(task: str, seeds: int, root: Path, labels=("tuned", "paper")) -> list[dict]:
    from arsearch.config import apply_overrides, load_job, to_dict

    summary = read_json(root / f"study_{task}.json")
    if not summary or not summary.get("best"):
        print(f"[{task}] no finished study yet: run --study {task} first; fresh seeds skipped", flush=True)
        return []
    base = summary["base"]
    configs = {label: overrides for label, overrides in (("tuned", summary["best"]["overrides"]), ("paper", {}))
               if label in labels}
    jobs = []
    for label, overrides in configs.items():
        config = to_dict(load_job(data=apply_overrides(copy.deepcopy(base), dict(overrides))))
        for seed in range(FRESH_SEED_BASE, FRESH_SEED_BASE + seeds):
            out = root / task / label / f"seed_{seed}.json"
            cached = read_json(out)
            if cached is not None and cached.get("overrides") == overrides:
                continue
            jobs.append({"task": task, "label": label, "seed": seed, "overrides": overrides, "config": config,
                         "out": str(out), "checkpoint_dir": str(ROOT / "runs" / root.name / task / label / str(seed))})
    return jobs


def run_fresh_stage(tasks: list[str], args, root: Path) -> None:
    jobs = [j for task in tasks for j in fresh_jobs(task, args.fresh_seeds, root, args.config or ("tuned", "paper"))]
    print(f"fresh seeds: {len(jobs)} run(s) to do", flush=True)
    if not jobs:
        return
    if args.jobs > 1:
        with mp.get_context("spawn").Pool(args.jobs) as pool:
            for record in pool.imap_unordered(run_one, jobs):
                _print_run(record)
    else:
        for job in jobs:
            _print_run(run_one(job))


def _print_run(r: dict) -> None:
    print(f"  [{r['task']}] {r['label']} seed {r['seed']}: "
          f"{'reached at ' + str(r['episodes']) if r['reached'] else 'missed (' + str(r['episodes']) + ')'} "
          f"episodes, {r['wall_s']:.0f} s", flush=True)


# -- the report ----------------------------------------------------------------------------------
def median_ci(values: list[float], confidence: float = 0.95) -> tuple[float, float, float, float]:
    """Median and a distribution-free CI from order statistics (censored runs = +inf): (median, low, high,
    achieved coverage). With fewer than 6 values no interval reaches 95%; [min, max] is given with its coverage."""
    x = sorted(values)
    n = len(x)
    med = x[n // 2] if n % 2 else (x[n // 2 - 1] + x[n // 2]) / 2
    chosen = (1, 1 - 2 * 0.5 ** n)
    for k in range(1, n // 2 + 1):
        coverage = 1 - 2 * sum(math.comb(n, i) for i in range(k)) / 2 ** n
        if coverage >= confidence:
            chosen = (k, coverage)
    k, coverage = chosen
    return med, x[k - 1], x[n - k], coverage


def _fmt_ep(v: float, budget: int) -> str:
    return f">{budget}" if math.isinf(v) else f"{v:.0f}"


def runs_of(root: Path, task: str, label: str) -> list[dict]:
    return [r for r in (read_json(p) for p in sorted((root / task / label).glob("seed_*.json"))) if r]


def _hyper(base: dict, overrides: dict) -> str:
    from arsearch.config import apply_overrides, load_job

    c = load_job(data=apply_overrides(copy.deepcopy(base), dict(overrides)))
    a = c.ars
    text = f"{a.version}, N={a.directions}, b={a.top}, α={a.step_size:.3g}, ν={a.noise:.3g}, shift={c.task.shift:g}"
    if c.population is not None and c.population.size > 1:
        text += f", population {c.population.size} × [{'+'.join(c.population.strategies) or 'none'}]"
    return text


def plot_curves(root: Path, task: str, out: Path, target: float) -> Path | None:
    runs = {label: runs_of(root, task, label) for label in ("tuned", "paper")}
    if not any(runs.values()):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for label, color in (("tuned", "tab:blue"), ("paper", "tab:orange")):
        for i, r in enumerate(runs[label]):
            if r["curve"]:
                eps, ret = zip(*r["curve"])
                ax.plot(eps, ret, color=color, alpha=0.7, lw=1.2, marker=".", label=f"{label} ({len(runs[label])} seeds)" if i == 0 else None)
    ax.axhline(target, color="black", ls="--", lw=1, label=f"target {target:g}")
    ax.set_xlabel("training episodes")
    ax.set_ylabel("evaluation return")
    ax.set_title(f"{task}: tuned vs the paper's configuration, fresh seeds")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def build_report(root: Path, smoke: bool, seeds_wanted: int) -> Path:
    name = "tuned_vs_paper_smoke" if smoke else "tuned_vs_paper"
    lines = [f"# Tuned against the paper: episodes to the ARS paper's thresholds{' (SMOKE: toy sizes)' if smoke else ''}",
             "", "{HEADER}",
             "Each task's spend-to-target study (training episodes to the paper's threshold, trials that miss "
             "censored at budget × 2) is searched with seed 0; its best configuration and the paper's "
             f"configuration then train on fresh seeds {FRESH_SEED_BASE}, {FRESH_SEED_BASE + 1}, ... that the "
             "study never saw, each run stopping at the threshold or the episode budget. Episodes are training "
             "episodes (2N per learner and iteration, plus annealing's re-scoring), as in the paper; evaluation "
             "episodes (5 per check, every `eval.every_episodes`) are not counted. Environments are Gymnasium "
             "MuJoCo v5, not the paper's v1.", ""]
    if smoke:
        lines += ["**Smoke run**: 30-step episodes, a 48-episode budget, toy targets and 3 trials. It checks that "
                  "every stage runs and the report fills in; its numbers say nothing about the claim.", ""]
    missing = []
    for task, (study_file, paper_episodes, criterion) in TASKS.items():
        summary = read_json(root / f"study_{task}.json")
        lines += [f"## {task.capitalize()}", ""]
        if not summary:
            missing.append(f"{task}: the study (`--study {task}`)")
            lines += [f"Study `{study_file}` not run yet.", ""]
            continue
        trials = summary["trials"]
        states = {s: sum(t["state"] == s for t in trials) for s in ("COMPLETE", "PRUNED", "FAIL")}
        censored = sum(bool(t["censored"]) for t in trials if t["state"] == "COMPLETE")
        seconds = sum(s["seconds"] for s in summary["sessions"])
        trial_seconds = [t["seconds"] for t in trials if t["seconds"]]
        lines += [f"Study `{summary['study']}` ({study_file}): {len(trials)} trials — {states['COMPLETE']} complete "
                  f"({censored} censored), {states['PRUNED']} pruned, {states['FAIL']} failed; "
                  f"{seconds / 3600:.2f} h of study wall clock over {len(summary['sessions'])} session(s); "
                  f"median trial {_median(trial_seconds):.0f} s.", ""]
        best = summary["best"]
        budget = summary["base"]["stop"]["episodes"]
        target = summary["base"]["stop"]["target"]["value"]
        if best:
            lines += [f"Best trial {best['number']}: {best['value']:.0f} episodes"
                      f"{' (censored)' if best['censored'] else ''} — {_hyper(summary['base'], best['overrides'])}.", ""]
        rows = []
        stats = {}
        for label in ("tuned", "paper"):
            runs = runs_of(root, task, label)
            overrides = best["overrides"] if (label == "tuned" and best) else {}
            runs = [r for r in runs if r["overrides"] == overrides]
            if len(runs) < seeds_wanted:
                missing.append(f"{task}: {label} on fresh seeds ({len(runs)}/{seeds_wanted} done; `--fresh-seeds "
                               f"{seeds_wanted}`)")
            if not runs:
                continue
            eps = [r["episodes"] if r["reached"] else math.inf for r in runs]
            med, low, high, cov = median_ci(eps)
            within = sum(e <= 1000 for e in eps)
            walls = sorted(r["wall_s"] for r in runs)
            stats[label] = {"n": len(runs), "reached": sum(r["reached"] for r in runs), "median": med,
                            "within1000": within}
            rows.append(f"| {label} | {_hyper(summary['base'], overrides)} | {sum(r['reached'] for r in runs)}/{len(runs)} "
                        f"| {within}/{len(runs)} | {_fmt_ep(med, budget)} | [{_fmt_ep(low, budget)}, "
                        f"{_fmt_ep(high, budget)}] ({cov:.1%}) | {', '.join(_fmt_ep(e, budget) for e in eps)} "
                        f"| {_median(walls):.0f} s ({walls[0]:.0f}–{walls[-1]:.0f}) |")
        if rows:
            lines += [f"Threshold {target:g}, budget {budget} episodes, paper (Table 1, v1 environments): "
                      f"{paper_episodes} episodes.", "",
                      "| configuration | hyperparameters | success (within budget) | success within 1000 episodes "
                      "| median episodes to target | CI of the median (coverage) | episodes per seed | wall clock per run, median (range) |",
                      "|---|---|---|---|---|---|---|---|", *rows, ""]
            png = plot_curves(root, task, REPORTS / f"{name}_{task}.png", target)
            if png:
                lines += [f"![{task} learning curves]({png.name})", ""]
        lines += [f"Target: {criterion}. " + _verdict(task, stats, seeds_wanted), ""]
        lines += _evidence(best, stats, budget, paper_episodes)
        if task in RACED:
            lines += raced_section(root, task, summary, smoke, name, missing)
    lines += ["## Still missing", ""]
    lines += [f"- {m}" for m in missing] or ["- nothing: every stage is cached."]
    lines += ["", "`>B` means the threshold was not reached within the budget of B training episodes (a censored "
              "run: it counts as +∞ in the median). The CI of the median is the distribution-free one from order "
              "statistics; with 5 runs the widest, [min, max], covers 93.8%, so that is what it shows.", ""]
    return write_report(name, "\n".join(lines))


def raced_section(root: Path, task: str, one_seed: dict, smoke: bool, name: str, missing: list) -> list[str]:
    """The raced study beside the one-seed study, and both validated on the same fresh seeds."""
    raced = read_json(root / f"raced_{task}.json")
    lines = [f"### {task.capitalize()}: the raced study (shared seeds, racing, held-out validation)", ""]
    if not raced:
        missing.append(f"{task}: the raced study (`--raced-study {task}`)")
        return lines + [f"`{RACED[task]}` not run yet.", ""]
    trials = raced["trials"]
    raced_out = sum(1 for t in trials if t["raced_out"])
    pruned = sum(1 for t in trials if t["state"] == "PRUNED" and not t["raced_out"])
    done = sum(1 for t in trials if t["state"] == "COMPLETE")
    failed = sum(1 for t in trials if t["state"] == "FAIL" and t["fail_reason"])
    interrupted = sum(1 for t in trials if t["state"] == "FAIL" and not t["fail_reason"])
    jobs = sum(t["jobs"] for t in trials)
    one = sum(t["seconds"] or 0 for t in one_seed["trials"])
    budget = raced.get("budget_core_seconds") or 0
    spent = raced.get("cpu_core_seconds", 0.0)
    lines += [f"Study `{raced['study']}` ({raced['study_file']}): the same space, sampler and pruner as the one-seed "
              f"study; tuning seeds {raced['tuning_seeds']} drawn once from the study's seed and shared by every "
              f"trial; racing against the incumbent in doubling batches (1, 2, then up to "
              f"{load_raced_spec(task, smoke, root).settings.seeds.cap} seeds); a configuration's value is the "
              f"restricted mean of episodes to target (a miss counts the budget). {len(trials)} trials: {done} "
              f"complete, {raced_out} raced out, {pruned} pruned within their first seed, {failed} failed, "
              f"{interrupted} interrupted by a stop of the benchmark (their configurations were queued again and "
              f"resumed their seed jobs); {jobs} "
              f"seed jobs, {spent / 3600:.2f} CPU core-hours against the one-seed study's {one / 3600:.2f} core-hours "
              f"of trial wall clock ({spent / one if one else float('nan'):.2f}×; budget {budget / max(one, 1):.1f}×). "
              f"The raced study's spend is the CPU time of its seed-job processes (on a loaded machine their wall "
              f"clock, {raced['job_wall_seconds'] / 3600:.2f} h summed, overstates it); the one-seed study's is the "
              f"sum of its single-process trials' wall clock, an upper bound of their CPU time. The stage starts "
              f"no trial once the budget is spent; the trials then running finish, which is why the spend can pass "
              f"the budget.", ""]
    if budget and spent < budget:
        missing.append(f"{task}: the raced study's compute budget ({spent:.0f} of {budget:.0f} "
                       f"CPU core-seconds; `--raced-study {task}`)")
    smac = read_json(root / f"smac_{task}.json")
    if smac:
        lines += [f"Peer: SMAC3 (benchmarks/smac_peer.py) on the same space, seeds as instances (its intensifier, "
                  f"at most {smac['max_config_calls']} seeds per configuration), cost = episodes to target with a miss "
                  f"at the budget: {smac['runs']} runs of {smac['configurations']} configurations, "
                  f"{smac['cpu_core_seconds'] / 3600:.2f} CPU core-hours (budget "
                  f"{smac['budget_cpu_core_seconds'] / 3600:.2f}); its incumbent's cost {smac['incumbent']['cost']:.0f} "
                  f"over {smac['incumbent']['seeds']} seeds is validated below.", ""]
    elif task == "hopper":        # the peer is measured where racing's claim is made; Swimmer's is optional
        missing.append(f"{task}: the SMAC3 peer (`python benchmarks/smac_peer.py --task {task}`, then "
                       f"`--validate {task}`)")
    v = raced.get("validation")
    if not v:
        missing.append(f"{task}: validation on fresh seeds (`--validate {task}`)")
        return lines + ["Validation not run yet.", ""]
    stop = raced["base"]["stop"]
    target, limit = stop["target"]["value"], stop["episodes"]
    lines += [f"Validated on {len(v['seeds'])} fresh seeds {v['seeds']}, drawn from a stream disjoint from the "
              f"tuning seeds and from every seed used before (study seed 0, ablation seeds 0–9, fresh seeds "
              f"1000–1004). Episodes to {target:g} within {limit}: a miss is `>{limit}`.", "",
              "| configuration | hyperparameters | tuning estimate (seeds) | fresh: restricted mean [95% CI] "
              "| fresh: median episodes (CI, coverage) | fresh: success | episodes per fresh seed |",
              "|---|---|---|---|---|---|---|"]
    stats = {}
    for c in v["configs"]:
        label = (c.get("label") or ("paper (enqueued baseline)" if c["baseline"] else f"raced rank {c.get('rank')}"
                                    + f" (trial {c['trials'][0]})"))
        eps = []
        for seed in v["seeds"]:
            value = c["fresh"]["values"].get(str(seed))
            if value is None:
                continue
            eps.append(value if value <= limit else math.inf)
        if not eps:
            continue
        med, low, high, cov = median_ci(eps)
        lo, hi = c["fresh"]["interval"]
        reached = sum(not math.isinf(e) for e in eps)
        stats[c["config"]] = {"median": med, "reached": reached, "n": len(eps), "label": label, "c": c}
        tuning = c["tuning"]
        lines.append(f"| {label} | {_hyper(raced['base'], c['overrides'])} | {tuning['value']:.0f} ({tuning['n']}) "
                     f"| {c['fresh']['value']:.0f} [{lo:.0f}, {hi:.0f}] | {_fmt_ep(med, limit)} "
                     f"([{_fmt_ep(low, limit)}, {_fmt_ep(high, limit)}], {cov:.0%}) | {reached}/{len(eps)} "
                     f"| {', '.join(_fmt_ep(e, limit) for e in eps)} |")
    lines.append("")
    done = sum(c["fresh"]["n"] for c in v["configs"])
    wanted = len(v["configs"]) * len(v["seeds"])
    if done < wanted:
        missing.append(f"{task}: validation has run {done} of {wanted} fresh-seed jobs (`--validate {task}`)")
        return lines + [f"**Not decided yet**: the validation has run {done} of its {wanted} fresh-seed jobs "
                        f"(seed-major: every configuration gets each fresh seed in turn). No target is judged on a "
                        f"partial validation; the rows above are what has run so far.", ""]
    lines += _raced_verdict(task, v, stats, limit, one_seed)
    return lines


def _raced_verdict(task: str, v: dict, stats: dict, limit: int, one_seed: dict) -> list[str]:
    from scipy.stats import spearmanr

    out = []
    winner = v.get("winner")
    raced = [c for c in v["configs"] if not c.get("label") and not c["baseline"]]
    paper = next((c for c in v["configs"] if c["baseline"]), None)
    raced_winner = min((c for c in raced if c["config"] in stats and stats[c["config"]]["n"] == len(v["seeds"])),
                       key=lambda c: c["fresh"]["value"], default=None)
    one_best = min((c for c in v["configs"] if str(c.get("label", "")).startswith("one-seed") and c["config"] in stats),
                   key=lambda c: c["fresh"]["value"], default=None)
    if raced_winner and one_best and task != "hopper":
        w, o = stats[raced_winner["config"]], stats[one_best["config"]]
        out.append(f"Racing where one seed may suffice: the raced study's best on fresh seeds ({w['label']}) reaches "
                   f"the target on {w['reached']}/{w['n']} fresh seeds, median {_fmt_ep(w['median'], limit)} episodes; "
                   f"the one-seed study's best ({o['label']}) on {o['reached']}/{o['n']}, median "
                   f"{_fmt_ep(o['median'], limit)}.")
    if raced_winner and paper and paper["config"] in stats and task == "hopper":
        w, p = stats[raced_winner["config"]], stats[paper["config"]]
        ok = w["median"] <= 0.5 * p["median"] and w["reached"] >= 0.9 * w["n"]
        out.append(f"Target 1, the validated winner's median episodes to target ≤ 0.5 × the paper settings' median on "
                   f"the same seeds, with success ≥ 90%: **{'Met' if ok else 'Missed'}** — the raced study's best on "
                   f"fresh seeds ({w['label']}) has median {_fmt_ep(w['median'], limit)} and success {w['reached']}/"
                   f"{w['n']}; the paper's settings median {_fmt_ep(p['median'], limit)}, success {p['reached']}/{p['n']}.")
        if winner and winner != raced_winner["config"]:
            out.append(f"  (Over every validated configuration the best on fresh seeds is {stats[winner]['label']}.)")
    # the one-seed study's own estimate of the paper's settings: its enqueued trial's value on seed 0
    paper_one = next((t["value"] for t in one_seed["trials"] if paper and t["state"] == "COMPLETE"
                      and t["overrides"] == paper["overrides"]), math.nan)
    for name, group in (("raced study", [(c, c["tuning"]["value"]) for c in raced + ([paper] if paper else [])]),
                        ("one-seed study", [(c, c["tuning"]["value"]) for c in v["configs"]
                                            if str(c.get("label", "")).startswith("one-seed")]
                         + ([(paper, paper_one)] if paper else []))):
        group = [(c, t) for c, t in group if c["config"] in stats and not math.isnan(t)]
        if len(group) >= 3:
            tuned, fresh = [t for _, t in group], [c["fresh"]["value"] for c, _ in group]
            rho = spearmanr(tuned, fresh).statistic if len(set(tuned)) > 1 and len(set(fresh)) > 1 else math.nan
            tag = " (target ≥ 0.6)" if name == "raced study" else ""
            verdict = f" **{'Met' if rho >= 0.6 else 'Missed'}**" if name == "raced study" else ""
            if math.isnan(rho):
                verdict = " Undefined: the estimates or the results are all equal."
            with_paper = (" (the paper's settings included, at its own study's estimate)"
                          if paper and any(c["config"] == paper["config"] for c, _ in group) else "")
            out.append(f"- Rank correlation of the {name}'s tuning estimates with the fresh-seed results, over its "
                       f"{len(group)} validated configurations{with_paper}: Spearman {rho:.2f}{tag}.{verdict}")
    smac = next((c for c in v["configs"] if c.get("label") == "SMAC3 incumbent" and c["config"] in stats), None)
    if raced_winner and smac and stats[smac["config"]]["n"] == len(v["seeds"]):
        out += _peer_line(stats[raced_winner["config"]], raced_winner, stats[smac["config"]], smac, v["seeds"], limit)
    if task == "hopper" and raced_winner and paper and paper["config"] in stats:
        out += _hopper_causes(v, stats, raced_winner, raced + [paper], limit)
    if "vs_baseline" in v:
        b = v["vs_baseline"]
        p = f"; paired Wilcoxon p = {b['wilcoxon_p']:.3g}" if "wilcoxon_p" in b else ""
        who = f" ({stats[b['winner']]['label']})" if b.get("winner") in stats else ""
        out.append(f"- Winner on the fresh seeds{who} against the paper's settings on the same {b['n']} fresh seeds: "
                   f"probability of improvement {b['probability_of_improvement']:.2f} (P(X < Y) in episodes, as rliable defines it), "
                   f"fewer episodes on {b['paired_wins']} seeds{p}.")
    return out + [""]


def _hopper_causes(v: dict, stats: dict, winner: dict, ranked: list[dict], limit: int) -> list[str]:
    """Why Hopper's targets came out as they did, from the validation's own numbers."""
    out = []
    w = stats[winner["config"]]
    full = [stats[c["config"]] for c in v["configs"] if c["config"] in stats and stats[c["config"]]["n"] == len(v["seeds"])]
    steady = max(full, key=lambda s: s["reached"])
    if w["reached"] < 0.9 * w["n"]:
        q, n = w["reached"] / w["n"], winner["tuning"]["n"]
        out.append(f"- Cause of target 1: success, not speed. No validated configuration, from any tuner, reaches "
                   f"the target within {limit} episodes on 90% of the fresh seeds: the most reliable is "
                   f"{steady['label']} with {steady['reached']}/{steady['n']}. A tuner keeps a configuration for its "
                   f"record on its tuning seeds, and a record of {n} seeds cannot tell the rates apart: a configuration "
                   f"that reaches the target on {q:.0%} of seeds reaches it on all {n} with probability {q ** n:.2f}, "
                   f"and among tens of configurations some will. Telling {q:.0%} from 90% takes tens of seeds per "
                   f"configuration (docs/population.md), which at this compute would leave room for a handful of "
                   f"configurations.")
    group = [c for c in ranked if c["config"] in stats and not math.isnan(c["tuning"]["value"])]
    swapped = [(a, b) for i, a in enumerate(group) for b in group[i + 1:]
               if (a["tuning"]["value"] - b["tuning"]["value"]) * (a["fresh"]["value"] - b["fresh"]["value"]) < 0]
    if len(group) == 3 and swapped:
        a, b = swapped[0]
        gap = abs(a["tuning"]["value"] - b["tuning"]["value"]) / min(a["tuning"]["value"], b["tuning"]["value"])
        n = min(a["tuning"]["n"], b["tuning"]["n"])
        pairs = "; ".join(
            f"{stats[a['config']]['label']} (estimate {a['tuning']['value']:.0f}, fresh {a['fresh']['value']:.0f}) "
            f"against {stats[b['config']]['label']} (estimate {b['tuning']['value']:.0f}, fresh {b['fresh']['value']:.0f})"
            for a, b in swapped)
        out.append(f"- Cause of target 2: over 3 configurations Spearman can only be 1, 0.5, -0.5 or -1, and "
                   f"{len(swapped)} pair{'s' if len(swapped) > 1 else ''} swapped order between tuning and fresh "
                   f"seeds: {pairs}. The swapped estimates differ by {gap:.0%} over {n} seeds each, a gap too small for "
                   f"{n} seeds of Hopper to order (a single miss moves a restricted mean by up to "
                   f"{limit / n:.0f} episodes); with 3 configurations the correlation says little either way.")
    return out


def _peer_line(w: dict, winner: dict, p: dict, peer: dict, seeds: list[int], limit: int) -> list[str]:
    """The raced study's best against SMAC3's incumbent on the same fresh seeds (episodes, a miss at the budget)."""
    import numpy as np
    from scipy.stats import mannwhitneyu, wilcoxon

    x = np.array([winner["fresh"]["per_seed"][str(s)] for s in seeds], dtype=float)
    y = np.array([peer["fresh"]["per_seed"][str(s)] for s in seeds], dtype=float)
    # P(X < Y): the raced best needs fewer episodes than the peer's incumbent (ties count half), as rliable
    poi = mannwhitneyu(-x, -y, alternative="two-sided").statistic / (len(x) * len(y))
    test = (f"; paired Wilcoxon p = {wilcoxon(-x, -y, alternative='greater', zero_method='zsplit').pvalue:.3g}"
            if np.any(x != y) else "")
    return [f"- Peer, SMAC3's incumbent on the same {len(seeds)} fresh seeds: median {_fmt_ep(p['median'], limit)} "
            f"episodes, success {p['reached']}/{p['n']}, restricted mean {peer['fresh']['value']:.0f}; the raced "
            f"study's best ({w['label']}): median {_fmt_ep(w['median'], limit)}, success {w['reached']}/{w['n']}, "
            f"restricted mean {winner['fresh']['value']:.0f}. Raced best against SMAC3: probability of improvement "
            f"{poi:.2f}, fewer episodes on {int(np.sum(x < y))} seeds, ties on {int(np.sum(x == y))}{test}."]


def _median(values: list[float]) -> float:
    if not values:
        return float("nan")
    return median_ci(values)[0]


def _evidence(best: dict | None, stats: dict, budget: int, paper_episodes: int) -> list[str]:
    """What the fresh seeds say about the study and the paper's figure (facts from the data, no verdict)."""
    notes = []
    tuned, paper = stats.get("tuned"), stats.get("paper")
    if best and tuned and not best["censored"] and tuned["median"] > 3 * best["value"]:
        shown = f">{budget}" if math.isinf(tuned["median"]) else f"{tuned['median']:.0f}"
        notes.append(f"- On its study seed the best trial reached the threshold in {best['value']:.0f} episodes; on "
                     f"fresh seeds the same configuration's median is {shown}. The study scores each trial on one "
                     f"seed, so its minimum rewards a lucky seed as much as a good configuration.")
    if paper:
        notes.append(f"- The paper's settings reach the threshold on {paper['reached']}/{paper['n']} fresh seeds within "
                     f"{budget} episodes here; the paper's {paper_episodes} episodes were measured on the v1 "
                     f"environments.")
    return notes + [""] if notes else []


def _verdict(task: str, stats: dict, seeds_wanted: int) -> str:
    tuned = stats.get("tuned")
    if not tuned or tuned["n"] < seeds_wanted:
        return "Not decided yet: the tuned configuration has not run on every fresh seed."
    if task == "swimmer":
        rate = tuned["within1000"] / tuned["n"]
        paper = stats.get("paper")
        extra = f" (paper's configuration: {paper['within1000']}/{paper['n']})" if paper else ""
        return f"**{'Met' if rate >= 0.9 else 'Missed'}**: tuned {tuned['within1000']}/{tuned['n']} = {rate:.0%}{extra}."
    limit = 0.5 * TASKS["hopper"][1]
    med = tuned["median"]
    shown = "not reached" if math.isinf(med) else f"{med:.0f}"
    return f"**{'Met' if med <= limit else 'Missed'}**: tuned median {shown} episodes against the limit {limit:.0f}."


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--study", action="append", choices=sorted(TASKS), default=[],
                        help="run (or continue) this task's spend-to-target study (repeatable)")
    parser.add_argument("--n-trials", type=int, default=0, help="finished trials the study should hold "
                                                                   "(default: the study file's n_trials)")
    parser.add_argument("--n-jobs", type=int, default=1, help="trials in parallel (as subprocesses when > 1)")
    parser.add_argument("--timeout", type=float, default=0.0, help="stop starting trials after this many seconds")
    parser.add_argument("--fresh-seeds", type=int, default=0, help="run tuned and paper configurations on K fresh seeds")
    parser.add_argument("--task", action="append", choices=sorted(TASKS), default=[],
                        help="tasks for --fresh-seeds (default: every task with a finished study)")
    parser.add_argument("--jobs", type=int, default=1, help="fresh-seed runs in parallel processes")
    parser.add_argument("--config", action="append", choices=["tuned", "paper"], default=[],
                        help="fresh seeds of this configuration only (repeatable; default both): two processes "
                             "may then share the work, one per configuration")
    parser.add_argument("--seeds-wanted", type=int, default=5, help="fresh seeds the report expects per configuration")
    parser.add_argument("--raced-study", action="append", choices=sorted(RACED), default=[],
                        help="run (or continue) this task's raced study, compute-matched to the one-seed study")
    parser.add_argument("--budget-factor", type=float, default=2.0,
                        help="the raced study's compute as a multiple of the one-seed study's (default 2)")
    parser.add_argument("--extra-core-seconds", type=float, default=0.0,
                        help="CPU core-seconds spent by an earlier run of --raced-study that were not recorded "
                             "(added once to the stored total)")
    parser.add_argument("--validate", action="append", choices=sorted(RACED), default=[],
                        help="validate the raced study's top configurations, the paper's settings and the one-seed "
                             "study's best on fresh seeds")
    parser.add_argument("--validate-seeds", type=int, default=0, help="fresh seeds per configuration (default: "
                                                                        "the study file's validate.seeds)")
    parser.add_argument("--one-seed-top", type=int, default=2,
                        help="the one-seed study's best completed configurations to validate beside (default 2)")
    parser.add_argument("--report", action="store_true", help="only regenerate the report from the cache")
    parser.add_argument("--smoke", action="store_true", help="toy sizes, separate data and report")
    args = parser.parse_args(argv)
    for name in ("n_trials", "n_jobs", "fresh_seeds", "jobs", "seeds_wanted"):
        if getattr(args, name) < 0 or (name in ("n_jobs", "jobs", "seeds_wanted") and getattr(args, name) < 1):
            parser.error(f"--{name.replace('_', '-')} = {getattr(args, name)} is out of range")
    root = data_root(args.smoke)
    root.mkdir(parents=True, exist_ok=True)
    if not args.report:
        for task in args.study:
            run_study_stage(task, args, root)
        if args.fresh_seeds:
            run_fresh_stage(args.task or sorted(TASKS), args, root)
        for task in args.raced_study:
            run_raced_stage(task, args, root)
        for task in args.validate:
            run_validate_stage(task, args, root)
    # refresh the study summaries from the storage: trials finished by other workers, or by a study
    # stage that is still running (or was stopped) and has not written its summary yet
    stored = []
    if (root / "optuna.db").exists():
        import optuna

        stored = optuna.get_all_study_names(storage=f"sqlite:///{root / 'optuna.db'}")
    for task in TASKS:
        if task in args.study:
            continue
        spec = load_spec(task, args.smoke, root)
        if spec.settings.name in stored:
            summarise_study(task, spec, read_study(spec), root)
    for task in RACED:
        spec = load_raced_spec(task, args.smoke, root)
        if (root / f"raced_{task}.journal").exists() and task not in args.raced_study:
            summarise_raced(task, spec, read_study(spec), root)
    seeds_wanted = args.fresh_seeds or args.seeds_wanted
    path = build_report(root, args.smoke, seeds_wanted)
    print(f"report: {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
