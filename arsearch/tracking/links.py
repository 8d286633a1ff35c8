"""The MLflow UI: the `arsearch ui` command and links that open an experiment on its runs table."""

from __future__ import annotations

from .store import connect, experiment_id
from .tags import EXPERIMENT_KIND_TAG, OBJECTIVE_TAG, ROLE_TAG


def ui_command(uri: str, host: str = "127.0.0.1", port: int = 5000, workers: int = 1) -> list[str]:
    """`mlflow ui` run by this interpreter (works from a virtualenv that is not activated)."""
    import sys

    return [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", host,
            "--port", str(port), "--workers", str(workers)]


def runs_url(base: str, experiment: str, objective: str = "", direction: str = "maximize") -> str:
    """The runs table of an experiment in the MLflow UI, not its GenAI overview (MLflow 3.17's UI
    picks the view from the `workflowType` URL parameter, or what the browser last chose), sorted
    by the study's objective when there is one (which also lists the trials flat, best first)."""
    from urllib.parse import quote

    url = f"{base.rstrip('/')}/#/experiments/{experiment}/runs?workflowType=machine_learning"
    if objective:
        url += (f"&orderByKey={quote(f'metrics.`{objective}`', safe='')}"
                f"&orderByAsc={'true' if direction == 'minimize' else 'false'}")
    return url


# what `arsearch ui` serves by default: the address report links and printed run links assume
DEFAULT_UI = "http://127.0.0.1:5000"


def run_url(base: str, experiment: str | None, run_id: str) -> str:
    """A run's page in the MLflow UI, in its model-training view.

    MLflow 3.17's UI picks the GenAI or model-training view from the URL's `workflowType`, else from
    what this browser last chose with the "GenAI apps & agents" / "Model training" toggle (stored in
    the browser, default GenAI); experiment and run tags play no part. Its own links to a run (from the
    runs table, the parent run's child list) drop `workflowType`, so only a link like this one, or
    having clicked "Model training" once in that browser, opens a run in the model-training view.
    Without the experiment id, MLflow's direct `#/runs/<id>` route, which redirects (in the stored view).
    """
    if not experiment:
        return f"{base.rstrip('/')}/#/runs/{run_id}"
    return f"{base.rstrip('/')}/#/experiments/{experiment}/runs/{run_id}?workflowType=machine_learning"


def experiment_links(uri: str, base: str) -> list[tuple[str, str, int]]:
    """(name, runs-table URL, number of runs) of every experiment in the store that has runs.

    Experiments without the model-training kind tag get it here, so a store written by an older
    arsearch also opens on its runs.
    """
    client = connect(uri)
    out = []
    for exp in client.search_experiments():
        runs = client.search_runs([exp.experiment_id], max_results=1000)
        if not runs:
            continue
        if EXPERIMENT_KIND_TAG not in exp.tags:
            experiment_id(client, exp.name)
        studies = client.search_runs([exp.experiment_id], f"tags.`{ROLE_TAG}` = 'study'", max_results=1)
        tags = studies[0].data.tags if studies else {}
        out.append((exp.name, runs_url(base, exp.experiment_id, tags.get(OBJECTIVE_TAG, ""),
                                       tags.get("arsearch.direction", "maximize")), len(runs)))
    return out
