"""Parameter spaces: a flat vector θ ∈ R^d mapped onto (some of) a model's parameters.

Every space offers the same small surface, which is all the ARS core and the backends use:

- ``dim`` and ``sizes``: d, and the chunk sizes directions are drawn in (``sum(sizes) == dim``);
  `FullSpace` also has ``shapes`` (each chunk's tensor shape), which low-rank noise needs;
- ``vector()``: θ read from the model; ``load_(θ)``: θ written into the model;
- ``add_(chunks, alpha)``: θ += alpha·v in place, with v given chunk by chunk (so the
  memory-light path never holds a full d-vector);
- ``expand(thetas)``: a batch of θ (P, d) as full parameter tensors with a leading P dimension,
  ready for ``torch.func.functional_call`` under ``vmap``.

`FullSpace` searches every parameter. Compression (`arsearch.compress`) adds masked and shared
spaces with the same surface.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


class ParameterSpace:
    """Base class. Subclasses set ``self.dim`` and ``self.sizes`` and implement the methods."""

    model: nn.Module
    dim: int
    sizes: list[int]

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def vector(self) -> torch.Tensor:
        raise NotImplementedError

    def load_(self, theta: torch.Tensor) -> None:
        raise NotImplementedError

    def add_(self, chunks: Iterable[torch.Tensor], alpha: float = 1.0) -> None:
        raise NotImplementedError

    def expand(self, thetas: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def split(self, theta: torch.Tensor) -> list[torch.Tensor]:
        """θ (..., d) cut into its chunks (views)."""
        return list(torch.split(theta, self.sizes, dim=-1))


class FullSpace(ParameterSpace):
    """All parameters of a model (or an explicit list of named tensors), in registration order."""

    def __init__(self, model: nn.Module | None = None, named_params: list[tuple[str, torch.Tensor]] | None = None):
        if named_params is None:
            if model is None:
                raise ValueError("FullSpace needs a model or a list of named parameters")
            named_params = list(model.named_parameters())
        if not named_params:
            raise ValueError("the parameter space is empty: the model has no parameters")
        self.model = model
        self.names = [n for n, _ in named_params]
        self.params = [p for _, p in named_params]
        self.sizes = [p.numel() for p in self.params]
        self.shapes = [tuple(p.shape) for p in self.params]   # what low-rank noise (ars.noise_rank) factors
        self.dim = sum(self.sizes)

    @property
    def device(self):
        return self.params[0].device

    @property
    def dtype(self):
        return self.params[0].dtype

    @torch.no_grad()
    def vector(self) -> torch.Tensor:
        return torch.cat([p.detach().reshape(-1) for p in self.params])

    @torch.no_grad()
    def load_(self, theta: torch.Tensor) -> None:
        for p, chunk in zip(self.params, self.split(theta)):
            p.copy_(chunk.view_as(p))

    @torch.no_grad()
    def add_(self, chunks: Iterable[torch.Tensor], alpha: float = 1.0) -> None:
        chunks = iter(chunks)
        for p in self.params:
            chunk = next(chunks)
            p.add_(chunk.view_as(p), alpha=alpha)
            del chunk   # free it before the next one is drawn: one chunk alive at a time, not two

    def expand(self, thetas: torch.Tensor) -> dict[str, torch.Tensor]:
        batch = thetas.shape[:-1]
        return {name: chunk.reshape(*batch, *p.shape)
                for name, p, chunk in zip(self.names, self.params, self.split(thetas))}
