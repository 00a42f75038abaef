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

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
