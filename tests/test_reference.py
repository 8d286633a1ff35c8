"""Every backend, the population and the `ARS` optimizer against a plain NumPy ARS, iteration by iteration.

The backend-equivalence tests compare backends that share the update rule, the normaliser and the
rollout code, so a bug there cancels out; `tests.support.reference` shares none of it. Each test
runs the library through its public surface (`Trainer`, `ARS`, the task's model) and the reference
from the same seeds and start θ, then compares θ, the mean training score and the V2 statistics
after every iteration.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from arsearch import ARS, RunningNorm
from arsearch.callbacks import Callback
from arsearch.trainer import Trainer
from tests.support import make_job, reference

VERSIONS = ["v1", "v1t", "v2", "v2t"]
# float32 (library) against float64 (reference): rounding, never a formula, is allowed to differ
THETA_TOL = dict(rtol=1e-4, atol=2e-5)
SCORE_TOL = dict(rtol=1e-5, atol=1e-5)
MOMENT_TOL = dict(rtol=1e-5, atol=1e-6)   # sums of squares lose digits; RL states drift with θ


class Record(Callback):
    """θ, the training score and the V2 statistics after every iteration, read from the public model."""

    def __init__(self):
        self.thetas, self.scores, self.norms = [], [], []

    def on_iteration(self, trainer, iteration, metrics):
        self.thetas.append(theta_of(trainer.model))
        self.scores.append(metrics["train/score"])
        norm = trainer.task.normalizer
        if norm is not None:
            self.norms.append((float(norm.count), norm.mean.cpu().numpy().copy(), norm.std().cpu().numpy().copy()))


def theta_of(model) -> np.ndarray:
    return np.concatenate([p.detach().double().cpu().numpy().ravel() for p in model.parameters()])


def run_trainer(cfg):
    trainer = Trainer(cfg, callbacks=[record := Record()], progress=False)
    start = copy.deepcopy(trainer.model)     # θ0 and the parameter layout, before any step
    trainer.run()
    return start, record, theta_of(trainer.model), trainer


def compare(record, trajectory, final, *, per_iteration_theta=True, best_of_population=False):
    assert len(record.scores) == len(trajectory)
    for it, (score, ref) in enumerate(zip(record.scores, trajectory)):
        best = int(np.argmax(ref["fitness"])) if best_of_population else 0
        np.testing.assert_allclose(score, ref["fitness"][best], **SCORE_TOL, err_msg=f"train/score, iteration {it}")
        if per_iteration_theta:
            np.testing.assert_allclose(record.thetas[it], ref["thetas"][best], **THETA_TOL,
                                       err_msg=f"θ after iteration {it}")
        if record.norms:
            count, mean, std = record.norms[it]
            assert count == ref["count"], f"V2 state count after iteration {it}"
            np.testing.assert_allclose(mean, ref["mean"], **MOMENT_TOL, err_msg=f"V2 mean after iteration {it}")
            np.testing.assert_allclose(std, ref["std"], **MOMENT_TOL, err_msg=f"V2 std after iteration {it}")
    last = trajectory[-1]
    best = int(np.argmax(last["fitness"])) if best_of_population else 0
    np.testing.assert_allclose(final, last["thetas"][best], **THETA_TOL, err_msg="final θ")
    assert not np.allclose(final, trajectory[0]["thetas"][0]), "θ never moved after the first step"


# -- supervised: digits, a small MLP --------------------------------------------------------------------

def digits_job(tmp_path, **over):
    return make_job("digits", tmp_path / "run", **{"ars.iterations": 4, "ars.directions": 6, "ars.top": 3,
                                                     "task.hidden": [8], "task.batch_size": 32, **over})


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("backend", ["sequential", "vectorized", "distributed"])
def test_supervised_backends_match_the_reference(tmp_path, backend, version):
    cfg = digits_job(tmp_path, **{"ars.backend": backend, "ars.version": version})
    start, record, final, _ = run_trainer(cfg)
    assert (len(record.norms) > 0) == (version in ("v2", "v2t"))
    compare(record, reference.run_supervised(cfg, start), final)


@pytest.mark.gpu
@pytest.mark.parametrize("version", ["v1t", "v2t"])
@pytest.mark.parametrize("backend", ["sequential", "vectorized", "distributed"])
def test_supervised_backends_on_cuda_match_the_reference(tmp_path, backend, version):
    # on the GPU the directions come from the CUDA generator, and the forward runs in CUDA float32
    cfg = digits_job(tmp_path, **{"ars.backend": backend, "ars.version": version, "task.device": "cuda"})
    start, record, final, _ = run_trainer(cfg)
    compare(record, reference.run_supervised(cfg, start), final)


@pytest.mark.multiprocess
@pytest.mark.parametrize("version", ["v1t", "v2t"])
def test_supervised_hogwild_with_one_worker_matches_the_reference(tmp_path, version):
    # the workers keep moving θ while the main process reads it: compare scores per iteration, θ at the end
    cfg = digits_job(tmp_path, **{"ars.backend": "hogwild", "ars.workers": 1, "ars.version": version})
    start, record, final, trainer = run_trainer(cfg)
    record.norms = []          # likewise the shared V2 buffers: compared once the workers are done
    trajectory = reference.run_supervised(cfg, start)
    compare(record, trajectory, final, per_iteration_theta=False)
    _compare_final_norm(trainer, trajectory[-1])


def _compare_final_norm(trainer, ref):
    norm = trainer.task.normalizer
    if norm is None:
        return
    assert float(norm.count) == ref["count"]
    np.testing.assert_allclose(norm.mean.numpy(), ref["mean"], **MOMENT_TOL)
    np.testing.assert_allclose(norm.std().numpy(), ref["std"], **MOMENT_TOL)


@pytest.mark.parametrize("version", ["v1t", "v2"])
def test_supervised_population_matches_independent_reference_learners(tmp_path, version):
    # three learners with their own direction streams; the model holds the best one's θ
    cfg = digits_job(tmp_path, **{"population.size": 3, "population.epoch": 2, "ars.version": version})
    start, record, final, _ = run_trainer(cfg)
    compare(record, reference.run_supervised(cfg, start, learners=3), final, best_of_population=True)


def test_table_noise_in_a_real_job_matches_the_reference(tmp_path):
    cfg = digits_job(tmp_path, **{"ars.noise_source": "table", "ars.table_size": 200_000})
    start, record, final, _ = run_trainer(cfg)
    compare(record, reference.run_supervised(cfg, start), final)


# -- RL: Swimmer-v5 with the paper's linear policy --------------------------------------------------------

@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("backend", ["sequential", "vectorized", "distributed"])
def test_rl_backends_match_the_reference(tmp_path, backend, version):
    pytest.importorskip("gymnasium")
    cfg = make_job("rl", tmp_path / "run", **{"ars.backend": backend, "ars.version": version,
                                               "task.horizon": 40, "ars.iterations": 3})
    start, record, final, _ = run_trainer(cfg)
    compare(record, reference.run_rl(cfg, start), final)


@pytest.mark.multiprocess
def test_rl_hogwild_with_one_worker_matches_the_reference(tmp_path):
    pytest.importorskip("gymnasium")
    cfg = make_job("rl", tmp_path / "run", **{"ars.backend": "hogwild", "ars.workers": 1, "ars.version": "v2t",
                                               "task.horizon": 40, "ars.iterations": 3})
    start, record, final, trainer = run_trainer(cfg)
    record.norms = []
    trajectory = reference.run_rl(cfg, start)
    compare(record, trajectory, final, per_iteration_theta=False)
    _compare_final_norm(trainer, trajectory[-1])


def test_rl_early_termination_and_discrete_actions_match_the_reference(tmp_path):
    # CartPole ends episodes early (their last state is never acted on) and acts by argmax
    pytest.importorskip("gymnasium")
    cfg = make_job("rl", tmp_path / "run", **{"task.env": "CartPole-v1", "ars.version": "v2t", "task.horizon": 100,
                                               "ars.iterations": 4, "ars.step_size": 0.1, "ars.noise": 0.1,
                                               "task.shift": 0.5})
    start, record, final, trainer = run_trainer(cfg)
    assert trainer.task.counters["env_steps"] < 4 * 8 * 100
    compare(record, reference.run_rl(cfg, start), final)


@pytest.mark.parametrize("env_id,policy", [("Swimmer-v5", "linear"), ("Swimmer-v5", "mlp"), ("CartPole-v1", "mlp")])
def test_rl_returns_are_those_of_a_gymnasium_loop_driven_by_policy_forward(tmp_path, env_id, policy):
    """The task's batched NumPy policy (used in every rollout) acts as `Policy.forward` does."""
    gym = pytest.importorskip("gymnasium")
    cfg = make_job("rl", tmp_path / "run", **{"task.env": env_id, "task.policy": policy, "task.hidden": [6],
                                               "ars.version": "v2t", "task.horizon": 50})
    trainer = Trainer(cfg, progress=False)
    task, model = trainer.task, trainer.model
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
        # non-trivial normalisation: a state mean and std that move every coordinate
        model.norm.count.fill_(10.0)
        model.norm.mean.copy_(torch.randn(model.norm.mean.shape, generator=g, dtype=torch.float64))
        model.norm.m2.copy_(10.0 * (0.5 + torch.rand(model.norm.m2.shape, generator=g, dtype=torch.float64)))
    policy64 = copy.deepcopy(model).double()
    env = gym.make(env_id)
    reset_seeds = task.batch(0)
    for k, reset_seed in enumerate(reset_seeds[:2]):
        obs, _ = env.reset(seed=int(reset_seed))
        expected = 0.0
        for _ in range(50):
            with torch.no_grad():
                out = policy64(torch.as_tensor(np.asarray(obs, np.float64))[None])[0].numpy()
            action = int(out.argmax()) if task.discrete else np.clip(out, env.action_space.low, env.action_space.high)
            obs, reward, terminated, truncated, _ = env.step(action)
            expected += float(reward)
            if terminated or truncated:
                break
        assert task.score(reset_seeds, k) == pytest.approx(expected, rel=1e-9, abs=1e-9)
    env.close()


