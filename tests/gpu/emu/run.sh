#!/usr/bin/env bash
# tests/gpu/emu/run.sh: runs the CUDA kernels of kernels/cuda/ on the CPU, for checking their logic
# on a machine without a GPU. Not part of the product; CTest runs `--small --mid` as the test
# cuda_emulator (label emu), so CI checks every kernel change without a GPU.
#
# Each .cu file is rewritten by pre.py (launch syntax, dynamic shared memory) and compiled by g++
# against the headers in include/: every block runs its threads as std::threads, __syncthreads and
# warp shuffles are barriers, the CUDA runtime is malloc/memcpy (streams synchronous, events the host
# clock at record time, managed and pinned memory plain heap), and cuBLASLt is a double-precision
# GEMM that checks the layouts it is given (so the descriptors matmul.cu builds are checked too).
# The result is tests/test_ops_cuda (with the op test table library, tests/op_table*.c) linked
# against that emulated backend: it compares the kernels with the CPU backend exactly as on a GPU.
# Every launch is checked against CUDA's limits first (grid and block dimensions, dynamic shared memory
# against the kernel's cudaFuncSetAttribute value and the device's opt-in maximum, cuda_emu.h) and a
# launch past them is refused with the runtime's error, so the op fails as it would on a GPU.
# It proves index arithmetic, masks, synchronization structure and reduction orders; not speed,
# coalescing, or races that only real hardware shows.
# Emulation is slow (one OS thread per CUDA thread): the small table takes about a minute, the mid
# table a few minutes; the real shapes are out of reach.
#
# Usage: tests/gpu/emu/run.sh [test_ops_cuda arguments]      (default: --small --mid)
#        tests/gpu/emu/run.sh build                           only build test_ops_cuda_emu and test_ops_cpu_emu
#        tests/gpu/emu/run.sh ftune ARGS...                   the whole ftune binary on the emulated
#            backend (build-emu/ftune_emu), e.g. `ftune bench --device cuda --shape tiny --steps 3`
#            or `ftune train --device cuda ...`: the training loop, streaming loader, managed and
#            host memory, side-stream copies and phase timers run through the emulated runtime
#        tests/gpu/emu/run.sh launches                        every op at the real widths of the trained models
#            and long token counts (T 52000, N 131072) under FT_EMU_DRY=1: each launch checked against
#            CUDA's limits and each cuBLASLt layout, no block run (launches.c); once as an H100, once as GB10
#   FT_EMU_DRY=1        launches are checked (cuda_emu.h) but no block runs, cuBLASLt computes nothing,
#                       device memory is not filled: for launches.c, whose shapes are out of reach otherwise
#   FT_EMU_NO_LT=1      cuBLASLt offers no algorithm, so every product takes the SIMT GEMM fallback
#   FT_CUDA_GEMM=simt   the backend's own switch to the SIMT GEMM
#   FT_EMU_CFLAGS       extra compiler flags, e.g. -DFT_LOAD_CHUNK_BYTES=65536 (weights stream in many
#                       small chunks, to exercise the pipeline on small models); objects do not know
#                       the flags they were built with: give each set its own FT_EMU_BUILD directory
#   FT_EMU_BUILD        build directory (default build-emu)
#   FT_EMU_MEM_MIB      the device memory cudaMemGetInfo reports, MiB (default 32 GiB total, 16 free)
#   FT_EMU_SMEM_KIB     the opt-in shared memory per block, KiB (default 227, the H100's; 99 as on GB10,
#                       where the mma attention backward streams 32-row tiles)
# Objects are rebuilt only when their source, or any header of the tree, is newer.
# Needs g++ with C++20 (<barrier>), python3, OpenBLAS, OpenMP and (for ftune) the libraries ftune
# links (pkg-config); not nvcc.
set -euo pipefail
if ! echo '#include <barrier>' | g++ -std=c++20 -x c++ -fsyntax-only - 2>/dev/null; then
  echo "SKIP: g++ with C++20 <barrier> is needed to emulate CUDA threads" >&2
  exit 77
fi
root="$(cd "$(dirname "$0")/../../.." && pwd)"
emu="$root/tests/gpu/emu"
out="${FT_EMU_BUILD:-$root/build-emu}"
mkdir -p "$out/gen" "$out/obj" "$out/obj_ft"
blas_inc=""
for d in /usr/include/x86_64-linux-gnu/openblas-pthread /usr/include/aarch64-linux-gnu/openblas-pthread \
  /usr/include/openblas; do
  [ -f "$d/cblas.h" ] && blas_inc="$d" && break
done
cxxf=(-std=c++20 -O1 -g -ffp-contract=off -D_GNU_SOURCE -DFT_HAVE_CUDA=1 -I"$emu/include" -I"$root"
      -include cuda_emu.h -Wall -Wextra -Wno-unused-parameter -Wno-unused-function -Wno-unknown-pragmas
      ${FT_EMU_CFLAGS:-})
