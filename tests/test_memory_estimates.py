"""A job whose keys ask for more memory than there is is refused before anything is allocated (issue 22
item 4): the real sizes of the issue, under a real address-space limit, each refused with exit 2 naming
the key, its value and the bytes, in well under a second, with no growth of the peak RSS and no
directory left behind."""

import json
import resource
import subprocess
import sys

import pytest

from arsearch import memory
from arsearch.config import ConfigError
from tests.support import make_job
from tests.support.study import REPO, env

LIMIT = 8 << 30             # the address space the probe may use: every case below needs far more

CASES = {
    "ars.directions=1000000000": "ars.directions = 1000000000 would need at least 59.6 GiB",
    "task.hidden=[100000000]": "task.hidden = [100000000] would need at least 27.9 GiB",
    "task.batch_size=1000000000000": "task.batch_size = 1000000000000 would need at least 240 TiB",
    "population.size=10000000": "population.size = 10000000 would need at least",
    'ars.noise_source="table";ars.table_size=100000000000': "ars.table_size = 100000000000 would need at least 373 GiB",
}

JOB = """
seed = 0
[task]
dataset = "digits"
hidden = [16]
batch_size = 64
[ars]
directions = 8
top = 4
iterations = 5
[tracking]
enabled = false
[checkpoint]
dir = "runs/a"
"""


def _limit():
    resource.setrlimit(resource.RLIMIT_AS, (LIMIT, LIMIT))


@pytest.mark.multiprocess
def test_the_issues_sizes_are_refused_at_once_under_a_memory_limit(tmp_path):
    (tmp_path / "job.toml").write_text(JOB)
    done = subprocess.run([sys.executable, str(REPO / "tests/support/memory_probe.py"), "job.toml", *CASES],
                          cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=300, preexec_fn=_limit)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["available"] < LIMIT                     # the limit is what the estimate compared with
    for case, expected in CASES.items():
        got = out[case]
        assert got["rc"] == 2, (case, got)
        assert expected in got["err"] and "refused before allocating it" in got["err"], (case, got["err"])
        assert "Traceback" not in got["err"]
        assert got["seconds"] < 1.0, (case, got)
        assert got["rss_growth_kib"] < 64 * 1024, (case, got)    # nothing of the claimed size was touched
    assert not (tmp_path / "runs").exists()               # not even a directory with a lock file


def test_a_job_that_fits_is_not_refused_and_the_sum_of_parts_is_checked(tmp_path, monkeypatch):
    from arsearch.tasks import build_task

    config = make_job("digits", tmp_path / "run", **{"population.size": 4, "ars.directions": 64})
    task = build_task(config)
    parts = [(key, nbytes, what) for key, _, nbytes, what in memory.footprint(config, task, 1000)]
    assert ("ars.directions", 4 * 64 * memory.DIRECTION_BYTES) in [p[:2] for p in parts]
    assert ("population.size", 4 * 1000 * memory.FLOAT_BYTES) in [p[:2] for p in parts]
    # the vectorized backend draws every learner's N full-rank directions as one matrix
    assert config.ars.backend == "vectorized"
    matrix = [p for p in parts if "full-rank directions" in p[2]]
    assert [p[:2] for p in matrix] == [("ars.directions", 4 * 64 * 1000 * memory.FLOAT_BYTES)]
    memory.check_job(config, task, 1000)                  # this machine holds it
    # each part fits alone, their sum does not: refused naming the largest part
    monkeypatch.setattr(memory, "available_memory", lambda: max(p[1] for p in parts) + 1)
    with pytest.raises(ConfigError, match=r"this job would need at least .* the largest part is ars.directions = 64 "
                                          r"\(0.977 MiB: the iteration's full-rank directions"):
        memory.check_job(config, task, 1000)
    # low rank draws factors, not the matrix
    config.ars.noise_rank = 1
    assert not [p for p in memory.footprint(config, task, 1000) if "full-rank directions" in p[3]]
    task.close()


def test_a_model_too_large_is_refused_before_its_layers_exist(monkeypatch):
    from arsearch.models import mlp

    monkeypatch.setattr(memory, "available_memory", lambda: 10 << 20)      # 10 MiB
    with pytest.raises(ConfigError, match=r"task.hidden = \[2000, 2000\] would need at least 15.8 MiB"):
        mlp(64, 10, [2000, 2000])
    mlp(64, 10, [64])                                                      # 4.7k parameters: fine


@pytest.mark.parametrize("n, text", [(0, "0 B"), (999, "999 B"), (1023, "0.999 KiB"), (1024, "1 KiB"),
                                     (1023.9 * 1024, "1 MiB"), (3.7 * 2**30, "3.7 GiB"),
                                     (7.3 * 2**40, "7.3 TiB"), (5000 * 2**40, "5e+03 TiB")])
def test_sizes_read_as_a_person_writes_them(n, text):
    from arsearch.checkpoint import human_bytes

    assert human_bytes(n) == text
