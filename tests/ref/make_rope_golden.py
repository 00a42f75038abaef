#!/usr/bin/env python3
"""RoPE inverse frequencies from transformers, for tests/test_ops_cpu.c (ft_rope_inv_freq).

Writes tests/fixtures/rope/inv_freq.txt, one configuration per line:
  <type> <theta> <dim> <factor> <low_freq_factor> <high_freq_factor> <original_max_pos> <hex float32> ...
type: 0 default, 1 linear, 2 llama3 (kernels/rope.h ft_rope_type); the values are inv_freq[dim/2] exactly
as transformers' ROPE_INIT_FUNCTIONS compute them on CPU in float32 (C hex-float notation).

Run: /work/venv/bin/python tests/ref/make_rope_golden.py
"""
import os

import torch
import transformers
from transformers import LlamaConfig
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "rope", "inv_freq.txt")
L3 = dict(low_freq_factor=1.0, high_freq_factor=4.0, original_max_position_embeddings=8192)
CASES = [  # (type, theta, dim, rope_parameters extras)
    (0, 10000.0, 64, {}), (0, 10000.0, 128, {}), (0, 500000.0, 128, {}), (0, 1000000.0, 128, {}),
    (0, 1000000.0, 64, {}), (0, 75000.0, 96, {}),
    (1, 10000.0, 128, dict(factor=4.0)),
    (2, 500000.0, 128, dict(factor=8.0, **L3)),    # Llama 3.1
    (2, 500000.0, 64, dict(factor=32.0, **L3)),    # Llama 3.2 1B
    (2, 500000.0, 128, dict(factor=32.0, **L3)),   # Llama 3.2 3B
]


def main():
    torch.set_num_threads(1)
    lines = []
    for typ, theta, dim, extra in CASES:
        name = ("default", "linear", "llama3")[typ]
        rp = dict(rope_type=name, rope_theta=theta, **extra)
        cfg = LlamaConfig(hidden_size=dim * 4, num_attention_heads=4, head_dim=dim, rope_parameters=rp,
                          max_position_embeddings=131072)
        inv, _ = ROPE_INIT_FUNCTIONS[name](cfg, "cpu") if typ else \
            transformers.models.llama.modeling_llama.LlamaRotaryEmbedding.compute_default_rope_parameters(
                cfg, device="cpu")
        vals = [float(v).hex() for v in inv.to(torch.float32).tolist()]
        lines.append("%d %r %d %r %r %r %d %s" % (typ, theta, dim, extra.get("factor", 0.0),
                                                  extra.get("low_freq_factor", 0.0), extra.get("high_freq_factor", 0.0),
                                                  extra.get("original_max_position_embeddings", 0), " ".join(vals)))
    with open(OUT, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("wrote %s (%d configurations, transformers %s, torch %s)" % (OUT, len(lines), transformers.__version__,
                                                                      torch.__version__))


if __name__ == "__main__":
    main()
