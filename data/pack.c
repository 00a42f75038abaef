/* pack.c: see pack.h. Best-fit decreasing keeps rows in capacity buckets (one LIFO list per
 * remaining capacity) and finds the fullest row that fits with a two-level bitset over
 * capacities, so placing an example costs O(T/4096) word scans instead of a walk over rows. */
#include "data/pack.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "kernels/mem.h"
#include "kernels/rng.h"

/* ---- examples ---------------------------------------------------------------------------- */

void ft_examples_init(ft_examples *ex) { memset(ex, 0, sizeof *ex); }

void ft_examples_free(ft_examples *ex) {
    if (!ex) return;
    free(ex->tokens);
    free(ex->mask);
    free(ex->offsets);
    memset(ex, 0, sizeof *ex);
}

ft_status ft_examples_reserve(ft_examples *ex, int64_t n_tokens, int64_t n_examples) {
    /* growing sets double; an empty set's first reserve is exact when larger than the start, since a
     * load that knows its totals (ft_shards_load) asks once: doubling would ask up to twice its memory
     * (untouched, but a 20 G-token set's 2x can exceed what the kernel will commit) */
    if (n_tokens > ex->cap_tokens) {
        int64_t cap = ex->cap_tokens ? ex->cap_tokens : n_tokens > 4096 ? n_tokens : 4096;
        while (cap < n_tokens) cap *= 2;
        int32_t *t = realloc(ex->tokens, (size_t)cap * sizeof *t);
        if (!t) return FT_ERR(FT_E_OOM, "out of memory growing the example tokens to %lld", (long long)cap);
        ex->tokens = t;
        uint8_t *m = realloc(ex->mask, (size_t)cap);
        if (!m) return FT_ERR(FT_E_OOM, "out of memory growing the example mask to %lld", (long long)cap);
        ex->mask = m;
        ex->cap_tokens = cap;
    }
    if (n_examples + 1 > ex->cap_examples || !ex->offsets) {
        int64_t cap = ex->cap_examples ? ex->cap_examples : n_examples + 1 > 256 ? n_examples + 1 : 256;
        while (cap < n_examples + 1) cap *= 2;
        int64_t *o = realloc(ex->offsets, (size_t)cap * sizeof *o);
        if (!o) return FT_ERR(FT_E_OOM, "out of memory growing the example offsets to %lld", (long long)cap);
        if (!ex->offsets) o[0] = 0;
        ex->offsets = o;
        ex->cap_examples = cap;
    }
    return FT_OK;
}

ft_status ft_examples_add(ft_examples *ex, const int32_t *tokens, const uint8_t *mask, int64_t n) {
    if (n < 0) return FT_ERR(FT_E_ARG, "negative example length %lld", (long long)n);
    FT_TRY(ft_examples_reserve(ex, ex->n_tokens + n, ex->n + 1));
    memcpy(ex->tokens + ex->n_tokens, tokens, (size_t)n * sizeof *tokens);
    if (mask) memcpy(ex->mask + ex->n_tokens, mask, (size_t)n);
    else memset(ex->mask + ex->n_tokens, 1, (size_t)n);
    ex->n_tokens += n;
    ex->n++;
    ex->offsets[ex->n] = ex->n_tokens;
    return FT_OK;
}

ft_status ft_examples_subset(const ft_examples *src, const int64_t *idx, int64_t n, ft_examples *dst) {
    ft_examples_init(dst);
    int64_t tot = 0;
    for (int64_t i = 0; i < n; i++) {
        if (idx[i] < 0 || idx[i] >= src->n) return FT_ERR(FT_E_ARG, "example index %lld out of range", (long long)idx[i]);
        tot += ft_examples_len(src, idx[i]);
    }
    FT_TRY(ft_examples_reserve(dst, tot, n));
    for (int64_t i = 0; i < n; i++) {
        int64_t a = src->offsets[idx[i]], len = ft_examples_len(src, idx[i]);
        FT_TRY(ft_examples_add(dst, src->tokens + a, src->mask + a, len));
    }
    return FT_OK;
}

