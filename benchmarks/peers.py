"""arsearch against its peers in one run: episodes and wall clock to the ARS paper's thresholds.

Systems, all with the paper's V2-t hyperparameters (Mania et al. 2018, Table 9) and a linear policy:

- ``arsearch-1core``: arsearch, vectorized backend, one process, one thread;
- ``arsearch-2core``: arsearch the way a user runs it on this 2-core machine: the distributed
  backend with 2 ranks (Gloo), one thread each — ``arsearch train job.toml --nproc 2``. It is the
  same synchronous algorithm as one process (same seed, same trajectory up to the rounding of the
  state statistics' sums, which over hundreds of iterations lets runs part), with each iteration's
  rollouts split between the cores. (The hogwild
  backend is faster per step, but its stale asynchronous updates cost episodes: it missed the
  Hopper threshold within 8,000 episodes where one process took 2,000.)
- ``sb3-contrib``: sb3-contrib's ``ARS`` (``LinearPolicy``, ``VecNormalize`` observations only,
  ``alive_bonus_offset = −shift``), one process, as its documentation runs it;
- ``numpy``: the bare algorithm in plain NumPy (`numpy_ars` below), one process.

Every run evaluates its policy every few iterations (mean return of 5 episodes on fixed reset
seeds, no shift; the same protocol for all) and stops when that mean reaches the threshold or the
episode budget is spent. Episodes and environment steps are training rollouts only; the wall
clock is the training loop's, with the evaluations' own time taken out (they are the same work
for every system, but not equally fast), process start-up excluded.

The benchmark is resumable: each finished run is a JSON file under ``reports/data/peers/``
(``--out``); a rerun skips what is cached, runs the rest interleaved (seed by seed, task by task,
the systems in rotating order) and regenerates ``reports/peers.md`` from whatever is cached,
listing the cells still missing. Each run is its own subprocess.

    python benchmarks/peers.py                          # 3 seeds × 2 tasks × 4 systems
    python benchmarks/peers.py --task Hopper --seeds 0 --system numpy sb3-contrib
    python benchmarks/peers.py --report-only            # rewrite reports/peers.md from the cache
    python benchmarks/peers.py --task Hopper --seeds 0 --deadline 600 --out /tmp/peers-check   # a time-capped check
    python benchmarks/peers.py --smoke                  # one seed, tiny budgets, cache and report in /tmp
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TASKS = {
    # name: env, step size α, N, b, ν, shift, threshold, episode budget, evaluate every (iterations)
    "Hopper": dict(env="Hopper-v5", alpha=0.01, n=8, b=4, nu=0.025, shift=1.0, threshold=3120, budget=8000, every=5),
    "HalfCheetah": dict(env="HalfCheetah-v5", alpha=0.02, n=32, b=4, nu=0.03, shift=0.0, threshold=3430, budget=5000,
                        every=2),
}
SYSTEMS = ["arsearch-1core", "arsearch-2core", "sb3-contrib", "numpy"]
HORIZON = 1000
EVAL_EPISODES = 5
EVAL_SEED_BASE = 1_000_000_007     # the same fixed reset seeds as arsearch's own evaluation
SMOKE = dict(budget=64, every=1, horizon=50)


class Reached(Exception):
    """Raised from a peer's callback to end its training loop at the threshold."""


