"""`arsearch study show`: the best trial, its config as a ready-to-run job TOML, the top trials."""

from __future__ import annotations

from pathlib import Path

import optuna

from ..reports import best_config_toml, markdown_table, trial_rows

VALIDATION_ATTR = "arsearch.validation"


def validated_best(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    """The first trial of the configuration that won the held-out validation, if the study has one."""
    summary = study.user_attrs.get(VALIDATION_ATTR) or {}
    winner = summary.get("winner")
    config = next((c for c in summary.get("configs", []) if c["config"] == winner), None)
    if config is None:
        return None
    numbers = set(config["trials"])
    trials = [t for t in study.get_trials(deepcopy=False) if t.number in numbers and t.user_attrs.get("overrides")
              is not None]
    return min(trials, key=lambda t: t.number) if trials else None


def validation_lines(summary: dict) -> list[str]:
    """The held-out validation as text: each configuration's tuning estimate beside its fresh-seed result."""
    if not summary or not summary.get("configs"):
        return []
    agg = summary["aggregate"]
    lines = ["", f"held-out validation on {len(summary['seeds'])} fresh seeds {summary['seeds']} "
             f"({agg}, {'higher' if summary['direction'] == 'maximize' else 'lower'} is better):"]
    for c in summary["configs"]:
        f, t = c["fresh"], c["tuning"]
        lo, hi = f["interval"]
        who = c.get("label") or ("baseline" if c["baseline"] else f"rank {c.get('rank', '?')}")
        mark = "  <- winner" if c["config"] == summary.get("winner") else ""
        success = f", success {f['success'][0]}/{f['success'][1]}" if f.get("success") else ""
        lines.append(f"  {who:>8}" + (f" (trials {c['trials'][:3]})" if c["trials"] else "") + f": tuning {t['value']:.6g} on {t['n']} seed(s); "
                     f"fresh {f['value']:.6g} [{lo:.6g}, {hi:.6g}] on {f['n']}{success}{mark}")
    if "rank_correlation" in summary:
        r = summary["rank_correlation"]
        lines.append(f"  rank correlation, tuning estimate vs fresh result: Spearman {r['spearman']:.2f} "
                     f"over {r['n']} configurations")
    if "vs_baseline" in summary:
        v = summary["vs_baseline"]
        p = f", paired Wilcoxon p = {v['wilcoxon_p']:.3g}" if "wilcoxon_p" in v else ""
        lines.append(f"  winner vs baseline on the same {v['n']} fresh seeds: probability of improvement "
                     f"{v['probability_of_improvement']:.2f}, better on {v['paired_wins']} seed(s){p}")
    if not summary.get("complete", True):
        lines.append("  (incomplete: run `arsearch study validate STUDY.toml` to finish the missing seeds)")
    return lines


def show(study: optuna.Study, top: int = 10, config_out: str | Path | None = None, overwrite: bool = False) -> str:
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
    validated = validated_best(study)
    if validated is not None:       # the configuration that wins on fresh seeds is the study's answer
        best = validated
        lines += validation_lines(study.user_attrs.get(VALIDATION_ATTR, {}))
    if len(study.directions) > 1:
        front = sorted(t.number for t in study.best_trials)
        lines.append(f"Pareto front: trials {front}")
    toml = best_config_toml(study, best)
    if config_out:
        if Path(config_out).exists() and not overwrite:
            raise ValueError(f"--config-out {config_out} already exists; pass --overwrite to replace it, or name "
                             f"another file")
        Path(config_out).parent.mkdir(parents=True, exist_ok=True)
        Path(config_out).write_text(toml)
        lines.append(f"best config written to {config_out} (run: arsearch train {config_out})")
    what = "the validated winner's" if validated is not None else "best trial's"
    lines += ["", f"# {what} job config", toml.rstrip(), "", f"top {len(rows)} trials:", markdown_table(study, top)]
    return "\n".join(lines)
