#!/usr/bin/env bash
# Trainable tokens (PEFT's trainable_token_indices) where ftune reads and writes PEFT adapters
# (export/adapter_tokens.c, trainer/adapter_attach.c, the run's adapter_config.json, `ftune export`).
#  - PEFT's own adapters (tests/fixtures/train_tokens/<case>/peft_adapter, 20 steps trained by peft
#    0.21.2; tests/ref/make_trainable_tokens_golden.py): `ftune eval --adapter` reproduces PEFT's
#    logits (logits.bin, the forward goldens' 1e-5), untied (dict form, embedding + lm_head rows) and
#    tied (list form, one set of rows); `generate --adapter` (KV cache) = the merged model's greedy ids.
#  - PEFT's other spellings read the same: ids in another order (rows follow them), module paths as
#    keys, BF16 rows, the tied dict form {"embed_tokens": ids, "lm_head": ids} with one tensor; a list
#    on an untied model trains the embedding alone: lm_head's columns are the base's (= `ftune merge`).
#  - A run with lora.trainable_tokens (an untied copy of stories260K and the tied original): final/'s
#    adapter_config.json in PEFT's form, `ftune export --format peft` of it and of its last checkpoint
#    give final/'s adapter (same logits, same bytes).
#  - Bad input: one line, non-zero exit: rows without ids, ids without rows, rows of the wrong shape,
#    duplicate or negative ids, an id outside the vocabulary, an unknown module, lists ftune cannot
#    apply on the fly (pointing at `ftune merge`), the tied form on an untied base.
# FT_REF_PYTHON (a python with torch/transformers/peft): also loads the run's export with PEFT and
# compares its logits with ftune's (skipped when unset: CI has no PEFT).
# usage: trainable_tokens.sh FTUNE SRC_DIR
set -u
ftune=$(realpath "$1"); src=$(realpath "$2")
tt="$src/tests/fixtures/train_tokens"; fwd="$src/tests/fixtures/forward"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
ok()  { pass=$((pass+1)); echo "ok   $*"; }
bad() { fail=$((fail+1)); echo "FAIL $*"; }
source "$src/tests/cli/lib/compare.sh" # relerr, le
E="base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta"
H="base_model.model.lm_head.token_adapter.trainable_tokens_delta"

