"""A plain NumPy ARS (Mania, Guy & Recht 2018, Algorithm 2), written from the paper, not from arsearch.

It shares no code with the library: the update rule, the V2 state statistics and normalisation,
the mini-batch sampling, the networks' forward passes and the RL rollouts are all written out
again here in float64 NumPy. What it takes from the library's documented contract, so that both
draw the same random numbers, is only

- the direction seeds of an iteration: ``SeedSequence([seed, stream, iteration]).generate_state(N)``;
- a direction: a ``torch.Generator`` seeded with its seed, one ``randn`` chunk per parameter tensor in
  registration order (or, for table noise, a slice of one seeded table at ``seed % (size - d)``);
- a mini-batch: ``default_rng([seed, iteration]).choice(n_train, batch_size, replace=False)`` over the
  scikit-learn stratified split; RL reset seeds: the direction seeds of stream 1, shared by a ± pair.

A bug in the shared core (update rule, normaliser, rollout code) therefore shows up as a
difference between this and every backend, instead of cancelling out between backends.
"""

from __future__ import annotations

import numpy as np
import torch

EPS = 1e-8   # a state dimension whose std is below this is left unscaled (std taken as 1)


# -- the random numbers both sides draw ------------------------------------------------------------

def seeds(seed: int, iteration: int, n: int, stream: int = 0) -> list[int]:
    return [int(s) for s in np.random.SeedSequence([seed, stream, iteration]).generate_state(n)]


def direction(seed: int, sizes: list[int], table: np.ndarray | None = None, device: str = "cpu") -> np.ndarray:
    """δ for one seed, as float64 (drawn in float32, as the library draws it for a float32 model;
    on a CUDA model from that device's generator, whose stream differs from the CPU's)."""
    if table is not None:
        offset = seed % (len(table) - sum(sizes))
        return table[offset:offset + sum(sizes)].astype(np.float64)
    gen = torch.Generator(device=device).manual_seed(seed)
    return np.concatenate([torch.randn(n, generator=gen, device=device).double().cpu().numpy() for n in sizes])


def noise_table(size: int, seed: int = 12345) -> np.ndarray:
    return torch.randn(size, generator=torch.Generator().manual_seed(seed)).numpy()


# -- the update rule -------------------------------------------------------------------------------

def ars_update(theta, deltas, r_plus, r_minus, step_size: float, top: int, version: str) -> np.ndarray:
    """θ + α/(b·σ_R) Σ_{k in top b} (r+_k − r−_k) δ_k; V1/V2 use all N directions."""
    r_plus, r_minus = np.asarray(r_plus, np.float64), np.asarray(r_minus, np.float64)
    n = len(r_plus)
    b = min(top, n) if version in ("v1t", "v2t") else n
    order = np.argsort(-np.maximum(r_plus, r_minus), kind="stable")[:b]
    sigma = np.concatenate([r_plus[order], r_minus[order]]).std()
    if sigma == 0:
        return theta.copy()
    step = sum((r_plus[k] - r_minus[k]) * deltas[k] for k in order)
    return theta + step_size / (b * sigma) * step


class StateMoments:
    """Every state seen so far, kept whole: mean and std are NumPy's, over all of them."""

    def __init__(self, dim: int):
        self.states = np.zeros((0, dim))

    def add(self, states) -> None:
        self.states = np.concatenate([self.states, np.asarray(states, np.float64).reshape(len(states), -1)])

    @property
    def count(self) -> int:
        return len(self.states)

    def mean(self) -> np.ndarray:
        return self.states.mean(0) if self.count else np.zeros(self.states.shape[1])

    def std(self) -> np.ndarray:
        if self.count < 2:
            return np.ones(self.states.shape[1])
        std = self.states.std(0)
        return np.where(std < EPS, 1.0, std)


def normalise(x, mean, std):
    return (x - mean) / std


# -- networks ----------------------------------------------------------------------------------------

class Layout:
    """θ cut into named tensors, in the model's registration order."""

    def __init__(self, model: torch.nn.Module):
        self.names = [n for n, _ in model.named_parameters()]
        self.shapes = [tuple(p.shape) for _, p in model.named_parameters()]
        self.sizes = [int(np.prod(s)) for s in self.shapes]

    def theta(self, model) -> np.ndarray:
        return np.concatenate([p.detach().double().cpu().numpy().ravel() for p in model.parameters()])

    def unpack(self, theta) -> dict[str, np.ndarray]:
        out, at = {}, 0
        for name, shape, size in zip(self.names, self.shapes, self.sizes):
            out[name] = theta[at:at + size].reshape(shape)
            at += size
        return out


def mlp_forward(weights: list[tuple[np.ndarray, np.ndarray | None]], x, activation: str) -> np.ndarray:
    for i, (w, b) in enumerate(weights):
        x = x @ w.T
        if b is not None:
            x = x + b
        if i < len(weights) - 1:
            x = np.maximum(x, 0.0) if activation == "relu" else np.tanh(x)
    return x


def layers_of(params: dict[str, np.ndarray]) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """(weight, bias) pairs of the Linear layers, in order, from a {name: array} dict."""
    weights = [n for n in params if n.endswith("weight")]
    return [(params[n], params.get(n[:-len("weight")] + "bias")) for n in weights]


def cross_entropy(logits, y) -> float:
    z = logits - logits.max(1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    return float(-logp[np.arange(len(y)), y].mean())


# -- supervised ARS on a classification data set (what Trainer does for task.kind = "supervised") -----

def supervised_data(dataset: str, seed: int, test_fraction: float = 0.25):
    from sklearn import datasets
    from sklearn.model_selection import train_test_split

    assert dataset == "digits", "the reference knows the digits data set"
    x, y = datasets.load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32).astype(np.float64)   # the library holds the data in float32
    train, _ = train_test_split(np.arange(len(x)), test_size=test_fraction, random_state=seed, stratify=y)
    return x[train], y[train]


