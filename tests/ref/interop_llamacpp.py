#!/usr/bin/env python3
"""Real llama.cpp (llama-cpp-python, built from PyPI) against ftune's GGUF files.

For each family's tiny model (llama = the trained stories260K with its SentencePiece tokenizer, and
llama3 = Llama 3 byte-level BPE + llama3 rope scaling; mistral, qwen2, qwen3: generated from a seed
by make_export_golden.py, each with a real tokenizer whose vocabulary matches):
  1. ftune writes: the base F16 GGUF (`merge` without --adapter), the LoRA adapter GGUF (`export`,
     plus its Ollama Modelfile), and the merged GGUF at F16, Q8_0, Q4_K_M, Q5_K_M and Q6_K;
  2. llama.cpp loads (a) the merged F16 GGUF and (b) the base F16 GGUF with our adapter applied
     (--lora), and its logits on fixed tokens must match PEFT's merged model in transformers
     (tests/fixtures/export/<name>/ref_logits.bin, FP32): ||d|| / ||ref|| <= 1e-3;
  3. llama.cpp's own quantizer (llama_model_quantize) quantizes our merged F16 file to Q8_0,
     Q4_K_M, Q5_K_M and Q6_K (llama_ftype 7, 15, 17, 18); read back with gguf's dequantizers, every
     tensor of our files of those types must have the type llama.cpp chose and an error (vs the F16
     values) no worse than 1.05x of llama.cpp's. The tiny models' rows are not whole 256-blocks, so
     the K types' fallbacks are what most tensors get (Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0,
     F16 for rows that are not whole 32-blocks);
  4. stories: llama.cpp's greedy tokens from our Q8_0 file equal those from the F16 file on the
     demo prompt.
  5. GGUF bases (tests/fixtures/gguf_base: tiny models llama.cpp itself quantized, --gguf-bases): an
     adapter trained by ftune on the base's own blocks, exported as a llama.cpp LoRA GGUF, and the
     base merged with it (`ftune merge`, export/merge_gguf.c) --type f32, base-f16 and base. The
     reference is llama.cpp running the base GGUF with --lora adapter.gguf; every tolerance comes from
     a measured error (gguf_base_case): llama.cpp's own activation quantization on that base
     (loss.json llamacpp_logits_rel_l2, committed) for the F32/F16 merges and for ftune's logits of
     base + adapter, and llama.cpp's own quantizer re-encoding the very same merged weights to the
     base's types (llama_model_quantize of our F32 merge) for --type base (whose moved blocks are
     ggml's fresh encoding, its unchanged blocks the base's bytes).
  6. trainable tokens (tests/fixtures/train_tokens, --train-tokens): PEFT adapters whose embedding (and
     untied lm_head) rows replace the base's, on the tiny forward models. llama.cpp on our merged F32 GGUF
     must give PEFT's merge_and_unload() logits (logits_merged.bin, 1e-5); for the untied model, llama.cpp
     on the base F32 / F16 GGUF + our adapter GGUF (the rows as rank-k token_embd / output LoRA pairs,
     export/adapter_tokens_out.c) too (1e-5 / 1e-3); for the tied one `ftune export --format gguf` refuses.
  7. DoRA (tests/fixtures/train_dora, --dora): PEFT's DoRA adapters (use_dora) on the tiny forward models. llama.cpp
     on our merged F32 GGUF (each row times mag / norm, export/adapter_dora.c; llama's q/k rows permuted with their
     magnitudes) must give PEFT's merge_and_unload() logits (merged_logits.bin, 1e-5); `ftune export --format
     gguf` refuses (llama.cpp has no per-row magnitude).
Prints each comparison and ends with "N passed, N failed" (exit 1 on any failure).
Needs: numpy, gguf, llama-cpp-python (scripts/setup-interop-venv.sh). No torch.
"""
import argparse
import ctypes
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_export_golden as G  # noqa: E402

PASS = FAIL = 0
_LOG_CB = None
DEMO_PROMPT = b"Once upon a time, there was a little girl"


def check(ok, msg):
    global PASS, FAIL
    if ok:
        PASS += 1
        print("ok   " + msg, flush=True)
    else:
        FAIL += 1
        print("FAIL " + msg, flush=True)


