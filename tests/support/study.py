"""Study helpers: a tiny digits job (a trial takes well under a second), a study file, subprocess commands."""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

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
    """base.toml (the tiny job) and study.toml in `directory`; `study` and `space` are TOML lines."""
    directory = Path(directory)
    (directory / "base.toml").write_text(TINY_JOB.format(iterations=iterations))
    text = f'[study]\nname = "{name}"\nbase = "base.toml"\n' + study
    if "storage =" not in study:
        text += 'storage = "sqlite:///optuna.db"\n'
    text += "\n[space]\n" + (space or '"ars.step_size" = { low = 0.005, high = 0.05, log = true }\n')
    path = directory / "study.toml"
    path.write_text(text)
    return path


def env() -> dict:
    """Environment for `arsearch` subprocesses: this checkout first on the path (so that jobs can name
    ``tests.support...:NAME`` callables), one thread each."""
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(REPO)] + ([e["PYTHONPATH"]] if e.get("PYTHONPATH") else []))
    e["OMP_NUM_THREADS"] = "1"
    return e


def arsearch_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "arsearch.cli", *args]


def runs_of(uri: str, experiment: str):
    """(MlflowClient, the runs of `experiment`) in the store at `uri`, which must hold it."""
    from mlflow import MlflowClient

    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        uri = f"sqlite:///{Path.cwd() / uri[len('sqlite:///'):]}"   # MLflow caches stores by URI: pin the path
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no experiment {experiment!r} in {uri}"
    return client, client.search_runs([exp.experiment_id])


def mlflow_template() -> Path:
    """A fresh MLflow SQLite database, created once per machine and MLflow version (its schema
    migrations take 5-25 s, which every test would otherwise pay again)."""
    import fcntl
    import tempfile

    import mlflow

    template = Path(tempfile.gettempdir()) / f"arsearch-test-mlflow-{mlflow.__version__}.db"
    with open(str(template) + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not template.exists():
            from arsearch.tracking import connect

            tmp = template.with_suffix(f".tmp{os.getpid()}.db")
            connect(f"sqlite:///{tmp}")
            os.replace(tmp, template)
    return template


def fresh_postgres_schema() -> str:
    """A storage URL on the test PostgreSQL server (.ci/services.sh) in a new, empty schema; skips the
    test where no server is set up (fails in CI, where one must be)."""
    import uuid

    import pytest

    url = os.environ.get("ARSEARCH_TEST_POSTGRES")
    if not url:
        if os.environ.get("CI"):
            pytest.fail("ARSEARCH_TEST_POSTGRES is not set: .ci/services.sh did not start PostgreSQL")
        pytest.skip("no PostgreSQL here: source .ci/services.sh to run this test")
    import sqlalchemy

    schema = f"s_{uuid.uuid4().hex[:10]}"
    engine = sqlalchemy.create_engine(url.replace("postgresql://", "postgresql+psycopg2://", 1))
    with engine.begin() as con:
        con.execute(sqlalchemy.text(f"CREATE SCHEMA {schema}"))
    engine.dispose()
    return f"{url}?options=-csearch_path%3D{schema}"
