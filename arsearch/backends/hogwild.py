"""Hogwild backend: W worker processes step one shared-memory model asynchronously.

As in Hogwild! (Niu et al. 2011) and A3C, the model's parameters live in shared memory
(``share_memory_()``); each worker, with no global barrier,

1. claims the next iteration number t from a shared counter (so the job makes exactly
   ``ars.iterations`` updates, and iteration t uses the same direction seeds and mini-batch as
   iteration t of a single-process run: with one worker the run *is* the vectorized run);
2. reads θ, scores its 2N candidates θ ± ν·δ_k functionally (``torch.func`` / batched NumPy
   rollouts — the shared model is never perturbed in place, so other workers never see a
   candidate);
3. adds its step Σ w_k·δ_k to the shared θ without a lock (the Hogwild write);
4. for V2 / V2-t, merges the states it saw into the shared `RunningNorm` buffers under a lock
   and refreshes its private copy (a worker's candidates all see one consistent normalisation);
5. sends a few scalars (scores, counters) to the main process through a queue.

The main process drives the trainer as usual: `HogwildLearner.step` waits for one worker step
and returns its metrics, so progress, evaluation, checkpoints and callbacks are unchanged (they
see a θ that the workers keep moving, as Hogwild intends). A worker that raises, exits or is
killed is noticed within a fraction of a second by polling (no blocking join or get): the other
workers are stopped and the job ends with `WorkerLost`; a worker that stops making progress for
``ars.timeout`` seconds ends it the same way.

Workers are forked (the task, with its datasets and environments, is inherited rather than
pickled), so the backend needs the ``fork`` start method (Linux) and runs on the CPU.
"""

from __future__ import annotations

import os
import pickle
import queue
import signal
import time
import traceback
from dataclasses import dataclass

import torch
import torch.multiprocessing as mp

from ..ars import DivergenceError, normalizes_states
from ..fields import number
from ..learner import ARSLearner, Hyper
from ..normalizer import RunningNorm
from .base import WorkerLost
from .vectorized import VectorizedBackend, VectorizedConfig

POLL_S = 0.1          # how often the main process checks its workers while waiting
_NORM_BUFFERS = ("count", "mean", "m2")


@dataclass
class HogwildConfig(VectorizedConfig):
    """``[ars]`` keys of the hogwild backend."""

    workers: int = number(2, 1)          # worker processes
    # seconds without progress from a worker before the job is stopped as hung (a worker that
    # dies is detected at once, whatever this is)
    timeout: float = number(300.0, 0.0, low_open=True)


class HogwildBackend(VectorizedBackend):
    """Holds the hogwild settings; a worker scores its candidates with the vectorized evaluation."""

    name = "hogwild"          # its learner: HogwildLearner, registered under this name
    Config = HogwildConfig

    def __init__(self, workers: int = 2, timeout: float = 300.0, chunk: int = 0):
        super().__init__(chunk=chunk)
        if workers < 1:
            raise ValueError(f"ars.workers must be >= 1, got {workers}")
        self.workers, self.timeout = workers, timeout

    @classmethod
    def from_config(cls, config):
        if config is None:
            return cls()
        return cls(workers=config.ars.workers, timeout=config.ars.timeout, chunk=config.ars.vector_chunk)

    @classmethod
    def check(cls, config) -> None:
        if config.population is not None:
            raise ValueError("ars.backend = 'hogwild' runs one asynchronous learner and cannot be combined "
                             "with [population]; use 'vectorized' or 'distributed'")

    @classmethod
    def unused_keys(cls, config) -> tuple[str, ...]:
        return ("devices",)          # each worker scores on the task's device


def _share_space(space) -> None:
    """Move θ's storage (the model and any tensor the space holds itself) to shared memory."""
    if getattr(space, "model", None) is not None:
        space.model.share_memory()
    for value in vars(space).values():
        # lists of tensors, and dicts of them (a compressed space's codebooks, stepped in place)
        values = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else [value]
        for t in values:
            if isinstance(t, torch.Tensor):
                t.share_memory_()


