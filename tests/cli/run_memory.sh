#!/usr/bin/env bash
# Memory knobs of a recipe run on the demo recipe (CPU backend), in about 15 s:
# (1) `ftune plan` with training.host_boundaries (the key through --set, or --host-boundaries):
#     a "host memory" line, a smaller device total, the same figures either way; with recompute off
#     one warning line and the figures of no host boundaries.
# (2) `ftune train` with training.host_boundaries true gives exactly the losses, gradient norms,
#     validation losses and adapter of a run without, with less backend memory; so does
#     training.keep_attention true, with more (and `ftune plan --keep-attention` counts it), and
#     training.keep_layers 2, 5 (of the demo's 5) and max (5 here), with more yet (`ftune plan`
#     counts them; 6 is refused, naming the key and the model's layers); training.mlp_chunk gives
#     the same figures to float rounding with less memory (`ftune plan` counts it); training.boundary_every
#     the same figures exactly, with less memory (alone, with kept layers, with the MLP in slices).
# (3) Out of memory: model.memory_gib caps the backend below the plan's total; the run fails with
#     exit 1, no crash, and one error line naming the allocation, the plan's prediction and a knob;
#     `ftune plan` says the same beforehand; the knob it names (micro_batch) then runs under the cap.
# usage: run_memory.sh FTUNE SRC_DIR
set -u
ftune=$(realpath "$1"); src=$(realpath "$2")
recipe="$src/recipes/demo-stories260k.yaml"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
ok()  { pass=$((pass+1)); echo "ok   $*"; }
bad() { fail=$((fail+1)); echo "FAIL $*"; }
# the figure (MiB) of a plan report's line: plan_mib FILE LABEL
plan_mib() { grep -E "^  $2 " "$1" | head -1 | awk '{print $(NF-1)}'; }
strip() { sed 's/,"wall":{[^}]*}//' "$1"; }

# --- (1) plan ---------------------------------------------------------------------------------
"$ftune" plan "$recipe" >"$tmp/p0" 2>"$tmp/p0.err" || bad "plan: exit $?: $(cat "$tmp/p0.err")"
"$ftune" plan "$recipe" --host-boundaries >"$tmp/p1" 2>"$tmp/p1.err" || bad "plan --host-boundaries: exit $?"
"$ftune" plan "$recipe" --set training.host_boundaries=true >"$tmp/p2" 2>"$tmp/p2.err" || bad "plan --set: exit $?"
t0=$(plan_mib "$tmp/p0" total); t1=$(plan_mib "$tmp/p1" total); h1=$(plan_mib "$tmp/p1" "host memory")
[ -n "$t0" ] && [ -n "$t1" ] && awk "BEGIN{exit !($t1 < $t0)}" && ok "plan: device total $t0 MiB -> $t1 MiB with host boundaries" \
  || bad "plan totals: '$t0' -> '$t1'"
[ -n "$h1" ] && awk "BEGIN{exit !($h1 > 0)}" && ! grep -q "^  host memory" "$tmp/p0" \
  && ok "plan: host memory line: $(grep '^  host memory' "$tmp/p1" | tr -s ' ')" || bad "host memory line: '$h1'"
cmp -s "$tmp/p1" "$tmp/p2" && ok "--host-boundaries and --set training.host_boundaries=true agree" \
  || bad "flag and key differ: $(diff "$tmp/p1" "$tmp/p2")"
"$ftune" plan "$recipe" --set training.recompute=false >"$tmp/p3" 2>/dev/null
"$ftune" plan "$recipe" --set training.recompute=false --host-boundaries >"$tmp/p4" 2>"$tmp/p4.err"; rc=$?
[ $rc -eq 0 ] && [ "$(grep -c 'warning: training.host_boundaries ignored' "$tmp/p4.err")" = 1 ] && cmp -s "$tmp/p3" "$tmp/p4" \
  && ok "recompute off: ignored with one warning: $(cat "$tmp/p4.err")" || bad "recompute off: exit $rc $(cat "$tmp/p4.err")"

