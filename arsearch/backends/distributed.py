"""Distributed backend: the N directions of an iteration split across `torch.distributed` ranks.

Every rank holds the same θ and regenerates every direction from its seed, so the only data that
crosses the wire per iteration is

- the scalar scores r+_k, r−_k of each rank's share of the directions (plus a few counters), in
  one ``all_gather`` of ``2·ceil(N/W) + K`` float64 per rank;
- for V2 / V2-t, the packed `StateStats` of the states each rank saw, in one ``all_reduce`` of
  ``1 + 2·obs_dim`` float64.

Every rank then computes the same weights from the same gathered scores and applies the identical
update (the vectorized backend's ``w @ D``), so the ranks never drift apart and, with the same
seed, the run equals the single-process vectorized one up to the summation order of the V2
statistics. One rank alone writes checkpoints and logs (``is_writer``): global rank 0, or under
arsearch's multi-machine launcher local rank 0 of node rank 0 (`arsearch.launch`); a checkpoint
to resume is read there and sent to the other ranks (`share_file`).

Launch with ``torchrun --nproc_per_node P -m arsearch.cli train job.toml`` or, equivalently,
``arsearch train job.toml --nproc P``. Without a launcher the backend runs as a world of one
(a Gloo group on an in-memory store), so a job config with ``ars.backend = "distributed"`` also
runs in a plain process, an Optuna trial or a test.

Devices: with ``task.device = "cuda"`` or ``"auto"`` (and GPUs present) rank r runs on
``cuda:LOCAL_RANK`` and the group uses NCCL; when there are fewer GPUs than local ranks (ranks
share a GPU, which NCCL refuses) or on the CPU, the group uses Gloo and the scores travel through
host memory. The environment variable ``ARSEARCH_DIST_BACKEND=nccl|gloo`` forces the choice.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..fields import number
from ..normalizer import StateStats
from .vectorized import VectorizedBackend, VectorizedConfig


def launched() -> bool:
    """True inside a process started by torchrun (or any launcher that sets RANK and WORLD_SIZE)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", 0))


def rank_device(requested: str) -> torch.device:
    """This rank's device for a job's ``task.device``: "cuda" / "auto" become cuda:LOCAL_RANK."""
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(requested)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"task.device = {requested!r} but no CUDA device is available")
        if device.index is None:
            device = torch.device("cuda", local_rank() % torch.cuda.device_count())
    return device


def shares(n: int, world: int) -> list[list[int]]:
    """Direction positions 0..n−1 cut into `world` contiguous shares (sizes differ by at most one)."""
    return [part.tolist() for part in torch.tensor_split(torch.arange(n), world)]


@dataclass
class DistributedConfig(VectorizedConfig):
    """``[ars]`` keys of the distributed backend."""

    nproc: int = number(1, 1)            # ranks (`arsearch train --nproc` overrides)
    # seconds without progress from a rank before the job is stopped as hung
    timeout: float = number(300.0, 0.0, low_open=True)


