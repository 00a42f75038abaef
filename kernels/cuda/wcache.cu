/* wcache.cu: a ring of dequantized (BF16) frozen weights, so a weight dequantized for a layer's
 * recomputed forward is reused by the same layer's backward instead of being dequantized again,
 * and so the next weight of a layer can be dequantized on a second stream while the current
 * weight's product runs.
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
 * Prefetch (ft_backend_weight_prefetch): the model names the weight it will use next; its
 * dequantization is enqueued on the cache's own stream, so the memory-bound dequantization overlaps
 * the compute-bound product on the main stream. Ordering is by events per entry: a writer of a
 * ring region first waits for the region's previous contents to be written (`ready`, when the
 * prefetch stream wrote them) and read (`use`, recorded on the main stream after each product that
 * read the entry); the main stream waits for `ready` before the first product that reads a
 * prefetched entry. FT_CUDA_PREFETCH=0 turns prefetching off (everything on the main stream).
 *
 * Layers the backward does not recompute (training.keep_layers) fill the ring in the backward's order
 * instead, each weight as the same module of the layer after frees its place (trainer/model.c
 * ft_bwd_next). tests/bench/wcache_ring_sim.py replays the model's order against this ring; the
 * counts (ft_backend_dequant_counts: prefetched, waited for, on the compute stream, reused) let
 * `ftune bench` and tests/gpu/emu/ring.sh check that the two agree.
 *
 * Weights quantized either way are cached alike: NF4 and the ggml block types of a GGUF base
 * (ggml_dequant.cu) both become BF16 copies of numel * 2 bytes, whatever their stored size, so the
 * ring's room (ft_weight_cache_bytes: numel * 2 per linear) and each entry's size depend on the
 * element count only; the stored bytes matter only to ft_cuda_wcache_forget's ranges, which take
 * the allocation's own size (release) or the written range (uploads, copies).
 *
 * Entries are keyed by the weight's storage (NF4 codes or data pointer), element count and dtype.
 * Frozen weights do not change during training, but their memory can be freed and reused or
 * rewritten: release, uploads, copies and memsets into device memory, weight_set/weight_init and
 * NF4 quantization drop every entry whose key lies in the written range (ft_cuda_wcache_forget),
 * after making the main stream wait for any prefetch still reading it. */
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/check.h"
#include "kernels/cuda/cuda_impl.h"

const void *ft_cuda_wcache_key(const ft_weight *w) {
    return w->dtype == FT_NF4 ? (const void *)w->nf4.codes : w->data; /* NF4 weights have no data */
}

/* Drops entry i; stream s (which will write over it, or free what it was read from) first waits
 * for its pending writer and, when s is not the main stream, for its last reader. */
static ft_status ft_wc_evict(ft_backend_cuda *b, int i, cudaStream_t s) {
    ft_cuda_wcache *c = &b->wcache;
    ft_cuda_wcache_entry *e = &c->e[i];
    if (e->ready_rec) FT_CUDA_TRY(cudaStreamWaitEvent(s, c->ready[i], 0));
    if (e->used && s != b->stream) FT_CUDA_TRY(cudaStreamWaitEvent(s, c->use[i], 0));
    /* An unread prefetch dropped by the prefetch stream: its kernel may still be writing the region,
     * and the part the new entry does not cover can go to a main-stream fill that finds no entry to
     * wait for. That fill waits for this event (recorded after the kernel; a later record of the
     * same slot is later still on that stream). */
    if (e->ready_rec && s != b->stream) c->orphan = 1 + i;
    e->valid = e->ready_rec = e->used = 0;
    return FT_OK;
}

/* Waits for the prefetch stream and releases the arena, its stream and events. */
void ft_cuda_wcache_free(ft_backend_cuda *b) {
    ft_cuda_wcache *c = &b->wcache;
    if (c->ws) (void)cudaStreamSynchronize(c->ws); /* no prefetch may still write the arena */
    if (c->arena) {
        ft_cuda_raw_free(b, c->arena);
        ft_cuda_account(b, -c->cap);
    }
    for (int i = 0; i < FT_WCACHE_ENTRIES; i++) {
        if (c->ready[i]) (void)cudaEventDestroy(c->ready[i]);
        if (c->use[i]) (void)cudaEventDestroy(c->use[i]);
    }
    if (c->main_mark) (void)cudaEventDestroy(c->main_mark);
    if (c->ws) (void)cudaStreamDestroy(c->ws);
    memset(c, 0, sizeof *c);
    c->cur = -1;
}

