#!/usr/bin/env bash
# export / merge / inspect end to end on stories260K with a PEFT adapter "trained elsewhere"
# (tests/fixtures/export/stories_adapter: rsLoRA r=4 on q/v, base given as a relative path):
#   - export --format gguf (+ --ollama) and --format peft; the PEFT round trip gives the same GGUF;
#   - merge of the base alone and base + adapter at every type (q5_k_m / q6_k included); inspect shows
#     what was written;
#   - merge --check: NF4 training-time loss beside the merged file's loss; --merge-into nf4 at F32
#     reproduces the training-time loss;
#   - merge --type safetensors loads in `ftune eval`;
#   - bad input: wrong base (shape/architecture), missing tokenizer, unwritable output, a file size
#     limit mid-write (full disk): one clear line, exit 1, nothing left at the output path;
#   - PEFT export into an existing directory: a config write failure (file size limit) keeps the
#     old pair, no temporary; SIGKILL just before or after the staged pair is exchanged with the
#     old one leaves one whole pair (and the next export removes the staging directory); a
#     write-protected directory refused, the owner kept, a file written meanwhile kept; export
#     CHECKPOINT with a read-only /tmp (nothing written there);
#   - a DoRA run (lora.dora): its checkpoint's PEFT export is final/'s byte for byte, gguf refused;
#   - adapter_config.json values of the wrong type or not matching the tensors (r, target_modules),
#     NaN weights, --out naming a directory, a bad --check file (read before merging), SIGTERM
#     mid-merge (old output intact, temporary removed: trainer/outguard.c), a SIGKILLed writer's
#     temporary removed by the next merge into that output; a safetensors merge of many tensors in
#     the GGUF merge's memory.
# usage: export.sh FTUNE SRC_DIR
set -u
ftune="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"; src="$(cd "$2" && pwd)"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
ok()   { pass=$((pass+1)); echo "ok   $*"; }
bad()  { fail=$((fail+1)); echo "FAIL $*"; }
# expect CODE PATTERN -- command...: exit code and a stderr line matching PATTERN
expect() {
  local code="$1" pat="$2"; shift 3
  "$@" >"$tmp/out" 2>"$tmp/err"; local rc=$?
  if [ "$rc" -eq "$code" ] && grep -qE -e "$pat" "$tmp/err"; then
    ok "exit $rc: $(grep -E -e "$pat" "$tmp/err" | head -c 200)"
  else
    bad "expected exit $code and /$pat/; got exit $rc: $(head -c 400 "$tmp/err")"
  fi
}
run() { "$@" >"$tmp/out" 2>"$tmp/err" || { bad "$* -> $(cat "$tmp/err")"; return 1; }; }
nofile() { if ls "$1"* >/dev/null 2>&1; then bad "left $(ls "$1"*)"; else ok "nothing left at $1"; fi; }

model="$src/models/stories260K"
adapter="$src/tests/fixtures/export/stories_adapter"
tokens="$src/tests/fixtures/stories260K/sample_tokens.txt"
cd "$tmp"

# --- export ------------------------------------------------------------------------------------
run "$ftune" export "$adapter" --format gguf --out "$tmp/a.gguf" --ollama --ollama-from ./base.gguf && ok "export gguf"
run "$ftune" inspect "$tmp/a.gguf"
grep -q "general.type .* adapter" "$tmp/out" && grep -q "adapter.type .* lora" "$tmp/out" && ok "inspect: adapter metadata" || bad "adapter metadata: $(head -20 "$tmp/out")"
# rsLoRA r=4, alpha=8: llama.cpp's alpha/r must give alpha/sqrt(r) -> alpha written = 8*sqrt(4) = 16
grep -qE "adapter.lora.alpha +FLOAT32 +16$" "$tmp/out" && ok "rsLoRA alpha rescaled to 16" || bad "alpha: $(grep alpha "$tmp/out")"
grep -q "blk.4.attn_v.weight.lora_b .*\[4, 32\]" "$tmp/out" && ok "lora_b ne = [r, out]" || bad "lora_b shape"
grep -q "tensors: 20" "$tmp/out" && ok "20 tensors (5 layers x q,v x a,b)" || bad "tensor count: $(grep tensors: "$tmp/out")"
params=$(grep "^parameters:" "$tmp/out")
run "$ftune" inspect "$tmp/a.gguf" --tensors 3
[ "$(grep -cE '^ +[0-9]+ blk\.' "$tmp/out")" -eq 3 ] && grep -q "tensors: 20" "$tmp/out" && [ -n "$params" ] \
  && [ "$(grep "^parameters:" "$tmp/out")" = "$params" ] && ok "inspect --tensors 3: 3 rows of 20, the same $params" \
  || bad "inspect --tensors 3: $(grep -cE '^ +[0-9]+ blk\.' "$tmp/out") rows; $(grep -E '^(tensors|parameters):' "$tmp/out")"
grep -q "^FROM ./base.gguf" "$tmp/Modelfile" && grep -q "^ADAPTER ./a.gguf" "$tmp/Modelfile" && ok "Modelfile" || bad "Modelfile: $(cat "$tmp/Modelfile")"
run "$ftune" export "$adapter" --format peft --out "$tmp/peft" && ok "export peft"
[ -s "$tmp/peft/adapter_model.safetensors" ] && grep -qE '"use_rslora":[[:space:]]*true' "$tmp/peft/adapter_config.json" && ok "PEFT files" || bad "PEFT files"
run "$ftune" export "$tmp/peft" --format gguf --base "$model" --out "$tmp/b.gguf"
cmp -s "$tmp/a.gguf" "$tmp/b.gguf" && ok "PEFT round trip gives the same GGUF bytes" || bad "PEFT round trip differs"
for t in f16 bf16 q8_0; do
  run "$ftune" export "$adapter" --format gguf --type $t --out "$tmp/a-$t.gguf" && ok "export --type $t"
