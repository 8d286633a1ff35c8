"""Vectorized backend: all 2N candidates as branches of one batched model.

θ ± ν·δ_k are stacked into a (2N, d) matrix, mapped onto the model's parameters with a leading
candidate dimension, and scored in one `torch.func.vmap` over `functional_call` (the task does
that part). This is the data-parallel mode: one large batched call instead of 2N small ones.

With ``ars.devices = ["cuda:0", "cuda:1", ...]`` the candidates are split into one slice per
device; each slice is scored by a replica of the model on its device, and the scores gathered
(one process driving several GPUs; the slices are issued one after the other from Python, but
CUDA kernels run asynchronously and the scores are copied back only after every slice is queued,
so the devices work at the same time; RL rollouts, which run in NumPy, do not overlap). θ and the
directions stay on the task's device; each slice of candidates is copied to its device. With
``devices = ["cpu", "cpu"]`` the result equals the single-device one, which the tests check.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass

import torch

from ..fields import listof, number
from ..noise import Directions
from .base import Backend, BackendConfig


@dataclass
class VectorizedConfig(BackendConfig):
    """``[ars]`` keys of the vectorized backend (and of the backends built on it)."""

    vector_chunk: int = number(0, 0)     # candidates per batched call (0 = automatic: see `chunk_size`)
    devices: list[str] = listof([])      # spread candidates over these devices


# Activations one batched call may hold when the chunk is automatic (ars.vector_chunk = 0) on a
# CPU: twice the per-core L2 cache, as counted by `Task.candidate_bytes` (which counts an in-place
# activation's output again, though it shares its input's memory), so each layer's output is still
# in cache when the next layer reads it. A 16,384-image CNN forward, two orders of magnitude
# larger, ran 2-3× slower than the same images in cache-sized calls (reports/throughput.md).
def cache_bytes() -> int:
    """The CPU's per-core L2 cache in bytes (sysfs), or 2 MiB when it cannot be read."""
    try:
        text = open("/sys/devices/system/cpu/cpu0/cache/index2/size").read().strip()
        scale = {"K": 1024, "M": 1024 ** 2}.get(text[-1], 1)
        return int(text.rstrip("KM")) * scale
    except (OSError, ValueError):
        return 2 * 1024 ** 2


CACHE_BYTES = int(os.environ.get("ARSEARCH_CACHE_BYTES", 0)) or 2 * cache_bytes()


def check_device(key: str, name: str) -> None:
    """A device name that exists on this machine (an AssertionError deep in torch otherwise); ValueError."""
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ValueError(f"{key} = {name!r} is not a device name (e.g. \"cpu\", \"cuda:0\")") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"{key} = {name!r} but no CUDA device is available on this machine; "
                             f"use \"cpu\" entries or leave ars.devices empty")
        if device.index is not None and device.index >= count:
            raise ValueError(f"{key} = {name!r} but this machine has {count} CUDA device(s) "
                             f"(cuda:0..cuda:{count - 1})")


