#!/usr/bin/env bash
# `ftune eval --adapter` and `ftune generate --adapter`: a LoRA adapter applied on the fly
# (trainer/adapter_attach.c) must give what the merged model gives (`ftune merge --type
# safetensors`, whose weights tests/ref/make_export_golden.py checks against PEFT's
# merge_and_unload): the same logits within f32 rounding and the same greedy ids, for a run's
# adapter (r 4, all modules, alpha 8) and for the PEFT fixture "trained elsewhere" (rsLoRA r 4 on
# q/v), and that fixture's layers 0-1 only (PEFT's layers_to_transform, zero in the other layers).
# The adapter must change the logits (the check can fail), a run directory resolves to its
# final/, a checkpoint file gives the same adapter, and --chat without a template, a missing
# adapter or one of another model (checked before the weights load), fail with one line.
# usage: adapter_apply.sh FTUNE SRC_DIR
set -u
ftune=$(realpath "$1"); src=$(realpath "$2")
model="$src/models/stories260K"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
ok()  { pass=$((pass+1)); echo "ok   $*"; }
bad() { fail=$((fail+1)); echo "FAIL $*"; }
source "$src/tests/cli/lib/compare.sh" # relerr, le

printf '1 403 11 87 300 5 22 410 99 17 256 3\n1 60 70 80 90 100 110 120\n' >"$tmp/ids.txt"
"$ftune" train "$src/tests/fixtures/run/tiny.yaml" --set training.steps=8 --set output_dir="$tmp/run" \
  >/dev/null 2>&1 || bad "training the run's adapter failed"

for case in run fixture layers; do
  case $case in
    run) adapter="$tmp/run" ;;
    fixture) adapter="$src/tests/fixtures/export/stories_adapter" ;;
    layers) adapter="$src/tests/fixtures/export/stories_adapter_l01" ;; # layers_to_transform [0, 1]: zero elsewhere
  esac
  "$ftune" merge --base "$model" --adapter "$adapter" --out "$tmp/m_$case" --type safetensors >/dev/null 2>&1 \
    || bad "$case: merge failed"
  "$ftune" eval --model "$model" --adapter "$adapter" --tokens "$tmp/ids.txt" --quant none \
    --dump-logits "$tmp/a_$case.bin" >"$tmp/a_$case.out" 2>"$tmp/a_$case.err" || bad "$case: eval --adapter: $(cat "$tmp/a_$case.err")"
  "$ftune" eval --model "$tmp/m_$case" --tokens "$tmp/ids.txt" --quant none --dump-logits "$tmp/b_$case.bin" \
    >"$tmp/b_$case.out" 2>/dev/null || bad "$case: eval of the merged model failed"
  e=$(relerr "$tmp/a_$case.bin" "$tmp/b_$case.bin")
  le "$e" 1e-5 && ok "$case: eval --adapter logits = the merged model's (rel $e)" || bad "$case: logits differ from the merged model's (rel $e)"
  la=$(grep '^loss' "$tmp/a_$case.out" | cut -d' ' -f2); lb=$(grep '^loss' "$tmp/b_$case.out" | cut -d' ' -f2)
  [ -n "$la" ] && awk -v a="$la" -v b="$lb" 'BEGIN {d = a - b; if (d < 0) d = -d; exit !(d <= 1e-6 * b)}' \
    && ok "$case: loss $la / $lb (merged)" || bad "$case: loss $la vs $lb"
  "$ftune" eval --model "$model" --tokens "$tmp/ids.txt" --quant none --dump-logits "$tmp/base.bin" >/dev/null 2>&1
  e0=$(relerr "$tmp/base.bin" "$tmp/b_$case.bin")
  le 1e-3 "$e0" && ok "$case: the adapter changes the logits (rel $e0 without it)" || bad "$case: the adapter changes nothing ($e0)"
  ga=$("$ftune" generate --model "$model" --adapter "$adapter" --tokens "1 403 11" -n 24 --quant none 2>/dev/null)
  gb=$("$ftune" generate --model "$tmp/m_$case" --tokens "1 403 11" -n 24 --quant none 2>/dev/null)
  [ -n "$ga" ] && [ "$ga" = "$gb" ] && ok "$case: generate --adapter = the merged model: $ga" || bad "$case: generate: '$ga' vs '$gb'"
done
# --text on a terminal streams as it generates (held back at whitespace); the text must be the piped one
if command -v script >/dev/null 2>&1; then
  tp=$("$ftune" generate --model "$model" --prompt "Once upon a time" -n 60 --text --quant none 2>/dev/null)
  tt=$(script -qec "'$ftune' generate --model '$model' --prompt 'Once upon a time' -n 60 --text --quant none 2>/dev/null" /dev/null | tr -d '\r')
  [ -n "$tp" ] && [ "$tt" = "$tp" ] && ok "generate --text streamed on a terminal = piped ($(echo "$tp" | wc -c) bytes)" \
    || bad "generate --text on a terminal: '$tt' vs piped '$tp'"
fi
grep -q "adapter: $tmp/run/final (r 4, scale 2, 35 modules) applied" "$tmp/a_run.err" \
  && ok "a run directory resolves to its final/" || bad "resolution: $(cat "$tmp/a_run.err")"
