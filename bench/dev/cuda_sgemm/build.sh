#!/usr/bin/env bash
# Builds the SGEMM ladder: bench/dev/cuda_sgemm/build/sgemm_ladder (no Python, no CMake).
#
#   bash bench/dev/cuda_sgemm/build.sh                 # sm_90 (H100/H200)
#   ARCH=sm_80 bash bench/dev/cuda_sgemm/build.sh      # A100
#   BUILD_DIR=/tmp/ladder NO_LIBRARY=1 bash ...        # without variant 09 (the library kernel)
#   COMPILE_ONLY=1 bash ...                            # objects only, no link (no cuBLAS library needed)
#
# Environment: NVCC (default nvcc), ARCH (default sm_90), BUILD_DIR (default build/ beside this
# file), CUBLAS_ROOT (a directory with include/cublas_v2.h and lib/ or lib64/ holding
# libcublas.so*; found automatically in the CUDA toolkit or a pip 'nvidia-cublas' install),
# EXTRA_NVCCFLAGS, WERROR (default 1: nvcc -Werror all-warnings and host -Wall -Wextra -Werror;
# 0: warnings are printed only; run.sh uses 0 so that a new compiler's warning cannot cost a run).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
NVCC=${NVCC:-nvcc}
ARCH=${ARCH:-sm_90}
BUILD_DIR=${BUILD_DIR:-$HERE/build}
mkdir -p "$BUILD_DIR"

command -v "$NVCC" >/dev/null || { echo "build.sh: $NVCC not found (set NVCC=/path/to/nvcc)" >&2; exit 1; }
NVCC_PATH=$(readlink -f "$(command -v "$NVCC")")
# nvcc may be a wrapper script (exec /usr/local/cuda-X/bin/nvcc): ask it where it lives instead.
NVCC_BIN=$("$NVCC" --dryrun -x cu -c /dev/null -o /dev/null 2>&1 | sed -n 's/^#\$ _HERE_=//p' | head -n1 || true)
[ -n "$NVCC_BIN" ] || NVCC_BIN=$(dirname "$NVCC_PATH")
CUDA_DIR=$(dirname "$NVCC_BIN")
CUDA_MAJOR=$("$NVCC" --version | sed -n 's/.*release \([0-9]*\)\..*/\1/p' | head -n1)

