#!/usr/bin/env bash
# Untrained template tokens (trainer/untrained.h). Llama 3 base checkpoints ship <|eot_id|> and the
# header tokens as zero rows of embed_tokens and lm_head, which LoRA leaves frozen: an adapter
# cannot teach such a base to end its answers. Here stories260K (tied embeddings) with the rows
# of BOS (1) and EOS (2) zeroed stands in: the run must name BOS as a prompt token with an
# untrained embedding and EOS as an end of answer with an untrained lm_head row, then train as
# usual; the unmodified model draws no such warning.
# With lora.trainable_tokens: auto the run trains exactly those two tokens' rows instead (tied:
# one set of rows), says so, warns about nothing, writes the rows into its adapter (moved off
# zero), and a run killed after a checkpoint resumes to the uninterrupted run's adapter bit for
# bit. A token string in the list resolves through the tokenizer; an unknown one is an error.
# usage: untrained.sh FTUNE SRC_DIR
set -u
ftune=$(realpath "$1"); src=$(realpath "$2")
fx="$src/tests/fixtures/run"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
ok()  { pass=$((pass+1)); echo "ok   $*"; }
bad() { fail=$((fail+1)); echo "FAIL $*"; }

cp -r "$src/models/stories260K" "$tmp/m"
st="$tmp/m/model.safetensors"
hl=$(od -An -t u8 -N8 "$st" | tr -d ' ')
head -c 4096 "$st" | grep -q '"model.embed_tokens.weight":{"dtype":"F32","shape":\[512,64\],"data_offsets":\[0,' \
  || bad "fixture: embed_tokens is not the first F32 [512,64] tensor"
row=$((64 * 4))
dd if=/dev/zero of="$st" bs=1 seek=$((8 + hl + 1 * row)) count=$((2 * row)) conv=notrunc 2>/dev/null  # rows 1, 2

run() { local o=$1 m=$2; shift 2
        "$ftune" train "$fx/tiny.yaml" --set output_dir="$tmp/$o" --set model.path="$m" --set training.steps=2 \
          --set training.warmup=1 --set eval.every_steps=0 "$@" >/dev/null 2>"$tmp/$o.err"; }
run z "$tmp/m"; rc=$?
[ $rc -eq 0 ] && ok "the run trains (exit 0)" || bad "exit $rc: $(tail -3 "$tmp/z.err")"
grep -q "warning: $tmp/m: the template's token <s> (1) has an untrained embedding in this base (a zero row)" "$tmp/z.err" \
  && ok "BOS named: $(grep -o "the template's token <s>[^:]*" "$tmp/z.err")" || bad "BOS warning: $(grep -i untrained "$tmp/z.err")"
grep -q "warning: $tmp/m: </s> (2), which ends an answer, has an untrained lm_head row in this base" "$tmp/z.err" \
  && ok "EOS named: $(grep -o '</s> (2), which ends[^:]*' "$tmp/z.err")" || bad "EOS warning: $(grep -i untrained "$tmp/z.err")"
[ "$(grep -c untrained "$tmp/z.err")" -eq 2 ] && ok "two warning lines, nothing else flagged" || bad "$(grep untrained "$tmp/z.err")"

run p "$src/models/stories260K"; rc=$?
[ $rc -eq 0 ] && ! grep -q untrained "$tmp/p.err" && ok "the pretrained model draws no warning" \
  || bad "pretrained: exit $rc $(grep untrained "$tmp/p.err")"

# ---- lora.trainable_tokens: auto
run t "$tmp/m" --set lora.trainable_tokens=auto --set training.steps=8 --set checkpoint.every_steps=4; rc=$?
[ $rc -eq 0 ] && ok "auto: the run trains (exit 0)" || bad "auto: exit $rc: $(tail -3 "$tmp/t.err")"
grep -q "lora.trainable_tokens: the embedding (tied lm_head) rows of 2 tokens are trained whole: <s> (1), </s> (2)" "$tmp/t.err" \
  && ok "auto picks <s> (1) and </s> (2)" || bad "auto: $(grep -i 'trainable\|untrained' "$tmp/t.err")"
