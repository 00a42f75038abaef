#!/usr/bin/env python3
"""make_chat_golden.py: golden renderings, token ids and assistant masks for data/chat_template.c.

For each (template, conversation) it records what transformers produces with the model's own Jinja
template (passed explicitly as chat_template=) and the real tokenizer:
  text  = tokenizer.apply_chat_template(messages, tokenize=False, ...)
  ids   = tokenizer.apply_chat_template(messages, tokenize=True, ...)["input_ids"]
  mask  = 1 for tokens overlapping a trained assistant span (transformers' assistant-mask rule:
          any token that overlaps the generated characters), where a span runs from the end of the
          rendered prefix messages[:i] + generation prompt to the end of the turn's end token
          (<|eot_id|>, <|im_end|>, </s>) in the full text. The prefix must be a prefix of the full
          rendering (asserted), which is what makes this a definition independent of the C code.
Mistral (Nemo Jinja) has no tokenizer here: text only, rendered with transformers' own Jinja
environment (render_jinja_template) with bos "<s>" and eos "</s>".

Usage: /work/venv/bin/python tests/ref/make_chat_golden.py [out.json]
Inputs: /work/shared/assets/{llama3-tokenizer,qwen3-tokenizer}/tokenizer.json.gz + tokenizer_config.json,
        /work/shared/assets/chat-templates/*.jinja. Output: tests/fixtures/chat/goldens.json.
"""
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile

import transformers
from transformers import AutoTokenizer
from transformers.utils.chat_template_utils import render_jinja_template

ASSETS = os.environ.get("FT_SHARED_ASSETS", "/work/shared/assets")
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "fixtures", "chat", "goldens.json")

TEMPLATES = {
    # name: (jinja file, tokenizer dir or None, end token)
    "llama3": ("meta-llama-Meta-Llama-3-8B-Instruct.jinja", "llama3-tokenizer", "<|eot_id|>"),
    "llama3.1": ("meta-llama-Llama-3.1-8B-Instruct.jinja", "llama3-tokenizer", "<|eot_id|>"),
    "qwen2.5": ("Qwen-Qwen2.5-7B-Instruct.jinja", "qwen3-tokenizer", "<|im_end|>"),
    "qwen3": ("Qwen-Qwen3-0.6B.jinja", "qwen3-tokenizer", "<|im_end|>"),
    "mistral": ("mistralai-Mistral-Nemo-Instruct-2407.jinja", None, "</s>"),
    # the same template over a SentencePiece tokenizer (Metaspace prepend_scheme "first": HF prepends its "▁"
    # only where the whole rendered string starts, not to the text after [INST]): ids and masks
    "mistral-spm": ("mistralai-Mistral-Nemo-Instruct-2407.jinja", "mistral-spm", "</s>"),
    # committed beside the goldens (tests/fixtures/chat/PROVENANCE.md): not among the shared assets
    "mistral-v7": (os.path.join(HERE, "..", "fixtures", "chat", "mistralai-Mistral-Small-24B-Instruct-2501.jinja"),
                   None, "</s>"),
}

S, U, A = "system", "user", "assistant"


def m(role, content, **kw):
    d = {"role": role, "content": content}
    d.update(kw)
    return d


CONVS = {
    "basic": [m(S, "You are a helpful assistant."), m(U, "What is 2+2?"), m(A, "2+2 equals 4.")],
    "multi_no_system": [m(U, "Hi!"), m(A, "Hello! How can I help?"), m(U, "Tell me a joke about cats."),
                        m(A, "Why did the cat sit on the computer? To keep an eye on the mouse!")],
    "whitespace_unicode": [m(S, "  Be concise.\n"), m(U, "Translate 'bonjour' \u2014 \u4e2d\u6587 please \U0001F642"),
                           m(A, "\n\u4f60\u597d (n\u01d0 h\u01ceo)\n"), m(U, "  And in Spanish?  "),
                           m(A, "Hola.  ")],
    "code": [m(U, "Write a Python function `add(a, b)`:\n"),
             m(A, "```python\ndef add(a, b):\n    return a + b\n```\n\nUse it like `add(1, 2)`.")],
    "thinking": [m(U, "What is 17*3?"), m(A, "<think>\n17*3 = 51\n</think>\n\n17 \u00d7 3 = 51."),
                 m(U, "And 51/3?"), m(A, "<think>\nDivide by three.\n</think>\n\n51 / 3 = 17.")],
    "reasoning_field": [m(S, "Answer briefly."), m(U, "How far is 5000 m in km?"),
                        m(A, "It is 5 km.", reasoning_content="\n5000 m / 1000 = 5 km\n")],
    "system_midway": [m(U, "Hello"), m(A, "Hi there."), m(S, "Now answer in French."), m(U, "How are you?"),
                      m(A, "Je vais bien, merci.")],
    "nl_start_content": [m(U, "List two fruits."), m(A, "\n- apple\n- pear"), m(U, "  ok"), m(A, " Done.")],
    "prompt_eval": [m(S, "You are terse."), m(U, "Name three colors.")],
    "multi_eval": [m(U, "What's the result of 5 + 5?"), m(A, "The result of 5 + 5 is 10."), m(U, "Thanks")],
    # what training's samples and `ftune generate --chat` render: one user turn and the assistant header
    "user_prompt": [m(U, "Name three colors.")],
}

# (template, conversation, options)
CASES = []
for t in ["llama3", "llama3.1", "qwen2.5", "qwen3"]:
    for c in CONVS:
        if c in ("prompt_eval", "multi_eval", "user_prompt"):
            CASES.append((t, c, {"add_generation_prompt": True}))
        else:
            CASES.append((t, c, {}))
