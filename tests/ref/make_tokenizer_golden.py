#!/usr/bin/env python3
"""Golden ids for tests/test_tokenizer.c, made with Hugging Face `tokenizers` (Tokenizer.from_file).

Tokenizers (see tests/fixtures/tokenizer/PROVENANCE):
  llama3       ../shared/assets/llama3-tokenizer/tokenizer.json.gz   (byte-level BPE, ignore_merges)
  qwen3        ../shared/assets/qwen3-tokenizer/tokenizer.json.gz    (byte-level BPE, NFC, list merges)
  stories260K  models/stories260K/tokenizer.json                     (SentencePiece BPE, Metaspace first)
  llama2-spm   made here from ../shared/assets/llama2-sentencepiece/tokenizer.model with transformers'
               converter, rewritten to the Llama-2-hf layout (normalizer Prepend+Replace, <s> template)
  mistral-spm  made here from mistral_instruct_tokenizer_240323.model.v3 (Metaspace first, 771 control
               tokens, <s> template)
  synth-bl     trained here: NFKC+Lowercase, ByteLevel(add_prefix_space, use_regex), added tokens with
               lstrip/rstrip/single_word/normalized, <s> $A </s>
  synth-spm    trained here: Replace regex, Digits, Split (several behaviours), Metaspace(always, split),
               BPE with unk (no byte fallback), continuing_subword_prefix + end_of_word_suffix, Bert
               post-processor, no decoder
The llama2/mistral tokenizer.json files are committed zstd-compressed (tokenizer.json.zst); the
synthetic ones as plain JSON. The corpus is edge cases + llama.cpp's tokenizer test inputs + Meta's
Llama 3 vectors + a deterministic sample of the shared datasets.

Run from the repo root: /work/venv/bin/python tests/ref/make_tokenizer_golden.py
"""
import glob
import gzip
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile

import tokenizers
from tokenizers import (AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers,
                        processors, trainers)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED = os.path.join(ROOT, "..", "shared", "assets")
FIX = os.path.join(ROOT, "tests", "fixtures", "tokenizer")

EDGE = [
    "", " ", "  ", "   ", "\t", "\n", "\n\n", "\n\n\n", "\t\n", "\r\n", "a\r\nb\r\n\r\nc", "line1\nline2\n",
    "Hello world", " Hello world", "Hello World", " Hello World", " Hello World!", "Hello, world!",
    "  leading spaces", "trailing spaces   ", "tabs\tin\t\ttext", "mixed \t \n whitespace \n\t ",
    "1", "12", "123", "1234", "12345", "123456789012345678901234567890", "3.14159 and 2,718,281",
    "It's he's I'll we've they'd she'S YOU'LL I'M 'tis", "don't DON'T won't",
    "你好世界", "日本語のテキストです。", "한국어 텍스트", "Ελληνικά κείμενα", "Русский текст", "עברית", "العربية",
    "emoji 😀😃😄 and 👍🏽", "family 👨‍👩‍👧‍👦 zwj", "flags 🇫🇷🇩🇪", "❤️‍🔥",
    "café", "cafe\u0301", "e\u0301\u0301", "Å Å Å", "\u1100\u1161\u11a8", "ﬁ ligature ①",
    "Việt Nam", " Việt", "naïve résumé", "ǅ ǈ İstanbul",
    "<|begin_of_text|>Hello", "Hello<|end_of_text|>", "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
    "<s>Hello</s>", "<s> Hello </s>", "[INST] hi [/INST]", "text<s>more", "<unk>", "<|endoftext|>",
    "<|eot_id|><|start_header_id|>system<|end_header_id|>\n\nYou are helpful.<|eot_id|>",
    "<think>\nreason\n</think>\n\nanswer", "a<mask>b <mask> c", "[tool] call [tool]x", "Hello Hello,Hello",
    "NEL\u0085here", "nbsp\u00a0here", "ideographic\u3000space", "zero\u200bwidth", "soft\u00adhyphen",
    "ctrl\x01\x02\x7f chars", "▁already▁meta", "  ▁ mixed", "<0x41> literal",
    "https://example.com/path?q=1&r=2#frag", "def f(x):\n    return x ** 2\n", "SELECT * FROM t WHERE a = 'b';",
    "a-b-c;d,e", "word--dash", "x = [1, 2, 3]  # comment", "\u00e9\u0300 combined", "ñ vs n\u0303",
    "x\u1ac6\u1aba y\u0301\u1ac6\u0316 \U00011935\U00011930 \u0898\u0300 newer marks", "🤗🤗🤗🤗🤗🤗🤗🤗🤗🤗", "a" * 300, " " * 50 + "x", "\n" * 20, "ab" * 100, "😀" * 40,
]


