"""Reinforcement learning on any Gymnasium environment: the score is an episode's return.

Rollouts run in NumPy: the policy's parameters are copied out of torch once per episode and the
per-step forward is a few small matrix products, so the environment, not the framework, is the
cost (MuJoCo steps at ~10–20k/s on one core). P candidates step in lockstep, their policies
applied as one batched product — the vectorized backend's data-parallel mode for RL.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..ars import normalizes_states
from ..fields import choice, listof, number
from ..imports import UserCodeError
from ..memory import check_parameters, mlp_parameters
from ..noise import iteration_seeds
from ..normalizer import RunningNorm
from .base import Task

EVAL_SEED_BASE = 1_000_000_007  # evaluation episodes use fixed reset seeds, disjoint from training
STATE_BLOCK = 32  # V2: lockstep steps of states buffered between two summations (one copy per step)


class Policy(nn.Module):
    """A linear policy a = M·s (the paper's; M starts at zero) or an MLP with tanh hidden layers."""

    def __init__(self, obs_dim: int, act_dim: int, hidden=(), normalize: bool = False):
        super().__init__()
        self.norm = RunningNorm(obs_dim) if normalize else None
        sizes = [obs_dim, *hidden, act_dim]
        linear = not hidden
        check_parameters("task.hidden", list(hidden), mlp_parameters(sizes, bias=not linear))
        self.layers = nn.ModuleList(nn.Linear(a, b, bias=not linear) for a, b in zip(sizes[:-1], sizes[1:]))
        if linear:
            nn.init.zeros_(self.layers[0].weight)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = self.norm(obs) if self.norm is not None else obs
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = torch.tanh(x)
        return x


@dataclass
class RLConfig:
    """``[task]`` keys of ``kind = "rl"``."""

    env: str = "Swimmer-v5"
    policy: str = choice("linear", "linear", "mlp")
    hidden: list[int] = listof([64])     # mlp policy
    horizon: int = number(1000, 1)
    shift: float = 0.0
    eval_episodes: int = number(5, 1)


class RLTask(Task):
    name = "rl"
    Config = RLConfig
    metric = "return"
    eval_metrics = ("return", "return_std")
    spends = ("episodes", "env_steps", "forward_examples")
    default_spend = "episodes"            # the ARS paper's measure
    counters = ("episodes", "env_steps")
    resume_keys = ("env", "policy", "hidden")

    @classmethod
    def unused_keys(cls, config) -> tuple[str, ...]:
        return ("hidden",) if config.task.policy == "linear" else ()

    @classmethod
    def spend_per_candidate(cls, config, spend: str) -> float:
        # one episode per candidate, of at most `horizon` steps (an upper bound)
        return 1.0 if spend == "episodes" else float(config.task.horizon)
    bypass_wrappers = True  # step env.unwrapped when gym.make's wrappers allow it (tests turn it off)

    def __init__(self, env_id: str, *, policy: str = "linear", hidden=(64,), horizon: int = 1000, shift: float = 0.0,
                 eval_episodes: int = 5, directions: int = 1, seed: int = 0, normalize: bool = False):
        super().__init__()
        try:
            import gymnasium as gym
        except ImportError:
            raise ValueError("RL tasks need gymnasium: pip install 'arsearch[rl]'") from None
        self._gym = gym
        self.env_id, self.horizon, self.shift = env_id, horizon, shift
        self.eval_episodes, self.directions, self.seed = eval_episodes, directions, seed
        self._envs: list = []
        self._steps = 0     # every environment step this task took, training and evaluation
        env = self._make_env()
        self._envs.append(env)
        obs_space, act_space = env.observation_space, env.action_space
        if not isinstance(obs_space, gym.spaces.Box) or len(obs_space.shape) != 1:
            raise ValueError(f"environment {env_id!r}: only flat Box observations are supported, got {obs_space}")
        self.discrete = isinstance(act_space, gym.spaces.Discrete)
        if self.discrete:
            act_dim = int(act_space.n)
        elif isinstance(act_space, gym.spaces.Box) and len(act_space.shape) == 1:
            act_dim = act_space.shape[0]
            self.low, self.high = act_space.low, act_space.high
        else:
            raise ValueError(f"environment {env_id!r}: unsupported action space {act_space}")
        hidden = () if policy == "linear" else tuple(hidden)
        self.obs_space, self.obs_dim = obs_space, obs_space.shape[0]
        self.model = Policy(obs_space.shape[0], act_dim, hidden, normalize)
        self.normalizer = self.model.norm

    @classmethod
    def from_config(cls, config, device=None) -> RLTask:
        t = config.task
        return cls(t.env, policy=t.policy, hidden=t.hidden, horizon=t.horizon, shift=t.shift,
                   eval_episodes=t.eval_episodes, directions=config.ars.directions, seed=config.seed,
                   normalize=normalizes_states(config.ars.version))

    def _make_env(self):
        try:
            return self._gym.make(self.env_id)
        except Exception as e:  # gymnasium raises several error types for unknown or broken ids
            raise ValueError(f"cannot create Gymnasium environment {self.env_id!r}: {e}") from None

    def _store(self, obs: np.ndarray, i: int, o, call: str) -> None:
        """obs[i] = o, or a clear error when the environment returned another shape than its space says."""
        try:
            obs[i] = o
        except (ValueError, TypeError):
            raise ValueError(f"task.env = {self.env_id!r}: env.{call} returned an observation of shape "
                             f"{np.shape(o)}, but its observation_space is {self.obs_space} (shape "
                             f"{self.obs_space.shape}); fix the environment's observations or its space") from None

    def _env_list(self, n: int) -> list:
        while len(self._envs) < n:
            self._envs.append(self._make_env())
        return self._envs[:n]

    def _stepper(self, env) -> tuple:
        """(environment to step, step limit) for one environment made by `gym.make`.

        gym.make wraps a MuJoCo env in TimeLimit(OrderEnforcing(PassiveEnvChecker(env))). Those
        wrappers only count, check the call order and check the first outputs, yet cost a few
        Python calls per step; when they are all there is, the rollout steps `env.unwrapped` and
        applies TimeLimit's cut itself (the same observations, rewards and episode ends, which
        tests/test_rollouts.py checks against gym.make). Any other wrapper keeps the full stack.
        """
        from gymnasium.wrappers import OrderEnforcing, PassiveEnvChecker, TimeLimit

        limit = self.horizon
        inner = env
        while isinstance(inner, self._gym.Wrapper):
            if type(inner) is TimeLimit:  # exact types: a subclass may change what a step does
                limit = min(limit, int(inner._max_episode_steps))
            elif type(inner) not in (OrderEnforcing, PassiveEnvChecker):
                return env, self.horizon
            inner = inner.env
        return (inner, limit) if self.bypass_wrappers else (env, self.horizon)

    def close(self) -> None:
        for env in self._envs:
            env.close()
        self._envs = []

    # -- batched NumPy policy --------------------------------------------------------------------
    def _numpy_params(self, params: dict[str, torch.Tensor]) -> list[tuple[np.ndarray, np.ndarray | None]]:
        layers = []
        for i in range(len(self.model.layers)):
            w = params[f"layers.{i}.weight"].detach().cpu().double().numpy()
            b = params.get(f"layers.{i}.bias")
            layers.append((w, None if b is None else b.detach().cpu().double().numpy()))
        return layers

    def _act(self, layers, x: np.ndarray, single: bool = False) -> np.ndarray:
        """Actions (P, ·) of the P candidates for their normalised states x (P, obs).

        `single`: one candidate, its layers given as (Wᵀ, b) — a plain matrix product per layer.
        """
        if single:
            for i, (wt, b) in enumerate(layers):
                x = x @ wt
                if b is not None:
                    x += b
                if i < len(layers) - 1:
                    x = np.tanh(x)
        else:
            for i, (w, b) in enumerate(layers):
                x = np.einsum("pij,pj->pi", w, x)
                if b is not None:
                    x += b
                if i < len(layers) - 1:
                    x = np.tanh(x)
        if self.discrete:
            return x.argmax(-1)
        # np.clip's dispatch costs more than the two ufuncs it amounts to (same result, NaN included)
        return np.minimum(np.maximum(x, self.low, out=x), self.high, out=x)

    def rollouts(self, params: dict[str, torch.Tensor], reset_seeds, *, shift: float, record: bool) -> np.ndarray:
        """Returns of one episode per candidate; candidates step in lockstep.

        Everything per step that is not the environment is a handful of NumPy calls shared by the
        P candidates: normalise, the batched policy, and (V2 training only) one copy of the states
        into a block that is summed every `STATE_BLOCK` steps. A candidate whose episode ended has
        its state row zeroed, so that the sums need no masking.
        """
        layers = self._numpy_params(params)
        p = len(reset_seeds)
        if p == 1:  # the sequential backend's case: plain products, transposed once here
            layers = [(w[0].T, None if b is None else b[0]) for w, b in layers]
        mean = std = None
        if self.normalizer is not None:
            mean, std = self.normalizer.mean.numpy(), self.normalizer.std().numpy()
        steppers = [self._stepper(env) for env in self._env_list(p)]
        limit = max(lim for _, lim in steppers)
        try:
            first = [env.reset(seed=int(s))[0] for (env, _), s in zip(steppers, reset_seeds)]
        except Exception as e:              # noqa: BLE001 - the environment's own code (a user's env)
            raise UserCodeError("task.env", self.env_id, e, doing="env.reset") from None
        obs = np.zeros((p, self.obs_dim))
        for i, o in enumerate(first):
            self._store(obs, i, o, "reset")
        returns = [0.0] * p
        live = list(range(p))
        steps_of = [env.step for env, _ in steppers]
        limit_of = [lim for _, lim in steppers]
        keep_states = record and self.normalizer is not None
        if keep_states:
            block, filled = np.empty((STATE_BLOCK, *obs.shape)), 0
            total, total_sq = np.zeros(obs.shape[1]), np.zeros(obs.shape[1])
        steps = 0
        t = 0
        while live and t < limit:
            if keep_states:  # rows of ended episodes are zero, so they add nothing
                block[filled] = obs
                filled += 1
                if filled == STATE_BLOCK:
                    total += block.sum((0, 1))
                    total_sq += np.einsum("tpi,tpi->i", block, block)
                    filled = 0
            x = obs if mean is None else (obs - mean) / std
            actions = self._act(layers, x, single=p == 1)
            steps += len(live)
            t += 1
            ended = []
            for i in live:
                try:
                    o, r, terminated, truncated, _ = steps_of[i](actions[i])
                except Exception as e:      # noqa: BLE001 - the environment's own code (a user's env)
                    raise UserCodeError("task.env", self.env_id, e, doing="env.step") from None
                self._store(obs, i, o, "step")
                returns[i] += r - shift
                if terminated or truncated or t >= limit_of[i]:
                    ended.append(i)
            if ended:
                obs[ended] = 0.0
                live = [i for i in live if i not in ended] if len(ended) < len(live) else []
        self._steps += steps
        if record:
            self.count("episodes", p)
            self.count("env_steps", steps)
            self.count("forward_examples", steps)   # one observation through the policy per live step
            if keep_states:
                rest = block[:filled]
                total += rest.sum((0, 1))
                total_sq += np.einsum("tpi,tpi->i", rest, rest)
                if self._stats is None:
                    self._stats = self.normalizer.new_stats()
                self._stats.add_moments(steps, total, total_sq)
        return np.asarray(returns, dtype=np.float64)

    # -- Task interface --------------------------------------------------------------------------
    def batch(self, iteration: int) -> list[int]:
        """Reset seeds: direction k's ± pair shares one, so the pair is compared on the same start."""
        return iteration_seeds(self.seed, iteration, self.directions, stream=1)

    def select(self, batch, directions):
        return [batch[k] for k in directions]

    def for_candidates(self, batch, start, count):
        return [batch[(start + i) % len(batch)] for i in range(count)]

    def _candidate_seeds(self, batch, n_candidates: int) -> list[int]:
        return [batch[i % len(batch)] for i in range(n_candidates)]

    def score(self, batch, index: int = 0) -> float:
        params = {k: v.unsqueeze(0) for k, v in self.model.named_parameters()}
        return float(self.rollouts(params, [batch[index % len(batch)]], shift=self.shift, record=True)[0])

    def score_params(self, params: dict[str, torch.Tensor], batch) -> torch.Tensor:
        n = next(iter(params.values())).shape[0]
        returns = self.rollouts(params, self._candidate_seeds(batch, n), shift=self.shift, record=True)
        return torch.as_tensor(returns, dtype=torch.float64)

    def evaluate(self) -> dict[str, float]:
        params = {k: v.detach().unsqueeze(0).expand(self.eval_episodes, *v.shape) for k, v in self.model.named_parameters()}
        seeds = [EVAL_SEED_BASE + i for i in range(self.eval_episodes)]
        steps_before = self._steps
        returns = self.rollouts(params, seeds, shift=0.0, record=False)
        # counted apart: the paper's episode counts are training episodes only
        self.count("eval_episodes", len(seeds))
        self.count("eval_env_steps", self._steps - steps_before)
        return {"return": float(returns.mean()), "return_std": float(returns.std())}
