#!/usr/bin/env bash
# Exact resume of a recipe run (CPU backend). Run A goes uninterrupted. Run B is killed with
# SIGKILL at the end of a random step from 9 to 16 (after its second checkpoint, at step 8; on a
# checkpoint step or between two), then resumed with --resume. Run C gets SIGTERM during a random
# step from 5 to 7 (after its first checkpoint): it must finish the step, write a checkpoint, print
# the resume hint and exit 0; then it is resumed. The final adapters of B and C must be
# byte-identical to A's, and their metrics.jsonl must agree with A's line by line (the wall-clock
# "wall" object aside). The runs signal themselves (FT_FAULT_KILL_AFTER_STEP and
# FT_FAULT_TERM_AFTER_STEP, the test hook of trainer/run.c): a signal sent by this script after a
# sleep races the run, and a fast machine finishes first. The step drawn is printed.
# Also checks the run directory layout and that a second run refuses a directory with checkpoints.
# usage: run_resume.sh FTUNE SRC_DIR
set -u
ftune=$(realpath "$1"); src=$(realpath "$2")
recipe="$src/tests/fixtures/run/tiny.yaml"
tmp=$(mktemp -d); trap 'kill -9 $(jobs -p) 2>/dev/null; rm -rf "$tmp"' EXIT
pass=0; fail=0
ok()  { pass=$((pass+1)); echo "ok   $*"; }
bad() { fail=$((fail+1)); echo "FAIL $*"; }
steps=40
common=(--set training.steps=$steps)
strip() { sed 's/,"wall":{[^}]*}//' "$1"; }

# --- A: uninterrupted -----------------------------------------------------------------------
t0=$(date +%s.%N)
"$ftune" train "$recipe" "${common[@]}" --set output_dir="$tmp/a" >"$tmp/a.out" 2>"$tmp/a.err"
rc=$?; t1=$(date +%s.%N)
[ $rc -eq 0 ] && ok "run A: exit 0 in $(printf '%.1f' "$(echo "$t1 - $t0" | bc)") s" || { bad "run A exit $rc: $(tail -3 "$tmp/a.err")"; }
for f in recipe.yaml metrics.jsonl loss.svg final/adapter_config.json final/adapter_model.safetensors \
         checkpoints/step-000040.ckpt samples/step-000006.txt samples/step-000040.txt; do
  [ -s "$tmp/a/$f" ] && ok "run dir has $f" || bad "run dir lacks $f"
done
n_ckpt=$(ls "$tmp/a/checkpoints" | grep -c '\.ckpt$')
[ "$n_ckpt" -eq 3 ] && ok "checkpoint.keep 3: $(ls "$tmp/a/checkpoints" | tr '\n' ' ')" || bad "expected 3 checkpoints, got $n_ckpt"
[ "$(grep -c '"type":"train"' "$tmp/a/metrics.jsonl")" -eq $steps ] && ok "metrics: $steps train lines" || bad "metrics train lines"
[ "$(grep -c '"type":"eval"' "$tmp/a/metrics.jsonl")" -eq 7 ] && ok "metrics: 7 eval lines (every 6 and at the end)" || bad "metrics eval lines"
head -c 5 "$tmp/a/loss.svg" | grep -q '<?xml' && tail -1 "$tmp/a/loss.svg" | grep -q '</svg>' && ok "loss.svg is a complete SVG" || bad "loss.svg"
grep -q '"peft_type":[[:space:]]*"LORA"' "$tmp/a/final/adapter_config.json" && grep -q '"r":[[:space:]]*4,' "$tmp/a/final/adapter_config.json" \
  && ok "adapter_config.json (PEFT)" || bad "adapter_config.json: $(cat "$tmp/a/final/adapter_config.json")"
grep -q "final adapter: $tmp/a/final" "$tmp/a.out" && ok "final line on stdout" || bad "stdout: $(cat "$tmp/a.out")"

# a new run into a directory holding checkpoints is refused
"$ftune" train "$recipe" "${common[@]}" --set output_dir="$tmp/a" >/dev/null 2>"$tmp/again.err"
rc=$?
[ $rc -ne 0 ] && grep -q "holds checkpoints of an earlier run" "$tmp/again.err" && ok "refuses to overwrite a run: $(head -c 120 "$tmp/again.err")" \
  || bad "second run into the same dir: exit $rc $(cat "$tmp/again.err")"

# a resume refused for a changed recipe leaves the run's recipe.yaml as it was (`ftune export
# CHECKPOINT` reads lora.alpha and model.path from it)
cp "$tmp/a/recipe.yaml" "$tmp/recipe.before"
"$ftune" train "$recipe" "${common[@]}" --set output_dir="$tmp/a" --set lora.alpha=16 --set training.seed=8 --resume \
  >/dev/null 2>"$tmp/refused.err"
rc=$?
[ $rc -ne 0 ] && grep -q "made with training.seed 7, the recipe has 8" "$tmp/refused.err" && cmp -s "$tmp/recipe.before" "$tmp/a/recipe.yaml" \
  && ok "a refused resume leaves recipe.yaml as it was: $(tail -1 "$tmp/refused.err" | head -c 150)" \
  || bad "refused resume: exit $rc, recipe.yaml $(cmp -s "$tmp/recipe.before" "$tmp/a/recipe.yaml" && echo kept || echo rewritten): $(tail -1 "$tmp/refused.err")"

