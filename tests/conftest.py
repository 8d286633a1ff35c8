"""Every fixture the tests share (helpers and presets: `tests.support`).

Markers (pyproject.toml): `multiprocess` (the test starts a process: hogwild workers, ranks, an
`arsearch` or other subprocess, a mount; or sends a real signal), `postgres`, `gpu`. The fast part
alone, which starts no process: ``pytest -m "not multiprocess and not postgres"``.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch

os.environ.setdefault("MLFLOW_TRACKING_URI", "sqlite:///mlflow-test.db")
torch.set_num_threads(1)


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


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    """A tiny Hugging Face causal LM (a 2-layer GPT-2, seeded, and a character tokenizer) saved once per
    session with save_pretrained, no download: tests read it (as ``model.path``) and never write into it."""
    pytest.importorskip("transformers")
    from tests.support.hf import make_tiny_lm_dir

    return make_tiny_lm_dir(tmp_path_factory.mktemp("hf") / "tiny")


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


def free_port() -> int:
    """A port free now (another process may take it before it is bound: callers retry)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_mlflow_server(root: Path):
    """(process, uri) of an `mlflow server` answering /health, or (None, log tail) when it exited
    first (e.g. another process took the port between `free_port` and the server binding it)."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
                             "--backend-store-uri", f"sqlite:///{root / 'server.db'}",
                             "--artifacts-destination", str(root / "artifacts"), "--workers", "1"],
                            cwd=root, stdout=(root / "server.log").open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True)     # its own group: its workers are stopped with it
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while True:
        try:
            with urllib.request.urlopen(uri + "/health", timeout=2):
                return proc, uri
        except OSError:
            if proc.poll() is not None:
                return None, (root / "server.log").read_text()[-2000:]
            if time.monotonic() > deadline:
                _stop_group(proc)
                pytest.fail("mlflow server did not answer in 300 s:\n" + (root / "server.log").read_text()[-2000:])
            time.sleep(0.5)


def _stop_group(proc) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real `mlflow server` process (one worker) on loopback, stopped at the end of the session."""
    from tests.support.study import mlflow_template

    root = tmp_path_factory.mktemp("mlflow-server")
    shutil.copy(mlflow_template(), root / "server.db")
    for _ in range(3):          # a port lost to another process: try another one
        proc, uri = _start_mlflow_server(root)
        if proc is not None:
            break
    else:
        pytest.fail("mlflow server did not start:\n" + uri)
    yield uri
    _stop_group(proc)
