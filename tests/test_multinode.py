"""One job over several machines, tried on one host: two `arsearch train --nnodes 2` launchers meeting
at a c10d rendezvous on localhost, each in its own working directory as two machines would be
(issue 26). The checks without processes (option errors) run in the fast suite."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import torch

from arsearch.cli import main
from arsearch.config import to_toml
from arsearch.launch import STOP_GRACE, Nodes, writes_files
from arsearch.trainer import Trainer
from tests.conftest import free_port
from tests.support import make_job
from tests.support.study import arsearch_cmd, env
from tests.test_orphans import alive, tree

SETTINGS = {"ars.version": "v2t", "ars.iterations": 6, "eval.every": 3, "checkpoint.dir": "run", "checkpoint.every": 3}


def write_job(path: Path, **overrides) -> Path:
    path.write_text(to_toml(make_job("digits", None, **{**SETTINGS, **overrides})))
    return path


def theta(path: Path) -> dict:
    return torch.load(path, weights_only=True)["model"]


def assert_same_theta(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def start_nodes(spawn, root: Path, job: Path, port: int, *args: str, nodes: int = 2) -> list[subprocess.Popen]:
    """One launcher per node, each in its own working directory root/n<R>; node 0 first, and the others
    once it listens, so that node 0 hosts the rendezvous store as on a cluster."""
    procs = []
    for rank in range(nodes):
        cwd = root / f"n{rank}"
        cwd.mkdir(exist_ok=True)
        procs.append(spawn(arsearch_cmd("train", str(job), "--quiet", "--nnodes", str(nodes), "--node-rank",
                                        str(rank), "--rdzv-endpoint", f"127.0.0.1:{port}", *args),
                           cwd=cwd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        if rank == 0:
            deadline = time.time() + 120
            while not listening(port) and procs[0].poll() is None and time.time() < deadline:
                time.sleep(0.1)
    return procs


def finish(procs, timeout=300) -> list[tuple[int, str, str]]:
    """(exit code, stdout, stderr) of each launcher, once all have ended."""
    outputs = [p.communicate(timeout=timeout) for p in procs]
    return [(p.returncode, *o) for p, o in zip(procs, outputs)]


# -- options, refused before anything starts -----------------------------------------------------------

@pytest.mark.parametrize("args, expected", [
    (["--nnodes", "2"], "--nnodes 2 needs --rdzv-endpoint HOST:PORT"),
    (["--nnodes", "2", "--node-rank", "2", "--rdzv-endpoint", "h:1"], "--node-rank must be between 0 and"),
    (["--nnodes", "0"], "--nnodes must be >= 1"),
    (["--nnodes", "2", "--rdzv-endpoint", "node0"], "--rdzv-endpoint = 'node0': expected HOST:PORT"),
    (["--nnodes", "2", "--rdzv-endpoint", "node0:99999"], "expected HOST:PORT with a port from 1 to 65535"),
    (["--rdzv-endpoint", "node0:29400"], "--rdzv-endpoint and --rdzv-id need --nnodes > 1"),
    (["--nnodes", "2", "--rdzv-endpoint", "node0:29400", "--join-timeout", "0"], "--join-timeout must be > 0"),
    (["--nnodes", "4", "--nproc", "3", "--rdzv-endpoint", "node0:29400"],
     "ars.directions = 8 must be >= the number of ranks (12, on every machine together)"),
], ids=["no-endpoint", "rank-too-high", "zero-nodes", "no-port", "bad-port", "endpoint-alone", "join-timeout",
        "directions"])
def test_bad_node_options_are_refused_before_any_launch(tmp_cwd, capsys, args, expected):
    job = write_job(tmp_cwd / "job.toml")
    assert main(["train", str(job), "--quiet", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0], err
    assert not (tmp_cwd / "run").exists()


def test_torchrun_gets_a_c10d_rendezvous_and_the_ranks_our_node_rank():
    nodes = Nodes(nnodes=3, node_rank=2, rdzv_endpoint="node0:29400")
    args = nodes.torchrun_args(2, "arsearch-run", join_timeout=30)
    assert "--rdzv-backend=c10d" in args and "--rdzv-endpoint=node0:29400" in args and "--nnodes=3" in args
    assert "--rdzv-id=arsearch-run" in args and "--rdzv-conf=join_timeout=30" in args
    assert not any(a.startswith("--node-rank") for a in args)     # c10d ignores it: the ranks get ours by env
    assert Nodes().torchrun_args(2, "x") == ["--standalone", "--nproc-per-node=2"]


@pytest.mark.parametrize("environ, writer", [
    ({}, True), ({"RANK": "0"}, True), ({"RANK": "1"}, False),
    ({"RANK": "0", "LOCAL_RANK": "0", "ARSEARCH_NODE_RANK": "1"}, False),    # c10d put node 1 first
    ({"RANK": "1", "LOCAL_RANK": "0", "ARSEARCH_NODE_RANK": "0"}, True),
    ({"RANK": "1", "LOCAL_RANK": "1", "ARSEARCH_NODE_RANK": "0"}, False),
])
def test_the_writer_is_local_rank_0_of_node_rank_0(monkeypatch, environ, writer):
    for key in ("RANK", "LOCAL_RANK", "ARSEARCH_NODE_RANK"):
        monkeypatch.delenv(key, raising=False)
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    assert writes_files() is writer


@pytest.mark.parametrize("args, expected", [
    (["--n-jobs", "2"], "--n-jobs 2 with --nnodes 2: a trial's job spans the machines"),
    (["--node-rank", "3"], "--node-rank must be between 0 and --nnodes - 1 = 1"),
], ids=["parallel-trials", "rank-too-high"])
def test_a_study_over_machines_refuses_what_one_endpoint_cannot_carry(tmp_cwd, capsys, args, expected):
    from tests.support.study import write_study

    path = write_study(tmp_cwd, study='tracking = false\n')
    assert main(["study", "run", str(path), "--nnodes", "2", "--rdzv-endpoint", "127.0.0.1:29400", *args]) == 2
    assert expected in capsys.readouterr().err
    assert not (tmp_cwd / "runs").exists()


def test_study_run_gpus_is_this_machines_pool(tmp_cwd, capsys):
    from arsearch.cli import build_parser

    assert build_parser().parse_args(["study", "run", "s.toml", "--gpus", "2,3"]).gpus == [2, 3]
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["study", "run", "s.toml", "--gpus", "0,x"])
    assert exit_.value.code == 2 and "expected GPU ids separated by commas" in capsys.readouterr().err


# -- two launchers on localhost --------------------------------------------------------------------------

@pytest.mark.multiprocess
@pytest.mark.slow
def test_two_launchers_train_the_two_rank_job_and_resume_it_across_machines(tmp_path, spawn, run_cli):
    job = write_job(tmp_path / "job.toml")
    single = tmp_path / "single"
    single.mkdir()
    out = run_cli(arsearch_cmd("train", str(job), "--quiet", "--nproc", "2"), timeout=300, cwd=single, env=env())
    assert out.returncode == 0, out.stderr[-3000:]

    results = finish(start_nodes(spawn, tmp_path, job, free_port()))
    assert [r[0] for r in results] == [0, 0], [r[2][-3000:] for r in results]
    assert results[0][1].count('"iterations": 6') == 1 and not results[1][1].strip()   # node 0 alone prints
    assert_same_theta(theta(tmp_path / "n0" / "run" / "final.pt"), theta(single / "run" / "final.pt"))
    assert not (tmp_path / "n1" / "run").exists()          # node 1 writes nothing: its ranks are not the writer

    # --resume: node 1 has no checkpoint of its own; node 0's is sent to it
    results = finish(start_nodes(spawn, tmp_path, job, free_port(), "--resume", "--set", "ars.iterations=9"))
    assert [r[0] for r in results] == [0, 0], [r[2][-3000:] for r in results]
    assert "resuming from run/iter_0000006.pt (iteration 6)" in results[0][2]
    reference = Trainer(make_job("digits", tmp_path / "reference", **{**SETTINGS, "ars.iterations": 9,
                                                                       "checkpoint.dir": str(tmp_path / "reference")}),
                        progress=False)
    reference.run()
    assert_same_theta(theta(tmp_path / "n0" / "run" / "final.pt"), reference.model.state_dict())


@pytest.mark.multiprocess
@pytest.mark.slow
@pytest.mark.parametrize("fault", ["kill-9-node-1", "freeze-node-0"])
def test_a_lost_node_stops_the_other_within_the_bound_and_the_job_resumes(tmp_path, spawn, fault):
    """kill -9 of one launcher's process tree (its kernel closes the connections), or SIGSTOP of the
    tree of node 0, which hosts the rendezvous store (a machine that vanished: nothing is closed)."""
    timeout = 10
    job = write_job(tmp_path / "job.toml", **{"task.model": "tests.support.parallel:paced_model",
                                              "ars.iterations": 100000, "checkpoint.every": 5,
                                              "ars.backend": "distributed", "ars.timeout": timeout})
    assert f"timeout = {timeout}" in job.read_text()      # a key of the distributed backend: written only with it
    procs = start_nodes(spawn, tmp_path, job, free_port())
    ckpt_dir = tmp_path / "n0" / "run"
    deadline = time.time() + 240
    while not list(ckpt_dir.glob("iter_*.pt")) and time.time() < deadline:
        assert all(p.poll() is None for p in procs), [p.communicate()[1][-2000:] for p in procs]
        time.sleep(0.2)
    time.sleep(1.0)
    victim, survivor = (procs[1], procs[0]) if fault == "kill-9-node-1" else (procs[0], procs[1])
    family = [victim.pid, *tree(victim.pid)]
    survivors = [survivor.pid, *tree(survivor.pid)]
    assert len(family) >= 3 and len(survivors) >= 3, (family, survivors)    # launcher, torchrun, rank
    stopped = time.monotonic()
    for pid in family:
        os.kill(pid, signal.SIGKILL if fault.startswith("kill") else signal.SIGSTOP)
    # the bound: a collective fails at once on a closed connection, or after ars.timeout on a silent peer;
    # then torchrun has STOP_GRACE seconds to exit. The rest is slack for a loaded machine
    bound = timeout + STOP_GRACE + 45
    try:
        _, err = survivor.communicate(timeout=bound)
    finally:
        for pid in family:                    # the frozen machine is now lost for good
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        victim.communicate()
    took = time.monotonic() - stopped
    assert survivor.returncode == 1, err[-3000:]
    assert "distributed job failed" in err and "--resume" in err, err[-3000:]
    print(f"{fault}: the other node stopped {took:.1f} s after the fault (bound {bound} s)")
    left = alive(family + survivors)
    for _ in range(100):
        if not left:
            break
        time.sleep(0.1)
        left = alive(left)
    listing = subprocess.run(["ps", "-o", "pid,ppid,stat,args", "-p", ",".join(map(str, left))],
                             capture_output=True, text=True).stdout if left else ""
    assert not left, f"processes left after the lost node:\n{listing}"

    # node 0's last periodic checkpoint is whole, and resumes on another set of machines: one, with 2 ranks
    last = max(ckpt_dir.glob("iter_*.pt"))
    saved = torch.load(last, weights_only=True)
    at = int(saved["iteration"])
    # periodic (every 5), or where the ranks stopped together: a killed launcher's torchrun gets SIGTERM from
    # the kernel (PR_SET_PDEATHSIG) and forwards it to its rank, which may reach an iteration boundary, and
    # so a stop agreed with node 0 and a checkpoint there, before its own SIGKILL lands
    assert at >= 5 and last.name == f"iter_{at:07d}.pt"
    out = subprocess.run(arsearch_cmd("train", str(job), "--quiet", "--nproc", "2", "--resume",
                                      "--set", f"ars.iterations={at + 3}"),
                         cwd=tmp_path / "n0", env=env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"(iteration {at})" in out.stderr
    reference = Trainer(make_job("digits", tmp_path / "reference", **{
        **SETTINGS, "task.model": "tests.support.parallel:paced_model", "ars.iterations": at + 3,
        "checkpoint.dir": str(tmp_path / "reference")}), progress=False)
    reference.run()
    assert_same_theta(theta(ckpt_dir / "final.pt"), reference.model.state_dict())


@pytest.mark.multiprocess
def test_a_node_whose_peers_never_join_gives_up_after_the_join_timeout(tmp_path, run_cli):
    """Node 0 refused (or never started): node 1 waits at the rendezvous no longer than --join-timeout."""
    job = write_job(tmp_path / "job.toml")
    started = time.monotonic()
    out = run_cli(arsearch_cmd("train", str(job), "--quiet", "--nnodes", "2", "--node-rank", "1", "--join-timeout",
                               "5", "--rdzv-endpoint", f"127.0.0.1:{free_port()}"), timeout=180, cwd=tmp_path, env=env())
    assert out.returncode == 1, out.stderr[-3000:]
    assert "did not all join the rendezvous" in out.stderr and "within --join-timeout 5 s" in out.stderr
    assert time.monotonic() - started < 120


# -- one study, several machines ------------------------------------------------------------------------

@pytest.mark.multiprocess
@pytest.mark.postgres
def test_two_machines_share_one_postgres_study_each_with_its_own_gpu_pool(tmp_path, spawn):
    """Two `study run` workers as two machines: each in its own working directory (its runs/, its
    mlflow.db) and temporary directory (its GPU lock files), with its own --gpus pool, on one PostgreSQL
    study. The trials are distributed-backend jobs, so each is a subprocess trial that takes its GPUs
    from its worker's pool (CUDA_VISIBLE_DEVICES; on this CPU host the ids are only handed out)."""
    import optuna

    from arsearch.study import load_existing, load_study, open_study
    from tests.support.study import fresh_postgres_schema, write_study

    url = fresh_postgres_schema()
    shared = tmp_path / "shared"
    shared.mkdir()
    path = write_study(shared, name="machines", study=f'storage = "{url}"\ntracking = false\nsampler = "random"\n'
                                                      'pruner = "none"\n',
                       space='"ars.step_size" = { low = 0.005, high = 0.05, log = true }\n"ars.backend" = "distributed"\n')
    open_study(load_study(path))              # created once, before the machines start (`arsearch study create`)
    pools = {"n0": "3", "n1": "5"}
    workers = []
    for machine, gpus in pools.items():
        cwd, tmp = tmp_path / machine, tmp_path / machine / "tmp"
        tmp.mkdir(parents=True)
        workers.append(spawn(arsearch_cmd("study", "run", str(path), "--n-trials", "2", "--quiet", "--gpus", gpus),
                             cwd=cwd, env={**env(), "TMPDIR": str(tmp)}, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True))
    outputs = [w.communicate(timeout=300)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], [o[-3000:] for o in outputs]
    trials = load_existing(url, "machines").get_trials()
    assert len(trials) == 4 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    by_machine = {m: [t for t in trials if t.user_attrs.get("devices") == [int(g)]] for m, g in pools.items()}
    assert [len(v) for v in by_machine.values()] == [2, 2], [t.user_attrs for t in trials]
    for machine, mine in by_machine.items():
        for t in mine:             # each trial's files are on the machine that ran it, and only there
            other = "n1" if machine == "n0" else "n0"
            assert (tmp_path / machine / t.user_attrs["checkpoint_dir"] / "metrics.json").is_file()
            assert not (tmp_path / other / t.user_attrs["checkpoint_dir"]).exists()
        assert (tmp_path / machine / "tmp" / "arsearch-gpu-locks" / f"gpu{pools[machine]}.lock").exists()


