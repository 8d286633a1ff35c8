"""benchmarks/peers.py is resumable: finished runs are cached and skipped, the report lists what is missing."""

import json

import pytest

pytest.importorskip("gymnasium")

from benchmarks import peers  # noqa: E402


def test_schedule_interleaves_systems_and_rotates_their_order():
    order = peers.schedule(["Hopper", "HalfCheetah"], ["a", "b", "c"], [0, 1])
    assert len(order) == 12 and len(set(order)) == 12
    firsts = [order[i][1] for i in range(0, 12, 3)]
    assert firsts == ["a", "b", "b", "c"]          # (seed + task) rotates the first system
    assert [t for t, _, _ in order[:6]] == ["Hopper"] * 3 + ["HalfCheetah"] * 3


@pytest.mark.multiprocess          # each run of benchmarks/peers.py is its own subprocess
def test_smoke_run_is_cached_skipped_and_reported(tmp_path, capsys):
    args = ["--smoke", "--task", "Hopper", "--system", "numpy", "--seeds", "0", "--out", str(tmp_path)]
    assert peers.main(args) == 0
    cached = tmp_path / "Hopper-numpy-seed0.json"
    run = json.loads(cached.read_text())
    assert run["episodes"] >= run["budget"] and run["steps"] > 0 and run["curve"]
    first = capsys.readouterr().out
    assert "running Hopper / numpy / seed 0" in first

    stamp = cached.stat().st_mtime_ns
    assert peers.main(args) == 0
    assert "cached: Hopper-numpy-seed0.json" in capsys.readouterr().out
    assert cached.stat().st_mtime_ns == stamp

    # asking for more than is cached: the report says which cells are missing
    body = peers.report(tmp_path, ["Hopper"], ["numpy", "sb3-contrib"], [0, 1], smoke=True)
    assert "Hopper / sb3-contrib / seed 0" in body and "Hopper / numpy / seed 1" in body
    assert "Hopper / numpy / seed 0" not in body.split("## Missing cells")[1]


@pytest.mark.multiprocess
def test_two_core_system_is_the_one_process_run_split_over_two_ranks(tmp_path):
    # arsearch-2core (distributed, 2 ranks) is the synchronous algorithm of arsearch-1core: the same
    # episodes, steps and learning curve, up to the summation order of the state statistics
    args = ["--smoke", "--task", "Hopper", "--seeds", "0", "--out", str(tmp_path), "--system"]
    assert peers.main(args + ["arsearch-1core", "arsearch-2core"]) == 0
    one, two = (json.loads((tmp_path / f"Hopper-arsearch-{s}-seed0.json").read_text()) for s in ("1core", "2core"))
    assert (two["episodes"], two["steps"]) == (one["episodes"], one["steps"]) and one["steps"] > 0
    assert [p["episodes"] for p in two["curve"]] == [p["episodes"] for p in one["curve"]]
    assert [p["return"] for p in two["curve"]] == pytest.approx([p["return"] for p in one["curve"]], rel=1e-6)
    assert 0 < two["cpu_seconds"] < 60


def test_report_bounds_the_ratio_when_a_peer_stopped_before_the_threshold(tmp_path):
    def run(system, seed, reached_s, train_s):
        reached = {"episodes": 100, "steps": 1000, "seconds": reached_s, "return": 3200.0} if reached_s else None
        return {"task": "Hopper", "system": system, "seed": seed, "reached": reached, "deadline_hit": reached is None,
                "episodes": 100, "steps": 1000, "train_seconds": train_s, "steps_per_s": 10.0, "cpu_seconds": train_s,
                "steps_per_cpu_s": 10.0, "final_return": 3000.0, "budget": 8000}

    runs = [run("arsearch-1core", 0, 10.0, 10.0), run("arsearch-1core", 1, 20.0, 20.0),
            run("sb3-contrib", 0, 50.0, 50.0), run("sb3-contrib", 1, None, 90.0)]   # seed 1 hit the deadline
    for r in runs:
        peers.cache_path(tmp_path, r["task"], r["system"], r["seed"]).write_text(json.dumps(r))
    body = peers.report(tmp_path, ["Hopper"], ["arsearch-1core", "sb3-contrib"], [0, 1], smoke=True)
    # sb3: median of (50, ≥90) ≥ 70; arsearch: median 15 → at least ×4.67
    assert "**≥ ×4.67**" in body and "| ≥ 70 |" in body
    assert ">100 (deadline)" in body


def test_a_median_is_exact_when_the_runs_that_missed_cannot_move_it():
    assert peers.censored_median([(100.0, True), (120.0, True), (90.0, False)]) == (100.0, False)   # 90 < 100: could
    assert peers.censored_median([(100.0, True), (120.0, True), (130.0, False)]) == (120.0, True)   # ≥130 is the top
    assert peers.fmt_ratio((300.0, True), (100.0, False)) == "≤ ×3.00"
    assert peers.fmt_ratio((300.0, False), (100.0, True)) == "≥ ×3.00"
