#!/usr/bin/env python3
"""DoRA (PEFT LoraConfig(use_dora=True)) training goldens: first-step gradients (A, B and the magnitudes), a 20-step
AdamW curve, PEFT's saved adapter and the trained / merged logits, for an untied model without biases and a model
with q/k/v biases.

Everything is make_train_golden.py's setup (imported from it, not copied): the tiny models of
tests/fixtures/forward/<case>/, the 4 sequences of tests/fixtures/train/<case>/tokens.txt, the LoRA A/B initial values
of tests/fixtures/train/<case>/lora_init.safetensors (r 4, alpha 8, scale 2, q/k/v/o/gate/up/down of every layer),
the same first-step micro-batch and the same 20-step AdamW / cosine / clip / accumulation curve, float32 eager,
dropout 0.  The only difference: LoraConfig(..., use_dora=True).  PEFT's DoRA (peft/tuners/lora/dora.py
DoraLinearLayer, variants.py DoraLinearVariant) computes, per targeted linear W [out, in] (bias b or none):
    y = x W^T + b + (m / wn - 1) (x W^T) + (m / wn) s (x A^T) B^T  =  (m / wn) (x W^T + s x A^T B^T) + b
    wn[o] = || W[o,:] + s (B A)[o,:] ||_2, recomputed from the current A, B in every forward and DETACHED (no
    gradient through it, DoRA paper sec. 4.3); m = lora_magnitude_vector [out], trained.
The bias is NOT scaled by m / wn (PEFT subtracts it from the base result before scaling; asserted below against a
hand-written formula on every module of layer 0 in float64).

Cases: llama_gqa4 (untied lm_head, no biases), qwen2 (q/k/v biases, tied embeddings; DoRA touches only the linears),
qwen3 (q/k-norm: ftune's backward takes q's and k's magnitude gradient from their outputs before the norm).

Magnitudes.  PEFT sets lora_magnitude_vector = ||W + s B A|| row-wise when the adapter is created (B = 0 then, so
= ||W||), and loading A/B afterwards does not recompute it.  To make the goldens unambiguous and sensitive to m / wn,
every magnitude is set explicitly, away from the norm:
    m[o] = || W[o,:] + s (B A)[o,:] ||_2 * (1 + 0.1 u[o])       (norm in float64 of the f32 W, A, B; m cast to f32)
    u = torch.rand(out, generator=torch.Generator().manual_seed(MAG_SEED[case]), dtype=float64) * 2 - 1, drawn
        module after module in the order layer 0..L-1, q, k, v, o, gate, up, down from ONE generator per case
and loaded with set_peft_model_state_dict (asserted: PEFT then holds exactly these values).

Writes tests/fixtures/train_dora/<case>/:
  lora_init_dora.safetensors  train/<case>/lora_init.safetensors' 28 A/B tensors (bit-identical) + the 14 magnitudes
                      base_model.model.model.layers.L.<self_attn|mlp>.<mod>.lora_magnitude_vector  F32 [out]
                      = `--lora-init` of the C test (lora.init)
  grads.safetensors   F32 d(loss)/d(param) after ONE forward/backward over the micro-batch {seq 0, seq 1} (right-padded
                      with id 0, label -100; loss = sum of the 42 token losses / 42), every A, B and magnitude under
                      get_peft_model_state_dict's key names (magnitude: `...<mod>.lora_magnitude_vector`, 1-D)
                      = `ftune train --steps 1 --micro-batch 2 --grad-accum 1 --lora-r 4 --lora-alpha 8 --dora
                      --lora-init lora_init_dora.safetensors --quant none --lr 0 --dump-grads OUT`
  grads_nf4.safetensors (llama_gqa4 only) the same with make_train_golden's NF4 base (every q/k/v/o/gate/up/down
                      weight replaced by bitsandbytes' NF4 quantize -> dequantize round trip, as train/<case>/
                      grads_nf4.safetensors): with a 4-bit base PEFT's DoRA takes W = dequantize_module_weight(base)
                      for both the base product and wn, i.e. exactly these round-trip values.  (Not run through bnb's
                      Linear4bit: bnb 0.50's CPU dequantize_4bit of a 2-D weight mis-assigns absmax when in % 64 != 0,
                      see make_forward_golden.quantize_linears.)  Same init file (its magnitudes are from the f32 W).
  curve.json          same format as train/<case>/curve.json (loss, lr, grad_norm pre-clip, targets, sequences per
                      step): torch.optim.AdamW over A, B AND the magnitudes in one group (lr 1e-3, (0.9, 0.999),
                      eps 1e-8, wd 0.01 -> the magnitudes ARE decayed, as HF Trainer would: recorded in meta.json),
                      cosine warmup 3 / 20, clip_grad_norm_(1.0) over all of them, grad accumulation 2 x micro-batch 1
                      = `ftune train --steps 20 --micro-batch 1 --grad-accum 2 --lr 1e-3 --schedule cosine --warmup 3
                      --weight-decay 0.01 --clip 1.0 --lora-r 4 --lora-alpha 8 --dora --lora-init ... --quant none`
  peft_adapter/       PEFT's save_pretrained after those 20 steps (adapter_model.safetensors: 28 A/B + 14 magnitudes,
                      trained; adapter_config.json with use_dora true; base_model_name_or_path set beforehand to
                      "../../../forward/<case>", relative to this directory; PEFT's README.md removed); asserted:
                      PeftModel.from_pretrained of it reproduces the trained logits exactly
  tokens0.txt         sequence 0 (20 ids), one line
  logits.bin          f32 [20, 256] logits of the trained PEFT model on sequence 0 (unpadded, no mask)
  merged_logits.bin   f32 [20, 256] the same after merge_and_unload() (W' = (m / wn) (W + s B A), bias unchanged),
                      f32 weights; its max difference to logits.bin is in meta.json (asserted < 1e-4)
  meta.json           settings, the magnitude rule, cross-checks, the float32-vs-float64 headroom (the same PEFT
                      computation redone in float64), the invariants the C test relies on, versions
Cross-checks (asserted, values in meta.json): the init file's A/B equal train/<case>/lora_init.safetensors; PEFT's
DoRA module output equals the hand-written formula above (float64, every module of layer 0, with/without bias); with
the magnitudes at PEFT's own norms wn the loss equals plain LoRA's (train/<case>: same A/B) and a fresh DoRA adapter
(B = 0) the base model's, both to <= 1e-6 relative (the f32 rounding of m / wn = 1: the C test's invariant (e));
the magnitude gradients equal sum_n dy[n,o] z[n,o] / wn[o] where z = x W^T + s x A^T B^T (captured with hooks, layer 0).
The script re-executes itself with PYTHONHASHSEED=0 (PEFT keeps target_modules as a set: adapter_config.json order).

Deterministic; re-run:  ~/.cache/ftune-venv/bin/python tests/ref/make_dora_golden.py [case ...]   (CPU only, ~10 s;
needs tests/fixtures/forward and tests/fixtures/train from make_forward_golden.py / make_train_golden.py)
"""
import json
import os
import shutil
import sys

