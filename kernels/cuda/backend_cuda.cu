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

static ft_status ft_alloc_map_put(ft_backend_cuda *b, void *p, int64_t bytes) {
    if (2 * (b->alloc_used + 1) > b->alloc_cap) FT_TRY(ft_alloc_map_grow(b));
    const uint64_t mask = (uint64_t)(b->alloc_cap - 1);
    uint64_t h = ft_ptr_hash(p) & mask;
    while (b->allocs[h].ptr) h = (h + 1) & mask;
    b->allocs[h].ptr = p;
    b->allocs[h].bytes = bytes;
    b->alloc_used++;
    return FT_OK;
}

/* Removes p and returns its size, or -1 if p was not allocated here. */
static int64_t ft_alloc_map_take(ft_backend_cuda *b, void *p) {
    if (!b->alloc_cap) return -1;
    const uint64_t mask = (uint64_t)(b->alloc_cap - 1);
    uint64_t h = ft_ptr_hash(p) & mask;
    while (b->allocs[h].ptr && b->allocs[h].ptr != p) h = (h + 1) & mask;
    if (!b->allocs[h].ptr) return -1;
    const int64_t bytes = b->allocs[h].bytes;
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
    b->alloc_used--;
    return bytes;
}

/* ---- device memory ----------------------------------------------------------------------------- */


/* Raw device allocation (not accounted). Rounded up to 256 bytes so every buffer starts aligned
 * for 16-byte vector access and for cuBLASLt's preferred alignment. */