def llamacpp_inputs():
    with open(os.path.join(SHARED, "llamacpp-vocab", "ggml-vocab-llama-bpe.gguf.inp"), encoding="utf-8") as f:
        return f.read().split("\n__ggml_vocab_test__\n")[:-1]


def meta_inputs():
    with open(os.path.join(SHARED, "tokenizer-test-vectors", "meta_llama3_official_vectors.json")) as f:
        j = json.load(f)
    return [c["text"] for c in j["cases"] if "text" in c]


def dataset_strings():
    out = []

    def walk(v):
        if isinstance(v, str):
            if v.strip():
                out.append(v)
        elif isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    for p in sorted(glob.glob(os.path.join(SHARED, "datasets", "*", "*"))):
        with open(p, encoding="utf-8") as f:
            if p.endswith(".jsonl"):
                for line in f:
                    if line.strip():
                        walk(json.loads(line))
            else:
                walk(json.load(f))
    return out


def corpus():
    rnd = random.Random(1234)
    ds = dataset_strings()
    sample = [s[:400] for s in rnd.sample(ds, 120)]
    seen, texts = set(), []
    for t in EDGE + llamacpp_inputs() + meta_inputs() + sample:
        if t not in seen:
            seen.add(t)
            texts.append(t)
    return texts


def spm_tokenizer_json(model_path, workdir):
    """transformers' converter (Metaspace form) for a SentencePiece .model."""
    from transformers import LlamaTokenizerFast
    src = os.path.join(workdir, "src")
    os.makedirs(src, exist_ok=True)
    shutil.copy(model_path, os.path.join(src, "tokenizer.model"))
    tok = LlamaTokenizerFast.from_pretrained(src, legacy=False)
    out = os.path.join(workdir, "out")
    tok.save_pretrained(out)
    with open(os.path.join(out, "tokenizer.json"), encoding="utf-8") as f:
        return json.load(f)


BOS_TEMPLATE = {
    "type": "TemplateProcessing",
    "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
    "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
             {"SpecialToken": {"id": "<s>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
    "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}},
}
SPM_CONFIG = {"add_bos_token": True, "add_eos_token": False, "bos_token": "<s>", "eos_token": "</s>",
              "unk_token": "<unk>", "pad_token": None, "tokenizer_class": "LlamaTokenizer",
              "clean_up_tokenization_spaces": False}


def write_spm(name, model_path, legacy):
    with tempfile.TemporaryDirectory() as wd:
        j = spm_tokenizer_json(model_path, wd)
    j["model"]["unk_token"] = "<unk>"
    j["post_processor"] = BOS_TEMPLATE
    if legacy:  # the layout of meta-llama/Llama-2-7b-hf tokenizer.json
        j["normalizer"] = {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "▁"}, {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]}
        j["pre_tokenizer"] = None
    d = os.path.join(FIX, name)
    os.makedirs(d, exist_ok=True)
    raw = json.dumps(j, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    with open(os.path.join(d, "tokenizer.json.zst"), "wb") as f:
        f.write(subprocess.run(["zstd", "-19", "-q", "-c"], input=raw, stdout=subprocess.PIPE, check=True).stdout)
    with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
        json.dump(SPM_CONFIG, f, indent=1)
    return raw


def write_synth_bl(texts):
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tr = trainers.BpeTrainer(vocab_size=700, special_tokens=["<s>", "</s>"],
                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, tr)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 1)])
    tok.add_special_tokens([AddedToken("<mask>", lstrip=True, single_word=True, normalized=False)])
    tok.add_tokens([AddedToken("[tool]", rstrip=True, normalized=True),
                    AddedToken("Hello", single_word=True, normalized=False)])
    d = os.path.join(FIX, "synth-bl")
    os.makedirs(d, exist_ok=True)
    tok.save(os.path.join(d, "tokenizer.json"))
    with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
        json.dump({"bos_token": "<s>", "eos_token": "</s>"}, f, indent=1)


