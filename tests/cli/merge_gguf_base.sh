#!/usr/bin/env bash
# `ftune merge` and a run's export.merged on a GGUF base (export/merge_gguf.c), on the tiny bases that
# llama.cpp itself quantized (tests/fixtures/gguf_base, tests/ref/make_gguf_base_golden.py):
#   - no adapter, --type base (the default for a GGUF base): the output is the base file byte for byte,
#     for all seven mixes (Q4_K_M, Q8_0, Q3_K_M, Q2_K, Q4_0, IQ4_XS, IQ4_NL); keys of every GGUF value type (scalars and
#     arrays) added to a base come out byte for byte (ft_ggufw_copy_kv);
#   - an adapter trained 5 steps (flag mode, all seven linears, r 8) on llama_q4_k_m (llama: q/k rows
#     permuted) and on llama_q2_k (Q2_K/Q3_K linears ftune does not encode), merged with --type base,
#     base-f16 and q8_0: lib/gguf_diff.py checks the tensors are the base's in its order, the metadata
#     the base's byte for byte (q8_0: but general.file_type 7), every tensor without a module
#     byte-identical, each merged one of the expected type (Q2_K, Q3_K -> Q4_K);
#   - adapters on llama_iq4_xs and qwen3_iq4_nl merged with --type base --check: IQ4_XS -> Q4_K,
#     IQ4_NL -> Q4_0 (no IQ encoder), the rest byte for byte, the merge keeping the gain;
#   - adapters with lora_B zeroed, --type base: every merged tensor kept in its type (Q4_K, Q6_K, Q4_0,
#     Q8_0, Q5_K) comes back byte for byte (ft_ggml_requantize_row starts from the base's blocks), so
#     the llama_q4_k_m, llama_q4_0 and qwen2_q8_0 merges are their base files;
#   - merge --check: the training-time model (the GGUF base as loaded + adapter) vs the merged file
#     loaded back: base-f16 within 1e-3 (F16 rounding of the merged weights), q8_0 within 1e-2, base
#     (re-encoded to Q4_K/Q6_K against the base's blocks, the share of blocks that kept their scales
#     reported; Q2_K/Q3_K to Q4_K) keeps at least half of what training gained over the base (measured:
#     llama_q4_k_m 2.93 vs training-time 2.40, base 6.34; ggml's fresh encoding alone gave 2.87;
#     llama_q2_k 3.02 vs 2.84, unchanged: its linears change type);
#   - a recipe run on qwen3_q3_k_m with export.merged: base writes model-base.gguf of the same checks,
#     and merge --check of its run directory renders the JSONL validation data as the run did;
#   - refused with one line: --type safetensors, --out the base file, --merge-into nf4.
# usage: merge_gguf_base.sh FTUNE SRC_DIR
set -u
ftune=$(realpath "$1"); src=$(realpath "$2")
fx="$src/tests/fixtures/gguf_base"
diffpy="$src/tests/cli/lib/gguf_diff.py"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
ok()  { pass=$((pass+1)); echo "ok   $*"; }
bad() { fail=$((fail+1)); echo "FAIL $*"; }
near() { awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a != "" && b != "" && d <= t) }'; }
# gdiff BASE OUT KIND: lib/gguf_diff.py's verdict as one ok/FAIL line
gdiff() { local line; line=$(python3 "$diffpy" "$@" 2>&1 | tail -1)
  case "$line" in ok*) ok "${line#ok   }" ;; *) bad "$line" ;; esac; }
# expect_err PATTERN -- command...: exit 2 (a usage error, FT_E_ARG) and exactly one error line matching PATTERN
expect_err() {
  local pat="$1"; shift 2
  "$@" >"$tmp/x.out" 2>"$tmp/x.err"; local rc=$?
  if [ $rc -eq 2 ] && grep -qE -e "$pat" "$tmp/x.err" && [ "$(grep -c error "$tmp/x.err")" -eq 1 ]; then
    ok "refused: $(grep error "$tmp/x.err" | head -c 220)"
  else bad "expected exit 2 and /$pat/, got $rc: $(head -c 300 "$tmp/x.err")"; fi
}

