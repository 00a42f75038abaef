#!/usr/bin/env python3
"""Forward / loss goldens for tiny random models of every supported architecture (+ their NF4 QLoRA forward).

Makes tests/fixtures/forward/<case>/ for the cases in CASES below.  Every case has:
  config.json            as transformers 5 writes it (`rope_parameters` form), except llama_gqa4 whose
                         config.json is rewritten by hand into the transformers-4 form (top-level `rope_theta`
                         + `rope_scaling`); the untouched v5 file is kept beside it as config_v5.json.
  model.safetensors      float32 weights from save_pretrained (mistral: sharded model-0000N-of-0000M.safetensors
                         + model.safetensors.index.json; qwen3: weights stored as BF16)
  tokens.txt             2 lines x T=24 space-separated token ids
  logits.bin             float32 little-endian [2, 24, V] (C order: seq, position, vocab) from the model
                         reloaded from this directory in float32 with eager attention (bf16 case: the bf16
                         weights upcast to float32, math in float32)
  loss.json              mean next-token cross-entropy (nats) over all 2*(T-1) predicted positions, plus
                         per-sequence means, shapes and file names
  logits_nf4.bin, loss_nf4.json
                         the same forward after replacing every q/k/v/o/gate/up/down weight W by
                         bnb dequantize_4bit(quantize_4bit(W, quant_type="nf4", blocksize=64,
                         compress_statistics=True)) (CPU, float32 in/out; W flattened row-major [out, in]).
                         Embeddings, norms, biases and lm_head stay unquantized.  The per-case seeds were picked
                         (and the script asserts) so that bnb 0.50's approximate CPU search for the nested absmax
                         codes agrees with the exact nearest code in every block (see tests/fixtures/nf4/meta.json):
                         an exact-nearest C implementation should match these NF4 logits to float32 roundoff.
Weights: seeded torch.Generator per case; linear weights and embeddings N(0, 1/fan_in) (embedding: 1/hidden), every RMSNorm
weight (incl. Qwen3 q_norm/k_norm) U(0.5, 1.5), Qwen2 q/k/v biases N(0, 0.5^2).

Deterministic; re-run:  /work/venv/bin/python tests/ref/make_forward_golden.py   (CPU only, ~10 s)
"""
import json
import math
import os
import shutil
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
OUT = os.path.join(REPO, "tests", "fixtures", "forward")
B, T = 2, 24
QUANT_SUFFIXES = ("q_proj.weight", "k_proj.weight", "v_proj.weight", "o_proj.weight",
                  "gate_proj.weight", "up_proj.weight", "down_proj.weight")

COMMON = dict(vocab_size=256, hidden_size=64, num_hidden_layers=2, hidden_act="silu",
              bos_token_id=1, eos_token_id=2)
