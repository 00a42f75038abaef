/* tokenizer_pre.h: the one table of byte-level BPE pre-tokenizers by their llama.cpp name
 * (GGUF tokenizer.ggml.pre), shared by the GGUF vocab writer (export/gguf_vocab.c: which name a
 * tokenizer.json's Split regex gets) and the GGUF vocab loader (data/tokenizer_vocab.c: which
 * tokenizer.json pipeline a name stands for), so the two can never disagree.
 *
 * Each row is what the HF tokenizer.json of that family holds (formats.md 9.1, 9.3) plus llama.cpp's
 * default for add_bos_token when a GGUF lacks the key (src/llama-vocab.cpp). The regexes are the
 * Split patterns as the JSON holds them (unescaped). Header-only (static data behind static inline
 * look-ups) so that export/ needs no link dependency on ft_data for it. */
#ifndef FT_TOKENIZER_PRE_H
#define FT_TOKENIZER_PRE_H

#include <stddef.h>
#include <string.h>

typedef struct ft_tok_pre_info {
    const char *name;  /* tokenizer.ggml.pre; the first row of a regex is the name the writer uses */
    const char *regex; /* Split regex before ByteLevel(use_regex false); NULL: ByteLevel's own GPT-2 split */
    int ignore_merges; /* model.ignore_merges of the family's tokenizer.json (tiktoken-derived: true) */
    int nfc;           /* normalizer NFC (Qwen2/2.5/3) */
    int add_bos;       /* llama.cpp's add_bos when tokenizer.ggml.add_bos_token is absent */
} ft_tok_pre_info;

/* Llama 3 (TikTokenConverter's default pattern). */
#define FT_TOK_RE_LLAMA3                                                                                              \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|" \
    "\\s+(?!\\S)|\\s+"
/* Qwen2 / 2.5 / 3 (PRETOKENIZE_REGEX): the Llama 3 pattern with single digits. */
#define FT_TOK_RE_QWEN2                                                                                               \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|"     \
    "\\s+(?!\\S)|\\s+"
/* Mistral's Tekken (Mistral Nemo, Mistral Small 24B and 3.1/3.2), as llama.cpp quotes it for its "tekken"
 * pre-tokenizer (src/llama-vocab.cpp, LLAMA_VOCAB_PRE_TYPE_TEKKEN: "original regex from tokenizer.json"). */
#define FT_TOK_RE_TEKKEN                                                                                              \
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+|[^\\r\\n\\p{L}\\p{N}]?"      \
    "[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|"          \
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

/* Row i of the table (NULL past the end). Aliases follow the row whose regex they share; llama.cpp
 * maps a missing or unknown name to "default" (the GPT-2 split). */
static inline const ft_tok_pre_info *ft_tok_pre_at(size_t i) {
    static const ft_tok_pre_info rows[] = {
        {"llama-bpe", FT_TOK_RE_LLAMA3, 1, 0, 1},
        {"llama3", FT_TOK_RE_LLAMA3, 1, 0, 1},
        {"llama-v3", FT_TOK_RE_LLAMA3, 1, 0, 1},
        {"qwen2", FT_TOK_RE_QWEN2, 0, 1, 0},
        {"deepseek-r1-qwen", FT_TOK_RE_QWEN2, 0, 1, 0},
        {"tekken", FT_TOK_RE_TEKKEN, 1, 0, 1},
        {"default", NULL, 0, 0, 0},
        {"gpt-2", NULL, 0, 0, 0},
    };
    return i < sizeof rows / sizeof rows[0] ? &rows[i] : NULL;
}

/* The row of a tokenizer.ggml.pre name, or NULL when ftune does not know it. */
static inline const ft_tok_pre_info *ft_tok_pre_find(const char *name) {
    const ft_tok_pre_info *p;
    for (size_t i = 0; name && (p = ft_tok_pre_at(i)); i++)
        if (strcmp(p->name, name) == 0) return p;
    return NULL;
}

/* The name for a tokenizer.json Split regex (the first row with it), or NULL when none matches. */
static inline const char *ft_tok_pre_name_for_regex(const char *regex) {
    const ft_tok_pre_info *p;
    for (size_t i = 0; regex && (p = ft_tok_pre_at(i)); i++)
        if (p->regex && strcmp(p->regex, regex) == 0) return p->name;
    return NULL;
}

#endif
