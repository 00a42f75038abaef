/* tokenizer_impl.h: the inside of ft_tok, shared by data/tokenizer*.c and data/pretokenize.c.
 * Not part of any public contract.
 *
 * Layout: a loaded tokenizer is immutable tables (vocab hash maps, merge map, added-token tries,
 * pipeline step lists) plus a mutex-guarded free list of ft_tok_state scratch objects. An encode
 * or decode call borrows one state, so calls on different threads never share mutable memory. */
#ifndef FT_TOKENIZER_IMPL_H
#define FT_TOKENIZER_IMPL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "data/tokenizer.h"
#include "kernels/status.h"

#define FT_TOK_AFFINE_SLOTS 16

/* ---- growable byte buffer and span lists ---- */
typedef struct ft_tok_buf {
    char *p;
    int64_t n, cap;
} ft_tok_buf;
ft_status ft_tok_buf_reserve(ft_tok_buf *b, int64_t extra);
static inline ft_status ft_tok_buf_put(ft_tok_buf *b, const void *s, int64_t n) {
    if (b->n + n > b->cap) {
        ft_status st = ft_tok_buf_reserve(b, n);
        if (st != FT_OK) return st;
    }
    if (n) memcpy(b->p + b->n, s, (size_t)n);
    b->n += n;
    return FT_OK;
}
void ft_tok_buf_free(ft_tok_buf *b);

/* A piece of some buffer; `first` marks a piece that starts at original offset 0 of the input
 * (Metaspace prepend_scheme "first" needs it). */
typedef struct ft_tok_span {
    int64_t off, len;
    int first;
} ft_tok_span;
typedef struct ft_tok_spans {
    ft_tok_span *v;
    int64_t n, cap;
} ft_tok_spans;
ft_status ft_tok_spans_push(ft_tok_spans *s, int64_t off, int64_t len, int first);

/* ---- hash maps ---- */
uint64_t ft_tok_hash(const void *s, int64_t len);

/* string -> int32, open addressing; put overwrites. */
typedef struct ft_tok_strent {
    uint64_t hash;
    int64_t off;
    int32_t len, val;
} ft_tok_strent;
typedef struct ft_tok_strmap {
    int32_t *slots; /* entry index or -1 */
    uint64_t mask;
    ft_tok_strent *ent;
    int64_t n, cap;
    ft_tok_buf keys;
} ft_tok_strmap;
ft_status ft_tok_strmap_init(ft_tok_strmap *m, int64_t expect);
ft_status ft_tok_strmap_put(ft_tok_strmap *m, const char *s, int64_t len, int32_t val);
int32_t ft_tok_strmap_get(const ft_tok_strmap *m, const char *s, int64_t len); /* -1 when absent */
void ft_tok_strmap_free(ft_tok_strmap *m);

/* uint64 key -> (a, b) int32 pair; key UINT64_MAX is reserved as "empty". put overwrites. */
typedef struct ft_tok_pairslot {
    uint64_t key;
    int32_t a, b;
} ft_tok_pairslot;
typedef struct ft_tok_pairmap {
    ft_tok_pairslot *slot;
    uint64_t mask;
    int64_t n;
} ft_tok_pairmap;
ft_status ft_tok_pairmap_init(ft_tok_pairmap *m, int64_t expect);
ft_status ft_tok_pairmap_put(ft_tok_pairmap *m, uint64_t key, int32_t a, int32_t b);
static inline uint64_t ft_tok_mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}
static inline const ft_tok_pairslot *ft_tok_pairmap_get(const ft_tok_pairmap *m, uint64_t key) {
    uint64_t i = ft_tok_mix64(key) & m->mask;
    for (;;) {
        const ft_tok_pairslot *s = &m->slot[i];
        if (s->key == key) return s;
        if (s->key == UINT64_MAX) return NULL;
        i = (i + 1) & m->mask;
    }
}
void ft_tok_pairmap_free(ft_tok_pairmap *m);

/* ---- added tokens ---- */
typedef struct ft_tok_added {
    char *content; /* raw content (what decode emits) */
    int64_t len;
    char *pattern; /* what is matched: content, or content normalized when normalized */
    int64_t plen;
    int32_t id;
    uint8_t single_word, lstrip, rstrip, normalized, special;
} ft_tok_added;

/* Byte trie over added-token patterns; leftmost-longest matching. Node 0 is the root. */
typedef struct ft_tok_trie {
    ft_tok_pairmap edges; /* (node << 8 | byte) -> (child, 0) */
    int32_t *term;        /* [n_nodes] added-token index ending here, or -1 */
    int64_t n_nodes, cap;
    uint8_t first[256];   /* bytes that start some pattern */
    int n_patterns;
} ft_tok_trie;

