#!/usr/bin/env python3
"""Independent re-check of every committed fixture, reading only the files (no transformers for the math).

  * forward/<case>: parses config.json (v4 `rope_theta`/`rope_scaling` or v5 `rope_parameters`), reads the
    safetensors files directly (single file or sharded index; F32 or BF16), runs a plain numpy float64
    forward (RMSNorm, RoPE rotate_half, llama3 scaling, GQA, Qwen2 biases, Qwen3 q/k norm, SwiGLU, tied head)
    and compares with logits.bin; then re-quantizes the q/k/v/o/gate/up/down weights with the numpy NF4
    re-implementation from make_nf4_golden.py (exact nearest nested codes) and compares with logits_nf4.bin;
    recomputes the losses in loss.json / loss_nf4.json.
  * stories260K: loss.json from models/stories260K with the same numpy forward; greedy ids from the numpy
    forward for the first 64 tokens.
  * nf4: array sizes against meta.json and dequant = nf4_code[code] * absmax_dq.
This file is a readable spec of the forward pass the C code must match.  Run:
  /work/venv/bin/python tests/ref/check_fixtures.py
"""
import glob
import json
import math
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
FIX = os.path.join(REPO, "tests", "fixtures")


def read_safetensors(path):
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        hdr = json.loads(f.read(n))
        buf = f.read()
    out = {}
    for k, v in hdr.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        raw = np.frombuffer(buf[a:b], dtype=np.uint8)
        if v["dtype"] == "F32":
            t = raw.view("<f4")
        elif v["dtype"] == "BF16":
            t = (raw.view("<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            raise ValueError(v["dtype"])
        out[k] = t.reshape(v["shape"]).astype(np.float64)
    return out


def load_weights(d):
    idx = os.path.join(d, "model.safetensors.index.json")
    if os.path.exists(idx):
        wm = json.load(open(idx))["weight_map"]
        w = {}
        for shard in sorted(set(wm.values())):
            w.update(read_safetensors(os.path.join(d, shard)))
        assert set(w) == set(wm), "index does not match shards"
        return w
    return read_safetensors(os.path.join(d, "model.safetensors"))


def rope_inv_freq(cfg, hd):
    rp = cfg.get("rope_parameters") or {}
    theta = rp.get("rope_theta", cfg.get("rope_theta", 10000.0))
    sc = cfg.get("rope_scaling") or (rp if rp.get("rope_type", "default") != "default" else None)
    inv = 1.0 / theta ** (np.arange(0, hd, 2, dtype=np.float64) / hd)
    if sc and (sc.get("rope_type") or sc.get("type")) == "llama3":
        f, lo, hi = sc["factor"], sc["low_freq_factor"], sc["high_freq_factor"]
        orig = sc["original_max_position_embeddings"]
        wl = 2 * math.pi / inv
        smooth = (orig / wl - lo) / (hi - lo)
        inv = np.where(wl < orig / hi, inv,
                       np.where(wl > orig / lo, inv / f, (1 - smooth) * inv / f + smooth * inv))
    elif sc:
        raise NotImplementedError(sc)
    return inv


def rms(x, w, eps):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w


def forward(cfg, W, toks):
    C, H = cfg["hidden_size"], cfg["num_attention_heads"]
    Hkv = cfg.get("num_key_value_heads") or H
    D = cfg.get("head_dim") or C // H
    eps = cfg["rms_norm_eps"]
    T = len(toks)
    inv = rope_inv_freq(cfg, D)
    ang = np.arange(T)[:, None] * inv[None, :]
    cos = np.concatenate([np.cos(ang)] * 2, -1)
    sin = np.concatenate([np.sin(ang)] * 2, -1)
    rot = lambda x: x * cos + np.concatenate([-x[..., D // 2:], x[..., :D // 2]], -1) * sin
    lin = lambda x, p: x @ W[p + ".weight"].T + (W[p + ".bias"] if p + ".bias" in W else 0)
    h = W["model.embed_tokens.weight"][toks]
    mask = np.triu(np.full((T, T), -np.inf), 1)
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        a = rms(h, W[p + "input_layernorm.weight"], eps)
        q = lin(a, p + "self_attn.q_proj").reshape(T, H, D).transpose(1, 0, 2)
        k = lin(a, p + "self_attn.k_proj").reshape(T, Hkv, D).transpose(1, 0, 2)
        v = lin(a, p + "self_attn.v_proj").reshape(T, Hkv, D).transpose(1, 0, 2)
        if p + "self_attn.q_norm.weight" in W:
            q = rms(q, W[p + "self_attn.q_norm.weight"], eps)
            k = rms(k, W[p + "self_attn.k_norm.weight"], eps)
        q, k = rot(q), rot(k)
        k = np.repeat(k, H // Hkv, axis=0)      # query head h uses kv head h // (H/Hkv)
        v = np.repeat(v, H // Hkv, axis=0)
        s = q @ k.transpose(0, 2, 1) / math.sqrt(D) + mask
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        o = (s @ v).transpose(1, 0, 2).reshape(T, H * D)
        h = h + lin(o, p + "self_attn.o_proj")
        f = rms(h, W[p + "post_attention_layernorm.weight"], eps)
        g = lin(f, p + "mlp.gate_proj")
        h = h + lin(g / (1 + np.exp(-g)) * lin(f, p + "mlp.up_proj"), p + "mlp.down_proj")
    h = rms(h, W["model.norm.weight"], eps)
    head = W.get("lm_head.weight")
    if cfg.get("tie_word_embeddings"):
        assert head is None, "tied model stores lm_head.weight"
        head = W["model.embed_tokens.weight"]
    return h @ head.T


def ce(logits, toks):
    z = logits[:-1]
    lse = np.log(np.exp(z - z.max(-1, keepdims=True)).sum(-1)) + z.max(-1)
    return lse - z[np.arange(len(toks) - 1), toks[1:]]


def nf4_weights(W):
    sys.path.insert(0, HERE)
    from make_nf4_golden import numpy_reference
    nf4 = np.fromfile(os.path.join(FIX, "nf4", "nf4_code.bin"), "<f4")
    dyn = np.fromfile(os.path.join(FIX, "nf4", "dynmap.bin"), "<f4")
    out = dict(W)
    for k, w in W.items():
        if k.endswith(("q_proj.weight", "k_proj.weight", "v_proj.weight", "o_proj.weight",
                       "gate_proj.weight", "up_proj.weight", "down_proj.weight")):
            x = w.astype(np.float32).reshape(-1)
            nb = -(-x.size // 64)
            am = np.abs(np.pad(x, (0, nb * 64 - x.size)).reshape(nb, 64)).max(1).astype(np.float32)
            offset = np.float32(am.astype(np.float64).mean())   # torch: float32 pairwise mean (<= ~1 ulp apart)
            out[k] = numpy_reference(x, nf4, dyn, offset)["dequant"].reshape(w.shape).astype(np.float64)
    return out


def check_forward():
    worst = 0.0
    for d in sorted(glob.glob(os.path.join(FIX, "forward", "*"))):
        cfg = json.load(open(os.path.join(d, "config.json")))
        W = load_weights(d)
        name = os.path.basename(d)
        dtypes = set()
        for st in glob.glob(os.path.join(d, "*.safetensors")):
            with open(st, "rb") as fh:
                n = int.from_bytes(fh.read(8), "little")
                dtypes |= {v["dtype"] for k, v in json.loads(fh.read(n)).items() if k != "__metadata__"}
        assert dtypes == ({"BF16"} if name == "qwen3" else {"F32"}), (name, dtypes)
        if cfg["model_type"] == "qwen2":
            assert "model.layers.0.self_attn.q_proj.bias" in W and "model.layers.0.self_attn.o_proj.bias" not in W
            assert np.abs(W["model.layers.0.self_attn.k_proj.bias"]).min() > 0
        if os.path.exists(os.path.join(d, "config_v5.json")):
            c5 = json.load(open(os.path.join(d, "config_v5.json")))
            assert "rope_parameters" in c5 and "rope_parameters" not in cfg and "rope_scaling" in cfg
            assert np.array_equal(rope_inv_freq(c5, cfg["head_dim"]), rope_inv_freq(cfg, cfg["head_dim"]))
        toks = [list(map(int, l.split())) for l in open(os.path.join(d, "tokens.txt"))]
        for suffix, weights in (("", W), ("_nf4", None)):
            info = json.load(open(os.path.join(d, f"loss{suffix}.json")))
            gold = np.fromfile(os.path.join(d, f"logits{suffix}.bin"), "<f4").reshape(info["B"], info["T"], info["V"])
            if weights is None:
                weights = nf4_weights(W)
            lg = np.stack([forward(cfg, weights, np.array(t)) for t in toks])
            nll = np.stack([ce(lg[b], np.array(t)) for b, t in enumerate(toks)])
            err = np.abs(lg - gold).max()
            lerr = abs(nll.mean() - info["loss"])
            print(f"forward/{os.path.basename(d)}{suffix}: max|logit - golden| = {err:.2e}, |loss - golden| = "
                  f"{lerr:.2e} (loss {info['loss']:.6f})")
            assert err < 2e-4 and lerr < 1e-5, d
            worst = max(worst, err)
    return worst


def check_stories():
    d = os.path.join(REPO, "models", "stories260K")
    cfg = json.load(open(os.path.join(d, "config.json")))
    W = load_weights(d)
    f = os.path.join(FIX, "stories260K")
    rows = [list(map(int, l.split())) for l in open(os.path.join(f, "sample_tokens.txt"))]
    info = json.load(open(os.path.join(f, "loss.json")))
    nll = [ce(forward(cfg, W, np.array(r)), np.array(r)) for r in rows]
    per = [float(x.mean()) for x in nll]
    tot = float(np.concatenate(nll).mean())
    print(f"stories260K loss: numpy {tot:.6f} golden {info['loss']:.6f}; per line {np.round(per, 6).tolist()}")
    assert abs(tot - info["loss"]) < 1e-5 and np.allclose(per, info["per_line"], atol=1e-5)
    g = list(map(int, open(os.path.join(f, "greedy_ids.txt")).read().split()))
    h = list(map(int, open(os.path.join(f, "greedy_hf_ids.txt")).read().split()))
    assert g == h
    ids = [1]
    for _ in range(64):
        ids.append(int(forward(cfg, W, np.array(ids))[-1].argmax()))
    assert ids == g[:65], "numpy greedy differs"
    print(f"stories260K greedy: numpy forward reproduces the first 64 of {len(g) - 1} golden tokens")


def check_nf4():
    f = os.path.join(FIX, "nf4")
    meta = json.load(open(os.path.join(f, "meta.json")))
    arr = {}
    for name, (dt, shape) in meta["files"].items():
        a = np.fromfile(os.path.join(f, name), {"float32": "<f4", "uint8": np.uint8}[dt])
        assert a.size == int(np.prod(shape)), name
        arr[name] = a
    c = arr["codes.bin"]
    codes = np.stack([c >> 4, c & 15], 1).reshape(-1)[:meta["n"]]
    blk = np.arange(meta["n"]) // meta["blocksize"]
    assert np.array_equal(arr["nf4_code.bin"][codes] * arr["absmax_dq.bin"][blk], arr["dequant.bin"])
    q = arr["qabsmax.bin"]
    am = arr["dynmap.bin"][q] * arr["absmax2.bin"][np.arange(q.size) // meta["nested_blocksize"]]
    assert np.array_equal((am + np.float32(meta["offset"])).astype(np.float32), arr["absmax_dq.bin"])
    print(f"nf4: {len(arr)} arrays consistent with meta.json; dequant = nf4[code] * absmax_dq bit-exact")


def main():
    check_nf4()
    check_stories()
    check_forward()
    print("all fixtures OK")


if __name__ == "__main__":
    main()
