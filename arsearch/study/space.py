"""The study file: a base job config, a search space over its keys, and how to run the study.

```toml
[study]
name = "digits-strategies"
base = "../configs/digits.toml"      # relative to the study file
metric = "eval/accuracy"             # or metrics = ["eval/accuracy", "count/forward_examples"]
direction = "maximize"               # or directions = ["maximize", "minimize"]
sampler = "tpe"
pruner = "median"

[space]
"ars.step_size" = { low = 0.001, high = 0.1, log = true }       # float (type taken from the job key)
"ars.directions" = { low = 8, high = 64, step = 8 }             # int
"ars.backend" = { choice = ["sequential", "vectorized"] }       # categorical
"population.strategies" = { subset = ["culling", "tabu"] }      # one on/off choice per item
"population.culling.fraction" = { low = 0.1, high = 0.9, when = { "population.strategies" = "culling" } }
"ars.iterations" = 100                                           # a fixed value for every trial

[[enqueue]]                          # tried first, in this order (Optuna's enqueue_trial): a known-good
"ars.step_size" = 0.02               # point such as a paper's settings; keys left out are sampled
"ars.backend" = "vectorized"
```

A `when` condition holds when the parent key's value (sampled earlier in the file, or taken from
the base config) equals the given value, contains it (list values such as strategies), or is
one of the given values when a list is given. A key whose condition fails is not suggested at
all, so Optuna's samplers see the conditional structure (TPE handles it natively).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import BUDGETS, ConfigError, JobConfig, apply_overrides, from_dict, load_job, load_toml
from .seeds import AGGREGATES, CENSORED_AGGREGATES, SeedSettings, ValidateSettings, parse_tables

SAMPLERS = ("tpe", "cmaes", "gp", "random", "nsga2")
PRUNERS = ("median", "hyperband", "successive_halving", "wilcoxon", "none")
OBJECTIVES = ("score", "spend_to_target")
DIRECTIONS = ("maximize", "minimize")


def job_key_type(key: str):
    """The Python type of a dotted job-config key (int, float, str, bool, list[...]); ConfigError if unknown."""
    cls: Any = JobConfig
    parts = key.split(".")
    for i, part in enumerate(parts):
        if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
            raise ConfigError(f"{'.'.join(parts[:i])} is not a table, so {key!r} is not a job-config key")
        hints = typing.get_type_hints(cls)
        if part not in hints:
            names = ", ".join(f.name for f in dataclasses.fields(cls))
            where = ".".join(parts[:i]) or "the top level"
            raise ConfigError(f"{key!r} is not a job-config key: {part!r} unknown in {where}; allowed: {names}")
        tp = hints[part]
        if typing.get_origin(tp) in (typing.Union, types.UnionType):     # Optional[Section] or str | list[str]
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            tp = args[0] if len(args) == 1 else tp
        cls = tp
    return cls


def _label(value: Any) -> Any:
    """Optuna categorical choices must be primitives: a list choice becomes a '+'-joined label."""
    if isinstance(value, list):
        return "+".join(map(str, value)) if value else "(none)"
    return value


@dataclass
class Param:
    """One searched key: a float/int range, a categorical choice, a subset, or a fixed value."""

    key: str
    kind: str                      # "float" | "int" | "choice" | "subset" | "fixed"
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list = field(default_factory=list)
    value: Any = None
    when: dict[str, Any] = field(default_factory=dict)

    def active(self, resolved: dict[str, Any]) -> bool:
        for parent, wanted in self.when.items():
            have = resolved.get(parent)
            options = wanted if isinstance(wanted, list) else [wanted]
            if isinstance(have, list):
                if not any(w in have for w in options):
                    return False
            elif have not in options:
                return False
        return True

    def suggest(self, trial) -> Any:
        if self.kind == "fixed":
            return self.value
        if self.kind == "float":
            return trial.suggest_float(self.key, self.low, self.high, log=self.log, step=self.step)
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        if self.kind == "choice":
            labels = [_label(c) for c in self.choices]
            picked = trial.suggest_categorical(self.key, labels)
            return self.choices[labels.index(picked)]
        # subset: one boolean per item, so conditions can depend on each item separately
        return [item for item in self.choices if trial.suggest_categorical(f"{self.key}.{item}", [True, False])]

    def fixed_params(self, value: Any, path: str) -> dict[str, Any]:
        """Optuna's parameters that make `suggest` return `value` (for `enqueue_trial`); ConfigError
        naming `path` when the space cannot produce `value`."""
        def refuse(allowed: str):
            raise ConfigError(f"{path}: {value!r} is not in the space of {self.key!r} ({allowed})")

        if self.kind == "fixed":
            raise ConfigError(f"{path}: {self.key!r} is fixed at {self.value!r} in [space]; it cannot be enqueued")
        if self.kind in ("float", "int"):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                    self.kind == "int" and int(value) != value):
                refuse(f"an {self.kind}")
            if not self.low <= value <= self.high:
                refuse(f"[{self.low}, {self.high}]")
            return {self.key: int(value) if self.kind == "int" else float(value)}
        if self.kind == "choice":
            if value not in self.choices:
                refuse(f"one of {self.choices}")
            return {self.key: _label(value)}
        if not isinstance(value, list) or any(v not in self.choices for v in value):
            refuse(f"a subset of {self.choices}")
        return {f"{self.key}.{item}": item in value for item in self.choices}


def parse_param(key: str, spec: Any, base: dict) -> Param:
    path = f"space.{key!r}"
    try:
        tp = job_key_type(key)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    if not isinstance(spec, dict):
        param = Param(key, "fixed", value=spec)
    else:
        spec = dict(spec)
        when = spec.pop("when", {})
        if not isinstance(when, dict):
            raise ConfigError(f"{path}.when: expected a table of parent key = value, got {when!r}")
        for parent in when:
            try:
                job_key_type(parent)
            except ConfigError as e:
                raise ConfigError(f"{path}.when: {e}") from None
        if "choice" in spec:
            _only(spec, {"choice"}, path)
            if not isinstance(spec["choice"], list) or not spec["choice"]:
                raise ConfigError(f"{path}.choice: expected a non-empty list, got {spec['choice']!r}")
            param = Param(key, "choice", choices=list(spec["choice"]), when=when)
        elif "subset" in spec:
            _only(spec, {"subset"}, path)
            if typing.get_origin(tp) is not list:
                raise ConfigError(f"{path}: subset needs a list-valued key, but {key} is {tp}")
            if not isinstance(spec["subset"], list) or not spec["subset"]:
                raise ConfigError(f"{path}.subset: expected a non-empty list, got {spec['subset']!r}")
            param = Param(key, "subset", choices=list(spec["subset"]), when=when)
        elif "low" in spec or "high" in spec:
            _only(spec, {"low", "high", "log", "step"}, path)
            if tp not in (int, float):
                raise ConfigError(f"{path}: a low/high range needs a numeric key, but {key} is {getattr(tp, '__name__', tp)}")
            low, high = spec.get("low"), spec.get("high")
            for name, v in (("low", low), ("high", high)):
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                    raise ConfigError(f"{path}.{name}: expected a finite number, got {v!r}")
            if low > high:
                raise ConfigError(f"{path}: low = {low} must be <= high = {high}")
            log = spec.get("log", False)
            if not isinstance(log, bool):
                raise ConfigError(f"{path}.log: expected true or false, got {log!r}")
            if log and low <= 0:
                raise ConfigError(f"{path}: log = true needs low > 0, got {low}")
            step = spec.get("step")
            if step is not None and (isinstance(step, bool) or not isinstance(step, (int, float)) or step <= 0):
                raise ConfigError(f"{path}.step: expected a positive number, got {step!r}")
            if log and step is not None and tp is float:
                raise ConfigError(f"{path}: log and step cannot be combined for a float")
            if tp is int and (int(low) != low or int(high) != high):
                raise ConfigError(f"{path}: {key} is an integer key, so low and high must be integers")
            param = Param(key, "int" if tp is int else "float", low=low, high=high, log=log, step=step, when=when)
        else:
            raise ConfigError(f"{path}: expected a table with choice, subset or low/high (plus log, step, when), "
                              f"or a plain value; got {spec!r}")
    # every value a trial can take must make a valid job config: checked once, before any trial runs
    for value in _sample_values(param):
        try:
            from_dict(JobConfig, apply_overrides(_copy(base), {key: value}))
        except ConfigError as e:
            raise ConfigError(f"{path}: value {value!r} is not valid for the job: {e}") from None
    return param


def _only(spec: dict, allowed: set[str], path: str) -> None:
    extra = set(spec) - allowed
    if extra:
        raise ConfigError(f"{path}: unknown field(s) {', '.join(sorted(extra))}; allowed here: "
                          f"{', '.join(sorted(allowed | {'when'}))}")


def _sample_values(p: Param) -> list:
    if p.kind == "fixed":
        return [p.value]
    if p.kind in ("float", "int"):
        return [p.low, p.high] if p.kind == "float" else [int(p.low), int(p.high)]
    if p.kind == "choice":
        return list(p.choices)
    return [list(p.choices)]


def _copy(data: dict) -> dict:
    return {k: (_copy(v) if isinstance(v, dict) else v) for k, v in data.items()}


def _get(data: dict, key: str) -> Any:
    node: Any = data
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


@dataclass
class StudySettings:
    """The `[study]` table. Every key is documented in docs/study.md."""

    name: str = ""
    base: str = ""
    storage: str = "sqlite:///optuna.db"
    metric: str = ""                         # default: eval/<the task's headline metric>
    metrics: list[str] = field(default_factory=list)
    direction: str = ""                      # default: the task's direction
    directions: list[str] = field(default_factory=list)
    n_trials: int = 20                       # trials this process runs; 0 = only create the study
    timeout: float = 0.0                     # seconds, 0 = none
    n_jobs: int = 1
    sampler: str = "tpe"
    pruner: str = "median"
    seed: int = 0
    startup_trials: int = 5                  # pruner / sampler warm-up trials
    warmup_steps: int = 0                    # pruner: iterations before a trial may be pruned
    max_reports: int = 10                    # evaluations reported to Optuna per trial, at most (0 = all)
    heartbeat_interval: int = 10             # seconds; RDB storages only
    grace_period: int = 0                    # seconds; 0 = Optuna's default (2 x heartbeat)
    max_retry: int = 2                       # re-runs of a trial whose worker died
    subprocess: bool = False                 # run every trial as an `arsearch train` subprocess
    gpus: list[int] = field(default_factory=list)   # device pool for subprocess trials; [] = all visible
    output: str = "runs/studies"             # trial checkpoints land in <output>/<name>/trial_<n>
    tracking: bool = True                    # MLflow parent + child runs (uri/experiment: base [tracking])
    tracking_uri: str = ""                   # default: the base config's tracking.uri
    experiment: str = ""                     # default: the study name
    # "score": the trial's value is `metric` at its end; "spend_to_target": the value is what the trial
    # spent when it reached the base config's [stop] target (minimised)
    objective: str = "score"
    spend: str = ""                          # episodes | env_steps | forward_examples | seconds; default by task
    censored_penalty: float = 2.0            # a trial missing the target scores budget × this
    report_grid: int = 0                     # spend between intermediate reports (0: eval.every_episodes or none)
    # a configuration's value over its seeds (studies with [study.seeds]): mean | median | iqm |
    # success_rate, and for spend_to_target restricted_mean (the default there) | km_median
    aggregate: str = ""
    seeds: SeedSettings = field(default_factory=SeedSettings)            # [study.seeds]
    validate: ValidateSettings = field(default_factory=ValidateSettings)  # [study.validate]


@dataclass
class StudySpec:
    settings: StudySettings
    base: dict                       # the raw base job config (already validated once)
    params: list[Param]
    path: Path | None = None
    enqueue: list[dict[str, Any]] = field(default_factory=list)   # Optuna params of the [[enqueue]] trials

    @property
    def multi_objective(self) -> bool:
        return len(self.settings.metrics) > 1

    def resolve(self, trial) -> tuple[dict[str, Any], JobConfig]:
        """Suggest the trial's values; returns (the keys set, the validated job config)."""
        resolved: dict[str, Any] = {}
        for p in self.params:
            context = {**{k: _get(self.base, k) for k in p.when if k not in resolved}, **resolved}
            if p.active(context):
                resolved[p.key] = p.suggest(trial)
        config = load_job(data=apply_overrides(_copy(self.base), dict(resolved)))
        return resolved, config

    def config_for(self, overrides: dict[str, Any]) -> JobConfig:
        """The base config with the study's fixed values and then `overrides` applied."""
        fixed = {p.key: p.value for p in self.params if p.kind == "fixed" and not p.when}
        return load_job(data=apply_overrides(_copy(self.base), {**fixed, **overrides}))


