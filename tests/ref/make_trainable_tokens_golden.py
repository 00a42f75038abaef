#!/usr/bin/env python3
"""LoRA + trainable tokens (PEFT's `trainable_token_indices`) goldens: first-step gradients, a 20-step AdamW curve,
PEFT's saved adapter and the trained / merged logits, for an untied and a tied model.

Everything is make_train_golden.py's setup (imported from it, not copied): the tiny models of
tests/fixtures/forward/<case>/, the 4 sequences of tests/fixtures/train/<case>/tokens.txt, the LoRA initial values of
tests/fixtures/train/<case>/lora_init.safetensors (r 4, alpha 8, q/k/v/o/gate/up/down of every layer), the same
first-step micro-batch and the same 20-step AdamW / cosine / clip / accumulation curve, float32 eager.  The only
difference: LoraConfig(..., trainable_token_indices=...), which wraps the embedding (and lm_head) in PEFT's
TrainableTokensWrapper (peft/tuners/trainable_tokens/layer.py): a parameter `trainable_tokens_delta` [3, hidden]
holding the FULL values of the selected rows (initialized as a copy of the base rows), written over the base matrix
with index_copy in every forward (W' = W.index_copy(0, ids, delta); F.embedding / F.linear with W').

Cases (IDS = 3 ascending token ids, picked by pick_ids() from the case's tokens.txt and recorded in meta.json):
  llama_gqa4      untied lm_head: trainable_token_indices={"embed_tokens": IDS, "lm_head": IDS}
                  -> two independent deltas (embedding rows and lm_head rows), both trained and both saved
  llama_mha_tied  tie_word_embeddings: trainable_token_indices=IDS (list form -> the input embedding); PEFT wraps
                  lm_head too, tied to the embedding's token adapter (asserted: ONE delta parameter, shared; the
                  lm_head wrapper's ParameterDict is the embedding's), only the embedding's delta is saved
IDS rule: a = smallest id that is a label (ids[t+1]) at least twice in sequences 0/1; b = smallest other id that
occurs exactly once in sequences 0/1, at a position that has a label (so its embedding row gets a gradient);
c = smallest id >= 3 (0 = pad, 1/2 = bos/eos) that occurs in none of the 4 sequences (its embedding row gets no
gradient: in the untied case it only decays under AdamW's weight decay; tied, it gets the lm_head gradient).

Writes tests/fixtures/train_tokens/<case>/:
  grads.safetensors   F32 d(loss)/d(param) after ONE forward/backward over the micro-batch {seq 0, seq 1}
                      (right-padded with id 0, label -100; loss = sum of the 42 token losses / 42) for every LoRA
                      A/B (28 tensors, the names of train/<case>/grads.safetensors) AND every trainable_tokens_delta,
                      all under get_peft_model_state_dict's key names:
                        base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta  [3, hidden]
                        base_model.model.lm_head.token_adapter.trainable_tokens_delta             [3, hidden]
                                                                                     (untied case only)
                      = `ftune train --steps 1 --micro-batch 2 --grad-accum 1 --lora-r 4 --lora-alpha 8
                      --lora-init train/<case>/lora_init.safetensors --trainable-tokens IDS --quant none --lr 0
                      --dump-grads OUT` (the delta initial values are the base rows, so no init file for them)
  curve.json          same format as train/<case>/curve.json (loss, lr, grad_norm pre-clip, targets, sequences per
                      step): torch.optim.AdamW over the LoRA A/B AND the delta(s) in one group (lr 1e-3,
                      (0.9, 0.999), eps 1e-8, wd 0.01 -> the delta rows ARE decayed), cosine warmup 3 / 20,
                      clip_grad_norm_(1.0) over all of them together, grad accumulation 2 x micro-batch 1
                      = `ftune train --steps 20 --micro-batch 1 --grad-accum 2 --lr 1e-3 --schedule cosine --warmup 3
                      --weight-decay 0.01 --clip 1.0 --lora-r 4 --lora-alpha 8 --lora-init ... --trainable-tokens IDS
                      --quant none`
  peft_adapter/       PEFT's save_pretrained after those 20 steps: adapter_model.safetensors (28 LoRA tensors + the
                      delta(s) above, trained values) and adapter_config.json as PEFT writes them (only
                      base_model_name_or_path set beforehand to "../../../forward/<case>", relative to this
                      directory; save_embedding_layers=False, which is what "auto" resolves to here; PEFT's
                      README.md model card removed); asserted: PeftModel.from_pretrained of it
                      reproduces the trained logits exactly
  tokens0.txt         sequence 0 (20 ids), one line
  logits.bin          f32 [20, 256] logits of the trained PEFT model on sequence 0 (unpadded, no mask)
                      = the ftune-trained adapter's forward on that sequence
  logits_merged.bin   f32 [20, 256] the same after merge_and_unload() (LoRA merged into the weights, the delta rows
                      copied into embed_tokens / lm_head); asserted to agree with logits.bin to 1e-5 (max diff in
                      meta.json) = `ftune merge` of the adapter, then a plain forward
  meta.json           ids and how they were picked, trainable_token_indices as in adapter_config.json, the delta key
                      names / shapes / initial = base rows check / tie check, the saved adapter's keys, first-step
                      loss and per-row delta gradient norms, the settings, HF Trainer's decay-parameter check, the
                      float32-vs-float64 headroom (the same PEFT computation in float64), versions
Cross-checks (asserted, results in meta.json): the 28 LoRA gradients are bit-identical to
train/<case>/grads.safetensors (the deltas start at the base rows, so the forward is unchanged); each delta gradient
equals the selected rows of d(loss)/d(weight) of the plain LoRA model with the embedding / lm_head made trainable
(tied: the one shared matrix, both uses accumulated) to 0.0; untied, the embedding row of the unused id after
training = base row * prod(1 - lr_t * wd) (no gradient, decay only).  The script re-executes itself with
PYTHONHASHSEED=0: PEFT keeps target_modules as a set, and adapter_config.json lists it in set order.

Deterministic; re-run:  $PY tests/ref/make_trainable_tokens_golden.py [case ...]   (CPU only, ~10 s; needs
tests/fixtures/forward and tests/fixtures/train from make_forward_golden.py / make_train_golden.py)
"""
import json
import os
import shutil
import sys
from collections import Counter

