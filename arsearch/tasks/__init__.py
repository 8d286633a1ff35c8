"""Tasks: what is optimised. A task owns its model and scores candidate parameters (higher is better)."""

from .base import Task
from .rl import RLTask
from .supervised import SupervisedTask


def build_task(config, device=None) -> Task:
    """The task of a `JobConfig`."""
    if config.task.kind == "generate":   # imports transformers: only when asked for
        from .generate import GenerateTask

        return GenerateTask.from_config(config, device)
    if config.task.kind == "rl":
        return RLTask.from_config(config, device)
    return SupervisedTask.from_config(config, device)


__all__ = ["Task", "SupervisedTask", "RLTask", "build_task"]
