"""Post-training: safe checkpoint loading, fine-tuning a degraded model, export, CLI."""

import json
import os
import pickle

import pytest
import tomli_w
import torch

from arsearch import checkpoint as ckpt
from arsearch.cli import main
from arsearch.compress import decompress
from arsearch.config import load_job
from arsearch.models import build_model
from arsearch.posttrain import base_model, posttrain, pretrain
from arsearch.tasks import build_task
from arsearch.trainer import Trainer

HIDDEN = [32]


def config_dict(tmp_path, checkpoint, **extra):
    data = {"seed": 0,
            "task": {"dataset": "digits", "hidden": HIDDEN, "batch_size": 128},
            "model": {"factory": "mlp", "checkpoint": str(checkpoint), "export": "pt"},
            "ars": {"version": "v1t", "directions": 8, "top": 4, "step_size": 0.02, "noise": 0.02,
                    "iterations": 40, "backend": "vectorized"},
            "eval": {"every": 20}, "tracking": {"enabled": False},
            "checkpoint": {"dir": str(tmp_path / "out"), "every": 100}}
    for key, value in extra.items():
        data[key] = {**data.get(key, {}), **value}
    return data


def write_config(tmp_path, data):
    path = tmp_path / "job.toml"
    path.write_text(tomli_w.dumps(data))
    return str(path)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A digits MLP pretrained with Adam, and a deliberately degraded copy of it."""
    tmp = tmp_path_factory.mktemp("pretrained")
    torch.manual_seed(0)
    task = build_task(load_job(data=config_dict(tmp, tmp / "x.pt")))
    pretrain(task, epochs=8, lr=0.01)
    good = tmp / "good.pt"
    torch.save(base_model(task).state_dict(), good)
    gen = torch.Generator().manual_seed(1)
    degraded = {k: v + 0.6 * v.std() * torch.randn(v.shape, generator=gen) for k, v in base_model(task).state_dict().items()}
    bad = tmp / "degraded.pt"
    torch.save(degraded, bad)
    return {"good": good, "degraded": bad, "accuracy": task.evaluate()["accuracy"]}


# -- checkpoint safety ---------------------------------------------------------------------------


class Payload:
    """A pickle that would create a directory when unpickled by a trusting loader."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (os.mkdir, (self.target,))


@pytest.mark.parametrize("writer", ["pickle2", "pickle5", "torch"])
def test_code_carrying_pickle_is_refused_with_no_side_effect(tmp_path, capsys, writer):
    target = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    if writer.startswith("pickle"):
        evil.write_bytes(pickle.dumps({"0.weight": Payload(target)}, protocol=int(writer[-1])))
    else:
        torch.save({"0.weight": Payload(target)}, evil)
    with pytest.raises(ckpt.CheckpointError, match="refused") as err:
        ckpt.load(evil)
    if writer != "pickle5":
        assert "GLOBAL posix.mkdir" in str(err.value)
    code = main(["posttrain", write_config(tmp_path, config_dict(tmp_path, evil)), "--quiet"])
    assert code == 2
    assert "refused" in capsys.readouterr().err
    assert not target.exists()
    assert not (tmp_path / "out").exists()   # nothing was written