CASES = {
    # GQA 4:1, untied, Llama-3.1-style rope scaling; head_dim 8 with theta 5000 puts the 4 frequencies in all
    # three llama3 branches (kept, smoothed, divided by factor; asserted).  config.json is rewritten into the
    # v4 form.
    "llama_gqa4": dict(arch="llama", seed=102, v4_config=True, cfg=dict(
        COMMON, intermediate_size=96, num_attention_heads=4, num_key_value_heads=1, head_dim=8,
        max_position_embeddings=1024, rms_norm_eps=1e-5, tie_word_embeddings=False,
        rope_parameters={"rope_type": "llama3", "rope_theta": 5000.0, "factor": 8.0, "low_freq_factor": 1.0,
                         "high_freq_factor": 4.0, "original_max_position_embeddings": 64})),
    # MHA (1:1), tied embeddings, explicit head_dim 12 != hidden/heads (64/4 = 16)
    "llama_mha_tied": dict(arch="llama", seed=108, cfg=dict(
        COMMON, intermediate_size=96, num_attention_heads=4, num_key_value_heads=4, head_dim=12,
        max_position_embeddings=256, rms_norm_eps=1e-6, tie_word_embeddings=True,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0})),
    # GQA 2:1, head_dim 8 (heads*head_dim = 32 != hidden, like Mistral-Nemo); several safetensors shards + index
    "mistral": dict(arch="mistral", seed=105, max_shard_size="100KB", cfg=dict(
        COMMON, intermediate_size=96, num_attention_heads=4, num_key_value_heads=2, head_dim=8,
        max_position_embeddings=512, rms_norm_eps=1e-5, tie_word_embeddings=False, sliding_window=None,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0})),
    # q/k/v biases (always present in Qwen2), non-zero; tied like Qwen2.5 <= 3B
    "qwen2": dict(arch="qwen2", seed=112, cfg=dict(
        COMMON, intermediate_size=96, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=512, rms_norm_eps=1e-6, tie_word_embeddings=True,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}, bos_token_id=None)),
    # q_norm/k_norm, heads*head_dim (4*32 = 128) != hidden (64), tied; weights saved as BF16
    "qwen3": dict(arch="qwen3", seed=106, bf16=True, cfg=dict(
        COMMON, intermediate_size=96, num_attention_heads=4, num_key_value_heads=2, head_dim=32,
        max_position_embeddings=512, rms_norm_eps=1e-6, tie_word_embeddings=True,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}, bos_token_id=None)),
    # Mistral Small 3.1/3.2's layout: Mistral3ForConditionalGeneration, the text model (a Mistral, untied,
    # head_dim 16 with 4 heads != hidden 64, rope theta 1e9) under text_config and language_model.*, beside a
    # Pixtral vision tower and projector that text-only input never runs (ftune does not load them)
    "mistral3": dict(arch="mistral3", seed=122, cfg=dict(
        tie_word_embeddings=False, image_token_index=10, spatial_merge_size=2,
        text_config=dict(COMMON, model_type="mistral", intermediate_size=96, num_attention_heads=4,
                         num_key_value_heads=2, head_dim=16, max_position_embeddings=512, rms_norm_eps=1e-5,
                         tie_word_embeddings=False, sliding_window=None,
                         rope_parameters={"rope_type": "default", "rope_theta": 1e9}),
        vision_config=dict(model_type="pixtral", hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                           num_attention_heads=2, head_dim=16, image_size=32, patch_size=16))),
}


def config_class(arch):
    from transformers import LlamaConfig, Mistral3Config, MistralConfig, Qwen2Config, Qwen3Config
    return {"llama": LlamaConfig, "mistral": MistralConfig, "qwen2": Qwen2Config, "qwen3": Qwen3Config,
            "mistral3": Mistral3Config}[arch]


def model_class(arch):
    """The class transformers builds for the arch (a vision-language wrapper is not an AutoModelForCausalLM)."""
    from transformers import AutoModelForCausalLM, Mistral3ForConditionalGeneration
    return Mistral3ForConditionalGeneration if arch == "mistral3" else AutoModelForCausalLM


def randomize(model, gen):
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if name.endswith("norm.weight"):
                v = torch.rand(p.shape, generator=gen) + 0.5
            elif name.endswith(".bias"):
                v = torch.randn(p.shape, generator=gen) * 0.5
            elif p.dim() == 1:   # the vision tower's other 1-D parameters (mistral3; never read by ftune)
                v = torch.rand(p.shape, generator=gen) + 0.5
            elif "embed_tokens" in name:
                v = torch.randn(p.shape, generator=gen) / math.sqrt(p.shape[1])
            else:
                v = torch.randn(p.shape, generator=gen) / math.sqrt(p.shape[1])
            p.copy_(v)


def forward_loss(model, toks):
    with torch.no_grad():
        logits = model(torch.tensor(toks)).logits.float()
    lp = torch.log_softmax(logits[:, :-1].double(), dim=-1)
    tgt = torch.tensor(toks)[:, 1:]
    nll = -lp.gather(-1, tgt.unsqueeze(-1)).squeeze(-1)          # [B, T-1], float64 from float32 logits
    return logits, float(nll.mean()), [float(r) for r in nll.mean(dim=1)]