void ft_permutation(int64_t *perm, int64_t n, uint64_t seed) {
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    ft_rng rng = {ft_mix64(seed ^ 0x5eedf00dcafe1234ull)};
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)(ft_rng_next(&rng) % (uint64_t)(i + 1));
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* The split's permutation: perm[0..k) the validation examples, perm[k..n) the training ones, each
 * part in ascending order (*perm malloc'd). */
static ft_status ft_split_perm(int64_t n, double valid_fraction, uint64_t seed, int64_t **perm, int64_t *k_out) {
    *perm = NULL;
    if (!(valid_fraction >= 0.0 && valid_fraction < 1.0))
        return FT_ERR(FT_E_ARG, "validation fraction %g is not in [0, 1)", valid_fraction);
    int64_t k = (int64_t)(valid_fraction * (double)n + 0.5);
    if (valid_fraction > 0 && k == 0 && n >= 2) k = 1;
    if (k >= n && n > 0) /* named by the recipe key, as its one caller (trainer/dataset.c) passes it */
        return FT_ERR(FT_E_ARG, "data.val_fraction %g holds out all %lld examples: none is left to train on (add "
                                "data, or set data.valid)", valid_fraction, (long long)n);
    FT_TRY(ft_malloc((void **)perm, (size_t)(n ? n : 1) * sizeof **perm, "split permutation"));
    ft_permutation(*perm, n, seed);
    qsort(*perm, (size_t)k, sizeof **perm, cmp_i64);
    qsort(*perm + k, (size_t)(n - k), sizeof **perm, cmp_i64);
    *k_out = k;
    return FT_OK;
}

ft_status ft_examples_split(const ft_examples *all, double valid_fraction, uint64_t seed, ft_examples *train,
                            ft_examples *valid) {
    ft_examples_init(train);
    ft_examples_init(valid);
    int64_t *perm, k = 0, n = all->n;
    FT_TRY(ft_split_perm(n, valid_fraction, seed, &perm, &k));
    ft_status st = ft_examples_subset(all, perm, k, valid);
    if (st == FT_OK) st = ft_examples_subset(all, perm + k, n - k, train);
    free(perm);
    if (st != FT_OK) {
        ft_examples_free(train);
        ft_examples_free(valid);
    }
    return st;
}

ft_status ft_examples_split_move(ft_examples *all, double valid_fraction, uint64_t seed, ft_examples *train,
                                 ft_examples *valid) {
    ft_examples_init(train);
    ft_examples_init(valid);
    int64_t *perm, k = 0, n = all->n;
    FT_TRY(ft_split_perm(n, valid_fraction, seed, &perm, &k));
    ft_status st = ft_examples_subset(all, perm, k, valid);
    if (st != FT_OK) {
        free(perm);
        ft_examples_free(valid);
        return st;
    }
    if (k > 0) {
        /* Compacts the training examples (those not in perm[0..k), ascending) to the front. Writes
         * never pass reads: the j-th kept example (j <= i) moves to at most where it was, and
         * offsets[j + 1] is written only after offsets[i + 1] was read (start carries offsets[i]
         * past its overwrite). */
        int64_t v = 0, j = 0, dst = 0, start = all->offsets[0];
        for (int64_t i = 0; i < n; i++) {
            const int64_t end = all->offsets[i + 1];
            if (v < k && perm[v] == i) {
                v++;
                start = end;
                continue;
            }
            const int64_t len = end - start;
            if (dst != start) {
                memmove(all->tokens + dst, all->tokens + start, (size_t)len * sizeof *all->tokens);
                memmove(all->mask + dst, all->mask + start, (size_t)len);
            }
            dst += len;
            all->offsets[++j] = dst;
            start = end;
        }
        all->n = j;
        all->n_tokens = dst;
    }
    free(perm);
    *train = *all;
    ft_examples_init(all);
    /* gives back the tail the validation examples left (and the doubling's slack: untouched, but
     * address space); a smaller realloc of a large block shrinks it in place */
    if (train->cap_tokens > train->n_tokens && train->n_tokens > 0) {
        int32_t *t = realloc(train->tokens, (size_t)train->n_tokens * sizeof *t);
        if (t) { /* the capacity is the smaller of the two buffers' */
            train->tokens = t;
            train->cap_tokens = train->n_tokens;
            uint8_t *m = realloc(train->mask, (size_t)train->n_tokens);
            if (m) train->mask = m;
        }
    }
    return FT_OK;
}

/* ---- packing ------------------------------------------------------------------------------ */

/* Rows under construction: pieces as per-row linked lists, flattened at the end. */
typedef struct pk_build {
    int64_t n_rows, cap_rows, n_pieces, cap_pieces;
    int64_t *head, *tail;          /* [rows] first/last piece, -1 when empty */
    int64_t *next;                 /* [pieces] next piece in the row */
    int64_t *pex, *plen;           /* [pieces] */
} pk_build;

static ft_status pk_new_row(pk_build *b, int64_t *row) {
    if (b->n_rows == b->cap_rows) {
        int64_t cap = b->cap_rows ? 2 * b->cap_rows : 1024;
        int64_t *h = realloc(b->head, (size_t)cap * sizeof *h), *t = h ? realloc(b->tail, (size_t)cap * sizeof *t) : NULL;
        if (h) b->head = h;
        if (t) b->tail = t;
        if (!h || !t) return FT_ERR(FT_E_OOM, "out of memory for %lld packed rows", (long long)cap);
        b->cap_rows = cap;
    }
    b->head[b->n_rows] = b->tail[b->n_rows] = -1;
    *row = b->n_rows++;
    return FT_OK;
}

static ft_status pk_place(pk_build *b, int64_t row, int64_t ex, int64_t len) {
    if (b->n_pieces == b->cap_pieces) {
        int64_t cap = b->cap_pieces ? 2 * b->cap_pieces : 1024;
        int64_t *nx = realloc(b->next, (size_t)cap * sizeof *nx);
        if (nx) b->next = nx;
        int64_t *pe = nx ? realloc(b->pex, (size_t)cap * sizeof *pe) : NULL;
        if (pe) b->pex = pe;
        int64_t *pl = pe ? realloc(b->plen, (size_t)cap * sizeof *pl) : NULL;
        if (pl) b->plen = pl;
        if (!pl) return FT_ERR(FT_E_OOM, "out of memory for %lld packed pieces", (long long)cap);
        b->cap_pieces = cap;
    }
    int64_t p = b->n_pieces++;
    b->pex[p] = ex;
    b->plen[p] = len;
    b->next[p] = -1;
    if (b->tail[row] < 0) b->head[row] = p;
    else b->next[b->tail[row]] = p;
    b->tail[row] = p;
    return FT_OK;
}

static void pk_build_free(pk_build *b) {
    free(b->head);
    free(b->tail);
    free(b->next);
    free(b->pex);
    free(b->plen);
}

/* Capacity buckets: bit c of `lo` set when some row has exactly c free slots; bit w of `hi`
 * set when word w of `lo` is non-zero. */
typedef struct pk_buckets {
    int64_t ncap, nlo, nhi;
    uint64_t *lo, *hi;
    int64_t *first;   /* [ncap] top row of the bucket, -1 when empty */
    int64_t *below;   /* [rows] the row under it in its bucket */
    int64_t cap_rows;
} pk_buckets;

static void bk_set(pk_buckets *k, int64_t c, int on) {
    if (on) {
        k->lo[c >> 6] |= 1ull << (c & 63);
        k->hi[c >> 12] |= 1ull << ((c >> 6) & 63);
    } else {
        k->lo[c >> 6] &= ~(1ull << (c & 63));
        if (!k->lo[c >> 6]) k->hi[c >> 12] &= ~(1ull << ((c >> 6) & 63));
    }
}

/* Smallest capacity >= c with a row, or -1. */
static int64_t bk_find(const pk_buckets *k, int64_t c) {
    if (c >= k->ncap) return -1;
    int64_t w = c >> 6;
    uint64_t m = k->lo[w] & (~0ull << (c & 63));
    if (m) return (w << 6) + __builtin_ctzll(m);
    int64_t w1 = w + 1;
    if (w1 >= k->nlo) return -1;
    int64_t h = w1 >> 6;
    uint64_t hm = k->hi[h] & (~0ull << (w1 & 63));
    while (!hm) {
        if (++h >= k->nhi) return -1;
        hm = k->hi[h];
    }
    int64_t wf = (h << 6) + __builtin_ctzll(hm);
    return (wf << 6) + __builtin_ctzll(k->lo[wf]);
}

static ft_status bk_push(pk_buckets *k, int64_t c, int64_t row) {
    if (row >= k->cap_rows) {
        int64_t cap = k->cap_rows ? 2 * k->cap_rows : 1024;
        while (cap <= row) cap *= 2;
        int64_t *b = realloc(k->below, (size_t)cap * sizeof *b);
        if (!b) return FT_ERR(FT_E_OOM, "out of memory for packing buckets");
        k->below = b;
        k->cap_rows = cap;
    }
    k->below[row] = k->first[c];
    k->first[c] = row;
    bk_set(k, c, 1);
    return FT_OK;
}

static int64_t bk_pop(pk_buckets *k, int64_t c) {
    int64_t row = k->first[c];
    k->first[c] = k->below[row];
    if (k->first[c] < 0) bk_set(k, c, 0);
    return row;
}

typedef struct { int64_t len, idx; } pk_item;

static int cmp_item_desc(const void *a, const void *b) {
    const pk_item *x = a, *y = b;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;
    return (x->idx > y->idx) - (x->idx < y->idx);
}

ft_status ft_pack_build(const ft_examples *ex, const ft_pack_opts *opts, ft_pack *out) {
    memset(out, 0, sizeof *out);
    const int64_t T = opts->seq_len;
    if (T < 2) return FT_ERR(FT_E_ARG, "seq_len %lld is too small to pack (need >= 2)", (long long)T);
    if (T > INT32_MAX) return FT_ERR(FT_E_ARG, "seq_len %lld exceeds int32 positions", (long long)T);
    ft_pack_stats *s = &out->stats;
    s->examples_in = ex->n;

    /* Which examples go in, and with how many tokens. */
    pk_item *items;
    FT_TRY(ft_malloc((void **)&items, (size_t)(ex->n ? ex->n : 1) * sizeof *items, "packing items"));
    int64_t n_items = 0;
    for (int64_t i = 0; i < ex->n; i++) {
        int64_t len = ft_examples_len(ex, i);
        if (len > T) {
            if (opts->long_policy == FT_LONG_DROP) {
                s->dropped_long++;
                continue;
            }
            len = T;
        }
        int64_t tg = 0;
        for (int64_t k = ex->offsets[i] + 1; k < ex->offsets[i] + len; k++) tg += ex->mask[k] != 0;
        if (tg == 0) {
            s->dropped_empty++;
            int64_t cut = 0; /* targets the truncation removed: the example had some */
            for (int64_t k = ex->offsets[i] + len; k < ex->offsets[i] + ft_examples_len(ex, i) && !cut; k++)
                cut = ex->mask[k] != 0;
            if (cut) {
                s->dropped_cut++;
                if (ft_examples_len(ex, i) > s->cut_longest) s->cut_longest = ft_examples_len(ex, i);
            }
            continue;
        }
        if (len < ft_examples_len(ex, i)) s->truncated++;
        s->targets += tg;
        s->tokens += len;
        items[n_items].len = len;
        items[n_items].idx = i;
        n_items++;
    }
    s->examples_packed = n_items;

    pk_build b = {0};
    pk_buckets k = {0};
    ft_status st = FT_OK;
    int64_t row;
    if (opts->strategy == FT_PACK_NONE) {
        for (int64_t i = 0; i < n_items && st == FT_OK; i++) {
            st = pk_new_row(&b, &row);
            if (st == FT_OK) st = pk_place(&b, row, items[i].idx, items[i].len);
        }
    } else if (opts->strategy == FT_PACK_SEQUENTIAL) {
        int64_t free_slots = 0;
        for (int64_t i = 0; i < n_items && st == FT_OK; i++) {
            if (b.n_rows == 0 || items[i].len > free_slots) {
                st = pk_new_row(&b, &row);
                free_slots = T;
            }
            if (st == FT_OK) st = pk_place(&b, b.n_rows - 1, items[i].idx, items[i].len);
            free_slots -= items[i].len;
        }
    } else if (opts->strategy == FT_PACK_BFD) {
        qsort(items, (size_t)n_items, sizeof *items, cmp_item_desc);
        k.ncap = T + 1;
        k.nlo = (k.ncap + 63) / 64;
        k.nhi = (k.nlo + 63) / 64;
        k.lo = calloc((size_t)k.nlo, sizeof *k.lo);
        k.hi = calloc((size_t)k.nhi, sizeof *k.hi);
        k.first = malloc((size_t)k.ncap * sizeof *k.first);
        if (!k.lo || !k.hi || !k.first) st = FT_ERR(FT_E_OOM, "out of memory for packing buckets");
        for (int64_t c = 0; st == FT_OK && c < k.ncap; c++) k.first[c] = -1;
        for (int64_t i = 0; i < n_items && st == FT_OK; i++) {
            int64_t len = items[i].len, c = bk_find(&k, len);
            if (c < 0) {
                st = pk_new_row(&b, &row);
                c = T;
            } else {
                row = bk_pop(&k, c);
            }
            if (st == FT_OK) st = pk_place(&b, row, items[i].idx, len);
            if (st == FT_OK && c - len >= 2) st = bk_push(&k, c - len, row); /* < 2 free slots fit nothing */
        }
    } else {
        st = FT_ERR(FT_E_ARG, "unknown packing strategy %d", (int)opts->strategy);
    }
    free(items);
    free(k.lo);
    free(k.hi);
    free(k.first);
    free(k.below);

    /* Flatten the per-row lists. */
    if (st == FT_OK) st = ft_malloc((void **)&out->row_off, (size_t)(b.n_rows + 1) * sizeof *out->row_off, "pack rows");
    if (st == FT_OK) st = ft_malloc((void **)&out->piece_ex, (size_t)(b.n_pieces ? b.n_pieces : 1) * sizeof(int64_t), "pack pieces");
    if (st == FT_OK) st = ft_malloc((void **)&out->piece_len, (size_t)(b.n_pieces ? b.n_pieces : 1) * sizeof(int64_t), "pack pieces");
    if (st != FT_OK) {
        pk_build_free(&b);
        ft_pack_free(out);
        return st;
    }
    int64_t q = 0;
    for (int64_t r = 0; r < b.n_rows; r++) {
        out->row_off[r] = q;
        for (int64_t p = b.head[r]; p >= 0; p = b.next[p]) {
            out->piece_ex[q] = b.pex[p];
            out->piece_len[q] = b.plen[p];
            q++;
        }
    }
    out->row_off[b.n_rows] = q;
    out->n_rows = b.n_rows;
    out->n_pieces = q;
    out->seq_len = T;
    out->pad_id = opts->pad_id;
    pk_build_free(&b);
    s->rows = out->n_rows;
    s->slots = out->n_rows * T;
    s->fill = s->slots ? (double)s->tokens / (double)s->slots : 0.0;
    s->efficiency = s->slots ? (double)s->targets / (double)s->slots : 0.0;
    return FT_OK;
}

void ft_pack_row(const ft_pack *p, const ft_examples *ex, int64_t r, int32_t *tokens, int32_t *labels,
                 int32_t *positions, int32_t *doc_start) {
    const int64_t T = p->seq_len;
    int64_t pos = 0;
    for (int64_t q = p->row_off[r]; q < p->row_off[r + 1]; q++) {
        const int64_t base = ex->offsets[p->piece_ex[q]], L = p->piece_len[q];
        const int32_t *tk = ex->tokens + base;
        const uint8_t *mk = ex->mask + base;
        for (int64_t i = 0; i < L; i++) {
            tokens[pos + i] = tk[i];
            labels[pos + i] = (i + 1 < L && mk[i + 1]) ? tk[i + 1] : FT_IGNORE_INDEX;
            positions[pos + i] = (int32_t)i;
            doc_start[pos + i] = (int32_t)pos;
        }
        pos += L;
    }
    for (; pos < T; pos++) {
        tokens[pos] = p->pad_id;
        labels[pos] = FT_IGNORE_INDEX;
        positions[pos] = 0;
        doc_start[pos] = (int32_t)pos;
    }
}

uint64_t ft_pack_hash(const ft_pack *p) {
    XXH3_state_t *h = XXH3_createState();
    if (!h) return 0;
    XXH3_64bits_reset(h);
    int64_t head[3] = {p->seq_len, p->n_rows, p->n_pieces};
    XXH3_64bits_update(h, head, sizeof head);
    if (p->n_rows) XXH3_64bits_update(h, p->row_off, (size_t)(p->n_rows + 1) * sizeof *p->row_off);
    if (p->n_pieces) {
        XXH3_64bits_update(h, p->piece_ex, (size_t)p->n_pieces * sizeof *p->piece_ex);
        XXH3_64bits_update(h, p->piece_len, (size_t)p->n_pieces * sizeof *p->piece_len);
    }
    uint64_t v = XXH3_64bits_digest(h);
    XXH3_freeState(h);
    return v;
}

void ft_pack_free(ft_pack *p) {
    if (!p) return;
    free(p->row_off);
    free(p->piece_ex);
    free(p->piece_len);
    p->row_off = NULL;
    p->piece_ex = p->piece_len = NULL;
    p->n_rows = p->n_pieces = 0;
}

void ft_pack_stats_str(const ft_pack_stats *s, char *buf, int64_t buflen) {
    char cut[96] = "";
    if (s->dropped_cut > 0)
        snprintf(cut, sizeof cut, " (%lld of them had targets only past seq_len)", (long long)s->dropped_cut);
    snprintf(buf, (size_t)buflen,
             "%lld examples -> %lld rows, fill %.1f%%, efficiency %.1f%% (targets/slots), truncated %lld, "
             "dropped %lld too long + %lld without targets%s",
             (long long)s->examples_packed, (long long)s->rows, 100.0 * s->fill, 100.0 * s->efficiency,
             (long long)s->truncated, (long long)s->dropped_long, (long long)s->dropped_empty, cut);
}