# --- (2) training with and without host boundaries ---------------------------------------------
short=(--set training.steps=4 --set training.warmup=1 --set eval.every_steps=2 --set eval.prompts=
       --set export.formats=peft --set export.merged= --set checkpoint.every_steps=0 --set checkpoint.every_minutes=0
       --set model.threads=1)
"$ftune" train "$recipe" "${short[@]}" --set output_dir="$tmp/dev" >/dev/null 2>"$tmp/dev.err" \
  || bad "run on the device: exit $?: $(tail -3 "$tmp/dev.err")"
"$ftune" train "$recipe" "${short[@]}" --set output_dir="$tmp/host" --set training.host_boundaries=true >/dev/null \
  2>"$tmp/host.err" || bad "run with host boundaries: exit $?: $(tail -3 "$tmp/host.err")"
n=$(grep -c '"type":"train"' "$tmp/dev/metrics.jsonl")
[ "$n" = 4 ] && cmp -s <(strip "$tmp/dev/metrics.jsonl") <(strip "$tmp/host/metrics.jsonl") \
  && ok "host boundaries: metrics.jsonl identical (4 steps, 2 evaluations; losses $(grep -o '"loss":[0-9.]*' "$tmp/host/metrics.jsonl" | cut -d: -f2 | tr '\n' ' '))" \
  || bad "metrics differ: $(diff <(strip "$tmp/dev/metrics.jsonl") <(strip "$tmp/host/metrics.jsonl") | head -4)"
cmp -s "$tmp/dev/final/adapter_model.safetensors" "$tmp/host/final/adapter_model.safetensors" \
  && ok "host boundaries: identical final adapter" || bad "final adapters differ"
m0=$(grep -m1 -o '"mem_mb":[0-9.]*' "$tmp/dev/metrics.jsonl" | cut -d: -f2)
m1=$(grep -m1 -o '"mem_mb":[0-9.]*' "$tmp/host/metrics.jsonl" | cut -d: -f2)
[ -n "$m0" ] && [ -n "$m1" ] && awk "BEGIN{exit !($m1 < $m0)}" && grep -q "of layer boundaries in host memory" "$tmp/host.err" \
  && ok "backend memory $m0 MB -> $m1 MB; $(grep -o 'the plan predicts.*' "$tmp/host.err")" || bad "memory $m0 -> $m1"

# --- (2b) training with attention outputs kept: the same run, one attention forward less a layer ---
"$ftune" train "$recipe" "${short[@]}" --set output_dir="$tmp/keep" --set training.keep_attention=true >/dev/null \
  2>"$tmp/keep.err" || bad "run with kept attention: exit $?: $(tail -3 "$tmp/keep.err")"
cmp -s <(strip "$tmp/dev/metrics.jsonl") <(strip "$tmp/keep/metrics.jsonl") \
  && cmp -s "$tmp/dev/final/adapter_model.safetensors" "$tmp/keep/final/adapter_model.safetensors" \
  && ok "kept attention: metrics.jsonl and final adapter identical" \
  || bad "kept attention: results differ: $(diff <(strip "$tmp/dev/metrics.jsonl") <(strip "$tmp/keep/metrics.jsonl") | head -4)"
m2=$(grep -m1 -o '"mem_mb":[0-9.]*' "$tmp/keep/metrics.jsonl" | cut -d: -f2)
"$ftune" plan "$recipe" --keep-attention >"$tmp/pk" 2>/dev/null
[ -n "$m0" ] && [ -n "$m2" ] && awk "BEGIN{exit !($m2 > $m0)}" && grep -q "+ kept attention outputs" "$tmp/pk" \
  && ok "kept attention: backend memory $m0 MB -> $m2 MB, and plan --keep-attention counts it" \
  || bad "kept attention memory $m0 -> $m2 (plan: $(grep -c "kept attention outputs" "$tmp/pk") lines)"

