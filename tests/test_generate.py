"""task.kind = "generate": prompts, rewards, scoring candidates by their greedy outputs, MLflow logging."""

import json

import pytest
import torch

pytest.importorskip("transformers")
from arsearch.config import load_job  # noqa: E402
from arsearch.posttrain import posttrain  # noqa: E402
from arsearch.spaces import FullSpace  # noqa: E402
from arsearch.tasks import build_task  # noqa: E402
from arsearch.tasks.generate import (  # noqa: E402
    GenerateTask,
    arithmetic,
    digit_match,
    exact_match,
    load_prompts,
)
from tests.support import job_data  # noqa: E402


def reverse_prompts(n=40, seed=0):
    """A factory of prompts for `task.prompts = "module:function"` (tuples are accepted)."""
    import random

    rng = random.Random(seed)
    words = ["".join(rng.choice("abc") for _ in range(3)) for _ in range(n)]
    return [(w + ">", w[::-1]) for w in words]


def constant_reward(prompts, outputs, references):
    return [0.5] * len(prompts)


def wrong_length_reward(prompts, outputs, references):
    return [1.0]


def test_arithmetic_data_is_deterministic_distinct_and_correct():
    a, b = arithmetic(500, seed=3), arithmetic(500, seed=3)
    assert a == b and a != arithmetic(500, seed=4)
    assert len({it["prompt"] for it in a}) == 500
    for it in a[:50]:
        x, y = it["prompt"].rstrip("=").split("+")
        assert int(it["reference"]) == int(x) + int(y) and len(it["reference"]) == 3


def test_rewards():
    assert exact_match(["p", "q"], [" 049 ", "048"], ["049", "049"]) == [1.0, 0.0]
    assert digit_match(["p", "q", "r"], ["049", "048", "9"], ["049", "049", "049"]) == [1.0, pytest.approx(2 / 3), 0.0]


def test_prompt_sources(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "a>", "reference": "a"}\n\n{"prompt": "b>"}\n')
    assert load_prompts(str(path)) == [{"prompt": "a>", "reference": "a"}, {"prompt": "b>", "reference": None}]
    assert load_prompts("tests.test_generate:reverse_prompts", n=5)[0]["prompt"].endswith(">")
    assert len(load_prompts("tests.test_generate:reverse_prompts", n=5)) == 5
    path.write_text('{"prompt": "a>"}\nnot json\n')
    with pytest.raises(ValueError, match="p.jsonl:2 is not a JSON line"):
        load_prompts(str(path))
    path.write_text('{"text": "a>"}\n')
    with pytest.raises(ValueError, match="item 0 is not a prompt"):
        load_prompts(str(path))
    with pytest.raises(ValueError, match="not a built-in"):
        load_prompts("nowhere.jsonl")


def test_candidates_score_alike_in_both_paths_and_leave_the_model_alone(tmp_path, model_dir):
    task = build_task(load_job(data=job_data("generate", tmp_path / "out", **{"model.path": model_dir})))
    assert isinstance(task, GenerateTask)
    batch = task.batch(0)
    assert batch.input_ids.shape[0] == 8
    space = FullSpace(task.model)
    theta = space.vector().clone()
    gen = torch.Generator().manual_seed(0)
    thetas = torch.stack([theta, theta + 0.3 * torch.randn(theta.shape, generator=gen)])
    batched = task.score_params(space.expand(thetas), batch)
    one_by_one = []
    for t in thetas:
        space.load_(t)
        one_by_one.append(task.score(batch))
    space.load_(theta)
    assert batched.tolist() == pytest.approx(one_by_one)
    params = space.expand(thetas)
    first, second = (task.generate(batch, {k: v[i] for k, v in params.items()}) for i in range(2))
    assert first != second                                 # a perturbed model writes something else
    assert first == task.generate(batch)                   # candidate 0 is the model itself
    assert torch.equal(space.vector(), theta)
    assert task.batch(0).prompts == batch.prompts and task.batch(1).prompts != batch.prompts