def _settings(raw: dict) -> StudySettings:
    seeds, validate = parse_tables(raw)
    fields_ = {f.name for f in dataclasses.fields(StudySettings)}
    for key in raw:
        if key not in fields_:
            raise ConfigError(f"unknown key 'study.{key}'; allowed in study: {', '.join(sorted(fields_))}")
    hints = typing.get_type_hints(StudySettings)
    for key, value in raw.items():
        tp = hints[key]
        ok = {str: isinstance(value, str), bool: isinstance(value, bool),
              int: isinstance(value, int) and not isinstance(value, bool),
              float: isinstance(value, (int, float)) and not isinstance(value, bool)}.get(tp)
        if ok is None:                      # list[str] / list[int]
            item = typing.get_args(tp)[0]
            ok = isinstance(value, list) and all(isinstance(v, item) and not isinstance(v, bool) for v in value)
        if not ok:
            raise ConfigError(f"study.{key}: expected {getattr(tp, '__name__', str(tp))}, got {value!r}")
    s = StudySettings(**raw, seeds=seeds, validate=validate)
    if s.sampler not in SAMPLERS:
        raise ConfigError(f"study.sampler = {s.sampler!r} is not allowed; allowed: {', '.join(SAMPLERS)}")
    if s.pruner not in PRUNERS:
        raise ConfigError(f"study.pruner = {s.pruner!r} is not allowed; allowed: {', '.join(PRUNERS)}")
    for name in ("n_trials", "n_jobs", "heartbeat_interval", "max_retry", "startup_trials", "warmup_steps",
                 "grace_period", "timeout", "max_reports"):
        if getattr(s, name) < (1 if name in ("n_jobs", "heartbeat_interval") else 0):
            raise ConfigError(f"study.{name} = {getattr(s, name)} is out of range")
    if s.objective not in OBJECTIVES:
        raise ConfigError(f"study.objective = {s.objective!r} is not allowed; allowed: {', '.join(OBJECTIVES)}")
    if s.spend and s.spend not in BUDGETS:
        raise ConfigError(f"study.spend = {s.spend!r} is not allowed; allowed: {', '.join(BUDGETS)}")
    if s.censored_penalty < 1:
        raise ConfigError(f"study.censored_penalty = {s.censored_penalty} is out of range; allowed: >= 1 "
                          f"(a censored trial must not look better than one that used its whole budget)")
    if s.report_grid < 0:
        raise ConfigError(f"study.report_grid = {s.report_grid} is out of range; allowed: >= 0")
    if s.aggregate and s.aggregate not in AGGREGATES:
        raise ConfigError(f"study.aggregate = {s.aggregate!r} is not allowed; allowed: {', '.join(AGGREGATES)}")
    if s.aggregate in CENSORED_AGGREGATES and s.objective != "spend_to_target":
        raise ConfigError(f"study.aggregate = {s.aggregate!r} counts misses at the budget: it needs "
                          f"objective = 'spend_to_target'")
    if s.validate.active and not s.seeds.active:
        raise ConfigError("[study.validate] reruns configurations on fresh seeds beside the study's tuning seeds: "
                          "it needs [study.seeds] tuning = N")
    if s.metric and s.metrics:
        raise ConfigError("study: give either metric or metrics, not both")
    if s.direction and s.directions:
        raise ConfigError("study: give either direction or directions, not both")
    return s


