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
