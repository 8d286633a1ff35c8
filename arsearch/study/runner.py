"""Storage, sampler and pruner by name; the MLflow parent/child runs; `run_study`.

Storages: any Optuna RDB URL (``sqlite:///optuna.db``, ``postgresql://user:pw@host/db``,
``mysql://...``) gets heartbeats, so a trial whose worker died is marked FAIL by the next worker
(`fail_stale_trials`, run by Optuna before each trial) and re-queued by
`RetryHeartbeatStaleTrialCallback`; ``journal:PATH`` (or a path ending in .log / .journal) is an
Optuna journal file shared by processes on one file system; ``memory`` is in-process only.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna

from ..config import ConfigError, JobConfig
from ..tracking import redact
from .objective import REQUEUED_FROM, Objective
from .space import StudySpec

log = logging.getLogger("arsearch.study")


class RetryStaleTrial(optuna.storages.RetryHeartbeatStaleTrialCallback):
    """Optuna's re-queueing of a trial whose worker died (no heartbeat for the grace period), which
    also says so and calls what `on_stale_trial` registered for the study (the study's tracker ends
    that trial's MLflow run)."""

    watchers: dict[str, Callable] = {}      # study name -> fn(trial), for this process

    def __init__(self, max_retry: int):
        super().__init__(max_retry=max_retry)
        self.max_retry = max_retry
        self.on_stale = None

    def __call__(self, study, trial) -> None:
        super().__call__(study, trial)
        tries = len(trial.system_attrs.get("retry_history", [])) + 1
        what = (f"re-queued (retry {tries} of {self.max_retry})" if tries <= self.max_retry
                else f"not retried (study.max_retry = {self.max_retry} reached)")
        log.warning("trial %d of study %r was still RUNNING with no heartbeat (its worker died): marked FAIL and %s",
                    trial.number, study.study_name, what)
        if self.on_stale is not None:
            self.on_stale(trial)
        watcher = self.watchers.get(study.study_name)
        if watcher is not None:
            watcher(trial)


def on_stale_trial(study: optuna.Study, fn: Callable) -> None:
    """Call `fn(trial)` whenever this process finds a trial of `study` stale (its worker died, so
    Optuna marks it FAIL and re-queues it). Only SQL storages have heartbeats; with others nothing
    is ever found stale."""
    RetryStaleTrial.watchers[study.study_name] = fn


def retried_trial_number(study: optuna.Study, trial) -> int | None:
    """The number of the trial that the running `trial` re-runs because its worker died, else None."""
    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    frozen = next((t for t in running if t.number == trial.number), None)
    if frozen is None:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(frozen)


@contextlib.contextmanager
def _creating(url: str):
    """Held while a storage's tables may be created: a file lock for SQLite (two processes creating
    the same fresh database crash), nothing for server databases (they retry, see `_retry_race`)."""
    if url.startswith("sqlite:///") and url[len("sqlite:///"):] not in ("", ":memory:"):
        from filelock import FileLock

        with FileLock(str(Path(url[len("sqlite:///"):]).resolve()) + ".lock"):
            yield
    else:
        yield


def _retry_race(fn, what: str, attempts: int = 6):
    """`fn()`, retried when it collided with another process creating the same tables or rows
    (PostgreSQL: duplicate key ... pg_type_typname_nsp_index; alembic: UNIQUE constraint failed)."""
    for attempt in range(attempts):
        try:
            return fn()
        except Exception as e:                                      # noqa: BLE001
            text = str(e)
            race = any(s in text for s in ("already exists", "duplicate key", "UNIQUE constraint", "Duplicate entry",
                                           "could not serialize", "deadlock detected"))
            if not race or attempt == attempts - 1:
                raise
            log.info("%s collided with another worker creating it; retrying", what)
            time.sleep(0.2 + random.random() * (attempt + 1) * 0.5)
    raise AssertionError("unreachable")


def make_storage(url: str, heartbeat_interval: int = 10, grace_period: int = 0, max_retry: int = 2):
    if url in ("memory", ":memory:", ""):
        return optuna.storages.InMemoryStorage()
    if url.startswith("journal:") or url.endswith((".log", ".journal")):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        path = url[len("journal:"):] if url.startswith("journal:") else url
        if Path(path).exists() and not Path(path).is_file():
            raise ConfigError(f"study.storage {url!r}: {path} is not a regular file (a directory?); a journal "
                              f"storage is one file, which the first worker creates")
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            return JournalStorage(JournalFileBackend(path))
        except (OSError, ValueError) as e:
            raise ConfigError(f"study.storage {url!r} cannot be opened: {type(e).__name__}: {e}") from None
    if "://" not in url:
        raise ConfigError(f"study.storage = {redact(url)!r} is not a storage URL; use sqlite:///FILE, "
                          f"postgresql://USER:PASS@HOST/DB, journal:FILE or memory")
    url = _with_postgres_driver(url)
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite:///"):
        db = url[len("sqlite:///"):]
        if db and db != ":memory:":
            if Path(db).exists() and not Path(db).is_file():     # checked before _creating leaves DB.lock
                raise ConfigError(f"study.storage {redact(url)!r}: {db} is not a regular file (a directory?); "
                                  f"an SQLite storage is one file, which the first worker creates")
            Path(db).parent.mkdir(parents=True, exist_ok=True)
        engine_kwargs = {"connect_args": {"timeout": 60}}
    else:
        engine_kwargs = {"pool_pre_ping": True}

    def create():
        with warnings.catch_warnings():     # heartbeats are "experimental" in Optuna 5, and what we need
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_interval,
                grace_period=grace_period or None, heartbeat_stale_trial_callback=RetryStaleTrial(max_retry))
    try:
        with _creating(url):
            return _retry_race(create, "creating the study storage")
    except Exception as e:                                         # noqa: BLE001
        raise ConfigError(f"study.storage {redact(url)!r} cannot be opened: {type(e).__name__}: "
                          f"{redact(str(e).splitlines()[0]) if str(e) else ''}") from None


