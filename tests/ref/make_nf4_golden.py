#!/usr/bin/env python3
"""NF4 + double-quantization golden from bitsandbytes (CPU), for ftune's kernels/nf4 tests.

Makes tests/fixtures/nf4/ (all little-endian, raw arrays, no headers):
  input.bin      float32 [N]            the fixed input (N = 25910 = 3*8192 + 1334: N % 64 != 0, 405 blocks,
                                        405 % 256 != 0 -> 2 nested blocks; scales over 4 decades, outliers,
                                        scattered exact zeros, 3 all-zero blocks, a block of exact-tie values)
  codes.bin      uint8   [ceil(N/2)]    bnb packed NF4 codes: byte k = (code[2k] << 4) | code[2k+1]
                                        (first element in the HIGH nibble)
  absmax_raw.bin float32 [NB]           per-64-block absmax before double quantization (NB = ceil(N/64))
  qabsmax.bin    uint8   [NB]           double-quantized absmax codes (quant_state.absmax)
  absmax2.bin    float32 [NB2]          nested per-256-block absmax (quant_state.state2.absmax), NB2 = ceil(NB/256)
  dynmap.bin     float32 [256]          nested code table (quant_state.state2.code, signed dynamic map)
  nf4_code.bin   float32 [16]           NF4 levels (quant_state.code)
  absmax_dq.bin  float32 [NB]           recovered absmax = dynmap[qabsmax[b]] * absmax2[b/256] + offset
  dequant.bin    float32 [N]            bnb dequantize_4bit(codes, quant_state) (float32 output)
  qabsmax_nearest.bin, absmax_dq_nearest.bin  uint8/float32 [NB]: the same nested step done with the exact
                 nearest code (CUDA semantics); bnb 0.50's CPU search differs from it in a few blocks (meta.json)
  meta.json      N, blocksize, NB, NB2, offset (float and uint32 bits), NF4 float32 midpoints, file list,
                 CPU paths used, versions, and the results of the independent numpy re-implementation check.

How: torch float32 input -> bitsandbytes.functional.quantize_4bit(x, blocksize=64, compress_statistics=True,
quant_type="nf4") on CPU -> dequantize_4bit.  bnb 0.50 on CPU: quantize_4bit runs the pure-torch "default"
kernel (bucketize on float32 midpoints of the NF4 table; full blocks scale by x * (1/absmax), the partial tail
block by x / absmax); the nested quantize_blockwise / dequantize_blockwise and dequantize_4bit run the native
libbitsandbytes_cpu.so kernels (x / absmax2, nearest code, ties to the lower code).  The script re-implements
every step in numpy and asserts bit-exact agreement, so the C implementation has a spelled-out target.

Deterministic (numpy default_rng(20260822)).  Re-run:  /work/venv/bin/python tests/ref/make_nf4_golden.py
"""
import json
import os

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
OUT = os.path.join(REPO, "tests", "fixtures", "nf4")
BS = 64
BS2 = 256
N = 3 * 8192 + 1334
ZERO_BLOCKS = (5, 200, 257)
TIE_BLOCK = 100
SINGLE_BLOCK = 101
CONST_NEG_BLOCK = 102


def nf4_midpoints_f32(code):
    c = code.astype(np.float32)
    return ((c[:-1] + c[1:]) / np.float32(2)).astype(np.float32)