import numpy as np
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_train_golden as mtg  # noqa: E402  (same models, batching, loss, gradient and curve code)

REPO = mtg.REPO
TRAIN = os.path.join(REPO, "tests", "fixtures", "train")
OUT = os.path.join(REPO, "tests", "fixtures", "train_dora")
CASES = ["llama_gqa4", "qwen2", "qwen3"]
NF4_CASES = ["llama_gqa4"]
MAG_SEED = {"llama_gqa4": 3102, "qwen2": 3112, "qwen3": 3122}
MAG_SPREAD = 0.1
MERGE_TOL = 1e-4
INVARIANT_TOL = 1e-6


def read_tokens(case):
    with open(os.path.join(TRAIN, case, "tokens.txt")) as f:
        return [[int(t) for t in line.split()] for line in f if line.strip()]


def mag_name(layer, mod):
    return f"base_model.model.model.layers.{layer}.{mtg.PATHS[mod]}.{mod}.lora_magnitude_vector"


def make_mags(case, base, init):
    """m = ||W + s B A|| row-wise (float64) * (1 + 0.1 u), u ~ U(-1, 1) from one generator per case (see the doc)."""
    gen = torch.Generator().manual_seed(MAG_SEED[case])
    s = mtg.ALPHA / mtg.R
    mags = {}
    for layer, blk in enumerate(base.model.layers):
        for mod in mtg.TARGETS:
            W = getattr(getattr(blk, mtg.PATHS[mod]), mod).weight.detach().double()
            A = init[mtg.peft_name(layer, mod, "A")].double()
            B = init[mtg.peft_name(layer, mod, "B")].double()
            wn = torch.linalg.norm(W + s * (B @ A), dim=1)
            u = torch.rand(W.shape[0], generator=gen, dtype=torch.float64) * 2 - 1
            mags[mag_name(layer, mod)] = (wn * (1 + MAG_SPREAD * u)).float()
    return mags