# a resume the recipe allows to differ names what changed, key by key
cp -r "$tmp/a" "$tmp/ad"
"$ftune" train "$recipe" "${common[@]}" --set output_dir="$tmp/ad" --set lora.alpha=16 --set training.lr=0.002 --resume \
  >/dev/null 2>"$tmp/ad.err"
rc=$?
w=$(grep "recipe differs" "$tmp/ad.err")
[ $rc -eq 0 ] && echo "$w" | grep -qE "recipe.yaml\): lora.alpha [0-9.]+ -> 16, training.lr [0-9.e-]+ -> 0.002; continuing with the new one" \
  && ok "a changed recipe on resume is named key by key: $w" || bad "changed recipe on resume: exit $rc: $w $(tail -2 "$tmp/ad.err")"
rm -rf "$tmp/ad"

# temporaries of a run killed while writing its outputs (the merged model's is as large as the
# model) are removed by the next run in the directory; those of a live process stay
sleep 0 & dead=$!; wait $dead
cp "$tmp/a/final/adapter_model.safetensors" "$tmp/a.adapter"
for f in final/model-q8_0.gguf.tmp.$dead final/.adapter_model.safetensors.tmp-$dead-5e1f samples/step-000006.txt.tmp.$dead \
         final/adapter.gguf.tmp.$$; do echo partial >"$tmp/a/$f"; done
"$ftune" train "$recipe" "${common[@]}" --set output_dir="$tmp/a" --resume >/dev/null 2>"$tmp/stale.err"
rc=$?
left=$(cd "$tmp/a" && ls -A final samples | grep 'tmp' | tr '\n' ' ')
[ $rc -eq 0 ] && [ "$left" = "adapter.gguf.tmp.$$ " ] && [ "$(grep -c "left by an interrupted run, process $dead" "$tmp/stale.err")" -eq 3 ] \
  && cmp -s "$tmp/a.adapter" "$tmp/a/final/adapter_model.safetensors" \
  && ok "a dead run's temporaries removed, a live one's kept: $(grep -m1 -o 'removed .*' "$tmp/stale.err")" \
  || bad "stale temporaries: exit $rc, left: $left: $(grep -i 'removed\|error' "$tmp/stale.err")"
rm -f "$tmp/a/final/adapter.gguf.tmp.$$"

# --- B: SIGKILL at the end of a random step after a checkpoint, then --resume -------------------
kill_step=$((9 + RANDOM % 8))
{ FT_FAULT_KILL_AFTER_STEP=$kill_step "$ftune" train "$recipe" "${common[@]}" --set output_dir="$tmp/b" \
  >"$tmp/b1.out" 2>"$tmp/b1.err"; } 2>/dev/null # (the shell's "Killed" notice)
rc=$?
killed_at=$(grep -c '"type":"train"' "$tmp/b/metrics.jsonl")
if [ $rc -eq 137 ] && [ "$killed_at" -eq $kill_step ] && [ ! -e "$tmp/b/final/adapter_model.safetensors" ]; then
  ok "run B killed by SIGKILL after step $killed_at (FT_FAULT_KILL_AFTER_STEP=$kill_step; checkpoints: $(ls "$tmp/b/checkpoints" | tr '\n' ' '))"
else
  bad "run B (FT_FAULT_KILL_AFTER_STEP=$kill_step): exit $rc (want 137), $killed_at train lines: $(tail -3 "$tmp/b1.err")"
fi
ckpt_step=$((kill_step / 4 * 4)) # checkpoint.every_steps 4 in tiny.yaml
"$ftune" train "$recipe" "${common[@]}" --set output_dir="$tmp/b" --resume >"$tmp/b2.out" 2>"$tmp/b2.err"
rc=$?
[ $rc -eq 0 ] && grep -q "resumed from [^ ]*step-$(printf %06d $ckpt_step).ckpt at step $ckpt_step " "$tmp/b2.err" \
  && ok "run B resumed: $(grep -o 'resumed from [^ ]* at step [0-9]*' "$tmp/b2.err")" \
  || bad "resume B (want: from step $ckpt_step) exit $rc: $(tail -3 "$tmp/b2.err")"
grep -q "reusing tokenized data" "$tmp/b2.err" && ok "resume reuses the tokenized shards" || bad "resume tokenized again"
cmp -s "$tmp/a/final/adapter_model.safetensors" "$tmp/b/final/adapter_model.safetensors" \
  && ok "run B final adapter is byte-identical to run A's" || bad "run B final adapter differs from run A's"
if diff <(strip "$tmp/a/metrics.jsonl") <(strip "$tmp/b/metrics.jsonl") >"$tmp/b.diff"; then
  ok "run B metrics.jsonl agrees with run A's step by step ($(wc -l <"$tmp/b/metrics.jsonl") lines)"
else
  bad "run B metrics differ: $(head -4 "$tmp/b.diff")"
