#!/usr/bin/env bash
# Creates (when missing or out of date) the Python venv of the llama.cpp interop test
# (tests/cli/export_interop.sh -> tests/ref/interop_llamacpp.py): llama-cpp-python, gguf and numpy
# from PyPI, pinned; and tensorboard, whose own readers check the run's event files
# (tests/cli/run_tensorboard.sh -> tests/ref/read_tfevents.py; wheels, seconds to install).
# llama-cpp-python builds llama.cpp from source (about 6-10 minutes on two cores; measured in the
# export report); nothing else is downloaded and nothing is cached by hand:
# an existing venv with the pinned versions is reused as it is.
# The venv lives outside the repository: $FT_INTEROP_VENV, default
# ${XDG_CACHE_HOME:-$HOME/.cache}/ftune-interop-venv. No torch is needed (PEFT's reference logits
# are committed fixtures made by tests/ref/make_export_golden.py).
set -euo pipefail
VENV="${FT_INTEROP_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/ftune-interop-venv}"
PY="${PYTHON:-python3}"
PINS=("llama-cpp-python==0.3.36" "gguf==0.19.0" "numpy==2.4.6" "tensorboard==2.21.0")
check() {
  "$VENV/bin/python" - "$@" <<'PYEOF' >/dev/null 2>&1
import sys
from importlib.metadata import version
want = dict(a.split("==") for a in sys.argv[1:])
assert all(version(k) == v for k, v in want.items())
import llama_cpp, gguf, numpy, tensorboard  # noqa: F401
PYEOF
}
if [ -x "$VENV/bin/python" ] && check "${PINS[@]}"; then
  echo "interop venv ready: $VENV"
  exit 0
fi
echo "setup-interop-venv: installing ${PINS[*]} into $VENV (llama-cpp-python compiles llama.cpp: minutes)"
mkdir -p "$(dirname "$VENV")"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
start=$(date +%s)
CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}" "$VENV/bin/python" -m pip install -q "${PINS[@]}"
check "${PINS[@]}" || { echo "setup-interop-venv: the installed packages do not import" >&2; exit 1; }
echo "interop venv ready: $VENV (installed in $(( $(date +%s) - start ))s)"
