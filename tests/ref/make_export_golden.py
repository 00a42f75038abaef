#!/usr/bin/env python3
"""Export references: tiny models + adapters for the four families (llama twice: the SentencePiece
stories260K and a Llama 3 tokenizer model), and what they must give.

Importable with numpy alone (tests/ref/interop_llamacpp.py uses the generators at test time, so
the large models are never committed): make_model(name, out_dir) writes a seeded Hugging Face
checkpoint (config.json, model.safetensors, a REAL tokenizer with a matching vocabulary from
../shared/assets or models/stories260K), make_adapter(name, base_dir, out_dir) a seeded PEFT
adapter. numpy's PCG64 stream is the same on every platform, so the same bytes come out in CI.

Run as a script (needs the reference venv: torch, transformers, peft; scripts/setup-venv.sh) to
write tests/fixtures/export/:
  <name>/ref.json + ref_logits.bin   PEFT's merged model (transformers, FP32) logits on fixed
                                     tokens (all vocab ids for stories, a seeded subset of ids
                                     for the 32k/152k vocabularies), what llama.cpp must reproduce
  quant/                             rows of float32 and the bytes ggml's own quantizer
                                     (ggml_quantize_chunk of the libggml that llama-cpp-python
                                     builds) gives for Q8_0, Q4_0, Q5_0, Q4_K, Q5_K, Q6_K,
                                     Q4_1, Q5_1 (write_quant_golden(interop_venv) alone: numpy
                                     and the interop venv's llama_cpp, no torch)
  peft_check.json                    PEFT loading our `ftune export --format peft` output: logits
                                     vs ftune's own forward on the merged checkpoint (FP32)
Usage:
  $FT_VENV/bin/python tests/ref/make_export_golden.py [--ftune build/ftune] [--interop-venv DIR]
"""
import argparse
import gzip
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED = os.environ.get("FT_SHARED_DIR", os.path.join(os.path.dirname(ROOT), "shared"))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "export")

# name: HF config fields, the tokenizer to ship, storage dtype, adapter spec, seed
MODELS = {
    # llama arch, the real trained stories260K model (vocab 512, SentencePiece BPE)
    "stories": dict(base="models/stories260K", adapter=dict(r=8, alpha=16, rslora=False,
                                                            targets=["q_proj", "k_proj", "v_proj", "o_proj",
                                                                     "gate_proj", "up_proj", "down_proj"]), seed=11),
    # Mistral (llama GGUF arch): Mistral 7B v0.1 SentencePiece tokenizer (32000), rsLoRA adapter
    "mistral": dict(arch="MistralForCausalLM", model_type="mistral", C=64, F=128, L=2, H=4, Hkv=2, D=16, V=32000,
                    tied=False, theta=10000.0, dtype="float32", tokenizer="mistral",
                    adapter=dict(r=16, alpha=8, rslora=True, targets=["q_proj", "k_proj", "v_proj", "o_proj"]),
                    seed=12),
    # Llama 3: byte-level BPE (llama-bpe pre-tokenizer, 128256 tokens), llama3 rope scaling
    # (rope_freqs.weight in the GGUF), tied embeddings as Llama 3.2 1B/3B
    "llama3": dict(arch="LlamaForCausalLM", model_type="llama", C=64, F=128, L=2, H=4, Hkv=2, D=16, V=128256,
                   tied=True, theta=500000.0, dtype="float32", tokenizer="llama3",
                   rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                 "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
                   adapter=dict(r=8, alpha=16, rslora=False, targets=["q_proj", "k_proj", "v_proj", "o_proj",
                                                                       "gate_proj", "up_proj", "down_proj"]),
                   seed=15),
    # Qwen2: q/k/v biases, tied embeddings, Qwen tokenizer (151643 + 26 added, vocab padded to 151936);
    # alpha_pattern gives v_proj its own scale (folded into lora_b in the GGUF)
    "qwen2": dict(arch="Qwen2ForCausalLM", model_type="qwen2", C=64, F=128, L=2, H=4, Hkv=2, D=16, V=151936,
                  tied=True, theta=1000000.0, dtype="float32", tokenizer="qwen",
                  adapter=dict(r=8, alpha=32, rslora=False, alpha_pattern={"v_proj": 8},
                               targets=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                        "down_proj"]), seed=13),
    # Qwen3: q/k norm, head_dim != C/H, hidden 256 so Q4_K/Q6_K are used (not their 32-block fallbacks)
    "qwen3": dict(arch="Qwen3ForCausalLM", model_type="qwen3", C=256, F=512, L=2, H=4, Hkv=2, D=128, V=151936,
                  tied=False, theta=1000000.0, dtype="bfloat16", tokenizer="qwen",
                  adapter=dict(r=16, alpha=32, rslora=False,
                               targets=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                        "down_proj"]), seed=14),
}
N_TOKENS = 12
N_SUBSET = 2048


