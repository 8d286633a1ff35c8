"""Spend as the study's clock: what a trial has spent, the grid its reports land on, the pruner's resources.

A trial's intermediate reports use its spend (episodes, environment steps, forward examples or
milliseconds) as the step, not the iteration index, so that a pruner compares trials of different
N or population size at equal spend. Optuna's pruners compare values at *identical* steps, so the
spend is rounded down to a grid (`study.report_grid`, or `eval.every_episodes` when the spend is
episodes): a trial's report at step g is its first evaluation at or past g spent.
"""

from __future__ import annotations

import math

from ..config import BUDGETS, JobConfig

# where each spend is found in a trial's metrics (per iteration, and in the final result)
SPEND_KEYS = {**{b: f"count/{b}" for b in BUDGETS if b != "seconds"}, "seconds": "time/elapsed_s"}
assert tuple(SPEND_KEYS) == BUDGETS


def default_spend(config: JobConfig) -> str:
    """The spend the job's task kind declares as its measure (`Task.default_spend`: episodes for RL,
    as the ARS paper counts, forward examples for the others)."""
    from ..config import task_of

    return task_of(config).default_spend


def as_step(spend: str, value: float) -> int:
    """A spend as an Optuna step (an integer): seconds become milliseconds."""
    return int(round(value * 1000)) if spend == "seconds" else int(value)


def budget_step(config: JobConfig, spend: str) -> int:
    """The job's [stop] budget for `spend` as a step, 0 when it has none."""
    if config.stop is None:
        return 0
    return as_step(spend, getattr(config.stop, spend))


def per_iteration(config: JobConfig, spend: str) -> float | None:
    """An estimate of one iteration's spend (an upper bound for environment steps), None for seconds."""
    from ..config import STRATEGIES, plugin, task_of

    pop = config.population
    k = pop.size if pop is not None else 1
    # the ARS step's 2N per learner, and what the strategies score besides (`Strategy.extra_candidates`)
    extra = sum(plugin(STRATEGIES, s).extra_candidates for s in pop.strategies) if pop is not None else 0
    candidates = (2 * config.ars.directions + extra) * k
    if spend == "seconds":
        return None
    task = task_of(config)
    return candidates * task.spend_per_candidate(config, spend) + task.spend_per_iteration(config, spend)


def report_grid(config: JobConfig, spend: str, grid: int = 0, max_reports: int = 0) -> int:
    """The spend between two reports (0: every evaluation at its own spend), thinned to at most
    `max_reports` reports over the budget."""
    if not grid and spend == "episodes":
        grid = config.eval.every_episodes
    if not grid:
        return 0
    total = budget_step(config, spend) or _cap(config, spend)
    if max_reports > 0 and total:
        grid *= max(1, math.ceil(total / grid / max_reports))
    return grid


def _cap(config: JobConfig, spend: str) -> int:
    per = per_iteration(config, spend)
    return 0 if per is None else int(per * config.ars.iterations)


def pruner_resources(config: JobConfig, spend: str, grid: int, warmup_iterations: int) -> tuple[int | str, int, int]:
    """(max_resource, min_resource, warmup) in steps of `spend`, for Hyperband / successive halving / median."""
    per = per_iteration(config, spend)
    max_resource: int | str = budget_step(config, spend) or _cap(config, spend) or "auto"
    if grid:
        min_resource = grid
    elif spend == "episodes" and config.eval.every_episodes:
        min_resource = config.eval.every_episodes
    else:
        min_resource = int(config.eval.every * per) if per else 1
    warmup = int(warmup_iterations * per) if per else 0
    return max_resource, max(1, min_resource), warmup
