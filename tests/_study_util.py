"""Kept for test files not yet migrated: the study helpers live in `tests.support.study`, the
`mlflow_db` fixture in tests/conftest.py (re-exported here for files that import it by name)."""

from tests.conftest import mlflow_db  # noqa: F401 - re-exported fixture
from tests.support.study import REPO, TINY_JOB, arsearch_cmd, env, write_study  # noqa: F401
from tests.support.study import mlflow_template as _mlflow_template  # noqa: F401
