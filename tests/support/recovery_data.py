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