def quantize_linears(model, nearest=False):
    """Replace q/k/v/o/gate/up/down weights by their bnb NF4 (double-quant) round trip.
    nearest=True redoes the nested absmax step with the exact nearest code (numpy, see make_nf4_golden.py).
    Returns the number of nested codes where bnb's CPU search differs from the exact nearest code."""
    import bitsandbytes.functional as F
    sys.path.insert(0, HERE)
    from make_nf4_golden import numpy_reference
    ndiff = 0
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not name.endswith(QUANT_SUFFIXES) or "vision_tower" in name:   # (mistral3: text model only)
                continue
            # Quantize the flattened weight: NF4 blocks run over the row-major flattening anyway, and bnb
            # 0.50.2's native CPU dequantize_4bit mis-assigns absmax when a 2-D weight's last dim is not a
            # multiple of 64 (e.g. down_proj [64, 96]); the 1-D path is correct (checked below).
            w = p.detach().float().contiguous().reshape(-1)
            q, st = F.quantize_4bit(w, blocksize=64, compress_statistics=True, quant_type="nf4")
            deq = F.dequantize_4bit(q, st).float().reshape(-1)
            mine = numpy_reference(w.numpy(), st.code.numpy(), st.state2.code.numpy(), st.offset.item(),
                                   qabsmax=st.absmax.numpy())
            assert np.array_equal(mine["dequant"], deq.numpy()), f"{name}: bnb dequant != numpy"
            near = numpy_reference(w.numpy(), st.code.numpy(), st.state2.code.numpy(), st.offset.item())
            ndiff += int(np.count_nonzero(near["qabsmax"] != st.absmax.numpy()))
            if nearest:
                deq = torch.from_numpy(near["dequant"]).reshape(w.shape)
            p.copy_(deq.reshape(p.shape))
    return ndiff


def to_v4_config(path):
    """Rewrite a transformers-5 config.json (rope_parameters) into the v4 form (rope_theta + rope_scaling)."""
    cfg = json.load(open(path))
    rp = cfg.pop("rope_parameters")
    cfg["rope_theta"] = rp.pop("rope_theta")
    cfg["rope_scaling"] = rp if rp.get("rope_type", "default") != "default" else None
    cfg["torch_dtype"] = cfg.pop("dtype")          # v4 name of the field
    cfg["transformers_version"] = "4.46.0"        # marks the hand-written v4 form
    json.dump(cfg, open(path, "w"), indent=2, sort_keys=True)