done
run "$ftune" inspect "$tmp/a-q8_0.gguf"
grep -q "attn_q.weight.lora_b .*F16" "$tmp/out" && ok "q8_0: rank 4 lora_b falls back to F16" || bad "q8_0 fallback"

# no --out: the file beside the adapter, named by its type (the same bytes as --out gives); --ollama
# without --ollama-from: a Modelfile whose FROM is ./base.gguf, and a warning saying how to write it
mkdir -p "$tmp/ad"; cp "$adapter"/adapter_* "$tmp/ad/"
run "$ftune" export "$tmp/ad" --format gguf --base "$model" --ollama
cmp -s "$tmp/ad/adapter-f32.gguf" "$tmp/a.gguf" && ok "no --out: ad/adapter-f32.gguf, the bytes of --out a.gguf" || bad "default out: $(ls -A "$tmp/ad")"
grep -q "^FROM ./base.gguf" "$tmp/ad/Modelfile" && grep -q "^ADAPTER ./adapter-f32.gguf" "$tmp/ad/Modelfile" \
  && grep -q "Modelfile: FROM ./base.gguf: write it with 'ftune merge --base .*stories260K --out base.gguf --type f16'" "$tmp/err" \
  && ok "--ollama without --ollama-from: FROM ./base.gguf, and how to write it" || bad "ollama default FROM: $(cat "$tmp/ad/Modelfile" "$tmp/err")"
run "$ftune" export "$tmp/ad" --format peft --base "$model" && [ -s "$tmp/ad/peft/adapter_model.safetensors" ] \
  && ok "no --out, --format peft: ad/peft/" || bad "default peft out: $(ls -A "$tmp/ad")"
# the command line: one line each, exit 2, nothing written
expect 2 "export: expected one RUN_DIR, CHECKPOINT or PEFT_DIR" -- "$ftune" export
expect 2 "export: unknown --format 'onnx' \(expected gguf or peft\)" -- "$ftune" export "$adapter" --format onnx --out "$tmp/xo.gguf"
expect 2 "export: unknown --type 'q4_0' \(expected f32, f16, bf16 or q8_0\)" -- "$ftune" export "$adapter" --type q4_0 --out "$tmp/xo.gguf"
expect 2 "export: --ollama needs --format gguf" -- "$ftune" export "$adapter" --format peft --ollama --out "$tmp/xo"
expect 2 "nothere: no such file or directory" -- "$ftune" export "$tmp/nothere" --out "$tmp/xo.gguf"
nofile "$tmp/xo"

# --- merge ---------------------------------------------------------------------------------------
run "$ftune" merge --base "$model" --out "$tmp/base.gguf" --type f16 && ok "merge base alone"
run "$ftune" inspect "$tmp/base.gguf"
grep -q "tokenizer.ggml.tokens .*\[512 x STRING\]" "$tmp/out" && grep -q "llama.block_count .* 5" "$tmp/out" && ok "inspect: base metadata + tokenizer" || bad "base inspect"
for t in f32 f16 bf16 q8_0 q4_0 q4_k_m q5_k_m q6_k; do
  run "$ftune" merge --base "$model" --adapter "$adapter" --out "$tmp/m-$t.gguf" --type $t && ok "merge --type $t"
done
run "$ftune" inspect "$tmp/m-q8_0.gguf"
grep -qE "general.file_type +UINT32 +7" "$tmp/out" && grep -q "blk.0.attn_q.weight .*Q8_0" "$tmp/out" && grep -q "blk.0.ffn_down.weight .*F16" "$tmp/out" && ok "inspect: Q8_0 (ffn_down 172 cols -> F16)" || bad "q8_0 inspect"
run "$ftune" inspect "$tmp/m-q4_k_m.gguf"
grep -qE "general.file_type +UINT32 +15" "$tmp/out" && grep -q "blk.0.attn_q.weight .*Q5_0" "$tmp/out" && grep -q "token_embd.weight .*Q8_0" "$tmp/out" && ok "inspect: Q4_K_M mix with llama.cpp's fallbacks for 64-wide rows" || bad "q4_k_m inspect"
# Q5_K_M / Q6_K (llama_ftype 17 / 18): 64-wide rows fall back Q5_K -> Q5_1 (ftune's Q5_1 encoder) and
# Q6_K -> Q8_0, the 172-wide ffn_down rows to F16 under both
run "$ftune" inspect "$tmp/m-q5_k_m.gguf"
grep -qE "general.file_type +UINT32 +17" "$tmp/out" && grep -q "blk.0.attn_q.weight .*Q5_1" "$tmp/out" && grep -q "blk.1.attn_v.weight .*Q5_1" "$tmp/out" && grep -q "blk.2.attn_v.weight .*Q8_0" "$tmp/out" && grep -q "blk.0.ffn_down.weight .*F16" "$tmp/out" && grep -q "token_embd.weight .*Q8_0" "$tmp/out" && ok "inspect: Q5_K_M mix with llama.cpp's fallbacks (Q5_1; use_more_bits(2, 5): attn_v Q6_K -> Q8_0; F16)" || bad "q5_k_m inspect"
run "$ftune" inspect "$tmp/m-q6_k.gguf"
grep -qE "general.file_type +UINT32 +18" "$tmp/out" && grep -q "blk.0.attn_q.weight .*Q8_0" "$tmp/out" && grep -q "blk.0.ffn_down.weight .*F16" "$tmp/out" && ok "inspect: Q6_K with llama.cpp's fallbacks (Q8_0, F16)" || bad "q6_k inspect"

