#!/usr/bin/env bash
# GPU check of the parallel ARS modes, in one short self-contained run (< 4 minutes on a fresh
# machine with one GPU): the distributed backend with NCCL (torchrun, 1 rank; 2 ranks sharing the
# GPU, first with NCCL forced, then with the automatic choice, Gloo), and the vectorized backend on
# CUDA (one device, and two slices on the same device through ars.devices). Prints the figures and
# writes them to $OUT/gpu.md (or ./gpu-report/gpu.md without $OUT).
#
#   bash benchmarks/gpu_check.sh
#
# Python: reuses a CUDA-enabled torch already importable by python3 (in a venv that sees the
# system's packages); only when there is none does it pip-install torch (CUDA build) and the few
# dependencies this check needs. arsearch itself is installed with `pip install --no-deps -e .`.
set -uo pipefail
START=$(date +%s)
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${OUT:-$REPO/gpu-report}"
mkdir -p "$OUT"
WORK="$(mktemp -d /tmp/arsearch-gpu.XXXXXX)"
LOG="$OUT/gpu_check.log"
: > "$LOG"
say() { echo "$@" | tee -a "$LOG"; }

# -- Python with a CUDA torch ---------------------------------------------------------------------
VENV="$WORK/venv"
if python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" >>"$LOG" 2>&1; then
    # python3 may itself be a venv (it is on the lent H200 machines): a venv made from it would not
    # see its packages, so use it directly.
    PY=python3
    say "reusing python3's CUDA torch: $("$PY" -c 'import torch; print(torch.__version__)')"
else
    python3 -m venv --system-site-packages "$VENV" >>"$LOG" 2>&1
    PY="$VENV/bin/python"
    say "no CUDA torch importable by python3: installing torch (CUDA build) from PyPI"
    "$PY" -m pip install -q torch >>"$LOG" 2>&1 || say "pip install torch FAILED (see gpu_check.log)"
fi
for mod_pkg in numpy:numpy sklearn:scikit-learn tomli_w:tomli-w tqdm:tqdm; do
    mod="${mod_pkg%%:*}"; pkg="${mod_pkg##*:}"
    "$PY" -c "import $mod" 2>/dev/null || "$PY" -m pip install -q "$pkg" >>"$LOG" 2>&1
done
if [ "$PY" = python3 ]; then
    say "using arsearch from PYTHONPATH=$REPO"     # no install into the machine's own environment
elif ! "$PY" -m pip install -q --no-deps -e "$REPO" >>"$LOG" 2>&1; then
    say "pip install -e failed; using PYTHONPATH=$REPO"
