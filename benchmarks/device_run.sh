#!/usr/bin/env bash
# One call on a lent GPU machine (16 CPU cores, one or more GPUs, no network): everything that needs
# a GPU, in under 8 minutes (each step has its own time limit; issue 23 item 5):
#  1. the GPU tests: `pytest -m gpu` (the backends on CUDA against the NumPy reference, ...);
#  2. benchmarks/gpu_check.sh: the distributed backend with NCCL (1 rank; 2 ranks sharing a GPU) and
#     the vectorized backend on CUDA, with their equality to the single-process run;
#  3. a 2-rank NCCL job on two GPUs, when the machine has two (`--nproc 2`, one GPU per rank);
#  4. the throughput table on CUDA (benchmarks/throughput.py: issue 23's rows);
#  5. the post-training memory check (benchmarks/posttrain_memory.py, the 1 GB GPT-2 part), when
#     transformers is importable;
#  6. optional (SAMPLE_EFFICIENCY=1): the sample-efficiency benchmark on MuJoCo in the background.
# Results land in $OUT (commit what comes back as a report: reports/device_<date>.md from
# $OUT/summary.md). Wheels for what the machine lacks travel in .whl/ (git-ignored; name it in the
# call's carry). Make them here first, for the machine's Python 3.12:
#   echo /.whl/ >> .git/info/exclude
#   for p in gymnasium==1.4.0 mujoco==4.0.0 mujoco-core==4.0.0 mujoco-studio==4.0.0 glfw==2.11.0 \
#            PyOpenGL==3.1.10 Farama-Notifications==0.0.6 tomli_w==1.2.0 websockets==17.4 \
#            pytest==9.0.1 pluggy==1.6.0 iniconfig==2.3.0 pytest-timeout==2.4.0; do
#     .venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
#       --platform manylinux2014_x86_64 -d .whl $p; done
# (check the versions against /work/.library/env/packages/ before downloading).
# Check the script itself without a GPU: SMOKE=1 bash benchmarks/device_run.sh (CPU, tiny settings).
set -uo pipefail
START=$(date +%s)
OUT="${OUT:-/tmp/out}"; mkdir -p "$OUT"
SUMMARY="$OUT/summary.md"
: > "$SUMMARY"
note() { echo "$@" | tee -a "$SUMMARY"; }
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .whl/*.whl || note "- wheel install failed"
fi
export PYTHONPATH="/tmp/site:$PWD" OMP_NUM_THREADS=1 MPLBACKEND=Agg
SMOKE="${SMOKE:-0}"
DEVICE=cuda; [ "$SMOKE" = 1 ] && DEVICE=cpu
GPUS=$(python3 -c "import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)" 2>/dev/null)
note "# Device run ($(date -u +%Y-%m-%dT%H:%MZ))"
note ""
note "- $(python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" 2>&1); GPUs: ${GPUS:-0}"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null | sed 's/^/- /' | tee -a "$SUMMARY"

step() {  # step NAME SECONDS LOGFILE command...: runs it under a time limit and notes its outcome
    local name="$1" limit="$2" log="$3"; shift 3
    local t0=$(date +%s)
    timeout "$limit" "$@" > "$OUT/$log" 2>&1
    local rc=$?
    local verdict="exit $rc"; [ $rc -eq 124 ] && verdict="TIMED OUT after ${limit}s"
    note "- $name: $verdict in $(( $(date +%s) - t0 )) s ($log): $(tail -n 1 "$OUT/$log" | cut -c1-200)"
}

if [ "${SAMPLE_EFFICIENCY:-0}" = 1 ]; then
    (python3 benchmarks/sample_efficiency.py --seeds 3 --swimmer-seeds 5 --jobs 11 --deadline "${SE_DEADLINE:-330}" \
        > "$OUT/sample_efficiency.log" 2>&1; echo "sample efficiency exit $?" >> "$OUT/sample_efficiency.log") &
    SE=$!
fi

if [ "$SMOKE" = 1 ]; then
    step "GPU tests (pytest -m gpu; skipped without a GPU)" 60 pytest_gpu.log python3 -m pytest -m gpu -q -x tests/test_reference.py
else
    step "GPU tests (pytest -m gpu)" 90 pytest_gpu.log python3 -m pytest -m gpu -q -p no:cacheprovider tests
fi
step "gpu_check.sh (NCCL, vectorized on CUDA)" 100 gpu_check.out env OUT="$OUT" SMOKE="$SMOKE" bash benchmarks/gpu_check.sh
if [ "${GPUS:-0}" -ge 2 ]; then
    JOB="$OUT/nccl2.toml"
    printf 'seed = 0\n[task]\ndataset = "digits"\nhidden = [1024, 1024]\nbatch_size = 1024\ndevice = "cuda"\n[ars]\ndirections = 64\ntop = 16\niterations = 30\n[eval]\nevery = 30\n[tracking]\nenabled = false\n[checkpoint]\ndir = "%s/nccl2"\n' "$OUT" > "$JOB"
    step "2 ranks on 2 GPUs (NCCL)" 50 nccl2.log python3 -m arsearch.cli train "$JOB" --quiet --nproc 2
else
    note "- 2 ranks on 2 GPUs (NCCL): skipped, this machine has ${GPUS:-0} GPU(s)"
fi
if [ "$SMOKE" = 1 ]; then
    step "throughput on $DEVICE" 200 throughput.log python3 benchmarks/throughput.py --device "$DEVICE" \
        --name throughput_smoke --reps 1 --skip-large
else
    step "throughput on cuda" 150 throughput.log python3 benchmarks/throughput.py --device cuda \
        --name throughput_cuda --reps 10 --threads 4
fi
if python3 -c "import transformers" 2>/dev/null && [ "$SMOKE" != 1 ]; then
    step "post-training memory (1 GB GPT-2)" 80 posttrain_memory.log python3 benchmarks/posttrain_memory.py \
        --skip-digits --skip-generate
else
    note "- post-training memory: skipped (transformers not importable, or SMOKE=1)"
fi
if [ -n "${SE:-}" ]; then wait "$SE"; tail -1 "$OUT/sample_efficiency.log" | tee -a "$SUMMARY"; fi
note "- total: $(( $(date +%s) - START )) s (budget 480 s)"
cp reports/throughput_cuda.md reports/posttrain.md reports/sample_efficiency.md "$OUT/" 2>/dev/null
ls -la "$OUT"
