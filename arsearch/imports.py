"""Resolve user extension points given as ``package.module:function``, and call them.

An exception raised inside a user's function (a dataset, a model factory, a reward, a prompt source,
an environment's step) becomes a `UserCodeError`: one line of arsearch's own that names the config
key and the function, with the user's traceback (their frames only) below it. It is a ValueError, so
`arsearch train` / `posttrain` exit with 2, as for any other error in what the user gave.
"""

from __future__ import annotations

import importlib
import inspect
import os
import traceback
from collections.abc import Callable

_OWN = os.path.dirname(os.path.abspath(__file__))


class UserCodeError(ValueError):
    """A user's function raised: names the config key and the function; the user's traceback below."""

    def __init__(self, key: str, spec: str, error: BaseException, doing: str = ""):
        self.key, self.spec, self.error = key, spec, error
        frames = [f for f in traceback.extract_tb(error.__traceback__)
                  if not os.path.abspath(f.filename).startswith(_OWN + os.sep)]
        text = "".join(traceback.format_list(frames)) + "".join(traceback.format_exception_only(type(error), error))
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        super().__init__(f"{key} = {spec!r}: {doing or 'the function'} raised {type(error).__name__}"
                         f"{': ' + first if first else ''}\n"
                         f"the traceback of {spec!r} (most recent call last):\n{text.rstrip()}")


def call_user(key: str, spec: str, fn: Callable, *args, doing: str = "", **kwargs):
    """`fn(*args, **kwargs)`, with an exception it raises turned into a UserCodeError naming `key`."""
    try:
        return fn(*args, **kwargs)
    except UserCodeError:
        raise
    except Exception as e:               # noqa: BLE001 - whatever the user's code raises, said once
        raise UserCodeError(key, spec, e, doing) from None


def is_import_path(name: str) -> bool:
    return ":" in name


def load_callable(spec: str, what: str) -> Callable:
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(f"{what} {spec!r}: cannot import module {module_name!r} ({e})") from None
    try:
        fn = getattr(module, attr)
    except AttributeError:
        raise ValueError(f"{what} {spec!r}: module {module_name!r} has no attribute {attr!r}") from None
    if not callable(fn):
        raise ValueError(f"{what} {spec!r} is not callable")
    return fn


def call_with_accepted(fn: Callable, **available):
    """Call fn with those of `available` that its signature accepts (all of them for **kwargs)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return fn()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return fn(**available)
    return fn(**{k: v for k, v in available.items() if k in params})
