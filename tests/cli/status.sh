#!/usr/bin/env bash
# `ftune status RUN_DIR` (trainer/cmd_status.c): a run killed at step 10 of 24 (SIGKILL: nothing
# recorded) reads as stopped before its end, at step 10, with the loss, tokens and validation losses of its metrics.jsonl and
# its newest checkpoint (8); while a process holds the directory's lock it reads as running, with
# a time left; resumed to its end, as finished with final/ (outcome.json says so); a diverged run
# and a SIGTERM'd one read as the outcome they recorded. Not a run directory: exit 2.
# usage: status.sh FTUNE SRC_DIR
set -u
ftune=$(realpath "$1"); src=$(realpath "$2")
recipe="$src/tests/fixtures/run/tiny.yaml"
tmp=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$tmp"' EXIT
pass=0; fail=0
ok()  { pass=$((pass+1)); echo "ok   $*"; }
bad() { fail=$((fail+1)); echo "FAIL $*"; }
run="$tmp/r"

"$ftune" status "$tmp" >/dev/null 2>"$tmp/e.err"; rc=$?
[ $rc -eq 2 ] && grep -q "not a run directory" "$tmp/e.err" && ok "not a run directory: exit 2" || bad "non-run dir: exit $rc $(cat "$tmp/e.err")"

FT_FAULT_KILL_AFTER_STEP=10 "$ftune" train "$recipe" --set output_dir="$run" >/dev/null 2>&1
"$ftune" status "$run" >"$tmp/s1" 2>&1; rc=$?
m="$run/metrics.jsonl"
last=$(grep '"type":"train"' "$m" | tail -1 | grep -o '"loss":[0-9.]*' | cut -d: -f2)
tok=$(grep '"type":"train"' "$m" | grep -o '"tokens":[0-9]*' | cut -d: -f2 | awk '{s += $1} END {print s}')
low=$(grep '"type":"eval"' "$m" | grep -o '"val_loss":[0-9.]*' | cut -d: -f2 | sort -g | head -1)
[ $rc -eq 0 ] && grep -q "^run: .*: stopped before its end" "$tmp/s1" && grep -q "^progress:     step 10 of 24 (41.7%), $tok tokens" "$tmp/s1" \
  && ok "killed at 10: $(grep '^progress' "$tmp/s1")" || bad "killed run: exit $rc $(cat "$tmp/s1")"
grep -q "^loss:         $(printf '%.4f' "$last") last" "$tmp/s1" && ok "last loss $last as metrics.jsonl" || bad "loss: $(grep '^loss' "$tmp/s1"), want $last"
grep -q "lowest $(printf '%.4f' "$low") at step 6" "$tmp/s1" && ok "validation: $(grep '^validation' "$tmp/s1")" || bad "validation (lowest $low): $(grep '^valid' "$tmp/s1")"
grep -q "^checkpoints:  [0-9]*, the newest step 8, written .* (continue: ftune train RECIPE --resume)" "$tmp/s1" \
  && grep -q "^final/:       not yet" "$tmp/s1" && ok "checkpoints: newest step 8; final/ not yet" || bad "checkpoints/final: $(tail -3 "$tmp/s1")"

flock "$run/.lock" sleep 5 &
sleep 0.5
"$ftune" status "$run" >"$tmp/s2" 2>&1
grep -q "^run: .*: running: a process holds it" "$tmp/s2" && grep -q "^time left:    ~0:[0-9][0-9] at the run's [0-9.]* s a step so far" "$tmp/s2" \
  && ok "while the lock is held: running, $(grep '^time left' "$tmp/s2")" || bad "held lock: $(head -4 "$tmp/s2")"
wait
# the time left counts the evaluations and checkpoints between steps: metrics.jsonl's elapsed_s (the
# run's wall clock) at 1 s a step while each step's own step_s says 0.1 s -> 14 steps left, ~0:14
cp "$m" "$tmp/m.keep"
awk '/"type":"train"/ { match($0, /"step":[0-9]+/); s = substr($0, RSTART + 7, RLENGTH - 7);
       sub(/"elapsed_s":[0-9.]+/, "\"elapsed_s\":" s ".000"); sub(/"step_s":[0-9.]+/, "\"step_s\":0.1000") } { print }' \
  "$tmp/m.keep" >"$m"