@pytest.mark.multiprocess
@pytest.mark.slow
def test_a_study_whose_distributed_trials_span_two_machines(tmp_path, spawn):
    """`study run --nnodes 2`: node rank 0 runs the study, node rank 1 (its own working directory) joins
    each trial's job; the trials complete with node 0's results, and node 1 holds no checkpoint."""
    import optuna

    from arsearch.study import load_existing
    from tests.support.study import write_study

    shared = tmp_path / "shared"
    shared.mkdir()
    storage = f"sqlite:///{shared / 'optuna.db'}"
    path = write_study(shared, name="spanning", iterations=4,
                       study=f'storage = "{storage}"\ntracking = false\nsampler = "random"\npruner = "none"\n',
                       space='"ars.step_size" = { low = 0.005, high = 0.05, log = true }\n'
                             '"ars.backend" = "distributed"\n"ars.timeout" = 60\n')
    port = free_port()
    common = ["--quiet", "--nnodes", "2", "--rdzv-endpoint", f"127.0.0.1:{port}"]
    for machine in ("n0", "n1"):
        (tmp_path / machine).mkdir()
    follower = spawn(arsearch_cmd("study", "run", str(path), *common, "--node-rank", "1", "--timeout", "600"),
                     cwd=tmp_path / "n1", env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    leader = spawn(arsearch_cmd("study", "run", str(path), *common, "--node-rank", "0", "--n-trials", "2"),
                   cwd=tmp_path / "n0", env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    led = leader.communicate(timeout=600)[0]
    followed = follower.communicate(timeout=120)[0]
    assert leader.returncode == 0 and follower.returncode == 0, (led[-3000:], followed[-3000:])
    trials = load_existing(storage, "spanning").get_trials()
    assert len(trials) == 2 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials), \
        [t.user_attrs.get("fail_reason") for t in trials]
    assert "joined 2 job(s)" in followed, followed
    for t in trials:
        job = t.user_attrs["rendezvous"]
        assert job["nnodes"] == 2 and f"joined job {job['id']}" in followed
        assert (tmp_path / "n0" / t.user_attrs["checkpoint_dir"] / "final.pt").is_file()
        assert (tmp_path / "n1" / t.user_attrs["checkpoint_dir"] / "config.toml").is_file()
        assert not list((tmp_path / "n1" / t.user_attrs["checkpoint_dir"]).glob("*.pt"))
