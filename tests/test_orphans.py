"""No child outlives its command: kill -9 of `arsearch train` takes its torchrun and ranks, or its hogwild
workers, with it (issue 22). The process tree is listed after the kill."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from tests.support import job_data
from tests.support.recovery import start, wait_for


def tree(pid: int) -> list[int]:
    """Every live descendant of `pid` (by walking /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def alive(pids: list[int]) -> list[int]:
    """The pids still running (zombies awaiting their reaper count as gone)."""
    live = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] != "Z":
                    live.append(pid)
        except OSError:
            pass
    return live


def write_job(cwd, **overrides):
    import tomli_w

    data = job_data("digits", cwd / "run", **{"ars.iterations": 100000, "tracking.enabled": False,
                                               "checkpoint.every": 50, **overrides})
    (cwd / "job.toml").write_text(tomli_w.dumps(data))
    return cwd / "job.toml"


@pytest.mark.multiprocess
@pytest.mark.parametrize("how", [["--nproc", "2"], ["--set", "ars.backend=hogwild", "--set", "ars.workers=2"]],
                         ids=["distributed", "hogwild"])
def test_kill_9_of_train_leaves_no_process_behind(tmp_cwd, how):
    job = write_job(tmp_cwd)
    proc = start(tmp_cwd, "train", str(job), *how)
    wait_for(lambda: list((tmp_cwd / "run").glob("iter_*.pt")), timeout=240, what="the first checkpoint", proc=proc)
    family = tree(proc.pid)
    assert len(family) >= 2, family            # torchrun and 2 ranks, or 2 workers (and a resource tracker)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # ranks get SIGTERM and stop after saving (bounded by the job's own stop path); workers die at once
    deadline = time.time() + 60
    while alive(family) and time.time() < deadline:
        time.sleep(0.2)
    left = alive(family)
    listing = subprocess.run(["ps", "-o", "pid,ppid,stat,args", "-p", ",".join(map(str, left))],
                             capture_output=True, text=True).stdout if left else ""
    assert not left, f"orphans after kill -9 of the parent:\n{listing}"


def no_survivors(family: list[int], timeout: float = 60) -> None:
    """Every pid of `family` ends within `timeout`; otherwise the test fails with the `ps` listing."""
    deadline = time.time() + timeout
    while alive(family) and time.time() < deadline:
        time.sleep(0.2)
    left = alive(family)
    listing = subprocess.run(["ps", "-o", "pid,ppid,stat,args", "-p", ",".join(map(str, left))],
                             capture_output=True, text=True).stdout if left else ""
    assert not left, f"processes left behind:\n{listing}"


@pytest.mark.multiprocess
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_signal_to_train_nproc_reaches_the_ranks_which_save_once_and_resume(tmp_cwd, sig):
    """The terminal's Ctrl-C (SIGINT to the parent's process group) or a scheduler's SIGTERM to the
    parent: the ranks (in sessions of their own) stop after one agreed iteration, rank 0 saves one
    checkpoint there, the MLflow run ends KILLED, the lock is released, the parent exits 128 + signal
    with the resume command, no process survives, and --resume continues the same run."""
    from arsearch import checkpoint as ckpt
    from tests.support.recovery import runs

    job = write_job(tmp_cwd, **{"tracking.enabled": True, "tracking.uri": "sqlite:///mlflow.db",
                                "tracking.experiment": "recovery", "checkpoint.every": 25})
    proc = start(tmp_cwd, "train", str(job), "--nproc", "2", "--quiet")
    wait_for(lambda: list((tmp_cwd / "run").glob("iter_*.pt")), timeout=240, what="the first checkpoint", proc=proc)
    family = tree(proc.pid)
    assert len(family) >= 3, family                  # torchrun and its 2 ranks
    if sig == signal.SIGINT:
        os.killpg(proc.pid, sig)                     # what a terminal sends: the ranks are not in this group
    else:
        os.kill(proc.pid, sig)
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 128 + sig, err
    assert "Traceback" not in err and "ChildFailedError" not in err, err
    assert f"resume with: arsearch train {job} --nproc 2 --resume" in err, err
    no_survivors(family, timeout=30)
    saved = sorted((tmp_cwd / "run").glob("iter_*.pt"))
    stopped_at = ckpt.peek(saved[-1])["iteration"]
    assert f"stopped by {signal.Signals(sig).name} at iteration {stopped_at}" in err
    client, found = runs(tmp_cwd)
    assert [r.info.status for r in found] == ["KILLED"]
    assert found[0].data.tags.get("arsearch.stopped_by") == signal.Signals(sig).name
    if sig == signal.SIGTERM:
        return
    done = subprocess.run([*proc.args[:3], "train", str(job), "--nproc", "2", "--quiet", "--resume",
                           "--set", f"ars.iterations={stopped_at + 2}"], cwd=tmp_cwd, capture_output=True,
                          text=True, timeout=300, env=__import__("tests.support.study", fromlist=["env"]).env())
    assert done.returncode == 0, done.stderr                   # the lock was released
    client, found = runs(tmp_cwd)
    assert [r.info.status for r in found] == ["FINISHED"]       # the same run, continued


