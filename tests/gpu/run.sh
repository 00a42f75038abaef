#!/usr/bin/env bash
# tests/gpu/run.sh: the one command for a session on a GPU machine (H100/H200). It builds ftune for
# sm_90, checks every CUDA op forward and backward against the CPU reference on fresh random inputs
# (the op table of tests/test_ops_cpu.c plus the real layer shapes of Llama-3-70B, Qwen3-32B and
# Mistral-Small-24B in tests/test_ops_cuda.c), times each op, trains the stories260K demo for 50
# steps on both backends and compares the loss curves step by step, runs `ftune bench` when that
# command exists, prints one summary table and writes full logs under $OUT.
#
# Usage: tests/gpu/run.sh [phase...]   phases: build ops e2e sanitize bench (default: all, in order)
#   sanitize  compute-sanitizer memcheck, racecheck and initcheck over the small op table
#   OUT              where logs go (the device tool sets it; default build-gpu-out, git-ignored)
#   FT_GPU_BUILD     build directory (default build-gpu; kept between calls on a warm machine)
#   FT_GPU_ARCH      CUDA architectures (default 90)
#   FT_OPS_ARGS      extra arguments for test_ops_cuda, e.g. "--filter attention --seed 0x1234"
#   FT_E2E_STEPS     training steps per backend (default 50); FT_E2E_TOL relative loss gap (0.02)
#   FT_GPU_DEPS      "carried": use build-gpudeps even where the system has the libraries
# Expected times on an H100 machine: build 1-2 min, ops 3-5 min (the CPU reference of the real
# shapes dominates), e2e < 1 min, sanitize 1-2 min. To stay well inside the device tool's 10-minute
# command limit, split: `run.sh build ops`, then `run.sh e2e sanitize bench` (the build directory
# survives between calls while the machine is warm; $OUT does not).
#
# Dependencies: if the machine lacks the libraries ftune builds against (no registry there), run
# tests/gpu/fetch-deps.sh here first and carry build-gpudeps; this script unpacks it under
# /tmp/ftdeps (never into /) only when pkg-config cannot find the libraries.
#
# Exit status: 0 only when every phase that ran passed.
set -uo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
OUT="${OUT:-$root/build-gpu-out}" # under /build*/, so git (and the device tool) ignore it
build="${FT_GPU_BUILD:-$root/build-gpu}"
arch="${FT_GPU_ARCH:-90}"
steps="${FT_E2E_STEPS:-50}"
e2e_tol="${FT_E2E_TOL:-0.02}"
mkdir -p "$OUT"
summary="$OUT/summary.txt"
: >"$summary"
phases=("$@")
[ ${#phases[@]} -eq 0 ] && phases=(build ops e2e sanitize bench)
for p in "${phases[@]}"; do
  case "$p" in
    build | ops | e2e | sanitize | bench) ;;
    *) echo "run.sh: unknown phase '$p' (phases: build ops e2e sanitize bench)" >&2; exit 2 ;;
  esac
done
declare -A result
overall=0

say() { echo "run.sh: $*" | tee -a "$summary" >&2; }
want() { local p; for p in "${phases[@]}"; do [ "$p" = "$1" ] && return 0; done; return 1; }
mark() { result[$1]="$2"; [ "$2" = ok ] || [ "$2" = skipped ] || overall=1; }

if [ -x /usr/local/cuda/bin/nvcc ] && ! command -v nvcc >/dev/null 2>&1; then
  export PATH="/usr/local/cuda/bin:$PATH"
fi

# ---- environment ------------------------------------------------------------------------------------
{
  echo "== environment ($(date -u +%Y-%m-%dT%H:%M:%SZ))"
  uname -srm
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,clocks.mem --format=csv 2>&1 |
    sed 's/^/  /'
  echo "  nvcc: $(nvcc --version 2>&1 | grep -o 'release [0-9.]*' || echo missing)"
  echo "  cmake: $(cmake --version 2>&1 | head -1)"
  echo "  cores: $(nproc), phases: ${phases[*]}, build: $build, arch: $arch"
} 2>&1 | tee -a "$summary" >&2

