"""Job configuration: TOML files validated into typed dataclasses before any work starts.

Every key has a type, a default and (where it matters) allowed values or a range; an unknown
key, a wrong type or a bad value raises `ConfigError` naming the key's full path and what is
allowed. The CLI turns that into exit code 2. See docs/CONFIG.md for every key.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib


class ConfigError(ValueError):
    """A malformed config file, an unknown key or a bad value (a usage error: exit code 2)."""


def choice(default, *values):
    return field(default=default, metadata={"choices": values})


def number(default, low=None, high=None, *, low_open=False):
    return field(default=default, metadata={"range": (low, high, low_open)})


def items(default, *values):
    """A list whose items must each be one of `values`."""
    return field(default_factory=lambda: list(default), metadata={"item_choices": values})


def listof(default):
    return field(default_factory=lambda: list(default))


@dataclass
class TaskConfig:
    kind: str = choice("supervised", "supervised", "rl")
    # supervised
    dataset: str = "digits"          # digits | breast_cancer | regression | "package.module:function"
    model: str = "mlp"               # mlp | cnn | "package.module:function"
    hidden: list[int] = listof([64])
    activation: str = choice("relu", "relu", "tanh")
    channels: list[int] = listof([8, 16])
    batch_size: int = number(256, 1)
    test_fraction: float = number(0.25, 0.0, 1.0, low_open=True)
    # rl
    env: str = "Swimmer-v5"
    policy: str = choice("linear", "linear", "mlp")
    horizon: int = number(1000, 1)
    shift: float = 0.0
    eval_episodes: int = number(5, 1)
    # where the model runs: "cpu", "cuda", "cuda:1", or "auto" (cuda when available)
    device: str = "cpu"


@dataclass
class ARSSection:
    version: str = choice("v1t", "v1", "v1t", "v2", "v2t")
    directions: int = number(32, 1)
    top: int = number(8, 1)
    step_size: float = number(0.02, 0.0, low_open=True)
    noise: float = number(0.03, 0.0, low_open=True)
    iterations: int = number(300, 0)
    backend: str = choice("vectorized", "sequential", "vectorized", "hogwild", "distributed")
    noise_source: str = choice("seed", "seed", "table")
    table_size: int = number(10_000_000, 1)
    noise_rank: int = number(0, 0)       # r > 0: low-rank directions A·Bᵀ/√r per weight matrix (0 = full rank)
    vector_chunk: int = number(0, 0)     # vectorized: candidates per batched call (0 = automatic, in cache)
    devices: list[str] = listof([])     # vectorized: spread candidates over these devices
    workers: int = number(2, 1)          # hogwild: worker processes
    nproc: int = number(1, 1)            # distributed: ranks (`arsearch train --nproc` overrides)
    # hogwild / distributed: seconds without progress from a worker or rank before the job is
    # stopped as hung (a worker that dies is detected at once, whatever this is)
    timeout: float = number(300.0, 0.0, low_open=True)


@dataclass
class CullingConfig:
    fraction: float = number(0.5, 0.0, 1.0)
    mutation: float = number(0.0, 0.0)


@dataclass
class AnnealingConfig:
    schedule: str = choice("exponential", "exponential", "linear", "logarithmic", "adaptive")
    t0: float = number(1.0, 0.0, low_open=True)
    decay: float = number(0.95, 0.0, 1.0, low_open=True)
    t_min: float = number(1e-4, 0.0)
    target_acceptance: float = number(0.3, 0.0, 1.0, low_open=True)
    difficulty: float = number(0.0, 0.0)


@dataclass
class TabuConfig:
    repulsion: float = number(0.1, 0.0)
    memory: int = number(5, 0)
    radius: float = number(0.05, 0.0)


@dataclass
class PSOConfig:
    inertia: float = number(0.7298, 0.0)
    cognitive: float = number(1.49618, 0.0)
    social: float = number(1.49618, 0.0)


@dataclass
class PopulationConfig:
    size: int = number(8, 1)
    epoch: int = number(10, 1)
    strategies: list[str] = items([], "culling", "annealing", "tabu", "pso")
    culling: CullingConfig = field(default_factory=CullingConfig)
    annealing: AnnealingConfig = field(default_factory=AnnealingConfig)
    tabu: TabuConfig = field(default_factory=TabuConfig)
    pso: PSOConfig = field(default_factory=PSOConfig)


@dataclass
class SamplingConfig:
    alpha: float = number(0.6, 0.0)
    beta: float = number(0.4, 0.0, 1.0)


@dataclass
class EvalConfig:
    every: int = number(10, 1)


@dataclass
class TrackingConfig:
    enabled: bool = True
    uri: str = "sqlite:///mlflow.db"
    experiment: str = "arsearch"
    run_name: str = ""


@dataclass
class CheckpointConfig:
    dir: str = "runs/job"
    every: int = number(50, 1)


@dataclass
class ModelConfig:
    factory: str = ""        # built-in model name or "package.module:function"
    checkpoint: str = ""     # a state_dict file or an arsearch checkpoint
    # when `checkpoint` does not exist yet, post-training first pretrains the model with Adam
    # for this many epochs and saves it there (0: a missing checkpoint is an error)
    pretrain_epochs: int = number(0, 0)
    pretrain_lr: float = number(0.01, 0.0, low_open=True)


@dataclass
class CompressConfig:
    prune: float = number(0.0, 0.0, 1.0)
    prune_scope: str = choice("global", "global", "layer")
    prune_schedule: str = choice("start", "start", "gradual")
    prune_iterations: int = number(0, 0)   # gradual: iterations over which pruning reaches `prune`
    prune_every: int = number(0, 0)        # gradual: iterations between pruning steps (0: prune_iterations // 10)
    share_bits: int = number(0, 0, 16)
    search: str | list[str] = "all"


@dataclass
class JobConfig:
    seed: int = 0
    task: TaskConfig = field(default_factory=TaskConfig)
    ars: ARSSection = field(default_factory=ARSSection)
    population: PopulationConfig | None = None
    sampling: SamplingConfig | None = None
    eval: EvalConfig = field(default_factory=EvalConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    model: ModelConfig | None = None
    compress: CompressConfig | None = None

    def check(self) -> None:
        """Constraints between keys."""
        if self.ars.backend == "hogwild" and self.population is not None:
            raise ConfigError("ars.backend = 'hogwild' runs one asynchronous learner and cannot be combined "
                              "with [population]; use 'vectorized' or 'distributed'")
        if self.ars.top > self.ars.directions:
            raise ConfigError(f"ars.top = {self.ars.top} must be <= ars.directions = {self.ars.directions}")
        if self.sampling is not None and self.task.kind != "supervised":
            raise ConfigError("[sampling] (prioritised mini-batches) needs task.kind = \"supervised\"")


# ---------------------------------------------------------------------------------------------
# Generic validation


def _type_name(tp) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp) if a is not type(None))
    if origin is list:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    if dataclasses.is_dataclass(tp):
        return "table"
    return {int: "integer", float: "number", str: "string", bool: "boolean"}.get(tp, str(tp))


def _convert(value: Any, tp, path: str, meta) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(options) == 1:  # Optional[X]: X's own, more precise, error
            return _convert(value, options[0], path, meta)
        for arg in options:
            try:
                return _convert(value, arg, path, meta)
            except ConfigError:
                pass
        raise ConfigError(f"{path}: expected {_type_name(tp)}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a table, got {value!r}")
        return from_dict(tp, value, path)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{path}: expected {_type_name(tp)}, got {value!r}")
        (item_tp,) = typing.get_args(tp)
        out = [_convert(v, item_tp, f"{path}[{i}]", {}) for i, v in enumerate(value)]
        allowed = meta.get("item_choices")
        for i, v in enumerate(out):
            if allowed and v not in allowed:
                raise ConfigError(f"{path}[{i}] = {v!r} is not allowed; allowed: {', '.join(map(repr, allowed))}")
        return out
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
    elif tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        value = float(value)
        if value != value or value in (float("inf"), float("-inf")):
            raise ConfigError(f"{path}: expected a finite number, got {value!r}")
    elif tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {value!r}")
    allowed = meta.get("choices")
    if allowed and value not in allowed:
        raise ConfigError(f"{path} = {value!r} is not allowed; allowed: {', '.join(map(repr, allowed))}")
    if "range" in meta:
        low, high, low_open = meta["range"]
        if low is not None and (value <= low if low_open else value < low):
            raise ConfigError(f"{path} = {value!r} is out of range; allowed: {'>' if low_open else '>='} {low}"
                              + (f" and <= {high}" if high is not None else ""))
        if high is not None and value > high:
            raise ConfigError(f"{path} = {value!r} is out of range; allowed: <= {high}")
    return value


def from_dict(cls, data: dict, path: str = ""):
    """Build dataclass `cls` from a dict, refusing unknown keys and bad values."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        full = f"{path}.{key}" if path else key
        if key not in fields:
            raise ConfigError(f"unknown key {full!r}; allowed in {path or 'the top level'}: {', '.join(fields)}")
        kwargs[key] = _convert(value, hints[key], full, fields[key].metadata)
    return cls(**kwargs)


