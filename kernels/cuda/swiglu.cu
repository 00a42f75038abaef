/* swiglu.cu: the SwiGLU gate of Llama/Qwen/Mistral MLPs, out = silu(gate) * up, and its backward,
 * elementwise over n BF16 values with float32 math (kernels/cpu/swiglu_cpu.c):
 *   silu(g) = g / (1 + exp(-g));  sig = 1 / (1 + exp(-g));
 *   dgate = dout * up * sig * (1 + g * (1 - sig));  dup = dout * silu(g).
 * expf is the accurate one (no fast-math), and 1 + exp(-g) overflowing to inf for g << 0 gives the
 * correct limits (silu -> -0, sig -> 0) instead of NaN.
 * These are the largest elementwise tensors of a step ([N, intermediate], 3.5x the hidden width):
 * the forward (run twice with recomputation) and the backward move half of a layer's elementwise
 * bytes, so each thread moves 8 values per 16-byte access (VEC 8) whenever n and the pointers allow,
 * one at a time otherwise. The arithmetic per element is the same either way. */
#include "kernels/cuda/check.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_impl.h"

template <int VEC>
__global__ void ft_k_swiglu(act_t *out, const act_t *gate, const act_t *up, int64_t n) {
    float g[VEC], u[VEC];
    for (int64_t i = ft_gtid() * VEC; i < n; i += ft_gstride() * VEC) {
        ft_ld_vec<VEC>(gate + i, g);
        ft_ld_vec<VEC>(up + i, u);
#pragma unroll
        for (int q = 0; q < VEC; q++) g[q] = g[q] / (1.0f + expf(-g[q])) * u[q];
        ft_st_vec<VEC>(out + i, g);
    }
}

template <int VEC>
__global__ void ft_k_swiglu_bwd(act_t *dgate, act_t *dup, const act_t *dout, const act_t *gate, const act_t *up,
                                int64_t n) {
    float g[VEC], u[VEC], d[VEC];
    for (int64_t i = ft_gtid() * VEC; i < n; i += ft_gstride() * VEC) {
        ft_ld_vec<VEC>(gate + i, g);
        ft_ld_vec<VEC>(up + i, u);
        ft_ld_vec<VEC>(dout + i, d);
#pragma unroll
        for (int q = 0; q < VEC; q++) {
            const float sig = 1.0f / (1.0f + expf(-g[q]));
            u[q] = d[q] * u[q] * sig * (1.0f + g[q] * (1.0f - sig)); /* dgate */
            g[q] = d[q] * g[q] * sig;                                /* dup */
        }
        ft_st_vec<VEC>(dgate + i, u);
        ft_st_vec<VEC>(dup + i, g);
    }
}

ft_status ft_cuda_swiglu(ft_backend *be, void *out, const void *gate, const void *up, int64_t n) {
    if (n == 0) return FT_OK;
    const int64_t cap = 64LL * ft_cu(be)->sm_count;
    if (ft_vec8_ok(n, out, gate, up))
        ft_k_swiglu<8><<<ft_grid_1d(n / 8, 256, cap), 256, 0, ft_cu_stream(be)>>>((act_t *)out, (const act_t *)gate,
                                                                                  (const act_t *)up, n);
    else
        ft_k_swiglu<1><<<ft_grid_1d(n, 256, cap), 256, 0, ft_cu_stream(be)>>>((act_t *)out, (const act_t *)gate,
                                                                              (const act_t *)up, n);
    FT_CUDA_LAUNCH_TRY("ft_k_swiglu");
    return FT_OK;
}

ft_status ft_cuda_swiglu_bwd(ft_backend *be, void *dgate, void *dup, const void *dout, const void *gate,
                             const void *up, int64_t n) {
    if (n == 0) return FT_OK;
    const int64_t cap = 64LL * ft_cu(be)->sm_count;
    if (ft_vec8_ok(n, dgate, dup, dout, gate, up))
        ft_k_swiglu_bwd<8><<<ft_grid_1d(n / 8, 256, cap), 256, 0, ft_cu_stream(be)>>>(
            (act_t *)dgate, (act_t *)dup, (const act_t *)dout, (const act_t *)gate, (const act_t *)up, n);
    else
        ft_k_swiglu_bwd<1><<<ft_grid_1d(n, 256, cap), 256, 0, ft_cu_stream(be)>>>(
            (act_t *)dgate, (act_t *)dup, (const act_t *)dout, (const act_t *)gate, (const act_t *)up, n);
    FT_CUDA_LAUNCH_TRY("ft_k_swiglu_bwd");
    return FT_OK;
}