# st_edit IN OUT OP...: a copy of safetensors IN with OPs applied (python stdlib only):
#   drop:NAME  perm:NAME:i,j,..  (row r of the result = row i_r of NAME)  rows:NAME:n (the first n rows)
#   bf16:NAME  dup:NEW:OLD  rename:OLD:NEW
st_edit() {
  python3 - "$@" <<'PY'
import json, struct, sys
src, dst, ops = sys.argv[1], sys.argv[2], sys.argv[3:]
b = open(src, "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n]); body = b[8 + n:]
meta = h.pop("__metadata__", None)
t = {k: [v["dtype"], v["shape"], body[v["data_offsets"][0]:v["data_offsets"][1]]] for k, v in h.items()}
for op in ops:
    f = op.split(":"); name = f[1]
    if f[0] == "drop": del t[name]
    elif f[0] == "dup": t[name] = list(t[f[2]])
    elif f[0] == "rename": t[f[2]] = t.pop(name)
    else:
        dt, shape, data = t[name]; w = len(data) // shape[0]
        if f[0] == "perm":
            idx = [int(x) for x in f[2].split(",")]
            t[name] = [dt, [len(idx)] + shape[1:], b"".join(data[i * w:(i + 1) * w] for i in idx)]
        elif f[0] == "rows": t[name] = [dt, [int(f[2])] + shape[1:], data[:int(f[2]) * w]]
        elif f[0] == "bf16":
            v = struct.unpack("<%dI" % (len(data) // 4), data)
            t[name] = ["BF16", shape, struct.pack("<%dH" % len(v), *[(x + 0x7FFF + ((x >> 16) & 1)) >> 16 for x in v])]
hdr, off, out = {}, 0, []
if meta: hdr["__metadata__"] = meta
for k, (dt, shape, data) in t.items():
    hdr[k] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(data)]}; off += len(data); out.append(data)
hb = json.dumps(hdr).encode(); hb += b" " * (-len(hb) % 8)
open(dst, "wb").write(struct.pack("<Q", len(hb)) + hb + b"".join(out))
PY
}
# variant NAME CASE PYTHON_STATEMENT [st_edit OPs]: $tmp/NAME, a copy of CASE's PEFT adapter with c
# (adapter_config.json) changed by the statement, base_model_name_or_path the forward fixture
variant() {
  local name=$1 case=$2 stmt=$3; shift 3
  mkdir -p "$tmp/$name"
  python3 -c 'import json, sys; c = json.load(open(sys.argv[1])); c["base_model_name_or_path"] = sys.argv[3]
exec(sys.argv[4]); json.dump(c, open(sys.argv[2], "w"), indent=1)' "$tt/$case/peft_adapter/adapter_config.json" \
    "$tmp/$name/adapter_config.json" "$fwd/$case" "$stmt"
  st_edit "$tt/$case/peft_adapter/adapter_model.safetensors" "$tmp/$name/adapter_model.safetensors" "$@"
}
# ev OUT MODEL [ADAPTER]: ftune's logits of CASE's tokens0.txt into $tmp/OUT.bin, stderr in $tmp/OUT.err
ev() {
  local out=$1 model=$2; shift 2
  "$ftune" eval --model "$model" ${1:+--adapter "$1"} --tokens "$toks" --quant none --dump-logits "$tmp/$out.bin" \
    >/dev/null 2>"$tmp/$out.err"
}
# refused NAME CASE PATTERN WHAT: eval of variant NAME fails with one line matching PATTERN
refused() {
  local name=$1 case=$2 pat=$3 what=$4
  "$ftune" eval --model "$fwd/$case" --adapter "$tmp/$name" --tokens "$tt/$case/tokens0.txt" >"$tmp/$name.out" \
    2>"$tmp/$name.err"; local rc=$?
  [ $rc -ne 0 ] && [ "$(wc -l <"$tmp/$name.err")" -eq 1 ] && [ ! -s "$tmp/$name.out" ] && grep -q -- "$pat" "$tmp/$name.err" \
    && ok "$what: exit $rc, $(cat "$tmp/$name.err")" || bad "$what: exit $rc, $(cat "$tmp/$name.err")"
}

# ---- PEFT's adapters: PEFT's logits -------------------------------------------------------------
for case in llama_gqa4 llama_mha_tied; do
  toks="$tt/$case/tokens0.txt"; pa="$tt/$case/peft_adapter"
  ev "a_$case" "$fwd/$case" "$pa" || bad "$case: eval --adapter: $(cat "$tmp/a_$case.err")"
  e=$(relerr "$tmp/a_$case.bin" "$tt/$case/logits.bin")
  le "$e" 1e-5 && ok "$case: eval --adapter = PEFT's trained logits (rel $e)" || bad "$case: PEFT's logits: rel $e"
  grep -q "(r 4, scale 2, 14 modules, 3 trainable tokens) applied" "$tmp/a_$case.err" \
    && ok "$case: 3 trainable tokens applied" || bad "$case: $(cat "$tmp/a_$case.err")"
  # the rows matter (the check can fail): the same LoRA without them is far from PEFT's logits
  variant "lora_$case" "$case" 'del c["trainable_token_indices"]' "drop:$E" $([ $case = llama_gqa4 ] && echo "drop:$H")
  ev "l_$case" "$fwd/$case" "$tmp/lora_$case"
  e0=$(relerr "$tmp/l_$case.bin" "$tt/$case/logits.bin")
  le 1e-3 "$e0" && ok "$case: without the rows the logits are off (rel $e0)" || bad "$case: the rows change nothing ($e0)"
  # generate (prompt once, then a token at a time against the KV cache) = the merged model's ids
  "$ftune" merge --base "$fwd/$case" --adapter "$pa" --out "$tmp/m_$case" --type safetensors >/dev/null 2>&1 \
    || bad "$case: merge failed"
  p=$(cut -d' ' -f1-6 "$toks")
  ga=$("$ftune" generate --model "$fwd/$case" --adapter "$pa" --tokens "$p" -n 12 --quant none 2>/dev/null)
  gb=$("$ftune" generate --model "$tmp/m_$case" --tokens "$p" -n 12 --quant none 2>/dev/null)
  [ -n "$ga" ] && [ "$ga" = "$gb" ] && ok "$case: generate --adapter = the merged model: $ga" || bad "$case: generate '$ga' vs '$gb'"
  # export --format peft of PEFT's adapter: the same form, tensors and logits
  "$ftune" export "$pa" --format peft --out "$tmp/x_$case" >/dev/null 2>"$tmp/x_$case.err" || bad "$case: export: $(cat "$tmp/x_$case.err")"
  f=$(python3 -c 'import json, sys; print(json.dumps(json.load(open(sys.argv[1]))["trainable_token_indices"], separators=(",", ":")))' \
      "$tmp/x_$case/adapter_config.json" 2>&1)
  want=$([ $case = llama_gqa4 ] && echo '{"embed_tokens":[3,7,14],"lm_head":[3,7,14]}' || echo '[3,15,60]')
  [ "$f" = "$want" ] && ok "$case: exported trainable_token_indices $f" || bad "$case: exported $f, want $want"
  cp "$pa/adapter_config.json" "$tmp/x_$case/cfg.json" # keep its relative base
  python3 -c 'import json, sys; c = json.load(open(sys.argv[1])); c["base_model_name_or_path"] = sys.argv[2]; json.dump(c, open(sys.argv[1], "w"))' \
    "$tmp/x_$case/adapter_config.json" "$fwd/$case"
  ev "xa_$case" "$fwd/$case" "$tmp/x_$case"
  cmp -s "$tmp/xa_$case.bin" "$tmp/a_$case.bin" && ok "$case: the export's logits = the fixture's, bit for bit" \
    || bad "$case: export's logits differ ($(relerr "$tmp/xa_$case.bin" "$tmp/a_$case.bin"))"
done

# ---- PEFT's other spellings ----------------------------------------------------------------------
case=llama_gqa4; toks="$tt/$case/tokens0.txt"
variant order $case 'c["trainable_token_indices"] = {"embed_tokens": [14, 3, 7], "lm_head": [7, 14, 3]}' \
  "perm:$E:2,0,1" "perm:$H:1,2,0"
ev order "$fwd/$case" "$tmp/order"
cmp -s "$tmp/order.bin" "$tmp/a_$case.bin" && ok "ids in another order, rows following: the same logits" \
  || bad "reordered ids: $(cat "$tmp/order.err") rel $(relerr "$tmp/order.bin" "$tmp/a_$case.bin")"
variant paths $case 'c["trainable_token_indices"] = {"model.embed_tokens": [3, 7, 14], "lm_head": [3, 7, 14]}'
ev paths "$fwd/$case" "$tmp/paths"
cmp -s "$tmp/paths.bin" "$tmp/a_$case.bin" && ok "\"model.embed_tokens\" as the key: the same logits" \
  || bad "module path key: $(cat "$tmp/paths.err")"
variant bf16 $case 'pass' "bf16:$E" "bf16:$H"
ev bf16 "$fwd/$case" "$tmp/bf16"
e=$(relerr "$tmp/bf16.bin" "$tt/$case/logits.bin")
le "$e" 1e-2 && ! cmp -s "$tmp/bf16.bin" "$tmp/a_$case.bin" && ok "BF16 rows read (rel $e to PEFT's F32 logits)" \
  || bad "BF16 rows: $(cat "$tmp/bf16.err") rel $e"
# a list on an untied model: the embedding's rows only; lm_head keeps the base's (= ftune merge of it)
variant list $case 'c["trainable_token_indices"] = [3, 7, 14]' "drop:$H"
ev list "$fwd/$case" "$tmp/list" || bad "list form: $(cat "$tmp/list.err")"
cols=$(paste <(od -An -v -tf4 -w4 "$tmp/list.bin") <(od -An -v -tf4 -w4 "$tmp/a_$case.bin") | awk '
  {v = (NR - 1) % 256; d = $1 - $2; if (d < 0) d = -d; a = $2 < 0 ? -$2 : $2; if (a > s) s = a
   if (v == 3 || v == 7 || v == 14) { if (d > mi) mi = d } else if (d > mo) mo = d}
  END {printf "%.3g %.3g\n", mo / s, mi / s}')
le "${cols% *}" 0 && le 1e-3 "${cols#* }" && ok "list form, untied: the other columns as with lm_head's rows, columns 3/7/14 not (rel ${cols#* })" \
  || bad "list form columns: $cols"
"$ftune" merge --base "$fwd/$case" --adapter "$tmp/list" --out "$tmp/m_list" --type safetensors >/dev/null 2>&1
ev m_list "$tmp/m_list"
e=$(relerr "$tmp/list.bin" "$tmp/m_list.bin")
le "$e" 1e-5 && ok "list form, untied: = the merged model, whose lm_head is the base's (rel $e)" || bad "list form vs merge: rel $e"
# tied: PEFT's dict with the embedding's very list for lm_head and one tensor = the list form
case=llama_mha_tied; toks="$tt/$case/tokens0.txt"
variant tdict $case 'c["trainable_token_indices"] = {"embed_tokens": [3, 15, 60], "lm_head": [3, 15, 60]}'
ev tdict "$fwd/$case" "$tmp/tdict"
cmp -s "$tmp/tdict.bin" "$tmp/a_$case.bin" && ok "tied: {embed_tokens, lm_head} with one tensor = the list form" \
  || bad "tied dict form: $(cat "$tmp/tdict.err")"

# a vision-language text model (tests/fixtures/forward/mistral3): the embedding's rows under
# model.language_model.embed_tokens; rows taken from two [4, 64] LoRA tensors of the PEFT fixture
# (any values do): = `ftune merge` of it, and its PEFT export keeps the names
va="$src/tests/fixtures/export/mistral3_adapter"; vb="$fwd/mistral3"; toks="$vb/tokens.txt"
EV="base_model.model.model.language_model.embed_tokens.token_adapter.trainable_tokens_delta"
LA="base_model.model.model.language_model.layers.0"
mkdir -p "$tmp/vlm"
python3 -c 'import json, sys; c = json.load(open(sys.argv[1])); c["base_model_name_or_path"] = sys.argv[3]
c["trainable_token_indices"] = {"embed_tokens": [89, 143], "lm_head": [143, 89]}; json.dump(c, open(sys.argv[2], "w"))' \
  "$va/adapter_config.json" "$tmp/vlm/adapter_config.json" "$vb"
st_edit "$va/adapter_model.safetensors" "$tmp/vlm/adapter_model.safetensors" "dup:$EV:$LA.mlp.gate_proj.lora_A.weight" \
  "rows:$EV:2" "dup:$H:$LA.self_attn.o_proj.lora_A.weight" "rows:$H:2"
ev vlm "$vb" "$tmp/vlm" || bad "vlm: $(cat "$tmp/vlm.err")"
ev vlm0 "$vb" "$va"
"$ftune" merge --base "$vb" --adapter "$tmp/vlm" --out "$tmp/m_vlm" --type safetensors >/dev/null 2>&1
ev m_vlm "$tmp/m_vlm"
e=$(relerr "$tmp/vlm.bin" "$tmp/m_vlm.bin"); e0=$(relerr "$tmp/vlm0.bin" "$tmp/m_vlm.bin")
le "$e" 1e-5 && le 1e-3 "$e0" && ok "vision-language text model: = the merged model (rel $e; $e0 without the rows)" \
  || bad "vlm: rel $e to the merged model, $e0 without the rows: $(cat "$tmp/vlm.err")"
"$ftune" export "$tmp/vlm" --format peft --out "$tmp/vlm_x" >/dev/null 2>&1
python3 -c 'import json, struct, sys; b = open(sys.argv[1], "rb").read(); n = struct.unpack("<Q", b[:8])[0]
print(" ".join(k for k in sorted(json.loads(b[8:8 + n])) if "token_adapter" in k))' "$tmp/vlm_x/adapter_model.safetensors" >"$tmp/vlm_keys"
ev vlm_x "$vb" "$tmp/vlm_x"
[ "$(cat "$tmp/vlm_keys")" = "$H $EV" ] && cmp -s "$tmp/vlm_x.bin" "$tmp/vlm.bin" \
  && ok "vision-language: the PEFT export keeps model.language_model.embed_tokens and the logits" \
  || bad "vlm export: $(cat "$tmp/vlm_keys")"

# ---- bad input -------------------------------------------------------------------------------------
case=llama_gqa4
variant b1 $case 'del c["trainable_token_indices"]'
refused b1 $case "b1/adapter_model.safetensors: tensor .*trainable_tokens_delta holds trainable-token rows of the .* lists no trainable_token_indices" \
  "rows without ids"
variant b2 $case 'pass' "drop:$E"
refused b2 $case "b2/adapter_model.safetensors: .*adapter_config.json lists 3 trainable tokens of the embedding but the file holds no" \
  "embedding ids without their rows"
variant b3 $case 'pass' "rows:$H:2"
refused b3 $case "b3/adapter_model.safetensors: tensor $H has shape \[2, 64\] but .* lists 3 lm_head tokens" "rows of the wrong shape"
variant b4 $case 'c["trainable_token_indices"]["lm_head"] = [3, 7, 7]'
refused b4 $case "b4/adapter_config.json: trainable_token_indices.lm_head lists token 7 twice" "duplicate ids"
variant b5 $case 'c["trainable_token_indices"]["embed_tokens"] = [3, 7, 256]'
refused b5 $case "b5: trainable token 256 (embed_tokens) is outside the vocabulary of the base model .*(vocab_size 256)" "an id >= vocab"
variant b6 $case 'c["trainable_token_indices"]["lm_head"] = [3, -7, 14]'
refused b6 $case "b6/adapter_config.json: trainable_token_indices.lm_head: -7 is not a token id" "a negative id"
variant b7 $case 'c["trainable_token_indices"] = {"embed_tokens": [3, 7, 14], "q_proj": [3, 7, 14]}'
refused b7 $case "b7/adapter_config.json: trainable_token_indices names module \"q_proj\"" "another module's tokens"
variant b8 $case 'c["trainable_token_indices"]["lm_head"] = [3, 7]' "rows:$H:2"
refused b8 $case "b8: the embedding and lm_head train different tokens .*apply it with 'ftune merge' instead" "different lists"
"$ftune" merge --base "$fwd/$case" --adapter "$tmp/b8" --out "$tmp/m_b8" --type safetensors >/dev/null 2>"$tmp/m_b8.err" \
  && ok "different lists: 'ftune merge' applies them, as the message says" || bad "merge of b8: $(cat "$tmp/m_b8.err")"
variant b9 $case 'pass' "drop:$H"
refused b9 $case "b9: trainable_token_indices lists lm_head but the adapter holds no lm_head rows .* has a separate lm_head" \
  "the tied form on an untied base"
variant b10 llama_mha_tied 'c["trainable_token_indices"] = {"embed_tokens": [3, 15, 60], "lm_head": [3, 15]}' "dup:$H:$E" "rows:$H:2"
refused b10 llama_mha_tied "b10: trainable tokens with lm_head rows of their own on a model whose lm_head is its embedding .*not supported" \
  "tied base, lm_head rows of their own"
variant b11 $case 'c["trainable_token_indices"] = "3,7,14"'
refused b11 $case "b11/adapter_config.json: trainable_token_indices must be a list of token ids or an object" "a string"

# ---- a run's adapter, its export and its checkpoint ----------------------------------------------
# stories260K untied: its lm_head a copy of the embedding, a matrix of its own
cp -r "$src/models/stories260K" "$tmp/su"
st_edit "$src/models/stories260K/model.safetensors" "$tmp/su/model.safetensors" "dup:lm_head.weight:model.embed_tokens.weight"
python3 -c 'import json, sys; c = json.load(open(sys.argv[1])); c["tie_word_embeddings"] = False; json.dump(c, open(sys.argv[1], "w"))' \
  "$tmp/su/config.json"
printf '1 403 11 87 300 5 22 410 99 17 256 3 2 13\n1 60 70 80 90 100 110 120 13 2\n' >"$tmp/ids.txt"
toks="$tmp/ids.txt"
for kind in untied tied; do
  m=$([ $kind = untied ] && echo "$tmp/su" || echo "$src/models/stories260K")
  run="$tmp/r_$kind"
  "$ftune" train "$src/tests/fixtures/run/tiny.yaml" --set output_dir="$run" --set model.path="$m" \
    --set training.steps=8 --set checkpoint.every_steps=4 --set eval.every_steps=0 --set 'lora.trainable_tokens=[2,13,403]' \
    >/dev/null 2>"$tmp/r_$kind.err" || bad "$kind: the run failed: $(tail -2 "$tmp/r_$kind.err")"
  f=$(python3 -c 'import json, sys; print(json.dumps(json.load(open(sys.argv[1]))["trainable_token_indices"], separators=(",", ":")))' \
      "$run/final/adapter_config.json" 2>&1)
  want=$([ $kind = untied ] && echo '{"embed_tokens":[2,13,403],"lm_head":[2,13,403]}' || echo '[2,13,403]')
  [ "$f" = "$want" ] && ok "$kind run: final/adapter_config.json has trainable_token_indices $f" || bad "$kind run: $f, want $want"
  "$ftune" export "$run" --format peft --out "$tmp/e_$kind" >/dev/null 2>"$tmp/e_$kind.err" || bad "$kind: export: $(cat "$tmp/e_$kind.err")"
  "$ftune" export "$run/checkpoints/step-000008.ckpt" --format peft --out "$tmp/c_$kind" >/dev/null 2>"$tmp/c_$kind.err" \
    || bad "$kind: export of the checkpoint: $(cat "$tmp/c_$kind.err")"
  f=$(python3 -c 'import json, sys; print(json.dumps(json.load(open(sys.argv[1]))["trainable_token_indices"], separators=(",", ":")))' \
      "$tmp/c_$kind/adapter_config.json" 2>&1)
  [ "$f" = "$want" ] && ok "$kind: the checkpoint's export says $f" || bad "$kind: the checkpoint's export: $f"
  cmp -s "$tmp/e_$kind/adapter_model.safetensors" "$tmp/c_$kind/adapter_model.safetensors" \
    && ok "$kind: export of the step-8 checkpoint = export of final/, byte for byte" || bad "$kind: checkpoint export differs"
  python3 -c 'import json, struct, sys; b = open(sys.argv[1], "rb").read(); n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n]); print(" ".join("%s%s" % (k.split(".")[2], h[k]["shape"]) for k in sorted(h) if "token_adapter" in k))' \
    "$tmp/e_$kind/adapter_model.safetensors" >"$tmp/keys_$kind"
  want=$([ $kind = untied ] && echo 'lm_head[3, 64] model[3, 64]' || echo 'model[3, 64]')
  [ "$(cat "$tmp/keys_$kind")" = "$want" ] && ok "$kind: exported rows $(cat "$tmp/keys_$kind")" || bad "$kind: rows $(cat "$tmp/keys_$kind")"
  for a in final e c ckpt; do
    case $a in final) ad="$run/final" ;; e) ad="$tmp/e_$kind" ;; c) ad="$tmp/c_$kind" ;; ckpt) ad="$run/checkpoints/step-000008.ckpt" ;; esac
    "$ftune" eval --model "$m" --adapter "$ad" --tokens "$toks" --quant nf4 --dump-logits "$tmp/v_${kind}_$a.bin" \
      >/dev/null 2>"$tmp/v_${kind}_$a.err" || bad "$kind: eval --adapter $a: $(cat "$tmp/v_${kind}_$a.err")"
  done
  cmp -s "$tmp/v_${kind}_final.bin" "$tmp/v_${kind}_e.bin" && cmp -s "$tmp/v_${kind}_final.bin" "$tmp/v_${kind}_c.bin" \
    && cmp -s "$tmp/v_${kind}_final.bin" "$tmp/v_${kind}_ckpt.bin" \
    && ok "$kind: eval of the export, the checkpoint's export and the checkpoint = eval of final/, bit for bit" \
    || bad "$kind: logits differ: export $(relerr "$tmp/v_${kind}_e.bin" "$tmp/v_${kind}_final.bin"), checkpoint's $(relerr "$tmp/v_${kind}_c.bin" "$tmp/v_${kind}_final.bin")"
  "$ftune" eval --model "$m" --tokens "$toks" --quant nf4 --dump-logits "$tmp/v_${kind}_base.bin" >/dev/null 2>&1
  "$ftune" eval --model "$m" --adapter "$tmp/e_$kind" --tokens "$toks" --quant nf4 >/dev/null 2>"$tmp/n_$kind.err"
  grep -q "3 trainable tokens) applied" "$tmp/n_$kind.err" && ok "$kind: the export applies 3 trainable tokens" \
    || bad "$kind: $(cat "$tmp/n_$kind.err")"
  if [ -n "${FT_REF_PYTHON:-}" ]; then # PEFT loads the export (and the run's final/) and computes ftune's logits
    "$FT_REF_PYTHON" - "$m" "$tmp/e_$kind" "$toks" "$tmp/p_$kind.bin" <<'PY' >"$tmp/p_$kind.out" 2>&1
