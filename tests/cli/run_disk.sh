#!/usr/bin/env bash
# Unwritable output and a full disk. An output_dir that cannot be created fails at once with a
# message naming it; one whose filesystem cannot hold what the run will write, before the model loads. A checkpoint that cannot be written (the file size limit of `ulimit -f`
# stands in for a full disk: writes fail with EFBIG as they would with ENOSPC) fails the run
# cleanly: exit 1, a message naming the checkpoint, the reason and the intact previous one, no
# temporary file left, and the previous checkpoint still resumes.
# usage: run_disk.sh FTUNE SRC_DIR
set -u
ftune=$(realpath "$1"); src=$(realpath "$2")
recipe="$src/tests/fixtures/run/tiny.yaml"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
ok()  { pass=$((pass+1)); echo "ok   $*"; }
bad() { fail=$((fail+1)); echo "FAIL $*"; }

"$ftune" train "$recipe" --set output_dir=/dev/null/run >/dev/null 2>"$tmp/nodir.err"; rc=$?
[ $rc -eq 1 ] && grep -q "output_dir: cannot create /dev/null/run" "$tmp/nodir.err" && ok "uncreatable output_dir: $(cat "$tmp/nodir.err")" || bad "uncreatable output_dir: exit $rc $(cat "$tmp/nodir.err")"
touch "$tmp/afile"
"$ftune" train "$recipe" --set output_dir="$tmp/afile" >/dev/null 2>"$tmp/file.err"; rc=$?
[ $rc -eq 1 ] && grep -q "is not a directory" "$tmp/file.err" && ok "output_dir is a file: exit 1" || bad "output_dir file: exit $rc $(cat "$tmp/file.err")"

# too little free space for what the run will write (the test hook FT_FAULT_DISK_FREE stands in for a
# nearly full filesystem): refused before the model loads, one line naming the directory, what the
# run writes and what is free; no checkpoint, no final adapter
FT_FAULT_DISK_FREE=1048576 "$ftune" train "$recipe" --set output_dir="$tmp/small" >/dev/null 2>"$tmp/small.err"; rc=$?
msg=$(grep 'error:' "$tmp/small.err")
if [ $rc -eq 1 ] && [ "$(echo "$msg" | grep -c .)" -eq 1 ] && echo "$msg" | grep -q "small: the run will write up to .* MiB more (4 checkpoints of up to .*) and its filesystem has 1.0 MiB free" \
   && [ -z "$(ls "$tmp/small/checkpoints")" ] && [ ! -e "$tmp/small/final" ] && ! grep -q "loading\|step 1" "$tmp/small.err"; then
  ok "too little disk: $msg"
else
  bad "too little disk: exit $rc: $(tail -3 "$tmp/small.err")"
fi

# checkpoints switched off altogether: the run says what a crash would cost
"$ftune" train "$recipe" --set training.steps=4 --set checkpoint.every_steps=0 --set checkpoint.every_minutes=0 \
  --set output_dir="$tmp/nockpt" >/dev/null 2>"$tmp/nockpt.err"; rc=$?
[ $rc -eq 0 ] && grep -q "warning: checkpoint.every_steps and checkpoint.every_minutes are both 0: .*a crash or SIGKILL loses all of it" "$tmp/nockpt.err" \
  && ok "checkpoints off: warned" || bad "checkpoints off: exit $rc: $(grep -i checkpoint "$tmp/nockpt.err")"

# 4 steps with a checkpoint at 4, then continue to 8 under a file size limit smaller than a checkpoint
"$ftune" train "$recipe" --set training.steps=4 --set output_dir="$tmp/r" >/dev/null 2>"$tmp/a.err" || bad "first run: $(tail -2 "$tmp/a.err")"
ck="$tmp/r/checkpoints/step-000004.ckpt"
size=$(stat -c %s "$ck"); sum=$(cksum <"$ck")
limit_kb=$(( size / 1024 / 2 ))
( ulimit -f $limit_kb; exec "$ftune" train "$recipe" --set training.steps=8 --set output_dir="$tmp/r" --resume ) >/dev/null 2>"$tmp/full.err"
rc=$?
msg=$(grep 'error:' "$tmp/full.err")
if [ $rc -eq 1 ] && echo "$msg" | grep -q "checkpoint at step 8 failed" && echo "$msg" | grep -q "step-000008.ckpt: write failed: File too large" \
   && echo "$msg" | grep -q "step-000004.ckpt (step 4) is intact"; then
  ok "checkpoint over the size limit ($limit_kb KiB < $((size / 1024)) KiB): $msg"
else
  bad "full disk: exit $rc: $(tail -3 "$tmp/full.err")"
fi
left=$(ls "$tmp/r/checkpoints")
[ "$left" = "step-000004.ckpt" ] && ok "no partial or temporary file left: $left" || bad "checkpoints dir: $left"
[ "$(cksum <"$ck")" = "$sum" ] && ok "previous checkpoint unchanged" || bad "previous checkpoint changed"
"$ftune" train "$recipe" --set training.steps=8 --set output_dir="$tmp/r" --resume >/dev/null 2>"$tmp/again.err"; rc=$?
[ $rc -eq 0 ] && grep -q "resumed from .*step-000004.ckpt at step 4" "$tmp/again.err" && ok "with space again, resumes from step 4 and finishes" \
  || bad "resume after full disk: exit $rc $(tail -3 "$tmp/again.err")"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