flock "$run/.lock" sleep 5 &
sleep 0.5
"$ftune" status "$run" >"$tmp/s3" 2>&1
grep -q "^time left:    ~0:14 at the run's 1.00 s a step so far (evaluations and checkpoints included)" "$tmp/s3" \
  && ok "time left from the run's wall clock: $(grep '^time left' "$tmp/s3")" || bad "time left: $(grep '^time left' "$tmp/s3")"
! grep -q "^job limit" "$tmp/s3" && ok "no training.max_hours: no job limit line" || bad "job limit without a limit: $(grep '^job' "$tmp/s3")"
wait
# under training.max_hours the job's job.json (trainer/run_limit.c) says by when it stops: 2 h from
# an hour ago is an hour after the 14 s the run has left; 0.001 h from now is before them
now=$(date +%s)
echo "{\"started\": $((now - 3600)), \"max_hours\": 2, \"pid\": 1}" >"$run/job.json"
flock "$run/.lock" sleep 5 &
sleep 0.5
"$ftune" status "$run" >"$tmp/s4" 2>&1
wait
grep -q "^job limit:    this job (started $(date -d @$((now - 3600)) '+%a %H:%M')) stops with a checkpoint by $(date -d @$((now + 3600)) '+%a %H:%M'), training.max_hours 2$" "$tmp/s4" \
  && ok "$(grep '^job limit' "$tmp/s4")" || bad "job limit: $(grep '^job' "$tmp/s4") (now $now)"
echo "{\"started\": $now, \"max_hours\": 0.001, \"pid\": 1}" >"$run/job.json"
flock "$run/.lock" sleep 5 &
sleep 0.5
"$ftune" status "$run" >"$tmp/s5" 2>&1
wait
grep -q "^job limit:    .*training.max_hours 0.001: before the run's end (\`ftune train RECIPE --resume auto\` goes on)$" "$tmp/s5" \
  && ok "a limit before the run's end says so" || bad "job limit before the end: $(grep '^job' "$tmp/s5")"
rm -f "$run/job.json"
cp "$tmp/m.keep" "$m"

"$ftune" train "$recipe" --set output_dir="$run" --resume >/dev/null 2>&1
"$ftune" status "$run" >"$tmp/s3" 2>&1
grep -q "^run: .*: finished$" "$tmp/s3" && grep -q '"outcome":"finished"' "$run/outcome.json" && grep -q "^progress:     step 24 of 24 (100.0%)" "$tmp/s3" && grep -q "^final/:       written" "$tmp/s3" \
  && grep -q "^best/:        step [0-9]*, validation loss" "$tmp/s3" && ok "resumed to the end: finished, final/ and best/" || bad "finished run: $(cat "$tmp/s3")"

# a run its guard stopped: the outcome it recorded, message and all (stderr may be long gone)
"$ftune" train "$recipe" --set training.lr=0.3 --set training.warmup=40 --set training.steps=80 \
  --set output_dir="$tmp/d" >/dev/null 2>"$tmp/d.err"
"$ftune" status "$tmp/d" >"$tmp/s4" 2>&1
msg=$(grep 'error:' "$tmp/d.err" | sed 's/^ftune: error: //')
[ -n "$msg" ] && grep -qF "run:          $tmp/d: stopped by its guard: $msg" "$tmp/s4" \
  && ok "a diverged run: its recorded outcome, $(head -c 100 "$tmp/s4")..." || bad "diverged run: $(head -1 "$tmp/s4")"
# SIGTERM: interrupted, with the resume line
FT_FAULT_TERM_AFTER_STEP=5 "$ftune" train "$recipe" --set output_dir="$tmp/t" >/dev/null 2>&1
"$ftune" status "$tmp/t" >"$tmp/s5" 2>&1
grep -q "^run: .*: interrupted: interrupted at step 5: checkpoint written to" "$tmp/s5" \
  && ok "SIGTERM: $(head -1 "$tmp/s5" | cut -c1-90)..." || bad "SIGTERM'd run: $(head -1 "$tmp/s5")"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
