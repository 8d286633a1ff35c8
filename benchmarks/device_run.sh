#!/usr/bin/env bash
# One call on a lent GPU machine (16 CPU cores, one GPU, no network): everything that needs it.
#  1. the sample-efficiency benchmark on MuJoCo, its runs in parallel on the CPU cores;
#  2. benchmarks/gpu_check.sh: the distributed backend with NCCL and the vectorized backend on CUDA;
#  3. the throughput benchmark on CUDA.
# Wheels for what the machine lacks (gymnasium, mujoco, tomli-w) travel in .whl/ (see
# /work/.library/device/README.md for how they were downloaded). Results land in $OUT.
set -uo pipefail
OUT="${OUT:-/tmp/out}"; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "wheel install failed"; exit 1; }
export PYTHONPATH="/tmp/site:$PWD" OMP_NUM_THREADS=1 MPLBACKEND=Agg
python3 -c "import torch, gymnasium, mujoco; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"

SE_DEADLINE="${SE_DEADLINE:-330}"
(python3 benchmarks/sample_efficiency.py --seeds 3 --swimmer-seeds 5 --jobs 11 --deadline "$SE_DEADLINE" \
    > "$OUT/sample_efficiency.log" 2>&1; echo "sample efficiency exit $?" >> "$OUT/sample_efficiency.log") &
SE=$!

bash benchmarks/gpu_check.sh > "$OUT/gpu_check.out" 2>&1
echo "gpu_check exit $?"
python3 benchmarks/throughput.py --device cuda --name throughput_h200 --reps 10 --threads 4 > "$OUT/throughput.log" 2>&1
echo "throughput exit $?"
wait $SE
tail -3 "$OUT/sample_efficiency.log"
cp reports/sample_efficiency.md reports/sample_efficiency.json reports/sample_efficiency.png \
   reports/throughput_h200.md "$OUT/" 2>/dev/null
ls -la "$OUT"
