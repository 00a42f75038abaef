# shellcheck shell=bash disable=SC2154  # root, build, OUT, summary, result, bench_shapes_default: run.sh's
# tests/gpu/peft.sh: sourced by run.sh (it uses run.sh's root, build, OUT, say, mark, result and
# bench_shapes_default). The `peft` phase: the bench phase's shapes again through transformers + PEFT +
# bitsandbytes and, where build-unsloth was carried, through unsloth (tests/ref/bench_peft.py); and
# peft_ready, which the `context` phase also calls.
#
# The Python packages the GPU image lacks travel as wheels (tests/gpu/fetch-deps.sh): bitsandbytes in
# build-gpudeps/whl, installed under /tmp/site; unsloth and its needs in build-unsloth (carry it in the
# call that runs this phase), installed under /tmp/site-unsloth, which only the unsloth runs see.
#   FT_PEFT_STEPS (5), FT_PEFT_TIMEOUT (seconds per shape, 300), FT_PEFT_PYTHON (python3),
#   FT_PEFT_ARGS (extra bench_peft.py options), FT_PEFT_TARGET (2.5), FT_PEFT_DEVICE (cuda),
#   FT_UNSLOTH (auto: run unsloth when build-unsloth has its wheels; 0: never), FT_UNSLOTH_TIMEOUT
#   (seconds per shape, 480: unsloth loads from a checkpoint written first), FT_UNSLOTH_TARGET (1.3);
#   for the context phase FT_CONTEXT_PEFT_TIMEOUT (480), FT_CONTEXT_UNSLOTH_TIMEOUT (540),
#   FT_CONTEXT_PEFT_ARGS

py="${FT_PEFT_PYTHON:-python3}"
pdev="${FT_PEFT_DEVICE:-cuda}"

# One row per bench entry: ftune's tokens/s (the bench phase's JSON in $build/bench) against PEFT's and
# unsloth's (bench_peft.py's JSON in $build/peft and $build/unsloth; a `+keep` entry, which only ftune
# has, is set against the same shape's run), the ratios against the issue's targets (>= 2.5x PEFT;
# >= 1.3x unsloth on the 70B and 32B shapes) and the peak memories (ftune: its allocator's accounted
# peak; the others: torch.cuda.max_memory_allocated / max_memory_reserved).
peft_table() {
  python3 - "$build/bench" "$build/peft" "$build/unsloth" "${FT_PEFT_TARGET:-2.5}" "${FT_UNSLOTH_TARGET:-1.3}" \
    "$@" <<'PYEOF'
import json, os, sys
bench, peft, uns, tp, tu, entries = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5]), sys.argv[6:]
def load(d, s):
    try:
        return json.load(open(os.path.join(d, s + ".json")))
    except Exception:
        return None
G = 2**30
def tps(r):
    return "-" if r is None else "OOM" if r.get("oom") else "%.1f" % r["tokens_per_s"] if r.get("tokens_per_s") else "-"
def mem(r):
    if not r or not r.get("peak_bytes"):
        return "-"
    return "%.2f/%.2f" % (r["peak_bytes"] / G, r.get("peak_reserved_bytes", 0) / G)
def vs(f, r, target, applies):
    """ftune's ratio to r and the verdict against target ('-' where the issue sets none)"""
    if r is None:
        return "-", "-"
    if f is not None and (f["seq"], f["layers"], f["micro_batch"]) != (r["seq"], r["layers"], r["micro_batch"]):
        return "-", "differ"  # ftune's JSON is from another seq/layers/micro-batch: rerun bench
    if r.get("oom"):
        return "-", "OOM"
    if not f or not r.get("tokens_per_s"):
        return "-", "-"
    x = f["tokens_per_s"] / r["tokens_per_s"]
    return "%.2fx" % x, ("met" if x >= target else "BELOW") if applies else "-"
print("%-22s %6s %6s %2s %9s %9s %7s %-6s %9s %7s %-6s %11s %11s %11s  %s" % ("entry", "layers", "seq", "B", "ftune t/s",
      "PEFT t/s", "x PEFT", "2.5x", "unsl t/s", "x unsl", "1.3x", "ftune GiB", "PEFT GiB", "unsl GiB", "loss PEFT | unsloth"))
