"""The ARS update rules of Mania, Guy & Recht (2018), and a `torch.optim`-style optimizer.

One iteration (Algorithm 2 of the paper):

1. draw N directions δ_k (regenerated from integer seeds, see `arsearch.noise`);
2. score the antithetic pair θ ± ν·δ_k, giving r+_k and r−_k (higher is better);
3. V1-t / V2-t: keep the b directions with the largest max(r+_k, r−_k) (V1 / V2: b = N);
4. θ ← θ + α / (b·σ_R) · Σ_top (r+_k − r−_k)·δ_k, with σ_R the standard deviation of the 2b
   rewards used;
5. V2 / V2-t: merge every state seen in the iteration into the running mean and standard
   deviation that normalise the policy's input (`arsearch.normalizer.RunningNorm`).

`update_weights` is steps 3–4 as coefficients w_k, so that θ ← θ + Σ w_k δ_k; the backends
evaluate step 2 and apply the sum.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
from torch.optim import Optimizer

from .noise import iteration_seeds, make_noise
from .normalizer import RunningNorm

VERSIONS = ("v1", "v1t", "v2", "v2t")


class DivergenceError(RuntimeError):
    """Raised when a score or a parameter becomes NaN or infinite."""


def uses_top(version: str) -> bool:
    return version in ("v1t", "v2t")


def normalizes_states(version: str) -> bool:
    return version in ("v2", "v2t")


def update_weights(r_plus: torch.Tensor, r_minus: torch.Tensor, step_size: float, top: int, version: str) -> torch.Tensor:
    """Coefficients w (N,) such that the ARS step is θ ← θ + Σ_k w_k·δ_k."""
    if version not in VERSIONS:
        raise ValueError(f"unknown ARS version {version!r}; allowed: {', '.join(VERSIONS)}")
    r_plus, r_minus = r_plus.double(), r_minus.double()
    if not (torch.isfinite(r_plus).all() and torch.isfinite(r_minus).all()):
        raise DivergenceError("a perturbed candidate scored NaN or inf")
    n = r_plus.numel()
    b = min(top, n) if uses_top(version) else n
    best = torch.argsort(torch.maximum(r_plus, r_minus), descending=True, stable=True)[:b]
    sigma = torch.cat([r_plus[best], r_minus[best]]).std(unbiased=False)
    weights = torch.zeros(n, dtype=torch.float64)
    if sigma > 0:  # all 2b rewards equal: no information, no step
        weights[best] = step_size / (b * sigma) * (r_plus[best] - r_minus[best])
    return weights


@dataclass
class StepResult:
    """What one `ars_step` saw and did, for K learners: rows are learners, columns directions."""

    seeds: list[list[int]]
    r_plus: torch.Tensor      # (K, N)
    r_minus: torch.Tensor     # (K, N)
    weights: torch.Tensor     # (K, N): θ_k ← θ_k + Σ_n w_kn·δ_kn

    @property
    def rewards(self) -> torch.Tensor:
        """(K, 2N): every candidate's score, [+δ_1..+δ_N, −δ_1..−δ_N] per learner."""
        return torch.cat([self.r_plus, self.r_minus], dim=1)

    def metrics(self) -> dict[str, float]:
        rewards = self.rewards
        return {"train/score": float(rewards.mean()), "train/score_max": float(rewards.max()),
                "train/step_scale": float(self.weights.abs().sum(1).mean())}


