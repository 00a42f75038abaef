#!/usr/bin/env bash
# CLI contract: help/version, exit codes (2 for usage errors, 1 for failures), and one clear
# line naming the file for bad model inputs (missing files, truncated or corrupt safetensors,
# unknown architecture, a tensor whose shape disagrees with config.json, config.json a
# directory). Never a crash.
# usage: basics.sh FTUNE SRC_DIR
set -u
ftune="$1"; src="$2"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
ok()   { pass=$((pass+1)); echo "ok   $*"; }
bad()  { fail=$((fail+1)); echo "FAIL $*"; }

# expect CODE PATTERN -- command...: exit code and a stderr line matching PATTERN, at most one line
expect() {
  local code="$1" pat="$2"; shift 3
  "$@" >"$tmp/out" 2>"$tmp/err"; local rc=$?
  local lines; lines=$(grep -c . "$tmp/err")
  if [ "$rc" -eq "$code" ] && grep -qE -e "$pat" "$tmp/err" && [ "$lines" -le 1 ]; then
    ok "exit $rc: $(head -c 160 "$tmp/err")"
  else
    bad "expected exit $code and /$pat/ in one line; got exit $rc: $(head -c 400 "$tmp/err")"
  fi
}

"$ftune" --version | grep -qE '^ftune [0-9]+\.[0-9]+' && ok "--version" || bad "--version"
"$ftune" --help | grep -q "commands:" && ok "--help" || bad "--help"
for c in eval generate train; do
  "$ftune" "$c" --help | grep -q -- "--model" && ok "$c --help" || bad "$c --help"
done
expect 2 "unknown command 'frobnicate'" -- "$ftune" frobnicate
expect 2 "unknown option '--bogus'" -- "$ftune" eval --bogus 1
expect 2 "missing required option --model" -- "$ftune" eval --tokens x
expect 2 "--steps expects an integer" -- "$ftune" train --model m --tokens t --steps ten
expect 2 "unknown quantization 'int3'" -- "$ftune" eval --model m --tokens t --quant int3

model="$src/models/stories260K"
echo "1 2 3 4" > "$tmp/tok.txt"
expect 1 "nope/config.json" -- "$ftune" eval --model "$tmp/nope" --tokens "$tmp/tok.txt"
expect 1 "missing.txt: cannot open" -- "$ftune" eval --model "$model" --tokens "$tmp/missing.txt"
printf '1 2 x3\n' > "$tmp/badtok.txt"
expect 1 "badtok.txt:1: 'x3' is not a token id" -- "$ftune" eval --model "$model" --tokens "$tmp/badtok.txt"
# a NUL byte must not end the line silently (the ids after it would be dropped): fuzz sweep
printf '1 2\0003 4\n' > "$tmp/nultok.txt"
expect 1 "nultok.txt:1: NUL byte" -- "$ftune" eval --model "$model" --tokens "$tmp/nultok.txt"
# sequences of one token each: nothing to predict, said before the model loads (after it, with a
# "loss 0.000000" line per sequence on stdout first)
printf '1\n5\n' > "$tmp/short.txt"
expect 1 "short.txt: no sequence has two or more tokens, nothing to predict" -- "$ftune" eval --model "$model" --tokens "$tmp/short.txt"
[ ! -s "$tmp/out" ] && ok "nothing on stdout for it" || bad "stdout: $(cat "$tmp/out")"
printf '1 2 9999\n' > "$tmp/oov.txt"
expect 1 "outside the vocabulary" -- "$ftune" eval --model "$model" --tokens "$tmp/oov.txt"

