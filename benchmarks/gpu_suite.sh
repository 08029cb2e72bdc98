#!/usr/bin/env bash
# Every GPU measurement the benchmark scripts support, sized to fit in about 10 minutes on one H200.
#
#     bash benchmarks/gpu_suite.sh              # from the repository root
#     PYTHON=.venv/bin/python bash benchmarks/gpu_suite.sh
#
# Results go to benchmarks/results/ (file names carry "gpu"); the log to benchmarks/results/gpu_suite.log.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python}
LOG=benchmarks/results/gpu_suite.log
mkdir -p benchmarks/results
: >"$LOG"

step() {
    echo "=== $* ($(date +%H:%M:%S))" | tee -a "$LOG"
    local t0=$SECONDS
    "$@" 2>&1 | tee -a "$LOG"
    echo "=== done in $((SECONDS - t0)) s" | tee -a "$LOG"
}

step "$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name())"

# the CUDA tests first: no point timing a device the tests fail on
step "$PY" -m pytest -q tests/test_cuda.py

# exact P&R vs the pure-GEMM floor (prdc is CPU-only numpy and is left out here)
step "$PY" -m benchmarks.bench_exact --device cuda --n 20000 50000 --dims 4096 --methods eprmetrics gemm \
    --name exact_gpu

# eP&R: per-stage time and memory (exact vs hubness) and hub identification per ANN backend
step "$PY" -m benchmarks.bench_epr stages --device cuda --n 50000 --dim 4096 --tag gpu_50k_4096
step "$PY" -m benchmarks.bench_epr ann --device cuda --n 20000 --dim 4096 --tag gpu_20k_4096

# the sampled estimator vs exact and hubness, same run
step "$PY" -m benchmarks.bench_sampled speed --device cuda --n 100000 --dim 2048 --tag gpu_100k_2048

# LSUN-Horse-scale layout (Table 4.10) at a modest n: every method, sets generated on the device
step "$PY" -m benchmarks.bench_scale lsun-horse-scale --device cuda --n 100000 --dim 4096 --tag gpu_100k

# reduced-precision GEMMs (TF32, bf16): raw decisions flipped vs eprmetrics' bound
step "$PY" -m benchmarks.bench_precision --device cuda --n 20000 --dim 4096 --tag gpu

# feature-extraction throughput (random weights, offline): writes features_cuda.{json,md}
step "$PY" -m benchmarks.bench_features --device cuda --n 1024 --batch-size 128 --workers 8

echo "GPU suite finished in ${SECONDS} s; results under benchmarks/results/" | tee -a "$LOG"
