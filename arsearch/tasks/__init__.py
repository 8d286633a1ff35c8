"""Tasks: what is optimised. A task owns its model and scores candidate parameters (higher is better).

Each task kind is a module of its own whose class declares its keys, checks, metrics and spend
(`base.Task`); adding one is that module plus a line in `KINDS` (`arsearch.registry.TASK_KINDS`). Nothing here imports torch: the
classes load when a kind is named (`KINDS.load`), so `arsearch.config` can list the kinds cheaply.
"""

from __future__ import annotations

import importlib

from ..registry import TASK_KINDS as KINDS  # the registry lines live in arsearch.registry


def task_class(kind: str):
    return KINDS.load(kind)


def build_task(config, device=None):
    """The task of a `JobConfig`: its kind's class, built by its ``from_config``."""
    return task_class(config.task.kind).from_config(config, device)


# the classes by their old names, loaded on first use (PEP 562)
_LAZY = {"Task": "base", "SupervisedTask": "supervised", "RLTask": "rl", "GenerateTask": "generate",
         "FunctionTask": "function"}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)


__all__ = ["KINDS", "Task", "SupervisedTask", "RLTask", "GenerateTask", "FunctionTask", "build_task", "task_class"]