# broken checkpoints, built from the real one
mk() { rm -rf "$tmp/m"; mkdir -p "$tmp/m"; cp "$model/config.json" "$tmp/m/"; cp "$model/model.safetensors" "$tmp/m/"; }
mk; head -c 100 "$model/model.safetensors" > "$tmp/m/model.safetensors"
expect 1 "model.safetensors.*(header|truncated|short|exceeds|past)" -- "$ftune" eval --model "$tmp/m" --tokens "$tmp/tok.txt"
mk; printf '\xff\xff\xff\xff\xff\xff\xff\x7f' | dd of="$tmp/m/model.safetensors" conv=notrunc status=none
expect 1 "model.safetensors" -- "$ftune" eval --model "$tmp/m" --tokens "$tmp/tok.txt"
mk; rm "$tmp/m/model.safetensors"
expect 1 "m: |model.safetensors|no (safetensors|model)" -- "$ftune" eval --model "$tmp/m" --tokens "$tmp/tok.txt"
mk; sed -i 's/LlamaForCausalLM/GPT2LMHeadModel/' "$tmp/m/config.json"
expect 1 "config.json.*GPT2LMHeadModel" -- "$ftune" eval --model "$tmp/m" --tokens "$tmp/tok.txt"
mk; sed -i 's/"hidden_size": 64/"hidden_size": 96/' "$tmp/m/config.json"
expect 1 "model.safetensors: tensor .* shape" -- "$ftune" eval --model "$tmp/m" --tokens "$tmp/tok.txt"
mk; sed -i 's/"rope_type": "default"/"rope_type": "yarn"/' "$tmp/m/config.json"
expect 1 "config.json.*yarn" -- "$ftune" eval --model "$tmp/m" --tokens "$tmp/tok.txt"
mk; echo '{"architectures": ["LlamaForCausalLM"], "hidden_size": "big"}' > "$tmp/m/config.json"
expect 1 "config.json.*hidden_size" -- "$ftune" eval --model "$tmp/m" --tokens "$tmp/tok.txt"
mk; echo 'not json' > "$tmp/m/config.json"
expect 1 "config.json" -- "$ftune" eval --model "$tmp/m" --tokens "$tmp/tok.txt"
# config.json a directory: named as such, not as ".../config.json/config.json" (eval, plan, data)
mk; rm "$tmp/m/config.json"; mkdir "$tmp/m/config.json"
expect 1 "m/config.json: is a directory, not a file" -- "$ftune" eval --model "$tmp/m" --tokens "$tmp/tok.txt"
expect 1 "m/config.json: is a directory, not a file" -- "$ftune" plan "$src/recipes/demo-stories260k.yaml" --set model.path="$tmp/m"

# plan --json: one JSON object on stdout, the same exit status as the report (0 fits, 1 with the advice)
"$ftune" plan "$src/recipes/demo-stories260k.yaml" --json >"$tmp/plan.json" 2>"$tmp/err"; rc=$?
python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); assert j["fits"] is True and j["advice"] is None and j["memory"]["total_bytes"] > 0 and j["run"]["steps"] == 60 and j["time"]["estimated_s"] > 0, j' \
  "$tmp/plan.json" 2>>"$tmp/err" && [ $rc -eq 0 ] && ok "plan --json: fits, 60 steps" || bad "plan --json (exit $rc): $(head -c 300 "$tmp/err")"
"$ftune" plan "$src/recipes/demo-stories260k.yaml" --json --memory-gb 0.001 >"$tmp/plan.json" 2>"$tmp/err"; rc=$?
python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); assert j["fits"] is False and j["advice"], j' "$tmp/plan.json" 2>/dev/null \
  && [ $rc -eq 1 ] && [ "$(grep -c . "$tmp/err")" -eq 1 ] && ok "plan --json, 1 MiB: fits false, exit 1, $(head -c 120 "$tmp/err")" \
  || bad "plan --json 1 MiB (exit $rc): $(head -c 300 "$tmp/err")"
expect 1 "model.path: '.*m/config.json' is a directory, not a file" -- "$ftune" data "$src/recipes/demo-stories260k.yaml" \
  --set model.path="$tmp/m" --set output_dir="$tmp/run"
