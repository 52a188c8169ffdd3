#!/usr/bin/env bash
# Builds and runs the CPU emulation check of variants 01-08 and 10 (g++ >= 11, no GPU, no nvcc),
# against the shared stand-in CUDA header bench/dev/cuda_emulate/include/cuda_runtime.h.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${BUILD_DIR:-$HERE/../build}
mkdir -p "$OUT"
"${CXX:-g++}" -std=c++20 -O1 -g -fno-strict-aliasing -pthread -fsanitize=address,undefined -fno-sanitize-recover=all -Wall -Wextra -Werror \
  -Wno-unused-parameter -Wno-unknown-pragmas -I"$HERE/../../cuda_emulate/include" "$HERE/emulate_check.cpp" -o "$OUT/emulate_check"
"$OUT/emulate_check"