import numpy as np
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_train_golden as mtg  # noqa: E402  (same models, batching, loss, gradient and curve code)

REPO = mtg.REPO
TRAIN = os.path.join(REPO, "tests", "fixtures", "train")
OUT = os.path.join(REPO, "tests", "fixtures", "train_tokens")
CASES = ["llama_gqa4", "llama_mha_tied"]
EMB = "base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta"
HEAD = "base_model.model.lm_head.token_adapter.trainable_tokens_delta"
MERGE_TOL = 1e-5


def read_tokens(case):
    with open(os.path.join(TRAIN, case, "tokens.txt")) as f:
        return [[int(t) for t in line.split()] for line in f if line.strip()]


def pick_ids(seqs, vocab):
    s01 = seqs[0] + seqs[1]
    labels = Counter(seqs[0][1:] + seqs[1][1:])
    count = Counter(s01)
    with_label = set(seqs[0][:-1] + seqs[1][:-1])
    a = min(t for t, n in labels.items() if n >= 2)
    b = min(t for t in with_label if count[t] == 1 and t != a)
    used = set(t for s in seqs for t in s)
    c = min(t for t in range(3, vocab) if t not in used)
    return sorted([a, b, c]), {"label_twice_in_01": a, "once_in_01": b, "in_no_sequence": c,
                               "label_count_01": {str(a): labels[a], str(b): labels[b], str(c): labels[c]},
                               "count_01": {str(a): count[a], str(b): count[b], str(c): count[c]},
                               "count_all": {str(t): sum(s.count(t) for s in seqs) for t in (a, b, c)}}


