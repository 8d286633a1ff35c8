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

from .backends import REGISTRY as BACKENDS
from .fields import choice, items, listof, number
from .population import REGISTRY as STRATEGIES
from .population import InitConfig, strategy_class


class ConfigError(ValueError):
    """A malformed config file, an unknown key or a bad value (a usage error: exit code 2)."""


@dataclass
class TaskConfig:
    kind: str = choice("supervised", "supervised", "rl", "generate")
    # supervised
    dataset: str = "digits"          # digits | breast_cancer | regression | "package.module:function"
    model: str = "mlp"               # mlp | cnn | "package.module:function"
    hidden: list[int] = listof([64])
    activation: str = choice("relu", "relu", "tanh")
    channels: list[int] = listof([8, 16])
    batch_size: int = number(256, 1)
    test_fraction: float = number(0.25, 0.0, 1.0, low_open=True)   # < 1: JobConfig.check
    test_dataset: str = ""           # "package.module:function" returning the test data (x, y) or a Dataset
    # rl
    env: str = "Swimmer-v5"
    policy: str = choice("linear", "linear", "mlp")
    horizon: int = number(1000, 1)
    shift: float = 0.0
    eval_episodes: int = number(5, 1)
    # generate: a causal LM's greedy outputs scored by a reward (arsearch.tasks.generate)
    prompts: str = "arithmetic"      # arithmetic | countdown | a .jsonl file | "package.module:function"
    eval_prompts: str = ""           # held-out prompts (.jsonl); empty: `test_fraction` of `prompts`
    n_prompts: int = number(2000, 1)  # built-in generators: how many prompts to make
    reward: str = "arsearch.tasks.generate:exact_match"   # "package.module:function"
    max_new_tokens: int = number(8, 1)
    eval_batch: int = number(256, 1)  # generate: prompts per batched call when evaluating
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
    backend: str = choice("vectorized", *BACKENDS)        # the backend registry's names
    noise_source: str = choice("seed", "seed", "table")
    table_size: int = number(10_000_000, 1)
    noise_rank: int = number(0, 0)       # r > 0: low-rank directions A·Bᵀ/√r per weight matrix (0 = full rank)
    # + every registered backend's own keys (vector_chunk, devices, workers, nproc, timeout): below


def _copy_field(f: dataclasses.Field) -> dataclasses.Field:
    if f.default_factory is not dataclasses.MISSING:
        return field(default_factory=f.default_factory, metadata=f.metadata)
    return field(default=f.default, metadata=f.metadata)


def _with_backend_keys(core: type) -> type:
    """``[ars]``: the core keys, then the keys of each registered backend's ``Config`` (the dataclass
    beside its class), flat as before (``ars.workers``); a key two backends share (``timeout``) is
    declared alike by both and appears once."""
    from .backends import backend_class

    spec = {f.name: (f.name, typing.get_type_hints(core)[f.name], _copy_field(f)) for f in dataclasses.fields(core)}
    for name in BACKENDS:
        try:
            cfg = backend_class(name).Config
        except ValueError:          # a backend that cannot be imported here has no keys to offer
            continue
        hints = typing.get_type_hints(cfg)
        for f in dataclasses.fields(cfg):
            spec.setdefault(f.name, (f.name, hints[f.name], _copy_field(f)))
    cls = dataclasses.make_dataclass(core.__name__, list(spec.values()))
    cls.__module__, cls.__doc__ = __name__, core.__doc__
    return cls


ARSSection = _with_backend_keys(ARSSection)


# [population]: its own keys, then one table per registered strategy, each the ``Config``
# dataclass that lives beside the strategy's class (adding a strategy adds its table here).
PopulationConfig = dataclasses.make_dataclass("PopulationConfig", [
    ("size", int, number(8, 1)),
    ("epoch", int, number(10, 1)),
    ("strategies", list[str], items([], *STRATEGIES)),
    ("fitness", str, choice("ema", "ema", "last", "eval")),
    ("fitness_ema", float, number(0.7, 0.0, 1.0)),
    ("init", InitConfig, field(default_factory=InitConfig)),
    *[(name, strategy_class(name).Config, field(default_factory=strategy_class(name).Config)) for name in STRATEGIES],
])
PopulationConfig.__module__ = __name__


@dataclass
class SamplingConfig:
    alpha: float = number(0.6, 0.0)
    beta: float = number(0.4, 0.0, 1.0)


@dataclass
class EvalConfig:
    every: int = number(10, 1)
    # > 0: evaluate each time this many more training episodes have been spent (replaces `every`),
    # so that jobs of different ars.directions or population sizes are checked at equal spend
    every_episodes: int = number(0, 0)


