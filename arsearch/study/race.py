"""A trial of a seed-robust study: one configuration trained on several shared seeds, raced SMAC-style.

Without racing (``race = false``) a trial runs the first ``max_per_config`` tuning seeds, in
parallel, and its value is their aggregate. With racing, the trial is a *challenger* of the
study's incumbent (`SeedTable.incumbent`):

1. the incumbent gains one tuning seed it has not run yet (up to the cap), run beside the
   challenger's first seed: configurations that keep winning are measured ever more precisely;
2. the challenger runs seeds in doubling batches, 1, 2, 4, ..., only seeds the incumbent has
   already run, so every comparison is paired on the same seeds (common random numbers);
3. after each batch its aggregate over the shared seeds is compared with the incumbent's on
   those seeds; if worse (or, with ``alpha > 0``, worse by a one-sided paired Wilcoxon test at
   that level), the trial is stopped as PRUNED, with where and why in its attributes
   (``raced_out``) and MLflow run;
4. a challenger that runs every seed the incumbent has and is not worse completes; with as many
   seeds and a better aggregate it is the new incumbent.

The spend-grid pruner keeps working inside the first tuning seed's job, which every trial runs
first: intermediate reports are that seed's learning curve, so the pruner compares trials on the
same seed at equal spend. Seed jobs after the first report nothing to the pruner.
"""

from __future__ import annotations

import logging
import math
import os
import random
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path

import optuna

from ..config import JobConfig
from .seeds import Objective as SeedObjective
from .seeds import SeedTable, config_id

log = logging.getLogger("arsearch.study")

# run_job(config, job_dir, primary, stop) -> (result, history); `primary`: this seed's evaluations
# go to the pruner (and the trial's MLflow curves); `stop` is set when the trial's other seeds failed
RunJob = Callable[[JobConfig, Path, bool, threading.Event], tuple[dict, list]]


class TrialFailed(RuntimeError):
    """A seed job that could not produce its value."""


def seed_row(result: dict, spec, config: JobConfig, trial_number: int) -> dict:
    """One finished seed job as a row of the study's table."""
    from .spend import SPEND_KEYS

    s = spec.settings
    spent = result.get(SPEND_KEYS[s.spend])
    reached = result.get("stop/target_reached") == 1.0
    row = {"trial": trial_number, "spend": float(spent) if isinstance(spent, (int, float)) else None,
           "seconds": result.get("study/job_seconds"),
           "success": reached if config.stop is not None and config.stop.target is not None else None}
    if s.objective == "spend_to_target":
        budget = float(getattr(config.stop, s.spend))
        row["value"] = float(spent) if reached else budget * s.censored_penalty
    else:
        v = result.get(s.metric)
        if not isinstance(v, (int, float)) or not math.isfinite(v):
            raise TrialFailed(f"metric {s.metric!r} is {v!r} in the seed job's result; available: "
                              f"{', '.join(k for k in result if '/' in k)}")
        row["value"] = float(v)
    return row


def seed_objective(spec) -> SeedObjective:
    """How rows are aggregated and compared in this study."""
    s = spec.settings
    budget = None
    if s.objective == "spend_to_target":
        stop = spec.config_for({}).stop
        budget = float(getattr(stop, s.spend))
    return SeedObjective(direction=s.direction, aggregate=s.aggregate, budget=budget, penalty=s.censored_penalty)


def job_for_seed(config: JobConfig, seed: int, job_dir: Path) -> JobConfig:
    import copy

    out = copy.deepcopy(config)
    out.seed = int(seed)
    out.checkpoint.dir = str(job_dir)
    return out


