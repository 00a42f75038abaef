#!/usr/bin/env bash
# `ftune merge --check` on every architecture of the tiny forward fixtures (tests/fixtures/forward:
# Llama with GQA and with tied embeddings, Mistral, Qwen2 with q/k/v biases, Qwen3 with q/k norms).
# export.sh merges stories260K (Llama) only: the GGUF read-back of the check (trainer/cmd_merge.c)
# had never loaded a bias, a q/k norm or a model without output.weight. For each case the merged
# F32 GGUF's loss on the fixture's tokens.txt must be transformers' float32 loss (loss.json, made
# by tests/ref/make_forward_golden.py) within 1e-4, and the training-time loss beside it
# bitsandbytes' NF4 round trip's (loss_nf4.json); --merge-into nf4 must give the training-time
# loss itself. The fixtures have no tokenizer: a byte-level BPE of exactly 256 ids (their
# vocab_size) with Qwen2's Split regex is made here; the GGUF must carry it as gpt2/qwen2.
# usage: merge_arch.sh FTUNE SRC_DIR
set -u
ftune=$(realpath "$1"); src=$(realpath "$2")
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
ok()  { pass=$((pass+1)); echo "ok   $*"; }
bad() { fail=$((fail+1)); echo "FAIL $*"; }
near() { awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a != "" && b != "" && d <= t) }'; }

# a 256-token byte-level BPE tokenizer for the tiny models (tests/cli/lib/tiny_bpe.py)
python3 "$src/tests/cli/lib/tiny_bpe.py" "$tmp/tokenizer.json" --split-regex

jloss() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["loss"])' "$1"; }
for c in llama_gqa4 llama_mha_tied mistral qwen2 qwen3; do
  fx="$src/tests/fixtures/forward/$c"; m="$tmp/$c"
  mkdir -p "$m"; cp "$fx"/config.json "$fx"/model*.safetensors* "$tmp/tokenizer.json" "$m/"
  want=$(jloss "$fx/loss.json"); want_nf4=$(jloss "$fx/loss_nf4.json")
  for into in base nf4; do
    "$ftune" merge --base "$m" --out "$tmp/$c-$into.gguf" --type f32 --merge-into $into --check "$fx/tokens.txt" \
      --threads 1 >"$tmp/out" 2>"$tmp/err"; rc=$?
    train=$(sed -n 's/.*base NF4 loss *\([0-9.]*\).*/\1/p' "$tmp/out"); merged=$(sed -n 's/.*merged f32 *loss *\([0-9.]*\).*/\1/p' "$tmp/out")
    ref=$([ $into = base ] && echo "$want" || echo "$train")
    [ $rc -eq 0 ] && near "$merged" "$ref" 1e-4 && near "$train" "$want_nf4" 1e-4 \
      && ok "$c --merge-into $into: merged loss $merged (want $ref), training-time $train (bitsandbytes $want_nf4)" \
      || bad "$c --merge-into $into: exit $rc, merged '$merged' (want $ref), training-time '$train' (want $want_nf4) $(grep error "$tmp/err")"
  done
  "$ftune" inspect "$tmp/$c-base.gguf" >"$tmp/insp" 2>&1
  case $c in
    qwen2) has="blk.0.attn_q.bias"; hasnt="blk.0.attn_q_norm.weight" ;;
    qwen3) has="blk.0.attn_q_norm.weight"; hasnt="blk.0.attn_q.bias" ;;
    llama_mha_tied) has="token_embd.weight"; hasnt="output.weight" ;;
    *) has="output.weight"; hasnt="blk.0.attn_q.bias" ;;
  esac
  grep -qE "^ +[0-9]+ $has " "$tmp/insp" && ! grep -qE "^ +[0-9]+ $hasnt " "$tmp/insp" \
    && grep -qE "tokenizer.ggml.pre +STRING +qwen2$" "$tmp/insp" && ok "$c: GGUF holds $has, not $hasnt; tokenizer pre qwen2" \
    || bad "$c: inspect: $(grep -E "$has|$hasnt|tokenizer.ggml.pre" "$tmp/insp" | head -3)"
done

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