def test_truncated_and_garbage_checkpoints_exit_2(tmp_path, capsys, pretrained):
    data = pretrained["good"].read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00not a checkpoint" * 50)
    for path in (cut, garbage, tmp_path / "missing.pt"):
        assert main(["posttrain", write_config(tmp_path, config_dict(tmp_path, path)), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert str(path) in err
        assert any(s in err for s in ("truncated or corrupt", "does not exist", "not a plain weights file"))


def test_state_dict_that_does_not_fit_lists_every_problem(tmp_path, capsys, pretrained):
    state = torch.load(pretrained["good"], weights_only=True)
    del state["1.bias"]                                    # missing
    state["9.weight"] = torch.zeros(3)                     # unexpected
    state["3.weight"] = torch.zeros(10, 33)                # shape mismatch
    path = tmp_path / "wrong.pt"
    torch.save(state, path)
    assert main(["posttrain", write_config(tmp_path, config_dict(tmp_path, path)), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "missing keys (1): 1.bias" in err
    assert "unexpected keys (1): 9.weight" in err
    assert "3.weight: checkpoint (10, 33) vs model (10, 32)" in err
    path2 = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], path2)
    assert main(["posttrain", write_config(tmp_path, config_dict(tmp_path, path2)), "--quiet"]) == 2
    assert "holds no model weights" in capsys.readouterr().err


def test_model_is_untouched_when_the_checkpoint_does_not_fit(tmp_path):
    model = build_model("mlp", input_shape=(64,), output_dim=10, hidden=HIDDEN)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    path = tmp_path / "partial.pt"
    torch.save({"1.weight": torch.zeros(32, 64)}, path)
    with pytest.raises(ckpt.CheckpointError, match="missing keys"):
        ckpt.load_into(model, path)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


# -- post-training ---------------------------------------------------------------------------------


def test_posttrain_improves_a_degraded_model_and_exports_bit_exact(tmp_path, pretrained):
    config = load_job(data=config_dict(tmp_path, pretrained["degraded"]))
    result = posttrain(config)
    assert result.after["accuracy"] > result.before["accuracy"] + 0.04      # about 0.84 -> 0.93
    assert result.after["loss"] < 0.7 * result.before["loss"]
    assert result.search_dim == result.full_dim == 64 * 32 + 32 + 32 * 10 + 10

    state = torch.load(result.checkpoint, weights_only=True)
    fresh = build_model("mlp", input_shape=(64,), output_dim=10, hidden=HIDDEN)
    fresh.load_state_dict(state)                            # strict: same factory, same keys
    task = build_task(config)
    task.model.load_state_dict(fresh.state_dict())
    assert task.evaluate() == result.after                  # bit-exact: the same metrics
    again = torch.load(result.checkpoint, weights_only=True)
    assert all(torch.equal(again[k], state[k]) for k in state)


def test_posttrain_compressed_centroids_keeps_constraints_and_exports_compressed_form(tmp_path, pretrained):
    data = config_dict(tmp_path, pretrained["good"], compress={"prune": 0.8, "share_bits": 4, "search": "centroids"},
                       ars={"backend": "sequential", "iterations": 30})
    result = posttrain(load_job(data=data))
    assert result.search_dim == 2 * 16
    assert result.compressed["accuracy"] <= result.before["accuracy"]
    state = torch.load(result.checkpoint, weights_only=True)
    form = torch.load(result.compressed_checkpoint, weights_only=True)
    assert set(form["codebooks"]) == {"1.weight", "3.weight"}
    for name in ("1.weight", "3.weight"):
        assert (state[name] == 0).float().mean() >= 0.79 or name == "3.weight"
        assert state[name].unique().numel() <= 17         # 16 shared values and the pruned zero
    assert (sum(int((state[n] == 0).sum()) for n in ("1.weight", "3.weight"))
            >= round(0.8 * (64 * 32 + 32 * 10)))
    back = decompress(form)
    assert all(torch.equal(back[k], state[k]) for k in state)


def test_posttrain_with_a_factory_and_layer_search(tmp_path, pretrained):
    torch.manual_seed(0)
    data = config_dict(tmp_path, tmp_path / "two.pt",
                       model={"factory": "arsearch.examples:two_layer_net", "pretrain_epochs": 3},
                       compress={"prune": 0.5, "search": ["head"]}, ars={"iterations": 10})
    result = posttrain(load_job(data=data))
    assert result.pretrained and (tmp_path / "two.pt").exists()
    form = torch.load(result.compressed_checkpoint, weights_only=True)
    assert result.search_dim == len(form["values"]["head.weight"]) + 10   # head's survivors and its bias
    assert sum(len(v) for v in form["values"].values()) == 64 * 64 + 64 * 10 - round(0.5 * (64 * 64 + 64 * 10))
    state = torch.load(result.checkpoint, weights_only=True)
    assert set(state) == {"body.0.weight", "body.0.bias", "head.weight", "head.bias"}
    pre = torch.load(tmp_path / "two.pt", weights_only=True)
    assert not torch.equal(pre["head.bias"], state["head.bias"])


def test_v2_wraps_the_model_but_loads_and_exports_the_users_keys(tmp_path, pretrained):
    data = config_dict(tmp_path, pretrained["good"], ars={"version": "v2t", "iterations": 5})
    result = posttrain(load_job(data=data))
    state = torch.load(result.checkpoint, weights_only=True)
    assert set(state) == set(torch.load(pretrained["good"], weights_only=True))
    assert result.before["accuracy"] == pytest.approx(pretrained["accuracy"])


def test_train_job_starts_from_the_model_checkpoint(tmp_path, pretrained):
    """A posttrain config is a valid base job for `arsearch train` and studies."""
    trainer = Trainer(load_job(data=config_dict(tmp_path, pretrained["good"])), progress=False)
    assert trainer.evaluate()["eval/accuracy"] == pytest.approx(pretrained["accuracy"])


def test_cli_posttrain_and_pretrain(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = config_dict(tmp_path, "pre.pt", model={"pretrain_epochs": 2}, ars={"iterations": 5})
    path = write_config(tmp_path, data)
    assert main(["pretrain", path]) == 0
    assert (tmp_path / "pre.pt").exists()
    assert main(["pretrain", path]) == 2                   # never overwrites silently
    assert "already exists" in capsys.readouterr().err
    assert main(["posttrain", path, "--quiet"]) == 0
    assert '"after"' in capsys.readouterr().out
    assert (tmp_path / "out" / "posttrained.pt").exists() and (tmp_path / "out" / "posttrain.json").exists()
    before = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir() if p.is_file()}
    # --overwrite with a config refused late (by the compression) deletes nothing
    assert main(["posttrain", path, "--quiet", "--set", "compress.search=\"weights\"", "--overwrite"]) == 2
    assert "compress.search = 'weights' is not allowed" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir() if p.is_file()} == before
    # a second post-training into the same directory: refused, as `train` is, and nothing is touched
    again = ["posttrain", path, "--quiet", "--checkpoint", "out/posttrained.pt", "--no-tracking"]
    assert main(again) == 2
    assert "already holds checkpoints" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir() if p.is_file()} == before
    # --overwrite with a bad pretrained checkpoint is refused before anything is deleted
    assert main(["posttrain", path, "--quiet", "--checkpoint", "nowhere.pt", "--set", "model.pretrain_epochs=0",
                 "--overwrite"]) == 2
    assert "nowhere.pt does not exist" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir() if p.is_file()} == before
    # --overwrite starts again (here from the previous run's export, read before anything is replaced)
    assert main([*again, "--overwrite"]) == 0
    assert json.loads((tmp_path / "out" / "posttrain.json").read_text())["before"] == pytest.approx(
        json.loads(before["posttrain.json"])["after"])
    no_model = {k: v for k, v in data.items() if k != "model"}
    (tmp_path / "plain.toml").write_text(tomli_w.dumps(no_model))
    assert main(["posttrain", str(tmp_path / "plain.toml"), "--quiet", "--overwrite"]) == 2
    assert "needs [model] checkpoint" in capsys.readouterr().err