def param_key(n):
    """named_parameters name -> get_peft_model_state_dict key."""
    if n.endswith(".lora_magnitude_vector.default.weight"):
        return n[:-len(".default.weight")]
    return n.replace(".default.weight", ".weight")


def make_peft(case, init, dtype, nf4=False, dora=True, load=True):
    """make_train_golden.make_peft with use_dora=True; init = A/B (+ magnitudes) loaded with set_peft_model_state_dict
    (asserted exact).  params = trainable parameters under state-dict names."""
    from peft import LoraConfig, get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict
    cfg = LoraConfig(r=mtg.R, lora_alpha=mtg.ALPHA, lora_dropout=0.0, target_modules=list(mtg.TARGETS), bias="none",
                     task_type="CAUSAL_LM", use_rslora=False, use_dora=dora)
    pm = get_peft_model(mtg.load_base(case, nf4, dtype), cfg)
    if load:
        sd = get_peft_model_state_dict(pm)
        assert set(sd) == set(init), f"{case}: PEFT keys differ: {sorted(set(sd) ^ set(init))[:6]}"
        res = set_peft_model_state_dict(pm, {k: v.to(dtype) for k, v in init.items()})
        assert not res.unexpected_keys, res.unexpected_keys
        sd = get_peft_model_state_dict(pm)
        for k, v in init.items():
            assert torch.equal(sd[k], v.to(dtype)), f"{case}: {k} not loaded"
    assert pm.base_model.model.model.layers[0].self_attn.q_proj.scaling["default"] == mtg.ALPHA / mtg.R
    params = {param_key(n): p for n, p in pm.named_parameters() if p.requires_grad}
    assert set(params) == set(get_peft_model_state_dict(pm)), sorted(set(params) ^ set(get_peft_model_state_dict(pm)))
    return pm, params


def peft_norms(pm):
    """PEFT's own wn of every module at the current A/B (dora.py get_weight_norm, f32 as the forward computes it)."""
    out = {}
    for layer, blk in enumerate(pm.base_model.model.model.layers):
        for mod in mtg.TARGETS:
            lin = getattr(getattr(blk, mtg.PATHS[mod]), mod)
            dl = lin.lora_magnitude_vector["default"]
            with torch.no_grad():
                lw = dl.get_lora_weight(lora_A=lin.lora_A["default"], lora_B=lin.lora_B["default"])
                out[mag_name(layer, mod)] = dl.get_weight_norm(lin.get_base_layer().weight, lw,
                                                               lin.scaling["default"]).detach().clone()
    return out