# ---- safetensors (numpy only) ------------------------------------------------------------------

def to_bf16_bits(x):
    b = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    r = ((b + 0x7FFF + ((b >> 16) & 1)) >> 16).astype(np.uint16)
    return r


def bf16_bits_to_f32(h):
    return (h.astype(np.uint32) << 16).view(np.float32)


def write_safetensors(path, tensors):
    """tensors: list of (name, dtype "F32"/"BF16", ndarray float32 values)."""
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for name, dt, arr in tensors:
        data = to_bf16_bits(arr).tobytes() if dt == "BF16" else np.ascontiguousarray(arr, np.float32).tobytes()
        header[name] = {"dtype": dt, "shape": list(arr.shape), "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        raw = data[a:b]
        if v["dtype"] == "F32":
            arr = np.frombuffer(raw, np.float32)
        elif v["dtype"] == "BF16":
            arr = bf16_bits_to_f32(np.frombuffer(raw, np.uint16))
        elif v["dtype"] == "F16":
            arr = np.frombuffer(raw, np.float16).astype(np.float32)
        else:
            raise ValueError(v["dtype"])
        out[k] = arr.reshape(v["shape"])
    return out


# ---- models ------------------------------------------------------------------------------------

def _tokenizer_files(kind, out_dir):
    if kind == "mistral":
        shutil.copy(os.path.join(SHARED, "assets", "mistral-sentencepiece", "tokenizer.model.v1"),
                    os.path.join(out_dir, "tokenizer.model"))
        cfg = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "add_bos_token": True,
               "add_eos_token": False,
               "chat_template": "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}"
                                "{{ '[INST] ' + message['content'] + ' [/INST]' }}{% else %}"
                                "{{ message['content'] + eos_token }}{% endif %}{% endfor %}"}
        with open(os.path.join(out_dir, "tokenizer_config.json"), "w") as f:
            json.dump(cfg, f, indent=1)
    elif kind == "llama3":
        src = os.path.join(SHARED, "assets", "llama3-tokenizer")
        with gzip.open(os.path.join(src, "tokenizer.json.gz"), "rb") as f, \
                open(os.path.join(out_dir, "tokenizer.json"), "wb") as g:
            shutil.copyfileobj(f, g)
        shutil.copy(os.path.join(src, "tokenizer_config.json"), os.path.join(out_dir, "tokenizer_config.json"))
    elif kind == "qwen":
        src = os.path.join(SHARED, "assets", "qwen3-tokenizer")
        with gzip.open(os.path.join(src, "tokenizer.json.gz"), "rb") as f, \
                open(os.path.join(out_dir, "tokenizer.json"), "wb") as g:
            shutil.copyfileobj(f, g)
        shutil.copy(os.path.join(src, "tokenizer_config.json"), os.path.join(out_dir, "tokenizer_config.json"))
    else:
        raise ValueError(kind)