class HogwildLearner:
    """The trainer's learner for ``ars.backend = "hogwild"``: starts the workers, relays their steps."""

    def __init__(self, hyper, task, space, noise, backend: HogwildBackend, iterations: int | None = None):
        if not isinstance(backend, HogwildBackend):
            raise TypeError("HogwildLearner needs a HogwildBackend")
        if space.device.type != "cpu":
            raise ValueError("ars.backend = 'hogwild' shares the model in CPU shared memory; "
                             f"the model is on {space.device} (use ars.backend = 'distributed' for GPUs)")
        if "fork" not in mp.get_all_start_methods():
            raise ValueError("ars.backend = 'hogwild' needs the 'fork' start method (Linux); "
                             "use 'distributed' on this platform")
        self.hyper = Hyper.of(hyper)
        if iterations is None:
            if not hasattr(hyper, "ars"):
                raise ValueError("HogwildLearner needs iterations= (the job's ars.iterations) with a Hyper")
            iterations = hyper.ars.iterations
        self.iterations = iterations     # the workers claim iteration numbers below this
        self.task, self.space, self.noise, self.backend = task, space, noise, backend
        _share_space(space)
        if task.normalizer is not None:
            task.normalizer.share_memory()
        self._ctx = mp.get_context("fork")
        self._procs: list = []
        self._queue = None
        self.bytes_received = 0       # pickled queue messages, in total
        self.steps_received = 0

    @classmethod
    def from_config(cls, config, task, space, noise, backend) -> HogwildLearner:
        return cls(Hyper.of(config), task, space, noise, backend, iterations=config.ars.iterations)

    # -- workers -----------------------------------------------------------------------------------
    def _start(self, first_iteration: int) -> None:
        ctx = self._ctx
        self._parent_pid = os.getpid()
        self._next = ctx.Value("q", first_iteration)   # next iteration to claim (its lock guards it)
        self._applied = ctx.Value("q", 0, lock=False)   # updates written so far (staleness metric)
        self._stop = ctx.Event()
        self._norm_lock = ctx.Lock()
        self._queue = ctx.Queue()
        for index in range(self.backend.workers):
            proc = ctx.Process(target=_worker_main, name=f"arsearch-hogwild-{index}", daemon=True,
                               args=(index, self))
            proc.start()
            self._procs.append(proc)
        self._last_progress = time.monotonic()

    def _dead_worker(self) -> str | None:
        for index, proc in enumerate(self._procs):
            code = proc.exitcode
            if code is not None and code != 0:
                how = (f"was killed by signal {signal.Signals(-code).name}" if code < 0
                       else f"exited with code {code}")
                return f"hogwild worker {index} (pid {proc.pid}) {how}"
        return None

    def step(self, iteration: int) -> dict[str, float]:
        if not self._procs:
            self._start(iteration)
        while True:
            # checked before every message, not only when the queue is idle: the surviving workers
            # keep it busy, and a dead one must stop the job all the same
            self._check_workers()
            try:
                message = self._queue.get(timeout=POLL_S)
            except queue.Empty:
                continue
            self._last_progress = time.monotonic()
            self.bytes_received += len(pickle.dumps(message))
            kind, index = message[0], message[1]
            if kind == "step":
                _, _, _, metrics, counted = message
                for key, n in counted.items():
                    self.task.count(key, n)
                self.steps_received += 1
                return metrics
            self.close()
            if kind == "diverged":
                raise DivergenceError(f"hogwild worker {index}: {message[2]}")
            raise WorkerLost(f"hogwild worker {index} failed:\n{message[2]}")

    def _check_workers(self) -> None:
        dead = self._dead_worker()
        if dead is not None:
            try:  # it may have reported its error just before dying
                message = self._queue.get(timeout=POLL_S)
                if message[0] != "step":
                    dead += f": {message[2].strip().splitlines()[-1]}"
            except queue.Empty:
                pass
            self.close()
            raise WorkerLost(f"{dead}; the job was stopped (the other workers were shut down)")
        if all(proc.exitcode is not None for proc in self._procs) and self._queue.empty():
            self.close()
            raise WorkerLost("all hogwild workers stopped before the job's iterations were done")
        if time.monotonic() - self._last_progress > self.backend.timeout:
            self.close()
            raise WorkerLost(f"no hogwild worker finished a step in ars.timeout = {self.backend.timeout} s; "
                             "the workers were stopped")

    def close(self) -> None:
        """Stop the workers: ask, then terminate, then kill; never waits unboundedly."""
        if not self._procs:
            return
        self._stop.set()
        deadline = time.monotonic() + 2.0
        for proc in self._procs:
            proc.join(timeout=max(0.0, deadline - time.monotonic()))
        for proc in self._procs:
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=2.0)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=2.0)
        self._procs = []
        self._queue.cancel_join_thread()
        self._queue.close()

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def _worker_main(index: int, learner: HogwildLearner) -> None:
    # the parent decides when to stop (Ctrl-C reaches the whole process group; the parent's
    # stop-at-the-next-iteration handlers are inherited through fork): ignore SIGINT, die on SIGTERM
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # a worker holds nothing to save: if the job's process dies (kill -9 included), so does the worker
    from ..processes import die_with_parent

    die_with_parent(signal.SIGKILL, parent=learner._parent_pid)
    try:
        _worker_loop(index, learner)
    except DivergenceError as e:
        learner._queue.put(("diverged", index, str(e)))
    except BaseException:  # noqa: B036 - report anything, then exit non-zero
        learner._queue.put(("error", index, traceback.format_exc()))
        learner._queue.close()
        learner._queue.join_thread()
        raise SystemExit(1) from None
    learner._queue.close()
    learner._queue.join_thread()   # flush what was sent before exiting


