"""Kept for test files not yet migrated to `tests.support` (new files: use `tests.support.make_job`)."""

from tests.support import make_job, nan_dataset, user_dataset, user_model  # noqa: F401 - re-exported


def job(tmp_path, **overrides):
    """The tiny digits job writing under tmp_path/run, checkpoints every 5 iterations."""
    return make_job("digits", tmp_path / "run", **{"checkpoint.every": 5, **overrides})


def job_in(directory, checkpoint_every: int, **overrides):
    """The same tiny digits job, writing its checkpoints into `directory`."""
    return make_job("digits", directory, **{"checkpoint.every": checkpoint_every, **overrides})
