"""Seed-robust studies: shared tuning seeds, racing, aggregates and held-out validation.

The jobs here are stand-ins whose result the test controls: a configuration's quality (by its
step size) plus a seed's luck that is the same for every configuration run on that seed (common
random numbers). Racing and validation read only what a job returns, so these tests check their
decisions exactly; tests/test_racing_jobs.py runs the same machinery on real `arsearch train` jobs.
"""

from __future__ import annotations

import copy
import math
import threading

import numpy as np
import optuna
import pytest

from arsearch.config import ConfigError
from arsearch.study import load_study, open_study
from arsearch.study.objective import Objective
from arsearch.study.seeds import (
    TUNING_SEEDS_ATTR,
    VALIDATION_SEEDS_ATTR,
    SeedTable,
    config_id,
    draw_seeds,
    iqm,
    km_median,
)
from arsearch.study.seeds import Objective as SeedObjective
from arsearch.study.validate import validate_study
from tests.support.study import write_study

QUALITY = {0.01: 0.50, 0.02: 0.80, 0.03: 0.70, 0.04: 0.90}


def luck(seed: int) -> float:
    """A seed's luck, large next to the differences between configurations (sd 0.3)."""
    return float(np.random.default_rng(seed).normal(0.0, 0.3))


class FakeJobs:
    """run_job stand-in: records every (step size, seed) job it runs; the result is quality + luck."""

    def __init__(self, fail_after: int | None = None):
        self.calls: list[tuple[float, int]] = []
        self.fail_after = fail_after
        self.lock = threading.Lock()

    def __call__(self, config, job_dir, primary, stop):
        with self.lock:
            if self.fail_after is not None and len(self.calls) >= self.fail_after:
                raise KeyboardInterrupt      # the worker dies here: what it finished must survive
            self.calls.append((config.ars.step_size, config.seed))
        value = QUALITY[config.ars.step_size] + luck(config.seed)
        return {"eval/accuracy": value, "count/forward_examples": 1000.0, "iterations": 10}, []


class FakeObjective(Objective):
    jobs: FakeJobs

    def job_runner(self, trial, child, parallel):
        return self.jobs


def spec_for(tmp_path, seeds: str, validate: str = "", enqueue=(), study_extra: str = ""):
    text = (f'storage = "sqlite:///{tmp_path / "optuna.db"}"\nmetric = "eval/accuracy"\ndirection = "maximize"\n'
            f'sampler = "random"\npruner = "none"\noutput = "{tmp_path / "out"}"\n{study_extra}\n'
            f'[study.seeds]\n{seeds}\n')
    if validate:
        text += f"[study.validate]\n{validate}\n"
    path = write_study(tmp_path, study=text, space='"ars.step_size" = { choice = [0.01, 0.02, 0.03, 0.04] }\n')
    for params in enqueue:
        path.write_text(path.read_text() + f'\n[[enqueue]]\n"ars.step_size" = {params}\n')
    return load_study(path)


def run_trials(spec, step_sizes, jobs):
    study, _ = open_study(spec)
    for step in step_sizes:
        study.enqueue_trial({"ars.step_size": step})
    objective = FakeObjective(spec, spec.settings.name, None)
    objective.jobs = jobs
    waiting = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.WAITING]
    study.optimize(objective, n_trials=len(waiting), catch=(Exception,))
    return study