# --- (2c) the last layers kept whole: the same run again, without their recompute ---------------
for kl in 2 5 max; do
  "$ftune" train "$recipe" "${short[@]}" --set output_dir="$tmp/kl$kl" --set training.keep_layers=$kl >/dev/null \
    2>"$tmp/kl$kl.err" || bad "run with keep_layers $kl: exit $?: $(tail -3 "$tmp/kl$kl.err")"
  cmp -s <(strip "$tmp/dev/metrics.jsonl") <(strip "$tmp/kl$kl/metrics.jsonl") \
    && cmp -s "$tmp/dev/final/adapter_model.safetensors" "$tmp/kl$kl/final/adapter_model.safetensors" \
    && ok "keep_layers $kl: metrics.jsonl and final adapter identical" \
    || bad "keep_layers $kl: results differ: $(diff <(strip "$tmp/dev/metrics.jsonl") <(strip "$tmp/kl$kl/metrics.jsonl") | head -4)"
  "$ftune" plan "$recipe" --set training.keep_layers=$kl >"$tmp/pkl$kl" 2>/dev/null
done
m2=$(grep -m1 -o '"mem_mb":[0-9.]*' "$tmp/kl2/metrics.jsonl" | cut -d: -f2)
m5=$(grep -m1 -o '"mem_mb":[0-9.]*' "$tmp/kl5/metrics.jsonl" | cut -d: -f2)
w0=$(plan_mib "$tmp/p0" "layer recompute working set"); w2=$(plan_mib "$tmp/pkl2" "layer recompute working set")
w5=$(plan_mib "$tmp/pkl5" "layer recompute working set")
[ -n "$m2" ] && [ -n "$m5" ] && awk "BEGIN{exit !($m0 < $m2 && $m2 < $m5 && $w0 < $w2 && $w2 < $w5)}" \
  && grep -q "+ 2 kept layers" "$tmp/pkl2" && grep -q "5 of 5 layers kept" "$tmp/pkl5" \
  && grep -q "5 of 5 layers kept, not recomputed (training.keep_layers: max)" "$tmp/pklmax" \
  && grep -q "training.keep_layers: max keeps 5 of 5 layers" "$tmp/klmax.err" \
  && grep -q "^  keep_layers: max$" "$tmp/klmax/recipe.yaml" \
  && ok "keep_layers: backend memory $m0 -> $m2 -> $m5 MB, the plan's working set $w0 -> $w2 -> $w5 MiB" \
  || bad "keep_layers memory $m0 -> $m2 -> $m5 MB, plan $w0 -> $w2 -> $w5 MiB"
"$ftune" plan "$recipe" --set training.keep_layers=6 >/dev/null 2>"$tmp/kl6.err"; rc=$?
[ $rc -ne 0 ] && [ "$(wc -l <"$tmp/kl6.err")" = 1 ] && grep -q "training.keep_layers: 6, but .* has 5 layers" "$tmp/kl6.err" \
  && ok "keep_layers 6 of 5: exit $rc, $(cat "$tmp/kl6.err")" || bad "keep_layers 6: exit $rc: $(cat "$tmp/kl6.err")"

# --- (2d) the MLP in slices: the same run to rounding, with less memory ---------------------------
# training.mlp_chunk 200 of the demo's 8 x 128 rows: slices of 200 and a last one of 24. LoRA's
# gradients add slice by slice, so the figures agree to float rounding, not bit for bit; the dropout
# (0.05 in the demo) draws the same masks (a slice drawing its own moves step 1's grad norm by ~2e-3).
"$ftune" train "$recipe" "${short[@]}" --set output_dir="$tmp/mc" --set training.mlp_chunk=200 >/dev/null \
  2>"$tmp/mc.err" || bad "run with mlp_chunk 200: exit $?: $(tail -3 "$tmp/mc.err")"
figs() { grep -o '"\(loss\|grad_norm\|val_loss\)":[0-9.e-]*' "$1" | cut -d: -f2; }
worst=$(paste <(figs "$tmp/dev/metrics.jsonl") <(figs "$tmp/mc/metrics.jsonl") \
  | awk 'BEGIN{w=0; n=0} {n++; d=($1-$2)/($1==0?1:$1); if (d<0) d=-d; if (!(d<=w)) w=d} END{if (n<10) print "few"; else printf "%.2e", w}')
