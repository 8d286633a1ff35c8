"""Signals to `arsearch posttrain` outside the fine-tuning loop (issue 22 item 1): during the export
(exit 128 + signal, nothing half-written, `--resume` exports and continues the same MLflow run) and
during the Adam pretraining (stops within a mini-batch)."""

import os
import signal
import threading
import time

import pytest

from arsearch import posttrain as posttrain_module
from arsearch.cli import main
from arsearch.interrupt import ExportInterrupted, StopSignals
from tests.support.recovery import runs, start

POSTTRAIN = """
seed = 0
[task]
dataset = "digits"
hidden = [16]
batch_size = 64
[model]
factory = "mlp"
checkpoint = "runs/p/pretrained.pt"
pretrain_epochs = {epochs}
[compress]
prune = 0.5
[ars]
directions = 4
top = 2
iterations = 6
[eval]
every = 3
[tracking]
enabled = {tracking}
uri = "sqlite:///mlflow.db"
experiment = "recovery"
[checkpoint]
dir = "runs/p"
every = {every}
"""


def test_sigterm_during_the_export_leaves_no_half_file_and_resume_exports_into_the_same_run(tmp_cwd, monkeypatch,
                                                                                           capsys):
    (tmp_cwd / "post.toml").write_text(POSTTRAIN.format(epochs=2, tracking="true", every=100))   # final.pt only
    real_export = posttrain_module.weights.export
    calls = []

    def export_with_a_signal(stem, payload, fmt="safetensors"):
        calls.append(stem)
        if len(calls) == 1:          # the first export file: a real SIGTERM to this process as it is written
            os.kill(os.getpid(), signal.SIGTERM)
        return real_export(stem, payload, fmt)
    monkeypatch.setattr(posttrain_module.weights, "export", export_with_a_signal)
    assert main(["posttrain", "post.toml", "--quiet"]) == 143
    err = capsys.readouterr().err
    assert "stopped by SIGTERM during the export" in err and "export with: arsearch posttrain post.toml --resume" in err
    out = tmp_cwd / "runs/p"
    assert (out / "final.pt").exists() and not list(out.glob("iter_*.pt"))
    assert not (out / "posttrained.safetensors").exists() and not (out / "posttrain.json").exists()
    assert not [p.name for p in out.iterdir() if ".tmp" in p.name]
    _, found = runs(tmp_cwd)
    assert [(r.info.status, r.data.tags.get("arsearch.stopped_by")) for r in found] == [("KILLED", "SIGTERM")]
    run_id = found[0].info.run_id

    monkeypatch.setattr(posttrain_module.weights, "export", real_export)
    assert main(["posttrain", "post.toml", "--quiet", "--resume"]) == 0
    assert (out / "posttrained.safetensors").exists() and (out / "posttrain.json").exists()
    _, found = runs(tmp_cwd)
    assert [(r.info.run_id, r.info.status) for r in found] == [(run_id, "FINISHED")]    # one job, one run


def test_a_signal_while_the_model_directory_is_saved_keeps_the_complete_earlier_one(tmp_path):
    class Model:
        def save_pretrained(self, directory, max_shard_size=None):
            (directory / "config.json").write_text("{}")
            os.kill(os.getpid(), signal.SIGTERM)           # arrives while the shards are still to come
            (directory / "model.safetensors").write_text("weights")

    class Task:
        model, tokenizer = Model(), None

    earlier = tmp_path / "model"
    earlier.mkdir()
    (earlier / "config.json").write_text('{"complete": true}')
    (earlier / "model.safetensors").write_text("earlier weights")
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setattr("arsearch.models._transformers", lambda: None)
    try:
        with StopSignals() as signals:
            signals.exporting = True
            with pytest.raises(ExportInterrupted):
                posttrain_module._save_hf_atomic(Task(), earlier)
    finally:
        monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]            # no temporary directory left
    assert (earlier / "model.safetensors").read_text() == "earlier weights"


@pytest.mark.multiprocess
def test_sigterm_during_pretraining_stops_within_an_epoch(tmp_cwd):
    from tests.test_orphans import no_survivors, tree

    (tmp_cwd / "post.toml").write_text(POSTTRAIN.format(epochs=100000, tracking="false", every=4))
    proc = start(tmp_cwd, "posttrain", "post.toml")
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    reader.start()
    deadline = time.time() + 180
    while not any("pretraining" in line for line in lines) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    time.sleep(2)                                        # well into the first epochs
    family = tree(proc.pid)
    sent = time.time()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    took = time.time() - sent
    reader.join(timeout=10)
    err = "".join(lines)
    assert proc.returncode == 143, err
    assert "stopped by SIGTERM before the first iteration finished (during set-up or pretraining)" in err, err
    assert "Traceback" not in err
    assert took < 30, took                              # 100000 epochs would take hours
    assert not (tmp_cwd / "runs/p/pretrained.pt").exists()
    no_survivors(family, timeout=10)
