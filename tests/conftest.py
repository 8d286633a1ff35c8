import os
import sys
from pathlib import Path

import pytest
import torch

os.environ.setdefault("MLFLOW_TRACKING_URI", "sqlite:///mlflow-test.db")
torch.set_num_threads(1)
# test helper modules (_study_util, parallel_helpers) import by bare name from any test file
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture
def tmp_cwd(tmp_path, monkeypatch):
    """Run the test inside a fresh directory (runs/, mlflow.db, optuna.db land there)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path