class DistributedBackend(VectorizedBackend):
    name = "distributed"
    Config = DistributedConfig
    own_processes = True

    @classmethod
    def processes(cls, config) -> int:
        return config.ars.nproc

    @classmethod
    def check(cls, config) -> None:
        if config.stop is not None and config.stop.seconds:
            # every rank decides to stop on its own: clocks differ, counters and evaluations do not
            raise ValueError(f"stop.seconds = {config.stop.seconds} cannot be used with ars.backend = 'distributed': "
                             f"ranks would stop at different iterations; use stop.episodes, env_steps or "
                             f"forward_examples")

    @classmethod
    def unused_keys(cls, config) -> tuple[str, ...]:
        return ("devices",)          # each rank runs on its own device (cuda:LOCAL_RANK)

    def __init__(self, timeout: float = 300.0, chunk: int = 0, device: str | torch.device = "cpu"):
        super().__init__(chunk=chunk)
        self.device = torch.device(device)
        self._owns_group = False
        if not dist.is_initialized():
            self._init_group(timeout)
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.comm_device = self.device if dist.get_backend() == "nccl" else torch.device("cpu")
        self.writer_rank = self._find_writer()
        self.bytes_sent = 0           # payload bytes this rank contributed to collectives, in total
        self.iterations = 0
        self._task = None
        self._replicated: StateStats | None = None

    @classmethod
    def from_config(cls, config):
        if config is None:
            return cls()
        backend = cls(timeout=config.ars.timeout, chunk=config.ars.vector_chunk,
                      device=rank_device(config.task.device))
        if config.ars.directions < backend.world:
            raise ValueError(f"ars.directions = {config.ars.directions} must be >= the number of ranks "
                             f"({backend.world}): each rank scores at least one direction")
        return backend

    def _init_group(self, timeout: float) -> None:
        td = datetime.timedelta(seconds=timeout)
        if launched():
            own_gpu = (self.device.type == "cuda"
                       and int(os.environ.get("LOCAL_WORLD_SIZE", 1)) <= torch.cuda.device_count())
            # ARSEARCH_DIST_BACKEND=nccl|gloo overrides the choice (e.g. to try NCCL on a shared GPU)
            backend = os.environ.get("ARSEARCH_DIST_BACKEND") or ("nccl" if own_gpu else "gloo")
            if backend not in ("nccl", "gloo"):
                raise ValueError(f"ARSEARCH_DIST_BACKEND = {backend!r}; allowed: 'nccl', 'gloo'")
            if backend == "nccl":
                if self.device.type != "cuda":
                    raise ValueError("the NCCL process group needs task.device = 'cuda' or 'auto' on a GPU machine")
                torch.cuda.set_device(self.device)
                dist.init_process_group("nccl", timeout=td, device_id=self.device)
            else:
                dist.init_process_group("gloo", timeout=td)
            from ..timeline import mark

            mark("process group joined")
        else:  # a world of one: the same code path, no launcher needed
            dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1, timeout=td)
        self._owns_group = True

    def _find_writer(self) -> int:
        """The global rank of the job's writer (local rank 0 of node rank 0, `launch.writes_files`): under
        torchrun's c10d rendezvous it need not be global rank 0. Exactly one rank must claim it."""
        from ..launch import writes_files

        if self.world == 1:
            return 0
        claim = torch.tensor([1.0 if writes_files() else 0.0, float(self.rank) if writes_files() else 0.0],
                             dtype=torch.float64, device=self.comm_device)
        dist.all_reduce(claim)
        count, rank = int(claim[0].item()), int(claim[1].item())
        if count != 1:
            raise ValueError(f"{count} launchers of this job say they are node rank 0 (--node-rank): exactly one "
                             f"machine must be node rank 0, the one that writes the checkpoints")
        return rank

    @property
    def is_writer(self) -> bool:
        return self.rank == self.writer_rank

    def share_file(self, read) -> bytes | None:
        """The bytes the writer gets from `read()` (None: nothing to share), on every rank: a checkpoint
        to resume lives in the writer's checkpoint.dir, which the other machines may not see."""
        data = read() if self.is_writer else None
        if self.world == 1:
            return data
        size = torch.tensor([-1 if data is None else len(data)], dtype=torch.int64, device=self.comm_device)
        dist.broadcast(size, src=self.writer_rank)
        n = int(size.item())
        if n < 0:
            return None
        buf = (torch.frombuffer(bytearray(data), dtype=torch.uint8) if self.is_writer and n
               else torch.empty(n, dtype=torch.uint8))
        buf = buf.to(self.comm_device)
        dist.broadcast(buf, src=self.writer_rank)
        return data if self.is_writer else bytes(buf.cpu().numpy().tobytes())

    @torch.no_grad()
    def evaluate(self, space, task, noise, seeds, scale, batch):
        n = len(seeds)
        if n < self.world:
            raise ValueError(f"ars.directions = {n} must be >= the number of ranks ({self.world})")
        parts = shares(n, self.world)
        mine = parts[self.rank]
        # States recorded before scoring (a supervised mini-batch) are the same on every rank;
        # those recorded while scoring (RL rollouts) are this rank's share: merge_stats sums only those.
        self._task, self._replicated = task, task.pop_state_stats()
        before = dict(task.counters)
        sub_batch = task.select(batch, mine)
        scores = self.pair_scores(space, task, noise, seeds, scale, sub_batch, positions=mine).double().cpu()
        keys = sorted(task.counters)
        counted = torch.tensor([task.counters[k] - before.get(k, 0) for k in keys], dtype=torch.float64)
        width = 2 * len(parts[0])       # the first share is the largest
        payload = torch.full((width + len(keys),), float("nan"), dtype=torch.float64)
        payload[:2 * len(mine)] = scores
        payload[width:] = counted
        gathered = self._all_gather(payload)
        r_plus = torch.cat([g[:len(p)] for g, p in zip(gathered, parts)])
        r_minus = torch.cat([g[len(p):2 * len(p)] for g, p in zip(gathered, parts)])
        totals = torch.stack([g[width:] for g in gathered]).sum(0)
        for k, total in zip(keys, totals.tolist()):
            task.counters[k] = before.get(k, 0) + int(round(total))
        self.iterations += 1
        return r_plus, r_minus

    def _all_gather(self, payload: torch.Tensor) -> list[torch.Tensor]:
        payload = payload.to(self.comm_device)
        out = [torch.empty_like(payload) for _ in range(self.world)]
        dist.all_gather(out, payload)
        self.bytes_sent += payload.numel() * payload.element_size()
        return [t.cpu() for t in out]

    def merge_stats(self, stats):
        task, replicated = self._task, self._replicated
        self._replicated = None
        if task is None or task.normalizer is None:
            return stats
        local = stats if stats is not None else task.normalizer.new_stats()
        packed = local.packed.to(self.comm_device)
        dist.all_reduce(packed)
        self.bytes_sent += packed.numel() * packed.element_size()
        merged = StateStats(local.shape, packed.cpu())
        if replicated is not None:
            merged += replicated
        return merged

    def agree_stop(self, signum: int) -> int:
        # a signal may reach the ranks at different moments (or one rank only): the largest signal
        # number any rank holds decides, so that every rank stops after the same iteration
        flag = torch.tensor([signum], dtype=torch.int64, device=self.comm_device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return int(flag.item())

    def close(self) -> None:
        if self._owns_group and dist.is_initialized():
            # Without a barrier a rank may tear its group down while a peer still talks to it.
            try:
                dist.barrier()
            finally:
                dist.destroy_process_group()
            self._owns_group = False
