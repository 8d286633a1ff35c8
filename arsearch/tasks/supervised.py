"""Supervised learning: the score of a candidate is minus its loss on the iteration's mini-batch."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, vmap

from ..ars import normalizes_states
from ..fields import choice, listof, number
from ..models import build_model
from ..normalizer import RunningNorm
from .base import Task
from .data import load_split


def logits(out, model: str = "the model"):
    """The prediction tensor of a model's output: the tensor itself, or the `logits` entry of a
    dict-like output (Hugging Face models return a ModelOutput, a dict with `logits`)."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, dict):
        if "logits" in out and isinstance(out["logits"], torch.Tensor):
            return out["logits"]
        raise ValueError(f"task.model {model!r} returned a dict with keys {sorted(out)}; return a tensor, or a "
                         f"dict with a 'logits' tensor")
    raise ValueError(f"task.model {model!r} returned a {type(out).__name__}; return a tensor of shape "
                     f"(batch, outputs), or a dict with a 'logits' tensor")


class Normalized(nn.Module):
    """Input normalisation (ARS V2) in front of a network."""

    def __init__(self, norm: RunningNorm, net: nn.Module):
        super().__init__()
        self.norm, self.net = norm, net

    def forward(self, x):
        return self.net(self.norm(x))


def fused_mlp_forward(model: nn.Module, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor | None:
    """All P candidates of an MLP in one `baddbmm` per layer, or None for any other model.

    For a Sequential of Flatten/Linear/ReLU/Tanh (optionally behind V2's `Normalized`) this is the
    same arithmetic as `vmap(functional_call(...))`, without its extra copies: a fused bias add and
    in-place activations make it 2-3× faster on small MLPs, whose cost is memory traffic.
    """
    prefix = ""
    if isinstance(model, Normalized):
        x, model, prefix = model.norm(x), model.net, "net."
    if not isinstance(model, nn.Sequential):
        return None
    n = next(iter(params.values())).shape[0]
    h = None
    for name, layer in model.named_children():
        if isinstance(layer, nn.Flatten) and h is None:
            x = x.flatten(1)
        elif isinstance(layer, nn.Linear):
            w, b = params.get(f"{prefix}{name}.weight"), params.get(f"{prefix}{name}.bias")
            if w is None or (layer.bias is not None and b is None):
                return None       # a space that searches only some tensors: let functional_call fill in
            inp = h if h is not None else x.expand(n, *x.shape)
            h = torch.bmm(inp, w.transpose(1, 2)) if b is None else torch.baddbmm(b.unsqueeze(1), inp, w.transpose(1, 2))
        elif isinstance(layer, nn.ReLU) and h is not None:
            h.relu_()
        elif isinstance(layer, nn.Tanh) and h is not None:
            h.tanh_()
        else:
            return None
    return h


def _split(n: int, y: torch.Tensor, classification: bool, test_fraction: float, seed: int):
    from sklearn.model_selection import train_test_split

    idx = np.arange(n)
    n_test = math.ceil(n * test_fraction)
    if n_test < 1 or n - n_test < 1:
        raise ValueError(f"task.test_fraction = {test_fraction} of {n} examples leaves "
                         f"{n_test} for evaluation and {n - n_test} for training; both need at least one")
    try:
        return train_test_split(idx, test_size=test_fraction, random_state=seed,
                                stratify=y.numpy() if classification else None)
    except ValueError:  # a class too rare to stratify
        return train_test_split(idx, test_size=test_fraction, random_state=seed)


def _mlp_plan(model: nn.Module, space):
    """The layers of an MLP as ("linear", W, b, i_W, i_b) / ("relu",) / ("tanh",) steps (i: the
    tensor's position in the space, so in `directions.parts`, or None for no bias), with V2's
    normaliser (or None) and whether a Flatten comes first; None when the model or the space does
    not fit `shared_mlp_forward`."""
    names, params = getattr(space, "names", None), getattr(space, "params", None)
    if names is None or getattr(space, "model", None) is None or not isinstance(params, list) \
            or list(space.sizes) != [p.numel() for p in params]:
        return None          # θ is not the model's own tensors one for one (a compressed space)
    norm, prefix = None, ""
    if isinstance(model, Normalized):
        norm, model, prefix = model.norm, model.net, "net."
    if not isinstance(model, nn.Sequential):
        return None
    by_name = {name: (p, i) for i, (name, p) in enumerate(zip(names, params))}
    steps, flatten = [], False
    for name, layer in model.named_children():
        if isinstance(layer, nn.Flatten) and not steps:
            flatten = True
        elif isinstance(layer, nn.Linear):
            w, iw = by_name.get(f"{prefix}{name}.weight", (None, None))
            b, ib = by_name.get(f"{prefix}{name}.bias", (None, None))
            if w is None or w is not layer.weight or (layer.bias is not None and b is None):
                return None
            steps.append(("linear", w, b, iw, ib))
        elif isinstance(layer, (nn.ReLU, nn.Tanh)) and steps:
            steps.append(("relu" if isinstance(layer, nn.ReLU) else "tanh",))
        else:
            return None
    return (norm, flatten, steps) if steps else None


@torch.no_grad()
def shared_mlp_forward(model: nn.Module, space, directions, scale: float, x: torch.Tensor,
                       pairs: int = 0) -> torch.Tensor | None:
    """Outputs (2n, batch, out) of θ + ν·δ_k then θ − ν·δ_k for n `directions`, or None.

    For a Sequential of Flatten/Linear/ReLU/Tanh whose every Linear is in `space` (a `FullSpace`
    of the model, so θ is the model's own weights). `directions` is a `noise.Directions`: per
    weight either dense rows δW_k or low-rank factors A_k, B_k.

    - The first layer's input is the same mini-batch for every candidate, so x·Wᵀ (+ b) runs once
      on the batch, and a ± pair shares its correction: h = x·Wᵀ + b ± ν·(x·δW_kᵀ + δb_k), one
      GEMM per direction, not per candidate (half the plain forward's GEMMs for this layer); low
      rank: ±ν·(x·B_k)·A_kᵀ/√r.
    - Later layers see a different input per candidate. Dense: the 2n perturbed weights W ± ν·δW_k
      are formed for this layer only (2n·m·n numbers, against 2n·batch·m·n for its GEMM) and read
      by one `baddbmm`. Low rank: one GEMM h·Wᵀ shared by all 2n candidates plus the rank-r
      correction ±ν·(h·B_k)·A_kᵀ/√r (and ±ν·δb_k for a bias).

    `pairs` > 0 runs the candidates after the first layer's shared GEMM in groups of that many ±
    pairs, so that a group's activations stay in cache (the vectorized backend's automatic chunk).
    """
    plan = _mlp_plan(model, space)
    if plan is None:
        return None
    norm, flatten, steps = plan
    if norm is not None:
        x = norm(x)
    if flatten:
        x = x.flatten(1)
    n = len(directions)
    _, w, b, _, _ = steps[0]
    base = x @ w.T if b is None else torch.addmm(b, x, w.T)     # (B, m): once for every candidate
    pairs = n if pairs <= 0 else min(pairs, n)
    out, workspace = None, {}
    for start in range(0, n, pairs):
        part = directions if pairs == n else directions.take(slice(start, start + pairs))
        h = _pairs_forward(steps, part, scale, x, base, workspace)
        if pairs == n:
            return h
        if out is None:
            out = torch.empty((2 * n, *h.shape[1:]), dtype=h.dtype, device=h.device)
        p = len(h) // 2
        out[start:start + p] = h[:p]
        out[n + start:n + start + p] = h[p:]
    return out


def _pairs_forward(steps, directions, scale, x, base, workspace: dict) -> torch.Tensor:
    """`shared_mlp_forward` for one group of ± pairs, the first layer's shared product `base` given.

    Every intermediate goes to a buffer of `workspace` (by layer and shape) that the next group
    reuses, so the groups of one iteration allocate (and page in) their activations once."""

    def buffer(key, shape, like):
        shape = tuple(shape)
        held = workspace.get(key)
        if held is None or held.shape != shape:
            held = workspace[key] = torch.empty(shape, dtype=like.dtype, device=like.device)
        return held

    n = len(directions)
    h = None
    for i, step in enumerate(steps):
        if step[0] == "relu":
            h.relu_()
            continue
        if step[0] == "tanh":
            h.tanh_()
            continue
        _, w, b, iw, ib = step
        dw, db = directions.parts[iw], None if ib is None else directions.parts[ib]
        low_rank = isinstance(dw, tuple)
        if h is None:                                               # input shared by all candidates
            if low_rank:
                a_k, b_k, root = dw
                xd, right, alpha = torch.matmul(x, b_k), a_k.transpose(1, 2), scale * root      # (n, B, r)
            else:
                xd, right, alpha = x.expand(n, *x.shape), dw.view(n, *w.shape).transpose(1, 2), scale
            corr = buffer("corr", (n, *base.shape), base)                                   # (n, B, m)
            if db is None:
                torch.bmm(xd, right, out=corr).mul_(alpha)
            else:
                torch.baddbmm(db.unsqueeze(1), xd, right, beta=scale, alpha=alpha, out=corr)
            h = buffer(i, (2 * n, *base.shape), base)
            torch.add(base, corr, out=h[:n])
            torch.sub(base, corr, out=h[n:])
        elif not low_rank:                                          # the layer's 2n weights, formed
            dwv = dw.view(n, *w.shape)
            ws = buffer(("w", i), (2 * n, *w.shape), w)
            torch.add(w, dwv, alpha=scale, out=ws[:n])
            torch.sub(w, dwv, alpha=scale, out=ws[n:])
            # a narrow layer (fewer outputs than batch rows, such as the 10 logits) as W·hᵀ, (m, B) per
            # candidate: MKL ran the (B, m) orientation of the 256→10 layer at half the speed
            narrow = w.shape[0] < h.shape[1]
            out = buffer(i, (2 * n, w.shape[0], h.shape[1]) if narrow else (2 * n, h.shape[1], w.shape[0]), h)
            left, right = (ws, h.transpose(1, 2)) if narrow else (h, ws.transpose(1, 2))
            if b is None:
                torch.bmm(left, right, out=out)
            else:
                bs = buffer(("b", i), (2 * n, *b.shape), b)
                torch.add(b, db, alpha=scale, out=bs[:n])
                torch.sub(b, db, alpha=scale, out=bs[n:])
                torch.baddbmm(bs.unsqueeze(2) if narrow else bs.unsqueeze(1), left, right, out=out)
            h = out.transpose(1, 2) if narrow else out
        else:
            a_k, b_k, root = dw
            coef = scale * root                                     # ν/√r
            p_, rows, width = h.shape
            flat = h.reshape(p_ * rows, width)
            if w.shape[0] < rows:        # narrow (see the dense case): W·hᵀ, one (m, 2n·B) GEMM, read as (2n, B, m)
                out_t = (w @ flat.T if b is None else torch.addmm(b.unsqueeze(1), w, flat.T)).view(-1, p_, rows)
                out = out_t.permute(1, 2, 0)
                for sign, h_half, half_t in ((1.0, h[:n], out_t[:, :n]), (-1.0, h[n:], out_t[:, n:])):
                    low = torch.bmm(b_k.transpose(1, 2), h_half.transpose(1, 2))             # (n, r, B)
                    half_t.permute(1, 0, 2).baddbmm_(a_k, low, alpha=sign * coef)
                    if db is not None:
                        half_t.add_(db.T.unsqueeze(2), alpha=sign * scale)
            else:
                out = (flat @ w.T if b is None else torch.addmm(b, flat, w.T)).view(p_, rows, -1)  # the shared GEMM
                for sign, h_half, out_half in ((1.0, h[:n], out[:n]), (-1.0, h[n:], out[n:])):
                    out_half.baddbmm_(torch.bmm(h_half, b_k), a_k.transpose(1, 2), alpha=sign * coef)
                    if db is not None:
                        out_half.add_(db.unsqueeze(1), alpha=sign * scale)
            h = out
    return h


class ScratchModel:
    """A private copy of a model that scores one candidate per plain call.

    `functional_call` with a candidate's tensors ran the CNN 15-20% slower than a plain call of the
    model (reports/throughput.md); copying the candidate's tensors into this copy costs a read of
    them, and the copy runs at the plain call's speed. The model's other tensors (those the space
    does not search, buffers such as V2's statistics) are copied over when they change (their
    version counter), so the copy always computes what `functional_call(model, params)` would. The
    model itself is never written, which hogwild's shared θ needs.
    """

    def __init__(self, model: nn.Module):
        self.source = model
        self.model = copy.deepcopy(model)
        self.seen: dict[str, tuple[int, int]] = {}
        self.own = {**dict(self.model.named_parameters()), **dict(self.model.named_buffers())}
        # where each of the source's tensors sits (its module's parameter or buffer dict, and its key),
        # found once: walking the module tree per call cost 0.27 ms, 8% of a digits CNN candidate's
        # call. Read per call, so a tensor registered anew (hogwild's workers give V2's buffers private
        # clones) is still the one copied
        self.slots: dict[str, tuple[dict, str]] = {}
        for name in self.own:
            prefix, _, leaf = name.rpartition(".")
            module = model.get_submodule(prefix)
            self.slots[name] = (module._parameters if leaf in module._parameters else module._buffers, leaf)

    @torch.no_grad()
    def __call__(self, params: dict[str, torch.Tensor], x: torch.Tensor):
        for name, tensor in self.own.items():
            if name in params:
                tensor.copy_(params[name][0])
                self.seen.pop(name, None)
            else:
                table, key = self.slots[name]
                src = table[key]
                key = (src._version, src.data_ptr())
                if self.seen.get(name) != key:
                    tensor.copy_(src)
                    self.seen[name] = key
        return self.model(x)


class UniformSampler:
    """Mini-batches drawn uniformly without replacement, a pure function of (seed, iteration)."""

    def __init__(self, n: int, batch_size: int, seed: int):
        self.n, self.batch_size, self.seed = n, batch_size, seed

    def sample(self, iteration: int, progress: float = 0.0):
        rng = np.random.default_rng([self.seed, iteration])
        idx = rng.choice(self.n, size=self.batch_size, replace=self.batch_size > self.n)
        return torch.as_tensor(idx), None

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


@dataclass
class Batch:
    x: torch.Tensor
    y: torch.Tensor
    weights: torch.Tensor | None   # importance weights (prioritised sampling), else None
    index: torch.Tensor            # positions in the training set


@dataclass
class SupervisedConfig:
    """``[task]`` keys of ``kind = "supervised"``."""

    dataset: str = "digits"          # digits | breast_cancer | regression | "package.module:function"
    model: str = "mlp"               # mlp | cnn | "package.module:function"
    hidden: list[int] = listof([64])
    activation: str = choice("relu", "relu", "tanh")
    channels: list[int] = listof([8, 16])
    batch_size: int = number(256, 1)
    test_fraction: float = number(0.25, 0.0, 1.0, low_open=True)   # < 1: `SupervisedTask.check`
    test_dataset: str = ""           # "package.module:function" returning the test data (x, y) or a Dataset


CLASSIFICATION = ("digits", "breast_cancer")     # the built-in datasets with classes (accuracy)


class SupervisedTask(Task):
    name = "supervised"
    Config = SupervisedConfig
    reads_tables = ("sampling",)
    resume_keys = ("dataset", "model", "hidden", "channels", "activation")
    eval_metrics = ("loss", "accuracy")

    @classmethod
    def check(cls, config) -> None:
        if config.task.test_fraction >= 1.0:
            raise ValueError(f"task.test_fraction = {config.task.test_fraction} leaves no training data; "
                             f"allowed: > 0 and < 1")
        for key in ("hidden", "channels"):
            bad = [n for n in getattr(config.task, key) if n < 1]
            if bad:
                raise ValueError(f"task.{key} = {getattr(config.task, key)}: every layer needs at least one unit, "
                                 f"got {bad[0]}")

    @classmethod
    def unused_keys(cls, config) -> tuple[str, ...]:
        t = config.task
        model = config.model.factory if config.model is not None and config.model.factory else t.model
        unused = {"mlp": ("channels",), "cnn": ("hidden",)}.get(model, ())   # a user factory may take any
        # the test data comes from that function, not a split
        return (*unused, "test_fraction" if t.test_dataset else "test_dataset")

    @classmethod
    def objective(cls, config) -> tuple[str, str]:
        # accuracy where the built-in data has classes; a user dataset may be a regression: its loss
        return ("eval/accuracy", "maximize") if config.task.dataset in CLASSIFICATION else ("eval/loss", "minimize")

    @classmethod
    def spend_per_iteration(cls, config, spend: str) -> float:
        return float(config.task.batch_size) if config.sampling is not None and spend != "seconds" else 0.0

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, classification: bool,
                 batch_size: int = 256, test_fraction: float = 0.25, seed: int = 0, normalize: bool = False,
                 device: str | torch.device = "cpu", test: tuple[torch.Tensor, torch.Tensor] | None = None,
                 model_name: str = "model"):
        super().__init__()
        self.device = torch.device(device)
        self.classification = classification
        self.model_name = model_name
        if test is None:
            train_idx, test_idx = _split(len(x), y, classification, test_fraction, seed)
            x_train, y_train, x_test, y_test = x[train_idx], y[train_idx], x[test_idx], y[test_idx]
        else:       # the user's own split, used as given
            (x_train, y_train), (x_test, y_test) = (x, y), test
        self.x_train, self.y_train = x_train.to(self.device), y_train.to(self.device)
        self.x_test, self.y_test = x_test.to(self.device), y_test.to(self.device)
        if normalize:
            self.normalizer = RunningNorm(tuple(x.shape[1:]))
            model = Normalized(self.normalizer, model)
        self.model = model.to(self.device)
        self.sampler = UniformSampler(len(self.x_train), batch_size, seed)
        self.metric = "accuracy" if classification else "loss"
        self.eval_metrics = ("loss", "accuracy") if classification else ("loss",)
        self.metric_direction = "maximize" if classification else "minimize"
        self.scratch: ScratchModel | None = None        # built on the first one-candidate call
        self._check_output()

    def _check_output(self) -> None:
        """One forward on two examples now, so that a model returning the wrong thing fails here, by name."""
        with torch.no_grad():
            try:
                out = logits(self.model(self.x_train[:2]), self.model_name)
            except ValueError:
                raise
            except Exception as e:                       # noqa: BLE001 - the user's forward, whatever it raises
                raise ValueError(f"task.model {self.model_name!r} fails on inputs of shape "
                                 f"{tuple(self.x_train.shape[1:])}: {type(e).__name__}: {e}") from None
        want = int(max(self.y_train.max(), self.y_test.max())) + 1 if self.classification else 1
        fits = (out.ndim == 2 and out.shape[0] == 2 and out.shape[-1] >= want) if self.classification else \
            ((out.ndim == 1 and out.shape[0] == 2) or (out.ndim == 2 and out.shape == (2, 1)))
        if not fits:
            kind = f"{want} class scores" if self.classification else "one regression output"
            batch = "" if out.ndim and out.shape[0] == 2 else " (its first dimension must be the batch's)"
            raise ValueError(f"task.model {self.model_name!r} returns shape {tuple(out.shape)} for a batch of 2; "
                             f"expected (2, {want}): {kind} per example{batch}")

    @classmethod
    def from_config(cls, config, device=None) -> SupervisedTask:
        t = config.task
        (x, y), test, classification = load_split(t.dataset, t.test_dataset)
        output_dim = int(max(y.max(), test[1].max() if test is not None else 0)) + 1 if classification else 1
        name = config.model.factory if config.model is not None and config.model.factory else t.model
        model = build_model(name, input_shape=tuple(x.shape[1:]), output_dim=output_dim, hidden=t.hidden,
                            channels=t.channels, activation=t.activation)
        task = cls(model, x, y, classification=classification, batch_size=t.batch_size,
                   test_fraction=t.test_fraction, seed=config.seed, normalize=normalizes_states(config.ars.version),
                   device=device or "cpu", test=test, model_name=name)
        if config.sampling is not None:   # prioritised mini-batches
            from .prioritized import PrioritizedSampler

            task.sampler = PrioritizedSampler(len(task.x_train), t.batch_size, config.seed, alpha=config.sampling.alpha,
                                              beta=config.sampling.beta)
        return task

    # -- losses ----------------------------------------------------------------------------------
    def per_example_loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Loss per example; `out` may carry leading candidate dimensions."""
        if self.classification:
            # log-sum-exp minus the target's logit: F.cross_entropy(reduction="none") computes the
            # same, but took 32 ms instead of 1 ms on 64×256 candidates' logits on this CPU
            target = out.gather(-1, y.expand(*out.shape[:-1]).unsqueeze(-1)).squeeze(-1)
            return torch.logsumexp(out, -1) - target
        return (out.reshape(*out.shape[:-1]) if out.shape[-1] == 1 else out).sub(y).pow(2)

    def _reduce(self, losses: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
        return losses.mean(-1) if weights is None else (losses * weights).mean(-1)

    # -- Task interface --------------------------------------------------------------------------
    def batch(self, iteration: int) -> Batch:
        idx, weights = self.sampler.sample(iteration, self.progress)
        idx = idx.to(self.device)
        x = self.x_train[idx]
        self.record_states(x)
        return Batch(x, self.y_train[idx], None if weights is None else weights.to(self.device), idx)

    @torch.no_grad()
    def score(self, batch: Batch, index: int = 0) -> float:
        self.count("forward_examples", len(batch.x))
        out = logits(self.model(batch.x), self.model_name)
        return -float(self._reduce(self.per_example_loss(out, batch.y), batch.weights))

    def _candidate_logits(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """Outputs (P, batch, classes) of the P candidates in `params` (leading P dimension)."""
        out = fused_mlp_forward(self.model, params, x)
        if out is None and next(iter(params.values())).shape[0] == 1:
            # one candidate per call (the automatic chunk of a model whose activations fill the cache,
            # such as the CNN): a plain call, as fast as the sequential backend's; vmap would batch
            # convolutions into grouped ones, which ran 1.5× slower on this CPU
            if self.scratch is None or self.scratch.source is not self.model:
                self.scratch = ScratchModel(self.model)
            out = logits(self.scratch(params, x), self.model_name).unsqueeze(0)
        elif out is None:   # any other model: the generic batched call
            out = vmap(lambda p: logits(functional_call(self.model, p, (x,)), self.model_name))(params)
        return out

    @torch.no_grad()
    def score_params(self, params: dict[str, torch.Tensor], batch: Batch) -> torch.Tensor:
        n_candidates = next(iter(params.values())).shape[0]
        self.count("forward_examples", n_candidates * len(batch.x))
        out = self._candidate_logits(params, batch.x)
        return -self._reduce(self.per_example_loss(out, batch.y), batch.weights)

    @torch.no_grad()
    def score_one_by_one(self, params: dict[str, torch.Tensor], batch: Batch) -> torch.Tensor:
        """One call per candidate (every candidate reads the whole mini-batch), and one loss for all:
        the loss of 64 candidates' (256, 10) logits took 10 ms in 64 calls, 0.5 ms in one."""
        n_candidates = next(iter(params.values())).shape[0]
        self.count("forward_examples", n_candidates * len(batch.x))
        out = torch.cat([self._candidate_logits({name: p[k:k + 1] for name, p in params.items()}, batch.x)
                         for k in range(n_candidates)])
        return -self._reduce(self.per_example_loss(out, batch.y), batch.weights)

    @torch.no_grad()
    def score_directions(self, space, directions, scale: float, batch: Batch, pairs: int = 0) -> torch.Tensor | None:
        out = shared_mlp_forward(self.model, space, directions, scale, batch.x, pairs)
        if out is None:
            return None
        self.count("forward_examples", out.shape[0] * len(batch.x))
        return -self._reduce(self.per_example_loss(out, batch.y), batch.weights)

    @torch.no_grad()
    def candidate_bytes(self, batch: Batch) -> int:
        """Bytes of every module output in one plain forward of the batch (forward hooks)."""
        total = [0]

        def hook(module, args, out):
            if isinstance(out, torch.Tensor):
                total[0] += out.numel() * out.element_size()

        leaves = [m for m in self.model.modules() if not list(m.children())]
        handles = [m.register_forward_hook(hook) for m in leaves]
        try:
            self.model(batch.x)
        finally:
            for handle in handles:
                handle.remove()
        return total[0]

    @torch.no_grad()
    def after_step(self, batch: Batch) -> None:
        """Feed the batch's losses under the updated model to a sampler that keeps priorities."""
        if hasattr(self.sampler, "update"):
            self.count("forward_examples", len(batch.x))
            self.sampler.update(batch.index, self.per_example_loss(logits(self.model(batch.x), self.model_name), batch.y))

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        self.count("eval_forward_examples", len(self.x_test))   # counted apart from training spend
        out = logits(self.model(self.x_test), self.model_name)
        metrics = {"loss": float(self.per_example_loss(out, self.y_test).mean())}
        if self.classification:
            metrics["accuracy"] = float((out.argmax(-1) == self.y_test).float().mean())
        return metrics

    def state_dict(self) -> dict:
        return {**super().state_dict(), "sampler": self.sampler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.sampler.load_state_dict(state.get("sampler", {}))
