"""The learning-curve PNG logged with every run."""

from __future__ import annotations

from pathlib import Path


def learning_curve_png(history: list[dict], path: Path, title: str = "") -> Path | None:
    """Train score per iteration and every eval/* metric at its iteration, as one PNG."""
    if not history:
        return None
    # a bare Figure on the Agg canvas: no pyplot state (thread-safe with n_jobs) and no layout engine,
    # which is most of the drawing time of a small plot
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    evals = sorted({k for row in history for k in row if k.startswith("eval/")})
    fig = Figure(figsize=(10 if evals else 5, 3.6))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 1 + bool(evals), squeeze=False)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.14, top=0.88, wspace=0.25)
    its = [row["iteration"] for row in history if "train/score" in row]
    axes[0][0].plot(its, [row["train/score"] for row in history if "train/score" in row], label="train/score")
    axes[0][0].set_xlabel("iteration")
    axes[0][0].set_ylabel("mean reward of the 2N candidates")
    axes[0][0].legend()
    if evals:
        ax = axes[0][1]
        for key in evals:
            pts = [(row["iteration"], row[key]) for row in history if key in row and row[key] is not None]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, label=key)
        ax.set_xlabel("iteration")
        ax.legend()
    if title:
        fig.suptitle(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    return path