def load_study(path: str | Path, overrides: dict[str, Any] | None = None) -> StudySpec:
    """Read and validate a study file (ConfigError on any problem, before any trial runs)."""
    path = Path(path)
    raw = load_toml(path)
    unknown = set(raw) - {"study", "space", "enqueue"}
    if unknown:
        raise ConfigError(f"unknown table(s) {', '.join(sorted(unknown))} in {path}; allowed: study, space, enqueue")
    settings = _settings(dict(raw.get("study", {})))
    for key, value in (overrides or {}).items():
        if value is not None:
            # the command line's counts are checked as the file's are (`--n-trials -3` ran nothing, exit 0)
            low = {"n_trials": 0, "timeout": 0, "n_jobs": 1}.get(key)
            if low is not None and value < low:
                flag = "--" + key.replace("_", "-")
                raise ConfigError(f"{flag} {value:g} is out of range; allowed: >= {low}")
            setattr(settings, key, value)
    if not settings.base:
        raise ConfigError(f"study.base is missing in {path}: name the base job config (relative to the study file)")
    base_path = (path.parent / settings.base).resolve()
    base = load_toml(base_path)
    base_config = load_job(data=base)        # the base itself must be a valid job
    if not settings.name:
        settings.name = path.stem
    space = raw.get("space", {})
    if not isinstance(space, dict):
        raise ConfigError("space: expected a table of job key = range/choice/value")
    params = [parse_param(k, v, base) for k, v in space.items()]
    # conditions must refer to keys sampled earlier or present in the base config, never later ones
    seen: set[str] = set()
    for p in params:
        for parent in p.when:
            later = any(q.key == parent for q in params) and parent not in seen
            if later:
                raise ConfigError(f"space.{p.key!r}.when: {parent!r} must be declared before {p.key!r}")
        seen.add(p.key)
    spec = StudySpec(settings, base, params, path, enqueue=_enqueued(raw.get("enqueue", []), params, base))
    _complete_spend(settings, spec.config_for({}))
    _check_extremes(params, base)
    _complete_objectives(settings, base_config)
    return spec


