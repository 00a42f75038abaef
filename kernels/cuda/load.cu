/* load.cu: frozen weights streamed onto the GPU: from host memory (the loader's mmap'd safetensors)
 * through pinned staging buffers, or generated on the device (`ftune bench`'s random models), and
 * quantized to NF4 on the device chunk by chunk, bit-exact with the CPU loader.
 *
 * A session starts with the first ft_cuda_weight_set / ft_cuda_weight_init and holds, on the host,
 * FT_LOAD_SLOTS pinned chunk buffers of FT_LOAD_CHUNK_BYTES and, on the device (only when a target
 * is NF4 or needs converting), as many device chunks plus the f32 absmax of the largest NF4 tensor:
 * ft_backend_cuda_load_bytes (kernels/backend.h), the figure `ftune plan` reports for loading.
 *
 * One chunk (slot s = chunk index mod FT_LOAD_SLOTS):
 *   host:    wait until slot s's previous host-to-device copy is done (its pinned buffer is free),
 *            memcpy the chunk from the source into it (this is the disk read for an mmap'd file);
 *   side:    after the compute stream has consumed slot s's device chunk, copy pinned -> device;
 *   compute: after that copy, quantize the chunk's 64-blocks (codes + absmax) or convert it.
 * So the host reads chunk i+1 while chunk i is copied and chunk i-1 quantized, and the source is
 * fully read when the call returns (the loader then drops its pages). A tensor ends with the mean of
 * its absmax (the offset) and the nested quantization on the compute stream; the offset, a host
 * field of ft_nf4, is copied into a pinned array and written into the weight when the session ends
 * (ft_cuda_load_end: the next ft_backend_sync, or before any op dequantizes a weight). A weight
 * whose source already has its dtype is copied from the pinned buffers straight to its storage; so is
 * a ggml block-quantized weight (FT_Q4_0 .. FT_Q6_K, FT_IQ4_NL, FT_IQ4_XS: a GGUF base's bytes,
 * chunked by bytes, since a block type has no element size), which can only be set from its own
 * bytes: nothing quantizes to ggml's formats on the device.
 *
 * ft_cuda_weight_init generates mean + scale * (2u - 1), u = ft_uniform(seed, i), rounded to BF16
 * (kernels/weight.h; the same two float roundings as weight.c) into a device chunk and quantizes
 * it, or writes float weights directly: a 70B model is made in NF4 without any host copy. */
#include "kernels/cuda/check.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_impl.h"

#include <stdlib.h>
#include <string.h>

#include <thread>

extern "C" {
#include "kernels/log.h"
#include "kernels/rng.h"
}

typedef struct ft_cuda_pending {
    ft_weight *w;          /* whose nf4.offset is in offsets[i] */
    const void *codes;     /* w's codes pointer, to forget w if it is released first */
} ft_cuda_pending;

enum { FT_LOAD_PENDING = 4096 };

struct ft_cuda_loader {
    char *pin[FT_LOAD_SLOTS];        /* pinned host chunks */
    void *dev[FT_LOAD_SLOTS];        /* device chunks (allocated on first need) */
    cudaEvent_t h2d[FT_LOAD_SLOTS];  /* slot's copy to the device done */
    cudaEvent_t used[FT_LOAD_SLOTS]; /* slot's device chunk consumed by the compute stream */
    int h2d_on[FT_LOAD_SLOTS], used_on[FT_LOAD_SLOTS];
    int64_t next;                    /* chunks issued */
    cudaEvent_t start;               /* compute-stream point the side stream starts after */
    float *absmax;                   /* device [nb + 1]: a tensor's absmax, then its offset */
    int64_t absmax_bytes;
    int64_t dev_bytes;               /* accounted device bytes of the session */
    float *offsets;                  /* pinned [FT_LOAD_PENDING] */
    ft_cuda_pending pend[FT_LOAD_PENDING];
    int64_t npend;
    int64_t tensors, bytes_in;       /* for the log */
};

