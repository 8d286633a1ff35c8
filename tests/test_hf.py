"""Hugging Face models from a local directory: load, post-train, save_pretrained, reload; bad input exits 2."""

import json

import pytest
import tomli_w
import torch

pytest.importorskip("transformers")
from safetensors.torch import load_file  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from arsearch.cli import main  # noqa: E402
from arsearch.config import ConfigError, load_job  # noqa: E402
from arsearch.models import load_hf  # noqa: E402
from arsearch.posttrain import posttrain  # noqa: E402
from tests.support import job_data  # noqa: E402
from tests.support.hf import FACTORY  # noqa: E402

# the generate preset, a little larger: 120 prompts, 3 directions, an evaluation every 2 iterations
HF = {"task.n_prompts": 120, "ars.directions": 3, "ars.top": 3, "eval.every": 2}


def test_load_from_directory_with_its_tokenizer(model_dir):
    model, tok = load_hf(FACTORY, str(model_dir))
    assert type(model).__name__ == "GPT2LMHeadModel" and not model.training
    assert tok.decode(tok("12+34=")["input_ids"]) == "12+34="
    assert sum(p.numel() for p in model.parameters()) > 0

def test_posttrain_saves_a_plain_transformers_directory(tmp_path, model_dir):
    before = {k: v.clone() for k, v in AutoModelForCausalLM.from_pretrained(model_dir).state_dict().items()}
    result = posttrain(load_job(data=job_data("generate", tmp_path / "out", **HF, **{"model.path": model_dir})))
    out = tmp_path / "out"
    assert (out / "model" / "config.json").exists() and (out / "samples.json").exists()
    # reloadable by plain transformers, with the post-trained weights
    reloaded = AutoModelForCausalLM.from_pretrained(out / "model", local_files_only=True)
    tok = AutoTokenizer.from_pretrained(out / "model", local_files_only=True)
    assert tok.decode(tok("07+42=")["input_ids"]) == "07+42="
    exported = load_file(result.checkpoint)
    state = reloaded.state_dict()
    assert set(exported) == set(state)
    assert all(torch.equal(exported[k], state[k]) for k in state)
    assert any(not torch.equal(state[k], before[k]) for k in state)          # ARS moved the weights
    assert result.train["count/forward_examples"] == 2 * 3 * 8 * 2           # 2N candidates x batch x iterations
    # the exported safetensors go on top of the directory: the next job starts where this one ended
    again = posttrain(load_job(data=job_data("generate", tmp_path / "b" / "out", **HF, **{
        "model.path": model_dir, "model.checkpoint": result.checkpoint, "ars.iterations": 0})))
    assert again.before["reward"] == pytest.approx(result.after["reward"])

def test_vectorized_backend_scores_like_the_sequential_one(tmp_path, model_dir):
    seq = posttrain(load_job(data=job_data("generate", tmp_path / "s" / "out", **HF, **{"model.path": model_dir})))
    vec = posttrain(load_job(data=job_data("generate", tmp_path / "v" / "out", **HF,
                                           **{"model.path": model_dir, "ars.backend": "vectorized"})))
    a, b = load_file(seq.checkpoint), load_file(vec.checkpoint)
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    assert seq.after["reward"] == pytest.approx(vec.after["reward"])

def test_bad_directories_exit_2(tmp_path, model_dir, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in model_dir.iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    weights = next(broken.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:100])
    empty = tmp_path / "empty"
    empty.mkdir()
    (tmp_path / "file").write_text("x")
    cases = [({"model": {"path": str(tmp_path / "file")}}, "is not a directory"),
             ({"model": {"path": str(tmp_path / "nowhere")}}, "is not a directory"),
             ({"model": {"path": str(broken)}}, "cannot be loaded"),
             ({"model": {"path": str(empty)}}, "cannot be loaded"),
             ({"model": {"factory": "transformers:NoSuchModel"}}, "has no model class 'NoSuchModel'"),
             ({"model": {"factory": "mlp"}}, "model.factory must be"),
             ({"model": {"path": str(tmp_path / "nowhere"), "pretrain_epochs": 1}}, "set [model] init"),
             ({"task": {"reward": "arsearch.tasks.generate:nothing"}}, "has no attribute 'nothing'")]
    for extra, reason in cases:
        cfg = tmp_path / "job.toml"
        cfg.write_text(tomli_w.dumps(job_data("generate", tmp_path / "out", **HF, **{"model.path": model_dir}, **extra)))
        assert main(["posttrain", str(cfg), "--quiet"]) == 2, extra
        assert reason in capsys.readouterr().err, extra
    data = job_data("generate", tmp_path / "out", **HF, **{"model.path": model_dir})
    data["model"]["path"] = ""
    with pytest.raises(ConfigError, match="needs \\[model\\] path"):
        load_job(data=data)
    supervised = {"task": {"dataset": "digits"}, "model": {"factory": FACTORY, "checkpoint": "x.pt"},
                  "tracking": {"enabled": False}}
    (tmp_path / "sup.toml").write_text(tomli_w.dumps(supervised))
    assert main(["posttrain", str(tmp_path / "sup.toml"), "--quiet"]) == 2
    assert "needs [model] path" in capsys.readouterr().err

def test_fresh_model_is_pretrained_and_saved_first(tmp_path):
    target = tmp_path / "pre"
    data = job_data("generate", tmp_path / "out", **HF, **{
        "model.path": target, "model.init": "arsearch.tasks.generate:tiny_causal_lm", "model.pretrain_epochs": 1,
        "ars.iterations": 1})
    result = posttrain(load_job(data=data))
    assert result.pretrained
    assert (target / "config.json").exists() and (target / "tokenizer.json").exists()
    assert json.loads((target / "config.json").read_text())["model_type"] == "gpt2"
    assert result.train["count/forward_examples"] == 2 * 3 * 8        # pretraining is not in the ARS budget
    again = posttrain(load_job(data=data), overwrite=True)           # the saved directory is reused
    assert not again.pretrained


@pytest.mark.multiprocess
def test_posttrain_from_the_cli_shows_pretraining_and_names_its_run(tmp_path):
    """Issue 25 item 6: the pretraining epochs move a bar, transformers' loss_type warning does not leak,
    and the command ends with the MLflow run's id and a link that opens it in the model-training view.
    A subprocess, as a user runs it: transformers' logging writes to the real stderr, once per process."""
    import subprocess

    from tests.support.study import arsearch_cmd, env

    data = job_data("generate", tmp_path / "out", **HF, **{
        "model.path": str(tmp_path / "pre"), "model.init": "arsearch.tasks.generate:tiny_causal_lm",
        "model.pretrain_epochs": 3, "ars.iterations": 1},
        tracking={"enabled": True, "uri": "sqlite:///mlflow.db", "experiment": "gen"})
    (tmp_path / "job.toml").write_text(tomli_w.dumps(data))
    proc = subprocess.run(arsearch_cmd("posttrain", "job.toml"), cwd=tmp_path, env=env(), capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    err = proc.stderr
    assert "pretrain (Adam): 100%" in err and "3/3" in err and "loss=" in err
    assert "loss_type" not in err and "loss_type" not in proc.stdout
    result = json.loads(proc.stdout)
    assert result["mlflow_run_id"] and f"MLflow run {result['mlflow_run_id']}: {result['mlflow_run_url']}" in err
    assert result["mlflow_run_url"].endswith(f"/runs/{result['mlflow_run_id']}?workflowType=machine_learning")
    assert "arsearch ui --tracking-uri sqlite:///mlflow.db" in err
