#!/usr/bin/env bash
# The text model of a vision-language checkpoint (Mistral3ForConditionalGeneration: Mistral Small
# 3.1/3.2), on the tiny fixture tests/fixtures/forward/mistral3 (its forward pass against
# transformers: test_forward_golden) and the PEFT adapter tests/ref/make_vlm_adapter_golden.py made
# on it with PEFT (modules under model.language_model.layers.N, a regex target_modules):
#   - `ftune eval --adapter` gives PeftModel's logits, also for an adapter with PEFT's own target names
#     (which wrap the vision tower too: those modules are left out) and one in transformers' pre-4.52
#     layout (language_model.model.layers.N);
#   - `ftune export --format peft` writes the same module names and a regex target_modules (the
#     golden script checked that PEFT loads such an export to the same logits), `--format gguf`
#     llama.cpp's names for the text model;
#   - `ftune merge --type safetensors` keeps the checkpoint's layout (vision tower included) with the
#     text linears merged, and evaluates to PeftModel's logits;
#   - `ftune train --save` names the adapter's tensors as PEFT does for this base;
#   - a wrapper whose text model is not a Mistral is refused by name.
# usage: vlm.sh FTUNE SRC_DIR
set -u
ftune=$(realpath "$1"); src=$(realpath "$2")
base="$src/tests/fixtures/forward/mistral3"
adapter="$src/tests/fixtures/export/mistral3_adapter"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
ok()  { pass=$((pass+1)); echo "ok   $*"; }
bad() { fail=$((fail+1)); echo "FAIL $*"; }
source "$src/tests/cli/lib/compare.sh" # relerr, le
header() { head -c $((8 + $(od -An -t u8 -N8 "$1" | tr -d ' '))) "$1" | tail -c +9; }

"$ftune" eval --model "$base" --tokens "$base/tokens.txt" --adapter "$adapter" --dump-logits "$tmp/a.bin" >/dev/null 2>&1 \
  || bad "eval --adapter failed"
e=$(relerr "$tmp/a.bin" "$adapter/ref_logits.bin"); le "$e" 1e-5 && ok "eval --adapter vs PeftModel: rel err $e (tol 1e-5)" || bad "eval --adapter: rel err $e"
e0=$(relerr "$base/logits.bin" "$adapter/ref_logits.bin"); le 0.1 "$e0" && ok "the adapter changes the logits (base vs PEFT: $e0)" || bad "adapter inert: $e0"

# PEFT's own target names (q_proj, v_proj) also wrap the vision tower: those modules are left out,
# with one warning, and the text model's logits are PeftModel's
names="$src/tests/fixtures/export/mistral3_adapter_names"
"$ftune" eval --model "$base" --tokens "$base/tokens.txt" --adapter "$names" --dump-logits "$tmp/n.bin" >/dev/null 2>"$tmp/n.err" \
  || bad "eval --adapter (names) failed: $(cat "$tmp/n.err")"
e=$(relerr "$tmp/n.bin" "$names/ref_logits.bin")
le "$e" 1e-5 && grep -q "4 LoRA tensors of the vision tower and projector left out: ftune applies and exports the text model's 4 modules" "$tmp/n.err" \
  && ok "an adapter that also wraps the vision tower: its text modules applied (rel err $e vs PeftModel), the rest left out with a warning" \
  || bad "vision-tower adapter: rel err $e; $(cat "$tmp/n.err")"
# an adapter named in the layout of transformers before 4.52 (language_model.model.layers.N: the same
# length as model.language_model.layers.N, so the header is renamed in place) reads the same
mkdir -p "$tmp/old"; cp "$adapter/adapter_config.json" "$tmp/old/"; sed -i 's|"base_model_name_or_path": "[^"]*"|"base_model_name_or_path": null|' "$tmp/old/adapter_config.json"
LC_ALL=C sed 's/base_model\.model\.model\.language_model\.layers/base_model.model.language_model.model.layers/g' \
  "$adapter/adapter_model.safetensors" >"$tmp/old/adapter_model.safetensors"
"$ftune" eval --model "$base" --tokens "$base/tokens.txt" --adapter "$tmp/old" --dump-logits "$tmp/o.bin" >/dev/null 2>"$tmp/o.err" \
  || bad "eval --adapter (old layout) failed: $(cat "$tmp/o.err")"
e=$(relerr "$tmp/o.bin" "$adapter/ref_logits.bin")
grep -q '"base_model.model.language_model.model.layers.0' "$tmp/old/adapter_model.safetensors" && le "$e" 1e-5 \
  && ok "an adapter in the pre-4.52 layout (language_model.model.layers): rel err $e" || bad "old layout: rel err $e"

