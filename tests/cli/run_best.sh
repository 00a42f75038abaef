#!/usr/bin/env bash
# The lowest validation loss of a run (trainer/run_best.c). Run A: tiny.yaml at a constant lr 0.03
# for up to 120 steps, evaluated every 6, with eval.patience 3 and export.from best. What the run
# must do is worked out here from its own metrics.jsonl (the validation losses): the step of the
# lowest loss (best/ftune-best.json, and best/'s adapter byte-identical to that step's checkpoint
# exported), the early stop 3 evaluations later (the last metrics line, final/ = that step's
# checkpoint), the GGUF export in best/ and not in final/. Run C is killed after step 6, whose
# evaluation (the first) kept best/ while the newest checkpoint is step 4: the resume moves that
# best/ aside as an abandoned future, is killed again at step 50 and resumed again, and must end
# byte-identical to A. Also: a stale best/ of an earlier run; a second best/ set aside; a missing
# best/ written again from the checkpoint of its step; a new lowest dropping best/'s old exports;
# and the recipe checks.
# usage: run_best.sh FTUNE SRC_DIR
set -u
ftune=$(realpath "$1"); src=$(realpath "$2")
fx="$src/tests/fixtures/run"
recipe="$fx/tiny.yaml"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
ok()  { pass=$((pass+1)); echo "ok   $*"; }
bad() { fail=$((fail+1)); echo "FAIL $*"; }
common=(--set training.lr=0.03 --set training.schedule=constant --set training.steps=120 --set eval.every_steps=6
        --set eval.patience=3 --set export.from=best --set export.formats=peft,gguf --set checkpoint.keep=100)

"$ftune" train "$recipe" "${common[@]}" --set checkpoint.every_steps=2 --set output_dir="$tmp/a" >"$tmp/a.out" 2>"$tmp/a.err"
rc=$?
[ $rc -eq 0 ] && ok "run A: exit 0" || bad "run A: exit $rc $(tail -3 "$tmp/a.err")"

# what the validation losses say: the first lowest, and the evaluation 3 after the last new lowest
read -r want_best want_stop <<<"$(grep '"type":"eval"' "$tmp/a/metrics.jsonl" | awk -F'[:,]' '{
    for (i = 1; i < NF; i++) { if ($i == "\"step\"") s = $(i+1); if ($i == "\"val_loss\"") v = $(i+1) }
    if (best == "" || v + 0 < best + 0) { best = v; bs = s; since = 0 } else if (++since == 3 && stop == "") stop = s
  } END { print bs, stop }')"
[ -n "$want_stop" ] && ok "the losses have a lowest at step $want_best and a third evaluation without a lower one at step $want_stop" \
  || bad "no early stop in the losses (lowest at step $want_best): the test's run needs a longer rise"
grep -q "early stop at step $want_stop of 120: 3 evaluations in a row without a validation loss below" "$tmp/a.err" \
  && ok "early stop announced at step $want_stop" || bad "early stop: $(grep -i 'early' "$tmp/a.err")"
last=$(grep '"type":"train"' "$tmp/a/metrics.jsonl" | tail -1 | grep -o '"step":[0-9]*' | cut -d: -f2)
[ "$last" = "$want_stop" ] && ok "no step trained after it (last metrics step $last)" || bad "last trained step $last, want $want_stop"
got=$(grep -o '"step": [0-9]*' "$tmp/a/best/ftune-best.json" | grep -o '[0-9]*$')
[ "$got" = "$want_best" ] && ok "best/ftune-best.json: step $got" || bad "best/ftune-best.json: step '$got', want $want_best"
ckpt() { printf '%s/checkpoints/step-%06d.ckpt' "$1" "$2"; }
"$ftune" export "$(ckpt "$tmp/a" "$want_best")" --format peft --out "$tmp/xb" >/dev/null 2>&1
"$ftune" export "$(ckpt "$tmp/a" "$want_stop")" --format peft --out "$tmp/xs" >/dev/null 2>&1
cmp -s "$tmp/xb/adapter_model.safetensors" "$tmp/a/best/adapter_model.safetensors" \
  && ok "best/ holds step $want_best's adapter (byte-identical to its checkpoint's)" || bad "best/ adapter differs from step $want_best's"
