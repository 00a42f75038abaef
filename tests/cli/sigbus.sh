#!/usr/bin/env bash
# A mapped input that shrinks under ftune: a JSON-array dataset (read through a mapping, as safetensors
# shards and GGUF models are) truncated while `ftune data` parses it faults with SIGBUS at the first
# page past its new end. ftune says so in one line and exits 1 (trainer/main.c), no core dump; the
# data cache it was writing is not left half made (a later run starts over).
# The truncation waits until the file shows in the process's mappings; a machine so fast that the
# parse ends first skips the check (it says so) rather than passing it.
# usage: sigbus.sh FTUNE SRC_DIR
set -u
ftune=$(realpath "$1"); src=$(realpath "$2")
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
ok()  { pass=$((pass+1)); echo "ok   $*"; }
bad() { fail=$((fail+1)); echo "FAIL $*"; }

# ~56 MB of records: about 2.5 s of parsing on two cores
awk 'BEGIN { printf "["; for (i = 0; i < 200000; i++) { if (i) printf ", ";
  printf "{\"text\": \"Once upon a time there was a robot number %d who liked to count the waves of the sea. '\
'Once upon a time there was a robot number %d who liked to count the waves.\"}", i, i } print "]" }' >"$tmp/big.json"
cat >"$tmp/r.yaml" <<EOF
model: {path: $src/models/stories260K, device: cpu, threads: 2}
data: {train: big.json, format: text, seq_len: 64}
training: {steps: 1}
output_dir: $tmp/out
EOF
"$ftune" data "$tmp/r.yaml" >"$tmp/out.txt" 2>"$tmp/err.txt" &
pid=$!
raced=0
for _ in $(seq 1 1000); do
  if grep -q "$tmp/big.json" "/proc/$pid/maps" 2>/dev/null; then truncate -s 4096 "$tmp/big.json"; raced=1; break; fi
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.005
done
wait "$pid"; rc=$?
if [ $raced -eq 0 ] || [ $rc -eq 0 ]; then
  echo "skip the parse ended before the truncation reached it (seen mapped: $raced, rc $rc)"
elif grep -q "ftune: error: \(a file ftune had mapped\|.*big.json\)" "$tmp/err.txt" && [ $rc -eq 1 ] && [ "$(wc -l <"$tmp/err.txt")" -le 3 ]; then
  ok "a dataset truncated while mapped: exit 1, $(tail -1 "$tmp/err.txt" | cut -c1-120)..."
else
  bad "truncated while mapped: rc $rc, $(cat "$tmp/err.txt")"
fi
# nothing half made: no shard index names the truncated file's cache
[ $raced -eq 0 ] || [ $rc -eq 0 ] || [ -z "$(ls "$tmp/out/data/"*.index.json 2>/dev/null)" ] && ok "no data cache index left behind" || bad "index left: $(ls "$tmp/out/data")"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