def formula_check(case, init):
    """PEFT's DoRA module output vs (m / wn)(x W^T + s x A^T B^T) + b, float64, every module of layer 0."""
    pm, _ = make_peft(case, {k: v.double() for k, v in init.items()}, torch.float64)
    gen = torch.Generator().manual_seed(7)
    worst, with_bias = 0.0, []
    s = mtg.ALPHA / mtg.R
    blk = pm.base_model.model.model.layers[0]
    for mod in mtg.TARGETS:
        lin = getattr(getattr(blk, mtg.PATHS[mod]), mod)
        base = lin.get_base_layer()
        x = torch.randn(5, base.weight.shape[1], generator=gen, dtype=torch.float64)
        A, B = lin.lora_A["default"].weight, lin.lora_B["default"].weight
        m = lin.lora_magnitude_vector["default"].weight
        W = base.weight
        wn = torch.linalg.norm(W + s * (B @ A), dim=1)
        want = (m / wn) * (x @ W.T + s * (x @ A.T) @ B.T)
        if base.bias is not None:
            want = want + base.bias
            with_bias.append(mod)
        with torch.no_grad():
            got = lin(x)
        worst = max(worst, float((got - want).abs().max().detach() / want.abs().max().detach()))
    assert worst < 1e-12, f"{case}: PEFT DoRA vs formula {worst}"
    return {"peft_module_vs_formula_max_rel_f64": worst, "modules_with_bias": with_bias}


def mag_grad_check(case, init, seqs, grads):
    """d(loss)/dm[o] = sum_n dy[n,o] z[n,o] / wn[o], z = x W^T + s x A^T B^T (no bias), from hooks on layer 0."""
    pm, params = make_peft(case, init, torch.float32)
    s = mtg.ALPHA / mtg.R
    blk = pm.base_model.model.model.layers[0]
    store, hooks = {}, []
    for mod in mtg.TARGETS:
        lin = getattr(getattr(blk, mtg.PATHS[mod]), mod)

        def fwd(module, inp, out, mod=mod):
            store[mod] = {"x": inp[0].detach()}
            out.register_hook(lambda g, mod=mod: store[mod].__setitem__("dy", g.detach()))
        hooks.append(lin.register_forward_hook(fwd))
    mtg.first_grads(pm, params, seqs)
    for h in hooks:
        h.remove()
    worst = 0.0
    for mod in mtg.TARGETS:
        lin = getattr(getattr(blk, mtg.PATHS[mod]), mod)
        W = lin.get_base_layer().weight.detach().double()
        A, B = lin.lora_A["default"].weight.detach().double(), lin.lora_B["default"].weight.detach().double()
        x, dy = store[mod]["x"].double().reshape(-1, W.shape[1]), store[mod]["dy"].double().reshape(-1, W.shape[0])
        wn = torch.linalg.norm(W + s * (B @ A), dim=1)
        z = x @ W.T + s * (x @ A.T) @ B.T
        want = (dy * z).sum(0) / wn
        worst = max(worst, mtg.rel_l2(grads[mag_name(0, mod)], want))
    assert worst < 1e-5, f"{case}: magnitude gradient vs sum dy z / wn: {worst}"
    return worst


def invariants(case, init_ab, seqs):
    """The C test's (e): m / wn = 1 makes DoRA the plain model it wraps, up to the f32 rounding of m / wn."""
    tok, lab = mtg.batch(seqs, mtg.GRAD_ROWS)
    n = int((lab >= 0).sum())
    with torch.no_grad():
        lora, _ = mtg.make_peft(case, False, init_ab, torch.float32)
        l_lora = float(mtg.loss_sum(lora, tok, lab) / n)
        base = mtg.load_base(case, False, torch.float32)
        l_base = float(mtg.loss_sum(base, tok, lab) / n)
        # DoRA with the plain A/B, magnitudes set to PEFT's own norms at those A/B (what a DoRA run started from a
        # LoRA file does: m = wn)
        pm, _ = make_peft(case, None, torch.float32, load=False)
        from peft import set_peft_model_state_dict
        set_peft_model_state_dict(pm, dict(init_ab))
        norms = peft_norms(pm)
        set_peft_model_state_dict(pm, dict(init_ab, **norms))
        l_dora_ab = float(mtg.loss_sum(pm, tok, lab) / n)
        # a fresh DoRA adapter: PEFT's own init (B = 0), m = ||W|| at creation
        fresh, _ = make_peft(case, None, torch.float32, load=False)
        l_fresh = float(mtg.loss_sum(fresh, tok, lab) / n)
    r_ab = abs(l_dora_ab - l_lora) / abs(l_lora)
    r_fresh = abs(l_fresh - l_base) / abs(l_base)
    assert r_ab <= INVARIANT_TOL and r_fresh <= INVARIANT_TOL, (r_ab, r_fresh)
    return {"loss_plain_lora": l_lora, "loss_dora_m_eq_wn": l_dora_ab, "rel_dora_m_eq_wn_vs_lora": r_ab,
            "loss_base": l_base, "loss_fresh_dora": l_fresh, "rel_fresh_dora_vs_base": r_fresh,
            "tolerance": INVARIANT_TOL}


