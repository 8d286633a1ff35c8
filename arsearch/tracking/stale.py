"""Runs left RUNNING by a process that was killed (kill -9, a lost machine), ended by the next run."""

from __future__ import annotations

import logging

from .tags import DIR_TAG

log = logging.getLogger("arsearch.tracking")


def end_stale_runs(client, experiment: str, directory: str, keep: str | None = None) -> list[str]:
    """End as KILLED the runs of `directory` left RUNNING by a killed process; their ids.

    Only safe while the caller holds `directory`'s lock (`checkpoint.ClaimedDir`): then no other
    live process can be running in it."""
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    quoted = directory.replace("'", "\\'")
    try:
        runs = client.search_runs([exp.experiment_id], filter_string=f"tags.`{DIR_TAG}` = '{quoted}' "
                                                                     f"and attributes.status = 'RUNNING'")
    except Exception as e:                            # noqa: BLE001 - never stops the job
        log.warning("could not look for stale MLflow runs: %s", e)
        return []
    ended = []
    for run in runs:
        if run.info.run_id != keep:
            client.set_terminated(run.info.run_id, "KILLED")
            ended.append(run.info.run_id)
            log.warning("MLflow run %s of %s was left RUNNING by a killed process: ended as KILLED",
                        run.info.run_id, directory)
    return ended
