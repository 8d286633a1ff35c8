"""Plausible input that used to crash with a traceback: each is now accepted or a clear exit-2 message
naming the key or the function. User data: (train_dataset, test_dataset) and task.test_dataset."""

import pytest
import torch

from arsearch.cli import main
from arsearch.config import ConfigError
from arsearch.tasks import build_task
from tests.support import make_job

TOML = """
seed = 0
[task]
dataset = "digits"
hidden = [8]
batch_size = 32
[ars]
directions = 4
top = 2
iterations = 2
[eval]
every = 1
[tracking]
enabled = false
[checkpoint]
dir = "runs/a"
every = 100
"""


@pytest.fixture
def train(tmp_cwd, capsys):
    (tmp_cwd / "job.toml").write_text(TOML)

    def go(*sets: str) -> tuple[int, str]:
        args = ["train", "job.toml", "--quiet", "--overwrite"]
        for s in sets:
            args += ["--set", s]
        code = main(args)
        return code, capsys.readouterr().err
    return go


def test_user_train_test_datasets_are_used_as_given(tmp_path):
    task = build_task(make_job("digits", tmp_path / "run", **{"task.dataset": "tests.support.recovery_data:split",
                                                              "task.hidden": [4]}))
    assert len(task.x_train) == 120 and len(task.x_test) == 14          # no re-split
    from tests.support.recovery_data import split
    assert torch.equal(task.x_test, split()[1].tensors[0])


def test_explicit_test_dataset_function(tmp_path):
    task = build_task(make_job("digits", tmp_path / "run",
                               **{"task.dataset": "tests.support.recovery_data:train_only",
                                  "task.test_dataset": "tests.support.recovery_data:test_only"}))
    assert len(task.x_train) == 120 and len(task.x_test) == 10


def test_user_split_trains_end_to_end(train):
    code, err = train('task.dataset="tests.support.recovery_data:split"')
    assert code == 0, err


@pytest.mark.parametrize(("sets", "message"), [
    (['task.dataset="tests.support.recovery_data:three"'],
     "dataset 'tests.support.recovery_data:three' returned a tuple of length 3; accepted: (x, y) arrays or tensors; "
     "a torch Dataset of (x, y) pairs; or (train_dataset, test_dataset)"),
    (['task.dataset="tests.support.recovery_data:onehot"'],
     "dataset 'tests.support.recovery_data:onehot': the labels y have shape (120, 2) (one-hot rows: return arr.argmax(1)"),
    (['task.dataset="tests.support.recovery_data:strings"'],
     "dataset 'tests.support.recovery_data:strings': the labels y are strings"),
    (['task.model="tests.support.recovery_data:dict_other"', 'task.dataset="tests.support.recovery_data:split"'],
     "task.model 'tests.support.recovery_data:dict_other' returned a dict with keys ['hidden', 'scores']; return a tensor, "
     "or a dict with a 'logits' tensor"),
    (['ars.devices=["cuda:0"]'], "ars.devices[0] = 'cuda:0' but no CUDA device is available on this machine"),
    (["task.test_fraction=1.0"], "task.test_fraction = 1.0 leaves no training data; allowed: > 0 and < 1"),
    (["task.test_fraction=0.9999"], "task.test_fraction = 0.9999 of 1797 examples leaves 1797 for evaluation and 0"),
    (["seed=-1"], "seed = -1 is out of range; allowed: >= 0 and <= 4294967295"),
    (["seed=4294967296"], "seed = 4294967296 is out of range"),
])
def test_plausible_bad_input_is_a_usage_error_naming_the_key(train, sets, message):
    if "cuda" in message and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    code, err = train(*sets)
    assert code == 2, err
    assert message in err, err
    assert "Traceback" not in err


def test_tiny_test_fraction_that_leaves_examples_trains(train):
    code, err = train("task.test_fraction=0.0001")        # ceil(0.18) = 1 test example: allowed
    assert code == 0, err


def test_dict_output_with_logits_is_used(train):
    code, err = train('task.model="tests.support.recovery_data:dict_logits"',
                      'task.dataset="tests.support.recovery_data:split"')
    assert code == 0, err


def test_devices_check_is_in_the_config(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ConfigError, match=r"ars.devices\[1\] = 'cuda:1'"):
        make_job("digits", tmp_path / "run", **{"ars.devices": ["cpu", "cuda:1"]})


def test_small_mistakes_that_used_to_pass_silently_are_refused(tmp_path):
    """checkpoint.dir = "" (it wrote into the working directory) and a layer of zero units."""
    import pytest as _pytest

    from arsearch.config import ConfigError, load_job
    from tests.support import job_data

    with _pytest.raises(ConfigError, match="checkpoint.dir is empty"):
        load_job(data=job_data("digits", "", **{"checkpoint.dir": ""}))
    with _pytest.raises(ConfigError, match=r"task.hidden = \[16, 0\]: every layer needs at least one unit"):
        load_job(data=job_data("digits", tmp_path, **{"task.hidden": [16, 0]}))
