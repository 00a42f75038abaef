/* gguf_config.h: a GGUF model file (llama.cpp's format, as convert_hf_to_gguf.py and llama-quantize
 * write it) as the base of a run: its hyperparameters as an ft_model_config, so that every command
 * that takes a Hugging Face checkpoint directory also takes a .gguf file.
 *
 * Contract: general.architecture "llama" (Llama 1-3, Mistral), "qwen2" or "qwen3". The shapes come from
 * {arch}.block_count / embedding_length / feed_forward_length / attention.head_count (required),
 * attention.head_count_kv / attention.key_length / context_length / attention.layer_norm_rms_epsilon /
 * rope.freq_base (defaults as llama.cpp's), the vocabulary size from token_embd.weight, tied embeddings
 * from the absence of output.weight, biases and q/k norms from the tensors of layer 0. Llama 3 rope
 * scaling, which GGUF stores only as the divisors rope_freqs.weight, is recovered as the llama3
 * parameters that reproduce those divisors (checked to 1e-5; the fit rounded to 3 decimals first, so
 * Llama 3.1's high_freq_factor comes back as 4, not 4.0000002). Every tensor the config implies is
 * checked present with the shape the keys give (before anything is sized from the keys: a wrong
 * block_count or feed_forward_length names the tensor). Every failure is one message naming the
 * file and the key or tensor: FT_E_FORMAT for missing or mistyped keys, FT_E_UNSUPPORTED for models
 * ftune does not train (other architectures, per-layer head counts, partial rotary, yarn scaling). */
#ifndef FT_GGUF_CONFIG_H
#define FT_GGUF_CONFIG_H

#include "export/gguf.h"
#include "kernels/dtype.h"
#include "trainer/hf_config.h"

/* 1 when path is a regular file that starts with the GGUF magic. */
int ft_is_gguf_file(const char *path);
/* 1 for a GGUF file, or a path named *.gguf that is not a directory: what commands read as GGUF, so
 * that a missing or broken X.gguf is "X.gguf: cannot open" / "not a GGUF file", not
 * "X.gguf/config.json: cannot open". */
int ft_is_gguf_path(const char *path);
/* The config of an open GGUF file; path names it in messages. */
ft_status ft_cfg_from_gguf(ft_model_config *cfg, const ft_gguf *g, const char *path);

/* Each frozen linear's storage when loaded: its ggml block dtype as stored (never requantized), else
 * FT_NF4 when nf4, else the tensor's own F32/F16/BF16; types[layer * FT_LIN_COUNT + linear].
 * FT_E_FORMAT for a missing tensor, FT_E_UNSUPPORTED for a type ftune does not read (the IQ types but IQ4_NL and IQ4_XS). */
ft_status ft_gguf_linear_dtypes(const ft_gguf *g, const char *path, int64_t layers, int nf4, ft_dtype *types);

/* The GGUF row of HF row `row` of a llama-arch q/k weight with heads of D rows: the inverse of
 * export/adapter.h's ft_gguf_permuted_row (formats.md 3.4). */
static inline int64_t ft_gguf_unpermuted_row(int64_t row, int64_t D) {
    const int64_t h = row / D, rem = row % D, half = D / 2;
    return h * D + 2 * (rem % half) + rem / half;
}

#endif
