"""The Optuna study harness: a search space over job-config keys, one training job per trial."""

from .objective import DevicePool, EvalLogCallback, Objective, PruningCallback
from .runner import load_existing, make_pruner, make_sampler, make_storage, open_study, run_study
from .space import StudySpec, load_study

__all__ = ["DevicePool", "EvalLogCallback", "Objective", "PruningCallback", "StudySpec", "load_existing",
           "load_study", "make_pruner", "make_sampler", "make_storage", "open_study", "run_study"]
