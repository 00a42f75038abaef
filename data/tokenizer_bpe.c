/* tokenizer_bpe.c: the BPE model on one pre-token, reproducing HF `tokenizers`
 * (models/bpe: BPE::merge_word + Word::merge_all) step for step, quirks included:
 *   - ignore_merges: a pre-token that is itself in the vocab is emitted whole;
 *   - units are bytes (byte-level tokenizers, whose vocab we keep in raw-byte form) or UTF-8
 *     characters, with continuing_subword_prefix on non-first units and end_of_word_suffix on
 *     the last; a unit missing from the vocab becomes its <0xXX> byte tokens (byte_fallback) or
 *     the unk token (fused with a preceding unk when fuse_unk), or is dropped when there is no
 *     unk token;
 *   - merges are applied from a min-heap ordered by (rank, position) with lazy invalidation:
 *     a popped entry is used only if its position still holds a pair whose merge yields the
 *     same new id, exactly as HF does (this matters when two merges produce the same token).
 * Results of short pre-tokens are kept in the calling state's bounded cache. */
#include <stdlib.h>

#include "data/tokenizer_impl.h"
#include "data/unicode.h"

#define FT_TOK_CACHE_MAX_KEY 64

static const int32_t *ft_tok_cache_get(const ft_tok_cache *c, const char *s, int64_t len, uint64_t h, int32_t *n) {
    if (!c->slot) return NULL;
    uint64_t i = h & c->mask;
    for (;;) {
        const ft_tok_cache_slot *sl = &c->slot[i];
        if (sl->hash == 0) return NULL;
        if (sl->hash == h && sl->key_len == len && memcmp(c->keys.p + sl->key_off, s, (size_t)len) == 0) {
            *n = sl->n_ids;
            return (const int32_t *)(c->ids.p + sl->ids_off);
        }
        i = (i + 1) & c->mask;
    }
}

static ft_status ft_tok_cache_put(const ft_tok *t, ft_tok_cache *c, const char *s, int64_t len, uint64_t h,
                                  const int32_t *ids, int32_t n) {
    uint64_t nslots = (uint64_t)1 << t->cache_cap_log2;
    if (!c->slot) {
        c->slot = calloc(nslots, sizeof *c->slot);
        if (!c->slot) return FT_OK; /* no cache is not an error */
        c->mask = nslots - 1;
    }
    if ((uint64_t)c->used * 2 >= nslots) { /* full: start over (bounded memory) */
        memset(c->slot, 0, nslots * sizeof *c->slot);
        c->used = 0;
        c->keys.n = 0;
        c->ids.n = 0;
    }
    uint64_t i = h & c->mask;
    while (c->slot[i].hash != 0) i = (i + 1) & c->mask;
    int64_t ko = c->keys.n, io = c->ids.n;
    FT_TRY(ft_tok_buf_put(&c->keys, s, len));
    FT_TRY(ft_tok_buf_put(&c->ids, ids, (int64_t)n * (int64_t)sizeof *ids));
    c->slot[i] = (ft_tok_cache_slot){h, ko, io, (int32_t)len, n};
    c->used++;
    return FT_OK;
}