def run(cmd):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        print(r.stdout)
        raise RuntimeError("command failed: " + " ".join(cmd))
    return r.stdout


def llama_logits(model, tokens, lora=None, kv_f32=False):
    from llama_cpp import Llama
    kw = dict(model_path=model, n_ctx=64, logits_all=True, verbose=False, n_threads=2, n_batch=64)
    if kv_f32:  # llama.cpp keeps K/V in F16 by default, which alone costs ~1e-4
        kw.update(type_k=0, type_v=0)
    if lora:
        kw["lora_path"] = lora
    llm = Llama(**kw)
    llm.eval(tokens)
    out = np.array(llm.scores[:len(tokens)], dtype=np.float32)
    del llm
    return out


# (No text starts with whitespace: for SentencePiece models llama.cpp always adds its space prefix,
# while HF's Metaspace(prepend_scheme="first") skips it when the text already starts with a space;
# llama.cpp's own converter writes the same vocabulary, so that difference is llama.cpp's.)
TOKENIZE_TEXTS = ["Hello world, it's 2024! Once upon a time, there was a little girl named Lily.",
                  "Ünïcödé → 東京タワー; naïve café 123456789 3.14159\n\tdef f(x):\n\t\treturn x**2  \n\n",
                  "I'm SHOUTING, you're whispering... don't they'll we've"]


def llama_tokenize(model, text):
    from llama_cpp import Llama
    llm = Llama(model_path=model, vocab_only=True, verbose=False)
    ids = llm.tokenize(text.encode(), add_bos=False, special=False)
    del llm
    return ids


def ftune_tokenize(ft, tok_dir, text, work):
    f = os.path.join(work, "text.json")
    with open(f, "w", encoding="utf-8") as fh:
        json.dump([text], fh)
    return json.loads(run([ft, "tokenize", "--tokenizer", tok_dir, "--json", "--file", f]))[0]


# Mistral's Tekken pre-tokenizer (Mistral Nemo, Small 24B, Small 3.1/3.2: tokenizer.json's Split regex, as
# llama.cpp's src/llama-vocab.cpp quotes it for LLAMA_VOCAB_PRE_TYPE_TEKKEN). No Tekken tokenizer.json is
# in ../shared/assets: the Llama 3 model's tokenizer with its Split regex replaced stands in, which is what
# decides how llama.cpp splits text once our GGUF says "tekken". Case changes split words ("HelloWorld").
TEKKEN_RE = (r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?"
             r"[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|"
             r"\s+(?!\S)|\s+")


def tekken_check(ft, llama3_base, d):
    shutil.rmtree(d, ignore_errors=True)
    shutil.copytree(llama3_base, d)
    tj = os.path.join(d, "tokenizer.json")
    tok = json.load(open(tj, encoding="utf-8"))
    n = 0
    for p in tok["pre_tokenizer"]["pretokenizers"]:
        if p["type"] == "Split":
            p["pattern"]["Regex"] = TEKKEN_RE
            n += 1
    assert n == 1, "the Llama 3 tokenizer has one Split"
    json.dump(tok, open(tj, "w", encoding="utf-8"), ensure_ascii=False)
    out = os.path.join(d, "tekken-f16.gguf")
    run([ft, "merge", "--base", d, "--out", out, "--type", "f16"])
    from gguf import GGUFReader
    f = GGUFReader(out).fields["tokenizer.ggml.pre"]
    pre = bytes(f.parts[f.data[0]]).decode()
    check(pre == "tekken", f"tekken: our GGUF names the Tekken Split regex tokenizer.ggml.pre = {pre!r}")
    texts = TOKENIZE_TEXTS + ["HelloWorld CamelCaseWords XMLHttpRequest ÀÉÎôü/path/to\r\n  x"]
    same = all(llama_tokenize(out, t) == ftune_tokenize(ft, d, t, d) for t in texts)
    check(same, f"tekken: llama.cpp tokenizes {len(texts)} texts with our GGUF exactly as ftune (HF-exact) does")


def llama_greedy(model, n=24):
    from llama_cpp import Llama
    llm = Llama(model_path=model, n_ctx=128, logits_all=True, verbose=False, n_threads=2)
    toks = llm.tokenize(DEMO_PROMPT, add_bos=True)
    out = []
    llm.eval(toks)
    for _ in range(n):
        t = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        out.append(t)
        llm.eval([t])
    del llm
    return toks, out


