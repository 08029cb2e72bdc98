#!/usr/bin/env bash
# Every GPU measurement the benchmark scripts support, in one command, sized for about 20 minutes on one
# H100/H200 (the 1.5M × 4096 sampled run is the long step).
#
#     bash benchmarks/gpu_suite.sh                        # from the repository root, on a CUDA machine
#     PYTHON=.venv/bin/python bash benchmarks/gpu_suite.sh
#     bash benchmarks/gpu_suite.sh --device cpu --smoke   # every step at toy sizes (run by `make test`)
#
# Results go to benchmarks/results/ (file names carry "gpu"), the log to benchmarks/results/gpu_suite.log;
# --smoke writes into $EPRM_BENCH_RESULTS (default: a fresh temporary folder), never into the repository.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python}
DEVICE=cuda
SMOKE=0
while [ $# -gt 0 ]; do
    case "$1" in
        --device) DEVICE="$2"; shift 2 ;;
        --smoke) SMOKE=1; shift ;;
        *) echo "gpu_suite.sh: unknown argument '$1'; expected --device DEV and/or --smoke" >&2; exit 2 ;;
    esac
done

if [ "$SMOKE" = 1 ]; then
    export EPRM_BENCH_RESULTS=${EPRM_BENCH_RESULTS:-$(mktemp -d)}
    OUT=$EPRM_BENCH_RESULTS
    # toy sizes: every step and every argument exercised, nothing measured
    EXACT_N="300 600"; EXACT_D=64; EPR_N=800; EPR_D=64; SMP_N=3000; SMP_D=32; LSUN_N=6000; LSUN_D=64
    SCR_N=1200; SCR_D=128
    BIG_N=20000; BIG_D=32; PREC_N=500; PREC_D=64; FEAT_N=4; FEAT_SIZE=64; FEAT_BATCH=2; FEAT_WORKERS=0
    CUDA_TESTS="tests/test_cuda.py"  # the simulations already ran in the same `make test`
else
    OUT=benchmarks/results
    EXACT_N="20000 50000 70000"; EXACT_D=4096; EPR_N=50000; EPR_D=4096; SMP_N=100000; SMP_D=2048
    LSUN_N=100000; LSUN_D=4096; BIG_N=1500000; BIG_D=4096; PREC_N=20000; PREC_D=4096
    SCR_N=200000; SCR_D=4096
    FEAT_N=1024; FEAT_SIZE=256; FEAT_BATCH=128; FEAT_WORKERS=8
    CUDA_TESTS="tests/test_cuda.py tests/test_cuda_sim.py"
fi
LOG=$OUT/gpu_suite.log
mkdir -p "$OUT"
: >"$LOG"

step() {
    echo "=== $* ($(date +%H:%M:%S))" | tee -a "$LOG"
    local t0=$SECONDS
    "$@" 2>&1 | tee -a "$LOG"
    echo "=== done in $((SECONDS - t0)) s" | tee -a "$LOG"
}

if [ "$DEVICE" != cpu ]; then
    step "$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name())"
fi

# the CUDA tests first: no point timing a device the tests fail on (they skip cleanly without one)
# shellcheck disable=SC2086
step "$PY" -m pytest -q $CUDA_TESTS

# exact P&R vs the pure-GEMM floor (prdc is CPU-only numpy and is left out here); 70k × 4096 included
# shellcheck disable=SC2086
step "$PY" -m benchmarks.bench_exact --device "$DEVICE" --n $EXACT_N --dims "$EXACT_D" --methods eprmetrics gemm \
    --name exact_gpu

# eP&R: per-stage time and memory (exact vs hubness) and hub identification per ANN backend
step "$PY" -m benchmarks.bench_epr stages --device "$DEVICE" --n "$EPR_N" --dim "$EPR_D" --repeats 1 --tag gpu_stages
step "$PY" -m benchmarks.bench_epr ann --device "$DEVICE" --n "$EPR_N" --dim "$EPR_D" --tag gpu_ann

# the sampled estimator vs exact and hubness, same run
step "$PY" -m benchmarks.bench_sampled speed --device "$DEVICE" --n "$SMP_N" --dim "$SMP_D" --tag gpu_speed

# the projection screen against full rows in the sampled decisions (both spectra, digits), side by side
step "$PY" -m benchmarks.bench_screen --device "$DEVICE" --n "$SCR_N" --dim "$SCR_D" --tag gpu

# LSUN-Horse-scale layout (Table 4.10) at a modest n: every method, sets generated on the device
step "$PY" -m benchmarks.bench_scale lsun-horse-scale --device "$DEVICE" --gen-device "$DEVICE" --n "$LSUN_N" \
    --dim "$LSUN_D" --tag gpu_modest

# the headline: 1.5M × 4096 per set as float16 memmaps, the sampled estimator, memory timeline
step "$PY" -m benchmarks.bench_scale lsun-horse-scale --device "$DEVICE" --gen-device "$DEVICE" --n "$BIG_N" \
    --dim "$BIG_D" --memmap "$OUT/memmaps" --methods sampled --timeline --tag gpu_headline
rm -rf "$OUT/memmaps"

# reduced-precision GEMMs (TF32, bf16): raw decisions flipped vs eprmetrics' bound
step "$PY" -m benchmarks.bench_precision --device "$DEVICE" --n "$PREC_N" --dim "$PREC_D" --tag gpu

# feature-extraction throughput (random weights, offline)
step "$PY" -m benchmarks.bench_features --device "$DEVICE" --n "$FEAT_N" --size "$FEAT_SIZE" \
    --batch-size "$FEAT_BATCH" --workers "$FEAT_WORKERS"

echo "GPU suite finished in ${SECONDS} s; results under $OUT" | tee -a "$LOG"