static ft_status ft_cuda_raw_alloc(ft_backend_cuda *b, void **ptr, int64_t bytes) {
    const size_t sz = (size_t)((bytes + FT_CUDA_ALIGN - 1) / FT_CUDA_ALIGN * FT_CUDA_ALIGN) + (bytes == 0);
    void *p = NULL;
    cudaError_t e = b->use_pool ? cudaMallocAsync(&p, sz, b->stream) : cudaMalloc(&p, sz);
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

static void ft_cuda_raw_free(ft_backend_cuda *b, void *p) {
    if (!p) return;
    /* Stream-ordered free: kernels already enqueued that use p finish first. Errors here cannot be
     * reported (release returns void) and would resurface at the next checked call. */
    if (b->use_pool)
        (void)cudaFreeAsync(p, b->stream);
    else
        (void)cudaFree(p);
}

static ft_status ft_cuda_alloc(ft_backend *be, void **ptr, int64_t bytes) {
    ft_backend_cuda *b = ft_cu(be);
    void *p = NULL;
    FT_TRY(ft_cuda_raw_alloc(b, &p, bytes));
    ft_status st = ft_alloc_map_put(b, p, bytes);
    if (st != FT_OK) {
        ft_cuda_raw_free(b, p);
        return st;
    }
    *ptr = p;
    return FT_OK;
}

static void ft_cuda_release(ft_backend *be, void *ptr) {
    ft_backend_cuda *b = ft_cu(be);
    const int64_t bytes = ft_alloc_map_take(b, ptr);
    FT_ASSERT(bytes >= 0 && "ft_backend_release of a pointer this CUDA backend did not allocate");
    ft_backend_account_release(be, bytes);
    ft_cuda_raw_free(b, ptr);
}

ft_status ft_cuda_scratch_get(ft_backend *be, int slot, int64_t bytes, void **out) {
    ft_backend_cuda *b = ft_cu(be);
    ft_cuda_scratch *s = &b->scratch[slot];
    if (s->bytes < bytes) {
        /* grow by at least 1/8 so a slowly rising demand does not reallocate every call */
        int64_t want = bytes + bytes / 8;
        void *p = NULL;
        if (s->ptr) {
            ft_cuda_raw_free(b, s->ptr);
            be->bytes_in_use -= s->bytes;
            s->ptr = NULL;
            s->bytes = 0;
        }
        FT_TRY(ft_cuda_raw_alloc(b, &p, want));
        s->ptr = p;
        s->bytes = want;
        be->bytes_in_use += want;
        if (be->bytes_in_use > be->bytes_peak) be->bytes_peak = be->bytes_in_use;
    }
    *out = s->ptr;
    return FT_OK;
}

static ft_status ft_cuda_upload(ft_backend *be, void *dst, const void *src, int64_t bytes) {
    FT_CUDA_TRY(cudaMemcpyAsync(dst, src, (size_t)bytes, cudaMemcpyHostToDevice, ft_cu_stream(be)));
    return FT_OK;
}

static ft_status ft_cuda_download(ft_backend *be, void *dst, const void *src, int64_t bytes) {
    FT_CUDA_TRY(cudaMemcpyAsync(dst, src, (size_t)bytes, cudaMemcpyDeviceToHost, ft_cu_stream(be)));
    FT_CUDA_TRY(cudaStreamSynchronize(ft_cu_stream(be)));
    return FT_OK;
}

static ft_status ft_cuda_copy(ft_backend *be, void *dst, const void *src, int64_t bytes) {
    FT_CUDA_TRY(cudaMemcpyAsync(dst, src, (size_t)bytes, cudaMemcpyDeviceToDevice, ft_cu_stream(be)));
    return FT_OK;
}

static ft_status ft_cuda_memset(ft_backend *be, void *dst, int value, int64_t bytes) {
    FT_CUDA_TRY(cudaMemsetAsync(dst, value, (size_t)bytes, ft_cu_stream(be)));
    return FT_OK;
}

/* Waits for the stream, then reports (and clears) the error flags kernels raised since the last
 * sync: bad indices are the caller's broken invariants (FT_E_INTERNAL), as on the CPU backend. */
static ft_status ft_cuda_sync(ft_backend *be) {
    ft_backend_cuda *b = ft_cu(be);
    unsigned flags = 0;
    FT_CUDA_TRY(cudaStreamSynchronize(b->stream));
    FT_CUDA_TRY(cudaMemcpyAsync(&flags, b->err, sizeof flags, cudaMemcpyDeviceToHost, b->stream));
    FT_CUDA_TRY(cudaStreamSynchronize(b->stream));
    if (!flags) return FT_OK;
    FT_CUDA_TRY(cudaMemsetAsync(b->err, 0, sizeof(unsigned), b->stream));
    return FT_ERR(FT_E_INTERNAL, "cuda ops reported bad indices:%s%s%s",
                  flags & FT_CUERR_EMBED_ID ? " embed token id outside the vocabulary;" : "",
                  flags & FT_CUERR_XENT_LABEL ? " xent label outside the vocabulary;" : "",
                  flags & FT_CUERR_DOC_START ? " attention doc_start[i] outside [0, i];" : "");
}

static void ft_cuda_destroy(ft_backend *be) {
    ft_backend_cuda *b = ft_cu(be);
    if (b->stream) (void)cudaStreamSynchronize(b->stream);
    for (int i = 0; i < FT_SCR_COUNT; i++) ft_cuda_raw_free(b, b->scratch[i].ptr);
    ft_cuda_raw_free(b, b->lt_ws);
    ft_cuda_raw_free(b, b->nf4_tables);
    ft_cuda_raw_free(b, b->nf4_qlut);
    ft_cuda_raw_free(b, b->err);
    ft_cuda_gemm_cache_free(b);
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
    v.swiglu = ft_cuda_swiglu;
    v.swiglu_bwd = ft_cuda_swiglu_bwd;
    v.add = ft_cuda_add;
    v.xent = ft_cuda_xent;
    v.sumsq = ft_cuda_sumsq;
    v.scale = ft_cuda_scale;
    v.adamw = ft_cuda_adamw;
    v.nf4_quantize = ft_cuda_nf4_quantize;
    v.nf4_dequantize = ft_cuda_nf4_dequantize;
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
    size_t fr = 0, tot = 0;
    FT_CUDA_TRY(cudaMemGetInfo(&fr, &tot));
    ft_info("cuda: device %d %s, compute capability %d.%d, %d SMs, %.1f of %.1f GiB free, built for sm %s%s%s",
            device, prop.name, prop.major, prop.minor, prop.multiProcessorCount, (double)fr / (1 << 30),
            (double)tot / (1 << 30), FT_CUDA_ARCHS, b->use_pool ? ", stream-ordered allocator" : ", cudaMalloc",
            b->gemm_simt ? ", FT_CUDA_GEMM=simt" : "");
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
