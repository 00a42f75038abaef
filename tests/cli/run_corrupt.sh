#!/usr/bin/env bash
# Corrupt checkpoints: a bit-flipped or truncated newest checkpoint is detected on resume with a
# clear error naming it ("checksum mismatch (file corrupt)") and a hint; --resume-fallback resumes
# from the previous good one (the bad file is moved aside), and the finished run's adapter is
# still byte-identical to an uninterrupted run's. Also: --resume without checkpoints, and
# --resume PATH naming a corrupt file.
# usage: run_corrupt.sh FTUNE SRC_DIR
set -u
ftune=$(realpath "$1"); src=$(realpath "$2")
recipe="$src/tests/fixtures/run/tiny.yaml"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
ok()  { pass=$((pass+1)); echo "ok   $*"; }
bad() { fail=$((fail+1)); echo "FAIL $*"; }
run=(--set training.steps=12 --set output_dir="$tmp/r")

# flip BYTE: xor one byte of a file with 0x01 at a random offset in its middle half
flip() {
  local f="$1" size off b
  size=$(stat -c %s "$f"); off=$(( size / 4 + (RANDOM * 32768 + RANDOM) % (size / 2) ))
  b=$(od -An -tu1 -j "$off" -N1 "$f" | tr -d ' ')
  printf "$(printf '\\%03o' $(( b ^ 1 )))" | dd of="$f" bs=1 seek="$off" conv=notrunc 2>/dev/null
  echo "$off"
}

"$ftune" train "$recipe" "${run[@]}" --resume >/dev/null 2>"$tmp/none.err"; rc=$?
[ $rc -ne 0 ] && grep -q "no checkpoint to resume from" "$tmp/none.err" && ok "--resume with no checkpoint: $(head -c 150 "$tmp/none.err")" || bad "--resume with none: exit $rc $(cat "$tmp/none.err")"
rm -rf "$tmp/r"

"$ftune" train "$recipe" "${run[@]}" >/dev/null 2>"$tmp/a.err" || bad "first run: $(tail -2 "$tmp/a.err")"
cp "$tmp/r/final/adapter_model.safetensors" "$tmp/ref.safetensors"
ck="$tmp/r/checkpoints"
[ -e "$ck/step-000008.ckpt" ] && [ -e "$ck/step-000012.ckpt" ] && ok "checkpoints: $(ls "$ck" | tr '\n' ' ')" || bad "checkpoints: $(ls "$ck")"

# bit flip in the newest: clear error, no fallback unless asked
off=$(flip "$ck/step-000012.ckpt")
"$ftune" train "$recipe" "${run[@]}" --resume >/dev/null 2>"$tmp/flip.err"; rc=$?
if [ $rc -eq 1 ] && grep -q "step-000012.ckpt: checksum mismatch (file corrupt)" "$tmp/flip.err" && grep -q -- "--resume-fallback" "$tmp/flip.err"; then
  ok "bit flip at byte $off detected: $(cat "$tmp/flip.err")"
else
  bad "bit flip: exit $rc: $(cat "$tmp/flip.err")"
fi
[ -e "$ck/step-000012.ckpt" ] && ok "without --resume-fallback the corrupt file is left in place" || bad "corrupt file was moved without fallback"
"$ftune" train "$recipe" "${run[@]}" --resume "$ck/step-000012.ckpt" >/dev/null 2>"$tmp/path.err"; rc=$?
[ $rc -eq 1 ] && grep -q "checksum mismatch" "$tmp/path.err" && ok "--resume PATH to a corrupt file: exit 1" || bad "--resume PATH: exit $rc $(cat "$tmp/path.err")"

"$ftune" train "$recipe" "${run[@]}" --resume --resume-fallback >/dev/null 2>"$tmp/fb.err"; rc=$?
if [ $rc -eq 0 ] && grep -q "falling back to step-000008.ckpt" "$tmp/fb.err" && grep -q "resumed from .*step-000008.ckpt at step 8" "$tmp/fb.err"; then
  ok "--resume-fallback resumed from step 8: $(grep -o 'warning: .*falling back[^;]*' "$tmp/fb.err" | head -1)"
else
  bad "fallback: exit $rc: $(tail -4 "$tmp/fb.err")"
fi
[ -e "$ck/step-000012.ckpt.corrupt" ] && ok "corrupt checkpoint moved aside to step-000012.ckpt.corrupt" || bad "no .corrupt file: $(ls "$ck")"
cmp -s "$tmp/ref.safetensors" "$tmp/r/final/adapter_model.safetensors" && ok "adapter after fallback is byte-identical to the uninterrupted one" || bad "adapter after fallback differs"

