"""Training jobs: learning happens, resume is exact, divergence keeps the last good checkpoint."""

import json

import pytest
import torch

from arsearch import checkpoint as ckpt
from arsearch.callbacks import Callback
from arsearch.cli import main
from arsearch.trainer import Trainer, TrainingDiverged
from tests.support import make_job


@pytest.mark.parametrize("version", ["v1", "v1t", "v2", "v2t"])
def test_every_version_learns_digits(tmp_path, version):
    cfg = make_job("digits", tmp_path / "run", **{"ars.version": version, "ars.iterations": 40, "task.hidden": [32]})
    trainer = Trainer(cfg, progress=False)
    before = trainer.task.evaluate()["accuracy"]
    result = trainer.run()
    assert result["eval/accuracy"] > max(0.4, before + 0.3)
    if version.startswith("v2"):
        assert float(trainer.task.normalizer.count) == 40 * 64


class StopAt(Callback):
    def __init__(self, iteration):
        self.iteration = iteration

    def on_iteration(self, trainer, iteration, metrics):
        if iteration == self.iteration:
            raise KeyboardInterrupt


@pytest.mark.parametrize("backend,extra", [("vectorized", {}), ("sequential", {"ars.version": "v2t"})])
def test_resume_reaches_the_same_result_as_an_uninterrupted_run(tmp_path, backend, extra):
    overrides = {"ars.backend": backend, "ars.iterations": 12, "checkpoint.every": 4, **extra}
    full = Trainer(make_job("digits", tmp_path / "full", **overrides), progress=False)
    full_result = full.run()

    cfg = make_job("digits", tmp_path / "cut", **overrides)
    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg, callbacks=[StopAt(7)], progress=False).run()
    assert ckpt.latest(cfg.checkpoint.dir).name == "iter_0000004.pt"
    resumed = Trainer(cfg, progress=False)
    result = resumed.run(resume=True)
    assert torch.equal(resumed.space.vector(), full.space.vector())
    assert result["eval/accuracy"] == full_result["eval/accuracy"]
    assert result["count/forward_examples"] == full_result["count/forward_examples"]


def test_resume_without_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(ckpt.CheckpointError, match="no checkpoint"):
        Trainer(make_job("digits", tmp_path / "run"), progress=False).run(resume=True)


def test_divergence_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    cfg = make_job("digits", tmp_path / "run", **{"ars.iterations": 20, "checkpoint.every": 5})
    trainer = Trainer(cfg, progress=False)
    real = trainer.task.score_params

    def poisoned(params, batch):
        scores = real(params, batch)
        return scores * float("nan") if trainer.iteration >= 7 else scores

    trainer.task.score_params = poisoned
    with pytest.raises(TrainingDiverged, match=r"iteration 7.*iter_0000005.pt"):
        trainer.run()
    good = ckpt.load(tmp_path / "run" / "iter_0000005.pt")
    assert good["iteration"] == 5 and all(torch.isfinite(v).all() for v in good["model"].values())
    assert not (tmp_path / "run" / "final.pt").exists()


def test_cli_reports_divergence_with_exit_code_1(tmp_path, capsys):
    cfg = tmp_path / "job.toml"
    cfg.write_text(f'[task]\ndataset = "tests.support:nan_dataset"\nbatch_size = 16\n[ars]\ndirections = 2\ntop = 1\n'
                   f'iterations = 5\n[tracking]\nenabled = false\n[checkpoint]\ndir = "{tmp_path / "run"}"\n')
    assert main(["train", str(cfg), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "training diverged at iteration" in err and "scored NaN" in err


def test_metrics_json_and_checkpoint_contents(tmp_path):
    trainer = Trainer(make_job("digits", tmp_path / "run"), progress=False)
    result = trainer.run()
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved == result and saved["count/forward_examples"] == 10 * 16 * 64
    state = ckpt.load(tmp_path / "run" / "final.pt")
    assert state["format"] == ckpt.FORMAT and "[ars]" in state["config"]
