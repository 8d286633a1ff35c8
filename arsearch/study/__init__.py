"""The Optuna study harness: a search space over job-config keys, one training job per trial.

The names below load on first use (PEP 562), so that a subprocess trial's `arsearch train`, which
only needs `study.subprocess_trial`, imports no Optuna.
"""

from __future__ import annotations

import importlib

_LAZY = {"DevicePool": "subprocess_trial", "EvalLogCallback": "subprocess_trial", "Objective": "objective",
         "PruningCallback": "reporting", "StudySpec": "space", "load_study": "space", "load_existing": "runner",
         "make_pruner": "runner", "make_sampler": "runner", "make_storage": "runner", "open_study": "runner",
         "run_study": "runner"}
__all__ = sorted(_LAZY)


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value          # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
