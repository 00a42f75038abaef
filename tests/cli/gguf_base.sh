#!/usr/bin/env bash
# A GGUF model file as the base of every command (model.path / --model / --tokenizer: FILE.gguf), on
# the tiny bases llama.cpp quantized in tests/fixtures/gguf_base (tests/ref/make_gguf_base_golden.py):
#   - `ftune eval --model X.gguf` gives transformers' logits on gguf-py's decoding of the same blocks
#     (Q4_K_M, Q3_K_M, IQ4_XS, IQ4_NL);
#   - the GGUF's vocabulary tokenizes as the tokenizer.json it was made from (`tokenize --tokenizer`);
#   - `ftune plan` counts the linears as stored (mixed Q4_K/Q6_K bytes, not NF4's; IQ4_XS 4.25 and
#     IQ4_NL 4.5 bits a weight);
#   - a recipe run trains on it (loss falls), keeps the linears' types, exports the adapter (llama.cpp
#     GGUF + PEFT naming the .gguf as its base), and `eval --adapter` / `generate` use it; killed
#     (SIGKILL) and resumed it ends with the same adapter byte for byte;
#   - bad GGUF files get one line naming the file, never a crash: keys the tensors contradict
#     (block_count, feed_forward_length) before anything is sized from them, IQ types other than
#     IQ4_NL / IQ4_XS by name (lib/gguf_edit.py edits the fixtures' headers in place).
# usage: gguf_base.sh FTUNE SRC_DIR
set -u
ftune=$(realpath "$1"); src=$(realpath "$2")
fx="$src/tests/fixtures/gguf_base"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
ok()  { pass=$((pass+1)); echo "ok   $*"; }
bad() { fail=$((fail+1)); echo "FAIL $*"; }
source "$src/tests/cli/lib/compare.sh" # relerr, le

for c in llama_q4_k_m qwen3_q3_k_m llama_iq4_xs qwen3_iq4_nl; do
  "$ftune" eval --model "$fx/$c/model.gguf" --tokens "$fx/$c/tokens.txt" --dump-logits "$tmp/$c.bin" --device cpu \
    >/dev/null 2>"$tmp/$c.err" || bad "$c: eval failed: $(cat "$tmp/$c.err")"
  e=$(relerr "$tmp/$c.bin" "$fx/$c/logits.bin")
  le "$e" 1e-5 && ok "$c: eval --model X.gguf vs transformers on gguf-py's decoding: rel err $e" || bad "$c: rel err $e"
done

# the vocabulary in the GGUF tokenizes as the tokenizer.json it came from
text='Once upon a time, 42 robots sang to the gulls!  The end.'
a=$(printf '%s' "$text" | "$ftune" tokenize --tokenizer "$fx/llama_q4_k_m" 2>&1)
b=$(printf '%s' "$text" | "$ftune" tokenize --tokenizer "$fx/llama_q4_k_m/model.gguf" 2>&1)
[ -n "$a" ] && [ "$a" = "$b" ] && ok "tokenize --tokenizer X.gguf equals tokenizer.json: $b" || bad "tokenize: json '$a' vs gguf '$b'"
d=$(printf '%s' "$b" | "$ftune" tokenize --tokenizer "$fx/llama_q4_k_m/model.gguf" --decode 2>&1)
[ "$d" = "$text" ] && ok "decode round trip" || bad "decode: '$d'"

# a recipe on the Q4_K_M base
cat >"$tmp/r.yaml" <<EOF
model: {path: $fx/llama_q4_k_m/model.gguf, quant: nf4, device: cpu, threads: 2}
lora: {r: 8, alpha: 16, targets: all}
data: {train: $src/recipes/data/stories-train.jsonl, valid: $src/recipes/data/stories-valid.jsonl, format: text, seq_len: 64}
training: {micro_batch: 4, grad_accum: 1, steps: 12, lr: 3e-3, warmup: 0}
eval: {every_steps: 12, max_batches: 2, prompts: ["Once upon a time"], max_new_tokens: 8}
checkpoint: {every_steps: 6}
export: {formats: [peft, gguf]}
output_dir: $tmp/run
EOF
"$ftune" plan "$tmp/r.yaml" >"$tmp/plan.txt" 2>&1 || bad "plan failed: $(cat "$tmp/plan.txt")"
grep -q 'frozen linear weights *Q4_K mostly (GGUF, as stored), 4\.[0-9]* bits/param' "$tmp/plan.txt" \
  && ok "plan: the linears as stored ($(grep 'frozen linear' "$tmp/plan.txt" | tr -s ' '))" \
  || bad "plan: $(grep 'frozen linear' "$tmp/plan.txt")"