class Clock:
    """Training wall clock with the evaluations taken out, and the learning curve."""

    def __init__(self, threshold: float, deadline: float | None = None):
        self.threshold, self.start, self.eval_s = threshold, time.perf_counter(), 0.0
        self.eval_cpu_s, self.cpu_start = 0.0, 0.0
        self.marked: float | None = None
        self.deadline = deadline            # training seconds after which the run stops, unfinished
        self.curve: list[dict] = []
        self.reached: dict | None = None
        self.deadline_hit = False

    def begin(self) -> None:
        """The training loop starts now (set-up and imports are not timed)."""
        self.start, self.cpu_start = time.perf_counter(), cpu_seconds()

    def mark(self) -> None:
        """The training loop's work is done up to here (what follows is tear-down, not timed)."""
        self.marked = self.train_seconds()

    def train_seconds(self) -> float:
        return time.perf_counter() - self.start - self.eval_s

    def evaluate(self, episodes: int, steps: int, score_fn) -> bool:
        """Record one evaluation (`score_fn()` → mean return); True once the run should stop (the
        threshold is reached, or the deadline passed)."""
        seconds = self.train_seconds()
        t0, c0 = time.perf_counter(), time.process_time()
        score = float(score_fn())
        self.eval_s += time.perf_counter() - t0
        self.eval_cpu_s += time.process_time() - c0
        point = {"episodes": episodes, "steps": steps, "seconds": seconds, "return": score}
        self.curve.append(point)
        if score >= self.threshold and self.reached is None:
            self.reached = point
        if self.deadline is not None and seconds > self.deadline and self.reached is None:
            self.deadline_hit = True
        return self.reached is not None or self.deadline_hit


def eval_policy(env_id: str, act, horizon: int) -> float:
    """Mean return of `act(obs) → action` over the fixed evaluation episodes (no shift)."""
    import gymnasium as gym

    env = gym.make(env_id)
    total = 0.0
    for i in range(EVAL_EPISODES):
        obs, _ = env.reset(seed=EVAL_SEED_BASE + i)
        for _ in range(horizon):
            obs, r, terminated, truncated, _ = env.step(act(obs))
            total += r
            if terminated or truncated:
                break
    env.close()
    return total / EVAL_EPISODES


# -- the bare algorithm ----------------------------------------------------------------------------
def numpy_ars(spec: dict, seed: int, clock: Clock, budget: int, horizon: int) -> tuple[int, int]:
    """ARS V2-t (Mania et al. 2018, Algorithm 2) in plain NumPy: one environment, one process."""
    import gymnasium as gym
    import numpy as np

    env, rng = gym.make(spec["env"]), np.random.default_rng(seed)
    low, high = env.action_space.low, env.action_space.high
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    m = np.zeros((act_dim, obs_dim))
    count, mean, m2 = 0, np.zeros(obs_dim), np.zeros(obs_dim)    # running state statistics
    episodes = steps = iteration = 0

    def rollout(policy, std, reset_seed, states):
        nonlocal steps
        obs, _ = env.reset(seed=reset_seed)
        total = 0.0
        for _ in range(horizon):
            states.append(obs)
            obs, r, terminated, truncated, _ = env.step(np.clip(policy @ ((obs - mean) / std), low, high))
            total += r - spec["shift"]
            steps += 1
            if terminated or truncated:
                break
        return total

    clock.begin()
    while episodes < budget:
        std = std_of(m2, count)
        deltas = rng.standard_normal((spec["n"], act_dim, obs_dim))
        reset_seeds = rng.integers(0, 2 ** 31, spec["n"])
        states: list = []
        r_plus = np.array([rollout(m + spec["nu"] * d, std, int(s), states) for d, s in zip(deltas, reset_seeds)])
        r_minus = np.array([rollout(m - spec["nu"] * d, std, int(s), states) for d, s in zip(deltas, reset_seeds)])
        episodes += 2 * spec["n"]
        top = np.argsort(-np.maximum(r_plus, r_minus))[:spec["b"]]
        sigma = np.concatenate([r_plus[top], r_minus[top]]).std()
        sigma = sigma if sigma > 0 else 1.0
        m += spec["alpha"] / (spec["b"] * sigma) * np.einsum("k,kij->ij", r_plus[top] - r_minus[top], deltas[top])
        batch = np.asarray(states)      # Chan et al.'s merge of this iteration's states into the statistics
        n_b, mean_b = len(batch), batch.mean(0)
        delta, total_n = mean_b - mean, count + len(batch)
        m2 = m2 + ((batch - mean_b) ** 2).sum(0) + delta ** 2 * count * n_b / total_n
        mean, count = mean + delta * n_b / total_n, total_n
        iteration += 1
        if iteration % spec["every"] == 0:
            eval_std = std_of(m2, count)   # evaluated right here, before m or the statistics move again
            act = lambda o: np.clip(m @ ((o - mean) / eval_std), low, high)  # noqa: B023, E731
            if clock.evaluate(episodes, steps, lambda: eval_policy(spec["env"], act, horizon)):  # noqa: B023
                break
    env.close()
    return episodes, steps


