#!/usr/bin/env python3
"""Copies a GGUF file with fixed-size fields of its header changed in place (python3 stdlib only), to
make bad bases for the CLI tests from the fixtures: the file keeps its layout byte for byte.

usage: gguf_edit.py IN OUT [--u32 KEY=VALUE]... [--type TENSOR=GGML_TYPE_ID]...
  --u32   a UINT32 key's value (block_count, feed_forward_length, ...)
  --type  a tensor's ggml type id, e.g. 20 (IQ4_NL) for a Q4_0 tensor: the same block geometry
"""
import struct
import sys

SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


def main():
    src, dst, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    u32, types = {}, {}
    for flag, val in zip(args[::2], args[1::2]):
        k, v = val.split("=", 1)
        {"--u32": u32, "--type": types}[flag][k] = int(v)
    b = bytearray(open(src, "rb").read())
    assert b[:4] == b"GGUF", "not a GGUF file"
    nt, nkv = struct.unpack_from("<QQ", b, 8)
    o = 24

    def string():
        nonlocal o
        n = struct.unpack_from("<Q", b, o)[0]
        s = bytes(b[o + 8:o + 8 + n]).decode()
        o += 8 + n
        return s

    def skip(t):
        nonlocal o
        if t == 8:
            string()
        elif t == 9:
            et, n = struct.unpack_from("<IQ", b, o)
            o += 12
            for _ in range(n):
                skip(et)
        else:
            o += SIZES[t]

    for _ in range(nkv):
        key = string()
        t = struct.unpack_from("<I", b, o)[0]
        o += 4
        if key in u32:
            assert t == 4, f"{key} is not a UINT32"
            struct.pack_into("<I", b, o, u32.pop(key))
        skip(t)
    for _ in range(nt):
        name = string()
        nd = struct.unpack_from("<I", b, o)[0]
        o += 4 + 8 * nd
        if name in types:
            struct.pack_into("<I", b, o, types.pop(name))
        o += 4 + 8
    assert not u32 and not types, f"not found: {list(u32) + list(types)}"
    open(dst, "wb").write(b)


if __name__ == "__main__":
    main()