Evaluate = Callable[[list[list[int]], torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
Apply = Callable[[list[list[int]], torch.Tensor], None]


def ars_step(evaluate: Evaluate, apply: Apply, seeds: list[list[int]], step_sizes: Sequence[float] | torch.Tensor,
             noises: Sequence[float] | torch.Tensor, top: int, version: str) -> StepResult:
    """Steps 2–4 of the paper's Algorithm 2 for K learners: the functional core of every learner.

    ``evaluate(seeds, noises)`` returns (r+, r−) of shape (K, N) for each learner's directions
    scaled by its own noise ν_k; ``apply(seeds, weights)`` performs θ_k ← θ_k + Σ_n w_kn·δ_kn.
    Learner k's weights use its own step size α_k (``ars.update_weights``).
    """
    noises = torch.as_tensor(noises, dtype=torch.float64)
    r_plus, r_minus = evaluate(seeds, noises)
    weights = torch.stack([update_weights(r_plus[k], r_minus[k], float(step_sizes[k]), top, version)
                           for k in range(len(seeds))])
    apply(seeds, weights)
    return StepResult(seeds, r_plus, r_minus, weights)


class ARS(Optimizer):
    """Augmented Random Search as a drop-in `torch.optim` optimizer.

    ``step(closure)`` calls ``closure()`` 2·directions times, each time on parameters perturbed
    in place by ±noise·δ; the closure returns the loss to *minimise* (no backward pass needed).
    Memory: the model plus one parameter-sized chunk of noise.

    ``noise_rank = r > 0`` draws low-rank directions (δ = A·Bᵀ/√r per weight matrix, biases full
    rank): r·(m+n) random numbers per m×n matrix instead of m·n.

    For V2 / V2-t, pass the `RunningNorm` module(s) that normalise your model's input as
    ``normalizer``: they record every input seen during a step and update afterwards.
    """

    def __init__(self, params: Iterable, step_size: float = 0.02, noise: float = 0.03, directions: int = 8,
                 top: int | None = None, version: str = "v1t", seed: int = 0,
                 normalizer: RunningNorm | Iterable[RunningNorm] | None = None, noise_rank: int = 0):
        if version not in VERSIONS:
            raise ValueError(f"unknown ARS version {version!r}; allowed: {', '.join(VERSIONS)}")
        if directions < 1 or step_size <= 0 or noise <= 0:
            raise ValueError("directions must be >= 1, step_size and noise > 0")
        top = directions if top is None else top
        if not 1 <= top <= directions:
            raise ValueError(f"top must be in [1, directions={directions}], got {top}")
        norms = [normalizer] if isinstance(normalizer, RunningNorm) else list(normalizer or [])
        if normalizes_states(version) and not norms:
            raise ValueError(f"version {version!r} normalises states: pass the model's RunningNorm as normalizer=")
        defaults = dict(step_size=step_size, noise=noise)
        super().__init__(params, defaults)
        self.directions, self.top, self.version, self.seed = directions, top, version, seed
        self.normalizers = norms
        # noise_rank = r > 0: each weight matrix's direction is A·Bᵀ/√r (arsearch.noise.LowRankNoise)
        shapes = [p.shape for g in self.param_groups for p in g["params"]]
        self._noise = make_noise("seed", rank=noise_rank, shapes=shapes)
        self.param_groups[0].setdefault("iteration", 0)

    def _perturb(self, seed: int, scale: float, key: str) -> None:
        params = [(p, g[key]) for g in self.param_groups for p in g["params"]]
        chunks = self._noise.chunks(seed, [p.numel() for p, _ in params], params[0][0].device, params[0][0].dtype)
        for p, coef in params:
            chunk = next(chunks)
            p.add_(chunk.view_as(p), alpha=scale * coef)
            del chunk   # one direction chunk alive at a time

    @torch.no_grad()
    def step(self, closure: Callable[[], float | torch.Tensor]) -> torch.Tensor:  # type: ignore[override]
        iteration = self.param_groups[0]["iteration"]
        seeds = iteration_seeds(self.seed, iteration, self.directions)
        recording = normalizes_states(self.version)
        for norm in self.normalizers:
            norm.recording = norm.new_stats() if recording else None

        def evaluate(seeds, noises):      # in place: θ ± noise·δ (per group), then θ restored
            r_plus, r_minus = [], []
            for s in seeds[0]:
                self._perturb(s, +1.0, "noise")
                r_plus.append(-float(closure()))
                self._perturb(s, -2.0, "noise")
                r_minus.append(-float(closure()))
                self._perturb(s, +1.0, "noise")  # restore θ
            return torch.tensor([r_plus]), torch.tensor([r_minus])

        def apply(seeds, weights):         # unit step size here; each group's step_size scales it
            for s, w in zip(seeds[0], weights[0].tolist()):
                if w != 0.0:
                    self._perturb(s, w, "step_size")

        result = ars_step(evaluate, apply, [seeds], [1.0], [1.0], self.top, self.version)
        r_plus_t, r_minus_t = result.r_plus[0], result.r_minus[0]
        for norm in self.normalizers:
            if norm.recording is not None:
                norm.update(norm.recording)
            norm.recording = None
        self.param_groups[0]["iteration"] = iteration + 1
        return -torch.cat([r_plus_t, r_minus_t]).mean()
