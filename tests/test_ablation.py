"""benchmarks/ablation.py: its intervals match published values, and each task's verdict reads the
criterion the issue fixed (success rate on Swimmer, episodes to target on Hopper, accuracy on digits)."""

import pytest

from benchmarks import ablation


def test_wilson_and_newcombe_match_published_values():
    # Newcombe (1998), "Interval estimation for the difference between independent proportions",
    # example (a): 56/70 against 48/80, method 10 gives +0.0524 to +0.3339; Wilson's 81/263 is 0.2553 to 0.3662.
    d, lo, hi = ablation.newcombe(56, 70, 48, 80)
    assert d == pytest.approx(0.2) and lo == pytest.approx(0.0524, abs=1e-4) and hi == pytest.approx(0.3339, abs=1e-4)
    p, lo, hi = ablation.wilson(81, 263)
    assert lo == pytest.approx(0.2553, abs=1e-4) and hi == pytest.approx(0.3662, abs=1e-4)
    assert ablation.wilson(0, 10)[1] == 0.0


def runs(task, outcomes, budget):
    """Cached-run records: an int is the episodes at which the target was reached, None never."""
    return [{"task": task, "reached": e is not None, "to_target": e, "score": 1.0 if e else 0.0,
             "spent": e or budget, "seconds": 1.0, "iterations": 1, "curve": []} for e in outcomes]


def verdict_of(task, cells):
    budget = ablation.TASKS[task]["budget"]
    by = {(task, v): dict(enumerate(runs(task, outcomes, budget))) for v, outcomes in cells.items()}
    lines, _ = ablation.task_section(task, by, len(next(iter(cells.values()))), smoke=False)
    return next(line for line in lines if line.startswith("Verdict"))


def test_hopper_verdict_is_on_episodes_to_target_with_failures_at_the_budget():
    # every run of both reaches the target (equal success rates), but pbt in a fifth of the episodes
    cells = {"single_n": [5000, 5500, 4800, 5200, 5900], "single_kn": [5000, 5600, 5800, 5900, 5700],
             "none": [3000, 2900, 3100, 2800, 3300], "pbt": [1000, 1100, 900, 1200, 1050],
             "culling": [None] * 5}
    line = verdict_of("hopper", cells)
    assert "on episodes to target" in line
    assert "(single_n) with the CI of the difference excluding 0: none, pbt." in line
    assert "worse than `none`: culling." in line          # never reaching it counts as the whole budget


def test_swimmer_verdict_is_on_success_rate():
    # pbt reaches the target faster on the same seeds, but success rates are equal: no verdict for it
    cells = {"single_n": [1900] * 5 + [None] * 5, "single_kn": [None] * 10,
             "none": [1800] * 5 + [None] * 5, "pbt": [100] * 5 + [None] * 5, "all": [400] * 10}
    line = verdict_of("swimmer", cells)
    assert "on success rate" in line and "excluding 0: all." in line


def test_a_target_first_reached_past_the_budget_does_not_count():
    # a population iteration is 64 episodes, so a Hopper run ends at 6016: reaching 3120 there is a miss
    budget = ablation.TASKS["hopper"]["budget"]
    late, in_time = runs("hopper", [6016, 5990], budget)
    assert not ablation.reached(late, budget) and ablation.restricted_episodes(late, budget) == budget
    assert ablation.reached(in_time, budget) and ablation.restricted_episodes(in_time, budget) == 5990


def test_the_best_single_learner_is_picked_on_the_tasks_criterion():
    # single_kn reaches the target on every seed but late; single_n on four of five, early
    cells = {"single_n": [1000, 1000, 1000, 1000, None], "single_kn": [5000] * 5, "none": [5000] * 5}
    assert "best single learner (single_n)" in verdict_of("hopper", cells)       # episodes: 2000 against 5000
    cells = {"single_n": [100] * 9 + [None], "single_kn": [1900] * 10, "none": [1900] * 10}
    assert "best single learner (single_kn)" in verdict_of("swimmer", cells)     # success rate: 1.0 against 0.9
