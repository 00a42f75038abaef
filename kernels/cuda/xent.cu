/* xent.cu: softmax cross-entropy over the vocabulary with ignored labels (label < 0), loss and
 * d(loss)/d(logits) fused, one block per row (kernels/cpu/xent_cpu.c; ops.h ft_op_xent).
 *
 * The caller chunks the rows (model.c bounds the logits buffer), so full [N, V] logits never
 * exist. Per row, in float32 over the BF16 logits: one pass of online max / sum-of-exp per thread,
 * combined across the block in a fixed order, lse = max + log(sum), loss = lse - logit[label];
 * if grad_scale != 0 a second pass overwrites the row with grad_scale * (softmax - onehot) (zeros
 * for ignored rows); grad_scale == 0 leaves the logits untouched.
 * Loss sum and count: each row writes its loss and a 0/1 count into a scratch array; one block then
 * adds them in row order in double and accumulates into the device scalars
 * (*loss_sum = float(double(*loss_sum) + total)), so the result is deterministic, needs no host
 * round trip and no atomics. A label >= V is the caller's broken invariant: the row is treated as
 * ignored and FT_CUERR_XENT_LABEL raised for ft_backend_sync to report. */
#include "kernels/cuda/check.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_impl.h"

enum { FT_XENT_THREADS = 512 };

__global__ void ft_k_xent_rows(double *row_loss, double *row_cnt, act_t *logits, const int32_t *labels, int64_t n,
                               int64_t V, float grad_scale, unsigned *err) {
    __shared__ float shf[32];
    for (int64_t r = blockIdx.x; r < n; r += gridDim.x) {
        act_t *l = logits + r * V;
        int32_t y = labels[r];
        if (y >= V) {
            if (threadIdx.x == 0) atomicOr(err, (unsigned)FT_CUERR_XENT_LABEL);
            y = -1;
        }
        if (y < 0) {
            if (grad_scale != 0.0f)
                for (int64_t j = threadIdx.x; j < V; j += blockDim.x) l[j] = __float2bfloat16_rn(0.0f);
            if (threadIdx.x == 0) row_loss[r] = 0.0, row_cnt[r] = 0.0;
            continue;
        }
        float m = -INFINITY, s = 0.0f;
        for (int64_t j = threadIdx.x; j < V; j += blockDim.x) {
            const float v = ft_ld(l, j);
            if (v > m) {
                s = s * expf(m - v) + 1.0f;
                m = v;
            } else if (v != -INFINITY) { /* exp(-inf - -inf) would be NaN */
                s += expf(v - m);
            }
        }
        const float mb = ft_block_max(m, shf);
        const float sb = ft_block_sum(m == -INFINITY ? 0.0f : s * expf(m - mb), shf);
        const float lse = mb + logf(sb);
        const float ly = ft_ld(l, y);
        __syncthreads(); /* every thread has read logit[label] before the row is overwritten */
        if (threadIdx.x == 0) {
            row_loss[r] = (double)lse - (double)ly;
            row_cnt[r] = 1.0;
        }
        if (grad_scale != 0.0f) {
            for (int64_t j = threadIdx.x; j < V; j += blockDim.x) {
                const float p = expf(ft_ld(l, j) - lse);
                ft_st(l, j, grad_scale * (j == y ? p - 1.0f : p));
            }
        }
        __syncthreads(); /* the next row's reductions reuse shf */
    }
}

__global__ void ft_k_xent_total(float *loss_sum, float *count, const double *row_loss, const double *row_cnt,
                                int64_t n) {
    __shared__ double sh[32];
    double a = 0.0, c = 0.0;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
        a += row_loss[i];
        c += row_cnt[i];
    }
    a = ft_block_sum(a, sh);
    c = ft_block_sum(c, sh);
    if (threadIdx.x == 0) {
        *loss_sum = (float)((double)*loss_sum + a);
        if (count) *count = (float)((double)*count + c);
    }
}

ft_status ft_cuda_xent(ft_backend *be, float *loss_sum, float *count, void *logits, const int32_t *labels,
                       int64_t n, int64_t V, float grad_scale) {
    ft_backend_cuda *b = ft_cu(be);
    if (n == 0) return FT_OK;
    void *scr = NULL;
    FT_TRY(ft_cuda_scratch_get(be, FT_SCR_REDUCE, 16 * n, &scr));
    double *row_loss = (double *)scr, *row_cnt = row_loss + n;
    const unsigned grid = (unsigned)(n < 1048576 ? n : 1048576);
    ft_k_xent_rows<<<grid, FT_XENT_THREADS, 0, b->stream>>>(row_loss, row_cnt, (act_t *)logits, labels, n, V,
                                                            grad_scale, b->err);
    FT_CUDA_LAUNCH_TRY("ft_k_xent_rows");
    ft_k_xent_total<<<1, 1024, 0, b->stream>>>(loss_sum, count, row_loss, row_cnt, n);
    FT_CUDA_LAUNCH_TRY("ft_k_xent_total");
    return FT_OK;
}
