"""Vectorized backend over several devices (``ars.devices``): on CPU, ["cpu", "cpu"] must change nothing."""

import pytest
import torch

from arsearch.trainer import Trainer
from tests.support import make_job


@pytest.mark.parametrize("preset,overrides", [("digits", {}),
                                              ("rl", {"task.horizon": 30, "task.eval_episodes": 1, "ars.directions": 3})],
                         ids=["supervised", "rl"])
def test_two_cpu_devices_equal_one(tmp_path, preset, overrides):
    runs = []
    for name, devices in [("one", []), ("two", ["cpu", "cpu"])]:
        trainer = Trainer(make_job(preset, tmp_path / name, **{"ars.version": "v2t", "ars.devices": devices, **overrides}),
                          progress=False)
        trainer.run()
        runs.append(trainer)
    one, two = runs
    params = dict(one.model.named_parameters())
    for key, value in one.model.state_dict().items():
        # V2 statistics: equal up to the order of the float64 sums (they are summed per device);
        # an MLP's weights up to float32 rounding: one device shares the first layer's x·Wᵀ across
        # the candidates (x·Wᵀ ± ν·x·δᵀ), the replicas score the formed candidates θ ± ν·δ
        tol = dict(rtol=1e-5, atol=2e-5) if key in params else dict(rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(two.model.state_dict()[key], value, **tol, msg=key)
    assert float(two.task.normalizer.count) > 0    # states seen by the replicas reach the normaliser
    assert two.task.counters == one.task.counters
