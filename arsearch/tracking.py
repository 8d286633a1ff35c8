"""MLflow tracking: one run per training job, a parent run per study with one nested child per trial.

Everything goes through `mlflow.MlflowClient` with explicit run ids (never the fluent API's
global "active run"), so concurrent trials in threads (`n_jobs > 1`) never mix their runs.
Metrics are buffered and sent with `log_batch` (one HTTP request per flush instead of one per
value: 1000 single calls take ~53 s over HTTP). The tracking server is checked once at start,
and a failure *during* training only logs a warning and stops tracking that run: the training
result (checkpoint, metrics.json) never depends on MLflow.
"""

from __future__ import annotations

import logging
import os
import queue
import random
import re
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from .callbacks import Callback
from .config import JobConfig, applicable, to_toml

log = logging.getLogger("arsearch.tracking")

STUDY_TAG = "arsearch.study"
ROLE_TAG = "arsearch.role"
TRIAL_TAG = "arsearch.trial"
STATE_TAG = "arsearch.state"
PARENT_TAG = "mlflow.parentRunId"
PRUNED_TAG = "arsearch.pruned"
OBJECTIVE_TAG = "arsearch.objective"
NOTE_TAG = "mlflow.note.content"          # the run's (or experiment's) description in the MLflow UI
# MLflow 3's UI opens an experiment on its GenAI "Overview" (traces) unless the experiment says it
# is classic model training; this tag and value are what the UI bundle reads to open the runs table.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING = "custom_model_development"
DEFAULT_URI = "sqlite:///mlflow.db"


def resolve_uri(uri: str | None = None) -> str:
    """The tracking URI to use: the given one (tracking.uri, --tracking-uri, --uri), else the
    MLFLOW_TRACKING_URI environment variable, else sqlite:///mlflow.db in the working directory."""
    import os

    return uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI

DIR_TAG = "arsearch.checkpoint_dir"
# seconds `finish` waits for the tracking store at the end of a job: a server that died mid-run
# must not hold the finished job for MLflow's minutes of HTTP retries
FINISH_TIMEOUT = 15.0

_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")


def redact(text: str) -> str:
    """`text` with the password of any URL in it (scheme://user:PASSWORD@host) replaced by ***."""
    return _PASSWORD.sub(r"\1***@", str(text))


class TrackingError(RuntimeError):
    """The tracking store cannot be used (server down, bad URI): reported before any training starts."""