def tt_indices(case, ids):
    return {"embed_tokens": list(ids), "lm_head": list(ids)} if case == "llama_gqa4" else list(ids)


def make_peft(case, init, ids, dtype):
    """make_train_golden.make_peft + trainable_token_indices; params = trainable parameters under PEFT state-dict
    names (LoRA A/B + delta(s))."""
    from peft import LoraConfig, get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict
    cfg = LoraConfig(r=mtg.R, lora_alpha=mtg.ALPHA, lora_dropout=0.0, target_modules=list(mtg.TARGETS), bias="none",
                     task_type="CAUSAL_LM", use_rslora=False, trainable_token_indices=tt_indices(case, ids))
    base = mtg.load_base(case, False, dtype)
    W_emb = base.model.embed_tokens.weight.detach().clone()
    W_head = base.lm_head.weight.detach().clone()
    tied = base.lm_head.weight is base.model.embed_tokens.weight
    assert tied == (case == "llama_mha_tied"), f"{case}: base tie {tied}"
    pm = get_peft_model(base, cfg)
    deltas = [EMB, HEAD] if case == "llama_gqa4" else [EMB]
    sd = get_peft_model_state_dict(pm)
    assert set(sd) == set(init) | set(deltas), f"{case}: PEFT keys differ: {sorted(set(sd) ^ (set(init) | set(deltas)))}"
    # set_peft_model_state_dict requires the delta keys too (KeyError otherwise): pass their own initial values
    full = {k: v.to(dtype) for k, v in init.items()}
    full.update({k: sd[k].detach().clone() for k in deltas})
    res = set_peft_model_state_dict(pm, full)
    assert not res.unexpected_keys, res.unexpected_keys
    sd = get_peft_model_state_dict(pm)
    for k, v in init.items():
        assert torch.equal(sd[k], v.to(dtype)), f"{case}: {k} not loaded"
    # init_weights=True (the only choice through LoraConfig): delta = copy of the base rows
    idx = torch.tensor(ids)
    assert torch.equal(sd[EMB], W_emb[idx]), f"{case}: embedding delta is not the base rows"
    if HEAD in sd:
        assert torch.equal(sd[HEAD], W_head[idx]), f"{case}: lm_head delta is not the base rows"
    emb_w = pm.base_model.model.model.embed_tokens
    head_w = pm.base_model.model.lm_head
    tie = {"lm_head_wrapped": type(head_w).__name__}
    if case == "llama_mha_tied":
        # PEFT ties the lm_head to the embedding's token adapter: one delta, shared
        assert type(head_w).__name__ == "TrainableTokensWrapper", type(head_w)
        assert head_w.token_adapter.tied_adapter is emb_w.token_adapter
        assert head_w.token_adapter.trainable_tokens_delta is emb_w.token_adapter.trainable_tokens_delta
        assert head_w.token_adapter.trainable_tokens_delta["default"] is emb_w.token_adapter.trainable_tokens_delta[
            "default"]
        assert head_w.token_adapter.get_base_layer().weight is emb_w.token_adapter.get_base_layer().weight
        tie.update({"lm_head_tied_adapter_is_embedding_adapter": True, "shared_delta_parameter": True,
                    "base_weights_shared": True})
    else:
        assert head_w.token_adapter.tied_adapter is None
        assert head_w.token_adapter.trainable_tokens_delta["default"] is not \
            emb_w.token_adapter.trainable_tokens_delta["default"]
        tie.update({"lm_head_tied_adapter_is_embedding_adapter": False, "shared_delta_parameter": False})
    params = {}
    for n, p in pm.named_parameters():          # named_parameters dedups the shared delta
        if p.requires_grad:
            key = n.replace(".default.weight", ".weight")
            if key.endswith(".trainable_tokens_delta.default"):
                key = key[:-len(".default")]
            assert key in sd, n
            params[key] = p
    assert set(params) == set(sd), sorted(set(params) ^ set(sd))
    return pm, params, tie