# --- no adapter: the base file itself --------------------------------------------------------------
for c in llama_q4_k_m qwen2_q8_0 qwen3_q3_k_m llama_q2_k llama_q4_0 llama_iq4_xs qwen3_iq4_nl; do
  "$ftune" merge --base "$fx/$c/model.gguf" --out "$tmp/$c-plain.gguf" >"$tmp/out" 2>"$tmp/err" \
    && cmp -s "$fx/$c/model.gguf" "$tmp/$c-plain.gguf" \
    && ok "$c: merge without an adapter (--type base by default) writes the base byte for byte ($(stat -c %s "$tmp/$c-plain.gguf") bytes)" \
    || bad "$c: plain merge: $(tail -2 "$tmp/err"; cmp "$fx/$c/model.gguf" "$tmp/$c-plain.gguf" 2>&1 | head -1)"
done

# metadata of every GGUF value type (scalars and arrays, as ggml's gguf.cpp allows them) copies exactly:
# keys added to a base's header, the merge must write that file again byte for byte
python3 - "$fx/llama_q4_0/model.gguf" "$tmp/kv.gguf" <<'PY'
import struct, sys
b = open(sys.argv[1], "rb").read()
nt, nkv = struct.unpack_from("<QQ", b, 8)
s = lambda t: struct.pack("<Q", len(t.encode())) + t.encode()
def kv(k, t, v): return s(k) + struct.pack("<I", t) + v
def arr(k, et, vals): return kv(k, 9, struct.pack("<IQ", et, len(vals)) + b"".join(vals))
extra = [kv("test.u8", 0, struct.pack("<B", 200)), kv("test.i8", 1, struct.pack("<b", -100)),
         kv("test.u16", 2, struct.pack("<H", 65000)), kv("test.i16", 3, struct.pack("<h", -32000)),
         kv("test.u64", 10, struct.pack("<Q", 1 << 52)), kv("test.i64", 11, struct.pack("<q", -(1 << 40))),
         kv("test.f64", 12, struct.pack("<d", 0.5)), kv("test.bool", 7, b"\x00"),
         arr("test.arr_u8", 0, [struct.pack("<B", x) for x in (0, 7, 255)]),
         arr("test.arr_i16", 3, [struct.pack("<h", x) for x in (-1, 2, 30000)]),
         arr("test.arr_u64", 10, [struct.pack("<Q", x) for x in (0, 1 << 53)]),
         arr("test.arr_f64", 12, [struct.pack("<d", x) for x in (0.1, -1e300, 2 ** -1074)]),
         arr("test.arr_bool", 7, [b"\x01", b"\x00"]), arr("test.arr_str", 8, [s(""), s("\u00e9t\u00e9 \u6771\u4eac"), s("x")]),
         arr("test.arr_empty", 5, [])]
