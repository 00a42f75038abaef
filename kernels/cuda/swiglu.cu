/* swiglu.cu: the SwiGLU gate of Llama/Qwen/Mistral MLPs, out = silu(gate) * up, and its backward,
 * elementwise over n BF16 values with float32 math (kernels/cpu/swiglu_cpu.c):
 *   silu(g) = g / (1 + exp(-g));  sig = 1 / (1 + exp(-g));
 *   dgate = dout * up * sig * (1 + g * (1 - sig));  dup = dout * silu(g).
 * expf is the accurate one (no fast-math), and 1 + exp(-g) overflowing to inf for g << 0 gives the
 * correct limits (silu -> -0, sig -> 0) instead of NaN. */
#include "kernels/cuda/check.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_impl.h"

__global__ void ft_k_swiglu(act_t *out, const act_t *gate, const act_t *up, int64_t n) {
    for (int64_t i = ft_gtid(); i < n; i += ft_gstride()) {
        const float g = ft_ld(gate, i);
        ft_st(out, i, g / (1.0f + expf(-g)) * ft_ld(up, i));
    }
}

__global__ void ft_k_swiglu_bwd(act_t *dgate, act_t *dup, const act_t *dout, const act_t *gate, const act_t *up,
                                int64_t n) {
    for (int64_t i = ft_gtid(); i < n; i += ft_gstride()) {
        const float g = ft_ld(gate, i), u = ft_ld(up, i), d = ft_ld(dout, i);
        const float sig = 1.0f / (1.0f + expf(-g));
        ft_st(dgate, i, d * u * sig * (1.0f + g * (1.0f - sig)));
        ft_st(dup, i, d * g * sig);
    }
}

ft_status ft_cuda_swiglu(ft_backend *be, void *out, const void *gate, const void *up, int64_t n) {
    if (n == 0) return FT_OK;
    ft_k_swiglu<<<ft_grid_1d(n, 256, 64LL * ft_cu(be)->sm_count), 256, 0, ft_cu_stream(be)>>>(
        (act_t *)out, (const act_t *)gate, (const act_t *)up, n);
    FT_CUDA_LAUNCH_TRY("ft_k_swiglu");
    return FT_OK;
}

ft_status ft_cuda_swiglu_bwd(ft_backend *be, void *dgate, void *dup, const void *dout, const void *gate,
                             const void *up, int64_t n) {
    if (n == 0) return FT_OK;
    ft_k_swiglu_bwd<<<ft_grid_1d(n, 256, 64LL * ft_cu(be)->sm_count), 256, 0, ft_cu_stream(be)>>>(
        (act_t *)dgate, (act_t *)dup, (const act_t *)dout, (const act_t *)gate, (const act_t *)up, n);
    FT_CUDA_LAUNCH_TRY("ft_k_swiglu_bwd");
    return FT_OK;
}
