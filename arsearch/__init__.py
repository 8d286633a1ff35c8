"""arsearch: Augmented Random Search for PyTorch models."""

from __future__ import annotations

import importlib

__version__ = "0.1.0"
__all__ = ["ARS", "RunningNorm", "VERSIONS", "update_weights"]

# The public names live in modules that import torch (~2-3 s); they are loaded on first use
# (PEP 562), so `import arsearch` -- and with it `arsearch --help` -- stays fast.
_LAZY = {"ARS": "ars", "VERSIONS": "ars", "update_weights": "ars", "RunningNorm": "normalizer"}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'arsearch' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value          # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
