/* gguf_tokenizer.c: see gguf_tokenizer.h. Reads the keys with export/gguf.h's reader into an
 * ft_tok_vocab of NUL-terminated copies (the mapping's strings are length-prefixed) and builds the
 * tokenizer with data/tokenizer_vocab.c. Every key is type-checked here so that the message names
 * it, before the vocabulary is handed on. */
#include "trainer/gguf_tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/tokenizer_pre.h"
#include "kernels/log.h"
#include "kernels/mem.h"

/* The metadata, owned. */
typedef struct {
    char *model, *pre, *chat_template;
    char **tokens, *tok_buf;
    int64_t n_tokens;
    char **merges, *merge_buf;
    int64_t n_merges;
    int32_t *types;
    float *scores;
} ft_gtok;

static void ft_gtok_free(ft_gtok *m) {
    free(m->model);
    free(m->pre);
    free(m->chat_template);
    free(m->tokens);
    free(m->tok_buf);
    free(m->merges);
    free(m->merge_buf);
    free(m->types);
    free(m->scores);
}

static ft_status ft_gtok_type_err(const ft_gguf *g, const char *path, const char *key, int64_t i, const char *want) {
    int t = ft_gguf_kv_type(g, i);
    if (t == FT_GGUF_ARRAY)
        return FT_ERR(FT_E_FORMAT, "%s: %s is an array of %s; expected %s", path, key,
                      ft_gguf_vtype_name(ft_gguf_arr_type(g, i)), want);
    return FT_ERR(FT_E_FORMAT, "%s: %s has type %s; expected %s", path, key, ft_gguf_vtype_name(t), want);
}

/* A STRING key as a malloc'd C string (NULL when absent and optional). */
static ft_status ft_gtok_str(const ft_gguf *g, const char *path, const char *key, int required, char **out) {
    *out = NULL;
    int64_t i = ft_gguf_find_key(g, key);
    if (i < 0) return required ? FT_ERR(FT_E_FORMAT, "%s: %s is missing", path, key) : FT_OK;
    const char *s;
    int64_t n;
    if (!ft_gguf_get_str(g, i, &s, &n)) return ft_gtok_type_err(g, path, key, i, "STRING");
    if (memchr(s, 0, (size_t)n)) return FT_ERR(FT_E_FORMAT, "%s: %s contains a NUL byte", path, key);
    FT_TRY(ft_malloc((void **)out, (size_t)n + 1, key));
    memcpy(*out, s, (size_t)n);
    (*out)[n] = 0;
    return FT_OK;
}

/* A UINT32 token id; -1 when absent. Ids past int32 become INT32_MAX: "outside the vocabulary". */
static ft_status ft_gtok_id(const ft_gguf *g, const char *path, const char *key, int32_t *out) {
    *out = -1;
    int64_t i = ft_gguf_find_key(g, key);
    if (i < 0) return FT_OK;
    uint32_t v;
    if (!ft_gguf_get_u32(g, i, &v)) return ft_gtok_type_err(g, path, key, i, "UINT32");
    *out = v > INT32_MAX ? INT32_MAX : (int32_t)v;
    return FT_OK;
}

/* A BOOL flag: 1/0, -1 when absent. */
static ft_status ft_gtok_flag(const ft_gguf *g, const char *path, const char *key, int *out) {
    *out = -1;
    int64_t i = ft_gguf_find_key(g, key);
    if (i < 0) return FT_OK;
    if (!ft_gguf_get_bool(g, i, out)) return ft_gtok_type_err(g, path, key, i, "BOOL");
    return FT_OK;
}

/* An ARRAY of STRING as NUL-terminated copies in one buffer. The reader's element access walks the
 * array from its start (O(j) for element j), so the elements, which GGUF lays out back to back as
 * (uint64 length, bytes) and ft_gguf_open has validated, are walked here once from the first; the
 * last element's position is checked against the reader's. */
