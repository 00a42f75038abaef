#!/usr/bin/env bash
# `ftune data RECIPE.yaml [--set k=v]...`: the data preparation of a recipe alone.
#   - the demo recipe: the summary (records, examples, tokens, targets, packing, shards, time) on
#     stdout, shards + index under OUTPUT_DIR/data; a second call reuses them; `ftune plan` counts
#     an epochs-based run from the index, and packed rows' attention length as `ftune data` does;
#     `ftune train` then reuses the shards (its log says so);
#   - a messy file over several look-ahead chunks: model.threads 1 and 2 write byte-identical
#     shards and the same log, the skipped records and the first FILE:LINE error are reported;
#   - errors: a bad key (exit 2), a missing data file (exit 1), no recipe (exit 2), each one line;
#     data.valid that yields no example (empty, or all dropped by packing): exit 1 naming it;
#   - an example whose answer starts past seq_len: a warning naming it and the seq_len that keeps it.
# usage: data.sh FTUNE SRC_DIR
set -u
ftune=$(realpath "$1"); src=$(realpath "$2")
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
ok()  { pass=$((pass+1)); echo "ok   $*"; }
bad() { fail=$((fail+1)); echo "FAIL $*"; }
has() { grep -qE -- "$2" "$1" && ok "$3" || bad "$3: no /$2/ in: $(cat "$1")"; }

recipe="$src/recipes/demo-stories260k.yaml"
out="$tmp/run"

