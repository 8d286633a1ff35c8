"""Plug-ins by name: one protocol and one lazy registry type for task kinds, backends, population
strategies and learners.

A plug-in is a class in a module of its own. Beside its code it declares, in that one place, what the
rest of arsearch needs to know about it (`Plugin`): the dataclass of the config keys it reads, the
checks it puts on a whole job, which of its keys a job leaves unread, and (task kinds) the metrics it
reports, what it spends and its default objective. A `Registry` maps names to ``"module:attr"``
strings and imports a plug-in's module only when that name is asked for, as Optuna's samplers and
torch.optim's optimizers are each one class: adding a plug-in is one module plus one registry line
(at the end of this module; the packages re-export their registry: `arsearch.tasks.KINDS`,
`arsearch.backends.REGISTRY`, `arsearch.population.REGISTRY`).

Standard library only and importing no plug-in, so that `arsearch.config` can build on the
registries without importing torch, and without depending on the packages the plug-ins live in.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass
class NoKeys:
    """The config dataclass of a plug-in that reads no keys of its own."""


class Plugin:
    """What a task kind, a backend or a population strategy declares about itself (class attributes
    and class methods, so nothing has to be built to ask).

    - ``name``: its registry name;
    - ``Config``: the dataclass of the keys it reads (`arsearch.fields` gives them types, defaults
      and allowed values). `arsearch.config` puts a registry's keys where the registry says
      (`Registry.table`): flat in that table, or one sub-table per plug-in;
    - ``check(config)``: constraints it puts on a whole `JobConfig`; raise ValueError saying which
      keys conflict and what to use instead (the config turns it into a ConfigError);
    - ``unused_keys(config)``: those of its own keys this job leaves unread even with it selected
      (`config.applicable` drops them from resolved configs, as it drops the keys of every plug-in
      that is not selected).
    """

    name: str = ""
    Config: type = NoKeys

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls.Config))

    @classmethod
    def check(cls, config) -> None:
        """Refuse (ValueError) a job that selects this plug-in with keys it cannot honour."""

    @classmethod
    def unused_keys(cls, config) -> tuple[str, ...]:
        return ()


class Registry(Mapping[str, str]):
    """Names → ``"module:attr"`` of one kind of plug-in, imported on first `load`.

    As a mapping it holds the strings, so listing or validating names imports nothing.
    ``select`` is the job-config key that selects plug-ins (a name or a list of names),
    ``table`` the job-config table that holds their keys, and ``nested`` whether each plug-in's
    keys form a sub-table named after it (``[population.culling]``) or sit flat in ``table``
    (``ars.workers``).
    """

    def __init__(self, what: str, entries: dict[str, str], *, default: str | None = None, select: str = "",
                 table: str = "", nested: bool = False):
        for name, path in entries.items():
            if path.count(":") != 1:
                raise ValueError(f"{what} {name!r}: expected 'package.module:attr', got {path!r}")
        if default is not None and default not in entries:
            raise ValueError(f"{what} registry: default {default!r} is not one of {', '.join(entries)}")
        self.what, self._entries, self._loaded = what, dict(entries), {}
        self.default = default if default is not None else next(iter(entries), None)
        self.select, self.table, self.nested = select, table, nested

    # -- the mapping: names and paths, nothing imported ------------------------------------------------
    def __getitem__(self, name: str) -> str:
        return self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.what!r}, {self._entries!r})"

    # -- the plug-ins themselves ---------------------------------------------------------------------
    def load(self, name: str) -> Any:
        """The plug-in `name`, its module imported now; ValueError naming the allowed ones if unknown."""
        if name in self._loaded:
            return self._loaded[name]
        if name not in self._entries:
            raise ValueError(f"unknown {self.what} {name!r}; allowed: {', '.join(self._entries)}")
        module, _, attr = self._entries[name].partition(":")
        try:
            obj = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise ValueError(f"{self.what} {name!r} is not available in this version of arsearch ({e})") from None
        self._loaded[name] = obj
        return obj

    def available(self) -> dict[str, Any]:
        """Every plug-in that can be imported here, by name (one that cannot has no keys to offer)."""
        out = {}
        for name in self._entries:
            try:
                out[name] = self.load(name)
            except ValueError:
                continue
        return out

    def selected(self, config) -> list[str]:
        """The names a job selects at ``self.select`` (empty when that table is absent)."""
        value: Any = config
        for part in self.select.split("."):
            value = getattr(value, part, None)
            if value is None:
                return []
        return [value] if isinstance(value, str) else list(value)


# ---------------------------------------------------------------------------------------------
# The registries: one line per plug-in.

TASK_KINDS = Registry("task kind", {
    "supervised": "arsearch.tasks.supervised:SupervisedTask",
    "rl": "arsearch.tasks.rl:RLTask",
    "generate": "arsearch.tasks.generate:GenerateTask",
    "function": "arsearch.tasks.function:FunctionTask",
}, select="task.kind", table="task")

BACKENDS = Registry("backend", {
    "sequential": "arsearch.backends.sequential:SequentialBackend",
    "vectorized": "arsearch.backends.vectorized:VectorizedBackend",
    "hogwild": "arsearch.backends.hogwild:HogwildBackend",
    "distributed": "arsearch.backends.distributed:DistributedBackend",
}, default="vectorized", select="ars.backend", table="ars")

STRATEGIES = Registry("population strategy", {
    "culling": "arsearch.population.culling:Culling",
    "annealing": "arsearch.population.annealing:Annealing",
    "tabu": "arsearch.population.tabu:Tabu",
    "pso": "arsearch.population.pso:ParticleSwarm",
    "pbt": "arsearch.population.pbt:PopulationBasedTraining",
}, select="population.strategies", table="population", nested=True)

# The learners the trainer drives: "population" for a job with a [population] table, else the one
# registered under the job's backend's name (hogwild's workers need their own), else "ars".
LEARNERS = Registry("learner", {
    "ars": "arsearch.learner:ARSLearner",
    "population": "arsearch.population:Population",
    "hogwild": "arsearch.backends.hogwild:HogwildLearner",
})
