"""Population strategies: K ARS learners trained together, search heuristics acting on them.

`Population` is the learner; each strategy is one small class in a module of its own, with its
config dataclass (``Config``) beside it (see `base.Strategy`). Adding a strategy means adding a
module and a line in `REGISTRY`: `arsearch.config` builds ``population.strategies``' allowed
names and the ``[population.<name>]`` tables from this registry.
"""

from __future__ import annotations

import importlib

from .annealing import Annealing
from .base import Strategy
from .culling import Culling
from .pbt import PopulationBasedTraining
from .population import InitConfig, Population, hyperparameters_at
from .pso import ParticleSwarm
from .tabu import Tabu

REGISTRY = {
    "culling": "arsearch.population.culling:Culling",
    "annealing": "arsearch.population.annealing:Annealing",
    "tabu": "arsearch.population.tabu:Tabu",
    "pso": "arsearch.population.pso:ParticleSwarm",
    "pbt": "arsearch.population.pbt:PopulationBasedTraining",
}


def strategy_class(name: str) -> type[Strategy]:
    if name not in REGISTRY:
        raise ValueError(f"unknown population strategy {name!r}; allowed: {', '.join(REGISTRY)}")
    module, _, attr = REGISTRY[name].partition(":")
    return getattr(importlib.import_module(module), attr)


def make_strategy(name: str, settings=None) -> Strategy:
    """The strategy `name` from its settings (its ``Config``; None: the defaults), or from a
    `JobConfig` (its table ``population.<name>``)."""
    cls = strategy_class(name)
    if settings is not None and hasattr(settings, "population"):     # a whole JobConfig
        return cls.from_config(settings)
    return cls.from_settings(settings if settings is not None else cls.Config())


__all__ = ["Population", "Strategy", "Culling", "Annealing", "Tabu", "ParticleSwarm", "PopulationBasedTraining",
           "InitConfig", "REGISTRY", "make_strategy", "strategy_class", "hyperparameters_at"]
