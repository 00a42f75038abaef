/* backend_cuda.cu: the CUDA backend: device selection, the stream, device memory with byte
 * accounting, copies, synchronization with the device error flags, scratch buffers, the one
 * library-error converter of kernels/cuda/check.h, and the op table pointing at the kernels of kernels/cuda.
 *
 * Memory: stream-ordered allocation (cudaMallocAsync from the device's default pool, whose release
 * threshold is raised so freed memory stays cached for the next step) where the device supports
 * memory pools, else cudaMalloc; FT_CUDA_MALLOC=sync forces cudaMalloc. Everything runs on one
 * non-blocking stream, so allocations, copies and kernels are ordered without events, and a step
 * could later be captured as a CUDA graph. Downloads synchronize the stream (the caller reads the
 * bytes next); uploads from pageable host memory return once the driver has consumed the source.
 *
 * Beside the compute stream (cuda_impl.h): a side stream for overlapping copies, a pinned upload
 * ring, managed memory for paged allocations, pinned host memory, and phase-timer events.
 *
 * Failure policy: no call here exits. A missing driver or device is FT_E_UNSUPPORTED with the
 * runtime's reason (the CPU backend remains usable); library errors are FT_E_CUDA via check.h. */
#include "kernels/cuda/check.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "kernels/log.h"
#include "kernels/mem.h"
}

#ifndef FT_CUDA_ARCHS /* set by kernels/CMakeLists.txt */
#define FT_CUDA_ARCHS "?"
#endif

enum { FT_CUDA_ALIGN = 256 };
/* Free device memory a discrete GPU keeps beyond a managed allocation (ft_cuda_alloc_paged). */
static const int64_t FT_CUDA_MANAGED_MARGIN = (int64_t)512 << 20;
static const size_t FT_LT_WORKSPACE = (size_t)32 << 20; /* cuBLASLt on Hopper wants 32 MiB */

ft_status ft_cuda_fail(const char *lib, int code, const char *name, const char *text, const char *stmt,
                       const char *func, const char *file, int line) {
    int dev = -1;
    (void)cudaGetDevice(&dev);
    const char *base = strrchr(file, '/');
    return ft_error_set(FT_E_CUDA, file, line, "%s error %d %s (%s) in %s [%s, %s:%d, device %d]", lib, code,
                        name ? name : "?", text ? text : "?", stmt, func, base ? base + 1 : file, line, dev);
}

/* ---- allocation table: pointer -> bytes (open addressing, linear probing) ------------------- */

static uint64_t ft_ptr_hash(const void *p) {
    uint64_t z = (uint64_t)(uintptr_t)p;
    z ^= z >> 33;
    z *= 0xff51afd7ed558ccdull;
    z ^= z >> 33;
    return z;
}

static ft_status ft_alloc_map_grow(ft_backend_cuda *b) {
    const int64_t cap = b->alloc_cap ? 2 * b->alloc_cap : 1024;
    ft_cuda_alloc_entry *t = NULL;
    FT_TRY(ft_calloc((void **)&t, (size_t)cap * sizeof *t, "cuda allocation table"));
    for (int64_t i = 0; i < b->alloc_cap; i++) {
        if (!b->allocs[i].ptr) continue;
        uint64_t h = ft_ptr_hash(b->allocs[i].ptr) & (uint64_t)(cap - 1);
        while (t[h].ptr) h = (h + 1) & (uint64_t)(cap - 1);
        t[h] = b->allocs[i];
    }
    ft_free(b->allocs);
    b->allocs = t;
    b->alloc_cap = cap;
    return FT_OK;
}

static ft_status ft_alloc_map_put(ft_backend_cuda *b, void *p, int64_t bytes, int kind) {
    if (2 * (b->alloc_used + 1) > b->alloc_cap) FT_TRY(ft_alloc_map_grow(b));
    const uint64_t mask = (uint64_t)(b->alloc_cap - 1);
    uint64_t h = ft_ptr_hash(p) & mask;
    while (b->allocs[h].ptr) h = (h + 1) & mask;
    b->allocs[h].ptr = p;
    b->allocs[h].bytes = bytes;
    b->allocs[h].kind = kind;
    b->alloc_used++;
    return FT_OK;
}

/* The entry of p, or NULL. */
static const ft_cuda_alloc_entry *ft_alloc_map_find(const ft_backend_cuda *b, const void *p) {
    if (!b->alloc_cap) return NULL;
    const uint64_t mask = (uint64_t)(b->alloc_cap - 1);
    uint64_t h = ft_ptr_hash(p) & mask;
    while (b->allocs[h].ptr && b->allocs[h].ptr != p) h = (h + 1) & mask;
    return b->allocs[h].ptr ? &b->allocs[h] : NULL;
}

