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
echo "$ids" | "$ftune" tokenize --tokenizer "$model" --decode
echo "== ftune plan: memory and time of the demo recipe, before anything is loaded"
"$ftune" plan "$root/recipes/demo-stories260k.yaml" --device cpu
echo "== ftune train: LoRA on an NF4 base over 200 short stories (writes ./runs/demo-stories260k)"
rm -rf runs/demo-stories260k
"$ftune" train "$root/recipes/demo-stories260k.yaml"
run=runs/demo-stories260k
echo "== samples the model wrote during training:"
tail -n 4 "$(ls "$run"/samples/step-*.txt | tail -1)"
echo "== ftune inspect: the exported llama.cpp adapter and the merged Q8_0 model"
"$ftune" inspect "$run/final/adapter.gguf" | sed -n 1,16p
"$ftune" inspect "$run/final/model-q8_0.gguf" | sed -n 1,40p
echo "== done: $run holds the adapter (PEFT + GGUF), the merged Q8_0 GGUF, metrics.jsonl and loss.svg"