def flatten(data: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def config_params(config: JobConfig) -> dict[str, str]:
    """The resolved config's keys that apply to the job as MLflow params (dotted keys, string values
    within MLflow's limit; passwords in URLs masked)."""
    return {k: redact(str(v))[:6000] for k, v in flatten(applicable(config)).items()}


def connect(uri: str, timeout: float = 5.0):
    """An MlflowClient for `uri`, checked now: a server that is down, a read-only or half-created
    database is a TrackingError naming the URI or file, not a hang or a traceback later.

    An empty `uri` means `resolve_uri()`: MLFLOW_TRACKING_URI, else sqlite:///mlflow.db.
    A fresh SQLite database is created by one process at a time (a file lock next to it) and under
    a temporary name that is renamed into place when complete, so neither two workers started
    together nor a Ctrl-C during creation can leave a half-made database. Server databases
    (PostgreSQL, MySQL) retry a first connection that collided with another process creating
    the same tables.
    """
    uri = resolve_uri(uri)
    shown = redact(uri)
    if uri.startswith(("http://", "https://")):
        url = uri.rstrip("/") + "/health"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as reply:
                if reply.status != 200:
                    raise TrackingError(f"MLflow tracking server {shown} answered {reply.status} on /health")
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise TrackingError(f"MLflow tracking server {shown} is not reachable ({redact(reason)}); start it "
                                f"(mlflow server --host ... --port ...), point tracking.uri elsewhere, "
                                f"or set tracking.enabled = false") from None
    db: Path | None = None
    if uri.startswith("sqlite:///"):
        path = uri[len("sqlite:///"):]
        if path not in ("", ":memory:"):
            db = Path(path).resolve()
            _check_sqlite_writable(db)
            # Pin a relative path now: SQLAlchemy resolves it against the working directory of
            # each new connection, and MLflow caches stores by URI, so a later chdir (or a
            # background sender) would otherwise write into another directory's database.
            uri = "sqlite:///" + str(db)
    if db is not None:
        from filelock import FileLock

        with FileLock(str(db) + ".lock"):          # one process creates/migrates it; the others wait
            if not db.exists():
                _create_sqlite_store(db)
            return _probe(uri, shown, db)
    for attempt in range(6):
        try:
            return _probe(uri, shown, None)
        except TrackingError as e:
            if attempt == 5 or not _is_creation_race(str(e)):
                raise
            time.sleep(0.5 + random.random())       # another worker is creating the tables: try again
    raise AssertionError("unreachable")


def _probe(uri: str, shown: str, db: Path | None):
    try:
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=uri)
        client.search_experiments(max_results=1)      # creates/migrates a store; probes a server
    except Exception as e:                            # noqa: BLE001 - any store error means "unusable"
        first = redact(str(e).strip().splitlines()[0] if str(e).strip() else "")
        if db is not None and "already exists" in str(e):
            raise TrackingError(f"{db} is a half-created MLflow database (its creation was interrupted: "
                                f"{first}); {_runs_in(db)}") from None
        raise TrackingError(f"MLflow tracking store {shown} cannot be used: {type(e).__name__}: {first}") from None
    return client


def _is_creation_race(message: str) -> bool:
    return any(s in message for s in ("already exists", "duplicate key", "UNIQUE constraint", "Duplicate entry"))


def _check_sqlite_writable(db: Path) -> None:
    from .checkpoint import CheckpointError, check_writable

    try:
        check_writable(db.parent, "the directory of tracking database")
        if db.exists():
            with open(db, "r+b"):
                pass
    except CheckpointError as e:
        raise TrackingError(f"{e}; point tracking.uri elsewhere or set tracking.enabled = false") from None
    except OSError as e:
        raise TrackingError(f"tracking database {db} is not writable ({e.strerror}); point tracking.uri "
                            f"elsewhere or set tracking.enabled = false") from None


