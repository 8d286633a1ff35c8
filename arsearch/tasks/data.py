"""Built-in datasets (all shipped with scikit-learn or generated: nothing is downloaded)."""

from __future__ import annotations

import numpy as np
import torch

from ..imports import is_import_path, load_callable

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


def load_dataset(name: str):
    """(x float32 tensor, y tensor, is_classification). A user function returns (x, y) or a Dataset."""
    if is_import_path(name):
        out = load_callable(name, "dataset")()
        if isinstance(out, torch.utils.data.Dataset):
            pairs = [out[i] for i in range(len(out))]
            x = torch.stack([torch.as_tensor(p[0]) for p in pairs])
            y = torch.stack([torch.as_tensor(p[1]) for p in pairs])
        elif isinstance(out, tuple) and len(out) == 2:
            x, y = torch.as_tensor(np.asarray(out[0])), torch.as_tensor(np.asarray(out[1]))
        else:
            raise ValueError(f"dataset {name!r} must return (x, y) or a torch Dataset, got {type(out).__name__}")
    else:
        xa, ya = _builtin(name)
        x, y = torch.as_tensor(xa), torch.as_tensor(ya)
    if len(x) != len(y) or len(x) < 2:
        raise ValueError(f"dataset {name!r}: x and y must have the same length >= 2, got {len(x)} and {len(y)}")
    classification = not torch.is_floating_point(y)
    return x.float(), (y.long() if classification else y.float()), classification
