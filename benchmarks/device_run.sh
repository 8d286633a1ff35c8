#!/usr/bin/env bash
# One call on a lent GPU machine (16 CPU cores, one GPU, no network): everything that needs it.
#  1. the sample-efficiency benchmark on MuJoCo, its runs in parallel on the CPU cores;
#  2. benchmarks/gpu_check.sh: the distributed backend with NCCL and the vectorized backend on CUDA;
#  3. the throughput benchmark on CUDA.
# Wheels for what the machine lacks travel in .whl/ (git-ignored; name it in the call's carry).
# Make them here first, for the machine's Python 3.12:
#   echo /.whl/ >> .git/info/exclude
#   for p in gymnasium==1.4.0 mujoco==4.0.0 mujoco-core==4.0.0 mujoco-studio==4.0.0 glfw==2.11.0 \
#            PyOpenGL==3.1.10 Farama-Notifications==0.0.6 tomli_w==1.2.0 websockets==17.4; do
#     .venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
#       --platform manylinux2014_x86_64 -d .whl $p; done
# Results land in $OUT.
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