ft_status ft_cuda_wcache_set(ft_backend_cuda *b, int64_t bytes) {
    ft_cuda_wcache *c = &b->wcache;
    bytes = bytes > 0 ? ft_cuda_scratch_bytes(bytes) : 0;
    if (bytes == c->cap) return FT_OK;
    ft_cuda_wcache_free(b);
    if (bytes == 0) return FT_OK;
    void *p = NULL;
    ft_status st = ft_cuda_raw_alloc(b, &p, bytes);
    if (st != FT_OK)
        return ft_error_wrap(st, "cuda: the cache of dequantized weights (%.2f GiB, one layer's linears; "
                             "FT_CUDA_WCACHE=0 turns it off)", (double)bytes / (1 << 30));
    ft_cuda_account(b, bytes);
    c->arena = (char *)p;
    c->cap = bytes;
    const char *pf = getenv("FT_CUDA_PREFETCH");
    if (!(pf && strcmp(pf, "0") == 0)) {
        /* all or nothing: with the stream but not every event, a prefetch would record a NULL event */
        FT_CUDA_GOTO(st, cudaStreamCreateWithFlags(&c->ws, cudaStreamNonBlocking), fail);
        FT_CUDA_GOTO(st, cudaEventCreateWithFlags(&c->main_mark, cudaEventDisableTiming), fail);
        for (int i = 0; i < FT_WCACHE_ENTRIES; i++) {
            FT_CUDA_GOTO(st, cudaEventCreateWithFlags(&c->ready[i], cudaEventDisableTiming), fail);
            FT_CUDA_GOTO(st, cudaEventCreateWithFlags(&c->use[i], cudaEventDisableTiming), fail);
        }
    }
    return FT_OK;
fail:
    ft_cuda_wcache_free(b); /* the arena, the stream and the events made so far */
    return st;
}

static int ft_wc_find(const ft_cuda_wcache *c, const ft_weight *w) {
    const void *key = ft_cuda_wcache_key(w);
    const int64_t n = ft_weight_numel(w);
    if (!c->arena || !key) return -1;
    for (int i = 0; i < FT_WCACHE_ENTRIES; i++)
        if (c->e[i].valid && c->e[i].key == key && c->e[i].numel == n && c->e[i].dtype == (int)w->dtype) return i;
    return -1;
}

/* Room for w's BF16 copy at the ring's head, for a writer on stream s: evicts what the region
 * overlaps (s waits as ft_wc_evict says). *slot = -1 when the cache is off or too small. */
static ft_status ft_wc_put(ft_backend_cuda *b, const ft_weight *w, cudaStream_t s, int *slot) {
    ft_cuda_wcache *c = &b->wcache;
    const int64_t bytes = (2 * ft_weight_numel(w) + 255) / 256 * 256; /* entries stay 256-byte aligned */
    *slot = -1;
    if (!c->arena || bytes > c->cap || !ft_cuda_wcache_key(w)) return FT_OK;
    if (c->head + bytes > c->cap) c->head = 0;
    if (s == b->stream && c->orphan) {
        FT_CUDA_TRY(cudaStreamWaitEvent(s, c->ready[c->orphan - 1], 0));
        c->orphan = 0;
    }
    const int64_t lo = c->head, hi = c->head + bytes;
    int free_i = -1;
    for (int i = 0; i < FT_WCACHE_ENTRIES; i++) {
        ft_cuda_wcache_entry *e = &c->e[i];
        if (e->valid && e->off < hi && e->off + e->bytes > lo) FT_TRY(ft_wc_evict(b, i, s));
        if (!e->valid && free_i < 0) free_i = i;
    }
    if (free_i < 0) { /* every slot holds a small weight: give up the first */
        FT_TRY(ft_wc_evict(b, 0, s));
        free_i = 0;
    }
    ft_cuda_wcache_entry *e = &c->e[free_i];
    e->key = ft_cuda_wcache_key(w);
    e->numel = ft_weight_numel(w);
    e->dtype = (int)w->dtype;
    e->off = lo;
    e->bytes = bytes;
    e->valid = 1;
    c->head = hi;
    *slot = free_i;
    return FT_OK;
}