m3=$(grep -m1 -o '"mem_mb":[0-9.]*' "$tmp/mc/metrics.jsonl" | cut -d: -f2)
"$ftune" plan "$recipe" --set training.mlp_chunk=200 >"$tmp/pmc" 2>/dev/null
[ "$worst" != few ] && awk "BEGIN{exit !($worst <= 1e-5)}" \
  && ok "mlp_chunk 200: losses, grad norms, validation losses within $worst of the MLP whole" \
  || bad "mlp_chunk 200: figures differ by $worst: $(diff <(figs "$tmp/dev/metrics.jsonl") <(figs "$tmp/mc/metrics.jsonl") | head -4)"
[ -n "$m0" ] && [ -n "$m3" ] && awk "BEGIN{exit !($m3 < $m0)}" && grep -q "the MLP 200 tokens at a time" "$tmp/pmc" \
  && grep -q "the plan predicts" "$tmp/mc.err" \
  && ok "mlp_chunk 200: backend memory $m0 MB -> $m3 MB, $(grep -o 'the plan predicts[^;]*' "$tmp/mc.err" | head -1)" \
  || bad "mlp_chunk memory $m0 -> $m3 MB, plan: $(grep 'backward scratch' "$tmp/pmc")"
"$ftune" plan "$recipe" --set training.recompute=false --set training.mlp_chunk=200 >/dev/null 2>"$tmp/pmc2.err"
grep -q "warning: training.mlp_chunk ignored" "$tmp/pmc2.err" && ok "mlp_chunk without recompute: one warning" \
  || bad "mlp_chunk without recompute: $(cat "$tmp/pmc2.err")"

# --- (2e) two-level recomputation: every Nth layer's input kept, the segments run forward again ---
# training.boundary_every 2 of the demo's 5 layers keeps inputs 0, 2, 4 and the top, the inner ones
# in one slot (segments [0,1] [2,3] [4]: layers 0 and 2 run forward again): bit-identical figures and
# adapter (the same computation on the same inputs), less memory. With keep_layers 2 and with the MLP
# in slices (3: segments [0,1,2] [3,4]) likewise against the runs with those alone.
"$ftune" train "$recipe" "${short[@]}" --set output_dir="$tmp/be2" --set training.boundary_every=2 >/dev/null \
  2>"$tmp/be2.err" || bad "run with boundary_every 2: exit $?: $(tail -3 "$tmp/be2.err")"
"$ftune" train "$recipe" "${short[@]}" --set output_dir="$tmp/be2k" --set training.boundary_every=2 \
  --set training.keep_layers=2 >/dev/null 2>&1 || bad "run with boundary_every 2 and keep_layers 2: exit $?"
"$ftune" train "$recipe" "${short[@]}" --set output_dir="$tmp/be3m" --set training.boundary_every=3 \
  --set training.mlp_chunk=200 >/dev/null 2>&1 || bad "run with boundary_every 3 and mlp_chunk 200: exit $?"
same=1
for pair in "dev be2" "kl2 be2k" "mc be3m"; do
  set -- $pair
  cmp -s <(strip "$tmp/$1/metrics.jsonl" | sed 's/"mem_mb":[0-9.]*//') <(strip "$tmp/$2/metrics.jsonl" | sed 's/"mem_mb":[0-9.]*//') \
    && cmp -s "$tmp/$1/final/adapter_model.safetensors" "$tmp/$2/final/adapter_model.safetensors" || same=0
done
mb=$(grep -m1 -o '"mem_mb":[0-9.]*' "$tmp/be2/metrics.jsonl" | cut -d: -f2)
"$ftune" plan "$recipe" --set training.boundary_every=2 >"$tmp/pbe" 2>/dev/null
tb=$(plan_mib "$tmp/pbe" total)
[ $same = 1 ] && ok "boundary_every 2, with keep_layers 2, and 3 with mlp_chunk 200: metrics.jsonl and adapters identical" \
  || bad "boundary_every: results differ: $(diff <(strip "$tmp/dev/metrics.jsonl") <(strip "$tmp/be2/metrics.jsonl") | head -4)"