def hf_trainer_decays(pm):
    from transformers import Trainer
    names = set(Trainer.get_decay_parameter_names(None, pm))
    mags = [n for n, p in pm.named_parameters() if p.requires_grad and "lora_magnitude_vector" in n]
    return {"magnitudes": len(mags), "decayed_by_hf_trainer": sum(n in names for n in mags)}


def logits_of(model, seq):
    with torch.no_grad():
        return model(input_ids=torch.tensor([seq])).logits[0].float()


def save_adapter(pm, case, d):
    from peft import get_peft_model_state_dict
    from safetensors.torch import load_file
    out = os.path.join(d, "peft_adapter")
    pm.peft_config["default"].base_model_name_or_path = f"../../../forward/{case}"   # relative to `out`
    pm.save_pretrained(out, save_embedding_layers=False)
    if os.path.exists(os.path.join(out, "README.md")):
        os.remove(os.path.join(out, "README.md"))
    assert sorted(os.listdir(out)) == ["adapter_config.json", "adapter_model.safetensors"], os.listdir(out)
    saved = load_file(os.path.join(out, "adapter_model.safetensors"))
    sd = get_peft_model_state_dict(pm, save_embedding_layers=False)
    assert set(saved) == set(sd), sorted(set(saved) ^ set(sd))
    for k in sd:
        assert torch.equal(saved[k], sd[k].detach().cpu()), k
    return out, saved


def headroom(case, init, seqs, nf4, grads, rec, trained=None):
    pm64, params64 = make_peft(case, init, torch.float64, nf4=nf4)
    g64, _, _ = mtg.first_grads(pm64, params64, seqs)
    out = {"grads_worst_rel_l2": max(mtg.rel_l2(grads[k], g64[k]) for k in grads),
           "grads_worst_rel_l2_magnitudes": max(mtg.rel_l2(grads[k], g64[k]) for k in grads if "magnitude" in k)}
    if rec is not None:
        rec64 = mtg.curve(pm64, params64, seqs)
        out["curve_loss"] = max(abs(a - b) / abs(b) for a, b in zip(rec["loss"], rec64["loss"]))
        out["curve_grad_norm"] = max(abs(a - b) / abs(b) for a, b in zip(rec["grad_norm"], rec64["grad_norm"]))
        # the trained magnitudes' movement (trained - initial), float32 vs float64: the C test's (c) on the moves
        out["magnitude_move_worst_rel_l2"] = max(
            mtg.rel_l2(trained[k].detach().double() - init[k].double(), params64[k].detach() - init[k].double())
            for k in trained if "magnitude" in k)
    return out


