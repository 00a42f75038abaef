/* matmul.cu: frozen linear layers and LoRA on the GPU: BF16 operands, FP32 accumulation, through
 * cuBLASLt, with our own tiled GEMM as the fallback and cross-check.
 *
 * Layouts are PyTorch's, row-major (ops.h): x[N,in], W[out,in], y[N,out], A[R,in], B[out,R]. cuBLAS
 * is column-major, so a row-major [r,c] matrix is a column-major [c,r] one and every product is
 * written for the transposes, e.g. y^T[out,N] = W[out,in] . x^T[in,N] is "TN" with m=out, n=N, k=in.
 *
 * Frozen weights: a BF16 weight is used in place; NF4 and the ggml block types of a GGUF base
 * (FT_Q4_0 .. FT_Q6_K, FT_IQ4_NL, FT_IQ4_XS, ggml_dequant.cu) are dequantized, and F32/F16 converted, into one BF16
 * scratch buffer (FT_SCR_WEIGHT, reused by every call) or the weight cache's ring right before
 * their product, except for products of at most FT_LINEAR_FEW_ROWS rows (decoding), which read the
 * codes or blocks directly (gemv.cu). A fused dequant GEMM can replace this where it measurably wins
 * (docs/ops.md).
 * Bias: cuBLASLt's BIAS epilogue (bias converted to BF16, the dtype HF checkpoints store it in).
 * The LoRA products (lora.cu) go through ft_cuda_gemm too.
 *
 * cuBLASLt algorithms are chosen by its heuristic once per problem (shape, transposes, output dtype,
 * bias, pointer alignment) and cached in the backend. If the heuristic offers none, or
 * FT_CUDA_GEMM=simt is set, ft_gemm_simt runs instead: a plain shared-memory tiled GEMM with f32
 * accumulation that the GPU test runs as a cross-check of the cuBLASLt path. */
#include "kernels/cuda/check.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_impl.h"

#include <string.h>

extern "C" {
#include "kernels/log.h"
#include "kernels/mem.h"
}

/* ---- conversion kernels -------------------------------------------------------------------------- */

/* out[n] (BF16) = weight elements as float (F32/F16 weights; NF4 goes through nf4.cu). */
__global__ void ft_k_weight_to_bf16(act_t *out, ft_cu_wview w, int64_t n) {
    for (int64_t i = ft_gtid(); i < n; i += ft_gstride()) ft_st(out, i, ft_weight_at(w, i));
}

__global__ void ft_k_f32_to_bf16(act_t *out, const float *in, int64_t n) {
    for (int64_t i = ft_gtid(); i < n; i += ft_gstride()) out[i] = __float2bfloat16_rn(in[i]);
}

/* ---- our own GEMM (fallback and cross-check) --------------------------------------------------------
 * Column-major D[m,n] = alpha op(A)[m,k] op(B)[k,n] + beta D + bias[m]. 32x32 output tile per block of
 * 16x16 threads (2x2 outputs each), k in steps of 16 through shared memory. */
enum { FT_GT = 32, FT_GK = 16 };

template <bool F32OUT>
__global__ void ft_k_gemm_simt(int transa, int transb, int64_t m, int64_t n, int64_t k, float alpha,
                               const act_t *A, int64_t lda, const act_t *B, int64_t ldb, float beta, void *Dv,
                               int64_t ldd, const act_t *bias) {
    __shared__ float sa[FT_GK][FT_GT + 1]; /* sa[p][i] = op(A)(i0 + i, p0 + p) */
    __shared__ float sb[FT_GK][FT_GT + 1]; /* sb[p][j] = op(B)(p0 + p, j0 + j) */
    const int64_t i0 = (int64_t)blockIdx.x * FT_GT, j0 = (int64_t)blockIdx.y * FT_GT;
    const int tx = threadIdx.x, ty = threadIdx.y, tid = ty * 16 + tx;
    float acc[2][2] = {{0.f, 0.f}, {0.f, 0.f}};
    for (int64_t p0 = 0; p0 < k; p0 += FT_GK) {
        for (int e = tid; e < FT_GK * FT_GT; e += 256) {
            const int p = e / FT_GT, r = e % FT_GT;
            const int64_t gi = i0 + r, gp = p0 + p, gj = j0 + r;
            float a = 0.f, b = 0.f;
            if (gi < m && gp < k) a = __bfloat162float(transa ? A[gp + gi * lda] : A[gi + gp * lda]);
            if (gj < n && gp < k) b = __bfloat162float(transb ? B[gj + gp * ldb] : B[gp + gj * ldb]);
            sa[p][r] = a;
            sb[p][r] = b;
        }
        __syncthreads();
#pragma unroll
        for (int p = 0; p < FT_GK; p++) {
            const float a0 = sa[p][tx], a1 = sa[p][tx + 16], b0 = sb[p][ty], b1 = sb[p][ty + 16];
            acc[0][0] += a0 * b0;
            acc[1][0] += a1 * b0;
            acc[0][1] += a0 * b1;
            acc[1][1] += a1 * b1;
        }
        __syncthreads();
    }
#pragma unroll
    for (int u = 0; u < 2; u++)
#pragma unroll
        for (int v = 0; v < 2; v++) {
            const int64_t gi = i0 + tx + 16 * u, gj = j0 + ty + 16 * v;
            if (gi >= m || gj >= n) continue;
            float r = alpha * acc[u][v];
            const int64_t at = gi + gj * ldd;
            if (beta != 0.f) r += beta * (F32OUT ? ((float *)Dv)[at] : __bfloat162float(((act_t *)Dv)[at]));
            if (bias) r += __bfloat162float(bias[gi]);
            if (F32OUT)
                ((float *)Dv)[at] = r;
            else
                ((act_t *)Dv)[at] = __float2bfloat16_rn(r);
        }
}

