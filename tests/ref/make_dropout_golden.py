#!/usr/bin/env python3
"""LoRA-dropout goldens from PEFT, with ftune's own dropout masks.

A dropout golden cannot come from torch's random masks: ftune draws its own, counter-based ones
(kernels/rng.h). So PEFT's `lora_dropout` modules are replaced by modules that apply exactly ftune's
mask, reimplemented here from its definition, and everything else is PEFT's: where the dropout
acts (the LoRA input only; for DoRA, PEFT's second frozen product over the dropped input, peft/tuners/
lora/layer.py + dora.py), the 1/(1-p) scaling, and the gradients through it. If ftune's masks or
its use of them differed from this, the test fails.

ftune's masks (trainer/train.c, trainer/model.c ft_drop_seed / ft_lora_drop_of, kernels/rng.h):
  mix64(z)      = SplitMix64's finalizer of z + 0x9e3779b97f4a7c15
  pass seed     = mix64(seed ^ mix64(step * grad_accum + k))      micro-batch k of optimizer step `step`
  module seed   = mix64(pass ^ mix64(layer * 7 + mod + 0x5eed))   mod: q k v o gate up down = 0..6
  element i of the module input [N = B*T rows, in] (row-major): bits = mix64(mseed + (i >> 2) * 0x9e3779b97f4a7c15)
                  (mod 2^64), kept when ((bits >> (16 * (i & 3))) & 0xffff) >= round(p * 65536)
  kept elements times float32(1) / (float32(1) - float32(p)), as ftune and torch
Checked here against the definition's own consequences: the kept fraction of every module is within 4
sigma of 1 - p.

Writes, for the cases of tests/fixtures/train (its tokens.txt and lora_init.safetensors):
  tests/fixtures/train/<case>/grads_drop.safetensors
      first-step LoRA gradients, lora_dropout 0.1, seed 7, micro-batch 2 (sequences 0 and 1, padded),
      grad_accum 1: the setting of test_train_golden's (f) (= `ftune train --lora-dropout 0.1 --seed 7
      --steps 1 --micro-batch 2 --grad-accum 1 ... --dump-grads`)
  tests/fixtures/train/<case>/drop_meta.json   loss, kept fractions, versions
  tests/fixtures/train_dora/<case>/grads_drop.safetensors, drop_meta.json (the DoRA cases of
      make_dora_golden.py: llama_gqa4, qwen2, qwen3; its lora_init_dora.safetensors, magnitudes included)
      the same with use_dora=True. PEFT's DoRA then takes its dropout path (peft/tuners/lora/variants.py
      DoraLinearVariant.forward: training and a dropout that is not Identity -> x = dropout(x),
      base_result=None; dora.py: (m / wn - 1) (xd W^T) + (m / wn) s (xd A^T) B^T added to x W^T + b)
      = `... --dora --lora-init lora_init_dora.safetensors --lora-dropout 0.1 --seed 7 --dump-grads`

Deterministic; re-run: ~/.cache/ftune-venv/bin/python tests/ref/make_dropout_golden.py [case ...]  (CPU, ~20 s)
"""
import json
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_train_golden as T  # noqa: E402

M64 = (1 << 64) - 1
GAMMA = 0x9e3779b97f4a7c15
P, SEED = 0.1, 7


def mix64(z):
    z = (z + GAMMA) & M64
    z = ((z ^ (z >> 30)) * 0xbf58476d1ce4e5b9) & M64
    z = ((z ^ (z >> 27)) * 0x94d049bb133111eb) & M64
    return z ^ (z >> 31)


def mix64_np(z):
    with np.errstate(over="ignore"):
        z = z + np.uint64(GAMMA)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xbf58476d1ce4e5b9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94d049bb133111eb)
        return z ^ (z >> np.uint64(31))


