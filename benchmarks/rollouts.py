"""RL rollouts against the Gymnasium limit: environment steps per second, per core, on the same episodes.

arsearch runs a few ARS iterations (the paper's hyperparameters, linear policy, one thread) with
the sequential and the vectorized backend; every rollout call is recorded (the candidates'
matrices, the normaliser's statistics, the reset seeds). The vectorized backend's episodes are
then replayed, one environment at a time, through three limits:

- **gym.make loop**: `env = gym.make(id)`, `a = clip(M·(s − μ)/σ)` in NumPy, `env.step(a)` until
  terminated/truncated or the horizon: what a user would write by hand;
- **unwrapped step**: the same loop on `env.unwrapped` (no TimeLimit/OrderEnforcing/PassiveEnvChecker);
- **bare MuJoCo**: `mujoco.mj_step(model, data, nstep=frame_skip)` with the same controls from
  the same reset states — the physics alone, without observations or rewards.

The replay must give the same returns as arsearch's rollouts (the table says how close they
are). Times are this process's CPU time, so the rates are per core even when other processes share
the machine; rounds are also interleaved (arsearch, limits, arsearch, ...) and each ratio is the
median of the per-round ratios. Then one iteration is profiled (cProfile) to say where
arsearch's time goes.

    python benchmarks/rollouts.py [--rounds 9] [--min-steps 6000] [--envs Swimmer Hopper HalfCheetah]
"""

from __future__ import annotations

import argparse
import cProfile
import inspect
import pstats
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

ENVS = {
    # name: (env id, version, step size, N, b, noise, shift) — the paper's hyperparameters (Table 9)
    "Swimmer": ("Swimmer-v5", "v1t", 0.02, 1, 1, 0.01, 0.0),
    "Hopper": ("Hopper-v5", "v2t", 0.01, 8, 4, 0.025, 1.0),
    "HalfCheetah": ("HalfCheetah-v5", "v2t", 0.02, 32, 4, 0.03, 0.0),
}
HORIZON = 1000
# CPU time of this process, not wall time: "per core" whatever else shares the machine (the
# benchmark is single-threaded: torch runs one thread, NumPy's products here are too small to fan out)
CLOCK = time.process_time


def make_trainer(name: str, backend: str, tmp: str):
    from arsearch.config import load_job
    from arsearch.trainer import Trainer

    env, version, alpha, n, b, nu, shift = ENVS[name]
    cfg = load_job(data={
        "seed": 0,
        "task": {"kind": "rl", "env": env, "policy": "linear", "horizon": HORIZON, "shift": shift},
        "ars": {"version": version, "step_size": alpha, "directions": n, "top": b, "noise": nu,
                "iterations": 10 ** 6, "backend": backend},
        "eval": {"every": 10 ** 6}, "tracking": {"enabled": False},
        "checkpoint": {"dir": tmp, "every": 10 ** 9},
    })
    trainer = Trainer(cfg, progress=False)
    trainer.records = []
    task, rollouts = trainer.task, trainer.task.rollouts

    def recording(params, reset_seeds, *, shift, record):
        norm = task.normalizer
        entry = {"w": params["layers.0.weight"].detach().double().numpy().copy(), "seeds": [int(s) for s in reset_seeds],
                 "mean": None if norm is None else norm.mean.numpy().copy(),
                 "std": None if norm is None else norm.std().numpy().copy(), "shift": shift}
        entry["returns"] = rollouts(params, reset_seeds, shift=shift, record=record)
        trainer.records.append(entry)
        return entry["returns"]

    task.rollouts = recording
    return trainer


def run_arsearch(trainer, min_steps: int) -> tuple[int, float]:
    """(environment steps, seconds) of full ARS iterations (rollouts, step, normaliser update), as many
    as it takes to reach `min_steps` environment steps."""
    trainer.records.clear()
    before = trainer.task.counters.get("env_steps", 0)
    start = CLOCK()
    while trainer.task.counters.get("env_steps", 0) - before < min_steps:
        trainer.learner.step(trainer.iteration)
        trainer.iteration += 1
    return trainer.task.counters["env_steps"] - before, CLOCK() - start


