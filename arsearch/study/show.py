"""`arsearch study show`: the best trial, its config as a ready-to-run job TOML, the top trials."""

from __future__ import annotations

from pathlib import Path

import optuna

from ..reports import best_config_toml, markdown_table, trial_rows


def show(study: optuna.Study, top: int = 10, config_out: str | Path | None = None) -> str:
    trials = study.get_trials(deepcopy=False)
    counts = {st.name.lower(): sum(t.state == st for t in trials) for st in optuna.trial.TrialState}
    metrics = study.user_attrs.get("arsearch.metrics") or ["objective"]
    lines = [f"study {study.study_name}: {len(trials)} trials ("
             + ", ".join(f"{n} {k}" for k, n in counts.items() if n) + ")"]
    rows = trial_rows(study, top)
    if not rows:
        lines.append("no completed trial yet")
        return "\n".join(lines)
    best = rows[0]
    lines.append(f"best trial: {best.number}  " + "  ".join(f"{m} = {v:.6g}" for m, v in zip(metrics, best.values)))
    if len(study.directions) > 1:
        front = sorted(t.number for t in study.best_trials)
        lines.append(f"Pareto front: trials {front}")
    toml = best_config_toml(study, best)
    if config_out:
        Path(config_out).parent.mkdir(parents=True, exist_ok=True)
        Path(config_out).write_text(toml)
        lines.append(f"best config written to {config_out} (run: arsearch train {config_out})")
    lines += ["", "# best trial's job config", toml.rstrip(), "", f"top {len(rows)} trials:", markdown_table(study, top)]
    return "\n".join(lines)
