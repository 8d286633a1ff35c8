"""Built-in models: an MLP and a small CNN; any other model comes from a user factory."""

from __future__ import annotations

from torch import nn

from .imports import call_with_accepted, is_import_path, load_callable


def mlp(input_dim: int, output_dim: int, hidden=(64,), activation: str = "relu") -> nn.Sequential:
    act = {"relu": nn.ReLU, "tanh": nn.Tanh}[activation]
    layers, width = [nn.Flatten()], input_dim
    for h in hidden:
        layers += [nn.Linear(width, h), act()]
        width = h
    layers.append(nn.Linear(width, output_dim))
    return nn.Sequential(*layers)


def cnn(input_shape, output_dim: int, channels=(8, 16), activation: str = "relu") -> nn.Sequential:
    """Two 3×3 conv layers (same padding), global average pooling, a linear head.

    `input_shape` is (C, H, W); a flat 64-vector (digits) is viewed as (1, 8, 8).
    """
    act = {"relu": nn.ReLU, "tanh": nn.Tanh}[activation]
    c_in = input_shape[0]
    layers: list[nn.Module] = []
    for c in channels:
        layers += [nn.Conv2d(c_in, c, 3, padding=1), act()]
        c_in = c
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, output_dim)]
    return nn.Sequential(*layers)


BUILTIN = {"mlp", "cnn"}


def build_model(name: str, *, input_shape, output_dim: int, hidden=(64,), channels=(8, 16),
                activation: str = "relu") -> nn.Module:
    input_dim = 1
    for s in input_shape:
        input_dim *= s
    if name == "mlp":
        return mlp(input_dim, output_dim, hidden, activation)
    if name == "cnn":
        shape = tuple(input_shape)
        if len(shape) == 1:
            side = int(round(shape[0] ** 0.5))
            if side * side != shape[0]:
                raise ValueError(f"model 'cnn' needs image inputs; got flat inputs of size {shape[0]}")
            shape = (1, side, side)
        return _Reshape(shape, cnn(shape, output_dim, channels, activation))
    if is_import_path(name):
        model = call_with_accepted(load_callable(name, "model"), input_dim=input_dim, input_shape=tuple(input_shape),
                                   output_dim=output_dim, hidden=list(hidden))
        if not isinstance(model, nn.Module):
            raise ValueError(f"model factory {name!r} returned {type(model).__name__}, not a torch.nn.Module")
        return model
    raise ValueError(f"unknown model {name!r}; allowed: {', '.join(sorted(BUILTIN))} or 'package.module:function'")


class _Reshape(nn.Module):
    def __init__(self, shape, net: nn.Module):
        super().__init__()
        self.shape = tuple(shape)
        self.net = net

    def forward(self, x):
        return self.net(x.reshape(x.shape[0], *self.shape))