# the IQ bases: IQ4_XS 136 bytes per 256 weights, IQ4_NL 18 per 32
for c in llama_iq4_xs:IQ4_XS:4.250 qwen3_iq4_nl:IQ4_NL:4.500; do
  IFS=: read -r cc ty bits <<<"$c"
  "$ftune" plan "$tmp/r.yaml" --set model.path="$fx/$cc/model.gguf" >"$tmp/plan_iq.txt" 2>&1
  grep -q "frozen linear weights *$ty mostly (GGUF, as stored), $bits bits/param" "$tmp/plan_iq.txt" \
    && ok "plan: $cc's linears as stored ($(grep 'frozen linear' "$tmp/plan_iq.txt" | tr -s ' '))" \
    || bad "plan $cc: $(grep 'frozen linear' "$tmp/plan_iq.txt" || tail -2 "$tmp/plan_iq.txt")"
done
"$ftune" train "$tmp/r.yaml" >"$tmp/train.out" 2>"$tmp/train.err" || bad "train failed: $(tail -3 "$tmp/train.err")"
grep -q 'frozen linears: Q4_K x 12, Q6_K x 2' "$tmp/train.err" && ok "the linears keep their types: Q4_K x 12, Q6_K x 2" \
  || bad "linear types: $(grep 'frozen linears' "$tmp/train.err")"
l1=$(grep -o 'step 1/12  loss [0-9.]*' "$tmp/train.err" | awk '{print $4}')
l12=$(grep -o 'step 12/12  loss [0-9.]*' "$tmp/train.err" | awk '{print $4}')
[ -n "$l1" ] && [ -n "$l12" ] && le "$l12" "$(awk -v a="$l1" 'BEGIN{print a - 0.5}')" \
  && ok "loss falls on the GGUF base: $l1 -> $l12" || bad "loss $l1 -> $l12"
[ -s "$tmp/run/final/adapter.gguf" ] && [ -s "$tmp/run/final/adapter_model.safetensors" ] \
  && grep -q "\"base_model_name_or_path\":[[:space:]]*\"$fx/llama_q4_k_m/model.gguf\"" "$tmp/run/final/adapter_config.json" \
  && ok "exports: adapter.gguf, PEFT naming the .gguf as its base" || bad "exports: $(ls "$tmp/run/final"); $(grep base_model "$tmp/run/final/adapter_config.json")"
"$ftune" eval --model "$fx/llama_q4_k_m/model.gguf" --tokens "$fx/llama_q4_k_m/tokens.txt" --adapter "$tmp/run/final" \
  --dump-logits "$tmp/ad.bin" --device cpu >/dev/null 2>"$tmp/ad.err" || bad "eval --adapter failed: $(cat "$tmp/ad.err")"
e=$(relerr "$tmp/ad.bin" "$fx/llama_q4_k_m/logits.bin")
le 1e-3 "$e" && ok "eval --adapter on the GGUF base moves the logits (rel $e from the base's)" || bad "adapter inert: $e"
# killed after step 9 (checkpoint at 6) and resumed: the adapter of the uninterrupted run, byte for byte
{ FT_FAULT_KILL_AFTER_STEP=9 "$ftune" train "$tmp/r.yaml" --set output_dir="$tmp/runk" >/dev/null 2>"$tmp/k1.err"; } 2>/dev/null
rc=$?
"$ftune" train "$tmp/r.yaml" --set output_dir="$tmp/runk" --resume >/dev/null 2>"$tmp/k2.err" \
  && [ $rc -eq 137 ] && grep -q 'resumed from [^ ]*step-000006.ckpt at step 6' "$tmp/k2.err" \
  && cmp -s "$tmp/run/final/adapter_model.safetensors" "$tmp/runk/final/adapter_model.safetensors" \
  && ok "SIGKILL after step 9, --resume from step 6: the final adapter is byte-identical to the uninterrupted run's" \
  || bad "resume on the GGUF base: kill rc $rc, $(tail -2 "$tmp/k2.err")"
