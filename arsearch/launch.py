"""Launching a distributed job under torchrun, on one machine or on several.

`arsearch train job.toml --nproc P` runs torchrun with ``--standalone`` (a private rendezvous on this
machine). With ``--nnodes N --node-rank R --rdzv-endpoint HOST:PORT`` the same command is started
once per machine and the N torchrun launchers meet through torchrun's c10d rendezvous at
HOST:PORT (the machine of node rank 0 hosts it): N·P ranks, one job.

Three things here are arsearch's own, not torchrun's:

- **Which process writes.** c10d numbers the nodes in the order it sorts them, not by the user's
  ``--node-rank``, so global rank 0 may land on any machine. The launcher hands its node rank to
  its ranks (``ARSEARCH_NODE_RANK``), and the writer (checkpoints, metrics.json, MLflow) is local
  rank 0 of node rank 0: the files land where the user said, on the machine that resumes.
- **A bound on a lost node.** When a peer machine dies, this machine's ranks stop at their next
  collective (at once if the peer's kernel closed the connections, after ``ars.timeout`` seconds
  if the machine vanished), but torchrun itself can block for good on the rendezvous store of a
  machine that vanished. The launcher watches torchrun's ranks: once all of them have ended
  and not every one ended well, torchrun gets `STOP_GRACE` seconds to exit and is then stopped.
- **Signals.** torchrun and its ranks run in sessions of their own; the launcher forwards a Ctrl-C
  or SIGTERM to its ranks, which stop together after one iteration and save (`run_torchrun`).
- **Resume, not restart.** torchrun runs with ``--max-restarts 0``; a stopped job continues with
  ``arsearch train --resume`` on the same or another set of machines, with any rank count.

Nothing here imports torch: the launcher only waits for its children.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

NODE_RANK_ENV = "ARSEARCH_NODE_RANK"       # the launcher's --node-rank, for its ranks
RANK_STATUS_PREFIX = "arsearch-ranks-"    # the launcher's temporary directory for its ranks' reports
RANK_STATUS_ENV = "ARSEARCH_RANK_STATUS"   # a directory where each rank that ends well leaves `<local rank>.ok`
STOP_GRACE = 15.0       # seconds torchrun gets to exit once its ranks have ended, not all well
POLL = 0.5
TORCHRUN = "arsearch.torchrun"     # torch.distributed.run, ended without the interpreter's teardown


@dataclass(frozen=True)
class Nodes:
    """Where a distributed job runs: `nnodes` machines, this one being `node_rank`, meeting at
    `rdzv_endpoint` (HOST:PORT) under the rendezvous id `rdzv_id`. One machine by default."""

    nnodes: int = 1
    node_rank: int = 0
    rdzv_endpoint: str | None = None
    rdzv_id: str | None = None
    join_timeout: float = 600.0          # seconds a launcher waits for every machine (torchrun's default)

    @property
    def multi(self) -> bool:
        return self.nnodes > 1

    def check(self) -> None:
        """ValueError naming the option that is wrong (a usage error)."""
        if self.nnodes < 1:
            raise ValueError(f"--nnodes must be >= 1, got {self.nnodes}")
        if not 0 <= self.node_rank < self.nnodes:
            raise ValueError(f"--node-rank must be between 0 and --nnodes - 1 = {self.nnodes - 1}, "
                             f"got {self.node_rank}")
        if not self.multi:
            if self.rdzv_endpoint or self.rdzv_id:
                raise ValueError("--rdzv-endpoint and --rdzv-id need --nnodes > 1 (one machine needs no rendezvous)")
            return
        if not self.rdzv_endpoint:
            raise ValueError(f"--nnodes {self.nnodes} needs --rdzv-endpoint HOST:PORT: the address of node rank 0, "
                             f"where the launchers meet (the same on every node)")
        host, sep, port = self.rdzv_endpoint.rpartition(":")
        if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError(f"--rdzv-endpoint = {self.rdzv_endpoint!r}: expected HOST:PORT with a port from 1 to "
                             f"65535, e.g. node0.cluster:29400")
        if self.rdzv_id is not None and not self.rdzv_id.strip():
            raise ValueError("--rdzv-id must not be empty")
        if not self.join_timeout > 0:
            raise ValueError(f"--join-timeout must be > 0 seconds, got {self.join_timeout:g}")

    def torchrun_args(self, nproc: int, default_id: str, join_timeout: float = 600.0) -> list[str]:
        if not self.multi:
            return ["--standalone", f"--nproc-per-node={nproc}"]
        # c10d ignores --node-rank (it numbers the nodes itself): the ranks get ours as NODE_RANK_ENV.
        # A launcher waits at most `join_timeout` seconds for the other machines to join
        return [f"--nnodes={self.nnodes}", f"--nproc-per-node={nproc}", "--rdzv-backend=c10d",
                f"--rdzv-endpoint={self.rdzv_endpoint}", f"--rdzv-id={self.rdzv_id or default_id}",
                f"--rdzv-conf=join_timeout={max(1, math.ceil(join_timeout))}"]

    def cli_args(self) -> list[str]:
        """The same placement as `arsearch train` options (a study's trial passes them on)."""
        if not self.multi:
            return []
        return ["--nnodes", str(self.nnodes), "--node-rank", str(self.node_rank), "--rdzv-endpoint",
                str(self.rdzv_endpoint), "--join-timeout", f"{self.join_timeout:g}"] + (
                    ["--rdzv-id", self.rdzv_id] if self.rdzv_id else [])

    def describe(self, nproc: int) -> str:
        if not self.multi:
            return f"{nproc} rank{'s' * (nproc != 1)}"
        return (f"node rank {self.node_rank} of {self.nnodes}, {nproc} rank{'s' * (nproc != 1)} here, "
                f"{self.nnodes * nproc} in all")


def rendezvous_id(checkpoint_dir: str) -> str:
    """The default rendezvous id: the same on every node for the same job config, different for two jobs."""
    name = Path(checkpoint_dir).name or "job"
    return "arsearch-" + "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def writes_files() -> bool:
    """Whether this process is the job's writer (checkpoints, metrics.json, MLflow run): outside torchrun
    always; under torchrun local rank 0 of node rank 0, or global rank 0 without arsearch's launcher."""
    node = os.environ.get(NODE_RANK_ENV)
    if node is None:
        return os.environ.get("RANK", "0") == "0"
    return node == "0" and os.environ.get("LOCAL_RANK", "0") == "0"


def mark_rank_ok() -> None:
    """Called by a rank that ends well, so that its launcher's watchdog tells a finished job from a failed one."""
    status = os.environ.get(RANK_STATUS_ENV)
    if status and os.path.isdir(status):
        try:
            Path(status, f"{os.environ.get('LOCAL_RANK', '0')}.ok").touch()
        except OSError:             # removed meanwhile: the launcher is gone (killed) and nobody reads it
            pass


def mark_rank_armed() -> None:
    """Called by a rank once its SIGINT/SIGTERM handlers are installed: from then on a forwarded signal
    stops it cleanly (it saves, reports and exits 0). Before that, a signal would kill it with a
    KeyboardInterrupt and make torchrun print a ChildFailedError traceback, so the launcher does not
    forward it: it ends torchrun and the ranks itself (`run_torchrun`), as nothing is trained yet."""
    status = os.environ.get(RANK_STATUS_ENV)
    if status and os.path.isdir(status):
        try:
            Path(status, f"{os.environ.get('LOCAL_RANK', '0')}.armed").touch()
        except OSError:             # removed meanwhile: the launcher is gone
            pass


def _armed(status: str) -> int:
    try:
        return sum(name.endswith(".armed") for name in os.listdir(status))
    except OSError:
        return 0


STOPPED_FILE = "stopped.json"              # in RANK_STATUS_ENV: where the ranks stopped on a signal


def report_stopped(signum: int, iteration: int, checkpoint) -> bool:
    """Called by a rank that stopped on a signal: local rank 0 tells its launcher where (the writer with the
    checkpoint). False outside arsearch's launcher (the rank then says it itself and exits 128 + signal)."""
    status = os.environ.get(RANK_STATUS_ENV)
    if not status or not os.path.isdir(status):
        return False
    if os.environ.get("LOCAL_RANK", "0") == "0":
        import json

        tmp = Path(status, f".{STOPPED_FILE}.tmp")
        try:
            tmp.write_text(json.dumps({"signal": int(signum), "iteration": int(iteration),
                                       "checkpoint": str(checkpoint) if checkpoint else None}))
            os.replace(tmp, Path(status, STOPPED_FILE))
        except OSError:             # removed meanwhile: the launcher was killed, so nobody waits for the report
            return True
    mark_rank_ok()
    return True


def children(pid: int) -> list[int] | None:
    """`pid`'s running child processes (Linux /proc); None where they cannot be listed. A child that has
    exited but not been reaped (a zombie: torchrun blocked on a lost store reaps nothing) is not running."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    kids: list[int] = []
    for t in tasks:
        try:
            kids += [int(c) for c in Path(f"/proc/{pid}/task/{t}/children").read_text().split()]
        except OSError:
            continue
    return [k for k in kids if _running(k)]


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def run_torchrun(cmd: list[str], nproc: int, node_rank: int = 0, grace: float = STOP_GRACE, checks=None,
                 interrupt: dict | None = None) -> tuple[int, str | None, bool]:
    """Run torchrun (`cmd`) and wait for it; (its exit code, why the launcher stopped it or None, whether
    any rank started: none did when the rendezvous never completed).

    torchrun dies with this process (kill -9 included; its ranks die with it). Once every rank has
    ended and fewer than `nproc` ended well, torchrun has `grace` seconds to exit before it is
    stopped: it may hang on the rendezvous store of a machine that is gone.

    `checks()` (the job's preflight) runs once torchrun is started, while it and its ranks import;
    the ranks wait at a start gate (`startgate.py`) until it has passed. If it raises, the ranks
    leave silently, torchrun is ended and the exception propagates.

    Signals: torchrun runs in a session of its own and its ranks in theirs, so a terminal's Ctrl-C
    reaches this process only. It forwards the first SIGINT/SIGTERM to this machine's ranks, which
    agree on it with every other rank (`Backend.agree_stop`), stop after the same iteration, save
    (the writer), report where in `STOPPED_FILE` and exit 0, so torchrun reports no failure; a second
    signal kills the ranks and torchrun at once. `interrupt` (a dict) receives the signals as
    "signals" and the ranks' report as "stopped" (also when the signal reached another machine)."""
    import json
    import threading

    from .processes import OwnedTempDir, die_with_parent_term, signal_children
    from .processes import children as process_children
    from .startgate import StartGate
    from .timeline import mark

    # removed below; after a kill -9 of this launcher, by the next one on this machine (OwnedTempDir)
    status_dir = OwnedTempDir(RANK_STATUS_PREFIX)
    status = status_dir.path
    torchrun = next((name for name in (TORCHRUN, "torch.distributed.run") if name in cmd), None)
    if torchrun is not None:
        # torchrun's own log directory (a `torchelastic_*` it never removes, even on success) goes inside it
        at = cmd.index(torchrun) + 1
        cmd = [*cmd[:at], f"--log-dir={os.path.join(status, 'torchrun')}", *cmd[at:]]
    gate = StartGate()
    env = gate.env({**os.environ, RANK_STATUS_ENV: status, NODE_RANK_ENV: str(node_rank)})
    received: list[int] = []

    def kill_all() -> None:
        # torchrun first, so that it cannot report its ranks' deaths (a ChildFailedError traceback); its
        # ranks, listed before, right after (each leads a session of its own)
        ranks = process_children(proc.pid)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for rank in ranks:
            try:
                os.killpg(rank, signal.SIGKILL) if os.getpgid(rank) == rank else os.kill(rank, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def forward(signum, frame) -> None:
        received.append(signum)
        # again, or not every rank of this machine has its handlers yet (still importing, or at the start
        # gate): nothing is trained, so nothing to save, and a rank without handlers would die loudly
        if len(received) > 1 or _armed(status) < nproc or not signal_children(proc.pid, signum):
            kill_all()

    proc = subprocess.Popen(cmd, env=env, start_new_session=True, preexec_fn=die_with_parent_term)
    mark("torchrun started")
    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)
                    if signal.getsignal(sig) is not signal.SIG_IGN}
    seen, ended_at, reason = False, None, None
    try:
        try:
            if checks is not None:
                checks()
        except BaseException:
            gate.stop()
            proc.kill()
            proc.wait()
            raise
        mark("checks done")
        gate.go()
        while proc.poll() is None:
            kids = children(proc.pid)
            if kids:
                seen, ended_at = True, None
            elif seen and kids is not None and _ended_well(status) < nproc:
                ended_at = ended_at or time.monotonic()
                if time.monotonic() - ended_at > grace:
                    reason = (f"this node's ranks ended (not all well) and torchrun had not exited {grace:.0f} s "
                              f"later (a lost machine's rendezvous store?): stopped it")
                    _stop(proc)
                    break
            try:
                proc.wait(timeout=POLL)     # back at once when torchrun exits, not up to POLL later
            except subprocess.TimeoutExpired:
                pass
        mark("torchrun ended")
        return proc.wait(), reason, seen
    except BaseException:
        kill_all()           # in a session of its own, torchrun gets nothing from the terminal: stop it here
        proc.wait()
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if interrupt is not None:
            interrupt["signals"] = received
            stopped = Path(status, STOPPED_FILE)
            interrupt["stopped"] = json.loads(stopped.read_text()) if stopped.is_file() else None
        status_dir.remove()
        gate.close()


def _ended_well(status: str) -> int:
    return sum(name.endswith(".ok") for name in os.listdir(status))


def _stop(proc: subprocess.Popen, wait: float = 5.0) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=wait)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def torchrun_command(nodes: Nodes, nproc: int, default_id: str, argv: list[str], timeout: float = 600.0) -> list[str]:
    """torchrun running `python -m arsearch.cli <argv>` on `nproc` ranks of this machine, placed by `nodes`;
    `timeout` (--join-timeout) bounds the wait for the other machines at the rendezvous."""
    return [sys.executable, "-m", TORCHRUN, *nodes.torchrun_args(nproc, default_id, timeout),
            "--max-restarts=0", "--monitor-interval=0.1", "-m", "arsearch.cli", *argv]