def row_grad_check(case, init, ids, seqs, grads):
    """The delta gradients = the selected rows of d(loss)/d(embedding / lm_head weight) of the plain LoRA model
    (make_train_golden.make_peft, base matrices made trainable; tied: one matrix, both uses accumulated).  Also the
    LoRA gradients must be bit-identical to train/<case>/grads.safetensors (the deltas start at the base rows)."""
    from safetensors.torch import load_file
    ref = load_file(os.path.join(TRAIN, case, "grads.safetensors"))
    lora_diff = max(float((grads[k] - ref[k]).abs().max()) for k in ref)
    assert set(ref) == {k for k in grads if "trainable_tokens_delta" not in k}
    assert lora_diff == 0.0, f"{case}: LoRA grads differ from train/{case}/grads.safetensors by {lora_diff}"
    pm, params = mtg.make_peft(case, False, init, torch.float32)
    emb = pm.base_model.model.model.embed_tokens.weight
    head = pm.base_model.model.lm_head.weight
    emb.requires_grad_(True)
    head.requires_grad_(True)
    params = dict(params, emb=emb, head=head)
    g, _, _ = mtg.first_grads(pm, params, seqs)
    idx = torch.tensor(ids)
    diff = {EMB: float((grads[EMB] - g["emb"][idx]).abs().max())}
    if HEAD in grads:
        diff[HEAD] = float((grads[HEAD] - g["head"][idx]).abs().max())
    assert max(diff.values()) < 1e-6, f"{case}: delta grads vs base row grads {diff}"
    return {"lora_grads_vs_train_golden_max_abs": lora_diff, "delta_grad_vs_base_row_grad_max_abs": diff}


def trainer_decays(pm, params):
    """What HF Trainer's default optimizer grouping would do with these parameters (weight decay or not)."""
    from transformers import Trainer
    names = set(Trainer.get_decay_parameter_names(None, pm))   # uses no Trainer state
    out = {}
    for n, p in pm.named_parameters():
        if p.requires_grad and "trainable_tokens_delta" in n:
            out[n] = n in names
    return out


def logits_of(model, seq):
    with torch.no_grad():
        return model(input_ids=torch.tensor([seq])).logits[0].float()


def save_adapter(pm, case, d):
    from peft import get_peft_model_state_dict
    out = os.path.join(d, "peft_adapter")
    pm.peft_config["default"].base_model_name_or_path = f"../../../forward/{case}"   # relative to `out`
    # "auto" resolves to False here (vocabulary not resized; trainable tokens); explicit to skip its Hub lookup
    pm.save_pretrained(out, save_embedding_layers=False)
    if os.path.exists(os.path.join(out, "README.md")):
        os.remove(os.path.join(out, "README.md"))
    assert sorted(os.listdir(out)) == ["adapter_config.json", "adapter_model.safetensors"], os.listdir(out)
    from safetensors.torch import load_file
    saved = load_file(os.path.join(out, "adapter_model.safetensors"))
    sd = get_peft_model_state_dict(pm, save_embedding_layers=False)
    assert set(saved) == set(sd), sorted(set(saved) ^ set(sd))
    for k in sd:
        assert torch.equal(saved[k], sd[k].detach().cpu()), k
    return out, saved


