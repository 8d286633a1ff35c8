"""Prioritised mini-batches: frequencies ∝ priority^α, importance weights, β annealing, resume."""

import pytest
import torch

from arsearch.config import ConfigError, load_job
from arsearch.tasks import build_task
from arsearch.tasks.prioritized import PrioritizedSampler


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_frequencies_follow_priority_to_the_alpha(alpha):
    s = PrioritizedSampler(4, batch_size=40000, alpha=alpha, eps=0.0)
    s.update(torch.arange(4), torch.tensor([1.0, 2.0, 3.0, 4.0]))
    idx, _ = s.sample(0)
    freq = torch.bincount(idx, minlength=4).double() / len(idx)
    expected = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64) ** alpha
    expected /= expected.sum()
    assert torch.allclose(freq, expected, atol=0.01)


def test_unseen_examples_get_the_current_maximum_priority():
    s = PrioritizedSampler(4, batch_size=2, alpha=1.0, eps=0.0)
    assert torch.allclose(s.probabilities(), torch.full((4,), 0.25, dtype=torch.float64))
    s.update(torch.tensor([0, 1]), torch.tensor([1.0, 3.0]))
    assert torch.allclose(s.probabilities(), torch.tensor([1.0, 3.0, 3.0, 3.0], dtype=torch.float64) / 10)


def test_importance_weights_and_beta_annealing():
    s = PrioritizedSampler(4, batch_size=8, alpha=1.0, beta=0.5, eps=0.0)
    s.update(torch.arange(4), torch.tensor([1.0, 1.0, 2.0, 4.0]))
    p = torch.tensor([1.0, 1.0, 2.0, 4.0], dtype=torch.float64) / 8
    assert [s.beta(p) for p in (0.0, 0.5, 1.0, 2.0)] == [0.5, 0.75, 1.0, 1.0]      # over the job's progress
    for it, beta in ((0, 0.5), (5, 0.75), (10, 1.0)):
        idx, w = s.sample(it, progress=it / 10)
        expected = (4 * p[idx]) ** -beta / (4 * p.min()) ** -beta
        assert torch.allclose(w.double(), expected, atol=1e-6)
        assert float(w.max()) <= 1.0


def test_sampling_is_a_pure_function_of_state_and_iteration_and_survives_state_dict():
    a = PrioritizedSampler(100, batch_size=16, seed=3)
    a.update(torch.arange(50), torch.linspace(0.1, 5.0, 50))
    b = PrioritizedSampler(100, batch_size=16, seed=3)
    b.load_state_dict(a.state_dict())
    assert torch.equal(a.sample(7)[0], b.sample(7)[0]) and torch.equal(a.sample(7)[1], b.sample(7)[1])
    with pytest.raises(ValueError, match="priorities"):
        PrioritizedSampler(10, 4).load_state_dict(a.state_dict())


def test_config_enables_the_sampler_on_supervised_tasks_only():
    cfg = load_job(data={"task": {"batch_size": 32}, "sampling": {"alpha": 0.7, "beta": 0.5}})
    task = build_task(cfg)
    assert isinstance(task.sampler, PrioritizedSampler) and task.sampler.alpha == 0.7
    batch = task.batch(0)
    assert batch.weights is not None and batch.weights.shape == (32,)
    task.after_step(batch)
    assert task.sampler.seen.sum() > 0
    with pytest.raises(ConfigError, match="sampling"):
        load_job(data={"task": {"kind": "rl"}, "sampling": {}})
    with pytest.raises(ConfigError, match="sampling.beta"):
        load_job(data={"sampling": {"beta": 1.5}})
