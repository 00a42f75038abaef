/* rows_cpu.c: trainable token rows (PEFT trainable_token_indices) on the CPU reference backend: the
 * embedding rows of trainable tokens overwritten by their f32 rows and their gradient gathered back
 * (rows_set / rows_sum), the lm_head's logits columns of trainable tokens replaced and, after the
 * cross-entropy, taken out and zeroed (cols_set / cols_take). Contracts in kernels/ops.h.
 *
 * Activations are f32 here, so rows_set and the column ops are plain copies. rows_sum adds in f32 in
 * list order, one partial sum per element then added to drows (s = 0; s += dx[p, c]; drows += s), the
 * order kernels/cuda/rows.cu uses, so the two backends agree bit for bit on the same inputs rather than
 * the reference's usual double sums. The index lists live in host memory on this backend, so they are
 * checked before anything is written (a broken list is the caller's invariant: FT_E_INTERNAL). */
#include <omp.h>

#include "kernels/cpu/cpu_impl.h"

/* pos[k + 1 + M] (ops.h): offsets from 0, non-decreasing, rows non-negative (N is not passed). */
static ft_status ft_rows_check(const char *op, const int32_t *pos, int64_t k) {
    if (pos[0] != 0) return FT_ERR(FT_E_INTERNAL, "%s: offsets start at %d, not 0", op, pos[0]);
    for (int64_t j = 0; j < k; j++)
        if (pos[j + 1] < pos[j])
            return FT_ERR(FT_E_INTERNAL, "%s: offsets decrease at token %lld (%d after %d)", op, (long long)j,
                          pos[j + 1], pos[j]);
    const int32_t *rows = pos + k + 1;
    for (int64_t m = 0; m < pos[k]; m++)
        if (rows[m] < 0) return FT_ERR(FT_E_INTERNAL, "%s: row index %d at %lld", op, rows[m], (long long)m);
    return FT_OK;
}

/* Token by token, its list entries split over threads: each row is in one list, so they are
 * independent. */
ft_status ft_cpu_rows_set(ft_backend *be, void *xv, const float *rows, const int32_t *pos, int64_t k, int64_t C) {
    float *x = xv; /* [N, C] */
    FT_TRY(ft_rows_check("rows_set", pos, k));
    const int32_t *list = pos + k + 1; /* [M], M = pos[k] */
    for (int64_t j = 0; j < k; j++) {
#pragma omp parallel for num_threads(ft_cpu_threads_for(be, (pos[j + 1] - pos[j]) * C)) schedule(static)
        for (int64_t m = pos[j]; m < pos[j + 1]; m++)
            for (int64_t c = 0; c < C; c++) x[(int64_t)list[m] * C + c] = rows[j * C + c];
    }
    return FT_OK;
}

/* Threads split token j's columns in chunks of FT_ROWS_CHUNK; each chunk walks j's rows in list
 * order, adding whole row segments (cache-friendly) into its partial sums. */
enum { FT_ROWS_CHUNK = 256 };
ft_status ft_cpu_rows_sum(ft_backend *be, float *drows, const void *dxv, const int32_t *pos, int64_t k, int64_t C) {
    const float *dx = dxv; /* [N, C] */
    FT_TRY(ft_rows_check("rows_sum", pos, k));
    const int32_t *list = pos + k + 1;
    const int64_t nchunk = (C + FT_ROWS_CHUNK - 1) / FT_ROWS_CHUNK;
#pragma omp parallel for num_threads(ft_cpu_threads_for(be, (int64_t)pos[k] * C)) schedule(static)
    for (int64_t q = 0; q < k * nchunk; q++) {
        const int64_t j = q / nchunk, c0 = q % nchunk * FT_ROWS_CHUNK;
        const int64_t w = C - c0 < FT_ROWS_CHUNK ? C - c0 : FT_ROWS_CHUNK;
        float s[FT_ROWS_CHUNK] = {0};
        for (int64_t m = pos[j]; m < pos[j + 1]; m++) {
            const float *row = dx + (int64_t)list[m] * C + c0;
            for (int64_t c = 0; c < w; c++) s[c] += row[c];
        }
        for (int64_t c = 0; c < w; c++) drows[j * C + c0 + c] += s[c];
    }
    return FT_OK;
}

static ft_status ft_cols_check(const char *op, const int32_t *cols, int64_t V, int64_t k) {
    for (int64_t j = 0; j < k; j++)
        if (cols[j] < 0 || cols[j] >= V)
            return FT_ERR(FT_E_INTERNAL, "%s: column %d at %lld outside the vocabulary of %lld", op, cols[j],
                          (long long)j, (long long)V);
    return FT_OK;
}

ft_status ft_cpu_cols_set(ft_backend *be, void *logitsv, const void *tv, const int32_t *cols, int64_t n, int64_t V,
                          int64_t k) {
    float *logits = logitsv;  /* [n, V] */
    const float *t = tv;      /* [n, k] */
    FT_TRY(ft_cols_check("cols_set", cols, V, k));
#pragma omp parallel for num_threads(ft_cpu_threads_for(be, n * k)) schedule(static)
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < k; j++) logits[i * V + cols[j]] = t[i * k + j];
    return FT_OK;
}

ft_status ft_cpu_cols_take(ft_backend *be, void *gv, void *logitsv, const int32_t *cols, int64_t n, int64_t V,
                           int64_t k) {
    float *g = gv;           /* [n, k] */
    float *logits = logitsv; /* [n, V] */
    FT_TRY(ft_cols_check("cols_take", cols, V, k));
#pragma omp parallel for num_threads(ft_cpu_threads_for(be, n * k)) schedule(static)
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < k; j++) {
            g[i * k + j] = logits[i * V + cols[j]];
            logits[i * V + cols[j]] = 0.0f;
        }
    return FT_OK;
}
