#!/usr/bin/env bash
# DoRA runs (lora.dora; trainer/lora.h, trainer/model.c ft_proj_dora) through the whole run loop, on
# stories260K NF4 (tests/fixtures/run/tiny.yaml, evaluations and prompts on): the run trains and
# writes its magnitudes as PEFT names them, beside "use_dora": true; a run killed after a checkpoint resumes to the uninterrupted run's adapter byte
# for byte (the checkpoint restores the magnitudes, not the norms a fresh adapter starts from); a
# resume with lora.dora flipped and a DoRA adapter given to a plain LoRA run are refused with one
# line each; DoRA with dropout resumes byte for byte; `ftune export CHECKPOINT --format peft` writes final/'s bytes; lora.init
# takes magnitudes keyed with ".weight" too, and a DoRA file of more modules than the run targets.
# The numbers themselves are tests/test_train_dora.c's (PEFT goldens).
# usage: dora.sh FTUNE SRC_DIR
set -u
ftune=$(realpath "$1"); src=$(realpath "$2")
fx="$src/tests/fixtures/run"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
ok()  { pass=$((pass+1)); echo "ok   $*"; }
bad() { fail=$((fail+1)); echo "FAIL $*"; }
py=$(command -v python3)

common=(--set training.steps=8 --set training.warmup=1 --set eval.every_steps=4 --set checkpoint.every_steps=4
        --set lora.dora=true --set lora.dropout=0)