def test_common_seeds_are_drawn_once_stored_and_shared_by_every_trial(tmp_path):
    spec = spec_for(tmp_path, "tuning = 4\nmax_per_config = 3\nparallel = 1")
    jobs = FakeJobs()
    study = run_trials(spec, [0.01, 0.02, 0.03], jobs)
    tuning = study.user_attrs[TUNING_SEEDS_ATTR]
    assert tuning == draw_seeds(spec.settings.seed, 4, 1) and len(set(tuning)) == 4
    assert 0 not in tuning[:1] or tuning != [0, 1, 2, 3]        # not the base job's fixed seed 0
    for step in (0.01, 0.02, 0.03):      # every configuration ran exactly the first 3 shared seeds
        assert sorted(s for st, s in jobs.calls if st == step) == sorted(tuning[:3])
    for t in study.trials:
        assert t.state == optuna.trial.TrialState.COMPLETE
        seeds = t.user_attrs["seeds"]
        assert [int(s) for s in seeds] == tuning[:3]
        assert t.value == pytest.approx(np.mean([QUALITY[t.params["ars.step_size"]] + luck(s) for s in tuning[:3]]))
    # a second worker (another sampler seed) reads the same seeds
    spec2 = spec_for(tmp_path, "tuning = 4\nmax_per_config = 3\nparallel = 1")
    assert SeedTable(open_study(spec2)[0]).tuning_seeds(spec2.settings.seeds, spec2.settings.seed) == tuning


def test_changing_the_seeds_of_a_running_study_is_refused(tmp_path):
    spec = spec_for(tmp_path, "tuning = [11, 22, 33]\nparallel = 1")
    run_trials(spec, [0.02], FakeJobs())
    other = spec_for(tmp_path, "tuning = [11, 23, 33]\nparallel = 1")
    with pytest.raises(ConfigError, match="created with tuning seeds"):
        open_study(other)


def test_racing_drops_a_worse_challenger_and_keeps_a_better_one(tmp_path):
    spec = spec_for(tmp_path, "tuning = 5\nrace = true\nparallel = 1")
    jobs = FakeJobs()
    # 0.02 (0.80) is the first incumbent; 0.01 (0.50) is worse on every shared seed; 0.04 (0.90) better
    study = run_trials(spec, [0.02, 0.03, 0.01, 0.04, 0.01], jobs)
    t = {i: study.trials[i] for i in range(5)}
    assert t[0].state == optuna.trial.TrialState.COMPLETE and len(t[0].user_attrs["seeds"]) == 1
    for worse in (1, 2):
        assert t[worse].state == optuna.trial.TrialState.PRUNED
        why = t[worse].user_attrs["raced_out"]
        assert why["after_seeds"] == 1 and why["challenger"] < why["incumbent"]
        assert why["incumbent_config"] == config_id({"ars.step_size": 0.02})
    assert t[3].state == optuna.trial.TrialState.COMPLETE
    tuning = study.user_attrs[TUNING_SEEDS_ATTR]
    # the incumbent gained a seed at each challenge (one per trial), the winner ran every seed it had
    table = SeedTable(study)
    assert sorted(table.rows(config_id({"ars.step_size": 0.02}))) == sorted(tuning[:4])
    # 0.02 had gained its 4th seed beside 0.04's first; 0.04 then ran batches 1, 2, 1 (capped) to match it
    assert [int(s) for s in t[3].user_attrs["seeds"]] == tuning[:4]
    assert table.incumbent(SeedObjective("maximize"), tuning) == config_id({"ars.step_size": 0.04})
    # the repeated bad configuration shares its rows: it is raced out again without a new seed job
    assert jobs.calls.count((0.01, tuning[0])) == 1
    # challengers only ever ran seeds the incumbent had already run: here, the first one
    for step in (0.03, 0.01):
        assert [s for st, s in jobs.calls if st == step] == [tuning[0]]


def test_racing_with_a_paired_test_keeps_a_challenger_until_the_test_says_worse(tmp_path):
    spec = spec_for(tmp_path, "tuning = 8\nrace = true\nparallel = 1\nalpha = 0.05")
    jobs = FakeJobs()
    study = run_trials(spec, [0.02] + [0.03] * 1 + [0.04] * 6 + [0.01], jobs)
    last = study.trials[-1]
    # with one shared seed a test cannot reject, so 0.01 is raced only once enough seeds are paired
    assert last.state == optuna.trial.TrialState.PRUNED
    why = last.user_attrs["raced_out"]
    assert why["after_seeds"] >= 5 and why["p_value"] < 0.05


