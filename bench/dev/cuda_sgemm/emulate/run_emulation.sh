#!/usr/bin/env bash
# Builds and runs the CPU emulation check of variants 01-08 and 10 (g++ >= 11, no GPU, no nvcc),
# against the shared stand-in CUDA header bench/dev/cuda_emulate/include/cuda_runtime.h.
# SANITIZER=thread: ThreadSanitizer instead of ASan + UBSan (a racing case fails as RACE).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/../../cuda_emulate/sanitizer.sh"
NAME=emulate_check
[[ $SANITIZER == thread ]] && NAME=emulate_check_tsan
OUT=${BUILD_DIR:-$HERE/../build}
mkdir -p "$OUT"
"${CXX:-g++}" -std=c++20 -O1 -g -fno-strict-aliasing -pthread "${SANITIZE[@]}" -Wall -Wextra -Werror \
  -Wno-unused-parameter -Wno-unknown-pragmas -I"$HERE/../../cuda_emulate/include" "$HERE/emulate_check.cpp" -o "$OUT/$NAME"
"$OUT/$NAME"
