#!/usr/bin/env bash
# training.max_hours (trainer/run_limit.c): a job stops before a step that would end past its time
# limit, writes a checkpoint and exits 75, and the same command line with --resume auto goes on.
# The runs count FT_FAULT_STEP_SECONDS=100 (the test hook) more seconds for each step on the
# limit's clock, so with max_hours 0.1 (360 s) every job stops after exactly 3 steps on any machine:
# before a 4th, 300 s used + the slowest step (100 s) > 360; before a 3rd, 200 + 100 + a checkpoint
# and an evaluation of well under a minute here fit. 12 steps: jobs end 75, 75, 75, 0, and the
# final adapter and metrics.jsonl are run A's (uninterrupted) byte for byte.
# Then: a limit that passes before the first step is exit 2 (a requeue loop must not retry it),
# and `ftune plan` says how many jobs the run takes.
# usage: run_timelimit.sh FTUNE SRC_DIR
set -u
ftune=$(realpath "$1"); src=$(realpath "$2")
recipe="$src/tests/fixtures/run/tiny.yaml"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
ok()  { pass=$((pass+1)); echo "ok   $*"; }
bad() { fail=$((fail+1)); echo "FAIL $*"; }
common=(--set training.steps=12)
strip() { sed 's/,"wall":{[^}]*}//' "$1"; }

"$ftune" train "$recipe" "${common[@]}" --set output_dir="$tmp/a" >/dev/null 2>"$tmp/a.err" \
  && ok "run A: 12 steps uninterrupted" || bad "run A: $(tail -2 "$tmp/a.err")"

want=(75 75 75 0)
for job in 1 2 3 4; do
  FT_FAULT_STEP_SECONDS=100 "$ftune" train "$recipe" "${common[@]}" --set output_dir="$tmp/b" \
    --set training.max_hours=0.1 --resume auto >"$tmp/b$job.out" 2>"$tmp/b$job.err"
  rc=$?
  at=$((job * 3))
  ck="$tmp/b/checkpoints/step-$(printf %06d $at).ckpt"
  if [ "$job" -lt 4 ]; then
    line=$(tail -1 "$tmp/b$job.err")
    [ $rc -eq 75 ] && [ -e "$ck" ] && [ "$(grep -c '"type":"train"' "$tmp/b/metrics.jsonl")" -eq $at ] \
      && echo "$line" | grep -q "^ftune: stopped at step $at of 12 at the time limit (training.max_hours 0.1: .* used; the next step, 100 s.*would end past it): checkpoint $ck; go on with: ftune train $recipe --resume auto$" \
      && ok "job $job: exit 75 after step $at, its checkpoint written: $line" \
      || bad "job $job: exit $rc (want 75), step $at: $line"
  else
    [ $rc -eq 0 ] && [ -s "$tmp/b/final/adapter_model.safetensors" ] && ok "job 4: exit 0, final adapter written" \
      || bad "job 4: exit $rc: $(tail -2 "$tmp/b$job.err")"
  fi
  if [ "$job" -eq 1 ]; then
    grep -q "FT_FAULT_STEP_SECONDS=100: test hook armed" "$tmp/b1.err" && ok "the armed hook is announced" \
      || bad "hook not announced"
    st=$(grep -o '"started": [0-9]*' "$tmp/b/job.json" | grep -o '[0-9]*$')
    [ -n "$st" ] && [ $(( $(date +%s) - st )) -lt 120 ] && grep -q '"max_hours": 0.10000000000000001' "$tmp/b/job.json" \
      && [ ! -e "$tmp/a/job.json" ] && ok "job.json: when the job started and its limit (none without one)" \
      || bad "job.json: $(cat "$tmp/b/job.json" 2>&1); run A's: $(ls "$tmp/a/job.json" 2>&1)"
    grep -q '"outcome":"stopped at its time limit","step":3,' "$tmp/b/outcome.json" \
      && "$ftune" status "$tmp/b" | grep -q "^run: .*: stopped at its time limit: stopped at step 3 of 12" \
      && ok "outcome.json and ftune status: stopped at its time limit" \
      || bad "outcome: $(cat "$tmp/b/outcome.json"); status: $("$ftune" status "$tmp/b" | head -1)"
  fi
done
cmp -s "$tmp/a/final/adapter_model.safetensors" "$tmp/b/final/adapter_model.safetensors" \
  && ok "4 jobs end byte-identical to the uninterrupted run" || bad "final adapter differs from run A's"
diff <(strip "$tmp/a/metrics.jsonl") <(strip "$tmp/b/metrics.jsonl") >"$tmp/b.diff" \
  && ok "metrics.jsonl agrees with run A's line by line ($(wc -l <"$tmp/b/metrics.jsonl") lines)" \
  || bad "metrics differ: $(head -4 "$tmp/b.diff")"

# the limit passes while loading: nothing trained, exit 2, no checkpoint
"$ftune" train "$recipe" "${common[@]}" --set output_dir="$tmp/c" --set training.max_hours=1e-9 >/dev/null 2>"$tmp/c.err"
rc=$?
[ $rc -eq 2 ] && grep -q "training.max_hours 1e-09: .* used before this job's first step (preparing the data and loading the weights), and the step (.* by the plan) with its checkpoint would end past it: nothing trained" "$tmp/c.err" \
  && [ -z "$(ls "$tmp/c/checkpoints" 2>/dev/null)" ] \
  && ok "a limit shorter than the loading: exit 2, $(tail -1 "$tmp/c.err" | head -c 160)" \
  || bad "limit before the first step: exit $rc: $(tail -1 "$tmp/c.err")"

# a limit that is not a number is the recipe's error
"$ftune" train "$recipe" --set output_dir="$tmp/d" --set training.max_hours=soon >/dev/null 2>"$tmp/d.err"
rc=$?
[ $rc -eq 2 ] && grep -q "training.max_hours" "$tmp/d.err" && ok "training.max_hours=soon: exit 2: $(tail -1 "$tmp/d.err")" \
  || bad "training.max_hours=soon: exit $rc: $(tail -1 "$tmp/d.err")"

# ftune plan: the 70B H100 recipe's 6.5 h in 3 h jobs
out=$("$ftune" plan "$src/recipes/llama-3.3-70b-h100.yaml" --device h100 --set training.max_hours=3 2>/dev/null)
echo "$out" | grep -qE "time limit +training.max_hours 3: a job trains about [0-9]+ of the 500 steps .* exits 75: 3 jobs" \
  && ok "plan: $(echo "$out" | grep 'time limit' | sed 's/  */ /g')" || bad "plan: $(echo "$out" | grep -A1 'estimated time')"

echo "run_timelimit: $pass passed, $fail failed"
[ $fail -eq 0 ]