def std_of(m2, count):
    """Standard deviation of the states seen so far (1 where there is none yet, or it is ~0)."""
    import numpy as np

    std = np.sqrt(m2 / count) if count > 1 else np.ones_like(m2)
    std[std < 1e-8] = 1.0
    return std


# -- sb3-contrib -----------------------------------------------------------------------------------
def sb3_ars(spec: dict, seed: int, clock: Clock, budget: int, horizon: int) -> tuple[int, int]:
    import torch
    from sb3_contrib import ARS
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    torch.set_num_threads(1)
    venv = VecNormalize(make_vec_env(spec["env"], n_envs=1, seed=seed, env_kwargs={"max_episode_steps": horizon}),
                        norm_obs=True, norm_reward=False)
    model = ARS("LinearPolicy", venv, n_delta=spec["n"], n_top=spec["b"], learning_rate=spec["alpha"],
                delta_std=spec["nu"], alive_bonus_offset=-spec["shift"], seed=seed, device="cpu", verbose=0)

    def act(obs):
        action, _ = model.predict(venv.normalize_obs(obs), deterministic=True)
        return action

    class EvaluateAndStop(BaseCallback):
        """Before each iteration's rollouts (so after the previous update): evaluate, check the budget."""

        def _on_rollout_start(self) -> None:
            iteration = model._n_updates
            if iteration and iteration % spec["every"] == 0:
                if clock.evaluate(2 * spec["n"] * iteration, model.num_timesteps,
                                  lambda: eval_policy(spec["env"], act, horizon)):
                    raise Reached
            if 2 * spec["n"] * iteration >= budget:
                raise Reached

        def _on_step(self) -> bool:
            return True

    clock.begin()
    try:
        # sb3 counts steps, not episodes: the step budget is an upper bound, the callback ends the loop
        model.learn(total_timesteps=budget * horizon, callback=EvaluateAndStop())
    except Reached:
        pass
    venv.close()
    return 2 * spec["n"] * model._n_updates, model.num_timesteps


# -- arsearch --------------------------------------------------------------------------------------
def arsearch_run(spec: dict, seed: int, clock: Clock, budget: int, horizon: int, backend: str) -> tuple[int, int]:
    """One arsearch run in this process: the vectorized backend, or one rank of the distributed one
    (RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT set by `distributed_run`)."""
    import torch

    from arsearch.callbacks import Callback
    from arsearch.config import load_job
    from arsearch.trainer import Trainer

    torch.set_num_threads(1)
    ars = {"version": "v2t", "step_size": spec["alpha"], "directions": spec["n"], "top": spec["b"],
           "noise": spec["nu"], "iterations": math.ceil(budget / (2 * spec["n"])), "backend": backend}
    cfg = load_job(data={
        "seed": seed,
        "task": {"kind": "rl", "env": spec["env"], "policy": "linear", "horizon": horizon, "shift": spec["shift"],
                 "eval_episodes": EVAL_EPISODES},
        "ars": ars, "eval": {"every": spec["every"]}, "tracking": {"enabled": False},
        # the trainer's own [stop] target: every rank sees the same evaluation, so all stop together
        "stop": {"target": {"metric": "eval/return", "value": spec["threshold"]}},
        "checkpoint": {"dir": f"/tmp/arsearch-peers/{spec['env']}-{seed}-{os.getpid()}", "every": 10 ** 9},
    })
    trainer = Trainer(cfg, progress=False)
    task = trainer.task
    evaluate = task.evaluate
    last: dict = {}

    def timed_evaluate():  # the trainer evaluates through the task: route it through the clock
        counters = task.counters
        clock.evaluate(counters.get("episodes", 0), counters.get("env_steps", 0),
                       lambda: last.update(evaluate()) or last["return"])
        return dict(last)

    task.evaluate = timed_evaluate

    class Stop(Callback):
        def on_iteration(self, trainer, iteration, metrics):
            clock.mark()   # the final checkpoint and closing the environments are not training

        def on_eval(self, trainer, iteration, metrics):
            if clock.deadline_hit:   # (one process only: ranks' clocks differ, so no deadline there)
                trainer.request_stop()

    trainer.callbacks.append(Stop())
    task._env_list(2 * spec["n"])   # the environments exist before the clock starts, as the peers' do
    clock.begin()
    trainer.run()
    return task.counters.get("episodes", 0), task.counters.get("env_steps", 0)