def test_a_resumed_race_repeats_no_finished_seed_job(tmp_path):
    spec = spec_for(tmp_path, "tuning = 4\nmax_per_config = 4\nparallel = 1")
    jobs = FakeJobs(fail_after=2)
    study, _ = open_study(spec)
    study.enqueue_trial({"ars.step_size": 0.02})
    objective = FakeObjective(spec, spec.settings.name, None)
    objective.jobs = jobs
    with pytest.raises(KeyboardInterrupt):
        study.optimize(objective, n_trials=1)
    assert len(jobs.calls) == 2
    # the retried trial (same configuration) runs only the two seeds that were missing
    jobs.fail_after = None
    study = run_trials(spec, [0.02], jobs)
    tuning = study.user_attrs[TUNING_SEEDS_ATTR]
    assert sorted(s for _, s in jobs.calls) == sorted(tuning)
    assert len(jobs.calls) == 4
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 1 and len(done[0].user_attrs["seeds"]) == 4


def test_validation_seeds_are_fresh_and_name_the_winner_against_the_baseline(tmp_path):
    spec = spec_for(tmp_path, "tuning = 3\nparallel = 1", validate="top = 2\nseeds = 6", enqueue=[0.01])
    study = run_trials(spec, [0.02, 0.03, 0.04], FakeJobs())    # 0.01 is the enqueued baseline: trial 0
    jobs = FakeJobs()
    summary = validate_study(spec, study, run_job=jobs)
    tuning = study.user_attrs[TUNING_SEEDS_ATTR]
    fresh = study.user_attrs[VALIDATION_SEEDS_ATTR]
    assert len(fresh) == 6 and not set(fresh) & set(tuning)
    assert fresh == summary["seeds"]
    validated = {c["overrides"]["ars.step_size"] for c in summary["configs"]}
    assert validated == {0.04, 0.02, 0.01}                  # top 2 by tuning value, and the baseline
    assert sorted(s for _, s in jobs.calls) == sorted(fresh * 3)
    win = next(c for c in summary["configs"] if c["config"] == summary["winner"])
    assert win["overrides"] == {"ars.step_size": 0.04}
    assert win["fresh"]["value"] == pytest.approx(np.mean([0.9 + luck(s) for s in fresh]))
    lo, hi = win["fresh"]["interval"]
    assert lo <= win["fresh"]["value"] <= hi
    v = summary["vs_baseline"]
    assert v["paired_wins"] == 6 and v["probability_of_improvement"] > 0.5
    assert summary["rank_correlation"]["n"] == 3
    # resumable: a second call runs nothing new
    again = FakeJobs()
    validate_study(spec, study, run_job=again)
    assert again.calls == []
    from arsearch.study.show import show

    text = show(study)
    assert "held-out validation on 6 fresh seeds" in text and "<- winner" in text
    assert "step_size = 0.04" in text                       # the job config printed is the validated winner's


def test_validation_needs_shared_seeds(tmp_path):
    path = write_study(tmp_path, study='storage = "sqlite:///optuna.db"\n[study.validate]\ntop = 2\n')
    with pytest.raises(ConfigError, match=r"needs \[study.seeds\]"):
        load_study(path)


def test_unknown_seed_keys_and_bad_values_are_refused(tmp_path):
    for text, match in (("tuning = 3\nracing = true", "unknown key 'study.seeds.racing'"),
                        ("tuning = -1", "study.seeds.tuning"), ("tuning = [1, 1]", "distinct"),
                        ("tuning = 3\nalpha = 1.5", "study.seeds.alpha")):
        path = write_study(tmp_path, study=f'storage = "sqlite:///optuna.db"\n[study.seeds]\n{text}\n')
        with pytest.raises(ConfigError, match=match):
            load_study(path)
    path = write_study(tmp_path, study='aggregate = "km_median"\n')
    with pytest.raises(ConfigError, match="spend_to_target"):
        load_study(path)


# -- aggregates against values computed by hand ----------------------------------------------------------
def rows(values, success=None, spend=None):
    return [{"value": v, "success": None if success is None else success[i],
             "spend": None if spend is None else spend[i]} for i, v in enumerate(values)]


