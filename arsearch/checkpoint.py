"""Checkpoints: plain dicts of tensors and numbers, written atomically, read with weights_only=True.

A checkpoint never carries code: `torch.load(..., weights_only=True)` refuses any pickle that
would import or call something, so a malicious file is rejected before anything runs.
"""

from __future__ import annotations

import os
import pickle
import re
import zipfile
from pathlib import Path

import torch

FORMAT = "arsearch-checkpoint"
_NAME = re.compile(r"^iter_(\d+)\.pt$")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: missing, corrupt, unsafe, or not fitting the model."""


def save(path: str | Path, payload: dict) -> Path:
    """Write atomically: a crash mid-write leaves the previous file intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def load(path: str | Path, map_location="cpu"):
    """`torch.load(weights_only=True)` with every failure turned into a clear CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        msg = str(e).splitlines()[0] if str(e) else "unsafe content"
        raise CheckpointError(f"checkpoint {path} was refused: it is not a plain weights file "
                              f"(weights_only=True rejected it: {msg})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, AttributeError) as e:
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt ({type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else 'no detail'})") from None


def numbered(directory: str | Path, iteration: int) -> Path:
    return Path(directory) / f"iter_{iteration:07d}.pt"


def latest(directory: str | Path) -> Path | None:
    """The checkpoint with the highest iteration in `directory`, or None."""
    directory = Path(directory)
    if not directory.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _NAME.match(p.name))]
    return max(found)[1] if found else None