def make_case(case, versions):
    from peft import PeftModel
    from safetensors.torch import load_file
    d = os.path.join(OUT, case)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    V = json.load(open(os.path.join(mtg.FWD, case, "config.json")))["vocab_size"]
    seqs = read_tokens(case)
    assert [len(s) for s in seqs] == mtg.LENGTHS
    ids, why = pick_ids(seqs, V)
    init = load_file(os.path.join(TRAIN, case, "lora_init.safetensors"))

    pm, params, tie = make_peft(case, init, ids, torch.float32)
    decay = trainer_decays(pm, params)
    pad_err = mtg.check_padding(pm, seqs)
    grads, loss0, n0 = mtg.first_grads(pm, params, seqs)
    mtg.save_st(os.path.join(d, "grads.safetensors"), grads)
    grad_checks = row_grad_check(case, init, ids, seqs, grads)
    rec = mtg.curve(pm, params, seqs)

    # float64 headroom: the same PEFT computation redone in float64
    pm64, params64, _ = make_peft(case, init, ids, torch.float64)
    g64, _, _ = mtg.first_grads(pm64, params64, seqs)
    rec64 = mtg.curve(pm64, params64, seqs)
    worst_g = max(mtg.rel_l2(grads[k], g64[k]) for k in grads)
    worst_delta_g = max(mtg.rel_l2(grads[k], g64[k]) for k in grads if "trainable_tokens_delta" in k)
    worst_l = max(abs(a - b) / abs(b) for a, b in zip(rec["loss"], rec64["loss"]))
    worst_n = max(abs(a - b) / abs(b) for a, b in zip(rec["grad_norm"], rec64["grad_norm"]))
    zero = [k for k, g in grads.items() if not float(g.abs().max()) > 0]
    assert not zero, f"{case}: zero gradients {zero[:4]}"
    rec.update({"case": case, "quant": "none", "trainable_tokens": ids,
                "definition": "loss = sum over the step's micro-batches of sum(token losses) / step targets; "
                              "lr = the lr the optimizer step used; grad_norm = clip_grad_norm_ total (pre-clip) "
                              "over LoRA A/B and the trainable_tokens_delta(s)",
                "f32_vs_f64_max_rel": {"loss": worst_l, "grad_norm": worst_n}})
    json.dump(rec, open(os.path.join(d, "curve.json"), "w"), indent=1)

    # trained model: logits on sequence 0, saved adapter, reload, merge
    pm.eval()
    seq0 = seqs[0]
    with open(os.path.join(d, "tokens0.txt"), "w") as f:
        f.write(" ".join(map(str, seq0)) + "\n")
    lg = logits_of(pm, seq0)
    lg.numpy().astype("<f4").tofile(os.path.join(d, "logits.bin"))
    out, saved = save_adapter(pm, case, d)
    acfg = json.load(open(os.path.join(out, "adapter_config.json")))
    reloaded = PeftModel.from_pretrained(mtg.load_base(case, False, torch.float32), out)
    reload_diff = float((logits_of(reloaded, seq0) - lg).abs().max())
    assert reload_diff == 0.0, f"{case}: reloaded adapter changes the logits by {reload_diff}"
    trained = {k: v.detach().clone() for k, v in saved.items() if "trainable_tokens_delta" in k}
    merged = pm.merge_and_unload()
    lm = logits_of(merged, seq0)
    merge_diff = float((lm - lg).abs().max())
    assert merge_diff < MERGE_TOL, f"{case}: merged logits differ by {merge_diff}"
    lm.numpy().astype("<f4").tofile(os.path.join(d, "logits_merged.bin"))
    idx = torch.tensor(ids)
    assert torch.equal(merged.model.embed_tokens.weight[idx].detach(), trained[EMB])
    assert torch.equal(merged.lm_head.weight[idx].detach(), trained[HEAD if HEAD in trained else EMB])
    if case == "llama_mha_tied":
        assert merged.lm_head.weight is merged.model.embed_tokens.weight

    delta_keys = sorted(k for k in grads if "trainable_tokens_delta" in k)
    # the id in no sequence: untied, its embedding row never gets a gradient, so AdamW only decays it
    c = why["in_no_sequence"]
    base_row = mtg.load_base(case, False, torch.float32).model.embed_tokens.weight[c].detach().double()
    row = trained[EMB][ids.index(c)].double()
    factor = float(np.prod([1.0 - lr * mtg.WD for lr in rec["lr"]]))
    unused = {"id": c, "decay_factor_prod_1_minus_lr_wd": factor,
              "trained_over_base_rel_dev": float((row - factor * base_row).norm() / (factor * base_row).norm()),
              "changed": bool(not torch.equal(row, base_row))}
    if case == "llama_gqa4":
        assert unused["trained_over_base_rel_dev"] < 1e-6, unused
    meta = {"case": case, "model_dir": f"tests/fixtures/forward/{case}",
            "tokens": f"tests/fixtures/train/{case}/tokens.txt",
            "lora_init": f"tests/fixtures/train/{case}/lora_init.safetensors",
            "trainable_tokens": ids, "ids_rule": why,
            "trainable_token_indices_passed": tt_indices(case, ids),
            "trainable_token_indices_in_adapter_config": acfg.get("trainable_token_indices"),
            "deltas": {k: {"shape": list(grads[k].shape),
                           "init": "copy of the base rows (init_weights=True)",
                           "grad_row_norms": [float(r) for r in grads[k].double().norm(dim=1)]}
                       for k in delta_keys},
            "tie": tie,
            "adapter_keys": {"lora": len([k for k in saved if ".lora_" in k]), "deltas": delta_keys,
                             "all_saved_deltas": sorted(k for k in saved if "trainable_tokens_delta" in k)},
            "lora": {"r": mtg.R, "lora_alpha": mtg.ALPHA, "scale": mtg.ALPHA / mtg.R, "dropout": 0.0,
                     "targets": mtg.TARGETS, "tensors": len(init)},
            "grads": {"rows": mtg.GRAD_ROWS, "micro_batch": 2, "grad_accum": 1,
                      "padding": "right, id 0, label -100", "loss": loss0, "targets": n0,
                      "grad_norm": float(torch.sqrt(sum((g.double() ** 2).sum() for g in grads.values()))),
                      "f32_vs_f64_worst_rel_l2": worst_g, "f32_vs_f64_worst_rel_l2_deltas": worst_delta_g,
                      "max_abs_logit_diff_padded_vs_alone": pad_err, **grad_checks},
            "curve": {"steps": mtg.STEPS, "micro_batch": 1, "grad_accum": mtg.ACCUM, "lr": mtg.LR,
                      "betas": list(mtg.BETAS), "eps": mtg.EPS, "weight_decay": mtg.WD, "clip": mtg.CLIP,
                      "schedule": "cosine", "warmup": mtg.WARMUP, "sequence_of_micro_batch": "i mod 4",
                      "optimizer_params": "LoRA A/B + trainable_tokens_delta(s), one group, all decayed",
                      "f32_vs_f64_max_rel": {"loss": worst_l, "grad_norm": worst_n}},
            "hf_trainer_would_decay": decay,
            "embedding_row_of_unused_id_after_training": unused,
            "logits": {"sequence": 0, "T": len(seq0), "V": V, "merged_vs_unmerged_max_abs": merge_diff,
                       "reloaded_vs_trained_max_abs": reload_diff},
            "versions": versions}
    json.dump(meta, open(os.path.join(d, "meta.json"), "w"), indent=2)
    print(f"{case}: ids {ids} loss0 {loss0:.6f} curve {rec['loss'][0]:.5f}->{rec['loss'][-1]:.5f} "
          f"f64 headroom g {worst_g:.1e} loss {worst_l:.1e} norm {worst_n:.1e} merge {merge_diff:.1e} "
          f"deltas {delta_keys} config {acfg.get('trainable_token_indices')}")


def main():
    if os.environ.get("PYTHONHASHSEED") != "0":
        # PEFT stores target_modules as a set: fix str hashing so adapter_config.json's list order is reproducible
        os.environ["PYTHONHASHSEED"] = "0"
        os.execv(sys.executable, [sys.executable] + sys.argv)
    import peft, safetensors, transformers
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    versions = {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
                "safetensors": safetensors.__version__, "numpy": np.__version__}
    os.makedirs(OUT, exist_ok=True)
    for case in sys.argv[1:] or CASES:
        make_case(case, versions)


if __name__ == "__main__":
    main()
