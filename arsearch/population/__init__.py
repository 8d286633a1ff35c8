"""Population strategies: K ARS learners trained together, search heuristics acting on them.

`Population` is the learner; each strategy is one small class in a module of its own, with its
config dataclass (``Config``) beside it (see `base.Strategy`). Adding a strategy means adding a
module and a line in `REGISTRY` (`arsearch.registry.STRATEGIES`): `arsearch.config` builds ``population.strategies``' allowed
names and the ``[population.<name>]`` tables from this registry. Nothing here imports torch: the
classes load on first use.
"""

from __future__ import annotations

import importlib

from ..registry import STRATEGIES as REGISTRY  # the registry lines live in arsearch.registry


def strategy_class(name: str):
    return REGISTRY.load(name)


def make_strategy(name: str, settings=None):
    """The strategy `name` from its settings (its ``Config``; None: the defaults), or from a
    `JobConfig` (its table ``population.<name>``)."""
    cls = strategy_class(name)
    if settings is not None and hasattr(settings, "population"):     # a whole JobConfig
        return cls.from_config(settings)
    return cls.from_settings(settings if settings is not None else cls.Config())


# the classes by name, loaded on first use (PEP 562)
_LAZY = {"Population": "population", "InitConfig": "population", "hyperparameters_at": "population",
         "Strategy": "base", "Culling": "culling", "Annealing": "annealing", "Tabu": "tabu",
         "ParticleSwarm": "pso", "PopulationBasedTraining": "pbt"}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)


__all__ = ["Population", "Strategy", "Culling", "Annealing", "Tabu", "ParticleSwarm", "PopulationBasedTraining",
           "InitConfig", "REGISTRY", "make_strategy", "strategy_class", "hyperparameters_at"]
