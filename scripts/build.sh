#!/usr/bin/env bash
# Configures and builds ftune into ${FT_BUILD_DIR:-build}. CUDA is built when nvcc is found
# (on PATH or in /usr/local/cuda/bin); FT_CUDA=OFF in the environment turns it off.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${FT_BUILD_DIR:-$root/build}"
if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
  export PATH="/usr/local/cuda/bin:$PATH"
fi
args=(-S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release)
[ -n "${FT_CUDA:-}" ] && args+=("-DFT_CUDA=$FT_CUDA")
cmake "${args[@]}" >/dev/null
cmake --build "$build" -j"$(nproc)"
