"""Job configuration: TOML files validated into typed dataclasses before any work starts.

Every key has a type, a default and (where it matters) allowed values or a range; an unknown
key, a wrong type or a bad value raises `ConfigError` naming the key's full path and what is
allowed. The CLI turns that into exit code 2. See docs/CONFIG.md for every key.
"""

from __future__ import annotations

import copy
import dataclasses
import threading
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from .fields import choice, items, number
from .registry import BACKENDS, STRATEGIES
from .registry import TASK_KINDS as TASKS

# Every kind of plug-in, each one registry (`arsearch.registry`): the job config's tables, checks and
# `applicable` are built from what their plug-ins declare, so no plug-in is named in this module.
# The registries hold names only; a plug-in's module (and torch) is imported when the tables are
# first needed (`_build`), not when this module is imported.
REGISTRIES = (TASKS, BACKENDS, STRATEGIES)


class ConfigError(ValueError):
    """A malformed config file, an unknown key or a bad value (a usage error: exit code 2)."""


@dataclass
class _TaskCore:
    kind: str = choice(TASKS.default, *TASKS)     # the task-kind registry's names
    # where the model runs: "cpu", "cuda", "cuda:1", or "auto" (cuda when available)
    device: str = "cpu"
    # + every registered kind's own keys (dataset, env, prompts...): see `_build`


@dataclass
class _ARSCore:
    version: str = choice("v1t", "v1", "v1t", "v2", "v2t")
    directions: int = number(32, 1)
    top: int = number(8, 1)
    step_size: float = number(0.02, 0.0, low_open=True)
    noise: float = number(0.03, 0.0, low_open=True)
    iterations: int = number(300, 0)
    backend: str = choice(BACKENDS.default, *BACKENDS)        # the backend registry's names
    noise_source: str = choice("seed", "seed", "table")
    table_size: int = number(10_000_000, 1)
    noise_rank: int = number(0, 0)       # r > 0: low-rank directions A·Bᵀ/√r per weight matrix (0 = full rank)
    # + every registered backend's own keys (vector_chunk, devices, workers, nproc, timeout): see `_build`


def _copy_field(f: dataclasses.Field) -> dataclasses.Field:
    if f.default_factory is not dataclasses.MISSING:
        return field(default_factory=f.default_factory, metadata=f.metadata)
    return field(default=f.default, metadata=f.metadata)


def _spec(cls: type) -> list[tuple]:
    hints = typing.get_type_hints(cls)
    return [(f.name, hints[f.name], _copy_field(f)) for f in dataclasses.fields(cls)]


def _flat(core: type, name: str, registry) -> type:
    """A table of `core`'s keys, then the keys of each registered plug-in's ``Config``, flat
    (``ars.workers``, ``task.env``); a key two plug-ins share (``timeout``, ``hidden``) is declared
    alike by both and appears once."""
    spec = {e[0]: e for e in _spec(core)}
    for p in registry.available().values():
        for entry in _spec(p.Config):
            spec.setdefault(entry[0], entry)
    cls = dataclasses.make_dataclass(name, list(spec.values()))
    cls.__module__, cls.__doc__ = __name__, core.__doc__
    return cls


def _nested(core: list[tuple], name: str, registry) -> type:
    """A table of the `core` keys, then one sub-table per registered plug-in: its ``Config``."""
    tables = [(key, p.Config, field(default_factory=p.Config)) for key, p in registry.available().items()]
    cls = dataclasses.make_dataclass(name, [*core, *tables])
    cls.__module__ = __name__
    return cls


_LAZY = ("TaskConfig", "ARSSection", "PopulationConfig", "JobConfig")
if typing.TYPE_CHECKING:      # module attributes built on first use (`__getattr__`), named for checkers
    TaskConfig = ARSSection = PopulationConfig = type
_build_lock = threading.RLock()


def _build() -> None:
    """Build the tables whose keys come from the plug-ins (importing their modules, and torch), once."""
    g = globals()
    if "JobConfig" in g:
        return
    with _build_lock:
        if "JobConfig" in g:
            return
        from .population.population import InitConfig

        g["TaskConfig"] = _flat(_TaskCore, "TaskConfig", TASKS)
        g["ARSSection"] = _flat(_ARSCore, "ARSSection", BACKENDS)
        # [population]: its own keys, then one table per registered strategy, each the ``Config``
        # dataclass that lives beside the strategy's class (adding a strategy adds its table here)
        g["PopulationConfig"] = _nested([
            ("size", int, number(8, 1)),
            ("epoch", int, number(10, 1)),
            ("strategies", list[str], items([], *STRATEGIES)),
            ("fitness", str, choice("ema", "ema", "last", "eval")),
            ("fitness_ema", float, number(0.7, 0.0, 1.0)),
            ("init", InitConfig, field(default_factory=InitConfig)),
        ], "PopulationConfig", STRATEGIES)
        g["JobConfig"] = _JobConfig