# truncation of the (new) newest
truncate -s -777 "$ck/step-000012.ckpt"
"$ftune" train "$recipe" "${run[@]}" --resume >/dev/null 2>"$tmp/trunc.err"; rc=$?
[ $rc -eq 1 ] && grep -q "step-000012.ckpt: checksum mismatch (file corrupt)" "$tmp/trunc.err" && ok "truncated checkpoint detected: exit 1" || bad "truncation: exit $rc $(cat "$tmp/trunc.err")"
"$ftune" train "$recipe" "${run[@]}" --resume --resume-fallback >/dev/null 2>"$tmp/fb2.err"; rc=$?
[ $rc -eq 0 ] && cmp -s "$tmp/ref.safetensors" "$tmp/r/final/adapter_model.safetensors" && ok "fallback after truncation: same adapter" || bad "fallback after truncation: exit $rc $(tail -3 "$tmp/fb2.err")"

# an empty file and a file that is not a checkpoint at all
: > "$tmp/empty.ckpt"
"$ftune" train "$recipe" "${run[@]}" --resume "$tmp/empty.ckpt" >/dev/null 2>"$tmp/empty.err"; rc=$?
[ $rc -eq 1 ] && grep -q "empty.ckpt: checksum mismatch" "$tmp/empty.err" && ok "empty file: exit 1" || bad "empty file: exit $rc $(cat "$tmp/empty.err")"

# a metrics.jsonl cut off mid-line before the checkpoint's step (a damaged file, not a kill after the
# checkpoint): resume says which line was unreadable and how many steps' metrics are lost, and does
# not call them lines "written after the checkpoint"
m="$tmp/r/metrics.jsonl"
n_train=$(head -4 "$m" | grep -c '"type":"train"')
head -4 "$m" >"$tmp/m.cut"; sed -n 5p "$m" | head -c 40 >>"$tmp/m.cut"; mv "$tmp/m.cut" "$m"
"$ftune" train "$recipe" "${run[@]}" --resume >/dev/null 2>"$tmp/met.err"; rc=$?
if [ $rc -eq 0 ] && grep -q "metrics.jsonl: holds the training lines of $n_train of the 12 steps up to the checkpoint; dropped 1 unreadable line (torn or not a metrics record), the first line 5" "$tmp/met.err" \
   && ! grep -q "written after the checkpoint" "$tmp/met.err" && cmp -s "$tmp/ref.safetensors" "$tmp/r/final/adapter_model.safetensors"; then
  ok "metrics.jsonl torn at line 5: $(grep -o 'warning: .*metrics.jsonl.*' "$tmp/met.err" | head -c 200)"
else
  bad "metrics.jsonl torn at line 5: exit $rc: $(grep metrics.jsonl "$tmp/met.err")"
fi

# --resume naming a file that is not there: a bad argument (exit 2), one line
"$ftune" train "$recipe" --set output_dir="$tmp/nf" --resume "$tmp/nf/none.ckpt" >/dev/null 2>"$tmp/nf.err"; rc=$?
[ $rc -eq 2 ] && [ "$(wc -l <"$tmp/nf.err")" -eq 1 ] && [ ! -e "$tmp/nf/data" ] && grep -q -- "--resume $tmp/nf/none.ckpt: No such file or directory" "$tmp/nf.err" \
  && ok "--resume of a missing file: exit 2, $(cat "$tmp/nf.err")" || bad "--resume missing file: exit $rc $(cat "$tmp/nf.err")"

# --resume auto where only checkpoints set aside as corrupt are left: it starts over, and says so
mkdir -p "$tmp/ac/checkpoints" && echo junk >"$tmp/ac/checkpoints/step-000004.ckpt.corrupt"
"$ftune" train "$recipe" --set training.steps=4 --set output_dir="$tmp/ac" --resume auto >/dev/null 2>"$tmp/ac.err"; rc=$?
[ $rc -eq 0 ] && grep -q "holds only checkpoints set aside as corrupt (1 \*.corrupt): starting the run over" "$tmp/ac.err" \
  && ok "--resume auto over corrupt-only checkpoints warns that it starts over" || bad "--resume auto, corrupt only: exit $rc $(grep -i 'resume auto' "$tmp/ac.err")"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
