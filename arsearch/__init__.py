"""arsearch: Augmented Random Search for PyTorch models."""

from .ars import ARS, VERSIONS, update_weights
from .normalizer import RunningNorm

__version__ = "0.1.0"
__all__ = ["ARS", "RunningNorm", "VERSIONS", "update_weights"]