"$ftune" export "$adapter" --format peft --out "$tmp/peft" >/dev/null 2>&1 || bad "export peft failed"
h=$(header "$tmp/peft/adapter_model.safetensors")
n_vlm=$(grep -o '"base_model\.model\.model\.language_model\.layers\.[0-9]*\.[a-z_]*\.[a-z_]*\.lora_[AB]\.weight"' <<<"$h" | wc -l)
[ "$n_vlm" -eq 20 ] && ! grep -q '"base_model.model.model.layers' <<<"$h" && ok "PEFT export: 20 tensors under model.language_model.layers" \
  || bad "PEFT export names: $n_vlm under language_model; $(grep -o '"base_model[^"]*"' <<<"$h" | head -3)"
grep -qF '"model\\.language_model\\.layers\\.\\d+\\.(self_attn\\.q_proj|self_attn\\.v_proj|self_attn\\.o_proj|mlp\\.gate_proj|mlp\\.down_proj)"' \
  "$tmp/peft/adapter_config.json" && ok "PEFT export: target_modules is the text model's regex" \
  || bad "target_modules: $(grep -A1 target_modules "$tmp/peft/adapter_config.json")"

"$ftune" export "$adapter" --format gguf --base "$base" --out "$tmp/a.gguf" >/dev/null 2>&1 || bad "export gguf failed"
"$ftune" inspect "$tmp/a.gguf" >"$tmp/insp" 2>&1
grep -q 'general.architecture .* llama' "$tmp/insp" && grep -q 'blk.1.ffn_down.weight.lora_a' "$tmp/insp" && grep -q 'tensors: 20' "$tmp/insp" \
  && ok "GGUF adapter: arch llama, llama.cpp's tensor names, 20 tensors" || bad "GGUF adapter: $(head -30 "$tmp/insp")"

"$ftune" merge --base "$base" --adapter "$adapter" --out "$tmp/merged" --type safetensors >/dev/null 2>&1 || bad "merge failed"
hm=$(header "$tmp/merged/model.safetensors")
grep -q '"vision_tower.transformer.layers.0.attention.q_proj.weight"' <<<"$hm" && grep -q '"language_model.lm_head.weight"' <<<"$hm" \
  && ok "merged checkpoint keeps the layout (vision tower, language_model.*)" || bad "merged names: $(grep -o '"[a-z_.0-9]*"' <<<"$hm" | head -5)"
"$ftune" eval --model "$tmp/merged" --tokens "$base/tokens.txt" --dump-logits "$tmp/m.bin" >/dev/null 2>&1 || bad "eval merged failed"
e=$(relerr "$tmp/m.bin" "$adapter/ref_logits.bin"); le "$e" 1e-5 && ok "merged checkpoint vs PeftModel: rel err $e (tol 1e-5)" || bad "merged: rel err $e"

"$ftune" train --model "$base" --tokens "$base/tokens.txt" --steps 2 --lr 1e-3 --lora-r 4 --save "$tmp/s.safetensors" >/dev/null 2>&1 \
  || bad "train --save failed"
hs=$(header "$tmp/s.safetensors")
grep -q '"base_model.model.model.language_model.layers.1.mlp.down_proj.lora_B.weight"' <<<"$hs" && ! grep -q '"base_model.model.model.layers' <<<"$hs" \
  && ok "train --save: PEFT names under model.language_model" || bad "train --save names: $(grep -o '"base_model[^"]*"' <<<"$hs" | head -2)"

# lora.init / --lora-init of an adapter in the pre-4.52 layout: read as the current one
LC_ALL=C sed 's/base_model\.model\.model\.language_model\.layers/base_model.model.language_model.model.layers/g' \
  "$tmp/s.safetensors" >"$tmp/s_old.safetensors"
"$ftune" train --model "$base" --tokens "$base/tokens.txt" --steps 1 --lr 0 --lora-r 4 --lora-init "$tmp/s_old.safetensors" \
  --save "$tmp/s2.safetensors" >/dev/null 2>"$tmp/init.err" || bad "train --lora-init (old layout) failed: $(cat "$tmp/init.err")"
grep -q '"base_model.model.language_model.model.layers.1' "$tmp/s_old.safetensors" && cmp -s "$tmp/s.safetensors" "$tmp/s2.safetensors" \
  && ok "--lora-init reads an adapter in the pre-4.52 layout (lr 0: saved back byte for byte)" || bad "--lora-init old layout"

mkdir -p "$tmp/other"; sed 's/"model_type": "mistral"/"model_type": "ministral3"/' "$base/config.json" >"$tmp/other/config.json"
"$ftune" eval --model "$tmp/other" --tokens "$base/tokens.txt" >/dev/null 2>"$tmp/err"; rc=$?
[ $rc -ne 0 ] && grep -q 'Mistral3ForConditionalGeneration with text_config.model_type "ministral3" is not supported' "$tmp/err" \
  && ok "another text model in the wrapper refused: $(grep -o 'with text_config[^(]*' "$tmp/err")" || bad "exit $rc: $(cat "$tmp/err")"

# a recipe's model.arch: MistralForCausalLM names the family, so it takes the wrapper's text model too
"$ftune" plan "$src/tests/fixtures/run/tiny.yaml" --set model.config="$base/config.json" --set model.arch=MistralForCausalLM \
  >"$tmp/plan" 2>&1 && grep -q 'model      Mistral3ForConditionalGeneration: 2 layers, hidden 64' "$tmp/plan" \
  && ok "plan: model.arch MistralForCausalLM accepts the text model of Mistral3ForConditionalGeneration" || bad "plan: $(head -3 "$tmp/plan")"
"$ftune" plan "$src/tests/fixtures/run/tiny.yaml" --set model.config="$base/config.json" --set model.arch=LlamaForCausalLM \
  >/dev/null 2>"$tmp/err"; rc=$?
[ $rc -ne 0 ] && grep -q 'model.arch: recipe expects LlamaForCausalLM, .* is Mistral3ForConditionalGeneration' "$tmp/err" \
  && ok "plan: model.arch LlamaForCausalLM refused" || bad "plan LlamaForCausalLM: exit $rc $(cat "$tmp/err")"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