def _with_postgres_driver(url: str) -> str:
    """SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3; use psycopg2 when only that one is installed."""
    if not url.startswith(("postgresql://", "postgres://")):
        return url
    import importlib.util

    if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is not None:
        return "postgresql+psycopg2://" + url.split("://", 1)[1]
    return url


def make_sampler(name: str, seed: int | None, multi_objective: bool = False, startup_trials: int = 5):
    with warnings.catch_warnings():         # TPE's multivariate/group and GP are "experimental" in Optuna 5
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return _make_sampler(name, seed, multi_objective, startup_trials)


def _make_sampler(name: str, seed: int | None, multi_objective: bool, startup_trials: int):
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup_trials, constant_liar=True,
                                          multivariate=True, group=True)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    if multi_objective:
        raise ConfigError(f"study.sampler = {name!r} is single-objective; use tpe, nsga2 or random "
                          f"for a study with several metrics")
    if name == "cmaes":
        try:
            import cmaes  # noqa: F401
        except ImportError:
            raise ConfigError("study.sampler = 'cmaes' needs the cmaes package: pip install cmaes") from None
        # CMA-ES searches continuous keys; categorical ones go to the independent (random) sampler
        return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=startup_trials, warn_independent_sampling=False)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup_trials, warn_independent_sampling=False)
    raise ConfigError(f"study.sampler = {name!r} is not allowed")


