"""Model compression (Han, Mao & Dally 2016, "Deep Compression") and the smaller ARS spaces it opens.

Random search pays per searched number: the variance of an ARS step grows with the dimension
d of the space, so shrinking d is what makes fine-tuning cheaper. Two compressions are here:

- **magnitude pruning**: the `fraction` of weights with the smallest |w| are set to zero, over
  all weight tensors at once (``scope = "global"``) or layer by layer (``"layer"``). Only weight
  tensors (dim >= 2: Linear and Conv kernels) are pruned; biases are few and stay dense, as in
  the paper. A mask, once dropped, never comes back (gradual pruning only shrinks masks).
- **weight sharing**: each weight tensor's surviving values are clustered by k-means (2^bits
  centroids, linear initialisation between min and max, which the paper found best because it
  keeps the rare large weights), and every weight becomes a pointer into its layer's codebook.

`CompressedSpace` is a `ParameterSpace` over the free numbers that remain: the surviving
entries of a pruned tensor, the codebook of a shared tensor, or a dense tensor whole. Which
tensors are searched is chosen by ``search``:

- ``"all"``: every free number of the model (surviving weights or codebooks, plus biases);
- ``"unpruned"``: only the surviving entries of the pruned weight tensors;
- ``"centroids"``: only the codebooks (a few hundred numbers for a whole network);
- a list of layer names (module names such as ``"1"`` or ``"net.3"``, or parameter names):
  the free numbers of those layers.

Tensors not searched are never written, so pruned weights stay exactly zero and shared weights
stay tied whatever the backend does: a shared tensor is always rewritten from its codebook.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable

import torch
from torch import nn

from .callbacks import Callback
from .config import ConfigError
from .spaces import ParameterSpace

SEARCH_MODES = ("all", "unpruned", "centroids")


def prunable(model: nn.Module) -> list[str]:
    """Names of the weight tensors that compression acts on (Linear/Conv kernels: dim >= 2)."""
    return [n for n, p in model.named_parameters() if p.dim() >= 2]


# ---------------------------------------------------------------------------------------------
# Pruning and weight sharing as plain functions


@torch.no_grad()
def magnitude_masks(weights: dict[str, torch.Tensor], fraction: float, scope: str = "global",
                    masks: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Boolean keep-masks dropping `fraction` of the weights (counted over all of them) by |w|.

    Exactly ``round(fraction · n)`` entries are dropped (ties broken by position), so the
    pruned fraction is what was asked. Entries already dropped by `masks` stay dropped.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"prune fraction must be in [0, 1], got {fraction}")
    if scope not in ("global", "layer"):
        raise ValueError(f"prune scope must be 'global' or 'layer', got {scope!r}")
    masks = masks or {}

    def scores(name, w):
        s = w.detach().abs().reshape(-1).float()
        if name in masks:  # dead entries rank below every live one (|w| >= 0)
            s = torch.where(masks[name].reshape(-1), s, torch.full_like(s, -1.0))
        return s

    def keep_top(s: torch.Tensor, keep: int) -> torch.Tensor:
        mask = torch.zeros(s.numel(), dtype=torch.bool, device=s.device)
        if keep > 0:
            mask[torch.topk(s, keep, sorted=False).indices] = True
        return mask

    out = {}
    if scope == "layer":
        for name, w in weights.items():
            keep = w.numel() - round(fraction * w.numel())
            out[name] = keep_top(scores(name, w), keep).view(w.shape)
        return out
    flat = torch.cat([scores(n, w) for n, w in weights.items()])
    keep = flat.numel() - round(fraction * flat.numel())
    mask = keep_top(flat, keep)
    for (name, w), part in zip(weights.items(), torch.split(mask, [w.numel() for w in weights.values()])):
        out[name] = part.view(w.shape)
    return out


@torch.no_grad()
def share_weights(weight: torch.Tensor, mask: torch.Tensor | None, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """k-means weight sharing of one tensor: (codebook (k,), indices shaped like `weight`).

    k = 2^bits centroids, initialised linearly between the smallest and largest surviving
    weight; pruned entries get index 0 (they stay zero through the mask).
    """
    from sklearn.cluster import KMeans

    if bits < 1:
        raise ValueError(f"share_bits must be >= 1, got {bits}")
    flat = weight.detach().reshape(-1)
    live = flat if mask is None else flat[mask.reshape(-1)]
    indices = torch.zeros(flat.numel(), dtype=torch.long, device=weight.device)
    if live.numel() == 0:
        return torch.zeros(1, dtype=weight.dtype, device=weight.device), indices.view(weight.shape)
    k = min(2 ** bits, live.numel())
    values = live.double().cpu().numpy().reshape(-1, 1)
    init = torch.linspace(float(live.min()), float(live.max()), k, dtype=torch.float64).numpy().reshape(-1, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # fewer distinct values than clusters: k-means still assigns them
        km = KMeans(n_clusters=k, init=init, n_init=1, max_iter=100, tol=1e-8, random_state=0).fit(values)
    codebook = torch.as_tensor(km.cluster_centers_.reshape(-1), dtype=weight.dtype, device=weight.device)
    labels = torch.as_tensor(km.labels_, dtype=torch.long, device=weight.device)
    if mask is None:
        indices = labels
    else:
        indices[mask.reshape(-1)] = labels
    return codebook, indices.view(weight.shape)


def pruning_schedule(iteration: int, final: float, iterations: int) -> float:
    """Gradual pruning (Zhu & Gupta 2017): s_t = s_f · (1 − (1 − t/T)^3), fast first, gentle last."""
    t = min(max(iteration / iterations, 0.0), 1.0) if iterations > 0 else 1.0
    return final * (1.0 - (1.0 - t) ** 3)


# ---------------------------------------------------------------------------------------------
# The search space over a compressed model


class _Segment:
    """One searched tensor: how its chunk of θ maps onto the model parameter."""

    __slots__ = ("name", "param", "kind", "index", "codebook", "cb_index", "mask", "size")

    def __init__(self, name, param, kind, index=None, codebook=None, cb_index=None, mask=None):
        self.name, self.param, self.kind = name, param, kind
        self.index, self.codebook, self.cb_index, self.mask = index, codebook, cb_index, mask
        self.size = {"dense": param.numel(), "masked": 0 if index is None else index.numel(),
                     "shared": 0 if codebook is None else codebook.numel()}[kind]


class CompressedSpace(ParameterSpace):
    """A `ParameterSpace` over the free numbers of a pruned and/or weight-shared model.

    The space owns the compression state (masks, codebooks, codebook indices) and may be
    re-compressed in place (`compress_`), which is how gradual pruning shrinks the space while
    training: whoever holds the space sees the new ``dim`` and ``sizes`` at the next iteration.
    """

    def __init__(self, model: nn.Module, search: str | list[str] = "all", scope: str = "global",
                 pending: bool = False):
        self.model = model
        self.params = dict(model.named_parameters())
        if not self.params:
            raise ValueError("the parameter space is empty: the model has no parameters")
        self.search = search
        self.scope = scope
        self.masks: dict[str, torch.Tensor] = {}
        self.codebooks: dict[str, torch.Tensor] = {}
        self.indices: dict[str, torch.Tensor] = {}
        self.fraction = 0.0
        self.bits = 0
        self.pending = pending   # compression still to come: "centroids"/"unpruned" search "all" until then
        self._validate_search()
        self._rebuild()

    # -- compression -----------------------------------------------------------------------------
    @torch.no_grad()
    def compress_(self, fraction: float = 0.0, bits: int = 0) -> None:
        """Prune to `fraction` (of all prunable weights) and, if `bits`, share weights; update the model."""
        names = prunable(self.model)
        if fraction > 0.0 or self.masks:
            weights = {n: self.params[n] for n in names}
            self.masks = magnitude_masks(weights, fraction, self.scope, self.masks)
            for n, m in self.masks.items():
                self.params[n].masked_fill_(~m, 0.0)
            self.fraction = fraction
        if bits:
            for n in names:
                cb, idx = share_weights(self.params[n], self.masks.get(n), bits)
                self.codebooks[n], self.indices[n] = cb, idx
                self._write_shared(n)
            self.bits = bits
        self._rebuild()

    def _write_shared(self, name: str) -> None:
        p, cb, idx = self.params[name], self.codebooks[name], self.indices[name]
        values = cb[idx]
        if name in self.masks:
            values = torch.where(self.masks[name], values, torch.zeros((), dtype=values.dtype, device=values.device))
        p.copy_(values)

    # -- which tensors are searched ------------------------------------------------------------
    def _validate_search(self) -> None:
        s = self.search
        if isinstance(s, str):
            if s not in SEARCH_MODES:
                raise ConfigError(f"compress.search = {s!r} is not allowed; allowed: "
                                  f"{', '.join(map(repr, SEARCH_MODES))} or a list of layer names")
            return
        modules = [n for n, _ in self.model.named_modules() if n]
        for layer in s:
            if not any(n == layer or n.startswith(layer + ".") for n in self.params):
                raise ConfigError(f"compress.search: layer {layer!r} has no parameters in this model; "
                                  f"layers: {', '.join(modules) or '(none)'}; parameters: {', '.join(self.params)}")

    def _selected(self) -> list[str]:
        s = self.search
        if isinstance(s, list):
            return [n for n in self.params if any(n == layer or n.startswith(layer + ".") for layer in s)]
        if s == "all" or (s == "centroids" and self.pending and not self.codebooks):
            return list(self.params)
        if s == "unpruned":
            if self.codebooks:
                raise ConfigError("compress.search = 'unpruned' searches each surviving weight on its own, "
                                  "which would untie shared weights; with compress.share_bits > 0 use "
                                  "'centroids', 'all' or a list of layers")
            if not self.masks:
                if self.pending:
                    return list(self.params)
                raise ConfigError("compress.search = 'unpruned' needs pruning: set compress.prune > 0")
            return [n for n in self.params if n in self.masks]
        if not self.codebooks:
            raise ConfigError("compress.search = 'centroids' needs weight sharing: set compress.share_bits > 0")
        return [n for n in self.params if n in self.codebooks]

    def _rebuild(self) -> None:
        segments = []
        for name in self._selected():
            p = self.params[name]
            if name in self.codebooks:
                segments.append(_Segment(name, p, "shared", codebook=self.codebooks[name],
                                         cb_index=self.indices[name].reshape(-1), mask=self.masks.get(name)))
            elif name in self.masks:
                segments.append(_Segment(name, p, "masked", index=self.masks[name].reshape(-1).nonzero().squeeze(1)))
            else:
                segments.append(_Segment(name, p, "dense"))
        if not segments:
            raise ConfigError("compress.search selects no parameters")
        self.segments = segments
        self.names = [s.name for s in segments]
        self.sizes = [s.size for s in segments]
        self.dim = sum(self.sizes)
        if self.dim == 0:
            raise ConfigError("the compressed search space is empty (everything was pruned)")

    # -- ParameterSpace surface ----------------------------------------------------------------
    @property
    def full_dim(self) -> int:
        return sum(p.numel() for p in self.params.values())

    @torch.no_grad()
    def vector(self) -> torch.Tensor:
        parts = []
        for s in self.segments:
            if s.kind == "dense":
                parts.append(s.param.detach().reshape(-1))
            elif s.kind == "masked":
                parts.append(s.param.detach().reshape(-1)[s.index])
            else:
                parts.append(s.codebook.clone())
        return torch.cat(parts)

    @torch.no_grad()
    def load_(self, theta: torch.Tensor) -> None:
        for s, chunk in zip(self.segments, self.split(theta), strict=True):
            self._set(s, chunk)

    @torch.no_grad()
    def add_(self, chunks: Iterable[torch.Tensor], alpha: float = 1.0) -> None:
        chunks = iter(chunks)
        for s in self.segments:
            chunk = next(chunks).to(s.param.dtype)   # one chunk alive at a time (see FullSpace.add_)
            if s.kind == "dense":
                s.param.add_(chunk.view_as(s.param), alpha=alpha)
            elif s.kind == "masked":
                s.param.view(-1).index_add_(0, s.index, chunk, alpha=alpha)
            else:
                s.codebook.add_(chunk, alpha=alpha)
                self._write_shared(s.name)
            del chunk

    def _set(self, s: _Segment, chunk: torch.Tensor) -> None:
        if s.kind == "dense":
            s.param.copy_(chunk.view_as(s.param))
        elif s.kind == "masked":
            s.param.view(-1).index_copy_(0, s.index, chunk.to(s.param.dtype))
        else:
            s.codebook.copy_(chunk)
            self._write_shared(s.name)

    def expand(self, thetas: torch.Tensor) -> dict[str, torch.Tensor]:
        """Only the searched tensors; `functional_call` takes the others from the model as they are."""
        batch = thetas.shape[:-1]
        flat = thetas.reshape(-1, self.dim)
        out = {}
        for s, chunk in zip(self.segments, torch.split(flat, self.sizes, dim=-1)):
            shape = s.param.shape
            if s.kind == "dense":
                full = chunk
            elif s.kind == "masked":
                full = chunk.new_zeros(chunk.shape[0], s.param.numel()).index_copy(1, s.index, chunk)
            else:
                full = chunk[:, s.cb_index]
                if s.mask is not None:
                    full = full * s.mask.reshape(1, -1).to(full.dtype)
            out[s.name] = full.reshape(*batch, *shape)
        return out

    # -- state (checkpointed with the job, exported by post-training) ---------------------------
    def state_dict(self) -> dict:
        return {"masks": dict(self.masks), "codebooks": {k: v.clone() for k, v in self.codebooks.items()},
                "indices": dict(self.indices), "fraction": self.fraction, "bits": self.bits}

    @torch.no_grad()
    def load_state_dict(self, state: dict) -> None:
        device = next(iter(self.params.values())).device
        self.masks = {k: v.to(device) for k, v in state.get("masks", {}).items()}
        self.codebooks = {k: v.to(device).clone() for k, v in state.get("codebooks", {}).items()}
        self.indices = {k: v.to(device).long() for k, v in state.get("indices", {}).items()}
        self.fraction = float(state.get("fraction", 0.0))
        self.bits = int(state.get("bits", 0))
        for n in self.codebooks:
            self._write_shared(n)
        for n, m in self.masks.items():
            if n not in self.codebooks:
                self.params[n].masked_fill_(~m, 0.0)
        self._rebuild()

    def summary(self) -> dict[str, float]:
        prunable_total = sum(self.params[n].numel() for n in prunable(self.model))
        alive = sum(int(m.sum()) for m in self.masks.values()) + sum(
            self.params[n].numel() for n in prunable(self.model) if n not in self.masks)
        return {"compress/search_dim": float(self.dim), "compress/full_dim": float(self.full_dim),
                "compress/pruned": 1.0 - alive / max(prunable_total, 1),
                "compress/codebook_values": float(sum(c.numel() for c in self.codebooks.values()))}


# ---------------------------------------------------------------------------------------------
# Config glue: the trainer calls build_compressed_space when [compress] is set


def build_compressed_space(config, model: nn.Module) -> CompressedSpace:
    c = config.compress
    if c.prune_schedule == "gradual" and c.prune_iterations < 1:
        raise ConfigError("compress.prune_iterations must be >= 1 with compress.prune_schedule = 'gradual'")
    if c.prune_schedule == "gradual" and config.population is not None:
        raise ConfigError("compress.prune_schedule = 'gradual' changes the search dimension while training, "
                          "which a [population] cannot follow; use prune_schedule = 'start'")
    if c.search == "unpruned" and c.share_bits:
        raise ConfigError("compress.search = 'unpruned' searches each surviving weight on its own, which would "
                          "untie shared weights; with compress.share_bits > 0 use 'centroids', 'all' or a list of layers")
    if c.search == "unpruned" and c.prune == 0:
        raise ConfigError("compress.search = 'unpruned' needs pruning: set compress.prune > 0")
    if c.search == "centroids" and not c.share_bits:
        raise ConfigError("compress.search = 'centroids' needs weight sharing: set compress.share_bits > 0")
    space = CompressedSpace(model, c.search, c.prune_scope, pending=True)
    if c.prune_schedule == "start":
        space.compress_(c.prune, c.share_bits)
        space.pending = False
        space._rebuild()
    return space


class GradualCompression(Callback):
    """Prunes on the schedule of `pruning_schedule` every `every` iterations up to `iterations`,
    then shares weights (if `bits`); the space shrinks in place, so the next iteration searches
    only what is left."""

    def __init__(self, fraction: float, iterations: int, every: int, bits: int = 0):
        self.fraction, self.iterations, self.every, self.bits = fraction, iterations, max(1, every), bits

    def on_iteration(self, trainer, iteration: int, metrics: dict[str, float]) -> None:
        space = trainer.space
        if iteration > self.iterations or not isinstance(space, CompressedSpace):
            return
        if iteration % self.every == 0 or iteration == self.iterations:
            last = iteration == self.iterations
            space.compress_(pruning_schedule(iteration, self.fraction, self.iterations), self.bits if last else 0)
            if last:
                space.pending = False
                space._rebuild()
            info = space.summary()
            metrics.update(info)
            if trainer.history:
                trainer.history[-1].update(info)


def compression_callbacks(config) -> list[Callback]:
    c = config.compress
    if c is None or c.prune_schedule != "gradual":
        return []
    every = c.prune_every or max(1, c.prune_iterations // 10)
    return [GradualCompression(c.prune, c.prune_iterations, every, c.share_bits)]


# ---------------------------------------------------------------------------------------------
# The compressed form of a model, as exported by post-training


def _index_dtype(k: int) -> torch.dtype:
    return torch.uint8 if k <= 256 else torch.int16 if k <= 32768 else torch.int32


def pack_mask(mask: torch.Tensor) -> torch.Tensor:
    """A boolean mask as bits (uint8, 8 entries a byte), as Deep Compression stores its sparsity."""
    import numpy as np

    return torch.from_numpy(np.packbits(mask.detach().cpu().reshape(-1).numpy()))


def unpack_mask(packed: torch.Tensor, shape) -> torch.Tensor:
    import numpy as np

    n = int(torch.Size(shape).numel())
    return torch.from_numpy(np.unpackbits(packed.numpy(), count=n).astype(bool)).view(*shape)


def compressed_form(space: CompressedSpace, state_dict: dict[str, torch.Tensor], prefix: str = "") -> dict:
    """The compact form of a compressed model: per compressed tensor a bit-packed mask, and either
    its codebook plus one small integer index per surviving weight (shared) or its surviving values
    (pruned only); every other entry of `state_dict` dense. ``decompress`` inverts it exactly.

    `prefix` is stripped from the space's parameter names (the V2 input-normalisation wrapper
    adds ``net.``), so names match `state_dict`, the plain state_dict of the user's model.
    """
    def key(n):
        return n[len(prefix):] if prefix and n.startswith(prefix) else n

    compressed = {key(n) for n in space.masks} | {key(n) for n in space.codebooks}
    masks, codebooks, indices, values = {}, {}, {}, {}
    for name in space.params:
        k = key(name)
        if k not in compressed:
            continue
        w = state_dict[k]
        mask = space.masks.get(name)
        live = torch.ones(w.numel(), dtype=torch.bool) if mask is None else mask.detach().cpu().reshape(-1)
        if mask is not None:
            masks[k] = pack_mask(mask)
        if name in space.codebooks:
            cb = space.codebooks[name].detach().cpu().clone()
            codebooks[k] = cb
            indices[k] = space.indices[name].detach().cpu().reshape(-1)[live].to(_index_dtype(cb.numel()))
        else:
            values[k] = w.detach().cpu().reshape(-1)[live].clone()
    dense = {k: v.detach().cpu().clone() for k, v in state_dict.items() if k not in compressed}
    return {"format": "arsearch-compressed", "masks": masks, "codebooks": codebooks, "indices": indices,
            "values": values, "dense": dense, "shapes": {n: list(state_dict[n].shape) for n in compressed},
            "dtypes": {n: str(state_dict[n].dtype) for n in compressed},
            "pruned_fraction": space.fraction, "share_bits": space.bits}


def decompress(form: dict) -> dict[str, torch.Tensor]:
    """The plain state_dict a compressed form stands for (bit-exact with the exported model)."""
    if not isinstance(form, dict) or form.get("format") != "arsearch-compressed":
        raise ValueError("not an arsearch compressed model (format != 'arsearch-compressed')")
    out = dict(form["dense"])
    for name, shape in form["shapes"].items():
        dtype = getattr(torch, form["dtypes"][name].removeprefix("torch."))
        n = int(torch.Size(shape).numel())
        live = unpack_mask(form["masks"][name], (n,)) if name in form["masks"] else torch.ones(n, dtype=torch.bool)
        w = torch.zeros(n, dtype=dtype)
        if name in form["codebooks"]:
            w[live] = form["codebooks"][name][form["indices"][name].long()].to(dtype)
        else:
            w[live] = form["values"][name]
        out[name] = w.view(shape)
    return out


def form_bytes(form_or_state: dict) -> int:
    """Bytes of tensor data in a state_dict or a compressed form (what the file mostly holds)."""
    total = 0
    for v in form_or_state.values():
        if isinstance(v, torch.Tensor):
            total += v.numel() * v.element_size()
        elif isinstance(v, dict):
            total += form_bytes(v)
    return total
