/* rmsnorm.cu: RMSNorm forward and input gradient, one warp per row (a token's C values, or for
 * Qwen3's q/k-norm one head's D values: the caller passes N*H rows of D). The weight is frozen.
 *
 * Forward as kernels/cpu/rmsnorm_cpu.c: var = mean(x^2), rstd = 1 / sqrt(var + eps) (float32,
 * correctly rounded sqrt and division), out = w * (x * rstd) rounded to BF16; rstd[N] kept in f32
 * for the backward. Backward with g = w * dout:
 *   dx (=, or += with accumulate) rstd * g - x * rstd^3 / C * sum(g * x).
 * Sums are float32 over BF16 inputs (the CPU sums in double; the difference is ~1e-7 relative).
 * Rows whose length is a multiple of 8 with 16-byte aligned rows move 8 BF16 values per lane and
 * access (VEC = 8); others go one element at a time (VEC = 1). */
#include "kernels/cuda/check.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_impl.h"

template <int VEC>
__global__ void ft_k_rmsnorm_fwd(act_t *out, float *rstd, const act_t *x, ft_cu_wview w, int wvec, int64_t N,
                                 int64_t C, float eps) {
    const int lane = threadIdx.x % FT_WARP;
    const int64_t wpb = blockDim.x / FT_WARP;
    for (int64_t n = (int64_t)blockIdx.x * wpb + threadIdx.x / FT_WARP; n < N; n += (int64_t)gridDim.x * wpb) {
        const act_t *xr = x + n * C;
        float ss = 0.0f, v[VEC], wv[VEC];
#pragma unroll 4
        for (int64_t c = (int64_t)lane * VEC; c < C; c += FT_WARP * VEC) {
            ft_ld_vec<VEC>(xr + c, v);
#pragma unroll
            for (int q = 0; q < VEC; q++) ss += v[q] * v[q];
        }
        ss = ft_warp_sum(ss);
        const float var = ss / (float)C;
        const float r = 1.0f / sqrtf(var + eps);
        act_t *o = out + n * C;
#pragma unroll 4
        for (int64_t c = (int64_t)lane * VEC; c < C; c += FT_WARP * VEC) {
            ft_ld_vec<VEC>(xr + c, v);
            ft_weight_vec<VEC>(w, c, wvec, wv);
#pragma unroll
            for (int q = 0; q < VEC; q++) v[q] = wv[q] * (v[q] * r);
            ft_st_vec<VEC>(o + c, v);
        }
        if (rstd && lane == 0) rstd[n] = r;
    }
}

template <int VEC, int ACC>
__global__ void ft_k_rmsnorm_bwd(act_t *dx, const act_t *dout, const act_t *x, ft_cu_wview w, int wvec,
                                 const float *rstd, int64_t N, int64_t C) {
    const int lane = threadIdx.x % FT_WARP;
    const int64_t wpb = blockDim.x / FT_WARP;
    for (int64_t n = (int64_t)blockIdx.x * wpb + threadIdx.x / FT_WARP; n < N; n += (int64_t)gridDim.x * wpb) {
        const act_t *xr = x + n * C, *dr = dout + n * C;
        float dot = 0.0f, xv[VEC], dv[VEC], av[VEC], wv[VEC];
#pragma unroll 4
        for (int64_t c = (int64_t)lane * VEC; c < C; c += FT_WARP * VEC) {
            ft_ld_vec<VEC>(xr + c, xv);
            ft_ld_vec<VEC>(dr + c, dv);
            ft_weight_vec<VEC>(w, c, wvec, wv);
#pragma unroll
            for (int q = 0; q < VEC; q++) dot += wv[q] * dv[q] * xv[q];
        }
        dot = ft_warp_sum(dot);
        const float r = rstd[n];
        const float k = r * r * r * dot / (float)C;
        act_t *o = dx + n * C;
#pragma unroll 4
        for (int64_t c = (int64_t)lane * VEC; c < C; c += FT_WARP * VEC) {
            ft_ld_vec<VEC>(xr + c, xv);
            ft_ld_vec<VEC>(dr + c, dv);
            if (ACC) ft_ld_vec<VEC>(o + c, av);
            ft_weight_vec<VEC>(w, c, wvec, wv);
#pragma unroll
            for (int q = 0; q < VEC; q++) {
                xv[q] = r * (wv[q] * dv[q]) - xv[q] * k;
                if (ACC) xv[q] += av[q]; /* the residual gradient: rounded to BF16 once, with the sum */
            }
            ft_st_vec<VEC>(o + c, xv);
        }
    }
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
    const int wvec = ft_wview_vec8(wv);
    if (ft_vec8_ok(C, out, x))
        ft_k_rmsnorm_fwd<8><<<grid, threads, 0, b->stream>>>((act_t *)out, rstd, (const act_t *)x, wv, wvec, N, C, eps);
    else
        ft_k_rmsnorm_fwd<1><<<grid, threads, 0, b->stream>>>((act_t *)out, rstd, (const act_t *)x, wv, 0, N, C, eps);
    FT_CUDA_LAUNCH_TRY("ft_k_rmsnorm_fwd");
    return FT_OK;
}

ft_status ft_cuda_rmsnorm_bwd(ft_backend *be, void *dx, const void *dout, const void *x, const ft_weight *w,
                              const float *rstd, int64_t N, int64_t C, int accumulate) {
    ft_backend_cuda *b = ft_cu(be);
    if (N == 0) return FT_OK;
    FT_TRY(ft_rms_check_w(w));
    FT_TRY(ft_cuda_load_settle(be)); /* weights streamed in are complete */
    const int threads = 256;
    const unsigned grid = ft_grid_1d(N, threads / FT_WARP, 64LL * b->sm_count);
    const ft_cu_wview wv = ft_cu_view(w, b->nf4_tables);
    const int wvec = ft_wview_vec8(wv);
    act_t *o = (act_t *)dx;
    const act_t *dy = (const act_t *)dout, *xi = (const act_t *)x;
    const int v8 = ft_vec8_ok(C, dx, dout, x);
    if (v8 && accumulate) ft_k_rmsnorm_bwd<8, 1><<<grid, threads, 0, b->stream>>>(o, dy, xi, wv, wvec, rstd, N, C);
    else if (v8) ft_k_rmsnorm_bwd<8, 0><<<grid, threads, 0, b->stream>>>(o, dy, xi, wv, wvec, rstd, N, C);
    else if (accumulate) ft_k_rmsnorm_bwd<1, 1><<<grid, threads, 0, b->stream>>>(o, dy, xi, wv, wvec, rstd, N, C);
    else ft_k_rmsnorm_bwd<1, 0><<<grid, threads, 0, b->stream>>>(o, dy, xi, wv, wvec, rstd, N, C);
    FT_CUDA_LAUNCH_TRY("ft_k_rmsnorm_bwd");
    return FT_OK;
}
