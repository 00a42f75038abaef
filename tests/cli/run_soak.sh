#!/usr/bin/env bash
# Soak: nothing of a run grows with its steps but what the steps themselves add (docs/perf.md,
# "Long runs: growth over steps"). The demo model at 32 tokens a step runs 1000 steps with a
# checkpoint every 5 (checkpoint.keep 2) and an evaluation with a sample every 10: 200 checkpoints,
# 100 evaluations, a few seconds. While it runs, /proc/PID is sampled: its open file descriptors
# and threads in the second half of the run may not exceed the first half's (a descriptor left
# open per checkpoint or evaluation would add 100). After it: RSS at step 1000 within 1 MB of step
# 200's, exactly checkpoint.keep checkpoints and no temporary file anywhere, one metrics line per
# step and evaluation of bounded size, a bounded loss.svg, and no step-time drift (the wall time of
# steps 601-1000 against 101-500: a rewrite of a growing file per step would show). Then the same
# run interrupted 5 times with SIGTERM and resumed with --resume auto must leave the same files
# and the same number of metrics lines as the uninterrupted one.
# usage: run_soak.sh FTUNE SRC_DIR
set -u
ftune=$(realpath "$1"); src=$(realpath "$2")
recipe="$src/recipes/demo-stories260k.yaml"
tmp=$(mktemp -d); trap 'kill -9 $(jobs -p) 2>/dev/null; rm -rf "$tmp"' EXIT
pass=0; fail=0
ok()  { pass=$((pass+1)); echo "ok   $*"; }
bad() { fail=$((fail+1)); echo "FAIL $*"; }
steps=1000
common=(--set data.seq_len=32 --set training.micro_batch=1 --set training.grad_accum=1 --set training.warmup=5
        --set training.steps=$steps --set checkpoint.every_steps=5 --set checkpoint.keep=2 --set eval.every_steps=10
        --set eval.max_new_tokens=8 --set eval.max_batches=2 --set export.formats=peft --set export.merged=
        --set model.threads=1)

# --- A: uninterrupted, sampled ---------------------------------------------------------------
"$ftune" train "$recipe" "${common[@]}" --set output_dir="$tmp/a" >"$tmp/a.out" 2>"$tmp/a.err" &
pid=$!
: >"$tmp/samples"
while kill -0 $pid 2>/dev/null; do
  step=$(grep -c '"type":"train"' "$tmp/a/metrics.jsonl" 2>/dev/null)
  fds=$(ls /proc/$pid/fd 2>/dev/null | wc -l)
  thr=$(awk '/^Threads:/{print $2}' /proc/$pid/status 2>/dev/null)
  [ -n "$step" ] && [ "$fds" -gt 0 ] && [ -n "$thr" ] && echo "$step $fds $thr" >>"$tmp/samples"
  sleep 0.05
done
wait $pid; rc=$?
[ $rc -eq 0 ] && ok "run A: $steps steps, exit 0" || bad "run A: exit $rc: $(tail -3 "$tmp/a.err")"
# samples from steps 50-500 against 500-1000 (the first steps open the data and the model)
read -r f1 t1 f2 t2 n1 n2 <<<"$(awk -v h=$((steps / 2)) '$1 >= 50 && $1 < h {if ($2 > f1) f1 = $2; if ($3 > t1) t1 = $3; n1++}
  $1 >= h {if ($2 > f2) f2 = $2; if ($3 > t2) t2 = $3; n2++} END {print f1+0, t1+0, f2+0, t2+0, n1+0, n2+0}' "$tmp/samples")"
[ "$n1" -ge 3 ] && [ "$n2" -ge 3 ] && [ "$f2" -le "$f1" ] && [ "$f2" -le 16 ] \
  && ok "open descriptors: at most $f1 in steps 50-499, $f2 in 500-1000 ($n1 + $n2 samples)" \
  || bad "open descriptors: $f1 then $f2 ($n1 + $n2 samples)"
[ "$n2" -ge 3 ] && [ "$t2" -le "$t1" ] && ok "threads: $t1 then $t2" || bad "threads: $t1 then $t2"
read -r r200 r1000 <<<"$(grep '"type":"train"' "$tmp/a/metrics.jsonl" | sed -n 's/.*"step":\([0-9]*\),.*"rss_mb":\([0-9.]*\)}}$/\1 \2/p' \
  | awk '$1 == 200 {a = $2} $1 == 1000 {b = $2} END {print a, b}')"
awk "BEGIN{exit !($r1000 - $r200 < 1.0)}" 2>/dev/null && ok "RSS: $r200 MB at step 200, $r1000 MB at step 1000" \
  || bad "RSS grew: $r200 MB at step 200, $r1000 MB at step 1000"
