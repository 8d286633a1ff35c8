"""Wall time of `make demo`'s two commands: the quickstart study and its report.

    python benchmarks/demo.py            # 3-6 minutes on 2 cores
    python benchmarks/demo.py --reps 2

Runs, in a fresh temporary directory (so nothing of an earlier demo is reused and the checkout
stays clean), exactly what `make demo` runs after installing:

    arsearch study run studies/quickstart.toml
    arsearch report studies/quickstart.toml --out runs/reports

with this checkout's arsearch, tracking into a fresh MLflow SQLite store as a first demo does, and
times each command as a user meets it (a fresh process, start-up included), with the CPU time of the
process and its children. The figure README.md quotes comes from here. Writes reports/demo.md, and
copies the last demo's report to reports/quickstart/ (the project's committed sample of
`arsearch report`; a user's own report goes under runs/reports/).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import write_report  # noqa: E402

STUDY = ROOT / "studies" / "quickstart.toml"


def run(args: list[str], cwd: Path) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds of the process tree, stdout) of `arsearch ARGS` in `cwd`."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    env.pop("MLFLOW_TRACKING_URI", None)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "arsearch.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"arsearch {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, proc.stdout


SAMPLE = ROOT / "reports" / "quickstart"


def one_demo(keep_report: bool) -> dict:
    import optuna

    with tempfile.TemporaryDirectory(prefix="arsearch-demo-") as tmp:
        cwd = Path(tmp)
        load = os.getloadavg()[0]
        study_wall, study_cpu, _ = run(["study", "run", str(STUDY)], cwd)
        report_wall, report_cpu, _ = run(["report", str(STUDY), "--out", "runs/reports"], cwd)
        study = optuna.load_study(study_name="quickstart", storage=f"sqlite:///{cwd / 'optuna.db'}")
        states = [t.state.name.lower() for t in study.trials]
        if keep_report:             # the committed sample report: replaced whole, no stale plot left behind
            shutil.rmtree(SAMPLE, ignore_errors=True)
            shutil.copytree(cwd / "runs" / "reports" / "quickstart", SAMPLE)
        return {"load": load, "study": study_wall, "study_cpu": study_cpu, "report": report_wall,
                "report_cpu": report_cpu, "complete": states.count("complete"), "pruned": states.count("pruned"),
                "best": study.best_value}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=1, help="demos to run one after another (default 1)")
    args = parser.parse_args()
    rows = []
    for i in range(args.reps):
        row = one_demo(keep_report=i == args.reps - 1)
        rows.append(row)
        print(f"demo {i + 1}/{args.reps}: study {row['study']:.0f} s, report {row['report']:.0f} s "
              f"(load {row['load']:.1f})", file=sys.stderr)
    total = [r["study"] + r["report"] for r in rows]
    lines = ["# `make demo`: how long it takes", "", "{HEADER}" +
             "Each demo runs `arsearch study run studies/quickstart.toml` and `arsearch report "
             "studies/quickstart.toml --out runs/reports` in a fresh directory (fresh Optuna and MLflow "
             "SQLite stores, as a first `make demo`), each a fresh process; installing is not included.", "",
             "| demo | load average at its start | study run (s) | its CPU (s) | report (s) | its CPU (s) "
             "| both (s) | trials complete / pruned | best eval/accuracy |",
             "|---|---|---|---|---|---|---|---|---|"]
    for i, r in enumerate(rows, 1):
        lines.append(f"| {i} | {r['load']:.1f} | {r['study']:.0f} | {r['study_cpu']:.0f} | {r['report']:.0f} "
                     f"| {r['report_cpu']:.0f} | {r['study'] + r['report']:.0f} | {r['complete']} / {r['pruned']} "
                     f"| {r['best']:.4f} |")
    median = statistics.median(total)
    cpu = statistics.median(r["study_cpu"] + r["report_cpu"] for r in rows)
    lines += ["", f"Median of {len(rows)}: {median:.0f} s ({median / 60:.1f} minutes) of wall time for both "
              f"commands, {cpu:.0f} s of CPU time. On a shared machine the wall time grows with the load "
              "average (2 cores: a load above 2 means other work is queued beside the demo); the CPU time "
              "is what the demo itself costs.", ""]
    path = write_report("demo", "\n".join(lines))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
