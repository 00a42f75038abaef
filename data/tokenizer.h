/* tokenizer.h: Hugging Face tokenizer.json tokenizers, encoding and decoding exactly as the
 * `tokenizers` library does.
 *
 * Supported (anything else is refused at load with FT_E_UNSUPPORTED naming the part):
 *   model          BPE (vocab, merges as "a b" or ["a","b"], ignore_merges, byte_fallback,
 *                  fuse_unk, unk_token, continuing_subword_prefix, end_of_word_suffix)
 *   added_tokens   matched on the raw text (normalized: false) or on the normalized text
 *                  (normalized: true), leftmost-longest, with lstrip/rstrip/single_word
 *   normalizer     NFC NFD NFKC NFKD Lowercase Prepend Replace Strip Sequence (or null)
 *   pre_tokenizer  Split (regex via PCRE2-JIT or string; all behaviours, invert), ByteLevel
 *                  (add_prefix_space, use_regex), Metaspace (prepend_scheme, split), Digits,
 *                  Sequence (or null)
 *   post_processor TemplateProcessing, RobertaProcessing, BertProcessing, ByteLevel, Sequence
 *   decoder        ByteLevel Metaspace Replace ByteFallback Fuse Strip Sequence (or null)
 * plus tokenizer_config.json: bos/eos/pad/unk tokens, add_bos_token/add_eos_token (when present
 * they rebuild the single-sequence template as transformers does) and chat_template.
 *
 * Text that is not valid UTF-8 is first repaired like Rust's String::from_utf8_lossy (each
 * maximal invalid subpart becomes U+FFFD), which is what HF sees for bytes decoded with
 * errors="replace".
 *
 * Thread safety: a loaded ft_tok is immutable except for an internal pool of per-call scratch
 * states (each with its pre-token cache; a thread mostly gets back the one it used last, without a
 * lock); any number of threads may encode and decode with one ft_tok concurrently. */
#ifndef FT_TOKENIZER_H
#define FT_TOKENIZER_H

#include <stdint.h>

#include "kernels/status.h"

typedef struct ft_tok ft_tok;

/* A growable id vector that encode appends to. Zero-initialize; release with ft_tok_ids_free. */
typedef struct ft_tok_ids {
    int32_t *ids; /* [n] token ids */
    int64_t n, cap;
} ft_tok_ids;

/* Loads DIR/tokenizer.json and, if present, DIR/tokenizer_config.json. */
ft_status ft_tok_load(ft_tok **out, const char *dir);
/* Same, from explicit paths (config_path may be NULL). */
ft_status ft_tok_load_files(ft_tok **out, const char *tokenizer_json, const char *config_path);
void ft_tok_free(ft_tok *tok);

/* A tokenizer described by llama.cpp's GGUF metadata (tokenizer.ggml.*, formats.md 3.5), as plain
 * arrays so that data/ needs no GGUF reader (trainer/gguf_tokenizer.c fills it from a file). Token
 * types are llama.cpp's. Everything is borrowed for the duration of ft_tok_load_vocab. */
enum {
    FT_TOK_TYPE_NORMAL = 1,
    FT_TOK_TYPE_UNKNOWN = 2,
    FT_TOK_TYPE_CONTROL = 3,
    FT_TOK_TYPE_USER_DEFINED = 4,
    FT_TOK_TYPE_UNUSED = 5,
    FT_TOK_TYPE_BYTE = 6
};
typedef struct ft_tok_vocab {
    const char *model;              /* tokenizer.ggml.model: "gpt2" (byte-level BPE) or "llama" (SentencePiece) */
    const char *pre;                /* tokenizer.ggml.pre ("llama-bpe", "qwen2", "tekken", "default", ...; see
                                       data/tokenizer_pre.h); NULL = "default". Ignored for "llama" */
    const char *const *tokens;      /* [n_tokens] NUL-terminated token texts, id = index */
    const int32_t *types;           /* [n_tokens] FT_TOK_TYPE_*, or NULL (all normal) */
    const float *scores;            /* [n_tokens] or NULL (all 0) */
    const char *const *merges;      /* [n_merges] "left right" in rank order, or NULL */
    int64_t n_tokens, n_merges;
    int32_t bos_id, eos_id, unk_id, pad_id; /* -1 when absent */
    int add_bos, add_eos;           /* 1/0, or -1 when absent (llama.cpp's default for the model/pre) */
    int add_space_prefix;           /* tokenizer.ggml.add_space_prefix ("llama" only): 1/0, or -1 (= 1) */
    const char *chat_template;      /* or NULL */
    const char *path;               /* the file it came from, for messages and ft_tok_path */
} ft_tok_vocab;

