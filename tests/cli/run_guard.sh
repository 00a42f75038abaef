#!/usr/bin/env bash
# The guard of unattended runs. (1) Loss spikes: the training data has a few records of random
# letters (loss ~10 nats/token against ~1.5 for the stories); with one record per step and
# training.spike_zscore 6 those steps are skipped, logged on stderr and marked in metrics.jsonl,
# and the run completes. (2) Non-finite losses: an initial adapter with NaN weights makes every
# step's loss NaN; each step is skipped, and after training.max_skips in a row the run stops with
# a checkpoint, a clear message and exit 1.
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
[ $rc -eq 1 ] && echo "$msg" | grep -q "stopped at step 3: 3 steps in a row were skipped" && ok "max_skips stops the run: $msg" \
  || bad "NaN run: exit $rc $(tail -3 "$tmp/n.err")"
[ "$(grep -c 'skipped: non-finite loss' "$tmp/n.err")" -eq 3 ] && ok "3 non-finite steps logged" || bad "non-finite warnings: $(grep -c 'non-finite' "$tmp/n.err")"
[ "$(grep -c '"skipped":"nonfinite"' "$tmp/n/metrics.jsonl")" -eq 3 ] && grep -q '"loss":null' "$tmp/n/metrics.jsonl" \
  && ok "metrics mark them (loss null, skipped nonfinite)" || bad "metrics: $(cat "$tmp/n/metrics.jsonl")"
[ -e "$tmp/n/checkpoints/step-000003.ckpt" ] && ok "stop wrote checkpoints/step-000003.ckpt" || bad "no checkpoint at the stop"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
