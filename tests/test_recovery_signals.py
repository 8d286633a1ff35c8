"""Ctrl-C (a real SIGINT), SIGTERM and kill -9 on `arsearch train`: a checkpoint at the interrupt,
the MLflow run ended, one command to resume, and --resume continuing the same run bit-exactly."""

import os
import signal

import pytest
import torch

from arsearch import checkpoint as ckpt
from arsearch.callbacks import Callback
from arsearch.interrupt import StopSignals, TrainingInterrupted
from arsearch.trainer import Trainer
from tests.support import make_job
from tests.support.recovery import checkpoints, run, runs, start, wait_for, write_job

# every test here starts `arsearch` processes or sends real signals (to them or to this process)
pytestmark = pytest.mark.multiprocess


class CtrlCAt(Callback):
    """A real SIGINT to this process, `times` times, at the end of iteration `iteration`."""

    def __init__(self, iteration: int, times: int = 1):
        self.iteration, self.times = iteration, times

    def on_iteration(self, trainer, iteration, metrics):
        if iteration == self.iteration:
            for _ in range(self.times):
                os.kill(os.getpid(), signal.SIGINT)


def _interrupt(tmp_path, sig):
    write_job(tmp_path)
    p = start(tmp_path, "train", "job.toml", "--quiet")
    wait_for(lambda: len(checkpoints(tmp_path / "runs/a")) >= 2, what="two checkpoints", proc=p)
    p.send_signal(sig)
    out, err = p.communicate(timeout=120)
    return p.returncode, err


def test_ctrl_c_saves_ends_the_run_killed_and_resume_continues_it_bit_exactly(tmp_path):
    rc, err = _interrupt(tmp_path, signal.SIGINT)
    assert rc == 130, err
    assert "Traceback" not in err
    assert "resume with: arsearch train job.toml --resume" in err
    saved = checkpoints(tmp_path / "runs/a")[-1]
    stopped_at = int(saved.stem.split("_")[1])
    assert f"at iteration {stopped_at}; the checkpoint is runs/a/{saved.name}" in err   # at the interrupt
    client, found = runs(tmp_path)
    assert [r.info.status for r in found] == ["KILLED"]
    run_id = found[0].info.run_id
    assert ckpt.peek(saved)["tracking_run_id"] == run_id

    done = run(tmp_path, "train", "job.toml", "--quiet", "--resume", "--set", "ars.iterations=" + str(stopped_at + 3))
    assert done.returncode == 0, done.stderr
    assert f"resuming from runs/a/{saved.name} (iteration {stopped_at})" in done.stderr
    client, found = runs(tmp_path)
    assert [(r.info.run_id, r.info.status) for r in found] == [(run_id, "FINISHED")]     # one job, one history
    steps = [m.step for m in client.get_metric_history(run_id, "train/score")]
    assert sorted(set(steps)) == list(range(1, stopped_at + 4))

    # bit-exact: the same job run straight through, in process
    ref = Trainer(make_job("digits", tmp_path / "run",
                           **{"ars.iterations": stopped_at + 3, "checkpoint.every": 1000, "task.hidden": [16],
                              "ars.directions": 8, "ars.top": 4, "ars.step_size": 0.02}),
                  progress=False)
    ref.run()
    resumed = ckpt.peek(tmp_path / "runs/a/final.pt")["model"]
    for k, v in ref.model.state_dict().items():
        assert torch.equal(v, resumed[k]), k


def test_sigterm_is_handled_like_ctrl_c(tmp_path):
    rc, err = _interrupt(tmp_path, signal.SIGTERM)
    assert rc == 143, err
    assert "stopped by SIGTERM" in err and "Traceback" not in err
    _, found = runs(tmp_path)
    assert [r.info.status for r in found] == ["KILLED"]


def test_kill_9_leaves_a_stale_run_that_the_next_start_ends(tmp_path):
    write_job(tmp_path)
    p = start(tmp_path, "train", "job.toml", "--quiet")
    wait_for(lambda: checkpoints(tmp_path / "runs/a"), what="a checkpoint", proc=p)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    _, found = runs(tmp_path)
    assert [r.info.status for r in found] == ["RUNNING"]          # the fault: nobody ended it
    stale = found[0].info.run_id
    # --resume continues that run (its id is in the checkpoint) and ends it properly
    done = run(tmp_path, "train", "job.toml", "--quiet", "--resume", "--set", "ars.iterations=12")
    assert done.returncode == 0, done.stderr
    _, found = runs(tmp_path)
    assert [(r.info.run_id, r.info.status) for r in found] == [(stale, "FINISHED")]

    # killed again, then started afresh with --overwrite: the stale run is ended as KILLED
    write_job(tmp_path, ckpt_dir="runs/b")
    p = start(tmp_path, "train", "job.toml", "--quiet")
    wait_for(lambda: checkpoints(tmp_path / "runs/b"), what="a checkpoint", proc=p)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    done = run(tmp_path, "train", "job.toml", "--quiet", "--overwrite", "--set", "ars.iterations=4")
    assert done.returncode == 0, done.stderr
    assert "left RUNNING by a killed process: ended as KILLED" in done.stderr
    _, found = runs(tmp_path)
    assert sorted(r.info.status for r in found) == ["FINISHED", "FINISHED", "KILLED"]


