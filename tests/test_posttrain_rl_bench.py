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
        for m in bm.METHODS:
            for s, r in enumerate(rewards[m]):
                row = {"reward": r, "success": r / 2, "sequences": budget, "train_s": 1.0, "peak_mb": 100.0,
                       "params": params[m],
                       "curve": [{"sequences": 0, "reward": 0.2}, {"sequences": budget, "reward": r}]}
                (d / f"final-{m}-seed{s}.json").write_text(json.dumps(row))

    write_rows(4096, {m: [0.19, 0.2, 0.21] for m in bm.METHODS})
    for m in bm.METHODS:   # the tuning records, at 4,096 only
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