ck=$(ls -A "$tmp/a/checkpoints" | tr '\n' ' ')
[ "$ck" = "step-000995.ckpt step-001000.ckpt " ] && ok "checkpoints/ after 200 checkpoints: $ck" || bad "checkpoints/: $ck"
tmps=$(find "$tmp/a" -name '*.tmp*' -o -name '.*.tmp-*' | wc -l)
[ "$tmps" -eq 0 ] && ok "no temporary file left" || bad "temporary files: $(find "$tmp/a" -name '*tmp*')"
lines=$(wc -l <"$tmp/a/metrics.jsonl"); bytes=$(wc -c <"$tmp/a/metrics.jsonl")
[ "$lines" -eq $((steps + steps / 10)) ] && [ "$bytes" -le $((lines * 400)) ] \
  && ok "metrics.jsonl: $lines lines, $((bytes / lines)) bytes a line" || bad "metrics.jsonl: $lines lines, $bytes bytes"
svg=$(wc -c <"$tmp/a/loss.svg")
[ "$svg" -le 200000 ] && ok "loss.svg: $svg bytes" || bad "loss.svg: $svg bytes"
read -r w1 w2 <<<"$(grep '"type":"train"' "$tmp/a/metrics.jsonl" | sed -n 's/.*"step":\([0-9]*\),.*"elapsed_s":\([0-9.]*\),.*/\1 \2/p' \
  | awk '$1 == 100 {a = $2} $1 == 500 {b = $2} $1 == 600 {c = $2} $1 == 1000 {d = $2} END {printf "%.4f %.4f\n", (b - a) / 400, (d - c) / 400}')"
# a loaded machine makes the two halves differ by tens of percent; O(steps) work per step by far more
awk "BEGIN{exit !($w2 < 2.5 * $w1)}" 2>/dev/null && ok "wall time a step: $w1 s (steps 101-500), $w2 s (601-1000)" \
  || bad "step time drifts: $w1 s (steps 101-500), $w2 s (601-1000)"
t0=$(date +%s.%N)
"$ftune" status "$tmp/a" >"$tmp/st.out" 2>&1; rc=$?
t=$(echo "$(date +%s.%N) - $t0" | bc)
[ $rc -eq 0 ] && grep -q "step 1000 of 1000" "$tmp/st.out" && awk "BEGIN{exit !($t < 5)}" \
  && ok "ftune status of a $lines-line run: $(printf '%.2f' "$t") s" || bad "status: exit $rc in $t s: $(head -3 "$tmp/st.out")"

# --- B: the same run, SIGTERM 5 times, resumed with --resume auto -----------------------------
for at in 97 298 499 703 901 end; do
  if [ $at = end ]; then
    "$ftune" train "$recipe" "${common[@]}" --set output_dir="$tmp/b" --resume auto >"$tmp/b.out" 2>"$tmp/b.err"; rc=$?
    [ $rc -eq 0 ] || bad "run B's last part: exit $rc: $(tail -2 "$tmp/b.err")"
  else
    # (in a subshell whose stderr is closed: bash reports a child ended by a signal, "Terminated")
    ( FT_FAULT_TERM_AFTER_STEP=$at "$ftune" train "$recipe" "${common[@]}" --set output_dir="$tmp/b" --resume auto \
      >/dev/null 2>"$tmp/b.err"; exit $? ) 2>/dev/null; rc=$?
    [ $rc -eq 143 ] || bad "run B stopped after step $at: exit $rc (expected 143): $(tail -2 "$tmp/b.err")"
  fi
done
la=$(cd "$tmp/a" && find . -type f | sort | tr '\n' ' '); lb=$(cd "$tmp/b" && find . -type f | sort | tr '\n' ' ')
[ "$la" = "$lb" ] && ok "5 SIGTERM resumes: the same $(echo "$la" | wc -w) files as the uninterrupted run" \
  || bad "resumed run's files differ: $(diff <(echo "$la" | tr ' ' '\n') <(echo "$lb" | tr ' ' '\n') | grep '^[<>]' | head -5 | tr '\n' ' ')"
[ "$(wc -l <"$tmp/b/metrics.jsonl")" -eq "$lines" ] && cmp -s <(sed 's/,"wall":{[^}]*}//' "$tmp/a/metrics.jsonl") \
  <(sed 's/,"wall":{[^}]*}//' "$tmp/b/metrics.jsonl") && ok "5 SIGTERM resumes: metrics.jsonl the same $lines lines" \
  || bad "resumed metrics.jsonl: $(wc -l <"$tmp/b/metrics.jsonl") lines against $lines"
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
