"""Typed config fields with their allowed values: the metadata `arsearch.config` validates against.

A module of its own (standard library only) so that a strategy or backend can declare its config dataclass
beside its class without importing `arsearch.config`, which builds its tables from them.
"""

from __future__ import annotations

from dataclasses import field


def choice(default, *values):
    return field(default=default, metadata={"choices": values})


def number(default, low=None, high=None, *, low_open=False):
    return field(default=default, metadata={"range": (low, high, low_open)})


def items(default, *values):
    """A list whose items must each be one of `values`."""
    return field(default_factory=lambda: list(default), metadata={"item_choices": values})


def listof(default):
    return field(default_factory=lambda: list(default))