def make_model(name, out_dir):
    """Writes the seeded checkpoint of MODELS[name] into out_dir (or returns the committed one)."""
    spec = MODELS[name]
    if "base" in spec:
        return os.path.join(ROOT, spec["base"])
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(spec["seed"])
    C, F, L, H, Hkv, D, V = (spec[k] for k in ("C", "F", "L", "H", "Hkv", "D", "V"))
    cfg = {"architectures": [spec["arch"]], "model_type": spec["model_type"], "hidden_size": C,
           "intermediate_size": F, "num_hidden_layers": L, "num_attention_heads": H, "num_key_value_heads": Hkv,
           "head_dim": D, "vocab_size": V, "max_position_embeddings": 4096, "rms_norm_eps": 1e-6,
           "rope_theta": spec["theta"], "tie_word_embeddings": spec["tied"], "hidden_act": "silu",
           "torch_dtype": spec["dtype"], "attention_bias": False, "use_sliding_window": False, "sliding_window": None,
           "bos_token_id": {"mistral": 1, "llama3": 128000}.get(spec["tokenizer"], 151643),
           "eos_token_id": {"mistral": 2, "llama3": 128001}.get(spec["tokenizer"], 151645)}
    if "rope_scaling" in spec:
        cfg["rope_scaling"] = spec["rope_scaling"]
        cfg["max_position_embeddings"] = 131072
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    _tokenizer_files(spec["tokenizer"], out_dir)
    dt = "BF16" if spec["dtype"] == "bfloat16" else "F32"

    def lin(o, i):
        return (rng.standard_normal((o, i), dtype=np.float32) * (0.5 / np.sqrt(i))).astype(np.float32)

    def norm(n):
        return (1.0 + 0.1 * rng.standard_normal(n, dtype=np.float32)).astype(np.float32)

    t = [("model.embed_tokens.weight", dt, (0.5 * rng.standard_normal((V, C), dtype=np.float32)))]
    for l in range(L):
        p = f"model.layers.{l}."
        t += [(p + "input_layernorm.weight", dt, norm(C)),
              (p + "self_attn.q_proj.weight", dt, lin(H * D, C)),
              (p + "self_attn.k_proj.weight", dt, lin(Hkv * D, C)),
              (p + "self_attn.v_proj.weight", dt, lin(Hkv * D, C)),
              (p + "self_attn.o_proj.weight", dt, lin(C, H * D))]
        if spec["model_type"] == "qwen2":
            t += [(p + "self_attn.q_proj.bias", dt, 0.1 * rng.standard_normal(H * D, dtype=np.float32)),
                  (p + "self_attn.k_proj.bias", dt, 0.1 * rng.standard_normal(Hkv * D, dtype=np.float32)),
                  (p + "self_attn.v_proj.bias", dt, 0.1 * rng.standard_normal(Hkv * D, dtype=np.float32))]
        if spec["model_type"] == "qwen3":
            t += [(p + "self_attn.q_norm.weight", dt, norm(D)), (p + "self_attn.k_norm.weight", dt, norm(D))]
        t += [(p + "post_attention_layernorm.weight", dt, norm(C)),
              (p + "mlp.gate_proj.weight", dt, lin(F, C)),
              (p + "mlp.up_proj.weight", dt, lin(F, C)),
              (p + "mlp.down_proj.weight", dt, lin(C, F))]
    t.append(("model.norm.weight", dt, norm(C)))
    if not spec["tied"]:
        t.append(("lm_head.weight", dt, lin(V, C)))
    write_safetensors(os.path.join(out_dir, "model.safetensors"), t)
    return out_dir


def _linear_shapes(cfg):
    C, F = cfg["hidden_size"], cfg["intermediate_size"]
    H, Hkv = cfg["num_attention_heads"], cfg.get("num_key_value_heads", cfg["num_attention_heads"])
    D = cfg.get("head_dim") or C // H
    return {"q_proj": ("self_attn", H * D, C), "k_proj": ("self_attn", Hkv * D, C),
            "v_proj": ("self_attn", Hkv * D, C), "o_proj": ("self_attn", C, H * D),
            "gate_proj": ("mlp", F, C), "up_proj": ("mlp", F, C), "down_proj": ("mlp", C, F)}


def make_adapter(name, base_dir, out_dir, spec=None, seed=None, base_name=None):
    """Writes the seeded PEFT adapter of MODELS[name] (B nonzero) into out_dir."""
    spec = spec or MODELS[name]["adapter"]
    rng = np.random.default_rng(seed if seed is not None else MODELS[name]["seed"] + 1000)
    with open(os.path.join(base_dir, "config.json")) as f:
        cfg = json.load(f)
    shapes = _linear_shapes(cfg)
    r = spec["r"]
    t = []
    for l in range(cfg["num_hidden_layers"]):
        for m in spec["targets"]:
            grp, o, i = shapes[m]
            p = f"base_model.model.model.layers.{l}.{grp}.{m}."
            t.append((p + "lora_A.weight", "F32", rng.uniform(-1, 1, (r, i)).astype(np.float32) / np.sqrt(i)))
            t.append((p + "lora_B.weight", "F32", (0.02 * rng.standard_normal((o, r))).astype(np.float32)))
    os.makedirs(out_dir, exist_ok=True)
    write_safetensors(os.path.join(out_dir, "adapter_model.safetensors"), t)
    ac = {"peft_type": "LORA", "task_type": "CAUSAL_LM",
          "base_model_name_or_path": base_name or os.path.abspath(base_dir),
          "r": r, "lora_alpha": spec["alpha"], "lora_dropout": 0.0, "target_modules": spec["targets"],
          "bias": "none", "use_rslora": spec["rslora"], "fan_in_fan_out": False, "inference_mode": True,
          "rank_pattern": {}, "alpha_pattern": spec.get("alpha_pattern", {})}
    with open(os.path.join(out_dir, "adapter_config.json"), "w") as f:
        json.dump(ac, f, indent=1)
    return out_dir