def _enqueued(entries: Any, params: list[Param], base: dict) -> list[dict[str, Any]]:
    """`[[enqueue]]`: trials to run first with the given values of searched keys (the rest sampled).
    Each entry must name searched keys, hold values their space can produce, and make a valid job."""
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ConfigError("enqueue: expected [[enqueue]] tables of searched key = value")
    by_key = {p.key: p for p in params}
    searched = {q.key for q in params if q.kind != "fixed"}
    trials = []
    for i, entry in enumerate(entries):
        fixed: dict[str, Any] = {}
        for key, value in entry.items():
            if key not in by_key:
                raise ConfigError(f"enqueue[{i}]: {key!r} is not a key of [space]; searched keys: "
                                  f"{', '.join(p.key for p in params if p.kind != 'fixed')}")
            param = by_key[key]
            fixed.update(param.fixed_params(value, f"enqueue[{i}].{key!r}"))
            # a key whose condition this entry settles, and fails, would be silently ignored: refuse it
            if all(parent in entry or parent not in searched for parent in param.when):
                context = {parent: entry[parent] if parent in entry else _get(base, parent) for parent in param.when}
                if not param.active(context):
                    raise ConfigError(f"enqueue[{i}].{key!r} does not apply: its condition when = {param.when} "
                                      f"does not hold for this entry ({context}), so the value would be ignored")
        try:
            from_dict(JobConfig, apply_overrides(_copy(base), dict(entry)))
        except ConfigError as e:
            raise ConfigError(f"enqueue[{i}]: these values do not make a valid job: {e}") from None
        trials.append(fixed)
    return trials


