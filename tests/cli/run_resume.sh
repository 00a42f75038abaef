#!/usr/bin/env bash
# Exact resume of a recipe run (CPU backend). Run A goes uninterrupted. Run B is killed with
# SIGKILL at a random moment after its second checkpoint, then resumed with --resume. Run C gets
# SIGTERM after its first checkpoint: it must finish the step, write a checkpoint, print the resume
# hint and exit 0; then it is resumed. The final adapters of B and C must be byte-identical to A's,
# and their metrics.jsonl must agree with A's line by line (the wall-clock "wall" object aside).
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

# wait_for FILE: until it exists (30 s at most)
wait_for() { for _ in $(seq 1 600); do [ -e "$1" ] && return 0; sleep 0.05; done; return 1; }

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

# --- B: SIGKILL at a random step after a checkpoint, then --resume -----------------------------
"$ftune" train "$recipe" "${common[@]}" --set output_dir="$tmp/b" >"$tmp/b1.out" 2>"$tmp/b1.err" &
pid=$!
wait_for "$tmp/b/checkpoints/step-000008.ckpt" || bad "run B wrote no checkpoint"
sleep "0.$((RANDOM % 8))$((RANDOM % 10))"
kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
killed_at=$(grep -c '"type":"train"' "$tmp/b/metrics.jsonl")
if [ -e "$tmp/b/final/adapter_model.safetensors" ]; then
  bad "run B finished before it was killed (machine too fast for this test?)"
else
  ok "run B killed by SIGKILL after step $killed_at (checkpoints: $(ls "$tmp/b/checkpoints" | tr '\n' ' '))"
fi
"$ftune" train "$recipe" "${common[@]}" --set output_dir="$tmp/b" --resume >"$tmp/b2.out" 2>"$tmp/b2.err"
rc=$?
[ $rc -eq 0 ] && ok "run B resumed: $(grep -o 'resumed from [^ ]* at step [0-9]*' "$tmp/b2.err")" || bad "resume B exit $rc: $(tail -3 "$tmp/b2.err")"
grep -q "reusing tokenized data" "$tmp/b2.err" && ok "resume reuses the tokenized shards" || bad "resume tokenized again"
cmp -s "$tmp/a/final/adapter_model.safetensors" "$tmp/b/final/adapter_model.safetensors" \
  && ok "run B final adapter is byte-identical to run A's" || bad "run B final adapter differs from run A's"
if diff <(strip "$tmp/a/metrics.jsonl") <(strip "$tmp/b/metrics.jsonl") >"$tmp/b.diff"; then
  ok "run B metrics.jsonl agrees with run A's step by step ($(wc -l <"$tmp/b/metrics.jsonl") lines)"
else
  bad "run B metrics differ: $(head -4 "$tmp/b.diff")"
fi
cmp -s "$tmp/a/samples/step-000040.txt" "$tmp/b/samples/step-000040.txt" && ok "run B samples agree" || bad "run B samples differ"

# --- C: SIGTERM: checkpoint, message, exit 0; then resume --------------------------------------
"$ftune" train "$recipe" "${common[@]}" --set output_dir="$tmp/c" >"$tmp/c1.out" 2>"$tmp/c1.err" &
pid=$!
wait_for "$tmp/c/checkpoints/step-000004.ckpt" || bad "run C wrote no checkpoint"
sleep 0.$((RANDOM % 5))
kill -TERM $pid; wait $pid; rc=$?
msg=$(grep -o 'interrupted at step [0-9]*: checkpoint written to [^;]*; resume with: ftune train .* --resume' "$tmp/c1.err")
if [ $rc -eq 0 ] && [ -n "$msg" ]; then ok "SIGTERM: exit 0, \"$msg\""; else bad "SIGTERM: exit $rc: $(tail -3 "$tmp/c1.err")"; fi
stopped=$(echo "$msg" | grep -o 'step [0-9]*' | head -1 | grep -o '[0-9]*')
[ -n "$stopped" ] && [ -e "$tmp/c/checkpoints/step-$(printf %06d "$stopped").ckpt" ] && ok "checkpoint of step $stopped exists" || bad "no checkpoint for the interrupted step"
"$ftune" train "$recipe" "${common[@]}" --set output_dir="$tmp/c" --resume >"$tmp/c2.out" 2>"$tmp/c2.err"
rc=$?
[ $rc -eq 0 ] && ok "run C resumed from step $stopped" || bad "resume C exit $rc: $(tail -3 "$tmp/c2.err")"
cmp -s "$tmp/a/final/adapter_model.safetensors" "$tmp/c/final/adapter_model.safetensors" \
  && ok "run C final adapter is byte-identical to run A's" || bad "run C final adapter differs from run A's"
diff <(strip "$tmp/a/metrics.jsonl") <(strip "$tmp/c/metrics.jsonl") >/dev/null \
  && ok "run C metrics agree with run A's" || bad "run C metrics differ"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