/* ---- kernels ------------------------------------------------------------------------------------ */

__device__ __forceinline__ float ft_src_f(const void *src, int dtype, int64_t i) {
    switch (dtype) {
    case FT_F32: return ((const float *)src)[i];
    case FT_F16: return __half2float(((const __half *)src)[i]);
    default: return __bfloat162float(((const __nv_bfloat16 *)src)[i]);
    }
}

__device__ __forceinline__ void ft_dst_st(void *dst, int dtype, int64_t i, float v) {
    switch (dtype) {
    case FT_F32: ((float *)dst)[i] = v; break;
    case FT_F16: ((__half *)dst)[i] = __float2half_rn(v); break;
    default: ((__nv_bfloat16 *)dst)[i] = __float2bfloat16_rn(v); break;
    }
}

/* dst[n] (dst dtype) = src[n] (src dtype), through float (exact widening, RNE narrowing as
 * kernels/dtype.c's ft_from_f32). */
__global__ void ft_k_convert(void *dst, int dt, const void *src, int st, int64_t n) {
    for (int64_t i = ft_gtid(); i < n; i += ft_gstride()) ft_dst_st(dst, dt, i, ft_src_f(src, st, i));
}

/* out[i] = bf16(mean + scale * (2 u(seed, base + i) - 1)) stored as dtype (kernels/weight.h). */
__global__ void ft_k_init_uniform(void *out, int dtype, int64_t n, int64_t base, uint64_t seed, float mean,
                                  float scale) {
    for (int64_t i = ft_gtid(); i < n; i += ft_gstride()) {
        const float t = __fsub_rn(__fmul_rn(2.0f, ft_uniform(seed, (uint64_t)(base + i))), 1.0f);
        const float v = __bfloat162float(__float2bfloat16_rn(__fadd_rn(__fmul_rn(t, scale), mean)));
        ft_dst_st(out, dtype, i, v);
    }
}

/* memcpy with a few threads for large chunks: from an mmap'd file this is the read itself (page
 * faults and, for a cold file, the disk), which one thread does not keep up with on NVMe. */
static void ft_load_memcpy(char *dst, const char *src, int64_t n) {
    enum { FT_LOAD_COPIERS = 4 };
    if (n < ((int64_t)8 << 20)) {
        memcpy(dst, src, (size_t)n);
        return;
    }
    std::thread t[FT_LOAD_COPIERS - 1];
    const int64_t part = (n / FT_LOAD_COPIERS + 4095) / 4096 * 4096;
    for (int i = 1; i < FT_LOAD_COPIERS; i++) {
        const int64_t a = i * part, len = a >= n ? 0 : (n - a < part ? n - a : part);
        t[i - 1] = std::thread([=] { if (len > 0) memcpy(dst + a, src + a, (size_t)len); });
    }
    memcpy(dst, src, (size_t)(part < n ? part : n));
    for (int i = 0; i < FT_LOAD_COPIERS - 1; i++) t[i].join();
}

/* ---- the session --------------------------------------------------------------------------------- */

static ft_status ft_load_make(ft_cuda_loader *L) {
    for (int s = 0; s < FT_LOAD_SLOTS; s++) {
        FT_CUDA_TRY(cudaHostAlloc((void **)&L->pin[s], (size_t)FT_LOAD_CHUNK_BYTES, cudaHostAllocDefault));
        FT_CUDA_TRY(cudaEventCreateWithFlags(&L->h2d[s], cudaEventDisableTiming));
        FT_CUDA_TRY(cudaEventCreateWithFlags(&L->used[s], cudaEventDisableTiming));
    }
    FT_CUDA_TRY(cudaEventCreateWithFlags(&L->start, cudaEventDisableTiming));
    FT_CUDA_TRY(cudaHostAlloc((void **)&L->offsets, FT_LOAD_PENDING * sizeof(float), cudaHostAllocDefault));
    return FT_OK;
}

