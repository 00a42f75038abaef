#!/usr/bin/env bash
# tests/gpu/resume.sh: exact resume on the CUDA backend, and its agreement with the CPU backend
# (tests/gpu/run.sh phase `resume`; tests/cli/run_resume.sh is the CPU twin).
#   A  cpu run, uninterrupted                     (the reference curve)
#   G  cuda run, uninterrupted
#   K  cuda run killed with SIGKILL at the end of step 10 (last checkpoint: step 8), then --resume
#   S  cuda run stopped with SIGTERM during step 5 (finishes the step, checkpoints, ends by the signal: 143), then
#      --resume
# The signals come from the run itself (FT_FAULT_KILL_AFTER_STEP / FT_FAULT_TERM_AFTER_STEP, the test
# hook of trainer/run.c), not from this script after a sleep: on an H100 the whole run ended in the
# 0.3 s between the step-8 checkpoint and a scripted kill, so only a self-inflicted signal lands at
# the same step on every machine.
# Pass: K and S end with adapters byte-identical to G's and metrics.jsonl equal to G's line by line
# (wall-clock fields aside): resume on CUDA is exact, as on the CPU; and G's loss follows A's within
# BF16 tolerance at every step (relative gap <= FT_RESUME_TOL, default 0.02).
# usage: resume.sh FTUNE SRC_DIR LOG_DIR   (LOG_DIR gets each run's output and the two metrics files)
set -u
ftune=$(realpath "$1"); src=$(realpath "$2"); out=$3
recipe="$src/tests/fixtures/run/tiny.yaml"
tol="${FT_RESUME_TOL:-0.02}"
steps="${FT_RESUME_STEPS:-24}"
tmp=$(mktemp -d); trap 'kill -9 $(jobs -p) 2>/dev/null; rm -rf "$tmp"' EXIT
pass=0; fail=0
ok()  { pass=$((pass+1)); echo "ok   $*"; }
bad() { fail=$((fail+1)); echo "FAIL $*"; }
strip() { sed 's/,"wall":{[^}]*}//' "$1"; }
common=(--set training.steps="$steps" --set model.threads=0)

"$ftune" train "$recipe" "${common[@]}" --set model.device=cpu --set output_dir="$tmp/a" >"$out/resume_a.log" 2>&1 \
  && ok "cpu run A" || bad "cpu run A: $(tail -3 "$out/resume_a.log")"
"$ftune" train "$recipe" "${common[@]}" --set model.device=cuda --set output_dir="$tmp/g" >"$out/resume_g.log" 2>&1 \
  && ok "cuda run G" || bad "cuda run G: $(tail -3 "$out/resume_g.log")"

# K: SIGKILL at the end of step 10, two steps past the step-8 checkpoint (resume drops their log lines)
{ FT_FAULT_KILL_AFTER_STEP=10 "$ftune" train "$recipe" "${common[@]}" --set model.device=cuda --set output_dir="$tmp/k" \
  >"$out/resume_k1.log" 2>&1; } 2>/dev/null # (the shell's "Killed" notice)
rc=$?
n_k=$(grep -c '"type":"train"' "$tmp/k/metrics.jsonl" 2>/dev/null)
if [ $rc -eq 137 ] && [ ! -e "$tmp/k/final/adapter_model.safetensors" ] && [ "$n_k" = 10 ]; then
  ok "run K killed by SIGKILL after step $n_k (checkpoints: $(ls "$tmp/k/checkpoints" | tr '\n' ' '))"
else
  bad "run K: exit $rc (want 137, SIGKILL), $n_k train lines (want 10), final adapter $([ -e "$tmp/k/final/adapter_model.safetensors" ] && echo present || echo absent): $(tail -3 "$out/resume_k1.log")"