# --check: the merge costs (almost) nothing at F32; merging into the NF4 round trip reproduces
# the training-time model exactly
run "$ftune" merge --base "$model" --adapter "$adapter" --out "$tmp/c.gguf" --type f32 --merge-into nf4 --check "$tokens" --threads 2
cat "$tmp/out"
train=$(sed -n 's/.*training-time loss *\([0-9.]*\).*/\1/p' "$tmp/out"); merged=$(sed -n 's/.*merged .* loss *\([0-9.]*\).*/\1/p' "$tmp/out")
awk -v a="$train" -v b="$merged" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a > 0 && d < 1e-4) }' && ok "--merge-into nf4 f32: merged loss $merged == training-time $train" || bad "nf4 check: $train vs $merged"
run "$ftune" merge --base "$model" --adapter "$adapter" --out "$tmp/c8.gguf" --type q8_0 --check "$tokens" --threads 2
grep -q "merge cost" "$tmp/out" && ok "--check q8_0: $(grep 'merge cost' "$tmp/out")" || bad "check q8_0"
run "$ftune" merge --base "$model" --adapter "$adapter" --out "$tmp/merged_hf" --type safetensors && ok "merge safetensors"
run "$ftune" eval --model "$tmp/merged_hf" --tokens "$tokens" && ok "eval loads the merged checkpoint: $(grep '^loss' "$tmp/out")"

# --- a training run: RUN_DIR (final/) and a checkpoint file give the same adapter -------------
cp -r "$src/recipes" "$src/models" "$tmp/"
if "$ftune" train "$tmp/recipes/demo-stories260k.yaml" --set training.steps=2 --set training.warmup=0 \
     --set checkpoint.every_steps=1 --set output_dir="$tmp/run" >"$tmp/out" 2>"$tmp/err"; then
  run "$ftune" export "$tmp/run" --format gguf --out "$tmp/run_final.gguf"
  run "$ftune" export "$tmp/run/checkpoints/step-000002.ckpt" --format gguf --out "$tmp/run_ckpt.gguf"
  cmp -s "$tmp/run_final.gguf" "$tmp/run_ckpt.gguf" && ok "export RUN_DIR == export of its last checkpoint" || bad "run vs checkpoint"
  # a checkpoint away from its run: no ../recipe.yaml to say alpha and the base model; then one
  # whose recipe names a base model of another depth (2 layers, not 5)
  mkdir -p "$tmp/lone/checkpoints"; cp "$tmp/run/checkpoints/step-000002.ckpt" "$tmp/lone/checkpoints/"
  expect 2 "step-000002.ckpt: cannot find the run's recipe.yaml \(.*lone/recipe.yaml\)" -- \
    "$ftune" export "$tmp/lone/checkpoints/step-000002.ckpt" --format gguf --out "$tmp/lone.gguf"
  nofile "$tmp/lone.gguf"
  sed "s|^  path: .*|  path: \"$src/tests/fixtures/forward/llama_gqa4\"|" "$tmp/run/recipe.yaml" > "$tmp/lone/recipe.yaml"
  expect 1 "step-000002.ckpt: adapter has 5 layers but .*llama_gqa4 has 2" -- \
    "$ftune" export "$tmp/lone/checkpoints/step-000002.ckpt" --format gguf --out "$tmp/lone.gguf"
  nofile "$tmp/lone.gguf"
  # a checkpoint went through a PEFT directory made under /tmp (left there by Ctrl-C, refused when
  # /tmp is read-only or full); it is now read straight into memory. A read-only /tmp in a private
  # mount namespace, with this test's directory still writable, stands in (root only)
  if unshare -m true 2>/dev/null; then
    unshare -m sh -c 'mount --make-rprivate / && mount --bind /tmp /tmp && mount --bind "$1" "$1" &&
                      mount -o remount,bind,ro /tmp || exit 99
                      exec "$2" export "$3" --format gguf --out "$1/run_rotmp.gguf"' \
      sh "$tmp" "$ftune" "$tmp/run/checkpoints/step-000002.ckpt" >"$tmp/out" 2>"$tmp/err"; rc=$?
    if [ "$rc" -eq 99 ]; then
      echo "skip read-only /tmp case (cannot remount /tmp here: not counted)"
    elif [ "$rc" -eq 0 ] && cmp -s "$tmp/run_ckpt.gguf" "$tmp/run_rotmp.gguf"; then
      ok "export CHECKPOINT with a read-only /tmp: same bytes, no temporary directory"
    else
      bad "export CHECKPOINT with a read-only /tmp: exit $rc $(head -c 300 "$tmp/err")"
    fi
  else
    echo "skip read-only /tmp case (no mount namespace here: not counted)"
  fi
  run "$ftune" merge --base "$tmp/models/stories260K" --adapter "$tmp/run" --out "$tmp/run_q8.gguf" --type q8_0 \
      --check "$tmp/recipes/data/stories-valid.jsonl" --threads 2
  grep -q "training-time loss" "$tmp/out" && ok "--check on JSONL through the run's recipe: $(grep 'training-time' "$tmp/out")" || bad "jsonl check"
else
  bad "demo recipe training failed: $(tail -2 "$tmp/err")"