static ft_status ft_load_begin(ft_backend_cuda *b) {
    if (b->loader) return FT_OK;
    ft_cuda_loader *L = (ft_cuda_loader *)calloc(1, sizeof *L);
    if (!L) return FT_ERR(FT_E_OOM, "weight streaming: out of host memory");
    b->loader = L;
    const ft_status st = ft_load_make(L);
    /* a half-made session (pinned memory refused) must not stay: the next call would find
     * b->loader set and copy into a NULL buffer. Ending it frees what was made. */
    if (st != FT_OK) (void)ft_cuda_load_end(b);
    return st;
}

/* Device chunks, once per session (only targets that are quantized or converted need them). */
static ft_status ft_load_dev_slots(ft_backend_cuda *b) {
    ft_cuda_loader *L = b->loader;
    for (int s = 0; s < FT_LOAD_SLOTS; s++) {
        if (L->dev[s]) continue; /* made by an earlier call (one that failed part way made only some) */
        ft_status st = ft_cuda_raw_alloc(b, &L->dev[s], FT_LOAD_CHUNK_BYTES);
        if (st != FT_OK) return ft_backend_alloc_failed(&b->base, st, FT_LOAD_CHUNK_BYTES, "weight streaming chunks");
        ft_cuda_account(b, FT_LOAD_CHUNK_BYTES);
        L->dev_bytes += FT_LOAD_CHUNK_BYTES;
    }
    return FT_OK;
}

/* absmax room for a tensor of nb 64-blocks (+ its offset). */
static ft_status ft_load_absmax(ft_backend_cuda *b, int64_t nb) {
    ft_cuda_loader *L = b->loader;
    const int64_t want = 4 * (nb + 1);
    if (L->absmax_bytes >= want) return FT_OK;
    if (L->absmax) { /* stream-ordered: the previous tensor's kernels finish first */
        ft_cuda_raw_free(b, L->absmax);
        ft_cuda_account(b, -L->absmax_bytes);
        L->dev_bytes -= L->absmax_bytes;
        L->absmax = NULL;
        L->absmax_bytes = 0;
    }
    ft_status st = ft_cuda_raw_alloc(b, (void **)&L->absmax, want);
    if (st != FT_OK) return ft_backend_alloc_failed(&b->base, st, want, "weight streaming (NF4 absmax)");
    ft_cuda_account(b, want);
    L->dev_bytes += want;
    L->absmax_bytes = want;
    return FT_OK;
}

/* The offset of w (computed into absmax[nb]) goes to the pinned array, for ft_cuda_load_end. */
static ft_status ft_load_defer_offset(ft_backend_cuda *b, ft_weight *w, const float *offset_dev) {
    ft_cuda_loader *L = b->loader;
    if (L->npend == FT_LOAD_PENDING) { /* full: settle what is there (one wait per 4096 tensors) */
        FT_CUDA_TRY(cudaStreamSynchronize(b->stream));
        for (int64_t i = 0; i < L->npend; i++)
            if (L->pend[i].w) L->pend[i].w->nf4.offset = L->offsets[i];
        L->npend = 0;
    }
    FT_CUDA_TRY(cudaMemcpyAsync(&L->offsets[L->npend], offset_dev, sizeof(float), cudaMemcpyDeviceToHost, b->stream));
    L->pend[L->npend].w = w;
    L->pend[L->npend].codes = w->nf4.codes;
    L->npend++;
    return FT_OK;
}

void ft_cuda_load_forget(ft_backend_cuda *b, const void *ptr) {
    ft_cuda_loader *L = b->loader;
    for (int64_t i = 0; i < L->npend; i++)
        if (L->pend[i].w && L->pend[i].codes == ptr) L->pend[i].w = NULL;
}