CASES.append(("llama3.1", "basic", {"date_string": "01 Jan 2025"}))
CASES.append(("qwen3", "thinking", {"loss": "last"}))
CASES.append(("llama3.1", "multi_no_system", {"loss": "last"}))
for c in ["multi_no_system", "code", "prompt_eval", "multi_eval", "user_prompt"]:
    CASES.append(("mistral", c, {"add_generation_prompt": c.endswith("eval") or c == "user_prompt"}))
CASES.append(("mistral", "basic_eval", {}))
for c in ["multi_no_system", "code", "nl_start_content", "user_prompt"]:
    CASES.append(("mistral-spm", c, {"add_generation_prompt": c == "user_prompt"}))
CONVS["basic_eval"] = [m(S, "You are a helpful assistant."), m(U, "What is 2+2?"), m(A, "4."), m(U, "And 3+3?")]
# Mistral Small 3 (V7-Tekken): every conversation opens with a system message, since without one the
# template inserts a default system prompt holding today's date (strftime_now), which ftune does not
CONVS["system_twice"] = [m(S, "Be brief."), m(U, "Hello"), m(A, "Hi."), m(S, "Now answer in French."),
                         m(U, "How are you?"), m(A, "Bien, merci.")]
for c in ["basic", "whitespace_unicode", "system_twice", "prompt_eval", "basic_eval"]:
    CASES.append(("mistral-v7", c, {"add_generation_prompt": c.endswith("eval")}))


def load_tok(name, tmp):
    d = os.path.join(tmp, name)
    os.makedirs(d, exist_ok=True)
    if name == "mistral-spm":  # committed with the tokenizer goldens (tests/fixtures/tokenizer/PROVENANCE)
        src = os.path.join(HERE, "..", "fixtures", "tokenizer", name)
        with open(os.path.join(d, "tokenizer.json"), "wb") as g:
            subprocess.run(["zstd", "-dc", os.path.join(src, "tokenizer.json.zst")], stdout=g, check=True)
        shutil.copy(os.path.join(src, "tokenizer_config.json"), d)
        return AutoTokenizer.from_pretrained(d)
    with gzip.open(os.path.join(ASSETS, name, "tokenizer.json.gz")) as f, open(os.path.join(d, "tokenizer.json"), "wb") as g:
        shutil.copyfileobj(f, g)
    shutil.copy(os.path.join(ASSETS, name, "tokenizer_config.json"), d)
    return AutoTokenizer.from_pretrained(d)


def ids_of(r):
    if isinstance(r, dict) or hasattr(r, "keys"):
        return list(r["input_ids"])
    return list(r)


def main():
    tmp = tempfile.mkdtemp()
    toks = {}
    cases = []
    for tname, cname, opts in CASES:
        jinja_file, tokdir, end_tok = TEMPLATES[tname]
        jinja = open(jinja_file if os.path.isabs(jinja_file) else os.path.join(ASSETS, "chat-templates", jinja_file)).read()
        msgs = CONVS[cname]
        gen = opts.get("add_generation_prompt", False)
        kw = {}
        if "date_string" in opts:
            kw["date_string"] = opts["date_string"]
        loss = opts.get("loss", "assistant")
        case = {"name": f"{tname}/{cname}" + ("/" + loss if loss != "assistant" else "") +
                ("/date" if "date_string" in opts else ""),
                "template": tname, "messages": msgs, "add_generation_prompt": gen, "loss": loss,
                "date_string": opts.get("date_string"), "tokenizer": tokdir}
        if tokdir is None:
            def render(ms, g):
                out, _ = render_jinja_template(conversations=[ms], chat_template=jinja, add_generation_prompt=g,
                                               bos_token="<s>", eos_token="</s>", **kw)
                return out[0]
        else:
            if tokdir not in toks:
                toks[tokdir] = load_tok(tokdir, tmp)
            tok = toks[tokdir]

            def render(ms, g):
                return tok.apply_chat_template(ms, chat_template=jinja, tokenize=False, add_generation_prompt=g, **kw)
        text = render(msgs, gen)
        case["text"] = text
        if tokdir is not None:
            ids = ids_of(tok.apply_chat_template(msgs, chat_template=jinja, tokenize=True, add_generation_prompt=gen, **kw))
            enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
            assert list(enc["input_ids"]) == ids, case["name"]
            # trained character spans
            spans = []
            asst = [i for i, x in enumerate(msgs) if x["role"] == A]
            if loss == "last":
                asst = asst[-1:]
            for i in asst:
                pre = render(msgs[:i], True)
                assert text.startswith(pre), f"{case['name']}: prefix rendering is not a prefix"
                end = text.index(end_tok, len(pre)) + len(end_tok)
                spans.append((len(pre), end))
            mask = []
            for (a, b) in enc["offset_mapping"]:
                mask.append(int(any(a < e and b > s for s, e in spans)))
            case["ids"] = ids
            case["mask"] = mask
        cases.append(case)
        print(f"{case['name']}: {len(text)} chars" + (f", {len(case['ids'])} ids, {sum(case['mask'])} trained"
                                                       if tokdir else ""))
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump({"generator": "tests/ref/make_chat_golden.py", "transformers": transformers.__version__,
                   "cases": cases}, f, ensure_ascii=False, indent=None, separators=(",", ":"))
        f.write("\n")
    shutil.rmtree(tmp)
    print("wrote", OUT)


if __name__ == "__main__":
    main()