fi
# the same for a DoRA run (lora.dora; dropout 0, export.formats peft: a llama.cpp adapter cannot hold DoRA):
# the checkpoint carries the magnitudes, and its PEFT export is final/'s byte for byte; gguf refused
if "$ftune" train "$tmp/recipes/demo-stories260k.yaml" --set training.steps=2 --set training.warmup=0 \
     --set checkpoint.every_steps=1 --set lora.dora=true --set lora.dropout=0 --set export.formats=peft \
     --set output_dir="$tmp/drun" >"$tmp/out" 2>"$tmp/err"; then
  run "$ftune" export "$tmp/drun" --format peft --out "$tmp/drun_final"
  run "$ftune" export "$tmp/drun/checkpoints/step-000002.ckpt" --format peft --out "$tmp/drun_ckpt"
  cmp -s "$tmp/drun_final/adapter_model.safetensors" "$tmp/drun_ckpt/adapter_model.safetensors" &&
    cmp -s "$tmp/drun_final/adapter_config.json" "$tmp/drun_ckpt/adapter_config.json" &&
    grep -q '"use_dora":.*true' "$tmp/drun_ckpt/adapter_config.json" &&
    grep -q 'lora_magnitude_vector' "$tmp/drun_ckpt/adapter_model.safetensors" &&
    ok "DoRA: export --format peft of RUN_DIR == of its last checkpoint (magnitudes, use_dora true)" ||
    bad "DoRA run vs checkpoint PEFT exports differ"
  expect 1 "step-000002.ckpt: a DoRA adapter \(use_dora\) cannot go into a llama.cpp adapter.*ftune merge" -- \
    "$ftune" export "$tmp/drun/checkpoints/step-000002.ckpt" --format gguf --out "$tmp/drun.gguf"
  nofile "$tmp/drun.gguf"
else
  bad "demo recipe training with lora.dora failed: $(tail -2 "$tmp/err")"
fi