ft_status ft_cuda_load_end(ft_backend_cuda *b) {
    ft_cuda_loader *L = b->loader;
    if (!L) return FT_OK;
    b->loader = NULL; /* whatever happens, the session is over */
    ft_status st = ft_cuda_status(cudaStreamSynchronize(b->side), "cudaStreamSynchronize(side)", __func__, __FILE__,
                                  __LINE__);
    if (st == FT_OK)
        st = ft_cuda_status(cudaStreamSynchronize(b->stream), "cudaStreamSynchronize", __func__, __FILE__, __LINE__);
    if (st == FT_OK)
        for (int64_t i = 0; i < L->npend; i++)
            if (L->pend[i].w) L->pend[i].w->nf4.offset = L->offsets[i];
    for (int s = 0; s < FT_LOAD_SLOTS; s++) {
        if (L->dev[s]) ft_cuda_raw_free(b, L->dev[s]);
        if (L->pin[s]) (void)cudaFreeHost(L->pin[s]);
        if (L->h2d[s]) (void)cudaEventDestroy(L->h2d[s]);
        if (L->used[s]) (void)cudaEventDestroy(L->used[s]);
    }
    if (L->absmax) ft_cuda_raw_free(b, L->absmax);
    ft_cuda_account(b, -L->dev_bytes);
    if (L->start) (void)cudaEventDestroy(L->start);
    if (L->offsets) (void)cudaFreeHost(L->offsets);
    if (L->tensors) ft_debug("cuda: streamed %lld tensors (%.1f MiB read) onto the device", (long long)L->tensors,
                             (double)L->bytes_in / (1 << 20));
    free(L);
    return st;
}

/* ---- from host memory ------------------------------------------------------------------------------ */

/* One chunk of src (host) [len elements of es bytes] to the device: into w's storage at byte
 * offset dst_off when direct, else into device slot s. Returns the slot. */
static ft_status ft_load_chunk(ft_backend_cuda *b, const char *src, int64_t nbytes, void *direct_dst, int *slot) {
    ft_cuda_loader *L = b->loader;
    const int s = (int)(L->next++ % FT_LOAD_SLOTS);
    if (L->h2d_on[s]) FT_CUDA_TRY(cudaEventSynchronize(L->h2d[s])); /* pinned buffer free */
    ft_load_memcpy(L->pin[s], src, nbytes);
    if (!direct_dst && L->used_on[s]) FT_CUDA_TRY(cudaStreamWaitEvent(b->side, L->used[s], 0));
    FT_CUDA_TRY(cudaMemcpyAsync(direct_dst ? direct_dst : L->dev[s], L->pin[s], (size_t)nbytes, cudaMemcpyHostToDevice,
                                b->side));
    FT_CUDA_TRY(cudaEventRecord(L->h2d[s], b->side));
    L->h2d_on[s] = 1;
    L->bytes_in += nbytes;
    *slot = s;
    return FT_OK;
}

/* A ggml weight from its own bytes (src holds ft_dtype_nbytes(dtype, numel) of them): chunks of
 * FT_LOAD_CHUNK_BYTES straight into its storage, as any same-dtype source. */
static ft_status ft_load_ggml(ft_backend_cuda *b, ft_weight *w, const void *src, ft_dtype src_dtype) {
    if (src_dtype != w->dtype)
        return FT_ERR(FT_E_UNSUPPORTED,
                      "cuda: a %s weight can only be set from %s blocks (got %s values): GGUF bytes are uploaded "
                      "as they are, nothing quantizes to ggml's formats on the device", ft_dtype_name(w->dtype),
                      ft_dtype_name(w->dtype), ft_dtype_name(src_dtype));
    const int64_t total = ft_dtype_nbytes(w->dtype, ft_weight_numel(w));
    if (total < 0 || w->cols % ft_dtype_block_elems(w->dtype) != 0)
        return FT_ERR(FT_E_INTERNAL, "cuda: a %s weight of %lld x %lld: rows are not whole %lld-element blocks",
                      ft_dtype_name(w->dtype), (long long)w->rows, (long long)w->cols,
                      (long long)ft_dtype_block_elems(w->dtype));
    FT_TRY(ft_load_begin(b));
    ft_cuda_loader *L = b->loader;
    L->tensors++;
    /* the side stream writes memory the compute stream allocated (stream-ordered): after it */
    FT_CUDA_TRY(cudaEventRecord(L->start, b->stream));
    FT_CUDA_TRY(cudaStreamWaitEvent(b->side, L->start, 0));
    const char *s8 = (const char *)src;
    int slot = 0;
    for (int64_t o = 0; o < total; o += FT_LOAD_CHUNK_BYTES) {
        const int64_t len = total - o < FT_LOAD_CHUNK_BYTES ? total - o : FT_LOAD_CHUNK_BYTES;
        FT_TRY(ft_load_chunk(b, s8 + o, len, (char *)w->data + o, &slot));
    }
    FT_CUDA_TRY(cudaStreamWaitEvent(b->stream, L->h2d[slot], 0)); /* the side stream is in order */
    return FT_OK;
}

