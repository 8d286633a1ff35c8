"""The Countdown reward and generator, sampling decoding of the generate task, and `arsearch pretrain`
of a Hugging Face directory."""

import json

import pytest
import torch

from arsearch.tasks.countdown import (
    CORRECT,
    MALFORMED,
    WELL_FORMED,
    countdown,
    countdown_reward,
    parse_prompt,
    score,
)


@pytest.mark.parametrize("expression, numbers, target", [
    ("7*3+12", [3, 7, 12], 33),
    (" 12 + 3*7 ", [3, 7, 12], 33),          # spaces around and inside
    ("(12+3)*7", [3, 7, 12], 105),
    ("12/2", [2, 12, 9], 6),                   # a subset of the numbers, exact division
    ("(9-3)/(7-5)", [9, 3, 7, 5], 3),
    ("5+5", [5, 5, 3], 10),                    # a number listed twice may be used twice
    ("((3))+4", [3, 4], 7),
])
def test_correct_answers_score_one(expression, numbers, target):
    assert score(expression, numbers, target) == CORRECT


@pytest.mark.parametrize("expression, numbers, target", [
    ("7*3+11", [3, 7, 12], 33),               # wrong value
    ("7*3+12", [3, 7, 12], 34),
    ("3+3+27", [3, 27, 1], 33),                # 3 given once, used twice
    ("20+13", [3, 7, 12], 33),                 # numbers not given
    ("7/2", [7, 2], 3),                        # 3.5 is not 3 (no integer rounding)
    ("3/(7-7)", [3, 7, 7], 1),                 # division by zero: well formed, no value
    ("12", [3, 7, 12], 33),
])
def test_well_formed_misses_get_partial_credit(expression, numbers, target):
    assert score(expression, numbers, target) == WELL_FORMED


@pytest.mark.parametrize("expression", [
    "", "   ", "3+", "(3+4", "3+4)", "3++4", "-3+36", "07+26", "3.5*2", "3**2", "3//1", "abc",
    "__import__('os')", "3 4", "3+4=7", "(" * 300 + "3" + ")" * 300, "3+4\n5",
])
def test_malformed_outputs_score_zero(expression):
    assert score(expression, [3, 4, 26, 7, 5, 1], 7) == MALFORMED


def test_reward_reads_numbers_and_target_from_the_prompt_and_refuses_other_prompts():
    assert countdown_reward(["3,7,12=33:", "3,7,12=33:", "2,9=18:"], ["7*3+12", "7*3+13", "9*"], [None] * 3) == \
        [CORRECT, WELL_FORMED, MALFORMED]
    assert parse_prompt("3,7,12=33:") == ([3, 7, 12], 33)
    with pytest.raises(ValueError, match="not a countdown prompt.*07\\+42="):
        countdown_reward(["07+42="], ["49"], ["049"])


def test_generator_is_seeded_distinct_in_range_and_its_references_solve_their_prompts():
    items = countdown(500, seed=3)
    assert items == countdown(500, seed=3) and items != countdown(500, seed=4)
    assert len({it["prompt"] for it in items}) == 500
    for it in items:
        numbers, target = parse_prompt(it["prompt"])
        assert len(numbers) == 3 and all(1 <= x <= 20 for x in numbers) and 1 <= target <= 100
        assert score(it["reference"], numbers, target) == CORRECT
    with pytest.raises(ValueError, match="only .* distinct prompts"):
        countdown(50, size=2, low=1, high=2, max_target=4)


# -- sampling decoding of the generate task ------------------------------------------------------

pytest.importorskip("transformers")
from arsearch.config import ConfigError, load_job  # noqa: E402
from arsearch.spaces import FullSpace  # noqa: E402
from arsearch.tasks import build_task  # noqa: E402
from tests.support import job_data  # noqa: E402


def sampling_task(tmp_path, model_dir, seed=0, **keys):
    keys = {"model.path": model_dir, "task.temperature": 1.0, "task.samples_per_prompt": 3, "task.max_new_tokens": 4,
            **keys}
    return build_task(load_job(data={**job_data("generate", tmp_path / "out", **keys), "seed": seed}))