# --- bad input -----------------------------------------------------------------------------------
other="$src/tests/fixtures/forward/qwen2"
expect 1 "trained on a LlamaForCausalLM model" -- "$ftune" merge --base "$other" --adapter "$adapter" --out "$tmp/x.gguf"
nofile "$tmp/x.gguf"
mkdir -p "$tmp/llama2"; cp "$src/tests/fixtures/forward/llama_gqa4/config.json" "$src/tests/fixtures/forward/llama_gqa4/model.safetensors" "$tmp/llama2/"
expect 1 "adapter is \[.*\] .* but the base model .* has \[" -- "$ftune" export "$adapter" --format gguf --base "$tmp/llama2" --out "$tmp/y.gguf"
nofile "$tmp/y.gguf"
expect 1 "no tokenizer.json or tokenizer.model" -- "$ftune" merge --base "$tmp/llama2" --out "$tmp/z.gguf"
nofile "$tmp/z.gguf"
# a base whose v_proj is stored transposed ([64, 32], same size): merging the adapter's [32, 64]
# delta into it read and wrote out of bounds (fuzz sweep); now one line naming the tensor's file
mkdir -p "$tmp/transposed"; cp "$model"/*.json "$tmp/transposed/"
LC_ALL=C sed 's/"shape":\[32,64\]/"shape":[64,32]/g' "$model/model.safetensors" > "$tmp/transposed/model.safetensors"
expect 1 "transposed/model.safetensors: tensor model.layers.0.self_attn.v_proj.weight has shape \[64, 32\] but the adapter's module is \[32, 64\]" -- \
  "$ftune" merge --base "$tmp/transposed" --adapter "$adapter" --out "$tmp/tr_hf" --type safetensors
nofile "$tmp/tr_hf/model.safetensors"
[ ! -e "$tmp/tr_hf" ] && ok "failed merge removed the output directory it created" || bad "failed merge left $tmp/tr_hf: $(ls -A "$tmp/tr_hf")"
expect 1 "cannot create file" -- "$ftune" merge --base "$model" --out "$tmp/no/such/dir/m.gguf"
expect 1 "no adapter found" -- "$ftune" export "$tmp" --format gguf
expect 2 "unknown --type 'q3'" -- "$ftune" merge --base "$model" --out "$tmp/q.gguf" --type q3
# full disk: a 64 KiB file size limit stops the write half way
( ulimit -f 64; "$ftune" merge --base "$model" --adapter "$adapter" --out "$tmp/full.gguf" --type f32 ) >"$tmp/out" 2>"$tmp/err"; rc=$?
[ "$rc" -eq 1 ] && grep -q "write failed" "$tmp/err" && ok "file size limit: $(head -c 160 "$tmp/err")" || bad "full disk: exit $rc $(cat "$tmp/err")"
nofile "$tmp/full.gguf"
# a full disk found before the write: the space the file needs against what is free (root only: a
# 64 KiB tmpfs stands in); in MiB for a small model (it said "0.00 GiB, 0.00 GiB free")
mkdir -p "$tmp/tiny_fs"
if mount -t tmpfs -o size=64k tmpfs "$tmp/tiny_fs" 2>/dev/null; then
  expect 1 "tiny_fs/nospace.gguf: write failed: No space left on device \(it needs [0-9.]+ MiB, 0.0[0-9] MiB free\)" -- \
    "$ftune" merge --base "$model" --out "$tmp/tiny_fs/nospace.gguf" --type f32
  [ -z "$(ls -A "$tmp/tiny_fs")" ] && ok "full disk: nothing left on it" || bad "full disk left $(ls -A "$tmp/tiny_fs")"
  umount "$tmp/tiny_fs"
else
  echo "skip the full-disk merge case (cannot mount a tmpfs here: not counted)"
fi
printf 'GGUF\003\000\000\000garbage' > "$tmp/bad.gguf"
expect 1 "bad.gguf" -- "$ftune" inspect "$tmp/bad.gguf"

# --- adapter_config.json against peft's reading, and the tensors against it -----------------------
# a wrong type was read as the default (lora_alpha "8" -> 8.0 by luck, "16" -> 8), a string
# "true" as false (peft: true); r not an integer or not the tensors' rank, tensors outside
# target_modules, NaN weights: all were exported without a word
badcfg() {
  rm -rf "$tmp/cfg" "$tmp/cfg.gguf"; mkdir -p "$tmp/cfg"; cp "$adapter/adapter_model.safetensors" "$tmp/cfg/"
  sed "$1" "$adapter/adapter_config.json" > "$tmp/cfg/adapter_config.json"
}
exp_cfg() { expect 1 "$1" -- "$ftune" export "$tmp/cfg" --format gguf --base "$model" --out "$tmp/cfg.gguf"; nofile "$tmp/cfg.gguf"; }
badcfg 's/"lora_alpha": 8/"lora_alpha": "16"/';   exp_cfg "cfg/adapter_config.json: lora_alpha must be a number"
badcfg 's/"use_rslora": true/"use_rslora": "true"/'; exp_cfg "cfg/adapter_config.json: use_rslora must be true or false"
badcfg 's/"r": 4/"r": 4.5/';                       exp_cfg "cfg/adapter_config.json: r must be a positive integer"
badcfg 's/"r": 4/"r": 8/';                         exp_cfg "cfg/adapter_model.safetensors: layer 0 q_proj has rank 4 but .*adapter_config.json says r = 8"
badcfg 's/"v_proj"/"k_proj"/';                     exp_cfg "cfg/adapter_model.safetensors: tensor .*v_proj.lora_.\.weight: module .*v_proj is not in target_modules"
badcfg 's/"target_modules": \[/"target_modules": 7, "x": [/'; exp_cfg "target_modules must be a list of module names or a string"
badcfg 's/x/x/'; hl=$(od -An -tu8 -N8 "$tmp/cfg/adapter_model.safetensors" | tr -d ' ')
printf '\000\000\300\177' | dd of="$tmp/cfg/adapter_model.safetensors" bs=1 seek=$((8 + hl)) conv=notrunc 2>/dev/null
exp_cfg "cfg/adapter_model.safetensors: tensor .* holds NaN at element 0"
# --check data is read before the merge: a bad file failed only after the whole merge (an hour at
# 70B), and an id past the vocabulary was reported without the file's name
printf '1 2 99999\n' > "$tmp/oob.txt"
expect 1 "oob.txt: sequence 1: token id 99999 is outside the vocabulary" -- \
  "$ftune" merge --base "$model" --adapter "$adapter" --out "$tmp/chk.gguf" --type f16 --check "$tmp/oob.txt"
nofile "$tmp/chk.gguf"
# --type safetensors with --out the base directory replaced the base model by the merged one
cp -r "$model" "$tmp/selfbase"
expect 2 "selfbase/ is the base model's directory" -- "$ftune" merge --base "$tmp/selfbase" --adapter "$adapter" --out "$tmp/selfbase/" --type safetensors
cmp -s "$model/model.safetensors" "$tmp/selfbase/model.safetensors" && ok "base left as it was" || bad "base model overwritten"
# a full disk at adapter_config.json (after adapter_model.safetensors) left a new PEFT directory
# with tensors and no config; a tmpfs holding exactly the tensors' pages stands in (root only)
pages=$(( ($(stat -c %s "$adapter/adapter_model.safetensors") + 4095) / 4096 )); mkdir -p "$tmp/full"
if mount -t tmpfs -o size=$((pages * 4096)) tmpfs "$tmp/full" 2>/dev/null; then
  expect 1 "full/peft/adapter_config.json: write failed" -- "$ftune" export "$adapter" --format peft --out "$tmp/full/peft"
  [ ! -e "$tmp/full/peft" ] && ok "full disk: no half-written PEFT directory" || bad "full disk left $(ls -A "$tmp/full/peft")"
  umount "$tmp/full"
else
  echo "skip full-disk PEFT case (cannot mount a tmpfs here: not counted)"
fi
# a PEFT export into an existing directory replaced adapter_model.safetensors, then failed writing
# adapter_config.json: new tensors beside the old config, an adapter that loads with the wrong
# alpha. A config over the file size limit (a long alpha_pattern) while the tensors fit reproduces
# it without root: the old pair stays as it was, and no temporary is left
run "$ftune" export "$adapter" --format peft --out "$tmp/pair" && cp -r "$tmp/pair" "$tmp/pair.old"
badcfg '/"alpha_pattern"/d; $d; s/"lora_alpha": 8/"lora_alpha": 16/'
{ printf ' "alpha_pattern": {'; seq -f '"model.layers.%g.mlp.up_proj": 8' 1000 3999 | paste -sd,; printf '}\n}\n'; } >> "$tmp/cfg/adapter_config.json"
printf '\000\000\200\077' | dd of="$tmp/cfg/adapter_model.safetensors" bs=1 seek=$((8 + hl)) conv=notrunc 2>/dev/null
( ulimit -f 64; exec "$ftune" export "$tmp/cfg" --format peft --out "$tmp/pair" ) >"$tmp/out" 2>"$tmp/err"; rc=$?
[ "$rc" -eq 1 ] && grep -q "pair/adapter_config.json: write failed" "$tmp/err" && ok "config over the size limit: $(head -c 160 "$tmp/err")" \
  || bad "config write failure: exit $rc $(head -c 300 "$tmp/err")"
cmp -s "$tmp/pair/adapter_model.safetensors" "$tmp/pair.old/adapter_model.safetensors" &&
  cmp -s "$tmp/pair/adapter_config.json" "$tmp/pair.old/adapter_config.json" && ok "failed PEFT export: old pair intact" \
  || bad "failed PEFT export changed the pair (new tensors with the old config?)"
[ "$(ls -A "$tmp/pair" | wc -l)" -eq 2 ] && ok "failed PEFT export: no temporary left" || bad "left in pair/: $(ls -A "$tmp/pair")"
( ulimit -f 64; exec "$ftune" export "$tmp/cfg" --format peft --out "$tmp/newpair" ) >/dev/null 2>&1
[ ! -e "$tmp/newpair" ] && ok "failed PEFT export into a new directory: removed" || bad "left $tmp/newpair: $(ls -A "$tmp/newpair")"
run "$ftune" export "$tmp/cfg" --format peft --out "$tmp/pair"
! cmp -s "$tmp/pair/adapter_model.safetensors" "$tmp/pair.old/adapter_model.safetensors" &&
  grep -qE '"lora_alpha":[[:space:]]*16' "$tmp/pair/adapter_config.json" && [ "$(ls -A "$tmp/pair" | wc -l)" -eq 2 ] \
  && ok "PEFT export over an existing pair replaces both" || bad "replace: $(ls -A "$tmp/pair"); $(grep lora_alpha "$tmp/pair/adapter_config.json")"
# The pair is staged beside the output and swapped in with renameat2(RENAME_EXCHANGE): a crash
# at any instant leaves the whole old pair or the whole new one (replacing the files one by one
# left, between the two renames, new tensors beside the old config: an adapter with the wrong
# alpha). SIGKILL just before and just after the exchange (test hook), then a rerun that removes
# the dead process's staging directory. Other files in the directory are kept.
rm -rf "$tmp/xpair"; run "$ftune" export "$adapter" --format peft --out "$tmp/xpair"
echo "notes" > "$tmp/xpair/README.md"; chmod 750 "$tmp/xpair"; cp -r "$tmp/xpair" "$tmp/xpair.old"
samepair() { cmp -s "$1/adapter_model.safetensors" "$2/adapter_model.safetensors" && cmp -s "$1/adapter_config.json" "$2/adapter_config.json"; }
for when in before after; do
  FT_FAULT_KILL_AT_EXCHANGE=$when "$ftune" export "$tmp/cfg" --format peft --out "$tmp/xpair" >/dev/null 2>&1; rc=$?
  left=$(ls -d "$tmp"/.xpair.tmp-*-d 2>/dev/null | head -1)
  if [ "$when" = before ]; then samepair "$tmp/xpair" "$tmp/xpair.old" && want=old || want=mixed
  else samepair "$tmp/xpair" "$tmp/pair" && want=new || want=mixed; fi
  [ "$rc" -eq 137 ] && [ "$want" != mixed ] && [ -n "$left" ] && [ "$(cat "$tmp/xpair/README.md")" = notes ] \
    && ok "SIGKILL $when the exchange: the $want pair whole, README kept, staging directory left" \
    || bad "SIGKILL $when the exchange: exit $rc, pair $want, left '$left', $(ls -A "$tmp/xpair")"
  run "$ftune" export "$tmp/cfg" --format peft --out "$tmp/xpair"
  [ ! -e "$left" ] && grep -q "removed $left/, a staging directory left by process" "$tmp/err" && samepair "$tmp/xpair" "$tmp/pair" \
    && [ "$(ls -A "$tmp/xpair" | sort | tr '\n' ' ')" = "README.md adapter_config.json adapter_model.safetensors " ] \
    && [ "$(stat -c %a "$tmp/xpair")" = 750 ] && ok "rerun after the kill $when: staging directory removed, new pair, README and mode kept" \
    || bad "rerun after the kill $when: $(ls -a "$tmp" | grep xpair) / $(ls -A "$tmp/xpair") / $(stat -c %a "$tmp/xpair") / $(cat "$tmp/err")"
  cp "$tmp/xpair.old/adapter_model.safetensors" "$tmp/xpair.old/adapter_config.json" "$tmp/xpair/"
done
# SIGTERM there instead: trainer/outguard.c removes the staging directory with its files (old or new
# pair) before the process ends by the signal, and the output holds one whole pair
for when in before after; do
  FT_FAULT_TERM_AT_EXCHANGE=$when "$ftune" export "$tmp/cfg" --format peft --out "$tmp/xpair" >/dev/null 2>&1; rc=$?
  if [ "$when" = before ]; then samepair "$tmp/xpair" "$tmp/xpair.old" && want=old || want=mixed
  else samepair "$tmp/xpair" "$tmp/pair" && want=new || want=mixed; fi
  [ "$rc" -eq 143 ] && [ "$want" != mixed ] && ! ls -d "$tmp"/.xpair.tmp-* >/dev/null 2>&1 && [ -e "$tmp/xpair/README.md" ] \
    && ok "SIGTERM $when the exchange: exit 143, the $want pair whole, no staging directory left" \
    || bad "SIGTERM $when the exchange: exit $rc, pair $want, $(ls -a "$tmp" | grep xpair)"
  cp "$tmp/xpair.old/adapter_model.safetensors" "$tmp/xpair.old/adapter_config.json" "$tmp/xpair/"
done
# What the export in place kept, the exchange keeps (found by review): a write-protected output
# directory is refused as before (the exchange writes only the parent: it replaced the directory
# and its pair; as root, which writes anywhere, this runs as nobody); the replacement has the old
# directory's owner and group (root exporting into a user's adapter left the user a root-owned
# directory); a file another process writes into the output during the export is kept (it was
# removed with the old version: FT_FAULT_STALL_AT_EXCHANGE holds the export just before the exchange).
asuser=()
[ "$(id -u)" = 0 ] && command -v setpriv >/dev/null && asuser=(setpriv --reuid=65534 --regid=65534 --clear-groups)
# (as nobody only where nobody can run this build and read the fixture)
if [ "$(id -u)" != 0 ] || { [ ${#asuser[@]} -gt 0 ] && "${asuser[@]}" test -x "$ftune" -a -r "$adapter/adapter_config.json"; }; then
  chmod 711 "$tmp"; mkdir -p "$tmp/ro_parent"; chmod 777 "$tmp/ro_parent"; chmod a+r "$tmp/cfg"/*
  "${asuser[@]}" "$ftune" export "$adapter" --format peft --out "$tmp/ro_parent/ro" >/dev/null 2>&1
  cp -r "$tmp/ro_parent/ro" "$tmp/ro.old"; chmod a-w "$tmp/ro_parent/ro"; ino=$(stat -c %i "$tmp/ro_parent/ro")
  "${asuser[@]}" "$ftune" export "$tmp/cfg" --format peft --out "$tmp/ro_parent/ro" >/dev/null 2>"$tmp/err"; rc=$?
  [ "$rc" -eq 1 ] && [ "$(stat -c %i "$tmp/ro_parent/ro")" = "$ino" ] && samepair "$tmp/ro_parent/ro" "$tmp/ro.old" \
    && grep -q "ro_parent/ro/.*Permission denied" "$tmp/err" \
    && ok "PEFT export into a write-protected directory refused, the old pair kept: $(head -c 150 "$tmp/err")" \
    || bad "write-protected output: exit $rc, inode $ino -> $(stat -c %i "$tmp/ro_parent/ro"), $(cat "$tmp/err")"
  chmod u+w "$tmp/ro_parent/ro"
fi
if [ "$(id -u)" = 0 ]; then
  rm -rf "$tmp/own"; run "$ftune" export "$adapter" --format peft --out "$tmp/own"
  chown -R 65534:65534 "$tmp/own"; chmod 770 "$tmp/own"
  run "$ftune" export "$tmp/cfg" --format peft --out "$tmp/own"
  [ "$(stat -c '%u:%g %a' "$tmp/own")" = "65534:65534 770" ] && samepair "$tmp/own" "$tmp/pair" \
    && ok "PEFT export by root into a user's directory: new pair, owner, group and mode kept" \
    || bad "owner after the exchange: $(stat -c '%u:%g %a' "$tmp/own")"
fi
rm -rf "$tmp/late"; run "$ftune" export "$adapter" --format peft --out "$tmp/late"
FT_FAULT_STALL_AT_EXCHANGE=2 "$ftune" export "$tmp/cfg" --format peft --out "$tmp/late" >/dev/null 2>&1 & xpid=$!
for _ in $(seq 100); do [ -e "$tmp/.late.tmp-$xpid-d/adapter_config.json" ] && break; sleep 0.05; done
sleep 0.5; echo "written meanwhile" >"$tmp/late/notes.txt"; wait "$xpid"; rc=$?
[ "$rc" -eq 0 ] && [ "$(cat "$tmp/late/notes.txt" 2>/dev/null)" = "written meanwhile" ] && samepair "$tmp/late" "$tmp/pair" \
  && ! ls -d "$tmp"/.late.tmp-* >/dev/null 2>&1 && ok "a file written into the output during the export is kept beside the new pair" \
  || bad "file written during the export: exit $rc, $(ls -A "$tmp/late"), $(ls -a "$tmp" | grep late)"
# two exports into one new directory at once: the one whose rename finds the other's output
# replaces it as an existing one (it failed: 'cannot rename ... into place: Directory not empty')
rm -rf "$tmp/both"
FT_FAULT_STALL_AT_EXCHANGE=1 "$ftune" export "$tmp/cfg" --format peft --out "$tmp/both" >/dev/null 2>"$tmp/both.err" & xpid=$!
for _ in $(seq 100); do [ -e "$tmp/.both.tmp-$xpid-d/adapter_config.json" ] && break; sleep 0.05; done
run "$ftune" export "$adapter" --format peft --out "$tmp/both"; wait "$xpid"; rc=$?
[ "$rc" -eq 0 ] && samepair "$tmp/both" "$tmp/pair" && [ "$(ls -A "$tmp/both" | wc -l)" -eq 2 ] && ! ls -d "$tmp"/.both.tmp-* >/dev/null 2>&1 \
  && ok "two exports into one new directory: both succeed, the later rename's pair in place" \
  || bad "two exports into one new directory: exit $rc $(cat "$tmp/both.err"), $(ls -A "$tmp/both")"
# an output that is a symbolic link to a directory is written through the link (no exchange of the link)
mkdir -p "$tmp/real"; ln -s "$tmp/real" "$tmp/link"
run "$ftune" export "$tmp/cfg" --format peft --out "$tmp/link" && run "$ftune" export "$adapter" --format peft --out "$tmp/link"
[ -L "$tmp/link" ] && samepair "$tmp/real" "$tmp/xpair.old" && [ "$(ls -A "$tmp/real" | wc -l)" -eq 2 ] \
  && ok "PEFT export through a symbolic link: the link kept, the pair replaced in its directory" || bad "link: $(ls -la "$tmp/link" "$tmp/real")"
# --out naming a directory: refused before the merge (it ran to the end, then failed at the rename)
expect 2 "is a directory \(expected the path of the .gguf file" -- "$ftune" merge --base "$model" --out "$tmp" --type f16
# SIGTERM mid-merge: the old output stays, and the temporary is removed (it stayed, the model's size)
"$ftune" bench --shape tiny --layers 400 --write-checkpoint "$tmp/tiny" >/dev/null 2>&1 && cp "$model"/tokenizer*.json "$tmp/tiny/"
echo OLD > "$tmp/sig.gguf"
"$ftune" merge --base "$tmp/tiny" --out "$tmp/sig.gguf" --type f32 >/dev/null 2>&1 & pid=$!
for _ in $(seq 200000); do [ -e "$tmp/sig.gguf.tmp.$pid" ] && break; done
kill -STOP $pid; [ -e "$tmp/sig.gguf.tmp.$pid" ] && ok "merge stopped mid-write" || bad "no temporary seen mid-merge"
kill -TERM $pid; kill -CONT $pid; wait $pid; rc=$?
[ "$rc" -eq 143 ] && [ "$(cat "$tmp/sig.gguf")" = OLD ] && ok "SIGTERM: exit $rc, old output intact" || bad "SIGTERM: exit $rc, output $(head -c 8 "$tmp/sig.gguf")"
[ ! -e "$tmp/sig.gguf.tmp.$pid" ] && ok "SIGTERM removed the temporary" || bad "SIGTERM left $(ls "$tmp"/sig.gguf.tmp.*)"
# memory stays at one chunk of rows, not one per tensor: a safetensors merge kept every tensor's
# scratch to the end (459 MiB here against the GGUF's 11; 6.5 GB for a 70B)
rss() { sed -n 's/.*merge: peak RSS \([0-9]*\).*/\1/p' "$tmp/err"; }
run "$ftune" merge --base "$tmp/tiny" --out "$tmp/tiny_f32.gguf" --type f32; rg=$(rss)
run "$ftune" merge --base "$tmp/tiny" --out "$tmp/tiny_hf" --type safetensors; rs=$(rss)
[ -n "$rg" ] && [ -n "$rs" ] && [ "$rs" -le $((rg + 32)) ] && ok "safetensors merge of 2800 tensors: peak RSS $rs MiB (GGUF $rg)" \
  || bad "safetensors merge peak RSS ${rs:-?} MiB, GGUF ${rg:-?} MiB"
