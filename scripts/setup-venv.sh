#!/usr/bin/env bash
# Create the Python virtual environment used ONLY by the reference scripts in tests/ref/ (the goldens under
# tests/fixtures/ and models/stories260K/ were made with exactly these versions; see
# tests/fixtures/PROVENANCE.md).  The product (ftune) never needs Python.
#
# The venv lives outside the repository: $FT_VENV, default $HOME/.cache/ftune-venv.
#   scripts/setup-venv.sh            create (or update) it
#   FT_VENV=/path scripts/setup-venv.sh
#   FT_TORCH_INDEX=https://download.pytorch.org/whl/cpu scripts/setup-venv.sh   # CPU-only torch wheel
# Then:  $FT_VENV/bin/python tests/ref/make_forward_golden.py   (etc.)
# Needs python3 >= 3.10 (the goldens were made with CPython 3.11.7).  CPU is enough for every script.
set -euo pipefail

VENV="${FT_VENV:-$HOME/.cache/ftune-venv}"
PY="${PYTHON:-python3}"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

case "$(cd "$(dirname "$VENV")" 2>/dev/null && pwd)/" in
  "$REPO"/*) echo "setup-venv.sh: refusing to create the venv inside the repository ($VENV)" >&2; exit 2 ;;
esac

# Pinned reference versions (the ones that produced the committed fixtures).
PINS=(
  "torch==2.15.0"
  "transformers==5.23.0"
  "peft==0.21.2"
  "bitsandbytes==0.50.2"
  "tokenizers==0.23.3"
  "sentencepiece==0.2.3"
  "safetensors==0.8.0"
  "numpy==2.4.6"
  "protobuf==7.36.2"
  "gguf==0.19.0"
  "accelerate==1.15.0"
  "huggingface_hub==2.4.0"
)

if [ ! -x "$VENV/bin/python" ]; then
  mkdir -p "$(dirname "$VENV")"
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --upgrade pip
if [ -n "${FT_TORCH_INDEX:-}" ]; then
  "$VENV/bin/python" -m pip install --index-url "$FT_TORCH_INDEX" "${PINS[0]}"
fi
"$VENV/bin/python" -m pip install "${PINS[@]}"
"$VENV/bin/python" - <<'PYEOF'
from importlib.metadata import version
for d in ("torch", "transformers", "peft", "bitsandbytes", "tokenizers", "sentencepiece", "safetensors",
          "numpy", "protobuf", "gguf"):
    print(f"{d:14s} {version(d)}")
import torch, transformers, peft, bitsandbytes, tokenizers, sentencepiece, safetensors, numpy, google.protobuf, gguf
PYEOF
echo "venv ready: $VENV"
