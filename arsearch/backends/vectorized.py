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
from dataclasses import dataclass

import torch

from ..fields import listof, number
from .base import Backend, BackendConfig


@dataclass
class VectorizedConfig(BackendConfig):
    """``[ars]`` keys of the vectorized backend (and of the backends built on it)."""

    vector_chunk: int = number(0, 0)     # candidates per batched call (0 = all at once)
    devices: list[str] = listof([])      # spread candidates over these devices


class VectorizedBackend(Backend):
    name = "vectorized"
    Config = VectorizedConfig

    def __init__(self, chunk: int = 0, devices: list[str] | None = None):
        self.chunk = chunk          # candidates per batched call; 0 = all at once
        self.devices = [torch.device(d) for d in devices or []]
        self._directions: tuple[tuple[int, ...], torch.Tensor] | None = None
        self._replicas: dict = {}
        self._many: tuple[tuple, torch.Tensor] | None = None   # a population's (K, N, d) directions

    @classmethod
    def from_config(cls, config):
        if config is None:
            return cls()
        return cls(chunk=config.ars.vector_chunk, devices=config.ars.devices)

    def directions(self, space, noise, seeds) -> torch.Tensor:
        key = tuple(seeds)
        if self._directions is None or self._directions[0] != key:
            self._directions = (key, noise.directions(seeds, space.sizes, space.device, space.dtype))
        return self._directions[1]

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
            self._replicas[device] = replica
        with torch.no_grad():
            for (_, dst), (_, src) in zip(replica.model.named_buffers(), task.model.named_buffers()):
                dst.copy_(src)
        return replica

    @torch.no_grad()
    def evaluate(self, space, task, noise, seeds, scale, batch):
        n = len(seeds)
        theta = space.vector()
        deltas = self.directions(space, noise, seeds)
        thetas = torch.cat([theta + scale * deltas, theta - scale * deltas])
        if self.chunk and self.chunk < len(thetas):
            scores = torch.cat([self._score(space, task, part, batch) for part in torch.split(thetas, self.chunk)])
        else:
            scores = self._score(space, task, thetas, batch)
        scores = scores.double().cpu()
        return scores[:n], scores[n:]

    @torch.no_grad()
    def apply(self, space, noise, seeds, weights):
        deltas = self.directions(space, noise, seeds)
        step = weights.to(deltas.dtype).to(deltas.device) @ deltas
        space.add_(space.split(step), 1.0)

    # -- a population: all K·2N candidates in one batched evaluation ---------------------------------
    def directions_many(self, space, noise, seeds) -> torch.Tensor:
        key = tuple(tuple(s) for s in seeds)
        if self._many is None or self._many[0] != key:
            self._many = (key, torch.stack([noise.directions(s, space.sizes, space.device, space.dtype)
                                            for s in seeds]))
        return self._many[1]

    def _score_all(self, space, task, thetas, batch) -> torch.Tensor:
        if self.chunk and self.chunk < len(thetas):
            return torch.cat([self._score(space, task, part, batch) for part in torch.split(thetas, self.chunk)])
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