def __getattr__(name: str):
    """`TaskConfig`, `ARSSection`, `PopulationConfig` and `JobConfig`, built on first use (PEP 562)."""
    if name in _LAZY:
        _build()
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _table(name: str):
    _build()
    return globals()[name]


def plugin(registry, name: str):
    """The plug-in `name` of `registry` (a ConfigError naming the allowed ones if unknown)."""
    try:
        return registry.load(name)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def task_of(config):
    """The class of a job's task kind: what it declares (metrics, spend, objective...)."""
    return plugin(TASKS, config.task.kind)


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


# what a job can spend, as named in [stop] and in the final metrics (count/<name>); a task kind
# says which of these it counts (`Task.spends`), the wall clock counts for all
BUDGETS = ("episodes", "env_steps", "forward_examples", "seconds")
# the metric families a stop target may name: those known at an evaluation
TARGET_FAMILIES = ("eval", "train")
# optional job tables that only some task kinds read (`Task.reads_tables`)
TASK_TABLES = {"sampling": "(prioritised mini-batches)"}


@dataclass
class TargetConfig:
    metric: str = ""
    value: float | None = None


@dataclass
class StopConfig:
    """Budgets (0 = none) and a target; the run ends at the first one met. `ars.iterations` stays a cap."""

    episodes: int = number(0, 0)            # training episodes (evaluation episodes are counted apart)
    env_steps: int = number(0, 0)           # training environment steps
    forward_examples: int = number(0, 0)    # examples (or observations, or evaluations) through the model once
    seconds: float = number(0.0, 0.0)       # wall clock of the training loop
    target: TargetConfig | None = None

    def reached(self, value: float) -> bool:
        """Whether `value` of the target metric meets the target: from below for a metric the task
        says is better lower (`JobConfig.check` records it; a *loss* when unchecked), else from above."""
        assert self.target is not None and self.target.value is not None
        lower = getattr(self, "_lower_is_better", None)
        if lower is None:
            lower = "loss" in self.target.metric
        return value <= self.target.value if lower else value >= self.target.value


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
    # a task kind with its own model files: "package.module:function" building a fresh model and tokenizer, used when
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
    task: TaskConfig = field(default_factory=lambda: _table("TaskConfig")())
    ars: ARSSection = field(default_factory=lambda: _table("ARSSection")())
    population: PopulationConfig | None = None
    sampling: SamplingConfig | None = None
    eval: EvalConfig = field(default_factory=EvalConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    model: ModelConfig | None = None
    compress: CompressConfig | None = None
    stop: StopConfig | None = None

    def check(self) -> None:
        """Constraints between keys: the core ones, then those each selected plug-in declares."""
        if self.ars.top > self.ars.directions:
            raise ConfigError(f"ars.top = {self.ars.top} must be <= ars.directions = {self.ars.directions}")
        if not self.checkpoint.dir.strip():
            # "" would write checkpoints, metrics.json and the lock into the working directory
            raise ConfigError("checkpoint.dir is empty: name the directory the job writes into, e.g. \"runs/job\"")
        for registry in (BACKENDS, TASKS, STRATEGIES):
            for name in registry.selected(self):
                try:
                    plugin(registry, name).check(self)
                except ConfigError:
                    raise
                except ValueError as e:
                    raise ConfigError(str(e)) from None
        if self.population is not None:
            from .population.population import check_range

            for name in ("step_size", "noise"):
                try:
                    check_range(name, getattr(self.population.init, name))
                except ValueError as e:
                    raise ConfigError(str(e)) from None
        task = task_of(self)
        for table, what in TASK_TABLES.items():
            if getattr(self, table) is not None and table not in task.reads_tables:
                readers = [name for name, cls in TASKS.available().items() if table in cls.reads_tables]
                raise ConfigError(f"[{table}] {what} needs task.kind = "
                                  f"{' or '.join(f'{k!r}' for k in readers) or '(none registered)'}; a "
                                  f"{self.task.kind} task does not read it")
        if self.eval.every_episodes and "episodes" not in task.spends:
            raise ConfigError(f"eval.every_episodes = {self.eval.every_episodes}: a {self.task.kind} task spends no "
                              f"episodes, so it would never evaluate; use eval.every")
        if self.stop is not None:
            self._check_stop(self.stop, task)

    def _check_stop(self, stop: StopConfig, task) -> None:
        spends = [b for b in BUDGETS if b in task.spends or b == "seconds"]
        for name in BUDGETS:
            if getattr(stop, name) and name not in spends:
                raise ConfigError(f"stop.{name} = {getattr(stop, name)}: a {self.task.kind} task spends no "
                                  f"{name.replace('_', ' ')}; use {' or '.join('stop.' + b for b in spends)}")
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
            known = task.evaluates(self)
            if name not in known:
                raise ConfigError(f"stop.target.metric = {t.metric!r}: a {self.task.kind} task's evaluation does not "
                                  f"report it, so the target could never be checked; it reports "
                                  f"{', '.join('eval/' + k for k in known)}")
            stop._lower_is_better = task.direction(name) == "minimize"     # read by `StopConfig.reached`


# built with the plug-ins' tables on first use (`__getattr__`); its annotations name them
_JobConfig = JobConfig
del JobConfig
if typing.TYPE_CHECKING:
    JobConfig = _JobConfig


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


def _lookalike(key: str) -> str:
    """Why an unknown key that looks right is unknown: the characters in it that are not ASCII (a Cyrillic
    'е' for an 'e' prints the same); empty for a plain ASCII key."""
    odd = [f"{c!r} (U+{ord(c):04X}) at position {i + 1}" for i, c in enumerate(key) if ord(c) > 127]
    return f" (it holds non-ASCII characters: {', '.join(odd[:5])})" if odd else ""


def from_dict(cls, data: dict, path: str = ""):
    """Build dataclass `cls` from a dict, refusing unknown keys and bad values."""
    _build()          # the job's annotations name the tables built from the plug-ins
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        full = f"{path}.{key}" if path else key
        if key not in fields:
            raise ConfigError(f"unknown key {full!r}{_lookalike(key)}; allowed in {path or 'the top level'}: "
                              f"{', '.join(fields)}")
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
    """`to_dict(config)` without the keys this job does not read: those of every task kind, backend
    and population strategy it does not select, and those a selected one leaves unread (an RL env
    in a digits job, a strategy's table when it is not in the list...), so resolved configs, MLflow
    params and reports show what the job actually uses. Loading the result gives back a config
    that trains exactly the same way."""
    out = to_dict(config)
    for registry in REGISTRIES:
        _drop_unselected(config, out.get(registry.table), registry)
    ars = out["ars"]
    if config.ars.noise_source != "table":
        _drop(ars, "table_size")
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


def _drop_unselected(config, table: dict | None, registry) -> None:
    """Drop from `table` the keys of the registry's plug-ins this job does not select, and those
    a selected one declares it leaves unread (`Plugin.unused_keys`)."""
    if table is None:                   # an optional table the job does not have ([population])
        return
    selected = registry.selected(config)
    plugins = registry.available()
    if registry.nested:                 # one sub-table per plug-in: [population.<name>]
        for name, p in plugins.items():
            if name in selected:
                _drop(table.get(name, {}), *p.unused_keys(config))
            else:
                table.pop(name, None)
        return
    read = set()                        # flat: a key two plug-ins share stays if a selected one reads it
    for name in selected:
        p = plugins[name]
        read |= set(p.keys()) - set(p.unused_keys(config))
    _drop(table, *(k for p in plugins.values() for k in p.keys() if k not in read))


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
    except RecursionError:
        raise ConfigError(f"--set value {text[:40]}...: nested too deeply to read") from None


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
        if not all(part.strip() for part in parts):
            raise ConfigError(f"--set key {key!r} has an empty part: write section.key=value, e.g. ars.step_size=0.01")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"cannot set {key!r}: {part!r} is not a table")
            node = child
        node[parts[-1]] = value
    return data