[ ! -e "$tmp/run" ] && ok "nothing written for a bad model.path" || bad "output_dir written: $(ls -R "$tmp/run")"
# a data file that is not a regular file (a FIFO hung the second read): refused before anything is read
mkfifo "$tmp/fifo.jsonl"
expect 1 "data.train: '.*fifo.jsonl' is not a regular file" -- timeout 20 "$ftune" data \
  "$src/recipes/demo-stories260k.yaml" --set data.train="$tmp/fifo.jsonl" --set output_dir="$tmp/run"
mk; sed -i 's/"num_hidden_layers": 5/"num_hidden_layers": 6/' "$tmp/m/config.json"
expect 1 "no tensor model.layers.5" -- "$ftune" eval --model "$tmp/m" --tokens "$tmp/tok.txt"

# an unwritable output leaves nothing behind
expect 1 "nodir/logits.bin" -- "$ftune" eval --model "$model" --tokens "$tmp/tok.txt" --dump-logits "$tmp/nodir/logits.bin"
"$ftune" eval --model "$model" --tokens "$tmp/tok.txt" --dump-logits "$tmp/logits.bin" > /dev/null 2>&1
size=$(stat -c %s "$tmp/logits.bin" 2>/dev/null || echo 0)
[ "$size" -eq $((4 * 512 * 4)) ] && ok "dump-logits writes [1, 4, 512] float32" || bad "dump-logits size $size"
ls "$tmp" | grep -q '\.tmp\.' && bad "temporary file left behind" || ok "no temporary files left"

# config.json values transformers would reject or misread, and a weight of a dtype ftune does not
# load (an FP8 or int checkpoint): one line naming the file and the key or tensor
cfgset() { mk; python3 -c 'import json, sys; p = sys.argv[1]; c = json.load(open(p)); exec(sys.argv[2]); json.dump(c, open(p, "w"))' \
  "$tmp/m/config.json" "$1"; }
cfgset 'c["rope_parameters"] = {"rope_type": "llama3", "rope_theta": 1e4, "factor": 8, "low_freq_factor": 4, "high_freq_factor": 1, "original_max_position_embeddings": 256}'
expect 1 "m/config.json: rope_parameters.high_freq_factor \(1\) must be greater than low_freq_factor \(4\)" -- "$ftune" eval --model "$tmp/m" --tokens "$tmp/tok.txt"
cfgset 'c["rope_parameters"] = {"rope_type": "llama3", "rope_theta": 1e4, "factor": 8, "low_freq_factor": 1, "high_freq_factor": 4, "original_max_position_embeddings": 0}'
expect 1 "m/config.json: rope_parameters.original_max_position_embeddings" -- "$ftune" eval --model "$tmp/m" --tokens "$tmp/tok.txt"
cfgset 'c["rope_parameters"] = "default"'
expect 1 "m/config.json: rope_parameters must be an object \(got a string\)" -- "$ftune" eval --model "$tmp/m" --tokens "$tmp/tok.txt"
cfgset 'del c["architectures"]; c["model_type"] = "gpt2"'
expect 1 "m/config.json: model_type \"gpt2\" is not supported" -- "$ftune" eval --model "$tmp/m" --tokens "$tmp/tok.txt"
cfgset 'c["eos_token_id"] = list(range(1, 100))'
expect 1 "m/config.json: eos_token_id lists more than [0-9]+ ids" -- "$ftune" eval --model "$tmp/m" --tokens "$tmp/tok.txt"
mk; LC_ALL=C sed -i '1s/"model.embed_tokens.weight":{"dtype":"F32"/"model.embed_tokens.weight":{"dtype":"I32"/' "$tmp/m/model.safetensors"
expect 1 "m/model.safetensors: tensor model.embed_tokens.weight has dtype I32; ftune loads F32, F16 or BF16" -- \
  "$ftune" eval --model "$tmp/m" --tokens "$tmp/tok.txt"
cp "$model"/tokenizer*.json "$tmp/m/"
expect 1 "m/model.safetensors: tensor model.embed_tokens.weight has dtype I32; ftune merges F32, F16 or BF16" -- "$ftune" merge --base "$tmp/m" --out "$tmp/i32.gguf" --type f16
[ ! -e "$tmp/i32.gguf" ] && ok "merge of an I32 weight: no output" || bad "merge of an I32 weight left $tmp/i32.gguf"

