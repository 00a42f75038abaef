#!/usr/bin/env python3
"""LoRA training goldens from PEFT: first-step gradients and a 20-step AdamW loss curve, per architecture.

Uses the tiny models of tests/fixtures/forward/<case>/ (made by make_forward_golden.py; not copied) and writes
tests/fixtures/train/<case>/:
  tokens.txt             4 sequences (lengths 20, 24, 13, 24: 19, 23, 12, 23 target tokens), ids in 1..V-1,
                         space-separated, one per line
  lora_init.safetensors  initial adapter for all 7 target modules of every layer under PEFT names
                         base_model.model.model.layers.{L}.self_attn.q_proj.lora_A.weight [r, in] / lora_B [out, r]
                         (mlp.gate_proj ...), F32, r=4: A ~ U(-1/sqrt(in), 1/sqrt(in)), B ~ N(0, 0.02^2) (B nonzero
                         so that dL/dA != 0)
  grads.safetensors      d(loss)/d(A, B) under the same names (F32) after ONE forward/backward over the micro-batch
                         of sequences 0 and 1 (right-padded to T=24 with id 0, label -100), loss = sum of token
                         losses / number of target tokens (42).  = `ftune train --steps 1 --micro-batch 2
                         --grad-accum 1 --lora-r 4 --lora-alpha 8 --lora-init lora_init.safetensors --quant none
                         --dump-grads OUT` (first step's gradients, before clipping and the optimizer)
  curve.json             20 optimizer steps: torch.optim.AdamW(lr 1e-3, betas (0.9, 0.999), eps 1e-8, wd 0.01),
                         transformers.get_cosine_schedule_with_warmup(warmup 3, total 20) (LambdaLR, stepped after
                         optimizer.step), clip_grad_norm_(1.0), grad accumulation 2 x micro-batch 1; micro-batch
                         index i (global, 0-based) = sequence i mod 4 (ftune's ft_seq_batch: (i*B + b) mod n), so
                         each step's two micro-batches have unequal target counts (19+23, 12+23, ...).  Every
                         micro-batch's loss is sum(token losses) / (targets of the whole STEP); the step loss is
                         the sum over its micro-batches.  Per step: loss, lr used, grad norm (pre-clip), targets.
                         = `ftune train --steps 20 --micro-batch 1 --grad-accum 2 --lr 1e-3 --schedule cosine
                         --warmup 3 --weight-decay 0.01 --clip 1.0 --lora-r 4 --lora-alpha 8 --lora-init ...
                         --quant none`
  grads_nf4.safetensors, curve_nf4.json
                         the same with every q/k/v/o/gate/up/down base weight replaced by bitsandbytes'
                         NF4 quantize -> dequantize round trip (make_forward_golden.quantize_linears: flattened
                         1-D path, blocksize 64, compress_statistics=True; asserts bnb's nested codes are the exact
                         nearest ones) = `--quant nf4`
  meta.json              settings, target counts, the PEFT key check, and the float32-vs-float64 headroom of the
                         goldens (the same PEFT computation redone in float64)
PEFT: get_peft_model(AutoModelForCausalLM (float32, eager), LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0,
target_modules=7, bias="none", task_type="CAUSAL_LM", use_rslora=False)); the init values are loaded with
set_peft_model_state_dict and the key set is asserted equal to get_peft_model_state_dict's.  Plain causal
attention with no attention_mask (asserted identical to an all-ones mask, and padded rows asserted equal to the
unpadded sequences at their real positions).  Qwen3 stores BF16 weights: upcast to float32, math in float32.

Deterministic; re-run:  /work/venv/bin/python tests/ref/make_train_golden.py [case ...]   (CPU only, ~1 min)
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
FWD = os.path.join(REPO, "tests", "fixtures", "forward")
OUT = os.path.join(REPO, "tests", "fixtures", "train")
sys.path.insert(0, HERE)

CASES = ["llama_gqa4", "llama_mha_tied", "mistral", "qwen2", "qwen3"]
SEEDS = {"llama_gqa4": 2102, "llama_mha_tied": 2108, "mistral": 2105, "qwen2": 2112, "qwen3": 2106}
LENGTHS = [20, 24, 13, 24]
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
PATHS = {"q_proj": "self_attn", "k_proj": "self_attn", "v_proj": "self_attn", "o_proj": "self_attn",
         "gate_proj": "mlp", "up_proj": "mlp", "down_proj": "mlp"}
R, ALPHA = 4, 8.0
B_STD = 0.02
GRAD_ROWS = [0, 1]            # micro-batch of the gradient golden (micro-batch 2, index 0)
STEPS, ACCUM = 20, 2
LR, BETAS, EPS, WD, CLIP, WARMUP = 1e-3, (0.9, 0.999), 1e-8, 0.01, 1.0, 3


def peft_name(layer, mod, which):
    return f"base_model.model.model.layers.{layer}.{PATHS[mod]}.{mod}.lora_{which}.weight"


def load_base(case, nf4, dtype):
    from transformers import AutoModelForCausalLM
    m = AutoModelForCausalLM.from_pretrained(os.path.join(FWD, case), dtype=torch.float32,
                                             attn_implementation="eager")
    if nf4:
        from make_forward_golden import quantize_linears
        ndiff = quantize_linears(m)
        assert ndiff == 0, f"{case}: bnb nested codes differ from the nearest in {ndiff} blocks"
    return m.to(dtype).eval()


def make_peft(case, nf4, init, dtype):
    from peft import LoraConfig, get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict
    cfg = LoraConfig(r=R, lora_alpha=ALPHA, lora_dropout=0.0, target_modules=list(TARGETS), bias="none",
                     task_type="CAUSAL_LM", use_rslora=False)
    pm = get_peft_model(load_base(case, nf4, dtype), cfg)
    keys = set(get_peft_model_state_dict(pm).keys())
    assert keys == set(init), f"{case}: PEFT keys differ: {sorted(keys ^ set(init))[:6]}"
    res = set_peft_model_state_dict(pm, {k: v.to(dtype) for k, v in init.items()})
    assert not [k for k in res.unexpected_keys], res.unexpected_keys
    sd = get_peft_model_state_dict(pm)
    for k, v in init.items():
        assert torch.equal(sd[k], v.to(dtype)), f"{case}: {k} not loaded"
    assert abs(pm.base_model.model.model.layers[0].self_attn.q_proj.scaling["default"] - ALPHA / R) == 0
    params = {}
    for n, p in pm.named_parameters():
        if p.requires_grad:
            key = n.replace(".default.weight", ".weight")
            assert key in init, n
            params[key] = p
    assert set(params) == set(init)
    return pm, params


def make_init(model, gen):
    """A ~ U(-1/sqrt(in), 1/sqrt(in)) (PEFT's default A), B ~ N(0, B_STD^2) (PEFT's default is 0)."""
    init = {}
    for layer, blk in enumerate(model.model.layers):
        for mod in TARGETS:
            lin = getattr(getattr(blk, PATHS[mod]), mod)
            out_f, in_f = lin.weight.shape
            bound = 1.0 / math.sqrt(in_f)
            init[peft_name(layer, mod, "A")] = (torch.rand(R, in_f, generator=gen, dtype=torch.float64) * 2 - 1) \
                .mul(bound).float()
            init[peft_name(layer, mod, "B")] = (torch.randn(out_f, R, generator=gen, dtype=torch.float64) * B_STD) \
                .float()
    return init


def batch(seqs, rows):
    """ftune's ft_seq_batch: right-pad with id 0, labels[t] = ids[t+1], -100 at the last real position and padding."""
    T = max(len(seqs[r]) for r in rows)
    tok = torch.zeros(len(rows), T, dtype=torch.long)
    lab = torch.full((len(rows), T), -100, dtype=torch.long)
    for b, r in enumerate(rows):
        s = seqs[r]
        tok[b, :len(s)] = torch.tensor(s)
        lab[b, :len(s) - 1] = torch.tensor(s[1:])
    return tok, lab


