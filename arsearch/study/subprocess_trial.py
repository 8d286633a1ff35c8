"""The subprocess-trial protocol: a trial run as `arsearch train <trial TOML>` in a child process.

The parent (`run_subprocess_trial`) writes the trial's config, takes GPUs for it from a
`DevicePool` (`CUDA_VISIBLE_DEVICES`, so concurrent trials never share one), starts the child
(with `--nproc P` for the distributed backend, under torchrun) and names a file in
`ARSEARCH_EVAL_LOG`. The child (`arsearch train`, whose `cli` installs `eval_log_callback()`)
appends its iterations and evaluations to that file as JSON lines; the parent tails it, reports
to Optuna and answers a pruning decision by terminating the child's process group. The child's
result is its `metrics.json`. This module is what both sides share; it imports no Optuna.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from ..callbacks import Callback
from ..config import JobConfig, to_toml
from ..interrupt import StudyInterrupted, study_signals
from .reporting import Reporter, TrialFailed

EVAL_LOG_ENV = "ARSEARCH_EVAL_LOG"


class EvalLogCallback(Callback):
    """Appends JSON lines to `path`: {"iteration", "train": {...}} per iteration and {"iteration",
    "metrics": {...}} per evaluation. Lines are written (and flushed) at each evaluation, so the
    reader sees every iteration line before the evaluation that follows it."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._pending: list[str] = []

    def on_iteration(self, trainer, iteration, metrics) -> None:
        if trainer.is_writer:
            self._pending.append(json.dumps({"iteration": iteration, "train": _finite(metrics)}))

    def on_eval(self, trainer, iteration, metrics) -> None:
        if trainer.is_writer:
            self._pending.append(json.dumps({"iteration": iteration, "metrics": _finite(metrics)}))
            self._write()

    def on_end(self, trainer, result) -> None:
        if trainer.is_writer:
            self._write()

    def _write(self) -> None:
        if self._pending:
            with self.path.open("a") as f:
                f.write("\n".join(self._pending) + "\n")
                f.flush()
            self._pending = []


def _finite(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)}


def eval_log_callback() -> EvalLogCallback | None:
    path = os.environ.get(EVAL_LOG_ENV)
    return EvalLogCallback(path) if path else None


class DevicePool:
    """GPU ids handed out to subprocess trials, one lock file per device (fcntl.flock).

    Locks are held by open file descriptions, so they exclude concurrent trials in threads of this
    process *and* in other `arsearch study run` processes on the same machine, and a killed worker
    releases its devices automatically.
    """

    def __init__(self, devices: list[int] | None = None, lock_dir: str | Path | None = None):
        if devices is None:
            try:
                import torch

                devices = list(range(torch.cuda.device_count()))
            except Exception:                 # noqa: BLE001
                devices = []
        self.devices = list(devices)
        self.lock_dir = Path(lock_dir or Path(tempfile.gettempdir()) / "arsearch-gpu-locks")

    def acquire(self, count: int, poll: float = 0.5, stop: threading.Event | None = None) -> tuple[list[int], list]:
        if count > len(self.devices):
            raise TrialFailed(f"the trial needs {count} GPU(s) but the device pool has {len(self.devices)}: "
                              f"{self.devices}")
        self.lock_dir.mkdir(parents=True, exist_ok=True)
        while True:
            held: list[tuple[int, Any]] = []
            for dev in self.devices:
                f = open(self.lock_dir / f"gpu{dev}.lock", "a")   # noqa: SIM115 - kept open while held
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    f.close()
                    continue
                held.append((dev, f))
                if len(held) == count:
                    return [d for d, _ in held], [h for _, h in held]
            self.release([h for _, h in held])
            if stop is not None and stop.is_set():
                raise TrialFailed("stopped while waiting for a free GPU")
            signals = study_signals()
            if signals is not None and signals.signum is not None:
                # a Ctrl-C / SIGTERM to the study while its trial waits for a device: nothing started, so
                # the trial is interrupted here (recorded as interrupted and queued again, as any other)
                raise StudyInterrupted(signals.signum)
            time.sleep(poll)

    @staticmethod
    def release(handles: list) -> None:
        for f in handles:
            try:
                fcntl.flock(f, fcntl.LOCK_UN)
            finally:
                f.close()


