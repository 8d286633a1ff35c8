"""The tracking store: which URI, whether it can be used, creating a fresh SQLite database safely,
and the experiments in it."""

from __future__ import annotations

import logging
import os
import random
import re
import time
import urllib.error
import urllib.request
from pathlib import Path

from .tags import EXPERIMENT_KIND_TAG, MODEL_TRAINING

log = logging.getLogger("arsearch.tracking")

DEFAULT_URI = "sqlite:///mlflow.db"

# scheme://user:PASSWORD@host — the password runs to the last @ before the host, so an unencoded
# @ inside it is masked too (the host part holds no @)
_PASSWORD = re.compile(r"(://[^:/@\s]*:)\S*?@(?=[^@\s/?#]*(?:[/?#\s]|$))")
# ?password=... (psycopg, libpq, SQLAlchemy's query arguments), and the other names drivers accept
_QUERY_SECRET = re.compile(r"([?&;](?:password|passwd|pass|pwd|secret|token|api_key|apikey|access_token)=)"
                           r"[^&;#\s]*", re.IGNORECASE)


class TrackingError(RuntimeError):
    """The tracking store cannot be used (server down, bad URI): reported before any training starts."""


def resolve_uri(uri: str | None = None) -> str:
    """The tracking URI to use: the given one (tracking.uri, --tracking-uri, --uri), else the
    MLFLOW_TRACKING_URI environment variable, else sqlite:///mlflow.db in the working directory."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def redact(text: str) -> str:
    """`text` with every credential of any URL in it replaced by ***: the password of scheme://user:PASSWORD@host
    (an unencoded @ in it included) and password/token query arguments (?password=S3cret)."""
    return _QUERY_SECRET.sub(r"\1***", _PASSWORD.sub(r"\1***@", str(text)))


def connect(uri: str, timeout: float = 5.0):
    """An MlflowClient for `uri`, checked now: a server that is down, a read-only or half-created
    database is a TrackingError naming the URI or file, not a hang or a traceback later.

    An empty `uri` means `resolve_uri()`: MLFLOW_TRACKING_URI, else sqlite:///mlflow.db.
    A fresh SQLite database is created by one process at a time (a file lock next to it) and under
    a temporary name that is renamed into place when complete, so neither two workers started
    together nor a Ctrl-C during creation can leave a half-made database. Server databases
    (PostgreSQL, MySQL) retry a first connection that collided with another process creating
    the same tables.
    """
    uri = resolve_uri(uri)
    shown = redact(uri)
    if uri.startswith(("http://", "https://")):
        url = uri.rstrip("/") + "/health"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as reply:
                if reply.status != 200:
                    raise TrackingError(f"MLflow tracking server {shown} answered {reply.status} on /health")
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise TrackingError(f"MLflow tracking server {shown} is not reachable ({redact(reason)}); start it "
                                f"(mlflow server --host ... --port ...), point tracking.uri elsewhere, "
                                f"or set tracking.enabled = false") from None
    db: Path | None = None
    if uri.startswith("sqlite:///"):
        path = uri[len("sqlite:///"):]
        if path not in ("", ":memory:"):
            db = Path(path).resolve()
            _check_sqlite_writable(db)
            # Pin a relative path now: SQLAlchemy resolves it against the working directory of
            # each new connection, and MLflow caches stores by URI, so a later chdir (or a
            # background sender) would otherwise write into another directory's database.
            uri = "sqlite:///" + str(db)
    if db is not None:
        from filelock import FileLock

        with FileLock(str(db) + ".lock"):          # one process creates/migrates it; the others wait
            if not db.exists():
                _create_sqlite_store(db)
            return _probe(uri, shown, db)
    for attempt in range(6):
        try:
            return _probe(uri, shown, None)
        except TrackingError as e:
            if attempt == 5 or not _is_creation_race(str(e)):
                raise
            time.sleep(0.5 + random.random())       # another worker is creating the tables: try again
    raise AssertionError("unreachable")


def _probe(uri: str, shown: str, db: Path | None):
    try:
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=uri)
        client.search_experiments(max_results=1)      # creates/migrates a store; probes a server
    except Exception as e:                            # noqa: BLE001 - any store error means "unusable"
        first = redact(str(e).strip().splitlines()[0] if str(e).strip() else "")
        if db is not None and "already exists" in str(e):
            raise TrackingError(f"{db} is a half-created MLflow database (its creation was interrupted: "
                                f"{first}); {_runs_in(db)}") from None
        raise TrackingError(f"MLflow tracking store {shown} cannot be used: {type(e).__name__}: {first}") from None
    return client


def _is_creation_race(message: str) -> bool:
    return any(s in message for s in ("already exists", "duplicate key", "UNIQUE constraint", "Duplicate entry"))


def _check_sqlite_writable(db: Path) -> None:
    from ..checkpoint import CheckpointError, check_writable

    try:
        check_writable(db.parent, "the directory of tracking database")
        if db.exists():
            with open(db, "r+b"):
                pass
    except CheckpointError as e:
        raise TrackingError(f"{e}; point tracking.uri elsewhere or set tracking.enabled = false") from None
    except OSError as e:
        raise TrackingError(f"tracking database {db} is not writable ({e.strerror}); point tracking.uri "
                            f"elsewhere or set tracking.enabled = false") from None


def _create_sqlite_store(db: Path) -> None:
    """Create MLflow's tables in a temporary file and rename it to `db` once complete."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
    from mlflow.tracking._tracking_service.utils import DEFAULT_LOCAL_FILE_AND_ARTIFACT_PATH

    tmp = db.with_name(f".{db.name}.creating-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    tmp_uri = "sqlite:///" + str(tmp)
    try:
        store = SqlAlchemyStore(tmp_uri, DEFAULT_LOCAL_FILE_AND_ARTIFACT_PATH)   # what MlflowClient would use
        store.engine.dispose()
        SqlAlchemyStore._engine_map.pop(tmp_uri, None)
        os.replace(tmp, db)
    except BaseException as e:                        # Ctrl-C included: never leave the temporary behind
        tmp.unlink(missing_ok=True)
        if isinstance(e, Exception):
            raise TrackingError(f"cannot create the MLflow database {db}: {type(e).__name__}: "
                                f"{str(e).splitlines()[0] if str(e) else ''}") from None
        raise


def _runs_in(db: Path) -> str:
    import sqlite3

    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
            n = con.execute("SELECT count(*) FROM runs").fetchone()[0]
    except sqlite3.Error:
        n = 0
    if n:
        return f"it holds {n} run(s): move it aside (mv {db} {db}.broken) and start again"
    return f"it holds no runs: delete it (rm {db}) and start again"


def experiment_id(client, name: str) -> str:
    """The id of experiment `name`, created if needed, and marked as a model-training experiment."""
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if EXPERIMENT_KIND_TAG not in exp.tags:      # one created by an older arsearch, or by hand
            try:
                client.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING)
            except Exception as e:                    # noqa: BLE001 - a read-only store still tracks
                log.debug("cannot tag experiment %s: %s", name, e)
        return exp.experiment_id
    try:
        return client.create_experiment(name, tags={EXPERIMENT_KIND_TAG: MODEL_TRAINING})
    except Exception:                                 # noqa: BLE001 - another worker created it first
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id