static ft_status ft_gtok_strs(const ft_gguf *g, const char *path, const char *key, int64_t i, char ***out,
                              char **buf_out, int64_t *n_out) {
    if (ft_gguf_kv_type(g, i) != FT_GGUF_ARRAY || ft_gguf_arr_type(g, i) != FT_GGUF_STRING)
        return ft_gtok_type_err(g, path, key, i, "an array of STRING");
    int64_t n = ft_gguf_arr_n(g, i);
    *out = NULL, *buf_out = NULL, *n_out = 0;
    if (n == 0) return FT_OK;
    const char *s0, *sl;
    int64_t l0, ll;
    if (!ft_gguf_arr_str(g, i, 0, &s0, &l0) || !ft_gguf_arr_str(g, i, n - 1, &sl, &ll))
        return FT_ERR(FT_E_FORMAT, "%s: %s: unreadable array", path, key);
    const uint8_t *p = (const uint8_t *)s0 - 8;
    int64_t total = 0;
    const uint8_t *last = NULL;
    for (int64_t j = 0; j < n; j++) {
        uint64_t len;
        memcpy(&len, p, 8);
        last = p;
        total += (int64_t)len + 1;
        p += 8 + len;
    }
    if ((const char *)last + 8 != sl) return FT_ERR(FT_E_INTERNAL, "%s: %s: unexpected string array layout", path, key);
    char **ptr = NULL, *buf = NULL;
    ft_status st = ft_malloc((void **)&ptr, (size_t)n * sizeof *ptr, key);
    if (st == FT_OK) st = ft_malloc((void **)&buf, (size_t)total, key);
    p = (const uint8_t *)s0 - 8;
    char *o = buf;
    for (int64_t j = 0; j < n && st == FT_OK; j++) {
        uint64_t len;
        memcpy(&len, p, 8);
        if (memchr(p + 8, 0, (size_t)len)) {
            st = FT_ERR(FT_E_FORMAT, "%s: %s[%lld] contains a NUL byte", path, key, (long long)j);
            break;
        }
        memcpy(o, p + 8, (size_t)len);
        o[len] = 0;
        ptr[j] = o;
        o += len + 1;
        p += 8 + len;
    }
    if (st != FT_OK) {
        free(ptr);
        free(buf);
        return st;
    }
    *out = ptr, *buf_out = buf, *n_out = n;
    return FT_OK;
}

/* An optional numeric ARRAY of exactly type `type` and length n (token_type INT32, scores FLOAT32). */
static ft_status ft_gtok_nums(const ft_gguf *g, const char *path, const char *key, int type, int64_t n, void **out) {
    *out = NULL;
    int64_t i = ft_gguf_find_key(g, key);
    if (i < 0) return FT_OK;
    if (ft_gguf_kv_type(g, i) != FT_GGUF_ARRAY || ft_gguf_arr_type(g, i) != type) {
        char want[48];
        snprintf(want, sizeof want, "an array of %s", ft_gguf_vtype_name(type));
        return ft_gtok_type_err(g, path, key, i, want);
    }
    if (ft_gguf_arr_n(g, i) != n)
        return FT_ERR(FT_E_FORMAT, "%s: %s has %lld entries but tokenizer.ggml.tokens has %lld", path, key,
                      (long long)ft_gguf_arr_n(g, i), (long long)n);
    FT_TRY(ft_malloc(out, (size_t)n * 4, key));
    for (int64_t j = 0; j < n; j++) {
        double d = 0;
        ft_gguf_arr_num(g, i, j, &d);
        if (type == FT_GGUF_INT32) ((int32_t *)*out)[j] = (int32_t)d;
        else ((float *)*out)[j] = (float)d;
    }
    return FT_OK;
}

/* The tokenizer models llama.cpp knows that ftune cannot run, by what they are. */
static const char *ft_gtok_model_kind(const char *m) {
    if (!strcmp(m, "bert")) return "WordPiece";
    if (!strcmp(m, "t5")) return "SentencePiece Unigram";
    if (!strcmp(m, "rwkv")) return "RWKV";
    if (!strcmp(m, "plamo2")) return "PLaMo-2";
    if (!strcmp(m, "none") || !strcmp(m, "no_vocab")) return "no vocabulary";
    return "unknown to ftune";
}

