"""Built-in models: an MLP and a small CNN; any other model comes from a user factory."""

from __future__ import annotations

from torch import nn

from .imports import call_user, call_with_accepted, is_import_path, load_callable


def mlp(input_dim: int, output_dim: int, hidden=(64,), activation: str = "relu") -> nn.Sequential:
    from .memory import check_parameters, mlp_parameters

    act = {"relu": nn.ReLU, "tanh": nn.Tanh}[activation]
    check_parameters("task.hidden", list(hidden), mlp_parameters([input_dim, *hidden, output_dim]))
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
    if is_hf(name):
        raise ValueError(f"model factory {name!r} loads a Hugging Face model directory: it needs [model] path "
                         f"and task.kind = \"generate\"")
    if is_import_path(name):
        model = call_user("task.model", name, call_with_accepted, load_callable(name, "model"), input_dim=input_dim,
                          input_shape=tuple(input_shape), output_dim=output_dim, hidden=list(hidden))
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


# ---------------------------------------------------------------------------------------------
# Hugging Face transformers (the optional `hf` extra): local directories only, nothing downloaded

HF_PREFIX = "transformers:"


def is_hf(factory: str) -> bool:
    """Whether `factory` names a transformers Auto class, e.g. ``"transformers:AutoModelForCausalLM"``."""
    return factory.startswith(HF_PREFIX)


def _transformers():
    try:
        import transformers
    except ImportError:
        raise ValueError("Hugging Face models need the optional 'hf' extra: pip install 'arsearch[hf]' "
                         "(transformers and safetensors)") from None
    transformers.utils.logging.disable_progress_bar()   # per-shard bars on every load and save
    return transformers


# the files one of which a tokenizer saved by save_pretrained leaves in its directory
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "vocab.txt", "tokenizer.model",
                   "spiece.model")


def load_hf(factory: str, path: str, tokenizer: bool = True):
    """(model, tokenizer or None) from the local directory `path`, with ``from_pretrained(path,
    local_files_only=True)`` of the Auto class `factory` names. A missing or broken directory is a
    CheckpointError with the reason."""
    from pathlib import Path

    from .checkpoint import CheckpointError

    transformers = _transformers()
    cls_name = factory[len(HF_PREFIX):]
    cls = getattr(transformers, cls_name, None)
    if cls is None or not hasattr(cls, "from_pretrained"):
        raise ValueError(f"model factory {factory!r}: transformers has no model class {cls_name!r} "
                         f"(use an Auto class such as AutoModelForCausalLM)")
    if not Path(path).is_dir():
        raise CheckpointError(f"model.path {path} is not a directory (a Hugging Face model saved with save_pretrained)")
    def cannot(e: Exception) -> CheckpointError:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "no detail"
        return CheckpointError(f"model.path {path} cannot be loaded by {factory}: {type(e).__name__}: {first}")
    try:
        model = cls.from_pretrained(path, local_files_only=True)
    except Exception as e:  # noqa: BLE001 - transformers raises OSError, ValueError, SafetensorError, ...
        raise cannot(e) from None
    if tokenizer and not any((Path(path) / name).exists() for name in TOKENIZER_FILES):
        # AutoTokenizer would build an empty one from the model's config, and generation fail much later
        raise CheckpointError(f"model.path {path} holds no tokenizer (none of {', '.join(TOKENIZER_FILES)}): "
                              f"save it there too, with tokenizer.save_pretrained({path!r})")
    try:
        tok = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True) if tokenizer else None
    except Exception as e:  # noqa: BLE001
        raise cannot(e) from None
    model.eval()   # no dropout: a candidate's score must be a function of its parameters
    return model, tok


def save_hf(model, tokenizer, directory, max_shard_size: str = "200MB"):
    """``save_pretrained`` of the model (and tokenizer) into `directory`, loadable by plain transformers.

    Small shards keep the export's extra memory to one shard: safetensors' writer builds each
    file's bytes in memory before writing it.
    """
    from pathlib import Path

    _transformers()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory, max_shard_size=max_shard_size)
    if tokenizer is not None:
        tokenizer.save_pretrained(directory)
    return directory
