#!/usr/bin/env bash
# GPU check: run on a machine with an NVIDIA GPU whenever one is at hand.
#   bash bench/gpu_check.sh [LOG_DIR [STEP ...]]
# Builds nncore with CUDA (NNCORE_CUDA=ON), then runs the steps, all of them by default:
#   pytest        the full suite (cpu + cuda)
#   memcheck      the cuda tests under compute-sanitizer memcheck
#   racecheck     the same under racecheck
#   bench_kernels the kernel benchmarks against cuBLAS/cuDNN (and the CPU rows)
#   sgemm_tiles   the SGEMM rows once per forced tile configuration (NNCORE_CUDA_SGEMM_TILE)
#   bench_train   LeNet-5 / MLP training images/s and allocator high-water mark vs PyTorch eager
#   bench_train_tf32  the same with TF32 tensor cores allowed in both (float32 matmul precision high)
#   train         LeNet-5 on MNIST (or the embedded sample) on the GPU, then on the CPU
# Naming steps runs only those, after the build (e.g. to fit a time limit per call:
# `bash bench/gpu_check.sh logs pytest bench_train`). Logs go to LOG_DIR.
set -uo pipefail
cd "$(dirname "$0")/.."
LOG=${1:-gpu_check_logs}
shift $(( $# > 0 ? 1 : 0 ))
STEPS=" $* "
mkdir -p "$LOG"
PY=${PYTHON:-python3}
status=0
wanted() { [[ "$STEPS" == "  " || "$STEPS" == *" $1 "* ]]; }
step() {  # step NAME CMD...: runs CMD, logs to $LOG/NAME.log, records failure
  local name=$1; shift
  echo "== $name: $*"
  if "$@" >"$LOG/$name.log" 2>&1; then echo "   ok"; else echo "   FAILED (see $LOG/$name.log)"; status=1; fi
  tail -n 5 "$LOG/$name.log"
}
nvidia-smi -L | tee "$LOG/gpu.txt"
# The static CUDA runtime nncore links needs a driver at least as new as this nvcc's toolkit.
{ nvidia-smi --query-gpu=name,driver_version,compute_cap --format=csv; nvcc --version; } \
  >>"$LOG/gpu.txt" 2>&1
# The tests must run on the GPU here: a CUDA backend that cannot start fails the step.
export NNCORE_REQUIRE_CUDA=1
# Build with every core: without Ninja, CMake's Makefiles would compile one file at a time.
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc 2>/dev/null || echo 2)}
# --no-build-isolation: GPU machines may have no network; their Python has the build tools.
step build env NNCORE_CUDA=ON "$PY" -m pip install --no-build-isolation --no-deps -v .
# --maxfail, not -x: a first run on real hardware shows up to 25 failing tests at once.
wanted pytest && step pytest "$PY" -m pytest -q -rfE --maxfail=25 tests
SANITIZE_TESTS="tests -k cuda -q -p no:cacheprovider -x"
# compute-sanitizer ships in the CUDA toolkit's bin/, which is not always on PATH (and nvcc on
# PATH may be a wrapper script: its --dryrun says where the toolkit is).
SANITIZER=compute-sanitizer
nvcc_bin=$(nvcc --dryrun -x cu -c /dev/null -o /dev/null 2>&1 | sed -n 's/^#\$ _HERE_=//p' | head -n1)
for c in "$(command -v compute-sanitizer)" "$nvcc_bin/compute-sanitizer" \
         /usr/local/cuda/bin/compute-sanitizer; do
  if [[ -x "$c" && -f "$c" ]]; then SANITIZER=$c; break; fi
done
wanted memcheck &&
  step memcheck "$SANITIZER" --tool memcheck --error-exitcode 1 "$PY" -m pytest $SANITIZE_TESTS
wanted racecheck &&
  step racecheck "$SANITIZER" --tool racecheck --error-exitcode 1 "$PY" -m pytest $SANITIZE_TESTS
wanted bench_kernels &&
  step bench_kernels "$PY" bench/bench_kernels.py --device all --json "$LOG/kernels.json" \
    --markdown "$LOG/kernels.md" --plot "$LOG/sgemm_gflops.png"
# The CUDA SGEMM's configuration choice: every training GEMM under each forced tile (LeNet's
# conv1 forward, M = 6, is given the 128x128 tile by problem size: is a smaller one faster?).
if wanted sgemm_tiles; then
  for tile in 128 64 32; do
    step "sgemm_tile$tile" env NNCORE_CUDA_SGEMM_TILE=$tile "$PY" bench/bench_kernels.py \
      --device cuda --sgemm-only --json "$LOG/sgemm_tile$tile.json" \
      --markdown "$LOG/sgemm_tile$tile.md" --plot ""
  done
fi
wanted bench_train &&
  step bench_train "$PY" bench/bench_train.py --device cuda --json "$LOG/train.json" \
    --markdown "$LOG/train.md"
wanted bench_train_tf32 &&
  step bench_train_tf32 "$PY" bench/bench_train.py --device cuda --float32-matmul-precision high \
    --json "$LOG/train_tf32.json" --markdown "$LOG/train_tf32.md"
if wanted train; then
  step train_gpu "$PY" -m nncore train --model lenet5 --dataset mnist --device cuda --epochs 10 \
    --out "$LOG/run_cuda"
  step train_cpu "$PY" -m nncore train --model lenet5 --dataset mnist --device cpu --epochs 10 \
    --out "$LOG/run_cpu"
fi
exit $status