static ft_status ft_gtok_read(const ft_gguf *g, const char *path, ft_gtok *m) {
    FT_TRY(ft_gtok_str(g, path, "tokenizer.ggml.model", 1, &m->model));
    int spm = !strcmp(m->model, "llama");
    if (!spm && strcmp(m->model, "gpt2") != 0)
        return FT_ERR(FT_E_UNSUPPORTED,
                      "%s: tokenizer.ggml.model \"%s\" (%s) is not supported: ftune tokenizes \"gpt2\" (byte-level "
                      "BPE) and \"llama\" (SentencePiece BPE) vocabularies",
                      path, m->model, ft_gtok_model_kind(m->model));
    FT_TRY(ft_gtok_str(g, path, "tokenizer.ggml.pre", 0, &m->pre));
    if (!spm && !m->pre)
        ft_warn("%s: tokenizer.ggml.pre is missing: splitting text with the GPT-2 rule, as llama.cpp does", path);
    if (!spm && m->pre && !ft_tok_pre_find(m->pre))
        return FT_ERR(FT_E_UNSUPPORTED,
                      "%s: tokenizer.ggml.pre \"%s\" is not supported (ftune knows llama-bpe, llama3, llama-v3, qwen2, "
                      "deepseek-r1-qwen, tekken, default, gpt-2): its text split would not be the model's",
                      path, m->pre);
    int64_t i = ft_gguf_find_key(g, "tokenizer.ggml.tokens");
    if (i < 0) return FT_ERR(FT_E_FORMAT, "%s: tokenizer.ggml.tokens is missing", path);
    FT_TRY(ft_gtok_strs(g, path, "tokenizer.ggml.tokens", i, &m->tokens, &m->tok_buf, &m->n_tokens));
    if (m->n_tokens == 0) return FT_ERR(FT_E_FORMAT, "%s: tokenizer.ggml.tokens is empty", path);
    FT_TRY(ft_gtok_nums(g, path, "tokenizer.ggml.token_type", FT_GGUF_INT32, m->n_tokens, (void **)&m->types));
    FT_TRY(ft_gtok_nums(g, path, "tokenizer.ggml.scores", FT_GGUF_FLOAT32, m->n_tokens, (void **)&m->scores));
    i = ft_gguf_find_key(g, "tokenizer.ggml.merges");
    if (i >= 0) FT_TRY(ft_gtok_strs(g, path, "tokenizer.ggml.merges", i, &m->merges, &m->merge_buf, &m->n_merges));
    else if (!spm)
        return FT_ERR(FT_E_FORMAT, "%s: tokenizer.ggml.merges is missing (a gpt2 vocabulary needs its merges)", path);
    if (spm && i < 0 && !m->scores)
        return FT_ERR(FT_E_FORMAT,
                      "%s: tokenizer.ggml.scores is missing (a llama vocabulary without merges needs its scores)", path);
    return ft_gtok_str(g, path, "tokenizer.chat_template", 0, &m->chat_template);
}

ft_status ft_gguf_tok_load(ft_tok **out, const ft_gguf *g, const char *path) {
    *out = NULL;
    ft_gtok m = {0};
    ft_tok_vocab v = {0};
    ft_status st = ft_gtok_read(g, path, &m);
    if (st == FT_OK) st = ft_gtok_id(g, path, "tokenizer.ggml.bos_token_id", &v.bos_id);
    if (st == FT_OK) st = ft_gtok_id(g, path, "tokenizer.ggml.eos_token_id", &v.eos_id);
    if (st == FT_OK) st = ft_gtok_id(g, path, "tokenizer.ggml.unknown_token_id", &v.unk_id);
    if (st == FT_OK) st = ft_gtok_id(g, path, "tokenizer.ggml.padding_token_id", &v.pad_id);
    if (st == FT_OK) st = ft_gtok_flag(g, path, "tokenizer.ggml.add_bos_token", &v.add_bos);
    if (st == FT_OK) st = ft_gtok_flag(g, path, "tokenizer.ggml.add_eos_token", &v.add_eos);
    if (st == FT_OK) st = ft_gtok_flag(g, path, "tokenizer.ggml.add_space_prefix", &v.add_space_prefix);
    if (st == FT_OK) {
        v.model = m.model, v.pre = m.pre, v.chat_template = m.chat_template, v.path = path;
        v.tokens = (const char *const *)m.tokens, v.n_tokens = m.n_tokens;
        v.merges = (const char *const *)m.merges, v.n_merges = m.n_merges;
        v.types = m.types, v.scores = m.scores;
        st = ft_tok_load_vocab(out, &v);
    }
    ft_gtok_free(&m);
    return st;
}