ft_status ft_cuda_weight_set(ft_backend *be, ft_weight *w, const void *src, ft_dtype src_dtype) {
    ft_backend_cuda *b = ft_cu(be);
    FT_TRY(ft_cuda_wcache_forget(b, ft_cuda_wcache_key(w), 1)); /* the weight's values change */
    const int64_t n = ft_weight_numel(w), es = ft_dtype_nbytes(src_dtype, 1);
    if (n == 0) {
        w->nf4.offset = 0.0f;
        return FT_OK;
    }
    if (ft_dtype_is_ggml(w->dtype)) return ft_load_ggml(b, w, src, src_dtype);
    if (w->dtype != FT_NF4 && w->dtype != FT_F32 && w->dtype != FT_F16 && w->dtype != FT_BF16)
        return FT_ERR(FT_E_UNSUPPORTED, "cuda: weights of dtype %s are not supported", ft_dtype_name(w->dtype));
    FT_TRY(ft_load_begin(b));
    ft_cuda_loader *L = b->loader;
    L->tensors++;
    const int64_t nb = ft_nf4_nblocks(n);
    if (w->dtype != src_dtype) FT_TRY(ft_load_dev_slots(b));
    if (w->dtype == FT_NF4) FT_TRY(ft_load_absmax(b, nb));
    /* the side stream writes memory the compute stream allocated (stream-ordered, the weight's and
     * the device chunks): it starts after those allocations */
    FT_CUDA_TRY(cudaEventRecord(L->start, b->stream));
    FT_CUDA_TRY(cudaStreamWaitEvent(b->side, L->start, 0));
    /* elements per chunk: a multiple of 64 (whole NF4 blocks) that fits a chunk buffer */
    const int64_t per = FT_LOAD_CHUNK_BYTES / es / FT_NF4_BLOCK * FT_NF4_BLOCK;
    const char *s8 = (const char *)src;
    if (w->dtype == src_dtype) { /* straight to the weight's storage */
        int slot = 0;
        for (int64_t e0 = 0; e0 < n; e0 += per) {
            const int64_t len = n - e0 < per ? n - e0 : per;
            FT_TRY(ft_load_chunk(b, s8 + e0 * es, len * es, (char *)w->data + e0 * es, &slot));
        }
        FT_CUDA_TRY(cudaStreamWaitEvent(b->stream, L->h2d[slot], 0)); /* the side stream is in order */
        return FT_OK;
    }
    for (int64_t e0 = 0; e0 < n; e0 += per) {
        const int64_t len = n - e0 < per ? n - e0 : per;
        int s = 0;
        FT_TRY(ft_load_chunk(b, s8 + e0 * es, len * es, NULL, &s));
        FT_CUDA_TRY(cudaStreamWaitEvent(b->stream, L->h2d[s], 0));
        if (w->dtype == FT_NF4) {
            FT_TRY(ft_cuda_nf4_blocks(be, w->nf4.codes + e0 / 2, L->absmax + e0 / FT_NF4_BLOCK, L->dev[s], src_dtype, len));
        } else {
            const int64_t ds = ft_dtype_nbytes(w->dtype, 1);
            ft_k_convert<<<ft_grid_1d(len, 256, 64LL * b->sm_count), 256, 0, b->stream>>>(
                (char *)w->data + e0 * ds, (int)w->dtype, L->dev[s], (int)src_dtype, len);
            FT_CUDA_LAUNCH_TRY("ft_k_convert");
        }
        FT_CUDA_TRY(cudaEventRecord(L->used[s], b->stream));
        L->used_on[s] = 1;
    }
    if (w->dtype == FT_NF4) {
        FT_TRY(ft_cuda_nf4_finish(be, w, L->absmax, L->absmax + nb));
        FT_TRY(ft_load_defer_offset(b, w, L->absmax + nb));
    }
    return FT_OK;
}

