"""Backends: how the 2N perturbed candidates of an ARS iteration are evaluated (the "ARS mode").

Each backend lives in a module of its own, its class declaring its ``[ars]`` keys and checks
(`base.Backend`); adding one means adding a module and a line in `REGISTRY`
(`arsearch.registry.BACKENDS`). Nothing here imports
torch: a backend's module loads when it is named.
"""

from __future__ import annotations

import importlib

from ..registry import BACKENDS as REGISTRY  # the registry lines live in arsearch.registry


def backend_class(name: str):
    return REGISTRY.load(name)


def make_backend(name: str, config=None):
    return backend_class(name).from_config(config)


_LAZY = {"Backend": "base", "WorkerLost": "base", "BackendConfig": "base"}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)


__all__ = ["Backend", "WorkerLost", "REGISTRY", "backend_class", "make_backend"]