def distributed_run(task_name: str, seed: int, smoke: bool, clock: Clock, world: int = 2) -> tuple[int, int, float]:
    """Rank 0 here, ranks 1.. as subprocesses (`--rank`): returns rank 0's counts and the training
    CPU seconds of all ranks, each measured by the rank itself the way `run_one` does."""
    import socket

    with socket.socket() as s:            # a free port for the ranks' rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    others = [subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--rank", str(r), "--task", task_name,
                                "--seeds", str(seed)] + (["--smoke"] if smoke else []),
                               env=dict(env, RANK=str(r), LOCAL_RANK=str(r)), stdout=subprocess.PIPE, text=True,
                               cwd=ROOT) for r in range(1, world)]
    os.environ.update(env, RANK="0", LOCAL_RANK="0")
    spec, horizon = task_spec(task_name, smoke)
    episodes, steps = arsearch_run(spec, seed, clock, spec["budget"], horizon, "distributed")
    cpu = cpu_seconds() - clock.cpu_start - clock.eval_cpu_s   # before reaping the ranks adds their start-up
    for proc in others:
        out, _ = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"rank subprocess exited with code {proc.returncode}")
        cpu += json.loads(out.strip().splitlines()[-1])["cpu_seconds"]
    return episodes, steps, cpu


def rank_main(task_name: str, seed: int, smoke: bool) -> dict:
    """A rank > 0 of `distributed_run`: trains in lockstep with rank 0, reports its CPU seconds."""
    spec, horizon = task_spec(task_name, smoke)
    clock = Clock(spec["threshold"])
    arsearch_run(spec, seed, clock, spec["budget"], horizon, "distributed")
    return {"cpu_seconds": cpu_seconds() - clock.cpu_start - clock.eval_cpu_s}


def task_spec(task: str, smoke: bool) -> tuple[dict, int]:
    spec = dict(TASKS[task])
    if smoke:
        spec.update(budget=max(SMOKE["budget"], 4 * spec["n"]), every=SMOKE["every"])
        return spec, SMOKE["horizon"]
    return spec, HORIZON


# -- one run, in its own process ---------------------------------------------------------------------
def run_one(task: str, system: str, seed: int, smoke: bool, deadline: float | None = None) -> dict:
    spec, horizon = task_spec(task, smoke)
    clock = Clock(spec["threshold"], deadline)
    cpu = None
    if system == "numpy":
        episodes, steps = numpy_ars(spec, seed, clock, spec["budget"], horizon)
    elif system == "sb3-contrib":
        episodes, steps = sb3_ars(spec, seed, clock, spec["budget"], horizon)
    elif system == "arsearch-1core":
        episodes, steps = arsearch_run(spec, seed, clock, spec["budget"], horizon, "vectorized")
    elif system == "arsearch-2core":
        clock.deadline = None   # ranks' clocks differ: a deadline could stop one rank and not the other
        episodes, steps, cpu = distributed_run(task, seed, smoke, clock)
    else:
        raise ValueError(f"unknown system {system!r}; allowed: {', '.join(SYSTEMS)}")
    seconds = clock.marked if clock.marked is not None else clock.train_seconds()
    if cpu is None:   # training CPU time of this process (arsearch-2core's ranks measured their own)
        cpu = cpu_seconds() - clock.cpu_start - clock.eval_cpu_s
    return {"task": task, "system": system, "seed": seed, "smoke": smoke, "threshold": spec["threshold"],
            "budget": spec["budget"], "horizon": horizon, "reached": clock.reached, "deadline_hit": clock.deadline_hit,
            "episodes": episodes,
            "steps": steps, "train_seconds": seconds, "steps_per_s": steps / seconds if seconds > 0 else None,
            "cpu_seconds": cpu, "steps_per_cpu_s": steps / cpu if cpu > 0 else None,
            "final_return": clock.curve[-1]["return"] if clock.curve else None, "curve": clock.curve,
            "load_average": os.getloadavg()[0]}