def test_posttrain_is_logged_to_mlflow(tmp_path, pretrained, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    data = config_dict(tmp_path, pretrained["good"], ars={"iterations": 4, "backend": "sequential"},
                       tracking={"enabled": True, "uri": uri, "experiment": "pt"}, eval={"every": 2})
    result = posttrain(load_job(data=data))
    assert result.tracking_error is None
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("pt").experiment_id])
    # before and after on one chart: stage/accuracy at step 0 (pretrained) and 2 (after ARS); no
    # compressed stage, no compressed/* and no RL counters for a job without [compress] or episodes
    stage = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "stage/accuracy")}
    assert stage == pytest.approx({0: result.before["accuracy"], 2: result.after["accuracy"]})
    assert not [k for k in run.data.metrics if k.split("/")[0] in ("before", "after", "compressed")]
    assert "count/episodes" not in run.data.metrics and "count/env_steps" not in run.data.metrics
    assert "0 pretrained, 2 post-trained" in run.data.tags["arsearch.stage_steps"]
    # the eval curve starts where ARS starts, at step 0 with the pretrained model's value
    curve = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, "eval/accuracy"))
    assert [s for s, _ in curve] == [0, 2, 4] and curve[0][1] == pytest.approx(result.before["accuracy"])
    assert run.data.params["ars.iterations"] == "4"
    assert len(client.get_metric_history(run.info.run_id, "train/score")) == 4
    assert result.mlflow_run_id == run.info.run_id
    assert result.mlflow_run_url == (f"http://127.0.0.1:5000/#/experiments/{run.info.experiment_id}/runs/"
                                     f"{run.info.run_id}?workflowType=machine_learning")
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"posttrained.pt", "config.toml"}


def test_tracking_failure_keeps_the_result(tmp_path, pretrained):
    data = config_dict(tmp_path, pretrained["good"], ars={"iterations": 2},
                       tracking={"enabled": True, "uri": "http://127.0.0.1:9/", "experiment": "pt"})
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    try:
        result = posttrain(load_job(data=data))
    finally:
        del os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]
    assert result.tracking_error
    assert (tmp_path / "out" / "posttrained.pt").exists()


def test_v2_training_checkpoint_keeps_its_normaliser(tmp_path, pretrained):
    """An arsearch V2 checkpoint (wrapper keys norm.* / net.*) loads whole into a V2 job."""
    data = config_dict(tmp_path, pretrained["good"], ars={"version": "v2t", "iterations": 3})
    first = Trainer(load_job(data=data), progress=False)
    first.run()
    final = tmp_path / "out" / "final.pt"
    norm_mean = first.task.normalizer.state_dict()
    assert norm_mean["count"] > 0
    data2 = config_dict(tmp_path / "b", final, ars={"version": "v2t", "iterations": 0})
    second = Trainer(load_job(data=data2), progress=False)
    for k, v in second.task.normalizer.state_dict().items():
        assert torch.equal(v, norm_mean[k]), k
    # and into a plain (V1) job, the user's weights only
    plain = Trainer(load_job(data=config_dict(tmp_path / "c", final)), progress=False)
    assert torch.equal(plain.model.state_dict()["1.weight"], first.model.state_dict()["net.1.weight"])
