#!/usr/bin/env bash
# The guard of unattended runs. (1) Loss spikes: the training data has a few records of random
# letters (loss ~10 nats/token against ~1.5 for the stories); with one record per step and
# training.spike_zscore 6 those steps are skipped, logged on stderr and marked in metrics.jsonl,
# and the run completes. (2) Non-finite losses: an initial adapter with NaN weights makes every
# step's loss NaN; each step is skipped, and after training.max_skips in a row the run stops with
# a checkpoint, a clear message and exit 3. (3) Divergence: at lr 0.3 the loss climbs from ~1.4
# to ~7 with no single spike; training.diverge_factor (default 2) stops the run 20 steps into the
# rise with exit 3, writes no checkpoint of the diverged state, and names the newest checkpoint
# before the rise, from which a run at a sane lr resumes and completes; killed mid-rise and
# resumed, it stops at the same step. With the factor at 0 the same run completes; at 1.1 the bound
# is the lowest mean + 0.5, and the message names it so.
# usage: run_guard.sh FTUNE SRC_DIR
set -u
ftune=$(realpath "$1"); src=$(realpath "$2")
fx="$src/tests/fixtures/run"
recipe="$fx/tiny.yaml"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
ok()  { pass=$((pass+1)); echo "ok   $*"; }
bad() { fail=$((fail+1)); echo "FAIL $*"; }

"$ftune" train "$recipe" --set output_dir="$tmp/s" --set data.train="$fx/spike.jsonl" --set data.packing=none \
  --set training.micro_batch=1 --set training.grad_accum=1 --set training.steps=45 --set training.spike_zscore=6 \
  >/dev/null 2>"$tmp/s.err"; rc=$?
[ $rc -eq 0 ] && ok "spiky run completes" || bad "spiky run: exit $rc $(tail -3 "$tmp/s.err")"
n_warn=$(grep -c "skipped: loss .* is a spike (z-score" "$tmp/s.err")
n_json=$(grep -c '"skipped":"spike"' "$tmp/s/metrics.jsonl")
[ "$n_warn" -ge 2 ] && [ "$n_warn" -eq "$n_json" ] && ok "$n_warn spikes skipped and logged: $(grep -m1 'is a spike' "$tmp/s.err")" \
  || bad "spikes: $n_warn warnings, $n_json metrics lines"
bad_loss=$(grep '"skipped":null' "$tmp/s/metrics.jsonl" | grep -o '"loss":[0-9.]*' | cut -d: -f2 | sort -g | tail -1)
awk "BEGIN{exit !($bad_loss < 4)}" && ok "no accepted step has a spike loss (max $bad_loss)" || bad "an accepted step has loss $bad_loss"

# NaN adapter: from a trained adapter with its last 4 KiB of floats set to NaN (0xff bytes)
"$ftune" train "$recipe" --set output_dir="$tmp/a" --set training.steps=4 >/dev/null 2>&1 || bad "adapter run failed"
nan="$tmp/nan.safetensors"
cp "$tmp/a/final/adapter_model.safetensors" "$nan"
size=$(stat -c %s "$nan")
head -c 4096 /dev/zero | tr '\0' '\377' | dd of="$nan" bs=1 seek=$((size - 4096)) conv=notrunc 2>/dev/null
"$ftune" train "$recipe" --set output_dir="$tmp/n" --set lora.init="$nan" --set training.max_skips=3 >/dev/null 2>"$tmp/n.err"; rc=$?
msg=$(grep 'error:' "$tmp/n.err")
[ $rc -eq 3 ] && echo "$msg" | grep -q "stopped at step 3: 3 steps in a row were skipped" && ok "max_skips stops the run: $msg" \
  || bad "NaN run: exit $rc $(tail -3 "$tmp/n.err")"
[ "$(grep -c 'skipped: non-finite loss' "$tmp/n.err")" -eq 3 ] && ok "3 non-finite steps logged" || bad "non-finite warnings: $(grep -c 'non-finite' "$tmp/n.err")"
[ "$(grep -c '"skipped":"nonfinite"' "$tmp/n/metrics.jsonl")" -eq 3 ] && grep -q '"loss":null' "$tmp/n/metrics.jsonl" \
  && ok "metrics mark them (loss null, skipped nonfinite)" || bad "metrics: $(cat "$tmp/n/metrics.jsonl")"