class _WorkerLearner(ARSLearner):
    """One hogwild worker's learner: the shared iteration (`Learner.step`) on the shared θ, with
    the V2 statistics merged into the shared buffers under a lock."""

    def __init__(self, index: int, learner: HogwildLearner, shared_norm: RunningNorm | None):
        super().__init__(learner.hyper, learner.task, learner.space, learner.noise, learner.backend)
        self.index, self.parent, self.shared_norm = index, learner, shared_norm

    def step(self, iteration):
        self.read_at = self.parent._applied.value
        return super().step(iteration)

    def _apply(self, seeds, weights):
        super()._apply(seeds, weights)                       # lock-free write into the shared θ
        self.parent._applied.value += 1                      # racy by design: a metric, not a lock

    def _update_normalizer(self):
        if self.shared_norm is None:
            return
        stats = self.task.pop_state_stats()
        with self.parent._norm_lock:
            if stats is not None:
                self.shared_norm.update(stats)
            for name in _NORM_BUFFERS:
                getattr(self.task.normalizer, name).copy_(getattr(self.shared_norm, name))

    def _after_update(self, iteration, result):
        return {"hogwild/worker": float(self.index),
                "hogwild/lag": float(self.parent._applied.value - 1 - self.read_at)}


def _worker_loop(index: int, learner: HogwildLearner) -> None:
    torch.set_num_threads(1)       # parallelism comes from the processes
    task = learner.task
    shared_norm = None
    if normalizes_states(learner.hyper.version) and task.normalizer is not None:
        # the task keeps reading a private copy; the shared buffers are only merged into under the lock
        norm = task.normalizer
        shared_norm = RunningNorm(norm.shape, norm.eps)
        for name in _NORM_BUFFERS:
            shared_norm.register_buffer(name, getattr(norm, name))
            norm.register_buffer(name, getattr(norm, name).clone())
    worker = _WorkerLearner(index, learner, shared_norm)
    while not learner._stop.is_set():
        with learner._next.get_lock():
            t = learner._next.value
            if t >= learner.iterations:
                return
            learner._next.value = t + 1
        before = dict(task.counters)
        # a worker sees no budget (the main process counts the spend): its schedules run over iterations
        task.progress = t / max(1, learner.iterations)
        metrics = worker.step(t)
        counted = {k: v - before.get(k, 0) for k, v in task.counters.items() if v != before.get(k, 0)}
        learner._queue.put(("step", index, t, metrics, counted))