def test_aggregates_match_hand_computed_values():
    x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 100.0]
    assert SeedObjective("maximize", "mean").value(rows(x)) == pytest.approx(128 / 8)
    assert SeedObjective("maximize", "median").value(rows(x)) == pytest.approx(4.5)
    assert SeedObjective("maximize", "iqm").value(rows(x)) == pytest.approx((3 + 4 + 5 + 6) / 4)
    assert iqm([1, 2, 3, 4]) == pytest.approx(2.5)
    ok = SeedObjective("maximize", "success_rate")
    assert ok.value(rows(x, success=[True, False, True, True, False, False, True, True])) == pytest.approx(5 / 8)
    assert ok.aggregate_direction == "maximize"


def test_censored_aggregates_count_misses_at_the_budget():
    budget = 6000.0
    # spend to target: three hits and two misses (their recorded value carries the penalty 2x)
    spend = [800.0, 2000.0, 4000.0, 6000.0, 6000.0]
    success = [True, True, True, False, False]
    values = [800.0, 2000.0, 4000.0, 12000.0, 12000.0]
    r = rows(values, success, spend)
    assert SeedObjective("minimize", "restricted_mean", budget).value(r) == pytest.approx((800 + 2000 + 4000 + 6000 + 6000) / 5)
    # Kaplan-Meier: S drops by 1/5 at 800, 2000, 4000; S(4000) = 0.4 <= 0.5, so the median is 4000
    assert SeedObjective("minimize", "km_median", budget).value(r) == pytest.approx(4000.0)
    # fewer than half reach the target: no median, the censored value budget x penalty
    r2 = rows([800.0, 12000.0, 12000.0], [True, False, False], [800.0, 6000.0, 6000.0])
    assert SeedObjective("minimize", "km_median", budget, penalty=2.0).value(r2) == pytest.approx(12000.0)
    # an early censoring (a run stopped before the budget) is handled by KM, not counted as a miss at it
    assert km_median([100.0, 200.0, 300.0], [True, False, True], missing=math.inf) == pytest.approx(300.0)
    assert SeedObjective("minimize", "mean", budget).value(r) == pytest.approx(sum(values) / 5)


def test_a_seed_job_another_worker_runs_is_waited_for_not_run_twice(tmp_path, monkeypatch):
    import time

    import arsearch.study.race as race

    monkeypatch.setattr(race, "CLAIM_POLL", 0.1)
    spec = spec_for(tmp_path, "tuning = 2\nparallel = 1")
    study, _ = open_study(spec)
    tuning = SeedTable(study).tuning_seeds(spec.settings.seeds, spec.settings.seed)
    cid = config_id({"ars.step_size": 0.02})
    other = SeedTable(study)
    other.claim(cid, tuning[0], token="another-machine:1:1")            # a live claim by another worker

    def finish_elsewhere():
        time.sleep(1.0)
        other.record(cid, tuning[0], {"value": 0.123, "success": None, "spend": 1.0, "trial": 99})
    threading.Thread(target=finish_elsewhere).start()
    jobs = FakeJobs()
    study = run_trials(spec, [0.02], jobs)
    assert jobs.calls == [(0.02, tuning[1])]                          # only the unclaimed seed ran here
    assert study.trials[0].user_attrs["seeds"][str(tuning[0])] == 0.123
    # a claim older than the stale limit is taken over
    from arsearch.study import seeds

    monkeypatch.setattr(seeds, "CLAIM_STALE", 0.0)
    other.claim(config_id({"ars.step_size": 0.03}), tuning[0], token="dead-worker:1:1")
    jobs = FakeJobs()
    run_trials(spec, [0.03], jobs)
    assert sorted(jobs.calls) == sorted([(0.03, tuning[0]), (0.03, tuning[1])])


