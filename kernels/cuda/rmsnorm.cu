/* rmsnorm.cu: RMSNorm forward and input gradient, one warp per row (a token's C values, or for
 * Qwen3's q/k-norm one head's D values: the caller passes N*H rows of D). The weight is frozen.
 *
 * Forward as kernels/cpu/rmsnorm_cpu.c: var = mean(x^2), rstd = 1 / sqrt(var + eps) (float32,
 * correctly rounded sqrt and division), out = w * (x * rstd) rounded to BF16; rstd[N] kept in f32
 * for the backward. Backward with g = w * dout:
 *   dx = rstd * g - x * rstd^3 / C * sum(g * x).
 * Sums are float32 over BF16 inputs (the CPU sums in double; the difference is ~1e-7 relative).
 * Rows whose length is a multiple of 8 with 16-byte aligned rows move 8 BF16 values per lane and
 * access (VEC = 8); others go one element at a time (VEC = 1). */
#include "kernels/cuda/check.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_impl.h"

template <int VEC>
__device__ __forceinline__ void ft_ld_vec(const act_t *p, float *v) {
    if (VEC == 8) {
        const uint4 u = *(const uint4 *)p;
        const __nv_bfloat162 *h = (const __nv_bfloat162 *)&u;
#pragma unroll
        for (int q = 0; q < 4; q++) {
            const float2 f = __bfloat1622float2(h[q]);
            v[2 * q] = f.x;
            v[2 * q + 1] = f.y;
        }
    } else {
        v[0] = __bfloat162float(p[0]);
    }
}

template <int VEC>
__device__ __forceinline__ void ft_st_vec(act_t *p, const float *v) {
    if (VEC == 8) {
        uint4 u;
        __nv_bfloat162 *h = (__nv_bfloat162 *)&u;
#pragma unroll
        for (int q = 0; q < 4; q++) h[q] = __floats2bfloat162_rn(v[2 * q], v[2 * q + 1]);
        *(uint4 *)p = u;
    } else {
        p[0] = __float2bfloat16_rn(v[0]);
    }
}

template <int VEC>
__global__ void ft_k_rmsnorm_fwd(act_t *out, float *rstd, const act_t *x, ft_cu_wview w, int64_t N, int64_t C,
                                 float eps) {
    const int lane = threadIdx.x % FT_WARP;
    const int64_t wpb = blockDim.x / FT_WARP;
    for (int64_t n = (int64_t)blockIdx.x * wpb + threadIdx.x / FT_WARP; n < N; n += (int64_t)gridDim.x * wpb) {
        const act_t *xr = x + n * C;
        float ss = 0.0f, v[VEC];
        for (int64_t c = (int64_t)lane * VEC; c < C; c += FT_WARP * VEC) {
            ft_ld_vec<VEC>(xr + c, v);
#pragma unroll
            for (int q = 0; q < VEC; q++) ss += v[q] * v[q];
        }
        ss = ft_warp_sum(ss);
        const float var = ss / (float)C;
        const float r = 1.0f / sqrtf(var + eps);
        act_t *o = out + n * C;
        for (int64_t c = (int64_t)lane * VEC; c < C; c += FT_WARP * VEC) {
            ft_ld_vec<VEC>(xr + c, v);
#pragma unroll
            for (int q = 0; q < VEC; q++) v[q] = ft_weight_at(w, c + q) * (v[q] * r);
            ft_st_vec<VEC>(o + c, v);
        }
        if (rstd && lane == 0) rstd[n] = r;
    }
}

