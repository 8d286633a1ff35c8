import os

import pytest
import torch

os.environ.setdefault("MLFLOW_TRACKING_URI", "sqlite:///mlflow-test.db")
torch.set_num_threads(1)


@pytest.fixture
def tmp_cwd(tmp_path, monkeypatch):
    """Run the test inside a fresh directory (runs/, mlflow.db, optuna.db land there)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path
