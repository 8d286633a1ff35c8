"""benchmarks/ablation.py on the function tasks: lower is better, the textbook claim is read off the cache."""

from benchmarks import ablation


def runs(task, values):
    return [{"task": task, "score": v, "spent": 64_000, "seconds": 1.0, "iterations": 1000, "curve": [],
             "initial": 1000.0} for v in values]


def section(task, cells):
    by = {(task, v): dict(enumerate(runs(task, values))) for v, values in cells.items()}
    lines, _ = ablation.task_section(task, by, len(next(iter(cells.values()))), smoke=False)
    return lines


def test_rastrigin_and_ackley_run_at_two_dimensions_at_equal_evaluations():
    assert ablation.ALIASES["rastrigin"] == ["rastrigin-100", "rastrigin-1000"]
    for task in (*ablation.ALIASES["rastrigin"], *ablation.ALIASES["ackley"]):
        spec = ablation.TASKS[task]
        assert spec["minimize"] and spec["seeds"] >= 10 and spec["budget_key"] == "forward_examples"
        data = ablation.job_data(task, "pso", 0, False, "-")
        assert data["task"]["kind"] == "function" and data["stop"] == {"forward_examples": spec["budget"]}


def test_a_lower_value_is_better_and_meets_the_textbook_claim():
    lines = section("rastrigin-100", {"single_n": [500, 510, 505, 495, 500], "single_kn": [800] * 5,
                                      "none": [600, 610, 590, 600, 605], "pso": [100, 110, 90, 105, 95],
                                      "annealing": [700, 710, 690, 705, 695]})
    verdict = next(line for line in lines if line.startswith("Verdict"))
    assert "best single learner (single_n)" in verdict and "excluding 0: pso." in verdict
    assert "worse than `none`: annealing." in verdict
    claim = next(line for line in lines if line.startswith("Textbook claim"))
    assert "**met** by pso" in claim and "f(θ₀) 1000 on average" in claim


def test_the_textbook_claim_not_met():
    lines = section("ackley-1000", {"single_n": [5, 5.1, 4.9], "single_kn": [6, 6.1, 5.9],
                                    "none": [5, 5.2, 4.8], "tabu": [5, 5.1, 4.9]})
    claim = next(line for line in lines if line.startswith("Textbook claim"))
    assert "**not met**" in claim
