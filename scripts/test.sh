#!/usr/bin/env bash
# The README's test command: builds nncore from source into ./.venv (created if missing) and
# runs the whole pytest suite. CUDA kernels are compiled when nvcc is found; GPU tests run
# when a GPU is present and skip with a visible reason otherwise.
# NNCORE_TORCH=1 (set in CI) also installs PyTorch 2.13.0 for the equivalence tests.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${NNCORE_VENV:-.venv}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
PY="$VENV/bin/python"
# Build with every core: without Ninja, CMake's Makefiles would compile one file at a time.
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc 2>/dev/null || echo 2)}
"$PY" -m pip install -q --upgrade pip
"$PY" -m pip install -q ".[test]"
if [ "${NNCORE_TORCH:-0}" = 1 ]; then
  "$PY" -m pip install -q "torch==2.13.0" ||
    echo "nncore: torch could not be installed; the PyTorch equivalence tests will skip"
fi
exec "$PY" -m pytest "$@"
