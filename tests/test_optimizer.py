"""arsearch.ARS as a torch.optim optimizer, on models the library did not build."""

import pytest
import torch
from torch import nn

import arsearch
from arsearch import ARS, RunningNorm


class UserNet(nn.Module):
    """A model written by a user: two layers, a residual, a custom nonlinearity."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(5, 16)
        self.b = nn.Linear(16, 1)

    def forward(self, x):
        h = torch.sin(self.a(x))
        return self.b(h).squeeze(-1) + x[:, 0]


def make_data(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, generator=g)
    y = x[:, 0] + 0.5 * x[:, 1] - x[:, 2] * x[:, 3]
    return x, y


@pytest.mark.parametrize("version", ["v1", "v1t"])
def test_ars_optimizer_reduces_the_loss_of_a_user_model(version):
    torch.manual_seed(0)
    model = UserNet()
    x, y = make_data()
    opt = ARS(model.parameters(), step_size=0.05, noise=0.05, directions=16, top=4, version=version)

    def closure():
        return nn.functional.mse_loss(model(x), y)

    before = float(closure())
    for _ in range(150):
        opt.step(closure)
    after = float(closure())
    assert after < 0.6 * before


def test_step_uses_2N_closure_calls_and_restores_between_them():
    model = nn.Linear(3, 1)
    calls = []
    opt = ARS(model.parameters(), directions=4, top=2)
    start = [p.clone() for p in model.parameters()]

    def closure():
        calls.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
        return torch.tensor(float(len(calls)))

    opt.step(closure)
    assert len(calls) == 8
    theta0 = torch.cat([p.flatten() for p in start])
    # the + and - evaluations of each direction are symmetric around the starting point
    for k in range(4):
        assert torch.allclose((calls[2 * k] + calls[2 * k + 1]) / 2, theta0, atol=1e-6)


def test_v2_requires_and_updates_a_running_norm():
    model = nn.Sequential(RunningNorm(5), nn.Linear(5, 1))
    with pytest.raises(ValueError, match="normalizer"):
        ARS(model.parameters(), version="v2t")
    opt = ARS(model.parameters(), directions=2, top=1, version="v2t", normalizer=model[0])
    x, y = make_data(64)
    opt.step(lambda: nn.functional.mse_loss(model(x).squeeze(-1), y))
    # every one of the 2N forward passes saw the same 64 states
    assert float(model[0].count) == 2 * 2 * 64
    assert torch.allclose(model[0].mean, x.double().mean(0), atol=1e-6)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="top"):
        ARS(nn.Linear(2, 1).parameters(), directions=4, top=5)
    with pytest.raises(ValueError, match="version"):
        ARS(nn.Linear(2, 1).parameters(), version="v9")


def test_state_dict_round_trip_keeps_the_iteration_counter():
    model = nn.Linear(2, 1)
    opt = ARS(model.parameters(), directions=2, top=1)
    opt.step(lambda: model.weight.sum())
    state = opt.state_dict()
    opt2 = ARS(model.parameters(), directions=2, top=1)
    opt2.load_state_dict(state)
    assert opt2.param_groups[0]["iteration"] == 1


def test_public_surface():
    assert "ARS" in arsearch.__all__
    assert isinstance(ARS(nn.Linear(2, 1).parameters()), torch.optim.Optimizer)
