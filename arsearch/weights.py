"""Model weights on disk: safetensors files, sharded safetensors, and torch state_dict files.

Reading a ``.safetensors`` file involves no pickle at all (the format is a JSON header and raw
tensor bytes), which is why it is the default for post-training's exports. A sharded checkpoint
(``model.safetensors.index.json``, as Hugging Face writes large models) is read shard by shard
through its ``weight_map``. Every failure — a corrupt or truncated file, an index that is not
JSON or names shards that are missing, a tensor that a shard does not hold — is a
`CheckpointError` (exit code 2 on the command line) naming the file and the reason.

Writing streams one tensor at a time (`save_safetensors`): ``safetensors.torch.save_file`` first
turns every tensor into a ``bytes`` object, which would double the memory of a 1 GB model at
export time. The files written are read back by ``safetensors`` itself (tested).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from . import checkpoint as ckpt
from .checkpoint import CheckpointError

INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"
COMPRESSED_FORMAT = "arsearch-compressed"

# torch dtype -> safetensors dtype tag (the format's own names)
_DTYPES = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
           torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
           torch.bool: "BOOL"}


def is_safetensors(path: str | Path) -> bool:
    """Whether `path` names safetensors weights: a file, an index, or a directory holding either."""
    path = Path(path)
    if path.is_dir():
        return (path / INDEX_NAME).is_file() or (path / SINGLE_NAME).is_file()
    return path.name.endswith(".safetensors") or path.name.endswith(".safetensors.index.json")


def _not_a_file(path: Path, what: str) -> str:
    """Why `path` cannot be read as weights: missing, or there but not a regular file (a FIFO, which would
    block the read forever, a device such as /dev/zero, which never ends)."""
    if not path.exists():
        return f"{what} {path} does not exist"
    return f"{what} {path} is not a regular file (a FIFO, device or socket); give a weights file"


def _safe_open(path: Path, what: str = "checkpoint"):
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        raise CheckpointError(_not_a_file(path, what))
    try:
        return safe_open(str(path), framework="pt")
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{what} {path} is truncated or corrupt (not a readable safetensors file: "
                              f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'no detail'})") from None


def _read_file(path: Path, names=None, what: str = "checkpoint") -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import SafetensorError

    f = _safe_open(path, what)
    keys = list(f.keys())
    wanted = keys if names is None else list(names)
    missing = [k for k in wanted if k not in keys]
    if missing:
        raise CheckpointError(f"{what} {path} lacks tensors its index assigns to it "
                              f"({len(missing)}): {', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}")
    try:
        tensors = {k: f.get_tensor(k) for k in wanted}
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{what} {path} is truncated or corrupt ({type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else 'no detail'})") from None
    return tensors, dict(f.metadata() or {})


def read_index(path: Path) -> dict[str, list[str]]:
    """shard file -> tensor names, from a ``*.safetensors.index.json``; every shard must exist."""
    try:
        index = json.loads(path.read_text())
    except OSError as e:
        raise CheckpointError(f"shard index {path} cannot be read ({e.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"shard index {path} is not valid JSON ({e})") from None
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not weight_map or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in weight_map.items()):
        raise CheckpointError(f"shard index {path} has no 'weight_map' of tensor names to shard files")
    shards: dict[str, list[str]] = {}
    for name, shard in weight_map.items():
        shards.setdefault(shard, []).append(name)
    # only files of the model's own directory: a crafted index naming ../../x or /abs/x (or a link
    # that resolves outside) must not make us read a file the user never pointed at
    root = path.parent.resolve()
    outside = [s for s in shards if Path(s).is_absolute() or not (root / s).resolve().is_relative_to(root)]
    if outside:
        raise CheckpointError(f"shard index {path} names shard files outside its directory {path.parent}: "
                              f"{', '.join(sorted(outside)[:5])}; only files inside the model directory are read")
    missing = [s for s in shards if not (path.parent / s).is_file()]
    if missing:
        raise CheckpointError(f"shard index {path} names shard files that do not exist in {path.parent}: "
                              f"{', '.join(sorted(missing))}")
    return shards


def read_safetensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) of a safetensors file, a shard index, or a directory holding one."""
    path = Path(path)
    if path.is_dir():
        path = path / INDEX_NAME if (path / INDEX_NAME).is_file() else path / SINGLE_NAME
    if path.name.endswith(".index.json"):
        if not path.is_file():
            raise CheckpointError(f"shard index {path} does not exist")
        tensors, metadata = {}, {}
        for shard, names in read_index(path).items():
            part, meta = _read_file(path.parent / shard, names, what=f"shard (listed in {path.name})")
            tensors.update(part)
            metadata.update(meta)
        return tensors, metadata
    return _read_file(path)


def read_state_dict(path: str | Path, map_location="cpu") -> dict[str, torch.Tensor]:
    """Model weights from safetensors (by name) or from a torch checkpoint (``weights_only=True``)."""
    if is_safetensors(path):
        tensors, metadata = read_safetensors(path)
        if metadata.get("format") == COMPRESSED_FORMAT:
            from .compress import decompress

            tensors = decompress(unflatten_compressed(tensors, metadata))
        if not tensors:
            raise CheckpointError(f"checkpoint {path} holds no tensors")
        return {k: v.to(map_location) for k, v in tensors.items()}
    return ckpt.extract_state_dict(ckpt.load(path, map_location), path)


