/* reduce_cpu.c: elementwise and reduction ops on f32 vectors: residual add, dropout, the gradient
 * norm's sum of squares, and scaling.
 *
 * sumsq sums fixed 64k-element chunks in double and adds the chunk sums in order, so the result is
 * the same for any thread count. dropout draws keep(i) from the counter-based generator of
 * kernels/rng.h (one draw per aligned group of 4 elements), so the backward (the same op with the same seed on the upstream gradient) and
 * every other backend see the same mask; out = in * (1 / (1 - p)) for kept elements, as torch. */
#include <omp.h>
#include <string.h>

#include "kernels/cpu/cpu_impl.h"
#include "kernels/mem.h"
#include "kernels/rng.h"

enum { FT_SUMSQ_CHUNK = 1 << 16 };

ft_status ft_cpu_add(ft_backend *be, void *yv, const void *xv, int64_t n) {
    float *y = yv;
    const float *x = xv;
#pragma omp parallel for num_threads(ft_cpu_threads_for(be, n)) schedule(static)
    for (int64_t i = 0; i < n; i++) y[i] += x[i];
    return FT_OK;
}

ft_status ft_cpu_dropout(ft_backend *be, void *outv, const void *inv, int64_t n, float p, uint64_t seed) {
    float *out = outv;
    const float *in = inv;
    if (p == 0.0f) {
        if (out != in) memmove(out, in, (size_t)n * sizeof(float));
        return FT_OK;
    }
    const float s = 1.0f / (1.0f - p);
    const uint32_t thr = ft_dropout_threshold(p);
#pragma omp parallel for num_threads(ft_cpu_threads_for(be, n)) schedule(static)
    for (int64_t g = 0; g < (n + 3) / 4; g++) { /* one draw per group of 4 (kernels/rng.h) */
        const uint64_t bits = ft_dropout_bits(seed, (uint64_t)g);
        for (int64_t j = 0, i = 4 * g; j < 4 && i < n; j++, i++)
            out[i] = ft_dropout_keep_in(bits, (int)j, thr) ? in[i] * s : 0.0f;
    }
    return FT_OK;
}

ft_status ft_cpu_sumsq(ft_backend *be, float *out, const float *x, int64_t n) {
    const int64_t nc = (n + FT_SUMSQ_CHUNK - 1) / FT_SUMSQ_CHUNK;
    double *part; /* [nc] */
    FT_TRY(ft_malloc((void **)&part, (size_t)(nc > 0 ? nc : 1) * sizeof(double), "sumsq partials"));
#pragma omp parallel for num_threads(ft_cpu_threads_for(be, n)) schedule(static)
    for (int64_t c = 0; c < nc; c++) {
        const int64_t e = (c + 1) * FT_SUMSQ_CHUNK < n ? (c + 1) * FT_SUMSQ_CHUNK : n;
        double s = 0.0;
        for (int64_t i = c * FT_SUMSQ_CHUNK; i < e; i++) s += (double)x[i] * x[i];
        part[c] = s;
    }
    double s = *out;
    for (int64_t c = 0; c < nc; c++) s += part[c];
    *out = (float)s;
    ft_free(part);
    return FT_OK;
}

ft_status ft_cpu_scale(ft_backend *be, float *x, int64_t n, float s) {
#pragma omp parallel for num_threads(ft_cpu_threads_for(be, n)) schedule(static)
    for (int64_t i = 0; i < n; i++) x[i] *= s;
    return FT_OK;
}