# seconds a trial's child gets to finish its iteration and save after the study forwarded a signal
STOP_GRACE = 60.0


def _kill_group(proc: subprocess.Popen, grace: float = 10.0, sig: int = signal.SIGTERM) -> None:
    """Stop the child and everything it started (torchrun's ranks): `sig`, then SIGKILL after `grace` s."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


def runs_own_processes(config: JobConfig) -> bool:
    """Whether the job's backend starts processes of its own (ranks under torchrun): such a job is
    always a subprocess trial, never a thread of the study's process."""
    from ..backends import backend_class

    return backend_class(config.ars.backend).own_processes


def train_command(config_path: Path, config: JobConfig, resume: bool = False, overwrite: bool = False,
                  nodes=None) -> list[str]:
    """`arsearch train` for a trial's job. A backend with processes of its own is launched by `arsearch
    train` itself, as the config says; with `nodes` (a `launch.Nodes` over several machines, its
    rendezvous id the job's own) its ranks span them."""
    cmd = [sys.executable, "-m", "arsearch.cli", "train", str(config_path), "--quiet",
           "--set", "tracking.enabled=false"]
    if resume:
        cmd += ["--resume"]
    elif overwrite:
        cmd += ["--overwrite"]
    if nodes is not None and nodes.multi and runs_own_processes(config):
        cmd += nodes.cli_args()
    return cmd


RENDEZVOUS_ATTR = "rendezvous"     # trial user attribute: a multi-machine job the other machines join


