"""Example model factories for ``[model] factory = "arsearch.examples:NAME"`` (or ``[task] model``).

A factory may accept any of ``input_dim``, ``input_shape``, ``output_dim`` and ``hidden``; the
job passes those it accepts, built from the task's dataset.
"""

from __future__ import annotations

from torch import nn


def digits_mlp(input_dim: int = 64, output_dim: int = 10, hidden=(128, 64)) -> nn.Module:
    """A plain MLP; its state_dict keys are ``0.weight`` … like any `nn.Sequential`."""
    layers, width = [], input_dim
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, output_dim))
    return nn.Sequential(*layers)


class TwoLayerNet(nn.Module):
    """A model with named submodules (``body``, ``head``), to show layer-name search spaces."""

    def __init__(self, input_dim: int = 64, output_dim: int = 10, width: int = 64):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(input_dim, width), nn.ReLU())
        self.head = nn.Linear(width, output_dim)

    def forward(self, x):
        return self.head(self.body(x.flatten(1)))


def two_layer_net(input_dim: int = 64, output_dim: int = 10) -> nn.Module:
    return TwoLayerNet(input_dim, output_dim)