mkdir -p "$tmp/ol"; "$ftune" export "$tmp/run" --format gguf --ollama --out "$tmp/ol/adapter.gguf" >"$tmp/ol.out" 2>&1 || bad "export --ollama: $(cat "$tmp/ol.out")"
grep -qx "FROM $fx/llama_q4_k_m/model.gguf" "$tmp/ol/Modelfile" && grep -qx 'PARAMETER stop "<|end_of_text|>"' "$tmp/ol/Modelfile" \
  && ! grep -q warning "$tmp/ol.out" && ok "export --ollama: FROM the GGUF base itself, its eos as the stop" \
  || bad "Modelfile: $(cat "$tmp/ol/Modelfile" "$tmp/ol.out")"
g=$("$ftune" generate --model "$fx/llama_q4_k_m/model.gguf" --adapter "$tmp/run/final" --prompt "Once upon" -n 6 --text \
  --device cpu 2>"$tmp/gen.err")
[ $? -eq 0 ] && [ -n "$g" ] && ok "generate --model X.gguf --adapter: '$g'" || bad "generate: $(cat "$tmp/gen.err")"

# model.arch: a GGUF names llama.cpp's architecture only ("llama" for Mistral too)
"$ftune" plan "$tmp/r.yaml" --set model.arch=MistralForCausalLM >/dev/null 2>&1 && ok "model.arch MistralForCausalLM takes a llama GGUF" \
  || bad "model.arch Mistral on a llama GGUF refused"
"$ftune" plan "$tmp/r.yaml" --set model.arch=Qwen3ForCausalLM >/dev/null 2>"$tmp/arch.err"
[ $? -ne 0 ] && grep -q 'model.arch: recipe expects Qwen3ForCausalLM' "$tmp/arch.err" && ok "model.arch Qwen3 on a llama GGUF: refused" \
  || bad "model.arch qwen3: $(cat "$tmp/arch.err")"

# bench on a random model with a GGUF base's block types: memory as planned, loss falling (--check)
for q in q8_0 q4_k iq4_xs iq4_nl; do
  sh=tiny; case $q in q4_k|iq4_xs) sh=tiny-d128 ;; esac # K-quants and IQ4_XS need rows of 256
  "$ftune" bench --shape $sh --steps 3 --seq 128 --quant $q --device cpu --threads 2 --check >"$tmp/bench.out" 2>&1 \
    && grep -q "${q^^} linears" "$tmp/bench.out" && ok "bench --quant $q: $(grep -o 'peak memory.*' "$tmp/bench.out")" \
    || bad "bench --quant $q: $(tail -3 "$tmp/bench.out")"
done
"$ftune" bench --shape tiny --steps 2 --quant q4_k --device cpu >/dev/null 2>"$tmp/bq.err"
[ $? -eq 1 ] && grep -q 'not whole Q4_K blocks' "$tmp/bq.err" && ok "bench --quant q4_k on 128-wide rows: $(cat "$tmp/bq.err")" \
  || bad "q4_k tiny: $(cat "$tmp/bq.err")"
"$ftune" bench --quant q2_k --device cpu >/dev/null 2>"$tmp/bq.err" # decoded, never encoded: no random weights
rc=$?; [ $rc -eq 2 ] && grep -q 'expected nf4, none, .*iq4_xs' "$tmp/bq.err" && ok "bench --quant q2_k refused" || bad "q2_k: rc $rc, $(cat "$tmp/bq.err")"

# bad files: one line naming the file, a non-zero exit, no crash
head -c 4000 "$fx/llama_q4_k_m/model.gguf" >"$tmp/cut.gguf"
"$ftune" eval --model "$tmp/cut.gguf" --tokens "$fx/llama_q4_k_m/tokens.txt" --device cpu >/dev/null 2>"$tmp/cut.err"
rc=$?; [ $rc -eq 1 ] && grep -q "cut.gguf" "$tmp/cut.err" && [ "$(wc -l <"$tmp/cut.err")" -le 2 ] \
  && ok "a truncated GGUF: $(head -1 "$tmp/cut.err")" || bad "truncated: rc $rc, $(cat "$tmp/cut.err")"
