"""What the tests share: one way to build a job (`make_job`), a few presets, small user callables.

    from tests.support import make_job
    cfg = make_job("digits", tmp_path, **{"ars.backend": "sequential", "ars.iterations": 3})

`kind` names a preset (a plain dict, below); `directory` becomes ``checkpoint.dir``; every other
keyword is a dotted key (``"ars.top"``, ``"population.annealing.schedule"``) applied through the
library's own ``--set`` mechanism, so an override is validated exactly as a user's would be.
Fixtures live in tests/conftest.py; the plain NumPy ARS the core is checked against is
`tests.support.reference`.
"""

from __future__ import annotations

import copy
from pathlib import Path

from arsearch.callbacks import Callback
from arsearch.config import JobConfig, load_job

# A tiny digits classification job: an iteration takes a few milliseconds.
DIGITS = {
    "seed": 0,
    "task": {"dataset": "digits", "model": "mlp", "hidden": [16], "batch_size": 64},
    "ars": {"directions": 8, "top": 4, "iterations": 10, "step_size": 0.05, "noise": 0.03},
    "eval": {"every": 5},
    "tracking": {"enabled": False},
    "checkpoint": {"every": 1000},      # no intermediate checkpoints unless a test asks for them
}

# The paper's setting, short: Swimmer-v5 with a linear policy starting at zero.
SWIMMER = {
    "seed": 0,
    "task": {"kind": "rl", "env": "Swimmer-v5", "policy": "linear", "horizon": 60, "eval_episodes": 2},
    "ars": {"directions": 4, "top": 2, "iterations": 3, "step_size": 0.02, "noise": 0.01},
    "eval": {"every": 3},
    "tracking": {"enabled": False},
    "checkpoint": {"every": 100},
}

# Four learners with every strategy, on prioritised digits mini-batches.
POPULATION = {
    "seed": 1,
    "task": {"dataset": "digits", "model": "mlp", "hidden": [16], "batch_size": 64},
    "ars": {"directions": 6, "top": 3, "iterations": 20, "step_size": 0.05},
    "population": {"size": 4, "epoch": 5, "strategies": ["culling", "annealing", "tabu", "pso"],
                   "culling": {"mutation": 0.001}, "annealing": {"t0": 0.05}, "tabu": {"radius": 0.002}},
    "sampling": {},
    "eval": {"every": 10},
    "tracking": {"enabled": False},
    "checkpoint": {"every": 10},
}

PRESETS = {"digits": DIGITS, "rl": SWIMMER, "population": POPULATION}


def make_job(kind: str = "digits", directory: str | Path | None = None, **dotted_overrides) -> JobConfig:
    """A validated `JobConfig` from preset `kind`, writing under `directory`, with dotted-key overrides.

    An override whose value is None removes that key (or a whole optional table, e.g. "sampling").
    """
    if kind not in PRESETS:
        raise ValueError(f"unknown test preset {kind!r}; allowed: {', '.join(PRESETS)}")
    data = copy.deepcopy(PRESETS[kind])
    if directory is not None:
        data["checkpoint"]["dir"] = str(directory)
    for key in [k for k, v in dotted_overrides.items() if v is None]:
        *parents, last = key.split(".")
        node = data
        for part in parents:
            node = node.get(part, {})
        node.pop(last, None)
        del dotted_overrides[key]
    return load_job(data=data, overrides=dotted_overrides)


def assert_same_state(a, b, where: str = "state") -> None:
    """Nested dicts/lists of tensors and plain values (state dicts, checkpoints), equal bit for bit."""
    import torch

    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            assert_same_state(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_state(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


# -- user callables that jobs name as "tests.support:NAME" (package.module:function) ---------------

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


class StopAt(Callback):
    """A trainer callback that raises KeyboardInterrupt after `iteration`: a job cut short there, with
    the checkpoints it wrote until then (what `--resume` continues from)."""

    def __init__(self, iteration: int):
        self.iteration = iteration

    def on_iteration(self, trainer, iteration, metrics):
        if iteration == self.iteration:
            raise KeyboardInterrupt