def llama_quantize(src, dst, ftype):
    import llama_cpp
    p = llama_cpp.llama_model_quantize_default_params()
    p.ftype = ftype
    p.nthread = 2
    rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(p))
    if rc != 0:
        raise RuntimeError("llama_model_quantize failed")


def read_tensors(path):
    from gguf import GGUFReader
    from gguf.quants import dequantize
    r = GGUFReader(path)
    out = {}
    for t in r.tensors:
        out[t.name] = (int(t.tensor_type), np.asarray(dequantize(t.data, t.tensor_type), np.float32).reshape(-1))
    return out


def compare_quant(name, ours_path, f16_path, llama_path, label):
    ours, ref, lc = read_tensors(ours_path), read_tensors(f16_path), read_tensors(llama_path)
    worst, types_ok, n = 0.0, True, 0
    from gguf import GGMLQuantizationType as Q
    for k, (lt, lv) in lc.items():
        ot, ov = ours[k]
        rv = ref[k][1]
        if ot != lt:
            types_ok = False
            print(f"     {k}: ours {Q(ot).name}, llama.cpp {Q(lt).name}")
            continue
        el = np.linalg.norm(lv - rv)
        eo = np.linalg.norm(ov - rv)
        if el == 0:
            if eo > 0 and lt not in (0, 1):
                worst = max(worst, float("inf"))
            continue
        ratio = eo / el
        n += 1
        worst = max(worst, ratio)
    counts = {}
    for lt, _ in lc.values():
        counts[Q(lt).name] = counts.get(Q(lt).name, 0) + 1
    mix = ", ".join(f"{c} {t}" for t, c in sorted(counts.items()))
    check(types_ok, f"{name} {label}: every tensor has the type llama.cpp's quantizer chose ({len(lc)} tensors: {mix})")
    check(worst <= 1.05, f"{name} {label}: per-tensor error vs F16, ours / llama.cpp's quantizer: worst ratio "
                         f"{worst:.4f} over {n} quantized tensors (<= 1.05)")


GGUF_BASES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "gguf_base")
LINEAR_RE = ("attn_q.weight", "attn_k.weight", "attn_v.weight", "attn_output.weight", "ffn_gate.weight",
             "ffn_up.weight", "ffn_down.weight")
FTYPES = {"LLAMA_FTYPE_MOSTLY_Q4_K_M": 15, "LLAMA_FTYPE_MOSTLY_Q3_K_M": 12, "LLAMA_FTYPE_MOSTLY_Q2_K": 10,
          "LLAMA_FTYPE_MOSTLY_Q8_0": 7, "LLAMA_FTYPE_MOSTLY_Q4_0": 2, "LLAMA_FTYPE_MOSTLY_IQ4_XS": 30,
          "LLAMA_FTYPE_MOSTLY_IQ4_NL": 25}


def rel_l2(x, ref):
    return float(np.linalg.norm(x - ref) / np.linalg.norm(ref))