/* ---- pipeline steps ---- */
typedef enum {
    FT_NORM_NF, FT_NORM_LOWER, FT_NORM_PREPEND, FT_NORM_REPLACE, FT_NORM_STRIP
} ft_tok_norm_kind;
typedef struct ft_tok_norm {
    ft_tok_norm_kind kind;
    int form;            /* FT_NORM_NF: ft_norm_form */
    char *a, *b;         /* PREPEND: a; REPLACE: pattern string a (or re) -> content b */
    int64_t alen, blen;
    pcre2_code *re;      /* REPLACE: the pattern compiled (a String as a literal) */
    int literal;         /* REPLACE: pattern was a String */
    int left, right;     /* STRIP */
} ft_tok_norm;

typedef enum { FT_SPLIT_REMOVED, FT_SPLIT_ISOLATED, FT_SPLIT_MERGED_PREV, FT_SPLIT_MERGED_NEXT, FT_SPLIT_CONTIGUOUS } ft_tok_split_behavior;
typedef enum { FT_PRE_SPLIT, FT_PRE_BYTELEVEL, FT_PRE_METASPACE, FT_PRE_DIGITS } ft_tok_pre_kind;
typedef enum { FT_PREPEND_ALWAYS, FT_PREPEND_FIRST, FT_PREPEND_NEVER } ft_tok_prepend_scheme;
typedef struct ft_tok_pre {
    ft_tok_pre_kind kind;
    pcre2_code *re;          /* SPLIT (regex or escaped string), BYTELEVEL with use_regex */
    int empty_pattern;       /* SPLIT with an empty string pattern: never matches */
    ft_tok_split_behavior behavior;
    int invert;
    int add_prefix_space;    /* BYTELEVEL */
    ft_tok_prepend_scheme prepend; /* METASPACE */
    int split;               /* METASPACE */
    char repl[8];            /* METASPACE replacement char, UTF-8 */
    int repl_len;
    uint32_t repl_cp;
    int individual_digits;   /* DIGITS */
} ft_tok_pre;

typedef enum {
    FT_DEC_BYTELEVEL, FT_DEC_METASPACE, FT_DEC_REPLACE, FT_DEC_BYTEFALLBACK, FT_DEC_FUSE, FT_DEC_STRIP
} ft_tok_dec_kind;
typedef struct ft_tok_dec {
    ft_tok_dec_kind kind;
    char *a, *b;  /* REPLACE: a -> b; METASPACE: a = replacement */
    int64_t alen, blen;
    int prepend;  /* METASPACE: prepend_scheme != never */
    uint32_t strip_cp; /* STRIP content */
    int start, stop;   /* STRIP */
} ft_tok_dec;

/* ---- per-call scratch ---- */
typedef struct ft_tok_sym {
    int32_t id;
    int32_t prev, next;
    int32_t len; /* 0 = merged away */
} ft_tok_sym;
typedef struct ft_tok_merge {
    int32_t rank, pos, new_id;
} ft_tok_merge;

/* Bounded pre-token -> ids cache; reset wholesale when full. */
typedef struct ft_tok_cache_slot {
    uint64_t hash; /* 0 = empty */
    int64_t key_off, ids_off;
    int32_t key_len, n_ids;
} ft_tok_cache_slot;
typedef struct ft_tok_cache {
    ft_tok_cache_slot *slot;
    uint64_t mask;
    int64_t used;
    ft_tok_buf keys, ids;
} ft_tok_cache;

typedef struct ft_tok_state {
    struct ft_tok_state *next_free;
    ft_tok_buf repaired;           /* lossy UTF-8 repair of the input */
    ft_tok_buf norm[2];            /* normalizer ping-pong */
    ft_tok_buf pre[2];             /* pre-tokenizer transform ping-pong */
    ft_tok_spans spans[2];
    ft_tok_spans seg;              /* split segments: off, len, first = is_match */
    ft_tok_spans sect, sect2;      /* added-token sections of the raw / normalized text:
                                      off, len, first = added index or -1 for text */
    ft_tok_buf key;                /* BPE unit key scratch */
    ft_tok_sym *sym;
    int64_t sym_cap;
    ft_tok_merge *heap;
    int64_t heap_cap;
    ft_tok_cache cache;
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    pcre2_jit_stack *jit;
    ft_tok_buf dec[2];             /* decode ping-pong */
    ft_tok_spans dspans[2];
} ft_tok_state;

