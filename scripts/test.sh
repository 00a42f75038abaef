#!/usr/bin/env bash
# Builds ftune and runs every test (CTest). The one test command of the README and of CI.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bash "$root/scripts/install-deps.sh"
bash "$root/scripts/build.sh"
cd "${FT_BUILD_DIR:-$root/build}"
ctest --output-on-failure -j"$(nproc)" "$@"