def loss_sum(pm, tok, lab):
    logits = pm(input_ids=tok).logits
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), lab.reshape(-1),
                                             ignore_index=-100, reduction="sum")


def first_grads(pm, params, seqs):
    tok, lab = batch(seqs, GRAD_ROWS)
    n = int((lab >= 0).sum())
    for p in params.values():
        p.grad = None
    loss = loss_sum(pm, tok, lab) / n
    loss.backward()
    return {k: p.grad.detach().clone() for k, p in params.items()}, loss.item(), n


def curve(pm, params, seqs):
    from transformers import get_cosine_schedule_with_warmup
    plist = [params[k] for k in sorted(params)]
    opt = torch.optim.AdamW(plist, lr=LR, betas=BETAS, eps=EPS, weight_decay=WD)
    sched = get_cosine_schedule_with_warmup(opt, num_warmup_steps=WARMUP, num_training_steps=STEPS)
    rec = {"loss": [], "lr": [], "grad_norm": [], "targets": [], "sequences": []}
    for step in range(STEPS):
        mbs = [batch(seqs, [(step * ACCUM + k) % len(seqs)]) for k in range(ACCUM)]
        total = sum(int((lab >= 0).sum()) for _, lab in mbs)
        opt.zero_grad(set_to_none=True)
        loss = 0.0
        for tok, lab in mbs:
            l = loss_sum(pm, tok, lab) / total
            l.backward()
            loss += l.item()
        lr = opt.param_groups[0]["lr"]
        gn = float(torch.nn.utils.clip_grad_norm_(plist, CLIP))
        opt.step()
        sched.step()
        rec["loss"].append(loss)
        rec["lr"].append(lr)
        rec["grad_norm"].append(gn)
        rec["targets"].append(total)
        rec["sequences"].append([(step * ACCUM + k) % len(seqs) for k in range(ACCUM)])
    return rec


def rel_l2(a, b):
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm())


