"""MLflow tracking: one run per training job, a parent run per study with one nested child per trial.

The package, by concern:

- `store` — which tracking URI (`resolve_uri`), whether the store can be used (`connect`: a
  server's health, a writable SQLite file, a fresh SQLite database created safely), experiments;
- `callback` — `MlflowCallback`, the trainer callback that logs one run (params, batched metrics
  on a `sender.Sender` thread, final metrics, artifacts), and `train_callback` for `arsearch train`;
- `plots` — the learning-curve PNG; `links` — the `arsearch ui` command and runs-table links;
- `stale` — ending the runs a killed process left RUNNING; `tags` — the tag names arsearch writes.

Every name other modules use is importable from `arsearch.tracking` itself.
"""

from __future__ import annotations

from .callback import (
    FINISH_TIMEOUT,
    LINEAGE_ARTIFACT,
    MlflowCallback,
    config_params,
    flatten,
    lineage_table,
    train_callback,
)
from .links import DEFAULT_UI, experiment_links, run_url, runs_url, ui_command
from .plots import learning_curve_png
from .sender import Sender, wait_for
from .stale import end_stale_runs
from .store import DEFAULT_URI, TrackingError, connect, experiment_id, redact, resolve_uri
from .tags import (
    DIR_TAG,
    EXPERIMENT_KIND_TAG,
    MODEL_TRAINING,
    NOTE_TAG,
    OBJECTIVE_TAG,
    PARENT_TAG,
    PRUNED_TAG,
    ROLE_TAG,
    STATE_TAG,
    STUDY_TAG,
    TRIAL_TAG,
)

__all__ = ["MlflowCallback", "TrackingError", "connect", "config_params", "flatten", "learning_curve_png",
           "train_callback", "experiment_id", "experiment_links", "resolve_uri", "runs_url", "run_url", "DEFAULT_UI", "ui_command",
           "lineage_table", "LINEAGE_ARTIFACT", "redact", "end_stale_runs", "Sender", "wait_for",
           "FINISH_TIMEOUT", "DEFAULT_URI", "DIR_TAG", "EXPERIMENT_KIND_TAG", "MODEL_TRAINING", "NOTE_TAG",
           "OBJECTIVE_TAG", "PARENT_TAG", "PRUNED_TAG", "ROLE_TAG", "STATE_TAG", "STUDY_TAG", "TRIAL_TAG"]