@pytest.mark.multiprocess
def test_sigterm_to_a_hogwild_train_saves_and_leaves_no_worker(tmp_cwd):
    job = write_job(tmp_cwd)
    proc = start(tmp_cwd, "train", str(job), "--quiet", "--set", "ars.backend=hogwild", "--set", "ars.workers=2")
    wait_for(lambda: list((tmp_cwd / "run").glob("iter_*.pt")), timeout=240, what="the first checkpoint", proc=proc)
    family = tree(proc.pid)
    assert len(family) >= 2, family
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "Traceback" not in err and "resume with:" in err
    no_survivors(family, timeout=30)


@pytest.mark.multiprocess
def test_a_second_signal_to_train_nproc_kills_the_ranks_at_once(tmp_cwd):
    # iterations of a second or more, so that the second signal comes while the first one's iteration runs
    job = write_job(tmp_cwd, **{"task.hidden": [1024], "ars.directions": 64, "ars.top": 8, "task.batch_size": 1024,
                                "checkpoint.every": 1})
    proc = start(tmp_cwd, "train", str(job), "--nproc", "2", "--quiet")
    wait_for(lambda: list((tmp_cwd / "run").glob("iter_*.pt")), timeout=240, what="the first checkpoint", proc=proc)
    family = tree(proc.pid)
    os.kill(proc.pid, signal.SIGTERM)
    time.sleep(0.3)                          # two signals sent at once would arrive as one
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "stopped at once by a second SIGTERM: the ranks were killed" in err, err
    assert f"resume with: arsearch train {job} --nproc 2 --resume" in err
    no_survivors(family, timeout=10)


@pytest.mark.multiprocess
def test_kill_9_of_the_whole_nproc_tree_leaves_no_process_and_its_temporary_dirs_are_swept(tmp_cwd, monkeypatch):
    """kill -9 of the launcher, torchrun and the ranks together: nothing can clean up, so the launcher's
    temporary directories (`arsearch-ranks-*`, `arsearch-gate-*`) stay; the next `--nproc` launcher on the
    machine finds their owner dead (its flock free) and removes them, and removes its own when it ends.
    torchrun's log directory (`torchelastic_*`, which torchrun never removes) lies inside `arsearch-ranks-*`."""
    temp = tmp_cwd / "tmp"
    temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))            # the subprocesses' tempfile.gettempdir()

    def ours():
        return sorted(p.name.rsplit("-", 1)[0] for p in temp.iterdir())     # torchrun's torchelastic_* too
    job = write_job(tmp_cwd)
    proc = start(tmp_cwd, "train", str(job), "--nproc", "2", "--quiet")
    wait_for(lambda: list((tmp_cwd / "run").glob("iter_*.pt")), timeout=240, what="the first checkpoint", proc=proc)
    family = tree(proc.pid)
    assert len(family) >= 3, family                  # torchrun and its 2 ranks
    assert ours() == ["arsearch-gate", "arsearch-ranks"]
    for pid in [proc.pid, *family]:                  # the whole tree at once: no process gets to clean up
        os.kill(pid, signal.SIGKILL)
    proc.wait()
    no_survivors(family, timeout=30)
    assert ours() == ["arsearch-gate", "arsearch-ranks"]       # left by the killed launcher

    short = write_job(tmp_cwd, **{"ars.iterations": 2, "checkpoint.every": 1}).rename(tmp_cwd / "short.toml")
    short.write_text(short.read_text().replace(str(tmp_cwd / "run"), str(tmp_cwd / "run2")))   # another dir
    done = subprocess.run([*proc.args[:3], "train", "short.toml", "--nproc", "2", "--quiet"], cwd=tmp_cwd,
                          capture_output=True, text=True, timeout=300,
                          env=__import__("tests.support.study", fromlist=["env"]).env())
    assert done.returncode == 0, done.stderr
    assert (tmp_cwd / "run2/final.pt").exists()
    assert ours() == []                              # the killed launcher's swept, the new one's removed


def test_sweep_removes_only_directories_whose_owner_lock_is_free(tmp_path, monkeypatch):
    """The lock, not a pid, says whether the owner lives: a held lock keeps the directory; a released one
    (the kernel releases it when its process dies, kill -9 included) lets the next owner remove it;
    a directory without an owner file (an older arsearch's, or one being made) is never touched."""
    import tempfile

    from arsearch.processes import OWNER_FILE, OwnedTempDir, sweep_orphaned

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    alive_dir = OwnedTempDir("arsearch-test-")
    dead_dir = OwnedTempDir("arsearch-test-")
    os.close(dead_dir._fd)                           # what the kernel does to a process's locks when it dies
    dead_dir._fd = None
    legacy = tmp_path / "arsearch-test-legacy"
    legacy.mkdir()
    other = tmp_path / "other-prefix"
    other.mkdir()
    (other / OWNER_FILE).touch()                    # unlocked, but not ours
    assert sweep_orphaned("arsearch-test-") == [dead_dir.path]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [os.path.basename(alive_dir.path), "arsearch-test-legacy", "other-prefix"])
    third = OwnedTempDir("arsearch-test-")          # a new owner sweeps too, and keeps the living one
    assert os.path.isdir(alive_dir.path) and os.path.isdir(third.path)
    alive_dir.remove()
    third.remove()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["arsearch-test-legacy", "other-prefix"]
