"""Checkpoints: plain dicts of tensors and numbers, written atomically, read with weights_only=True.

A checkpoint never carries code: `torch.load(..., weights_only=True)` refuses any pickle that
would import or call something, so a malicious file is rejected before anything runs.
"""

from __future__ import annotations

import errno
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


class CheckpointWriteError(CheckpointError):
    """A checkpoint could not be written (full disk, read-only file system): a runtime failure, exit 1."""


def save(path: str | Path, payload: dict) -> Path:
    """Write atomically: a crash mid-write leaves the previous file intact, a failed write leaves no temporary."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:
        tmp.unlink(missing_ok=True)
        raise CheckpointWriteError(f"cannot write checkpoint {path}: {_write_failure(e, path.parent)}") from None
    return path


def _write_failure(e: Exception, directory: Path) -> str:
    """What went wrong, in words: torch.save reports a full disk as a bare RuntimeError, so ask the file system."""
    code = getattr(e, "errno", None)
    if code == errno.ENOSPC or (code is None and _free_bytes(directory) < 1 << 20):
        return f"no space left on device (file system of {directory})"
    if code == errno.EROFS:
        return f"read-only file system ({directory})"
    if code in (errno.EACCES, errno.EPERM):
        return f"permission denied ({directory})"
    return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'no detail'}"


def _free_bytes(directory: Path) -> int:
    try:
        st = os.statvfs(directory)
    except OSError:
        return 1 << 62
    return st.f_bavail * st.f_frsize


def check_writable(directory: str | Path, what: str) -> None:
    """Write (then remove) a probe file in `directory`, or in its nearest existing parent when it
    does not exist yet (nothing is left behind); CheckpointError naming the path if that fails.

    A real write, not `os.access`: as root, permission bits say yes where a read-only mount says no.
    """
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise CheckpointError(f"{what} {directory} is an existing file, not a directory; choose another path")
    where = directory.absolute()
    while not where.exists():
        where = where.parent
    if not where.is_dir():
        raise CheckpointError(f"{what} {directory} cannot be created: {where} is a file")
    longest = max((len(os.fsencode(part)) for part in directory.parts), default=0)
    try:
        limit = os.pathconf(where, "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255
    if longest > limit:
        raise CheckpointError(f"{what} {directory} has a name of {longest} bytes, longer than the {limit} its file "
                              f"system allows for one name; choose a shorter one")
    probe = where / f".arsearch-write-probe-{os.getpid()}"
    try:
        with open(probe, "wb") as f:
            f.write(b"0" * 4096)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise CheckpointError(f"{what} {directory} is not writable: {_write_failure(e, where)}") from None
    finally:
        try:
            probe.unlink(missing_ok=True)
        except OSError:
            pass


def existing(directory: str | Path) -> list[Path]:
    """The training checkpoints (iter_*.pt, final.pt) already in `directory`."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if _NAME.match(p.name) or p.name == "final.pt")


def check_dir(directory: str | Path, resume: bool, overwrite: bool, keep: str | Path | None = None) -> None:
    """Refuse, before anything is written: a file, an unwritable directory, and another run's
    checkpoints unless resuming (--resume) or starting again (--overwrite); and an --overwrite that
    would delete `keep` (the job's own input checkpoint, when it sits among the old ones)."""
    check_writable(directory, "checkpoint.dir")
    if not resume and not overwrite:
        _refuse_checkpoints(directory)
    if overwrite and not resume and keep:
        doomed = {p.resolve() for p in [*existing(directory), Path(directory) / "metrics.json"]}
        if Path(keep).resolve() in doomed:
            raise CheckpointError(f"--overwrite would delete {keep}, the checkpoint this job starts from "
                                  f"([model] checkpoint), which sits in checkpoint.dir {directory}; move it out "
                                  f"or give the job another checkpoint.dir")


def _refuse_checkpoints(directory: str | Path) -> None:
    found = existing(directory)
    if found:
        names = ", ".join(p.name for p in found[-3:])
        raise CheckpointError(f"checkpoint.dir {directory} already holds checkpoints ({names}); pass --resume "
                              f"to continue that run, or --overwrite to delete them and start again")


