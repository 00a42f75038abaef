#!/usr/bin/env python3
"""Duplicate JSON keys as Python's json module reads them, for tests/test_json.c (kernels/json.c).

transformers (config.json, tokenizer_config.json), peft (adapter_config.json) and datasets (JSONL) read JSON
with the json module, where a key repeated in an object means its LAST value, kept at the position of its
FIRST occurrence (a dict). cJSON keeps every occurrence and its lookups return the first. This script writes
  tests/fixtures/json/dups.json           a document with keys repeated at several depths (top level, nested
                                          objects, objects inside arrays, three occurrences, a value that
                                          changes type, a repeated key whose values are themselves objects
                                          with repeats), written by hand below, byte for byte;
  tests/fixtures/json/dups_expected.json  json.dumps(json.loads(dups.json), separators=(",", ":")): what
                                          Python reads, in its key order (ints, strings, bools, null only, so
                                          cJSON_PrintUnformatted of the resolved tree must give the same bytes).

Run: /work/venv/bin/python tests/ref/json_dups.py (stdlib only; deterministic).
"""
import json
import os

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "json")

DUPS = """{
  "num_hidden_layers": 2,
  "hidden_size": 64,
  "num_hidden_layers": 4,
  "rope_scaling": {"rope_type": "linear", "factor": 2, "rope_type": "llama3", "factor": 8, "low_freq_factor": 1},
  "eos_token_id": [1, {"id": 2, "id": 3}, [{"a": 1, "b": 2, "a": null}]],
  "x": "first", "y": true, "x": "second", "x": "third",
  "nested": {"k": {"p": 1, "p": 2}, "k": {"q": 3, "q": 4, "r": 5}, "z": 0},
  "kind": 7, "kind": "now a string",
  "": 1, "": 2
}
"""


def main():
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "dups.json"), "w", encoding="utf-8", newline="\n") as f:
        f.write(DUPS)
    expected = json.dumps(json.loads(DUPS), separators=(",", ":"), ensure_ascii=False)
    with open(os.path.join(OUT, "dups_expected.json"), "w", encoding="utf-8", newline="\n") as f:
        f.write(expected + "\n")
    print(expected)


if __name__ == "__main__":
    main()