def gguf_base_case(ft, case, work):
    """Merging into a GGUF base, against llama.cpp's runtime LoRA on that base (see the module doc, 5)."""
    from gguf import GGMLQuantizationType as Q
    fx = os.path.join(GGUF_BASES, case)
    base = os.path.join(fx, "model.gguf")
    meta = json.load(open(os.path.join(fx, "loss.json")))
    noise = meta["llamacpp_logits_rel_l2"]  # llama.cpp vs float math on this very base (8-bit activations)
    seqs = [[int(t) for t in line.split()] for line in open(os.path.join(fx, "tokens.txt")) if line.strip()]
    d = os.path.join(work, "gguf-" + case)
    ad = os.path.join(d, "adapter")
    os.makedirs(ad, exist_ok=True)
    p = lambda s: os.path.join(d, s)  # noqa: E731
    # an adapter trained on the base's own blocks: 5 steps at a high rate, so that the delta is large
    # (the loss falls from ~6.3 to ~2.4) and a wrong q/k row order or scale could not hide
    run([ft, "train", "--model", base, "--tokens", os.path.join(fx, "tokens.txt"), "--steps", "5", "--lr", "1e-2",
         "--lora-r", "8", "--lora-alpha", "16", "--save", os.path.join(ad, "adapter_model.safetensors"),
         "--device", "cpu", "--threads", "2"])
    with open(os.path.join(ad, "adapter_config.json"), "w") as f:
        json.dump({"peft_type": "LORA", "r": 8, "lora_alpha": 16, "base_model_name_or_path": base,
                   "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]}, f)
    run([ft, "export", ad, "--format", "gguf", "--type", "f32", "--base", base, "--out", p("adapter.gguf")])
    for k in ("f32", "base-f16", "base"):
        run([ft, "merge", "--base", base, "--adapter", ad, "--out", p(f"merged-{k}.gguf"), "--type", k])
    # llama.cpp's own re-encoding of the same merged weights: its quantizer on our F32 merge with the
    # base's ftype (the fixture's mix came from that quantizer, so it picks the base's types wherever
    # ftune can encode them; where it cannot (Q2_K/Q3_K), ours has more bits)
    llama_quantize(p("merged-f32.gguf"), p("llama-requant.gguf"), FTYPES[meta["ftype"]])

    def logits(model, lora=None):
        return np.stack([llama_logits(model, s, lora=lora) for s in seqs])

    ref = logits(base, lora=p("adapter.gguf"))
    lb = logits(base)
    moved = rel_l2(lb, ref)
    r = {k: rel_l2(logits(p(f"merged-{k}.gguf")), ref) for k in ("f32", "base-f16", "base")}
    r_llama = rel_l2(logits(p("llama-requant.gguf")), ref)
    tol = 1.5 * noise
    check(r["f32"] <= tol, f"{case}: llama.cpp on our F32 merge vs llama.cpp on the base + --lora adapter.gguf: rel "
                           f"{r['f32']:.3e} (<= 1.5 x {noise:.3e}, llama.cpp's 8-bit activation error on this base, "
                           f"loss.json; the adapter moves the logits by {moved:.3e})")
    check(r["base-f16"] <= tol, f"{case}: --type base-f16 merge (untouched tensors copied, merged ones F16) vs base + "
                                f"--lora: rel {r['base-f16']:.3e} (<= {tol:.3e})")
    # measured 2.856e-01 (llama.cpp's re-encoding: 2.856e-01) on llama_q4_k_m, 1.677e-01 (3.954e-01:
    # llama.cpp keeps Q3_K where ours writes Q4_K) on qwen3_q3_k_m; keeping a moved block's scales
    # (tried in session 16) gave 3.070e-01 and 1.718e-01: it rounds away the part of the delta below
    # half a step, an error along the direction training moved
    check(r["base"] <= 1.25 * r_llama, f"{case}: --type base merge (merged tensors re-encoded to the base's types) vs "
                                       f"base + --lora: rel {r['base']:.3e}; llama.cpp's quantizer re-encoding the same "
                                       f"merged weights: {r_llama:.3e} (ours <= 1.25x)")
    # the same in weight space: each merged tensor's error against the exact merged values (our F32 merge)
    exact, ours, theirs = read_tensors(p("merged-f32.gguf")), read_tensors(p("merged-base.gguf")), \
        read_tensors(p("llama-requant.gguf"))
    worst, n, base_t, other = 0.0, 0, read_tensors(base), 0
    for name, (_, ev) in exact.items():
        if not name.endswith(LINEAR_RE):
            continue
        if Q(base_t[name][0]).name.startswith("IQ"):
            # ftune has no IQ encoder: its Q4_K / Q4_0 against llama.cpp's IQ4 re-encoding compares two
            # types (IQ4's non-linear levels fit better per bit); such a merge is judged by its logits above
            other += 1
            continue
        eo, el = np.linalg.norm(ours[name][1] - ev), np.linalg.norm(theirs[name][1] - ev)
        worst, n = max(worst, eo / el if el > 0 else (0.0 if eo == 0 else float("inf"))), n + 1
    kinds = sorted({f"{Q(base_t[k][0]).name}->{Q(ours[k][0]).name}" for k in exact if k.endswith(LINEAR_RE)})
    # ours is ggml's fresh encoding for every moved block (what llama.cpp's quantizer writes, up to the
    # last bit of a rare scale where its build fuses multiply-adds) and the base's bytes for unchanged
    # ones; Q3_K->Q4_K measured ~0.88 (a finer type than llama.cpp's Q3_K)
    if n:
        check(worst <= 1.05, f"{case}: per merged tensor, error of our re-encoding / llama.cpp's quantizer's on the "
                             f"same merged values: worst {worst:.4f} over {n} tensors ({', '.join(kinds)}) (<= 1.05)")
    if other:
        print(f"note {case}: {other} IQ-typed tensors re-encoded to another type ({', '.join(kinds)}): by logits only")
    # ftune's own logits of the base + adapter (the model as trained) against llama.cpp's with the adapter
    run([ft, "eval", "--model", base, "--adapter", ad, "--tokens", os.path.join(fx, "tokens.txt"), "--dump-logits",
         p("ftune.bin"), "--device", "cpu"])
    ours_l = np.fromfile(p("ftune.bin"), np.float32).reshape(ref.shape)
    rf = rel_l2(ours_l, ref)
    check(rf <= tol, f"{case}: ftune eval --model base.gguf --adapter vs llama.cpp base + --lora adapter.gguf: rel "
                     f"{rf:.3e} (<= {tol:.3e})")


TRAIN_TOKENS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "train_tokens")
TRAIN_DORA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "train_dora")
FORWARD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "forward")


