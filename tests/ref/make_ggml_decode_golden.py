#!/usr/bin/env python3
"""Decoder references for the ggml block types a GGUF base model's frozen weights keep
(kernels/ggml_quants.c ft_ggml_dequantize_row, checked by tests/test_ggml_decode.c).

For every type ftune decodes, a few seeded random-but-valid blocks: random bytes everywhere (every
nibble, bit plane, packed 6-bit scale and int8 scale pattern is a legal block), with the fp16 scale
fields (d, and m / dmin where the type has one) overwritten by finite values, so no decoded value is
Inf or NaN. The fp16 fields cover the cases a decoder can get wrong: a subnormal scale (block 0), a
negative scale and a negative min (block 1), zero (block 2 for the 32-element types), and random
normal magnitudes in [2^-12, 2] for the rest. F16/BF16/F32 rows are random bit patterns with
the all-ones exponent excluded (subnormals and signed zeros included).

The expected floats come from the PyPI `gguf` package (gguf-py, llama.cpp's Python side):
gguf.quants.dequantize, a numpy implementation written apart from ggml's C and from ours.

Writes tests/fixtures/ggml/:
  <type>.bin      the blocks (raw bytes, nblocks * type_size)
  <type>.f32      gguf.quants.dequantize of them (float32 little-endian, nblocks * block_size)
  meta.json       seed, per type: ggml id, blocks, block size/bytes, sha256 of both files; versions
Run with the reference venv (scripts/setup-venv.sh; gguf and numpy are pinned there):
  ${FT_VENV:-$HOME/.cache/ftune-venv}/bin/python tests/ref/make_ggml_decode_golden.py
Deterministic: numpy's PCG64 stream is the same on every platform; two runs give identical files.
"""
import hashlib
import json
import os
import platform
import sys
from importlib.metadata import version

import numpy as np
import gguf
from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType as Q

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "fixtures", "ggml")
SEED = 20261124

# type -> byte offsets of its fp16 scale fields (ggml-common.h block layouts)
FP16_FIELDS = {
    Q.Q4_0: [0],          # d, qs[16]
    Q.Q4_1: [0, 2],       # d, m, qs[16]
    Q.Q5_0: [0],          # d, qh[4], qs[16]
    Q.Q5_1: [0, 2],       # d, m, qh[4], qs[16]
    Q.Q8_0: [0],          # d, qs[32]
    Q.Q2_K: [80, 82],     # scales[16], qs[64], d, dmin
    Q.Q3_K: [108],        # hmask[32], qs[64], scales[12], d
    Q.Q4_K: [0, 2],       # d, dmin, scales[12], qs[128]
    Q.Q5_K: [0, 2],       # d, dmin, scales[12], qh[32], qs[128]
    Q.Q6_K: [208],        # ql[128], qh[64], scales[16], d
    # appended, so the types above keep their bytes (one rng stream, drawn in this order)
    Q.IQ4_NL: [0],        # d, qs[16]: indices into kvalues_iq4nl
    Q.IQ4_XS: [0],        # d, scales_h, scales_l[4], qs[128]
}
BLOCKS = {t: (6 if GGML_QUANT_SIZES[t][0] == 32 else 4) for t in FP16_FIELDS}
PLAIN = {Q.F32: 64, Q.F16: 64, Q.BF16: 64}  # elements


def fp16_bits(rng, block, field):
    """A finite fp16 scale (as uint16 bits) for field `field` of block `block`."""
    if block == 0:
        v = np.float16(rng.integers(1, 1024) * 2.0 ** -24)  # subnormal
        assert v != 0 and abs(float(v)) < 2.0 ** -14
    elif block == 1:
        v = np.float16(-(0.5 + rng.random()) * 2.0 ** -6 * (field + 1))  # negative d, negative min
    elif block == 2 and field == 0:
        v = np.float16(0.0)
    else:
        v = np.float16((1.0 if rng.random() < 0.7 else -1.0) * 2.0 ** rng.uniform(-12, 1))
    assert np.isfinite(v)
    return int(np.array(v, dtype=np.float16).view(np.uint16))


def make_blocks(rng, t):
    bs, ts = GGML_QUANT_SIZES[t]
    nb = BLOCKS[t]
    raw = rng.integers(0, 256, size=(nb, ts), dtype=np.uint8)
    for b in range(nb):
        for f, off in enumerate(FP16_FIELDS[t]):
            bits = fp16_bits(rng, b, f)
            raw[b, off] = bits & 0xFF
            raw[b, off + 1] = bits >> 8
    return raw.reshape(-1)


def make_plain(rng, t):
    n = PLAIN[t]
    if t == Q.F32:
        u = rng.integers(0, 2 ** 32, size=n, dtype=np.uint64).astype(np.uint32)
        u[(u & 0x7F800000) == 0x7F800000] ^= 0x00800000  # clear one exponent bit: finite
        u[0], u[1], u[2] = 0x00000001, 0x80000000, 0x007FFFFF  # subnormals, -0
        return u.view(np.uint8)
    u = rng.integers(0, 2 ** 16, size=n, dtype=np.uint32).astype(np.uint16)
    exp = 0x7C00 if t == Q.F16 else 0x7F80
    low = 0x0400 if t == Q.F16 else 0x0080
    u[(u & exp) == exp] ^= low
    u[0], u[1], u[2] = 0x0001, 0x8000, exp - 1  # smallest subnormal, -0, a large finite value
    return u.view(np.uint8)


def main():
    rng = np.random.default_rng(SEED)
    os.makedirs(OUT, exist_ok=True)
    meta = {
        "seed": SEED,
        "generator": "tests/ref/make_ggml_decode_golden.py",
        "reference": "gguf.quants.dequantize (PyPI gguf)",
        "versions": {"python": platform.python_version(), "gguf": version("gguf"), "numpy": version("numpy")},
        "types": {},
    }
    order = [Q.F32, Q.F16, Q.BF16] + list(FP16_FIELDS)
    for t in order:
        raw = make_plain(rng, t) if t in PLAIN else make_blocks(rng, t)
        bs, ts = GGML_QUANT_SIZES[t]
        rows = raw.reshape(1, -1)
        ref = np.asarray(gguf.quants.dequantize(rows, t), dtype=np.float32).reshape(-1)
        assert ref.size == raw.size // ts * bs, (t.name, ref.size)
        assert np.all(np.isfinite(ref)), t.name
        name = t.name.lower()
        with open(os.path.join(OUT, name + ".bin"), "wb") as f:
            f.write(raw.tobytes())
        with open(os.path.join(OUT, name + ".f32"), "wb") as f:
            f.write(ref.astype("<f4").tobytes())
        meta["types"][t.name] = {
            "ggml_type": int(t), "blocks": int(raw.size // ts), "block_size": bs, "type_size": ts,
            "sha256_bin": hashlib.sha256(raw.tobytes()).hexdigest(),
            "sha256_f32": hashlib.sha256(ref.astype("<f4").tobytes()).hexdigest(),
        }
        print(f"{t.name:5s} {raw.size // ts} blocks, {ref.size} values, |max| {float(np.max(np.abs(ref))):.4g}")
    with open(os.path.join(OUT, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1, sort_keys=True)
        f.write("\n")
    print("wrote", OUT, file=sys.stderr)


if __name__ == "__main__":
    main()