# generate: top-p sampling (temperature > 0) against the model's own distribution. After BOS the
# logits of `eval --dump-logits` give, at temperature 1.5, p(403) 0.548 and p(385) 0.187 (0.735
# together): --top-p 0.65 keeps exactly those two, so every one of 80 seeds must draw one of them,
# both must occur, and 403's share must be p(403) / (p(403) + p(385)) within 4 sigma. The nucleus is
# computed here from the logits, and refused if --top-p lies near one of its boundaries.
echo "1 403" > "$tmp/bos.txt"  # logits at position 0: after BOS
"$ftune" eval --model "$model" --tokens "$tmp/bos.txt" --dump-logits "$tmp/bos.bin" >/dev/null 2>&1
nucleus=$(python3 -c '
import math, struct, sys
b = open(sys.argv[1], "rb").read(); x = struct.unpack("<%df" % (len(b) // 4), b)[:512]
m = max(x); e = [math.exp((v - m) / 1.5) for v in x]; s = sum(e)
p = sorted(((v / s, i) for i, v in enumerate(e)), reverse=True)
c, k = 0.0, 0
while c < 0.65: c += p[k][0]; k += 1
assert abs(c - 0.65) > 0.02 and abs(c - p[k - 1][0] - 0.65) > 0.02, "top-p 0.65 near a boundary"
print(" ".join(str(i) for _, i in p[:k]), p[0][0] / c)' "$tmp/bos.bin" 2>&1)
set -- $nucleus
if [ $# -eq 3 ]; then
  a=$1; b=$2; want=$3; n_a=0; n_b=0; other=""
  for s in $(seq 1 80); do
    id=$("$ftune" generate --model "$model" --tokens 1 -n 1 --temperature 1.5 --top-p 0.65 --seed "$s" 2>/dev/null | awk '{print $2}')
    if [ "$id" = "$a" ]; then n_a=$((n_a + 1)); elif [ "$id" = "$b" ]; then n_b=$((n_b + 1)); else other="$other $id"; fi
  done
  [ -z "$other" ] && ok "top-p 0.65: all 80 draws in the nucleus {$a, $b}" || bad "top-p 0.65 drew outside {$a, $b}:$other"
  awk -v n="$n_a" -v w="$want" 'BEGIN { f = n / 80; sd = sqrt(w * (1 - w) / 80); d = f - w; if (d < 0) d = -d; exit !(d <= 4 * sd) }' \
    && [ "$n_b" -gt 0 ] && ok "top-p 0.65: $a drawn $n_a of 80 (p $want), $b $n_b" || bad "top-p 0.65: $a $n_a of 80 (want p $want), $b $n_b"
else
  bad "the nucleus from eval's logits: $nucleus"
fi
s1=$("$ftune" generate --model "$model" -n 12 --temperature 1 --top-p 0.95 --seed 7 2>/dev/null)
s2=$("$ftune" generate --model "$model" -n 12 --temperature 1 --top-p 0.95 --seed 7 2>/dev/null)
g=$("$ftune" generate --model "$model" -n 12 2>/dev/null)
t0=$("$ftune" generate --model "$model" -n 12 --temperature 2 --top-p 1e-9 --seed 7 2>/dev/null)
[ -n "$s1" ] && [ "$s1" = "$s2" ] && ok "a seed repeats its sample: $s1" || bad "seed 7 twice: '$s1' vs '$s2'"
[ -n "$g" ] && [ "$t0" = "$g" ] && ok "--top-p 1e-9 keeps the argmax only: the greedy ids" || bad "top-p 1e-9 '$t0' vs greedy '$g'"
expect 2 "generate: need -n >= 0, --temperature >= 0 and 0 < --top-p <= 1" -- "$ftune" generate --model "$model" --top-p 0
expect 2 "--stop: 'x' is not a token id" -- "$ftune" generate --model "$model" --stop x
expect 1 "token id 99999 .* outside the vocabulary" -- "$ftune" generate --model "$model" --tokens "1 99999"

# inspect: a file that is not a GGUF, a directory, no file; --tensors N prints N rows of the table
expect 2 "inspect: expected one FILE.gguf" -- "$ftune" inspect
expect 1 "stories260K/config.json: not a GGUF file \(bad magic\)" -- "$ftune" inspect "$model/config.json"
expect 1 "stories260K: not a regular file" -- "$ftune" inspect "$model"
expect 1 "nope.gguf: cannot open: No such file" -- "$ftune" inspect "$tmp/nope.gguf"

# tokenize from the command line: stdin named as such, the tokenizer's directory required
printf '403 407\n403 x\n' | "$ftune" tokenize --tokenizer "$model" --decode >"$tmp/out" 2>"$tmp/err"; rc=$?
[ $rc -eq 1 ] && grep -q "<stdin>:2: 'x' is not a token id" "$tmp/err" && [ "$(grep -c . "$tmp/err")" -eq 1 ] \
  && ok "tokenize --decode: $(cat "$tmp/err")" || bad "tokenize --decode of 'x': exit $rc $(cat "$tmp/err")"
expect 2 "tokenize: missing required option --tokenizer" -- "$ftune" tokenize --decode
# --json and NUL: cJSON's strings end at it, so the text after it would be dropped silently: refused both ways
printf '["a\\u0000b"]' >"$tmp/nul.json"
expect 1 "nul.json: a .u0000 \(a NUL character\) at byte 3: not supported in a string" -- \
  "$ftune" tokenize --tokenizer "$model" --json --file "$tmp/nul.json"
printf '[[3]]' >"$tmp/nulid.json"
expect 1 "element 0 decodes to text holding a NUL character, which --json cannot write" -- \
  "$ftune" tokenize --tokenizer "$model" --json --decode --file "$tmp/nulid.json"
expect 1 "nope/tokenizer.json: cannot open" -- "$ftune" tokenize --tokenizer "$tmp/nope"

# no command: the usage on stderr, exit 2; bench and plan options out of range, before any work;
# `train` options of the other mode
"$ftune" >"$tmp/out" 2>"$tmp/err"; rc=$?
[ $rc -eq 2 ] && grep -q "^usage: ftune <command>" "$tmp/err" && [ ! -s "$tmp/out" ] && ok "no command: usage on stderr, exit 2" \
  || bad "no command: exit $rc, $(head -2 "$tmp/err")"
expect 2 "bench: --quant int3 \(expected nf4, none, q4_0, q4_1, q5_0, q5_1, q8_0, q4_k, q5_k, q6_k, iq4_nl or iq4_xs\)" -- "$ftune" bench --quant int3
expect 2 "bench: --keep-layers -2 \(need >= 0, or max\)" -- "$ftune" bench --keep-layers -2
expect 2 "bench: --seq 1 \(need >= 2, or max\)" -- "$ftune" bench --seq 1
expect 2 "bench: --doc-len -1 \(need >= 0\)" -- "$ftune" bench --doc-len -1
expect 2 "bench: unexpected argument 'extra'" -- "$ftune" bench extra
expect 2 "bench: --shards 0 out of 1..9999" -- "$ftune" bench --shape tiny --write-checkpoint "$tmp/bw" --shards 0
[ ! -e "$tmp/bw" ] && ok "bench --shards 0 wrote nothing" || bad "bench --shards 0 left $tmp/bw"
expect 2 "plan: --tflops and --memory-gb must be > 0" -- "$ftune" plan "$src/recipes/demo-stories260k.yaml" --tflops 0
expect 2 "train: --steps is an option of the flag mode; with a recipe use --set" -- \
  "$ftune" train "$src/recipes/demo-stories260k.yaml" --steps 3
expect 2 "train: --resume-fallback needs --resume" -- "$ftune" train --resume-fallback "$src/recipes/demo-stories260k.yaml"
# a run's output_dir that cannot be made, and one another process holds (its .lock): refused
# before any data or weight is read, naming the directory
expect 1 "output_dir: cannot create /proc/ftune-nope" -- "$ftune" train "$src/recipes/demo-stories260k.yaml" \
  --set output_dir=/proc/ftune-nope/run --set training.steps=1 --set training.warmup=0
mkdir -p "$tmp/held" && : >"$tmp/held/.lock"
flock "$tmp/held/.lock" sleep 5 & holder=$!
sleep 0.3
expect 1 "output_dir: .*held is in use by another ftune run \(it holds .*held/.lock\)" -- \
  "$ftune" train "$src/recipes/demo-stories260k.yaml" --set output_dir="$tmp/held" --set training.steps=1 --set training.warmup=0
[ "$(ls -A "$tmp/held")" = ".lock" ] && ok "held output_dir: nothing written in it" || bad "held output_dir: $(ls -A "$tmp/held")"
kill $holder 2>/dev/null; wait $holder 2>/dev/null
# plan --keys and --devices print the generated tables of docs/recipes.md, as they stand there
for t in keys devices; do
  "$ftune" plan --$t >"$tmp/$t.md" 2>"$tmp/err"; rc=$?
  sed -n "/^<!-- $t:begin/,/^<!-- $t:end -->/{/^<!--/d;p}" "$src/docs/recipes.md" >"$tmp/$t.doc"
  [ $rc -eq 0 ] && [ -s "$tmp/$t.md" ] && cmp -s "$tmp/$t.md" "$tmp/$t.doc" && ok "plan --$t: the table of docs/recipes.md ($(wc -l <"$tmp/$t.md") lines)" \
    || bad "plan --$t (exit $rc): differs from docs/recipes.md: $(diff "$tmp/$t.md" "$tmp/$t.doc" | head -4)"
done
# a GPU recipe planned without --device on a machine without one: the h100's plan, and a warning saying so
"$ftune" plan "$src/recipes/qwen3-14b-h100.yaml" >"$tmp/out" 2>"$tmp/err"; rc=$?
if ! nvidia-smi -L >/dev/null 2>&1; then
  [ $rc -eq 0 ] && grep -q "warning: plan: no GPU on this machine, so this is the h100's plan" "$tmp/err" \
    && ok "GPU recipe without a GPU: the h100's plan, said so" || bad "GPU recipe, no GPU: exit $rc $(cat "$tmp/err")"
else
  echo "skip the no-GPU plan warning (a GPU may be present: not counted)"
fi

# FTUNE_LOG: debug names where an error was raised; error keeps the info lines out; a bad value is said
dbg=$(FTUNE_LOG=debug "$ftune" eval --model /nonexistent 2>&1)
echo "$dbg" | grep -q "^ftune: debug: the error was raised at cli.c:[0-9]*" && ok "FTUNE_LOG=debug: $(echo "$dbg" | tail -1)" \
  || bad "FTUNE_LOG=debug: $dbg"
lt=$(mktemp -d)
q=$(FTUNE_LOG=error "$ftune" data "$src/tests/fixtures/run/tiny.yaml" --set output_dir="$lt/a" 2>&1 >/dev/null)
n=$("$ftune" data "$src/tests/fixtures/run/tiny.yaml" --set output_dir="$lt/b" 2>&1 >/dev/null | grep -c "^ftune: ")
rm -rf "$lt"
[ -z "$q" ] && [ "$n" -gt 0 ] && ok "FTUNE_LOG=error: no info lines (info shows $n)" || bad "FTUNE_LOG=error: '$q' (info: $n lines)"
FTUNE_LOG=loud "$ftune" --version 2>&1 | grep -q "FTUNE_LOG=loud is not one of debug, info, warn, error: ignored" \
  && ok "FTUNE_LOG=loud: said and ignored" || bad "FTUNE_LOG=loud: $(FTUNE_LOG=loud "$ftune" --version 2>&1)"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
