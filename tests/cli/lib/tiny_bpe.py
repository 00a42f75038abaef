#!/usr/bin/env python3
"""tiny_bpe.py OUT [--split-regex]: a 256-token byte-level BPE tokenizer.json for the tiny models of
tests/fixtures/forward/ (vocab 256), so that `ftune merge` can write a GGUF vocabulary for them.

GPT-2's byte-to-unicode map gives 254 of the 256 byte symbols (ids 0..253), then the results of 2
merges ("Ġt", "he": ids 254, 255). Plain: ByteLevel with its own regex (use_regex). --split-regex:
Qwen2's Split regex before a ByteLevel without one, the pre-tokenizer the GGUF must carry as qwen2.
Python stdlib only (CI has no venv)."""
import json
import sys

bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
cs, n = bs[:], 0
for b in range(256):
    if b not in bs:
        bs.append(b)
        cs.append(256 + n)
        n += 1
vocab = {chr(c): i for i, c in enumerate(cs[:254])}
vocab["\u0120t"], vocab["he"] = 254, 255
split = "--split-regex" in sys.argv[2:]
bl = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": not split}
pre = bl
if split:
    regex = ("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
             "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")
    pre = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": False}, bl]}
json.dump({"version": "1.0", "added_tokens": [], "normalizer": None, "pre_tokenizer": pre, "post_processor": bl,
           "decoder": bl,
           "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                     "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                     "vocab": vocab, "merges": ["\u0120 t", "h e"]}}, open(sys.argv[1], "w"))