# the header up to the tensor infos: magic, version, counts, then nkv key/values; find where they end
o, sizes = 24, {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
def skip(t):
    global o
    if t == 8:
        n = struct.unpack_from("<Q", b, o)[0]; o += 8 + n
    elif t == 9:
        et, n = struct.unpack_from("<IQ", b, o); o += 12
        for _ in range(n):
            skip(et)
    else:
        o += sizes[t]
for _ in range(nkv):
    n = struct.unpack_from("<Q", b, o)[0]; o += 8 + n
    t = struct.unpack_from("<I", b, o)[0]; o += 4; skip(t)
kv_end = o
for _ in range(nt):  # tensor infos
    n = struct.unpack_from("<Q", b, o)[0]; o += 8 + n
    nd = struct.unpack_from("<I", b, o)[0]; o += 4 + 8 * nd + 4 + 8
data = (o + 31) // 32 * 32
head = b[:16] + struct.pack("<Q", nkv + len(extra)) + b[24:kv_end] + b"".join(extra) + b[kv_end:o]
head += bytes((-len(head)) % 32)
open(sys.argv[2], "wb").write(head + b[data:])
PY
"$ftune" merge --base "$tmp/kv.gguf" --out "$tmp/kv-out.gguf" >"$tmp/out" 2>"$tmp/err" && cmp -s "$tmp/kv.gguf" "$tmp/kv-out.gguf" \
  && grep -q "test.f64 (FLOAT64) copied through a double" "$tmp/err" \
  && ok "metadata of every value type (u8..f64, bool, string; arrays of them, empty) copied byte for byte; a FLOAT64 scalar warns" \
  || bad "kv types: $(tail -3 "$tmp/err"; cmp "$tmp/kv.gguf" "$tmp/kv-out.gguf" 2>&1)"

# --- a trained adapter: each kind ------------------------------------------------------------------
# adapter C DIR ALPHA: 5 steps on C's tokens, PEFT directory DIR (lora_alpha ALPHA in its config)
adapter() {
  mkdir -p "$2"
  "$ftune" train --model "$fx/$1/model.gguf" --tokens "$fx/$1/tokens.txt" --steps 5 --lr 1e-2 --lora-r 8 --lora-alpha 16 \
    --save "$2/adapter_model.safetensors" --device cpu --threads 2 >"$tmp/train.out" 2>"$tmp/train.err" \
    || { bad "$1: train: $(tail -2 "$tmp/train.err")"; return 1; }
  printf '{"peft_type": "LORA", "r": 8, "lora_alpha": %s, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"], "base_model_name_or_path": "%s"}\n' \
    "$3" "$fx/$1/model.gguf" >"$2/adapter_config.json"
}
val() { sed -n "s/.*$1 *\([0-9.]*\).*/\1/p" "$tmp/check.out" | head -1; }
for c in llama_q4_k_m llama_q2_k; do
  adapter $c "$tmp/$c-ad" 16 || continue
  for k in base base-f16 q8_0; do
    o="$tmp/$c-$k.gguf"
    "$ftune" merge --base "$fx/$c/model.gguf" --adapter "$tmp/$c-ad" --out "$o" --type $k --check "$fx/$c/tokens.txt" \
      --threads 2 >"$tmp/check.out" 2>"$tmp/check.err" || { bad "$c --type $k: $(tail -2 "$tmp/check.err")"; continue; }
    gdiff "$fx/$c/model.gguf" "$o" $k
    b=$(val "base GGUF loss"); t=$(val "training-time loss"); m=$(val "merged [a-z0-9_-]* *loss")
    case $k in
      base-f16) near "$m" "$t" 1e-3 && ok "$c --type $k --check: merged loss $m == training-time $t (F16 rounding, <= 1e-3)" \
                  || bad "$c $k: merged '$m' vs training-time '$t'" ;;
      q8_0) near "$m" "$t" 1e-2 && ok "$c --type $k --check: merged loss $m vs training-time $t (<= 1e-2)" \
              || bad "$c $k: merged '$m' vs training-time '$t'" ;;
      base) kept=$(grep -o "[0-9]* of [0-9]* blocks ([0-9.]*%) unchanged by the delta kept the base's bytes" "$tmp/check.err")
            awk -v b="$b" -v t="$t" -v m="$m" 'BEGIN { exit !(b != "" && t != "" && m != "" && t < b && b - m >= (b - t) / 2) }' \
              && { [ $c = llama_q2_k ] || [ -n "$kept" ]; } \
              && ok "$c --type base --check: base $b, training-time $t, merged (re-encoded to the base's types) $m: keeps $(awk -v b="$b" -v t="$t" -v m="$m" 'BEGIN { printf "%.0f", 100 * (b - m) / (b - t) }')% of the gain${kept:+; $kept}" \
              || bad "$c base: base '$b' training-time '$t' merged '$m'; '$kept'" ;;
    esac
  done
done
# the one line naming the tensors whose type changed (Q2_K base: its Q2_K and Q3_K linears)
"$ftune" merge --base "$fx/llama_q2_k/model.gguf" --adapter "$tmp/llama_q2_k-ad" --out "$tmp/q2.gguf" >"$tmp/out" 2>"$tmp/err"
n=$(grep -c "merged tensors written in another type than the base's" "$tmp/err")
[ "$n" -eq 1 ] && grep -qE "Q[23]_K -> Q4_K x [0-9]+" "$tmp/err" && ok "one line names the type changes: $(grep -o 'Q[23]_K -> Q4_K x [0-9]*' "$tmp/err" | tr '\n' ' ')" \
  || bad "type change line: $(cat "$tmp/err")"