template <int VEC>
__global__ void ft_k_rmsnorm_bwd(act_t *dx, const act_t *dout, const act_t *x, ft_cu_wview w, const float *rstd,
                                 int64_t N, int64_t C) {
    const int lane = threadIdx.x % FT_WARP;
    const int64_t wpb = blockDim.x / FT_WARP;
    for (int64_t n = (int64_t)blockIdx.x * wpb + threadIdx.x / FT_WARP; n < N; n += (int64_t)gridDim.x * wpb) {
        const act_t *xr = x + n * C, *dr = dout + n * C;
        float dot = 0.0f, xv[VEC], dv[VEC];
        for (int64_t c = (int64_t)lane * VEC; c < C; c += FT_WARP * VEC) {
            ft_ld_vec<VEC>(xr + c, xv);
            ft_ld_vec<VEC>(dr + c, dv);
#pragma unroll
            for (int q = 0; q < VEC; q++) dot += ft_weight_at(w, c + q) * dv[q] * xv[q];
        }
        dot = ft_warp_sum(dot);
        const float r = rstd[n];
        const float k = r * r * r * dot / (float)C;
        act_t *o = dx + n * C;
        for (int64_t c = (int64_t)lane * VEC; c < C; c += FT_WARP * VEC) {
            ft_ld_vec<VEC>(xr + c, xv);
            ft_ld_vec<VEC>(dr + c, dv);
#pragma unroll
            for (int q = 0; q < VEC; q++) xv[q] = r * (ft_weight_at(w, c + q) * dv[q]) - xv[q] * k;
            ft_st_vec<VEC>(o + c, xv);
        }
    }
}

static int ft_rows_vec8(int64_t C, const void *a, const void *b, const void *c) {
    return C % 8 == 0 && (uintptr_t)a % 16 == 0 && (uintptr_t)b % 16 == 0 && (!c || (uintptr_t)c % 16 == 0);
}

static ft_status ft_rms_check_w(const ft_weight *w) {
    if (w->dtype != FT_F32 && w->dtype != FT_F16 && w->dtype != FT_BF16)
        return FT_ERR(FT_E_UNSUPPORTED, "rmsnorm: weight dtype %s", ft_dtype_name(w->dtype));
    return FT_OK;
}

ft_status ft_cuda_rmsnorm(ft_backend *be, void *out, float *rstd, const void *x, const ft_weight *w, int64_t N,
                          int64_t C, float eps) {
    ft_backend_cuda *b = ft_cu(be);
    if (N == 0) return FT_OK;
    FT_TRY(ft_rms_check_w(w));
    FT_TRY(ft_cuda_load_settle(be)); /* weights streamed in are complete */
    const int threads = 256;
    const unsigned grid = ft_grid_1d(N, threads / FT_WARP, 64LL * b->sm_count);
    const ft_cu_wview wv = ft_cu_view(w, b->nf4_tables);
    if (ft_rows_vec8(C, out, x, NULL))
        ft_k_rmsnorm_fwd<8><<<grid, threads, 0, b->stream>>>((act_t *)out, rstd, (const act_t *)x, wv, N, C, eps);
    else
        ft_k_rmsnorm_fwd<1><<<grid, threads, 0, b->stream>>>((act_t *)out, rstd, (const act_t *)x, wv, N, C, eps);
    FT_CUDA_LAUNCH_TRY("ft_k_rmsnorm_fwd");
    return FT_OK;
}

ft_status ft_cuda_rmsnorm_bwd(ft_backend *be, void *dx, const void *dout, const void *x, const ft_weight *w,
                              const float *rstd, int64_t N, int64_t C) {
    ft_backend_cuda *b = ft_cu(be);
    if (N == 0) return FT_OK;
    FT_TRY(ft_rms_check_w(w));
    FT_TRY(ft_cuda_load_settle(be)); /* weights streamed in are complete */
    const int threads = 256;
    const unsigned grid = ft_grid_1d(N, threads / FT_WARP, 64LL * b->sm_count);
    const ft_cu_wview wv = ft_cu_view(w, b->nf4_tables);
    if (ft_rows_vec8(C, dx, dout, x))
        ft_k_rmsnorm_bwd<8><<<grid, threads, 0, b->stream>>>((act_t *)dx, (const act_t *)dout, (const act_t *)x, wv,
                                                              rstd, N, C);
    else
        ft_k_rmsnorm_bwd<1><<<grid, threads, 0, b->stream>>>((act_t *)dx, (const act_t *)dout, (const act_t *)x, wv,
                                                              rstd, N, C);
    FT_CUDA_LAUNCH_TRY("ft_k_rmsnorm_bwd");
    return FT_OK;
}