def make_case(name, spec, versions):
    AutoModelForCausalLM = model_class(spec["arch"])
    d = os.path.join(OUT, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    gen = torch.Generator().manual_seed(spec["seed"])
    cfg = config_class(spec["arch"])(**spec["cfg"])
    if spec["arch"] == "mistral3":
        model = AutoModelForCausalLM._from_config(cfg, attn_implementation="eager", dtype=torch.float32).eval()
    else:
        model = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager", dtype=torch.float32).eval()
    randomize(model, gen)
    if spec.get("bf16"):
        model = model.to(torch.bfloat16)
    model.save_pretrained(d, max_shard_size=spec.get("max_shard_size", "50GB"))
    if spec.get("v4_config"):
        shutil.copy(os.path.join(d, "config.json"), os.path.join(d, "config_v5.json"))
        to_v4_config(os.path.join(d, "config.json"))
    V = cfg.get_text_config().vocab_size
    toks = torch.randint(0, V, (B, T), generator=gen).tolist()
    with open(os.path.join(d, "tokens.txt"), "w") as f:
        for row in toks:
            f.write(" ".join(map(str, row)) + "\n")

    # reload from disk: the golden is what transformers computes from the saved files
    m = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="eager").eval()
    ref = model.float()
    for (n1, p1), (n2, p2) in zip(sorted(ref.state_dict().items()), sorted(m.state_dict().items())):
        assert n1 == n2 and torch.equal(p1, p2), f"{name}: reloaded weight {n1} differs"
    rp = spec["cfg"].get("rope_parameters") or spec["cfg"]["text_config"]["rope_parameters"]
    if rp["rope_type"] == "llama3":
        hd = spec["cfg"]["head_dim"]
        base = 1.0 / rp["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd)
        wl = 2 * math.pi / base
        lw = rp["original_max_position_embeddings"] / rp["low_freq_factor"]
        hw = rp["original_max_position_embeddings"] / rp["high_freq_factor"]
        kinds = {("keep" if w < hw else "divide" if w > lw else "smooth") for w in wl.tolist()}
        assert kinds == {"keep", "divide", "smooth"}, kinds
    if spec.get("v4_config"):
        inv_ref = ref.model.rotary_emb.inv_freq
        assert torch.equal(m.model.rotary_emb.inv_freq, inv_ref), "v4 config gives different rope"
        m5 = AutoModelForCausalLM.from_config(config_class(spec["arch"]).from_json_file(
            os.path.join(d, "config_v5.json")), attn_implementation="eager", dtype=torch.float32)
        assert torch.equal(m5.model.rotary_emb.inv_freq, inv_ref)
    logits, loss, per = forward_loss(m, toks)
    if not spec.get("bf16"):   # (.to(bf16) also rounded the in-memory rotary inv_freq buffer)
        logits2, _, _ = forward_loss(ref, toks)
        assert torch.equal(logits, logits2), f"{name}: in-memory and reloaded logits differ"
    assert logits.shape == (B, T, V)
    logits.numpy().astype("<f4").tofile(os.path.join(d, "logits.bin"))
    files = sorted(f for f in os.listdir(d))
    info = {"case": name, "arch": cfg.model_type, "B": B, "T": T, "V": V,
            "logits_file": "logits.bin", "logits_layout": "float32 LE [B, T, V] C order",
            "tokens_file": "tokens.txt",
            "definition": "mean over all B*(T-1) predicted positions of -log softmax(logits[b,t])[tok[b,t+1]]",
            "loss": loss, "per_sequence": per, "n_predicted": B * (T - 1),
            "weights_dtype": "bfloat16" if spec.get("bf16") else "float32",
            "attn_implementation": "eager", "versions": versions}
    json.dump(info, open(os.path.join(d, "loss.json"), "w"), indent=2)

    # NF4 QLoRA forward (bnb CPU), plus the exact-nearest nested variant for the tolerance note
    mq = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="eager").eval()
    ndiff = quantize_linears(mq)
    if ndiff:
        raise SystemExit(f"{name}: bnb's CPU nested-absmax search differs from the exact nearest code in {ndiff} "
                         "blocks; pick another seed (the seeds in CASES were chosen so that it never does)")
    lq, lossq, perq = forward_loss(mq, toks)
    lq.numpy().astype("<f4").tofile(os.path.join(d, "logits_nf4.bin"))
    infoq = dict(info, logits_file="logits_nf4.bin", loss=lossq, per_sequence=perq,
                 quantized=list(QUANT_SUFFIXES), quantization="bnb quantize_4bit(nf4, blocksize=64, "
                 "compress_statistics=True) -> dequantize_4bit, CPU, float32 in/out, weight flattened row-major",
                 nested_codes_bnb_cpu_vs_nearest=ndiff,
                 max_abs_logit_diff_vs_fp32=float((lq - logits).abs().max()))
    json.dump(infoq, open(os.path.join(d, "loss_nf4.json"), "w"), indent=2)

    # load-back check of what was written
    back = np.fromfile(os.path.join(d, "logits.bin"), dtype="<f4").reshape(B, T, V)
    assert np.array_equal(back, logits.numpy())
    size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
    print(f"{name:15s} V={V} loss={loss:.6f} nf4={lossq:.6f} max|dlogit nf4-fp32|="
          f"{infoq['max_abs_logit_diff_vs_fp32']:.3f} files={files} {size/1024:.0f} KiB")


def main():
    import bitsandbytes, safetensors, transformers
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    versions = {"torch": torch.__version__, "transformers": transformers.__version__,
                "bitsandbytes": bitsandbytes.__version__, "safetensors": safetensors.__version__,
                "numpy": np.__version__}
    os.makedirs(OUT, exist_ok=True)
    only = sys.argv[1:] or list(CASES)
    for name in only:
        make_case(name, CASES[name], versions)


if __name__ == "__main__":
    main()
