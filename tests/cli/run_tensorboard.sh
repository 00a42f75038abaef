#!/usr/bin/env bash
# training.tensorboard read by TensorBoard's own readers (tests/ref/read_tfevents.py: the tensorboard
# package's record reader, which checks every record's CRCs, and its EventAccumulator with
# purge_orphaned_data, TensorBoard's default). The demo recipe trains 10 steps (checkpoints at 4 and
# 8, evaluations at 3, 6, 9 and 10): run A uninterrupted; run B killed by SIGKILL after step 7
# (FT_FAULT_KILL_AFTER_STEP: steps 5-7 written after its last checkpoint) and resumed. B's directory
# must hold one event file with records (the killed one emptied), and TensorBoard must show every
# step 1-10 once with metrics.jsonl's values (loss, lr, grad_norm, tokens/s, memory; validation
# loss and perplexity), which are A's. The writer's field numbers are checked against those the
# package compiled from event.proto/summary.proto. A run without the key writes no tensorboard/.
# Needs the interop venv (scripts/setup-interop-venv.sh, made here when missing); FT_SKIP_INTEROP=1
# skips it on a machine without PyPI, as export_interop.sh.
# usage: run_tensorboard.sh FTUNE SRC_DIR
set -u
ftune=$(realpath "$1"); src=$(realpath "$2")
if [ "${FT_SKIP_INTEROP:-0}" = 1 ]; then
  echo "tensorboard reader skipped (FT_SKIP_INTEROP=1)"; echo "0 passed, 0 failed"; exit 0
