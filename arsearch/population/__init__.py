"""Population strategies: K ARS learners trained together, search heuristics acting on them.

`Population` is the learner; each strategy is one small class in a module of its own (see
`base.Strategy`). Adding a strategy means adding a module and a line in `REGISTRY` (and, for a
job config, its name in ``config.PopulationConfig.strategies``).
"""

from __future__ import annotations

import importlib

from .annealing import Annealing
from .base import Strategy
from .culling import Culling
from .population import Population
from .pso import ParticleSwarm
from .tabu import Tabu

REGISTRY = {
    "culling": "arsearch.population.culling:Culling",
    "annealing": "arsearch.population.annealing:Annealing",
    "tabu": "arsearch.population.tabu:Tabu",
    "pso": "arsearch.population.pso:ParticleSwarm",
}


def make_strategy(name: str, config) -> Strategy:
    """The strategy `name` with its settings from ``config.population.<name>``."""
    if name not in REGISTRY:
        raise ValueError(f"unknown population strategy {name!r}; allowed: {', '.join(REGISTRY)}")
    module, _, attr = REGISTRY[name].partition(":")
    return getattr(importlib.import_module(module), attr).from_config(config)


__all__ = ["Population", "Strategy", "Culling", "Annealing", "Tabu", "ParticleSwarm", "REGISTRY", "make_strategy"]