cmp -s "$tmp/xs/adapter_model.safetensors" "$tmp/a/final/adapter_model.safetensors" \
  && ok "final/ holds step $want_stop's adapter" || bad "final/ adapter differs from step $want_stop's"
[ -s "$tmp/a/best/adapter.gguf" ] && [ ! -e "$tmp/a/final/adapter.gguf" ] \
  && ok "export.from best: the GGUF adapter is in best/, not final/" || bad "GGUF: $(ls "$tmp/a/best" "$tmp/a/final")"
grep -q "^best adapter: $tmp/a/best (step $want_best, validation loss" "$tmp/a.out" && ok "the run names the best adapter" \
  || bad "summary: $(cat "$tmp/a.out")"

# C: killed after step 6 (best/ kept at 6, newest checkpoint 4), resumed, killed after 50, resumed
FT_FAULT_KILL_AFTER_STEP=6 "$ftune" train "$recipe" "${common[@]}" --set checkpoint.every_steps=4 \
  --set output_dir="$tmp/c" >/dev/null 2>&1
[ "$(grep -o '"step": [0-9]*' "$tmp/c/best/ftune-best.json" | grep -o '[0-9]*$')" = 6 ] && ok "run C killed with best/ at step 6" \
  || bad "run C: best/ $(cat "$tmp/c/best/ftune-best.json" 2>&1)"
FT_FAULT_KILL_AFTER_STEP=50 "$ftune" train "$recipe" "${common[@]}" --set checkpoint.every_steps=4 \
  --set output_dir="$tmp/c" --resume >/dev/null 2>"$tmp/c2.err"
grep -q "best was kept at step 6, after the checkpoint the run resumes from (step 4): moved aside to $tmp/c/best.superseded" "$tmp/c2.err" \
  && [ -e "$tmp/c/best.superseded/ftune-best.json" ] && ok "resume moved the abandoned future's best/ aside" \
  || bad "resume from 4: $(grep -i best "$tmp/c2.err")"
"$ftune" train "$recipe" "${common[@]}" --set checkpoint.every_steps=4 --set output_dir="$tmp/c" --resume \
  >"$tmp/c3.out" 2>"$tmp/c3.err"; rc=$?
[ $rc -eq 0 ] && grep -q "early stop at step $want_stop of 120" "$tmp/c3.err" && ok "run C resumed twice: stops at step $want_stop" \
  || bad "run C: exit $rc $(grep -i 'early\|error' "$tmp/c3.err")"
same=1
for f in best/ftune-best.json best/adapter_model.safetensors best/adapter.gguf final/adapter_model.safetensors; do
  cmp -s "$tmp/a/$f" "$tmp/c/$f" || { same=0; bad "run C $f differs from run A's"; }
done
[ $same -eq 1 ] && ok "run C's best/ and final/ are byte-identical to run A's"
"$ftune" train "$recipe" "${common[@]}" --set checkpoint.every_steps=4 --set output_dir="$tmp/c" --resume \
  >/dev/null 2>"$tmp/c4.err"; rc=$?
[ $rc -eq 0 ] && grep -q "the run stopped early at step $want_stop (eval.patience 3" "$tmp/c4.err" \
  && ok "a resume after the early stop trains nothing more" || bad "resume after the stop: exit $rc $(tail -2 "$tmp/c4.err")"

# run A's best/ deleted: the record stays, so a requeue of the early-stopped run still trains
# nothing (exports from final/: export.from best has nothing to make them from), and names no best/
rm -rf "$tmp/a/best"
"$ftune" train "$recipe" "${common[@]}" --set export.from=last --set checkpoint.every_steps=2 --set output_dir="$tmp/a" \
  --resume auto >"$tmp/a2.out" 2>"$tmp/a2.err"; rc=$?