def run_seeds(jobs: list[tuple[JobConfig, Path, bool, Callable[[dict], None]]], run_job: RunJob,
              parallel: int, on_time: Callable[[float], None] | None = None) -> None:
    """Run seed jobs `parallel` at a time; each finished job's result goes to its `done` callback at
    once (so a row is stored as soon as its job ends). The first failure stops the others and is raised.
    `on_time` gets each job's wall-clock seconds, finished or not (what the study spent)."""
    stop = threading.Event()

    def one(config, job_dir, primary, done):
        start = time.perf_counter()
        try:
            result, _ = run_job(config, job_dir, primary, stop)
        finally:
            if on_time is not None:
                on_time(time.perf_counter() - start)
        result["study/job_seconds"] = time.perf_counter() - start
        done(result)

    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(jobs)))) as pool:
        futures = [pool.submit(one, *job) for job in jobs]
        finished, _ = wait(futures, return_when=FIRST_EXCEPTION)
        errors = [f.exception() for f in finished if f.exception() is not None]
        if errors:
            stop.set()
            for f in futures:       # jobs not started yet never start
                f.cancel()
            wait(futures)
            pruned = [e for e in errors if isinstance(e, optuna.TrialPruned)]
            raise pruned[0] if pruned else errors[0]


class _RacedOutAsComplete:
    """A study as a pruner sees it: the raced-out trials among the COMPLETE ones (their first seed's job
    ran to its end and reported its whole curve; only the later comparison stopped the trial)."""

    def __init__(self, study):
        self._study = study

    def __getattr__(self, name):
        return getattr(self._study, name)

    def get_trials(self, deepcopy: bool = True, states=None):
        trials = self._study.get_trials(deepcopy=deepcopy, states=states)
        if states is not None and optuna.trial.TrialState.COMPLETE in states \
                and optuna.trial.TrialState.PRUNED not in states:
            trials = trials + [t for t in self._study.get_trials(deepcopy=deepcopy, states=(optuna.trial.TrialState.PRUNED,))
                               if "raced_out" in t.user_attrs]
        return trials


class RacedOutAware(optuna.pruners.BasePruner):
    """Wraps the study's pruner so that it learns from raced-out trials (Optuna's median, percentile,
    Wilcoxon and successive-halving pruners otherwise read COMPLETE trials only: in a raced study, where
    most trials are raced out, they would hardly ever start pruning)."""

    def __init__(self, pruner: optuna.pruners.BasePruner):
        self.pruner = pruner

    def prune(self, study, trial) -> bool:
        return self.pruner.prune(_RacedOutAsComplete(study), trial)


CLAIM_POLL = 5.0       # seconds between looks at a seed job another worker is running


class Claims:
    """Held while this worker runs some seed jobs: the jobs it could claim (`won`; another worker may
    hold the rest, see `SeedTable.try_claim`), their claims refreshed on a thread, so that other workers
    wait for those rows instead of running the same jobs."""

    def __init__(self, table: SeedTable, jobs: list[tuple[str, int]], token: str, validation: bool = False):
        self.table, self.token, self.validation = table, token, validation
        self.wanted = jobs
        self.won: list[tuple[str, int]] = []
        self.done = threading.Event()

    def __enter__(self):
        self.won = [job for job in self.wanted if self.table.try_claim(*job, self.token, self.validation)]
        self.thread = threading.Thread(target=self._refresh, name="arsearch-claims", daemon=True)
        self.thread.start()
        return self

    def _refresh(self) -> None:
        from .seeds import CLAIM_REFRESH

        while not self.done.wait(CLAIM_REFRESH):
            for cid, seed in self.won:
                try:
                    self.table.claim(cid, seed, self.token, self.validation)
                except Exception as e:                              # noqa: BLE001 - a storage hiccup
                    log.warning("could not refresh the claim on seed job %s/%d: %s", cid, seed, e)

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.thread.join()
        for cid, seed in self.won:
            try:
                self.table.claim(cid, seed, self.token, self.validation, release=True)
            except Exception:                                       # noqa: BLE001 - it goes stale anyway
                pass


def wait_for_others() -> None:
    """Sleep before looking again at seed jobs other workers hold; jittered, so that two workers that
    withdrew from the same job at the same moment do not retry in step."""
    time.sleep(CLAIM_POLL * (0.5 + random.random()))