def make_pruner(name: str, iterations: int | str, eval_every: int, startup_trials: int = 5, warmup_steps: int = 0):
    """A pruner by name. Its resources are in the steps trials report at (see `arsearch.study.spend`):
    `iterations` the most a trial spends ("auto": the first finished trial's), `eval_every` the spend
    between two reports, `warmup_steps` the spend before a trial may be pruned."""
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=startup_trials, n_warmup_steps=warmup_steps)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=max(eval_every, warmup_steps or 1), max_resource=iterations)
    if name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=max(eval_every, warmup_steps or 1))
    if name == "wilcoxon":
        # pairs the steps (iterations) this trial shares with the best trial
        return optuna.pruners.WilcoxonPruner(p_threshold=0.1, n_startup_steps=max(warmup_steps // max(eval_every, 1), 2))
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ConfigError(f"study.pruner = {name!r} is not allowed")


class StudyTracker:
    """The study's MLflow parent run and its per-trial nested children (all via MlflowClient)."""

    def __init__(self, client, experiment: str, study: optuna.Study, spec: StudySpec):
        from ..tracking import ROLE_TAG, STUDY_TAG, Sender, experiment_id

        self.client, self.study, self.spec = client, study, spec
        self.executor = Sender()
        self.experiment_id = experiment_id(client, experiment)
        from ..reports import EXPERIMENT_ATTR

        if study.user_attrs.get(EXPERIMENT_ATTR) != self.experiment_id:    # for the report's run links
            study.set_user_attr(EXPERIMENT_ATTR, self.experiment_id)
        key = "mlflow_parent_run_id"
        run_id = study.user_attrs.get(key)
        if run_id is not None:
            try:
                if client.get_run(run_id).info.experiment_id != self.experiment_id:
                    run_id = None
            except Exception:                                       # noqa: BLE001 - another store
                run_id = None
        if run_id is None:
            from ..reports import study_description
            from ..tracking import NOTE_TAG, OBJECTIVE_TAG

            run = client.create_run(self.experiment_id, run_name=study.study_name,
                                    tags={STUDY_TAG: study.study_name, ROLE_TAG: "study",
                                          OBJECTIVE_TAG: spec.settings.metrics[0],
                                          "arsearch.direction": spec.settings.directions[0],
                                          NOTE_TAG: study_description(study)})
            run_id = run.info.run_id
            study.set_user_attr(key, run_id)
            from ..tracking import MlflowCallback, flatten

            params = {f"study.{k}": redact(str(v)) for k, v in vars(spec.settings).items()}
            params.update({f"space.{p.key}": _describe(p) for p in spec.params})
            params.update({f"base.{k}": redact(str(v))[:6000] for k, v in flatten(spec.base).items()})
            MlflowCallback(client, JobConfig(), run_id=run_id).log_params(params, what="log study params")
        else:
            client.update_run(run_id, status="RUNNING")
        self.parent_id = run_id
        on_stale_trial(study, lambda trial: self.end_stale_runs())
        self.end_stale_runs()

    def end_stale_runs(self) -> list[int]:
        """End the MLflow runs of this study's trials that are RUNNING in MLflow but not in Optuna: their
        worker was killed (a trial Optuna holds COMPLETE whose queued artifacts died with the process,
        or one failed as stale). Returns the trial numbers."""
        from ..tracking import ROLE_TAG, STATE_TAG, STUDY_TAG, TRIAL_TAG

        name = self.study.study_name.replace("'", "\\'")
        try:
            runs = self.client.search_runs([self.experiment_id], filter_string=(
                f"tags.`{STUDY_TAG}` = '{name}' and tags.`{ROLE_TAG}` = 'trial' and attributes.status = 'RUNNING'"))
            states = {t.number: t.state for t in self.study.get_trials(deepcopy=False)}
        except Exception as e:                                     # noqa: BLE001 - never stops the study
            log.warning("could not look for stale MLflow trial runs: %s", e)
            return []
        ended = []
        for run in runs:
            number = int(run.data.tags.get(TRIAL_TAG, -1))
            state = states.get(number)
            if state is None or state in (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING):
                continue
            status = "FAILED" if state == optuna.trial.TrialState.FAIL else "KILLED"
            self.client.set_tag(run.info.run_id, STATE_TAG, state.name)
            self.client.set_tag(run.info.run_id, "arsearch.ended_by", "a later worker: this trial's worker was killed")
            self.client.set_terminated(run.info.run_id, status)
            ended.append(number)
            log.warning("MLflow run of trial %d (Optuna: %s) was left RUNNING by a killed worker: ended as %s",
                        number, state.name, status)
        return ended

    def child(self, trial: optuna.Trial, config: JobConfig, continue_run: str | None = None,
              requeued_from: int | None = None):
        """The trial's MLflow run: a new nested run, or with `continue_run` the run of the interrupted
        trial `requeued_from` that this one resumes, set RUNNING again and now tagged with this trial."""
        from ..tracking import (
            OBJECTIVE_TAG,
            PARENT_TAG,
            ROLE_TAG,
            STATE_TAG,
            STUDY_TAG,
            TRIAL_TAG,
            MlflowCallback,
        )

        tags = {PARENT_TAG: self.parent_id, STUDY_TAG: self.study.study_name, TRIAL_TAG: str(trial.number),
                ROLE_TAG: "trial", STATE_TAG: "RUNNING", OBJECTIVE_TAG: self.spec.settings.metrics[0]}
        retried = retried_trial_number(self.study, trial)
        if retried is not None:
            tags["arsearch.retry_of"] = str(retried)
        cb = MlflowCallback(self.client, config, experiment=None, run_name=f"trial-{trial.number}", tags=tags,
                            executor=self.executor)
        cb.artifact_config = rerun_config(config, self.study.study_name, trial.number)
        if continue_run is not None and self._continue(cb, continue_run, trial, tags, requeued_from):
            return cb

        def create():
            return self.client.create_run(self.experiment_id, run_name=f"trial-{trial.number}", tags=tags).info.run_id
        cb.run_id = cb.safe("create trial run", create)
        if cb.run_id:
            cb.log_params({**_config_params(config), "trial.number": str(trial.number)})
            trial.set_user_attr("mlflow_run_id", cb.run_id)
        return cb

    def _continue(self, cb, run_id: str, trial, tags: dict, requeued_from: int | None) -> bool:
        """Make `run_id` (an interrupted trial's run) this trial's: RUNNING again, its trial tag this
        trial's (so no worker takes it for a stale run of a FAIL trial), the signal's tags gone. Its
        params stay (MLflow's are write-once; the configuration is the same). False when the run is
        gone (deleted, another store): the trial then gets a new run."""
        from ..tracking import TRIAL_TAG

        def reopen():
            self.client.update_run(run_id, status="RUNNING", name=f"trial-{trial.number}")
            for key in ("arsearch.stopped_by", "arsearch.interrupted"):
                if key in self.client.get_run(run_id).data.tags:
                    self.client.delete_tag(run_id, key)
            self.client.set_tag(run_id, TRIAL_TAG, str(trial.number))
            self.client.set_tag(run_id, "arsearch.requeued_from", str(requeued_from))
            for key, value in tags.items():
                if key != TRIAL_TAG:
                    self.client.set_tag(run_id, key, value)
            return run_id
        try:
            reopen()
        except Exception as e:                                      # noqa: BLE001
            log.warning("the MLflow run %s of interrupted trial %s cannot be continued (%s); trial %d logs to a "
                        "new run", run_id, requeued_from, str(e).splitlines()[0] if str(e) else type(e).__name__,
                        trial.number)
            return False
        cb.run_id = run_id
        trial.set_user_attr("mlflow_run_id", run_id)
        return True

    def finish_child(self, cb, trial, state: str, result: dict, history: list[dict], reason: str = "") -> None:
        from ..tracking import STATE_TAG

        cb.log_checkpoint = state == "COMPLETE"
        stopped_by = trial.user_attrs.get("interrupted") if state == "FAIL" else None
        tags = {STATE_TAG: state}
        if stopped_by:        # stopped by a signal to the study: Optuna records FAIL, MLflow says KILLED
            tags.update({"arsearch.stopped_by": stopped_by, "arsearch.interrupted": "true"})
        if isinstance(result, dict) and result.get("stop/reason"):
            tags["arsearch.stop_reason"] = str(result["stop/reason"])
        if "censored" in trial.user_attrs:        # spend-to-target: missed the target within the budget
            tags["arsearch.censored"] = str(trial.user_attrs["censored"]).lower()
        if state == "PRUNED":       # MLflow's own status for it is KILLED; say what happened
            from ..reports import short_amount
            from ..tracking import PRUNED_TAG
            from .spend import SPEND_KEYS

            # where it was pruned, in the study's spend (the unit its reports and the pruner use)
            spend = self.spec.settings.spend
            spent = next((row[SPEND_KEYS[spend]] for row in reversed(history) if SPEND_KEYS[spend] in row), None)
            at = result.get("study/pruned_at") if result else None
            if at is None:
                at = short_amount(spend, spent) if spent is not None else \
                    (f"iteration {history[-1]['iteration']}" if history else "")
            tags.update({PRUNED_TAG: "true", "arsearch.pruned_at": str(at)})
        if reason:
            tags["arsearch.fail_reason"] = reason[:5000]
        # the runs table shows no metric column until one is picked, but always the run name: put the
        # objective (or the pruning) there, so the table reads like the study at a glance
        name = _run_label(trial.number, "INTERRUPTED" if stopped_by else state, result or {},
                          self.spec.settings.metrics, tags.get("arsearch.pruned_at"))
        if cb.run_id:
            cb.submit(lambda: cb.safe("rename run", self.client.update_run, cb.run_id, name=name))
        # queued on the study's sending thread: the next trial starts while this one's artifacts upload
        status = "KILLED" if stopped_by else {"COMPLETE": "FINISHED", "PRUNED": "KILLED"}.get(state, "FAILED")
        cb.finish(result or {}, history, status=status, tags=tags)
        metric = self.spec.settings.metrics[0]
        value = (result or {}).get(f"study/{metric}", (result or {}).get(metric))
        self.log_progress(trial.number, state, value if state == "COMPLETE" else None)

    def log_progress(self, number: int, state: str, value: float | None) -> None:
        """The parent run moves as trials end: the trial counts so far and the best value so far, at the
        ending trial's number as the step (Optuna records this trial's state only after the objective
        returns, so it is counted here from `state` and `value`)."""
        from ..tracking import MlflowCallback

        try:
            trials = [t for t in self.study.get_trials(deepcopy=False) if t.number != number]
        except Exception as e:                                     # noqa: BLE001 - never stops the study
            log.warning("could not read the study's trials for the parent run: %s", e)
            return
        counts = {st.name.lower(): sum(t.state == st for t in trials) for st in optuna.trial.TrialState}
        counts[state.lower()] = counts.get(state.lower(), 0) + 1
        counts.pop("running", None), counts.pop("waiting", None)
        metrics = {f"trials/{k}": v for k, v in counts.items()}
        if not self.spec.multi_objective:
            maximize = self.study.direction == optuna.study.StudyDirection.MAXIMIZE
            values = [t.value for t in trials if t.state == optuna.trial.TrialState.COMPLETE and t.value is not None]
            values += [value] if isinstance(value, (int, float)) and math.isfinite(value) else []
            if values:
                metrics[f"best_so_far/{self.spec.settings.metrics[0]}"] = max(values) if maximize else min(values)
        parent = MlflowCallback(self.client, JobConfig(), run_id=self.parent_id, log_checkpoint=False,
                                executor=self.executor)
        parent.log_metrics(metrics, step=number)
        parent.flush()

    def log_validation(self, summary: dict) -> None:
        """One MLflow run per validated configuration, nested under the study's parent run: its fresh-seed
        values (step = the fresh seed's index), the aggregate, its interval and the tuning estimate."""
        from ..tracking import PARENT_TAG, ROLE_TAG, STUDY_TAG, MlflowCallback

        for c in summary.get("configs", []):
            tags = {PARENT_TAG: self.parent_id, STUDY_TAG: self.study.study_name, ROLE_TAG: "validation",
                    "arsearch.config": c["config"], "arsearch.baseline": str(c["baseline"]).lower(),
                    "arsearch.winner": str(c["config"] == summary.get("winner")).lower()}
            label = ("baseline" if c["baseline"] else f"rank {c.get('rank', '?')}")
            name = f"validate {label} = {c['fresh']['value']:.4g}"
            cb = MlflowCallback(self.client, JobConfig(), run_id=None, log_checkpoint=False)

            def create(tags=tags, name=name):
                return self.client.create_run(self.experiment_id, run_name=name, tags=tags).info.run_id
            cb.run_id = cb.safe("create validation run", create)
            if not cb.run_id:
                continue
            params = {**{f"config.{k}": redact(str(v)) for k, v in c["overrides"].items()},
                      "trials": str(c["trials"]), "fresh_seeds": str(summary["seeds"])}
            cb.log_params(params)
            for i, seed in enumerate(summary["seeds"]):
                if str(seed) in c["fresh"]["values"]:
                    cb.log_metrics({"fresh/value": c["fresh"]["values"][str(seed)], "fresh/seed": seed}, step=i)
            lo, hi = c["fresh"]["interval"]
            cb.log_metrics({f"fresh/{summary['aggregate']}": c["fresh"]["value"], "fresh/ci_low": lo,
                            "fresh/ci_high": hi, f"tuning/{summary['aggregate']}": c["tuning"]["value"],
                            "tuning/seeds": c["tuning"]["n"]}, step=0)
            cb.flush()
            cb.end("FINISHED")
        extra = {}
        if "rank_correlation" in summary:
            extra["validate/rank_correlation"] = summary["rank_correlation"]["spearman"]
        if "vs_baseline" in summary:
            extra["validate/probability_of_improvement"] = summary["vs_baseline"]["probability_of_improvement"]
        if extra:
            parent = MlflowCallback(self.client, JobConfig(), run_id=self.parent_id, log_checkpoint=False)
            parent.log_metrics(extra, step=0)
            parent.flush()

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until every queued tracking call of this process's trials has been sent (at most `timeout` s)."""
        from ..tracking import FINISH_TIMEOUT, Sender

        timeout = FINISH_TIMEOUT if timeout is None else timeout
        done = self.executor.shutdown(wait=True, timeout=timeout)
        if not done:
            log.warning("MLflow: the tracking store did not answer within %g s; the study's last tracking "
                        "calls were not sent (the trial results are in Optuna's storage)", timeout)
        self.executor = Sender()
        return done

    def finish_study(self, out_dir: Path) -> None:
        """Best values and Optuna's plots on the parent run (a plotting problem never fails the study)."""
        from ..reports import PARENT_RUN_PLOTS, study_plots
        from ..tracking import MlflowCallback

        self.drain()
        cb = MlflowCallback(self.client, JobConfig(), run_id=self.parent_id, log_checkpoint=False)
        s = self.spec.settings
        trials = self.study.get_trials(deepcopy=False)
        counts = {st.name.lower(): sum(t.state == st for t in trials) for st in optuna.trial.TrialState}
        cb.log_metrics({f"trials/{k}": v for k, v in counts.items()}, step=len(trials))
        done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
        if done and not self.spec.multi_objective:
            best = self.study.best_trial
            cb.log_metrics({f"best/{s.metric}": best.value, "best/trial": best.number}, step=len(trials))
            # the best value so far after each completed trial, logged as each trial ended (`log_progress`);
            # here only the points no worker logged (one killed before it could)
            maximize = self.study.direction == optuna.study.StudyDirection.MAXIMIZE
            key = f"best_so_far/{s.metric}"
            try:
                logged = {m.step for m in self.client.get_metric_history(self.parent_id, key)}
            except Exception:                                      # noqa: BLE001 - then log them all
                logged = set()
            best_so_far = None
            for t in sorted(done, key=lambda t: t.number):
                if best_so_far is None or (t.value > best_so_far if maximize else t.value < best_so_far):
                    best_so_far = t.value
                if t.number not in logged:
                    cb.log_metrics({key: best_so_far}, step=t.number)
        cb.flush()
        from ..reports import best_config_toml, study_description
        from ..tracking import NOTE_TAG

        cb.safe("set description", self.client.set_tag, self.parent_id, NOTE_TAG, study_description(self.study))
        if done:
            try:
                from .show import validated_best

                toml = best_config_toml(self.study, validated_best(self.study))
                path = out_dir.parent / "best.toml"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(toml)
                cb.log_artifact(path)
            except (ValueError, ConfigError) as e:
                log.warning("best config not logged: %s", e)
        try:
            for png in study_plots(self.study, out_dir, s.metrics, only=PARENT_RUN_PLOTS):
                cb.log_artifact(png, "plots")
        except Exception as e:                                     # noqa: BLE001
            log.warning("study plots skipped: %s", e)
        cb.end("FINISHED")


def _run_label(number: int, state: str, result: dict, metrics: list[str], pruned_at: str | None) -> str:
    """A trial run's name once it ended: `trial-3 = 0.9422` (the objective; the runs-table link sorts
    by it, so its name is in the header), `trial-4 pruned@40`, `trial-5 fail`. Short, because the
    UI cuts the name column at ~22 characters."""
    if state == "COMPLETE":
        values = [f"{result[m]:.4g}" for m in metrics if isinstance(result.get(m), (int, float))]
        return f"trial-{number} = {', '.join(values)}" if values else f"trial-{number}"
    if state == "PRUNED":
        return f"trial-{number} pruned@{pruned_at}" if pruned_at else f"trial-{number} pruned"
    return f"trial-{number} {state.lower()}"
def rerun_config(config: JobConfig, study: str, number: int) -> JobConfig:
    """A trial's job as a config to train again by hand: its own new directory (it cannot overwrite the
    trial), and a run beside the trial's in the study's experiment, named as a rerun and not nested in the
    study (it is not one of its trials)."""
    import copy

    out = copy.deepcopy(config)
    out.checkpoint.dir = f"runs/{study}-trial-{number}"
    out.tracking.run_name = f"trial-{number} rerun"
    return out


def _config_params(config: JobConfig) -> dict[str, str]:
    from ..tracking import config_params

    return config_params(config)


def _describe(p) -> str:
    if p.kind in ("float", "int"):
        return f"{p.kind} [{p.low}, {p.high}]" + (" log" if p.log else "") + (f" step {p.step}" if p.step else "")
    if p.kind in ("choice", "subset"):
        return f"{p.kind} {p.choices}" + (f" when {p.when}" if p.when else "")
    return f"fixed {p.value!r}"


def _pruner_for(settings, pruner):
    """With racing, most trials end raced out (PRUNED) after running their first seed to the end; their
    curve on that seed is as complete as a completed trial's, so the pruner counts them too."""
    if not settings.seeds.active:
        return pruner
    from .race import RacedOutAware

    return RacedOutAware(pruner)


def load_existing(storage_url: str, name: str | None) -> optuna.Study:
    """An existing study (for show/report); with one study in the storage the name may be omitted."""
    storage = make_storage(storage_url)
    names = [st.study_name for st in optuna.get_all_study_summaries(storage, include_best_trial=False)]
    if name is None:
        if len(names) != 1:
            raise ConfigError(f"{redact(storage_url)} holds {len(names)} studies ({', '.join(names) or 'none'}); "
                              f"name one with --study-name")
        name = names[0]
    if name not in names:
        raise ConfigError(f"no study named {name!r} in {redact(storage_url)}; studies there: {', '.join(names) or 'none'}")
    return optuna.load_study(study_name=name, storage=storage)


def open_study(spec: StudySpec) -> tuple[optuna.Study, bool]:
    """Create or load the study (the storage is created once, here, by this process). Returns (study, created)."""
    s = spec.settings
    storage = make_storage(s.storage, s.heartbeat_interval, s.grace_period, s.max_retry)
    names = {st.study_name for st in optuna.get_all_study_summaries(storage, include_best_trial=False)}
    created = s.name not in names
    # a joining worker draws a fresh sampler seed, else two workers would propose the same trials
    seed = s.seed if created else int.from_bytes(os.urandom(4), "little")
    from .spend import pruner_resources, report_grid

    base = spec.config_for({})
    grid = report_grid(base, s.spend, s.report_grid, s.max_reports)
    max_resource, min_resource, warmup = pruner_resources(base, s.spend, grid, s.warmup_steps)
    study = _retry_race(lambda: optuna.create_study(
        study_name=s.name, storage=storage, load_if_exists=True, directions=s.directions,
        sampler=make_sampler(s.sampler, seed, spec.multi_objective, s.startup_trials),
        pruner=_pruner_for(s, make_pruner(s.pruner, max_resource, min_resource, s.startup_trials, warmup))),
        "creating the study")
    queued = [t.system_attrs.get("fixed_params") for t in study.get_trials(deepcopy=False)]
    for params in spec.enqueue:     # [[enqueue]]: run first; one already queued or run is not queued again
        if params not in queued:
            _retry_race(lambda params=params: study.enqueue_trial(params), "enqueuing a trial")
    requeue_interrupted(study)
    if created or "arsearch.experiment" not in study.user_attrs:     # where its runs, and reruns, are logged
        study.set_user_attr("arsearch.experiment", s.experiment or s.name)
    if created or "arsearch.base" not in study.user_attrs:
        study.set_user_attr("arsearch.base", spec.base)
        study.set_user_attr("arsearch.metrics", s.metrics)
        study.set_user_attr("arsearch.study_file", str(spec.path) if spec.path else "")
    if s.seeds.active:              # drawn once, stored in the study: every trial runs the same seed i
        from .seeds import SeedTable

        SeedTable(study).tuning_seeds(s.seeds, s.seed)
    if created or "arsearch.search" not in study.user_attrs:    # what `report` and the parent run describe
        study.set_user_attr("arsearch.search", {
            "sampler": s.sampler, "pruner": s.pruner, "startup_trials": s.startup_trials,
            "warmup_steps": s.warmup_steps, "space": {p.key: _describe(p) for p in spec.params},
            "spend": s.spend})
    return study, created


REQUEUE_CLAIM = "arsearch.requeue:"    # study user attr prefix: `arsearch.requeue:N@worker`, see `_claim_requeue`
REQUEUE_CLAIM_STALE = 120.0             # seconds after which a claim whose worker never queued the trial lapses


def requeue_interrupted(study: optuna.Study, attempts: int = 8) -> list[int]:
    """Queue once more, with the same parameters, each trial a signal stopped (FAIL with the user attr
    `interrupted`, which `study run` sets): it is not a failed configuration, so the next `study run` runs it
    before any newly sampled trial (Optuna runs WAITING trials first), and that trial continues its job
    (`Objective`: the same checkpoint directory, MLflow run and pruner reports). Optuna's own retry
    (`RetryHeartbeatStaleTrialCallback`) covers only trials whose worker died without a word (no heartbeat);
    an interrupted trial ended cleanly, so nothing else re-runs it. Each is queued once, also when several
    workers open the study at the same moment (`_claim_requeue`; the new trial's user attr `requeued_from`
    names it). Returns the numbers this worker queued."""
    import socket

    token = f"{socket.gethostname()}:{os.getpid()}:{random.getrandbits(32):08x}"
    queued: list[int] = []
    for attempt in range(attempts):
        trials = study.get_trials(deepcopy=False)
        done = {t.user_attrs.get(REQUEUED_FROM) for t in trials}
        again = [t for t in trials if t.state == optuna.trial.TrialState.FAIL and "interrupted" in t.user_attrs
                 and t.number not in done and t.number not in queued]
        contested = False
        for t in again:
            if not _claim_requeue(study, t.number, token):
                # another worker holds it and queues it, or both withdrew: look again after a jittered pause
                contested = True
                continue
            _retry_race(lambda t=t: study.enqueue_trial(dict(t.params), user_attrs={REQUEUED_FROM: t.number}),
                        "re-queuing an interrupted trial")
            queued.append(t.number)
            log.warning("trial %d of study %r was interrupted (%s): queued again with the same parameters; it "
                        "resumes from its checkpoint", t.number, study.study_name, t.user_attrs["interrupted"])
        if not contested:
            break
        time.sleep(0.05 + random.random() * 0.2 * (attempt + 1))
    return queued


def _claim_requeue(study: optuna.Study, number: int, token: str) -> bool:
    """Claim the re-queuing of interrupted trial `number` for this worker. Optuna's storages have no
    compare-and-swap, so (as `SeedTable.try_claim`) the claim is written, then every claim on the trial
    read back: it is kept only if no other live claim is there. Two workers cannot both keep it (the
    later read follows both writes). True: this worker queues it (its claim stays, as a record); False:
    another live claim is there, and this one is withdrawn."""
    from .seeds import other_live_claims

    prefix = f"{REQUEUE_CLAIM}{number}"
    mine = f"{prefix}@{token}"
    study.set_user_attr(mine, {"at": time.time()})
    if not other_live_claims(study.user_attrs, prefix, token, REQUEUE_CLAIM_STALE):
        return True
    study.set_user_attr(mine, None)
    return False


def validate(spec: StudySpec) -> list[str]:
    """Check what only the job itself can tell, before any storage is touched: the base task can be
    built (dataset and model importable, environment made) and every study metric is one the job
    reports. Returns the metrics the job reports; ConfigError otherwise."""
    from ..tasks import build_task
    from .objective import job_metrics

    base = spec.config_for({})
    _check_places(spec, base)
    try:
        task = build_task(base)
    except ValueError as e:
        raise ConfigError(f"study.base: {e}") from None
    try:
        reported = job_metrics(base, task)
    finally:
        task.close()
    # a spend-to-target study scores the spend at its target (whose metric the job config checks)
    derived = spec.settings.metrics if spec.settings.objective == "spend_to_target" else []
    unknown = [m for m in spec.settings.metrics if m not in reported and m not in derived]
    if unknown:
        raise ConfigError(f"study metric {', '.join(map(repr, unknown))} is not reported by this job; "
                          f"it reports: {', '.join(reported)}")
    return reported


def _same_database(a: str, b: str) -> bool:
    """Whether two SQLAlchemy-style URLs name one database (SQLite: the same file)."""
    def norm(url: str) -> str:
        if url.startswith("sqlite:///"):
            return "sqlite:" + os.path.realpath(url[len("sqlite:///"):])
        scheme, sep, rest = url.partition("://")
        return scheme.split("+")[0] + sep + rest          # postgresql+psycopg2:// is postgresql://
    return norm(a) == norm(b)


def _check_places(spec: StudySpec, base: JobConfig) -> None:
    """Where the study writes, checked before anything is written: trial directories under a writable
    `study.output` (else every trial would fail), and an MLflow store that is not the Optuna database
    (MLflow would add its tables to it)."""
    from ..checkpoint import CheckpointError, check_writable
    from ..tracking import resolve_uri

    s = spec.settings
    try:
        check_writable(Path(s.output) / s.name, "study.output")
    except CheckpointError as e:
        raise ConfigError(str(e)) from None
    if s.tracking:
        uri = resolve_uri(s.tracking_uri or base.tracking.uri)
        if _same_database(uri, s.storage):
            raise ConfigError(f"the MLflow tracking URI {redact(uri)} is the study's Optuna storage: MLflow would add "
                              f"its tables to the Optuna database; give it a database of its own (tracking.uri or "
                              f"--tracking-uri, e.g. sqlite:///mlflow.db)")


def connect_tracking(spec: StudySpec):
    from ..tracking import connect

    s = spec.settings
    return connect(s.tracking_uri or spec.config_for({}).tracking.uri)      # TrackingError now, not after an hour


def create(spec: StudySpec) -> tuple[optuna.Study, bool]:
    """`arsearch study create`: validate, then create the storage, the study and the MLflow store and
    parent run once, so that workers started afterwards only join."""
    validate(spec)
    study, created = open_study(spec)
    if spec.settings.tracking:
        StudyTracker(connect_tracking(spec), spec.settings.experiment or spec.settings.name, study, spec)
    return study, created


def run_study(spec: StudySpec, progress: bool = False, callbacks=None, nodes=None) -> optuna.Study:
    """Run `n_trials` trials in this process (with `n_jobs` threads). Several processes may share the storage.
    `callbacks` are Optuna's (called after each trial; one may call `study.stop()`). `nodes` (a
    `launch.Nodes` of several machines, this one node rank 0): each distributed trial's job spans the
    machines, whose `study run --node-rank R` join it (`study.follower`); one job at a time."""
    s = spec.settings
    validate(spec)
    if nodes is not None and nodes.multi:
        from .follower import check_leader

        check_leader(spec, nodes)
    study, _ = open_study(spec)
    tracker = None
    if s.tracking:
        tracker = StudyTracker(connect_tracking(spec), s.experiment or s.name, study, spec)
    objective = Objective(spec, s.name, tracker, nodes=nodes if nodes is not None and nodes.multi else None)
    if objective.nodes is not None:
        from .follower import leader_state

        leader_state(study, nodes, "running")
    from ..interrupt import study_signals

    signals = study_signals()
    if signals is not None:           # a first Ctrl-C / SIGTERM: no new trial starts
        signals.on_stop.append(study.stop)
    try:
        if s.n_trials > 0:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.optimize(objective, n_trials=s.n_trials, timeout=s.timeout or None, n_jobs=s.n_jobs,
                               catch=(Exception,), show_progress_bar=progress, gc_after_trial=False,
                               callbacks=callbacks)
        if s.validate.active and s.validate.auto:
            from .validate import validate_study

            validate_study(spec, study, tracker)
    finally:
        if objective.nodes is not None:     # the other machines' workers stop once this one is done
            from .follower import leader_state

            leader_state(study, nodes, "done")
        if tracker is not None:             # also after Ctrl-C: what was queued is sent, the parent closed
            tracker.finish_study(Path(s.output) / s.name / "plots")
    return study
