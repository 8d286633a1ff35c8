"""Small shared helpers for the tests (importable as tests.helpers)."""

from arsearch.config import load_job


def job(tmp_path, **overrides):
    """A tiny, fast digits job writing under tmp_path/run, with dotted-key overrides."""
    return job_in(tmp_path / "run", checkpoint_every=5, **overrides)


def job_in(directory, checkpoint_every: int, **overrides):
    """The same tiny digits job, writing its checkpoints into `directory`."""
    base = {
        "seed": 0,
        "task": {"dataset": "digits", "model": "mlp", "hidden": [16], "batch_size": 64},
        "ars": {"directions": 8, "top": 4, "iterations": 10, "step_size": 0.05, "noise": 0.03},
        "eval": {"every": 5},
        "tracking": {"enabled": False},
        "checkpoint": {"dir": str(directory), "every": checkpoint_every},
    }
    return load_job(data=base, overrides=overrides)


def user_dataset():
    """A dataset given as package.module:function (two Gaussian blobs)."""
    import torch

    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(100, 4, generator=g) + 2, torch.randn(100, 4, generator=g) - 2])
    y = torch.cat([torch.zeros(100, dtype=torch.long), torch.ones(100, dtype=torch.long)])
    return x, y


def nan_dataset():
    import torch

    x = torch.randn(50, 4)
    x[3, 1] = float("nan")
    return x, torch.randint(0, 2, (50,))


def user_model(input_dim, output_dim):
    from torch import nn

    return nn.Sequential(nn.Linear(input_dim, 8), nn.Tanh(), nn.Linear(8, output_dim))
