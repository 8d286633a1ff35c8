"""What a job will allocate, estimated before it allocates it.

A key set to an absurd size (`ars.directions = 1000000000`, `task.hidden = [100000000]`,
`task.batch_size = 10**12`, `population.size = 10**7`, `ars.table_size = 10**11`) used to reach
torch or NumPy, which tried to allocate gigabytes to terabytes and died with a traceback (or took the
machine's memory). Each estimate here is a lower bound of what the key costs, so a refusal is
certain to be right: the job is refused (a `ConfigError`, exit 2) naming the key, its value and the
bytes, when that exceeds the memory free now (`checkpoint.available_memory`: the machine's, or a
container's cgroup limit). Nothing is allocated before the check: the model's size is checked from
its layer widths before its layers are built (`check_parameters`), everything else from the model's
parameter count before the noise, the backend and the learner exist (`check_job`).
"""

from __future__ import annotations

from .checkpoint import available_memory, human_bytes
from .config import ConfigError

FLOAT_BYTES = 4            # float32 parameters, noise table entries and inputs
# a direction's share of one iteration for one learner: its seed (a uint32, then a Python int in a
# list: 4 + 8 + 32 bytes), its two scores (float64) and its step weight, rounded down
DIRECTION_BYTES = 64
INDEX_BYTES = 8            # an example's index in a mini-batch (int64)


def _refuse(key: str, value, nbytes: int, what: str, free: int) -> None:
    raise ConfigError(f"{key} = {value} would need at least {human_bytes(nbytes)} of memory ({what}), more than "
                      f"the {human_bytes(free)} free here; refused before allocating it")


def mlp_parameters(sizes: list[int], bias: bool = True) -> int:
    """Parameters of a stack of linear layers with these widths (input, hidden..., output)."""
    return sum(a * b + (b if bias else 0) for a, b in zip(sizes[:-1], sizes[1:]))


def check_parameters(key: str, value, count: int) -> None:
    """Refuse a model of `count` float32 parameters that cannot fit, before its layers are built."""
    free = available_memory()
    if count * FLOAT_BYTES > free:
        _refuse(key, value, count * FLOAT_BYTES, f"a model of {count:,} parameters, {FLOAT_BYTES} bytes each", free)


def footprint(config, task, dim: int) -> list[tuple[str, object, int, str]]:
    """(key, value, bytes, what) for each key whose allocation grows with its value, for a model of `dim`
    searched parameters."""
    a = config.ars
    learners = config.population.size if config.population is not None else 1
    items = [("ars.directions", a.directions, learners * a.directions * DIRECTION_BYTES,
              f"{DIRECTION_BYTES} bytes per direction" + (f" and learner ({learners} learners)" if learners > 1 else "")
              + " for its seed, scores and step weight")]
    if a.noise_source == "table":
        items.append(("ars.table_size", a.table_size, a.table_size * FLOAT_BYTES,
                      f"the shared Gaussian noise table, {FLOAT_BYTES} bytes per entry"))
    if config.population is not None:
        items.append(("population.size", learners, learners * dim * FLOAT_BYTES,
                      f"one θ of {dim:,} parameters per learner"))
    # after population.size: a population too large is named as such
    if a.backend == "vectorized" and not a.noise_rank:
        # the vectorized backend draws an iteration's full-rank directions at once, as one (N, d)
        # matrix per learner (noise.Directions); the other backends draw a share or one at a time
        items.append(("ars.directions", a.directions, learners * a.directions * dim * FLOAT_BYTES,
                      f"the iteration's full-rank directions, one row of {dim:,} parameters per direction"
                      + (f" and learner ({learners} learners)" if learners > 1 else "")
                      + f" (backend {a.backend!r}; ars.noise_rank > 0 or backend 'sequential' draws less)"))
    x = getattr(task, "x_train", None)
    batch = getattr(config.task, "batch_size", None)
    if x is not None and batch:
        per_example = INDEX_BYTES + x[0].numel() * x.element_size()
        items.append(("task.batch_size", batch, batch * per_example,
                      f"{per_example} bytes per example for its index and its input"))
    chunk = getattr(a, "vector_chunk", 0)
    if chunk and a.backend in ("vectorized", "hogwild", "distributed"):
        items.append(("ars.vector_chunk", chunk, min(chunk, 2 * a.directions * learners) * dim * FLOAT_BYTES,
                      f"one θ of {dim:,} parameters per candidate scored at once"))
    return items


def check_job(config, task, dim: int) -> None:
    """Refuse a job one of whose keys (or all of them together) cannot fit in the memory free now."""
    free = available_memory()
    items = footprint(config, task, dim)
    for key, value, nbytes, what in items:
        if nbytes > free:
            _refuse(key, value, nbytes, what, free)
    total = sum(item[2] for item in items)
    if total > free:
        key, value, nbytes, what = max(items, key=lambda item: item[2])
        raise ConfigError(f"this job would need at least {human_bytes(total)} of memory, more than the "
                          f"{human_bytes(free)} free here; the largest part is {key} = {value} "
                          f"({human_bytes(nbytes)}: {what}); refused before allocating it")