rm -rf "$tmp/tiny_f32.gguf" "$tmp/tiny_hf"
# SIGKILL leaves its temporary (the model's size): the next merge into that output removes it when its
# process is gone, names a live one's, and leaves other outputs' alone
sh -c 'exit 0' & dead=$!; wait $dead
: > "$tmp/sig.gguf.tmp.$dead"; : > "$tmp/other.gguf.tmp.$dead"; : > "$tmp/sig.gguf.tmp.$$"
mkdir -p "$tmp/st_out"; : > "$tmp/st_out/.model.safetensors.tmp-$dead-1f"; : > "$tmp/st_out/keep.txt"
run "$ftune" merge --base "$model" --out "$tmp/sig.gguf" --type q8_0
[ ! -e "$tmp/sig.gguf.tmp.$dead" ] && grep -q "removed $tmp/sig.gguf.tmp.$dead" "$tmp/err" && ok "dead writer's temporary removed" \
  || bad "dead writer's temporary: $(ls "$tmp"/sig.gguf.tmp.* 2>&1) $(cat "$tmp/err")"
[ -e "$tmp/sig.gguf.tmp.$$" ] && grep -q "process $$, which is running" "$tmp/err" && [ -e "$tmp/other.gguf.tmp.$dead" ] \
  && ok "live writer's and other outputs' temporaries kept" || bad "kept: $(ls "$tmp"/*.tmp.* 2>&1)"