last=$(grep '"type":"train"' "$tmp/a/metrics.jsonl" | tail -1 | grep -o '"step":[0-9]*' | cut -d: -f2)
[ $rc -eq 0 ] && grep -q "the run stopped early at step $want_stop (eval.patience 3" "$tmp/a2.err" && [ "$last" = "$want_stop" ] \
  && grep -q "best is missing: the adapter of the lowest validation loss (step $want_best) is gone; the run has ended" "$tmp/a2.err" \
  && ! grep -q "^best adapter:" "$tmp/a2.out" && ok "best/ deleted after the early stop: a requeue trains nothing" \
  || bad "requeue without best/: exit $rc, last step $last $(grep -i 'best\|early\|error' "$tmp/a2.err" "$tmp/a2.out")"

# a fresh run in a directory with another run's best/ (its checkpoints deleted): moved aside
mkdir -p "$tmp/s/best" && echo '{"step": 99, "validation_loss": 0.1}' >"$tmp/s/best/ftune-best.json"
"$ftune" train "$recipe" --set training.steps=6 --set output_dir="$tmp/s" >/dev/null 2>"$tmp/s.err"; rc=$?
[ $rc -eq 0 ] && grep -q "best belongs to an earlier run in this directory (step 99): moved aside" "$tmp/s.err" \
  && [ "$(grep -o '"step": [0-9]*' "$tmp/s/best/ftune-best.json" | grep -o '[0-9]*$')" = 6 ] \
  && ok "a stale best/ is moved aside; the new run keeps its own" || bad "stale best/: exit $rc $(grep -i best "$tmp/s.err")"

# T (tiny.yaml as it is: every evaluation, at 6, 12, 18, 24, is a new lowest): killed after step 6
# (best/ at 6, newest checkpoint 4) and after step 18 (best/ at 18, newest checkpoint 16), resumed
# each time: the second best/ set aside goes beside the first, as best.superseded.2
bj() { grep -o '"step": [0-9]*' "$1/ftune-best.json" 2>/dev/null | grep -o '[0-9]*$'; }
FT_FAULT_KILL_AFTER_STEP=6 "$ftune" train "$recipe" --set output_dir="$tmp/t" >/dev/null 2>&1
FT_FAULT_KILL_AFTER_STEP=18 "$ftune" train "$recipe" --set output_dir="$tmp/t" --resume >/dev/null 2>&1
"$ftune" train "$recipe" --set output_dir="$tmp/t" --resume >/dev/null 2>"$tmp/t.err"; rc=$?
[ $rc -eq 0 ] && grep -q "best was kept at step 18, after the checkpoint the run resumes from (step 16): moved aside to $tmp/t/best.superseded.2" "$tmp/t.err" \
  && [ "$(bj "$tmp/t/best.superseded")" = 6 ] && [ "$(bj "$tmp/t/best.superseded.2")" = 18 ] && [ "$(bj "$tmp/t/best")" = 24 ] \
  && ok "a second best/ set aside goes to best.superseded.2" || bad "second set-aside: exit $rc $(grep -i best "$tmp/t.err")"
# the finished run's exports made from best/ (a requeue: it trains nothing), then the run extended
# to 36 steps and stopped (SIGTERM) after step 30's evaluation, a new lowest: best/'s GGUF export,
# of step 24's adapter, is gone; the run's end makes it again
xb=(--set export.from=best --set export.formats=peft,gguf --set output_dir="$tmp/t")
"$ftune" train "$recipe" "${xb[@]}" --resume auto >/dev/null 2>&1
[ -s "$tmp/t/best/adapter.gguf" ] && [ "$(bj "$tmp/t/best")" = 24 ] && ok "a requeue of the finished run exports best/ (step 24)" \
  || bad "requeue: no best/adapter.gguf of step 24"
FT_FAULT_TERM_AFTER_STEP=30 "$ftune" train "$recipe" "${xb[@]}" --set training.steps=36 --resume >/dev/null 2>&1
if [ "$(bj "$tmp/t/best")" = 30 ]; then
  [ ! -e "$tmp/t/best/adapter.gguf" ] && ok "a new lowest removes best/'s exports of the one it replaces" \
    || bad "best/ at step 30 beside step 24's adapter.gguf"
else
  bad "the extended run's evaluation at step 30 is not a new lowest (best/ at $(bj "$tmp/t/best")): the test needs another step"
