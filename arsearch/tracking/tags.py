"""The tag names arsearch writes on MLflow runs and experiments (what the UI, reports and later
workers read back)."""

from __future__ import annotations

STUDY_TAG = "arsearch.study"
ROLE_TAG = "arsearch.role"                # "train", "posttrain", "study" (a parent run) or "trial"
TRIAL_TAG = "arsearch.trial"
STATE_TAG = "arsearch.state"
PARENT_TAG = "mlflow.parentRunId"
PRUNED_TAG = "arsearch.pruned"
OBJECTIVE_TAG = "arsearch.objective"
DIR_TAG = "arsearch.checkpoint_dir"       # a train run's directory: how a later run finds the stale ones
NOTE_TAG = "mlflow.note.content"          # the run's (or experiment's) description in the MLflow UI
# MLflow 3's UI opens an experiment on its GenAI "Overview" (traces) unless the experiment says it
# is classic model training; this tag and value are what the UI bundle reads to open the runs table.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING = "custom_model_development"