def _complete_spend(s: StudySettings, config: JobConfig) -> None:
    """Default the spend by task; a spend-to-target study needs a target and a budget in that spend."""
    from ..config import task_of
    from .spend import default_spend

    s.spend = s.spend or default_spend(config)
    spends = [b for b in BUDGETS if b in task_of(config).spends or b == "seconds"]
    if s.spend not in spends:
        raise ConfigError(f"study.spend = {s.spend!r}: the base job is a {config.task.kind} task, which spends no "
                          f"{s.spend.replace('_', ' ')}; use {' or '.join(spends)}")
    if s.objective != "spend_to_target":
        return
    if s.metric or s.metrics:
        raise ConfigError("study: objective = 'spend_to_target' is scored by its spend; drop metric/metrics "
                          "(the target's metric is the base config's stop.target.metric)")
    if s.direction not in ("", "minimize") or s.directions:
        raise ConfigError("study: objective = 'spend_to_target' is minimised; drop direction/directions")
    stop = config.stop
    if stop is None or stop.target is None:
        raise ConfigError("study.objective = 'spend_to_target' needs stop.target in the base config (or a fixed "
                          "space value), e.g. [stop] target = { metric = \"eval/return\", value = 325 }")
    if not getattr(stop, s.spend):
        raise ConfigError(f"study.objective = 'spend_to_target' needs a budget stop.{s.spend} > 0 in the base "
                          f"config: a trial that misses the target is censored at that budget × "
                          f"study.censored_penalty")
    s.metrics = [f"{s.spend}_to_target"]
    s.directions = ["minimize"]


