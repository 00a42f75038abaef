#!/usr/bin/env bash
# `ftune merge` and `ftune export` of an adapter with trainable tokens (PEFT's trainable_token_indices):
# the PEFT adapters of tests/fixtures/train_tokens/<case> (tests/ref/make_trainable_tokens_golden.py) on
# tests/fixtures/forward/<case>: llama_gqa4 (untied: embedding + lm_head rows), llama_mha_tied (embedding
# rows only; lm_head is the embedding). tests/test_merge_tokens.c checks the numbers through the library;
# this is the command line:
#   - merge --type safetensors, then `ftune eval --dump-logits`: PEFT's merge_and_unload() logits
#     (logits_merged.bin) within 1e-5 (max |d| / max |ref|);
#   - merge --check: the training-time model (NF4 base + adapter with its token rows, as `eval --adapter`
#     applies it) beside the merged file; --merge-into nf4 at F32 must give the training-time loss;
#   - export --format gguf: the untied case writes its token_embd / output pairs; the tied case is refused
#     with one line pointing at `ftune merge`, nothing left at the output.
# The fixtures have no tokenizer: a byte-level BPE of exactly 256 ids is made here (as merge_arch.sh).
# usage: merge_tokens.sh FTUNE SRC_DIR
set -u
ftune=$(realpath "$1"); src=$(realpath "$2")
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
ok()  { pass=$((pass+1)); echo "ok   $*"; }
bad() { fail=$((fail+1)); echo "FAIL $*"; }
near() { awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a != "" && b != "" && d <= t) }'; }
. "$src/tests/cli/lib/compare.sh"

python3 "$src/tests/cli/lib/tiny_bpe.py" "$tmp/tokenizer.json"

for c in llama_gqa4 llama_mha_tied; do
  fx="$src/tests/fixtures/forward/$c"; tc="$src/tests/fixtures/train_tokens/$c"; ad="$tc/peft_adapter"; m="$tmp/$c"
  mkdir -p "$m"; cp "$fx"/config.json "$fx"/model.safetensors "$tmp/tokenizer.json" "$m/"

  # merged checkpoint: PEFT's merged logits
  if "$ftune" merge --base "$m" --adapter "$ad" --out "$tmp/$c-merged" --type safetensors >"$tmp/out" 2>"$tmp/err" &&
     "$ftune" eval --model "$tmp/$c-merged" --tokens "$tc/tokens0.txt" --dump-logits "$tmp/$c.bin" --device cpu \
       --threads 1 >"$tmp/out" 2>"$tmp/err"; then
    peft=$(sed -n 's/^loss \([0-9.]*\)$/\1/p' "$tmp/out")
    e=$(relerr "$tmp/$c.bin" "$tc/logits_merged.bin")
    le "$e" 1e-5 && ok "$c: merged safetensors, eval logits vs PEFT merge_and_unload: $e (<= 1e-5)" \
      || bad "$c: merged safetensors logits vs PEFT: $e"
  else
    bad "$c: merge/eval: $(grep -i error "$tmp/err" | head -2)"
  fi

  # --check: the merged GGUF's loss is the merged checkpoint's (PEFT's logits); the training-time model
  # carries the token rows: merging into the NF4 round trip reproduces its loss
  for into in base nf4; do
    "$ftune" merge --base "$m" --adapter "$ad" --out "$tmp/$c-$into.gguf" --type f32 --merge-into $into \
      --check "$tc/tokens0.txt" --threads 1 >"$tmp/out" 2>"$tmp/err"; rc=$?
    train=$(sed -n 's/.*training-time loss *\([0-9.]*\).*/\1/p' "$tmp/out")
    merged=$(sed -n 's/.*merged f32 *loss *\([0-9.]*\).*/\1/p' "$tmp/out")
    ref=$([ $into = nf4 ] && echo "$train" || echo "${peft:-}")
    [ $rc -eq 0 ] && near "$merged" "$ref" 1e-4 && ! grep -q "loss skipped" "$tmp/err" \
      && ok "$c --check --merge-into $into: merged f32 loss $merged (want $ref), training-time (NF4 + adapter) $train" \
      || bad "$c --check --merge-into $into: exit $rc, merged '$merged' (want '$ref'), training-time '$train' $(grep -iE "error|skipped" "$tmp/err")"
  done

  # llama.cpp adapter
  out="$tmp/$c-adapter.gguf"
  "$ftune" export "$ad" --format gguf --base "$m" --out "$out" >"$tmp/out" 2>"$tmp/err"; rc=$?
  if [ $c = llama_mha_tied ]; then
    [ $rc -eq 1 ] && grep -q "tied model cannot go into a llama.cpp adapter: .*ftune merge" "$tmp/err" && [ ! -e "$out" ] \
      && ! ls "$tmp" | grep -q "adapter.gguf.*tmp" \
      && ok "$c: export --format gguf refused: $(grep -o 'trainable tokens of a tied.*' "$tmp/err" | head -c 120)" \
      || bad "$c: export of a tied model's tokens: exit $rc: $(cat "$tmp/err" | head -3)"
  else
    "$ftune" inspect "$out" >"$tmp/insp" 2>&1
    [ $rc -eq 0 ] && grep -qE "token_embd.weight.lora_a +F32 +\[3, 256\]" "$tmp/insp" \
      && grep -qE "output.weight.lora_b +F32 +\[3, 256\]" "$tmp/insp" \
      && ok "$c: export --format gguf holds token_embd / output rank-3 pairs" \
      || bad "$c: export: exit $rc $(grep -i error "$tmp/err") $(grep -E "token_embd|output" "$tmp/insp")"
  fi