import sys, numpy as np, torch
from transformers import AutoModelForCausalLM
from peft import PeftModel
base = AutoModelForCausalLM.from_pretrained(sys.argv[1], torch_dtype=torch.float32)
model = PeftModel.from_pretrained(base, sys.argv[2]).eval()
out = []
for line in open(sys.argv[3]):
    ids = torch.tensor([[int(x) for x in line.split()]])
    with torch.no_grad(): out.append(model(ids).logits[0].numpy().astype(np.float32))
np.concatenate(out).tofile(sys.argv[4])
PY
    # ftune's run trained over NF4 weights; PEFT applies the adapter to the f32 base: compare with ftune's f32 eval
    "$ftune" eval --model "$m" --adapter "$tmp/e_$kind" --tokens "$toks" --quant none --dump-logits "$tmp/f_$kind.bin" >/dev/null 2>&1
    e=$(relerr "$tmp/f_$kind.bin" "$tmp/p_$kind.bin")
    le "$e" 1e-5 && ok "$kind: PEFT loads the export: its logits = ftune's (rel $e)" || bad "$kind: PEFT: rel $e $(tail -3 "$tmp/p_$kind.out")"
  else
    echo "skip $kind: PEFT loading the export (set FT_REF_PYTHON to a python with peft)"
  fi
done

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