versions = {}
for e in entries:
    f, base = load(bench, e), e.split("+")[0]
    if "@" in base:
        continue  # packed rows: no PEFT or unsloth counterpart
    p, u = load(peft, base), load(uns, base)
    if p is None and u is None:
        print("%-22s (no PEFT or unsloth result: see peft.log)" % e); continue
    r = p or u
    xp, vp = vs(f, p, tp, True)
    xu, vu = vs(f, u, tu, base.split(":")[0] in ("llama-3-70b", "qwen3-32b"))
    loss = " | ".join("%.3f -> %.3f" % (x["losses"][0], x["losses"][-1]) if x and x.get("losses") else "-" for x in (p, u))
    print("%-22s %6s %6s %2s %9s %9s %7s %-6s %9s %7s %-6s %11s %11s %11s  %s" % (e, r["layers"], r["seq"], r["micro_batch"],
          "%.1f" % f["tokens_per_s"] if f else "-", tps(p), xp, vp, tps(u), xu, vu,
          "%.2f" % (f["mem_peak"] / G) if f else "-", mem(p), mem(u), loss))
    for x in (p, u):
        if x and x.get("versions"):
            versions.update(x["versions"])
if versions:
    print("GiB: ftune's accounted peak; the others' allocated/reserved. Stack: " + ", ".join("%s %s" % (k, versions[k])
          for k in ("torch", "cuda", "transformers", "peft", "bitsandbytes", "accelerate", "unsloth") if k in versions))
