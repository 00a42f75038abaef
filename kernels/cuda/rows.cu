/* rows.cu: trainable token rows (PEFT trainable_token_indices) on CUDA: the embedding rows of trainable
 * tokens overwritten by their f32 rows and their gradient gathered back (rows_set / rows_sum), the
 * lm_head's logits columns of trainable tokens replaced and, after the cross-entropy, taken out and
 * zeroed (cols_set / cols_take). Contracts in kernels/ops.h; the reference is kernels/cpu/rows_cpu.c.
 *
 * The row lists (pos, CSR: k + 1 offsets, then M row indices) stay in device memory, so the host does
 * not know M: rows_set runs a fixed grid whose blocks stride over the M entries (each finds its token
 * by a binary search of the offsets) with threads over the C columns. rows_sum is one thread per
 * (token j, column c) walking j's list in order, s = 0; s += dx[p, c]; drows[j, c] += s: the CPU's
 * order, so both backends give the same bits, and no atomics, so the same inputs give the same bits
 * on every run. The column ops are one thread per (i, j) of the [n, k] block: small next to the
 * logits. A negative row or a column outside [0, V) is the caller's broken invariant: it is skipped
 * (cols_take writes NaN into g there, so nothing reads a stale value) and FT_CUERR_TOKEN_INDEX is
 * raised for ft_backend_sync to report. Plain loads and stores only: nothing beyond sm_80. */
#include "kernels/cuda/check.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_impl.h"

enum { FT_ROWS_THREADS = 256 };

/* The token j of list entry m: pos[j] <= m < pos[j + 1] (empty lists are skipped over). */
__device__ __forceinline__ int64_t ft_rows_token(const int32_t *pos, int64_t k, int64_t m) {
    int64_t lo = 0, hi = k;
    while (lo < hi) {
        const int64_t mid = (lo + hi) / 2;
        if (pos[mid + 1] <= m) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

/* x [N, C] act; rows f32 [k, C]; pos i32 [k + 1 + M] */
__global__ void ft_k_rows_set(act_t *x, const float *rows, const int32_t *pos, int64_t k, int64_t C,
                              unsigned *err) {
    const int64_t M = pos[k];
    const int32_t *list = pos + k + 1;
    for (int64_t m = blockIdx.x; m < M; m += gridDim.x) {
        const int64_t j = ft_rows_token(pos, k, m), p = list[m];
        if (p < 0) {
            if (threadIdx.x == 0) atomicOr(err, (unsigned)FT_CUERR_TOKEN_INDEX);
            continue;
        }
        const float *r = rows + j * C;
        act_t *o = x + p * C;
        for (int64_t c = threadIdx.x; c < C; c += blockDim.x) ft_st(o, c, r[c]);
    }
}

/* drows f32 [k, C] +=; dx [N, C] act */
__global__ void ft_k_rows_sum(float *drows, const act_t *dx, const int32_t *pos, int64_t k, int64_t C,
                              unsigned *err) {
    const int32_t *list = pos + k + 1;
    for (int64_t i = ft_gtid(); i < k * C; i += ft_gstride()) {
        const int64_t j = i / C, c = i % C;
        float s = 0.0f;
        for (int64_t m = pos[j]; m < pos[j + 1]; m++) {
            const int64_t p = list[m];
            if (p < 0) {
                atomicOr(err, (unsigned)FT_CUERR_TOKEN_INDEX);
                continue;
            }
            s += ft_ld(dx, p * C + c);
        }
        drows[i] += s;
    }
}

/* logits [n, V] act; t [n, k] act; cols i32 [k] */
__global__ void ft_k_cols_set(act_t *logits, const act_t *t, const int32_t *cols, int64_t n, int64_t V, int64_t k,
                              unsigned *err) {
    for (int64_t i = ft_gtid(); i < n * k; i += ft_gstride()) {
        const int64_t col = cols[i % k];
        if (col < 0 || col >= V) {
            atomicOr(err, (unsigned)FT_CUERR_TOKEN_INDEX);
            continue;
        }
        logits[i / k * V + col] = t[i];
    }
}

/* g [n, k] act; logits [n, V] act; cols i32 [k] */
__global__ void ft_k_cols_take(act_t *g, act_t *logits, const int32_t *cols, int64_t n, int64_t V, int64_t k,
                               unsigned *err) {
    for (int64_t i = ft_gtid(); i < n * k; i += ft_gstride()) {
        const int64_t col = cols[i % k];
        if (col < 0 || col >= V) {
            atomicOr(err, (unsigned)FT_CUERR_TOKEN_INDEX);
            ft_st(g, i, __int_as_float(0x7fc00000));
            continue;
        }
        act_t *l = logits + i / k * V + col;
        g[i] = *l;
        *l = __float2bfloat16_rn(0.0f);
    }
}

ft_status ft_cuda_rows_set(ft_backend *be, void *x, const float *rows, const int32_t *pos, int64_t k, int64_t C) {
    ft_backend_cuda *b = ft_cu(be);
    /* M is on the device: a few blocks per SM stride over the entries (a C-wide row each) */
    const unsigned grid = (unsigned)(8LL * b->sm_count);
    ft_k_rows_set<<<grid, FT_ROWS_THREADS, 0, b->stream>>>((act_t *)x, rows, pos, k, C, b->err);
    FT_CUDA_LAUNCH_TRY("ft_k_rows_set");
    return FT_OK;
}

ft_status ft_cuda_rows_sum(ft_backend *be, float *drows, const void *dx, const int32_t *pos, int64_t k, int64_t C) {
    ft_backend_cuda *b = ft_cu(be);
    const unsigned grid = ft_grid_1d(k * C, FT_ROWS_THREADS, 64LL * b->sm_count);
    ft_k_rows_sum<<<grid, FT_ROWS_THREADS, 0, b->stream>>>(drows, (const act_t *)dx, pos, k, C, b->err);
    FT_CUDA_LAUNCH_TRY("ft_k_rows_sum");
    return FT_OK;
}

ft_status ft_cuda_cols_set(ft_backend *be, void *logits, const void *t, const int32_t *cols, int64_t n, int64_t V,
                           int64_t k) {
    ft_backend_cuda *b = ft_cu(be);
    const unsigned grid = ft_grid_1d(n * k, FT_ROWS_THREADS, 64LL * b->sm_count);
    ft_k_cols_set<<<grid, FT_ROWS_THREADS, 0, b->stream>>>((act_t *)logits, (const act_t *)t, cols, n, V, k, b->err);
    FT_CUDA_LAUNCH_TRY("ft_k_cols_set");
    return FT_OK;
}

ft_status ft_cuda_cols_take(ft_backend *be, void *g, void *logits, const int32_t *cols, int64_t n, int64_t V,
                            int64_t k) {
    ft_backend_cuda *b = ft_cu(be);
    const unsigned grid = ft_grid_1d(n * k, FT_ROWS_THREADS, 64LL * b->sm_count);
    ft_k_cols_take<<<grid, FT_ROWS_THREADS, 0, b->stream>>>((act_t *)g, (act_t *)logits, cols, n, V, k, b->err);
    FT_CUDA_LAUNCH_TRY("ft_k_cols_take");
    return FT_OK;
}