# ---- the demo recipe ----
"$ftune" data "$recipe" --set output_dir="$out" --set model.threads=2 >"$tmp/o1" 2>"$tmp/e1"; rc=$?
[ $rc -eq 0 ] && ok "data: exit 0" || bad "data: exit $rc: $(tail -3 "$tmp/e1")"
has "$tmp/o1" "^data: $recipe\$" "summary names the recipe"
has "$tmp/o1" "records +220 read, 220 kept, 0 skipped" "records read/kept/skipped"
has "$tmp/o1" "examples +220: train 200, valid 20 \(data.valid\)" "examples and the split"
has "$tmp/o1" "tokens +[0-9]+: train [0-9]+, valid [0-9]+" "tokens"
has "$tmp/o1" "targets +train [0-9]+ per epoch" "targets"
has "$tmp/o1" "packing +data.seq_len 128 \(bfd\): efficiency [0-9.]+%, fill [0-9.]+%; train [0-9]+ rows, valid 20 rows" "packing"
has "$tmp/o1" "shards +2 files, [0-9]+ bytes \(index $out/data/train-[0-9a-f]{16}.index.json\)" "shard files and bytes"
has "$tmp/o1" "time +[0-9.]+ s, tokenized in [0-9.]+ s: [0-9]+ records/s, [0-9]+ tokens/s on 2 threads" "time and tokens/s"
n_idx=$(ls "$out"/data/*.index.json 2>/dev/null | wc -l); n_sh=$(ls "$out"/data/*.ftshard 2>/dev/null | wc -l)
[ "$n_idx" = 2 ] && [ "$n_sh" = 2 ] && ok "2 indexes + 2 shards in $out/data" || bad "files in $out/data: $(ls "$out/data" 2>&1)"
[ "$(wc -l <"$tmp/e1")" -le 8 ] && ok "stderr: $(wc -l <"$tmp/e1") log lines" || bad "stderr: $(cat "$tmp/e1")"
before=$(ls -l --time-style=+%s.%N "$out/data")

"$ftune" data "$recipe" --set output_dir="$out" >"$tmp/o2" 2>"$tmp/e2"; rc=$?
[ $rc -eq 0 ] && ok "again: exit 0" || bad "again: exit $rc"
has "$tmp/o2" "records +not read: the tokenized data of these inputs was reused" "again: reused"
has "$tmp/e2" "data: reusing tokenized data train-" "again: reuse logged"
[ "$(ls -l --time-style=+%s.%N "$out/data")" = "$before" ] && ok "again: no file rewritten" || bad "again: files changed"

"$ftune" plan "$recipe" --set output_dir="$out" --set training.steps=0 --set training.epochs=2 >"$tmp/o3" 2>"$tmp/e3"
# the attention's length of packed rows, two ways: `ftune data` from the packed rows' examples, `ftune plan`
# from the index's length buckets (exact at seq_len 128, a power of two)
s_data=$(grep -oE "attention +within each example: S = [0-9]+ of 128" "$tmp/o1" | grep -oE "S = [0-9]+")
s_plan=$(grep -oE "attention's length +S = [0-9]+ of seq_len 128: packed" "$tmp/o3" | grep -oE "S = [0-9]+")
[ -n "$s_data" ] && [ "$s_data" = "$s_plan" ] && [ "$s_data" != "S = 128" ] && ok "attention length: data and plan agree ($s_data of 128)" \
  || bad "attention length: data '$s_data', plan '$s_plan'"
has "$tmp/o3" "2 epochs of ~[0-9]+ rows, 200 examples, [0-9]+ tokens: $out/data/train-" "plan: steps from the index"
# the run counts an epochs-based run's steps as the plan does (whole steps of micro_batch x grad_accum rows)
plan_steps=$(grep -oE "^  steps +[0-9]+ \(2 epochs" "$tmp/o3" | grep -oE "[0-9]+ \(" | tr -dc 0-9)
( FT_FAULT_KILL_AFTER_STEP=1 "$ftune" train "$recipe" --set output_dir="$tmp/ep" --set training.steps=0 \
    --set training.epochs=2 --set training.warmup=0 >/dev/null 2>"$tmp/e3b" ) 2>/dev/null
run_steps=$(grep -oE "run: [^:]+: [0-9]+ steps of" "$tmp/e3b" | grep -oE "[0-9]+ steps" | tr -dc 0-9)
[ -n "$plan_steps" ] && [ "$plan_steps" = "$run_steps" ] && grep -qE "\(2\.[0-9]+ epochs of [0-9]+ rows\)" "$tmp/e3b" \
  && ok "epochs 2: the run's $run_steps steps are the plan's ($(grep -oE "[0-9.]+ epochs of [0-9]+ rows" "$tmp/e3b"))" \
  || bad "epochs 2: plan '$plan_steps' steps, run '$run_steps': $(grep "steps of" "$tmp/e3b")"

"$ftune" train "$recipe" --set output_dir="$out" --set model.threads=1 --set training.steps=2 --set training.warmup=0 \
  --set eval.prompts= --set export.formats=peft --set export.merged= --set checkpoint.every_steps=0 \
  >"$tmp/o4" 2>"$tmp/e4"; rc=$?
[ $rc -eq 0 ] && ok "train: exit 0" || bad "train: exit $rc: $(tail -3 "$tmp/e4")"
has "$tmp/e4" "data: reusing tokenized data train-[0-9a-f]{16} \(200 \+ 20 examples\)" "train reuses the shards"
grep -q "data: tokenized" "$tmp/e4" && bad "train tokenized again" || ok "train did not tokenize"

# ---- several chunks, bad lines, 1 vs 2 threads ----
big="$tmp/big.jsonl"
for i in $(seq 30); do
  cat "$src/recipes/data/stories-train.jsonl"
  [ "$i" = 3 ] && echo '{"text": "cut off'
  [ "$i" = 17 ] && echo '{"prompt": "wrong format", "completion": "x"}' && echo
done >"$big"
bad1=$((3 * 200 + 1))
for t in 1 2; do
  "$ftune" data "$recipe" --set data.train="$big" --set output_dir="$tmp/t$t" --set model.threads=$t \
    >"$tmp/ot$t" 2>"$tmp/et$t"; rc=$?
  [ $rc -eq 0 ] && ok "big, $t threads: exit 0" || bad "big, $t threads: exit $rc: $(tail -3 "$tmp/et$t")"
done
has "$tmp/ot2" "records +6022 read, 6020 kept, 2 skipped" "big: 2 malformed records skipped"
has "$tmp/ot2" "first error $big:$bad1: invalid JSON" "big: first error FILE:LINE"
has "$tmp/et2" "skipping $big:$bad1: invalid JSON" "big: skipped record logged"
[ "$(grep -c "skipping $big:" "$tmp/et2")" = 2 ] && [ "$(grep -c "skipped 2 malformed" "$tmp/et2")" = 1 ] \
  && ok "big: each skipped record logged once, one summary" || bad "big: skip log: $(grep skip "$tmp/et2")"
same=1
for f in "$tmp/t1/data/"*; do cmp -s "$f" "$tmp/t2/data/$(basename "$f")" || same=0; done
[ $same = 1 ] && [ "$(ls "$tmp/t1/data" | wc -l)" -ge 4 ] && ok "big: shards identical with 1 and 2 threads ($(ls "$tmp/t1/data" | wc -l) files)" \
  || bad "big: shards differ: $(ls -l "$tmp/t1/data" "$tmp/t2/data")"
norm() { grep -v "data: tokenized .* records into" "$1" | sed "s#$tmp/t[12]#OUT#g"; }
[ "$(norm "$tmp/et1")" = "$(norm "$tmp/et2")" ] && ok "big: the same log with 1 and 2 threads" \
  || bad "big: logs differ: $(diff <(norm "$tmp/et1") <(norm "$tmp/et2"))"
diff <(grep -v "^  time" "$tmp/ot1" | sed "s#$tmp/t[12]#OUT#g") <(grep -v "^  time" "$tmp/ot2" | sed "s#$tmp/t[12]#OUT#g") >/dev/null \
  && ok "big: the same summary with 1 and 2 threads" || bad "big: summaries differ"
"$ftune" data "$recipe" --set data.train="$big" --set output_dir="$tmp/tf" --set data.on_error=fatal >"$tmp/of" 2>"$tmp/ef"; rc=$?
[ $rc -eq 1 ] && [ "$(wc -l <"$tmp/ef")" = 1 ] && grep -q "^ftune: error: $big:$bad1: invalid JSON" "$tmp/ef" \
  && ok "big, fatal: exit 1, $(cat "$tmp/ef")" || bad "big, fatal: exit $rc: $(cat "$tmp/ef")"

# ---- errors: one line each ----
"$ftune" data "$recipe" --set no.such_key=1 >"$tmp/o5" 2>"$tmp/e5"; rc=$?
[ $rc -eq 2 ] && [ "$(wc -l <"$tmp/e5")" = 1 ] && grep -q "^ftune: error: .*no.such_key" "$tmp/e5" && [ ! -s "$tmp/o5" ] \
  && ok "bad key: exit 2, $(cat "$tmp/e5")" || bad "bad key: exit $rc: $(cat "$tmp/e5")"
"$ftune" data "$recipe" --set data.train="$tmp/missing.jsonl" --set output_dir="$tmp/m" >"$tmp/o6" 2>"$tmp/e6"; rc=$?
[ $rc -eq 1 ] && [ "$(wc -l <"$tmp/e6")" = 1 ] && grep -q "^ftune: error: .*data.train.*missing.jsonl" "$tmp/e6" \
  && ok "missing data file: exit 1, $(cat "$tmp/e6")" || bad "missing data file: exit $rc: $(cat "$tmp/e6")"
# data.valid named but yielding nothing (an empty file; every record too long to keep): an error
# naming the file or key, not a run that quietly evaluates nothing
: >"$tmp/empty.jsonl"
"$ftune" data "$recipe" --set data.valid="$tmp/empty.jsonl" --set output_dir="$tmp/ev" >"$tmp/o9" 2>"$tmp/e9"; rc=$?
[ $rc -eq 1 ] && [ "$(grep -c 'error:' "$tmp/e9")" = 1 ] && grep -q "^ftune: error: data.valid: no usable validation examples in $tmp/empty.jsonl" "$tmp/e9" \
  && ok "empty data.valid: exit 1, $(grep error: "$tmp/e9")" || bad "empty data.valid: exit $rc: $(cat "$tmp/e9")"
printf '{"text": "%s"}\n' "$(yes 'Once upon a time' | head -200 | tr '\n' ' ')" >"$tmp/long.jsonl"
"$ftune" data "$recipe" --set data.valid="$tmp/long.jsonl" --set data.long_examples=drop --set output_dir="$tmp/lv" \
  >"$tmp/o10" 2>"$tmp/e10"; rc=$?
[ $rc -eq 1 ] && grep -q "^ftune: error: data.valid: nothing left to validate on after packing" "$tmp/e10" \
  && ok "data.valid all dropped: exit 1" || bad "data.valid all dropped: exit $rc: $(cat "$tmp/e10")"
# an answer that starts past seq_len: the example is dropped like any without targets, but named
# apart, with the seq_len that would keep it (a data problem it is not)
{ printf '{"prompt": "Once upon a time", "completion": " there was a cat."}\n'
  printf '{"prompt": "%s", "completion": " The end."}\n' "$(yes 'Once upon a time' | head -60 | tr '\n' ' ')"
  printf '{"prompt": "Lily had a dog", "completion": " named Max."}\n'; } >"$tmp/pc.jsonl"
"$ftune" data "$recipe" --set data.train="$tmp/pc.jsonl" --set 'data.valid=[]' --set data.format=prompt-completion \
  --set output_dir="$tmp/pc" >"$tmp/o12" 2>"$tmp/e12"; rc=$?
[ $rc -eq 0 ] && grep -q "warning: data.train: 1 example dropped: its targets (the answers) begin after the first 128 tokens, which is all data.seq_len keeps (the longest is [0-9]* tokens): raise data.seq_len to train on it" "$tmp/e12" \
  && grep -q "dropped 0 too long + 1 without targets (1 of them had targets only past seq_len)" "$tmp/e12" \
  && ok "answers past seq_len named: $(grep -o 'data.train: 1 example dropped[^:]*' "$tmp/e12")" \
  || bad "answers past seq_len: exit $rc: $(cat "$tmp/e12")"
# data.val_fraction holding out the only example: the key named (the message was "validation
# fraction 0.5 leaves no training examples out of 1", no key, no file), exit 2
printf '{"text": "Once upon a time there was a cat."}\n' >"$tmp/one.jsonl"
"$ftune" data "$recipe" --set data.train="$tmp/one.jsonl" --set 'data.valid=[]' --set data.val_fraction=0.5 \
  --set output_dir="$tmp/vf" >"$tmp/o11" 2>"$tmp/e11"; rc=$?
[ $rc -eq 2 ] && [ "$(grep -c 'error:' "$tmp/e11")" = 1 ] \
  && grep -q "^ftune: error: .*data.val_fraction 0.5 holds out all 1 examples: none is left to train on" "$tmp/e11" \
  && [ ! -e "$tmp/vf/data" ] \
  && ok "data.val_fraction of the only example: exit 2, no empty data/ left, $(grep error: "$tmp/e11")" \
  || bad "val_fraction: exit $rc: $(cat "$tmp/e11"); $(ls -A "$tmp/vf" 2>&1)"
"$ftune" data >"$tmp/o7" 2>"$tmp/e7"; rc=$?
[ $rc -eq 2 ] && [ "$(wc -l <"$tmp/e7")" = 1 ] && ok "no recipe: exit 2, $(cat "$tmp/e7")" || bad "no recipe: exit $rc: $(cat "$tmp/e7")"
"$ftune" --help | grep -qE "^  data +tokenize a recipe's data" && ok "--help lists data" || bad "--help: $("$ftune" --help)"
"$ftune" data --help >"$tmp/o8" 2>&1 && grep -q -- "--set" "$tmp/o8" && ok "data --help" || bad "data --help: $(cat "$tmp/o8")"

# ---- the cache follows the chat template, wherever it comes from: chat_template.jinja replaced
# (tokenizer_config.json without one) must tokenize again, with the new template's rendering
tk="$tmp/l3tok"; mkdir -p "$tk"
gzip -dc "$src/../shared/assets/llama3-tokenizer/tokenizer.json.gz" > "$tk/tokenizer.json"
python3 - "$src/../shared/assets/llama3-tokenizer/tokenizer_config.json" "$tk/tokenizer_config.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); d.pop("chat_template", None); json.dump(d, open(sys.argv[2], "w"))
PY
cp "$src/../shared/assets/chat-templates/meta-llama-Meta-Llama-3-8B-Instruct.jinja" "$tk/chat_template.jinja"
printf '%s\n' '{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"hello"}]}' \
  '{"messages":[{"role":"user","content":"2+2?"},{"role":"assistant","content":"4"}]}' > "$tmp/chat.jsonl"
cj=(--set output_dir="$tmp/cj" --set data.train="$tmp/chat.jsonl" --set data.valid= --set data.val_fraction=0
    --set data.tokenizer="$tk" --set data.template=auto --set data.format=chat)
"$ftune" data "$recipe" "${cj[@]}" >"$tmp/o9" 2>"$tmp/e9"; rc=$?
[ $rc -eq 0 ] && grep -q "template llama3)" "$tmp/o9" && ok "chat_template.jinja (Llama 3's): template llama3" \
  || bad "jinja llama3: exit $rc $(cat "$tmp/o9" "$tmp/e9" | tail -4)"
cp "$src/../shared/assets/chat-templates/meta-llama-Llama-3.1-8B-Instruct.jinja" "$tk/chat_template.jinja"
"$ftune" data "$recipe" "${cj[@]}" >"$tmp/o10" 2>"$tmp/e10"; rc=$?
[ $rc -eq 0 ] && grep -q "template llama3.1)" "$tmp/o10" && ! grep -q "reusing tokenized data" "$tmp/e10" \
  && ok "chat_template.jinja replaced by Llama 3.1's: tokenized again, template llama3.1" \
  || bad "jinja swap: exit $rc $(cat "$tmp/o10" "$tmp/e10" | grep -i "templ\|reus")"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
