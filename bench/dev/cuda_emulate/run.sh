#!/usr/bin/env bash
# Builds and runs the CPU emulation of the CUDA backend (no GPU, no nvcc; g++ >= 11 with C++20, python3):
#
#   bash bench/dev/cuda_emulate/run.sh            # everything (~8 min on 2 cores, ASan + UBSan)
#   bash bench/dev/cuda_emulate/run.sh sgemm      # one group: self sgemm sgemm_tf32 bias swap im2col conv
#                                                 # pool act softmax loss optim elementwise gather
#   SANITIZER=thread bash bench/dev/cuda_emulate/run.sh   # ThreadSanitizer instead of ASan + UBSan:
#       a check fails when two threads of a block touch one address, one writing, with no barrier
#       or warp collective between them (compute-sanitizer racecheck's hazards, on the CPU; TSan
#       keeps the last few accesses per word, so with many readers of one word a race may be missed)
#
# 1. preprocess.py rewrites cuda/*.cu(h) (not runtime.cu) into $BUILD_DIR/src (launches ->
#    emu::launch, __shared__ -> poisoned statics); cuda/ itself is never modified.
# 2. g++ compiles those, runtime_emu.cpp (stand-in for cuda/runtime.cu), src/cpu/*.cpp (the CPU
#    twins) and emulate_kernels.cpp (the harness) under AddressSanitizer + UBSan, against the
#    stand-in include/cuda_runtime.h; objects are rebuilt when a source or header is newer.
# 3. runs the harness: one line per kernel group, a SUMMARY line, exit status 1 on any failure.
#
# Environment: CXX (default g++), SANITIZER (address, the default, or thread), BUILD_DIR
# (default build/ beside this file, build/tsan for thread; gitignored), OMP_NUM_THREADS (default
# 2, for the CPU kernels; 1 under TSan, which cannot see libgomp's own synchronization).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
CXX=${CXX:-g++}
source "$HERE/sanitizer.sh"
if [[ $SANITIZER == thread ]]; then
  # The CPU twins (src/cpu, the reference) are left uninstrumented: TSan's code in their ifunc
  # resolvers would run before its runtime starts, and crash.
  CPU_SANITIZE=(); DEFAULT_OUT=$HERE/build/tsan; export OMP_NUM_THREADS=1
else
  CPU_SANITIZE=("${SANITIZE[@]}"); DEFAULT_OUT=$HERE/build
fi
OUT=${BUILD_DIR:-$DEFAULT_OUT}
mkdir -p "$OUT/src" "$OUT/obj"

python3 "$HERE/preprocess.py" "$ROOT" "$OUT/src"

COMMON=(-std=c++20 -O1 -g -fno-strict-aliasing -fno-math-errno -pthread -fopenmp -Wall -Wextra
        -Wno-unknown-pragmas -I"$ROOT/src/include" -I"$ROOT/src")
EMU=(-I"$HERE/include" -DNNCORE_WITH_CUDA)

# Newest header any object may depend on.
newest_header=$(find "$HERE/include" "$ROOT/src/include" "$ROOT/src/cpu" "$OUT/src" \
                  \( -name '*.h' -o -name '*.cuh' -o -name '*.inc' \) -printf '%T@\n' |
                sort -n | tail -1)
jobs_max=$(nproc 2>/dev/null || echo 2)
objects=()
compile() {  # source object flags...
  local src=$1 obj=$2
  shift 2
  objects+=("$obj")
  if [[ -f "$obj" && "$obj" -nt "$src" ]] &&
     awk -v a="$(stat -c %Y "$obj")" -v b="$newest_header" 'BEGIN { exit !(a >= b) }'; then
    return
  fi
  while (( $(jobs -rp | wc -l) >= jobs_max )); do wait -n; done
  echo "  compiling ${src#$ROOT/}"
  "$CXX" "${COMMON[@]}" "$@" -c "$src" -o "$obj" &
}

for f in "$ROOT"/src/cpu/*.cpp; do
  compile "$f" "$OUT/obj/cpu_$(basename "${f%.cpp}").o" "${CPU_SANITIZE[@]}"
done
for f in "$OUT"/src/*.cpp; do
  compile "$f" "$OUT/obj/cuda_$(basename "${f%.cpp}").o" "${EMU[@]}" "${SANITIZE[@]}"
done
compile "$HERE/runtime_emu.cpp" "$OUT/obj/runtime_emu.o" "${EMU[@]}" "${SANITIZE[@]}" -Werror
compile "$HERE/emulate_kernels.cpp" "$OUT/obj/emulate_kernels.o" "${EMU[@]}" "${SANITIZE[@]}" \
  -Werror
status=0
while (( $(jobs -rp | wc -l) > 0 )); do wait -n || status=1; done
(( status == 0 )) || { echo "run.sh: compilation failed" >&2; exit 2; }

"$CXX" "${COMMON[@]}" "${SANITIZE[@]}" "${objects[@]}" -o "$OUT/emulate_kernels"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$HERE/lsan.supp:print_suppressions=0}
"$OUT/emulate_kernels" "$@"