def multi_machine(nodes, config: JobConfig, trial_dir: Path, label: str = ""):
    """`nodes` with the rendezvous id of this trial's job (None when the job stays on this machine)."""
    if nodes is None or not nodes.multi or not runs_own_processes(config):
        return None
    from dataclasses import replace

    from ..launch import rendezvous_id

    job = f"{trial_dir.parent.name}-{trial_dir.name}" + (f"-{label.replace(' ', '')}" if label else "")
    return replace(nodes, rdzv_id=rendezvous_id(job))


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the thread that started it dies, so a trial's job never
    outlives a killed worker (kill -9 included)."""
    from ..processes import die_with_parent

    die_with_parent(signal.SIGTERM)


def devices_needed(config: JobConfig, pool: DevicePool) -> int:
    """GPUs a subprocess trial takes from the pool: one per process of its backend (each rank of a
    distributed job) when GPUs exist and the job may use them."""
    from ..backends import backend_class

    backend = backend_class(config.ars.backend)
    if not pool.devices or config.task.device == "cpu" and not backend.own_processes:
        return 0
    return backend.processes(config)


def run_subprocess_trial(trial, config: JobConfig, trial_dir: Path, metric: str, report: bool,
                         pool: DevicePool, on_line=None, poll: float = 0.2, every: int = 1,
                         reporter: Reporter | None = None, resume: bool = False, overwrite: bool = False,
                         stop: threading.Event | None = None, label: str = "",
                         env_extra: dict[str, str] | None = None, nodes=None) -> tuple[dict, list[dict]]:
    """Run `arsearch train` for this trial; returns (metrics.json, history). Raises TrialPruned/TrialFailed.

    `resume`: continue the job in `trial_dir` from its checkpoint; `stop` (set by another thread) ends
    the job early with TrialFailed; `label` ("seed 42") names the job in the trial's attributes.
    `nodes` (node rank 0 of several machines): a distributed job spans them; the trial's attribute
    `rendezvous` tells the other machines' `study run` (`study.follower`) which job to join and how."""
    reporter = reporter or Reporter(trial, metric, report, every)
    trial_dir.mkdir(parents=True, exist_ok=True)
    config_path = trial_dir / "config.toml"
    # what this worker runs (tracking is switched off on its command line); the header says how to
    # train the same job again by hand without touching this trial's directory or the study's runs
    again = f"runs/{trial_dir.parent.name}-{trial_dir.name}"
    config_path.write_text(f"# trial {trial.number}: run by arsearch study run (do not rerun it here). To train this job "
                           f"again:\n#   arsearch train {config_path} --set checkpoint.dir={again} "
                           f"--set tracking.experiment=arsearch\n" + to_toml(config))
    eval_log = trial_dir / "evals.jsonl"
    eval_log.unlink(missing_ok=True)
    (trial_dir / "metrics.json").unlink(missing_ok=True)
    env = {**os.environ, **(env_extra or {})}
    env[EVAL_LOG_ENV] = str(eval_log)
    env.setdefault("PYTHONPATH", os.pathsep.join(p for p in sys.path if p))
    count = devices_needed(config, pool)
    devices, handles = pool.acquire(count, stop=stop) if count else ([], [])
    suffix = f" ({label})" if label else ""
    if count:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, devices))
        trial.set_user_attr("devices" + suffix, devices)
    history: list[dict] = []
    log_path = trial_dir / "train.log"
    nodes = multi_machine(nodes, config, trial_dir, label)
    if nodes is not None:
        trial.set_user_attr(RENDEZVOUS_ATTR, {"id": nodes.rdzv_id, "endpoint": nodes.rdzv_endpoint,
                                              "nnodes": nodes.nnodes, "dir": str(trial_dir), "resume": resume,
                                              "config": to_toml(config)})
    try:
        # a resumed job's log goes on after the interrupted one's (what it printed is kept)
        with log_path.open("a" if resume else "w") as log_file:
            proc = subprocess.Popen(train_command(config_path, config, resume, overwrite, nodes), env=env,
                                    stdout=log_file,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    preexec_fn=_die_with_parent)
            trial.set_user_attr("pid" + suffix, proc.pid)
            offset, partial = 0, ""
            try:
                while True:
                    done = proc.poll() is not None
                    if eval_log.exists():
                        with eval_log.open() as f:
                            f.seek(offset)
                            chunk = f.read()
                            offset = f.tell()
                        lines = (partial + chunk).split("\n")
                        partial = lines.pop()          # an incomplete last line waits for the next read
                        for line in lines:
                            if not line.strip():
                                continue
                            event = json.loads(line)
                            _merge(history, event)
                            if on_line is not None:
                                on_line(event)
                            if "metrics" in event:   # the merged row: this iteration's counters and its evaluation
                                reporter(event["iteration"], history[-1])
                    if done:
                        break
                    signals = study_signals()
                    if signals is not None and signals.signum is not None:
                        # the study was stopped: the child gets the same signal, saves and ends
                        _kill_group(proc, STOP_GRACE, signals.signum)
                        raise StudyInterrupted(signals.signum)
                    if stop is not None and stop.is_set():
                        raise TrialFailed(f"stopped{suffix}: another job of this trial failed or was pruned")
                    time.sleep(poll)
            except BaseException:
                _kill_group(proc)
                raise
            rc = proc.returncode
    finally:
        DevicePool.release(handles)
    if rc != 0:
        tail = log_path.read_text().strip().splitlines()[-5:]
        raise TrialFailed(f"arsearch train exited with code {rc}: " + " | ".join(tail))
    return json.loads((trial_dir / "metrics.json").read_text()), history


def _merge(history: list[dict], event: dict) -> None:
    it = event["iteration"]
    row = history[-1] if history and history[-1]["iteration"] == it else None
    if row is None:
        row = {"iteration": it}
        history.append(row)
    row.update(event.get("train", {}))
    row.update(event.get("metrics", {}))
