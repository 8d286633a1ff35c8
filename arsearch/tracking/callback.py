"""The MLflow trainer callback: one run per training job, its metrics batched onto a sending thread.

Everything goes through `mlflow.MlflowClient` with explicit run ids (never the fluent API's
global "active run"), so concurrent trials in threads (`n_jobs > 1`) never mix their runs.
Metrics are buffered and sent with `log_batch` (one HTTP request per flush instead of one per
value: 1000 single calls take ~53 s over HTTP). The tracking store is checked once at start
(`store.connect`), and a failure *during* training only logs a warning and stops tracking that
run: the training result (checkpoint, metrics.json) never depends on MLflow.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from ..callbacks import Callback
from ..config import JobConfig, applicable, to_toml
from .sender import Sender, wait_for
from .stale import end_stale_runs
from .store import connect, experiment_id, redact
from .tags import DIR_TAG, ROLE_TAG

log = logging.getLogger("arsearch.tracking")

# seconds `finish` waits for the tracking store at the end of a job: a server that died mid-run
# must not hold the finished job for MLflow's minutes of HTTP retries
FINISH_TIMEOUT = 15.0


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


class MlflowCallback(Callback):
    """Logs one training job to one MLflow run: params, batched per-iteration metrics, final metrics, artifacts.

    Give `run_id` to log into an existing run (a study's child run), else a run is created in
    `experiment` at start. Any MLflow error after start is logged as a warning and disables this
    run's tracking; the training itself goes on.

    Besides the trainer hooks, its public calls are what other code logs a run through: `safe`
    (any MlflowClient call, which can then never raise), `log_params`, `log_metrics`, `flush`,
    `log_artifact`, `set_tags`, `finish` and `end`; `ended` says whether the run was closed.
    """

    def __init__(self, client, config: JobConfig, *, run_id: str | None = None, experiment: str | None = None,
                 run_name: str = "", tags: dict[str, str] | None = None, flush_every: int = 50,
                 terminate: bool = True, log_checkpoint: bool = True, executor=None, background: bool = False,
                 params_at_start: bool = True):
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
        self.params_at_start = params_at_start   # False when continuing a run (--resume): params are write-once
        # the config.toml artifact, when it must differ from the job's (a study trial's points to a
        # fresh directory and experiment, so that rerunning it cannot touch the trial or the study)
        self.artifact_config: JobConfig | None = None
        self.failed: str | None = None
        self.ended = False                           # the run's end (set_terminated) is sent or queued
        self._last: dict[str, float] = {}
        self._buffer: list = []
        self._logged: dict[str, float] = {}          # the last value logged per key
        self.sent_batches = 0

    def safe(self, what: str, fn, *args, **kwargs):
        """`fn(*args, **kwargs)`, or None once tracking failed: every MLflow call goes through here,
        so that tracking can never break training. The first error (named by `what`) is kept in
        `failed`, logged as a warning, and stops this run's tracking."""
        if self.failed:
            return None
        try:
            return fn(*args, **kwargs)
        except Exception as e:                        # noqa: BLE001
            self.failed = f"{what}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            log.warning("MLflow tracking stopped for this run (%s); training goes on, results are in %s",
                        self.failed, self.config.checkpoint.dir)
            return None

    _safe = safe            # the name before it was public

    def start(self) -> str | None:
        if self.run_id is None:
            def create():
                exp = experiment_id(self.client, self.experiment)
                return self.client.create_run(exp, run_name=self.run_name or None, tags=self.tags).info.run_id
            self.run_id = self.safe("create run", create)
        elif self.tags:
            self.safe("set tags", self._send_tags, self.tags)
        if self.run_id and self.params_at_start:
            self.log_params(config_params(self.config))
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

    def log_params(self, params: dict[str, str], what: str = "log params") -> None:
        """Log params to the run (in order on the sending thread, or now); params are write-once in MLflow."""
        if self.run_id:
            self.submit(lambda: self.safe(what, self._send_params, params))

    def set_tags(self, tags: dict[str, str]) -> None:
        """Set tags on the run (in order on the sending thread, or now)."""
        if self.run_id and tags:
            self.submit(lambda: self.safe("set tags", self._send_tags, tags))

    def end(self, status: str = "FINISHED") -> None:
        """Close the run with an MLflow status (FINISHED, FAILED, KILLED), in order after what is queued."""
        self.ended = True
        if self.run_id:
            self.submit(lambda: self.safe("end run", self.client.set_terminated, self.run_id, status))

    def _send_tags(self, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def _send_params(self, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(k, v) for k, v in params.items()]
        for i in range(0, len(items), 100):              # MLflow accepts at most 100 params per batch
            self.client.log_batch(self.run_id, params=items[i:i + 100])

    _set_tags, _log_params = _send_tags, _send_params     # the names before the public calls

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
        self.submit(lambda: self.safe("log metrics", send))

    def log_artifact(self, path, artifact_path: str | None = None) -> None:
        if self.run_id and path and Path(path).exists():
            self.safe(f"log artifact {Path(path).name}", self.client.log_artifact, self.run_id, str(path), artifact_path)

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
        self.ended = self.ended or self.terminate
        self.submit(lambda: self._finalize(result, history, ok, status, tags or {}))
        if self._own_executor:
            self.wait(FINISH_TIMEOUT)

    def _finalize(self, result: dict, history: list[dict], ok: bool, status: str | None, tags: dict) -> None:
        if tags and self.run_id:
            self.safe("set tags", self._send_tags, tags)
        # looked up on the package at call time, so that a benchmark timing the PNG can wrap
        # `arsearch.tracking.learning_curve_png` (benchmarks/harness_overhead.py)
        from . import learning_curve_png

        with tempfile.TemporaryDirectory() as tmp:
            cfg = Path(tmp) / "config.toml"
            cfg.write_text(f"# resolved job config: arsearch train {cfg.name}\n" + to_toml(self.artifact_config or self.config))
            self.log_artifact(cfg)
            png = learning_curve_png(history, Path(tmp) / "learning_curve.png", title=self.run_name)
            self.log_artifact(png)
        if result.get("lineage") and self.run_id:
            # a population's hyperparameter lineage (init / exploit / explore events) as an MLflow table
            self.safe("log lineage", self.client.log_table, self.run_id, data=lineage_table(result["lineage"]),
                       artifact_file=LINEAGE_ARTIFACT)
        if self.log_checkpoint and result.get("checkpoint"):
            self.log_artifact(result["checkpoint"], "checkpoint")
        if self.terminate and self.run_id:
            self.safe("end run", self.client.set_terminated, self.run_id, status or ("FINISHED" if ok else "FAILED"))


LINEAGE_ARTIFACT = "lineage.json"


def lineage_table(events: list[dict]) -> dict[str, list]:
    """Lineage events (rows) as the columns MLflow's ``log_table`` takes; every event has the same keys."""
    columns = list(events[0]) if events else []
    return {c: [e.get(c) for e in events] for c in columns}


def train_callback(config: JobConfig, resume_run_id: str | None = None, role: str = "train",
                   **options) -> MlflowCallback | None:
    """The callback `arsearch train` uses when tracking.enabled (TrackingError if the store is unusable).

    `resume_run_id` (kept in the checkpoint) continues that run, so that one job has one history.
    `role` ("posttrain") and `options` (MlflowCallback's) serve `arsearch posttrain`, which does the same.
    Any other run of the same checkpoint directory still RUNNING (its process was killed: the
    caller holds the directory's lock) is ended as KILLED.
    """
    from ..launch import writes_files

    if not config.tracking.enabled or not writes_files():
        return None                 # under torchrun only the writer tracks (it also writes the checkpoints)
    client = connect(config.tracking.uri)
    directory = str(Path(config.checkpoint.dir).resolve())
    tags = {ROLE_TAG: role, DIR_TAG: directory, **({"arsearch.command": role} if role != "train" else {})}
    run_name = config.tracking.run_name or Path(config.checkpoint.dir).name
    if resume_run_id is not None:
        try:
            client.update_run(resume_run_id, status="RUNNING")
        except Exception as e:                        # noqa: BLE001 - deleted, or another store
            log.warning("the checkpoint's MLflow run %s cannot be continued (%s); logging to a new run",
                        resume_run_id, str(e).splitlines()[0] if str(e) else type(e).__name__)
            resume_run_id = None
    cb = MlflowCallback(client, config, run_id=resume_run_id, run_name=run_name, tags=tags, background=True,
                        params_at_start=resume_run_id is None, **options)
    cb.start()
    # the caller holds checkpoint.dir's lock, so any other run of this directory still RUNNING is stale
    end_stale_runs(client, cb.experiment, directory, keep=cb.run_id)
    return cb