def to_dict(obj) -> dict:
    """A dataclass as a plain dict, with unset optional sections dropped (TOML has no null)."""
    out = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if value is None:
            continue
        out[f.name] = to_dict(value) if dataclasses.is_dataclass(value) else value
    return out


def to_toml(config: JobConfig) -> str:
    import tomli_w

    return tomli_w.dumps(to_dict(config))


def parse_value(text: str) -> Any:
    """A --set value: a TOML literal (1, 0.5, true, "x", [1, 2]) or else a bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(data: dict, overrides: list[str] | dict[str, Any]) -> dict:
    """Set dotted keys (``ars.step_size=0.01``) in a raw config dict."""
    pairs = overrides.items() if isinstance(overrides, dict) else []
    if not isinstance(overrides, dict):
        parsed = []
        for item in overrides:
            if "=" not in item:
                raise ConfigError(f"--set expects key=value, got {item!r}")
            key, text = item.split("=", 1)
            parsed.append((key.strip(), parse_value(text.strip())))
        pairs = parsed
    for key, value in pairs:
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"cannot set {key!r}: {part!r} is not a table")
            node = child
        node[parts[-1]] = value
    return data


def load_toml(path: str | Path) -> dict:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"cannot read config {path}: {e.strerror}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path} is not valid TOML: {e}") from None


def load_job(path: str | Path | None = None, overrides=None, data: dict | None = None) -> JobConfig:
    """Read, override and validate a job config. Raises ConfigError."""
    raw = copy.deepcopy(data or {}) if path is None else load_toml(path)   # overrides must not edit the caller's dict
    if overrides:
        raw = apply_overrides(raw, overrides)
    config = from_dict(JobConfig, raw)
    config.check()
    return config