def fixed_tokens(name, base_dir):
    """N_TOKENS ids of ordinary tokens (seeded), and the vocabulary subset the reference keeps."""
    with open(os.path.join(base_dir, "config.json")) as f:
        V = json.load(f)["vocab_size"]
    rng = np.random.default_rng(MODELS[name]["seed"] + 2000)
    hi = min(V, 32000 if V > 32000 else V)
    toks = rng.integers(3, hi, N_TOKENS).tolist()
    subset = None if V <= 4096 else sorted(set(rng.choice(V, N_SUBSET, replace=False).tolist()) | set(toks))
    return toks, subset


# ---- ggml quantizer goldens --------------------------------------------------------------------

# ggml type ids (ggml.h) and (block elements, block bytes) (ggml-common.h). Q4_1 / Q5_1: llama.cpp's
# fallback for a Q5_K tensor whose rows are not whole 256-blocks (Q5_K_M) is Q5_1.
QUANT_TYPES = {"Q8_0": 8, "Q4_0": 2, "Q5_0": 6, "Q4_K": 12, "Q5_K": 13, "Q6_K": 14, "Q4_1": 3, "Q5_1": 7}
QUANT_BYTES = {"Q8_0": (32, 34), "Q4_0": (32, 18), "Q5_0": (32, 22), "Q4_K": (256, 144), "Q5_K": (256, 176),
               "Q6_K": (256, 210), "Q4_1": (32, 20), "Q5_1": (32, 24)}