def _create_sqlite_store(db: Path) -> None:
    """Create MLflow's tables in a temporary file and rename it to `db` once complete."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
    from mlflow.tracking._tracking_service.utils import DEFAULT_LOCAL_FILE_AND_ARTIFACT_PATH

    tmp = db.with_name(f".{db.name}.creating-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    tmp_uri = "sqlite:///" + str(tmp)
    try:
        store = SqlAlchemyStore(tmp_uri, DEFAULT_LOCAL_FILE_AND_ARTIFACT_PATH)   # what MlflowClient would use
        store.engine.dispose()
        SqlAlchemyStore._engine_map.pop(tmp_uri, None)
        os.replace(tmp, db)
    except BaseException as e:                        # Ctrl-C included: never leave the temporary behind
        tmp.unlink(missing_ok=True)
        if isinstance(e, Exception):
            raise TrackingError(f"cannot create the MLflow database {db}: {type(e).__name__}: "
                                f"{str(e).splitlines()[0] if str(e) else ''}") from None
        raise


def _runs_in(db: Path) -> str:
    import sqlite3

    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
            n = con.execute("SELECT count(*) FROM runs").fetchone()[0]
    except sqlite3.Error:
        n = 0
    if n:
        return f"it holds {n} run(s): move it aside (mv {db} {db}.broken) and start again"
    return f"it holds no runs: delete it (rm {db}) and start again"


def experiment_id(client, name: str) -> str:
    """The id of experiment `name`, created if needed, and marked as a model-training experiment."""
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if EXPERIMENT_KIND_TAG not in exp.tags:      # one created by an older arsearch, or by hand
            try:
                client.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING)
            except Exception as e:                    # noqa: BLE001 - a read-only store still tracks
                log.debug("cannot tag experiment %s: %s", name, e)
        return exp.experiment_id
    try:
        return client.create_experiment(name, tags={EXPERIMENT_KIND_TAG: MODEL_TRAINING})
    except Exception:                                 # noqa: BLE001 - another worker created it first
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def learning_curve_png(history: list[dict], path: Path, title: str = "") -> Path | None:
    """Train score per iteration and every eval/* metric at its iteration, as one PNG."""
    if not history:
        return None
    # a bare Figure on the Agg canvas: no pyplot state (thread-safe with n_jobs) and no layout engine,
    # which is most of the drawing time of a small plot
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    evals = sorted({k for row in history for k in row if k.startswith("eval/")})
    fig = Figure(figsize=(10 if evals else 5, 3.6))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 1 + bool(evals), squeeze=False)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.14, top=0.88, wspace=0.25)
    its = [row["iteration"] for row in history if "train/score" in row]
    axes[0][0].plot(its, [row["train/score"] for row in history if "train/score" in row], label="train/score")
    axes[0][0].set_xlabel("iteration")
    axes[0][0].set_ylabel("mean reward of the 2N candidates")
    axes[0][0].legend()
    if evals:
        ax = axes[0][1]
        for key in evals:
            pts = [(row["iteration"], row[key]) for row in history if key in row and row[key] is not None]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, label=key)
        ax.set_xlabel("iteration")
        ax.legend()
    if title:
        fig.suptitle(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    return path


class Sender:
    """One sending thread, like `ThreadPoolExecutor(max_workers=1)` but a daemon: a tracking server
    that stopped answering (MLflow retries HTTP calls for minutes) cannot hold the process at exit."""

    def __init__(self, name: str = "mlflow-log"):
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn) -> Future:
        future: Future = Future()
        self._queue.put((future, fn))
        return future

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            future, fn = item
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn())
                except BaseException as e:                 # noqa: BLE001 - handed to whoever waits
                    future.set_exception(e)

    def shutdown(self, wait: bool = True, timeout: float | None = None) -> bool:
        """Stop after what is queued; True when the thread ended (within `timeout`)."""
        self._queue.put(None)
        if wait:
            self._thread.join(timeout)
        return not self._thread.is_alive()


def wait_for(futures: list, timeout: float | None) -> int:
    """Wait for `futures` (up to `timeout` seconds in all); the number still not done."""
    from concurrent.futures import wait

    return len(wait(futures, timeout=timeout).not_done) if futures else 0


class MlflowCallback(Callback):
    """Logs one training job to one MLflow run: params, batched per-iteration metrics, final metrics, artifacts.

    Give `run_id` to log into an existing run (a study's child run), else a run is created in
    `experiment` at start. Any MLflow error after start is logged as a warning and disables this
    run's tracking; the training itself goes on.
    """

    def __init__(self, client, config: JobConfig, *, run_id: str | None = None, experiment: str | None = None,
                 run_name: str = "", tags: dict[str, str] | None = None, flush_every: int = 50,
                 terminate: bool = True, log_checkpoint: bool = True, executor=None, background: bool = False,
                 log_params: bool = True):
        self.client, self.config = client, config
        # Sending runs on one background thread (`executor`, shared by a study's trials, or our own
        # when `background`), so the training loop never waits for the tracking store; `wait()`
        # (called by `finish` for an own executor) blocks until everything is sent.
        self._own_executor = executor is None and background
        if self._own_executor:
            executor = Sender()
        self.executor = executor
        self._futures: list = []
        self.run_id = run_id
        self.experiment = experiment or config.tracking.experiment
        self.run_name = run_name or config.tracking.run_name
        self.tags = dict(tags or {})
        self.flush_every = flush_every
        self.terminate = terminate
        self.log_checkpoint = log_checkpoint
        self.log_params = log_params        # False when continuing a run (--resume): params are write-once
        # the config.toml artifact, when it must differ from the job's (a study trial's points to a
        # fresh directory and experiment, so that rerunning it cannot touch the trial or the study)
        self.artifact_config: JobConfig | None = None
        self.failed: str | None = None
        self._last: dict[str, float] = {}
        self._buffer: list = []
        self._logged: dict[str, float] = {}          # the last value logged per key
        self.sent_batches = 0

    # every MLflow call goes through here, so that tracking can never break training
    def _safe(self, what: str, fn, *args, **kwargs):
        if self.failed:
            return None
        try:
            return fn(*args, **kwargs)
        except Exception as e:                        # noqa: BLE001
            self.failed = f"{what}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            log.warning("MLflow tracking stopped for this run (%s); training goes on, results are in %s",
                        self.failed, self.config.checkpoint.dir)
            return None

    def start(self) -> str | None:
        if self.run_id is None:
            def create():
                exp = experiment_id(self.client, self.experiment)
                return self.client.create_run(exp, run_name=self.run_name or None, tags=self.tags).info.run_id
            self.run_id = self._safe("create run", create)
        elif self.tags:
            self._safe("set tags", self._set_tags, self.tags)
        if self.run_id and self.log_params:
            params = config_params(self.config)
            self.submit(lambda: self._safe("log params", self._log_params, params))
        return self.run_id

    def submit(self, fn) -> None:
        """Run `fn` on the sending thread (in order), or now when there is none."""
        if self.executor is None:
            fn()
        else:
            self._futures = [f for f in self._futures if not f.done()]
            self._futures.append(self.executor.submit(fn))

    def wait(self, timeout: float | None = None) -> bool:
        """Block until everything queued is sent (at most `timeout` s); False if the store did not answer in time."""
        pending = wait_for(self._futures, timeout)
        self._futures = []
        if self._own_executor:
            self.executor.shutdown(wait=not pending)
            self.executor = None
        if pending:
            self.failed = self.failed or f"the tracking store did not answer within {timeout:g} s"
            log.warning("MLflow: the tracking store did not answer within %g s, so %d queued call(s) were "
                        "not sent: this run's last metrics, its artifacts (config.toml, learning curve, checkpoint) "
                        "and its end; the run stays RUNNING until the next --resume ends it. The results are in %s",
                        timeout, pending, self.config.checkpoint.dir)
        return not pending

    def _set_tags(self, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def _log_params(self, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(k, v) for k, v in params.items()]
        for i in range(0, len(items), 100):              # MLflow accepts at most 100 params per batch
            self.client.log_batch(self.run_id, params=items[i:i + 100])

    def log_metrics(self, metrics: dict[str, Any], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        for k, v in metrics.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and abs(v) != float("inf"):
                self._buffer.append(Metric(k, float(v), now, int(step)))
                self._logged[k] = v
        if len(self._buffer) >= 1000:
            self.flush()

    def flush(self) -> None:
        if not self._buffer or not self.run_id:
            return
        batch, self._buffer = self._buffer, []

        def send():
            for i in range(0, len(batch), 1000):
                self.client.log_batch(self.run_id, metrics=batch[i:i + 1000])
                self.sent_batches += 1
        self.submit(lambda: self._safe("log metrics", send))

    def log_artifact(self, path, artifact_path: str | None = None) -> None:
        if self.run_id and path and Path(path).exists():
            self._safe(f"log artifact {Path(path).name}", self.client.log_artifact, self.run_id, str(path), artifact_path)

    # -- trainer hooks -----------------------------------------------------------------------------
    def on_start(self, trainer) -> None:
        if self.run_id is None:
            self.start()

    def on_iteration(self, trainer, iteration: int, metrics: dict[str, float]) -> None:
        # train/* every iteration; the cumulative count/* and time/* are sampled at evaluations
        # (each logged point costs the store ~0.2-0.5 ms, so 5 keys per iteration add up)
        self.log_metrics({k: v for k, v in metrics.items() if k.startswith("train/")}, iteration)
        self._last = metrics
        if iteration % self.flush_every == 0:
            self.flush()

    def on_eval(self, trainer, iteration: int, metrics: dict[str, float]) -> None:
        sampled = {k: v for k, v in self._last.items() if not k.startswith("train/")}
        self.log_metrics({**sampled, **metrics}, iteration)

    def on_end(self, trainer, result: dict) -> None:
        # why the job ended ([stop]: a budget, the target, or the iteration cap) is text: a tag, not a metric
        reason = result.get("stop/reason")
        self.finish(result, trainer.history, ok=True, tags={"arsearch.stop_reason": reason} if reason else None)

    def finish(self, result: dict, history: list[dict], ok: bool = True, status: str | None = None,
               tags: dict[str, str] | None = None) -> None:
        """Flush, then (on the sending thread) final metrics, tags, artifacts, and close the run."""
        step = int(result.get("iterations", 0) or 0)
        # the result's values under their own names, only those the history has not already logged
        # with that value (a final/* copy of the last evaluation only repeated it)
        self.log_metrics({k: v for k, v in result.items() if k not in ("iterations", "checkpoint")
                          and self._logged.get(k) != v}, step)
        self.flush()
        history = list(history)
        self.submit(lambda: self._finalize(result, history, ok, status, tags or {}))
        if self._own_executor:
            self.wait(FINISH_TIMEOUT)

    def _finalize(self, result: dict, history: list[dict], ok: bool, status: str | None, tags: dict) -> None:
        if tags and self.run_id:
            self._safe("set tags", self._set_tags, tags)
        with tempfile.TemporaryDirectory() as tmp:
            cfg = Path(tmp) / "config.toml"
            cfg.write_text(f"# resolved job config: arsearch train {cfg.name}\n" + to_toml(self.artifact_config or self.config))
            self.log_artifact(cfg)
            png = learning_curve_png(history, Path(tmp) / "learning_curve.png", title=self.run_name)
            self.log_artifact(png)
        if result.get("lineage") and self.run_id:
            # a population's hyperparameter lineage (init / exploit / explore events) as an MLflow table
            self._safe("log lineage", self.client.log_table, self.run_id, data=lineage_table(result["lineage"]),
                       artifact_file=LINEAGE_ARTIFACT)
        if self.log_checkpoint and result.get("checkpoint"):
            self.log_artifact(result["checkpoint"], "checkpoint")
        if self.terminate and self.run_id:
            self._safe("end run", self.client.set_terminated, self.run_id, status or ("FINISHED" if ok else "FAILED"))


LINEAGE_ARTIFACT = "lineage.json"


def lineage_table(events: list[dict]) -> dict[str, list]:
    """Lineage events (rows) as the columns MLflow's ``log_table`` takes; every event has the same keys."""
    columns = list(events[0]) if events else []
    return {c: [e.get(c) for e in events] for c in columns}


def train_callback(config: JobConfig, resume_run_id: str | None = None) -> MlflowCallback | None:
    """The callback `arsearch train` uses when tracking.enabled (TrackingError if the store is unusable).

    `resume_run_id` (kept in the checkpoint) continues that run, so that one job has one history.
    Any other run of the same checkpoint directory still RUNNING (its process was killed: the
    caller holds the directory's lock) is ended as KILLED.
    """
    if not config.tracking.enabled or os.environ.get("RANK", "0") != "0":
        return None                 # under torchrun only rank 0 tracks (it also writes the checkpoints)
    client = connect(config.tracking.uri)
    directory = str(Path(config.checkpoint.dir).resolve())
    tags = {ROLE_TAG: "train", DIR_TAG: directory}
    run_name = config.tracking.run_name or Path(config.checkpoint.dir).name
    if resume_run_id is not None:
        try:
            client.update_run(resume_run_id, status="RUNNING")
        except Exception as e:                        # noqa: BLE001 - deleted, or another store
            log.warning("the checkpoint's MLflow run %s cannot be continued (%s); logging to a new run",
                        resume_run_id, str(e).splitlines()[0] if str(e) else type(e).__name__)
            resume_run_id = None
    cb = MlflowCallback(client, config, run_id=resume_run_id, run_name=run_name, tags=tags, background=True,
                        log_params=resume_run_id is None)
    cb.start()
    # the caller holds checkpoint.dir's lock, so any other run of this directory still RUNNING is stale
    end_stale_runs(client, cb.experiment, directory, keep=cb.run_id)
    return cb


def end_stale_runs(client, experiment: str, directory: str, keep: str | None = None) -> list[str]:
    """End as KILLED the runs of `directory` left RUNNING by a killed process; their ids."""
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    quoted = directory.replace("'", "\\'")
    try:
        runs = client.search_runs([exp.experiment_id], filter_string=f"tags.`{DIR_TAG}` = '{quoted}' "
                                                                     f"and attributes.status = 'RUNNING'")
    except Exception as e:                            # noqa: BLE001 - never stops the job
        log.warning("could not look for stale MLflow runs: %s", e)
        return []
    ended = []
    for run in runs:
        if run.info.run_id != keep:
            client.set_terminated(run.info.run_id, "KILLED")
            ended.append(run.info.run_id)
            log.warning("MLflow run %s of %s was left RUNNING by a killed process: ended as KILLED",
                        run.info.run_id, directory)
    return ended


def ui_command(uri: str, host: str = "127.0.0.1", port: int = 5000, workers: int = 1) -> list[str]:
    """`mlflow ui` run by this interpreter (works from a virtualenv that is not activated)."""
    import sys

    return [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", host,
            "--port", str(port), "--workers", str(workers)]


def runs_url(base: str, experiment: str, objective: str = "", direction: str = "maximize") -> str:
    """The runs table of an experiment in the MLflow UI, not its GenAI overview (MLflow 3.17's UI
    picks the view from the `workflowType` URL parameter, or what the browser last chose), sorted
    by the study's objective when there is one (which also lists the trials flat, best first)."""
    from urllib.parse import quote

    url = f"{base.rstrip('/')}/#/experiments/{experiment}/runs?workflowType=machine_learning"
    if objective:
        url += (f"&orderByKey={quote(f'metrics.`{objective}`', safe='')}"
                f"&orderByAsc={'true' if direction == 'minimize' else 'false'}")
    return url


def experiment_links(uri: str, base: str) -> list[tuple[str, str, int]]:
    """(name, runs-table URL, number of runs) of every experiment in the store that has runs.

    Experiments without the model-training kind tag get it here, so a store written by an older
    arsearch also opens on its runs.
    """
    client = connect(uri)
    out = []
    for exp in client.search_experiments():
        runs = client.search_runs([exp.experiment_id], max_results=1000)
        if not runs:
            continue
        if EXPERIMENT_KIND_TAG not in exp.tags:
            experiment_id(client, exp.name)
        studies = client.search_runs([exp.experiment_id], f"tags.`{ROLE_TAG}` = 'study'", max_results=1)
        tags = studies[0].data.tags if studies else {}
        out.append((exp.name, runs_url(base, exp.experiment_id, tags.get(OBJECTIVE_TAG, ""),
                                       tags.get("arsearch.direction", "maximize")), len(runs)))
    return out


__all__ = ["MlflowCallback", "TrackingError", "connect", "config_params", "flatten", "learning_curve_png",
           "train_callback", "experiment_id", "experiment_links", "resolve_uri", "runs_url", "ui_command",
           "lineage_table", "LINEAGE_ARTIFACT", "redact", "end_stale_runs", "Sender"]
