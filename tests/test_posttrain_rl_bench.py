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