LC_ALL=C sed 's/llama/gemma/g' "$fx/llama_q4_0/model.gguf" >"$tmp/gemma.gguf"
"$ftune" plan "$tmp/r.yaml" --set model.path="$tmp/gemma.gguf" >/dev/null 2>"$tmp/gemma.err"
rc=$?; [ $rc -ne 0 ] && [ $rc -lt 128 ] && grep -q 'general.architecture "gemma" is not supported' "$tmp/gemma.err" \
  && ok "another architecture: $(grep -o 'general.architecture.*' "$tmp/gemma.err")" || bad "gemma: rc $rc, $(cat "$tmp/gemma.err")"
printf 'not a model' >"$tmp/x.bin"
"$ftune" plan "$tmp/r.yaml" --set model.path="$tmp/x.bin" >/dev/null 2>"$tmp/x.err"
rc=$?; [ $rc -ne 0 ] && grep -q "x.bin' is neither a directory nor a GGUF file" "$tmp/x.err" \
  && ok "a file that is no GGUF: refused" || bad "x.bin: rc $rc, $(cat "$tmp/x.err")"

# keys that disagree with the tensors, and ggml types ftune does not decode: one line naming the file
# and the key or tensor, from every command that reads the base, before anything is sized from the keys
edit="$src/tests/cli/lib/gguf_edit.py"
# one_line NAME PATTERN -- command...: exit 1 and exactly one line on stderr, matching PATTERN
one_line() {
  local name="$1" pat="$2"; shift 3
  "$@" >/dev/null 2>"$tmp/one.err"; local rc=$?
  if [ $rc -eq 1 ] && [ "$(wc -l <"$tmp/one.err")" -eq 1 ] && grep -qE -e "$pat" "$tmp/one.err"; then ok "$name: $(cat "$tmp/one.err")"
  else bad "$name: rc $rc (want 1 and one line /$pat/): $(head -c 400 "$tmp/one.err")"; fi
}
q4=$fx/llama_q4_k_m/model.gguf
python3 "$edit" "$q4" "$tmp/layers.gguf" --u32 llama.block_count=1000000 \
  && one_line "block_count 1000000 (eval)" "layers.gguf: llama.block_count is 1000000, more layers than the file has tensors \(22\)" \
       -- "$ftune" eval --model "$tmp/layers.gguf" --tokens "$fx/llama_q4_k_m/tokens.txt" --device cpu \
  && one_line "block_count 1000000 (plan)" "more layers than the file has tensors" -- "$ftune" plan "$tmp/r.yaml" --set model.path="$tmp/layers.gguf"
python3 "$edit" "$q4" "$tmp/layers3.gguf" --u32 llama.block_count=3
one_line "block_count 3 of 2 layers (merge)" "layers3.gguf: no tensor blk.2.attn_norm.weight \(llama.block_count is 3\)" \
  -- "$ftune" merge --base "$tmp/layers3.gguf" --out "$tmp/layers3-out.gguf"
[ ! -e "$tmp/layers3-out.gguf" ] && ok "no output left by the refused merge" || bad "merge left $tmp/layers3-out.gguf"
python3 "$edit" "$q4" "$tmp/ffn.gguf" --u32 llama.feed_forward_length=4000000000
one_line "feed_forward_length 4e9 (eval: not an allocation of 4e9 x 256 first)" \
  "ffn.gguf: tensor blk.0.ffn_gate.weight has ne \[256, 512\], the model's metadata implies \[256, 4000000000\]" \
  -- "$ftune" eval --model "$tmp/ffn.gguf" --tokens "$fx/llama_q4_k_m/tokens.txt" --device cpu
one_line "feed_forward_length 4e9 (plan: not 'does not fit')" "ffn.gguf: tensor blk.0.ffn_gate.weight has ne" \
  -- "$ftune" plan "$tmp/r.yaml" --set model.path="$tmp/ffn.gguf"