def make_input():
    rng = np.random.default_rng(20260822)
    nb = -(-N // BS)
    scales = (10.0 ** rng.uniform(-3, 1, size=nb)).astype(np.float32)
    x = rng.standard_normal(N).astype(np.float32) * np.repeat(scales, BS)[:N]
    out_idx = rng.choice(N, size=24, replace=False)
    x[out_idx] *= np.float32(30.0)                                   # outliers
    x[rng.choice(N, size=N // 100, replace=False)] = 0.0             # scattered exact zeros
    for b in ZERO_BLOCKS:
        x[b * BS:(b + 1) * BS] = 0.0                                 # all-zero blocks
    return x.astype(np.float32), rng


def place_ties(x, code):
    # absmax exactly 1.0 so x * (1/absmax) == x: every NF4 midpoint appears exactly (tie -> lower code)
    mids = nf4_midpoints_f32(code)
    blk = x[TIE_BLOCK * BS:(TIE_BLOCK + 1) * BS]
    blk[:] = np.linspace(-0.99, 0.99, BS, dtype=np.float32)
    blk[0], blk[1] = 1.0, -1.0
    blk[2:2 + 15] = mids
    blk[17:17 + 15] = np.nextafter(mids, np.float32(2))             # just above each midpoint
    blk[32:32 + 15] = np.nextafter(mids, np.float32(-2))            # just below
    s = x[SINGLE_BLOCK * BS:(SINGLE_BLOCK + 1) * BS]
    s[:] = 0.0
    s[7] = -3.25                                                     # one nonzero value
    x[CONST_NEG_BLOCK * BS:(CONST_NEG_BLOCK + 1) * BS] = -0.5         # constant negative block


def nearest_code(v, scale, table):
    """Exact nearest-entry 8-bit quantization of v * (1/scale) (CUDA kQuantizeBlockwise semantics: reciprocal
    multiply, then the nearest table entry; an exact midpoint tie goes to the lower index here)."""
    normed = (v * (np.float32(1.0) / scale)).astype(np.float32)
    mids = ((table[:-1] + table[1:]) * np.float32(0.5)).astype(np.float32)
    return np.searchsorted(mids, normed, side="left").astype(np.uint8), normed, mids


def numpy_reference(x, nf4, dynmap, offset_t, qabsmax=None):
    """Independent re-implementation of the NF4 + double-quant pipeline; returns dict of arrays.
    qabsmax=None: nested codes by exact nearest (CUDA semantics); else use the given nested codes."""
    n = x.size
    nb = -(-n // BS)
    full = (n // BS) * BS
    absmax = np.empty(nb, np.float32)
    scaled = np.empty(n, np.float32)
    xb = x[:full].reshape(-1, BS)
    absmax[: n // BS] = np.abs(xb).max(axis=1)
    inv = (np.float32(1.0) / np.maximum(absmax[: n // BS], np.float32(1e-38))).astype(np.float32)
    scaled[:full] = (xb * inv[:, None]).reshape(-1)
    if full < n:
        am = np.float32(max(np.abs(x[full:]).max(), np.float32(1e-38)))
        absmax[-1] = am
        scaled[full:] = x[full:] / am
    scaled = np.clip(scaled, -1, 1).astype(np.float32)
    mids = nf4_midpoints_f32(nf4)
    codes = np.searchsorted(mids, scaled, side="left").astype(np.uint8)   # = number of midpoints < v
    c2 = np.concatenate([codes, np.zeros(n % 2, np.uint8)])
    packed = ((c2[0::2] << 4) | c2[1::2]).astype(np.uint8)

    offset = np.float32(offset_t)
    v = (absmax - offset).astype(np.float32)
    nb2 = -(-nb // BS2)
    absmax2 = np.array([np.abs(v[j * BS2:(j + 1) * BS2]).max() for j in range(nb2)], np.float32)
    dm = dynmap.astype(np.float32)
    margin = np.inf
    if qabsmax is None:
        q = np.empty(nb, np.uint8)
        for j in range(nb2):
            seg = v[j * BS2:(j + 1) * BS2]
            q[j * BS2:(j + 1) * BS2], normed, m8 = nearest_code(seg, absmax2[j], dm)
            margin = min(margin, float(np.min(np.abs(normed[:, None] - m8[None, :]))))
    else:
        q = qabsmax
    absmax_dq = ((dm[q] * np.repeat(absmax2, BS2)[:nb]).astype(np.float32) + offset).astype(np.float32)
    deq = (nf4.astype(np.float32)[codes] * np.repeat(absmax_dq, BS)[:n]).astype(np.float32)
    return dict(absmax_raw=absmax, codes=packed, qabsmax=q, absmax2=absmax2, absmax_dq=absmax_dq, dequant=deq,
                margin=margin)


def main():
    import bitsandbytes as bnb
    import bitsandbytes.functional as F
    from bitsandbytes.cextension import lib

    torch.manual_seed(0)
    os.makedirs(OUT, exist_ok=True)
    nf4_table = F.get_4bit_type("nf4", device="cpu").float().numpy()
    x, _ = make_input()
    place_ties(x, nf4_table)
    xt = torch.from_numpy(x.copy())

    q, st = F.quantize_4bit(xt, blocksize=BS, compress_statistics=True, quant_type="nf4")
    deq = F.dequantize_4bit(q, st).reshape(-1).float().numpy()
    q_plain, st_plain = F.quantize_4bit(xt, blocksize=BS, compress_statistics=False, quant_type="nf4")
    assert torch.equal(q_plain, q), "codes depend on compress_statistics?"
    absmax_dq = (F.dequantize_blockwise(st.absmax, st.state2) + st.offset).float().numpy()

    got = dict(
        codes=q.reshape(-1).numpy().astype(np.uint8),
        absmax_raw=st_plain.absmax.float().numpy(),
        qabsmax=st.absmax.reshape(-1).numpy().astype(np.uint8),
        absmax2=st.state2.absmax.float().numpy(),
        dynmap=st.state2.code.float().numpy(),
        nf4_code=st.code.float().numpy(),
        absmax_dq=absmax_dq.astype(np.float32),
        dequant=deq.astype(np.float32),
    )
    nb, nb2 = -(-N // BS), -(-(-(-N // BS)) // BS2)
    assert got["codes"].size == (N + 1) // 2 and got["qabsmax"].size == nb and got["absmax2"].size == nb2
    assert got["dynmap"].size == 256 and got["nf4_code"].size == 16
    assert np.array_equal(got["nf4_code"], nf4_table)

    # independent check 1: with bnb's own nested codes, every other array must match bit for bit
    bits = lambda a: a.view(np.uint8 if a.dtype == np.uint8 else np.uint32)
    ref = numpy_reference(x, got["nf4_code"], got["dynmap"], st.offset.item(), qabsmax=got["qabsmax"])
    check = {k: int(np.count_nonzero(bits(got[k]) != bits(ref[k])))
             for k in ("absmax_raw", "codes", "absmax2", "absmax_dq", "dequant")}
    print("numpy re-implementation (given bnb qabsmax) bit mismatches:", check)
    if any(check.values()):
        raise SystemExit("bnb output differs from the numpy re-implementation")
    # independent check 2: exact-nearest nested codes (CUDA semantics) vs bnb's CPU binary search
    near = numpy_reference(x, got["nf4_code"], got["dynmap"], st.offset.item())
    diff = np.nonzero(near["qabsmax"] != got["qabsmax"])[0]
    step = np.abs(near["qabsmax"][diff].astype(int) - got["qabsmax"][diff].astype(int))
    print(f"nested codes: bnb CPU vs exact nearest differ in {diff.size}/{nb} blocks {diff.tolist()} "
          f"(max |code diff| {int(step.max()) if diff.size else 0}); min distance of a normalized absmax to an "
          f"8-bit midpoint = {near['margin']:.3g}")
    if diff.size and step.max() > 1:
        raise SystemExit("bnb CPU nested code off by more than one step")
    deq_near_diff = int(np.count_nonzero(near["dequant"] != got["dequant"]))
    # offset: torch float32 mean vs float64 mean rounded to float32
    off64 = np.float32(np.mean(got["absmax_raw"].astype(np.float64)))
    print(f"offset torch={st.offset.item()!r} f64-mean->f32={float(off64)!r} "
          f"equal={off64 == np.float32(st.offset.item())}")
    # tie block sanity: midpoint values take the lower code
    codes_unpacked = np.stack([got["codes"] >> 4, got["codes"] & 15], 1).reshape(-1)[:N]
    tie = codes_unpacked[TIE_BLOCK * BS:(TIE_BLOCK + 1) * BS]
    assert list(tie[2:17]) == list(range(15)), tie[2:17]
    assert list(tie[17:32]) == list(range(1, 16)), tie[17:32]
    assert all(codes_unpacked[b * BS:(b + 1) * BS].max() == 7 for b in ZERO_BLOCKS)

    files = {
        "input.bin": x, "codes.bin": got["codes"], "absmax_raw.bin": got["absmax_raw"],
        "qabsmax.bin": got["qabsmax"], "absmax2.bin": got["absmax2"], "dynmap.bin": got["dynmap"],
        "nf4_code.bin": got["nf4_code"], "absmax_dq.bin": got["absmax_dq"], "dequant.bin": got["dequant"],
        "qabsmax_nearest.bin": near["qabsmax"], "absmax_dq_nearest.bin": near["absmax_dq"],
    }
    for name, arr in files.items():
        arr.astype(arr.dtype.newbyteorder("<")).tofile(os.path.join(OUT, name))
    off = np.float32(st.offset.item())
    meta = {
        "n": N, "blocksize": BS, "n_blocks": nb, "nested_blocksize": BS2, "n_blocks2": nb2,
        "quant_type": "nf4", "compress_statistics": True,
        "offset": float(off), "offset_bits_u32": int(off.view(np.uint32)),
        "offset_definition": "torch float32 mean of absmax_raw (pairwise summation); float64 mean rounded "
                             "to float32 gives " + repr(float(off64)),
        "files": {
            "input.bin": ["float32", [N]], "codes.bin": ["uint8", [(N + 1) // 2]],
            "absmax_raw.bin": ["float32", [nb]], "qabsmax.bin": ["uint8", [nb]],
            "absmax2.bin": ["float32", [nb2]], "dynmap.bin": ["float32", [256]],
            "nf4_code.bin": ["float32", [16]], "absmax_dq.bin": ["float32", [nb]],
            "dequant.bin": ["float32", [N]],
            "qabsmax_nearest.bin": ["uint8", [nb]], "absmax_dq_nearest.bin": ["float32", [nb]],
        },
        "nearest_variant": "the *_nearest.bin files redo only the nested step with the exact nearest dynmap entry "
                           "of (absmax-offset)*(1/absmax2) (CUDA kQuantizeBlockwise semantics, inferred from csrc/kernels.cu dQuantize, not run on a GPU; every normalized "
                           "value is >= %.3g from a midpoint, so ties/rounding order cannot matter). bnb 0.50's CPU "
                           "binary search (BinSearch Direct2) picks a neighbouring code in blocks %s; everything "
                           "else (codes, absmax_raw, absmax2, offset) is identical in both variants; the nearest-variant dequant "
                           "is nf4_code[code] * absmax_dq_nearest[block] (float32)."
                           % (near["margin"], diff.tolist()),
        "bnb_cpu_vs_nearest": {"qabsmax_blocks_differ": diff.tolist(), "dequant_elements_differ": deq_near_diff},
        "packing": "byte k = (code[2k] << 4) | code[2k+1]; N even here so no padding nibble",
        "nf4_midpoints_f32": [float(m) for m in nf4_midpoints_f32(got["nf4_code"])],
        "special_blocks": {"all_zero": list(ZERO_BLOCKS), "exact_ties_absmax_1": TIE_BLOCK,
                           "single_nonzero": SINGLE_BLOCK, "constant_negative": CONST_NEG_BLOCK,
                           "partial_tail": {"block": nb - 1, "elements": N - (nb - 1) * BS}},
        "tie_block_layout": "elements 0,1 = +1,-1; 2..16 = the 15 float32 midpoints (-> codes 0..14, lower code); "
                            "17..31 = nextafter(mid, +inf) (-> codes 1..15); 32..46 = nextafter(mid, -inf)",
        "cpu_paths": {
            "quantize_4bit": "bitsandbytes 'default' torch kernel: full blocks x*(1/max(absmax,1e-38)), tail "
                             "block x/max(absmax,1e-38), clamp [-1,1], bucketize on float32 midpoints "
                             "(value == midpoint -> lower code)",
            "nested quantize_blockwise": "native libbitsandbytes_cpu.so quantize_cpu: v/absmax2, then an approximate "
                                         "binary search (BinSearch Direct2) + one-neighbour check: NOT always the "
                                         "nearest code (see bnb_cpu_vs_nearest)",
            "dequantize": "absmax_dq = dynmap[q]*absmax2 + offset (float32, two roundings); "
                          "out = nf4[code]*absmax_dq (float32)",
        },
        "numpy_reimplementation_bit_mismatches_given_bnb_qabsmax": check,
        "versions": {"bitsandbytes": bnb.__version__, "torch": torch.__version__, "numpy": np.__version__},
        "native_lib": os.path.basename(getattr(lib, "_lib", lib)._name) if hasattr(getattr(lib, "_lib", lib), "_name") else str(type(lib)),
    }
    json.dump(meta, open(os.path.join(OUT, "meta.json"), "w"), indent=2)

    # load-back check
    back = np.fromfile(os.path.join(OUT, "dequant.bin"), dtype="<f4")
    assert np.array_equal(back, got["dequant"])
    back = np.fromfile(os.path.join(OUT, "codes.bin"), dtype=np.uint8)
    assert np.array_equal(back, got["codes"])
    assert np.array_equal(np.fromfile(os.path.join(OUT, "input.bin"), dtype="<f4"), x)
    rel = np.abs(got["dequant"] - x).max()
    print(f"N={N} blocks={nb} nested={nb2} offset={float(off)} max|deq-x|={rel:.4g}; wrote {OUT}")


if __name__ == "__main__":
    main()
