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
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        detail = [ln for ln in lines if "GLOBAL" in ln or ln.startswith("Unsupported")]
        msg = (detail or lines or ["unsafe content"])[0]
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


# ---------------------------------------------------------------------------------------------
# Model weights from a checkpoint: a plain state_dict, an arsearch training checkpoint, or an
# arsearch post-training export. Used by post-training and by any job with a [model] checkpoint.


def _is_tensor_dict(obj) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                       for k, v in obj.items())


def extract_state_dict(obj, path: str | Path = "checkpoint") -> dict[str, torch.Tensor]:
    """The model weights held by a loaded checkpoint object."""
    if isinstance(obj, dict) and obj.get("format") == FORMAT and "model" in obj:
        obj = obj["model"]
    elif isinstance(obj, dict) and "state_dict" in obj and _is_tensor_dict(obj["state_dict"]):
        obj = obj["state_dict"]    # the common {"state_dict": ..., "epoch": ...} layout of training scripts
    if not _is_tensor_dict(obj):
        raise CheckpointError(f"checkpoint {path} holds no model weights: expected a state_dict "
                              f"(a dict of parameter names to tensors) or an arsearch checkpoint, "
                              f"got {type(obj).__name__}")
    return obj


def _adapt_prefix(state: dict[str, torch.Tensor], expected: set[str]) -> dict[str, torch.Tensor]:
    """Bridge the input-normalisation wrapper of ARS V2 jobs (keys ``norm.*`` / ``net.*``) in either direction."""
    keys = set(state)
    if keys and not keys & expected:
        stripped = {k[4:]: v for k, v in state.items() if k.startswith("net.")}
        if stripped and set(stripped) & expected:
            return stripped
        prefixed = {f"net.{k}": v for k, v in state.items()}
        if set(prefixed) & expected:
            return prefixed
    return state


def load_into(model: torch.nn.Module | list[torch.nn.Module], path: str | Path, map_location="cpu") -> dict[str, torch.Tensor]:
    """Load the weights of checkpoint `path` into `model`, refusing any mismatch.

    Every key the model expects must be present with its exact shape, and no key may be left
    over; the error lists the missing keys, the unexpected keys and the shape mismatches. The
    model is left untouched unless everything fits. Given several models (e.g. a V2 job's
    normalising wrapper and the user's model inside it), the first whose keys the checkpoint
    matches exactly is loaded, else the last one is checked (and its mismatches reported).
    """
    state = extract_state_dict(load(path, map_location), path)
    if isinstance(model, list):
        exact = [m for m in model if set(m.state_dict()) == set(state)]
        model = exact[0] if exact else model[-1]
    check_fit(model, state, path)
    with torch.no_grad():
        model.load_state_dict(_adapt_prefix(state, set(model.state_dict())), strict=True)
    return state


def check_fit(model: torch.nn.Module, state: dict[str, torch.Tensor], path: str | Path = "checkpoint") -> None:
    target = model.state_dict()
    state = _adapt_prefix(state, set(target))
    missing = [k for k in target if k not in state]
    unexpected = [k for k in state if k not in target]
    shapes = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
              for k, v in target.items() if k in state and state[k].shape != v.shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys ({len(missing)}): {', '.join(missing)}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {', '.join(unexpected)}")
        if shapes:
            parts.append(f"shape mismatches ({len(shapes)}): {'; '.join(shapes)}")
        raise CheckpointError(f"checkpoint {path} does not fit the model: " + "; ".join(parts))