def policy_loop(env, entry, horizon: int, actions_out: list | None = None) -> tuple[int, float, float]:
    """Replay `entry`'s candidates one after the other; (steps, seconds, max |return − arsearch's|)."""
    low, high = env.action_space.low, env.action_space.high
    mean, std = entry["mean"], entry["std"]
    steps, worst, elapsed = 0, 0.0, 0.0
    for m, seed, expected in zip(entry["w"], entry["seeds"], entry["returns"]):
        actions = [] if actions_out is not None else None
        start = CLOCK()
        obs, _ = env.reset(seed=seed)
        ret, t = 0.0, 0
        while t < horizon:
            x = obs if mean is None else (obs - mean) / std
            # einsum row by row: the same arithmetic as the vectorized backend's batched einsum,
            # so that the replay retraces arsearch's trajectories exactly (checked in the table)
            a = np.clip(np.einsum("ij,j->i", m, x), low, high)
            if actions is not None:
                actions.append(a)
            obs, r, terminated, truncated, _ = env.step(a)
            ret += r - entry["shift"]
            t += 1
            if terminated or truncated:
                break
        elapsed += CLOCK() - start
        steps += t
        worst = max(worst, abs(ret - float(expected)))
        if actions_out is not None:
            actions_out.append((seed, actions))
    return steps, elapsed, worst


def bare_mujoco(env, episodes) -> tuple[int, float]:
    """mj_step × frame skip with the recorded controls, from the same reset states: the physics alone."""
    import mujoco

    raw = env.unwrapped
    model, data, skip = raw.model, raw.data, raw.frame_skip
    steps, elapsed = 0, 0.0
    for seed, actions in episodes:
        raw.reset(seed=seed)
        start = CLOCK()
        for a in actions:
            data.ctrl[:] = a
            mujoco.mj_step(model, data, nstep=skip)
        elapsed += CLOCK() - start
        steps += len(actions)
    return steps, elapsed


def measure(name: str, rounds: int, min_steps: int) -> dict:
    import gymnasium as gym

    env_id = ENVS[name][0]
    trainers = {b: make_trainer(name, b, f"/tmp/arsearch-rollouts/{name}-{b}") for b in ("sequential", "vectorized")}
    wrapped = gym.make(env_id)
    limit = min(HORIZON, wrapped.spec.max_episode_steps or HORIZON)
    keys = ("sequential", "vectorized", "gym", "unwrapped", "mujoco")
    rates: dict[str, list[float]] = {k: [] for k in keys}
    worst = 0.0
    for _ in range(rounds):
        # finely interleaved: one iteration per backend, then the limits on that iteration's episodes
        totals = {k: [0, 0.0] for k in keys}
        while totals["vectorized"][0] < min_steps:
            for backend, trainer in trainers.items():
                steps, seconds = run_arsearch(trainer, 1)
                totals[backend][0] += steps
                totals[backend][1] += seconds
            for entry in trainers["vectorized"].records:
                episodes: list = []
                for key, env, cut in (("gym", wrapped, HORIZON), ("unwrapped", wrapped.unwrapped, limit)):
                    s, t, w = policy_loop(env, entry, cut, episodes if key == "unwrapped" else None)
                    totals[key][0] += s
                    totals[key][1] += t
                    worst = max(worst, w)
                s, t = bare_mujoco(wrapped, episodes)
                totals["mujoco"][0] += s
                totals["mujoco"][1] += t
        for key, (s, t) in totals.items():
            rates[key].append(s / t)
    mean_length = trainers["vectorized"].task.counters["env_steps"] / max(1, trainers["vectorized"].task.counters["episodes"])
    per_round = {b: [x / g for x, g in zip(rates[b], rates["gym"])] for b in ("sequential", "vectorized", "unwrapped")}
    ratio = {b: statistics.median(v) for b, v in per_round.items()}
    spread = {b: (min(v), max(v)) for b, v in per_round.items()}
    profile = profile_iteration(trainers["vectorized"], wrapped.unwrapped)
    for trainer in trainers.values():
        trainer.task.close()
    wrapped.close()
    return {"env": env_id, "rates": {k: statistics.median(v) for k, v in rates.items()}, "ratio": ratio, "spread": spread,
            "worst": worst, "mean_length": mean_length, "profile": profile}


def span(result: dict, key: str) -> str:
    low, high = result["spread"][key]
    return f"{low:.2f}–{high:.2f}"