"$ftune" train "$fx/tiny.yaml" --set output_dir="$tmp/d" "${common[@]}" >/dev/null 2>"$tmp/d.err"; rc=$?
[ $rc -eq 0 ] && ok "a DoRA run trains, evaluates and generates (exit 0)" || bad "exit $rc: $(tail -3 "$tmp/d.err")"
mags=$("$py" - "$tmp/d/final/adapter_model.safetensors" "$tmp/d/final/adapter_config.json" <<'PY'
import json, struct, sys
b = open(sys.argv[1], "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n])
m = [k for k in h if k.endswith(".lora_magnitude_vector")]
pairs = [k for k in h if ".lora_A." in k]
shapes = sorted({(h[k]["dtype"], len(h[k]["shape"])) for k in m})
cfg = json.load(open(sys.argv[2]))
print(len(m), len(pairs), shapes, cfg.get("use_dora"))
PY
)
[ "$mags" = "35 35 [('F32', 1)] True" ] \
  && ok "final adapter: 35 F32 1-D lora_magnitude_vector tensors beside the 35 pairs (5 layers x 7), use_dora true" \
  || bad "final adapter: $mags"

"$ftune" status "$tmp/d" >"$tmp/st.out" 2>&1 && grep -q "DoRA r 4 on all" "$tmp/st.out" \
  && ok "ftune status names the adapter: $(grep -o 'DoRA r 4 on all' "$tmp/st.out")" || bad "status: $(head -3 "$tmp/st.out")"

# killed after step 6 (checkpoint at 4), resumed: the uninterrupted run's adapter, byte for byte
( FT_FAULT_KILL_AFTER_STEP=6 "$ftune" train "$fx/tiny.yaml" --set output_dir="$tmp/k" "${common[@]}" \
  >/dev/null 2>"$tmp/k.err" ) 2>/dev/null; rc=$?
"$ftune" train "$fx/tiny.yaml" --resume --set output_dir="$tmp/k" "${common[@]}" >/dev/null 2>>"$tmp/k.err"; rc2=$?
[ $rc -ne 0 ] && cmp -s "$tmp/d/final/adapter_model.safetensors" "$tmp/k/final/adapter_model.safetensors" \
  && ok "killed (exit $rc) and resumed (exit $rc2): final adapter identical to the uninterrupted run's" \
  || bad "resume: exits $rc/$rc2, adapters differ: $(tail -3 "$tmp/k.err")"

"$ftune" train "$fx/tiny.yaml" --resume --set output_dir="$tmp/k" --set training.steps=8 --set lora.dropout=0 \
  >/dev/null 2>"$tmp/k2.err"; rc=$?
[ $rc -ne 0 ] && grep -q "the checkpoint's adapter is DoRA, this recipe's is plain LoRA (lora.dora)" "$tmp/k2.err" \
  && ok "resume without lora.dora refused: $(grep -o "the checkpoint's adapter[^:]*" "$tmp/k2.err")" \
  || bad "resume without DoRA: exit $rc $(tail -2 "$tmp/k2.err")"

# DoRA with LoRA dropout (tiny.yaml's 0.1; PEFT's dropout path, model_dora.c): a run killed after
# step 5 resumes from step 4's checkpoint to the uninterrupted run's adapter byte for byte (the masks
# are drawn again, the same), and differs from the run without dropout
dd=(--set training.steps=8 --set training.warmup=1 --set eval.every_steps=4 --set checkpoint.every_steps=4
    --set lora.dora=true)
"$ftune" train "$fx/tiny.yaml" --set output_dir="$tmp/x" "${dd[@]}" >/dev/null 2>"$tmp/x.err"; rc=$?
{ FT_FAULT_KILL_AFTER_STEP=5 "$ftune" train "$fx/tiny.yaml" --set output_dir="$tmp/y" "${dd[@]}" >/dev/null 2>&1; } 2>/dev/null
"$ftune" train "$fx/tiny.yaml" --set output_dir="$tmp/y" "${dd[@]}" --resume >/dev/null 2>"$tmp/y.err"; rc2=$?
[ $rc -eq 0 ] && [ $rc2 -eq 0 ] && grep -q "resumed from [^ ]*step-000004.ckpt" "$tmp/y.err" \
  && cmp -s "$tmp/x/final/adapter_model.safetensors" "$tmp/y/final/adapter_model.safetensors" \
  && ! cmp -s "$tmp/x/final/adapter_model.safetensors" "$tmp/d/final/adapter_model.safetensors" \
  && ok "DoRA with lora.dropout 0.1: trains, and killed after step 5 resumes to the same adapter byte for byte" \
  || bad "DoRA with dropout: exit $rc/$rc2: $(tail -2 "$tmp/x.err") $(tail -2 "$tmp/y.err")"

"$ftune" train --model "$src/models/stories260K" --tokens "$src/tests/fixtures/stories260K/greedy_ids.txt" --steps 1 \
  --dora --lora-dropout 0.1 >/dev/null 2>"$tmp/f.err"; rc=$?
[ $rc -eq 0 ] && ok "flag mode: --dora with --lora-dropout 0.1 trains (exit 0)" || bad "flag dropout: exit $rc $(tail -2 "$tmp/f.err")"

"$ftune" train "$fx/tiny.yaml" --set output_dir="$tmp/p" --set training.steps=2 --set training.warmup=1 --set lora.dropout=0 \
  --set lora.init="$tmp/d/final/adapter_model.safetensors" >/dev/null 2>"$tmp/p.err"; rc=$?
[ $rc -ne 0 ] && grep -q "is a DoRA adapter (it has lora_magnitude_vector tensors): set lora.dora: true" "$tmp/p.err" \
  && ok "a DoRA adapter as a plain LoRA run's lora.init refused" || bad "lora.init: exit $rc $(tail -2 "$tmp/p.err")"

"$ftune" train "$fx/tiny.yaml" --set output_dir="$tmp/i" "${common[@]}" --set training.steps=2 \
  --set lora.init="$tmp/d/final/adapter_model.safetensors" --set eval.every_steps=0 >/dev/null 2>"$tmp/i.err"; rc=$?
[ $rc -eq 0 ] && ok "a DoRA adapter as a DoRA run's lora.init (exit 0)" || bad "DoRA lora.init: exit $rc $(tail -2 "$tmp/i.err")"

# `ftune export CHECKPOINT --format peft`: final/'s bytes (each magnitude right after its pair, in both)
"$ftune" export "$tmp/d/checkpoints/step-000008.ckpt" --format peft --out "$tmp/e" >/dev/null 2>"$tmp/e.err"; rc=$?
[ $rc -eq 0 ] && cmp -s "$tmp/e/adapter_model.safetensors" "$tmp/d/final/adapter_model.safetensors" \
  && ok "export of the last checkpoint --format peft: final/'s adapter byte for byte" \
  || bad "export CHECKPOINT: exit $rc, $(tail -1 "$tmp/e.err"); differs: $(cmp "$tmp/e/adapter_model.safetensors" "$tmp/d/final/adapter_model.safetensors" 2>&1)"

# lora.init: magnitudes keyed with the DoraLinearLayer's ".weight" (PEFT's loader takes those too) start
# the run as the plain keys do; a DoRA file of all seven modules starts a q_proj,v_proj run (the others'
# magnitudes are left out with their A and B)
"$py" - "$tmp/d/final/adapter_model.safetensors" "$tmp/w.safetensors" <<'PY'
import json, struct, sys
b = open(sys.argv[1], "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n])
h = {(k + ".weight" if k.endswith(".lora_magnitude_vector") else k): v for k, v in h.items()}
t = json.dumps(h).encode(); t += b" " * (-len(t) % 8)
open(sys.argv[2], "wb").write(struct.pack("<Q", len(t)) + t + b[8 + n:])
PY
"$ftune" train "$fx/tiny.yaml" --set output_dir="$tmp/iw" "${common[@]}" --set training.steps=2 \
  --set lora.init="$tmp/w.safetensors" --set eval.every_steps=0 >/dev/null 2>"$tmp/iw.err"; rc=$?
[ $rc -eq 0 ] && cmp -s "$tmp/iw/final/adapter_model.safetensors" "$tmp/i/final/adapter_model.safetensors" \
  && ok "lora.init with .lora_magnitude_vector.weight keys: the same run as with PEFT's saved keys" \
  || bad "lora.init .weight keys: exit $rc $(tail -1 "$tmp/iw.err")"
"$ftune" train "$fx/tiny.yaml" --set output_dir="$tmp/iq" "${common[@]}" --set training.steps=2 --set lora.targets=q_proj,v_proj \
  --set lora.init="$tmp/d/final/adapter_model.safetensors" --set eval.every_steps=0 >/dev/null 2>"$tmp/iq.err"; rc=$?
[ $rc -eq 0 ] && ok "a 7-module DoRA adapter as a q_proj,v_proj DoRA run's lora.init (exit 0)" \
  || bad "subset lora.init: exit $rc $(tail -1 "$tmp/iq.err")"

# a magnitude of 0 (the backward divides by the magnitudes where it takes y for z) is refused by name
"$py" - "$tmp/d/final/adapter_model.safetensors" "$tmp/zero.safetensors" <<'PY'
import json, struct, sys
b = bytearray(open(sys.argv[1], "rb").read()); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n])
k = "base_model.model.model.layers.1.mlp.gate_proj.lora_magnitude_vector"
o = 8 + n + h[k]["data_offsets"][0] + 4 * 3
b[o:o + 4] = struct.pack("<f", 0.0)
open(sys.argv[2], "wb").write(b)
PY
"$ftune" train "$fx/tiny.yaml" --set output_dir="$tmp/z" "${common[@]}" --set training.steps=2 \
  --set lora.init="$tmp/zero.safetensors" --set eval.every_steps=0 >/dev/null 2>"$tmp/z.err"; rc=$?
[ $rc -ne 0 ] && grep -q "layers.1.mlp.gate_proj.lora_magnitude_vector\[3\] is 0: a DoRA magnitude must be finite and not 0" "$tmp/z.err" \
  && ok "a zero magnitude in lora.init refused: $(grep -o 'gate_proj.lora_magnitude_vector.*' "$tmp/z.err")" \
  || bad "zero magnitude: exit $rc $(tail -2 "$tmp/z.err")"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