static inline int ft_merge_less(const ft_tok_merge *a, const ft_tok_merge *b) {
    return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static ft_status ft_heap_push(ft_tok_state *st, int64_t *n, ft_tok_merge m) {
    if (*n == st->heap_cap) {
        int64_t cap = st->heap_cap ? st->heap_cap * 2 : 256;
        ft_tok_merge *h = realloc(st->heap, (size_t)cap * sizeof *h);
        if (!h) return FT_ERR(FT_E_OOM, "out of memory in BPE merge queue");
        st->heap = h;
        st->heap_cap = cap;
    }
    ft_tok_merge *h = st->heap;
    int64_t i = (*n)++;
    while (i > 0) {
        int64_t p = (i - 1) / 2;
        if (!ft_merge_less(&m, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = m;
    return FT_OK;
}

static ft_tok_merge ft_heap_pop(ft_tok_state *st, int64_t *n) {
    ft_tok_merge *h = st->heap;
    ft_tok_merge top = h[0], last = h[--(*n)];
    int64_t i = 0, cnt = *n;
    for (;;) {
        int64_t l = 2 * i + 1;
        if (l >= cnt) break;
        int64_t c = (l + 1 < cnt && ft_merge_less(&h[l + 1], &h[l])) ? l + 1 : l;
        if (!ft_merge_less(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    if (cnt > 0) h[i] = last;
    return top;
}

static inline const ft_tok_pairslot *ft_merge_of(const ft_tok *t, int32_t a, int32_t b) {
    return ft_tok_pairmap_get(&t->merges, ((uint64_t)(uint32_t)a << 32) | (uint32_t)b);
}

static ft_status ft_merge_all(const ft_tok *t, ft_tok_state *st, int64_t nsym) {
    ft_tok_sym *sym = st->sym;
    int64_t nh = 0;
    for (int64_t i = 0; i + 1 < nsym; i++) {
        const ft_tok_pairslot *m = ft_merge_of(t, sym[i].id, sym[i + 1].id);
        if (m) FT_TRY(ft_heap_push(st, &nh, (ft_tok_merge){m->a, (int32_t)i, m->b}));
    }
    while (nh > 0) {
        ft_tok_merge top = ft_heap_pop(st, &nh);
        ft_tok_sym *cur = &sym[top.pos];
        if (cur->len == 0 || cur->next == -1) continue;
        int32_t next_pos = cur->next;
        ft_tok_sym right = sym[next_pos];
        const ft_tok_pairslot *m = ft_merge_of(t, cur->id, right.id);
        if (!m || m->b != top.new_id) continue; /* stale entry */
        cur->id = top.new_id;
        cur->len += right.len;
        cur->next = right.next;
        sym[next_pos].len = 0;
        if (right.next > -1 && right.next < nsym) sym[right.next].prev = top.pos;
        if (cur->prev >= 0) {
            const ft_tok_pairslot *pm = ft_merge_of(t, sym[cur->prev].id, cur->id);
            if (pm) FT_TRY(ft_heap_push(st, &nh, (ft_tok_merge){pm->a, cur->prev, pm->b}));
        }
        if (cur->next >= 0) {
            const ft_tok_pairslot *nm = ft_merge_of(t, cur->id, sym[cur->next].id);
            if (nm) FT_TRY(ft_heap_push(st, &nh, (ft_tok_merge){nm->a, top.pos, nm->b}));
        }
    }
    return FT_OK;
}

static inline void ft_sym_add(ft_tok_sym *sym, int64_t *n, int32_t id, int32_t len) {
    int64_t i = (*n)++;
    sym[i].id = id;
    sym[i].len = len;
    sym[i].prev = (int32_t)(i - 1);
    sym[i].next = -1;
    if (i > 0) sym[i - 1].next = (int32_t)i;
}

ft_status ft_tok_bpe(const ft_tok *t, ft_tok_state *st, const char *s, int64_t len, ft_tok_ids *v) {
    if (len <= 0) return FT_OK;
    const ft_tok_strmap *mm = t->byte_level ? &t->model_map : &t->vocab;
    if (t->ignore_merges) {
        int32_t id = ft_tok_strmap_get(mm, s, len);
        if (id >= 0) return ft_tok_ids_push(v, id);
    }
    uint64_t h = 0;
    if (len <= FT_TOK_CACHE_MAX_KEY) {
        h = ft_tok_hash(s, len);
        int32_t n;
        const int32_t *hit = ft_tok_cache_get(&st->cache, s, len, h, &n);
        if (hit) {
            for (int32_t i = 0; i < n; i++) FT_TRY(ft_tok_ids_push(v, hit[i]));
            return FT_OK;
        }
    }
    /* At most one symbol per byte of (prefix + unit + suffix). */
    int64_t need = len * (1 + t->cont_prefix_len + t->eow_suffix_len) + 8;
    if (need > INT32_MAX) return FT_ERR(FT_E_ARG, "pre-token of %lld bytes is too long to tokenize", (long long)len);
    if (need > st->sym_cap) {
        ft_tok_sym *p = realloc(st->sym, (size_t)need * sizeof *p);
        if (!p) return FT_ERR(FT_E_OOM, "out of memory in BPE (%lld symbols)", (long long)need);
        st->sym = p;
        st->sym_cap = need;
    }
    ft_tok_sym *sym = st->sym;
    int64_t nsym = 0;
    int32_t unk_id = -1, unk_len = 0; /* pending unk, as HF's `unk` */
    const int plain_bytes = t->byte_level && !t->cont_prefix_len && !t->eow_suffix_len;
    for (int64_t i = 0; i < len;) {
        int n = plain_bytes ? 1 : ft_utf8_len((uint8_t)s[i]);
        if (i + n > len) n = (int)(len - i);
        int32_t id;
        const char *key = s + i;
        int64_t klen = n;
        if (plain_bytes) {
            id = t->byte_unit[(uint8_t)s[i]];
        } else {
            int first = i == 0, last = i + n == len;
            if ((!first && t->cont_prefix_len) || (last && t->eow_suffix_len)) {
                st->key.n = 0;
                if (!first) FT_TRY(ft_tok_buf_put(&st->key, t->cont_prefix, t->cont_prefix_len));
                FT_TRY(ft_tok_buf_put(&st->key, s + i, n));
                if (last) FT_TRY(ft_tok_buf_put(&st->key, t->eow_suffix, t->eow_suffix_len));
                key = st->key.p;
                klen = st->key.n;
            }
            id = ft_tok_strmap_get(mm, key, klen);
        }
        if (id >= 0) {
            if (unk_id >= 0) {
                ft_sym_add(sym, &nsym, unk_id, unk_len);
                unk_id = -1;
            }
            ft_sym_add(sym, &nsym, id, n);
        } else {
            int done = 0;
            if (t->byte_fallback) {
                int all = 1;
                for (int64_t b = 0; b < klen && all; b++) all = t->byte_fallback_id[(uint8_t)key[b]] >= 0;
                if (all) {
                    for (int64_t b = 0; b < klen; b++) ft_sym_add(sym, &nsym, t->byte_fallback_id[(uint8_t)key[b]], 1);
                    done = 1;
                }
            }
            if (!done && t->unk_id >= 0) {
                if (unk_id >= 0 && t->fuse_unk) {
                    unk_len += n;
                } else {
                    if (unk_id >= 0) ft_sym_add(sym, &nsym, unk_id, unk_len);
                    unk_id = t->unk_id;
                    unk_len = n;
                }
            }
        }
        i += n;
    }
    if (unk_id >= 0) ft_sym_add(sym, &nsym, unk_id, unk_len);
    if (nsym > 1) FT_TRY(ft_merge_all(t, st, nsym));
    int64_t start = v->n;
    for (int64_t i = 0; i < nsym; i++)
        if (sym[i].len != 0) FT_TRY(ft_tok_ids_push(v, sym[i].id));
    if (h) FT_TRY(ft_tok_cache_put(t, &st->cache, s, len, h, v->ids + start, (int32_t)(v->n - start)));
    return FT_OK;
}
