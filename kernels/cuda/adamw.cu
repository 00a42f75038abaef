/* adamw.cu: one AdamW step over the single f32 LoRA parameter vector (every adapter tensor of the
 * model lives in one allocation, trainer/lora.c), in one launch, reading its scalars (ops.h
 * FT_ADAMW_*) from device memory so a step needs no host arguments and can be graph-captured.
 *
 * Bit-for-bit the float32 operation sequence of kernels/cpu/adamw_cpu.c (torch.optim.AdamW's
 * single-tensor update): each product, sum, quotient and square root is an explicit _rn intrinsic,
 * so nvcc cannot contract a multiply-add into an FMA and round differently; the step scalars that
 * torch and the CPU derive in double (1 - lr*wd, lr/bc1, sqrt(bc2), 1 - b1, 1 - b2) are derived in
 * double here too, once per block.
 *   p *= 1 - lr*wd;  g *= gscale;  m = m + (1 - b1)(g - m);  v = v*b2 + (1 - b2) g g;
 *   p += -(lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps). */
#include "kernels/cuda/check.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_impl.h"

__global__ void ft_k_adamw(float *p, const float *g, float *m, float *v, int64_t n, const float *sc) {
    __shared__ float k[8]; /* decay, w1, w2, step, bc2s, b2, eps, gscale */
    if (threadIdx.x == 0) {
        const double lr = sc[FT_ADAMW_LR], wd = sc[FT_ADAMW_WD];
        k[0] = (float)(1.0 - lr * wd);
        k[1] = (float)(1.0 - (double)sc[FT_ADAMW_BETA1]);
        k[2] = (float)(1.0 - (double)sc[FT_ADAMW_BETA2]);
        k[3] = (float)(lr / (double)sc[FT_ADAMW_BC1]);
        k[4] = (float)sqrt((double)sc[FT_ADAMW_BC2]);
        k[5] = sc[FT_ADAMW_BETA2];
        k[6] = sc[FT_ADAMW_EPS];
        k[7] = sc[FT_ADAMW_GSCALE];
    }
    __syncthreads();
    const float decay = k[0], w1 = k[1], w2 = k[2], step = k[3], bc2s = k[4], b2 = k[5], eps = k[6], gs = k[7];
    for (int64_t i = ft_gtid(); i < n; i += ft_gstride()) {
        const float gi = __fmul_rn(g[i], gs);
        const float pi = __fmul_rn(p[i], decay);
        const float m0 = m[i];
        const float mi = __fadd_rn(m0, __fmul_rn(w1, __fsub_rn(gi, m0)));
        const float vi = __fadd_rn(__fmul_rn(v[i], b2), __fmul_rn(__fmul_rn(w2, gi), gi));
        const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), bc2s), eps);
        m[i] = mi;
        v[i] = vi;
        p[i] = __fadd_rn(pi, __fdiv_rn(__fmul_rn(-step, mi), denom));
    }
}

ft_status ft_cuda_adamw(ft_backend *be, float *p, const float *g, float *m, float *v, int64_t n,
                        const float *scalars) {
    if (n == 0) return FT_OK;
    ft_k_adamw<<<ft_grid_1d(n, 256, 32LL * ft_cu(be)->sm_count), 256, 0, ft_cu_stream(be)>>>(p, g, m, v, n,
                                                                                            scalars);
    FT_CUDA_LAUNCH_TRY("ft_k_adamw");
    return FT_OK;
}

/* One thread: the clipping factor in double, as kernels/cpu/adamw_cpu.c (IEEE double sqrt and
 * division are correctly rounded on the device too, so the f32 factor is bit-identical). */
__global__ void ft_k_clip_factor(float *scalars, const float *sumsq, double max_norm) {
    double gscale = 1.0;
    if (max_norm > 0) {
        const double c = max_norm / (sqrt((double)*sumsq) + 1e-6);
        if (c < 1.0) gscale = c;
    }
    scalars[FT_ADAMW_GSCALE] = (float)gscale;
}

ft_status ft_cuda_clip_factor(ft_backend *be, float *scalars, const float *sumsq, double max_norm) {
    ft_k_clip_factor<<<1, 1, 0, ft_cu_stream(be)>>>(scalars, sumsq, max_norm);
    FT_CUDA_LAUNCH_TRY("ft_k_clip_factor");
    return FT_OK;
}
