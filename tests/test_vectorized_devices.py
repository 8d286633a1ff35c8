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
    for key, value in one.model.state_dict().items():
        # V2 statistics: equal up to the order of the float64 sums (they are summed per device)
        torch.testing.assert_close(two.model.state_dict()[key], value, rtol=1e-12, atol=1e-12, msg=key)
    assert float(two.task.normalizer.count) > 0    # states seen by the replicas reach the normaliser
    assert two.task.counters == one.task.counters
