#!/usr/bin/env python3
"""Goldens for training on an already-quantized GGUF base: tiny random models written as GGUF the way
llama.cpp's convert_hf_to_gguf.py writes them, quantized by llama.cpp itself, and transformers' logits on
gguf-py's dequantization of those exact bytes.

Makes tests/fixtures/gguf_base/<case>/ for the cases in CASES:
  model.gguf     llama.cpp's llama_model_quantize (llama-cpp-python, ftype below) of an F32 GGUF this script
                 writes with gguf-py's GGUFWriter: the HF tensors renamed as convert_hf_to_gguf.py names them,
                 Llama's q/k rows permuted (LlamaModel.permute), llama3 rope scaling as rope_freqs.weight
                 (LlamaModel.generate_extra_tensors), a byte-level BPE vocabulary trained by `tokenizers`
  tokens.txt     2 lines x T=24 space-separated token ids
  logits.bin     float32 little-endian [2, 24, V] from transformers (eager attention, float32 math) with every
                 tensor of model.gguf decoded by gguf.quants.dequantize, Llama's q/k rows permuted back, and
                 the tensors ftune keeps at 16 bits (embeddings, lm_head, norms, biases) rounded to BF16 as
                 ftune stores them; the seven linears keep the decoded values exactly (ftune decodes the
                 blocks where it uses them)
  loss.json      mean next-token cross-entropy over the 2*(T-1) predicted positions, types of the tensors,
                 and llama.cpp's own logits on model.gguf against these (rel_l2; llama.cpp quantizes
                 activations to 8 bits in its CPU products: 1.6e-2 .. 3.1e-2; with q/k rows left in the
                 file's order, llama_q4_0 gives 0.66)
  tokenizer.json the vocabulary as `tokenizers` saved it (the GGUF's tokens and merges came from it)

Re-run (CPU, ~20 s): ~/.cache/ftune-venv/bin/python tests/ref/make_gguf_base_golden.py [CASE...]
(no CASE: every case; naming some remakes only those, leaving the others' files as they are)
It runs llama.cpp's steps with ~/.cache/ftune-interop-venv/bin/python (llama-cpp-python; FT_INTEROP_PY).
"""
import importlib.metadata
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
OUT = os.path.join(REPO, "tests", "fixtures", "gguf_base")
B, T = 2, 24
INTEROP_PY = os.environ.get("FT_INTEROP_PY", os.path.expanduser("~/.cache/ftune-interop-venv/bin/python"))

# dims: K-quants need rows of whole 256-element blocks, so hidden and intermediate are multiples of 256
COMMON = dict(hidden_size=256, intermediate_size=512, num_attention_heads=4, num_key_value_heads=2, head_dim=64,
              hidden_act="silu", max_position_embeddings=512, rms_norm_eps=1e-5)