fi
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
"$PY" - <<'EOF' 2>&1 | tee -a "$LOG"
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available(),
      "devices", torch.cuda.device_count(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-")
print("nccl", torch.cuda.nccl.version() if torch.cuda.is_available() else "-")
EOF
say "setup took $(( $(date +%s) - START )) s"

# -- the job: compute-bound supervised ARS, big enough for a GPU ------------------------------------
# SMOKE=1 runs the same steps with a tiny job on the CPU (to check this script without a GPU).
HIDDEN="[1024, 1024]"; DEVICE="cuda"; ITER=60
if [ "${SMOKE:-0}" = 1 ]; then HIDDEN="[16]"; DEVICE="cpu"; ITER=3; fi
cat > "$WORK/job.toml" <<EOF
seed = 0
[task]
dataset = "digits"
model = "mlp"
hidden = $HIDDEN
batch_size = 1024
device = "$DEVICE"
[ars]
version = "v1t"
directions = 64
top = 16
step_size = 0.02
noise = 0.03
iterations = $ITER
timeout = 60
[eval]
every = $ITER
[tracking]
enabled = false
[checkpoint]
every = 100000
EOF

ROWS=()
run() {  # run NAME SECONDS command... ; records candidates/s from the run's metrics.json
    local name="$1" limit="$2"; shift 2
    local dir="$WORK/runs/$name"
    mkdir -p "$dir"
    local t0=$(date +%s)
    timeout "$limit" "$@" --set "checkpoint.dir=\"$dir\"" > "$dir/stdout" 2> "$dir/stderr"
    local rc=$?
    local wall=$(( $(date +%s) - t0 ))
    if [ $rc -eq 0 ] && [ -f "$dir/metrics.json" ]; then
        local fig
        fig=$("$PY" -c "
import json; m = json.load(open('$dir/metrics.json'))
c = 2 * 64 * m['iterations']
print(f\"{c / m['time/elapsed_s']:.0f} | {m['time/elapsed_s']:.2f} | {m['eval/accuracy']:.3f}\")")
        ROWS+=("| $name | ok | $fig | $wall |")
        say "$name: ok, candidates/s | loop s | accuracy = $fig (wall ${wall}s)"
    else
        local why
        why=$(grep -h -m1 -iE "error|duplicate|nccl|refused" "$dir/stderr" | head -c 300 | tr '|' '/')
        ROWS+=("| $name | FAILED (exit $rc) | - | - | - | $wall |")
        say "$name: FAILED (exit $rc): $why"
        FAIL_DETAIL+="
### $name (exit $rc)
\`\`\`
$(tail -n 25 "$dir/stderr")
\`\`\`
"
    fi
}
FAIL_DETAIL=""
ARS=("$PY" -m arsearch.cli train "$WORK/job.toml" --quiet)
TORCHRUN=("$PY" -m torch.distributed.run --standalone --max-restarts=0)

run "vectorized, cuda, 1 process" 45 "${ARS[@]}"
DEVS='["cuda:0","cuda:0"]'; [ "${SMOKE:-0}" = 1 ] && DEVS='["cpu","cpu"]'
run "vectorized, ars.devices = [cuda:0, cuda:0]" 45 "${ARS[@]}" --set "ars.devices=$DEVS"
run "distributed, torchrun 1 rank (NCCL)" 45 "${TORCHRUN[@]}" --nproc-per-node=1 -m arsearch.cli train \
    "$WORK/job.toml" --quiet --set ars.backend=distributed
run "distributed, 2 ranks on 1 GPU, NCCL forced" 35 env ARSEARCH_DIST_BACKEND=nccl "${TORCHRUN[@]}" \
    --nproc-per-node=2 -m arsearch.cli train "$WORK/job.toml" --quiet --set ars.backend=distributed
run "distributed, 2 ranks on 1 GPU, automatic (Gloo)" 50 "${ARS[@]}" --nproc 2

# the distributed run must equal the single-process one (same seed)
EQUAL=$("$PY" - "$WORK/runs" <<'EOF' 2>&1
import sys, torch
from pathlib import Path
runs = Path(sys.argv[1])
ref = runs / "vectorized, cuda, 1 process" / "final.pt"
for name in ["distributed, torchrun 1 rank (NCCL)", "distributed, 2 ranks on 1 GPU, automatic (Gloo)",
             "vectorized, ars.devices = [cuda:0, cuda:0]"]:
    other = runs / name / "final.pt"
    if not (ref.is_file() and other.is_file()):
        print(f"- {name}: no final.pt to compare"); continue
    a = torch.load(ref, weights_only=True, map_location="cpu")["model"]
    b = torch.load(other, weights_only=True, map_location="cpu")["model"]
    diff = max(float((a[k].double() - b[k].double()).abs().max()) for k in a)
    print(f"- {name}: max |θ − θ_single| = {diff:.3g}")
EOF
)
say "$EQUAL"

{
    echo "# GPU check of the parallel ARS modes"
    echo
    echo "Command: \`bash benchmarks/gpu_check.sh\` (writes this file to \$OUT/gpu.md)."
    echo
    echo '```'
    grep -E "^torch|^nccl|reusing|installing" "$LOG"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null
    echo '```'
    echo
    echo "Job: digits, MLP 64-1024-1024-10, mini-batch 1024, ARS V1-t with N = 64 directions (128 candidates"
    echo "per iteration), 60 iterations, on the GPU. candidates/s = 128 × iterations / training-loop time"
    echo "(start-up excluded). Accuracy is after 60 iterations (the same seed everywhere)."
    echo
    echo "| run | status | candidates/s | loop s | eval accuracy | wall s |"
    echo "|---|---|---|---|---|---|"
    printf '%s\n' "${ROWS[@]}"
    echo
    echo "Equality with the single-process vectorized run:"
    echo
    echo "$EQUAL"
    echo
    if [ -n "$FAIL_DETAIL" ]; then echo "## Failures"; echo "$FAIL_DETAIL"; fi
    echo "Total time: $(( $(date +%s) - START )) s."
} > "$OUT/gpu.md"
cat "$OUT/gpu.md"
