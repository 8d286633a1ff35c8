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