[ -n "$m0" ] && [ -n "$mb" ] && awk "BEGIN{exit !($mb < $m0 && $tb < $t0)}" \
  && grep -q "activation checkpoints *5 x 1024 tokens" "$tmp/pbe" && grep -q "40% of the layers run forward once more" "$tmp/pbe" \
  && ok "boundary_every 2: backend memory $m0 MB -> $mb MB, plan $t0 -> $tb MiB: $(grep 'activation checkpoints' "$tmp/pbe" | tr -s ' ')" \
  || bad "boundary_every memory $m0 -> $mb MB, plan $t0 -> $tb: $(grep -A0 'activation checkpoints' "$tmp/pbe")"
"$ftune" train "$recipe" "${short[@]}" --set output_dir="$tmp/beh" --set training.boundary_every=2 \
  --set training.host_boundaries=true >/dev/null 2>"$tmp/beh.err"; rc=$?
[ $rc -eq 2 ] && [ "$(wc -l <"$tmp/beh.err")" = 1 ] && grep -q "training.boundary_every: not with training.host_boundaries" "$tmp/beh.err" \
  && ok "boundary_every with host boundaries refused: $(cat "$tmp/beh.err")" || bad "boundary_every + host: exit $rc $(cat "$tmp/beh.err")"

# --- (3) out of memory under model.memory_gib ---------------------------------------------------
cap=(--set model.memory_gib=0.008)   # 8.2 MiB; the demo plans 14.0 MiB
"$ftune" plan "$recipe" "${cap[@]}" >"$tmp/pc" 2>"$tmp/pc.err"; rc=$?
[ $rc -eq 1 ] && grep -q "does not fit (14.0 MiB of 8.2 MiB)" "$tmp/pc" && ok "plan under the cap: exit 1, $(grep 'does not fit' "$tmp/pc" | cut -c1-60)..." \
  || bad "plan under the cap: exit $rc $(grep 'fit' "$tmp/pc")"
"$ftune" train "$recipe" "${short[@]}" "${cap[@]}" --set output_dir="$tmp/oom" >"$tmp/oom.out" 2>"$tmp/oom.err"; rc=$?
err=$(grep 'error:' "$tmp/oom.err")
[ $rc -eq 1 ] && ok "out of memory: exit 1" || bad "out of memory: exit $rc (want 1): $(tail -3 "$tmp/oom.err")"
[ "$(grep -c 'error:' "$tmp/oom.err")" = 1 ] && echo "$err" | grep -q "allocating .* for activations" \
  && echo "$err" | grep -q "over this backend's memory limit of 8.2 MiB" \
  && echo "$err" | grep -q "ftune plan predicted 11.7 MiB for activations and 14.0 MiB in all" \
  && echo "$err" | grep -q "reduce training.micro_batch to [0-9]" && echo "$err" | grep -q "raise model.memory_gib" \
  && ok "one error line names the allocation, the plan and the knobs: $err" || bad "error line: $(cat "$tmp/oom.err")"
grep -q "warning: run: the plan predicts 14.0 MiB of memory, more than the 8.2 MiB" "$tmp/oom.err" \
  && ok "the run warned before loading" || bad "no warning before loading: $(cat "$tmp/oom.err")"
# the knob it named, under the same cap
b=$(echo "$err" | sed -n 's/.*reduce training.micro_batch to \([0-9]*\) (training.grad_accum \([0-9]*\).*/\1/p')
k=$(echo "$err" | sed -n 's/.*reduce training.micro_batch to \([0-9]*\) (training.grad_accum \([0-9]*\).*/\2/p')
"$ftune" train "$recipe" "${short[@]}" "${cap[@]}" --set training.steps=2 --set eval.every_steps=0 \
  --set training.micro_batch="$b" --set training.grad_accum="$k" --set output_dir="$tmp/fit" >/dev/null 2>"$tmp/fit.err"; rc=$?
[ $rc -eq 0 ] && [ -s "$tmp/fit/final/adapter_model.safetensors" ] \
  && ok "the advised micro_batch $b x grad_accum $k trains under the same cap" || bad "advised run: exit $rc: $(tail -3 "$tmp/fit.err")"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
