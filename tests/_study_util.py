"""Helpers for the study tests: a tiny digits job (a trial takes well under a second) and a study file."""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

TINY_JOB = """
seed = 0
[task]
kind = "supervised"
dataset = "digits"
hidden = [16]
batch_size = 64
[ars]
version = "v1t"
directions = 4
top = 2
iterations = {iterations}
backend = "vectorized"
[eval]
every = 5
[tracking]
uri = "sqlite:///mlflow.db"
experiment = "tiny"
[checkpoint]
dir = "runs/tiny"
every = 1000
"""


def write_study(directory: Path, study: str = "", space: str = "", iterations: int = 10, name: str = "tiny") -> Path:
    directory = Path(directory)
    (directory / "base.toml").write_text(TINY_JOB.format(iterations=iterations))
    text = f'[study]\nname = "{name}"\nbase = "base.toml"\nstorage = "sqlite:///optuna.db"\n' + study
    text += "\n[space]\n" + (space or '"ars.step_size" = { low = 0.005, high = 0.05, log = true }\n')
    path = directory / "study.toml"
    path.write_text(text)
    return path


def env() -> dict:
    """Environment for `arsearch` subprocesses: this checkout first on the path, one thread each."""
    e = dict(os.environ)
    e["PYTHONPATH"] = str(REPO) + (os.pathsep + e["PYTHONPATH"] if e.get("PYTHONPATH") else "")
    e["OMP_NUM_THREADS"] = "1"
    return e


def arsearch_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "arsearch.cli", *args]
