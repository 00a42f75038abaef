#!/usr/bin/env python3
"""gguf_diff.py BASE OUT KIND: what `ftune merge` of a GGUF base (export/merge_gguf.c) wrote, against the
base file itself, for tests/cli/merge_gguf_base.sh. Python stdlib only (no gguf package): the GGUF v3
layout is parsed here.

KIND is the merge's --type: base, base-f16 or q8_0. The adapter is assumed to cover the seven linears of
every layer. Checks, printing one line each ("ok ..." / "FAIL ...") and exiting 1 on any failure:
  - the tensors are the base's, in the base's order and shapes;
  - metadata: base / base-f16: the key/value section is the base's byte for byte; q8_0: every key the
    base's with its type and bytes, but general.file_type = 7 (LLAMA_FTYPE_MOSTLY_Q8_0);
  - every tensor without an adapter module whose type stays is byte-identical to the base's (base,
    base-f16: all of them; q8_0: the F32 ones and any already Q8_0);
  - each merged tensor has the expected type (base: its own, Q4_1 and Q5_1 included, Q2_K/Q3_K ->
    Q4_K, IQ4_NL -> Q4_0, IQ4_XS -> Q4_K; base-f16: F16;
    q8_0: Q8_0, 1-D tensors F32) and bytes that differ from the base's.
"""
import re
import struct
import sys

# ggml type id -> (block elements, block bytes)
GEOM = {0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34), 10: (256, 84),
        11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210), 20: (32, 18), 23: (256, 136), 30: (1, 2)}
NAMES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 10: "Q2_K", 11: "Q3_K",
         12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 20: "IQ4_NL", 23: "IQ4_XS", 30: "BF16"}
VSIZE = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
LINEAR = re.compile(r"^blk\.\d+\.(attn_q|attn_k|attn_v|attn_output|ffn_gate|ffn_up|ffn_down)\.weight$")


def parse(path):
    b = open(path, "rb").read()
    o = [4]

    def rd(fmt):
        v = struct.unpack_from("<" + fmt, b, o[0])[0]
        o[0] += struct.calcsize("<" + fmt)
        return v

    def skip(t):
        if t == 8:
            n = rd("Q")  # (not `o[0] += rd(...)`: that adds to the offset read before rd moved it)
            o[0] += n
        elif t == 9:
            et, n = rd("I"), rd("Q")
            if et in (8, 9):
                for _ in range(n):
                    skip(et)
            else:
                o[0] += VSIZE[et] * n
        else:
            o[0] += VSIZE[t]

    assert b[:4] == b"GGUF", path
    rd("I")
    nt, nkv = rd("Q"), rd("Q")
    kv_start = o[0]
    kvs = {}
    for _ in range(nkv):
        kl = rd("Q")
        k = b[o[0]:o[0] + kl].decode()
        o[0] += kl
        t = rd("I")
        s = o[0]
        skip(t)
        kvs[k] = (t, b[s:o[0]])
    kv_bytes = b[kv_start:o[0]]
    infos = []
    for _ in range(nt):
        nl = rd("Q")
        name = b[o[0]:o[0] + nl].decode()
        o[0] += nl
        nd = rd("I")
        ne = [rd("Q") for _ in range(nd)]
        infos.append((name, ne, rd("I"), rd("Q")))
    align = struct.unpack("<I", kvs["general.alignment"][1])[0] if "general.alignment" in kvs else 32
    data = (o[0] + align - 1) // align * align
    tensors = []
    for name, ne, t, off in infos:
        be, bb = GEOM[t]
        n = 1
        for d in ne:
            n *= d
        tensors.append((name, ne, t, b[data + off:data + off + n // be * bb]))
    return kvs, kv_bytes, tensors


def expected_type(kind, t, ne, name, merged):
    if kind == "q8_0":
        return 0 if len(ne) < 2 or name.endswith("_norm.weight") else 8
    if not merged:
        return t
    if kind == "base-f16":
        return 0 if t == 0 else 1
    return {10: 12, 11: 12, 20: 2, 23: 12}.get(t, t)


def main():
    base, out, kind = sys.argv[1:4]
    bk, bkv, bt = parse(base)
    k_out, okv, ot = parse(out)
    fails = []
    if [(n, ne) for n, ne, _, _ in bt] != [(n, ne) for n, ne, _, _ in ot]:
        fails.append("tensor names/order/shapes differ from the base's")
    if kind in ("base", "base-f16"):
        if okv != bkv:
            fails.append("metadata section differs from the base's")
    else:
        diff = sorted(k for k in set(bk) | set(k_out) if bk.get(k) != k_out.get(k))
        if diff != ["general.file_type"] or k_out["general.file_type"] != (4, struct.pack("<I", 7)):
            fails.append(f"metadata: keys differing from the base's: {diff}")
    same = merged = recoded = 0
    changed = {}
    for (name, ne, t, data), (_, _, t2, d2) in zip(bt, ot):
        is_merged = bool(LINEAR.match(name))
        want = expected_type(kind, t, ne, name, is_merged)
        if t2 != want:
            fails.append(f"{name}: type {NAMES.get(t2, t2)}, expected {NAMES.get(want, want)}")
            continue
        if is_merged:
            merged += 1
            if t2 != t:
                key = f"{NAMES[t]}->{NAMES[t2]}"
                changed[key] = changed.get(key, 0) + 1
            if t2 == t and d2 == data:
                fails.append(f"{name}: merged but byte-identical to the base")
        elif t2 == t:
            same += 1
            if d2 != data:
                fails.append(f"{name}: not merged, type kept, but its bytes differ from the base's")
        else:
            recoded += 1
    chg = ", ".join(f"{k} x {v}" for k, v in sorted(changed.items())) or "none"
    summary = (f"{kind}: {len(ot)} tensors in the base's order; {same} byte-identical to the base, {merged} merged "
               f"(type changes: {chg}), {recoded} re-encoded; metadata "
               f"{'identical' if kind != 'q8_0' else 'identical but general.file_type = 7'}")
    if fails:
        print("FAIL " + summary + ": " + "; ".join(fails[:6]))
        return 1
    print("ok   " + summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