fi
venv="${FT_INTEROP_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/ftune-interop-venv}"
bash "$src/scripts/setup-interop-venv.sh" || { echo "FAIL setup-interop-venv.sh"; echo "0 passed, 1 failed"; exit 1; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
ok()  { pass=$((pass+1)); echo "ok   $*"; }
bad() { fail=$((fail+1)); echo "FAIL $*"; }
args=("$src/recipes/demo-stories260k.yaml" --set training.steps=10 --set checkpoint.every_steps=4
      --set eval.every_steps=3 --set eval.max_batches=1 --set eval.prompts= --set export.formats=peft
      --set export.merged= --set training.tensorboard=true)

"$ftune" train "${args[@]}" --set output_dir="$tmp/a" >/dev/null 2>"$tmp/a.err" && ok "run A: exit 0" \
  || bad "run A: $(tail -3 "$tmp/a.err")"
FT_FAULT_KILL_AFTER_STEP=7 "$ftune" train "${args[@]}" --set output_dir="$tmp/b" >/dev/null 2>"$tmp/b1.err"
rc=$?
[ $rc -eq 137 ] && ok "run B killed after step 7 (exit 137)" || bad "run B: exit $rc: $(tail -3 "$tmp/b1.err")"
n_before=$(ls "$tmp/b/tensorboard" | grep -c tfevents)
"$ftune" train "${args[@]}" --set output_dir="$tmp/b" --resume >/dev/null 2>"$tmp/b2.err" && ok "run B resumed: exit 0" \
  || bad "run B resume: $(tail -3 "$tmp/b2.err")"
[ "$n_before" -eq 1 ] && ok "the killed run wrote one event file" || bad "event files before the resume: $n_before"

for r in a b; do
  "$venv/bin/python" "$src/tests/ref/read_tfevents.py" "$tmp/$r/tensorboard" >"$tmp/$r.json" 2>"$tmp/$r.py.err" \
    || bad "read_tfevents.py $r: $(tail -3 "$tmp/$r.py.err")"
done
"$venv/bin/python" - "$tmp" <<'PYEOF' >"$tmp/check.out" 2>&1
import json, math, sys
tmp = sys.argv[1]
res = []
def check(cond, msg):
    res.append(("ok   " if cond else "FAIL ") + msg)
def close(a, b, rtol, atol):
    return a is not None and b is not None and abs(a - b) <= atol + rtol * abs(b)   # False for NaN
want_fields = {"Event.wall_time": 1, "Event.step": 2, "Event.file_version": 3, "Event.summary": 5,
               "Event.session_log": 7, "Summary.value": 1, "Value.tag": 1, "Value.simple_value": 2,
               "SessionLog.status": 1, "SessionLog.START": 1}
train_tags = {"train/loss": ("loss", None), "train/lr": ("lr", None), "train/grad_norm": ("grad_norm", None),
              "train/tokens_per_s": ("tok_s", "wall"), "train/mem_mb": ("mem_mb", "wall")}
eval_tags = {"eval/loss": "val_loss", "eval/ppl": "val_ppl"}
tb = {}
for r in "ab":
    d = json.load(open(f"{tmp}/{r}.json"))
    tb[r] = d
    check(d["fields"] == want_fields, f"{r}: event.proto field numbers as the writer's: {d['fields']}")
    check(not d["errors"], f"{r}: every record's CRCs check ({d['errors']})")
    full = [f for f in d["files"] if d["raw"][f]]
    check(len(full) == 1, f"{r}: one event file with records ({len(d['files'])} files, {len(full)} non-empty)")
    recs = d["raw"][full[0]] if full else []
    check(len(recs) > 2 and recs[0].get("file_version") == "brain.Event:2" and recs[1].get("status") == "START"
          and recs[1]["step"] == 0, f"{r}: file_version brain.Event:2, then SessionLog START at step 0")
    lines = [json.loads(l) for l in open(f"{tmp}/{r}/metrics.jsonl")]
    train = {l["step"]: l for l in lines if l["type"] == "train"}
    evals = {l["step"]: l for l in lines if l["type"] == "eval"}
    check(sorted(train) == list(range(1, 11)) and sorted(evals) == [3, 6, 9, 10],
          f"{r}: metrics.jsonl: train steps {sorted(train)}, eval steps {sorted(evals)}")
    sc = d["scalars"]
    # every step once, in the raw records (what any script sees) and through the accumulator
    for tag in list(train_tags) + list(eval_tags):
        raw_steps = sorted(rec["step"] for rec in recs if tag in rec.get("values", {}))
        acc_steps = [s for s, v, w in sc.get(tag, [])]
        want = sorted(train) if tag in train_tags else sorted(evals)
        check(raw_steps == want and acc_steps == want, f"{r}: {tag}: steps {acc_steps} (raw {raw_steps}), each once")
    worst = 0.0
    bad = []
    for tag, (key, sub) in train_tags.items():
        for s, v, w in sc.get(tag, []):
            m = train[s][sub][key] if sub else train[s][key]
            # float32 in the event; tokens/s and memory are rounded to 0.1 in metrics.jsonl
            if not close(v, m, 1e-6, 0.051 if sub else 1e-12):
                bad.append((tag, s, v, m))
            elif m:
                worst = max(worst, abs(v - m) / abs(m)) if not sub else worst
    for tag, key in eval_tags.items():
        for s, v, w in sc.get(tag, []):
            if not close(v, evals[s][key], 1e-6, 1e-12):
                bad.append((tag, s, v, evals[s][key]))
    check(not bad, f"{r}: TensorBoard's values are metrics.jsonl's (loss, lr, grad_norm: worst relative "
                   f"difference {worst:.2e}){' ' + str(bad[:4]) if bad else ''}")
    walls = [w for s, v, w in sc.get("train/loss", [])]
    check(all(b >= a for a, b in zip(walls, walls[1:])) and all(abs(w - walls[-1]) < 3600 for w in walls),
          f"{r}: wall times in step order, within the last hour")
# the resumed run shows what the uninterrupted one does
la = {s: v for s, v, w in tb["a"]["scalars"].get("train/loss", [])}
lb = {s: v for s, v, w in tb["b"]["scalars"].get("train/loss", [])}
va = {s: v for s, v, w in tb["a"]["scalars"].get("eval/loss", [])}
vb = {s: v for s, v, w in tb["b"]["scalars"].get("eval/loss", [])}
check(la == lb and va == vb and len(la) == 10,
      f"B (killed at 7, resumed from 4) shows A's losses: step 10 train {lb.get(10)} val {vb.get(10)}")
print("\n".join(res))
PYEOF
cat "$tmp/check.out"
pass=$((pass + $(grep -c '^ok ' "$tmp/check.out"))); fail=$((fail + $(grep -c '^FAIL ' "$tmp/check.out")))
grep -q '^ok \|^FAIL ' "$tmp/check.out" || bad "the check did not run: $(tail -3 "$tmp/check.out")"

# off by default: no directory
"$ftune" train "$src/recipes/demo-stories260k.yaml" --set training.steps=1 --set training.warmup=0 --set eval.prompts= --set export.formats=peft \
  --set export.merged= --set eval.max_batches=1 --set output_dir="$tmp/c" >/dev/null 2>"$tmp/c.err"
[ $? -eq 0 ] && [ ! -e "$tmp/c/tensorboard" ] && ok "training.tensorboard off by default: no tensorboard/" \
  || bad "default run: $(ls "$tmp/c") $(tail -2 "$tmp/c.err")"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