fi
cmp -s "$tmp/a/samples/step-000040.txt" "$tmp/b/samples/step-000040.txt" && ok "run B samples agree" || bad "run B samples differ"

# --- C: SIGTERM: checkpoint, message, ended by the signal (143); then resume --------------------------------------
term_step=$((5 + RANDOM % 3))
FT_FAULT_TERM_AFTER_STEP=$term_step "$ftune" train "$recipe" "${common[@]}" --set output_dir="$tmp/c" \
  >"$tmp/c1.out" 2>"$tmp/c1.err"
rc=$?
msg=$(grep -o 'interrupted at step [0-9]*: checkpoint written to [^;]*; resume with: ftune train .* --resume' "$tmp/c1.err")
if [ $rc -eq 143 ] && [ -n "$msg" ]; then ok "SIGTERM: ended by it (exit 143), \"$msg\""; else bad "SIGTERM: exit $rc (want 143): $(tail -3 "$tmp/c1.err")"; fi
stopped=$(echo "$msg" | grep -o 'step [0-9]*' | head -1 | grep -o '[0-9]*')
[ "$stopped" = "$term_step" ] && [ -e "$tmp/c/checkpoints/step-$(printf %06d "$stopped").ckpt" ] \
  && ok "stopped at step $stopped (FT_FAULT_TERM_AFTER_STEP=$term_step) and its checkpoint exists" \
  || bad "stopped at step '$stopped', want $term_step with its checkpoint"
"$ftune" train "$recipe" "${common[@]}" --set output_dir="$tmp/c" --resume >"$tmp/c2.out" 2>"$tmp/c2.err"
rc=$?
[ $rc -eq 0 ] && ok "run C resumed from step $stopped" || bad "resume C exit $rc: $(tail -3 "$tmp/c2.err")"
cmp -s "$tmp/a/final/adapter_model.safetensors" "$tmp/c/final/adapter_model.safetensors" \
  && ok "run C final adapter is byte-identical to run A's" || bad "run C final adapter differs from run A's"
diff <(strip "$tmp/a/metrics.jsonl") <(strip "$tmp/c/metrics.jsonl") >/dev/null \
  && ok "run C metrics agree with run A's" || bad "run C metrics differ"

# --- D: --resume auto, one command line for a job that may be requeued: starts when there is no
# checkpoint, resumes when there is one, and ends byte-identical to A ---------------------------
FT_FAULT_KILL_AFTER_STEP=13 "$ftune" train "$recipe" "${common[@]}" --set output_dir="$tmp/d" --resume auto \
  >/dev/null 2>"$tmp/d1.err"
grep -q -- "--resume auto: no checkpoint in $tmp/d/checkpoints: starting the run" "$tmp/d1.err" \
  && ok "--resume auto without a checkpoint starts the run" || bad "--resume auto, first launch: $(tail -2 "$tmp/d1.err")"
"$ftune" train "$recipe" "${common[@]}" --set output_dir="$tmp/d" --resume auto >/dev/null 2>"$tmp/d2.err"; rc=$?
[ $rc -eq 0 ] && grep -q "resumed from [^ ]*step-000012.ckpt at step 12" "$tmp/d2.err" \
  && cmp -s "$tmp/a/final/adapter_model.safetensors" "$tmp/d/final/adapter_model.safetensors" \
  && ok "the same command resumes from step 12 and ends byte-identical to run A" \
  || bad "--resume auto, relaunch: exit $rc $(tail -2 "$tmp/d2.err")"

# --- E: a training file edited in place between the kill and the resume, every example keeping its
# length (" cat " -> " dog ": two tokens each for stories260K), packs into the same rows: the resume
# must refuse it, not train the rest of the run on other data than its checkpoint's -----------------
sed 's/ cat / dog /' "$src/tests/fixtures/run/train.jsonl" >"$tmp/e.jsonl"
cmp -s "$tmp/e.jsonl" "$src/tests/fixtures/run/train.jsonl" && bad "the fixture has no ' cat ' to edit"
cp "$src/tests/fixtures/run/train.jsonl" "$tmp/e.jsonl"
ecommon=(--set training.steps=6 --set data.train="$tmp/e.jsonl" --set eval.prompts= --set output_dir="$tmp/e")
{ FT_FAULT_KILL_AFTER_STEP=5 "$ftune" train "$recipe" "${ecommon[@]}" >/dev/null 2>&1; } 2>/dev/null
sed -i 's/ cat / dog /' "$tmp/e.jsonl"
"$ftune" train "$recipe" "${ecommon[@]}" --resume >/dev/null 2>"$tmp/e.err"; rc=$?
[ $rc -eq 2 ] && grep -q "step-000004.ckpt: cannot resume the data cursor: it was saved for 40 packed rows (data [0-9a-f]*), the training data now packs into 40 rows (data [0-9a-f]*); the data files" "$tmp/e.err" \
  && ok "a resume on training data edited in place (same rows) is refused: $(grep -o 'cannot resume.*' "$tmp/e.err" | head -c 150)" \
  || bad "edited training data on resume: exit $rc (want 2): $(tail -2 "$tmp/e.err")"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