ft_status ft_cuda_wcache_get(ft_backend_cuda *b, const ft_weight *w, void **out, int *filled) {
    ft_cuda_wcache *c = &b->wcache;
    *out = NULL;
    *filled = 0;
    int i = ft_wc_find(c, w);
    if (i >= 0) {
        ft_cuda_wcache_entry *e = &c->e[i];
        if (e->ready_rec) { /* prefetched: the main stream waits for that dequantization once */
            FT_CUDA_TRY(cudaStreamWaitEvent(b->stream, c->ready[i], 0));
            e->ready_rec = 0;
            c->n.waited += e->pf_mark == c->products; /* no product ran meanwhile to hide it */
        } else {
            c->n.reused++;
        }
        *filled = 1;
    } else {
        FT_TRY(ft_wc_put(b, w, b->stream, &i));
        if (i < 0) return FT_OK;
    }
    c->cur = i;
    *out = c->arena + c->e[i].off;
    return FT_OK;
}

ft_status ft_cuda_wcache_used(ft_backend_cuda *b) {
    ft_cuda_wcache *c = &b->wcache;
    const int i = c->cur;
    c->cur = -1;
    if (i < 0 || !c->ws || !c->e[i].valid) return FT_OK; /* nothing else ever waits for the main stream */
    FT_CUDA_TRY(cudaEventRecord(c->use[i], b->stream));
    c->e[i].used = 1;
    c->products++;
    return FT_OK;
}

ft_status ft_cuda_wcache_prefetch(ft_backend_cuda *b, const ft_weight *w) {
    ft_cuda_wcache *c = &b->wcache;
    const int quantized = w->dtype == FT_NF4 || ft_dtype_is_ggml(w->dtype); /* float weights: no copy worth it */
    if (!c->ws || !quantized || ft_weight_numel(w) == 0 || ft_wc_find(c, w) >= 0) return FT_OK;
    FT_TRY(ft_cuda_load_settle(&b->base)); /* its codes and offset (or blocks) are complete */
    /* the codes were written on the main stream (loading, quantization): the prefetch stream
     * reads them only after everything enqueued there so far */
    FT_CUDA_TRY(cudaEventRecord(c->main_mark, b->stream));
    FT_CUDA_TRY(cudaStreamWaitEvent(c->ws, c->main_mark, 0));
    int i = -1;
    FT_TRY(ft_wc_put(b, w, c->ws, &i));
    if (i < 0) return FT_OK;
    ft_status st = ft_cuda_frozen_dequantize_on(b, c->arena + c->e[i].off, w, c->ws);
    if (st == FT_OK) st = ft_cuda_status(cudaEventRecord(c->ready[i], c->ws), "cudaEventRecord(ready)", __func__,
                                         __FILE__, __LINE__);
    if (st != FT_OK) { /* the entry was never written (or its end is not marked): it must not be hit */
        (void)cudaStreamSynchronize(c->ws);
        c->e[i].valid = 0;
        return st;
    }
    c->e[i].ready_rec = 1;
    c->e[i].pf_mark = c->products;
    c->n.prefetched++;
    return FT_OK;
}

ft_status ft_cuda_wcache_forget(ft_backend_cuda *b, const void *ptr, int64_t bytes) {
    ft_cuda_wcache *c = &b->wcache;
    const char *lo = (const char *)ptr, *hi = lo + (bytes > 0 ? bytes : 1);
    for (int i = 0; i < FT_WCACHE_ENTRIES; i++) {
        const char *k = (const char *)c->e[i].key;
        if (c->e[i].valid && k >= lo && k < hi) FT_TRY(ft_wc_evict(b, i, b->stream));
    }
    return FT_OK;
}