def byte_bpe_tokenizer(path):
    """A byte-level BPE of exactly 256 ids for the forward fixtures, which have none (tests/cli/lib/tiny_bpe.py,
    as merge_arch.sh and merge_tokens.sh make it)."""
    lib = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cli", "lib", "tiny_bpe.py")
    subprocess.run([sys.executable, lib, path], check=True)


# A rank-3 token_embd pair (ids 3, 15, 60) on the tied model given as argv[1], written to argv[2], then one
# evaluation; run in a child process: llama.cpp aborts on it.
TIED_PROBE = """
import sys, numpy as np, gguf, llama_cpp
from llama_cpp import Llama
w = gguf.GGUFWriter(sys.argv[2], "llama")
w.add_string("general.type", "adapter"); w.add_string("adapter.type", "lora"); w.add_float32("adapter.lora.alpha", 3.0)
a = np.zeros((256, 3), np.float32); a[[3, 15, 60], [0, 1, 2]] = 1
w.add_tensor("token_embd.weight.lora_a", a); w.add_tensor("token_embd.weight.lora_b", np.ones((64, 3), np.float32))
w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
orig = llama_cpp.llama_model_default_params
def plain():
    p = orig(); p.use_extra_bufts = False; return p
llama_cpp.llama_model_default_params = plain
import llama_cpp.llama as lm; lm.llama_cpp.llama_model_default_params = plain
Llama(model_path=sys.argv[1], lora_path=sys.argv[2], n_ctx=64, logits_all=True, verbose=False, n_threads=2).eval([3, 15])
"""


def forward_base(case, d):
    """d/base: the forward fixture `case` with the 256-id byte-level tokenizer a GGUF needs."""
    base = os.path.join(d, "base")
    os.makedirs(base, exist_ok=True)
    for f in ("config.json", "model.safetensors"):
        shutil.copy(os.path.join(FORWARD, case, f), base)
    byte_bpe_tokenizer(os.path.join(base, "tokenizer.json"))
    return base