fi
"$ftune" train "$recipe" "${xb[@]}" --set training.steps=36 --resume >/dev/null 2>&1; rc=$?
[ $rc -eq 0 ] && [ -s "$tmp/t/best/adapter.gguf" ] && ok "the run's end exports best/ again" || bad "extended run: exit $rc"
# run S's best/ deleted: its last checkpoint (step 6) is the lowest loss's, so a resume writes it
# again (byte-identical) and export.from best works
cp "$tmp/s/best/adapter_model.safetensors" "$tmp/s/best/ftune-best.json" "$tmp/"
rm -rf "$tmp/s/best"
"$ftune" train "$recipe" --set training.steps=6 --set export.from=best --set export.formats=peft,gguf --set output_dir="$tmp/s" \
  --resume auto >/dev/null 2>"$tmp/s2.err"; rc=$?
[ $rc -eq 0 ] && grep -q "best was missing: written again from the checkpoint, that of the lowest validation loss (step 6)" "$tmp/s2.err" \
  && cmp -s "$tmp/adapter_model.safetensors" "$tmp/s/best/adapter_model.safetensors" \
  && cmp -s "$tmp/ftune-best.json" "$tmp/s/best/ftune-best.json" && [ -s "$tmp/s/best/adapter.gguf" ] \
  && ok "a missing best/ is written again from the checkpoint of its step" || bad "missing best/: exit $rc $(grep -i 'best\|error' "$tmp/s2.err")"

# eval.at_start: an evaluation at step 0 (the base model: the adapter's B is zero). A run that only
# makes the validation loss worse (lr 1, the divergence guard off) keeps step 0's adapter as its best,
# and that adapter gives the base model's loss
"$ftune" train "$recipe" --set training.lr=1 --set training.diverge_factor=0 --set training.steps=12 \
  --set eval.at_start=true --set output_dir="$tmp/z" >"$tmp/z.out" 2>"$tmp/z.err"; rc=$?
first=$(head -1 "$tmp/z/metrics.jsonl" | grep -o '"type":"eval","step":0,')
[ $rc -eq 0 ] && [ -n "$first" ] && [ "$(grep -o '"step": [0-9]*' "$tmp/z/best/ftune-best.json" | grep -o '[0-9]*$')" = 0 ] \
  && grep -q "^best adapter: $tmp/z/best (step 0, " "$tmp/z.out" \
  && ok "eval.at_start: step 0 evaluated first and kept as the best of a run that only got worse" \
  || bad "eval.at_start: exit $rc, first line $(head -c 80 "$tmp/z/metrics.jsonl"), best $(cat "$tmp/z/best/ftune-best.json" 2>&1)"
printf '1 403 11 87 300 5 22 410 99 17 256 3\n' >"$tmp/z.ids"
lb=$("$ftune" eval --model "$src/models/stories260K" --tokens "$tmp/z.ids" --quant nf4 2>/dev/null | grep '^loss')
la=$("$ftune" eval --model "$src/models/stories260K" --tokens "$tmp/z.ids" --quant nf4 --adapter "$tmp/z/best" 2>/dev/null | grep '^loss')
[ -n "$la" ] && [ "$la" = "$lb" ] && ok "step 0's adapter is the base model: $la both ways" || bad "step 0's adapter: '$la' vs base '$lb'"

# recipe checks (exit 2)
"$ftune" train "$recipe" --set data.valid= --set eval.every_steps=0 --set export.from=best --set output_dir="$tmp/e" \
  >/dev/null 2>"$tmp/e.err"; rc=$?
[ $rc -eq 2 ] && grep -q "export.from: best needs validation data" "$tmp/e.err" && ok "export.from best without validation: exit 2" \
  || bad "export.from check: exit $rc $(cat "$tmp/e.err")"
"$ftune" train "$recipe" --set eval.every_steps=0 --set eval.patience=2 --set output_dir="$tmp/e" >/dev/null 2>"$tmp/e.err"; rc=$?
[ $rc -eq 2 ] && grep -q "eval.patience: needs evaluations during the run" "$tmp/e.err" && ok "patience without eval.every_steps: exit 2" \
  || bad "patience check: exit $rc $(cat "$tmp/e.err")"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