# a config or study file is a few kB: anything far larger (or endless, such as /dev/zero) is not one
MAX_TOML_BYTES = 16 << 20


def load_toml(path: str | Path) -> dict:
    """A TOML file as a dict; ConfigError (naming the file) for anything that is not a readable UTF-8 TOML file
    of sane size: a device or directory, a binary or non-UTF-8 file, arrays nested deeper than Python recurses."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            if not path.is_file():
                raise ConfigError(f"config {path} is not a regular file")
            raw = f.read(MAX_TOML_BYTES + 1)
    except OSError as e:
        raise ConfigError(f"cannot read config {path}: {e.strerror}") from None
    if len(raw) > MAX_TOML_BYTES:
        raise ConfigError(f"config {path} is larger than {MAX_TOML_BYTES >> 20} MiB: not a config file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise ConfigError(f"config {path} is not UTF-8 text (byte 0x{raw[e.start]:02x} on line {line}); "
                          f"TOML files are UTF-8") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path} is not valid TOML: {e}") from None
    except RecursionError:
        raise ConfigError(f"{path}: its arrays or tables are nested too deeply to read") from None


def load_job(path: str | Path | None = None, overrides=None, data: dict | None = None) -> JobConfig:
    """Read, override and validate a job config. Raises ConfigError."""
    raw = copy.deepcopy(data or {}) if path is None else load_toml(path)   # overrides must not edit the caller's dict
    if overrides:
        raw = apply_overrides(raw, overrides)
    config = from_dict(_table("JobConfig"), raw)
    config.check()
    return config
