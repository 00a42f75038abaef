#!/usr/bin/env python3
"""run.sh's comparisons of a GPU run's outputs against PEFT's goldens (plain Python, no numpy: the GPU
machine has python3 and nothing else).

  compare.py grads GOT.safetensors REF.safetensors TOL [PART]
      every tensor of REF against GOT's of the same name, rel-L2 = ||g - r|| / ||r||; ok when all are
      within TOL and GOT has no other tensors. PART (a substring of names, e.g. token_adapter): also
      report the worst of those tensors.
  compare.py logits GOT.bin REF.bin TOL [WHAT]
      f32 arrays: max |g - r| / max |r| within TOL.
Prints one line starting with ok or FAIL."""
import json
import math
import struct
import sys


def load_st(f):
    try:
        b = open(f, "rb").read()
    except OSError:
        return None
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    out = {}
    for k, t in h.items():
        if k == "__metadata__":
            continue
        o0, o1 = t["data_offsets"]
        out[k] = struct.unpack("<%df" % ((o1 - o0) // 4), b[8 + n + o0:8 + n + o1])
    return out


def grads(got_f, ref_f, tol, part=None):
    got, ref = load_st(got_f), load_st(ref_f)
    if got is None:
        return "FAIL no gradients written"
    worst, wk, pw, bad = 0.0, "", 0.0, 0
    for k, r in ref.items():
        g = got.get(k)
        if g is None or len(g) != len(r):
            bad += 1
            continue
        num = sum((a - b) ** 2 for a, b in zip(g, r))
        den = sum(b * b for b in r)
        e = math.sqrt(num / den) if den > 0 else math.sqrt(num)
        if not (e <= tol):
            bad += 1
        if not (e <= worst):
            worst, wk = e, k
        if part and part in k:
            pw = max(pw, e)
    ok = bad == 0 and len(got) == len(ref)
    line = "%s %d tensors, worst rel-L2 %.2e (%s)" % ("ok" if ok else "FAIL", len(ref), worst,
                                                     wk.replace("base_model.model.", ""))
    return line + (", %s %.2e" % (part, pw) if part else "")


def logits(got_f, ref_f, tol, what="logits"):
    try:
        g, r = (open(f, "rb").read() for f in (got_f, ref_f))
    except OSError:
        return "FAIL no logits written"
    g, r = (struct.unpack("<%df" % (len(x) // 4), x) for x in (g, r))
    e = max(abs(a - b) for a, b in zip(g, r)) / max(abs(b) for b in r) if len(g) == len(r) else float("inf")
    return "%s %s: max |d| / max |ref| %.2e" % ("ok" if e <= tol else "FAIL", what, e)


if __name__ == "__main__":
    a = sys.argv[1:]
    if len(a) >= 4 and a[0] == "grads":
        print(grads(a[1], a[2], float(a[3]), a[4] if len(a) > 4 else None))
    elif len(a) >= 4 and a[0] == "logits":
        print(logits(a[1], a[2], float(a[3]), a[4] if len(a) > 4 else "logits"))
    else:
        sys.exit(__doc__)
