"""Models for the parallel-backend tests that fail on purpose inside a worker process or rank, and a
hand-made distributed rank.

The models are given to a job as ``task.model = "tests.support.parallel:NAME"``. Each behaves as a
small MLP until its trigger fires, which happens only away from the process that built it (a
hogwild worker) or on rank 1 of a distributed job.
"""

from __future__ import annotations

import os
import signal
import threading

from torch import nn

CALLS_BEFORE_TRIGGER = 3


class _Trigger(nn.Module):
    def __init__(self, input_dim, output_dim, action):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(input_dim, 8), nn.Tanh(), nn.Linear(8, output_dim))
        self.creator = os.getpid()
        self.action = action
        self.calls = 0

    def armed(self) -> bool:
        if os.environ.get("RANK") is not None:
            return os.environ["RANK"] == "1"
        return os.getpid() != self.creator

    def forward(self, x):
        if self.armed():
            self.calls += 1
            if self.calls > CALLS_BEFORE_TRIGGER:
                self.action()
        return self.net(x)


def _kill():
    os.kill(os.getpid(), signal.SIGKILL)


def _raise():
    raise RuntimeError("boom: a failure inside the worker")


def _hang():
    threading.Event().wait()     # forever, until the process is stopped


def killed_model(input_dim, output_dim):
    return _Trigger(input_dim, output_dim, _kill)


def raising_model(input_dim, output_dim):
    return _Trigger(input_dim, output_dim, _raise)


def hanging_model(input_dim, output_dim):
    return _Trigger(input_dim, output_dim, _hang)


def distributed_rank(rank: int, world: int, store: str, jobs: dict, out_dir: str) -> None:
    """One rank of a hand-made Gloo group (what torchrun would set up): runs every job in turn.

    The group meets through a file (`store`), not a TCP port, so no other process can take its
    address between the test choosing it and the ranks binding it.
    """
    import datetime

    import torch
    import torch.distributed as dist

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=60))
    from arsearch.trainer import Trainer

    for name, config in jobs.items():
        trainer = Trainer(config, progress=False)
        trainer.run()
        torch.save({"model": trainer.model.state_dict(), "counters": dict(trainer.task.counters),
                    "bytes": trainer.backend.bytes_sent, "is_writer": trainer.is_writer,
                    "scores": [h["train/score"] for h in trainer.history]}, f"{out_dir}/{name}-{rank}.pt")
    dist.barrier()
    dist.destroy_process_group()


class _Paced(nn.Module):
    """A small MLP whose every forward call takes at least 20 ms inside a torchrun rank (and no longer in
    a plain process): a multi-machine job then runs long enough to be killed mid-way, while an in-process
    reference run of the same job stays fast. The parameters and outputs are an MLP's."""

    def __init__(self, input_dim, output_dim):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(input_dim, 8), nn.Tanh(), nn.Linear(8, output_dim))
        self.paced = os.environ.get("RANK") is not None

    def forward(self, x):
        if self.paced:
            import time

            time.sleep(0.02)
        return self.net(x)


def paced_model(input_dim, output_dim):
    return _Paced(input_dim, output_dim)