"$ftune" eval --model "$model" --adapter "$tmp/run/checkpoints/step-000008.ckpt" --tokens "$tmp/ids.txt" --quant none \
  --dump-logits "$tmp/c.bin" >/dev/null 2>&1
cmp -s "$tmp/c.bin" "$tmp/a_run.bin" && ok "a checkpoint file (step 8) gives final/'s logits exactly" \
  || bad "the step-8 checkpoint's logits differ from final/'s"

"$ftune" generate --model "$model" --prompt "Once" --chat auto >/dev/null 2>"$tmp/c.err"; rc=$?
[ $rc -eq 2 ] && grep -q "generate --chat auto: .*no chat_template: name one with --chat" "$tmp/c.err" \
  && ok "--chat auto without a template: exit 2, $(cat "$tmp/c.err")" || bad "--chat auto: exit $rc $(cat "$tmp/c.err")"
# an adapter of another model, refused as `ftune merge` refuses it (the old check named equal shapes,
# and let a Llama adapter of the same widths run on a Qwen2 model), before the model's weights load
l01="$src/tests/fixtures/export/stories_adapter_l01"; fwd="$src/tests/fixtures/forward"
"$ftune" eval --model "$fwd/llama_gqa4" --adapter "$l01" --tokens "$tmp/ids.txt" >/dev/null 2>"$tmp/s.err"; rc=$?
[ $rc -ne 0 ] && [ "$(wc -l <"$tmp/s.err")" -eq 1 ] && grep -q "layer 0 q_proj: adapter is \[64, 64\] .* has \[32, 64\]: the adapter was trained on another model" "$tmp/s.err" \
  && ok "another model's shapes: exit $rc, $(cat "$tmp/s.err")" || bad "shape mismatch: exit $rc $(cat "$tmp/s.err")"
"$ftune" generate --model "$fwd/qwen2" --adapter "$l01" --tokens "1 2" -n 1 >/dev/null 2>"$tmp/q.err"; rc=$?
[ $rc -ne 0 ] && grep -q "trained on a LlamaForCausalLM model .* is Qwen2ForCausalLM" "$tmp/q.err" \
  && ok "another family: exit $rc, $(cat "$tmp/q.err")" || bad "family: exit $rc $(cat "$tmp/q.err")"
mkdir "$tmp/noweights" && cp "$model/config.json" "$tmp/noweights/"
"$ftune" eval --model "$tmp/noweights" --adapter "$src/tests/fixtures/forward/qwen2" --tokens "$tmp/ids.txt" >/dev/null 2>"$tmp/w.err"
grep -q "qwen2.*adapter_config.json" "$tmp/w.err" && ok "the adapter is checked before the weights are read: $(cat "$tmp/w.err")" \
  || bad "the weights were read first: $(cat "$tmp/w.err")"
"$ftune" eval --model "$model" --adapter "$tmp/nowhere" --tokens "$tmp/ids.txt" >/dev/null 2>"$tmp/n.err"; rc=$?
[ $rc -ne 0 ] && [ "$(wc -l <"$tmp/n.err")" -eq 1 ] && grep -q "nowhere" "$tmp/n.err" \
  && ok "a missing adapter: exit $rc, $(cat "$tmp/n.err")" || bad "missing adapter: exit $rc $(cat "$tmp/n.err")"

# a PEFT adapter with a per-module alpha (alpha_pattern): not applied on the fly, and the message says
# what does apply it (merge folds each module's own scale)
mkdir -p "$tmp/ap" && cp "$src/tests/fixtures/export/stories_adapter"/* "$tmp/ap/"
python3 -c 'import json, sys; p = sys.argv[1]; c = json.load(open(p)); c["alpha_pattern"] = {"model.layers.0.self_attn.q_proj": 16}
c["base_model_name_or_path"] = sys.argv[2]; json.dump(c, open(p, "w"))' "$tmp/ap/adapter_config.json" "$model"
"$ftune" eval --model "$model" --adapter "$tmp/ap" --tokens "$tmp/ids.txt" >"$tmp/ap.out" 2>"$tmp/ap.err"; rc=$?
[ $rc -eq 1 ] && [ "$(wc -l <"$tmp/ap.err")" -eq 1 ] && [ ! -s "$tmp/ap.out" ] \
  && grep -q "ap: modules of different ranks or scales (rank_pattern/alpha_pattern): apply it with 'ftune merge --base .* --adapter .*ap' instead" "$tmp/ap.err" \
  && ok "alpha_pattern adapter: exit 1, $(cat "$tmp/ap.err")" || bad "alpha_pattern adapter: exit $rc $(cat "$tmp/ap.err")"

"$ftune" generate --model "$model" --prompt "Once" --chat llama3 >/dev/null 2>"$tmp/l.err"; rc=$?
[ $rc -eq 2 ] && grep -q "generate --chat llama3: .*no token \"<|begin_of_text|>\"" "$tmp/l.err" \
  && ok "--chat with a template the tokenizer cannot encode: exit 2, $(cat "$tmp/l.err")" || bad "--chat llama3: exit $rc $(cat "$tmp/l.err")"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