def make_case(case, versions):
    from peft import PeftModel
    from safetensors.torch import load_file
    d = os.path.join(OUT, case)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    V = json.load(open(os.path.join(mtg.FWD, case, "config.json")))["vocab_size"]
    seqs = read_tokens(case)
    assert [len(s) for s in seqs] == mtg.LENGTHS
    init_ab = load_file(os.path.join(TRAIN, case, "lora_init.safetensors"))
    mags = make_mags(case, mtg.load_base(case, False, torch.float32), init_ab)
    mtg.save_st(os.path.join(d, "lora_init_dora.safetensors"), dict(init_ab, **mags))
    init = load_file(os.path.join(d, "lora_init_dora.safetensors"))   # what the C side reads
    assert all(torch.equal(init[k], v) for k, v in init_ab.items()) and len(init) == len(init_ab) + len(mags)

    checks = formula_check(case, init)
    checks["invariants"] = invariants(case, init_ab, seqs)

    pm, params = make_peft(case, init, torch.float32)
    decay = hf_trainer_decays(pm)
    pad_err = mtg.check_padding(pm, seqs)
    grads, loss0, n0 = mtg.first_grads(pm, params, seqs)
    zero = [k for k, g in grads.items() if not float(g.abs().max()) > 0]
    assert not zero, f"{case}: zero gradients {zero[:4]}"
    mtg.save_st(os.path.join(d, "grads.safetensors"), grads)
    checks["magnitude_grad_vs_hooks_layer0_rel_l2"] = mag_grad_check(case, init, seqs, grads)
    ref = load_file(os.path.join(TRAIN, case, "grads.safetensors"))
    checks["ab_grads_vs_plain_lora_worst_rel_l2"] = max(mtg.rel_l2(grads[k], ref[k]) for k in ref)
    rec = mtg.curve(pm, params, seqs)
    h = headroom(case, init, seqs, False, grads, rec, params)
    rec.update({"case": case, "quant": "none", "dora": True,
                "definition": "loss = sum over the step's micro-batches of sum(token losses) / step targets; "
                              "lr = the lr the optimizer step used; grad_norm = clip_grad_norm_ total (pre-clip) "
                              "over LoRA A/B and the DoRA magnitudes",
                "f32_vs_f64_max_rel": {"loss": h["curve_loss"], "grad_norm": h["curve_grad_norm"]}})
    json.dump(rec, open(os.path.join(d, "curve.json"), "w"), indent=1)

    nf4 = None
    if case in NF4_CASES:
        pmq, paramsq = make_peft(case, init, torch.float32, nf4=True)
        gq, lq, _ = mtg.first_grads(pmq, paramsq, seqs)
        mtg.save_st(os.path.join(d, "grads_nf4.safetensors"), gq)
        hq = headroom(case, init, seqs, True, gq, None)
        nf4 = {"loss": lq, "f32_vs_f64": hq,
               "vs_f32_base_worst_rel_l2": max(mtg.rel_l2(gq[k], grads[k]) for k in grads),
               "grad_norm": float(torch.sqrt(sum((g.double() ** 2).sum() for g in gq.values())))}

    # trained model: logits on sequence 0, saved adapter, reload, merge
    pm.eval()
    seq0 = seqs[0]
    with open(os.path.join(d, "tokens0.txt"), "w") as f:
        f.write(" ".join(map(str, seq0)) + "\n")
    lg = logits_of(pm, seq0)
    lg.numpy().astype("<f4").tofile(os.path.join(d, "logits.bin"))
    trained_mags = {k: v.detach().clone() for k, v in params.items() if "magnitude" in k}
    out, saved = save_adapter(pm, case, d)
    acfg = json.load(open(os.path.join(out, "adapter_config.json")))
    assert acfg["use_dora"] is True
    reloaded = PeftModel.from_pretrained(mtg.load_base(case, False, torch.float32), out)
    reload_diff = float((logits_of(reloaded, seq0) - lg).abs().max())
    assert reload_diff == 0.0, f"{case}: reloaded adapter changes the logits by {reload_diff}"
    merged = pm.merge_and_unload()
    assert all(p.dtype == torch.float32 for p in merged.parameters())
    lm = logits_of(merged, seq0)
    merge_diff = float((lm - lg).abs().max())
    assert merge_diff < MERGE_TOL, f"{case}: merged logits differ by {merge_diff}"
    lm.numpy().astype("<f4").tofile(os.path.join(d, "merged_logits.bin"))
    mag_moved = max(float(((trained_mags[k] - init[k]).double().norm() / init[k].double().norm())) for k in mags)

    meta = {"case": case, "model_dir": f"tests/fixtures/forward/{case}",
            "tokens": f"tests/fixtures/train/{case}/tokens.txt",
            "lora_init_ab": f"tests/fixtures/train/{case}/lora_init.safetensors",
            "dora": {"use_dora": True, "magnitude_keys": len(mags),
                     "magnitude_init": f"||W[o,:] + s (B A)[o,:]||_2 (float64) * (1 + {MAG_SPREAD} u[o]), u = "
                                       f"torch.rand(out, Generator().manual_seed({MAG_SEED[case]}), float64) * 2 - 1, "
                                       "one generator, modules in order layer, q k v o gate up down",
                     "magnitude_seed": MAG_SEED[case],
                     "weight_norm": "wn = ||W + s B A|| row-wise from the current A, B every forward, detached",
                     "bias": "added after the m / wn scaling (not scaled)",
                     "trained_magnitudes_max_rel_change": mag_moved,
                     "trained_magnitude_move_f32_vs_f64_worst_rel_l2": h["magnitude_move_worst_rel_l2"]},
            "lora": {"r": mtg.R, "lora_alpha": mtg.ALPHA, "scale": mtg.ALPHA / mtg.R, "dropout": 0.0,
                     "targets": mtg.TARGETS, "tensors": len(init),
                     "params": int(sum(v.numel() for v in init.values()))},
            "grads": {"rows": mtg.GRAD_ROWS, "micro_batch": 2, "grad_accum": 1, "padding": "right, id 0, label -100",
                      "loss": loss0, "targets": n0,
                      "grad_norm": float(torch.sqrt(sum((g.double() ** 2).sum() for g in grads.values()))),
                      "f32_vs_f64_worst_rel_l2": h["grads_worst_rel_l2"],
                      "f32_vs_f64_worst_rel_l2_magnitudes": h["grads_worst_rel_l2_magnitudes"],
                      "max_abs_logit_diff_padded_vs_alone": pad_err},
            "grads_nf4": nf4,
            "curve": {"steps": mtg.STEPS, "micro_batch": 1, "grad_accum": mtg.ACCUM, "lr": mtg.LR,
                      "betas": list(mtg.BETAS), "eps": mtg.EPS, "weight_decay": mtg.WD, "clip": mtg.CLIP,
                      "schedule": "cosine", "warmup": mtg.WARMUP, "sequence_of_micro_batch": "i mod 4",
                      "optimizer_params": "LoRA A/B + magnitudes, one group, all decayed",
                      "f32_vs_f64_max_rel": {"loss": h["curve_loss"], "grad_norm": h["curve_grad_norm"]}},
            "hf_trainer_would_decay": decay,
            "checks": checks,
            "logits": {"sequence": 0, "T": len(seq0), "V": V, "merged_vs_unmerged_max_abs": merge_diff,
                       "reloaded_vs_trained_max_abs": reload_diff},
            "adapter_config_use_dora": acfg["use_dora"],
            "versions": versions}
    json.dump(meta, open(os.path.join(d, "meta.json"), "w"), indent=2)
    inv = checks["invariants"]
    print(f"{case}: loss0 {loss0:.6f} curve {rec['loss'][0]:.5f}->{rec['loss'][-1]:.5f} f64 headroom "
          f"g {h['grads_worst_rel_l2']:.1e} (mag {h['grads_worst_rel_l2_magnitudes']:.1e}) loss {h['curve_loss']:.1e} "
          f"norm {h['curve_grad_norm']:.1e} merge {merge_diff:.1e} invariants {inv['rel_dora_m_eq_wn_vs_lora']:.1e} "
          f"{inv['rel_fresh_dora_vs_base']:.1e} maggrad {checks['magnitude_grad_vs_hooks_layer0_rel_l2']:.1e}"
          + (f" nf4 loss {nf4['loss']:.6f} headroom {nf4['f32_vs_f64']['grads_worst_rel_l2']:.1e}" if nf4 else ""))


def main():
    if os.environ.get("PYTHONHASHSEED") != "0":
        # PEFT stores target_modules as a set: fix str hashing so adapter_config.json's list order is reproducible
        os.environ["PYTHONHASHSEED"] = "0"
        os.execv(sys.executable, [sys.executable] + sys.argv)
    import bitsandbytes, peft, safetensors, transformers
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    versions = {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
                "bitsandbytes": bitsandbytes.__version__, "safetensors": safetensors.__version__,
                "numpy": np.__version__}
    os.makedirs(OUT, exist_ok=True)
    for case in sys.argv[1:] or CASES:
        make_case(case, versions)


if __name__ == "__main__":
    main()