def profile_iteration(trainer, raw_env) -> dict[str, float]:
    """Shares of one vectorized iteration's time, from cProfile's cumulative times."""
    from arsearch.normalizer import RunningNorm, StateStats
    from arsearch.tasks import rl

    profiler = cProfile.Profile()
    profiler.enable()
    run_arsearch(trainer, 1)  # one iteration
    profiler.disable()
    stats = pstats.Stats(profiler).stats  # {(file, line, name): (cc, nc, tottime, cumtime, callers)}

    def cum(fn) -> float:
        code = getattr(fn, "__code__", None)
        if code is None:
            return 0.0
        key = (code.co_filename, code.co_firstlineno, code.co_name)
        return stats[key][3] if key in stats else 0.0

    total = sum(v[2] for v in stats.values())
    cls = type(raw_env)
    environment = cum(cls.step) + cum(cls.reset)
    outer = type(trainer.task._envs[0])   # what the rollout calls: gym.make's outermost wrapper
    wrappers = max(0.0, cum(outer.step) + cum(outer.reset) - environment) if outer is not cls else 0.0
    policy = cum(rl.RLTask._act)
    normaliser = cum(StateStats.add_moments) + cum(inspect.unwrap(RunningNorm.update))
    parts = {"environment (unwrapped step, reset)": environment, "Gymnasium wrappers": wrappers,
             "policy": policy, "normaliser": normaliser}
    parts["rollout loop and ARS bookkeeping"] = max(0.0, total - sum(parts.values()))
    return {k: v / total for k, v in parts.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--min-steps", type=int, default=6_000,
                        help="environment steps per round (whole iterations, interleaved with the limits)")
    parser.add_argument("--envs", nargs="+", default=list(ENVS), choices=list(ENVS))
    parser.add_argument("--name", default="rollouts", help="report name under reports/")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    results = {}
    for name in args.envs:
        results[name] = measure(name, args.rounds, args.min_steps)
        r = results[name]
        print(name, {k: round(v) for k, v in r["rates"].items()}, {k: round(v, 3) for k, v in r["ratio"].items()},
              flush=True)

    from benchmarks.common import write_report

    lines = ["# RL rollouts against the Gymnasium limit", "", "{HEADER}",
             f"One process, one thread, rates per CPU-second of that process; the paper's hyperparameters and linear policy, horizon {HORIZON}; "
             f"{args.rounds} rounds per environment of at least {args.min_steps:,} steps each, made of whole ARS "
             "iterations, each iteration followed by its replay through the limits; medians of the rounds. "
             "The limits replay arsearch's own episodes (same policies, normaliser statistics and reset seeds), "
             "one environment at a time.", "",
             "| environment (N) | mean episode length | bare `mj_step`×frame skip | unwrapped `step` loop | "
             "`gym.make` loop | arsearch sequential | arsearch vectorized | sequential ÷ gym.make | "
             "vectorized ÷ gym.make | replay's max return difference |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        q = r["rates"]
        lines.append(f"| {r['env']} ({ENVS[name][3]}) | {r['mean_length']:.0f} | {q['mujoco']:,.0f} | {q['unwrapped']:,.0f} | "
                     f"{q['gym']:,.0f} | {q['sequential']:,.0f} | {q['vectorized']:,.0f} | "
                     f"**{r['ratio']['sequential']:.2f}** ({span(r, 'sequential')}) | "
                     f"**{r['ratio']['vectorized']:.2f}** ({span(r, 'vectorized')}) | {r['worst']:.1e} |")
    noise = ", ".join(f"{r['env']} {r['ratio']['unwrapped']:.2f} ({span(r, 'unwrapped')})" for r in results.values())
    lines += ["", "Figures are environment steps per CPU-second (resets included); ratios are medians over the "
              "rounds, with their range in brackets. Target: arsearch ≥ 0.9 of the `gym.make` loop.", "",
              "How much to trust a ratio: the unwrapped loop does strictly less work than the `gym.make` loop, "
              f"so unwrapped ÷ gym.make should be ≥ 1 in every round; measured: {noise}. The spread of the rounds "
              "is this machine's measurement noise at the time (other jobs shared the cores; CPU time still moves "
              "with cache and core contention).", "", "## Where a vectorized iteration spends its time (cProfile, one iteration)", "",
              "| environment | " + " | ".join(next(iter(results.values()))["profile"]) + " |",
              "|---|" + "---|" * len(next(iter(results.values()))["profile"])]
    for r in results.values():
        lines.append(f"| {r['env']} | " + " | ".join(f"{v:.1%}" for v in r["profile"].values()) + " |")
    lines += ["", "cProfile inflates the share of code made of many small Python calls (the loop, the "
              "policy), so the shares are upper bounds for everything but the environment."]
    path = write_report(args.name, "\n".join(lines) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
