"""Training jobs: learning happens, resume is exact, divergence keeps the last good checkpoint."""

import copy
import json

import numpy as np
import pytest
import torch

from arsearch import checkpoint as ckpt
from arsearch.callbacks import Callback
from arsearch.cli import main
from arsearch.config import to_toml
from arsearch.trainer import Trainer, TrainingDiverged
from tests.support import StopAt, make_job, reference


@pytest.mark.parametrize("version", ["v1", "v1t", "v2", "v2t"])
def test_every_version_learns_digits(tmp_path, version):
    cfg = make_job("digits", tmp_path / "run", **{"ars.version": version, "ars.iterations": 40, "task.hidden": [32]})
    trainer = Trainer(cfg, progress=False)
    start = copy.deepcopy(trainer.model)
    before = trainer.task.evaluate()["accuracy"]
    result = trainer.run()
    assert result["eval/accuracy"] > max(0.4, before + 0.3)
    # A wrong step size or a wrong normalisation learns too; what must hold is that these 40
    # iterations land where the paper's algorithm (the NumPy reference) lands from the same seeds.
    expected = reference.run_supervised(cfg, start)[-1]["thetas"][0]
    learned = torch.cat([p.detach().reshape(-1) for p in trainer.model.parameters()]).double().numpy()
    np.testing.assert_allclose(learned, expected, rtol=1e-3, atol=1e-4)
    if version.startswith("v2"):
        assert float(trainer.task.normalizer.count) == 40 * 64


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
    # the vectorized backend scores an MLP through score_directions, other candidates through score_params
    for name in ("score_params", "score_directions"):
        real = getattr(trainer.task, name)

        def poisoned(*args, real=real, **kwargs):
            scores = real(*args, **kwargs)
            return scores * float("nan") if trainer.iteration >= 7 and scores is not None else scores

        setattr(trainer.task, name, poisoned)
    with pytest.raises(TrainingDiverged, match=r"iteration 7.*iter_0000005.pt"):
        trainer.run()
    good = ckpt.load(tmp_path / "run" / "iter_0000005.pt")
    assert good["iteration"] == 5 and all(torch.isfinite(v).all() for v in good["model"].values())
    assert not (tmp_path / "run" / "final.pt").exists()


def test_cli_reports_divergence_with_exit_code_1(tmp_path, capsys):
    cfg = tmp_path / "job.toml"
    cfg.write_text(to_toml(make_job("digits", tmp_path / "run", **{
        "task.model": "tests.support:nan_model", "task.batch_size": 16, "ars.directions": 2, "ars.top": 1,
        "ars.iterations": 5})))
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


class StopAfter(Callback):
    def __init__(self, iteration):
        self.iteration = iteration

    def on_iteration(self, trainer, iteration, metrics):
        if iteration == self.iteration:
            trainer.request_stop()


@pytest.mark.parametrize("backend", ["vectorized", pytest.param("hogwild", marks=pytest.mark.multiprocess)])
def test_request_stop_ends_after_the_current_iteration_and_finishes_normally(tmp_path, backend):
    cfg = make_job("digits", tmp_path / "run", **{"ars.backend": backend, "ars.workers": 1, "ars.iterations": 50})
    trainer = Trainer(cfg, callbacks=[StopAfter(3)], progress=False)
    result = trainer.run()
    assert result["iterations"] == trainer.iteration == 3 and len(trainer.history) == 3
    assert result["count/forward_examples"] == 3 * 16 * 64     # nothing spent past the stop
    assert "eval/accuracy" in result                           # evaluated at the stop, as at a normal end
    final = ckpt.load(tmp_path / "run" / "final.pt")
    assert final["iteration"] == 3
    assert json.loads((tmp_path / "run" / "metrics.json").read_text()) == result
    if backend == "hogwild":
        return   # its worker runs ahead of the main process (by design), so θ may hold a later update
    # the θ it stopped with is that of 3 iterations of an uninterrupted run
    three = Trainer(make_job("digits", tmp_path / "three", **{"ars.iterations": 3}), progress=False)
    three.run()
    assert torch.equal(trainer.space.vector(), three.space.vector())
