"""`arsearch report`: a study turned into reports/<study>/ (README.md + PNG plots).

The plots are Optuna's own (`optuna.visualization.matplotlib`): optimisation history, parameter
importances, parallel coordinates and intermediate values (the learning curves the pruner saw).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import optuna

log = logging.getLogger("arsearch.reports")


def _save(ax_or_axes, path: Path) -> Path:
    import numpy as np

    ax = ax_or_axes
    if isinstance(ax, np.ndarray):
        ax = ax.flat[0]
    fig = ax.figure
    fig.set_size_inches(9, 5)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def study_plots(study: optuna.Study, out_dir: str | Path, metrics: list[str] | None = None) -> list[Path]:
    """Write Optuna's plots of `study` as PNGs into out_dir; a plot that cannot be drawn yet is skipped."""
    import matplotlib

    matplotlib.use("Agg")
    from optuna.visualization import matplotlib as ovm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics = metrics or study.user_attrs.get("arsearch.metrics") or ["objective"]
    multi = len(study.directions) > 1
    kwargs = {"target": (lambda t: t.values[0]), "target_name": metrics[0]} if multi else {"target_name": metrics[0]}
    done = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    plots = [("optimization_history", lambda: ovm.plot_optimization_history(study, **kwargs), 1),
             ("param_importances", lambda: ovm.plot_param_importances(study, **kwargs), 2),
             ("parallel_coordinate", lambda: ovm.plot_parallel_coordinate(study, **kwargs), 2),
             ("intermediate_values", lambda: ovm.plot_intermediate_values(study), 1)]
    if multi:
        plots.append(("pareto_front", lambda: ovm.plot_pareto_front(study, target_names=metrics), 1))
        plots.pop(3)
    written = []
    for name, draw, needed in plots:
        if len(done) < needed or (name != "optimization_history" and not done[0].params):
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                written.append(_save(draw(), out / f"{name}.png"))
        except (ValueError, RuntimeError, ZeroDivisionError) as e:
            log.warning("plot %s skipped: %s", name, e)
    return written


def trial_rows(study: optuna.Study, top: int = 10) -> list[optuna.trial.FrozenTrial]:
    """The best completed trials first (by the first objective), then nothing else."""
    done = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    sign = -1.0 if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else 1.0
    return sorted(done, key=lambda t: sign * t.values[0])[:top]


def markdown_table(study: optuna.Study, top: int = 10) -> str:
    metrics = study.user_attrs.get("arsearch.metrics") or [f"objective {i}" for i in range(len(study.directions))]
    rows = trial_rows(study, top)
    keys = sorted({k for t in rows for k in t.user_attrs.get("overrides", t.params)})
    if len(rows) > 1:       # keys every row shares (the study's fixed values) say nothing here
        keys = [k for k in keys if len({repr(t.user_attrs.get("overrides", t.params).get(k)) for t in rows}) > 1]
    # spend-to-target studies: a censored trial's value is its budget × penalty, not a spend it reached
    target = any("censored" in t.user_attrs for t in rows)
    head = ["trial", *metrics, *(["target"] if target else []), "iterations", *keys]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for t in rows:
        values = t.user_attrs.get("overrides", t.params)
        its = t.user_attrs.get("result", {}).get("iterations", "")
        cells = [str(t.number), *(f"{v:.5g}" for v in t.values),
                 *([("censored" if t.user_attrs.get("censored") else "reached")] if target else []), str(its),
                 *(_fmt(values.get(k, "")) for k in keys)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list):
        return "+".join(map(str, v)) or "(none)"
    return str(v)


def best_config_toml(study: optuna.Study, trial: optuna.trial.FrozenTrial | None = None) -> str:
    """The best (or given) trial's job config as a ready-to-run TOML for `arsearch train`."""
    from .config import apply_overrides, load_job, to_toml

    if trial is None:
        rows = trial_rows(study, 1)
        if not rows:
            raise ValueError(f"study {study.study_name!r} has no completed trial yet")
        trial = rows[0]
    base = study.user_attrs.get("arsearch.base")
    if base is None:
        raise ValueError(f"study {study.study_name!r} was not created by arsearch (no base config stored)")
    config = load_job(data=apply_overrides(_deep(base), dict(trial.user_attrs.get("overrides", {}))))
    config.checkpoint.dir = f"runs/{study.study_name}-best"
    header = (f"# study {study.study_name!r}, trial {trial.number}: values {list(trial.values)}\n"
              f"# run it: arsearch train THIS_FILE.toml\n")
    return header + to_toml(config)


def _deep(d: dict) -> dict:
    return {k: (_deep(v) if isinstance(v, dict) else v) for k, v in d.items()}


def write_report(study: optuna.Study, out_root: str | Path = "reports", top: int = 10) -> Path:
    out = Path(out_root) / study.study_name
    out.mkdir(parents=True, exist_ok=True)
    trials = study.get_trials(deepcopy=False)
    counts = {st.name: sum(t.state == st for t in trials) for st in optuna.trial.TrialState}
    metrics = study.user_attrs.get("arsearch.metrics") or ["objective"]
    plots = study_plots(study, out, metrics)
    lines = [f"# Study `{study.study_name}`", "",
             f"Regenerate: `arsearch report --storage <URL> --study-name {study.study_name}`", "",
             f"Objective(s): {', '.join(f'{m} ({d.name.lower()})' for m, d in zip(metrics, study.directions))}  ",
             "Trials: " + ", ".join(f"{n} {k.lower()}" for k, n in counts.items() if n), ""]
    censored = [t for t in trials if t.user_attrs.get("censored")]
    if censored:
        lines += [f"Censored: {len(censored)} completed trial(s) did not reach the target within their budget; "
                  f"their value is the budget × study.censored_penalty, marked `censored` below.", ""]
    rows = trial_rows(study, top)
    if rows:
        best = rows[0]
        lines += [f"## Best trial: {best.number}", "", f"Values: {', '.join(f'{v:.6g}' for v in best.values)}", "",
                  "```toml", best_config_toml(study, best).rstrip(), "```", "",
                  f"## Top {len(rows)} trials", "", markdown_table(study, top), ""]
    failed = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    if failed:
        lines += ["## Failed trials", ""]
        lines += [f"- trial {t.number}: {t.user_attrs.get('fail_reason', 'worker died (heartbeat stale)')}"
                  for t in failed]
        lines.append("")
    if plots:
        lines += ["## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots] + [""]
    path = out / "README.md"
    path.write_text("\n".join(lines))
    return path