# what a job can spend, as named in [stop] and in the final metrics (count/<name>)
BUDGETS = ("episodes", "env_steps", "forward_examples", "seconds")
# the metric families a stop target may name: those known at an evaluation
TARGET_FAMILIES = ("eval", "train")


@dataclass
class TargetConfig:
    metric: str = ""
    value: float | None = None


@dataclass
class StopConfig:
    """Budgets (0 = none) and a target; the run ends at the first one met. `ars.iterations` stays a cap."""

    episodes: int = number(0, 0)            # training episodes (evaluation episodes are counted apart)
    env_steps: int = number(0, 0)           # training environment steps
    forward_examples: int = number(0, 0)    # examples (or observations) through the model once
    seconds: float = number(0.0, 0.0)       # wall clock of the training loop
    target: TargetConfig | None = None

    def reached(self, value: float) -> bool:
        """Whether `value` of the target metric meets the target: a *loss* from below, any other from above."""
        assert self.target is not None and self.target.value is not None
        if "loss" in self.target.metric:
            return value <= self.target.value
        return value >= self.target.value


@dataclass
class TrackingConfig:
    enabled: bool = True
    uri: str = ""            # "": the MLFLOW_TRACKING_URI environment variable, else sqlite:///mlflow.db
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
    # a Hugging Face model directory (with `factory = "transformers:AutoModelForCausalLM"` or any
    # Auto class), loaded with from_pretrained(path, local_files_only=True); its tokenizer too
    path: str = ""
    # generate tasks: "package.module:function" building a fresh model and tokenizer, used when
    # `path` does not exist and pretrain_epochs > 0 (pretrained with Adam, then saved to `path`)
    init: str = ""
    export: str = choice("safetensors", "safetensors", "pt")   # format of posttrained / compressed exports


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
    seed: int = number(0, 0, 2**32 - 1)     # NumPy and scikit-learn take seeds in [0, 2**32)
    task: TaskConfig = field(default_factory=TaskConfig)
    ars: ARSSection = field(default_factory=ARSSection)
    population: PopulationConfig | None = None
    sampling: SamplingConfig | None = None
    eval: EvalConfig = field(default_factory=EvalConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    model: ModelConfig | None = None
    compress: CompressConfig | None = None
    stop: StopConfig | None = None

    def check(self) -> None:
        """Constraints between keys."""
        if self.ars.backend == "hogwild" and self.population is not None:
            raise ConfigError("ars.backend = 'hogwild' runs one asynchronous learner and cannot be combined "
                              "with [population]; use 'vectorized' or 'distributed'")
        if self.ars.top > self.ars.directions:
            raise ConfigError(f"ars.top = {self.ars.top} must be <= ars.directions = {self.ars.directions}")
        if self.population is not None:
            from .population.population import check_range

            for name in ("step_size", "noise"):
                try:
                    check_range(name, getattr(self.population.init, name))
                except ValueError as e:
                    raise ConfigError(str(e)) from None
        if self.task.kind == "generate" and (self.model is None or not self.model.path):
            raise ConfigError("task.kind = \"generate\" needs [model] path: a Hugging Face model directory "
                              "(with factory = \"transformers:AutoModelForCausalLM\")")
        if self.sampling is not None and self.task.kind != "supervised":
            raise ConfigError("[sampling] (prioritised mini-batches) needs task.kind = \"supervised\"")
        if self.eval.every_episodes and self.task.kind != "rl":
            raise ConfigError(f"eval.every_episodes = {self.eval.every_episodes}: a {self.task.kind} task spends no "
                              f"episodes, so it would never evaluate; use eval.every")
        if self.stop is not None:
            self._check_stop(self.stop)
        if self.task.test_fraction >= 1.0:
            raise ConfigError(f"task.test_fraction = {self.task.test_fraction} leaves no training data; "
                              f"allowed: > 0 and < 1")
        if self.ars.devices:
            _check_devices(self.ars.devices)


    def _check_stop(self, stop: StopConfig) -> None:
        if stop.seconds and self.ars.backend == "distributed":
            # every rank decides to stop on its own: clocks differ, counters and evaluations do not
            raise ConfigError(f"stop.seconds = {stop.seconds} cannot be used with ars.backend = 'distributed': ranks "
                              f"would stop at different iterations; use stop.episodes, env_steps or forward_examples")
        if self.task.kind != "rl":
            for name in ("episodes", "env_steps"):
                if getattr(stop, name):
                    raise ConfigError(f"stop.{name} = {getattr(stop, name)}: a {self.task.kind} task spends no "
                                      f"{name.replace('_', ' ')}; use stop.forward_examples or stop.seconds")
        t = stop.target
        if t is None:
            return
        if not t.metric:
            raise ConfigError("stop.target.metric is missing: name the metric to reach, e.g. \"eval/return\"")
        if t.value is None:
            raise ConfigError(f"stop.target.value is missing: the value of {t.metric!r} that ends the run")
        family, _, name = t.metric.partition("/")
        if family not in TARGET_FAMILIES or not name:
            raise ConfigError(f"stop.target.metric = {t.metric!r}: unknown metric family {family!r}; the target is "
                              f"checked at evaluations, so it must be one of "
                              f"{', '.join(f'{f}/<name>' for f in TARGET_FAMILIES)}")
        if family == "eval":
            known = (("return", "return_std") if self.task.kind == "rl" else ("loss", "accuracy"))
            if name not in known:
                raise ConfigError(f"stop.target.metric = {t.metric!r}: a {self.task.kind} task's evaluation does not "
                                  f"report it, so the target could never be checked; it reports "
                                  f"{', '.join('eval/' + k for k in known)}")


def _check_devices(devices: list[str]) -> None:
    """ars.devices must exist on this machine (an AssertionError deep in torch otherwise)."""
    import torch

    for i, name in enumerate(devices):
        try:
            device = torch.device(name)
        except (RuntimeError, ValueError):
            raise ConfigError(f"ars.devices[{i}] = {name!r} is not a device name (e.g. \"cpu\", \"cuda:0\")") from None
        if device.type == "cuda":
            count = torch.cuda.device_count() if torch.cuda.is_available() else 0
            if count == 0:
                raise ConfigError(f"ars.devices[{i}] = {name!r} but no CUDA device is available on this machine; "
                                  f"use \"cpu\" entries or leave ars.devices empty")
            if device.index is not None and device.index >= count:
                raise ConfigError(f"ars.devices[{i}] = {name!r} but this machine has {count} CUDA device(s) "
                                  f"(cuda:0..cuda:{count - 1})")


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


def applicable(config: JobConfig) -> dict:
    """`to_dict(config)` without the keys this job does not read (an RL env in a digits job, the
    hogwild worker count with another backend, the tables of population strategies not in the
    list...), so resolved configs, MLflow params and reports show what the job actually uses.
    Loading the result gives back a config that trains exactly the same way."""
    out = to_dict(config)
    task, ars = out["task"], out["ars"]
    rl_keys = ("env", "policy", "horizon", "shift", "eval_episodes")
    generate_keys = ("prompts", "eval_prompts", "n_prompts", "reward", "max_new_tokens", "eval_batch")
    if config.task.kind == "supervised":
        _drop(task, *rl_keys, *generate_keys)
        model = config.model.factory if config.model is not None and config.model.factory else config.task.model
        if model == "mlp":                  # a user factory may take any of these: keep them all
            _drop(task, "channels")
        elif model == "cnn":
            _drop(task, "hidden")
        if config.task.test_dataset:        # the test data comes from that function, not a split
            _drop(task, "test_fraction")
        else:
            _drop(task, "test_dataset")
    elif config.task.kind == "rl":
        _drop(task, "dataset", "model", "channels", "activation", "batch_size", "test_fraction", "test_dataset",
              *generate_keys)
        if config.task.policy == "linear":
            _drop(task, "hidden")
    else:                                   # generate: the model comes from [model]
        _drop(task, *rl_keys, "dataset", "model", "hidden", "channels", "activation", "test_dataset")
        if config.task.eval_prompts:
            _drop(task, "test_fraction")
    backend = config.ars.backend
    if backend != "hogwild":
        _drop(ars, "workers")
    if backend != "distributed":
        _drop(ars, "nproc")
    if backend not in ("hogwild", "distributed"):
        _drop(ars, "timeout")
    if backend != "vectorized":
        _drop(ars, "devices")
    if backend == "sequential":
        _drop(ars, "vector_chunk")
    if config.ars.noise_source != "table":
        _drop(ars, "table_size")
    if config.population is not None:
        _drop(out["population"], *(s for s in ("culling", "annealing", "tabu", "pso")
                                   if s not in config.population.strategies))
    if config.compress is not None:
        c = out["compress"]
        if config.compress.prune == 0:
            _drop(c, "prune_scope", "prune_schedule", "prune_iterations", "prune_every")
        elif config.compress.prune_schedule == "start":
            _drop(c, "prune_iterations", "prune_every")
    if not config.tracking.enabled:
        _drop(out["tracking"], "uri", "experiment", "run_name")
    else:                               # empty strings are "not set": the defaults say what applies
        _drop(out["tracking"], *(k for k in ("uri", "run_name") if not out["tracking"][k]))
    return out


def _drop(table: dict, *keys: str) -> None:
    for key in keys:
        table.pop(key, None)


def to_toml(config: JobConfig) -> str:
    """The config as a job TOML with only the keys that apply (see `applicable`)."""
    import tomli_w

    return tomli_w.dumps(applicable(config))


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
