#!/usr/bin/env bash
# Installs what is missing, builds, and runs the demo end to end on the stories260K model that
# ships in models/ (nothing outside the repository is needed).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bash "$root/scripts/install-deps.sh"
bash "$root/scripts/build.sh"
ftune="${FT_BUILD_DIR:-$root/build}/ftune"
model="$root/models/stories260K"
echo "== ftune eval: forward-pass loss of the pretrained demo model on a sample"
"$ftune" eval --model "$model" --tokens "$root/tests/fixtures/stories260K/sample_tokens.txt"
echo "== ftune generate: greedy continuation of BOS, then the text"
ids=$("$ftune" generate --model "$model" --tokens 1 -n 48)
echo "$ids"
if "$ftune" tokenize --help >/dev/null 2>&1; then
  echo "$ids" | "$ftune" tokenize --tokenizer "$model" --decode
fi