# ---- find cuBLAS (headers + shared library) ----
find_cublas() {
  local cands=()
  [ -n "${CUBLAS_ROOT:-}" ] && cands+=("$CUBLAS_ROOT")
  for d in "$CUDA_DIR" "$CUDA_DIR/targets/x86_64-linux" "$CUDA_DIR/targets/sbsa-linux" \
           "${CUDA_HOME:-}" "${CUDA_PATH:-}" /usr/local/cuda /usr; do
    [ -n "$d" ] && cands+=("$d")
  done
  # pip wheels: nvidia-cublas (CUDA 13: nvidia/cu13/...), nvidia-cublas-cu12 (nvidia/cublas/...)
  local py
  for py in "${PYTHON:-python3}" python3 python; do
    command -v "$py" >/dev/null 2>&1 || continue
    while IFS= read -r sp; do
      [ -d "$sp/nvidia" ] || continue
      cands+=("$sp/nvidia/cu${CUDA_MAJOR}" "$sp/nvidia/cublas")
    done < <("$py" -c 'import site, sys
paths = list(sys.path)
try: paths += site.getsitepackages() + [site.getusersitepackages()]
except Exception: pass
print("\n".join(p for p in paths if p))' 2>/dev/null || true)
    break
  done
  local c inc lib
  for c in "${cands[@]}"; do
    [ -f "$c/include/cublas_v2.h" ] || continue
    inc="$c/include"
    for lib in "$c/lib64" "$c/lib" "$c/lib/x86_64-linux-gnu" "/usr/lib/x86_64-linux-gnu"; do
      if ls "$lib"/libcublas.so* >/dev/null 2>&1; then
        CUBLAS_INC=$inc
        CUBLAS_LIBDIR=$lib
        return 0
      fi
    done
  done
  return 1
}

CUBLAS_INC="" CUBLAS_LIBDIR=""
if ! find_cublas; then
  if [ -z "${COMPILE_ONLY:-}" ]; then
    echo "build.sh: cuBLAS not found (no include/cublas_v2.h + libcublas.so* in the CUDA toolkit" \
         "at $CUDA_DIR, CUBLAS_ROOT, CUDA_HOME, /usr, or a pip nvidia-cublas install)." >&2
    echo "  Install it (e.g. 'pip install nvidia-cublas' or the toolkit's libcublas-dev) or set" \
         "CUBLAS_ROOT; COMPILE_ONLY=1 compiles without linking, but still needs cublas_v2.h." >&2
    exit 1
  fi
fi

# Link: plain -lcublas when the unversioned libcublas.so exists, else the versioned file
# (pip wheels ship only libcublas.so.N); rpath so the binary runs without LD_LIBRARY_PATH.
CUBLAS_LINK=()
if [ -n "$CUBLAS_LIBDIR" ]; then
  if [ -e "$CUBLAS_LIBDIR/libcublas.so" ]; then
    CUBLAS_LINK=(-L"$CUBLAS_LIBDIR" -lcublas)
  else
    so=$(ls "$CUBLAS_LIBDIR"/libcublas.so.* | grep -E 'libcublas\.so\.[0-9]+$' | head -n1)
    CUBLAS_LINK=(-L"$CUBLAS_LIBDIR" -Xlinker "-l:$(basename "$so")")
  fi
  CUBLAS_LINK+=(-Xlinker "-rpath,$CUBLAS_LIBDIR")
fi

FLAGS=(-O3 -std=c++17 -arch="$ARCH" -lineinfo -DLADDER_ARCH="\"$ARCH\"")
if [ "${WERROR:-1}" = 1 ]; then
  FLAGS+=(-Werror all-warnings -Xcompiler -Wall,-Wextra,-Werror)
else
  FLAGS+=(-Xcompiler -Wall,-Wextra)
fi
[ -n "$CUBLAS_INC" ] && FLAGS+=(-I"$CUBLAS_INC")
# shellcheck disable=SC2206
EXTRA=(${EXTRA_NVCCFLAGS:-})

OBJS=()
if [ -z "${NO_LIBRARY:-}" ]; then
  # Variant 09 links the library's own kernel and runtime (stream, error checks), as built by
  # CMake for the extension: -DNNCORE_WITH_CUDA, headers from src/include.
  LIB_FLAGS=(-I"$ROOT/src/include" -DNNCORE_WITH_CUDA)
  for f in sgemm runtime; do
    echo "+ $NVCC ${FLAGS[*]} ${EXTRA[*]} ${LIB_FLAGS[*]} -c cuda/$f.cu"
    "$NVCC" "${FLAGS[@]}" "${EXTRA[@]}" "${LIB_FLAGS[@]}" -c "$ROOT/cuda/$f.cu" \
      -o "$BUILD_DIR/nncore_$f.o"
    OBJS+=("$BUILD_DIR/nncore_$f.o")
  done
  FLAGS+=("${LIB_FLAGS[@]}")
else
  FLAGS+=(-DLADDER_NO_LIBRARY)
fi

echo "+ $NVCC ${FLAGS[*]} ${EXTRA[*]} -c ladder.cu"
"$NVCC" "${FLAGS[@]}" "${EXTRA[@]}" -Xptxas -warn-spills -c "$HERE/ladder.cu" -o "$BUILD_DIR/ladder.o"
OBJS+=("$BUILD_DIR/ladder.o")

if [ -n "${COMPILE_ONLY:-}" ]; then
  echo "compiled (not linked): ${OBJS[*]}"
  exit 0
fi
echo "+ $NVCC -arch=$ARCH ${OBJS[*]} ${CUBLAS_LINK[*]} -o $BUILD_DIR/sgemm_ladder"
"$NVCC" -arch="$ARCH" "${OBJS[@]}" "${CUBLAS_LINK[@]}" -o "$BUILD_DIR/sgemm_ladder"
echo "built $BUILD_DIR/sgemm_ladder (arch $ARCH, cuBLAS from $CUBLAS_LIBDIR)"