CASES = {
    # llama3 rope scaling (original 256 puts the 32 frequencies of head_dim 64 in all three branches),
    # untied lm_head; Q4_K_M: Q4_K, with Q6_K for attn_v / ffn_down / output as llama.cpp's mix decides
    "llama_q4_k_m": dict(arch="llama", seed=201, ftype="LLAMA_FTYPE_MOSTLY_Q4_K_M", layers=2, pre="llama-bpe",
                         cfg=dict(COMMON, tie_word_embeddings=False,
                                  rope_parameters={"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0,
                                                   "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                                   "original_max_position_embeddings": 256})),
    # Qwen2: q/k/v biases, tied embeddings, Q8_0
    "qwen2_q8_0": dict(arch="qwen2", seed=202, ftype="LLAMA_FTYPE_MOSTLY_Q8_0", layers=1, pre="qwen2",
                       cfg=dict(COMMON, tie_word_embeddings=True,
                                rope_parameters={"rope_type": "default", "rope_theta": 1000000.0})),
    # Qwen3: q/k norms; Q3_K_M mixes Q3_K, Q4_K and Q5_K
    "qwen3_q3_k_m": dict(arch="qwen3", seed=203, ftype="LLAMA_FTYPE_MOSTLY_Q3_K_M", layers=1, pre="qwen2",
                         cfg=dict(COMMON, tie_word_embeddings=False,
                                  rope_parameters={"rope_type": "default", "rope_theta": 1000000.0})),
    # Llama with Q2_K (Q2_K, Q3_K, Q4_K, Q6_K) and Q5_0/Q5_1-free 32-block types covered by Q4_0 below
    "llama_q2_k": dict(arch="llama", seed=204, ftype="LLAMA_FTYPE_MOSTLY_Q2_K", layers=1, pre="llama-bpe",
                       cfg=dict(COMMON, tie_word_embeddings=False,
                                rope_parameters={"rope_type": "default", "rope_theta": 500000.0})),
    "llama_q4_0": dict(arch="llama", seed=205, ftype="LLAMA_FTYPE_MOSTLY_Q4_0", layers=1, pre="llama-bpe",
                       cfg=dict(COMMON, tie_word_embeddings=True,
                                rope_parameters={"rope_type": "default", "rope_theta": 500000.0})),
    # the IQ types that need no importance matrix (llama.cpp refuses IQ1/IQ2 without one, not these):
    # IQ4_XS (256-blocks, 6-bit sub-block scales) on an untied Llama, IQ4_NL (32-blocks) on a Qwen3
    "llama_iq4_xs": dict(arch="llama", seed=206, ftype="LLAMA_FTYPE_MOSTLY_IQ4_XS", layers=2, pre="llama-bpe",
                         cfg=dict(COMMON, tie_word_embeddings=False,
                                  rope_parameters={"rope_type": "default", "rope_theta": 500000.0})),
    "qwen3_iq4_nl": dict(arch="qwen3", seed=207, ftype="LLAMA_FTYPE_MOSTLY_IQ4_NL", layers=1, pre="qwen2",
                         cfg=dict(COMMON, tie_word_embeddings=False,
                                  rope_parameters={"rope_type": "default", "rope_theta": 1000000.0})),
}

CORPUS = ("Once upon a time there was a little robot who loved to read books about the sea. "
          "Every morning it counted the waves: one, two, three, four, five! Then it wrote 42 notes, "
          "each one shorter than the last, and sang them to the gulls. The end.\n") * 4


def train_vocab(path):
    """A byte-level BPE of 320 tokens trained on CORPUS (deterministic), plus two special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tr = trainers.BpeTrainer(vocab_size=318, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                             special_tokens=[], show_progress=False)
    tok.train_from_iterator([CORPUS], trainer=tr)
    tok.add_special_tokens(["<|begin_of_text|>", "<|end_of_text|>"])
    tok.save(path)
    j = json.load(open(path))
    vocab = j["model"]["vocab"]
    tokens = [None] * (max(vocab.values()) + 1)
    for t, i in vocab.items():
        tokens[i] = t
    for a in j["added_tokens"]:
        while len(tokens) <= a["id"]:
            tokens.append(None)
        tokens[a["id"]] = a["content"]
    assert all(t is not None for t in tokens)
    merges = [m if isinstance(m, str) else " ".join(m) for m in j["model"]["merges"]]
    types = [3 if t in ("<|begin_of_text|>", "<|end_of_text|>") else 1 for t in tokens]
    return tokens, types, merges


def hf_model(case):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM
    c = CASES[case]
    cfg = dict(c["cfg"], num_hidden_layers=c["layers"], vocab_size=320, bos_token_id=318, eos_token_id=319,
               model_type=c["arch"])
    if c["arch"] == "qwen2":
        cfg.pop("head_dim")
    config = AutoConfig.for_model(**cfg)
    config._attn_implementation = "eager"
    torch.manual_seed(c["seed"])
    model = AutoModelForCausalLM.from_config(config, torch_dtype=torch.float32).eval()
    g = torch.Generator().manual_seed(c["seed"])
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(torch.rand(p.shape, generator=g) + 0.5)
            elif name.endswith(".bias"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
            else:
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(p.shape[-1]))
    return model, config


def permute(w, n_head, n_head_kv):
    """convert_hf_to_gguf.py LlamaModel.permute"""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def unpermute(w, n_head, n_head_kv):
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def llama3_factors(rp, dim):
    """convert_hf_to_gguf.py LlamaModel.generate_extra_tensors (rope_freqs.weight)"""
    import torch
    base, factor = rp["rope_theta"], rp["factor"]
    low, high, old = rp["low_freq_factor"], rp["high_freq_factor"], rp["original_max_position_embeddings"]
    freqs = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
    lw, hw = old / low, old / high
    out = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < hw:
            out.append(1)
        elif wavelen > lw:
            out.append(factor)
        else:
            smooth = (old / wavelen - low) / (high - low)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


GGUF_NAMES = [("self_attn.q_proj", "attn_q"), ("self_attn.k_proj", "attn_k"), ("self_attn.v_proj", "attn_v"),
              ("self_attn.o_proj", "attn_output"), ("mlp.gate_proj", "ffn_gate"), ("mlp.up_proj", "ffn_up"),
              ("mlp.down_proj", "ffn_down"), ("input_layernorm", "attn_norm"),
              ("post_attention_layernorm", "ffn_norm"), ("self_attn.q_norm", "attn_q_norm"),
              ("self_attn.k_norm", "attn_k_norm")]


def gguf_name(hf):
    if hf == "model.embed_tokens.weight":
        return "token_embd.weight"
    if hf == "model.norm.weight":
        return "output_norm.weight"
    if hf == "lm_head.weight":
        return "output.weight"
    parts = hf.split(".")
    assert parts[:2] == ["model", "layers"], hf
    layer, rest = parts[2], ".".join(parts[3:])
    for h, g in GGUF_NAMES:
        if rest.startswith(h + "."):
            return f"blk.{layer}.{g}.{rest[len(h) + 1:]}"
    raise KeyError(hf)


def write_f32_gguf(case, model, config, vocab, path):
    import gguf
    c = CASES[case]
    arch = c["arch"]
    tokens, types, merges = vocab
    w = gguf.GGUFWriter(path, arch)
    w.add_name(case)
    w.add_context_length(config.max_position_embeddings)
    w.add_embedding_length(config.hidden_size)
    w.add_block_count(config.num_hidden_layers)
    w.add_feed_forward_length(config.intermediate_size)
    w.add_head_count(config.num_attention_heads)
    w.add_head_count_kv(config.num_key_value_heads)
    w.add_layer_norm_rms_eps(config.rms_norm_eps)
    rp = c["cfg"]["rope_parameters"]
    w.add_rope_freq_base(rp["rope_theta"])
    D = config.hidden_size // config.num_attention_heads if arch == "qwen2" else config.head_dim
    if arch == "llama":
        w.add_vocab_size(len(tokens))
        w.add_rope_dimension_count(D)
    if arch == "qwen3":
        w.add_key_length(D)
        w.add_value_length(D)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(c["pre"])
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(318)
    w.add_eos_token_id(319)
    w.add_add_bos_token(arch == "llama")
    H, Hkv = config.num_attention_heads, config.num_key_value_heads
    if rp["rope_type"] == "llama3":
        w.add_tensor("rope_freqs.weight", llama3_factors(rp, D))
    sd = model.state_dict()
    for hf, t in sd.items():
        if hf == "lm_head.weight" and config.tie_word_embeddings:
            continue
        a = t.detach().float().numpy().copy()
        if arch == "llama" and hf.endswith("q_proj.weight"):
            a = permute(a, H, H)
        if arch == "llama" and hf.endswith("k_proj.weight"):
            a = permute(a, H, Hkv)
        w.add_tensor(gguf_name(hf), np.ascontiguousarray(a))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def golden(case, model, config, path):
    """transformers on gguf-py's decoding of model.gguf; returns logits, loss, tensor types"""
    import gguf
    import torch
    c = CASES[case]
    r = gguf.GGUFReader(path)
    H, Hkv = config.num_attention_heads, config.num_key_value_heads
    by_gguf = {t.name: t for t in r.tensors}
    types = {}
    sd = {}
    for hf, p in model.state_dict().items():
        name = gguf_name(hf)
        if hf == "lm_head.weight" and config.tie_word_embeddings:
            name = "token_embd.weight"
        t = by_gguf[name]
        types[name] = t.tensor_type.name
        a = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32).reshape(p.shape)
        if c["arch"] == "llama" and hf.endswith("q_proj.weight"):
            a = unpermute(a, H, H)
        if c["arch"] == "llama" and hf.endswith("k_proj.weight"):
            a = unpermute(a, H, Hkv)
        x = torch.from_numpy(a.copy())
        if not any(hf.endswith(s + ".weight") for s in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                           "up_proj", "down_proj")):
            x = x.to(torch.bfloat16).float()  # kept at 16 bits by ftune
        sd[hf] = x
    model.load_state_dict(sd)
    g = torch.Generator().manual_seed(c["seed"] + 1000)
    ids = torch.randint(0, 320, (B, T), generator=g)
    with torch.no_grad():
        logits = model(ids).logits.float()
    lp = torch.log_softmax(logits[:, :-1], dim=-1)
    nll = -lp.gather(-1, ids[:, 1:, None])[..., 0]
    return ids, logits.numpy(), float(nll.mean()), types


def llamacpp(args):
    """Runs in the interop venv: quantize, or logits of token lines (a JSON command)."""
    import llama_cpp
    cmd = json.loads(args)
    if cmd["op"] == "quantize":
        p = llama_cpp.llama_model_quantize_default_params()
        p.ftype = getattr(llama_cpp, cmd["ftype"])
        p.nthread = 2
        rc = llama_cpp.llama_model_quantize(cmd["src"].encode(), cmd["dst"].encode(), p)
        assert rc == 0, rc
        print(json.dumps({"llama_cpp": llama_cpp.__version__}))
        return
    # the CPU's extra buffer types (repacked / AMX weights) crash llama-cpp-python 0.3.36 on this machine
    # kind for every quantized model with 256-wide rows: the plain CPU buffers compute the same products
    import llama_cpp.llama as llama_mod
    default_params = llama_cpp.llama_model_default_params

    def plain_params():
        p = default_params()
        p.use_extra_bufts = False
        return p
    llama_mod.llama_cpp.llama_model_default_params = plain_params
    out = []
    for seq in cmd["ids"]:  # as tests/ref/interop_llamacpp.py: one context per sequence, n_batch <= n_ctx
        llm = llama_cpp.Llama(model_path=cmd["model"], n_ctx=64, n_batch=64, logits_all=True, verbose=False,
                              n_threads=2)
        llm.eval(seq)
        out.append(np.asarray(llm.scores[:len(seq)], dtype=np.float32).tolist())
    print(json.dumps({"logits": out}))


def main(only):
    import gguf
    import tokenizers
    import torch
    import transformers
    os.makedirs(OUT, exist_ok=True)
    tmp = tempfile.mkdtemp()
    try:
        vocab_path = os.path.join(tmp, "tokenizer.json")
        vocab = train_vocab(vocab_path)
        assert len(vocab[0]) == 320, len(vocab[0])
        for case in only or CASES:
            d = os.path.join(OUT, case)
            os.makedirs(d, exist_ok=True)
            model, config = hf_model(case)
            f32 = os.path.join(tmp, case + "-f32.gguf")
            write_f32_gguf(case, model, config, vocab, f32)
            q = subprocess.run([INTEROP_PY, __file__, "--llamacpp", json.dumps(
                {"op": "quantize", "src": f32, "dst": os.path.join(d, "model.gguf"), "ftype": CASES[case]["ftype"]})],
                check=True, capture_output=True, text=True)
            lcpp_version = json.loads(q.stdout.strip().splitlines()[-1])["llama_cpp"]
            ids, logits, loss, types = golden(case, model, config, os.path.join(d, "model.gguf"))
            lc = subprocess.run([INTEROP_PY, __file__, "--llamacpp", json.dumps(
                {"op": "logits", "model": os.path.join(d, "model.gguf"), "ids": ids.tolist()})],
                check=True, capture_output=True, text=True)
            ll = np.array(json.loads(lc.stdout.strip().splitlines()[-1])["logits"], dtype=np.float32)
            rel = float(np.linalg.norm(ll - logits) / np.linalg.norm(logits))
            assert rel < 0.05, (case, rel)  # llama.cpp reads the same rows the same way
            with open(os.path.join(d, "tokens.txt"), "w") as f:
                for row in ids.tolist():
                    f.write(" ".join(map(str, row)) + "\n")
            logits.astype("<f4").tofile(os.path.join(d, "logits.bin"))
            shutil.copy(vocab_path, os.path.join(d, "tokenizer.json"))
            counts = {}
            for v in types.values():
                counts[v] = counts.get(v, 0) + 1
            meta = {"loss": loss, "shape": [B, T, 320], "ftype": CASES[case]["ftype"], "tensor_types": counts,
                    "llamacpp_logits_rel_l2": rel,
                    "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                                 "gguf": importlib.metadata.version("gguf"), "tokenizers": tokenizers.__version__,
                                 "llama_cpp_python": lcpp_version}}
            json.dump(meta, open(os.path.join(d, "loss.json"), "w"), indent=1)
            print(case, "loss %.6f" % loss, counts, "llama.cpp rel_l2 %.2e" % rel)
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--llamacpp":
        llamacpp(sys.argv[2])
    else:
        unknown = [c for c in sys.argv[1:] if c not in CASES]
        assert not unknown, f"unknown cases {unknown} (known: {list(CASES)})"
        main(sys.argv[1:])