class VectorizedBackend(Backend):
    name = "vectorized"
    Config = VectorizedConfig

    def __init__(self, chunk: int = 0, devices: list[str] | None = None):
        self.chunk = chunk          # candidates per batched call; 0 = automatic (see `chunk_size`)
        self.devices = [torch.device(d) for d in devices or []]
        self._parts: tuple[tuple[int, ...], Directions] | None = None
        self._auto: dict = {}
        self._replicas: dict = {}
        self._many: tuple[tuple, torch.Tensor] | None = None   # a population's (K, N, d) directions

    @classmethod
    def from_config(cls, config):
        if config is None:
            return cls()
        return cls(chunk=config.ars.vector_chunk, devices=config.ars.devices)

    @classmethod
    def check(cls, config) -> None:
        for i, name in enumerate(config.ars.devices):
            check_device(f"ars.devices[{i}]", name)

    def parts(self, space, noise, seeds) -> Directions:
        """The iteration's directions (`noise.Directions`: the (N, d) matrix of full-rank noise, each
        chunk a view of it, or low-rank factors), drawn once for `pair_scores` and reused by `apply`."""
        key = tuple(seeds)
        if self._parts is None or self._parts[0] != key:
            self._parts = (key, noise.parts(seeds, space.sizes, getattr(space, "shapes", None),
                                            space.device, space.dtype))
        return self._parts[1]

    def directions(self, space, noise, seeds) -> torch.Tensor:
        """The (N, d) matrix of the directions (dense even for low-rank noise)."""
        return self.parts(space, noise, seeds).dense()

    def _score(self, space, task, thetas, batch) -> torch.Tensor:
        if not self.devices:
            return task.score_params(space.expand(thetas), batch)
        # multi-device: one slice of candidates per device, each on a replica of the model
        slices = torch.tensor_split(thetas, len(self.devices))
        scores = []
        for device, part in zip(self.devices, slices):
            if len(part) == 0:
                continue
            replica = self._replica(task, device)
            scores.append(replica.score_params(space.expand(part.to(device)), _batch_to(batch, device)))
            # states a replica recorded (RL rollouts, V2) belong to the task: hand them over
            stats = replica.pop_state_stats()
            if stats is not None:
                if task._stats is None:
                    task._stats = stats
                else:
                    task._stats += stats
        # copied back only once every device has its work queued, so that the devices overlap
        return torch.cat([part.cpu() for part in scores])

    def _replica(self, task, device):
        """A shallow copy of the task whose model lives on `device` (buffers refreshed per call)."""
        replica = self._replicas.get(device)
        if replica is None:
            replica = copy.copy(task)
            replica.model = copy.deepcopy(task.model).to(device)
            replica._stats = None   # the shallow copy would share the task's pending states
            if hasattr(replica, "scratch"):
                replica.scratch = None   # and the task's scratch copy of the model (on the task's device)
            self._replicas[device] = replica
        with torch.no_grad():
            for (_, dst), (_, src) in zip(replica.model.named_buffers(), task.model.named_buffers()):
                dst.copy_(src)
        return replica

    def chunk_size(self, task, batch, total: int) -> int:
        """Candidates per batched call: `ars.vector_chunk`, or automatic when it is 0.

        Automatic: all at once on a GPU (or for a task that cannot say its activation size, such
        as RL rollouts); on a CPU as many candidates as keep one call's activations within
        `CACHE_BYTES`, so that a large batch of candidates does not run out of cache, or within the
        model's own size when that is larger: every call reads the weights, so a call holding less
        activation than that gains nothing from being smaller (a 50M-parameter MLP ran 1.3× slower
        in one-candidate calls than in one call, reports/throughput.md).
        """
        if self.chunk:
            return self.chunk
        device = getattr(task, "device", torch.device("cpu"))
        if self.devices or torch.device(device).type != "cpu":
            return total
        key = (id(task), getattr(getattr(batch, "x", None), "shape", None))
        if key not in self._auto:
            per_candidate = task.candidate_bytes(batch)
            weights = sum(p.numel() * p.element_size() for p in task.model.parameters())
            self._auto[key] = max(1, max(CACHE_BYTES, weights) // per_candidate) if per_candidate else 0
        return self._auto[key] or total

    def pair_scores(self, space, task, noise, seeds, scale, batch, positions=None) -> torch.Tensor:
        """Scores (2n,) of θ + ν·δ_k then θ − ν·δ_k for the directions at `positions` (default: all)."""
        dirs = self.parts(space, noise, seeds)
        if positions is not None:
            dirs = dirs.take(positions)
        if not self.devices:                  # the task's own candidate forward, if it has one
            scores = self._shared_scores(space, task, dirs, scale, batch)
            if scores is not None:
                return scores
        deltas = dirs.dense()
        theta = space.vector()
        thetas = torch.empty((2 * len(deltas), theta.numel()), dtype=deltas.dtype, device=deltas.device)
        torch.add(theta, deltas, alpha=scale, out=thetas[:len(deltas)])     # no ν·δ temporary, no cat
        torch.sub(theta, deltas, alpha=scale, out=thetas[len(deltas):])
        return self._score_all(space, task, thetas, batch)

    def _shared_scores(self, space, task, dirs, scale, batch) -> torch.Tensor | None:
        """`Task.score_directions` in cache-sized groups of ± pairs, or None if the task has no such path.

        Low rank: as many pairs as fill half the automatic chunk (a pair is two candidates' activations).
        Full rank: as many pairs as the chunk holds candidates, since each pair also runs its own
        first-layer GEMM, whose cost does not shrink with the group: on the digits MLP 64-256-10
        (N 32, batch 256, a chunk of 3 candidates here) groups of 3-8 pairs ran 15-25% faster than
        single pairs, while low rank ran fastest in single pairs (15-30% ahead of groups of 2-8)."""
        chunk = self.chunk_size(task, batch, 2 * len(dirs))
        pairs = max(1, chunk if dirs.matrix is not None else chunk // 2)
        return task.score_directions(space, dirs, scale, batch, pairs)

    @torch.no_grad()
    def evaluate(self, space, task, noise, seeds, scale, batch):
        n = len(seeds)
        scores = self.pair_scores(space, task, noise, seeds, scale, batch).double().cpu()
        return scores[:n], scores[n:]

    @torch.no_grad()
    def apply(self, space, noise, seeds, weights):
        dirs = self.parts(space, noise, seeds)
        if dirs.matrix is not None:           # full rank: Σ_k w_k·δ_k as one (N)·(N, d) product
            step = weights.to(dirs.matrix.dtype).to(dirs.matrix.device) @ dirs.matrix
            space.add_(space.split(step), 1.0)
        elif getattr(space, "params", None) is not None and len(space.params) == len(dirs.parts):
            dirs.add_to(space.params, weights)          # low rank: one product per matrix, into the weights
        else:
            space.add_(dirs.combine(weights), 1.0)

    # -- a population: all K·2N candidates in one batched evaluation ---------------------------------
    def directions_many(self, space, noise, seeds) -> torch.Tensor:
        key = tuple(tuple(s) for s in seeds)
        if self._many is None or self._many[0] != key:
            self._many = (key, torch.stack([noise.directions(s, space.sizes, space.device, space.dtype)
                                            for s in seeds]))
        return self._many[1]

    def _score_all(self, space, task, thetas, batch) -> torch.Tensor:
        chunk = self.chunk_size(task, batch, len(thetas))
        if chunk == 1 and len(thetas) > 1 and not self.devices:
            # a candidate's activations alone fill the cache (the CNN): each candidate is its own plain
            # call, which the task runs in a loop of its own, so that the per-call work around the
            # model (the loss, Python) is no more than the sequential backend's, or less
            return task.score_one_by_one(space.expand(thetas), batch)
        if chunk < len(thetas):     # each chunk with its candidates' part of the batch (RL: their reset seeds)
            return torch.cat([self._score(space, task, part, task.for_candidates(batch, start, len(part)))
                              for start, part in zip(range(0, len(thetas), chunk), torch.split(thetas, chunk))])
        return self._score(space, task, thetas, batch)

    @torch.no_grad()
    def evaluate_many(self, space, task, noise, thetas, seeds, scale, batch):
        k, n = len(seeds), len(seeds[0])
        deltas = self.directions_many(space, noise, seeds)                 # (K, N, d)
        thetas = thetas.to(deltas.device, deltas.dtype).unsqueeze(1)
        if isinstance(scale, torch.Tensor):          # one noise ν_k per learner
            scale = scale.to(deltas.device, deltas.dtype).view(k, 1, 1)
        # rows ordered learner by learner, [+δ_1..+δ_N, −δ_1..−δ_N] within a learner, so that an
        # RL task gives candidate i the reset seed of direction i mod N (± pairs share a start)
        candidates = torch.cat([thetas + scale * deltas, thetas - scale * deltas], dim=1).reshape(k * 2 * n, -1)
        scores = self._score_all(space, task, candidates, batch).double().cpu().view(k, 2, n)
        return scores[:, 0], scores[:, 1]

    @torch.no_grad()
    def apply_many(self, space, noise, thetas, seeds, weights):
        deltas = self.directions_many(space, noise, seeds)
        step = torch.einsum("kn,knd->kd", weights.to(deltas.dtype).to(deltas.device), deltas)
        return thetas.to(deltas.device, deltas.dtype) + step

    @torch.no_grad()
    def score_thetas(self, space, task, thetas, batch):
        return self._score_all(space, task, thetas, batch).double().cpu()


def _batch_to(batch, device):
    """Move a task batch (a dataclass of tensors, or plain data) to `device`."""
    if hasattr(batch, "__dataclass_fields__"):
        moved = copy.copy(batch)
        for name in batch.__dataclass_fields__:
            value = getattr(batch, name)
            if isinstance(value, torch.Tensor):
                setattr(moved, name, value.to(device))
        return moved
    return batch