run "$ftune" merge --base "$model" --out "$tmp/st_out" --type safetensors
[ ! -e "$tmp/st_out/.model.safetensors.tmp-$dead-1f" ] && [ -e "$tmp/st_out/keep.txt" ] && [ -s "$tmp/st_out/model.safetensors" ] \
  && ok "stale temporary inside a safetensors output removed" || bad "st_out: $(ls -A "$tmp/st_out")"
rm -f "$tmp/sig.gguf.tmp.$$" "$tmp/other.gguf.tmp.$dead"

# merge --check of a 70B on the CPU would load 263 GiB of float32 after the merge: refused before it
mkdir -p "$tmp/m70"
cp "$src/tests/fixtures/configs/Llama-3.3-70B-Instruct/config.json" "$src/models/stories260K/tokenizer.json" "$tmp/m70/"
"$ftune" merge --base "$tmp/m70" --out "$tmp/m70.gguf" --type q4_k_m --check "$src/recipes/data/stories-valid.jsonl" \
  >/dev/null 2>"$tmp/m70.err"; rc=$?
if [ "$(awk '/MemTotal/ {print int($2 / 1048576)}' /proc/meminfo)" -ge 263 ]; then ok "merge --check 70B: skipped (this machine has the memory)"; else
[ $rc -eq 2 ] && grep -q "error: merge --check: the check loads the merged model whole (float32, 262.8 GiB)" "$tmp/m70.err" \
  && [ ! -e "$tmp/m70.gguf" ] && ok "merge --check of a 70B on this CPU refused before the merge: $(grep -o 'more than[^:]*' "$tmp/m70.err")" \
  || bad "merge --check 70B: exit $rc $(grep error "$tmp/m70.err")"
fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
