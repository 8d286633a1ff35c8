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