/* Removes p and returns its size (and *kind), or -1 if p was not allocated here. */
static int64_t ft_alloc_map_take(ft_backend_cuda *b, void *p, int *kind) {
    if (!b->alloc_cap) return -1;
    const uint64_t mask = (uint64_t)(b->alloc_cap - 1);
    uint64_t h = ft_ptr_hash(p) & mask;
    while (b->allocs[h].ptr && b->allocs[h].ptr != p) h = (h + 1) & mask;
    if (!b->allocs[h].ptr) return -1;
    const int64_t bytes = b->allocs[h].bytes;
    *kind = b->allocs[h].kind;
    /* backward-shift deletion keeps every probe chain unbroken */
    uint64_t i = h, j = h;
    for (;;) {
        j = (j + 1) & mask;
        if (!b->allocs[j].ptr) break;
        const uint64_t home = ft_ptr_hash(b->allocs[j].ptr) & mask;
        if (((j - home) & mask) >= ((j - i) & mask)) {
            b->allocs[i] = b->allocs[j];
            i = j;
        }
    }
    b->allocs[i].ptr = NULL;
    b->allocs[i].bytes = 0;
    b->allocs[i].kind = 0;
    b->alloc_used--;
    return bytes;
}

/* ---- device memory ----------------------------------------------------------------------------- */


/* Raw device allocation (not accounted). Rounded up to 256 bytes so every buffer starts aligned
 * for 16-byte vector access and for cuBLASLt's preferred alignment. */
ft_status ft_cuda_raw_alloc(ft_backend_cuda *b, void **ptr, int64_t bytes) {
    const size_t sz = (size_t)((bytes + FT_CUDA_ALIGN - 1) / FT_CUDA_ALIGN * FT_CUDA_ALIGN) + (bytes == 0);
    void *p = NULL;
    cudaError_t e = b->use_pool ? cudaMallocAsync(&p, sz, b->stream) : cudaMalloc(&p, sz);
    if (e == cudaErrorMemoryAllocation && b->use_pool) {
        /* The pool keeps what was freed (release threshold: all) in blocks of earlier sizes; a
         * larger request can fail while those sit unused. Once: give them back, then ask again. */
        cudaMemPool_t pool;
        (void)cudaGetLastError();
        if (cudaStreamSynchronize(b->stream) == cudaSuccess && cudaDeviceGetDefaultMemPool(&pool, b->device) == cudaSuccess &&
            cudaMemPoolTrimTo(pool, 0) == cudaSuccess)
            e = cudaMallocAsync(&p, sz, b->stream);
    }
    if (e == cudaErrorMemoryAllocation) {
        (void)cudaGetLastError();
        size_t fr = 0, tot = 0;
        (void)cudaMemGetInfo(&fr, &tot);
        return FT_ERR(FT_E_OOM, "out of GPU memory: %.1f MiB requested, %.1f of %.1f MiB free on device %d",
                      (double)bytes / (1 << 20), (double)fr / (1 << 20), (double)tot / (1 << 20), b->device);
    }
    FT_CUDA_TRY(e);
    if ((uintptr_t)p % FT_CUDA_ALIGN != 0) { /* never seen; the kernels' vector paths rely on it */
        (void)cudaFreeAsync(p, b->stream);
        return FT_ERR(FT_E_INTERNAL, "device allocation %p is not %d-byte aligned", p, (int)FT_CUDA_ALIGN);
    }
    *ptr = p;
    return FT_OK;
}

void ft_cuda_raw_free(ft_backend_cuda *b, void *p) {
    if (!p) return;
    /* Stream-ordered free: kernels already enqueued that use p finish first. Errors here cannot be
     * reported (release returns void) and would resurface at the next checked call. */
    if (b->use_pool)
        (void)cudaFreeAsync(p, b->stream);
    else
        (void)cudaFree(p);
}

void ft_cuda_account(ft_backend_cuda *b, int64_t bytes) {
    b->base.bytes_in_use += bytes;
    if (b->base.bytes_in_use > b->base.bytes_peak) b->base.bytes_peak = b->base.bytes_in_use;
}

static ft_status ft_cuda_alloc(ft_backend *be, void **ptr, int64_t bytes) {
    ft_backend_cuda *b = ft_cu(be);
    void *p = NULL;
    FT_TRY(ft_cuda_raw_alloc(b, &p, bytes));
    ft_status st = ft_alloc_map_put(b, p, bytes, FT_CUDA_MEM_DEVICE);
    if (st != FT_OK) {
        ft_cuda_raw_free(b, p);
        return st;
    }
    *ptr = p;
    return FT_OK;
}

static void ft_cuda_release(ft_backend *be, void *ptr) {
    ft_backend_cuda *b = ft_cu(be);
    int kind = 0;
    if (b->loader) ft_cuda_load_forget(b, ptr);
    const int64_t bytes = ft_alloc_map_take(b, ptr, &kind);
    (void)ft_cuda_wcache_forget(b, ptr, bytes); /* only waits are enqueued; an error resurfaces at the next call */
    FT_ASSERT(bytes >= 0 && kind != FT_CUDA_MEM_HOST &&
              "ft_backend_release of a pointer this CUDA backend did not allocate as backend memory");
    if (kind == FT_CUDA_MEM_MANAGED) {
        ft_backend_account_release_paged(be, bytes);
        (void)cudaStreamSynchronize(b->stream); /* cudaFree of managed memory is not stream-ordered */
        (void)cudaFree(ptr);
        return;
    }
    ft_backend_account_release(be, bytes);
    ft_cuda_raw_free(b, ptr);
}

