/* dora_cpu.c: DoRA's three ops (PEFT use_dora; contracts in kernels/ops.h) on the CPU reference
 * backend: the per-row weight norm ||W + scale B A||, the output's row scale mag / wn (plus the bias,
 * which DoRA leaves unscaled), and the magnitude's gradient. Activations are f32 here; the norm and
 * the gradient's column sums are taken in double, the reference's habit (the CUDA backend sums in
 * f32: kernels/cuda/dora.cu). */
#include <math.h>
#include <omp.h>

#include "kernels/cpu/cpu_impl.h"
#include "kernels/mem.h"

/* Row by row: W's row decoded as the linear reads it, plus scale * (B A)'s row, squared and summed. */
ft_status ft_cpu_dora_norm(ft_backend *be, float *wn, const ft_weight *W, const float *A, const float *B, int64_t R,
                           float scale) {
    const int64_t out = W->rows, in = W->cols;
    const int nt = ft_cpu_threads_for(be, out * in * (R + 1));
    float *rows;
    FT_TRY(ft_malloc((void **)&rows, (size_t)nt * (size_t)in * sizeof *rows, "DoRA norm rows"));
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t o = 0; o < out; o++) {
        float *w = rows + (int64_t)omp_get_thread_num() * in;
        ft_cpu_weight_f32(W, o * in, in, w);
        double ss = 0.0;
        for (int64_t i = 0; i < in; i++) {
            double d = 0.0;
            for (int64_t r = 0; r < R; r++) d += (double)B[o * R + r] * A[r * in + i];
            const double v = (double)w[i] + (double)scale * d;
            ss += v * v;
        }
        wn[o] = (float)sqrt(ss);
    }
    ft_free(rows);
    return FT_OK;
}

ft_status ft_cpu_dora_scale(ft_backend *be, void *yv, const void *zv, const float *mag, const float *wn, float shift,
                            const ft_weight *bias, int64_t N, int64_t out, int accumulate) {
    float *y = yv; /* [N, out] */
    const float *z = zv;
    float *b = NULL;
    if (bias) FT_TRY(ft_cpu_weight_vec(bias, &b));
#pragma omp parallel for num_threads(ft_cpu_threads_for(be, N * out)) schedule(static)
    for (int64_t n = 0; n < N; n++)
        for (int64_t o = 0; o < out; o++) {
            const float v = z[n * out + o] * (mag[o] / wn[o] - shift) + (b ? b[o] : 0.0f);
            y[n * out + o] = accumulate ? y[n * out + o] + v : v;
        }
    ft_free(b);
    return FT_OK;
}

/* Columns split over threads; each walks the rows in order. */
ft_status ft_cpu_dora_mag_grad(ft_backend *be, float *dmag, const void *dyv, const void *zv, const float *wn,
                               int64_t N, int64_t out) {
    const float *dy = dyv, *z = zv; /* [N, out] */
#pragma omp parallel for num_threads(ft_cpu_threads_for(be, N * out)) schedule(static)
    for (int64_t o = 0; o < out; o++) {
        double s = 0.0;
        for (int64_t n = 0; n < N; n++) s += (double)dy[n * out + o] * z[n * out + o];
        dmag[o] += (float)(s / wn[o]);
    }
    return FT_OK;
}
