"""Read-only and full file systems (real tmpfs mounts), checkpoint directories that are files, hold
another run's checkpoints or are in use, a changed job on --resume, and a half-created mlflow.db."""

import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from arsearch.cli import main
from arsearch.tracking import TrackingError, connect
from tests.support.recovery import checkpoints, run, start, tmpfs, wait_for, write_job


@pytest.mark.multiprocess
def test_read_only_checkpoint_dir_is_refused_before_any_work(tmp_cwd, capsys):
    with tmpfs(tmp_cwd / "ro", readonly=True):
        write_job(tmp_cwd, ckpt_dir="ro/run", iterations=5)
        t = time.perf_counter()
        assert main(["train", "job.toml", "--quiet"]) == 2
        err = capsys.readouterr().err
        assert "checkpoint.dir ro/run is not writable: read-only file system" in err, err
        assert time.perf_counter() - t < 60
        assert not (tmp_cwd / "mlflow.db").exists() and not (tmp_cwd / "mlruns").exists()


@pytest.mark.multiprocess
def test_read_only_tracking_store_is_refused_with_its_path(tmp_cwd, capsys):
    with tmpfs(tmp_cwd / "ro", readonly=True):
        write_job(tmp_cwd, uri="sqlite:///ro/mlflow.db", iterations=5)
        assert main(["train", "job.toml", "--quiet"]) == 2
        err = capsys.readouterr().err
        assert f"{tmp_cwd / 'ro'} is not writable: read-only file system" in err, err
        assert "Traceback" not in err
        assert not (tmp_cwd / "runs").exists()


@pytest.mark.multiprocess
def test_full_disk_says_no_space_left_and_leaves_no_temporary(tmp_cwd, capsys):
    with tmpfs(tmp_cwd / "small", size="64k"):
        # a 64-512-10 MLP: ~140 kB per checkpoint, more than the file system holds
        write_job(tmp_cwd, ckpt_dir="small/run", iterations=5, tracking=False, hidden="[512]")
        assert main(["train", "job.toml", "--quiet"]) == 1
        err = capsys.readouterr().err
        assert "cannot write checkpoint small/run/iter_0000002.pt: no space left on device" in err, err
        assert os.listdir(tmp_cwd / "small/run") == [".arsearch.lock"]       # no .tmp file behind


def test_checkpoint_dir_that_is_a_file_is_refused(tmp_cwd, capsys):
    (tmp_cwd / "runs").mkdir()
    (tmp_cwd / "runs/a").write_text("not a directory")
    write_job(tmp_cwd, iterations=5, tracking=False)
    assert main(["train", "job.toml", "--quiet"]) == 2
    assert "checkpoint.dir runs/a is an existing file, not a directory" in capsys.readouterr().err