class ClaimedDir:
    """`directory` locked for this run: a second `arsearch train` or `posttrain` into it is refused
    instead of interleaving its checkpoints. The lock (`filelock`, an flock) is released when the process ends,
    even by kill -9."""

    def __init__(self, directory: str | Path, overwrite: bool = False, resume: bool = False):
        from filelock import FileLock, Timeout

        self.directory = Path(directory)
        self.created = [d for d in (self.directory, *self.directory.parents) if not d.exists()]   # innermost first
        self.directory.mkdir(parents=True, exist_ok=True)
        self.lock = FileLock(self.directory / ".arsearch.lock")
        try:
            self.lock.acquire(timeout=0)
        except Timeout:
            raise CheckpointError(f"checkpoint.dir {directory} is in use by another arsearch run (it holds "
                                  f"{self.lock.lock_file}); give this run another checkpoint.dir") from None
        if overwrite:
            for p in [*existing(self.directory), self.directory / "metrics.json"]:
                p.unlink(missing_ok=True)
        elif not resume:
            # checked again under the lock: a run started at the same moment may have taken the
            # directory, trained and let it go between `check_dir` and here
            try:
                _refuse_checkpoints(self.directory)
            except CheckpointError:
                self.lock.release()
                raise

    def release(self, remove: bool = False) -> None:
        """Unlock; with `remove`, also take away the directories this run created, if it left them empty."""
        self.lock.release()
        if remove and self.created:
            Path(self.lock.lock_file).unlink(missing_ok=True)
            for d in self.created:
                try:
                    d.rmdir()
                except OSError:
                    break


def peek(path: str | Path, map_location="cpu", data: bytes | None = None) -> dict:
    """A training checkpoint's contents (CheckpointError if it is not one)."""
    state = load(path, map_location, data=data)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an arsearch training checkpoint")
    return state


# keys that must match between a checkpoint and the job resuming it: with any of them changed the
# saved parameters, noise seeds or optimiser state mean something else (iterations, eval, tracking may
# change). These are the core ones; each task kind adds its own (`Task.resume_keys`: the dataset, the env...).
SAME_JOB_KEYS = ("seed", "task.kind", "ars.version", "ars.directions", "ars.noise_source", "model.factory",
                 "population.size")


def same_job_keys(config) -> tuple[str, ...]:
    """`SAME_JOB_KEYS` and the ``[task]`` keys the job's task kind says define its parameters."""
    from .config import task_of

    return (*SAME_JOB_KEYS, *(f"task.{k}" for k in task_of(config).resume_keys))


# keys a resumed job may change freely: how long it runs, how it is evaluated, tracked and saved, and on
# how many ranks it runs (`ars.nproc`: every rank count computes the same update). Any
# other change alters the training from the checkpoint on (a step size, a batch size, a split, a
# compression), so --resume names it and refuses it unless --force.
RESUME_MAY_CHANGE = ("ars.iterations", "stop.", "eval.", "tracking.", "checkpoint.", "task.eval_episodes",
                     "task.eval_batch", "task.device", "ars.timeout", "ars.nproc")