# combinations of extremes checked together; beyond this, each key's extremes are checked alone
MAX_COMBINATIONS = 4096


def _check_extremes(params: list[Param], base: dict) -> None:
    """Every combination of the space's extreme values (each range's low and high, every choice)
    must make a valid job, constraints between keys included (e.g. ars.top <= ars.directions):
    a space that can produce an invalid job is refused here, before any trial runs."""
    import itertools

    values = [_sample_values(p) for p in params]
    if math.prod(len(v) for v in values) > MAX_COMBINATIONS:
        combos = [[(p, v)] for p, vs in zip(params, values) for v in vs]
    else:
        combos = [list(zip(params, combo)) for combo in itertools.product(*values)]
    for combo in combos:
        resolved: dict[str, Any] = {}
        for p, v in combo:          # as `StudySpec.resolve` does: a key whose condition fails is not set
            context = {**{k: _get(base, k) for k in p.when if k not in resolved}, **resolved}
            if p.active(context):
                resolved[p.key] = v
        try:
            load_job(data=apply_overrides(_copy(base), dict(resolved)))
        except ConfigError as e:
            shown = ", ".join(f"{k} = {v!r}" for k, v in resolved.items() if k in _keys_in(str(e))) or \
                ", ".join(f"{k} = {v!r}" for k, v in resolved.items())
            raise ConfigError(f"space: the trial with {shown} would be an invalid job: {e}") from None


def _keys_in(message: str) -> set[str]:
    import re

    return set(re.findall(r"[a-z_]+(?:\.[a-z_]+)+", message))


def _complete_objectives(s: StudySettings, base: JobConfig) -> None:
    """Default metric/direction from the task kind; metric/direction become one-item lists."""
    from ..config import task_of

    task = task_of(base)            # the task kind declares its default objective and its metrics' directions
    if not s.metrics:
        s.metrics = [s.metric or task.objective(base)[0]]
    if not s.directions:
        if s.direction:
            s.directions = [s.direction] * len(s.metrics)
        else:
            s.directions = [task.direction(m.partition("/")[2]) if m.startswith("eval/") else
                            "minimize" if m.endswith("loss") or m.startswith(("count/", "time/")) else "maximize"
                            for m in s.metrics]
    if len(s.directions) != len(s.metrics):
        raise ConfigError(f"study: {len(s.metrics)} metrics but {len(s.directions)} directions")
    for d in s.directions:
        if d not in DIRECTIONS:
            raise ConfigError(f"study.direction = {d!r} is not allowed; allowed: {', '.join(DIRECTIONS)}")
    s.metric = s.metrics[0]
    s.direction = s.directions[0]
    if s.seeds.active and len(s.metrics) > 1:
        raise ConfigError("[study.seeds] aggregates one objective over seeds; a study with several metrics cannot "
                          "use it")
    if s.aggregate == "success_rate" and (base.stop is None or base.stop.target is None):
        raise ConfigError("study.aggregate = 'success_rate' needs a [stop] target in the base config: a seed "
                          "succeeds when its job reaches it")
    s.aggregate = s.aggregate or ("restricted_mean" if s.objective == "spend_to_target" else "mean")
    if s.aggregate == "success_rate":       # the trial's value is then a share of seeds: more is better
        s.directions, s.direction = ["maximize"], "maximize"
