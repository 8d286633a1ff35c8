"""How a trial's evaluations reach Optuna: reports at equal steps (iterations or spend), pruning,
and how a trial fails."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ..callbacks import Callback
from ..config import JobConfig

if TYPE_CHECKING:       # Optuna is imported when a trial is pruned: a subprocess trial's child never needs it
    import optuna


class TrialFailed(RuntimeError):
    """A trial that could not produce its objective values (the reason is stored on the trial)."""


class Reporter:
    """Sends a trial's evaluations to Optuna (`trial.report`) and raises TrialPruned when the pruner says so.

    The step is the iteration (``spend=None``, one report every `every` iterations) or the trial's
    spend (`arsearch.study.spend`): with a `grid`, the spend rounded down to it, one report per grid
    step, so that trials of different N meet at the same steps; without, the raw spend at every
    `every` iterations. With a `target` (value, whether it is a loss), the reported value is the
    gap to it (lower is better, as the spend-to-target objective), and a trial is never pruned at
    the evaluation where it reaches the target.

    `curve` collects every evaluation it is shown as [spend, metric value] (the raw spend, in the
    step's unit; the metric, not the gap), thinned or not reported alike: the trial's full
    learning curve, which `arsearch report` plots (what reached Optuna is only a sample of it).
    """

    def __init__(self, trial, metric: str, report: bool = True, every: int = 1, spend: str | None = None,
                 grid: int = 0, target: tuple[float, bool] | None = None):
        self.trial, self.metric, self.report, self.every = trial, metric, report, every
        self.spend, self.grid, self.target = spend, grid, target
        self.last_step = -1
        self.curve: list[list[float]] = []

    def __call__(self, iteration: int, row: dict) -> None:
        value = row.get(self.metric)
        if value is None or not math.isfinite(value):
            return
        self._record(iteration, row, value)
        if not self.report:
            return
        if self.spend is None:
            if iteration % self.every or iteration <= self.last_step:
                return
            step = int(iteration)
        else:
            from .spend import SPEND_KEYS, as_step

            spent = row.get(SPEND_KEYS[self.spend])
            if spent is None:
                return
            step = as_step(self.spend, spent)
            if self.grid:
                step = step // self.grid * self.grid
                if step == 0:           # less than one grid step spent: no equal-spend peer to compare with
                    return
            elif iteration % self.every:
                return
            if step <= self.last_step:
                return
        reached = False
        if self.target is not None:
            goal, is_loss = self.target
            value = value - goal if is_loss else goal - value
            reached = value <= 0
        self.trial.report(float(value), step=step)
        self.last_step = step
        if not reached and self.trial.should_prune():
            if self.spend:                # the spend in words, as the report's pruned column names it
                from ..reports import STEP_UNITS

                at = f"{step} {STEP_UNITS.get(self.spend, self.spend)} (iteration {iteration})"
            else:
                at = f"iteration {iteration}"
            import optuna

            raise optuna.TrialPruned(f"pruned at {at} with {self.metric} = {row.get(self.metric):.6g}")

    def carry(self, last_step: int, curve: list) -> None:
        """Continue the reports of an interrupted trial whose job this one resumes (its reports were
        already copied to this trial): only steps after `last_step` are reported, and the learning
        curve goes on from `curve`."""
        self.last_step = max(self.last_step, int(last_step))
        self.curve = [list(p) for p in curve] + self.curve

    def _record(self, iteration: int, row: dict, value: float) -> None:
        if self.spend is None:
            x = iteration
        else:
            from .spend import SPEND_KEYS, as_step

            spent = row.get(SPEND_KEYS[self.spend])
            if spent is None:
                return
            x = as_step(self.spend, spent)
        if self.curve and self.curve[-1][0] == x:      # a repeated evaluation at the same spend: the last one
            self.curve[-1] = [x, float(value)]
        elif self.curve and x < self.curve[-1][0]:     # a restarted job's points the carried curve holds
            return
        else:
            self.curve.append([x, float(value)])


# A trial's stored curve is thinned to at most this many points (every other one dropped until it
# fits, the last point always kept): a user attribute is one storage row, and a plot needs no more.
CURVE_POINTS = 500


def stored_curve(reporter: Reporter) -> dict:
    """The trial user attribute `curve`: its metric, the spend its x values count, and the points."""
    points = reporter.curve
    while len(points) > CURVE_POINTS:
        points = points[::2] if len(points) % 2 else points[::2] + [points[-1]]
    return {"metric": reporter.metric, "spend": reporter.spend or "iterations", "points": points}


class PruningCallback(Callback):
    """Reports evaluations of the study's metric to the trial (every `every` iterations, or through a
    spend-stepped `reporter`) and raises TrialPruned when the pruner says so."""

    def __init__(self, trial: optuna.Trial, metric: str, report: bool = True, every: int = 1,
                 reporter: Reporter | None = None):
        self.reporter = reporter or Reporter(trial, metric, report, every)

    # a Ctrl-C / SIGTERM to the study stops an in-process trial in the trainer's loop, after the
    # iteration's checkpoint (`Trainer._signalled`), not here: it must stop where it can resume

    def on_eval(self, trainer, iteration: int, metrics: dict[str, float]) -> None:
        row = trainer.history[-1] if trainer.history else {}
        self.reporter(iteration, {**row, **metrics})


def report_every(config: JobConfig, max_reports: int) -> int:
    """Iterations between reports to Optuna: every evaluation, thinned to at most `max_reports` per
    trial (0 = no limit). A report and a should_prune cost a few storage round trips (10-50 ms on
    SQLite), which a long trial evaluating every few iterations should not pay each time."""
    every = config.eval.every
    evals = max(config.ars.iterations // every, 1)
    if max_reports <= 0 or evals <= max_reports:
        return every
    return every * math.ceil(evals / max_reports)
