"""Every fixture the tests share.

Markers (pyproject.toml): `multiprocess` (worker processes, ranks, subprocesses), `postgres`,
`gpu`. The fast part alone: ``pytest -m "not multiprocess and not postgres"``.
"""

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

os.environ.setdefault("MLFLOW_TRACKING_URI", "sqlite:///mlflow-test.db")
torch.set_num_threads(1)
# legacy helper modules (_study_util, parallel_helpers) import by bare name from files not yet migrated
sys.path.insert(0, str(Path(__file__).parent))


def pytest_collection_modifyitems(config, items):
    """Tests marked `gpu` are skipped, saying why, on a machine without CUDA."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def tmp_cwd(tmp_path, monkeypatch):
    """Run the test inside a fresh directory (runs/, mlflow.db, optuna.db land there)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def mlflow_db(tmp_cwd):
    """tmp_cwd with a ready (empty) sqlite:///mlflow.db."""
    from tests.support.study import mlflow_template

    shutil.copy(mlflow_template(), tmp_cwd / "mlflow.db")
    return tmp_cwd


@pytest.fixture
def gpu_lock_dir(tmp_path, monkeypatch):
    """GPU lock files of `DevicePool` in this test's own directory, not the machine-wide default
    (which another run of the suite could be holding)."""
    from arsearch.study import DevicePool

    locks = tmp_path / "gpu-locks"
    monkeypatch.setattr(DevicePool.__init__, "__defaults__", (None, str(locks)))
    return locks


@pytest.fixture
def spawn():
    """`spawn(cmd, **popen_kwargs)`: a subprocess in its own process group; whatever of the group is
    still running when the test ends (a timeout, a failed assertion) is killed, grandchildren
    (torchrun's ranks, study workers' trials) included."""
    procs = []

    def start(cmd, **kwargs):
        proc = subprocess.Popen(cmd, start_new_session=True, **kwargs)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


@pytest.fixture
def run_cli(spawn):
    """`run_cli(cmd, timeout=..., **kw)`: like subprocess.run(capture_output=True, text=True), but a
    timeout kills the whole process group, not just the direct child."""

    def run(cmd, timeout, **kwargs):
        proc = spawn(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            pytest.fail(f"{cmd[2:5]} did not finish in {timeout} s; its process group was killed\n{err[-3000:]}")
        return subprocess.CompletedProcess(cmd, proc.returncode, out, err)

    return run