/* Builds the tokenizer that the model's HF tokenizer.json was before conversion to GGUF, so that it
 * encodes and decodes as that tokenizer.json does:
 *   gpt2   BPE over the byte-level vocab with the GGUF merges; the pre-tokenizer, normalizer and
 *          ignore_merges of the family named by `pre` (Split regex + ByteLevel, or ByteLevel's own
 *          GPT-2 split for "default"/"gpt-2"); ByteLevel decoder.
 *   llama  SentencePiece BPE as transformers' LlamaConverter (legacy) writes it: normalizer Prepend("▁")
 *          + Replace(" ", "▁") (no Prepend when add_space_prefix is 0), byte_fallback, fuse_unk,
 *          decoder Replace("▁", " ") + ByteFallback + Fuse + Strip(1 leading space). Without merges
 *          they are derived from the scores as transformers' generate_merges does.
 * Types: CONTROL and UNKNOWN tokens become special added tokens and USER_DEFINED ones non-special
 * added tokens (both matched on the raw text), as llama.cpp partitions text on them; "[PADi]"
 * fillers that convert_hf_to_gguf.py appends up to the embedding size (type UNUSED or UNKNOWN) are
 * left out, as the tokenizer.json had no such ids. Special ids outside the vocab are ignored with a
 * warning. Refused (FT_E_UNSUPPORTED, naming src->path): other models, unknown `pre` names. */
ft_status ft_tok_load_vocab(ft_tok **out, const ft_tok_vocab *src);

/* Encodes text[0..len) (len < 0: NUL-terminated). add_special applies the post-processor
 * (e.g. prepends BOS). *ids is malloc'd (free with free()/ft_free), *n its length. */
ft_status ft_tok_encode(const ft_tok *tok, const char *text, int64_t len, int add_special, int32_t **ids,
                        int64_t *n);
/* Same, appending to v. */
ft_status ft_tok_encode_append(const ft_tok *tok, const char *text, int64_t len, int add_special, ft_tok_ids *v);
/* A piece of a longer text (a chat template's run between its special tokens), appending to v, no
 * post-processor: at_start 0 when the piece does not begin the text, so a SentencePiece
 * pre-tokenizer that prepends its space to the first split only (Metaspace prepend_scheme "first")
 * leaves it out, as HF tokenizing the whole rendered string does. */
ft_status ft_tok_encode_run(const ft_tok *tok, const char *text, int64_t len, int at_start, ft_tok_ids *v);
ft_status ft_tok_ids_push(ft_tok_ids *v, int32_t id);
void ft_tok_ids_free(ft_tok_ids *v);

/* Decodes ids[0..n) into a malloc'd, NUL-terminated *text (length in *len, may be NULL).
 * skip_special drops special added tokens (HF skip_special_tokens). Unknown ids are skipped, as
 * HF does. Invalid UTF-8 produced by byte tokens becomes U+FFFD. */
ft_status ft_tok_decode(const ft_tok *tok, const int32_t *ids, int64_t n, int skip_special, char **text,
                        int64_t *len);

/* Id of a token string (added tokens first, then the model vocab); -1 when absent. */
int32_t ft_tok_token_to_id(const ft_tok *tok, const char *piece);
/* The token string of an id (added token content or vocab string, in the model's own form,
 * e.g. "Ġthe" or "▁the"); NULL when the id has none. Valid until ft_tok_free. */
const char *ft_tok_id_to_piece(const ft_tok *tok, int32_t id);
/* 1 when id is a special added token. */
int ft_tok_is_special(const ft_tok *tok, int32_t id);
/* Number of ids: max id + 1 over the vocab and the added tokens (HF get_vocab_size(True)). */
int64_t ft_tok_vocab_size(const ft_tok *tok);

/* Special ids from tokenizer_config.json (falling back to what tokenizer.json implies); -1 when
 * the tokenizer has none. */
int32_t ft_tok_bos_id(const ft_tok *tok);
int32_t ft_tok_eos_id(const ft_tok *tok);
int32_t ft_tok_pad_id(const ft_tok *tok);
int32_t ft_tok_unk_id(const ft_tok *tok);
/* 1 when encoding with add_special prepends the BOS id. */
int ft_tok_adds_bos(const ft_tok *tok);
/* tokenizer_config.json "chat_template" (the "default" one when it is a list); NULL if none. */
const char *ft_tok_chat_template(const ft_tok *tok);
/* The path the tokenizer was loaded from (for messages). */
const char *ft_tok_path(const ft_tok *tok);

#endif
