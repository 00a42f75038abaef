#!/usr/bin/env bash
# bench_tokenizer.sh: single-thread encode throughput, ftune vs Hugging Face `tokenizers`, on the
# shared datasets' text (all JSON string values, joined, split into lines: ~1.5 MB), one encode per
# line for both, best of 3. Also checks that both give identical ids on every line.
# Usage: tests/bench/bench_tokenizer.sh [BUILD_DIR] [PYTHON]   (defaults: build, /work/venv/bin/python)
set -euo pipefail
SRC="$(cd "$(dirname "$0")/../.." && pwd)"
BUILD="${1:-$SRC/build}"
PY="${2:-/work/venv/bin/python}"
SHARED="$SRC/../shared/assets"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

cc -O2 -std=c11 -D_GNU_SOURCE -I"$SRC" "$SRC/tests/bench/bench_tokenizer.c" \
   "$BUILD/data/libft_data.a" "$BUILD/kernels/libft_kernels.a" \
   $(pkg-config --libs libcjson libpcre2-8 libxxhash libutf8proc libzstd) -lpthread -lm -o "$TMP/bench"

"$PY" - "$SHARED" "$TMP/corpus.txt" <<'PY'
import glob, json, os, sys
shared, out = sys.argv[1], sys.argv[2]
texts = []
def walk(v):
    if isinstance(v, str):
        if v.strip(): texts.append(v)
    elif isinstance(v, dict):
        for x in v.values(): walk(x)
    elif isinstance(v, list):
        for x in v: walk(x)
for p in sorted(glob.glob(os.path.join(shared, "datasets", "*", "*"))):
    with open(p, encoding="utf-8") as f:
        if p.endswith(".jsonl"):
            for l in f:
                if l.strip(): walk(json.loads(l))
        else:
            walk(json.load(f))
with open(out, "w", encoding="utf-8") as f:
    f.write("\n".join(texts))
PY

for name in llama3 qwen3 stories260K; do
  case $name in
    stories260K) DIR="$SRC/models/stories260K" ;;
    *) DIR="$TMP/$name"; mkdir -p "$DIR"
       gzip -dc "$SHARED/$name-tokenizer/tokenizer.json.gz" > "$DIR/tokenizer.json"
       cp "$SHARED/$name-tokenizer/tokenizer_config.json" "$DIR/" ;;
  esac
  echo "== $name"
  OURS=$("$TMP/bench" "$DIR" "$TMP/corpus.txt" "$TMP/ours.ids" | tee /dev/stderr)
  HF=$(RAYON_NUM_THREADS=1 RAYON_RS_NUM_CPUS=1 TOKENIZERS_PARALLELISM=false "$PY" - "$DIR/tokenizer.json" "$TMP/corpus.txt" "$TMP/hf.ids" <<'PY'
import sys, time
from tokenizers import Tokenizer
tok = Tokenizer.from_file(sys.argv[1])
text = open(sys.argv[2], encoding="utf-8").read()
lines = text.split("\n")
mb = len(text.encode("utf-8")) / 1e6
best_b = best_l = 1e30
for _ in range(3):
    t = time.perf_counter(); enc = tok.encode_batch(lines, add_special_tokens=False); best_b = min(best_b, time.perf_counter() - t)
    t = time.perf_counter(); [tok.encode(l, add_special_tokens=False) for l in lines]; best_l = min(best_l, time.perf_counter() - t)
with open(sys.argv[3], "w") as f:
    for e in enc: f.write(" ".join(map(str, e.ids)) + "\n")
best = min(best_b, best_l)
print(f"tokenizers: encode_batch {best_b:.3f} s, per-line encode {best_l:.3f} s, best = {mb / best:.2f} MB/s")
PY
)
  echo "$HF"
  if cmp -s "$TMP/ours.ids" "$TMP/hf.ids"; then same="identical on all $(wc -l < "$TMP/hf.ids") lines"
  else same="DIFFERENT on $(diff "$TMP/ours.ids" "$TMP/hf.ids" | grep -c '^<') lines"; fi
  o=$(sed -E 's/.*= ([0-9.]+) MB\/s.*/\1/' <<<"$OURS"); h=$(sed -E 's/.*= ([0-9.]+) MB\/s.*/\1/' <<<"$HF")
  echo "ratio ftune/tokenizers = $(awk -v a="$o" -v b="$h" 'BEGIN{printf "%.2f", a/b}'); ids $same"
done
