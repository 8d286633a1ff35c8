"""benchmarks/posttrain_rl.py's correction for TRL's loss forward on GPT-2 (learned absolute positions)."""

import pytest
import torch

pytest.importorskip("transformers")


def test_mask_positions_make_the_loss_forward_score_what_generate_sampled_and_leave_generate_alone(model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from benchmarks.posttrain_rl import with_mask_positions

    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    tok = AutoTokenizer.from_pretrained(model_dir)
    tok.padding_side = "left"
    enc = tok(["07+42=", "1+2=", "99+1="], return_tensors="pt", padding=True)
    assert (enc["attention_mask"] == 0).any()                   # some prompts are left-padded
    kw = {"max_new_tokens": 3, "do_sample": False, "pad_token_id": tok.pad_token_id}
    out = model.generate(**enc, **kw, output_logits=True, return_dict_in_generate=True)
    sampled = torch.stack(out.logits, 1)
    seq = out.sequences
    mask = torch.cat([enc["attention_mask"], torch.ones(3, 3, dtype=torch.long)], 1)
    width = enc["input_ids"].shape[1]

    def loss_forward():        # what TRL computes: input ids and mask, no position ids
        return model(input_ids=seq, attention_mask=mask).logits[:, width - 1:-1]

    padded = 1
    assert (loss_forward()[padded] - sampled[padded]).abs().max() > 1e-3   # the mismatch, unpatched
    with_mask_positions(model)
    assert torch.allclose(loss_forward(), sampled, atol=1e-4)               # now the sampler's policy
    # TRL's fused log-prob forward calls the backbone itself, by keyword, bypassing the LM head's forward
    hidden = model.base_model(input_ids=seq, attention_mask=mask, use_cache=False).last_hidden_state
    assert torch.allclose(model.lm_head(hidden)[:, width - 1:-1], sampled, atol=1e-4)
    assert torch.equal(model.generate(**enc, **kw), seq)                    # generation as before


def test_a_second_budget_keeps_its_own_rows_and_the_report_sets_the_budgets_side_by_side(tmp_path, monkeypatch):
    """A run at a new budget must not skip rows because the 4,096-sequence run finished them (they share
    names), and it may reuse that run's tuning records; the report's "Across budgets" table marks a
    method whose interval lies above the pretrained model's."""
    pytest.importorskip("scipy")
    import json

    import benchmarks.posttrain_rl as bm

    root = tmp_path / "data"
    monkeypatch.setattr(bm, "DATA_ROOT", root)
    monkeypatch.setattr(bm, "REPORT", tmp_path / "report.md")
    monkeypatch.setattr(bm, "PLOT", tmp_path / "plot.png")
    assert bm.data_dir(4096) == root and bm.data_dir(8192) == root / "budget-8192"
    pre = {"seconds": 1.0, "epochs": 1, "lr": 1e-3, "train_loss": 1.0, "test_reward": 0.2, "test_success": 0.1,
           "params": 10, "date": "d"}
    params = {"grpo": {"learning_rate": 1e-4, "num_generations": 4, "beta": 0.0},
              "ars-full": {"ars.step_size": 1e-3, "ars.noise": 1e-2, "ars.directions": 4}}
    params["ars-rank"] = params["ars-full"]

    def write_rows(budget, rewards):
        d = bm.data_dir(budget)
        d.mkdir(parents=True, exist_ok=True)
        (d / "pretrain.json").write_text(json.dumps(pre))
        for m in rewards:
            for s, r in enumerate(rewards[m]):
                row = {"reward": r, "success": r / 2, "sequences": budget, "iterations": 8, "train_s": 1.0, "peak_mb": 100.0,
                       "params": params[m],
                       "curve": [{"sequences": 0, "reward": 0.2}, {"sequences": budget, "reward": r}]}
                (d / f"final-{m}-seed{s}.json").write_text(json.dumps(row))

    write_rows(4096, {m: [0.19, 0.2, 0.21] for m in bm.ROUND_1})
    for m in bm.ROUND_1:   # the tuning records, at 4,096 only
        (root / f"tune-{m}.json").write_text(json.dumps(
            {"trials": [{"params": params[m], "value": 0.2}], "best": {"params": params[m], "value": 0.2},
             "seconds": 60.0}))
    monkeypatch.setattr(bm, "DATA", bm.data_dir(8192))
    monkeypatch.setattr(bm, "TUNE_DATA", root)
    assert bm.load("final-grpo-seed0") is None               # 8,192 has not run: not skipped
    assert bm.load("tune-grpo", bm.TUNE_DATA) is not None    # the reused tuning
    write_rows(8192, {"ars-full": [0.19, 0.2, 0.21], "ars-rank": [0.15, 0.16, 0.17], "grpo": [0.3, 0.31, 0.33]})
    assert bm.budgets_measured() == [4096, 8192]

    (root / "pilots").mkdir()
    (root / "pilots" / "P1.json").write_text(json.dumps(
        {"name": "P1", "method": "grpo", "params": params["grpo"], "sequences": 16384,
         "curve": [{"sequences": 0, "reward": 0.2}, {"sequences": 16384, "reward": 0.25}]}))

    text = bm.report(8192, 3, 1, tune_budget=4096)
    pilots = text[text.index("## Pilots"):]
    assert "| P1 | GRPO (TRL) | learning_rate = 0.0001, num_generations = 4, beta = 0 | 16,384 | 0: 0.200, 16,384: 0.250 |" in pilots
    table = text[text.index("## Across budgets"):]
    line_4096 = next(x for x in table.splitlines() if x.startswith("| 4,096 |"))
    line_8192 = next(x for x in table.splitlines() if x.startswith("| 8,192 |"))
    assert "↑" not in line_4096 and "↓" not in line_4096
    assert line_8192.count("↑") == 1 and line_8192.count("↓") == 1     # GRPO above, rank-4 ARS below
    assert line_8192.endswith("| 4,096 |")                             # settings tuned at: the reused study
    assert "**Not met** at this scale" in text and "ARS's held-out reward is below GRPO's." in text   # GRPO learned
    assert "--budget 8192 --tune-budget 4096" in text
    assert "reused" in text
    assert "revised" not in text and "ars-full-r2" not in text    # no round-2 rows yet: none shown, none missing

    # round 2: a revised-space ARS study at 4,096 and its final rows at 8,192 only
    r2 = {"ars.step_size": 1e-3, "ars.noise": 3e-3, "ars.directions": 4, "task.batch_size": 4}
    (root / "tune-ars-full-r2.json").write_text(json.dumps(
        {"trials": [{"params": r2, "value": 0.22}], "best": {"params": r2, "value": 0.22}, "seconds": 60.0,
         "budget": 4096}))
    rewards = [0.27, 0.29, 0.3]
    for s, r in enumerate(rewards[:2]):
        (bm.data_dir(8192) / f"final-ars-full-r2-seed{s}.json").write_text(json.dumps(
            {"reward": r, "success": r / 2, "sequences": 8192, "train_s": 1.0, "peak_mb": 100.0, "params": r2,
             "curve": [{"sequences": 0, "reward": 0.2}, {"sequences": 8192, "reward": r}]}))
    (bm.data_dir(8192) / "pretrained-val.json").write_text(json.dumps({"reward": 0.2, "success": 0.1}))
    (root / "pilots" / "A1.json").write_text(json.dumps(     # an ARS pilot that learned only after 4,096
        {"name": "A1", "method": "ars-full", "params": r2, "sequences": 12000,
         "curve": [{"sequences": 0, "reward": 0.2}, {"sequences": 3000, "reward": 0.18},
                   {"sequences": 6000, "reward": 0.19}, {"sequences": 9000, "reward": 0.24}]}))
    text = bm.report(8192, 3, 1, tune_budget=4096)
    assert ("up to 6,000 sequences and above it first at 9,000 (0.180 at 3,000): a trial that stops at 4,096 "
            "sequences") in text
    assert "**Partial: 2 rows still missing** (final-ars-full-r2-seed2, memory)" in text
    assert "| ARS, full-rank, revised space | 2 | 0.280 [" in text            # the seeds it has
    assert "- ARS, full-rank, revised space − GRPO: reward -0.033 [" in text
    assert "prompts per iteration B in {4, 8, 16}" in text and "batch_size 4) → 0.220" in text
    table = text[text.index("## Across budgets"):text.index("## Pilots")]
    header = next(x for x in table.splitlines() if x.startswith("| sequences per run"))
    assert header.split(" | ")[4] == "ARS, full-rank, revised space"
    assert next(x for x in table.splitlines() if x.startswith("| 4,096 |")).split(" | ")[4] == "—"   # not run there
    assert "0.280 [" in next(x for x in table.splitlines() if x.startswith("| 8,192 |")).split(" | ")[4]
    assert next(x for x in table.splitlines() if x.startswith("| 8,192 |")).endswith("| 4,096 |")
    round2 = text[text.index("**Round 2, a revised ARS space.**"):]
    assert "a researcher's choice GRPO did not get (GRPO's space was not revised)" in round2
    assert "**ARS now learns**" in round2 and "(2 of 3 seeds)" in round2
    assert "so it is below GRPO" in round2                                   # 0.28 against 0.31: the interval is below 0
    assert "**Not met** at this scale" in text    # the first round's verdict stands as it was, beside round 2
    (bm.data_dir(8192) / "final-ars-full-r2-seed2.json").write_text(json.dumps(
        {"reward": 0.33, "success": 0.15, "sequences": 8192, "train_s": 1.0, "peak_mb": 100.0, "params": r2,
         "curve": [{"sequences": 0, "reward": 0.2}, {"sequences": 8192, "reward": 0.33}]}))
    assert "so it matches (the interval includes 0) GRPO — with 3 and 3 seeds" in bm.report(8192, 3, 1, tune_budget=4096)
    monkeypatch.setattr(bm, "DATA", root)       # the 4,096 report: round 2 has a study there but no rows
    text = bm.report(4096, 3, 1)
    assert "final-ars-full-r2" not in text                                   # not listed as missing
    assert "| ARS, full-rank, revised space (not run at this budget) | 0 | — |" in text
    assert "Its final rows ran at 8,192 sequences, not at this budget (`--budget 8192` reports them)." in text


def test_a_method_with_its_own_space_hands_that_space_to_the_study_and_its_trials_spend_the_budget(
        tmp_path, monkeypatch):
    """ars-full-r2 searches prompts per iteration (task.batch_size) and smaller steps and noise: the study
    file tune_ars writes must hold that space, not the first round's, and arsearch's study loader must make
    from it a job that draws the sampled prompts per iteration and stops at the tuning budget; the final
    rows' iteration count must spend the same number of sequences."""
    import optuna

    import benchmarks.posttrain_rl as bm
    from arsearch.study.space import load_study

    monkeypatch.setattr(bm, "WORK", tmp_path / "work")
    ran = []

    class Stop(Exception):
        pass

    def study_run(cmd, **kwargs):       # where `arsearch study run` would start: read what it was given
        ran.append(cmd)
        raise Stop

    monkeypatch.setattr(bm.subprocess, "run", study_run)
    with pytest.raises(Stop):
        bm.tune_ars("ars-full-r2", 4, 4096)
    study_file = tmp_path / "work" / "tune" / "ars-full-r2" / "study.toml"
    assert ran and str(study_file) in ran[0]
    spec = load_study(study_file)
    space = {p.key: p for p in spec.params}
    assert space["task.batch_size"].choices == [4, 8, 16] and space["ars.directions"].choices == [4, 8]
    assert (space["ars.noise"].low, space["ars.noise"].high) == (3e-4, 3e-3)
    assert (space["ars.step_size"].low, space["ars.step_size"].high) == (1e-4, 3e-3)
    picked = {"ars.step_size": 1e-3, "ars.noise": 3e-3, "ars.directions": 4, "task.batch_size": 4}
    _, job = spec.resolve(optuna.trial.FixedTrial(picked))
    assert job.task.batch_size == 4 and job.ars.directions == 4 and job.ars.noise_rank == 0
    assert job.stop.forward_examples == 4096
    assert bm.ars_iterations(picked, 12288) == 384                  # 12,288 / (2 · 4 directions · 4 prompts)
    assert bm.ars_iterations({"ars.directions": 4}, 12288) == 96     # the first round's 16 prompts

    with pytest.raises(Stop):                                        # the first round's study keeps its space
        bm.tune_ars("ars-full", 4, 4096)
    first = {p.key for p in load_study(tmp_path / "work" / "tune" / "ars-full" / "study.toml").params}
    assert first == {"ars.step_size", "ars.noise", "ars.directions"}


def test_a_re_pretrained_model_keeps_the_first_models_record_and_is_checked_against_it(
        tmp_path, monkeypatch, model_dir, capsys):
    """The model directory is outside git and can be lost; making it again must not overwrite the record
    of the model the committed rows ran on, and a re-made model that scores differently is said aloud."""
    import json
    import shutil
    import subprocess

    import benchmarks.posttrain_rl as bm

    monkeypatch.setattr(bm, "WORK", tmp_path / "work")
    monkeypatch.setattr(bm, "DATA", tmp_path / "data")
    (tmp_path / "data").mkdir()
    first = {"seconds": 500.0, "epochs": 5, "lr": 1e-3, "train_loss": 0.9, "test_reward": 0.198,
             "test_success": 0.11, "params": 1, "date": "first"}
    (tmp_path / "data" / "pretrain.json").write_text(json.dumps(first))
    (tmp_path / "data" / "pretrained-val.json").write_text(json.dumps({"reward": 0.5, "success": 0.4}))

    def fake_pretrain(cmd, **kwargs):          # `arsearch pretrain`: the tiny model stands in for the real one
        shutil.copytree(model_dir, tmp_path / "work" / "pretrained")
        out = {"epochs": 5, "train_loss": 0.95, "eval/reward": 0.01, "eval/success": 0.0}
        return subprocess.CompletedProcess(cmd, 0, stdout="log line\n" + json.dumps(out), stderr="")

    monkeypatch.setattr(bm.subprocess, "run", fake_pretrain)
    assert bm.pretrained() == first                                        # the rows' model, as recorded
    assert json.loads((tmp_path / "data" / "pretrain.json").read_text()) == first
    repeat = json.loads((tmp_path / "data" / "pretrain-repeat.json").read_text())
    assert repeat["test_reward"] == 0.01 and repeat["params"] > 1

    assert bm.validation_baseline() == {"reward": 0.5, "success": 0.4}      # the first model's score stays
    again = json.loads((tmp_path / "data" / "pretrained-val-repeat.json").read_text())
    assert again["reward"] != 0.5
    assert "warning: the re-pretrained model scores" in capsys.readouterr().err
    assert "NOT the first model's" in bm.remade_model()


def test_round_3_studies_trials_at_the_runs_budget_into_their_own_folder_beside_the_rows_tuned_at_4096(
        tmp_path, monkeypatch):
    """`--budget 12288 --tune-budget 12288`: every tuning trial of both methods runs 12,288 sequences, and
    its records and final rows land in budget-12288-tuned-12288/, neither skipped because budget-12288/
    (rows of the same names, tuned at 4,096) has them nor written over them."""
    import json

    import benchmarks.posttrain_rl as bm

    root = tmp_path / "data"
    monkeypatch.setattr(bm, "DATA_ROOT", root)
    monkeypatch.setattr(bm, "WORK", tmp_path / "work")
    monkeypatch.setattr(bm, "REPORT", tmp_path / "report.md")
    monkeypatch.setattr(bm, "PLOT", tmp_path / "plot.png")
    assert bm.data_dir(12288) == root / "budget-12288"                      # round 1-2 rows, tuned at 4,096
    assert bm.data_dir(12288, 12288) == root / "budget-12288-tuned-12288"   # round 3's
    assert bm.data_dir(4096, 4096) == root
    old = root / "budget-12288"
    old.mkdir(parents=True)
    kept = {"reward": 0.23, "success": 0.14, "sequences": 12288, "train_s": 1.0, "peak_mb": 1.0,
            "params": {"learning_rate": 1e-4, "num_generations": 4, "beta": 0.0},
            "curve": [{"sequences": 0, "reward": 0.2}]}
    (old / "final-grpo-seed0.json").write_text(json.dumps(kept))
    for f in ("pretrain", "pretrained-val"):       # the first model's records: the round is checked against them
        (root / f"{f}.json").write_text(json.dumps({"reward": 0.2, "success": 0.1, "test_reward": 0.2}))
    for f in ("prompt_files", "pretrained", "validation_baseline"):
        monkeypatch.setattr(bm, f, lambda: None)
    monkeypatch.setattr(bm, "report", lambda *a, **k: "page\n")
    ran, studied = [], []

    def run_child(spec):
        ran.append(spec)
        return {"reward": 0.2 + spec["params"].get("learning_rate", 0.0), "success": 0.1, "sequences": spec["budget"],
                "train_s": 1.0, "peak_mb": 1.0, "curve": [], "iterations": 1}

    def tune_ars(method, trials, budget):      # `arsearch study run` is not started here: what it was asked
        studied.append((method, trials, budget))
        best = {"ars.step_size": 1e-3, "ars.noise": 1e-3, "ars.directions": 4, "task.batch_size": 8}
        return {"trials": [{"params": best, "value": 0.2}], "best": {"params": best, "value": 0.2},
                "seconds": 1.0, "budget": budget}

    monkeypatch.setattr(bm, "run_child", run_child)
    monkeypatch.setattr(bm, "tune_ars", tune_ars)
    assert bm.main(["--budget", "12288", "--tune-budget", "12288", "--methods", "ars-full-r2", "grpo",
                    "--seeds", "2", "--trials", "2", "--skip-memory"]) == 0
    assert studied == [("ars-full-r2", 2, 12288)]
    grpo_trials = [s for s in ran if s["eval_set"] == "val"]
    assert len(grpo_trials) == 2 and all(s["budget"] == 12288 and s["seed"] == 0 for s in grpo_trials)
    finals = [(s["method"], s["seed"], s["budget"]) for s in ran if s["eval_set"] == "test"]
    assert finals == [("ars-full-r2", 1000, 12288), ("grpo", 1000, 12288), ("ars-full-r2", 1001, 12288),
                      ("grpo", 1001, 12288)]                                  # seed-major, none skipped
    new = root / "budget-12288-tuned-12288"
    assert json.loads((new / "tune-grpo.json").read_text())["budget"] == 12288
    assert sorted(p.name for p in new.glob("final-*.json")) == [
        "final-ars-full-r2-seed0.json", "final-ars-full-r2-seed1.json", "final-grpo-seed0.json",
        "final-grpo-seed1.json"]
    assert json.loads((old / "final-grpo-seed0.json").read_text()) == kept      # not written over
    assert sorted(p.name for p in old.iterdir()) == ["final-grpo-seed0.json"]
    assert not (root / "tune-grpo.json").exists()                              # nor the 4,096 study's record
    assert bm.budgets_measured() == [12288]                                    # the tuned folder is not a budget-B/


def test_a_round_3_study_asks_arsearch_for_trials_of_the_runs_budget(tmp_path, monkeypatch):
    """The study file `arsearch study run` gets for round 3 stops every trial at 12,288 sequences, in its own
    study directory (a 4,096 study of the same method is not resumed into it)."""
    import benchmarks.posttrain_rl as bm
    from arsearch.study.space import load_study

    monkeypatch.setattr(bm, "WORK", tmp_path / "work")

    class Stop(Exception):
        pass

    def study_run(cmd, **kwargs):
        raise Stop

    monkeypatch.setattr(bm.subprocess, "run", study_run)
    with pytest.raises(Stop):
        bm.tune_ars("ars-full-r2", 4, 12288)
    spec = load_study(tmp_path / "work" / "tune" / "ars-full-r2-12288" / "study.toml")
    import optuna

    picked = {"ars.step_size": 1e-3, "ars.noise": 3e-3, "ars.directions": 4, "task.batch_size": 8}
    _, job = spec.resolve(optuna.trial.FixedTrial(picked))
    assert job.stop.forward_examples == 12288 and job.task.batch_size == 8
    assert {p.key for p in spec.params} == set(bm.ARS_SPACE_R2)                  # round 2's space, unchanged
    assert not (tmp_path / "work" / "tune" / "ars-full-r2").exists()


def test_the_report_shows_round_3_as_its_own_section_only_once_it_has_rows(tmp_path, monkeypatch):
    """The 12,288 page (rows tuned at 4,096) without round-3 files has no round-3 section; with them, a
    section of its own (its tuning, its held-out rows with the seeds each has, ARS − GRPO, a partial note)
    and a verdict paragraph, while the page's own rows and rounds 1-2's verdicts stay as they were."""
    pytest.importorskip("scipy")
    import json

    import benchmarks.posttrain_rl as bm

    root = tmp_path / "data"
    monkeypatch.setattr(bm, "DATA_ROOT", root)
    monkeypatch.setattr(bm, "REPORT", tmp_path / "report.md")
    monkeypatch.setattr(bm, "PLOT", tmp_path / "plot.png")
    pre = {"seconds": 1.0, "epochs": 1, "lr": 1e-3, "train_loss": 1.0, "test_reward": 0.2, "test_success": 0.1,
           "params": 10, "date": "d"}
    params = {"grpo": {"learning_rate": 1e-4, "num_generations": 4, "beta": 0.0},
              "ars-full": {"ars.step_size": 1e-3, "ars.noise": 1e-2, "ars.directions": 4},
              "ars-full-r2": {"ars.step_size": 1e-3, "ars.noise": 3e-3, "ars.directions": 4, "task.batch_size": 8}}
    params["ars-rank"] = params["ars-full"]

    def rows(d, rewards, budget=12288):
        d.mkdir(parents=True, exist_ok=True)
        for m, values in rewards.items():
            for s, r in enumerate(values):
                (d / f"final-{m}-seed{s}.json").write_text(json.dumps(
                    {"reward": r, "success": r / 2, "sequences": budget, "iterations": 8, "train_s": 10.0,
                     "peak_mb": 500.0 if m == "grpo" else 250.0, "params": params[m],
                     "curve": [{"sequences": 0, "reward": 0.2}, {"sequences": budget, "reward": r}]}))

    def tune(d, m, values):
        (d / f"tune-{m}.json").write_text(json.dumps(
            {"trials": [{"params": params[m], "value": v} for v in values],
             "best": {"params": params[m], "value": max(values)}, "seconds": 600.0, "budget": 12288}))

    rows(root, {m: [0.19, 0.2, 0.21] for m in bm.ROUND_1}, 4096)
    (root / "pretrain.json").write_text(json.dumps(pre))
    (root / "pretrained-val.json").write_text(json.dumps({"reward": 0.2, "success": 0.1}))
    for m in bm.ROUND_1:
        tune(root, m, [0.19, 0.2])
    page = root / "budget-12288"
    rows(page, {"ars-full": [0.19, 0.2, 0.21], "ars-rank": [0.15, 0.16, 0.17], "grpo": [0.3, 0.31, 0.33]})
    monkeypatch.setattr(bm, "DATA", page)
    monkeypatch.setattr(bm, "TUNE_DATA", root)
    before = bm.report(12288, 3, 2, tune_budget=4096)
    assert "Round 3" not in before and "tuned-12288" not in before

    r3 = root / "budget-12288-tuned-12288"
    rows(r3, {"ars-full-r2": [0.26, 0.28], "grpo": [0.30, 0.32, 0.31]})        # ARS: 2 of 3 seeds so far
    tune(r3, "ars-full-r2", [0.19, 0.22])
    tune(r3, "grpo", [0.25, 0.2, 0.18])
    (r3 / "pretrain-repeat.json").write_text(json.dumps({**pre, "date": "again", "seconds": 240.0}))
    (r3 / "pretrained-val-repeat.json").write_text(json.dumps({"reward": 0.2, "success": 0.1, "date": "again"}))
    text = bm.report(12288, 3, 2, tune_budget=4096)
    assert before[:before.index("## Across budgets")].split("\n", 3)[3] == \
        text[:text.index("## Across budgets")].split("\n", 3)[3]               # the page's own rows untouched
    section = text[text.index("## Round 3"):text.index("## Pilots") if "## Pilots" in text else text.index("## (5)")]
    assert "this round's tuning cost 3× the earlier rounds' per trial, equal for both methods" in section
    assert "`reports/data/posttrain_rl/budget-12288-tuned-12288/`" in section
    assert "--budget 12288 --tune-budget 12288 --methods ars-full-r2 grpo" in section
    assert "made again (this round ran from a checkout without it) by the same command for this round's rows " \
           "(again, 4.0 min)" in section
    assert "the same as the first model's" in section
    assert "**Partial round**: ARS, full-rank, revised space 2 of 3 seeds, GRPO (TRL) 3 of 3 seeds" in section
    assert "| ARS, full-rank, revised space | 2 | 0.220 | step_size = 0.001, noise = 0.003, directions = 4, " \
           "batch_size = 8 | 1 | 10.0 |" in section                            # 0.19 at or below 0.2: one trial
    assert "| GRPO (TRL) | 3 | 0.250 | learning_rate = 0.0001, num_generations = 4, beta = 0 | 2 | 10.0 |" in section
    assert "| ARS, full-rank, revised space | 2 | 0.270 [" in section
    assert "| GRPO (TRL) | 3 | 0.310 [" in section
    assert "Difference ARS − GRPO (95% percentile bootstrap over independent seeds): reward -0.040 [" in section
    assert "peak RSS × 0.50" in section
    table = text[text.index("## Across budgets"):text.index("## Round 3")]
    assert next(x for x in table.splitlines() if x.endswith("| 12,288 (round 3) |")).startswith("| 12,288 | 0.200 |")
    assert "**Not met** at this scale" in text and "**Round 2" not in text     # round 1's verdict as it was
    r3_verdict = text[text.index("**Round 3, both methods tuned at 12,288 sequences per trial**"):]
    assert "3× the earlier rounds' tuning compute per trial, equal for both" in r3_verdict
    assert "partial: 2 of 3 seeds, 3 of 3 seeds" in r3_verdict
    assert "ARS, full-rank, revised space's best trial 0.220; GRPO (TRL)'s best trial 0.250" in r3_verdict
    assert "its interval above the pretrained 0.200" in r3_verdict and "**ARS learns**" in r3_verdict
    assert "**ARS is below GRPO**" in r3_verdict or "**ARS matches GRPO" in r3_verdict

    (r3 / "final-ars-full-r2-seed2.json").write_text(json.dumps(    # the round completes
        {"reward": 0.3, "success": 0.15, "sequences": 12288, "train_s": 10.0, "peak_mb": 250.0,
         "params": params["ars-full-r2"], "curve": [{"sequences": 0, "reward": 0.2}]}))
    text = bm.report(12288, 3, 2, tune_budget=4096)
    assert "Partial round" not in text and "partial: " not in text
    assert "ARS, full-rank, revised space 0.280 [" in text and "(3 of 3 seeds)" in text