/* Managed memory that prefers the device and is mapped there: it pages to the host under memory
 * pressure instead of failing, and on an integrated GPU it is the only copy. Without concurrent
 * managed access (or with FT_CUDA_PAGED=0) it is plain device memory. */
static ft_status ft_cuda_alloc_paged(ft_backend *be, void **ptr, int64_t bytes) {
    ft_backend_cuda *b = ft_cu(be);
    if (!b->managed) return ft_cuda_alloc(be, ptr, bytes);
    const size_t sz = (size_t)((bytes + 255) / 256 * 256) + (bytes == 0);
    if (!b->integrated) {
        /* On a discrete GPU, never ask for more managed memory than the card has free: past that,
         * paging under oversubscription can stall the whole GPU, not only this process (the
         * device notes, .library/device/README.md). Beyond that point plain device memory fails
         * cleanly, with the plan's explanation. */
        size_t fr = 0, tot = 0;
        FT_CUDA_TRY(cudaMemGetInfo(&fr, &tot));
        if ((int64_t)sz + FT_CUDA_MANAGED_MARGIN > (int64_t)fr) return ft_cuda_alloc(be, ptr, bytes);
    }
    void *p = NULL;
    cudaError_t e = cudaMallocManaged(&p, sz, cudaMemAttachGlobal);
    if (e == cudaErrorMemoryAllocation) {
        (void)cudaGetLastError();
        return FT_ERR(FT_E_OOM, "out of managed memory: %.1f MiB requested", (double)bytes / (1 << 20));
    }
    cudaMemLocation dev;
    dev.type = cudaMemLocationTypeDevice;
    dev.id = b->device;
    if (e == cudaSuccess) e = cudaMemAdvise(p, sz, cudaMemAdviseSetPreferredLocation, dev);
    if (e == cudaSuccess) e = cudaMemAdvise(p, sz, cudaMemAdviseSetAccessedBy, dev);
    if (e == cudaSuccess) e = cudaMemPrefetchAsync(p, sz, dev, 0, b->stream);
    if (e != cudaSuccess) { /* managed memory refused (a VM, a driver setting): plain device memory from now on */
        (void)cudaGetLastError();
        if (p) (void)cudaFree(p);
        ft_warn("cuda: managed memory unavailable (%s): optimizer state and LoRA weights go to device memory",
                cudaGetErrorString(e));
        b->managed = 0;
        return ft_cuda_alloc(be, ptr, bytes);
    }
    ft_status st = ft_alloc_map_put(b, p, bytes, FT_CUDA_MEM_MANAGED);
    if (st != FT_OK) {
        (void)cudaFree(p);
        return st;
    }
    b->base.bytes_paged += bytes;
    *ptr = p;
    return FT_OK;
}

static ft_status ft_cuda_prefetch(ft_backend *be, const void *ptr, int64_t bytes) {
    ft_backend_cuda *b = ft_cu(be);
    const ft_cuda_alloc_entry *e = ft_alloc_map_find(b, ptr);
    if (!e || e->kind != FT_CUDA_MEM_MANAGED) return FT_OK;
    cudaMemLocation dev;
    dev.type = cudaMemLocationTypeDevice;
    dev.id = b->device;
    FT_CUDA_TRY(cudaMemPrefetchAsync(ptr, (size_t)(bytes < e->bytes ? bytes : e->bytes), dev, 0, b->stream));
    return FT_OK;
}

static ft_status ft_cuda_alloc_host(ft_backend *be, void **ptr, int64_t bytes) {
    ft_backend_cuda *b = ft_cu(be);
    void *p = NULL;
    cudaError_t e = cudaHostAlloc(&p, (size_t)(bytes > 0 ? bytes : 1), cudaHostAllocDefault);
    if (e == cudaErrorMemoryAllocation) {
        (void)cudaGetLastError();
        return FT_ERR(FT_E_OOM, "out of pinned host memory: %.1f MiB requested", (double)bytes / (1 << 20));
    }
    FT_CUDA_TRY(e);
    ft_status st = ft_alloc_map_put(b, p, bytes, FT_CUDA_MEM_HOST);
    if (st != FT_OK) {
        (void)cudaFreeHost(p);
        return st;
    }
    *ptr = p;
    return FT_OK;
}

static int64_t ft_cuda_release_host(ft_backend *be, void *ptr) {
    ft_backend_cuda *b = ft_cu(be);
    int kind = 0;
    const int64_t bytes = ft_alloc_map_take(b, ptr, &kind);
    FT_ASSERT(bytes >= 0 && kind == FT_CUDA_MEM_HOST && "ft_backend_release_host of a pointer not from alloc_host");
    (void)cudaStreamSynchronize(b->side); /* copies from or to it may still run */
    (void)cudaStreamSynchronize(b->stream);
    (void)cudaFreeHost(ptr);
    return bytes;
}