# -- the ARS optimizer on a user model -------------------------------------------------------------------

class UserNet(nn.Module):
    def __init__(self, normalize: bool):
        super().__init__()
        self.norm = RunningNorm(5) if normalize else None
        self.a = nn.Linear(5, 6)
        self.b = nn.Linear(6, 1)

    def forward(self, x):
        if self.norm is not None:
            x = self.norm(x)
        return self.b(torch.tanh(self.a(x))).squeeze(-1)


def optimizer_reference(model, batches, *, step_size, noise, directions, top, version, seed):
    """The reference ARS with a closure's loss: V2 records every input of the 2N forward passes."""
    layout = reference.Layout(model)
    theta = layout.theta(model)
    moments = reference.StateMoments(batches[0][0].shape[1])
    v2 = version in ("v2", "v2t")
    out = []
    for it, (x, y) in enumerate(batches):
        x, y = x.double().numpy(), y.double().numpy()
        xs = reference.normalise(x, moments.mean(), moments.std()) if v2 else x

        def score(th, xs=xs, y=y):
            p = layout.unpack(th)
            h = np.tanh(xs @ p["a.weight"].T + p["a.bias"])
            return -float((((h @ p["b.weight"].T + p["b.bias"])[:, 0] - y) ** 2).mean())

        ds = [reference.direction(s, layout.sizes) for s in reference.seeds(seed, it, directions)]
        r_plus = [score(theta + noise * d) for d in ds]
        r_minus = [score(theta - noise * d) for d in ds]
        theta = reference.ars_update(theta, ds, r_plus, r_minus, step_size, top, version)
        if v2:
            for _ in range(2 * directions):
                moments.add(x)
        out.append((theta.copy(), moments.count, moments.mean(), moments.std()))
    return out