static ft_status ft_gemm_simt(ft_backend *be, int transa, int transb, int64_t m, int64_t n, int64_t k, float alpha,
                              const void *A, int64_t lda, const void *B, int64_t ldb, float beta, void *D,
                              int64_t ldd, int d_f32, const void *bias) {
    if (ft_cdiv(m, FT_GT) > 0x7fffffff || ft_cdiv(n, FT_GT) > 65535)
        return FT_ERR(FT_E_UNSUPPORTED, "simt gemm: %lld x %lld output too large", (long long)m, (long long)n);
    dim3 grid((unsigned)ft_cdiv(m, FT_GT), (unsigned)ft_cdiv(n, FT_GT)), block(16, 16);
    if (d_f32)
        ft_k_gemm_simt<true><<<grid, block, 0, ft_cu_stream(be)>>>(transa, transb, m, n, k, alpha, (const act_t *)A,
                                                                   lda, (const act_t *)B, ldb, beta, D, ldd,
                                                                   (const act_t *)bias);
    else
        ft_k_gemm_simt<false><<<grid, block, 0, ft_cu_stream(be)>>>(transa, transb, m, n, k, alpha,
                                                                    (const act_t *)A, lda, (const act_t *)B, ldb,
                                                                    beta, D, ldd, (const act_t *)bias);
    FT_CUDA_LAUNCH_TRY("ft_k_gemm_simt");
    return FT_OK;
}

/* ---- cuBLASLt with an algorithm cache ------------------------------------------------------------ */

struct ft_gemm_key {
    int64_t m, n, k, lda, ldb, ldd;
    int32_t transa, transb, d_f32, bias, align_a, align_b, align_d, pad;
};
struct ft_gemm_cache_entry {
    ft_gemm_key key;
    cublasLtMatmulAlgo_t algo;
    int state; /* 0 empty, 1 algorithm found, 2 none offered (use the fallback) */
};

static int32_t ft_ptr_align(const void *p) {
    uintptr_t a = (uintptr_t)p;
    int32_t al = 256;
    while (al > 1 && (a % (uintptr_t)al) != 0) al >>= 1;
    return al;
}

void ft_cuda_gemm_cache_free(ft_backend_cuda *b) {
    ft_free(b->gemm_cache);
    b->gemm_cache = NULL;
}

