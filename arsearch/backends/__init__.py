"""Backends: how the 2N perturbed candidates of an ARS iteration are evaluated (the "ARS mode").

Each backend lives in a module of its own; adding one means adding a module and a line here.
"""

from __future__ import annotations

import importlib

from .base import Backend, WorkerLost

REGISTRY = {
    "sequential": "arsearch.backends.sequential:SequentialBackend",
    "vectorized": "arsearch.backends.vectorized:VectorizedBackend",
    "hogwild": "arsearch.backends.hogwild:HogwildBackend",
    "distributed": "arsearch.backends.distributed:DistributedBackend",
}


def backend_class(name: str) -> type[Backend]:
    if name not in REGISTRY:
        raise ValueError(f"unknown backend {name!r}; allowed: {', '.join(REGISTRY)}")
    module, _, attr = REGISTRY[name].partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"backend {name!r} is not available in this version of arsearch ({e})") from None


def make_backend(name: str, config=None) -> Backend:
    return backend_class(name).from_config(config)


__all__ = ["Backend", "WorkerLost", "REGISTRY", "backend_class", "make_backend"]