def test_two_workers_claiming_one_seed_job_at_the_same_moment_never_both_get_it(tmp_path):
    # the fault CI met: two workers each raced a challenger, both gave the incumbent the same new seed
    # and both ran it in one checkpoint dir. Claims are written then re-read, so at most one keeps a job.
    spec = spec_for(tmp_path, "tuning = 2\nparallel = 1")
    study, _ = open_study(spec)
    won: list[list[str]] = []
    for round_ in range(20):
        start = threading.Barrier(2)
        winners: list[str] = []

        def worker(token, job, start, winners):
            table = SeedTable(study)
            start.wait()
            if table.try_claim(*job, token):
                winners.append(token)
        threads = [threading.Thread(target=worker, args=(f"host:{i}:1", (f"cfg{round_}", 7), start, winners))
                   for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(winners) <= 1, (round_, winners)
        won.append(winners)
    assert sum(len(w) for w in won) >= 10       # mostly one of the two gets the job (both may withdraw)
    # a job whose row is already stored is not claimed again
    table = SeedTable(study)
    table.record("done", 3, {"value": 1.0, "success": None, "spend": 1.0, "trial": 0})
    assert not SeedTable(study).try_claim("done", 3, "host:9:1")


def test_the_study_report_says_how_far_to_trust_the_answer(tmp_path):
    from arsearch.reports import write_report

    spec = spec_for(tmp_path, "tuning = 3\nparallel = 1", validate="top = 2\nseeds = 4", enqueue=[0.01])
    study = run_trials(spec, [0.02, 0.04], FakeJobs())
    validate_study(spec, study, run_job=FakeJobs())
    text = write_report(study, tmp_path / "reports").read_text()
    assert "## How far to trust the answer" in text
    assert str(study.user_attrs[VALIDATION_SEEDS_ATTR]) in text and "Spearman" in text and "**yes**" in text


@pytest.mark.parametrize("task", ["hopper", "swimmer"])
def test_the_raced_studies_search_the_same_space_as_the_one_seed_studies(task):
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "studies"
    raced, one = load_study(root / f"{task}_raced.toml"), load_study(root / f"{task}_target.toml")
    assert [vars(p) for p in raced.params] == [vars(p) for p in one.params]
    assert raced.enqueue == one.enqueue and raced.base == one.base
    for key in ("sampler", "pruner", "startup_trials", "warmup_steps", "max_reports", "objective", "spend"):
        assert getattr(raced.settings, key) == getattr(one.settings, key)
    assert raced.settings.seeds.race and raced.settings.validate.top == 3


def test_the_smac_peer_searches_the_same_conditional_space():
    """benchmarks/smac_peer.py's ConfigSpace: every sampled configuration maps back to exactly the keys the
    study itself would set (conditions included) and makes a valid job."""
    pytest.importorskip("ConfigSpace")
    from pathlib import Path

    from arsearch.config import apply_overrides, load_job
    from benchmarks.smac_peer import config_space, overrides_of

    spec = load_study(Path(__file__).resolve().parents[1] / "studies" / "hopper_raced.toml")
    cs = config_space(spec, seed=1)
    seen_population = False
    for config in cs.sample_configuration(200):
        overrides = overrides_of(spec, config)
        assert set(overrides) <= {p.key for p in spec.params}
        # a key is set exactly when its conditions hold on the values set before it
        assert ("ars.top" in overrides) == (overrides["ars.version"] in ("v1t", "v2t"))
        assert ("population.epoch" in overrides) == (overrides["population.size"] in (2, 4))
        if "population.strategies" in overrides:
            seen_population = True
            on = overrides["population.strategies"]
            assert ("population.pso.inertia" in overrides) == ("pso" in on)
        load_job(data=apply_overrides(copy.deepcopy(spec.base), dict(overrides)))
    assert seen_population



def test_the_peer_comparison_counts_a_miss_at_the_budget_and_ties_as_half():
    """The report's raced-best-against-SMAC3 line: P(X < Y) over all pairs (ties half), paired wins and ties."""
    from benchmarks.tuned_vs_paper import _peer_line

    seeds = [1, 2, 3, 4]
    fresh = {"raced": [2000, 6000, 3000, 2500], "smac": [6000, 6000, 5000, 6000]}     # 6000: a miss
    rows = {k: {"fresh": {"per_seed": dict(zip(map(str, seeds), v)), "value": sum(v) / 4}} for k, v in fresh.items()}
    stats = {"raced": {"label": "raced rank 1", "median": 2750, "reached": 3, "n": 4},
             "smac": {"label": "SMAC3 incumbent", "median": float("inf"), "reached": 1, "n": 4}}
    [line] = _peer_line(stats["raced"], rows["raced"], stats["smac"], rows["smac"], seeds, 6000)
    # pairs (x, y) with x < y: 2000, 3000 and 2500 beat all 4 (12); 6000 ties three 6000s (1.5 of 16)
    assert "probability of improvement 0.84" in line and "fewer episodes on 3 seeds, ties on 1" in line
    assert "median >6000 episodes, success 1/4" in line and "median 2750, success 3/4" in line

def test_the_pruner_learns_from_raced_out_trials():
    """A raced-out trial ran its first seed to the end: a median pruner counts its curve like a completed
    trial's (Optuna's own pruners read COMPLETE trials only)."""
    from arsearch.study.race import RacedOutAware

    study = optuna.create_study(direction="minimize", pruner=RacedOutAware(
        optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)))
    for _ in range(3):                           # three raced-out trials whose first seed reported 1.0 at step 1
        t = study.ask()
        t.report(1.0, step=1)
        t.set_user_attr("raced_out", {"after_seeds": 1})
        study.tell(t, state=optuna.trial.TrialState.PRUNED)
    worse = study.ask()
    worse.report(5.0, step=1)
    assert worse.should_prune()                 # worse than their median at the same step
    plain = optuna.create_study(direction="minimize", pruner=optuna.pruners.MedianPruner(n_startup_trials=2))
    for t in study.trials:
        plain.add_trial(t)
    again = plain.ask()
    again.report(5.0, step=1)
    assert not again.should_prune()             # Optuna's pruner alone sees no completed trial