def write_synth_spm(texts):
    tok = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=False, continuing_subword_prefix="##",
                               end_of_word_suffix="</w>"))
    tok.normalizer = normalizers.Sequence([normalizers.NFD(), normalizers.Replace(Regex("\\s+"), " "),
                                           normalizers.Strip(left=False, right=True)])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex("[,;]"), behavior="removed"),
        pre_tokenizers.Split("-", behavior="merged_with_previous"),
        pre_tokenizers.Split(Regex("\\p{P}+"), behavior="contiguous"),
        pre_tokenizers.Split(Regex("[aeiou]"), behavior="merged_with_next", invert=True),
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.Metaspace(prepend_scheme="always", split=True)])
    tr = trainers.BpeTrainer(vocab_size=600, special_tokens=["<unk>", "[CLS]", "[SEP]"], limit_alphabet=120,
                             continuing_subword_prefix="##", end_of_word_suffix="</w>", show_progress=False)
    tok.train_from_iterator(texts, tr)
    tok.post_processor = processors.BertProcessing(("[SEP]", 2), ("[CLS]", 1))
    tok.add_special_tokens([AddedToken("<sep>", lstrip=True, rstrip=True)])
    d = os.path.join(FIX, "synth-spm")
    os.makedirs(d, exist_ok=True)
    tok.save(os.path.join(d, "tokenizer.json"))
    with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
        json.dump({"unk_token": "<unk>"}, f, indent=1)


def golden(name, path, texts):
    """golden_<name>.json: per corpus line (same order as corpus.json) the ids without specials;
    "sp" = ids with add_special_tokens when they differ from "ids"; "dec" = decode(ids) when it is not
    the text (absent = round-trips); "dsk" = decode(ids_special, skip_special_tokens=True) when it
    differs from the decoded text."""
    tok = Tokenizer.from_file(path)
    cases, rt = [], 0
    for t in texts:
        ids = tok.encode(t, add_special_tokens=False).ids
        ids_sp = tok.encode(t, add_special_tokens=True).ids
        dec = tok.decode(ids, skip_special_tokens=False)
        dec_skip = tok.decode(ids_sp, skip_special_tokens=True)
        c = {"ids": ids}
        if ids_sp != ids:
            c["sp"] = ids_sp
        if dec != t:
            c["dec"] = dec
        else:
            rt += 1
        if dec_skip != dec:
            c["dsk"] = dec_skip
        cases.append(c)
    out = {"tokenizer": name, "made_with": f"tokenizers {tokenizers.__version__}", "cases": cases}
    with open(os.path.join(FIX, f"golden_{name}.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=True, separators=(",", ":"))
        f.write("\n")
    print(f"{name}: {len(cases)} cases, {sum(len(c['ids']) for c in cases)} ids, {rt} round-trip")


def main():
    os.makedirs(FIX, exist_ok=True)
    texts = corpus()
    with open(os.path.join(FIX, "corpus.json"), "w", encoding="utf-8") as f:
        json.dump(texts, f, ensure_ascii=True, indent=0)
        f.write("\n")
    train_texts = dataset_strings()
    write_spm("llama2-spm", os.path.join(SHARED, "llama2-sentencepiece", "tokenizer.model"), legacy=True)
    write_spm("mistral-spm", os.path.join(SHARED, "mistral-sentencepiece",
                                          "mistral_instruct_tokenizer_240323.model.v3"), legacy=False)
    write_synth_bl(train_texts)
    write_synth_spm(train_texts)
    with tempfile.TemporaryDirectory() as td:
        paths = {}
        for n in ("llama3", "qwen3"):
            p = os.path.join(td, n + ".json")
            with gzip.open(os.path.join(SHARED, f"{n}-tokenizer", "tokenizer.json.gz")) as g, open(p, "wb") as f:
                f.write(g.read())
            paths[n] = p
        for n in ("llama2-spm", "mistral-spm"):
            p = os.path.join(td, n + ".json")
            raw = subprocess.run(["zstd", "-d", "-q", "-c", os.path.join(FIX, n, "tokenizer.json.zst")],
                                 stdout=subprocess.PIPE, check=True).stdout
            with open(p, "wb") as f:
                f.write(raw)
            paths[n] = p
        paths["stories260K"] = os.path.join(ROOT, "models", "stories260K", "tokenizer.json")
        paths["synth-bl"] = os.path.join(FIX, "synth-bl", "tokenizer.json")
        paths["synth-spm"] = os.path.join(FIX, "synth-spm", "tokenizer.json")
        for n, p in paths.items():
            golden(n, p, texts)


if __name__ == "__main__":
    sys.exit(main())
