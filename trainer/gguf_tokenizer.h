/* gguf_tokenizer.h: the tokenizer of a GGUF model file (a base model that is already quantized:
 * model.path is a .gguf), built from its tokenizer.ggml.* metadata so that a run needs no
 * tokenizer.json.
 *
 * Reads tokenizer.ggml.model, pre, tokens, token_type, scores, merges, bos/eos/unknown/padding
 * token ids, add_bos_token, add_eos_token, add_space_prefix and tokenizer.chat_template with the
 * types llama.cpp requires (formats.md 3.5: arrays of STRING / INT32 / FLOAT32, ids UINT32, flags
 * BOOL), and hands them to ft_tok_load_vocab (data/tokenizer.h), which rebuilds the model's HF
 * tokenizer. Anything missing, mistyped or of the wrong length is one FT_E_FORMAT line naming the
 * file and the key; a tokenizer model other than "gpt2" (byte-level BPE) and "llama"
 * (SentencePiece BPE), e.g. "bert", "t5", "rwkv", and an unknown pre-tokenizer are FT_E_UNSUPPORTED
 * by name. */
#ifndef FT_GGUF_TOKENIZER_H
#define FT_GGUF_TOKENIZER_H

#include "data/tokenizer.h"
#include "export/gguf.h"
#include "kernels/status.h"

/* g: an open GGUF; path: its file name (messages, ft_tok_path). */
ft_status ft_gguf_tok_load(ft_tok **out, const ft_gguf *g, const char *path);

#endif