def _flat(data: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in data.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def check_same_job(saved_toml: str, config, path: str | Path = "checkpoint", force: bool = False) -> list[str]:
    """Refuse to resume `config` from a checkpoint written by a job that differs in seed, directions or model
    (always), or in any key that changes the training from here on (unless `force`). Returns the changed
    keys that `force` let through, each as "key = saved in the checkpoint, new now"."""
    import tomllib

    from .config import to_dict

    if not saved_toml:
        return []
    from .config import ConfigError, load_job

    try:
        # through load_job, so keys a resolved config leaves out (they do not apply: `applicable`) compare
        # as their defaults, not as missing
        saved = to_dict(load_job(data=tomllib.loads(saved_toml)))
    except (tomllib.TOMLDecodeError, ConfigError):
        return []
    now = to_dict(config)

    def get(data, key):
        for part in key.split("."):
            if not isinstance(data, dict) or part not in data:
                return None
            data = data[part]
        return data

    diffs = [f"{k} = {get(saved, k)!r} in the checkpoint, {get(now, k)!r} now" for k in same_job_keys(config)
             if get(saved, k) != get(now, k)]
    if diffs:
        raise CheckpointError(f"--resume: {path} was written by a different job: " + "; ".join(diffs)
                              + ". Resume with the checkpoint's values, or start a new run in another checkpoint.dir")
    hard = set(same_job_keys(config))
    old_flat, new_flat = _flat(saved), _flat(now)
    changed = [f"{k} = {old_flat.get(k)!r} in the checkpoint, {new_flat.get(k)!r} now"
               for k in sorted(set(old_flat) | set(new_flat))
               if old_flat.get(k) != new_flat.get(k) and k not in hard
               and not any(k == m or (m.endswith(".") and k.startswith(m)) for m in RESUME_MAY_CHANGE)]
    if changed and not force:
        raise CheckpointError(f"--resume: {path} was written with other values of keys that change the training "
                              f"from here on: " + "; ".join(changed) + ". Resume with the checkpoint's values, or "
                              "pass --force to resume with the new ones")
    return changed


def available_memory() -> int:
    """Bytes this process may still allocate: the machine's free memory, or less where a limit says so:
    the cgroup's limit less its use (a container), or the address-space limit (`ulimit -v`) less this
    process's virtual size."""
    try:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 62
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            used = int(Path("/sys/fs/cgroup/memory.current").read_text())
            free = min(free, int(limit) - used)
    except (OSError, ValueError):
        pass
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            status = Path("/proc/self/status").read_text()
            size = next(int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmSize:"))
            free = min(free, soft - size)
    except (ImportError, OSError, ValueError, StopIteration):
        pass
    return max(free, 0)


def human_bytes(n: float) -> str:
    """Bytes in binary units, three significant digits: 7.28 TiB (never "1.02e+03 KiB": from 1000 of a
    unit on, the next unit up)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if float(f"{n:.3g}") < 1000 or unit == "TiB":
            return f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} TiB"


def check_fits(nbytes: int, what: str) -> None:
    """Refuse, before allocating, what would not fit in memory: a file's claims are checked against the
    memory free now, so that a crafted header cannot make us try to allocate terabytes."""
    free = available_memory()
    if nbytes > free:
        raise CheckpointError(f"{what} would need {human_bytes(nbytes)} of memory, more than the {human_bytes(free)} free "
                              f"here; refused before allocating it")


def load(path: str | Path, map_location="cpu", data: bytes | None = None):
    """`torch.load(weights_only=True)` with every failure turned into a clear CheckpointError. With `data`,
    the file's bytes as another process read them (a distributed rank on another machine), `path` names it."""
    import io

    path = Path(path)
    if data is None and not path.is_file():
        what = "does not exist" if not path.exists() else "is not a regular file (a FIFO, device or socket)"
        raise CheckpointError(f"checkpoint {path} {what}")
    source = path if data is None else io.BytesIO(data)
    if zipfile.is_zipfile(source):        # torch's format: what its entries expand to is what loading allocates
        try:
            with zipfile.ZipFile(source) as z:
                expanded = sum(info.file_size for info in z.infolist())
        except (zipfile.BadZipFile, OSError, ValueError) as e:
            raise CheckpointError(f"checkpoint {path} is truncated or corrupt ({type(e).__name__}: {e})") from None
        check_fits(expanded, f"checkpoint {path} (its entries expand to {human_bytes(expanded)})")
    try:
        if data is not None:
            source.seek(0)
        return torch.load(source, map_location=map_location, weights_only=True)
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


def resumable(directory: str | Path) -> Path | None:
    """What `--resume` continues from: the latest iteration checkpoint, else final.pt (a job that ended
    with no periodic checkpoint, or a posttrain stopped in its export: resuming only finishes and exports)."""
    path = latest(directory)
    final = Path(directory) / "final.pt"
    return path if path is not None or not final.is_file() else final


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