def test_sampling_is_reproducible_from_the_seed_and_leaves_the_global_rng_alone(tmp_path, model_dir):
    task = sampling_task(tmp_path, model_dir)
    batch = task.batch(0)
    state = torch.random.get_rng_state()
    first = task.generate(batch, sample=True)
    assert torch.equal(torch.random.get_rng_state(), state)   # HF's draws happen in a forked RNG
    assert len(first) == 8 * 3
    assert task.counters["forward_examples"] == 24             # sequences generated, not prompts
    # the 3 samples of one prompt differ somewhere (a random tiny model at temperature 1)
    assert len({tuple(first[i:i + 3]) for i in range(0, 24, 3) if len(set(first[i:i + 3])) > 1}) > 0
    assert task.generate(batch, sample=True) == first           # same batch: same draws
    again = sampling_task(tmp_path, model_dir)                  # a new process-like start, same seed
    assert again.generate(again.batch(0), sample=True) == first
    other = sampling_task(tmp_path, model_dir, seed=1)
    assert other.batch(0).seed != batch.seed
    assert task.generate(task.batch(1), sample=True) != first
    # evaluation stays greedy: independent of the sampling settings
    greedy = build_task(load_job(data=job_data("generate", tmp_path / "g", **{"model.path": model_dir,
                                                                             "task.max_new_tokens": 4})))
    assert task.evaluate() == greedy.evaluate()


def test_sampled_candidates_score_alike_in_both_backends_paths(tmp_path, model_dir):
    task = sampling_task(tmp_path, model_dir, **{"task.reward": "arsearch.tasks.generate:digit_match"})
    batch = task.batch(2)
    space = FullSpace(task.model)
    theta = space.vector().clone()
    thetas = torch.stack([theta, theta + 0.2 * torch.randn(theta.shape, generator=torch.Generator().manual_seed(0))])
    batched = task.score_params(space.expand(thetas), batch)
    one_by_one = []
    for t in thetas:
        space.load_(t)
        one_by_one.append(task.score(batch))
    space.load_(theta)
    assert batched.tolist() == pytest.approx(one_by_one)


def test_several_samples_need_a_temperature(tmp_path, model_dir):
    with pytest.raises((ConfigError, ValueError), match="samples_per_prompt = 4 with greedy decoding"):
        load_job(data=job_data("generate", tmp_path / "out", **{"model.path": model_dir,
                                                                 "task.samples_per_prompt": 4}))
    with pytest.raises((ConfigError, ValueError), match="temperature"):
        load_job(data=job_data("generate", tmp_path / "out", **{"model.path": model_dir, "task.temperature": -1.0}))


def test_countdown_config_builds_its_task(tmp_path):
    config = load_job("configs/generate_countdown.toml", [f"model.path={json.dumps(str(tmp_path / 'm'))}",
                                                          "task.n_prompts=200", "model.init=\"\"",
                                                          "model.pretrain_epochs=0"])
    assert config.task.prompts == "countdown" and config.task.reward.endswith("countdown_reward")


# -- arsearch pretrain writes a Hugging Face directory -------------------------------------------


def test_pretrain_command_builds_and_saves_a_hf_directory_and_never_replaces_it_unasked(tmp_path, capsys):
    from transformers import AutoModelForCausalLM

    from arsearch.cli import main

    target = tmp_path / "lm"
    cfg = tmp_path / "job.toml"
    import tomli_w

    data = job_data("generate", tmp_path / "out", **{"model.path": str(target), "task.prompts": "countdown",
                                                       "task.n_prompts": 64, "task.max_new_tokens": 4,
                                                       "task.reward": "arsearch.tasks.countdown:countdown_reward",
                                                       "model.init": "arsearch.tasks.generate:tiny_causal_lm",
                                                       "model.pretrain_epochs": 1})
    cfg.write_text(tomli_w.dumps(data))
    assert main(["pretrain", str(cfg)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) >= {"eval/reward", "eval/success"} and out["epochs"] == 1
    model = AutoModelForCausalLM.from_pretrained(target, local_files_only=True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert main(["pretrain", str(cfg)]) == 2                  # exists: refused, left as it was
    assert "already exists" in capsys.readouterr().err
    assert all(torch.equal(v, AutoModelForCausalLM.from_pretrained(target).state_dict()[k]) for k, v in before.items())
    assert main(["pretrain", str(cfg), "--overwrite", "--set", "seed=5"]) == 0
    after = AutoModelForCausalLM.from_pretrained(target).state_dict()
    assert any(not torch.equal(v, after[k]) for k, v in before.items())
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".lm.")] == []   # no leftovers
    data["model"]["init"] = ""
    cfg.write_text(tomli_w.dumps(data))
    assert main(["pretrain", str(cfg), "--overwrite"]) == 2
    assert "set [model] init" in capsys.readouterr().err
    assert (target / "config.json").exists()
