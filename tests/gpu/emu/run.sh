#!/usr/bin/env bash
# tests/gpu/emu/run.sh: runs the CUDA kernels of kernels/cuda/ on the CPU, for checking their logic
# on a machine without a GPU. A development tool, not part of CI or of the product.
#
# Each .cu file is rewritten by pre.py (launch syntax, dynamic shared memory) and compiled by g++
# against the headers in include/: every block runs its threads as std::threads, __syncthreads and
# warp shuffles are barriers, the CUDA runtime is malloc/memcpy, and cuBLASLt is a double-precision
# GEMM that checks the layouts it is given (so the descriptors matmul.cu builds are checked too).
# The result is tests/test_ops_cuda linked against that emulated backend: it compares the kernels
# with the CPU backend exactly as on a GPU. It proves index arithmetic, masks, synchronization
# structure and reduction orders; not speed, coalescing, or races that only real hardware shows.
# Emulation is slow (one OS thread per CUDA thread): the small table takes about a minute, the mid
# table a few minutes; the real shapes are out of reach.
#
# Usage: tests/gpu/emu/run.sh [test_ops_cuda arguments]      (default: --small --mid)
#   FT_EMU_NO_LT=1      cuBLASLt offers no algorithm, so every product takes the SIMT GEMM fallback
#   FT_CUDA_GEMM=simt   the backend's own switch to the SIMT GEMM
# Needs g++ with C++20 (<barrier>), python3, OpenBLAS and OpenMP; not nvcc.
set -euo pipefail
root="$(cd "$(dirname "$0")/../../.." && pwd)"
emu="$root/tests/gpu/emu"
out="${FT_EMU_BUILD:-$root/build-emu}"
mkdir -p "$out/gen" "$out/obj"
blas_inc=""
for d in /usr/include/x86_64-linux-gnu/openblas-pthread /usr/include/aarch64-linux-gnu/openblas-pthread \
  /usr/include/openblas; do
  [ -f "$d/cblas.h" ] && blas_inc="$d" && break
done
cxxf=(-std=c++20 -O1 -g -ffp-contract=off -D_GNU_SOURCE -DFT_HAVE_CUDA=1 -I"$emu/include" -I"$root"
      -include cuda_emu.h -Wall -Wextra -Wno-unused-parameter -Wno-unused-function -Wno-unknown-pragmas)
cf=(-std=c11 -O1 -g -ffp-contract=off -D_GNU_SOURCE -DFT_HAVE_CUDA=1 -DFT_CUDA_ARCHS=\"emulated\" -I"$root"
    ${blas_inc:+-I"$blas_inc"} -fopenmp -DFT_SOURCE_DIR=\""$root"\" -DFT_BINARY=\"/bin/true\"
    -DFT_SHARED_DIR=\""$root/../shared"\" -DFT_VERSION=\"emu\")
pids=()
for f in "$root"/kernels/cuda/*.cu; do
  g="$out/gen/$(basename "$f" .cu).cpp"
  python3 "$emu/pre.py" "$f" >"$g"
  g++ "${cxxf[@]}" -c "$g" -o "$out/obj/cu_$(basename "$f" .cu).o" & pids+=($!)
done
g++ "${cxxf[@]}" -c "$emu/emu_globals.cpp" -o "$out/obj/emu_globals.o" & pids+=($!)
for f in "$root"/kernels/*.c "$root"/kernels/cpu/*.c "$root"/tests/harness.c; do
  gcc "${cf[@]}" -c "$f" -o "$out/obj/c_$(basename "$f" .c).o" & pids+=($!)
done
gcc "${cf[@]}" -Wall -Wextra -c "$root/tests/test_ops_cuda.c" -o "$out/obj/test_ops_cuda.o" & pids+=($!)
for p in "${pids[@]}"; do wait "$p"; done
g++ -o "$out/test_ops_cuda_emu" "$out"/obj/*.o -fopenmp -lopenblas -lm -pthread
[ $# -eq 0 ] && set -- --small --mid
exec "$out/test_ops_cuda_emu" "$@"
