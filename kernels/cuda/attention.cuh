/* attention.cuh: what the attention files share: the validated lower bound of a query's keys
 * (packed documents) and the tensor-core path's entry points (attention_tc.cu), which
 * attention.cu's op entries call when the shape and alignment allow. */
#ifndef FT_CUDA_ATTENTION_CUH
#define FT_CUDA_ATTENTION_CUH

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_impl.h"

/* lo(i) for query row `row` (= b*T + i), validated and clamped into [0, i]; err (may be NULL) gets
 * FT_CUERR_DOC_START when doc_start[row] was outside, so the kernels never read out of bounds. */
__device__ __forceinline__ int64_t ft_at_lo(const int32_t *doc_start, int64_t row, int64_t i, unsigned *err) {
    if (!doc_start) return 0;
    int64_t lo = doc_start[row];
    if (lo < 0 || lo > i) {
        if (err) atomicOr(err, (unsigned)FT_CUERR_DOC_START);
        lo = lo < 0 ? 0 : i;
    }
    return lo;
}

/* 1 when the tensor-core kernels take this problem: head_dim 64 or 128, every tensor 16-byte
 * aligned (rows are then too, since D % 8 == 0), their shared memory fits, and FT_CUDA_ATTN=simt
 * is not set. `ptrs` lists the tensors of the call (NULL entries ignored). */
int ft_attn_tc_ok(ft_backend_cuda *b, int64_t D, const void *const *ptrs, int nptrs, int bwd);

/* Forward and the dq / dk,dv passes of the backward on tensor cores (the layouts, masks and
 * outputs of ft_cuda_attention / _bwd; Dl[N,H] = rowsum(dout * out) is computed by the caller). */
ft_status ft_attn_tc_fwd(ft_backend_cuda *b, act_t *out, float *lse, const act_t *q, const act_t *k,
                         const act_t *v, const int32_t *doc_start, int64_t B, int64_t T, int64_t H, int64_t Hkv,
                         int64_t D, float scale);
ft_status ft_attn_tc_bwd(ft_backend_cuda *b, act_t *dq, act_t *dk, act_t *dv, const act_t *dout, const act_t *q,
                         const act_t *k, const act_t *v, const float *lse, const float *Dl,
                         const int32_t *doc_start, int64_t B, int64_t T, int64_t H, int64_t Hkv, int64_t D,
                         float scale);

/* The mma.sync kernels of attention_mma.cu, taken first: the same shapes and alignment rule as
 * the WMMA ones, not under FT_CUDA_ATTN=simt or =wmma, when their shared memory fits. */
int ft_attn_mma_ok(ft_backend_cuda *b, int64_t D, const void *const *ptrs, int nptrs, int bwd);
ft_status ft_attn_mma_fwd(ft_backend_cuda *b, act_t *out, float *lse, const act_t *q, const act_t *k,
                          const act_t *v, const int32_t *doc_start, int64_t B, int64_t T, int64_t H, int64_t Hkv,
                          int64_t D, float scale);
ft_status ft_attn_mma_bwd(ft_backend_cuda *b, act_t *dq, act_t *dk, act_t *dv, const act_t *dout, const act_t *q,
                          const act_t *k, const act_t *v, const float *lse, const float *Dl,
                          const int32_t *doc_start, int64_t B, int64_t T, int64_t H, int64_t Hkv, int64_t D,
                          float scale);

#endif
