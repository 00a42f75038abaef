#!/usr/bin/env bash
# `ftune merge` and `ftune export` of an adapter with trainable tokens (PEFT's trainable_token_indices):
# the PEFT adapters of tests/fixtures/train_tokens/<case> (tests/ref/make_trainable_tokens_golden.py) on
# tests/fixtures/forward/<case>: llama_gqa4 (untied: embedding + lm_head rows), llama_mha_tied (embedding
# rows only; lm_head is the embedding). tests/test_merge_tokens.c checks the numbers through the library;
# this is the command line:
#   - merge --type safetensors, then `ftune eval --dump-logits`: PEFT's merge_and_unload() logits
#     (logits_merged.bin) within 1e-5 (max |d| / max |ref|);
#   - merge --check: the training-time model (NF4 base + adapter with its token rows, as `eval --adapter`
#     applies it) beside the merged file; --merge-into nf4 at F32 must give the training-time loss;
#   - export --format gguf: the untied case writes its token_embd / output pairs; the tied case is refused
#     with one line pointing at `ftune merge`, nothing left at the output.
# The fixtures have no tokenizer: a byte-level BPE of exactly 256 ids is made here (as merge_arch.sh).
# usage: merge_tokens.sh FTUNE SRC_DIR
set -u
ftune=$(realpath "$1"); src=$(realpath "$2")
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
ok()  { pass=$((pass+1)); echo "ok   $*"; }
bad() { fail=$((fail+1)); echo "FAIL $*"; }
near() { awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a != "" && b != "" && d <= t) }'; }
. "$src/tests/cli/lib/compare.sh"

python3 "$src/tests/cli/lib/tiny_bpe.py" "$tmp/tokenizer.json"

for c in llama_gqa4 llama_mha_tied; do
  fx="$src/tests/fixtures/forward/$c"; tc="$src/tests/fixtures/train_tokens/$c"; ad="$tc/peft_adapter"; m="$tmp/$c"
  mkdir -p "$m"; cp "$fx"/config.json "$fx"/model.safetensors "$tmp/tokenizer.json" "$m/"

  # merged checkpoint: PEFT's merged logits
  if "$ftune" merge --base "$m" --adapter "$ad" --out "$tmp/$c-merged" --type safetensors >"$tmp/out" 2>"$tmp/err" &&
     "$ftune" eval --model "$tmp/$c-merged" --tokens "$tc/tokens0.txt" --dump-logits "$tmp/$c.bin" --device cpu \
       --threads 1 >"$tmp/out" 2>"$tmp/err"; then
    peft=$(sed -n 's/^loss \([0-9.]*\)$/\1/p' "$tmp/out")
    e=$(relerr "$tmp/$c.bin" "$tc/logits_merged.bin")
    le "$e" 1e-5 && ok "$c: merged safetensors, eval logits vs PEFT merge_and_unload: $e (<= 1e-5)" \
      || bad "$c: merged safetensors logits vs PEFT: $e"
  else
    bad "$c: merge/eval: $(grep -i error "$tmp/err" | head -2)"
  fi

  # --check: the merged GGUF's loss is the merged checkpoint's (PEFT's logits); the training-time model
  # carries the token rows: merging into the NF4 round trip reproduces its loss
  for into in base nf4; do
    "$ftune" merge --base "$m" --adapter "$ad" --out "$tmp/$c-$into.gguf" --type f32 --merge-into $into \
      --check "$tc/tokens0.txt" --threads 1 >"$tmp/out" 2>"$tmp/err"; rc=$?
    train=$(sed -n 's/.*training-time loss *\([0-9.]*\).*/\1/p' "$tmp/out")
    merged=$(sed -n 's/.*merged f32 *loss *\([0-9.]*\).*/\1/p' "$tmp/out")
    ref=$([ $into = nf4 ] && echo "$train" || echo "${peft:-}")
    [ $rc -eq 0 ] && near "$merged" "$ref" 1e-4 && ! grep -q "loss skipped" "$tmp/err" \
      && ok "$c --check --merge-into $into: merged f32 loss $merged (want $ref), training-time (NF4 + adapter) $train" \
      || bad "$c --check --merge-into $into: exit $rc, merged '$merged' (want '$ref'), training-time '$train' $(grep -iE "error|skipped" "$tmp/err")"
  done

  # llama.cpp adapter
  out="$tmp/$c-adapter.gguf"
  "$ftune" export "$ad" --format gguf --base "$m" --out "$out" >"$tmp/out" 2>"$tmp/err"; rc=$?
  if [ $c = llama_mha_tied ]; then
    [ $rc -eq 1 ] && grep -q "tied model cannot go into a llama.cpp adapter: .*ftune merge" "$tmp/err" && [ ! -e "$out" ] \
      && ! ls "$tmp" | grep -q "adapter.gguf.*tmp" \
      && ok "$c: export --format gguf refused: $(grep -o 'trainable tokens of a tied.*' "$tmp/err" | head -c 120)" \
      || bad "$c: export of a tied model's tokens: exit $rc: $(cat "$tmp/err" | head -3)"
  else
    "$ftune" inspect "$out" >"$tmp/insp" 2>&1
    [ $rc -eq 0 ] && grep -qE "token_embd.weight.lora_a +F32 +\[3, 256\]" "$tmp/insp" \
      && grep -qE "output.weight.lora_b +F32 +\[3, 256\]" "$tmp/insp" \
      && ok "$c: export --format gguf holds token_embd / output rank-3 pairs" \
      || bad "$c: export: exit $rc $(grep -i error "$tmp/err") $(grep -E "token_embd|output" "$tmp/insp")"
  fi
done

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