def test_evaluation_is_held_out_and_not_counted(tmp_path, model_dir):
    task = build_task(load_job(data=job_data("generate", tmp_path / "out", **{"model.path": model_dir})))
    assert len(task.test) == 25 and len(task.train) == 75
    assert not {it["prompt"] for it in task.test} & {it["prompt"] for it in task.train}
    task.evaluate()
    assert task.counters.get("forward_examples", 0) == 0
    task.score(task.batch(0))
    assert task.counters["forward_examples"] == 8


def test_reward_contract_is_checked(tmp_path, model_dir):
    task = build_task(load_job(data=job_data("generate", tmp_path / "out", **{
        "model.path": model_dir, "task.reward": "tests.test_generate:constant_reward"})))
    assert task.score(task.batch(0)) == 0.5
    task = build_task(load_job(data=job_data("generate", tmp_path / "out", **{
        "model.path": model_dir, "task.reward": "tests.test_generate:wrong_length_reward"})))
    with pytest.raises(ValueError, match=r"wrong_length_reward. returned an array of shape \(1,\) for 8 prompts"):
        task.score(task.batch(0))


def test_cross_entropy_training_learns(tmp_path, model_dir):
    task = build_task(load_job(data=job_data("generate", tmp_path / "out", **{"model.path": model_dir})))
    losses = task.train_cross_entropy(30, lr=3e-3, batch_size=16)
    assert sum(losses[-5:]) < sum(losses[:5])
    assert not task.model.training and all(p.grad is None for p in task.model.parameters())


def test_posttrain_logs_curve_metrics_and_sample_table(tmp_path, model_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    data = job_data("generate", tmp_path / "out", tracking={"enabled": True, "uri": uri, "experiment": "gen"},
                    **{"model.path": model_dir})
    result = posttrain(load_job(data=data))
    assert result.tracking_error is None
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("gen").experiment_id])
    assert run.info.status == "FINISHED" and run.data.tags["arsearch.role"] == "posttrain"
    stage = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "stage/reward")}
    assert stage == pytest.approx({0: result.before["reward"], 2: result.after["reward"]})
    assert "count/episodes" not in run.data.metrics and "count/env_steps" not in run.data.metrics
    assert "compressed/reward" not in run.data.metrics and "stage/reward" in run.data.metrics
    assert len(client.get_metric_history(run.info.run_id, "train/score")) == 2
    evals = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, "eval/reward"))
    assert len(evals) == 3 and evals[0] == (0, pytest.approx(result.before["reward"]))   # from the "before" value
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"learning_curve.png", "config.toml", "samples.json", "posttrained.safetensors"} <= artifacts
    table = json.loads((tmp_path / "out" / "samples.json").read_text())
    # right or wrong per output, and the reward when it gives partial credit (digit_match does)
    columns = ["prompt", "reference", "before", "after", "before_correct", "after_correct", "before_reward",
               "after_reward"]
    assert len(table) == 20 and list(table[0]) == columns
    assert all(row["after_correct"] == (row["after"].strip() == row["reference"].strip()) for row in table)
    logged = json.loads(open(client.download_artifacts(run.info.run_id, "samples.json", str(tmp_path))).read())
    assert logged["columns"] == columns and len(logged["data"]) == 20
    assert all(0.0 <= row["after_reward"] <= 1.0 for row in table)


def test_sample_table_says_right_or_wrong():
    from arsearch.posttrain import sample_table

    before = [{"prompt": "1+1=", "reference": "2", "output": " 2", "reward": 1.0},
              {"prompt": "2+2=", "reference": "4", "output": "5", "reward": 0.0}]
    after = [{**before[0], "output": "3", "reward": 0.0}, {**before[1], "output": "4", "reward": 1.0}]
    rows = sample_table(before, after)
    assert [(r["before_correct"], r["after_correct"]) for r in rows] == [(True, False), (False, True)]
    assert "before_reward" not in rows[0]                      # a right-or-wrong reward says nothing more
    judged = [{**r, "reference": None, "reward": v} for r, v in zip(before, (1.0, 0.0))]   # a pass/fail judge
    assert [r["before_correct"] for r in sample_table(judged, judged)] == [True, False]
