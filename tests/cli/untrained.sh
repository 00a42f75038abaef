#!/usr/bin/env bash
# Untrained template tokens (trainer/untrained.h). Llama 3 base checkpoints ship <|eot_id|> and the
# header tokens as zero rows of embed_tokens and lm_head, which LoRA leaves frozen: an adapter
# cannot teach such a base to end its answers. Here stories260K (tied embeddings) with the rows
# of BOS (1) and EOS (2) zeroed stands in: the run must name BOS as a prompt token with an
# untrained embedding and EOS as an end of answer with an untrained lm_head row, then train as
# usual; the unmodified model draws no such warning.
# usage: untrained.sh FTUNE SRC_DIR
set -u
ftune=$(realpath "$1"); src=$(realpath "$2")
fx="$src/tests/fixtures/run"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
ok()  { pass=$((pass+1)); echo "ok   $*"; }
bad() { fail=$((fail+1)); echo "FAIL $*"; }

cp -r "$src/models/stories260K" "$tmp/m"
st="$tmp/m/model.safetensors"
hl=$(od -An -t u8 -N8 "$st" | tr -d ' ')
head -c 4096 "$st" | grep -q '"model.embed_tokens.weight":{"dtype":"F32","shape":\[512,64\],"data_offsets":\[0,' \
  || bad "fixture: embed_tokens is not the first F32 [512,64] tensor"
row=$((64 * 4))
dd if=/dev/zero of="$st" bs=1 seek=$((8 + hl + 1 * row)) count=$((2 * row)) conv=notrunc 2>/dev/null  # rows 1, 2

run() { "$ftune" train "$fx/tiny.yaml" --set output_dir="$tmp/$1" --set model.path="$2" --set training.steps=2 --set training.warmup=1 \
          --set eval.every_steps=0 >/dev/null 2>"$tmp/$1.err"; }
run z "$tmp/m"; rc=$?
[ $rc -eq 0 ] && ok "the run trains (exit 0)" || bad "exit $rc: $(tail -3 "$tmp/z.err")"
grep -q "warning: $tmp/m: the template's token <s> (1) has an untrained embedding in this base (a zero row)" "$tmp/z.err" \
  && ok "BOS named: $(grep -o "the template's token <s>[^:]*" "$tmp/z.err")" || bad "BOS warning: $(grep -i untrained "$tmp/z.err")"
grep -q "warning: $tmp/m: </s> (2), which ends an answer, has an untrained lm_head row in this base" "$tmp/z.err" \
  && ok "EOS named: $(grep -o '</s> (2), which ends[^:]*' "$tmp/z.err")" || bad "EOS warning: $(grep -i untrained "$tmp/z.err")"
[ "$(grep -c untrained "$tmp/z.err")" -eq 2 ] && ok "two warning lines, nothing else flagged" || bad "$(grep untrained "$tmp/z.err")"

run p "$src/models/stories260K"; rc=$?
[ $rc -eq 0 ] && ! grep -q untrained "$tmp/p.err" && ok "the pretrained model draws no warning" \
  || bad "pretrained: exit $rc $(grep untrained "$tmp/p.err")"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
