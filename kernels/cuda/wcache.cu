/* wcache.cu: a ring of dequantized (BF16) frozen weights, so a weight dequantized for a layer's
 * recomputed forward is reused by the same layer's backward instead of being dequantized again.
 *
 * Why a ring: a training step touches the linears of a layer in the order q k v o gate up down
 * (forward), then, per layer from the last, again q..down (recompute) and down..q (backward).
 * With room for one layer's linears, a ring that always writes at its head evicts exactly the
 * weights of the layer before: the forward misses everywhere (each weight is used once), the
 * recompute misses and refills, the backward hits on all seven. One step then dequantizes every
 * weight twice instead of three times. Every entry lives in one arena allocated once (no churn),
 * accounted like scratch, and sized by the caller (ft_backend_weight_cache; the trainer passes one
 * layer's linears, trainer/plan.c counts the same bytes).
 *
 * Entries are keyed by the weight's storage (NF4 codes or data pointer), element count and dtype. Frozen weights do not
 * change during training, but their memory can be freed and reused or rewritten: release, uploads,
 * copies and memsets into device memory, weight_set/weight_init and NF4 quantization drop every
 * entry whose key lies in the written range (ft_cuda_wcache_forget). All work is on the one
 * compute stream, so overwriting a region that an earlier product still reads is ordered. */
#include "kernels/cuda/check.h"
#include "kernels/cuda/cuda_impl.h"

static void ft_wc_drop(ft_cuda_wcache *c, int i) {
    c->e[i] = c->e[c->n - 1];
    c->n--;
}

const void *ft_cuda_wcache_key(const ft_weight *w) {
    return w->dtype == FT_NF4 ? (const void *)w->nf4.codes : w->data; /* NF4 weights have no data */
}

ft_status ft_cuda_wcache_set(ft_backend_cuda *b, int64_t bytes) {
    ft_cuda_wcache *c = &b->wcache;
    bytes = bytes > 0 ? ft_cuda_scratch_bytes(bytes) : 0;
    if (bytes == c->cap) return FT_OK;
    if (c->arena) {
        ft_cuda_raw_free(b, c->arena);
        ft_cuda_account(b, -c->cap);
    }
    c->arena = NULL;
    c->cap = c->head = 0;
    c->n = 0;
    if (bytes == 0) return FT_OK;
    void *p = NULL;
    ft_status st = ft_cuda_raw_alloc(b, &p, bytes);
    if (st != FT_OK)
        return ft_error_wrap(st, "cuda: the cache of dequantized weights (%.2f GiB, one layer's linears; "
                             "dequant_cache: false in the recipe turns it off)", (double)bytes / (1 << 30));
    ft_cuda_account(b, bytes);
    c->arena = (char *)p;
    c->cap = bytes;
    return FT_OK;
}

const void *ft_cuda_wcache_find(ft_backend_cuda *b, const ft_weight *w) {
    ft_cuda_wcache *c = &b->wcache;
    const int64_t n = ft_weight_numel(w);
    const void *key = ft_cuda_wcache_key(w);
    if (!key) return NULL;
    for (int i = 0; i < c->n; i++)
        if (c->e[i].key == key && c->e[i].numel == n && c->e[i].dtype == (int)w->dtype)
            return c->arena + c->e[i].off;
    return NULL;
}

void *ft_cuda_wcache_put(ft_backend_cuda *b, const ft_weight *w, int64_t bytes) {
    ft_cuda_wcache *c = &b->wcache;
    bytes = (bytes + 255) / 256 * 256; /* keeps every entry 256-byte aligned for cuBLASLt */
    if (!c->arena || bytes > c->cap || !ft_cuda_wcache_key(w)) return NULL;
    if (c->head + bytes > c->cap) c->head = 0;
    const int64_t lo = c->head, hi = c->head + bytes;
    for (int i = c->n - 1; i >= 0; i--) /* evict what the new entry overwrites */
        if (c->e[i].off < hi && c->e[i].off + c->e[i].bytes > lo) ft_wc_drop(c, i);
    if (c->n == FT_WCACHE_ENTRIES) ft_wc_drop(c, 0);
    ft_cuda_wcache_entry *e = &c->e[c->n++];
    e->key = ft_cuda_wcache_key(w);
    e->numel = ft_weight_numel(w);
    e->dtype = (int)w->dtype;
    e->off = lo;
    e->bytes = bytes;
    c->head = hi;
    return c->arena + lo;
}

void ft_cuda_wcache_forget(ft_backend_cuda *b, const void *ptr, int64_t bytes) {
    ft_cuda_wcache *c = &b->wcache;
    const char *lo = (const char *)ptr, *hi = lo + (bytes > 0 ? bytes : 1);
    for (int i = c->n - 1; i >= 0; i--) {
        const char *k = (const char *)c->e[i].key;
        if (k >= lo && k < hi) ft_wc_drop(c, i);
    }
}