ft_status ft_cuda_scratch_get(ft_backend *be, int slot, int64_t bytes, void **out) {
    ft_backend_cuda *b = ft_cu(be);
    ft_cuda_scratch *s = &b->scratch[slot];
    if (s->bytes < bytes) {
        /* grown to the request rounded up (kernels/backend.h), the size `ftune plan` counts */
        int64_t want = ft_cuda_scratch_bytes(bytes);
        void *p = NULL;
        if (s->ptr) {
            ft_cuda_raw_free(b, s->ptr);
            be->bytes_in_use -= s->bytes;
            s->ptr = NULL;
            s->bytes = 0;
        }
        ft_status st = ft_cuda_raw_alloc(b, &p, want);
        if (st != FT_OK) {
            static const char *const names[FT_SCR_COUNT] = {
                "workspace (bf16 copy of a frozen weight)", "workspace (bf16 bias)", "workspace (bf16 LoRA A)",
                "workspace (bf16 LoRA B)", "workspace (LoRA dt)", "workspace (reduction partials)",
                "workspace (NF4 absmax)", "workspace (attention backward)", "workspace (cuDNN attention)",
                "workspace (LoRA dropout partials)", "workspace (LoRA dropout input)",
                "workspace (LoRA dropout input gradient)"};
            return ft_backend_alloc_failed(be, st, want, names[slot]);
        }
        s->ptr = p;
        s->bytes = want;
        ft_cuda_account(b, want);
    }
    *out = s->ptr;
    return FT_OK;
}

/* Through the pinned upload ring: each piece is copied into the next slot (after that slot's
 * previous DMA has finished, which only waits when the device is FT_UPLOAD_SLOTS pieces behind)
 * and its DMA is enqueued on the compute stream. Returns once src has been read, without waiting
 * for the device: a step's uploads (batch, optimizer scalars) never synchronize. */
static ft_status ft_cuda_upload(ft_backend *be, void *dst, const void *src, int64_t bytes) {
    ft_backend_cuda *b = ft_cu(be);
    FT_TRY(ft_cuda_wcache_forget(b, dst, bytes));
    for (int64_t off = 0; off < bytes; off += FT_UPLOAD_SLOT_BYTES) {
        const int64_t n = bytes - off < FT_UPLOAD_SLOT_BYTES ? bytes - off : FT_UPLOAD_SLOT_BYTES;
        const int s = (int)(b->up_next++ % FT_UPLOAD_SLOTS);
        char *slot = b->up_host + (int64_t)s * FT_UPLOAD_SLOT_BYTES;
        if (b->up_used[s]) FT_CUDA_TRY(cudaEventSynchronize(b->up_done[s]));
        memcpy(slot, (const char *)src + off, (size_t)n);
        FT_CUDA_TRY(cudaMemcpyAsync((char *)dst + off, slot, (size_t)n, cudaMemcpyHostToDevice, b->stream));
        FT_CUDA_TRY(cudaEventRecord(b->up_done[s], b->stream));
        b->up_used[s] = 1;
    }
    return FT_OK;
}

/* Side-stream copy: starts after everything enqueued so far on the compute stream; the compute
 * stream waits for it only in ft_cuda_copy_wait. Reusing a slot's events for a newer ticket is safe:
 * the side stream is in order, so waiting for the newer copy also waits for the older one. */
static ft_status ft_cuda_copy_async(ft_backend *be, void *dst, const void *src, int64_t bytes, int64_t *ticket) {
    ft_backend_cuda *b = ft_cu(be);
    const int64_t t = ++b->side_next;
    const int s = (int)(t % FT_SIDE_EVENTS);
    FT_TRY(ft_cuda_wcache_forget(b, dst, bytes));
    FT_CUDA_TRY(cudaEventRecord(b->side_pre[s], b->stream));
    FT_CUDA_TRY(cudaStreamWaitEvent(b->side, b->side_pre[s], 0));
    FT_CUDA_TRY(cudaMemcpyAsync(dst, src, (size_t)bytes, cudaMemcpyDefault, b->side));
    FT_CUDA_TRY(cudaEventRecord(b->side_done[s], b->side));
    *ticket = t;
    return FT_OK;
}

static ft_status ft_cuda_copy_wait(ft_backend *be, int64_t ticket) {
    ft_backend_cuda *b = ft_cu(be);
    if (ticket <= 0 || ticket > b->side_next) return FT_OK;
    FT_CUDA_TRY(cudaStreamWaitEvent(b->stream, b->side_done[ticket % FT_SIDE_EVENTS], 0));
    return FT_OK;
}

static ft_status ft_cuda_mem_info(ft_backend *be, int64_t *free_bytes, int64_t *total_bytes) {
    size_t fr = 0, tot = 0;
    (void)be;
    FT_CUDA_TRY(cudaMemGetInfo(&fr, &tot));
    *free_bytes = (int64_t)fr;
    *total_bytes = (int64_t)tot;
    return FT_OK;
}

