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

/* Encodes text[0..len) (len < 0: NUL-terminated). add_special applies the post-processor
 * (e.g. prepends BOS). *ids is malloc'd (free with free()/ft_free), *n its length. */
ft_status ft_tok_encode(const ft_tok *tok, const char *text, int64_t len, int add_special, int32_t **ids,
                        int64_t *n);
/* Same, appending to v. */
ft_status ft_tok_encode_append(const ft_tok *tok, const char *text, int64_t len, int add_special, ft_tok_ids *v);
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