def load_into(model: torch.nn.Module | list[torch.nn.Module], path: str | Path, map_location="cpu") -> dict[str, torch.Tensor]:
    """`checkpoint.load_into` for any weights file this module reads (safetensors or torch)."""
    if not is_safetensors(path):
        return ckpt.load_into(model, path, map_location)
    state = read_state_dict(path, map_location)
    if isinstance(model, list):
        exact = [m for m in model if set(m.state_dict()) == set(state)]
        model = exact[0] if exact else model[-1]
    ckpt.check_fit(model, state, path)
    with torch.no_grad():
        model.load_state_dict(ckpt._adapt_prefix(state, set(model.state_dict())), strict=True)
    return state


def base_model(task) -> torch.nn.Module:
    """The user's own model inside a task (without the input-normalisation wrapper of ARS V2)."""
    from .tasks.supervised import Normalized  # the one wrapper a task puts around the user's model

    model = task.model
    return model.net if isinstance(model, Normalized) else model


def load_weights(task, path: str | Path) -> None:
    """Weights into a task's model: a checkpoint of the whole task model (a V2 job's, with its
    normaliser statistics) or of the user's model inside it (`[model] checkpoint`)."""
    load_into([task.model, base_model(task)], path, map_location=getattr(task, "device", "cpu"))


# ---------------------------------------------------------------------------------------------
# Writing


def save_safetensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> Path:
    """Write a safetensors file atomically, one tensor at a time (never a second copy of the model).

    Tensors that share storage (tied weights) are each written in full, as the format requires.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header: dict[str, dict] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    offset = 0
    items = sorted(tensors.items())
    for name, t in items:
        if t.dtype not in _DTYPES:
            raise ValueError(f"cannot write tensor {name!r} of dtype {t.dtype} to safetensors")
        n = t.numel() * t.element_size()
        header[name] = {"dtype": _DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + n]}
        offset += n
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)              # the format pads the header to 8 bytes
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(len(head).to_bytes(8, "little"))
            f.write(head)
            for _, t in items:
                t = t.detach()
                if t.device.type != "cpu":
                    t = t.cpu()
                t = t.contiguous()                   # a copy only for a non-contiguous tensor, one at a time
                if t.numel():
                    f.write(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
        os.replace(tmp, path)
    except BaseException as e:        # a full disk, a signal: no temporary file is left, the target is untouched
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise ckpt.CheckpointWriteError(f"cannot write {path}: {e.strerror or e}") from None
        raise
    return path


def flatten_compressed(form: dict) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """An arsearch compressed form as flat safetensors tensors plus metadata that names its format."""
    tensors = {f"{group}/{name}": t for group in ("masks", "codebooks", "indices", "values", "dense")
               for name, t in form[group].items()}
    metadata = {"format": COMPRESSED_FORMAT, "shapes": json.dumps(form["shapes"]), "dtypes": json.dumps(form["dtypes"]),
                "pruned_fraction": repr(float(form["pruned_fraction"])), "share_bits": str(int(form["share_bits"]))}
    return tensors, metadata


def unflatten_compressed(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> dict:
    try:
        form: dict = {"format": COMPRESSED_FORMAT, "shapes": json.loads(metadata["shapes"]),
                      "dtypes": json.loads(metadata["dtypes"]), "pruned_fraction": float(metadata["pruned_fraction"]),
                      "share_bits": int(metadata["share_bits"])}
    except (KeyError, ValueError) as e:
        raise CheckpointError(f"compressed safetensors file lacks or mangles its metadata ({e})") from None
    # the metadata's shapes are what decompressing allocates: check them before trusting them
    total = 0
    for name, shape in form["shapes"].items() if isinstance(form["shapes"], dict) else ():
        dtype = getattr(torch, str(form["dtypes"].get(name, "")).removeprefix("torch."), None) \
            if isinstance(form["dtypes"], dict) else None
        if not (isinstance(shape, list) and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0
                                                  for n in shape)) or not isinstance(dtype, torch.dtype):
            raise CheckpointError(f"compressed safetensors file: tensor {name!r} has a malformed shape {shape!r} "
                                  f"or dtype {form['dtypes'].get(name)!r} in its metadata")
        total += torch.Size(shape).numel() * torch.empty((), dtype=dtype).element_size()
    if not isinstance(form["shapes"], dict) or not isinstance(form["dtypes"], dict):
        raise CheckpointError("compressed safetensors file: its metadata's shapes and dtypes are not tables")
    ckpt.check_fits(total, "compressed safetensors file (its metadata's shapes, decompressed)")
    for group in ("masks", "codebooks", "indices", "values", "dense"):
        form[group] = {k.split("/", 1)[1]: v for k, v in tensors.items() if k.startswith(group + "/")}
    return form


def export(path_stem: str | Path, payload: dict, fmt: str = "safetensors") -> Path:
    """Write `payload` (a state_dict or a compressed form) as ``<stem>.safetensors`` or ``<stem>.pt``."""
    stem = Path(path_stem)
    if fmt == "pt":
        return ckpt.save(stem.with_suffix(".pt"), payload)
    if payload.get("format") == COMPRESSED_FORMAT:
        tensors, metadata = flatten_compressed(payload)
    else:
        tensors, metadata = payload, {"format": "pt"}   # the tag transformers writes for torch weights
    return save_safetensors(stem.with_suffix(".safetensors"), tensors, metadata)