/* Phase timers: one event per mark, recorded on the compute stream (never a synchronization). */
static ft_status ft_cuda_timer_mark(ft_backend *be, int64_t idx) {
    ft_backend_cuda *b = ft_cu(be);
    if (idx >= b->timer_cap) {
        int64_t cap = b->timer_cap ? 2 * b->timer_cap : 4096;
        while (cap <= idx) cap *= 2;
        cudaEvent_t *ev = (cudaEvent_t *)realloc(b->timer_ev, (size_t)cap * sizeof *ev);
        if (!ev) return FT_ERR(FT_E_OOM, "phase timer events");
        b->timer_ev = ev;
        for (int64_t i = b->timer_cap; i < cap; i++) {
            cudaError_t e = cudaEventCreate(&ev[i]);
            if (e != cudaSuccess) {
                b->timer_cap = i;
                return ft_cuda_status(e, "cudaEventCreate", __func__, __FILE__, __LINE__);
            }
        }
        b->timer_cap = cap;
    }
    FT_CUDA_TRY(cudaEventRecord(b->timer_ev[idx], b->stream));
    return FT_OK;
}

static ft_status ft_cuda_timer_read(ft_backend *be, int64_t n, double *ms) {
    ft_backend_cuda *b = ft_cu(be);
    if (n < 2) return FT_OK;
    FT_CUDA_TRY(cudaEventSynchronize(b->timer_ev[n - 1]));
    for (int64_t i = 0; i + 1 < n; i++) {
        float f = 0.0f;
        FT_CUDA_TRY(cudaEventElapsedTime(&f, b->timer_ev[i], b->timer_ev[i + 1]));
        ms[i] = (double)f;
    }
    return FT_OK;
}

static ft_status ft_cuda_download(ft_backend *be, void *dst, const void *src, int64_t bytes) {
    FT_CUDA_TRY(cudaMemcpyAsync(dst, src, (size_t)bytes, cudaMemcpyDeviceToHost, ft_cu_stream(be)));
    FT_CUDA_TRY(cudaStreamSynchronize(ft_cu_stream(be)));
    return FT_OK;
}

static ft_status ft_cuda_copy(ft_backend *be, void *dst, const void *src, int64_t bytes) {
    /* Default: device, managed or pinned host memory on either side (unified addressing) */
    FT_TRY(ft_cuda_wcache_forget(ft_cu(be), dst, bytes));
    FT_CUDA_TRY(cudaMemcpyAsync(dst, src, (size_t)bytes, cudaMemcpyDefault, ft_cu_stream(be)));
    return FT_OK;
}

static ft_status ft_cuda_memset(ft_backend *be, void *dst, int value, int64_t bytes) {
    FT_TRY(ft_cuda_wcache_forget(ft_cu(be), dst, bytes));
    FT_CUDA_TRY(cudaMemsetAsync(dst, value, (size_t)bytes, ft_cu_stream(be)));
    return FT_OK;
}

/* Waits for the stream, then reports (and clears) the error flags kernels raised since the last
 * sync: bad indices are the caller's broken invariants (FT_E_INTERNAL), as on the CPU backend. */
static ft_status ft_cuda_sync(ft_backend *be) {
    ft_backend_cuda *b = ft_cu(be);
    unsigned flags = 0;
    FT_TRY(ft_cuda_load_settle(be)); /* a weight-streaming session ends here */
    FT_CUDA_TRY(cudaStreamSynchronize(b->stream));
    FT_CUDA_TRY(cudaMemcpyAsync(&flags, b->err, sizeof flags, cudaMemcpyDeviceToHost, b->stream));
    FT_CUDA_TRY(cudaStreamSynchronize(b->stream));
    if (!flags) return FT_OK;
    FT_CUDA_TRY(cudaMemsetAsync(b->err, 0, sizeof(unsigned), b->stream));
    return FT_ERR(FT_E_INTERNAL, "cuda ops reported bad indices:%s%s%s%s",
                  flags & FT_CUERR_EMBED_ID ? " embed token id outside the vocabulary;" : "",
                  flags & FT_CUERR_XENT_LABEL ? " xent label outside the vocabulary;" : "",
                  flags & FT_CUERR_DOC_START ? " attention doc_start[i] outside [0, i];" : "",
                  flags & FT_CUERR_TOKEN_INDEX ? " trainable token row or column out of range;" : "");
}

