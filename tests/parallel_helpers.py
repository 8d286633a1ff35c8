"""Models for the parallel-backend tests that fail on purpose inside a worker process or rank.

They are given to a job as ``task.model = "parallel_helpers:NAME"`` (this folder is put on the
import path). Each behaves as a small MLP until its trigger fires, which happens only away from
the process that built it (a hogwild worker) or on rank 1 of a distributed job.
"""

import os
import signal
import time

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
    time.sleep(3600)


def killed_model(input_dim, output_dim):
    return _Trigger(input_dim, output_dim, _kill)


def raising_model(input_dim, output_dim):
    return _Trigger(input_dim, output_dim, _raise)


def hanging_model(input_dim, output_dim):
    return _Trigger(input_dim, output_dim, _hang)