/* ---- generated on the device ------------------------------------------------------------------------ */

ft_status ft_cuda_weight_init(ft_backend *be, ft_weight *w, uint64_t seed, float mean, float scale) {
    ft_backend_cuda *b = ft_cu(be);
    FT_TRY(ft_cuda_wcache_forget(b, ft_cuda_wcache_key(w), 1)); /* the weight's values change */
    const int64_t n = ft_weight_numel(w);
    if (n == 0) {
        w->nf4.offset = 0.0f;
        return FT_OK;
    }
    if (ft_dtype_is_ggml(w->dtype))
        return FT_ERR(FT_E_UNSUPPORTED, "cuda: random initialization of a %s weight: ggml blocks come from a GGUF "
                      "file, they are never generated", ft_dtype_name(w->dtype));
    const unsigned cap = (unsigned)(64LL * b->sm_count);
    if (w->dtype == FT_F32 || w->dtype == FT_F16 || w->dtype == FT_BF16) {
        ft_k_init_uniform<<<ft_grid_1d(n, 256, cap), 256, 0, b->stream>>>(w->data, (int)w->dtype, n, 0, seed, mean,
                                                                        scale);
        FT_CUDA_LAUNCH_TRY("ft_k_init_uniform");
        return FT_OK;
    }
    if (w->dtype != FT_NF4)
        return FT_ERR(FT_E_UNSUPPORTED, "cuda: weights of dtype %s are not supported", ft_dtype_name(w->dtype));
    FT_TRY(ft_load_begin(b));
    FT_TRY(ft_load_dev_slots(b));
    ft_cuda_loader *L = b->loader;
    L->tensors++;
    const int64_t nb = ft_nf4_nblocks(n), per = FT_LOAD_CHUNK_BYTES / 2 / FT_NF4_BLOCK * FT_NF4_BLOCK;
    FT_TRY(ft_load_absmax(b, nb));
    /* everything on the compute stream, in order: one device chunk is enough (after any copy into
     * it from an earlier ft_cuda_weight_set, and marked used for a later one) */
    for (int s = 0; s < FT_LOAD_SLOTS; s++)
        if (L->h2d_on[s]) FT_CUDA_TRY(cudaStreamWaitEvent(b->stream, L->h2d[s], 0));
    for (int64_t e0 = 0; e0 < n; e0 += per) {
        const int64_t len = n - e0 < per ? n - e0 : per;
        ft_k_init_uniform<<<ft_grid_1d(len, 256, cap), 256, 0, b->stream>>>(L->dev[0], (int)FT_BF16, len, e0, seed,
                                                                          mean, scale);
        FT_CUDA_LAUNCH_TRY("ft_k_init_uniform");
        FT_TRY(ft_cuda_nf4_blocks(be, w->nf4.codes + e0 / 2, L->absmax + e0 / FT_NF4_BLOCK, L->dev[0], FT_BF16, len));
    }
    FT_CUDA_TRY(cudaEventRecord(L->used[0], b->stream));
    L->used_on[0] = 1;
    FT_TRY(ft_cuda_nf4_finish(be, w, L->absmax, L->absmax + nb));
    return ft_load_defer_offset(b, w, L->absmax + nb);
}