def keep_mask(mseed, n, p):
    """ftune's keep decisions of elements 0..n-1 of a module's input."""
    thr = np.uint64(int(np.float32(p) * np.float32(65536.0) + np.float32(0.5)))
    i = np.arange(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        bits = mix64_np(np.uint64(mseed) + (i >> np.uint64(2)) * np.uint64(GAMMA))
    return ((bits >> (np.uint64(16) * (i & np.uint64(3)))) & np.uint64(0xffff)) >= thr


class FtDropout(torch.nn.Module):
    """Stands in for PEFT's lora_dropout[adapter] of one module: ftune's mask of this pass."""

    def __init__(self, layer, mod, p, state):
        super().__init__()
        self.layer, self.mod, self.p, self.state = layer, mod, p, state

    def forward(self, x):
        mseed = mix64(self.state["pass"] ^ mix64(self.layer * 7 + self.mod + 0x5eed))
        keep = keep_mask(mseed, x.numel(), self.p)
        self.state["kept"].append(float(keep.mean()))
        s = np.float32(1.0) / (np.float32(1.0) - np.float32(self.p))
        m = torch.from_numpy(keep.astype(np.float32) * s).to(x.dtype).reshape(x.shape)
        return x * m


def install(pm, p, state):
    n = 0
    for layer, blk in enumerate(pm.base_model.model.model.layers):
        for mi, mod in enumerate(T.TARGETS):
            lin = getattr(getattr(blk, T.PATHS[mod]), mod)
            assert isinstance(lin.lora_dropout["default"], torch.nn.Dropout), type(lin.lora_dropout["default"])
            lin.lora_dropout["default"] = FtDropout(layer, mi, p, state)
            n += 1
    return n


def param_key(n):
    """named_parameters name -> get_peft_model_state_dict key (make_dora_golden.param_key)."""
    if n.endswith(".lora_magnitude_vector.default.weight"):
        return n[:-len(".default.weight")]
    return n.replace(".default.weight", ".weight")


def make_peft_dropout(case, init, p, dora=False):
    """make_train_golden.make_peft with lora_dropout p (and use_dora); init asserted loaded exactly."""
    from peft import LoraConfig, get_peft_model, set_peft_model_state_dict
    cfg = LoraConfig(r=T.R, lora_alpha=T.ALPHA, lora_dropout=p, target_modules=list(T.TARGETS), bias="none",
                     task_type="CAUSAL_LM", use_rslora=False, use_dora=dora)
    from peft import get_peft_model_state_dict
    pm = get_peft_model(T.load_base(case, False, torch.float32), cfg)
    res = set_peft_model_state_dict(pm, {k: v.float() for k, v in init.items()})
    assert not res.unexpected_keys, res.unexpected_keys
    sd = get_peft_model_state_dict(pm)
    assert set(sd) == set(init), sorted(set(sd) ^ set(init))[:4]
    for k, v in init.items():
        assert torch.equal(sd[k], v.float()), f"{case}: {k} not loaded"
    params = {param_key(n): q for n, q in pm.named_parameters() if q.requires_grad}
    pm.train()
    return pm, params


def first_grads_dropout(pm, params, seqs, state):
    tok, lab = T.batch(seqs, T.GRAD_ROWS)
    n = int((lab >= 0).sum())
    state["pass"] = mix64(SEED ^ mix64(0 * 1 + 0))  # step 0, grad_accum 1, micro-batch 0
    state["kept"] = []
    for q in params.values():
        q.grad = None
    loss = T.loss_sum(pm, tok, lab) / n
    loss.backward()
    return {k: q.grad.detach().clone() for k, q in params.items()}, loss.item(), n


DORA = os.path.join(T.REPO, "tests", "fixtures", "train_dora")
DORA_CASES = ["llama_gqa4", "qwen2", "qwen3"]


def make_case(case, versions, dora=False):
    from safetensors.torch import load_file
    d = os.path.join(DORA if dora else T.OUT, case)
    seqs = [list(map(int, line.split())) for line in open(os.path.join(T.OUT, case, "tokens.txt"))]
    init = load_file(os.path.join(d, "lora_init_dora.safetensors" if dora else "lora_init.safetensors"))
    state = {}
    pm, params = make_peft_dropout(case, init, P, dora)
    nmod = install(pm, P, state)
    assert set(params) == set(init), sorted(set(params) ^ set(init))[:4]
    grads, loss, n = first_grads_dropout(pm, params, seqs, state)
    kept = state["kept"]
    assert len(kept) == nmod, (len(kept), nmod)
    # each module's input has N x in >= 48 x 32 elements: 4 sigma of a Bernoulli(0.9) mean
    worst = max(abs(k - (1 - P)) for k in kept)
    assert worst < 4 * (P * (1 - P) / (48 * 32)) ** 0.5, f"{case}: kept fraction off by {worst}"
    # the dropout moved the gradients: against the golden without it
    g0 = load_file(os.path.join(d, "grads.safetensors"))
    moved = float(torch.sqrt(sum(((grads[k] - g0[k]).double() ** 2).sum() for k in g0)) /
                  torch.sqrt(sum((g0[k].double() ** 2).sum() for k in g0)))
    assert moved > 1e-3, f"{case}: dropout moved the gradients by only {moved}"
    T.save_st(os.path.join(d, "grads_drop.safetensors"), grads)
    json.dump({"case": case, "dora": dora, "dropout": P, "seed": SEED, "loss": loss, "targets": n, "modules": nmod,
               "kept_fraction": {"min": min(kept), "max": max(kept), "mean": sum(kept) / len(kept)},
               "rel_l2_vs_no_dropout": moved, "masks": "ftune's (kernels/rng.h), see make_dropout_golden.py",
               "versions": versions}, open(os.path.join(d, "drop_meta.json"), "w"), indent=2)
    print(f"{case}{' dora' if dora else ''}: loss {loss:.6f}, kept {min(kept):.4f}..{max(kept):.4f}, vs no dropout rel {moved:.3e}")


def main():
    import peft
    import transformers
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    versions = {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
                "numpy": np.__version__}
    for case in sys.argv[1:] or T.CASES:
        make_case(case, versions)
    for case in [c for c in sys.argv[1:] or DORA_CASES if c in DORA_CASES]:
        make_case(case, versions, dora=True)


if __name__ == "__main__":
    main()