class SeededTrial:
    """One trial of a study with [study.seeds]: the configuration's seeds, raced or not."""

    def __init__(self, spec, study, output: Path, run_job: RunJob, parallel: int, on_seed=None):
        self.spec, self.study, self.output, self.run_job = spec, study, output, run_job
        self.parallel, self.on_seed = parallel, on_seed
        self.settings = spec.settings.seeds
        self.objective = seed_objective(spec)
        self.table = SeedTable(study)
        self.tuning = self.table.tuning_seeds(self.settings, spec.settings.seed)[:self.settings.count]
        self.cap = self.settings.cap
        self.token = f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"   # this worker's claims
        self.job_seconds: list[float] = []     # every seed job this trial ran, finished or not: its compute
        self._time_lock = threading.Lock()

    def _spent(self, seconds: float) -> None:
        with self._time_lock:
            self.job_seconds.append(seconds)

    def config_dir(self, cid: str) -> Path:
        return self.output / "configs" / cid

    def __call__(self, trial: optuna.Trial, overrides: dict, config: JobConfig, result: dict) -> float:
        cid = config_id(overrides)
        # an [[enqueue]] configuration (e.g. a paper's settings) is a baseline that validation reruns
        baseline = any(all(trial.params.get(k) == v for k, v in entry.items()) for entry in self.spec.enqueue)
        self.table.register(cid, overrides, trial.number, baseline=baseline)
        trial.set_user_attr("config_id", cid)
        try:
            if self.settings.race:
                value = self._race(trial, cid, overrides, config, result)
            else:
                self._run(trial, cid, config, self.tuning[:self.cap], primary_seed=self.tuning[0])
                value = self._value(cid, self.tuning[:self.cap])
        finally:
            trial.set_user_attr("job_seconds", sum(self.job_seconds))
            trial.set_user_attr("jobs", len(self.job_seconds))
        self.table.mark(cid, completed=trial.number)
        self._finish_attrs(trial, cid, result, value)
        return value

    # -- one batch ----------------------------------------------------------------------------------
    def _run(self, trial, cid: str, config: JobConfig, seeds: list[int], primary_seed: int | None,
             extra: list[tuple[str, JobConfig, int]] = ()) -> None:
        """Run the seeds of `cid` (and `extra` (config id, config, seed) jobs for other configurations)
        that have no row yet, in parallel; store each row as its job ends."""
        wanted = [(cid, config, seed, seed == primary_seed) for seed in seeds] + \
            [(other, other_config, seed, False) for other, other_config, seed in extra]
        while True:
            table = self.table.refresh()
            missing = [w for w in wanted if w[2] not in table.rows(w[0])]
            if not missing:
                return
            free = [w for w in missing if not table.claimed_elsewhere(w[0], w[2], self.token)]
            with Claims(self.table, [(w[0], w[2]) for w in free], self.token) as claims:
                mine = [w for w in free if (w[0], w[2]) in claims.won]
                if mine:
                    run_seeds([self._job(trial, c, cfg, seed, primary) for c, cfg, seed, primary in mine],
                              self.run_job, self.parallel, on_time=self._spent)
            if not mine:        # every missing job is running in another worker: wait for its row
                wait_for_others()

    def _job(self, trial, cid: str, config: JobConfig, seed: int, primary: bool):
        job_dir = self.config_dir(cid) / f"seed_{seed}"
        job = job_for_seed(config, seed, job_dir)

        def done(result: dict) -> None:
            row = seed_row(result, self.spec, job, trial.number)
            self.table.record(cid, seed, row)
            log.info("trial %d: configuration %s, seed %d: %s = %.6g", trial.number, cid, seed,
                     self.spec.settings.metric, row["value"])
        return job, job_dir, primary, done

    def _value(self, cid: str, seeds: list[int]) -> float:
        rows = self.table.refresh().rows(cid)
        return self.objective.value([rows[s] for s in seeds if s in rows])

    # -- racing ------------------------------------------------------------------------------------
    def _race(self, trial, cid: str, overrides: dict, config: JobConfig, result: dict) -> float:
        from ..config import apply_overrides, load_job

        batch, ran, first = 1, 0, True
        while True:
            table = self.table.refresh()
            incumbent = table.incumbent(self.objective, self.tuning, exclude=cid)
            if incumbent is None:           # the first configuration: one seed, the incumbent from now on
                self._run(trial, cid, config, self.tuning[:1], primary_seed=self.tuning[0])
                return self._value(cid, self.tuning[:1])
            inc_seeds = [s for s in self.tuning[:self.cap] if s in table.rows(incumbent)]
            extra = []
            missing = [s for s in self.tuning[:self.cap] if s not in inc_seeds]
            if first and missing:           # the incumbent gains a seed beside the challenger's first batch
                inc_overrides = table.configs()[incumbent]["overrides"]
                inc_config = load_job(data=apply_overrides(_copy(self.spec.base), dict(inc_overrides)))
                inc_config.tracking = config.tracking
                extra.append((incumbent, inc_config, missing[0]))
            ran = min(ran + batch, len(inc_seeds))
            self._run(trial, cid, config, inc_seeds[:ran], primary_seed=self.tuning[0], extra=extra)
            first = False
            table = self.table.refresh()
            mine, theirs = table.rows(cid), table.rows(incumbent)
            shared = [s for s in self.tuning if s in mine and s in theirs]
            a = self.objective.value([mine[s] for s in shared])
            b = self.objective.value([theirs[s] for s in shared])
            if self.settings.alpha > 0:
                worse, p = self.objective.worse_by_test([mine[s] for s in shared], [theirs[s] for s in shared],
                                                        self.settings.alpha)
            else:
                worse, p = self.objective.better(b, a), None
            if worse:
                self._raced_out(trial, cid, incumbent, shared, a, b, p, result)
            inc_now = [s for s in self.tuning[:self.cap] if s in theirs]
            if ran >= len(inc_now):         # every seed the incumbent has: the challenger survived
                return self._value(cid, [s for s in self.tuning if s in mine])
            batch *= 2

    def _raced_out(self, trial, cid, incumbent, shared, mine, theirs, p, result) -> None:
        info = self.table.configs().get(incumbent, {})
        why = {"after_seeds": len(shared), "seeds": shared, "aggregate": self.spec.settings.aggregate,
               "challenger": mine, "incumbent": theirs, "incumbent_config": incumbent,
               "incumbent_trials": info.get("trials", []), "p_value": p, "alpha": self.settings.alpha}
        trial.set_user_attr("raced_out", why)
        self.table.mark(cid, raced_out=why)
        self._finish_attrs(trial, cid, result, mine)
        test = f", one-sided Wilcoxon p = {p:.3g} < {self.settings.alpha}" if p is not None else ""
        message = (f"raced out after {len(shared)} seed(s): {self.spec.settings.aggregate} {mine:.6g} against "
                   f"the incumbent's {theirs:.6g} on the same seeds (configuration {incumbent}, trial "
                   f"{info.get('trials', ['?'])[0]}){test}")
        result["stop/reason"] = message
        result["study/pruned_at"] = f"{len(shared)} seeds"
        raise optuna.TrialPruned(message)

    def _finish_attrs(self, trial, cid: str, result: dict, value: float) -> None:
        rows = self.table.refresh().rows(cid)
        seeds = {str(s): rows[s]["value"] for s in self.tuning if s in rows}
        if self.on_seed is not None:        # every seed the configuration has now, run by this trial or before
            for index, seed in enumerate(self.tuning):
                if seed in rows:
                    self.on_seed(cid, seed, rows[seed], index)
        trial.set_user_attr("seeds", seeds)
        trial.set_user_attr("aggregate", {"name": self.spec.settings.aggregate, "value": value, "n": len(seeds)})
        result[f"study/{self.spec.settings.metric}"] = value
        result["study/seeds"] = len(seeds)
        if self.spec.settings.objective == "spend_to_target":
            trial.set_user_attr("censored", not all(rows[int(s)].get("success") for s in seeds))


def _copy(data: dict) -> dict:
    return {k: (_copy(v) if isinstance(v, dict) else v) for k, v in data.items()}
