/* gguf_vocab.h: the tokenizer.* metadata of a llama.cpp model GGUF (formats.md 3.5), built from a
 * Hugging Face model directory the way convert_hf_to_gguf.py does.
 *
 * Byte-level BPE (Llama 3, Qwen2/2.5/3: tokenizer.json with a ByteLevel pre-tokenizer) becomes
 * tokenizer.ggml.model "gpt2" with tokens, token types, merges and a pre-tokenizer name chosen by
 * the Split regex (the Llama 3 pattern -> "llama-bpe", the Qwen2 pattern -> "qwen2").
 * SentencePiece BPE (Llama 2, Mistral, stories260K: byte_fallback / Metaspace) becomes "llama"
 * with scores and types from tokenizer.model (protobuf) when present, else from tokenizer.json with
 * score -id (SentencePiece BPE pieces are ordered by merge rank). Special ids come from
 * tokenizer_config.json (bos/eos/unk/pad token strings) with config.json ids as fallback,
 * add_bos/add_eos from tokenizer_config.json or the TemplateProcessing post-processor, and the chat
 * template from tokenizer_config.json or chat_template.jinja.
 * The token list is padded to config vocab_size with "[PADn]" (type UNUSED) as convert does;
 * a tokenizer with ids past vocab_size is an error, as is a directory without a tokenizer
 * (llama.cpp refuses a model GGUF without one). */
#ifndef FT_GGUF_VOCAB_H
#define FT_GGUF_VOCAB_H

#include <stdint.h>

#include "export/gguf.h"
#include "kernels/status.h"

/* Summary of what was written (for logs and the Ollama Modelfile). */
typedef struct ft_vocab_info {
    char model[16];          /* "gpt2" or "llama" */
    char pre[32];            /* "llama-bpe", "qwen2", "default" */
    int64_t n_tokens;        /* tokens in the tokenizer (before padding) */
    int64_t bos, eos, eot;   /* -1 when unknown */
    char eos_text[64], eot_text[64];
    char *chat_template;     /* malloc'd or NULL */
} ft_vocab_info;

/* Writes tokenizer.* keys for the model in dir (vocab_size tokens) into w. info may be NULL. */
ft_status ft_gguf_vocab_write(ft_ggufw *w, const char *dir, int64_t vocab_size, int64_t cfg_bos, int64_t cfg_eos,
                              ft_vocab_info *info);
/* Reads only the chat template and eos of dir (for the Modelfile of an adapter export). */
ft_status ft_vocab_info_read(const char *dir, ft_vocab_info *info);
void ft_vocab_info_free(ft_vocab_info *info);

#endif
