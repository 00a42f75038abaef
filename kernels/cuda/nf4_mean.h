/* nf4_mean.h: the NF4 double-quantization offset, mean(absmax), exactly as ft_nf4_absmax_mean
 * (kernels/nf4_tables.c) computes it, re-expressed so a GPU warp can compute it bit-exactly.
 *
 * ft_nf4_absmax_mean reproduces torch's CPU cascade sum. Its bulk is ATen's multi_row_sum, which
 * sums `size` rows of w floats column by column (w = 32: 8 AVX2 lanes x 4 accumulators; w = 4 for
 * fewer than 8 values) with a cascade whose control flow depends only on the row index: so the w
 * columns are independent sequential sums, one per lane of a warp, each in exactly the reference
 * order. What remains (the tail rows, folding the 4 accumulators, the last < 8 values and the
 * division) is a few dozen float additions done serially by one thread in the reference order.
 * No reduction here is reordered, so the result is bit-identical to the CPU loader's offset for
 * every nb, and the qabsmax codes that depend on it are identical too. Only additions and one
 * division occur, so FMA contraction cannot change anything.
 *
 * Plain C with FT_HD, so tests/test_ops_cuda.c checks this formulation against ft_nf4_absmax_mean
 * on the host, without a GPU. */
#ifndef FT_NF4_MEAN_H
#define FT_NF4_MEAN_H

#include <stdint.h>

#include "kernels/rng.h" /* FT_HD */

enum { FT_NF4M_MAXW = 32 };

static inline FT_HD int64_t ft_nf4m_ceil_log2(int64_t x) {
    if (x <= 2) return 1;
    int64_t r = 0;
    for (uint64_t v = (uint64_t)(x - 1); v; v >>= 1) r++;
    return r;
}

/* The column layout for nb values: *w columns over *size rows (rows of w consecutive floats). */
static inline FT_HD void ft_nf4m_layout(int64_t nb, int *w, int64_t *size) {
    if (nb >= 8) { /* vectorized_inner_sum: nvec items of 8 lanes, row_sum over nvec/4 rows of 32 */
        *w = 32;
        *size = (nb / 8) / 4;
    } else { /* scalar_inner_sum: row_sum over nb items of 1 lane: nb/4 rows of 4 */
        *w = 4;
        *size = nb / 4;
    }
}

/* Column c of ATen multi_row_sum over `size` rows of w floats (the 4-level cascade). */
static inline FT_HD float ft_nf4m_column(const float *x, int64_t size, int w, int c) {
    enum { LEVELS = 4 };
    int64_t lp = ft_nf4m_ceil_log2(size) / LEVELS;
    if (lp < 4) lp = 4;
    const int64_t step = (int64_t)1 << lp, mask = step - 1;
    float acc[LEVELS] = {0.0f, 0.0f, 0.0f, 0.0f};
    int64_t i = 0;
    while (i + step <= size) {
        for (int64_t j = 0; j < step; j++, i++) acc[0] += x[i * w + c];
        for (int j = 1; j < LEVELS; j++) {
            acc[j] += acc[j - 1];
            acc[j - 1] = 0.0f;
            if ((i & (mask << (j * lp))) != 0) break;
        }
    }
    for (; i < size; i++) acc[0] += x[i * w + c];
    for (int j = 1; j < LEVELS; j++) acc[0] += acc[j];
    return acc[0];
}

/* The mean from the w column sums col[] (ft_nf4m_layout), in the reference order. */
static inline FT_HD float ft_nf4m_finish(const float *x, int64_t nb, const float *col) {
    if (nb <= 0) return 0.0f;
    float part[FT_NF4M_MAXW];
    if (nb >= 8) {
        const int lanes = 8;
        const int64_t nvec = nb / 8, nilp = nvec / 4;
        for (int c = 0; c < 32; c++) part[c] = col[c];
        for (int64_t i = nilp * 4; i < nvec; i++) /* row_sum: items left after the ILP rows */
            for (int l = 0; l < lanes; l++) part[l] += x[i * lanes + l];
        for (int k = 1; k < 4; k++)
            for (int l = 0; l < lanes; l++) part[l] += part[k * lanes + l];
        float sum = 0.0f;
        for (int64_t k = nvec * lanes; k < nb; k++) sum += x[k];
        for (int l = 0; l < lanes; l++) sum += part[l];
        return sum / (float)nb;
    }
    const int64_t nilp = nb / 4;
    for (int c = 0; c < 4; c++) part[c] = col[c];
    for (int64_t i = nilp * 4; i < nb; i++) part[0] += x[i];
    for (int k = 1; k < 4; k++) part[0] += part[k];
    return part[0] / (float)nb;
}

/* The whole computation serially (host check of the formulation). */
static inline FT_HD float ft_nf4m_mean_serial(const float *x, int64_t nb) {
    int w;
    int64_t size;
    float col[FT_NF4M_MAXW];
    ft_nf4m_layout(nb, &w, &size);
    for (int c = 0; c < w; c++) col[c] = ft_nf4m_column(x, size, w, c);
    return ft_nf4m_finish(x, nb, col);
}

#endif
