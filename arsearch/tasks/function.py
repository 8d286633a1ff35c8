"""Black-box function minimisation: the parameters of a plain tensor (or of a model) scored by a function.

``task.kind = "function"``: θ is a point x ∈ R^dim (``task.dim``, drawn uniformly in
±``task.init_scale``) or the parameters of the model ``[model] factory`` builds, and the score of a
candidate is −f(θ): ARS maximises scores, the task minimises f. f is a built-in benchmark of any
dimension (`BENCHMARKS`: Rastrigin, Ackley, Rosenbrock, Styblinski–Tang, the sphere) or a user
function ``"package.module:fn"``:

- on a point, ``fn(x)`` takes the (P, dim) tensor of P candidates and returns their P values (a
  function of one point, (dim,) → value, is called once per candidate instead);
- on a model, ``fn(model)`` returns the value of the model with a candidate's parameters loaded.

Evaluation reports ``eval/value`` = f(θ) (lower is better; a ``[stop] target`` on it is reached
from below) and, for the built-ins, ``eval/gap`` = f(θ) − min f. Each candidate scored counts one
``count/evaluations``; it is also counted in ``forward_examples`` (one candidate through the
function once), so ``stop.forward_examples`` is the budget in function evaluations.

This is the cheap, multimodal home ground of annealing, tabu and particle swarms:
``benchmarks/ablation.py --task rastrigin`` compares them with one learner at equal evaluations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..fields import number
from ..imports import call_user, call_with_accepted, is_import_path, load_callable
from .base import Task

# ---------------------------------------------------------------------------------------------
# Built-in benchmarks: x is (P, d), the value (P,); each with its usual domain and its minimum


def sphere(x: torch.Tensor) -> torch.Tensor:
    return x.pow(2).sum(-1)


def rastrigin(x: torch.Tensor) -> torch.Tensor:
    """10·d + Σ x² − 10·cos 2πx: a bowl under a grid of local minima, one per integer point."""
    return 10.0 * x.shape[-1] + (x.pow(2) - 10.0 * torch.cos(2 * math.pi * x)).sum(-1)


def ackley(x: torch.Tensor) -> torch.Tensor:
    """A flat, rippled plateau around one deep funnel at 0."""
    d = x.shape[-1]
    return (-20.0 * torch.exp(-0.2 * torch.sqrt(x.pow(2).sum(-1) / d))
            - torch.exp(torch.cos(2 * math.pi * x).sum(-1) / d) + 20.0 + math.e)


def rosenbrock(x: torch.Tensor) -> torch.Tensor:
    """Σ 100·(x_{i+1} − x_i²)² + (1 − x_i)²: a curved, narrow valley (d >= 2)."""
    head, tail = x[..., :-1], x[..., 1:]
    return (100.0 * (tail - head.pow(2)).pow(2) + (1.0 - head).pow(2)).sum(-1)


def styblinski_tang(x: torch.Tensor) -> torch.Tensor:
    """½ Σ x⁴ − 16x² + 5x: 2^d local minima, the best at x_i ≈ −2.9035."""
    return 0.5 * (x.pow(4) - 16.0 * x.pow(2) + 5.0 * x).sum(-1)


@dataclass(frozen=True)
class Benchmark:
    fn: object
    half_width: float                       # the usual domain is [−w, w]^d: θ₀'s default range
    minimum: object                         # d -> min f (for eval/gap)
    min_dim: int = 1


BENCHMARKS = {
    "sphere": Benchmark(sphere, 5.12, lambda d: 0.0),
    "rastrigin": Benchmark(rastrigin, 5.12, lambda d: 0.0),
    "ackley": Benchmark(ackley, 32.768, lambda d: 0.0),
    "rosenbrock": Benchmark(rosenbrock, 2.048, lambda d: 0.0, min_dim=2),
    "styblinski_tang": Benchmark(styblinski_tang, 5.0, lambda d: -39.16616570377142 * d),
}


@dataclass
class FunctionConfig:
    """``[task]`` keys of ``kind = "function"``."""

    function: str = "rastrigin"      # rastrigin | ackley | rosenbrock | styblinski_tang | sphere | "package.module:fn"
    dim: int = number(10, 1)         # the point's dimension (without [model] factory)
    # θ₀ ~ U(−init_scale, init_scale) per coordinate; 0: the benchmark's usual domain (1 for a user function)
    init_scale: float = number(0.0, 0.0)


class Point(nn.Module):
    """A plain tensor as a model: the parameter ``x`` is the point the function is evaluated at."""

    def __init__(self, x: torch.Tensor):
        super().__init__()
        self.x = nn.Parameter(x)

    def forward(self) -> torch.Tensor:
        return self.x


class FunctionTask(Task):
    name = "function"
    Config = FunctionConfig
    metric = "value"
    metric_direction = "minimize"
    eval_metrics = ("value",)
    lower_is_better = ("value", "gap")
    counters = ("evaluations", "forward_examples")
    resume_keys = ("function", "dim")

    def __init__(self, fn, model: nn.Module | None = None, *, dim: int = 10, init_scale: float = 1.0,
                 minimum: float | None = None, seed: int = 0, device: str | torch.device = "cpu",
                 batched: bool = True, name: str = "function"):
        super().__init__()
        self.fn, self.minimum, self.fn_name = fn, minimum, name
        self.device = torch.device(device)
        self.on_model = model is not None
        if model is None:
            gen = torch.Generator().manual_seed(seed)
            x = (torch.rand(dim, generator=gen, dtype=torch.float64) * 2 - 1) * init_scale
            model = Point(x.to(torch.get_default_dtype()))
        self.model = model.to(self.device)
        self.batched = batched
        self.eval_metrics = ("value", "gap") if minimum is not None else ("value",)

    # -- the plug-in's declarations ------------------------------------------------------------------
    @classmethod
    def check(cls, config) -> None:
        t = config.task
        if not is_import_path(t.function):
            if t.function not in BENCHMARKS:
                raise ValueError(f"task.function = {t.function!r} is not a built-in ({', '.join(BENCHMARKS)}) "
                                 f"or a 'package.module:fn'")
            if not _on_model(config) and t.dim < BENCHMARKS[t.function].min_dim:
                raise ValueError(f"task.dim = {t.dim}: {t.function} needs dim >= {BENCHMARKS[t.function].min_dim}")
            if _on_model(config):
                raise ValueError(f"task.function = {t.function!r} is a benchmark of a point; with [model] factory "
                                 f"the function must be a 'package.module:fn' taking the model")

    @classmethod
    def unused_keys(cls, config) -> tuple[str, ...]:
        return ("dim", "init_scale") if _on_model(config) else ()

    @classmethod
    def evaluates(cls, config) -> tuple[str, ...]:
        return ("value",) if is_import_path(config.task.function) else ("value", "gap")

    @classmethod
    def spend_per_candidate(cls, config, spend: str) -> float:
        return 1.0                   # one function evaluation per candidate

    @classmethod
    def from_config(cls, config, device=None) -> FunctionTask:
        t = config.task
        if is_import_path(t.function):
            fn, minimum, batched = load_callable(t.function, "task.function"), None, True
            scale = t.init_scale or 1.0
        else:
            bench = BENCHMARKS[t.function]
            fn, minimum, batched = bench.fn, float(bench.minimum(t.dim)), True
            scale = t.init_scale or bench.half_width
        model = None
        if _on_model(config):
            torch.manual_seed(config.seed)
            model = call_user("model.factory", config.model.factory, call_with_accepted,
                              load_callable(config.model.factory, "model.factory"), seed=config.seed)
            if not isinstance(model, nn.Module):
                raise ValueError(f"model.factory {config.model.factory!r} returned a {type(model).__name__}, "
                                 f"not a torch.nn.Module")
        task = cls(fn, model, dim=t.dim, init_scale=scale, minimum=minimum, seed=config.seed,
                   device=device or "cpu", batched=batched, name=t.function)
        task._check_value()
        return task

    # -- scoring ---------------------------------------------------------------------------------
    def _values(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """f of P candidates given as parameter tensors with a leading P dimension."""
        n = next(iter(params.values())).shape[0]
        if self.on_model:                # fn(model): each candidate's tensors copied in, then θ restored
            named = dict(self.model.named_parameters())
            saved = {k: p.detach().clone() for k, p in named.items() if k in params}
            values = torch.empty(n, dtype=torch.float64)
            try:
                for i in range(n):
                    for k, v in params.items():
                        named[k].data.copy_(v[i])
                    values[i] = float(call_user("task.function", self.fn_name, self.fn, self.model))
            finally:
                for k, v in saved.items():
                    named[k].data.copy_(v)
            return values
        x = params["x"]
        if self.batched:
            try:
                values = torch.as_tensor(call_user("task.function", self.fn_name, self.fn, x), dtype=torch.float64)
                if values.shape == (n,):
                    return values
            except Exception:               # noqa: BLE001 - a user function of one point: called per candidate
                pass
            self.batched = False
        return torch.stack([torch.as_tensor(call_user("task.function", self.fn_name, self.fn, x[i]), dtype=torch.float64)
                            .reshape(()) for i in range(n)])

    def _check_value(self) -> None:
        """One evaluation now, so that a function returning the wrong thing fails here, by name."""
        try:
            value = self.value()
        except Exception as e:                   # noqa: BLE001 - the user's function, whatever it raises
            raise ValueError(f"task.function {self.fn_name!r} fails on the initial parameters: "
                             f"{type(e).__name__}: {e}") from None
        if not math.isfinite(value):
            raise ValueError(f"task.function {self.fn_name!r} returned {value} at the initial parameters")

    @torch.no_grad()
    def value(self) -> float:
        params = {k: v.detach().unsqueeze(0) for k, v in self.model.named_parameters()}
        return float(self._values(params)[0])

    # -- Task interface --------------------------------------------------------------------------
    def batch(self, iteration: int):
        return None                  # a deterministic function: every candidate is scored alike

    @torch.no_grad()
    def score(self, batch, index: int = 0) -> float:
        self._count(1)
        return -self.value()

    @torch.no_grad()
    def score_params(self, params: dict[str, torch.Tensor], batch) -> torch.Tensor:
        values = self._values(params)
        self._count(len(values))
        return -values

    def _count(self, n: int) -> None:
        self.count("evaluations", n)
        self.count("forward_examples", n)

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        value = self.value()
        self.count("eval_evaluations", 1)        # counted apart from training spend
        out = {"value": value}
        if self.minimum is not None:
            out["gap"] = value - self.minimum
        return out


def _on_model(config) -> bool:
    return config.model is not None and bool(config.model.factory)
