"""The distributed backend on CPU with Gloo: 2 ranks equal 1 process; a killed rank ends the job.

Rank processes cost a few seconds each to start, so the jobs are tiny and grouped: one hand-made
2-rank group runs both equality jobs. The launcher (`arsearch train --nproc 2`) is tested in
test_distributed_cli.py.
"""

import math

import pytest
import torch
import torch.multiprocessing as mp

from arsearch.backends.distributed import shares
from arsearch.trainer import Trainer
from tests.support import make_job
from tests.support.parallel import distributed_rank

pytestmark = pytest.mark.multiprocess


def equality_jobs(tmp_path, backend):
    # N = 5 and 3 directions over 2 ranks: uneven shares (3 + 2, 2 + 1) exercise the padding
    supervised = make_job("digits", tmp_path / f"sup-{backend}", **{"ars.backend": backend, "ars.version": "v2t",
                                                                    "ars.directions": 5, "ars.top": 3, "ars.iterations": 6})
    rl = make_job("rl", tmp_path / f"rl-{backend}", **{"ars.backend": backend, "ars.version": "v2t", "ars.directions": 3,
                                                       "task.horizon": 30, "task.eval_episodes": 1})
    return {"supervised": supervised, "rl": rl}


def test_shares_cover_every_direction_once():
    assert shares(5, 2) == [[0, 1, 2], [3, 4]]
    assert sum(shares(7, 3), []) == list(range(7))


def test_world_of_one_equals_the_vectorized_run(tmp_path):
    a = Trainer(make_job("digits", tmp_path / "a", **{"ars.version": "v2t"}), progress=False)
    a.run()
    b = Trainer(make_job("digits", tmp_path / "b", **{"ars.version": "v2t", "ars.backend": "distributed"}), progress=False)
    b.run()
    for (name, x), (_, y) in zip(a.model.state_dict().items(), b.model.state_dict().items()):
        assert torch.equal(x, y), name
    assert (tmp_path / "b" / "final.pt").is_file()


def test_two_gloo_ranks_equal_one_process(tmp_path):
    ctx = mp.get_context("spawn")
    jobs = equality_jobs(tmp_path, "distributed")
    store = tmp_path / "group-store"      # the ranks meet through a file: no port to race for
    procs = [ctx.Process(target=distributed_rank, args=(r, 2, str(store), jobs, str(tmp_path))) for r in range(2)]
    try:
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=240)
        assert [p.exitcode for p in procs] == [0, 0]
    finally:
        for p in procs:          # a rank still running after the timeout is killed, not left behind
            if p.is_alive():
                p.kill()
                p.join()

    for name, config in equality_jobs(tmp_path, "vectorized").items():
        single = Trainer(config, progress=False)
        single.run()
        ranks = [torch.load(tmp_path / f"{name}-{r}.pt", weights_only=True) for r in range(2)]
        assert [r["is_writer"] for r in ranks] == [True, False]
        for rank in ranks:
            for key, value in single.model.state_dict().items():
                # parameters: equal; V2 statistics: equal up to the order of the float64 sums
                torch.testing.assert_close(rank["model"][key], value, rtol=1e-12, atol=1e-12, msg=key)
            assert rank["counters"] == single.task.counters      # counts of both ranks, summed
            assert rank["scores"] == pytest.approx([h["train/score"] for h in single.history], abs=1e-9)
        # the payload the module docstring documents, per iteration and rank: one all_gather of
        # 2·ceil(N/W) scores + one float per counter the task holds by then (an evaluation may add
        # one: the history's count/ keys are those), one all_reduce of 1 + 2·obs_dim V2 moments
        n, obs_dim = config.ars.directions, single.task.normalizer.mean.numel()
        floats = [2 * math.ceil(n / 2) + sum(k.startswith("count/") for k in h) + 1 + 2 * obs_dim
                  for h in single.history]
        assert len(floats) == config.ars.iterations
        assert [r["bytes"] for r in ranks] == [8 * sum(floats)] * 2
    # rank 1 wrote nothing: only rank 0's files are there
    assert sorted(p.name for p in (tmp_path / "sup-distributed").iterdir()) == ["final.pt", "metrics.json"]


def test_bad_nproc_is_a_usage_error(tmp_path, capsys):
    from arsearch.cli import main

    job = tmp_path / "job.toml"
    job.write_text('[ars]\nbackend = "distributed"\n')
    assert main(["train", str(job), "--nproc", "0"]) == 2
    assert "--nproc must be >= 1" in capsys.readouterr().err