/* ---- the tokenizer ---- */
struct ft_tok {
    char *path;
    /* model */
    ft_tok_strmap vocab;      /* model vocab, original strings (token_to_id, merges parsing) */
    ft_tok_strmap model_map;  /* what BPE looks up: == vocab, or raw bytes when byte_level */
    int byte_level;           /* pre-tokenizer has ByteLevel: BPE runs on raw bytes */
    int32_t byte_unit[256];   /* byte_level: id of each single byte, -1 if none */
    int32_t byte_fallback_id[256]; /* "<0xXX>" ids, -1 if none */
    ft_tok_pairmap merges;    /* (a << 32 | b) -> (rank, new id) */
    int ignore_merges, byte_fallback, fuse_unk;
    int32_t unk_id;           /* model unk token id or -1 */
    char *cont_prefix, *eow_suffix;
    int64_t cont_prefix_len, eow_suffix_len;
    /* id -> piece */
    int64_t *piece_off;       /* [n_ids] offset of the NUL-terminated piece in piece_store, -1 if none */
    int64_t n_ids;
    int32_t *added_of_id;     /* [n_ids] index into added[] or -1 */
    ft_tok_buf piece_store;
    /* added tokens */
    ft_tok_added *added;
    int64_t n_added;
    ft_tok_trie trie_raw, trie_norm;
    /* pipeline */
    ft_tok_norm *norm;
    int n_norm;
    ft_tok_pre *pre;
    int n_pre;
    ft_tok_dec *dec;
    int n_dec;
    int has_decoder;
    int32_t *tmpl_prefix, *tmpl_suffix; /* single-sequence template */
    int n_prefix, n_suffix;
    /* config */
    int32_t bos_id, eos_id, pad_id, cfg_unk_id;
    char *chat_template;
    /* scratch pool: a thread first tries the affine slot its id hashes to (no lock, and mostly the
     * state it used last, its pre-token cache warm in its core's cache), then the locked list */
    pthread_mutex_t pool_lock;
    ft_tok_state *pool;
    struct {
        _Atomic(ft_tok_state *) s;
        char pad[64 - sizeof(void *)]; /* one cache line each */
    } affine[FT_TOK_AFFINE_SLOTS];
    int cache_cap_log2;
};

/* tokenizer_load.c. bytes_to_unicode: the ByteLevel byte -> code point table; the inverse
 * returns -1 for code points outside it. */
void ft_tok_bytes_to_unicode(uint32_t cp[256]);
int ft_tok_unicode_to_byte(uint32_t cp);
ft_status ft_tok_parse_json(ft_tok *t, const char *json, int64_t len);
/* The same from a parsed document (data/tokenizer_vocab.c builds one from GGUF metadata). */
struct cJSON;
ft_status ft_tok_parse_root(ft_tok *t, const struct cJSON *root);
void ft_tok_free_parts(ft_tok *t);
ft_status ft_tok_parse_config(ft_tok *t, const char *json, int64_t len, const char *path);
ft_status ft_tok_trie_add(ft_tok_trie *tr, const char *s, int64_t len, int32_t idx);
void ft_tok_trie_free(ft_tok_trie *tr);
pcre2_code *ft_tok_compile_regex(const char *pat, int64_t len, int literal, char *err, size_t errsz);

/* tokenizer.c. ft_tok_new: an empty tokenizer (no ids, pool ready) remembering path for messages. */
ft_status ft_tok_new(ft_tok **out, const char *path);
ft_status ft_tok_state_get(const ft_tok *t, ft_tok_state **out);
void ft_tok_state_put(const ft_tok *t, ft_tok_state *st);

/* tokenizer_bpe.c: appends the ids of one pre-token (model domain) to v. */
ft_status ft_tok_bpe(const ft_tok *t, ft_tok_state *st, const char *s, int64_t len, ft_tok_ids *v);

/* pretokenize.c: runs the pre-tokenizer steps over s[0..len); the pieces are spans of *buf. */
ft_status ft_pretok_run(const ft_tok *t, ft_tok_state *st, const char *s, int64_t len, int at_start,
                        const char **buf, const ft_tok_spans **pieces);
/* Finds all regex matches in s[0..len) into st->seg (off, len, first = 1 for a match) with the
 * gaps in between (first = 0), covering s. */
ft_status ft_pretok_find(ft_tok_state *st, const pcre2_code *re, const char *s, int64_t len);
/* tokenizer_encode.c: runs the normalizer chain; *out points to s or into st->norm. */
ft_status ft_tok_normalize(const ft_tok *t, ft_tok_state *st, const char *s, int64_t len, const char **out,
                           int64_t *out_len);

#endif
