#!/usr/bin/env python3
"""Greedy-decoding and eval-loss goldens for the converted stories260K model (models/stories260K/).

Makes, under tests/fixtures/stories260K/:
  greedy_ids.txt     one line, space-separated ids: BOS (1) + the documented run.c greedy text
                     (stories260K.md, "Once upon a time" .. end of its code block) encoded with tok512.model
                     by sentencepiece (256 text tokens -> 257 ids).
  greedy_hf_ids.txt  one line: 1 + the ids HF transformers greedy-generates from [1] (float32, eager attention,
                     no EOS stop) for the same number of tokens.  The script asserts both lines agree on the
                     compared prefix and prints the agreement count (run.c stops on BOS, which never comes here).
  sample_tokens.txt  3 lines of space-separated ids: BOS + short TinyStories-like texts written for this
                     fixture (below), encoded with tok512.model (sentencepiece; the HF tokenizer.json in
                     models/stories260K is asserted to give the same ids).
  loss.json          transformers' next-token cross-entropy (natural log, float64 printout of float32 math)
                     for the sample lines: per line = mean over that line's T-1 predicted positions; overall =
                     mean over all predicted positions of all lines (token-weighted, as `ftune eval` defines it);
                     also the unweighted mean of the per-line losses and the predicted-token counts.

Deterministic (greedy decoding, no sampling).  Run after tests/ref/convert_stories260k.py:
  /work/venv/bin/python tests/ref/stories_greedy.py
"""
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
SHARED = os.environ.get("FT_SHARED", os.path.join(REPO, "..", "shared"))
ASSETS = os.path.join(SHARED, "assets", "stories260K")
MODEL = os.path.join(REPO, "models", "stories260K")
OUT = os.path.join(REPO, "tests", "fixtures", "stories260K")

# Original TinyStories-style texts written for this fixture (not copied from the dataset).
SAMPLES = [
    "Once upon a time, there was a little dog named Max. Max liked to run in the big green park with "
    "his friend Sam. One day, Max found a red ball under a tree. He was very happy and played with it all day.",
    "Tom and his mom went to the store. Tom wanted a big cookie, but mom said, \"We need to buy milk first.\" "
    "Tom was a good boy, so he helped his mom. Then she gave him the cookie and he smiled.",
    "One day, a little bird sat on a branch. The sun was warm and the sky was blue. The bird sang a happy "
    "song. A girl named Sue heard the song and she danced in the grass. They were friends.",
]


def line(ids):
    return " ".join(str(i) for i in ids) + "\n"


def main():
    sys.path.insert(0, HERE)
    from convert_stories260k import documented_greedy_text, greedy
    import sentencepiece as spm
    from transformers import AutoTokenizer, LlamaForCausalLM
    import transformers, tokenizers, sentencepiece as spm_mod

    torch.manual_seed(0)
    os.makedirs(OUT, exist_ok=True)
    sp = spm.SentencePieceProcessor(model_file=os.path.join(ASSETS, "tok512.model"))
    tok = AutoTokenizer.from_pretrained(MODEL)
    model = LlamaForCausalLM.from_pretrained(MODEL, dtype=torch.float32, attn_implementation="eager").eval()

    # ---- greedy ----
    doc = documented_greedy_text(os.path.join(ASSETS, "stories260K.md"))
    assert doc.startswith("Once upon a time"), doc[:40]
    doc_ids = [1] + sp.encode(doc)
    n = len(doc_ids) - 1
    hf_ids = [1] + greedy(model, n)
    agree = next((i for i, (a, b) in enumerate(zip(hf_ids, doc_ids)) if a != b), len(doc_ids))
    print(f"greedy: {agree}/{len(doc_ids)} ids agree (incl. BOS); {agree - 1}/{n} generated tokens")
    if agree != len(doc_ids):
        raise SystemExit(f"HF greedy diverges at {agree}: doc={doc_ids[agree:agree+8]} hf={hf_ids[agree:agree+8]}")
    if sp.decode(doc_ids[1:]) != doc:
        raise SystemExit("sentencepiece round trip of the documented text differs")
    with open(os.path.join(OUT, "greedy_ids.txt"), "w") as f:
        f.write(line(doc_ids))
    with open(os.path.join(OUT, "greedy_hf_ids.txt"), "w") as f:
        f.write(line(hf_ids))

    # ---- eval-loss sample ----
    rows = []
    for s in SAMPLES:
        ids = [1] + sp.encode(s)
        hf = tok.encode(s)
        if hf != ids:
            raise SystemExit(f"HF tokenizer differs from sentencepiece on sample: {s[:30]!r}")
        rows.append(ids)
    with open(os.path.join(OUT, "sample_tokens.txt"), "w") as f:
        for ids in rows:
            f.write(line(ids))
    per, counts, total_nll = [], [], 0.0
    with torch.no_grad():
        for ids in rows:
            x = torch.tensor([ids])
            logits = model(x).logits[0].float()
            nll = torch.nn.functional.cross_entropy(logits[:-1], x[0, 1:], reduction="none")
            per.append(float(nll.mean()))
            counts.append(int(nll.numel()))
            total_nll += float(nll.double().sum())
    res = {
        "model": "models/stories260K",
        "tokens_file": "sample_tokens.txt",
        "definition": "mean next-token cross-entropy (nats); per_line = mean over that line's T-1 positions; "
                      "loss = sum of all NLL / total predicted positions (token-weighted over lines)",
        "lengths": [len(r) for r in rows],
        "n_predicted": counts,
        "per_line": per,
        "loss": total_nll / sum(counts),
        "mean_of_lines": sum(per) / len(per),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "tokenizers": tokenizers.__version__, "sentencepiece": spm_mod.__version__},
    }
    json.dump(res, open(os.path.join(OUT, "loss.json"), "w"), indent=2)
    print(json.dumps({k: res[k] for k in ("lengths", "per_line", "loss")}))

    # ---- load-back check ----
    back = [list(map(int, l.split())) for l in open(os.path.join(OUT, "sample_tokens.txt"))]
    assert back == rows
    assert list(map(int, open(os.path.join(OUT, "greedy_ids.txt")).read().split())) == doc_ids
    print("OK:", OUT)


if __name__ == "__main__":
    main()
