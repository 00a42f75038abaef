# compare.sh: sourced by tests/cli/*.sh that compare float32 outputs (logits dumps).
# relerr A B: max |a - b| / max |b| over two float32 files ("nan" when empty or b is all zero)
relerr() {
  paste <(od -An -v -tf4 -w4 "$1") <(od -An -v -tf4 -w4 "$2") |
    awk '{d = $1 - $2; if (d < 0) d = -d; if (d > m) m = d; b = $2 < 0 ? -$2 : $2; if (b > s) s = b}
         END {if (NR == 0 || s == 0) print "nan"; else printf "%.3g\n", m / s}'
}
# le A B: A <= B as numbers, false for "nan"
le() { awk -v a="$1" -v b="$2" 'BEGIN {exit !(a + 0 <= b + 0 && a != "nan")}'; }
