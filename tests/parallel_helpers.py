"""Kept for test files and job configs not yet migrated ("parallel_helpers:killed_model"): the
helpers live in `tests.support.parallel`."""

from tests.helpers import job_in
from tests.support.parallel import (  # noqa: F401 - re-exported
    CALLS_BEFORE_TRIGGER,
    distributed_rank,
    hanging_model,
    killed_model,
    raising_model,
)


def tiny_job(directory, **overrides):
    """A small, fast digits job writing under `directory`, with dotted-key overrides."""
    return job_in(directory, checkpoint_every=1000, **overrides)
