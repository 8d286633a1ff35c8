"""RL rollouts step `env.unwrapped` yet compute exactly what the gym.make stack computes."""

import numpy as np
import pytest
import torch

pytest.importorskip("gymnasium")

from arsearch.tasks.rl import RLTask  # noqa: E402


def candidate_params(task: RLTask, p: int, scale: float, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: scale * torch.randn((p, *v.shape), generator=g, dtype=torch.float64)
            for k, v in task.model.named_parameters()}


def rollout_both_ways(task: RLTask, params, seeds, shift=0.0):
    """(returns, counters, state moments) through env.unwrapped and through the full gym.make stack."""
    out = []
    for bypass in (True, False):
        task.bypass_wrappers = bypass
        task.counters = {}
        task._stats = None
        returns = task.rollouts(params, seeds, shift=shift, record=True)
        stats = task.pop_state_stats()
        out.append((returns, dict(task.counters), None if stats is None else stats.packed.clone()))
    task.bypass_wrappers = True
    return out


@pytest.mark.parametrize("env_id, normalize", [("Hopper-v5", True), ("HalfCheetah-v5", False),
                                               ("Swimmer-v5", True), ("CartPole-v1", False)])
def test_unwrapped_rollouts_equal_gym_make(env_id, normalize):
    task = RLTask(env_id, horizon=150, normalize=normalize, seed=3)
    if normalize:  # a normaliser that is not the identity
        stats = task.normalizer.new_stats()
        stats.add(torch.randn(50, task.normalizer.mean.numel(), dtype=torch.float64) * 2 + 0.5)
        task.normalizer.update(stats)
    params = candidate_params(task, 6, scale=0.5)
    seeds = [11, 12, 13, 11, 12, 13]
    fast, full = rollout_both_ways(task, params, seeds, shift=0.25)
    task.close()
    assert np.array_equal(fast[0], full[0])            # bit for bit
    assert fast[1] == full[1]
    if normalize:
        assert torch.equal(fast[2], full[2])
    assert fast[1]["episodes"] == 6


def test_hopper_episodes_end_at_different_steps_in_lockstep():
    task = RLTask("Hopper-v5", horizon=300)
    params = candidate_params(task, 8, scale=1.0, seed=1)
    seeds = list(range(8))
    together = task.rollouts(params, seeds, shift=0.0, record=True)
    steps_together = task.counters["env_steps"]
    # every candidate alone (the one-candidate path) gives the same return
    alone = [task.rollouts({k: v[i:i + 1] for k, v in params.items()}, [s], shift=0.0, record=True)[0]
             for i, s in enumerate(seeds)]
    task.close()
    assert steps_together < 8 * 300                    # some episodes terminated early
    assert steps_together * 2 == task.counters["env_steps"]
    np.testing.assert_allclose(together, alone, rtol=1e-9, atol=1e-9)


def test_time_limit_still_cuts_a_longer_horizon():
    # Swimmer-v5 never terminates; gym.make's TimeLimit ends its episodes at 1000 steps
    task = RLTask("Swimmer-v5", horizon=1200)
    params = candidate_params(task, 2, scale=0.1)
    fast, full = rollout_both_ways(task, params, [0, 1])
    task.close()
    assert fast[1]["env_steps"] == full[1]["env_steps"] == 2 * 1000
    assert np.array_equal(fast[0], full[0])


def test_an_unknown_wrapper_keeps_the_full_stack():
    import gymnasium as gym

    task = RLTask("Pendulum-v1", horizon=50)
    clipped = gym.wrappers.ClipAction(task._envs[0])
    env, limit = task._stepper(clipped)
    assert env is clipped and limit == 50
    env, limit = task._stepper(task._envs[0])
    assert env is task._envs[0].unwrapped and limit == 50     # TimeLimit of Pendulum is 200
    task.close()
