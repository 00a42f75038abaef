/* tokenizer_map.c: the tokenizer's containers: growable buffers and span lists, an
 * open-addressing string -> id map (XXH3 hashes, keys packed in one arena), a uint64 -> pair map
 * for BPE merges and trie edges, and the added-token byte trie. Sizes are 64-bit; tables grow
 * by doubling at half load so probes stay short. */
#include <stdlib.h>
#include <xxhash.h>

#include "data/tokenizer_impl.h"
#include "kernels/mem.h"

ft_status ft_tok_buf_reserve(ft_tok_buf *b, int64_t extra) {
    int64_t need = b->n + extra;
    if (need <= b->cap) return FT_OK;
    int64_t cap = b->cap ? b->cap : 256;
    while (cap < need) cap *= 2;
    char *p = realloc(b->p, (size_t)cap);
    if (!p) return FT_ERR(FT_E_OOM, "out of memory growing a tokenizer buffer to %lld bytes", (long long)cap);
    b->p = p;
    b->cap = cap;
    return FT_OK;
}

void ft_tok_buf_free(ft_tok_buf *b) {
    free(b->p);
    b->p = NULL;
    b->n = b->cap = 0;
}

ft_status ft_tok_spans_push(ft_tok_spans *s, int64_t off, int64_t len, int first) {
    if (s->n == s->cap) {
        int64_t cap = s->cap ? s->cap * 2 : 64;
        ft_tok_span *v = realloc(s->v, (size_t)cap * sizeof *v);
        if (!v) return FT_ERR(FT_E_OOM, "out of memory growing a tokenizer span list");
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n].off = off;
    s->v[s->n].len = len;
    s->v[s->n].first = first;
    s->n++;
    return FT_OK;
}

uint64_t ft_tok_hash(const void *s, int64_t len) {
    uint64_t h = XXH3_64bits(s, (size_t)len);
    return h ? h : 1;
}

/* ---- string map ---- */

static ft_status ft_tok_strmap_rehash(ft_tok_strmap *m, uint64_t nslots) {
    int32_t *slots;
    FT_TRY(ft_malloc((void **)&slots, nslots * sizeof *slots, "tokenizer vocab table"));
    memset(slots, 0xFF, nslots * sizeof *slots);
    uint64_t mask = nslots - 1;
    for (int64_t e = 0; e < m->n; e++) {
        uint64_t i = m->ent[e].hash & mask;
        while (slots[i] >= 0) i = (i + 1) & mask;
        slots[i] = (int32_t)e;
    }
    free(m->slots);
    m->slots = slots;
    m->mask = mask;
    return FT_OK;
}

ft_status ft_tok_strmap_init(ft_tok_strmap *m, int64_t expect) {
    memset(m, 0, sizeof *m);
    uint64_t nslots = 64;
    while ((int64_t)nslots < expect * 2) nslots *= 2;
    m->cap = expect > 16 ? expect : 16;
    FT_TRY(ft_malloc((void **)&m->ent, (size_t)m->cap * sizeof *m->ent, "tokenizer vocab entries"));
    return ft_tok_strmap_rehash(m, nslots);
}

static int64_t ft_tok_strmap_find(const ft_tok_strmap *m, const char *s, int64_t len, uint64_t h, uint64_t *slot) {
    uint64_t i = h & m->mask;
    for (;;) {
        int32_t e = m->slots[i];
        if (e < 0) {
            *slot = i;
            return -1;
        }
        const ft_tok_strent *en = &m->ent[e];
        if (en->hash == h && en->len == len && memcmp(m->keys.p + en->off, s, (size_t)len) == 0) {
            *slot = i;
            return e;
        }
        i = (i + 1) & m->mask;
    }
}

ft_status ft_tok_strmap_put(ft_tok_strmap *m, const char *s, int64_t len, int32_t val) {
    if (len > INT32_MAX) return FT_ERR(FT_E_FORMAT, "token of %lld bytes is too long", (long long)len);
    uint64_t h = ft_tok_hash(s, len), slot;
    int64_t e = ft_tok_strmap_find(m, s, len, h, &slot);
    if (e >= 0) {
        m->ent[e].val = val;
        return FT_OK;
    }
    if (m->n == m->cap) {
        int64_t cap = m->cap * 2;
        ft_tok_strent *ent = realloc(m->ent, (size_t)cap * sizeof *ent);
        if (!ent) return FT_ERR(FT_E_OOM, "out of memory growing the tokenizer vocab");
        m->ent = ent;
        m->cap = cap;
    }
    int64_t off = m->keys.n;
    FT_TRY(ft_tok_buf_put(&m->keys, s, len));
    m->ent[m->n] = (ft_tok_strent){h, off, (int32_t)len, val};
    m->slots[slot] = (int32_t)m->n;
    m->n++;
    if ((uint64_t)m->n * 2 > m->mask + 1) FT_TRY(ft_tok_strmap_rehash(m, (m->mask + 1) * 2));
    return FT_OK;
}

