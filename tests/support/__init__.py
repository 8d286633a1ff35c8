"""What the tests share: one way to build a job (`make_job`), a few presets, small user callables.

    from tests.support import job_data, make_job
    cfg = make_job("digits", tmp_path, **{"ars.backend": "sequential", "ars.iterations": 3})
    data = job_data("generate", tmp_path / "out", **{"model.path": model_dir})   # a dict, for TOML or load_job

`kind` names a preset (a plain dict, below); `directory` becomes ``checkpoint.dir``; every other
keyword is a dotted key (``"ars.top"``, ``"population.annealing.schedule"``). `make_job` applies them
through the library's own ``--set`` mechanism, so an override is validated exactly as a user's would
be; `job_data` writes them into the plain dict, for tests that write a job file or break a job on purpose.
Fixtures (``tmp_cwd``, ``mlflow_db``, ``model_dir``, ``spawn``, ...) live in tests/conftest.py; the
other modules here: `study` (study files, subprocess commands), `recovery` (real `arsearch`
processes, signals, mounts), `parallel` (models that fail inside a worker or rank), `hf` (a tiny
Hugging Face model), `recovery_data` (user data functions), and `reference`, the plain NumPy ARS the
core is checked against.
"""

from __future__ import annotations

import copy
from pathlib import Path

from arsearch.callbacks import Callback
from arsearch.config import JobConfig, load_job
from tests.support.hf import FACTORY

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

# Post-training the digits MLP whose weights are at ``model.checkpoint`` (set it): 3 sequential iterations.
POSTTRAIN = {
    "seed": 0,
    "task": {"dataset": "digits", "hidden": [16], "batch_size": 64},
    "model": {"factory": "mlp"},
    "ars": {"version": "v1t", "directions": 4, "top": 2, "step_size": 0.02, "noise": 0.02, "iterations": 3,
            "backend": "sequential"},
    "eval": {"every": 3},
    "tracking": {"enabled": False},
    "checkpoint": {"every": 100},
}

# Post-training the Hugging Face causal LM at ``model.path`` (set it; `tests.support.hf.make_tiny_lm_dir`
# makes one, the `model_dir` fixture holds it) on arithmetic prompts, rewarded by digit match.
GENERATE = {
    "seed": 0,
    "task": {"kind": "generate", "prompts": "arithmetic", "n_prompts": 100, "batch_size": 8, "max_new_tokens": 3,
             "reward": "arsearch.tasks.generate:digit_match"},
    "model": {"factory": FACTORY},
    "ars": {"version": "v1t", "directions": 2, "top": 2, "step_size": 0.05, "noise": 0.05, "iterations": 2,
            "backend": "sequential"},
    "eval": {"every": 1},
    "tracking": {"enabled": False},
    "checkpoint": {"every": 100},
}

PRESETS = {"digits": DIGITS, "rl": SWIMMER, "population": POPULATION, "posttrain": POSTTRAIN, "generate": GENERATE}


def job_data(kind: str = "digits", directory: str | Path | None = None, **overrides) -> dict:
    """Preset `kind` as the plain dict of a job file (for `load_job(data=...)` or `tomli_w.dumps`),
    writing under `directory`, with `overrides` written into it unchecked.

    A dotted key (``"model.path"``) sets that one value; a table name with a dict (``model={...}``) is
    merged into that table; None removes the key (or a whole optional table, e.g. "sampling"). Paths
    become strings, as a TOML file holds them.
    """
    if kind not in PRESETS:
        raise ValueError(f"unknown test preset {kind!r}; allowed: {', '.join(PRESETS)}")
    data = copy.deepcopy(PRESETS[kind])
    if directory is not None:
        data["checkpoint"]["dir"] = str(directory)
    for key, value in overrides.items():
        *parents, last = key.split(".")
        node = data
        for part in parents:
            node = node.get(part, {}) if value is None else node.setdefault(part, {})
        if value is None:
            node.pop(last, None)
        elif isinstance(value, dict) and isinstance(node.get(last), dict):
            node[last] = {**node[last], **_plain(value)}
        else:
            node[last] = _plain(value)
    return data


def _plain(value):
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def make_job(kind: str = "digits", directory: str | Path | None = None, **dotted_overrides) -> JobConfig:
    """A validated `JobConfig` from preset `kind`, writing under `directory`, with dotted-key overrides
    applied as ``--set`` applies them.

    An override whose value is None removes that key (or a whole optional table, e.g. "sampling").
    """
    removed = {k: None for k, v in dotted_overrides.items() if v is None}
    overrides = {k: v for k, v in dotted_overrides.items() if v is not None}
    return load_job(data=job_data(kind, directory, **removed), overrides=overrides)


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


def nan_model(input_dim, output_dim):
    """A model whose outputs are NaN (data with NaN is refused before training, so divergence is made here)."""
    from torch import nn

    class NaNOut(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(input_dim, output_dim)

        def forward(self, x):
            return self.lin(x) * float("nan")
    return NaNOut()


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
