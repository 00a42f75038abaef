#!/usr/bin/env bash
# `ftune merge`, `ftune eval --adapter` and `ftune export` of a DoRA adapter (PEFT's use_dora): the PEFT
# adapters of tests/fixtures/train_dora/<case> (tests/ref/make_dora_golden.py) on tests/fixtures/forward/<case>:
# llama_gqa4 (a llama-arch GGUF permutes its q/k rows) and qwen2 (tied, q/k/v biases). tests/test_merge_tokens.c
# and test_adapter_dora.c check the numbers through the library; this is the command line:
#   - merge --type safetensors, then `ftune eval --dump-logits`: PEFT's merge_and_unload() logits
#     (merged_logits.bin) within 1e-5 (max |d| / max |ref|);
#   - eval --adapter (applied on the fly): PeftModel's logits (logits.bin) within 1e-5;
#   - merge --merge-into nf4 --type f32 --check: the merged file's loss is the training-time model's
#     (NF4 base + DoRA adapter: the norms from the same NF4 weights), 1e-4;
#   - export --format gguf (with --ollama): refused with one line pointing at `ftune merge`, nothing written;
#     export --format peft, merged again: the same bytes as the merge of PEFT's own directory;
#   - a recipe with lora.dora and export.formats gguf: refused before training, naming the key.
# The fixtures have no tokenizer: a byte-level BPE of exactly 256 ids is made here (as merge_tokens.sh).
# usage: merge_dora.sh FTUNE SRC_DIR
set -u
ftune=$(realpath "$1"); src=$(realpath "$2")
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
ok()  { pass=$((pass+1)); echo "ok   $*"; }
bad() { fail=$((fail+1)); echo "FAIL $*"; }
near() { awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a != "" && b != "" && d <= t) }'; }
. "$src/tests/cli/lib/compare.sh"

python3 "$src/tests/cli/lib/tiny_bpe.py" "$tmp/tokenizer.json"

for c in llama_gqa4 qwen2; do
  fx="$src/tests/fixtures/forward/$c"; tc="$src/tests/fixtures/train_dora/$c"; ad="$tc/peft_adapter"; m="$tmp/$c"
  mkdir -p "$m"; cp "$fx"/config.json "$fx"/model.safetensors "$tmp/tokenizer.json" "$m/"

  # merged checkpoint: PEFT's merged logits
  if "$ftune" merge --base "$m" --adapter "$ad" --out "$tmp/$c-merged" --type safetensors >"$tmp/out" 2>"$tmp/err" &&
     "$ftune" eval --model "$tmp/$c-merged" --tokens "$tc/tokens0.txt" --dump-logits "$tmp/$c.bin" --device cpu \
       --threads 1 >"$tmp/out" 2>"$tmp/err"; then
    e=$(relerr "$tmp/$c.bin" "$tc/merged_logits.bin")
    le "$e" 1e-5 && ok "$c: DoRA merged safetensors, eval logits vs PEFT merge_and_unload: $e (<= 1e-5)" \
      || bad "$c: DoRA merged safetensors logits vs PEFT: $e"
  else
    bad "$c: merge/eval: $(grep -i error "$tmp/err" | head -2)"
  fi

  # on the fly: PeftModel's logits
  if "$ftune" eval --model "$m" --adapter "$ad" --tokens "$tc/tokens0.txt" --dump-logits "$tmp/$c-fly.bin" \
       --device cpu --threads 1 >"$tmp/out" 2>"$tmp/err"; then
    e=$(relerr "$tmp/$c-fly.bin" "$tc/logits.bin")
    le "$e" 1e-5 && ok "$c: eval --adapter (DoRA on the fly) vs PeftModel logits: $e (<= 1e-5)" \
      || bad "$c: eval --adapter vs PeftModel logits: $e"
  else
    bad "$c: eval --adapter: $(grep -i error "$tmp/err" | head -2)"
  fi

  # --merge-into nf4: the merged f32 loss is the training-time (NF4 base + adapter) loss
  "$ftune" merge --base "$m" --adapter "$ad" --out "$tmp/$c-nf4.gguf" --type f32 --merge-into nf4 \
    --check "$tc/tokens0.txt" --threads 1 >"$tmp/out" 2>"$tmp/err"; rc=$?
  train=$(sed -n 's/.*training-time loss *\([0-9.]*\).*/\1/p' "$tmp/out")
  merged=$(sed -n 's/.*merged f32 *loss *\([0-9.]*\).*/\1/p' "$tmp/out")
  [ $rc -eq 0 ] && near "$merged" "$train" 1e-4 && ! grep -q "loss skipped" "$tmp/err" \
    && ok "$c --check --merge-into nf4: merged f32 loss $merged == training-time (NF4 base + DoRA adapter) $train" \
    || bad "$c --check --merge-into nf4: exit $rc, merged '$merged', training-time '$train' $(grep -iE "error|skipped" "$tmp/err")"

  # llama.cpp adapter (and Ollama's Modelfile): refused, nothing written
  out="$tmp/$c-gguf/adapter.gguf"; mkdir -p "$tmp/$c-gguf"
  "$ftune" export "$ad" --format gguf --base "$m" --out "$out" --ollama >"$tmp/out" 2>"$tmp/err"; rc=$?
  [ $rc -eq 1 ] && [ "$(grep -vc '^libgcov' "$tmp/err")" -eq 1 ] && grep -q "DoRA adapter (use_dora) cannot go into a llama.cpp adapter.*ftune merge" "$tmp/err" \
    && [ -z "$(ls -A "$tmp/$c-gguf")" ] \
    && ok "$c: export --format gguf --ollama refused, nothing written: $(head -c 110 "$tmp/err")" \
    || bad "$c: export --format gguf of a DoRA adapter: exit $rc, $(ls -A "$tmp/$c-gguf") $(head -3 "$tmp/err")"

  # PEFT export: merging it gives the same bytes
  if "$ftune" export "$ad" --format peft --out "$tmp/$c-peft" >"$tmp/out" 2>"$tmp/err" &&
     grep -q '"use_dora":.*true' "$tmp/$c-peft/adapter_config.json" &&
     "$ftune" merge --base "$m" --adapter "$tmp/$c-peft" --out "$tmp/$c-merged2" --type safetensors >"$tmp/out" 2>"$tmp/err" &&
     cmp -s "$tmp/$c-merged/model.safetensors" "$tmp/$c-merged2/model.safetensors"; then
    ok "$c: export --format peft (use_dora true), merged: the bytes of PEFT's own directory merged"
  else
    bad "$c: PEFT export round trip: $(grep -i error "$tmp/err" | head -2)"
  fi
done

# a recipe asking for a llama.cpp adapter of a DoRA run: refused before anything runs
"$ftune" train "$src/recipes/demo-stories260k.yaml" --set lora.dora=true --set lora.dropout=0 \
  --set export.formats=peft,gguf --set output_dir="$tmp/run" >"$tmp/out" 2>"$tmp/err"; rc=$?
[ $rc -ne 0 ] && grep -q "export.formats.*DoRA.*llama.cpp" "$tmp/err" && [ ! -e "$tmp/run" ] \
  && ok "recipe lora.dora + export.formats gguf refused: $(head -c 120 "$tmp/err")" \
  || bad "recipe lora.dora + gguf: exit $rc, $(head -3 "$tmp/err")"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