PYEOF
}
# The options of FT_BENCH_ARGS that bench_peft.py shares (the rest are ftune's own): --layers, --vocab,
# --micro-batch, --seq, --lr, --seed as they are, --lora-r as --rank; "--opt value" or "--opt=value".
# One argument a line.
peft_args_from_bench() {
  local a=() i o v
  read -ra a <<<"${FT_BENCH_ARGS:-}"
  for ((i = 0; i < ${#a[@]}; i++)); do
    o="${a[i]}" v=""
    case "$o" in
      --*=*) v="${o#*=}" o="${o%%=*}" ;;
      --layers | --vocab | --micro-batch | --seq | --lr | --seed | --lora-r) v="${a[i + 1]:-}" i=$((i + 1)) ;;
    esac
    case "$o" in
      --layers | --vocab | --micro-batch | --seq | --lr | --seed) printf '%s\n' "$o" "$v" ;;
      --lora-r) printf '%s\n' --rank "$v" ;;
    esac
  done
}
# Makes the PEFT stack importable (the carried wheels under /tmp/site, once a call) and checks it;
# appends to $1 (a log); returns 1 when torch (with CUDA for FT_PEFT_DEVICE cuda), transformers, peft,
# accelerate or bitsandbytes cannot be imported.
peft_ready_done=""
peft_ready() {
  local whls=("$root"/build-gpudeps/whl/*.whl)
  if [ -z "$peft_ready_done" ] && [ -e "${whls[0]}" ]; then
    peft_ready_done=1
    if "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
      "${whls[@]}" >>"$1" 2>&1; then
      export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
      say "peft: installed ${#whls[@]} carried wheels under /tmp/site ($(cd "$root/build-gpudeps/whl" && echo *.whl))"
    else
      say "peft: pip install of the carried wheels failed ($(basename "$1"))"
    fi
  fi
  "$py" -c "import sys, torch, transformers, peft, accelerate, bitsandbytes
assert sys.argv[1] != 'cuda' or torch.cuda.is_available(), 'torch sees no GPU'" "$pdev" >>"$1" 2>&1
}
# Installs build-unsloth's wheels under /tmp/site-unsloth (once a call) and imports unsloth the way its
# runs will; appends to $1. Returns 2 when there is nothing to run (FT_UNSLOTH=0 or nothing carried),
# 1 when the install or the import fails.
unsloth_ready_done=""
unsloth_ready() {
  local whls=("$root"/build-unsloth/*.whl)
  [ "${FT_UNSLOTH:-auto}" != 0 ] && [ -e "${whls[0]}" ] || return 2
  mkdir -p "$build/unsloth"
  if [ -z "$unsloth_ready_done" ]; then
    unsloth_ready_done=1
    if ! "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site-unsloth \
      "${whls[@]}" >>"$1" 2>&1; then
      say "peft: pip install of build-unsloth's ${#whls[@]} wheels failed ($(basename "$1"))"
      return 1
    fi
    say "peft: installed build-unsloth's ${#whls[@]} wheels under /tmp/site-unsloth"
  fi
  # unsloth's runs: its packages first, offline (no registry or hub there), without its usage
  # statistics; they run in $build/unsloth, where unsloth writes its compiled cache
  unsloth_env=(env "PYTHONPATH=/tmp/site-unsloth${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
    HF_DATASETS_OFFLINE=1 UNSLOTH_DISABLE_STATISTICS=1)
  (cd "$build/unsloth" && "${unsloth_env[@]}" "$py" -c "import unsloth, sys; print('unsloth', unsloth.__version__)") >>"$1" 2>&1
}

# peft_run BACKEND ENTRY: one bench_peft.py run (BACKEND peft or unsloth) of a bench entry's shape with
# what ftune ran, from its JSON when the bench phase left one (this call or an earlier one on this
# machine), else the bench phase's settings in its order (argparse: the last one wins); its report and
# JSON in $build/BACKEND; returns bench_peft.py's status.
peft_run() {
  local backend="$1" entry="$2" shape="${2%%[:+]*}" run=() fromjson=() extra=() rc ckpt=""
  run=(--seq "${FT_BENCH_SEQ:-4096}" --micro-batch 1 "${shared[@]}")
  case "$entry" in *:*) run+=(--seq "${entry#*:}") ;; esac
  if [ -s "$build/bench/$entry.json" ]; then
    read -ra fromjson < <(python3 -c 'import json, sys; r = json.load(open(sys.argv[1]))
print("--layers %d --seq %d --micro-batch %d" % (r["layers"], r["seq"], r["micro_batch"]))' "$build/bench/$entry.json")
    run+=("${fromjson[@]}")
  fi
  local js="$build/$backend/$entry.json" log="$build/$backend/$entry.log"
  rm -f "$js"
  if [ "$backend" = unsloth ]; then
    # unsloth loads only from a checkpoint: bench_peft.py writes the random model there as NF4 first
    # (about 0.56 bytes a parameter: 40 GB for 70B, so one at a time, removed after its run)
    ckpt="$build/unsloth/ckpt-$entry"
    rm -rf "$ckpt"
    extra=(--unsloth --unsloth-dir "$ckpt")
    # shellcheck disable=SC2086
    (cd "$build/unsloth" && timeout "${FT_UNSLOTH_TIMEOUT:-480}" "${unsloth_env[@]}" "$py" \
      "$root/tests/ref/bench_peft.py" --device "$pdev" --shape "$shape" "${run[@]}" --steps "${FT_PEFT_STEPS:-5}" \
      --json "$js" "${extra[@]}" ${FT_PEFT_ARGS:-}) >"$log" 2>&1
    rc=$?
    rm -rf "$ckpt"
  else
    # shellcheck disable=SC2086
    timeout "${FT_PEFT_TIMEOUT:-300}" "$py" "$root/tests/ref/bench_peft.py" --device "$pdev" --shape "$shape" \
      "${run[@]}" --steps "${FT_PEFT_STEPS:-5}" --json "$js" ${FT_PEFT_ARGS:-} >"$log" 2>&1
    rc=$?
  fi
  { echo "== $backend $entry (exit $rc): bench_peft.py --shape $shape ${run[*]} ${extra[*]}"; cat "$log"; } >>"$OUT/peft.log"
  if [ $rc -ne 0 ]; then
    say "peft: $backend $entry exit $rc$([ $rc -eq 124 ] && echo " (timed out)"): $(grep -v '^ *$' "$log" | tail -2 | tr '\n' ' ')"
  elif grep -q '"oom": true' "$js" 2>/dev/null; then
    say "peft: $backend $entry: out of memory ($(grep -m1 '^result' "$log"))"
  fi
  return $rc
}

peft_phase() {
  local t0 rc_p=0 entries=() bases=() shared=() entry base seen=" " u
  t0=$(date +%s)
  mkdir -p "$build/peft"
  : >"$OUT/peft.log"
  if ! peft_ready "$OUT/peft.log"; then
    mark peft FAIL
    say "peft: $py cannot import torch (with CUDA when FT_PEFT_DEVICE is cuda), transformers, peft, accelerate and bitsandbytes:"
    say "  run tests/gpu/fetch-deps.sh here and carry build-gpudeps; $(tail -1 "$OUT/peft.log")"
    return
  fi
  read -ra entries <<<"${FT_BENCH_SHAPES:-$bench_shapes_default}"
  for entry in "${entries[@]}"; do # X+keep is ftune's own offer: the others run X once
    base="${entry%%+*}"
    case "$base" in *@*) continue ;; esac # packed rows (--doc-len): bench_peft.py has no packing
    case "$seen" in *" $base "*) ;; *) bases+=("$base") seen+="$base " ;; esac
  done
  mapfile -t shared < <(peft_args_from_bench)
  for base in "${bases[@]}"; do peft_run peft "$base" || rc_p=1; done
  unsloth_ready "$OUT/peft.log"
  u=$?
  if [ $u -eq 0 ]; then
    for base in "${bases[@]}"; do peft_run unsloth "$base" || rc_p=1; done
  elif [ $u -eq 1 ]; then
    rc_p=1
    say "peft: unsloth cannot be imported: $(grep -v '^ *$' "$OUT/peft.log" | tail -1)"
  else
    say "peft: unsloth not run (build-unsloth not carried, or FT_UNSLOTH=0)"
  fi
  if [ $rc_p -eq 0 ]; then mark peft ok; else mark peft FAIL; fi
  say "peft: ${result[peft]} in $(($(date +%s) - t0))s (peft.log: each run's report and JSON)"
  peft_table "${entries[@]}" | sed 's/^/  /' | tee -a "$summary" >&2
}

# peft_context SHAPE: the context phase's other side, the longest sequence of SHAPE that PEFT and
# unsloth train (bench_peft.py --seq max: one model build, then one step per length tried, doubling
# from 4096 and bisecting to 1024 tokens); appends to $OUT/context.log; returns 1 when a run failed.
peft_context() {
  local shape="$1" backend log js rc rc_c=0 cmd=() dir
  for backend in peft unsloth; do
    log="$build/context/$backend.log" js="$build/context/$backend.json"
    rm -f "$js"
    dir="$build/context"
    if [ $backend = peft ]; then
      if ! peft_ready "$OUT/context.log"; then
        say "context (PEFT): skipped, the PEFT stack cannot be imported (context.log)"
        continue
      fi
      cmd=(timeout "${FT_CONTEXT_PEFT_TIMEOUT:-480}" "$py" "$root/tests/ref/bench_peft.py")
    else
      unsloth_ready "$OUT/context.log"
      rc=$?
      [ $rc -eq 2 ] && break # not carried
      if [ $rc -ne 0 ]; then
        rc_c=1
        say "context (unsloth): cannot be imported (context.log)"
        break
      fi
      dir="$build/unsloth" # unsloth's compiled cache goes there
      rm -rf "$build/unsloth/ckpt-context"
      cmd=(timeout "${FT_CONTEXT_UNSLOTH_TIMEOUT:-540}" "${unsloth_env[@]}" "$py" "$root/tests/ref/bench_peft.py"
        --unsloth --unsloth-dir "$build/unsloth/ckpt-context")
    fi
    # shellcheck disable=SC2086
    (cd "$dir" && "${cmd[@]}" --device "$pdev" --shape "$shape" --seq max --micro-batch 1 \
      --steps 1 --warmup 0 --json "$js" ${FT_CONTEXT_PEFT_ARGS:-}) >"$log" 2>&1
    rc=$?
    rm -rf "$build/unsloth/ckpt-context"
    { echo "== $backend, --seq max (exit $rc)"; cat "$log"; } >>"$OUT/context.log"
    [ $rc -eq 0 ] || rc_c=1
    say "context ($backend): exit $rc, $(python3 -c 'import json, sys; r = json.load(open(sys.argv[1]))
print("seq %s (longest that fits), peak %.2f GiB" % (r.get("seq"), r.get("peak_bytes", 0) / 2**30))' "$js" 2>/dev/null || tail -1 "$log")"
  done
  return $rc_c
}
