"""--resume with an edited job: a change that alters the training from the checkpoint on is named and
refused unless --force (issue 22 item 5); --overwrite never deletes the job's own input checkpoint."""

from __future__ import annotations

import shutil

import pytest
import tomli_w

from arsearch.cli import main
from tests.support import job_data


def write(path, data):
    path.write_text(tomli_w.dumps(data))
    return path


def trained(tmp_path, **overrides):
    data = job_data("digits", tmp_path / "run", **{"ars.iterations": 4, "checkpoint.every": 2,
                                                    "tracking.enabled": False, **overrides})
    job = write(tmp_path / "job.toml", data)
    assert main(["train", str(job), "--quiet"]) == 0
    return data, job


@pytest.mark.parametrize("key, value", [("ars.step_size", 0.07), ("task.batch_size", 32),
                                        ("task.test_fraction", 0.5), ("ars.top", 2)])
def test_a_change_that_alters_the_training_is_named_and_refused_unless_forced(tmp_path, capsys, key, value):
    data, job = trained(tmp_path)
    section, name = key.split(".")
    data[section][name] = value
    data["ars"]["iterations"] = 6
    write(job, data)
    assert main(["train", str(job), "--resume", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"{key} = " in err and f"{value!r} now" in err and "--force" in err
    assert main(["train", str(job), "--resume", "--force", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "--force: resuming with changed keys" in err and key in err


def test_extending_a_run_or_changing_its_evaluation_and_tracking_is_allowed(tmp_path, capsys):
    data, job = trained(tmp_path)
    data["ars"]["iterations"] = 8
    data["eval"]["every"] = 3
    data["checkpoint"]["every"] = 4
    write(job, data)
    assert main(["train", str(job), "--resume", "--quiet"]) == 0
    assert "changed keys" not in capsys.readouterr().err


def test_the_seed_cannot_be_forced(tmp_path, capsys):
    data, job = trained(tmp_path)
    data["seed"] = 7
    write(job, data)
    assert main(["train", str(job), "--resume", "--force", "--quiet"]) == 2
    assert "written by a different job: seed = 0 in the checkpoint, 7 now" in capsys.readouterr().err


def test_overwrite_refuses_to_delete_the_jobs_own_input_checkpoint(tmp_path, capsys):
    data, job = trained(tmp_path)
    start = tmp_path / "run" / "final.pt"
    assert start.exists()
    data.setdefault("model", {})["checkpoint"] = str(start)       # fine-tune from the run's own final checkpoint
    write(job, data)
    assert main(["train", str(job), "--overwrite", "--quiet"]) == 2
    assert "--overwrite would delete" in capsys.readouterr().err and start.exists()
    shutil.copy(start, tmp_path / "start.pt")                        # outside the directory: fine
    data["model"]["checkpoint"] = str(tmp_path / "start.pt")
    write(job, data)
    assert main(["train", str(job), "--overwrite", "--quiet"]) == 0
