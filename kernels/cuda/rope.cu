/* rope.cu: rotary position embedding in place on x[N, nh, D] (BF16), Hugging Face layout: pairs
 * (i, i + D/2) rotated by angle = float(pos[n]) * inv_freq[i].
 *
 * As kernels/cpu/rope_cpu.c: the angle is one float32 product; its cos and sin are taken in double
 * precision and rounded to float (so positions near 10^5 lose nothing to float range reduction);
 * the rotation is float32 and rounds to BF16 once. inverse != 0 rotates by -angle (the backward).
 * Llama-3 frequency scaling lives in inv_freq (kernels/rope.h); Qwen3's q/k-norm is ft_op_rmsnorm
 * over [N*H, D] before this op. One thread per (token, i) computes the angle once and rotates that
 * pair in every head; consecutive threads take consecutive i, so each head's row is coalesced. */
#include "kernels/cuda/check.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_impl.h"

__global__ void ft_k_rope(act_t *x, const int32_t *pos, const float *inv_freq, int64_t N, int64_t nh, int64_t D,
                          int inverse) {
    const int64_t half = D / 2, total = N * half;
    for (int64_t t = ft_gtid(); t < total; t += ft_gstride()) {
        const int64_t n = t / half, i = t % half;
        const float ang = (float)pos[n] * inv_freq[i];
        double sd, cd;
        sincos((double)ang, &sd, &cd);
        const float c = (float)cd, s = inverse ? -(float)sd : (float)sd;
        act_t *row = x + n * nh * D;
        for (int64_t h = 0; h < nh; h++, row += D) {
            const float a = __bfloat162float(row[i]), b = __bfloat162float(row[i + half]);
            row[i] = __float2bfloat16_rn(a * c - b * s);
            row[i + half] = __float2bfloat16_rn(b * c + a * s);
        }
    }
}

ft_status ft_cuda_rope(ft_backend *be, void *x, const int32_t *pos, const float *inv_freq, int64_t N, int64_t nh,
                       int64_t D, int inverse) {
    ft_backend_cuda *b = ft_cu(be);
    const int64_t total = N * (D / 2);
    if (total == 0 || nh == 0) return FT_OK;
    ft_k_rope<<<ft_grid_1d(total, 256, 32LL * b->sm_count), 256, 0, b->stream>>>((act_t *)x, pos, inv_freq, N, nh, D,
                                                                                inverse);
    FT_CUDA_LAUNCH_TRY("ft_k_rope");
    return FT_OK;
}