done

# ---- a GGUF base whose token_embd ftune cannot encode (IQ4_XS), merged with --type base: only the rows of
# tokens 5 and 7 change, so the tensor becomes Q8_0, its other rows within Q8_0's rounding (half a step:
# 1/254 of a block's largest value) of the base's, compared with the base-f16 merge, whose F16 token_embd
# holds the base's rows decoded (a 4-bit re-encoding moved them all by 6-9%); output (Q6_K) keeps its type
gb="$src/tests/fixtures/gguf_base/llama_iq4_xs"; ga="$tmp/iq4_adapter"; mkdir -p "$ga"
"$ftune" train --model "$gb/model.gguf" --tokens "$gb/tokens.txt" --steps 3 --lr 1e-2 --lora-r 4 --lora-alpha 8 \
  --trainable-tokens 5,7 --device cpu --threads 2 --save "$ga/adapter_model.safetensors" >/dev/null 2>"$tmp/gtrain.err"
printf '{"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"], "trainable_token_indices": {"embed_tokens": [5, 7], "lm_head": [5, 7]}}' \
  > "$ga/adapter_config.json"
"$ftune" merge --base "$gb/model.gguf" --adapter "$ga" --out "$tmp/iq4m.gguf" --type base >/dev/null 2>"$tmp/gm.err"; rc=$?
"$ftune" merge --base "$gb/model.gguf" --adapter "$ga" --out "$tmp/iq4f.gguf" --type base-f16 >/dev/null 2>>"$tmp/gm.err"; rc2=$?
"$ftune" inspect "$tmp/iq4m.gguf" >"$tmp/gm.insp" 2>&1
res=$(python3 - "$tmp/iq4m.gguf" "$tmp/iq4f.gguf" <<'PY'
import struct, sys
def tensor(path, want):
    b = open(path, "rb").read(); o = 8; nt, nkv = struct.unpack_from("<QQ", b, o); o += 16
    def s(o):
        n = struct.unpack_from("<Q", b, o)[0]; return b[o + 8:o + 8 + n].decode(), o + 8 + n
    VS = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
    def skip(t, o):
        if t == 8: return s(o)[1]
        if t == 9:
            at, n = struct.unpack_from("<IQ", b, o); o += 12
            for _ in range(n): o = skip(at, o)
            return o
        return o + VS[t]
    for _ in range(nkv):
        _, o = s(o); t = struct.unpack_from("<I", b, o)[0]; o = skip(t, o + 4)
    info = []
    for _ in range(nt):
        name, o = s(o); nd = struct.unpack_from("<I", b, o)[0]; o += 4
        ne = struct.unpack_from("<%dQ" % nd, b, o); o += 8 * nd
        ty, off = struct.unpack_from("<IQ", b, o); o += 12
        info.append((name, ne, ty, off))
    data = (o + 31) // 32 * 32
    for name, ne, ty, off in info:
        if name != want: continue
        n0, rows, p, out = ne[0], ne[1], data + off, []
        for r in range(rows):
            row = []
            if ty == 1:
                row = list(struct.unpack_from("<%de" % n0, b, p)); p += 2 * n0
            elif ty == 8:
                for _ in range(n0 // 32):
                    d = struct.unpack_from("<e", b, p)[0]; q = struct.unpack_from("<32b", b, p + 2); p += 34
                    row += [d * x for x in q]
            else:
                raise SystemExit("type %d" % ty)
            out.append(row)
        return out
q, f = tensor(sys.argv[1], "token_embd.weight"), tensor(sys.argv[2], "token_embd.weight")
worst = 0.0
for r in range(len(f)):
    if r in (5, 7): continue
    scale = max(abs(x) for x in f[r]) or 1.0
    worst = max(worst, max(abs(a - c) for a, c in zip(q[r], f[r])) / scale)
print("%.3e" % worst)
PY
)
worst=$res
[ $rc -eq 0 ] && [ $rc2 -eq 0 ] && grep -qE "token_embd.weight +Q8_0" "$tmp/gm.insp" && grep -qE "output.weight +Q6_K" "$tmp/gm.insp" \
  && near "$worst" 0 0.005 \
  && ok "IQ4_XS base, tokens 5 and 7: token_embd Q8_0, its other rows within $worst of the base's (max |d| / row max), output kept Q6_K" \
  || bad "IQ4_XS base: exits $rc/$rc2, rows off by '$worst': $(grep -E "token_embd|output.weight" "$tmp/gm.insp") $(tail -3 "$tmp/gm.err")"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