# IQ4_NL has Q4_0's geometry (32 values in 18 bytes): a Q4_0 base with one linear's blocks read as IQ4_NL
# is a base of mixed types ftune decodes
python3 "$edit" "$fx/llama_q4_0/model.gguf" "$tmp/nl.gguf" --type blk.0.attn_v.weight=20
"$ftune" eval --model "$tmp/nl.gguf" --tokens "$fx/llama_q4_0/tokens.txt" --device cpu >/dev/null 2>"$tmp/nl.err" \
  && grep -q 'frozen linears: Q4_0 x 6, IQ4_NL x 1' "$tmp/nl.err" && ok "a Q4_0 base with an IQ4_NL attn_v: $(grep -o 'frozen linears.*' "$tmp/nl.err")" \
  || bad "IQ4_NL attn_v: $(tail -2 "$tmp/nl.err")"
# IQ3_S has Q3_K's geometry (256 values in 110 bytes): qwen3_q3_k_m's Q3_K attn_q marked IQ3_S is a
# well-formed file of a type ftune does not decode; it is named, not "unknown ggml type 21"
python3 "$edit" "$fx/qwen3_q3_k_m/model.gguf" "$tmp/iq.gguf" --type blk.0.attn_q.weight=21
one_line "an IQ3_S linear (plan)" "iq.gguf: tensor blk.0.attn_q.weight has type IQ3_S; ftune trains on .*IQ4_NL and IQ4_XS weights \(not the other IQ, TQ or MXFP4 types\)" \
  -- "$ftune" plan "$tmp/r.yaml" --set model.path="$tmp/iq.gguf"
one_line "an IQ3_S linear (eval)" "tensor blk.0.attn_q.weight has type IQ3_S" \
  -- "$ftune" eval --model "$tmp/iq.gguf" --tokens "$fx/qwen3_q3_k_m/tokens.txt" --device cpu
a=$(printf 'Once upon a time' | "$ftune" tokenize --tokenizer "$tmp/iq.gguf" 2>&1)
b=$(printf 'Once upon a time' | "$ftune" tokenize --tokenizer "$fx/qwen3_q3_k_m/model.gguf" 2>&1)
[ -n "$b" ] && [ "$a" = "$b" ] && ok "tokenize --tokenizer of a base holding IQ3_S: $a" || bad "tokenize IQ base: '$a' vs '$b'"
"$ftune" merge --base "$tmp/iq.gguf" --out "$tmp/iq-out.gguf" >/dev/null 2>"$tmp/iqm.err" && cmp -s "$tmp/iq.gguf" "$tmp/iq-out.gguf" \
  && ok "merge --type base of a base holding IQ3_S, no adapter: the file byte for byte" || bad "IQ merge: $(cat "$tmp/iqm.err")"
# IQ3_S has Q3_K's geometry (256 values in 110 bytes): qwen3_q3_k_m's Q3_K token_embd marked IQ3_S
python3 "$edit" "$fx/qwen3_q3_k_m/model.gguf" "$tmp/iqe.gguf" --type token_embd.weight=21
one_line "an IQ3_S token_embd (plan)" "iqe.gguf: tensor token_embd.weight has type IQ3_S, which ftune does not read" \
  -- "$ftune" plan "$tmp/r.yaml" --set model.path="$tmp/iqe.gguf"
one_line "an IQ3_S token_embd (generate)" "iqe.gguf: tensor token_embd.weight has type IQ3_S, which ftune does not read" \
  -- "$ftune" generate --model "$tmp/iqe.gguf" --prompt "Once" -n 2 --device cpu

# a mistyped or broken X.gguf is named as the file it is, not as a directory missing config.json
one_line "eval --model of a missing .gguf" "nope.gguf: cannot open: No such file or directory" \
  -- "$ftune" eval --model "$tmp/nope.gguf" --tokens "$fx/llama_q4_0/tokens.txt" --device cpu
printf 'junk' >"$tmp/junk.gguf"
one_line "tokenize --tokenizer of a .gguf that is no GGUF" "junk.gguf: not a GGUF file" \
  -- "$ftune" tokenize --tokenizer "$tmp/junk.gguf" --file "$tmp/junk.gguf"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
