#!/usr/bin/env bash
# The demo recipe end to end, as the README runs it (`ftune train recipes/demo-stories260k.yaml`
# from a working directory, output under ./runs/demo-stories260k), on one CPU thread so it takes
# about half a minute on a busy 2-core machine. Checks the run directory a person would open and
# that the model learned: the validation loss falls and the samples change.
# usage: run_demo.sh FTUNE SRC_DIR
set -u
ftune=$(realpath "$1"); src=$(realpath "$2")
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
ok()  { pass=$((pass+1)); echo "ok   $*"; }
bad() { fail=$((fail+1)); echo "FAIL $*"; }

cd "$tmp"
t0=$(date +%s)
"$ftune" train "$src/recipes/demo-stories260k.yaml" --set model.threads=1 >"$tmp/out" 2>"$tmp/err"; rc=$?
t1=$(date +%s)
run="$tmp/runs/demo-stories260k"
[ $rc -eq 0 ] && ok "demo recipe: exit 0 in $((t1 - t0)) s" || bad "demo recipe: exit $rc: $(tail -5 "$tmp/err")"
for f in recipe.yaml metrics.jsonl loss.svg final/adapter_config.json final/adapter_model.safetensors; do
  [ -s "$run/$f" ] && ok "$f" || bad "missing $run/$f"
done
ls "$run/samples"/step-*.txt >/dev/null 2>&1 && ok "samples: $(ls "$run/samples" | tr '\n' ' ')" || bad "no samples"
ls "$run/checkpoints"/step-*.ckpt >/dev/null 2>&1 && ok "checkpoints: $(ls "$run/checkpoints" | tr '\n' ' ')" || bad "no checkpoints"
vals=$(grep '"type":"eval"' "$run/metrics.jsonl" | grep -o '"val_loss":[0-9.]*' | cut -d: -f2 | tr '\n' ' ')
first=$(echo "$vals" | awk '{print $1}'); last=$(echo "$vals" | awk '{print $NF}')
[ -n "$first" ] && awk "BEGIN{exit !($last < $first)}" && ok "validation loss falls: $vals" || bad "validation loss: $vals"
tl=$(grep '"type":"train"' "$run/metrics.jsonl" | grep -o '"loss":[0-9.]*' | cut -d: -f2)
t_first=$(echo "$tl" | head -1); t_last=$(echo "$tl" | tail -1)
awk "BEGIN{exit !($t_last < $t_first / 2)}" && ok "training loss $t_first -> $t_last" || bad "training loss $t_first -> $t_last"
grep -q "final adapter: $run/final" "$tmp/out" && ok "stdout: $(cat "$tmp/out")" || bad "stdout: $(cat "$tmp/out")"
n_steps=$(grep -c '"type":"train"' "$run/metrics.jsonl")
n_tok=$(grep '"type":"train"' "$run/metrics.jsonl" | grep -o '"tokens":[0-9]*' | cut -d: -f2 | awk '{s += $1} END {print s}')
grep -qE "^trained: $n_steps steps, $n_tok tokens in ([0-9]+:)?[0-9]+:[0-9]{2} of training \([0-9]+ tokens/s\), 0 steps skipped$" "$tmp/out" \
  && ok "summary: $(grep '^trained:' "$tmp/out")" || bad "summary line (want $n_steps steps, $n_tok tokens): $(grep '^trained' "$tmp/out")"
best=$(grep '"type":"eval"' "$run/metrics.jsonl" | grep -o '"step":[0-9]*,"val_loss":[0-9.]*' | sort -t: -k3 -g | head -1 | cut -d, -f1 | cut -d: -f2)
grep -q "^best adapter: $run/best (step $best, " "$tmp/out" && [ -s "$run/best/adapter_model.safetensors" ] \
  && ok "best adapter: step $best, the lowest validation loss" || bad "best adapter (want step $best): $(grep '^best' "$tmp/out")"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