@pytest.mark.parametrize("pruner", ["none", "median", "hyperband", "wilcoxon"])
def test_an_in_process_raced_study_on_real_jobs(tmp_path, pruner):
    """parallel = 1 and no subprocess: seed jobs run in this process, through the job lifecycle, with every
    pruner wrapped so that it learns from raced-out trials."""
    from arsearch.study import run_study

    (tmp_path / "base.toml").write_text(
        'seed = 0\n[task]\nkind = "function"\nfunction = "sphere"\ndim = 10\ninit_scale = 1.0\n'
        '[ars]\ndirections = 4\ntop = 2\nnoise = 0.05\niterations = 20\n[eval]\nevery = 5\n'
        '[tracking]\nenabled = false\n[checkpoint]\ndir = "x"\nevery = 1000\n')
    (tmp_path / "study.toml").write_text(
        f'[study]\nname = "inproc"\nbase = "base.toml"\nstorage = "sqlite:///{tmp_path / "o.db"}"\n'
        f'metric = "eval/value"\ndirection = "minimize"\nn_trials = 4\nsampler = "random"\npruner = "{pruner}"\n'
        f'startup_trials = 1\n'
        f'tracking = false\noutput = "{tmp_path / "out"}"\n[study.seeds]\ntuning = 2\nrace = true\nparallel = 1\n'
        '[space]\n"ars.step_size" = { choice = [0.0001, 0.1] }\n')
    study = run_study(load_study(tmp_path / "study.toml"))
    tuning = study.user_attrs[TUNING_SEEDS_ATTR]
    assert [t.state for t in study.trials].count(optuna.trial.TrialState.FAIL) == 0
    assert len(rows_of(study)) >= 2 and all(int(k.rsplit(":", 1)[1]) in tuning for k in rows_of(study))
    for key, row in rows_of(study).items():       # each row's job ran on its own seed, in its own directory
        cid, seed = key.split(":")[1:]
        assert (tmp_path / "out" / "inproc" / "configs" / cid / f"seed_{seed}" / "final.pt").exists()
        assert row["value"] >= 0


def rows_of(study):
    return {k: v for k, v in study.user_attrs.items() if k.startswith("arsearch.run:")}