def cpu_seconds() -> float:
    """CPU time of this process and its finished children."""
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def cache_path(out: Path, task: str, system: str, seed: int) -> Path:
    return out / f"{task}-{system}-seed{seed}.json"


def schedule(tasks, systems, seeds) -> list[tuple[str, str, int]]:
    """Seed by seed, task by task; the systems' order rotates so none always runs first or last."""
    order = []
    for i, seed in enumerate(seeds):
        for j, task in enumerate(tasks):
            shift = (i + j) % len(systems)
            order += [(task, s, seed) for s in systems[shift:] + systems[:shift]]
    return order


# -- the report ----------------------------------------------------------------------------------------
def censored_median(values: list[tuple[float, bool]]) -> tuple[float, bool]:
    """Median of (value, exact) pairs where an inexact value is only a lower bound (a run that
    stopped before the threshold). Returns (median, exact): exact when the median is the same with
    the bounds as they are and with them at +∞; otherwise the median is a lower bound."""
    low = median([v for v, _ in values])
    high = median([v if exact else math.inf for v, exact in values])
    return low, low == high


def fmt_bound(value: tuple[float, bool]) -> str:
    return fmt(value[0]) if value[1] else "≥ " + fmt(value[0])


def fmt_ratio(a: tuple[float, bool], b: tuple[float, bool]) -> str:
    """a ÷ b for censored medians: exact, a lower bound (a inexact), an upper bound (b inexact), or unknown."""
    ratio = a[0] / b[0]
    if a[1] and b[1]:
        return f"×{ratio:.2f}"
    if b[1]:
        return f"≥ ×{ratio:.2f}"
    if a[1]:
        return f"≤ ×{ratio:.2f}"
    return f"not determined (both medians are lower bounds: {a[0]:.0f} s and {b[0]:.0f} s)"


def wall_to_threshold(run: dict) -> float:
    """Training seconds to the threshold; for a run stopped before it, its training time (a lower bound)."""
    return run["reached"]["seconds"] if run["reached"] else run["train_seconds"]


def median(values):
    return statistics.median(values) if values else None


def fmt(value, spec=",.0f", none="—"):
    return none if value is None else format(value, spec)


