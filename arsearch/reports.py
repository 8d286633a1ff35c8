"""`arsearch report`: a study turned into <out>/<study>/ (README.md + PNG plots).

The plots are Optuna's own (`optuna.visualization.matplotlib`): optimisation history, parameter
importances, parallel coordinates, slices, contours of the most important parameters, intermediate
values (what the pruner saw), the empirical distribution of the objective (EDF) and the timeline;
arsearch draws the top trials' full learning curves. Tables list every trial's parameters, the
pruned ones included, and link each trial's MLflow run.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import optuna

log = logging.getLogger("arsearch.reports")

# the study user attribute holding the MLflow experiment id of its runs (set by `study run`), which
# the report's run links need to open a run in MLflow's model-training view
EXPERIMENT_ATTR = "mlflow_experiment_id"


def _save(ax_or_axes, path: Path, size: tuple[float, float] = (9, 5)) -> Path:
    import numpy as np

    ax = ax_or_axes
    if isinstance(ax, np.ndarray):
        ax = ax.flat[0]
    fig = ax.figure
    fig.set_size_inches(*size)
    if any(a.get_label() == "<colorbar>" for a in fig.axes) and len(fig.axes) > 2:
        # a colorbar Optuna placed beside a grid of subplots: tight_layout would draw the grid over it
        fig.savefig(path, dpi=90, bbox_inches="tight")
    else:
        fig.tight_layout()
        fig.savefig(path, dpi=90)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def top_params(study: optuna.Study, count: int = 3, **kwargs) -> list[str]:
    """The `count` most important parameters (fANOVA, Optuna's default), else the first ones seen."""
    names = list(dict.fromkeys(k for t in study.get_trials(deepcopy=False) for k in t.params))
    if len(names) <= count:
        return names
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ranked = list(optuna.importance.get_param_importances(study, **kwargs))
        return ranked[:count]
    except (ValueError, RuntimeError, ZeroDivisionError):
        return names[:count]


def _visible_colours(ax_or_axes) -> None:
    """Optuna colours parallel-coordinate lines and slice points with the full "Blues" map, whose
    light end is near white: the worst trials (the first ones, in a slice plot) vanish. Keep each
    map's direction but cut its palest third."""
    import numpy as np
    from matplotlib.collections import LineCollection, PathCollection
    from matplotlib.colors import LinearSegmentedColormap

    axes = np.atleast_1d(ax_or_axes).flat
    for ax in axes:
        for c in ax.collections:
            if isinstance(c, (LineCollection, PathCollection)) and c.get_array() is not None:
                cmap = c.get_cmap()
                lo, hi = (0.35, 1.0) if not cmap.name.endswith("_r") else (0.0, 0.65)
                c.set_cmap(LinearSegmentedColormap.from_list(cmap.name + "_visible", cmap(np.linspace(lo, hi, 256))))
                if isinstance(c, LineCollection):
                    c.set_linewidth(1.6)


def _distinguishable_lines(ax, unit: str) -> None:
    """Optuna's intermediate-values plot uses tab20, whose neighbours come in light/dark pairs of one hue:
    recolour the trials' lines with tab10 and, past ten trials, a line style per group of ten."""
    lines = [ln for ln in ax.get_lines() if ln.get_color() != "#CCCCCC"]
    colours = _colours(min(len(lines), 10))
    for i, ln in enumerate(lines):
        ln.set_color(colours[i % 10])
        ln.set_linestyle(("-", "--", ":", "-.")[(i // 10) % 4])
        ln.set_alpha(0.9)
    if unit:
        ax.set_xlabel(unit)
    if len(ax.get_lines()) >= 2:
        ax.legend(bbox_to_anchor=(1.02, 1), loc="upper left", borderaxespad=0.0, fontsize="small",
                  ncol=1 + len(ax.get_lines()) // 25)


# the plots a study's MLflow parent run carries, drawn at the end of every `study run` (the report adds
# slices, contours, EDF and timeline, which cost seconds more)
PARENT_RUN_PLOTS = ("optimization_history", "param_importances", "parallel_coordinate", "intermediate_values",
                    "pareto_front")


def study_plots(study: optuna.Study, out_dir: str | Path, metrics: list[str] | None = None,
                progress=None, only: tuple[str, ...] | None = None) -> list[Path]:
    """Write Optuna's plots of `study` as PNGs into out_dir (those named in `only`, default all); a plot
    that cannot be drawn yet is skipped. `progress(message)` hears of each plot before it is drawn
    (fANOVA and contours take seconds)."""
    import matplotlib

    matplotlib.use("Agg")
    from optuna.visualization import matplotlib as ovm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics = metrics or study.user_attrs.get("arsearch.metrics") or ["objective"]
    multi = len(study.directions) > 1
    kwargs = {"target": (lambda t: t.values[0]), "target_name": metrics[0]} if multi else {"target_name": metrics[0]}
    target = {"target": kwargs["target"]} if multi else {}
    done = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    names = list(dict.fromkeys(k for t in done for k in t.params))
    unit = step_unit(study)
    wants_pair = only is None or "contour" in only
    pair = top_params(study, 3, **target) if wants_pair and len(done) >= 2 and len(names) >= 2 else []

    def parallel():
        ax = ovm.plot_parallel_coordinate(study, **kwargs)
        _visible_colours(ax)
        return ax

    def slices():
        axes = ovm.plot_slice(study, **kwargs)
        _visible_colours(axes)
        return axes

    def intermediate():
        ax = ovm.plot_intermediate_values(study)
        _distinguishable_lines(ax, unit)
        return ax

    # (file stem, draw, completed trials needed, needs parameters, figure size)
    plots = [("optimization_history", lambda: ovm.plot_optimization_history(study, **kwargs), 1, False, (9, 5)),
             ("param_importances", lambda: ovm.plot_param_importances(study, **kwargs), 2, True, (9, 5)),
             ("parallel_coordinate", parallel, 2, True, (11, 5.5)),
             ("slice", slices, 1, True, (max(9.0, 3.3 * len(names)), 4.5)),
             ("contour", lambda: ovm.plot_contour(study, params=pair, **kwargs), 2, True,
              (9, 7) if len(pair) < 3 else (12, 10)),
             ("edf", lambda: ovm.plot_edf(study, **kwargs), 1, False, (9, 5)),
             ("timeline", lambda: ovm.plot_timeline(study), 1, False, (10, max(4.0, 0.28 * len(study.trials) + 1.5)))]
    if multi:
        plots.append(("pareto_front", lambda: ovm.plot_pareto_front(study, target_names=metrics), 1, False, (9, 5)))
    else:
        plots.insert(4, ("intermediate_values", intermediate, 1, False, (11, 5.5)))
    if only is not None:
        plots = [p for p in plots if p[0] in only]
    written = []
    for i, (name, draw, needed, params, size) in enumerate(plots, 1):
        if len(done) < needed or (params and not names) or (name == "contour" and len(pair) < 2):
            continue
        if progress is not None:
            progress(f"plot {i}/{len(plots)}: {name.replace('_', ' ')}")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                written.append(_save(draw(), out / f"{name}.png", size))
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
    # logged beside the study's runs (its experiment), as a run of its own
    config.tracking.experiment = study.user_attrs.get("arsearch.experiment") or study.study_name
    config.tracking.run_name = f"{study.study_name} best (trial {trial.number})"
    header = (f"# study {study.study_name!r}, trial {trial.number}: values {list(trial.values)}\n"
              f"# logs to MLflow experiment {config.tracking.experiment!r} as run {config.tracking.run_name!r}\n"
              f"# run it: arsearch train THIS_FILE.toml\n")
    return header + to_toml(config)


def _deep(d: dict) -> dict:
    return {k: (_deep(v) if isinstance(v, dict) else v) for k, v in d.items()}


# Fewer completed trials than this, and fANOVA's importances are mostly noise.
FEW_TRIALS_FOR_IMPORTANCES = 20


def search_lines(study: optuna.Study) -> list[str]:
    """Sampler, pruner and search space as Markdown lines (recorded by `study run` on the study)."""
    search = study.user_attrs.get("arsearch.search")
    if not search:
        return ["Sampler, pruner and search space: not recorded (the study predates arsearch 0.1's record of them)."]
    lines = [f"Sampler: `{search['sampler']}` (first {search['startup_trials']} trials random)  ",
             f"Pruner: `{search['pruner']}`" + (f" (no pruning before iteration {search['warmup_steps']})"
                                                if search.get("warmup_steps") else ""), "", "Search space:", ""]
    lines += [f"- `{key}`: {desc}" for key, desc in search.get("space", {}).items()] or ["- (no keys)"]
    return lines


def study_description(study: optuna.Study) -> str:
    """The study in a few Markdown lines: the MLflow parent run's description."""
    metrics = study.user_attrs.get("arsearch.metrics") or ["objective"]
    trials = study.get_trials(deepcopy=False)
    counts = {st.name.lower(): sum(t.state == st for t in trials) for st in optuna.trial.TrialState}
    head = [f"Optuna study **{study.study_name}**: "
            + ", ".join(f"{m} ({d.name.lower()})" for m, d in zip(metrics, study.directions)) + ".  ",
            "Trials: " + (", ".join(f"{n} {k}" for k, n in counts.items() if n) or "none yet") + ".", ""]
    return "\n".join(head + search_lines(study))


def _duration(t: optuna.trial.FrozenTrial) -> float | None:
    if t.datetime_start and t.datetime_complete:
        return (t.datetime_complete - t.datetime_start).total_seconds()
    return None


def _wall_time(trials) -> str:
    starts = [t.datetime_start for t in trials if t.datetime_start]
    ends = [t.datetime_complete for t in trials if t.datetime_complete]
    if not starts or not ends:
        return "n/a"
    wall = (max(ends) - min(starts)).total_seconds()
    busy = sum(d for t in trials if (d := _duration(t)) is not None)
    return f"{wall:.0f} s from the first trial's start to the last trial's end ({busy:.0f} s of trials in all)"


def _provenance() -> str:
    """Date, arsearch version and the git commit of the working directory (when it is a checkout)."""
    import datetime
    import subprocess

    from . import __version__

    try:
        # the checkout this arsearch runs from (not the working directory, which may be anywhere)
        commit = subprocess.run(["git", "-C", str(Path(__file__).parent), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, timeout=5).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"Written {now} by arsearch {__version__} (commit {commit})."


# what an Optuna step of each spend counts (seconds are reported as milliseconds: steps are integers),
# in words for reports and plots, and short for run names ("trial-4 pruned@960ep")
STEP_UNITS = {"episodes": "episodes", "env_steps": "environment steps", "forward_examples": "forward examples",
              "evaluations": "evaluations", "seconds": "milliseconds"}
SHORT_UNITS = {"episodes": "ep", "env_steps": "steps", "forward_examples": "ex", "evaluations": "evals",
               "seconds": "ms"}


def short_amount(spend: str, value: float) -> str:
    """A spend as a run name shows it: 960ep, 655k ex, 1.2M steps."""
    step = int(round(value * 1000)) if spend == "seconds" else int(value)
    for div, suffix in ((1_000_000, "M"), (1_000, "k")):
        if step >= 10 * div:
            return f"{step / div:.3g}{suffix} {SHORT_UNITS.get(spend, spend)}"
    return f"{step}{SHORT_UNITS.get(spend, spend)}"


def step_unit(study: optuna.Study) -> str:
    """What the steps of this study's intermediate reports count: its spend (recorded by `study run`)."""
    spend = (study.user_attrs.get("arsearch.search") or {}).get("spend")
    return STEP_UNITS.get(spend, "step (the study's spend)")


def trial_curve(t: optuna.trial.FrozenTrial) -> tuple[list[float], list[float], str, str] | None:
    """(x, y, x unit, metric) of a trial's learning curve: every evaluation of its job (the `curve` the
    objective stores at the trial's end), else, for a trial stored before that, the values reported
    to Optuna. None when it has neither."""
    curve = t.user_attrs.get("curve")
    if curve and curve.get("points"):
        xs, ys = zip(*curve["points"])
        return list(xs), list(ys), STEP_UNITS.get(curve.get("spend"), curve.get("spend") or "step"), curve["metric"]
    if t.intermediate_values:
        steps = sorted(t.intermediate_values)
        return steps, [t.intermediate_values[k] for k in steps], "", ""
    return None


def top_learning_curves(study: optuna.Study, path: Path, count: int = 5) -> Path | None:
    """The full learning curves of the best `count` trials on one plot, x in the study's spend."""
    rows = [(t, c) for t in trial_rows(study, count) if (c := trial_curve(t)) is not None]
    if not rows:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    metric = next((c[3] for _, c in rows if c[3]), (study.user_attrs.get("arsearch.metrics") or ["objective"])[0])
    unit = next((c[2] for _, c in rows if c[2]), step_unit(study))
    objective = (study.user_attrs.get("arsearch.metrics") or ["objective"])[0]
    fig = Figure(figsize=(9, 5))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    colours = _colours(len(rows))
    for (t, (xs, ys, _, m)), colour in zip(rows, colours):
        label = f"trial {t.number} ({objective} {t.values[0]:.4g})"
        if not m:
            label += ", reported points only"
        ax.plot(xs, ys, marker="o", ms=3, color=colour, label=label)
    ax.set_xlabel(unit)
    ax.set_ylabel(metric)
    ax.set_title(f"learning curves of the top {len(rows)} trials (every evaluation)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return path


def _colours(n: int) -> list:
    """n colours a reader tells apart: tab10 up to 10, else evenly spaced on a perceptual colormap."""
    from matplotlib import colormaps

    if n <= 10:
        return [colormaps["tab10"](i) for i in range(n)]
    return [colormaps["turbo"](0.05 + 0.9 * i / (n - 1)) for i in range(n)]


def trust_lines(study: optuna.Study) -> list[str]:
    """How far to trust the study's answer: its shared seeds, and each validated configuration's tuning
    estimate beside its result on fresh seeds, with intervals and their rank correlation (issue 20)."""
    tuning = study.user_attrs.get("arsearch.seeds.tuning")
    if not tuning:
        return []
    v = study.user_attrs.get("arsearch.validation") or {}
    lines = ["## How far to trust the answer", "",
             f"Tuning seeds (shared by every trial): {tuning}. Raced out: "
             f"{sum(1 for t in study.get_trials(deepcopy=False) if 'raced_out' in t.user_attrs)} trial(s).", ""]
    if not v:
        return lines + ["Not validated on fresh seeds yet: `arsearch study validate STUDY.toml` "
                        "(`[study.validate] top = K`).", ""]
    lines += [f"Validated on {len(v['seeds'])} fresh seeds, disjoint from the tuning seeds: {v['seeds']}. "
              f"Aggregate: {v['aggregate']} ({'higher' if v['direction'] == 'maximize' else 'lower'} is better); "
              f"the interval is a 95% percentile bootstrap over the fresh seeds.", "",
              "| configuration | trials | tuning estimate (seeds) | fresh seeds [95% CI] (seeds) | winner |",
              "|---|---|---|---|---|"]
    for c in v["configs"]:
        who = c.get("label") or ("baseline ([[enqueue]])" if c["baseline"] else f"rank {c.get('rank', '?')}")
        lo, hi = c["fresh"]["interval"]
        lines.append(f"| {who} `{c['config']}` | {c['trials'][:5]} | {c['tuning']['value']:.5g} ({c['tuning']['n']}) "
                     f"| {c['fresh']['value']:.5g} [{lo:.5g}, {hi:.5g}] ({c['fresh']['n']}) "
                     f"| {'**yes**' if c['config'] == v.get('winner') else ''} |")
    lines.append("")
    if "rank_correlation" in v:
        r = v["rank_correlation"]
        lines.append(f"Rank correlation of the tuning estimates with the fresh-seed results: Spearman "
                     f"{r['spearman']:.2f} over {r['n']} configurations.  ")
    if "vs_baseline" in v:
        b = v["vs_baseline"]
        lines.append(f"Winner against the baseline on the same {b['n']} fresh seeds: probability of improvement "
                     f"{b['probability_of_improvement']:.2f}, better on {b['paired_wins']} seeds"
                     + (f", paired Wilcoxon p = {b['wilcoxon_p']:.3g}" if "wilcoxon_p" in b else "") + ".")
    return lines + [""]


def _param_keys(trials) -> list[str]:
    """The searched keys of these trials, less those every trial set alike (the study's fixed values)."""
    values = [t.user_attrs.get("overrides", t.params) for t in trials]
    keys = sorted({k for v in values for k in v})
    if len(values) > 1:
        keys = [k for k in keys if len({repr(v.get(k)) for v in values}) > 1]
    return keys


class RunLinks:
    """A trial's MLflow run id as a Markdown link to its page (model-training view) in the UI at `base`."""

    def __init__(self, study: optuna.Study, base: str):
        self.base, self.experiment = base, study.user_attrs.get(EXPERIMENT_ATTR)

    def __call__(self, run_id: str | None) -> str:
        if not run_id:
            return "not tracked"
        from .tracking.links import run_url

        return f"[`{run_id[:8]}`]({run_url(self.base, self.experiment, run_id)})"


def write_report(study: optuna.Study, out_root: str | Path = "runs/reports", top: int = 10,
                 storage: str | None = None, ui_url: str | None = None, progress=None) -> Path:
    """Write <out_root>/<study>/README.md and its PNGs; `progress(message)` hears of each step."""
    from .tracking.links import DEFAULT_UI

    say = progress or (lambda message: None)
    out = Path(out_root) / study.study_name
    out.mkdir(parents=True, exist_ok=True)
    say(f"reading study {study.study_name!r}")
    trials = study.get_trials(deepcopy=False)
    counts = {st.name: sum(t.state == st for t in trials) for st in optuna.trial.TrialState}
    metrics = study.user_attrs.get("arsearch.metrics") or ["objective"]
    link = RunLinks(study, ui_url or DEFAULT_UI)
    plots = study_plots(study, out, metrics, progress=say)
    say("plot: learning curves of the top trials")
    curves = top_learning_curves(study, out / "top_learning_curves.png") if len(study.directions) == 1 else None
    say("writing README.md")
    regenerate = (f"arsearch report --storage {storage} --study-name {study.study_name}" if storage
                  else f"arsearch report --storage STORAGE_URL --study-name {study.study_name}")
    if str(out_root) != "runs/reports":
        regenerate += f" --out {out_root}"
    if ui_url and ui_url != DEFAULT_UI:
        regenerate += f" --ui-url {ui_url}"
    lines = [f"# Study `{study.study_name}`", "", _provenance() + "  ",
             f"Regenerate: `{regenerate}`", "",
             f"Objective(s): {', '.join(f'{m} ({d.name.lower()})' for m, d in zip(metrics, study.directions))}  ",
             "Trials: " + ", ".join(f"{n} {k.lower()}" for k, n in counts.items() if n) + "  ",
             f"Wall time: {_wall_time(trials)}  ",
             f"MLflow run links open `arsearch ui` at {link.base} (`--ui-url` for another address), in the "
             f"model-training view.", "", *search_lines(study), ""]
    censored = [t for t in trials if t.user_attrs.get("censored")]
    if censored:
        lines += [f"Censored: {len(censored)} completed trial(s) did not reach the target within their budget; "
                  f"their value is the budget × study.censored_penalty, marked `censored` below.", ""]
    rows = trial_rows(study, top)
    if rows:
        best = rows[0]
        lines += [f"## Best trial: {best.number}", "", f"Values: {', '.join(f'{v:.6g}' for v in best.values)}  ",
                  f"MLflow run: {link(best.user_attrs.get('mlflow_run_id'))}", "",
                  "```toml", best_config_toml(study, best).rstrip(), "```", "",
                  f"## Top {len(rows)} trials", "", markdown_table(study, top), ""]
    lines += trust_lines(study)
    pruned = [t for t in trials if t.state == optuna.trial.TrialState.PRUNED]
    if pruned:
        keys = _param_keys(pruned)
        lines += ["## Pruned trials", "",
                  "| trial | pruned at (" + step_unit(study) + ") | last reported value | after (s) | MLflow run |"
                  + "".join(f" {k} |" for k in keys),
                  "|---|---|---|---|---|" + "---|" * len(keys)]
        for t in pruned:
            step = t.last_step
            value = t.intermediate_values.get(step) if step is not None else None
            d = _duration(t)
            params = t.user_attrs.get("overrides", t.params)
            lines.append(f"| {t.number} | {step if step is not None else 'before its first report'} | "
                         f"{'' if value is None else f'{value:.5g}'} | {'' if d is None else f'{d:.0f}'} | "
                         f"{link(t.user_attrs.get('mlflow_run_id'))} |"
                         + "".join(f" {_fmt(params.get(k, ''))} |" for k in keys))
        lines.append("")
    failed = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    if failed:
        lines += ["## Failed trials", ""]
        lines += [f"- trial {t.number}: {t.user_attrs.get('fail_reason', 'worker died (heartbeat stale)')}"
                  f" (MLflow run {link(t.user_attrs.get('mlflow_run_id'))})" for t in failed]
        lines.append("")
    keys = _param_keys(trials)
    lines += ["## All trials", "",
              "| trial | state | " + " | ".join(metrics) + " | duration (s) | MLflow run |" + "".join(f" {k} |" for k in keys),
              "|---|---|" + "---|" * len(metrics) + "---|---|" + "---|" * len(keys)]
    for t in trials:
        values = [f"{v:.5g}" for v in t.values] if t.values else [""] * len(metrics)
        d = _duration(t)
        params = t.user_attrs.get("overrides", t.params)
        lines.append(f"| {t.number} | {t.state.name.lower()} | " + " | ".join(values)
                     + f" | {'' if d is None else f'{d:.1f}'} | {link(t.user_attrs.get('mlflow_run_id'))} |"
                     + "".join(f" {_fmt(params.get(k, ''))} |" for k in keys))
    lines.append("")
    if curves is not None:
        lines += ["## Learning curves of the top trials", "",
                  "Every evaluation of each trial's job (what MLflow logged), not only the points reported to the "
                  f"pruner; x is the study's spend. ![top learning curves]({curves.name})", ""]
    if plots:
        lines += ["## Plots", ""]
        done = counts["COMPLETE"]
        if any(p.stem == "param_importances" for p in plots) and done < FEW_TRIALS_FOR_IMPORTANCES:
            lines += [f"Caveat: the parameter importances rest on {done} completed trials (fANOVA on fewer than "
                      f"{FEW_TRIALS_FOR_IMPORTANCES} is mostly noise); read them as a hint, not a ranking.", ""]
        for p in plots:
            lines += [f"### {PLOT_TITLES.get(p.stem, p.stem)}", "", PLOT_NOTES.get(p.stem, ""), "",
                      f"![{p.stem}]({p.name})", ""]
    path = out / "README.md"
    path.write_text("\n".join(lines))
    return path


PLOT_TITLES = {"optimization_history": "Optimisation history", "param_importances": "Parameter importances",
               "parallel_coordinate": "Parallel coordinates", "slice": "Slices", "contour": "Contours",
               "intermediate_values": "Intermediate values", "edf": "Empirical distribution (EDF)",
               "timeline": "Timeline", "pareto_front": "Pareto front"}
PLOT_NOTES = {
    "optimization_history": "Each completed trial's objective and the best so far.",
    "param_importances": "fANOVA's share of the objective's variance per parameter.",
    "parallel_coordinate": "One line per completed trial across its parameters; dark is good, the worst "
                           "trials stay visible in mid blue.",
    "slice": "The objective against each parameter alone (colour: trial number).",
    "contour": "The objective over pairs of the most important parameters (interpolated between trials).",
    "intermediate_values": "What each trial reported to the pruner, against the study's spend.",
    "edf": "The fraction of completed trials at or below each objective value: how much of the space is good.",
    "timeline": "When each trial ran and how it ended (complete, pruned, failed).",
    "pareto_front": "The trade-off between the study's objectives.",
}
