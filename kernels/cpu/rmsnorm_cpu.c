/* rmsnorm_cpu.c: RMSNorm forward and input gradient (the weight is frozen), one row per token
 * (or per head, for Qwen3's q/k norm over [N*H, D]).
 *
 * Forward as transformers' LlamaRMSNorm in float32: var = mean(x^2) (summed here in double, then
 * rounded), rstd = 1 / sqrt(var + eps) in float, out = w * (x * rstd).
 * Backward of y_i = w_i x_i r with r = (mean(x^2) + eps)^-1/2:
 *   dx_i = r g_i - x_i r^3 / C * sum_j g_j x_j,  g = w * dout  (in double per row). */
#include <math.h>
#include <omp.h>

#include "kernels/cpu/cpu_impl.h"
#include "kernels/mem.h"

ft_status ft_cpu_rmsnorm(ft_backend *be, void *outv, float *rstd, const void *xv, const ft_weight *w, int64_t N,
                         int64_t C, float eps) {
    float *out = outv;      /* [N, C] */
    const float *x = xv;    /* [N, C] */
    float *wf;              /* [C] */
    FT_TRY(ft_cpu_weight_vec(w, &wf));
#pragma omp parallel for num_threads(ft_cpu_threads_for(be, N * C)) schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const float *xr = x + n * C;
        double ss = 0.0;
        for (int64_t c = 0; c < C; c++) ss += (double)xr[c] * xr[c];
        const float var = (float)(ss / (double)C);
        const float r = 1.0f / sqrtf(var + eps);
        float *o = out + n * C;
        for (int64_t c = 0; c < C; c++) o[c] = wf[c] * (xr[c] * r);
        if (rstd) rstd[n] = r;
    }
    ft_free(wf);
    return FT_OK;
}

ft_status ft_cpu_rmsnorm_bwd(ft_backend *be, void *dxv, const void *doutv, const void *xv, const ft_weight *w,
                             const float *rstd, int64_t N, int64_t C, int accumulate) {
    float *dx = dxv;            /* [N, C] */
    const float *dout = doutv;  /* [N, C] */
    const float *x = xv;        /* [N, C] */
    float *wf;                  /* [C] */
    FT_TRY(ft_cpu_weight_vec(w, &wf));
#pragma omp parallel for num_threads(ft_cpu_threads_for(be, N * C)) schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const float *xr = x + n * C, *dr = dout + n * C;
        const double r = rstd[n];
        double dot = 0.0;
        for (int64_t c = 0; c < C; c++) dot += (double)wf[c] * dr[c] * xr[c];
        const double k = r * r * r * dot / (double)C;
        float *o = dx + n * C;
        for (int64_t c = 0; c < C; c++) { /* the float result, then added: as a separate add would */
            const float g = (float)(r * ((double)wf[c] * dr[c]) - (double)xr[c] * k);
            o[c] = accumulate ? o[c] + g : g;
        }
    }
    ft_free(wf);
    return FT_OK;
}