fi
"$ftune" train "$recipe" "${common[@]}" --set model.device=cuda --set output_dir="$tmp/k" --resume >"$out/resume_k2.log" 2>&1 \
  && grep -q 'resumed from [^ ]*step-000008.ckpt at step 8' "$out/resume_k2.log" \
  && ok "run K resumed: $(grep -o 'resumed from [^ ]* at step [0-9]*' "$out/resume_k2.log")" || bad "resume K (want: from step 8): $(tail -3 "$out/resume_k2.log")"

# S: SIGTERM during step 5: the run finishes the step, checkpoints it (5 is not a checkpoint step) and ends by the signal
FT_FAULT_TERM_AFTER_STEP=5 "$ftune" train "$recipe" "${common[@]}" --set model.device=cuda --set output_dir="$tmp/s" \
  >"$out/resume_s1.log" 2>&1
rc=$?
[ $rc -eq 143 ] && grep -q "interrupted at step 5:" "$out/resume_s1.log" && [ -e "$tmp/s/checkpoints/step-000005.ckpt" ] \
  && ok "run S stopped by SIGTERM: $(grep -o 'interrupted at step [0-9]*' "$out/resume_s1.log"), checkpoint step-000005.ckpt" \
  || bad "run S: exit $rc (want 143, interrupted at step 5 with its checkpoint): $(tail -3 "$out/resume_s1.log")"
"$ftune" train "$recipe" "${common[@]}" --set model.device=cuda --set output_dir="$tmp/s" --resume >"$out/resume_s2.log" 2>&1 \
  && ok "run S resumed" || bad "resume S: $(tail -3 "$out/resume_s2.log")"

for r in k s; do
  R=$(echo $r | tr a-z A-Z)
  cmp -s "$tmp/g/final/adapter_model.safetensors" "$tmp/$r/final/adapter_model.safetensors" \
    && ok "run $R final adapter byte-identical to the uninterrupted cuda run's" || bad "run $R adapter differs from run G's"
  diff <(strip "$tmp/g/metrics.jsonl") <(strip "$tmp/$r/metrics.jsonl") >"$tmp/$r.diff" \
    && ok "run $R metrics.jsonl equal to run G's ($(wc -l <"$tmp/g/metrics.jsonl") lines)" || bad "run $R metrics differ: $(head -4 "$tmp/$r.diff")"
done

# G against A, step by step
cp "$tmp/a/metrics.jsonl" "$out/resume_cpu_metrics.jsonl" 2>/dev/null
cp "$tmp/g/metrics.jsonl" "$out/resume_cuda_metrics.jsonl" 2>/dev/null
cmp_out=$(awk -v tol="$tol" '
  FNR == 1 { f++ }
  /"type":"train"/ {
    match($0, /"step":[0-9]+/); s = substr($0, RSTART + 7, RLENGTH - 7) + 0
    match($0, /"loss":[-0-9.eE+naif]+/); l = substr($0, RSTART + 7, RLENGTH - 7)
    if (f == 1) a[s] = l; else g[s] = l
  }
  END {
    bad = 0; worst = 0
    for (s in a) {
      if (!(s in g)) { bad++; continue }
      d = a[s] - g[s]; if (d < 0) d = -d; r = d / (a[s] < 0 ? -a[s] : a[s])
      if (!(r <= tol)) bad++
      if (r > worst) { worst = r; ws = s }
    }
    for (s = 1; s in a; s++) if (s <= 2 || s % 4 == 0) printf "  step %3d  cpu %s  cuda %s\n", s, a[s], g[s] > "/dev/stderr"
    printf "%d %.3e %d %d\n", bad, worst, ws, length(a)
  }' "$tmp/a/metrics.jsonl" "$tmp/g/metrics.jsonl")
read -r nbad worst ws n <<<"$cmp_out"
[ "${nbad:-1}" = 0 ] && [ "${n:-0}" -gt 0 ] && ok "cuda loss within $tol of the cpu loss at all $n steps (worst $worst at step $ws)" \
  || bad "cuda vs cpu loss: $nbad of $n steps beyond $tol (worst $worst at step $ws)"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
