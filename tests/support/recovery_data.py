"""User dataset and model functions for tests/test_recovery_input.py (given as
``tests.support.recovery_data:NAME``)."""

import torch
from torch import nn
from torch.utils.data import TensorDataset


def _blobs(n=60, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.cat([torch.randn(n, 4, generator=g) + 2, torch.randn(n, 4, generator=g) - 2])
    y = torch.cat([torch.zeros(n, dtype=torch.long), torch.ones(n, dtype=torch.long)])
    return x, y


def split():
    """The most common shape of a user's data code: (train_dataset, test_dataset)."""
    x, y = _blobs()
    xt, yt = _blobs(7, seed=1)
    return TensorDataset(x, y), TensorDataset(xt, yt)


def train_only():
    return TensorDataset(*_blobs())


def test_only():
    return _blobs(5, seed=2)


def onehot():
    x, y = _blobs()
    return x, torch.nn.functional.one_hot(y).float()


def strings():
    x, y = _blobs()
    return x.numpy(), ["cat" if v else "dog" for v in y.tolist()]


def three():
    x, y = _blobs()
    return x, y, "extra"


class _DictNet(nn.Module):
    def __init__(self, key):
        super().__init__()
        self.key, self.net = key, nn.Linear(4, 2)

    def forward(self, x):
        return {self.key: self.net(x), "hidden": x}


def dict_logits(input_dim, output_dim):
    return _DictNet("logits")


def dict_other(input_dim, output_dim):
    return _DictNet("scores")


# -- faults in user code (tests/test_user_errors.py) --------------------------------------------------

def _parse_rows(rows):
    return [float(r) for r in rows]                # the user's own helper: its frame is in the traceback


def raising_dataset():
    """A dataset function with a bug of its own."""
    return _parse_rows(["1.0", "oops"])


def nan_dataset():
    x, y = _blobs()
    x[7, 2] = float("nan")
    return x, y


def negative_labels():
    x, y = _blobs()
    y[3] = -1
    return x, y


def raising_model(input_dim, output_dim):
    raise RuntimeError(f"no layer for {input_dim} inputs")


def wrong_batch_model(input_dim, output_dim):
    class Flattened(nn.Module):                  # mixes the batch into one row: wrong batch dimension
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(input_dim, output_dim)

        def forward(self, x):
            return self.lin(x).reshape(1, -1)
    return Flattened()


try:                       # Gymnasium environments with faults, made by id "tests.support.recovery_data:..."
    import gymnasium as gym
    import numpy as np

    class _Env(gym.Env):
        observation_space = gym.spaces.Box(-1.0, 1.0, (3,), dtype=np.float32)
        action_space = gym.spaces.Box(-1.0, 1.0, (1,), dtype=np.float32)

        def reset(self, seed=None, options=None):
            super().reset(seed=seed)
            return np.zeros(3, dtype=np.float32), {}

        def step(self, action):
            return np.zeros(3, dtype=np.float32), 0.0, False, False, {}

    class WrongShapeEnv(_Env):
        def step(self, action):
            return np.zeros(5, dtype=np.float32), 0.0, False, False, {}   # 5 values, its space says 3

    class RaisingEnv(_Env):
        def step(self, action):
            raise KeyError("sensor")

    gym.register("WrongShape-v0", entry_point=WrongShapeEnv, max_episode_steps=20)
    gym.register("RaisingStep-v0", entry_point=RaisingEnv, max_episode_steps=20)
except ImportError:
    pass
