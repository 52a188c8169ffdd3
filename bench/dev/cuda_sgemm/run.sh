#!/usr/bin/env bash
# Builds the SGEMM ladder and runs it on the GPU of this machine, results under OUT_DIR:
#
#   bash bench/dev/cuda_sgemm/run.sh OUT_DIR [ladder options ...]
#   e.g. bash bench/dev/cuda_sgemm/run.sh $OUT
#        bash bench/dev/cuda_sgemm/run.sh /tmp/r --sizes 1024,4096 --variants 5,6,7,8,9
#
# Writes OUT_DIR/gpu.txt (nvidia-smi), build.log, sgemm_ladder.txt (the table),
# sgemm_ladder.csv and sgemm_ladder.json. ARCH defaults to the GPU's compute capability
# (sm_90 on an H100); override with ARCH=sm_80 etc. Exit status: the build's if it failed,
# else the ladder's (0 all PASS, 1 some FAIL/ERROR, 2-4 CUDA/cuBLAS setup errors).
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
OUT_DIR=${1:?usage: run.sh OUT_DIR [ladder options]}
shift
mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)

if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total,clocks.max.sm,power.limit \
    --format=csv >"$OUT_DIR/gpu.txt" 2>&1 || nvidia-smi -L >"$OUT_DIR/gpu.txt" 2>&1
  if [ -z "${ARCH:-}" ]; then
    cc=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n1 | tr -d ' .')
    [ -n "$cc" ] && ARCH=sm_$cc
  fi
else
  echo "nvidia-smi not found" >"$OUT_DIR/gpu.txt"
fi
export ARCH=${ARCH:-sm_90}
cat "$OUT_DIR/gpu.txt"

echo "== build (ARCH=$ARCH) -> $OUT_DIR/build.log"
if ! WERROR=${WERROR:-0} bash "$HERE/build.sh" >"$OUT_DIR/build.log" 2>&1; then
  cat "$OUT_DIR/build.log"
  echo "BUILD FAILED"
  exit 1
fi
tail -n 1 "$OUT_DIR/build.log"

BIN=${BUILD_DIR:-$HERE/build}/sgemm_ladder
echo "== run: $BIN $*"
"$BIN" --csv "$OUT_DIR/sgemm_ladder.csv" --json "$OUT_DIR/sgemm_ladder.json" "$@" \
  2>&1 | tee "$OUT_DIR/sgemm_ladder.txt"
status=${PIPESTATUS[0]}
echo "== exit status $status; results in $OUT_DIR"
exit "$status"
