"""Child processes that never outlive their parent.

Every process an arsearch command starts (torchrun and its ranks, hogwild workers, a study's trial
and seed jobs) asks the kernel, as its first act, to be signalled when its parent dies
(``PR_SET_PDEATHSIG``, Linux): a parent killed with SIGKILL, which can run no cleanup of its own,
then still takes its children with it. Elsewhere this is a no-op.

`signal_children` is how `arsearch train --nproc` forwards a Ctrl-C or SIGTERM to torchrun's ranks,
which run in sessions of their own (a terminal's signal to the foreground group misses them).
"""

from __future__ import annotations

import os
import signal

PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM, parent: int | None = None) -> None:
    """Have `sig` sent to this process when its parent (the thread that started it) ends. With
    `parent` (the pid expected), exit at once if the parent already died before the request was made."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, int(sig))
    except Exception:                                       # noqa: BLE001 - not Linux: nothing to ask
        return
    if parent is not None and os.getppid() != parent:      # orphaned already: the signal will never come
        os.kill(os.getpid(), sig)


def die_with_parent_term() -> None:
    """`preexec_fn` for subprocess.Popen: the child gets SIGTERM when the starting thread dies."""
    die_with_parent(signal.SIGTERM)


def children(pid: int) -> list[int]:
    """The live child processes of `pid` (read from /proc; empty elsewhere)."""
    found = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return found
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[1]) == pid:
            found.append(int(entry))
    return found


def signal_children(pid: int, sig: int) -> list[int]:
    """Send `sig` to each child of `pid` (torchrun's ranks), to the child's whole process group where
    it leads one (a rank runs in a session of its own). Returns the children signalled."""
    sent = []
    for child in children(pid):
        try:
            if os.getpgid(child) == child:
                os.killpg(child, sig)
            else:
                os.kill(child, sig)
            sent.append(child)
        except ProcessLookupError:
            pass
    return sent


OWNER_FILE = ".owner"     # in an OwnedTempDir: held under an exclusive flock by its owner for as long as it lives


class OwnedTempDir:
    """A temporary directory (`tempfile.mkdtemp`) for a launcher's exchange with its ranks, which does not
    outlive its owner for long: the owner removes it when it ends, and a process killed with SIGKILL, which
    can remove nothing, still leaves it unlocked, so the next one made with the same prefix on this machine
    (the next `train --nproc` launcher) removes it (`sweep_orphaned`).

    Ownership is an exclusive `flock` on `OWNER_FILE`, not a pid: the kernel drops the lock when the owner
    dies however it dies, and a pid can be reused or belong to another pid namespace sharing /tmp."""

    def __init__(self, prefix: str):
        import fcntl
        import tempfile

        sweep_orphaned(prefix)
        self.path = tempfile.mkdtemp(prefix=prefix)
        # locked under another name, then renamed in: a sweeper never finds the owner file unlocked
        pending = os.path.join(self.path, f"{OWNER_FILE}.new")
        self._fd: int | None = os.open(pending, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.replace(pending, os.path.join(self.path, OWNER_FILE))

    def remove(self) -> None:
        import shutil

        shutil.rmtree(self.path, ignore_errors=True)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def sweep_orphaned(prefix: str, directory: str | None = None) -> list[str]:
    """Remove the OwnedTempDirs named `prefix*` in `directory` (the temporary directory) whose owner has
    died (its lock is free); the paths removed. A directory without an owner file (being made, or made by
    an older arsearch) and anything that is not a plain directory are left alone."""
    import fcntl
    import shutil
    import tempfile

    removed = []
    try:
        entries = list(os.scandir(directory or tempfile.gettempdir()))
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(prefix) or not entry.is_dir(follow_symlinks=False):
            continue
        try:
            fd = os.open(os.path.join(entry.path, OWNER_FILE), os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:                 # held: its owner is alive
            os.close(fd)
            continue
        try:
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(entry.path)
        finally:
            os.close(fd)
    return removed


def exit_without_teardown(code: int) -> None:
    """End the process as `sys.exit(code)` would, minus the interpreter's teardown of its modules.

    With torch and scikit-learn imported, that teardown took 4.4 s on the loaded 2-core machine of
    reports/startup.md (0.2 s without it): every `train`, and every rank and launcher of `--nproc`,
    paid it after its work was done. What an exit must still do is done: other non-daemon threads are
    waited for, the atexit handlers run (logging, multiprocessing, MLflow), stdout and stderr are
    flushed; the kernel frees the rest."""
    import atexit
    import sys
    import threading

    # as the interpreter's own finalization begins: threading's exit hooks first (they wake and stop the
    # workers of thread pools nobody shut down, which a bare join would wait for forever), then the
    # join of every non-daemon thread, then the atexit handlers
    shutdown = getattr(threading, "_shutdown", None)
    if shutdown is not None and threading.current_thread() is threading.main_thread():
        shutdown()
    else:
        for thread in threading.enumerate():
            if thread is not threading.current_thread() and not thread.daemon:
                thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):      # a closed pipe or stream: nothing more can be written anyway
            pass
    os._exit(code if isinstance(code, int) else 1)