def test_existing_checkpoints_are_refused_unless_resume_or_overwrite_and_resume_checks_the_job(tmp_cwd, capsys):
    write_job(tmp_cwd, iterations=4, tracking=False)
    assert main(["train", "job.toml", "--quiet"]) == 0
    first = (tmp_cwd / "runs/a/final.pt").read_bytes()
    capsys.readouterr()
    assert main(["train", "job.toml", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "already holds checkpoints" in err and "--resume" in err and "--overwrite" in err
    assert (tmp_cwd / "runs/a/final.pt").read_bytes() == first            # untouched
    assert main(["train", "job.toml", "--quiet", "--resume", "--set", "seed=3", "--set", "ars.directions=6"]) == 2
    err = capsys.readouterr().err
    assert "was written by a different job" in err and "seed = 0 in the checkpoint, 3 now" in err
    assert "ars.directions = 8 in the checkpoint, 6 now" in err
    assert main(["train", "job.toml", "--quiet", "--overwrite", "--set", "ars.iterations=2"]) == 0
    assert [p.name for p in checkpoints(tmp_cwd / "runs/a")] == ["iter_0000002.pt"]


@pytest.mark.multiprocess
def test_two_trains_started_together_into_one_dir_one_refuses(tmp_cwd):
    write_job(tmp_cwd, iterations=30, tracking=False)
    barrier = tmp_cwd / "go"
    procs = [start(tmp_cwd, "train", "job.toml", "--quiet", barrier=barrier) for _ in range(2)]
    time.sleep(8)                                   # both have imported everything and wait on the barrier
    barrier.touch()
    results = [p.communicate(timeout=300) + (p.returncode,) for p in procs]
    codes = sorted(r[2] for r in results)
    assert codes == [0, 2], results
    refused = next(r for r in results if r[2] == 2)[1]
    assert "in use by another arsearch run" in refused or "already holds checkpoints" in refused


def test_trial_config_rerun_does_not_overwrite_the_trial(tmp_cwd, capsys):
    """A study trial's directory holds checkpoints: running its config.toml again is refused."""
    write_job(tmp_cwd, iterations=2, tracking=False, ckpt_dir="runs/studies/s/trial_00000")
    assert main(["train", "job.toml", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["train", "job.toml", "--quiet"]) == 2


def test_unknown_dataset_or_env_writes_nothing(tmp_cwd, capsys):
    write_job(tmp_cwd, iterations=2)
    assert main(["train", "job.toml", "--quiet", "--set", "task.dataset=nosuch_pkg.data:load"]) == 2
    assert "cannot import module 'nosuch_pkg.data'" in capsys.readouterr().err
    assert main(["train", "job.toml", "--quiet", "--set", "task.kind=rl", "--set", "task.env=NoSuchEnv-v0"]) == 2
    assert "NoSuchEnv-v0" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_cwd)) == ["job.toml"]          # no mlflow.db, no mlruns/, no runs/


def _interrupted_creation(path, delay: float):
    """MLflow creating its tables in a fresh database, stopped by a real Ctrl-C (SIGINT) part-way."""
    code = f"from mlflow import MlflowClient\nMlflowClient('sqlite:///{path}').search_experiments()\n"
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))

    def tables():
        try:
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as con:
                return {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        except sqlite3.Error:
            return set()
    while "trace_info" not in tables() and p.poll() is None:
        time.sleep(0.002)
    time.sleep(delay)
    p.send_signal(signal.SIGINT)
    p.wait()


@pytest.mark.multiprocess
def test_half_created_mlflow_db_is_named_with_what_to_do(tmp_cwd, capsys):
    write_job(tmp_cwd, iterations=2)
    db = tmp_cwd / "mlflow.db"
    for attempt in range(3):        # the interrupt must land inside a migration (1 in 4 here); retry
        db.unlink(missing_ok=True)
        _interrupted_creation(db, delay=0.005 * attempt)
        try:
            connect(f"sqlite:///{db}")
        except TrackingError:
            break
    else:
        pytest.skip("MLflow's table creation was never interrupted inside a migration in 3 tries")
    assert main(["train", "job.toml", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"{db} is a half-created MLflow database" in err and "already exists" in err, err
    assert f"rm {db}" in err and "Traceback" not in err


@pytest.mark.multiprocess
def test_creating_the_db_cannot_be_left_half_made(tmp_cwd):
    """kill -9 while arsearch creates a fresh mlflow.db: no database is left, so the next run works."""
    write_job(tmp_cwd, iterations=2)
    p = start(tmp_cwd, "train", "job.toml", "--quiet")
    wait_for(lambda: list(tmp_cwd.glob(".mlflow.db.creating-*")), what="the database being created", proc=p)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    assert not (tmp_cwd / "mlflow.db").exists()
    done = run(tmp_cwd, "train", "job.toml", "--quiet", "--overwrite")
    assert done.returncode == 0, done.stderr


POSTTRAIN_ON_SMALL_DISK = """
seed = 0
[task]
dataset = "digits"
hidden = [512]
batch_size = 64
[model]
factory = "mlp"
checkpoint = "pre/pretrained.pt"
pretrain_epochs = 1
[compress]
prune = 0.5
[ars]
directions = 4
top = 2
iterations = 4
[eval]
every = 2
[tracking]
enabled = false
[checkpoint]
dir = "small/p"
every = 100
"""


@pytest.mark.multiprocess
def test_full_disk_during_the_posttrain_export_names_the_file_and_resume_exports_once_there_is_space(tmp_cwd):
    """A 64-512-10 MLP: final.pt (~196 kB) fits a 256 kB tmpfs, the export (~154 kB + ~83 kB more) does not."""
    (tmp_cwd / "post.toml").write_text(POSTTRAIN_ON_SMALL_DISK)
    with tmpfs(tmp_cwd / "small", size="256k"):
        out = tmp_cwd / "small/p"
        done = run(tmp_cwd, "posttrain", "post.toml", "--quiet")
        assert done.returncode == 1, done.stderr
        assert "cannot write small/p/posttrained.safetensors: No space left on device" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
        assert sorted(p.name for p in out.iterdir()) == [".arsearch.lock", "final.pt", "metrics.json"]  # no .tmp-PID
        final = (out / "final.pt").read_bytes()

        # still no space: --resume finds final.pt and fails the same way, losing nothing
        again = run(tmp_cwd, "posttrain", "post.toml", "--quiet", "--resume")
        assert again.returncode == 1 and "resuming from small/p/final.pt" in again.stderr, again.stderr
        assert "no space left on device" in again.stderr.lower() and "Traceback" not in again.stderr
        assert sorted(p.name for p in out.iterdir()) == [".arsearch.lock", "final.pt", "metrics.json"]
        assert (out / "final.pt").read_bytes() == final

        remount = subprocess.run(["mount", "-o", "remount,size=2m", str(tmp_cwd / "small")], capture_output=True,
                                 text=True)
        assert remount.returncode == 0, remount.stderr            # the same files, more space
        resumed = run(tmp_cwd, "posttrain", "post.toml", "--quiet", "--resume")
        assert resumed.returncode == 0, resumed.stderr
        assert "resuming from small/p/final.pt (iteration 4)" in resumed.stderr
        assert {"posttrained.safetensors", "compressed.safetensors", "posttrain.json"} <= {p.name for p in out.iterdir()}
        assert not [p.name for p in out.iterdir() if ".tmp" in p.name]
        from arsearch.weights import read_safetensors

        tensors, _ = read_safetensors(out / "posttrained.safetensors")
        assert sorted(tuple(t.shape) for t in tensors.values() if t.dim() == 2) == [(10, 512), (512, 64)]
