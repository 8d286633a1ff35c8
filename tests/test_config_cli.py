"""Config validation and the `arsearch train` command: usage errors exit 2 before any work."""

import json
import sys

import pytest
import torch

from arsearch.cli import main
from arsearch.config import ConfigError, load_job, to_toml

GOOD = """
seed = 1
[task]
dataset = "digits"
hidden = [8]
batch_size = 32
[ars]
directions = 4
top = 2
iterations = 6
[eval]
every = 3
[tracking]
enabled = false
[checkpoint]
dir = "{dir}"
every = 3
"""


def write(tmp_path, text, name="job.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("text,needle", [
    ("[ars]\nstep_sise = 0.1\n", "ars.step_sise"),
    ("[ars]\nversion = \"v3\"\n", "'v1', 'v1t', 'v2', 'v2t'"),
    ("[ars]\ndirections = 0\n", "ars.directions"),
    ("[ars]\nnoise = \"big\"\n", "ars.noise: expected a number"),
    ("[task]\nhidden = [8, \"x\"]\n", "task.hidden[1]"),
    ("[population]\nstrategies = [\"culling\", \"magic\"]\n", "population.strategies[1]"),
    ("[ars]\ndirections = 4\ntop = 8\n", "ars.top"),
    ("[ars\nversion = 1\n", "not valid TOML"),
    ("colour = 1\n", "unknown key 'colour'"),
])
def test_bad_configs_are_refused_with_the_key_path(tmp_path, text, needle):
    with pytest.raises(ConfigError) as err:
        load_job(write(tmp_path, text))
    assert needle in str(err.value)


def test_cli_exits_2_and_writes_nothing_on_a_bad_key(tmp_path, capsys):
    path = write(tmp_path, GOOD.format(dir=tmp_path / "run"))
    code = main(["train", str(path), "--quiet", "--set", "ars.iterations=-3"])
    assert code == 2
    assert "ars.iterations" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_unknown_dataset_model_or_env_is_a_usage_error(tmp_path, capsys):
    path = write(tmp_path, GOOD.format(dir=tmp_path / "run"))
    assert main(["train", str(path), "--quiet", "--set", "task.dataset=nosuch"]) == 2
    assert "unknown dataset 'nosuch'" in capsys.readouterr().err
    assert main(["train", str(path), "--quiet", "--set", "task.model=nosuch.module:fn"]) == 2
    assert "cannot import module 'nosuch.module'" in capsys.readouterr().err


def test_set_overrides_and_resolved_toml_round_trip(tmp_path):
    path = write(tmp_path, GOOD.format(dir=tmp_path / "run"))
    cfg = load_job(path, ["ars.step_size=0.5", "task.hidden=[3, 3]", "ars.backend=sequential"])
    assert cfg.ars.step_size == 0.5 and cfg.task.hidden == [3, 3] and cfg.ars.backend == "sequential"
    again = load_job(write(tmp_path, to_toml(cfg), "resolved.toml"))
    assert again == cfg



@pytest.mark.parametrize("key", ["ars..step_size", ".ars.step_size", "ars.", "ars. .step_size"])
def test_set_key_with_an_empty_part_names_the_key_not_a_fragment(tmp_path, capsys, key):
    path = write(tmp_path, GOOD.format(dir=tmp_path / "run"))
    assert main(["train", str(path), "--quiet", "--set", f"{key}=1"]) == 2
    err = capsys.readouterr().err
    assert f"--set key {key!r} has an empty part" in err and "unknown key" not in err
    assert not (tmp_path / "run").exists()

@pytest.mark.multiprocess
def test_train_command_end_to_end(tmp_path, run_cli):
    run = tmp_path / "run"
    path = write(tmp_path, GOOD.format(dir=run))
    proc = run_cli([sys.executable, "-m", "arsearch.cli", "train", str(path)], timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["iterations"] == 6
    # the command's numbers are the job's: the same config run in this process gives them exactly
    from arsearch.trainer import Trainer

    here = Trainer(load_job(path, [f"checkpoint.dir={tmp_path / 'here'}"]), progress=False).run()
    assert result["eval/accuracy"] == here["eval/accuracy"] and result["eval/loss"] == here["eval/loss"]
    assert "it/s" in proc.stderr or "s/it" in proc.stderr     # the progress bar
    assert json.loads((run / "metrics.json").read_text()) == result
    state = torch.load(run / "final.pt", weights_only=True)
    assert state["iteration"] == 6 and "0.bias" not in state["model"] and "1.bias" in state["model"]
    assert sorted(p.name for p in run.glob("iter_*.pt")) == ["iter_0000003.pt", "iter_0000006.pt"]


def test_user_dataset_and_model_by_import_path(tmp_path):
    path = write(tmp_path, GOOD.format(dir=tmp_path / "run"))
    code = main(["train", str(path), "--quiet", "--set", "task.dataset=tests.support:user_dataset",
                 "--set", "task.model=tests.support:user_model", "--set", "ars.iterations=20"])
    assert code == 0
    result = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert result["eval/accuracy"] > 0.9   # two well-separated blobs