def population_fitness(config) -> float:
    """β of a population's fitness f ← β·f + (1 − β)·(mean of the 2N scores); 0 = the latest mean.

    Configs that predate `population.fitness` rank by the latest mean; "ema" (with `fitness_ema`)
    averages; "eval" is not modelled here.
    """
    pc = getattr(config, "population", None)
    mode = getattr(pc, "fitness", "last") if pc is not None else "last"
    assert mode in ("last", "ema"), f"the reference does not model population.fitness = {mode!r}"
    return float(getattr(pc, "fitness_ema", 0.0)) if mode == "ema" else 0.0


def run_supervised(config, model, iterations: int | None = None, learners: int = 1):
    """Trajectory of a supervised job: per iteration, every learner's θ and fitness (the mean score
    of its 2N candidates, or its moving average), and the V2 moments. `model` is the job's model at
    iteration 0 (its parameter layout and start θ)."""
    a, t = config.ars, config.task
    x_train, y_train = supervised_data(t.dataset, config.seed, t.test_fraction)
    layout = Layout(model)
    thetas = [layout.theta(model) for _ in range(learners)]
    table = noise_table(a.table_size) if a.noise_source == "table" else None
    device = str(next(model.parameters()).device)
    v2 = a.version in ("v2", "v2t")
    moments = StateMoments(x_train.shape[1])
    beta = population_fitness(config)
    fitness = [0.0] * learners
    trajectory = []
    for it in range(iterations if iterations is not None else a.iterations):
        idx = np.random.default_rng([config.seed, it]).choice(len(x_train), size=t.batch_size, replace=False)
        x, y = x_train[idx], y_train[idx]
        if v2:   # frozen for the whole iteration: the statistics of the earlier iterations' batches
            x = normalise(x, moments.mean(), moments.std())
            moments.add(x_train[idx])

        def score(theta, x=x, y=y):
            return -cross_entropy(mlp_forward(layers_of(layout.unpack(theta)), x, t.activation), y)

        for k in range(learners):
            ds = [direction(s, layout.sizes, table, device) for s in seeds(config.seed, it, a.directions, stream=k)]
            r_plus = [score(thetas[k] + a.noise * d) for d in ds]
            r_minus = [score(thetas[k] - a.noise * d) for d in ds]
            thetas[k] = ars_update(thetas[k], ds, r_plus, r_minus, a.step_size, a.top, a.version)
            mean = float(np.mean(r_plus + r_minus))
            fitness[k] = mean if it == 0 else beta * fitness[k] + (1 - beta) * mean
        trajectory.append({"thetas": [th.copy() for th in thetas], "fitness": list(fitness),
                           "mean": moments.mean(), "std": moments.std(),
                           "count": moments.count})
    return trajectory


# -- RL: a plain Gymnasium loop with the paper's linear policy (or a tanh MLP) ------------------------

def policy_action(params: dict[str, np.ndarray], obs, mean, std, space):
    """a = π(s): normalise (V2), Linear/tanh layers, then argmax (Discrete) or clip to the Box."""
    import gymnasium as gym

    x = (obs - mean) / std if mean is not None else obs
    x = mlp_forward(layers_of(params), x[None, :], "tanh")[0]
    if isinstance(space, gym.spaces.Discrete):
        return int(np.argmax(x))
    return np.clip(x, space.low, space.high)


def rollout(env, params, reset_seed: int, horizon: int, mean=None, std=None, shift: float = 0.0):
    """(return − shift per step, the states the policy acted on)."""
    obs, _ = env.reset(seed=int(reset_seed))
    total, states = 0.0, []
    for _ in range(horizon):
        obs = np.asarray(obs, np.float64)
        states.append(obs)
        obs, reward, terminated, truncated, _ = env.step(policy_action(params, obs, mean, std, env.action_space))
        total += float(reward) - shift
        if terminated or truncated:
            break
    return total, states


def run_rl(config, model, iterations: int | None = None):
    """Trajectory of an RL job: per iteration θ, the mean training return, and the V2 moments."""
    import gymnasium as gym

    a, t = config.ars, config.task
    env = gym.make(t.env)
    layout = Layout(model)
    theta = layout.theta(model)
    table = noise_table(a.table_size) if a.noise_source == "table" else None
    v2 = a.version in ("v2", "v2t")
    moments = StateMoments(env.observation_space.shape[0])
    trajectory = []
    for it in range(iterations if iterations is not None else a.iterations):
        mean, std = (moments.mean(), moments.std()) if v2 else (None, None)
        reset = seeds(config.seed, it, a.directions, stream=1)
        ds = [direction(s, layout.sizes, table) for s in seeds(config.seed, it, a.directions)]
        returns, seen = {+1: [], -1: []}, []
        for sign in (+1, -1):
            for k, d in enumerate(ds):
                ret, states = rollout(env, layout.unpack(theta + sign * a.noise * d), reset[k], t.horizon,
                                      mean, std, t.shift)
                returns[sign].append(ret)
                seen += states
        theta = ars_update(theta, ds, returns[+1], returns[-1], a.step_size, a.top, a.version)
        if v2:   # merged only after the step
            moments.add(np.array(seen))
        trajectory.append({"thetas": [theta.copy()], "fitness": [float(np.mean(returns[+1] + returns[-1]))],
                           "mean": moments.mean(), "std": moments.std(), "count": moments.count})
    env.close()
    return trajectory