def train_tokens_case(ft, case, work):
    """Trainable tokens merged, and as a llama.cpp adapter, against PEFT (see the module doc, 6)."""
    tc = os.path.join(TRAIN_TOKENS, case)
    ad = os.path.join(tc, "peft_adapter")
    d = os.path.join(work, "tokens-" + case)
    base = forward_base(case, d)
    tied = json.load(open(os.path.join(base, "config.json"))).get("tie_word_embeddings", False)
    toks = [int(t) for t in open(os.path.join(tc, "tokens0.txt")).read().split()]
    ref = np.fromfile(os.path.join(tc, "logits_merged.bin"), np.float32).reshape(len(toks), -1)
    p = lambda s: os.path.join(d, s)  # noqa: E731
    run([ft, "merge", "--base", base, "--adapter", ad, "--out", p("merged-f32.gguf"), "--type", "f32"])
    r = rel_l2(llama_logits(p("merged-f32.gguf"), toks, kv_f32=True), ref)
    check(r <= 1e-5, f"tokens {case}: llama.cpp on our merged F32 GGUF (embedding{'' if tied else ' + lm_head'} rows "
                     f"replaced) vs PEFT merge_and_unload: rel {r:.3e} (<= 1e-5)")
    out = p("adapter.gguf")
    e = subprocess.run([ft, "export", ad, "--format", "gguf", "--type", "f32", "--base", base, "--out", out],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if tied:
        check(e.returncode == 1 and "tied model cannot go into a llama.cpp adapter" in e.stdout
              and not os.path.exists(out), f"tokens {case}: export --format gguf of a tied model's tokens refused "
                                           f"(exit {e.returncode}), nothing written")
        # why: a token_embd pair on a tied model is also looked up for the output matmul (model.output IS
        # token_embd.weight), where its shapes cannot fit; measured with 0.3.36: GGML_ASSERT(ggml_can_mul_mat)
        # in build_lora_mm, the process aborts. A note, not a check: if llama.cpp learns it, revisit the refusal.
        run([ft, "merge", "--base", base, "--out", p("base-f32.gguf"), "--type", "f32"])
        probe = subprocess.run([sys.executable, "-c", TIED_PROBE, p("base-f32.gguf"), p("tied-pair.gguf")],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        print(f"note tokens {case}: llama.cpp with a token_embd LoRA pair on a tied model: "
              + ("aborts (" + next((ln.strip() for ln in probe.stdout.splitlines() if "GGML_ASSERT" in ln), "exit %d"
                                   % probe.returncode)[-60:] + ")" if probe.returncode != 0
                 else "RUNS: revisit export/adapter_tokens_out.c's refusal"), flush=True)
        return
    if e.returncode != 0:
        print(e.stdout)
        check(False, f"tokens {case}: export --format gguf")
        return
    # F16: the tolerance is llama.cpp's own F16 error on this model (our merged F16 GGUF vs PEFT), with room
    # for the replaced rows' own: llama.cpp adds new - base to the F16-rounded base rows
    run([ft, "merge", "--base", base, "--adapter", ad, "--out", p("merged-f16.gguf"), "--type", "f16"])
    f16_noise = rel_l2(llama_logits(p("merged-f16.gguf"), toks), ref)
    for t, tol, why in (("f32", 1e-5, "1e-5"), ("f16", max(1e-3, 1.5 * f16_noise),
                                                 f"1.5 x {f16_noise:.3e}, llama.cpp on our merged F16 GGUF")):
        run([ft, "merge", "--base", base, "--out", p(f"base-{t}.gguf"), "--type", t])
        if t == "f32":  # how far the adapter moves the logits: what a dropped pair would leave
            moved = rel_l2(llama_logits(p("base-f32.gguf"), toks, kv_f32=True), ref)
        r = rel_l2(llama_logits(p(f"base-{t}.gguf"), toks, lora=out, kv_f32=t == "f32"), ref)
        check(r <= tol, f"tokens {case}: llama.cpp on our base {t.upper()} GGUF + our adapter GGUF (token_embd / output "
                        f"pairs) vs PEFT merge_and_unload: rel {r:.3e} (<= {why}; base alone vs PEFT: {moved:.3e})")


def dora_case(ft, case, work):
    """A DoRA adapter merged (llama.cpp runs it) and refused as a llama.cpp adapter (see the module doc, 7)."""
    tc = os.path.join(TRAIN_DORA, case)
    ad = os.path.join(tc, "peft_adapter")
    d = os.path.join(work, "dora-" + case)
    base = forward_base(case, d)
    toks = [int(t) for t in open(os.path.join(tc, "tokens0.txt")).read().split()]
    ref = np.fromfile(os.path.join(tc, "merged_logits.bin"), np.float32).reshape(len(toks), -1)
    p = lambda s: os.path.join(d, s)  # noqa: E731
    run([ft, "merge", "--base", base, "--out", p("base-f32.gguf"), "--type", "f32"])
    moved = rel_l2(llama_logits(p("base-f32.gguf"), toks, kv_f32=True), ref)
    run([ft, "merge", "--base", base, "--adapter", ad, "--out", p("merged-f32.gguf"), "--type", "f32"])
    r = rel_l2(llama_logits(p("merged-f32.gguf"), toks, kv_f32=True), ref)
    check(r <= 1e-5, f"dora {case}: llama.cpp on our merged F32 GGUF vs PEFT merge_and_unload: rel {r:.3e} (<= 1e-5; "
                     f"base alone vs PEFT: {moved:.3e})")
    out = p("adapter.gguf")
    e = subprocess.run([ft, "export", ad, "--format", "gguf", "--base", base, "--out", out],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    check(e.returncode == 1 and "DoRA adapter" in e.stdout and "ftune merge" in e.stdout and not os.path.exists(out),
          f"dora {case}: export --format gguf refused (exit {e.returncode}), nothing written")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ftune", required=True)
    ap.add_argument("--work", default=None)
    ap.add_argument("--models", default="stories,llama3,mistral,qwen2,qwen3")
    ap.add_argument("--gguf-bases", default="llama_q4_k_m,qwen3_q3_k_m,llama_iq4_xs,qwen3_iq4_nl",
                    help="tests/fixtures/gguf_base cases merged into their own types (empty: none)")
    ap.add_argument("--train-tokens", default="llama_gqa4,llama_mha_tied",
                    help="tests/fixtures/train_tokens cases: trainable tokens merged and as an adapter (empty: none)")
    ap.add_argument("--dora", default="llama_gqa4,qwen2",
                    help="tests/fixtures/train_dora cases: DoRA adapters merged (empty: none)")
    a = ap.parse_args()
    import llama_cpp
    print("llama-cpp-python", llama_cpp.__version__, flush=True)
    global _LOG_CB  # keep the callback alive: llama.cpp's own log lines are silenced
    _LOG_CB = llama_cpp.llama_log_callback(lambda level, text, user: None)
    llama_cpp.llama_log_set(_LOG_CB, ctypes.c_void_p(0))
    # llama.cpp's extra CPU buffer types (AMX / repacked weights) crash this build on tiny Q8_0
    # models on AMX-capable CPUs: llama.cpp's own Q8_0 file of stories260K segfaults the same way.
    # Plain CPU buffers compute the same math; turn the extras off for every load.
    orig = llama_cpp.llama_model_default_params

    def plain_bufts():
        p = orig()
        p.use_extra_bufts = False
        return p
    llama_cpp.llama_model_default_params = plain_bufts
    import llama_cpp.llama as llama_mod
    llama_mod.llama_cpp.llama_model_default_params = plain_bufts
    work = a.work or tempfile.mkdtemp(prefix="ftune-interop-")
    ft = a.ftune
    t0 = time.time()
    for name in [m for m in a.models.split(",") if m]:
        t1 = time.time()
        d = os.path.join(work, name)
        os.makedirs(d, exist_ok=True)
        base = G.make_model(name, os.path.join(d, "base"))
        adapter = G.make_adapter(name, base, os.path.join(d, "adapter"))
        fx = os.path.join(G.FIXTURES, name)
        with open(os.path.join(fx, "ref.json")) as f:
            meta = json.load(f)
        ref = np.fromfile(os.path.join(fx, "ref_logits.bin"), np.float32).reshape(meta["shape"])
        toks, subset = G.fixed_tokens(name, base)
        assert toks == meta["tokens"], "generator drifted from the committed reference"
        p = lambda s: os.path.join(d, s)  # noqa: E731
        run([ft, "export", adapter, "--format", "gguf", "--type", "f32", "--out", p("adapter.gguf"), "--ollama",
             "--ollama-from", "./base-f16.gguf"])
        run([ft, "merge", "--base", base, "--out", p("base-f16.gguf"), "--type", "f16"])
        for t in ("f32", "f16", "q8_0", "q4_k_m", "q5_k_m", "q6_k"):
            run([ft, "merge", "--base", base, "--adapter", adapter, "--out", p(f"merged-{t}.gguf"), "--type", t])

        def rel(x):
            x = x if subset is None else x[:, subset]
            return float(np.linalg.norm(x - ref) / np.linalg.norm(ref))

        if os.path.exists(os.path.join(base, "tokenizer.json")):
            same = all(llama_tokenize(p("base-f16.gguf"), t) == ftune_tokenize(ft, base, t, d) for t in TOKENIZE_TEXTS)
            check(same, f"{name}: llama.cpp tokenizes {len(TOKENIZE_TEXTS)} texts with our GGUF vocabulary exactly as "
                        f"the Hugging Face tokenizer does (ftune tokenize, HF-exact)")
        r = rel(llama_logits(p("merged-f32.gguf"), toks, kv_f32=True))
        check(r <= 1e-5, f"{name}: llama.cpp on our merged F32 GGUF (F32 KV cache) vs PEFT merged (transformers "
                         f"FP32): rel {r:.3e} (<= 1e-5: the conversion itself is exact)")
        r = rel(llama_logits(p("merged-f16.gguf"), toks))
        check(r <= 1e-3, f"{name}: llama.cpp on our merged F16 GGUF vs PEFT merged (transformers FP32): "
                         f"rel {r:.3e} over {ref.size} logits (<= 1e-3)")
        r = rel(llama_logits(p("base-f16.gguf"), toks, lora=p("adapter.gguf")))
        check(r <= 1e-3, f"{name}: llama.cpp on our base F16 GGUF + our adapter GGUF (--lora) vs PEFT merged: "
                         f"rel {r:.3e} (<= 1e-3)")
        if name == "stories":
            for t, tol in (("f16", 1e-3), ("q8_0", 1e-2)):
                run([ft, "export", adapter, "--format", "gguf", "--type", t, "--out", p(f"adapter-{t}.gguf")])
                r = rel(llama_logits(p("base-f16.gguf"), toks, lora=p(f"adapter-{t}.gguf")))
                check(r <= tol, f"{name}: base F16 + adapter GGUF at {t.upper()}: rel {r:.3e} (<= {tol:g})")
        # llama.cpp's quantizer on our merged F16 file
        # (llama_ftype: MOSTLY_Q8_0 7, Q4_K_M 15, Q5_K_M 17, Q6_K 18)
        quants = (("q8_0", 7), ("q4_k_m", 15), ("q5_k_m", 17), ("q6_k", 18))
        rels = []
        for t, ftype in quants:
            llama_quantize(p("merged-f16.gguf"), p(f"llama-{t}.gguf"), ftype)
            compare_quant(name, p(f"merged-{t}.gguf"), p("merged-f16.gguf"), p(f"llama-{t}.gguf"), t.upper())
            rels.append(rel(llama_logits(p(f"merged-{t}.gguf"), toks)))
        print(f"note {name}: llama.cpp logits of our {' / '.join(t.upper() for t, _ in quants)} merged GGUF vs PEFT "
              f"(FP32): rel {' / '.join(f'{r:.3e}' for r in rels)}")
        if name == "stories":
            pt, g16 = llama_greedy(p("merged-f16.gguf"))
            _, g8 = llama_greedy(p("merged-q8_0.gguf"))
            check(g16 == g8, f"{name}: llama.cpp greedy tokens from our Q8_0 == F16 on the demo prompt "
                             f"({len(pt)} prompt tokens, {len(g16)} generated: {g16[:8]}...)")
        print(f"     {name}: {time.time() - t1:.1f}s", flush=True)
        if name == "llama3":
            tekken_check(ft, os.path.join(d, "base"), os.path.join(work, "tekken"))
    for case in [c for c in a.gguf_bases.split(",") if c]:
        t1 = time.time()
        gguf_base_case(ft, case, work)
        print(f"     gguf base {case}: {time.time() - t1:.1f}s", flush=True)
    for case in [c for c in a.train_tokens.split(",") if c]:
        t1 = time.time()
        train_tokens_case(ft, case, work)
        print(f"     trainable tokens {case}: {time.time() - t1:.1f}s", flush=True)
    for case in [c for c in a.dora.split(",") if c]:
        t1 = time.time()
        dora_case(ft, case, work)
        print(f"     dora {case}: {time.time() - t1:.1f}s", flush=True)
    print(f"interop total {time.time() - t0:.1f}s")
    print(f"{PASS} passed, {FAIL} failed")
    return 1 if FAIL else 0


if __name__ == "__main__":
    sys.exit(main())
