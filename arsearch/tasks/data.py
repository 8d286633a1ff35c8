"""Built-in datasets (all shipped with scikit-learn or generated: nothing is downloaded)."""

from __future__ import annotations

import numpy as np
import torch

from ..imports import call_user, is_import_path, load_callable

BUILTIN = ("digits", "breast_cancer", "regression")


def _builtin(name: str):
    from sklearn import datasets

    if name == "digits":
        x, y = datasets.load_digits(return_X_y=True)
        return x / 16.0, y
    if name == "breast_cancer":
        x, y = datasets.load_breast_cancer(return_X_y=True)
        return (x - x.mean(0)) / x.std(0), y   # features span 5 orders of magnitude
    if name == "regression":
        x, y = datasets.make_regression(n_samples=2000, n_features=20, n_informative=10, noise=5.0, random_state=0)
        return x, y / y.std()
    raise ValueError(f"unknown dataset {name!r}; allowed: {', '.join(BUILTIN)} or 'package.module:function'")


ACCEPTED = ("(x, y) arrays or tensors; a torch Dataset of (x, y) pairs; or (train_dataset, test_dataset), "
            "two torch Datasets whose split is used as given")


def load_dataset(name: str):
    """(x float32 tensor, y tensor, is_classification) of a built-in dataset or a user function returning (x, y) or a Dataset."""
    train, test, classification = load_split(name)
    if test is not None:
        raise ValueError(f"dataset {name!r} returns its own (train, test) split; use load_split")
    return train[0], train[1], classification


def load_split(name: str, test_name: str = ""):
    """((x, y) train, (x, y) test or None, is_classification).

    The test part is given when the dataset function returns (train_dataset, test_dataset) or when
    `test_name` (task.test_dataset) names a function returning the test data; otherwise it is None
    and the task splits off task.test_fraction.
    """
    test = None
    if is_import_path(name):
        out = call_user("task.dataset", name, load_callable(name, "dataset"))
        if isinstance(out, tuple) and len(out) == 2 and all(isinstance(o, torch.utils.data.Dataset) for o in out):
            train, test = _tensors(out[0], name, "train dataset"), _tensors(out[1], name, "test dataset")
        else:
            train = _tensors(out, name, "dataset")
    else:
        xa, ya = _builtin(name)
        train = (torch.as_tensor(xa), torch.as_tensor(ya))
    if test_name:
        if test is not None:
            raise ValueError(f"task.test_dataset = {test_name!r} is set, but task.dataset = {name!r} already "
                             f"returns (train, test); set only one of them")
        if not is_import_path(test_name):
            raise ValueError(f"task.test_dataset = {test_name!r}: expected 'package.module:function'")
        test = _tensors(call_user("task.test_dataset", test_name, load_callable(test_name, "test dataset")), test_name,
                        "test dataset")
    classification = _is_classification(train[1], name)
    if test is not None and _is_classification(test[1], test_name or name) != classification:
        raise ValueError(f"dataset {name!r}: the train labels are {'class indices' if classification else 'floats'} "
                         f"but the test labels are not; give both the same kind")
    parts = [train] + ([test] if test is not None else [])
    if test is not None and tuple(test[0].shape[1:]) != tuple(train[0].shape[1:]):
        raise ValueError(f"dataset {test_name or name!r}: test inputs have shape {tuple(test[0].shape[1:])} but "
                         f"train inputs {tuple(train[0].shape[1:])}")
    out = [(x.float(), y.long() if classification else y.float()) for x, y in parts]
    for (x, y), part_name in zip(out, [name, test_name or name]):
        _check_values(x, y, part_name, classification)
    return out[0], (out[1] if test is not None else None), classification


def _check_values(x: torch.Tensor, y: torch.Tensor, name: str, classification: bool) -> None:
    """NaN or inf in the data would turn every score NaN (a divergence at the first iteration, far from
    its cause), a negative class index would fail deep in cross-entropy: both are refused here, named."""
    for what, t in (("inputs x", x), ("labels y", y)):
        if torch.is_floating_point(t):
            bad = ~torch.isfinite(t)
            if bool(bad.any()):
                row = int(bad.reshape(len(t), -1).any(1).nonzero()[0])
                raise ValueError(f"dataset {name!r}: the {what} hold {int(bad.sum())} NaN or infinite values "
                                 f"(the first in example {row}); remove or impute them")
    if classification and len(y) and int(y.min()) < 0:
        row = int((y < 0).nonzero()[0])
        raise ValueError(f"dataset {name!r}: the labels y include {int(y.min())} (example {row}); class indices "
                         f"must be 0..C-1")


def _tensors(out, name: str, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) tensors from what a user function returned, or a ValueError naming the function and the accepted shapes."""
    if isinstance(out, torch.utils.data.Dataset):
        try:
            pairs = [out[i] for i in range(len(out))]
        except TypeError:
            raise ValueError(f"dataset {name!r}: the {what} has no len() or cannot be indexed; "
                             f"return {ACCEPTED}") from None
        if not pairs or not all(isinstance(p, (tuple, list)) and len(p) == 2 for p in pairs):
            raise ValueError(f"dataset {name!r}: each item of the {what} must be an (x, y) pair; return {ACCEPTED}")
        x = torch.stack([torch.as_tensor(np.asarray(p[0])) for p in pairs])
        y = _labels([p[1] for p in pairs], name)
    elif isinstance(out, (tuple, list)) and len(out) == 2:
        try:
            x = torch.as_tensor(np.asarray(out[0], dtype=np.float32))
        except (ValueError, TypeError) as e:
            raise ValueError(f"dataset {name!r}: its x is not a numeric array ({e}); return {ACCEPTED}") from None
        y = _labels(out[1], name)
    else:
        got = f"a {type(out).__name__}" + (f" of length {len(out)}" if isinstance(out, (tuple, list)) else "")
        raise ValueError(f"dataset {name!r} returned {got}; accepted: {ACCEPTED}")
    if len(x) != len(y) or len(x) < 2:
        raise ValueError(f"dataset {name!r}: x and y must have the same length >= 2, got {len(x)} and {len(y)}")
    return x, y


def _labels(y, name: str) -> torch.Tensor:
    if isinstance(y, torch.Tensor):
        arr = y.detach().cpu().numpy()
    else:
        try:
            arr = np.asarray([np.asarray(v) for v in y] if isinstance(y, list) else y)
        except ValueError as e:
            raise ValueError(f"dataset {name!r}: the labels y are not one array ({e}); return one label per "
                             f"example") from None
    if arr.dtype.kind in "USO":
        raise ValueError(f"dataset {name!r}: the labels y are strings ({arr.dtype}, e.g. {arr.flat[0]!r}); "
                         f"return integer class indices 0..C-1 (e.g. with sklearn's LabelEncoder)")
    if arr.dtype.kind == "b":
        arr = arr.astype(np.int64)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        onehot = arr.ndim == 2 and np.isin(arr, (0, 1)).all() and (arr.sum(1) == 1).all()
        hint = (" (one-hot rows: return arr.argmax(1) as integer class indices)" if onehot else
                "; arsearch takes one label per example: an integer class index, or a float regression target")
        raise ValueError(f"dataset {name!r}: the labels y have shape {arr.shape}{hint}")
    return torch.as_tensor(arr)


def _is_classification(y: torch.Tensor, name: str) -> bool:
    return not torch.is_floating_point(y)