def report(out: Path, tasks, systems, seeds, smoke: bool) -> str:
    runs = {}
    for path in sorted(out.glob("*.json")):
        r = json.loads(path.read_text())
        runs[(r["task"], r["system"], r["seed"])] = r
    missing = [f"{t} / {s} / seed {k}" for t in tasks for s in systems for k in seeds if (t, s, k) not in runs]
    lines = ["# arsearch against its peers: episodes and wall clock to the ARS paper's thresholds", "",
             "{HEADER}" if not smoke else "(smoke run: tiny budgets, horizon 50 — checks the machinery, not the figures)",
             "", "Systems (all ARS V2-t, the paper's hyperparameters, linear policy, horizon 1000):", "",
             "- **arsearch-1core**: vectorized backend, one process, one thread;",
             "- **arsearch-2core**: distributed backend, 2 ranks (Gloo) of one thread each (`arsearch train job.toml "
             "--nproc 2`) — how a user would run it on this 2-core machine: the same synchronous algorithm as one "
             "process, each iteration's rollouts split between the cores;",
             "- **sb3-contrib**: `sb3_contrib.ARS` with `LinearPolicy` and `VecNormalize` (observations), one process;",
             "- **numpy**: the bare algorithm in ~40 lines of NumPy (`numpy_ars` in the benchmark), one process.", "",
             "Each run evaluates every few iterations (mean return of 5 fixed-seed episodes, no shift) and stops at "
             "the threshold or the budget. *Episodes* and *steps* are training rollouts up to the first evaluation "
             "at or above the threshold; *wall* is the training loop's wall clock up to then, evaluations taken out; "
             "*steps/s* is training steps over training wall clock for the whole run, *steps/CPU-s* over the CPU "
             "time of all the run's processes (training loop only, every rank included): the rate per core whatever else "
             "ran on the machine. Medians are over all seeds, a run "
             "that stopped before the threshold counting as more than what it spent: such a median is exact when "
             "those runs cannot move it, and is shown as a lower bound (≥) otherwise; `k/n` = seeds that reached it. A run marked *(deadline)* was stopped "
             "after `--deadline` training seconds, before the threshold (the machine's time is limited; "
             "it needed more than that).", "",
             "All four systems run the same algorithm with the same hyperparameters, so the episodes a run needs "
             "differ only by its random draws (directions, reset seeds), and with 3 seeds that spread dominates the "
             "wall-clock ratios. The time per environment step is each implementation's own cost, which the seeds "
             "do not blur: both are given below each table.", ""]
    for task in tasks:
        spec = TASKS[task]
        budget = next((r["budget"] for (t, _, _), r in runs.items() if t == task), spec["budget"])
        lines += [f"## {spec['env']} (threshold {spec['threshold']}, budget {budget:,} episodes, "
                  f"α {spec['alpha']}, N {spec['n']}, b {spec['b']}, ν {spec['nu']}, shift {spec['shift']})", "",
                  "| system | reached | episodes to threshold | wall s to threshold | steps/s | steps/CPU-s | "
                  "per seed: episodes (wall s) | final eval return |", "|---|---|---|---|---|---|---|---|"]
        walls = {}
        for system in systems:
            done = [runs[(task, system, k)] for k in seeds if (task, system, k) in runs]
            if not done:
                lines.append(f"| {system} | — | — | — | — | — | not run yet | — |")
                continue
            hit = [r for r in done if r["reached"]]
            walls[system] = censored_median([(wall_to_threshold(r), bool(r["reached"])) for r in done])
            episodes = censored_median([(r["reached"]["episodes"] if r["reached"] else r["episodes"], bool(r["reached"]))
                                        for r in done])
            per_seed = ", ".join(f"{r['reached']['episodes']:,} ({r['reached']['seconds']:.0f})" if r["reached"]
                                 else f">{r['episodes']:,}" + (" (deadline)" if r.get("deadline_hit") else "")
                                 for r in done)
            lines.append(f"| {system} | {len(hit)}/{len(done)} | {fmt_bound(episodes)} | {fmt_bound(walls[system])} | "
                         f"{fmt(median([r['steps_per_s'] for r in done if r['steps_per_s']]))} | "
                         f"{fmt(median([r['steps_per_cpu_s'] for r in done if r.get('steps_per_cpu_s')]))} | {per_seed} | "
                         f"{fmt(median([r['final_return'] for r in done if r['final_return'] is not None]))} |")
        lines.append("")
        fastest = min((s for s in walls if s.startswith("arsearch")), key=lambda s: walls[s][0], default=None)
        if "sb3-contrib" in walls and fastest:
            lines.append(f"- sb3-contrib ÷ fastest arsearch ({fastest}), wall clock to threshold: "
                         f"**{fmt_ratio(walls['sb3-contrib'], walls[fastest])}** (target ≥ ×3).")
        if "numpy" in walls and "arsearch-1core" in walls:
            lines.append(f"- arsearch-1core ÷ numpy, wall clock to threshold: "
                         f"**{fmt_ratio(walls['arsearch-1core'], walls['numpy'])}** (target ≤ ×1).")
        # every system runs the same algorithm, so the episodes a seed needs are luck; the cost of an
        # environment step is each implementation's own, and is what the seeds cannot blur
        rate = {system: median([r["steps_per_cpu_s"] for k in seeds if (r := runs.get((task, system, k)))
                                and r.get("steps_per_cpu_s")]) for system in systems}
        if rate.get("arsearch-1core") and rate.get("numpy"):
            lines.append(f"- Time per environment step (CPU-s per step, median over the runs), arsearch-1core ÷ numpy: "
                         f"**×{rate['numpy'] / rate['arsearch-1core']:.2f}**; sb3-contrib ÷ arsearch-1core: "
                         + (f"**×{rate['arsearch-1core'] / rate['sb3-contrib']:.2f}**." if rate.get("sb3-contrib") else "—."))
        lines.append("")
    lines += ["## Missing cells", ""]
    lines += [f"- {m}" for m in missing] if missing else ["None: every task × system × seed asked for is cached."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--system", nargs="+", default=SYSTEMS, choices=SYSTEMS)
    parser.add_argument("--seeds", nargs="+", type=int, default=None, help="default 0 1 2 (0 with --smoke)")
    parser.add_argument("--smoke", action="store_true", help="tiny budgets and horizon, cache and report in /tmp")
    parser.add_argument("--out", type=Path, default=None, help="cache folder (default reports/data/peers)")
    parser.add_argument("--deadline", type=float, default=None,
                        help="stop a run after this many training seconds (marked in the report as unfinished)")
    parser.add_argument("--report-only", action="store_true", help="only regenerate the report from the cache")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)   # internal: one run, JSON to stdout
    parser.add_argument("--rank", type=int, default=0, help=argparse.SUPPRESS)  # internal: a rank > 0 of arsearch-2core
    args = parser.parse_args(argv)
    if args.seeds is None:
        args.seeds = [0] if args.smoke else [0, 1, 2]
    if args.rank:
        print(json.dumps(rank_main(args.task[0], args.seeds[0], args.smoke)))
        return 0
    if args.one:
        print(json.dumps(run_one(args.task[0], args.system[0], args.seeds[0], args.smoke, args.deadline)))
        return 0
    out = args.out or (Path("/tmp/arsearch-peers-smoke") if args.smoke else ROOT / "reports" / "data" / "peers")
    out.mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        for task, system, seed in schedule(args.task, args.system, args.seeds):
            path = cache_path(out, task, system, seed)
            if path.exists():
                print(f"cached: {path.name}", flush=True)
                continue
            print(f"running {task} / {system} / seed {seed} ...", flush=True)
            cmd = [sys.executable, str(Path(__file__).resolve()), "--one", "--task", task, "--system", system,
                   "--seeds", str(seed)] + (["--smoke"] if args.smoke else [])
            cmd += ["--deadline", str(args.deadline)] if args.deadline else []
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
            if proc.returncode != 0:
                print(proc.stderr[-3000:], file=sys.stderr)
                print(f"failed: {task} / {system} / seed {seed} (not cached; rerun to retry)", file=sys.stderr)
                continue
            result = json.loads(proc.stdout.strip().splitlines()[-1])
            path.write_text(json.dumps(result, indent=1) + "\n")
            reached = result["reached"]
            status = (f"reached at {reached['episodes']} episodes, {reached['seconds']:.0f} s" if reached
                      else "not reached")
            print(f"  {status}; {result['steps_per_s'] or 0:,.0f} steps/s", flush=True)
    body = report(out, args.task, args.system, args.seeds, args.smoke)
    if args.smoke or args.out is not None:   # a check run: its report stays beside its cache
        path = out / "peers.md"
        path.write_text(body)
    else:
        from benchmarks.common import write_report

        path = write_report("peers", body)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