int32_t ft_tok_strmap_get(const ft_tok_strmap *m, const char *s, int64_t len) {
    if (!m->slots) return -1;
    uint64_t slot;
    int64_t e = ft_tok_strmap_find(m, s, len, ft_tok_hash(s, len), &slot);
    return e < 0 ? -1 : m->ent[e].val;
}

void ft_tok_strmap_free(ft_tok_strmap *m) {
    free(m->slots);
    free(m->ent);
    ft_tok_buf_free(&m->keys);
    memset(m, 0, sizeof *m);
}

/* ---- pair map ---- */

static ft_status ft_tok_pairmap_alloc(ft_tok_pairmap *m, uint64_t nslots) {
    ft_tok_pairslot *s;
    FT_TRY(ft_malloc((void **)&s, nslots * sizeof *s, "tokenizer merge table"));
    for (uint64_t i = 0; i < nslots; i++) s[i].key = UINT64_MAX;
    m->slot = s;
    m->mask = nslots - 1;
    return FT_OK;
}

ft_status ft_tok_pairmap_init(ft_tok_pairmap *m, int64_t expect) {
    memset(m, 0, sizeof *m);
    uint64_t nslots = 64;
    while ((int64_t)nslots < expect * 2) nslots *= 2;
    return ft_tok_pairmap_alloc(m, nslots);
}

static void ft_tok_pairmap_insert(ft_tok_pairmap *m, uint64_t key, int32_t a, int32_t b) {
    uint64_t i = ft_tok_mix64(key) & m->mask;
    while (m->slot[i].key != UINT64_MAX && m->slot[i].key != key) i = (i + 1) & m->mask;
    if (m->slot[i].key == UINT64_MAX) m->n++;
    m->slot[i] = (ft_tok_pairslot){key, a, b};
}

ft_status ft_tok_pairmap_put(ft_tok_pairmap *m, uint64_t key, int32_t a, int32_t b) {
    if ((uint64_t)(m->n + 1) * 2 > m->mask + 1) {
        ft_tok_pairmap old = *m;
        FT_TRY(ft_tok_pairmap_alloc(m, (old.mask + 1) * 2));
        m->n = 0;
        for (uint64_t i = 0; i <= old.mask; i++)
            if (old.slot[i].key != UINT64_MAX) ft_tok_pairmap_insert(m, old.slot[i].key, old.slot[i].a, old.slot[i].b);
        free(old.slot);
    }
    ft_tok_pairmap_insert(m, key, a, b);
    return FT_OK;
}

void ft_tok_pairmap_free(ft_tok_pairmap *m) {
    free(m->slot);
    memset(m, 0, sizeof *m);
}

/* ---- added-token trie ---- */

static ft_status ft_tok_trie_node(ft_tok_trie *tr, int32_t *out) {
    if (tr->n_nodes == tr->cap) {
        int64_t cap = tr->cap ? tr->cap * 2 : 256;
        int32_t *term = realloc(tr->term, (size_t)cap * sizeof *term);
        if (!term) return FT_ERR(FT_E_OOM, "out of memory building the added-token trie");
        tr->term = term;
        tr->cap = cap;
    }
    tr->term[tr->n_nodes] = -1;
    *out = (int32_t)tr->n_nodes++;
    return FT_OK;
}

ft_status ft_tok_trie_add(ft_tok_trie *tr, const char *s, int64_t len, int32_t idx) {
    if (len <= 0) return FT_OK; /* HF ignores empty added tokens */
    if (!tr->edges.slot) FT_TRY(ft_tok_pairmap_init(&tr->edges, 256));
    int32_t node;
    if (tr->n_nodes == 0) FT_TRY(ft_tok_trie_node(tr, &node));
    node = 0;
    tr->first[(uint8_t)s[0]] = 1;
    for (int64_t i = 0; i < len; i++) {
        uint64_t key = ((uint64_t)node << 8) | (uint8_t)s[i];
        const ft_tok_pairslot *e = ft_tok_pairmap_get(&tr->edges, key);
        if (e) {
            node = e->a;
        } else {
            int32_t child = 0;
            FT_TRY(ft_tok_trie_node(tr, &child));
            FT_TRY(ft_tok_pairmap_put(&tr->edges, key, child, 0));
            node = child;
        }
    }
    /* The first registration of a pattern wins (HF builds the automaton from the list in order,
     * and leftmost-longest reports the first of equal patterns). */
    if (tr->term[node] < 0) tr->term[node] = idx;
    tr->n_patterns++;
    return FT_OK;
}

void ft_tok_trie_free(ft_tok_trie *tr) {
    ft_tok_pairmap_free(&tr->edges);
    free(tr->term);
    memset(tr, 0, sizeof *tr);
}