def quant_rows():
    """16 rows of 1024 floats: gaussian, uniform, heavy-tailed, all-positive, tiny, zeros, spikes, mixed
    (twice, with different draws)."""
    rng = np.random.default_rng(7)
    n = 1024
    rows = [rng.standard_normal(n), rng.uniform(-1, 1, n), rng.standard_t(2, n) * 0.01,
            np.abs(rng.standard_normal(n)) + 0.5, rng.standard_normal(n) * 1e-6, np.zeros(n),
            np.where(rng.uniform(size=n) < 0.02, 5.0, 0.01 * rng.standard_normal(n)),
            np.concatenate([rng.standard_normal(n // 2) * 3, rng.standard_normal(n // 2) * 0.001])]
    rows = rows + [r[::-1] * 0.37 + 0.001 * rng.standard_normal(n) for r in rows]
    return np.stack(rows).astype(np.float32)


def ggml_quantize(libdir, x, tname):
    import ctypes
    lib = ctypes.CDLL(os.path.join(libdir, "libggml-base.so"))
    lib.ggml_quantize_chunk.restype = ctypes.c_size_t
    lib.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                        ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
    blk, bs = QUANT_BYTES[tname]
    nrows, n = x.shape
    out = np.zeros(nrows * (n // blk) * bs, np.uint8)
    xs = np.ascontiguousarray(x, np.float32)
    lib.ggml_quantize_chunk(QUANT_TYPES[tname], xs.ctypes.data, out.ctypes.data, 0, nrows, n, None)
    return out.tobytes()


def write_quant_golden(interop_venv):
    import glob
    libs = glob.glob(os.path.join(interop_venv, "lib", "python*", "site-packages", "llama_cpp", "lib"))
    if not libs:
        print("no llama_cpp in", interop_venv, "- skipping quant goldens")
        return
    d = os.path.join(FIXTURES, "quant")
    os.makedirs(d, exist_ok=True)
    x = quant_rows()
    x.tofile(os.path.join(d, "input_f32.bin"))
    for t in QUANT_TYPES:
        with open(os.path.join(d, t.lower() + ".bin"), "wb") as f:
            f.write(ggml_quantize(libs[0], x, t))
    with open(os.path.join(d, "meta.json"), "w") as f:
        json.dump({"rows": int(x.shape[0]), "cols": int(x.shape[1]), "types": list(QUANT_TYPES)}, f)
    print("quant goldens ->", d)


# ---- PEFT references (torch) -------------------------------------------------------------------

def peft_logits(base_dir, adapter_dir, tokens):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    model = PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
    model.eval()
    with torch.no_grad():
        return model(torch.tensor([tokens])).logits[0].float().numpy()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ftune", default=os.path.join(ROOT, "build", "ftune"))
    ap.add_argument("--interop-venv", default=os.path.join(os.path.expanduser("~"), ".cache", "ftune-interop-venv"))
    ap.add_argument("--only", default=None)
    a = ap.parse_args()
    import peft
    import torch
    import transformers
    versions = {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
                "numpy": np.__version__}
    os.makedirs(FIXTURES, exist_ok=True)
    work = tempfile.mkdtemp(prefix="ftune-export-golden-")
    for name in MODELS:
        if a.only and name != a.only:
            continue
        base = make_model(name, os.path.join(work, name, "base"))
        adapter = make_adapter(name, base, os.path.join(work, name, "adapter"))
        toks, subset = fixed_tokens(name, base)
        logits = peft_logits(base, adapter, toks)
        keep = logits if subset is None else logits[:, subset]
        d = os.path.join(FIXTURES, name)
        os.makedirs(d, exist_ok=True)
        keep.astype(np.float32).tofile(os.path.join(d, "ref_logits.bin"))
        with open(os.path.join(d, "ref.json"), "w") as f:
            json.dump({"tokens": toks, "subset": subset, "shape": list(keep.shape), "versions": versions,
                       "what": "PEFT merge_and_unload() of the seeded adapter on the seeded base, FP32 logits"}, f)
        print(name, "ref logits", keep.shape)
    # PEFT loads our PEFT export; its logits vs ftune's forward of the merged checkpoint
    if os.path.exists(a.ftune) and (not a.only or a.only == "stories"):
        base = make_model("stories", None)
        adapter = make_adapter("stories", base, os.path.join(work, "stories", "adapter"))
        out = os.path.join(work, "peft_export")
        subprocess.run([a.ftune, "export", adapter, "--format", "peft", "--out", out], check=True)
        merged = os.path.join(work, "merged_st")
        subprocess.run([a.ftune, "merge", "--base", base, "--adapter", out, "--type", "safetensors", "--out", merged],
                       check=True)
        toks, _ = fixed_tokens("stories", base)
        ref = peft_logits(base, out, toks)
        tokf = os.path.join(work, "toks.txt")
        with open(tokf, "w") as f:
            f.write(" ".join(map(str, toks)) + "\n")
        dump = os.path.join(work, "ours.bin")
        subprocess.run([a.ftune, "eval", "--model", merged, "--tokens", tokf, "--dump-logits", dump], check=True)
        ours = np.fromfile(dump, np.float32).reshape(ref.shape)
        rel = float(np.linalg.norm(ours - ref) / np.linalg.norm(ref))
        with open(os.path.join(FIXTURES, "peft_check.json"), "w") as f:
            json.dump({"rel_l2": rel, "tol": 1e-4, "versions": versions,
                       "what": "PeftModel.from_pretrained(our --format peft export) merged, FP32 logits, vs "
                               "`ftune eval --dump-logits` on `ftune merge --type safetensors` of the same export"}, f)
        print("PEFT loads our export: rel %.3g" % rel)
        assert rel <= 1e-4, rel
    # the small PEFT adapter of the CLI tests (tests/cli/export.sh): rsLoRA on q/v of stories260K,
    # base_model_name_or_path relative to the adapter directory
    small = os.path.join(FIXTURES, "stories_adapter")
    make_adapter("stories", make_model("stories", None), small, seed=5, base_name="../../../../models/stories260K",
                 spec=dict(r=4, alpha=8, rslora=True, targets=["q_proj", "v_proj"]))
    write_quant_golden(a.interop_venv)
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