static void ft_cuda_destroy(ft_backend *be) {
    ft_backend_cuda *b = ft_cu(be);
    if (b->stream) {
        if (b->loader) (void)ft_cuda_load_end(b);
        (void)cudaStreamSynchronize(b->stream);
    }
    if (b->side) {
        (void)cudaStreamSynchronize(b->side);
        (void)cudaStreamDestroy(b->side);
    }
    for (int i = 0; i < FT_SIDE_EVENTS; i++) {
        if (b->side_pre[i]) (void)cudaEventDestroy(b->side_pre[i]);
        if (b->side_done[i]) (void)cudaEventDestroy(b->side_done[i]);
    }
    for (int i = 0; i < FT_UPLOAD_SLOTS; i++)
        if (b->up_done[i]) (void)cudaEventDestroy(b->up_done[i]);
    if (b->up_host) (void)cudaFreeHost(b->up_host);
    for (int64_t i = 0; i < b->timer_cap; i++) (void)cudaEventDestroy(b->timer_ev[i]);
    free(b->timer_ev);
    for (int i = 0; i < FT_SCR_COUNT; i++) ft_cuda_raw_free(b, b->scratch[i].ptr);
    ft_cuda_wcache_free(b);
    ft_cuda_raw_free(b, b->lt_ws);
    ft_cuda_raw_free(b, b->nf4_tables);
    ft_cuda_raw_free(b, b->nf4_qlut);
    ft_cuda_raw_free(b, b->err);
    ft_cuda_gemm_cache_free(b);
    ft_cuda_cudnn_free(b);
    if (b->lt) (void)cublasLtDestroy(b->lt);
    if (b->stream) {
        (void)cudaStreamSynchronize(b->stream);
        (void)cudaStreamDestroy(b->stream);
    }
    if (b->alloc_used)
        ft_warn("cuda backend freed with %lld allocations still live", (long long)b->alloc_used);
    ft_free(b->allocs);
    ft_free(b);
}

static ft_status ft_cuda_weight_prefetch(ft_backend *be, const ft_weight *w) {
    return ft_cuda_wcache_prefetch(ft_cu(be), w);
}

static void ft_cuda_dequant_counts(ft_backend *be, ft_dequant_counts *out) {
    ft_cuda_wcache *c = &ft_cu(be)->wcache;
    *out = c->n;
    memset(&c->n, 0, sizeof c->n);
}

static ft_status ft_cuda_attn_workspace(ft_backend *be, int64_t bytes) {
    ft_cu(be)->attn_ws = bytes > 0 ? bytes : 0; /* allocated on first use, in the FT_SCR_CUDNN slot */
    return FT_OK;
}

/* FT_CUDA_WCACHE=0 keeps the cache off, to measure what it saves. */
static ft_status ft_cuda_weight_cache(ft_backend *be, int64_t bytes) {
    const char *e = getenv("FT_CUDA_WCACHE");
    return ft_cuda_wcache_set(ft_cu(be), e && strcmp(e, "0") == 0 ? 0 : bytes);
}

static ft_backend_vtbl ft_cuda_make_vtbl(void) {
    ft_backend_vtbl v;
    memset(&v, 0, sizeof v);
    v.name = "cuda";
    v.kind = FT_BACKEND_CUDA;
    v.act_dtype = FT_BF16;
    v.destroy = ft_cuda_destroy;
    v.alloc = ft_cuda_alloc;
    v.release = ft_cuda_release;
    v.upload = ft_cuda_upload;
    v.download = ft_cuda_download;
    v.copy = ft_cuda_copy;
    v.memset = ft_cuda_memset;
    v.sync = ft_cuda_sync;
    v.embed = ft_cuda_embed;
    v.rmsnorm = ft_cuda_rmsnorm;
    v.rmsnorm_bwd = ft_cuda_rmsnorm_bwd;
    v.linear = ft_cuda_linear;
    v.linear_bwd_x = ft_cuda_linear_bwd_x;
    v.lora_fwd = ft_cuda_lora_fwd;
    v.lora_bwd = ft_cuda_lora_bwd;
    v.dropout = ft_cuda_dropout;
    v.rope = ft_cuda_rope;
    v.attention = ft_cuda_attention;
    v.attention_bwd = ft_cuda_attention_bwd;
    v.attention_kv = ft_cuda_attention_kv;
    v.swiglu = ft_cuda_swiglu;
    v.swiglu_bwd = ft_cuda_swiglu_bwd;
    v.add = ft_cuda_add;
    v.xent = ft_cuda_xent;
    v.sumsq = ft_cuda_sumsq;
    v.scale = ft_cuda_scale;
    v.adamw = ft_cuda_adamw;
    v.nf4_quantize = ft_cuda_nf4_quantize;
    v.nf4_dequantize = ft_cuda_nf4_dequantize;
    v.clip_factor = ft_cuda_clip_factor;
    v.rows_set = ft_cuda_rows_set;
    v.rows_sum = ft_cuda_rows_sum;
    v.cols_set = ft_cuda_cols_set;
    v.cols_take = ft_cuda_cols_take;
    v.dora_norm = ft_cuda_dora_norm;
    v.dora_scale = ft_cuda_dora_scale;
    v.dora_mag_grad = ft_cuda_dora_mag_grad;
    v.alloc_paged = ft_cuda_alloc_paged;
    v.prefetch = ft_cuda_prefetch;
    v.alloc_host = ft_cuda_alloc_host;
    v.release_host = ft_cuda_release_host;
    v.copy_async = ft_cuda_copy_async;
    v.copy_wait = ft_cuda_copy_wait;
    v.mem_info = ft_cuda_mem_info;
    v.timer_mark = ft_cuda_timer_mark;
    v.timer_read = ft_cuda_timer_read;
    v.weight_set = ft_cuda_weight_set;
    v.weight_init = ft_cuda_weight_init;
    v.weight_cache = ft_cuda_weight_cache;
    v.attn_workspace = ft_cuda_attn_workspace;
    v.weight_prefetch = ft_cuda_weight_prefetch;
    v.dequant_counts = ft_cuda_dequant_counts;
    return v;
}
static const ft_backend_vtbl ft_cuda_vtbl = ft_cuda_make_vtbl();