# the IQ bases (ftune decodes IQ4_XS / IQ4_NL, has no encoder for them): merged IQ4_XS linears become
# Q4_K, IQ4_NL ones Q4_0 (export/merge_gguf.c ft_merge_base_type says why), every other tensor the
# base's bytes; the merged file keeps at least half of what training gained (measured: llama_iq4_xs
# base 6.47, training-time 2.38, merged 2.49; qwen3_iq4_nl 6.23, 2.91, 2.95)
for c in llama_iq4_xs:IQ4_XS:Q4_K qwen3_iq4_nl:IQ4_NL:Q4_0; do
  IFS=: read -r cc from to <<<"$c"
  adapter $cc "$tmp/$cc-ad" 16 || continue
  "$ftune" merge --base "$fx/$cc/model.gguf" --adapter "$tmp/$cc-ad" --out "$tmp/$cc-base.gguf" --check "$fx/$cc/tokens.txt" \
    --threads 2 >"$tmp/check.out" 2>"$tmp/check.err" || { bad "$cc --type base: $(tail -2 "$tmp/check.err")"; continue; }
  gdiff "$fx/$cc/model.gguf" "$tmp/$cc-base.gguf" base
  b=$(val "base GGUF loss"); t=$(val "training-time loss"); m=$(val "merged [a-z0-9_-]* *loss")
  grep -qE "merged tensors written in another type than the base's .*: $from -> $to x [0-9]+ " "$tmp/check.err" \
    && awk -v b="$b" -v t="$t" -v m="$m" 'BEGIN { exit !(b != "" && t != "" && m != "" && t < b && b - m >= (b - t) / 2) }' \
    && ok "$cc --type base --check: $from -> $to; base $b, training-time $t, merged $m" \
    || bad "$cc base: base '$b' training-time '$t' merged '$m'; $(grep -o "another type.*" "$tmp/check.err")"
done

# an exactly zero delta (lora_B zeroed): re-encoding a merged tensor to its own type starts from the
# base's blocks (ft_ggml_requantize_row: per block the better of the base's scales with the codes
# re-rounded and ggml's fresh encoding, a tie to the first), so the base's bytes come back exactly for
# every type ftune encodes that these bases hold: Q4_K, Q6_K (llama_q4_k_m), Q4_0, Q8_0, Q5_K
# (qwen3_q3_k_m, whose Q3_K linears become Q4_K and so differ; Q5_0: tests/test_ggml_requant.c).
# ggml's encoders alone (the merge before) are not idempotent on decoded blocks: they changed 22 of
# 571392 Q4_K and 4985 of 134400 Q6_K bytes (llama_q4_k_m; its logits moved by 9.0e-3 of their largest
# magnitude) and 72 of 22528 Q5_K bytes (qwen3_q3_k_m); Q4_0 and Q8_0 came back already.
# zero_adapter SRC DST: the PEFT directory SRC with every lora_B zeroed
zero_adapter() {
  mkdir -p "$2"
  python3 - "$1/adapter_model.safetensors" "$2/adapter_model.safetensors" <<'PY'
import json, struct, sys
b = bytearray(open(sys.argv[1], "rb").read())
n = struct.unpack("<Q", b[:8])[0]
for k, v in json.loads(b[8:8 + n]).items():
    if "lora_B" in k:
        s, e = v["data_offsets"]
        b[8 + n + s:8 + n + e] = bytes(e - s)
open(sys.argv[2], "wb").write(b)
PY
  cp "$1/adapter_config.json" "$2/"
}
for c in llama_q4_k_m llama_q4_0 qwen2_q8_0 qwen3_q3_k_m; do
  [ -d "$tmp/$c-ad" ] || adapter $c "$tmp/$c-ad" 16 || continue
  zero_adapter "$tmp/$c-ad" "$tmp/$c-zero"
  "$ftune" merge --base "$fx/$c/model.gguf" --adapter "$tmp/$c-zero" --out "$tmp/$c-zero.gguf" >"$tmp/out" 2>"$tmp/err" \
    || { bad "$c zero delta merge: $(tail -1 "$tmp/err")"; continue; }
  # per type of the merged linears that keep it: bytes that differ from the base's; others: copied
  line=$(python3 - "$src/tests/cli/lib" "$fx/$c/model.gguf" "$tmp/$c-zero.gguf" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
from gguf_diff import LINEAR, NAMES, parse
_, _, bt = parse(sys.argv[2])
_, _, ot = parse(sys.argv[3])
per, other = {}, 0
for (name, _, t, d), (_, _, t2, d2) in zip(bt, ot):
    if t2 != t:
        continue
    if not LINEAR.match(name):
        other += d != d2
        continue
    nb, nt = per.get(NAMES[t], (0, 0))
    per[NAMES[t]] = (nb + sum(x != y for x, y in zip(d, d2)), nt + len(d))
ok = other == 0 and all(v[0] == 0 for v in per.values())
print(("ok " if ok else "FAIL ") + ", ".join(f"{k} {v[0]} of {v[1]} bytes differ" for k, v in sorted(per.items())))
PY
)
  case "$line" in
    ok*) ok "$c: zero delta, --type base: the merged linears come back byte for byte (${line#ok })" ;;
    *) bad "$c: zero delta: ${line#FAIL }" ;;
  esac
