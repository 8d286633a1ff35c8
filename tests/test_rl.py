"""RL tasks on Gymnasium environments (MuJoCo v5 and classic control, all offline)."""

import numpy as np
import pytest
import torch

from arsearch.trainer import Trainer
from tests.support import make_job

pytest.importorskip("gymnasium")


def rl_job(tmp_path, **overrides):
    return make_job("rl", tmp_path / "run", **overrides)


@pytest.mark.parametrize("version", ["v1t", "v2t"])
def test_sequential_and_vectorized_rollouts_agree(tmp_path, version):
    vectors = []
    for backend in ("sequential", "vectorized"):
        trainer = Trainer(rl_job(tmp_path / backend, **{"ars.backend": backend, "ars.version": version}), progress=False)
        result = trainer.run()
        vectors.append(trainer.space.vector())
        assert result["count/episodes"] == 3 * 8
    assert not torch.equal(vectors[0], torch.zeros_like(vectors[0]))
    assert torch.allclose(vectors[0], vectors[1], atol=1e-6)


def test_linear_policy_starts_at_zero_and_v2_counts_every_state(tmp_path):
    trainer = Trainer(rl_job(tmp_path, **{"ars.version": "v2t", "ars.iterations": 2}), progress=False)
    assert torch.count_nonzero(trainer.model.layers[0].weight) == 0
    assert trainer.model.layers[0].bias is None
    result = trainer.run()
    # Swimmer never terminates early: every candidate runs the full horizon
    assert float(trainer.task.normalizer.count) == result["count/env_steps"] == 2 * 8 * 60


def test_shift_is_subtracted_in_training_only(tmp_path):
    scores = {}
    for shift in (0.0, 1.0):
        trainer = Trainer(rl_job(tmp_path / str(shift), **{"task.shift": shift, "ars.iterations": 1}), progress=False)
        task = trainer.task
        batch = task.batch(0)
        scores[shift] = task.score(batch, 0), task.evaluate()["return"]
    assert scores[1.0][0] == pytest.approx(scores[0.0][0] - 60.0)
    assert scores[1.0][1] == pytest.approx(scores[0.0][1])


def test_discrete_actions_and_early_termination(tmp_path):
    trainer = Trainer(rl_job(tmp_path, **{"task.env": "CartPole-v1", "task.horizon": 200, "ars.iterations": 15,
                                          "ars.directions": 8, "ars.top": 4, "ars.step_size": 0.1, "ars.noise": 0.1,
                                          "task.policy": "mlp", "task.hidden": [8]}), progress=False)
    before = trainer.task.evaluate()["return"]
    result = trainer.run()
    assert result["count/env_steps"] < 15 * 16 * 200       # episodes ended early
    assert result["eval/return"] > before


def test_swimmer_learns(tmp_path):
    trainer = Trainer(rl_job(tmp_path, **{"task.horizon": 200, "ars.iterations": 12, "ars.directions": 4, "ars.top": 4}),
                      progress=False)
    before = trainer.task.evaluate()["return"]
    result = trainer.run()
    assert np.isfinite(result["eval/return"]) and result["eval/return"] > before + 5


def test_unknown_environment_is_a_usage_error(tmp_path):
    with pytest.raises(ValueError, match="NoSuchEnv-v0"):
        Trainer(rl_job(tmp_path, **{"task.env": "NoSuchEnv-v0"}), progress=False)