@pytest.mark.parametrize("version", VERSIONS)
def test_ars_optimizer_matches_the_reference(version):
    torch.manual_seed(3)
    v2 = version in ("v2", "v2t")
    model = UserNet(normalize=v2)
    g = torch.Generator().manual_seed(0)
    batches = []
    for shift in range(4):     # a new mini-batch every step, its distribution drifting
        x = torch.randn(48, 5, generator=g) * (2 + shift) + shift
        batches.append((x, x[:, 0] - 0.5 * x[:, 1] * x[:, 2]))
    settings = dict(step_size=0.05, noise=0.03, directions=6, top=3, version=version, seed=7)
    expected = optimizer_reference(model, batches, **settings)
    opt = ARS(model.parameters(), normalizer=model.norm if v2 else None, **settings)
    for it, ((x, y), (theta, count, mean, std)) in enumerate(zip(batches, expected)):
        opt.step(lambda x=x, y=y: nn.functional.mse_loss(model(x), y))
        got = np.concatenate([p.detach().double().numpy().ravel() for p in model.parameters()])
        np.testing.assert_allclose(got, theta, **THETA_TOL, err_msg=f"θ after step {it}")
        if v2:
            assert float(model.norm.count) == count
            np.testing.assert_allclose(model.norm.mean.numpy(), mean, **MOMENT_TOL)
            np.testing.assert_allclose(model.norm.std().numpy(), std, **MOMENT_TOL)
