#!/usr/bin/env bash
# data.template against the tokenizer's own chat template: the GGUF export carries the tokenizer's
# template, so llama.cpp and Ollama prompt the model that way; a recipe naming another one (a Mistral
# Small 3 trained in Nemo's format, as the shipped recipes did) trains the adapter on one format for
# use with another. `ftune data` names both in a warning; the tokenizer's own, or auto, draws none.
# The Llama 3 tokenizer of the shared assets (Meta-Llama-3-8B-Instruct's template: llama3) stands in.
# usage: template.sh FTUNE SRC_DIR
set -u
ftune=$(realpath "$1"); src=$(realpath "$2")
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
ok()  { pass=$((pass+1)); echo "ok   $*"; }
bad() { fail=$((fail+1)); echo "FAIL $*"; }
assets="${FT_SHARED_DIR:-$src/../shared}/assets/llama3-tokenizer"
[ -r "$assets/tokenizer.json.gz" ] || { echo "skip: no $assets (not counted)"; echo "0 passed, 0 failed"; exit 0; }
mkdir -p "$tmp/tok" && gzip -dc "$assets/tokenizer.json.gz" >"$tmp/tok/tokenizer.json" && cp "$assets/tokenizer_config.json" "$tmp/tok/"
printf '{"messages":[{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello."}]}\n' >"$tmp/c.jsonl"
data() { "$ftune" data "$src/tests/fixtures/run/tiny.yaml" --set output_dir="$tmp/o-$1" --set data.tokenizer="$tmp/tok" \
           --set data.train="$tmp/c.jsonl" --set data.valid=[] --set data.format=chat --set data.template="$1" >/dev/null 2>"$tmp/$1.err"; }
data llama3.1; rc=$?
[ $rc -eq 0 ] && grep -q "warning: data.template: llama3.1, but the chat template beside .*tok/tokenizer.json is llama3's: the exported model will be prompted in that format" "$tmp/llama3.1.err" \
  && ok "another template than the tokenizer's: $(grep -o 'data.template: llama3.1, but[^:]*' "$tmp/llama3.1.err")" || bad "exit $rc: $(cat "$tmp/llama3.1.err")"
for t in llama3 auto; do
  data $t; rc=$?
  [ $rc -eq 0 ] && ! grep -q "warning: data.template" "$tmp/$t.err" && ok "data.template $t: no warning" || bad "$t: exit $rc $(cat "$tmp/$t.err")"
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