# ---- dependencies -------------------------------------------------------------------------------------
need_pc=(libcjson yaml-0.1 libzstd libpcre2-8 libxxhash libutf8proc)
have_system_deps() {
  command -v pkg-config >/dev/null 2>&1 || return 1
  pkg-config --exists "${need_pc[@]}" 2>/dev/null || return 1
  ls /usr/include/cblas.h /usr/include/*/cblas.h /usr/include/*/*/cblas.h /usr/include/openblas/cblas.h \
    >/dev/null 2>&1 || return 1
}
use_carried_deps() {
  local pre=/tmp/ftdeps multi=x86_64-linux-gnu
  ls "$root"/build-gpudeps/*.deb >/dev/null 2>&1 || return 1
  mkdir -p "$pre"
  for d in "$root"/build-gpudeps/*.deb; do dpkg-deb -x "$d" "$pre" || return 1; done
  local lib="$pre/usr/lib/$multi"
  export PATH="$pre/usr/bin:$PATH"
  export LD_LIBRARY_PATH="$lib:$lib/openblas-pthread${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  # pkg-config sees only the unpacked .pc files, and prefixes their /usr paths with the sysroot
  export PKG_CONFIG_LIBDIR="$lib/pkgconfig:$pre/usr/share/pkgconfig"
  export PKG_CONFIG_SYSROOT_DIR="$pre"
  export CMAKE_LIBRARY_PATH="$lib/openblas-pthread:$lib"
  export CMAKE_INCLUDE_PATH="$pre/usr/include/$multi:$pre/usr/include"
  export LIBRARY_PATH="$lib:$lib/openblas-pthread${LIBRARY_PATH:+:$LIBRARY_PATH}"
  local debs=("$root"/build-gpudeps/*.deb)
  say "dependencies: unpacked ${#debs[@]} carried packages under $pre"
}
if want build || want ops || want e2e || want sanitize || want bench; then
  if [ "${FT_GPU_DEPS:-}" = carried ] && use_carried_deps; then  # force the carried packages (testing)
    :
  elif have_system_deps; then
    :
  elif use_carried_deps; then
    :
  else
    say "dependencies: pkg-config cannot find ${need_pc[*]} (or cblas.h) and build-gpudeps/ is absent:"
    say "  run tests/gpu/fetch-deps.sh on the development machine and carry build-gpudeps"
  fi
fi

# ---- build ----------------------------------------------------------------------------------------------
ftune="$build/ftune"
if want build; then
  t0=$(date +%s)
  gen=()
  command -v ninja >/dev/null 2>&1 && [ ! -f "$build/Makefile" ] && gen=(-G Ninja)
  {
    echo "== configure"
    cmake -S "$root" -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DFT_CUDA=ON \
      -DCMAKE_CUDA_ARCHITECTURES="$arch" &&
      echo "== build" &&
      cmake --build "$build" -j"$(nproc)" --target ftune test_ops_cuda test_ops_cpu
  } >"$OUT/build.log" 2>&1
  rc=$?
  secs=$(($(date +%s) - t0))
  if [ $rc -eq 0 ]; then
    mark build ok
    say "build: ok in ${secs}s (sm_$arch) -> $build"
  else
    mark build FAIL
    say "build: FAILED after ${secs}s; last lines of build.log:"
    tail -25 "$OUT/build.log" | tee -a "$summary" >&2
  fi
fi

# ---- ops ------------------------------------------------------------------------------------------------
ops_tsv="$OUT/ops.tsv"
if want ops; then
  if [ ! -x "$build/tests/test_ops_cuda" ]; then
    mark ops FAIL
    say "ops: $build/tests/test_ops_cuda is missing (build first)"
  else
    t0=$(date +%s)
    # shellcheck disable=SC2086
    "$build/tests/test_ops_cuda" --mode all --summary "$ops_tsv" ${FT_OPS_ARGS:-} >"$OUT/ops.log" 2>&1
    rc_ops=$?
    # cross-check: the same products through our own GEMM instead of cuBLASLt (its TSV stays in the
    # build directory: the device tool brings back at most 8 files from $OUT)
    echo "== cross-check: FT_CUDA_GEMM=simt (linear and LoRA through the tiled SIMT GEMM)" >>"$OUT/ops.log"
    rm -f "$build"/ops_simt*.tsv
    simt() { FT_CUDA_GEMM=simt "$build/tests/test_ops_cuda" --mode test "$@" >>"$OUT/ops.log" 2>&1; }
    simt --small --filter linear,lora --summary "$build/ops_simt1.tsv"
    rc_simt=$?
    simt --big --filter "k_proj,o_proj r16,q_proj r64" --summary "$build/ops_simt2.tsv" || rc_simt=1
    # the CPU suite's own run of the small table against CUDA (check_backend(gpu, cpu))
    echo "== test_ops_cpu (its cuda vs cpu pass)" >>"$OUT/ops.log"
    "$build/tests/test_ops_cpu" >>"$OUT/ops.log" 2>&1
    rc_cpu=$?
    secs=$(($(date +%s) - t0))
    if grep -q "^SKIP cuda" "$OUT/ops.log"; then
      mark ops FAIL # this script exists to run on a GPU: a skipped device part is a failure here
      say "ops: FAIL: the CUDA backend did not start: $(grep -m1 '^SKIP cuda' "$OUT/ops.log")"
    elif [ $rc_ops -eq 0 ] && [ $rc_simt -eq 0 ] && [ $rc_cpu -eq 0 ]; then
      mark ops ok
    else
      mark ops FAIL
    fi
    say "ops: ${result[ops]} in ${secs}s (test_ops_cuda $rc_ops, simt cross-check $rc_simt, test_ops_cpu $rc_cpu)"
    grep -m1 "inputs salted" "$OUT/ops.log" | sed 's/^/  /' | tee -a "$summary" >&2
    grep -E "^FAIL" "$OUT/ops.log" | head -20 | sed 's/^/  /' | tee -a "$summary" >&2
  fi
fi

# ---- e2e: stories260K on both backends ---------------------------------------------------------------
if want e2e; then
  if [ ! -x "$ftune" ]; then
    mark e2e FAIL
    say "e2e: $ftune is missing (build first)"
  else
    args=(train --model "$root/models/stories260K" --tokens "$root/tests/fixtures/stories260K/sample_tokens.txt"
          --steps "$steps" --quant nf4 --seed 42)
    t0=$(date +%s)
    "$ftune" "${args[@]}" --device cpu >"$OUT/train_cpu.log" 2>&1
    rc_c=$?
    "$ftune" "${args[@]}" --device cuda >"$OUT/train_cuda.log" 2>&1
    rc_g=$?
    secs=$(($(date +%s) - t0))
    # step N loss X ... : compare at every step; a missing step or a NaN fails
    cmp=$(awk -v tol="$e2e_tol" -v steps="$steps" '
      FNR == 1 { f++ }
      $1 == "step" && $3 == "loss" { if (f == 1) c[$2] = $4; else g[$2] = $4 }
      END {
        worst = 0; ws = 0; bad = 0
        for (s = 1; s <= steps; s++) {
          if (!(s in c) || !(s in g)) { if (++miss <= 3) printf "  step %d missing (cpu %s, cuda %s)\n", s, (s in c) ? "present" : "absent", (s in g) ? "present" : "absent"; bad++; continue }
          d = c[s] - g[s]; if (d < 0) d = -d
          r = (c[s] != 0) ? d / (c[s] < 0 ? -c[s] : c[s]) : d
          if (g[s] != g[s] + 0 || g[s] == "nan" || g[s] == "-nan" || !(r <= tol)) bad++
          if (r > worst) { worst = r; ws = s }
          if (s <= 3 || s % 10 == 0 || !(r <= tol)) printf "  step %3d  cpu %.6f  cuda %.6f  rel %.2e%s\n", s, c[s], g[s], r, (r <= tol) ? "" : "  FAIL"
        }
        if (miss > 3) printf "  ... %d steps missing in all\n", miss
        printf "RESULT %d %.3e %d\n", bad, worst, ws
      }' "$OUT/train_cpu.log" "$OUT/train_cuda.log")
    bad=$(echo "$cmp" | awk '/^RESULT/ {print $2}')
    worst=$(echo "$cmp" | awk '/^RESULT/ {print $3" at step "$4}')
    if [ $rc_c -eq 0 ] && [ $rc_g -eq 0 ] && [ "${bad:-1}" = 0 ]; then mark e2e ok; else mark e2e FAIL; fi
    say "e2e: ${result[e2e]} in ${secs}s: stories260K nf4, $steps steps, cpu rc $rc_c, cuda rc $rc_g, worst loss gap $worst (tol $e2e_tol)"
    echo "$cmp" | grep -v '^RESULT' | tee -a "$summary" >&2
    [ $rc_g -eq 0 ] || tail -5 "$OUT/train_cuda.log" | sed 's/^/  /' | tee -a "$summary" >&2
  fi
fi

# ---- sanitize: memory errors, shared-memory races and uninitialized reads on the real hardware -------
if want sanitize; then
  san="$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)"
  if [ ! -x "$san" ]; then
    mark sanitize skipped
    say "sanitize: skipped (compute-sanitizer not found)"
  elif [ ! -x "$build/tests/test_ops_cuda" ]; then
    mark sanitize FAIL
    say "sanitize: $build/tests/test_ops_cuda is missing (build first)"
  else
    t0=$(date +%s)
    : >"$OUT/sanitize.log"
    san_rc=0
    for tool in memcheck racecheck initcheck; do
      echo "== compute-sanitizer --tool $tool" >>"$OUT/sanitize.log"
      "$san" --tool "$tool" --error-exitcode 97 "$build/tests/test_ops_cuda" --small --mode test \
        >>"$OUT/sanitize.log" 2>&1
      rc=$?
      echo "== $tool exit $rc" >>"$OUT/sanitize.log"
      [ $rc -eq 0 ] || san_rc=1
      say "sanitize: $tool exit $rc ($(grep -c '^=========.*[Ee]rror' "$OUT/sanitize.log") error lines so far)"
    done
    if [ $san_rc -eq 0 ]; then mark sanitize ok; else mark sanitize FAIL; fi
    say "sanitize: ${result[sanitize]} in $(($(date +%s) - t0))s (sanitize.log)"
  fi
fi

# ---- bench (issue 8: `ftune bench` does not exist yet) ----------------------------------------------------
if want bench; then
  if [ -x "$ftune" ] && "$ftune" bench --help >/dev/null 2>&1; then
    if "$ftune" bench --device cuda >"$OUT/bench.log" 2>&1; then mark bench ok; else mark bench FAIL; fi
    say "bench: ${result[bench]} (bench.log)"
  else
    mark bench skipped
    say "bench: skipped (ftune bench not present yet)"
  fi
fi

# ---- the one summary table -----------------------------------------------------------------------------
{
  echo
  if [ -s "$ops_tsv" ]; then
    echo "== ops: cuda vs cpu (rel_l2 = ||cuda - cpu|| / ||cpu||; BF16 results 1e-2, f32 results 1e-5; ms per call;"
    echo "   rate: TFLOP/s of the products, or GB/s of the fewest bytes a memory-bound op must move)"
    awk -F'\t' 'NR == 1 { printf "%-5s %-13s %-30s %-34s %9s %9s %6s %9s %11s  %s\n", "table", "op", "case",
                                 "shape", "fwd err", "bwd err", "tol", "ms", "rate", "status" }
                NR > 1 { printf "%-5s %-13s %-30s %-34s %9s %9s %6s %9s %11s  %s\n", $1, $2, $3, $4, $5, $6, $7, $9,
                                $10, $11 }' "$ops_tsv"
    echo "   $(awk -F'\t' 'NR > 1 { n++; if ($11 != "ok") f++ } END { printf "%d cases, %d failed", n, f }' "$ops_tsv")"
    if ls "$build"/ops_simt*.tsv >/dev/null 2>&1; then
      echo "   simt GEMM cross-check: $(awk -F'\t' 'FNR > 1 { n++; if ($11 != "ok") f++ } END { printf "%d cases, %d failed", n, f }' "$build"/ops_simt*.tsv)"
    fi
  fi
  echo
  echo "== phases"
  for p in build ops e2e sanitize bench; do
    [ -n "${result[$p]:-}" ] && printf "  %-6s %s\n" "$p" "${result[$p]}"
  done
  echo "  logs: $OUT ($(cd "$OUT" && echo *))"
  [ $overall -eq 0 ] && echo "ALL PASSED" || echo "FAILURES (see above and the logs)"
} | tee -a "$summary"
exit $overall
