#!/usr/bin/env bash
# The README's main job: builds nncore into ./.venv (created if missing) and trains LeNet-5 on
# MNIST (full MNIST when it can be found or downloaded, else the embedded 5,000-digit sample),
# on the GPU when there is one. Extra arguments go to `python -m nncore train`.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${NNCORE_VENV:-.venv}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
PY="$VENV/bin/python"
# Build with every core: without Ninja, CMake's Makefiles would compile one file at a time.
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc 2>/dev/null || echo 2)}
"$PY" -m pip install -q --upgrade pip
"$PY" -m pip install -q .
exec "$PY" -m nncore train --model lenet5 --dataset mnist --device auto "$@"
