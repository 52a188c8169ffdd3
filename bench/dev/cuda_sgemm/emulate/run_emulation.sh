#!/usr/bin/env bash
# Builds and runs the CPU emulation check of variants 01-08 and 10 (g++ >= 11, no GPU, no nvcc),
# against the shared stand-in CUDA header bench/dev/cuda_emulate/include/cuda_runtime.h.
# SANITIZER=thread: ThreadSanitizer instead of ASan + UBSan (a racing case fails as RACE).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
case ${SANITIZER:=address} in
  address) SANITIZE=(-fsanitize=address,undefined -fno-sanitize-recover=all); NAME=emulate_check ;;
  # exitcode 0: the check counts TSan's reports per case and sets the exit status.
  thread) SANITIZE=(-fsanitize=thread); NAME=emulate_check_tsan
          export TSAN_OPTIONS=${TSAN_OPTIONS:-exitcode=0} ;;
  *) echo "run_emulation.sh: SANITIZER must be address or thread, not '$SANITIZER'" >&2; exit 2 ;;
esac
OUT=${BUILD_DIR:-$HERE/../build}
mkdir -p "$OUT"
"${CXX:-g++}" -std=c++20 -O1 -g -fno-strict-aliasing -pthread "${SANITIZE[@]}" -Wall -Wextra -Werror \
  -Wno-unused-parameter -Wno-unknown-pragmas -I"$HERE/../../cuda_emulate/include" "$HERE/emulate_check.cpp" -o "$OUT/$NAME"
"$OUT/$NAME"