static uint64_t ft_key_hash(const ft_gemm_key *k) {
    const unsigned char *p = (const unsigned char *)k;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < sizeof *k; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

/* Descriptors for one product; owned by the caller's ft_lt_desc and destroyed by ft_lt_desc_free. */
typedef struct {
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t a, b, d;
    cublasLtMatmulPreference_t pref;
} ft_lt_desc;

static void ft_lt_desc_free(ft_lt_desc *d) {
    if (d->pref) (void)cublasLtMatmulPreferenceDestroy(d->pref);
    if (d->d) (void)cublasLtMatrixLayoutDestroy(d->d);
    if (d->b) (void)cublasLtMatrixLayoutDestroy(d->b);
    if (d->a) (void)cublasLtMatrixLayoutDestroy(d->a);
    if (d->op) (void)cublasLtMatmulDescDestroy(d->op);
}

static ft_status ft_lt_desc_make(ft_backend_cuda *b, ft_lt_desc *d, const ft_gemm_key *k, const void *bias) {
    cublasOperation_t ta = k->transa ? CUBLAS_OP_T : CUBLAS_OP_N, tb = k->transb ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cudaDataType_t dt = k->d_f32 ? CUDA_R_32F : CUDA_R_16BF;
    FT_CUBLAS_TRY(cublasLtMatmulDescCreate(&d->op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    FT_CUBLAS_TRY(cublasLtMatmulDescSetAttribute(d->op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    FT_CUBLAS_TRY(cublasLtMatmulDescSetAttribute(d->op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    if (bias) {
        cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
        cudaDataType_t bt = CUDA_R_16BF;
        FT_CUBLAS_TRY(cublasLtMatmulDescSetAttribute(d->op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
        FT_CUBLAS_TRY(cublasLtMatmulDescSetAttribute(d->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
        FT_CUBLAS_TRY(cublasLtMatmulDescSetAttribute(d->op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof bt));
    }
    FT_CUBLAS_TRY(cublasLtMatrixLayoutCreate(&d->a, CUDA_R_16BF, (uint64_t)(k->transa ? k->k : k->m),
                                             (uint64_t)(k->transa ? k->m : k->k), k->lda));
    FT_CUBLAS_TRY(cublasLtMatrixLayoutCreate(&d->b, CUDA_R_16BF, (uint64_t)(k->transb ? k->n : k->k),
                                             (uint64_t)(k->transb ? k->k : k->n), k->ldb));
    FT_CUBLAS_TRY(cublasLtMatrixLayoutCreate(&d->d, dt, (uint64_t)k->m, (uint64_t)k->n, k->ldd));
    FT_CUBLAS_TRY(cublasLtMatmulPreferenceCreate(&d->pref));
    size_t ws = b->lt_ws_bytes;
    uint32_t aa = (uint32_t)k->align_a, ab = (uint32_t)k->align_b, ad = (uint32_t)k->align_d;
    FT_CUBLAS_TRY(cublasLtMatmulPreferenceSetAttribute(d->pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                                       sizeof ws));
    FT_CUBLAS_TRY(cublasLtMatmulPreferenceSetAttribute(d->pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &aa,
                                                       sizeof aa));
    FT_CUBLAS_TRY(cublasLtMatmulPreferenceSetAttribute(d->pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &ab,
                                                       sizeof ab));
    FT_CUBLAS_TRY(cublasLtMatmulPreferenceSetAttribute(d->pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &ad,
                                                       sizeof ad));
    FT_CUBLAS_TRY(cublasLtMatmulPreferenceSetAttribute(d->pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &ad,
                                                       sizeof ad));
    return FT_OK;
}

/* The cache slot for key (found or freshly claimed; a full probe window evicts its first slot). */
static ft_gemm_cache_entry *ft_gemm_slot(ft_backend_cuda *b, const ft_gemm_key *k) {
    const uint64_t h = ft_key_hash(k);
    for (int i = 0; i < 8; i++) {
        ft_gemm_cache_entry *e = &b->gemm_cache[(h + (uint64_t)i) % FT_GEMM_CACHE];
        if (e->state == 0 || memcmp(&e->key, k, sizeof *k) == 0) return e;
    }
    ft_gemm_cache_entry *e = &b->gemm_cache[h % FT_GEMM_CACHE];
    e->state = 0;
    return e;
}

ft_status ft_cuda_gemm(ft_backend *be, int transa, int transb, int64_t m, int64_t n, int64_t k, float alpha,
                       const void *A, int64_t lda, const void *B, int64_t ldb, float beta, void *D, int64_t ldd,
                       int d_f32, const void *bias) {
    ft_backend_cuda *b = ft_cu(be);
    if (m <= 0 || n <= 0) return FT_OK;
    if (k <= 0) { /* empty reduction: D = beta D (+ bias); rare enough for the simple kernel */
        return ft_gemm_simt(be, transa, transb, m, n, 0, alpha, A, lda, B, ldb, beta, D, ldd, d_f32, bias);
    }
    if (b->gemm_simt)
        return ft_gemm_simt(be, transa, transb, m, n, k, alpha, A, lda, B, ldb, beta, D, ldd, d_f32, bias);
    if (!b->gemm_cache)
        FT_TRY(ft_calloc((void **)&b->gemm_cache, FT_GEMM_CACHE * sizeof(ft_gemm_cache_entry), "gemm cache"));
    ft_gemm_key key;
    memset(&key, 0, sizeof key); /* padding bytes take part in the hash and memcmp */
    key.m = m, key.n = n, key.k = k, key.lda = lda, key.ldb = ldb, key.ldd = ldd;
    key.transa = transa, key.transb = transb, key.d_f32 = d_f32, key.bias = bias != NULL;
    key.align_a = ft_ptr_align(A), key.align_b = ft_ptr_align(B), key.align_d = ft_ptr_align(D);
    if (bias && ft_ptr_align(bias) < 16) key.bias = 2; /* misaligned bias: fallback below */
    ft_gemm_cache_entry *e = ft_gemm_slot(b, &key);
    if (e->state == 2 || key.bias == 2)
        return ft_gemm_simt(be, transa, transb, m, n, k, alpha, A, lda, B, ldb, beta, D, ldd, d_f32, bias);

    ft_lt_desc d;
    memset(&d, 0, sizeof d);
    ft_status st = ft_lt_desc_make(b, &d, &key, bias);
    if (st == FT_OK && e->state == 0) {
        cublasLtMatmulHeuristicResult_t res;
        int found = 0;
        memset(&res, 0, sizeof res);
        cublasStatus_t hs = cublasLtMatmulAlgoGetHeuristic(b->lt, d.op, d.a, d.b, d.d, d.d, d.pref, 1, &res, &found);
        e->key = key;
        if (hs == CUBLAS_STATUS_SUCCESS && found > 0) {
            e->algo = res.algo;
            e->state = 1;
        } else {
            e->state = 2;
            ft_debug("cuBLASLt offers no algorithm for m=%lld n=%lld k=%lld (%s%s, out %s%s, align %d/%d/%d): "
                     "using the simt gemm", (long long)m, (long long)n, (long long)k, transa ? "T" : "N",
                     transb ? "T" : "N", d_f32 ? "f32" : "bf16", bias ? ", bias" : "", key.align_a, key.align_b,
                     key.align_d);
        }
    }
    if (st == FT_OK && e->state == 1) {
        cublasStatus_t ms = cublasLtMatmul(b->lt, d.op, &alpha, A, d.a, B, d.b, &beta, D, d.d, D, d.d, &e->algo,
                                           b->lt_ws, b->lt_ws_bytes, b->stream);
        if (ms == CUBLAS_STATUS_NOT_SUPPORTED) {
            /* an algorithm the heuristic offered but the matmul refuses (a layout as odd as the trainable
             * tokens' rank-k head, ld 3): the simt gemm from now on for this key, as for no algorithm */
            e->state = 2;
            ft_debug("cublasLtMatmul refused m=%lld n=%lld k=%lld (lda %lld ldb %lld ldd %lld): using the simt gemm",
                     (long long)m, (long long)n, (long long)k, (long long)lda, (long long)ldb, (long long)ldd);
        } else {
            st = ft_cublas_status(ms, "cublasLtMatmul", __func__, __FILE__, __LINE__);
        }
    }
    const int fallback = st == FT_OK && e->state == 2;
    ft_lt_desc_free(&d);
    FT_TRY(st);
    if (fallback) return ft_gemm_simt(be, transa, transb, m, n, k, alpha, A, lda, B, ldb, beta, D, ldd, d_f32, bias);
    return FT_OK;
}

/* ---- weights as BF16 ------------------------------------------------------------------------------ */

ft_status ft_cuda_weight_bf16(ft_backend *be, const ft_weight *w, int slot, const void **out) {
    const int64_t n = ft_weight_numel(w);
    if (w->dtype == FT_BF16) {
        *out = w->data;
        return FT_OK;
    }
    FT_TRY(ft_cuda_load_settle(be)); /* streamed NF4 weights get their offsets first */
    void *buf = NULL;
    if (slot == FT_SCR_WEIGHT) { /* frozen linear weights go through the cache when it is on */
        int filled = 0;
        FT_TRY(ft_cuda_wcache_get(ft_cu(be), w, &buf, &filled));
        if (buf && filled) {
            *out = buf;
            return FT_OK;
        }
    }
    const int cached = buf != NULL; /* a cache entry claimed for this copy: valid once filled */
    if (!buf) FT_TRY(ft_cuda_scratch_get(be, slot, 2 * (n > 0 ? n : 1), &buf));
    ft_status st = FT_OK;
    if (w->dtype == FT_NF4 || ft_dtype_is_ggml(w->dtype)) {
        ft_cu(be)->wcache.n.on_compute++;
        st = ft_cuda_frozen_dequantize_on(ft_cu(be), buf, w, ft_cu_stream(be));
    } else if (w->dtype == FT_F32 || w->dtype == FT_F16) {
        ft_k_weight_to_bf16<<<ft_grid_1d(n, 256, 8LL * ft_cu(be)->sm_count * 8), 256, 0, ft_cu_stream(be)>>>(
            (act_t *)buf, ft_cu_view(w, ft_cu(be)->nf4_tables), n);
        st = ft_cuda_status(cudaGetLastError(), "launch of ft_k_weight_to_bf16", __func__, __FILE__, __LINE__);
    } else {
        st = FT_ERR(FT_E_UNSUPPORTED, "cuda: weights of dtype %s are not supported", ft_dtype_name(w->dtype));
    }
    if (st != FT_OK) {
        /* the entry was claimed but never filled: drop it, or the next product would read it as cached */
        if (cached) (void)ft_cuda_wcache_forget(ft_cu(be), ft_cuda_wcache_key(w), 1);
        return st;
    }
    *out = buf;
    return FT_OK;
}

ft_status ft_cuda_f32_to_bf16(ft_backend *be, void *dst, const float *src, int64_t n) {
    if (n <= 0) return FT_OK;
    ft_k_f32_to_bf16<<<ft_grid_1d(n, 256, 64LL * ft_cu(be)->sm_count), 256, 0, ft_cu_stream(be)>>>((act_t *)dst, src,
                                                                                                  n);
    FT_CUDA_LAUNCH_TRY("ft_k_f32_to_bf16");
    return FT_OK;
}

/* ---- op entries -------------------------------------------------------------------------------------- */

ft_status ft_cuda_linear(ft_backend *be, void *y, const void *x, const ft_weight *W, const ft_weight *bias,
                         int64_t N, int accumulate) {
    const int64_t out = W->rows, in = W->cols;
    if (N == 0 || out == 0) return FT_OK;
    if (N <= FT_LINEAR_FEW_ROWS && !ft_cu(be)->gemv_off) { /* decoding: read the codes or blocks */
        if (W->dtype == FT_NF4) {
            ft_backend_phase_note(be, FT_PHASE_GEMM);
            return ft_cuda_nf4_gemv(be, y, x, W, bias, N, accumulate);
        }
        /* a bias is read element by element there (ft_weight_at): a float one; GGUF biases are F32 */
        if (ft_dtype_is_ggml(W->dtype) && (!bias || !ft_dtype_is_ggml(bias->dtype))) {
            ft_backend_phase_note(be, FT_PHASE_GEMM);
            return ft_cuda_ggml_gemv(be, y, x, W, bias, N, accumulate);
        }
    }
    const void *w16 = NULL, *b16 = NULL;
    if (W->dtype != FT_BF16) ft_backend_phase_note(be, FT_PHASE_DEQUANT); /* timed apart from the product */
    FT_TRY(ft_cuda_weight_bf16(be, W, FT_SCR_WEIGHT, &w16));
    if (bias) FT_TRY(ft_cuda_weight_bf16(be, bias, FT_SCR_BIAS, &b16));
    ft_backend_phase_note(be, FT_PHASE_GEMM);
    /* y^T[out,N] = W[out,in] . x^T[in,N] (+ y^T) (+ bias) */
    FT_TRY(ft_cuda_gemm(be, 1, 0, out, N, in, 1.0f, w16, in, x, in, accumulate ? 1.0f : 0.0f, y, out, 0, b16));
    return ft_cuda_wcache_used(ft_cu(be)); /* a prefetch may now overwrite the copy it read */
}

ft_status ft_cuda_linear_bwd_x(ft_backend *be, void *dx, const void *dy, const ft_weight *W, int64_t N,
                               int accumulate) {
    const int64_t out = W->rows, in = W->cols;
    if (N == 0 || in == 0) return FT_OK;
    const void *w16 = NULL;
    if (W->dtype != FT_BF16) ft_backend_phase_note(be, FT_PHASE_DEQUANT);
    FT_TRY(ft_cuda_weight_bf16(be, W, FT_SCR_WEIGHT, &w16));
    ft_backend_phase_note(be, FT_PHASE_GEMM);
    /* dx^T[in,N] = W^T[in,out] . dy^T[out,N] */
    FT_TRY(ft_cuda_gemm(be, 0, 0, in, N, out, 1.0f, w16, in, dy, out, accumulate ? 1.0f : 0.0f, dx, in, 0, NULL));
    return ft_cuda_wcache_used(ft_cu(be));
}