[ -e "$tmp/n/checkpoints/step-000003.ckpt" ] && ok "stop wrote checkpoints/step-000003.ckpt" || bad "no checkpoint at the stop"

# divergence: warm-up 40 to lr 0.3; checkpoints every 4 steps, all kept
div=(--set training.lr=0.3 --set training.warmup=40 --set training.steps=80 --set checkpoint.keep=30)
"$ftune" train "$recipe" "${div[@]}" --set output_dir="$tmp/d" >/dev/null 2>"$tmp/d.err"; rc=$?
msg=$(grep 'error:' "$tmp/d.err")
stop=$(echo "$msg" | sed -n 's/.*stopped at step \([0-9]*\): the loss diverged: 20 steps in a row (from step \([0-9]*\)).*/\1 \2/p')
read -r at rise <<<"$stop"
[ $rc -eq 3 ] && [ -n "$at" ] && [ $((at - rise + 1)) -eq 20 ] && ok "diverged run stops, exit 3: $msg" \
  || bad "divergence: exit $rc, $(tail -2 "$tmp/d.err")"
high=$(grep -o '"loss":[0-9.]*' "$tmp/d/metrics.jsonl" | cut -d: -f2 | sed -n "${rise:-1},\$p" | sort -g | head -1)
awk "BEGIN{exit !($high > 2.5)}" && ok "every loss from step $rise on is high (lowest $high)" || bad "losses after the rise: lowest $high"
newest=$(ls "$tmp/d/checkpoints" | grep -o '[0-9]*' | sort -n | tail -1)
[ -n "$newest" ] && [ $((10#$newest)) -lt "${at:-0}" ] && [ ! -e "$tmp/d/final" ] \
  && ok "no checkpoint of the diverged state (newest step $((10#$newest)) < $at), no final/" || bad "checkpoints after the stop: $(ls "$tmp/d/checkpoints")"
sugg=$(echo "$msg" | grep -o -- '--resume [^ ]*step-[0-9]*\.ckpt' | cut -d' ' -f2)
s_step=$(basename "${sugg:-x}" .ckpt | grep -o '[0-9]*$')
[ -e "$sugg" ] && [ $((10#$s_step)) -lt "${rise:-0}" ] && [ $((10#$s_step + 4)) -ge "${rise:-0}" ] \
  && ok "advice names the newest checkpoint before the rise: $(basename "$sugg")" || bad "advice: '$sugg' (rise at $rise)"
"$ftune" train "$recipe" "${div[@]}" --set training.lr=3e-3 --set output_dir="$tmp/d" --resume "$sugg" >/dev/null 2>"$tmp/d2.err"; rc=$?
[ $rc -eq 0 ] && [ -e "$tmp/d/final/adapter_model.safetensors" ] && ok "resumed from it at lr 3e-3: completes" \
  || bad "resume after divergence: exit $rc $(tail -2 "$tmp/d2.err")"
# the guard's state is in the checkpoints: killed at step 20, 8 steps into the rise, and resumed,
# the run stops at the same step, counting the rise from the same step
FT_FAULT_KILL_AFTER_STEP=20 "$ftune" train "$recipe" "${div[@]}" --set output_dir="$tmp/dk" >/dev/null 2>&1
"$ftune" train "$recipe" "${div[@]}" --set output_dir="$tmp/dk" --resume >/dev/null 2>"$tmp/dk.err"; rc=$?
[ $rc -eq 3 ] && grep -q "stopped at step $at: the loss diverged: 20 steps in a row (from step $rise)" "$tmp/dk.err" \
  && ok "killed at step 20 and resumed: stops at step $at, rise from step $rise, as uninterrupted" \
  || bad "resumed divergence: exit $rc $(grep error: "$tmp/dk.err")"
"$ftune" train "$recipe" "${div[@]}" --set training.diverge_factor=0 --set output_dir="$tmp/d0" >/dev/null 2>"$tmp/d0.err"; rc=$?
[ $rc -eq 0 ] && ok "diverge_factor 0: the same run completes" || bad "diverge_factor 0: exit $rc $(tail -2 "$tmp/d0.err")"
# factor 1.1: the bound is the lowest mean + 0.5 (more than 1.1 x it), and the message says so
"$ftune" train "$recipe" "${div[@]}" --set training.diverge_factor=1.1 --set output_dir="$tmp/d1" >/dev/null 2>"$tmp/d1.err"; rc=$?
msg=$(grep 'error:' "$tmp/d1.err")
read -r b m <<<"$(echo "$msg" | sed -n 's/.*had a loss above \([0-9.]*\), its lowest recent mean (\([0-9.]*\), step [0-9]*) + 0.5 (more than training.diverge_factor 1.1 x it).*/\1 \2/p')"
[ $rc -eq 3 ] && [ -n "$b" ] && awk "BEGIN{d = $b - $m - 0.5; exit !(d < 0.002 && d > -0.002)}" \
  && ok "a bound set by the 0.5 margin is named as such: $b = $m + 0.5" || bad "margin bound: exit $rc, $msg"

# training.max_rollbacks: the same divergence goes back to the newest checkpoint before the rise and
# trains on at lr x 0.01; byte for byte what the manual recovery above gives (resume from that
# checkpoint at 0.3 x 0.01, the same double), and a kill after the rollback resumes to the same end
rb=(--set training.max_rollbacks=2 --set training.rollback_lr_factor=0.01)
"$ftune" train "$recipe" "${div[@]}" "${rb[@]}" --set output_dir="$tmp/r" >"$tmp/r.out" 2>"$tmp/r.err"; rc=$?
[ $rc -eq 0 ] && grep -q "going back to step $((10#${s_step:-0}))'s checkpoint" "$tmp/r.err" \
  && grep -q "rollback 1 of 2: training again from step $((10#${s_step:-0})) with the learning rate 0.003" "$tmp/r.err" \
  && grep -q "skipped, 1 rollback (learning rate 0.003)" "$tmp/r.out" \
  && ok "max_rollbacks 2: diverged at step $at, went back to step $((10#${s_step:-0})), completed: $(grep '^trained:' "$tmp/r.out")" \
  || bad "rollback: exit $rc $(grep -E 'warning|error' "$tmp/r.err" | tail -3)"
grep -q '"type":"rollback","step":'$((10#${s_step:-0}))',"diverged_at":'"${at:-0}"',"rollback":1,"lr":0.003}' "$tmp/r/metrics.jsonl" \
  && "$ftune" status "$tmp/r" 2>/dev/null | grep -q "rollbacks:    1 (the last: the loss diverged at step ${at:-0}, back to step $((10#${s_step:-0})); learning rate now 0.003)" \
  && ok "metrics.jsonl records the rollback, and ftune status shows it" || bad "rollback record: $(grep rollback "$tmp/r/metrics.jsonl")"
# a second rollback to a checkpoint before the first one's cuts the first's line: status counts
# by the line's own "rollback", not by lines
cp -r "$tmp/r" "$tmp/r2nd"
sed -i 's/"rollback":1,"lr":0.003}/"rollback":2,"lr":0.003}/' "$tmp/r2nd/metrics.jsonl"
"$ftune" status "$tmp/r2nd" 2>/dev/null | grep -q "rollbacks:    2 (the last:" \
  && ok "status: the count is the last rollback line's own" || bad "status rollbacks: $("$ftune" status "$tmp/r2nd" 2>&1 | grep rollbacks)"
lr=$(python3 -c 'print(repr(0.3 * 0.01))')
"$ftune" train "$recipe" "${div[@]}" --set training.lr="$lr" --set output_dir="$tmp/d" --resume "$sugg" >/dev/null 2>&1
"$ftune" train "$recipe" "${div[@]}" --set output_dir="$tmp/m" >/dev/null 2>&1
"$ftune" train "$recipe" "${div[@]}" --set training.lr="$lr" --set output_dir="$tmp/m" --resume "$tmp/m/checkpoints/$(basename "${sugg:-x}")" \
  >/dev/null 2>"$tmp/m.err"
cmp -s "$tmp/r/final/adapter_model.safetensors" "$tmp/m/final/adapter_model.safetensors" \
  && ok "the rollback's adapter = a manual resume from $(basename "${sugg:-x}") at lr $lr" || bad "rollback vs manual resume differ"
n_lines=$(grep -c '"type":"train"' "$tmp/r/metrics.jsonl"); n_steps=$(grep -o '"step":[0-9]*,"loss"' "$tmp/r/metrics.jsonl" | sort -u | wc -l)
[ "$n_lines" -eq 80 ] && [ "$n_steps" -eq 80 ] && ok "metrics.jsonl: 80 train lines, one per step (the diverged ones cut)" \
  || bad "metrics after the rollback: $n_lines lines, $n_steps steps"
FT_FAULT_KILL_AFTER_STEP=$(( ${at:-40} + 5 )) "$ftune" train "$recipe" "${div[@]}" "${rb[@]}" --set output_dir="$tmp/rk" >/dev/null 2>&1
"$ftune" train "$recipe" "${div[@]}" "${rb[@]}" --set output_dir="$tmp/rk" --resume auto >/dev/null 2>"$tmp/rk.err"; rc=$?
[ $rc -eq 0 ] && cmp -s "$tmp/r/final/adapter_model.safetensors" "$tmp/rk/final/adapter_model.safetensors" \
  && grep -q "after 1 rollback the learning rate is 0.003" "$tmp/rk.err" \
  && cmp -s <(sed 's/,"wall":{[^}]*}//' "$tmp/r/metrics.jsonl") <(sed 's/,"wall":{[^}]*}//' "$tmp/rk/metrics.jsonl") \
  && ok "killed at step $(( ${at:-40} + 5 )), after the rollback, and resumed: the same adapter and metrics" \
  || bad "rollback + kill + resume: exit $rc $(grep -E 'error' "$tmp/rk.err")"
# killed between the rollback's metrics line and its checkpoint: the resume drops the line (the
# checkpoint it resumes from counts no rollback), rolls back again and ends as uninterrupted
FT_FAULT_KILL_AT_ROLLBACK=1 "$ftune" train "$recipe" "${div[@]}" "${rb[@]}" --set output_dir="$tmp/rl" >/dev/null 2>&1
grep -q '"type":"rollback"' "$tmp/rl/metrics.jsonl"; had=$?
"$ftune" train "$recipe" "${div[@]}" "${rb[@]}" --set output_dir="$tmp/rl" --resume auto >/dev/null 2>"$tmp/rl.err"; rc=$?
[ $had -eq 0 ] && [ $rc -eq 0 ] && cmp -s "$tmp/r/final/adapter_model.safetensors" "$tmp/rl/final/adapter_model.safetensors" \
  && cmp -s <(sed 's/,"wall":{[^}]*}//' "$tmp/r/metrics.jsonl") <(sed 's/,"wall":{[^}]*}//' "$tmp/rl/metrics.jsonl") \
  && ok "killed between the rollback's line and its checkpoint, resumed: one rollback line, the same adapter and metrics" \
  || bad "kill at the rollback: line before the kill $had, exit $rc, $(grep -c rollback "$tmp/rl/metrics.jsonl") lines"
# every rollback used up: the factor 0.9 leaves the rate too high, and the run stops saying so
"$ftune" train "$recipe" "${div[@]}" --set training.max_rollbacks=1 --set training.rollback_lr_factor=0.9 \
  --set output_dir="$tmp/r9" >/dev/null 2>"$tmp/r9.err"; rc=$?
[ $rc -eq 3 ] && grep -q "error: stopped at step [0-9]* after 1 rollback (training.max_rollbacks 1; the learning rate is 0.27)" "$tmp/r9.err" \
  && ok "max_rollbacks 1 at x0.9: stops, exit 3: $(grep -o 'stopped at step [0-9]* after [^:]*' "$tmp/r9.err")" \
  || bad "rollbacks used up: exit $rc $(grep error: "$tmp/r9.err")"
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