done
for c in llama_q4_k_m llama_q4_0 qwen2_q8_0; do
  cmp -s "$fx/$c/model.gguf" "$tmp/$c-zero.gguf" && ok "$c: zero delta, --type base: the merged file is the base byte for byte" \
    || bad "$c: zero delta: the merged file differs from the base: $(cmp "$fx/$c/model.gguf" "$tmp/$c-zero.gguf" 2>&1 | head -1)"
done

# --- a recipe run with export.merged: base ---------------------------------------------------------
cat >"$tmp/r.yaml" <<EOF
model: {path: $fx/qwen3_q3_k_m/model.gguf, device: cpu, threads: 2}
lora: {r: 8, alpha: 16, targets: all}
data: {train: $src/recipes/data/stories-train.jsonl, valid: $src/recipes/data/stories-valid.jsonl, format: text, seq_len: 64}
training: {micro_batch: 4, grad_accum: 1, steps: 6, lr: 1e-2, warmup: 0}
eval: {every_steps: 6, max_batches: 2}
checkpoint: {every_steps: 6}
export: {formats: [peft, gguf], merged: base}
output_dir: $tmp/run
EOF
if "$ftune" train "$tmp/r.yaml" >"$tmp/train.out" 2>"$tmp/train.err"; then
  grep -q "export: .*model-base.gguf (merged model, in the base's types)" "$tmp/train.out" \
    && ok "recipe export.merged: base: $(grep -o 'model-base.gguf.*' "$tmp/train.out")" || bad "run output: $(tail -3 "$tmp/train.out")"
  gdiff "$fx/qwen3_q3_k_m/model.gguf" "$tmp/run/final/model-base.gguf" base
  "$ftune" merge --base "$fx/qwen3_q3_k_m/model.gguf" --adapter "$tmp/run" --out "$tmp/run-q8.gguf" --type q8_0 \
    --check "$src/recipes/data/stories-valid.jsonl" --threads 2 >"$tmp/check.out" 2>"$tmp/check.err"
  t=$(val "training-time loss"); m=$(val "merged [a-z0-9_-]* *loss")
  near "$m" "$t" 1e-2 && grep -q "rendered as in $tmp/run/recipe.yaml" "$tmp/check.err" \
    && ok "merge --check RUN_DIR (JSONL rendered as the run did): q8_0 merged loss $m vs training-time $t" \
    || bad "run check: '$m' vs '$t': $(tail -2 "$tmp/check.err")"
else
  bad "recipe run on the GGUF base: $(tail -3 "$tmp/train.err")"
fi

# --- refusals --------------------------------------------------------------------------------------
expect_err "needs a Hugging Face base; .*model.gguf is a GGUF file" -- \
  "$ftune" merge --base "$fx/llama_q4_0/model.gguf" --out "$tmp/st" --type safetensors
[ ! -e "$tmp/st" ] && ok "nothing written for --type safetensors" || bad "left $tmp/st"
cp "$fx/llama_q4_0/model.gguf" "$tmp/own.gguf"
expect_err "is the base model's file" -- "$ftune" merge --base "$tmp/own.gguf" --out "$tmp/own.gguf"
cmp -s "$fx/llama_q4_0/model.gguf" "$tmp/own.gguf" && ok "the base file is untouched" || bad "base changed"
expect_err "merge-into nf4 is for a Hugging Face base" -- \
  "$ftune" merge --base "$fx/llama_q4_k_m/model.gguf" --adapter "$tmp/llama_q4_k_m-ad" --out "$tmp/n.gguf" --merge-into nf4

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
