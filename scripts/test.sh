#!/usr/bin/env bash
# Builds ftune and runs every test (CTest), then rebuilds without CUDA under AddressSanitizer +
# UBSan and reruns the bad-input suites (label "asan"). The one test command of the README and CI.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bash "$root/scripts/install-deps.sh"
bash "$root/scripts/build.sh"
( cd "${FT_BUILD_DIR:-$root/build}" && ctest --output-on-failure -j"$(nproc)" "$@" )
if [ "${FT_SKIP_ASAN:-0}" != 1 ]; then
  asan="$root/build-asan"
  cmake -S "$root" -B "$asan" -DFT_CUDA=OFF -DFT_SANITIZE=address,undefined -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$asan" -j"$(nproc)"
  ( cd "$asan" && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
      ctest --output-on-failure -L asan -j"$(nproc)" )
fi
