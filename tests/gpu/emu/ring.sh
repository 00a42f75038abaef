#!/usr/bin/env bash
# tests/gpu/emu/ring.sh: checks the order in which trainer/model.c names and reads the frozen weights
# against tests/bench/wcache_ring_sim.py, on the emulated CUDA backend (no GPU). For each variant the
# emulated `ftune bench` (shape tiny, 6 layers) reports the weight cache's counts for its last step
# (prefetched, waited for, dequantized on the compute stream, reused: kernels/cuda/wcache.cu), and
# the simulation predicts them from the order it replays; they must agree exactly. The build uses a
# 256-byte scratch rounding, so that the ring holds one tiny layer as it holds one real layer (with
# the default whole MiB a tiny ring holds several layers: `--round 1048576` replays that).
#
# A disagreement means the model's order and the simulation's have drifted apart: the simulation's
# figures for the real shapes (docs/perf.md) then no longer say what the GPU does. Not part of CI:
# about 5 minutes to build and 6 a variant on two cores.
#
# usage: tests/gpu/emu/ring.sh [KEEP...]      (default: 0 3 6 -1; -1: no recompute)
#   FT_EMU_BUILD   build directory (default build-emu-r256; built with -DFT_CUDA_SCRATCH_ROUND=256)
set -euo pipefail
root="$(cd "$(dirname "$0")/../../.." && pwd)"
export FT_EMU_BUILD="${FT_EMU_BUILD:-$root/build-emu-r256}"
export FT_EMU_CFLAGS="-DFT_CUDA_SCRATCH_ROUND=256"
[ $# -eq 0 ] && set -- 0 3 6 -1
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
fail=0
for k in "$@"; do
  args=(--device cuda --shape tiny --layers 6 --seq 32 --micro-batch 1 --steps 2 --json "$tmp/k.json")
  if [ "$k" = -1 ]; then args+=(--no-recompute); else args+=(--keep-layers "$k"); fi
  if ! "$root/tests/gpu/emu/run.sh" ftune bench "${args[@]}" >"$tmp/k.log" 2>&1; then
    echo "FAIL keep $k: the emulated bench failed (last lines below)"
    tail -5 "$tmp/k.log"
    fail=1
    continue
  fi
  got=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))["dequant"]
print(*(int(d[k]) for k in ("prefetched", "waited", "on_compute", "reused")))' "$tmp/k.json")
  want=$(python3 "$root/tests/bench/wcache_ring_sim.py" --shape tiny --layers 6 --round 256 --counts --keep "$k")
  if [ "$got" = "$want" ]; then
    echo "ok   keep $k: prefetched, waited for, on the compute stream, reused = $got, as simulated"
  else
    echo "FAIL keep $k: the emulated bench counted $got, the simulation $want (prefetched, waited for, on the compute stream, reused)"
    fail=1
  fi
done
exit $fail