/* A kernel whose attributes tell whether this binary holds code this device can run. */
__global__ void ft_cuda_probe_kernel(int *p) {
    if (p) *p = 1;
}

static ft_status ft_cuda_init(ft_backend_cuda *b, int device) {
    cudaDeviceProp prop;
    FT_CUDA_TRY(cudaSetDevice(device));
    FT_CUDA_TRY(cudaGetDeviceProperties(&prop, device));
    snprintf(b->base.device_name, sizeof b->base.device_name, "%s", prop.name); /* ft_backend_device_name */
    b->device = device;
    b->sm_count = prop.multiProcessorCount;
    b->cc_major = prop.major;
    b->cc_minor = prop.minor;
    b->smem_optin = prop.sharedMemPerBlockOptin;
    cudaFuncAttributes fa;
    cudaError_t pe = cudaFuncGetAttributes(&fa, ft_cuda_probe_kernel);
    if (pe != cudaSuccess) {
        (void)cudaGetLastError();
        return FT_ERR(FT_E_UNSUPPORTED,
                      "CUDA device %d (%s, compute capability %d.%d) cannot run this build's kernels (%s): "
                      "rebuild with -DCMAKE_CUDA_ARCHITECTURES=%d%d",
                      device, prop.name, prop.major, prop.minor, cudaGetErrorString(pe), prop.major, prop.minor);
    }
    FT_CUDA_TRY(cudaStreamCreateWithFlags(&b->stream, cudaStreamNonBlocking));
    FT_CUDA_TRY(cudaStreamCreateWithFlags(&b->side, cudaStreamNonBlocking));
    for (int i = 0; i < FT_SIDE_EVENTS; i++) {
        FT_CUDA_TRY(cudaEventCreateWithFlags(&b->side_pre[i], cudaEventDisableTiming));
        FT_CUDA_TRY(cudaEventCreateWithFlags(&b->side_done[i], cudaEventDisableTiming));
    }
    for (int i = 0; i < FT_UPLOAD_SLOTS; i++) FT_CUDA_TRY(cudaEventCreateWithFlags(&b->up_done[i], cudaEventDisableTiming));
    FT_CUDA_TRY(cudaHostAlloc((void **)&b->up_host, (size_t)(FT_UPLOAD_SLOTS * FT_UPLOAD_SLOT_BYTES), cudaHostAllocDefault));
    int cma = 0;
    FT_CUDA_TRY(cudaDeviceGetAttribute(&cma, cudaDevAttrConcurrentManagedAccess, device));
    const char *pg = getenv("FT_CUDA_PAGED");
    b->managed = cma && !(pg && strcmp(pg, "0") == 0);
    b->integrated = prop.integrated;
    const char *me = getenv("FT_CUDA_MALLOC");
    int pools = 0;
    FT_CUDA_TRY(cudaDeviceGetAttribute(&pools, cudaDevAttrMemoryPoolsSupported, device));
    b->use_pool = pools && !(me && strcmp(me, "sync") == 0);
    if (b->use_pool) {
        cudaMemPool_t pool;
        uint64_t keep = UINT64_MAX; /* keep freed memory in the pool across steps */
        FT_CUDA_TRY(cudaDeviceGetDefaultMemPool(&pool, device));
        FT_CUDA_TRY(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep));
    }
    FT_CUBLAS_TRY(cublasLtCreate(&b->lt));
    b->lt_ws_bytes = FT_LT_WORKSPACE;
    FT_TRY(ft_cuda_raw_alloc(b, &b->lt_ws, (int64_t)b->lt_ws_bytes));

    /* NF4 tables and the nested-quantization lookup table, once per backend. */
    float tables[16 + 256];
    memcpy(tables, ft_nf4_levels, sizeof(float) * 16);
    memcpy(tables + 16, ft_nf4_dynmap, sizeof(float) * 256);
    FT_TRY(ft_cuda_raw_alloc(b, (void **)&b->nf4_tables, sizeof tables));
    FT_CUDA_TRY(cudaMemcpyAsync(b->nf4_tables, tables, sizeof tables, cudaMemcpyHostToDevice, b->stream));
    uint8_t *lut = NULL;
    FT_TRY(ft_malloc((void **)&lut, FT_NF4_QLUT_SIZE, "nf4 lookup table"));
    ft_nf4_qlut_build(lut);
    ft_status st = ft_cuda_raw_alloc(b, (void **)&b->nf4_qlut, FT_NF4_QLUT_SIZE);
    if (st == FT_OK)
        st = ft_cuda_status(cudaMemcpyAsync(b->nf4_qlut, lut, FT_NF4_QLUT_SIZE, cudaMemcpyHostToDevice, b->stream),
                            "cudaMemcpyAsync(nf4_qlut)", __func__, __FILE__, __LINE__);
    if (st == FT_OK) st = ft_cuda_status(cudaStreamSynchronize(b->stream), "cudaStreamSynchronize", __func__,
                                         __FILE__, __LINE__); /* lut is freed next */
    ft_free(lut);
    FT_TRY(st);
    FT_TRY(ft_cuda_raw_alloc(b, (void **)&b->err, sizeof(unsigned)));
    FT_CUDA_TRY(cudaMemsetAsync(b->err, 0, sizeof(unsigned), b->stream));

    b->base.bytes_in_use = (int64_t)b->lt_ws_bytes + (int64_t)sizeof tables + FT_NF4_QLUT_SIZE + 4;
    b->base.bytes_peak = b->base.bytes_in_use;
    const char *g = getenv("FT_CUDA_GEMM");
    b->gemm_simt = g && strcmp(g, "simt") == 0;
    const char *gv = getenv("FT_CUDA_GEMV");
    b->gemv_off = gv && strcmp(gv, "0") == 0;
    const char *at = getenv("FT_CUDA_ATTN");
    b->attn_simt = at && strcmp(at, "simt") == 0;
    b->attn_wmma = at && strcmp(at, "wmma") == 0;
    /* cuDNN's attention by default on Hopper only: measured there (docs/perf.md, 2026-11-24: 2.9x our
     * kernels' attention time at seq 4096); GB10's cuDNN engines are not measured yet */
    b->attn_cudnn = at && strcmp(at, "cudnn") == 0 ? 2 : at && *at ? 0 : prop.major == 9;
    b->attn_rows32 = at && strcmp(at, "mma32") == 0;
    if (at && *at && !b->attn_simt && !b->attn_wmma && !b->attn_rows32 && b->attn_cudnn != 2 && strcmp(at, "mma") != 0)
        ft_warn("cuda: FT_CUDA_ATTN=%s is not one of mma, cudnn, wmma, simt, mma32: ftune's mma kernels run the "
                "attention", at);
    const char *lo = getenv("FT_CUDA_LORA");
    b->lora_unfused = lo && strcmp(lo, "unfused") == 0;
    b->lora_mma = lo && strcmp(lo, "mma") == 0;
    size_t fr = 0, tot = 0;
    FT_CUDA_TRY(cudaMemGetInfo(&fr, &tot));
    ft_info("cuda: device %d %s, compute capability %d.%d, %d SMs, %.1f of %.1f GiB free, built for sm %s%s%s%s%s%s%s",
            device, prop.name, prop.major, prop.minor, prop.multiProcessorCount, (double)fr / (1 << 30),
            (double)tot / (1 << 30), FT_CUDA_ARCHS, b->use_pool ? ", stream-ordered allocator" : ", cudaMalloc",
            b->managed ? ", managed memory for optimizer state" : ", no managed memory (optimizer state on the device)",
            b->integrated ? ", integrated (unified memory)" : "", b->gemm_simt ? ", FT_CUDA_GEMM=simt" : "",
            b->attn_simt    ? ", FT_CUDA_ATTN=simt"
            : b->attn_wmma  ? ", FT_CUDA_ATTN=wmma"
            : b->attn_cudnn == 2 ? ", FT_CUDA_ATTN=cudnn"
            : at && strcmp(at, "mma") == 0 ? ", FT_CUDA_ATTN=mma"
            : b->attn_rows32 ? ", FT_CUDA_ATTN=mma32"
            : b->attn_cudnn ? ", cuDNN attention for plain rows within the plan's workspace"
                             : "",
            b->lora_unfused ? ", FT_CUDA_LORA=unfused" : b->lora_mma ? ", FT_CUDA_LORA=mma" : "");
    return FT_OK;
}

extern "C" ft_status ft_backend_cuda_create(ft_backend **out, int device) {
    *out = NULL;
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return FT_ERR(FT_E_UNSUPPORTED, "no usable CUDA device: %s (%s)", cudaGetErrorString(e),
                      cudaGetErrorName(e));
    }
    if (n <= 0) return FT_ERR(FT_E_UNSUPPORTED, "no CUDA device present");
    if (device < 0 || device >= n)
        return FT_ERR(FT_E_ARG, "CUDA device %d requested but %d present (0..%d)", device, n, n - 1);
    ft_backend_cuda *b = NULL;
    FT_TRY(ft_calloc((void **)&b, sizeof *b, "cuda backend"));
    b->base.vt = &ft_cuda_vtbl;
    ft_status st = ft_cuda_init(b, device);
    if (st != FT_OK) {
        ft_cuda_destroy(&b->base);
        return st;
    }
    *out = &b->base;
    return FT_OK;
}
