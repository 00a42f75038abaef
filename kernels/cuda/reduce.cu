/* reduce.cu: elementwise and reduction ops: residual add (BF16), dropout (BF16), and on f32
 * vectors the gradient norm's sum of squares and scaling (kernels/cpu/reduce_cpu.c).
 *
 * dropout draws keep(seed, i) from the counter-based generator of kernels/rng.h (the same function
 * the CPU calls, compiled for the device through FT_HD), so both backends, and a recomputation,
 * draw the same mask (one draw per aligned group of 4 elements); kept values are multiplied by
 * 1 / (1 - p) in float, as torch.
 * sumsq is deterministic: a grid whose size depends only on n sums fixed strided subsets in double
 * per thread, blocks reduce in a fixed butterfly order into per-block partials, and one block adds
 * the partials in index order: *out = float(double(*out) + total), as the CPU rounds. Nothing uses
 * atomics, so the global gradient norm is bit-identical run to run. */
#include "kernels/cuda/check.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_impl.h"

extern "C" {
#include "kernels/rng.h"
}

enum { FT_SUMSQ_THREADS = 256, FT_SUMSQ_MAX_BLOCKS = 1024 };

/* add and dropout move 8 BF16 values per 16-byte access where n and the pointers allow (VEC 8) */
template <int VEC>
__global__ void ft_k_add(act_t *y, const act_t *x, int64_t n) {
    float a[VEC], b[VEC];
    for (int64_t i = ft_gtid() * VEC; i < n; i += ft_gstride() * VEC) {
        ft_ld_vec<VEC>(y + i, a);
        ft_ld_vec<VEC>(x + i, b);
#pragma unroll
        for (int q = 0; q < VEC; q++) a[q] += b[q];
        ft_st_vec<VEC>(y + i, a);
    }
}

/* VEC 8 covers two whole groups of 4 (i is a multiple of 8): two draws for 8 elements */
template <int VEC>
__global__ void ft_k_dropout(act_t *out, const act_t *in, int64_t n, uint32_t thr, float s, uint64_t seed) {
    float v[VEC];
    for (int64_t i = ft_gtid() * VEC; i < n; i += ft_gstride() * VEC) {
        ft_ld_vec<VEC>(in + i, v);
        if (VEC == 8) {
            const uint64_t g = (uint64_t)i >> 2, b0 = ft_dropout_bits(seed, g), b1 = ft_dropout_bits(seed, g + 1);
#pragma unroll
            for (int q = 0; q < VEC; q++) v[q] = ft_dropout_keep_in(q < 4 ? b0 : b1, q & 3, thr) ? v[q] * s : 0.0f;
        } else {
#pragma unroll
            for (int q = 0; q < VEC; q++) v[q] = ft_dropout_keep(seed, (uint64_t)(i + q), thr) ? v[q] * s : 0.0f;
        }
        ft_st_vec<VEC>(out + i, v);
    }
}

__global__ void ft_k_sumsq_partial(double *part, const float *x, int64_t n) {
    __shared__ double sh[32];
    double s = 0.0;
    for (int64_t i = ft_gtid(); i < n; i += ft_gstride()) s += (double)x[i] * (double)x[i];
    s = ft_block_sum(s, sh);
    if (threadIdx.x == 0) part[blockIdx.x] = s;
}

/* One block: out += sum(part[np]) in a fixed order. */
__global__ void ft_k_sumsq_final(float *out, const double *part, int64_t np) {
    __shared__ double sh[32];
    double s = 0.0;
    for (int64_t i = threadIdx.x; i < np; i += blockDim.x) s += part[i];
    s = ft_block_sum(s, sh);
    if (threadIdx.x == 0) *out = (float)((double)*out + s);
}

__global__ void ft_k_scale(float *x, int64_t n, float s) {
    for (int64_t i = ft_gtid(); i < n; i += ft_gstride()) x[i] *= s;
}

ft_status ft_cuda_add(ft_backend *be, void *y, const void *x, int64_t n) {
    if (n == 0) return FT_OK;
    const int64_t cap = 64LL * ft_cu(be)->sm_count;
    if (ft_vec8_ok(n, y, x))
        ft_k_add<8><<<ft_grid_1d(n / 8, 256, cap), 256, 0, ft_cu_stream(be)>>>((act_t *)y, (const act_t *)x, n);
    else
        ft_k_add<1><<<ft_grid_1d(n, 256, cap), 256, 0, ft_cu_stream(be)>>>((act_t *)y, (const act_t *)x, n);
    FT_CUDA_LAUNCH_TRY("ft_k_add");
    return FT_OK;
}

ft_status ft_cuda_dropout(ft_backend *be, void *out, const void *in, int64_t n, float p, uint64_t seed) {
    if (n == 0) return FT_OK;
    if (p == 0.0f) {
        if (out != in) FT_CUDA_TRY(cudaMemcpyAsync(out, in, (size_t)n * 2, cudaMemcpyDeviceToDevice, ft_cu_stream(be)));
        return FT_OK;
    }
    const float s = 1.0f / (1.0f - p);
    const uint32_t thr = ft_dropout_threshold(p);
    const int64_t cap = 64LL * ft_cu(be)->sm_count;
    if (ft_vec8_ok(n, out, in))
        ft_k_dropout<8><<<ft_grid_1d(n / 8, 256, cap), 256, 0, ft_cu_stream(be)>>>((act_t *)out, (const act_t *)in, n,
                                                                                   thr, s, seed);
    else
        ft_k_dropout<1><<<ft_grid_1d(n, 256, cap), 256, 0, ft_cu_stream(be)>>>((act_t *)out, (const act_t *)in, n, thr,
                                                                               s, seed);
    FT_CUDA_LAUNCH_TRY("ft_k_dropout");
    return FT_OK;
}

ft_status ft_cuda_sumsq(ft_backend *be, float *out, const float *x, int64_t n) {
    const unsigned nb = ft_grid_1d(n, FT_SUMSQ_THREADS * 8, FT_SUMSQ_MAX_BLOCKS);
    void *part = NULL;
    FT_TRY(ft_cuda_scratch_get(be, FT_SCR_REDUCE, (int64_t)nb * 8, &part));
    ft_k_sumsq_partial<<<nb, FT_SUMSQ_THREADS, 0, ft_cu_stream(be)>>>((double *)part, x, n);
    FT_CUDA_LAUNCH_TRY("ft_k_sumsq_partial");
    ft_k_sumsq_final<<<1, 1024, 0, ft_cu_stream(be)>>>(out, (const double *)part, nb);
    FT_CUDA_LAUNCH_TRY("ft_k_sumsq_final");
    return FT_OK;
}

ft_status ft_cuda_scale(ft_backend *be, float *x, int64_t n, float s) {
    if (n == 0) return FT_OK;
    ft_k_scale<<<ft_grid_1d(n, 256, 64LL * ft_cu(be)->sm_count), 256, 0, ft_cu_stream(be)>>>(x, n, s);
    FT_CUDA_LAUNCH_TRY("ft_k_scale");
    return FT_OK;
}
