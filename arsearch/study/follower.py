"""A study whose distributed trials span several machines: node rank 0 leads, the others follow.

On node rank 0, `arsearch study run STUDY --nnodes N --node-rank 0 --rdzv-endpoint HOST:PORT` runs the
study as usual (Optuna samples, prunes, records), and every trial whose job runs its own processes
(the distributed backend) is launched as `arsearch train ... --nnodes N --node-rank 0` with a
rendezvous id of its own. Before it starts the job, it writes what the other machines need into the
trial's user attribute `rendezvous` (the id, the job's config as TOML, its directory).

On every other machine, `arsearch study run STUDY --nnodes N --node-rank R --rdzv-endpoint HOST:PORT`
asks Optuna for no trial: it watches the study's RUNNING trials (`follow`) and, for each job it has
not joined yet, writes the config into its own working directory and runs `arsearch train ...
--node-rank R` with the same id. torchrun's rendezvous then makes one job of the N launchers; node 0's
writer has the checkpoints, metrics and MLflow run. A job pruned or failed on node 0 ends on the others
at their next collective. The leader marks the study's user attribute `leader:HOST:PORT` "running"
and then "done"; a follower stops when it sees "done" after "running", after `--n-trials` jobs, or
after `--timeout` seconds.

One job at a time uses the endpoint (its port is the rendezvous store's), so the leader refuses
`n_jobs > 1` and parallel seed jobs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna

from ..config import ConfigError, load_job
from .space import StudySpec
from .subprocess_trial import RENDEZVOUS_ATTR, DevicePool, _kill_group, devices_needed, train_command

POLL = 1.0


def _leader_key(nodes) -> str:
    return f"leader:{nodes.rdzv_endpoint}"


def check_leader(spec: StudySpec, nodes) -> None:
    """ConfigError unless node rank 0 can lead: one job at a time on the endpoint."""
    s = spec.settings
    if nodes.node_rank != 0:
        raise ConfigError("only node rank 0 runs the study's trials; the others follow (study.follower)")
    if (s.n_jobs or 1) > 1:
        raise ConfigError(f"--n-jobs {s.n_jobs} with --nnodes {nodes.nnodes}: a trial's job spans the machines "
                          f"through one rendezvous endpoint, so one trial runs at a time (--n-jobs 1)")
    if s.seeds.active and s.seeds.parallel != 1:
        raise ConfigError(f"study.seeds.parallel = {s.seeds.parallel} with --nnodes {nodes.nnodes}: seed jobs "
                          f"span the machines one at a time; set study.seeds.parallel = 1")


def leader_state(study: optuna.Study, nodes, state: str) -> None:
    study.set_user_attr(_leader_key(nodes), state)


def follow(study: optuna.Study, spec: StudySpec, nodes, n_trials: int | None = None, timeout: float | None = None,
           pool: DevicePool | None = None, poll: float = POLL, out=sys.stdout) -> int:
    """Join, one after another, the multi-machine jobs that node rank 0 starts for `study`'s trials (opened
    by `runner.open_study`); the number of jobs joined (see the module's docstring for when it stops)."""
    pool = pool or DevicePool(spec.settings.gpus or None)
    key = _leader_key(nodes)
    joined: set[str] = set()
    seen_running = False
    started = time.monotonic()
    print(f"following the study {spec.settings.name!r} as node rank {nodes.node_rank} of {nodes.nnodes} "
          f"(rendezvous {nodes.rdzv_endpoint})", file=out, flush=True)
    while True:
        state = study.user_attrs.get(key)        # read from the storage at every call
        seen_running = seen_running or state == "running"
        job = _next_job(study, nodes, joined)
        if job is not None:
            trial, info = job
            joined.add(info["id"])
            code = _join(info, nodes, pool)
            print(f"trial {trial.number}: joined job {info['id']} as node rank {nodes.node_rank}: "
                  f"{'ended' if code == 0 else f'ended on node 0 first (exit code {code})'}", file=out, flush=True)
            if n_trials and len(joined) >= n_trials:
                break
            continue
        if seen_running and state == "done":
            break
        if timeout and time.monotonic() - started > timeout:
            break
        time.sleep(poll)
    return len(joined)


def _next_job(study: optuna.Study, nodes, joined: set[str]):
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        info = trial.user_attrs.get(RENDEZVOUS_ATTR)
        if (isinstance(info, dict) and info.get("id") not in joined
                and info.get("endpoint") == nodes.rdzv_endpoint and info.get("nnodes") == nodes.nnodes):
            return trial, info
    return None


def _join(info: dict, nodes, pool: DevicePool) -> int:
    """Run this machine's part of the job `info` describes; its exit code."""
    from dataclasses import replace

    import tomllib

    trial_dir = Path(info["dir"])          # the same relative path, in this machine's working directory
    trial_dir.mkdir(parents=True, exist_ok=True)
    config_path = trial_dir / "config.toml"
    config_path.write_text(f"# node rank {nodes.node_rank}'s part of the job {info['id']}, run by arsearch study "
                           f"run; node rank 0 holds its checkpoints and results\n" + info["config"])
    config = load_job(data=tomllib.loads(info["config"]))
    me = replace(nodes, rdzv_id=info["id"])
    count = devices_needed(config, pool)
    devices, handles = pool.acquire(count) if count else ([], [])
    env = dict(os.environ)
    env.setdefault("PYTHONPATH", os.pathsep.join(p for p in sys.path if p))
    if count:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, devices))
    try:
        # node rank 0's launcher checked the job's directory and checkpoint; this node writes neither
        cmd = train_command(config_path, config, resume=bool(info.get("resume")), nodes=me)
        with (trial_dir / f"train.node{nodes.node_rank}.log").open("w") as log:
            proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                    preexec_fn=_die_with_parent)
            try:
                return proc.wait()
            except BaseException:
                _kill_group(proc)
                raise
    finally:
        DevicePool.release(handles)


def _die_with_parent() -> None:
    from ..processes import die_with_parent

    die_with_parent(signal.SIGTERM)
