#!/usr/bin/env python3
"""A PEFT adapter on the text model of a vision-language checkpoint, and what it must give.

Base: tests/fixtures/forward/mistral3 (Mistral3ForConditionalGeneration, the layout of Mistral Small
3.1/3.2; made by make_forward_golden.py). Writes tests/fixtures/export/mistral3_adapter/:
  adapter_config.json, adapter_model.safetensors   PEFT's save_pretrained of a seeded LoRA (r 4, alpha 8,
                     random A and B) on q/v/o/gate/down of the text model, target_modules the regex
                     transformers 5's module paths need ("q_proj" alone would also wrap the vision tower's)
  ref_logits.bin     float32 [2, 24, 256]: PeftModel's logits (adapter applied, not merged, FP32, eager
                     attention) on the base fixture's tokens.txt
  ref.json           how, versions, and with --ftune: PEFT loading `ftune export --format peft` of this
                     adapter gives the same logits (max |d| recorded), i.e. ftune writes what PEFT reads
  mistral3_adapter_names/  the same kind of adapter with PEFT's own target names (q_proj, v_proj), which
                     wrap the vision tower's modules too; ref_logits.bin its PeftModel logits on the same tokens
Usage: $FT_VENV/bin/python tests/ref/make_vlm_adapter_golden.py [--ftune build/ftune]
"""
import argparse
import json
import os
import shutil
import subprocess
import tempfile

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BASE = os.path.join(ROOT, "tests", "fixtures", "forward", "mistral3")
OUT = os.path.join(ROOT, "tests", "fixtures", "export", "mistral3_adapter")
TARGETS = r"model\.language_model\.layers\.\d+\.(self_attn\.(q_proj|v_proj|o_proj)|mlp\.(gate_proj|down_proj))"


def load_base():
    from transformers import Mistral3ForConditionalGeneration
    return Mistral3ForConditionalGeneration.from_pretrained(BASE, dtype=torch.float32,
                                                            attn_implementation="eager").eval()


def tokens():
    with open(os.path.join(BASE, "tokens.txt")) as f:
        return [[int(t) for t in line.split()] for line in f if line.strip()]


def logits_of(model, toks):
    with torch.no_grad():
        return model(torch.tensor(toks)).logits.float().numpy()


def seeded_adapter(out, targets, seed):
    """PEFT's save_pretrained of a LoRA (r 4, alpha 8) on the base with A and B drawn from `seed`, its
    base_model_name_or_path relative to `out`; returns the wrapped modules' names."""
    from peft import LoraConfig, get_peft_model
    model = get_peft_model(load_base(), LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=targets,
                                                   init_lora_weights=False))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
    shutil.rmtree(out, ignore_errors=True)
    model.save_pretrained(out)
    if os.path.exists(os.path.join(out, "README.md")):
        os.remove(os.path.join(out, "README.md"))
    cfg = json.load(open(os.path.join(out, "adapter_config.json")))
    cfg["base_model_name_or_path"] = "../../forward/mistral3"      # relative to the adapter's directory
    json.dump(cfg, open(os.path.join(out, "adapter_config.json"), "w"), indent=2, sort_keys=True)
    return sorted(n for n, _ in model.named_modules() if n.endswith(".lora_A"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ftune", help="ftune binary: also check that PEFT reads ftune's PEFT export")
    a = ap.parse_args()
    import peft
    import transformers
    from peft import PeftModel
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    toks = tokens()
    base_logits = logits_of(load_base(), toks)

    wrapped = seeded_adapter(OUT, TARGETS, 303)
    assert wrapped and all(".language_model.layers." in n for n in wrapped), wrapped   # never the vision tower

    ref = logits_of(PeftModel.from_pretrained(load_base(), OUT).eval(), toks)
    assert np.abs(ref - base_logits).max() > 0.1, "the adapter must change the logits"
    ref.astype("<f4").tofile(os.path.join(OUT, "ref_logits.bin"))
    from safetensors import safe_open
    with safe_open(os.path.join(OUT, "adapter_model.safetensors"), "pt") as f:
        keys = sorted(f.keys())
    info = {"base": "tests/fixtures/forward/mistral3", "tokens": "tests/fixtures/forward/mistral3/tokens.txt",
            "ref_logits": "float32 LE [2, 24, 256]: PeftModel.from_pretrained(base, this dir), FP32, eager, unmerged",
            "target_modules": TARGETS, "n_tensors": len(keys), "first_key": keys[0],
            "max_abs_delta_vs_base": float(np.abs(ref - base_logits).max()),
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__}}
    if a.ftune:
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "peft")
            subprocess.run([a.ftune, "export", OUT, "--format", "peft", "--out", out], check=True)
            ours = logits_of(PeftModel.from_pretrained(load_base(), out).eval(), toks)
            with safe_open(os.path.join(out, "adapter_model.safetensors"), "pt") as f:
                assert sorted(f.keys()) == keys, "ftune's PEFT export names other tensors"
            info["ftune_peft_export"] = {"what": "PeftModel.from_pretrained(base, `ftune export --format peft` of "
                                         "this adapter) logits vs ref_logits", "max_abs_diff": float(np.abs(ours - ref).max())}
            assert info["ftune_peft_export"]["max_abs_diff"] < 1e-5, info
    json.dump(info, open(os.path.join(OUT, "ref.json"), "w"), indent=2)
    print(json.dumps(info, indent=1))
    names_adapter(toks)


def names_adapter(toks):
    """mistral3_adapter_names/: PEFT's own target names (q_proj, v_proj), which also wrap the vision
    tower's modules of those names: ftune leaves those out (text-only input never runs them), so its
    logits must still equal PeftModel's (ref_logits.bin)."""
    from peft import PeftModel
    out = OUT + "_names"
    wrapped = seeded_adapter(out, ["q_proj", "v_proj"], 304)
    assert any("vision_tower" in n for n in wrapped) and any("language_model" in n for n in wrapped), wrapped
    ref = logits_of(PeftModel.from_pretrained(load_base(), out).eval(), toks)
    ref.astype("<f4").tofile(os.path.join(out, "ref_logits.bin"))
    print("names adapter:", len(wrapped), "modules wrapped,", sum("vision_tower" in n for n in wrapped), "in the vision tower")


if __name__ == "__main__":
    main()