! grep -q "untrained" "$tmp/t.err" && ok "auto: no untrained-token warning left" || bad "$(grep untrained "$tmp/t.err")"
py=$(command -v python3)
rows=$("$py" - "$tmp/t/final/adapter_model.safetensors" <<'PY'
import json, struct, sys
b = open(sys.argv[1], "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n])
k = "base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta"
t = h.get(k)
if not t: print("missing"); sys.exit()
v = struct.unpack("<%df" % (t["shape"][0] * t["shape"][1]), b[8 + n + t["data_offsets"][0]:8 + n + t["data_offsets"][1]])
print(t["dtype"], t["shape"], sum(1 for x in v if x != 0.0), "lm_head" in json.dumps(list(h)))
PY
)
[ "$rows" = "F32 [2, 64] 128 False" ] && ok "final adapter: one F32 [2, 64] row tensor, every element moved off zero" \
  || bad "final adapter rows: $rows"
# killed after step 6 (checkpoint at 4), resumed: the uninterrupted run's adapter, byte for byte
( FT_FAULT_KILL_AFTER_STEP=6 "$ftune" train "$fx/tiny.yaml" --set output_dir="$tmp/k" --set model.path="$tmp/m" \
  --set training.steps=8 --set training.warmup=1 --set eval.every_steps=0 --set lora.trainable_tokens=auto \
  --set checkpoint.every_steps=4 >/dev/null 2>"$tmp/k.err" ) 2>/dev/null; rc=$?
"$ftune" train "$fx/tiny.yaml" --resume --set output_dir="$tmp/k" --set model.path="$tmp/m" --set training.steps=8 \
  --set training.warmup=1 --set eval.every_steps=0 --set lora.trainable_tokens=auto --set checkpoint.every_steps=4 \
  >/dev/null 2>>"$tmp/k.err"; rc2=$?
cmp -s "$tmp/t/final/adapter_model.safetensors" "$tmp/k/final/adapter_model.safetensors" \
  && ok "killed (exit $rc) and resumed (exit $rc2): final adapter identical to the uninterrupted run's" \
  || bad "resume: exits $rc/$rc2, adapters differ: $(tail -3 "$tmp/k.err")"
"$ftune" train "$fx/tiny.yaml" --resume --set output_dir="$tmp/k" --set model.path="$tmp/m" --set training.steps=8 \
  --set training.warmup=1 --set eval.every_steps=0 --set lora.trainable_tokens=1 >/dev/null 2>"$tmp/k2.err"; rc=$?
[ $rc -ne 0 ] && grep -q "trains the rows of 2 tokens (lora.trainable_tokens: 1, 2), this recipe those of 1 (1)" "$tmp/k2.err" \
  && ok "resume with another token list refused: $(grep -o 'the checkpoint trains[^:]*' "$tmp/k2.err")" \
  || bad "resume with another list: exit $rc $(tail -2 "$tmp/k2.err")"

# ---- lora.init with token rows: by id, from the adapter_config.json beside the file
init="$tmp/t/final/adapter_model.safetensors" # rows of ids 1 and 2, trained
# lr 1e-30, no weight decay: the run's final rows are where they started (an update below f32's resolution)
run i1 "$tmp/m" --set lora.init="$init" --set 'lora.trainable_tokens=[2, 5]' --set training.lr=1e-30 --set training.weight_decay=0; rc=$?
rowchk=$(python3 - "$init" "$tmp/i1/final/adapter_model.safetensors" <<'PY'
import json, struct, sys
def rows(path):
    b = open(path, "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n])
    t = h["base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta"]
    k, c = t["shape"]; o0 = 8 + n + t["data_offsets"][0]
    return [list(struct.unpack_from("<%df" % c, b, o0 + 4 * c * r)) for r in range(k)]
src, got = rows(sys.argv[1]), rows(sys.argv[2])   # src: ids 1, 2; got: ids 2, 5
print("ok" if got[0] == src[1] and got[1] != src[0] and got[1] != src[1] else "differ")
PY
)
[ $rc -eq 0 ] && [ "$rowchk" = ok ] \
  && grep -q "1 of the 2 trainable tokens start from its rows, the others from the base's" "$tmp/i1.err" \
  && grep -q "the rows of 1 token (1) are left out: lora.trainable_tokens does not train it" "$tmp/i1.err" \
  && ok "lora.init by id: token 2 takes its row, 5 the base's, 1 left out with a warning" \
  || bad "lora.init by id: exit $rc, rows $rowchk: $(grep -i 'rows\|error' "$tmp/i1.err")"
cp "$init" "$tmp/bare.safetensors"
run i2 "$tmp/m" --set lora.init="$tmp/bare.safetensors" --set 'lora.trainable_tokens=[1, 2]'; rc=$?
[ $rc -ne 0 ] && grep -q "holds trainable-token rows, but no adapter_config.json beside it says which tokens" "$tmp/i2.err" \
  && ok "rows without their adapter_config.json: exit $rc, refused" || bad "bare init: exit $rc $(tail -2 "$tmp/i2.err")"

# ---- token strings, and bad lists
run s "$tmp/m" --set 'lora.trainable_tokens=</s>'; rc=$?
[ $rc -eq 0 ] && grep -q "rows of 1 token are trained whole: </s> (2)" "$tmp/s.err" \
  && grep -q "the template's token <s> (1) has an untrained embedding" "$tmp/s.err" \
  && ! grep -q "</s> (2), which ends" "$tmp/s.err" \
  && ok "'</s>' resolves to id 2; <s> is still warned about, </s> no longer" || bad "string: exit $rc $(grep -i 'train' "$tmp/s.err")"
run u "$tmp/m" --set 'lora.trainable_tokens=<|eot_id|>'; rc=$?
[ $rc -ne 0 ] && [ "$(grep -c error "$tmp/u.err")" -eq 1 ] && grep -q "'<|eot_id|>' is not a token of" "$tmp/u.err" \
  && ok "unknown token string: exit $rc, $(grep -o "'<|eot_id|>' is not a token[^(]*" "$tmp/u.err")" \
  || bad "unknown string: exit $rc $(cat "$tmp/u.err")"
run v "$tmp/m" --set lora.trainable_tokens=512; rc=$?
[ $rc -ne 0 ] && grep -q "id 512 is outside the vocabulary (0..511)" "$tmp/v.err" \
  && ok "id 512 of 512: exit $rc, named" || bad "id 512: exit $rc $(tail -2 "$tmp/v.err")"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