def test_second_signal_during_the_save_does_not_corrupt_it(tmp_path, monkeypatch):
    """In process, with real signals: SIGINT at iteration 3, a second one while the checkpoint is written."""
    config = make_job("digits", tmp_path / "run", **{"ars.iterations": 50, "checkpoint.every": 1000})
    real_save = torch.save
    calls = []

    def save_with_signal(obj, f, *a, **kw):
        calls.append(f)
        os.kill(os.getpid(), signal.SIGINT)          # arrives while the checkpoint is being written
        return real_save(obj, f, *a, **kw)
    monkeypatch.setattr(ckpt.torch, "save", save_with_signal)

    with StopSignals():
        trainer = Trainer(config, callbacks=[CtrlCAt(3)], progress=False)
        try:
            trainer.run()
            raise AssertionError("not interrupted")
        except TrainingInterrupted as e:
            assert e.iteration == 3 and e.exit_code == 130
            path = e.checkpoint
    assert len(calls) == 1
    assert ckpt.peek(path)["iteration"] == 3
    assert not list(path.parent.glob(".*tmp*"))


def test_second_signal_during_an_iteration_stops_at_once(tmp_path):
    config = make_job("digits", tmp_path / "run", **{"ars.iterations": 50, "checkpoint.every": 2})

    with StopSignals():
        trainer = Trainer(config, callbacks=[CtrlCAt(3, times=2)], progress=False)
        try:
            trainer.run()
            raise AssertionError("not interrupted")
        except KeyboardInterrupt:
            pass
    assert trainer.iteration == 3 and trainer.last_checkpoint.name == "iter_0000002.pt"


POSTTRAIN = """
seed = 0
[task]
dataset = "digits"
hidden = [16]
batch_size = 64
[model]
factory = "mlp"
checkpoint = "runs/p/pretrained.pt"
pretrain_epochs = 2
[compress]
prune = 0.5
[ars]
directions = 4
top = 2
iterations = 3000
[eval]
every = 5
[tracking]
enabled = false
[checkpoint]
dir = "runs/p"
every = 2
"""


def test_ctrl_c_in_posttrain_saves_and_resume_continues(tmp_path):
    (tmp_path / "post.toml").write_text(POSTTRAIN)
    p = start(tmp_path, "posttrain", "post.toml", "--quiet")
    wait_for(lambda: len(checkpoints(tmp_path / "runs/p")) >= 2, what="two checkpoints", proc=p)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    assert "Traceback" not in err and "resume with: arsearch posttrain post.toml --resume" in err
    at = ckpt.peek(checkpoints(tmp_path / "runs/p")[-1])["iteration"]
    done = run(tmp_path, "posttrain", "post.toml", "--quiet", "--resume", "--set", f"ars.iterations={at + 2}")
    assert done.returncode == 0, done.stderr
    assert f"resuming from runs/p/iter_{at:07d}.pt (iteration {at})" in done.stderr
    assert (tmp_path / "runs/p/posttrained.safetensors").exists()      # the default export format


def test_ctrl_c_to_the_process_group_of_a_hogwild_job(tmp_path):
    """A terminal's Ctrl-C reaches every process of the group: the workers ignore it, the parent saves."""
    write_job(tmp_path, tracking=False)
    p = start(tmp_path, "train", "job.toml", "--quiet", "--set", "ars.backend=hogwild")
    wait_for(lambda: len(checkpoints(tmp_path / "runs/a")) >= 2, what="two checkpoints", proc=p)
    os.killpg(p.pid, signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    assert "Traceback" not in err and "resume with:" in err
    last = checkpoints(tmp_path / "runs/a")[-1]
    assert ckpt.peek(last)["iteration"] == int(last.stem.split("_")[1])


@pytest.mark.multiprocess
def test_a_ranks_own_copy_of_a_signal_its_peers_stopped_on_is_not_a_second_signal():
    """A loaded rank may learn of the stop from a peer (`agree_stop`) before the launcher's forwarded
    signal reaches it: that copy is the same request (seen in CI: rank 1 'stopped at once', torchrun
    printed ChildFailedError), and only a signal after it means 'stop at once'."""
    from arsearch.interrupt import StopSignals

    with StopSignals() as signals:
        signals.adopt(signal.SIGINT)                   # what the trainer does when a peer got it first
        assert signals.requested
        os.kill(os.getpid(), signal.SIGINT)            # this rank's own copy arrives late
        assert signals.signum == signal.SIGINT         # still the one graceful stop
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)        # a real second signal