cf=(-std=c11 -O1 -g -ffp-contract=off -D_GNU_SOURCE -DFT_HAVE_CUDA=1 -DFT_CUDA_ARCHS=\"emulated\" -I"$root"
    ${blas_inc:+-I"$blas_inc"} -fopenmp -DFT_SOURCE_DIR=\""$root"\" -DFT_BINARY=\"/bin/true\"
    -DFT_SHARED_DIR=\""$root/../shared"\" -DFT_VERSION=\"emu\" ${FT_EMU_CFLAGS:-})
newest() { find "$@" \( -name '*.h' -o -name '*.cuh' -o -name '*.py' \) -printf '%T@\n' | sort -n | tail -1; }
newest_h=$(newest "$root/kernels" "$root/trainer" "$root/optim" "$root/data" "$root/export" "$emu")
newest_t=$(newest "$root/kernels" "$root/trainer" "$root/optim" "$root/data" "$root/export" "$emu" "$root"/tests/*.h)
stale() { # stale OBJ SRC [NEWEST]: the object is missing or older than its source or the newest header
  [ ! -f "$1" ] && return 0
  local o; o=$(stat -c %Y "$1")
  [ "$(stat -c %Y "$2")" -ge "$o" ] && return 0
  awk -v a="${3:-$newest_h}" -v b="$o" 'BEGIN { exit !(a >= b) }'
}
jobs_max=$(nproc)
pids=()
run() { "$@" & pids+=($!); if [ ${#pids[@]} -ge "$jobs_max" ]; then wait "${pids[0]}"; pids=("${pids[@]:1}"); fi; }
for f in "$root"/kernels/cuda/*.cu; do
  g="$out/gen/$(basename "$f" .cu).cpp" o="$out/obj/cu_$(basename "$f" .cu).o"
  stale "$o" "$f" || continue
  python3 "$emu/pre.py" "$f" >"$g"
  run g++ "${cxxf[@]}" -c "$g" -o "$o"
done
stale "$out/obj/emu_globals.o" "$emu/emu_globals.cpp" && run g++ "${cxxf[@]}" -c "$emu/emu_globals.cpp" -o "$out/obj/emu_globals.o"
for f in "$root"/kernels/*.c "$root"/kernels/cpu/*.c; do
  o="$out/obj/c_$(basename "$f" .c).o"
  stale "$o" "$f" && run gcc "${cf[@]}" -c "$f" -o "$o"
done
for f in "$root"/tests/harness.c "$root"/tests/op_table*.c; do # the test libraries (tests/*.h too)
  o="$out/obj/c_$(basename "$f" .c).o"
  stale "$o" "$f" "$newest_t" && run gcc "${cf[@]}" -c "$f" -o "$o"
done
if [ "${1:-}" = ftune ]; then
  shift
  pcf=$(pkg-config --cflags libcjson yaml-0.1 libzstd libpcre2-8 libxxhash libutf8proc)
  for f in "$root"/optim/*.c "$root"/data/*.c "$root"/export/*.c "$root"/trainer/*.c; do
    o="$out/obj_ft/$(basename "$(dirname "$f")")_$(basename "$f" .c).o"
    # shellcheck disable=SC2086
    stale "$o" "$f" && run gcc "${cf[@]}" $pcf -c "$f" -o "$o"
  done
  for p in "${pids[@]}"; do wait "$p"; done
  objs=("$out"/obj/cu_*.o "$out"/obj/emu_globals.o)
  for o in "$out"/obj/c_*.o; do # everything but the test libraries
    case "$(basename "$o")" in c_harness.o | c_op_table*.o) ;; *) objs+=("$o") ;; esac
  done
  # shellcheck disable=SC2046
  g++ -o "$out/ftune_emu" "${objs[@]}" "$out"/obj_ft/*.o -fopenmp -lopenblas -lm -pthread \
    $(pkg-config --libs libcjson yaml-0.1 libzstd libpcre2-8 libxxhash libutf8proc)
  exec "$out/ftune_emu" "$@"
fi
if [ "${1:-}" = launches ]; then # every op at the real widths and long token counts, launches checked only
  stale "$out/obj/launches.o" "$emu/launches.c" "$newest_t" && run gcc "${cf[@]}" -Wall -Wextra -c "$emu/launches.c" -o "$out/obj/launches.o"
  for p in "${pids[@]}"; do wait "$p"; done
  # shellcheck disable=SC2046
  g++ -o "$out/launches_emu" "$out"/obj/cu_*.o "$out"/obj/emu_globals.o "$out"/obj/c_*.o "$out/obj/launches.o" \
    -fopenmp -lopenblas -lm -pthread $(pkg-config --libs libcjson)
  FT_EMU_DRY=1 "$out/launches_emu" # H100: 227 KiB of opt-in shared memory
  FT_EMU_DRY=1 FT_EMU_SMEM_KIB=99 exec "$out/launches_emu" # GB10 (sm_121)
fi
for t in test_ops_cuda test_ops_cpu; do # the drivers (test_ops_cpu's cuda-vs-cpu pass runs here too)
  stale "$out/obj/$t.o" "$root/tests/$t.c" "$newest_t" &&
    run gcc "${cf[@]}" -Wall -Wextra -c "$root/tests/$t.c" -o "$out/obj/$t.o"
done
for p in "${pids[@]}"; do wait "$p"; done
for t in test_ops_cuda test_ops_cpu; do
  # shellcheck disable=SC2046
  g++ -o "$out/${t}_emu" "$out"/obj/cu_*.o "$out"/obj/emu_globals.o "$out"/obj/c_*.o "$out/obj/$t.o" \
    -fopenmp -lopenblas -lm -pthread $(pkg-config --libs libcjson) # kernels/json.c
done
[ "${1:-}" = build ] && exit 0
[ $# -eq 0 ] && set -- --small --mid
exec "$out/test_ops_cuda_emu" "$@"