def check_padding(pm, seqs):
    """No mask == all-ones mask, and a padded row equals the unpadded sequence at its real positions."""
    tok, _ = batch(seqs, GRAD_ROWS)
    with torch.no_grad():
        a = pm(input_ids=tok).logits
        b = pm(input_ids=tok, attention_mask=torch.ones_like(tok)).logits
        diff_mask = float((a - b).abs().max())
        worst = 0.0
        for i, r in enumerate(GRAD_ROWS):
            s = torch.tensor([seqs[r]])
            alone = pm(input_ids=s).logits[0]
            worst = max(worst, float((a[i, :len(seqs[r])] - alone).abs().max()))
    assert diff_mask == 0.0, f"all-ones mask changes the logits by {diff_mask}"
    assert worst < 1e-5, f"padding changes the real positions' logits by {worst}"
    return worst


def save_st(path, tensors):
    from safetensors.torch import save_file
    save_file({k: v.detach().float().contiguous() for k, v in sorted(tensors.items())}, path,
              metadata={"format": "pt"})


def make_case(case, versions):
    from safetensors.torch import load_file
    d = os.path.join(OUT, case)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    gen = torch.Generator().manual_seed(SEEDS[case])
    cfg = json.load(open(os.path.join(FWD, case, "config.json")))
    V = cfg["vocab_size"]
    seqs = [torch.randint(1, V, (n,), generator=gen).tolist() for n in LENGTHS]
    with open(os.path.join(d, "tokens.txt"), "w") as f:
        for s in seqs:
            f.write(" ".join(map(str, s)) + "\n")
    init = make_init(load_base(case, False, torch.float32), gen)
    save_st(os.path.join(d, "lora_init.safetensors"), init)
    init = load_file(os.path.join(d, "lora_init.safetensors"))   # what the C side reads

    meta = {"case": case, "model_dir": f"tests/fixtures/forward/{case}", "lengths": LENGTHS,
            "targets_per_sequence": [n - 1 for n in LENGTHS],
            "lora": {"r": R, "lora_alpha": ALPHA, "scale": ALPHA / R, "dropout": 0.0, "targets": TARGETS,
                     "init": f"A ~ U(-1/sqrt(in), 1/sqrt(in)), B ~ N(0, {B_STD}^2)", "tensors": len(init),
                     "params": int(sum(v.numel() for v in init.values()))},
            "grads": {"rows": GRAD_ROWS, "micro_batch": 2, "grad_accum": 1, "padding": "right, id 0, label -100"},
            "curve": {"steps": STEPS, "micro_batch": 1, "grad_accum": ACCUM, "lr": LR, "betas": list(BETAS),
                      "eps": EPS, "weight_decay": WD, "clip": CLIP, "schedule": "cosine", "warmup": WARMUP,
                      "sequence_of_micro_batch": "i mod 4"},
            "versions": versions}
    line = [case]
    for suffix, nf4 in (("", False), ("_nf4", True)):
        pm, params = make_peft(case, nf4, init, torch.float32)
        pad_err = check_padding(pm, seqs)
        grads, loss0, n0 = first_grads(pm, params, seqs)
        save_st(os.path.join(d, f"grads{suffix}.safetensors"), grads)
        rec = curve(pm, params, seqs)
        # the same in float64: the goldens' own float32 roundoff (headroom of the C test's tolerances)
        pm64, params64 = make_peft(case, nf4, init, torch.float64)
        g64, loss64, _ = first_grads(pm64, params64, seqs)
        rec64 = curve(pm64, params64, seqs)
        worst_g = max(rel_l2(grads[k], g64[k]) for k in grads)
        worst_l = max(abs(a - b) / abs(b) for a, b in zip(rec["loss"], rec64["loss"]))
        worst_n = max(abs(a - b) / abs(b) for a, b in zip(rec["grad_norm"], rec64["grad_norm"]))
        zero = [k for k, g in grads.items() if not float(g.abs().max()) > 0]
        assert not zero, f"{case}{suffix}: zero gradients {zero[:4]}"
        rec.update({"case": case, "quant": "nf4" if nf4 else "none",
                    "definition": "loss = sum over the step's micro-batches of sum(token losses) / step targets; "
                                  "lr = the lr the optimizer step used; grad_norm = clip_grad_norm_ total (pre-clip)",
                    "f32_vs_f64_max_rel": {"loss": worst_l, "grad_norm": worst_n}})
        json.dump(rec, open(os.path.join(d, f"curve{suffix}.json"), "w"), indent=1)
        meta[f"grads{suffix}"] = {"loss": loss0, "targets": n0, "f32_vs_f64_worst_rel_l2": worst_g,
                                  "max_abs_logit_diff_padded_vs_alone": pad_err,
                                  "grad_norm": float(torch.sqrt(sum((g.double() ** 2).sum() for g in grads.values())))}
        line.append(f"{suffix or 'f32'}: loss0 {loss0:.6f} curve {rec['loss'][0]:.5f}->{rec['loss'][-1]:.5f} "
                    f"f64 headroom g {worst_g:.1e} loss {worst_l:.1e} norm {worst_n:.1e}")
    json.dump(meta, open(os.path.join(d, "meta.json"), "w"), indent=2)
    print("  ".join(line))


def main():
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
