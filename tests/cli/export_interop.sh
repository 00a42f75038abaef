#!/usr/bin/env bash
# Real llama.cpp against ftune's GGUF files (tests/ref/interop_llamacpp.py): the four families'
# tiny models, merged and base+adapter GGUFs vs PEFT's logits, Q8_0/Q4_K_M vs llama.cpp's own
# quantizer, greedy tokens. Needs the interop venv (scripts/setup-interop-venv.sh, made here when
# missing: PyPI access, minutes the first time) and ../shared/assets (real tokenizers).
# FT_SKIP_INTEROP=1 skips it on a machine without PyPI; CI never sets it.
# usage: export_interop.sh FTUNE SRC_DIR
set -euo pipefail
ftune="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"; src="$(cd "$2" && pwd)"
if [ "${FT_SKIP_INTEROP:-0}" = 1 ]; then
  echo "interop skipped (FT_SKIP_INTEROP=1)"; echo "0 passed, 0 failed"; exit 0
fi
venv="${FT_INTEROP_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/ftune-interop-venv}"
bash "$src/scripts/setup-interop-venv.sh"
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
"$venv/bin/python" "$src/tests/ref/interop_llamacpp.py" --ftune "$ftune" --work "$work"
