/* op_table_rows.c: runners of the op test table (tests/op_table.h) for the trainable token ops
 * (PEFT trainable_token_indices): rows_set and its backward rows_sum (s = {N, C, k, M}), cols_set and
 * its backward cols_take (s = {n, V, k}). Each runs a case on a backend or, with c->be == NULL,
 * computes the double-precision reference by plain loops.
 *
 * The row lists are drawn per run: M distinct rows of the N in random order, split over the k tokens
 * in unequal lists (token j's share grows with j, so list lengths differ and the offsets' binary search
 * of rows.cu is exercised), with F_EMPTY token k/2 getting none. The columns are k distinct ones of the
 * V, the last (V - 1) and the first (0) among them when k allows. rows_set and cols_set write in place
 * over random data, so a row or column they miss or write wrongly differs from the reference; cols_take's
 * g starts poisoned, and rows_sum accumulates onto random f32 values (its += is part of the contract). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/ops.h"
#include "kernels/rng.h"
#include "tests/op_table.h"

/* f32 parameters (not rounded to BF16 like activations: rows_set's conversion is part of the test) */
static float *gen_f32(const ot_ctx *c, uint64_t seed, int64_t n, float scale) {
    float *p = ot_hmalloc(n);
    for (int64_t i = 0; i < n; i++) p[i] = (2.0f * ft_uniform(seed ^ c->salt, (uint64_t)i) - 1.0f) * scale;
    return p;
}

/* The first `take` entries of a random permutation of 0..n-1 (partial Fisher-Yates from a[]). */
static void shuffle_prefix(const ot_ctx *c, uint64_t seed, int32_t *a, int64_t n, int64_t from, int64_t take) {
    for (int64_t i = from; i < take; i++) {
        int64_t r = i + (int64_t)(ft_uniform(seed ^ c->salt, (uint64_t)i) * (double)(n - i));
        if (r >= n) r = n - 1;
        const int32_t t = a[i];
        a[i] = a[r], a[r] = t;
    }
}

/* pos i32 [k + 1 + M] (ops.h's CSR form): token j's weight is j + 1 (0 for the empty one), its offset
 * M * (weights before j) / (all weights). */
static int32_t *make_pos(const ot_ctx *c, int64_t N, int64_t k, int64_t M, int empty) {
    int32_t *pos = malloc((size_t)(k + 1 + M) * sizeof(int32_t)), *all = malloc((size_t)N * sizeof(int32_t));
    if (!pos || !all) abort();
    int64_t wsum = 0;
    for (int64_t j = 0; j < k; j++) wsum += empty && j == k / 2 ? 0 : j + 1;
    int64_t wacc = 0;
    for (int64_t j = 0; j <= k; j++) {
        pos[j] = (int32_t)(wsum > 0 ? M * wacc / wsum : 0);
        if (j < k) wacc += empty && j == k / 2 ? 0 : j + 1;
    }
    for (int64_t i = 0; i < N; i++) all[i] = (int32_t)i;
    shuffle_prefix(c, 331, all, N, 0, M);
    memcpy(pos + k + 1, all, (size_t)M * sizeof(int32_t));
    free(all);
    return pos;
}

/* s = {N, C, k, M}; flag F_EMPTY */
void ot_run_rows(ot_ctx *c, const ot_case *k, ot_out *o) {
    const int64_t N = k->s[0], C = k->s[1], K = k->s[2], M = k->s[3];
    FT_ASSERT(M <= N && (M == 0 || K > 0));
    int32_t *pos = make_pos(c, N, K, M, k->flag & F_EMPTY);
    const int set = k->op == OP_ROWS_SET;
    c->bytes = set ? (double)M * C * (4 + 2) : (double)M * C * 2 + (double)K * C * 8;
    float *x = ot_gen(c, 301, N * C, 1.0f);         /* rows_set: x before; rows_sum: dx */
    float *r = gen_f32(c, set ? 302 : 303, K * C, 1.0f); /* rows_set: rows; rows_sum: drows before */
    if (c->be) {
        void *dx = ot_up_act(c, x, N * C), *dp = ot_up_raw(c, pos, 4 * (K + 1 + M));
        float *dr = ot_up_raw(c, r, 4 * K * C);
        if (set) {
            OT_RUN(c, 1, ft_op_rows_set(c->be, dx, dr, dp, K, C));
            ot_out_add(o, "x", ot_down_act(c, dx, N * C), N * C);
        } else {
            OT_RUN(c, 1, ft_op_rows_sum(c->be, dr, dx, dp, K, C));
            ot_out_add(o, "drows", ot_down_f32(c, dr, K * C), K * C);
        }
    } else if (set) {
        for (int64_t j = 0; j < K; j++)
            for (int64_t m = pos[j]; m < pos[j + 1]; m++)
                memcpy(x + (int64_t)pos[K + 1 + m] * C, r + j * C, (size_t)C * sizeof(float));
        ot_out_add(o, "x", x, N * C);
        x = NULL;
    } else {
        double *d = ot_dzeros(K * C);
        for (int64_t j = 0; j < K; j++)
            for (int64_t cc = 0; cc < C; cc++) {
                double s = r[j * C + cc];
                for (int64_t m = pos[j]; m < pos[j + 1]; m++) s += x[(int64_t)pos[K + 1 + m] * C + cc];
                d[j * C + cc] = s;
            }
        ot_out_add(o, "drows", ot_f32_of_double(d, K * C), K * C);
        free(d);
    }
    free(x), free(r), free(pos);
}

/* s = {n, V, k} */
void ot_run_cols(ot_ctx *c, const ot_case *k, ot_out *o) {
    const int64_t n = k->s[0], V = k->s[1], K = k->s[2];
    FT_ASSERT(K >= 1 && K <= V);
    const int set = k->op == OP_COLS_SET;
    c->bytes = (double)n * K * (set ? 4 : 6);
    int32_t *cols = malloc((size_t)V * sizeof(int32_t));
    if (!cols) abort();
    for (int64_t i = 0; i < V; i++) cols[i] = (int32_t)i;
    cols[0] = (int32_t)(V - 1), cols[V - 1] = 0; /* the last column first, then the first one */
    if (V > 2) cols[V - 1] = cols[1], cols[1] = 0;
    shuffle_prefix(c, 332, cols, V, 2, K);
    float *l = ot_gen(c, 311, n * V, 4.0f), *t = ot_gen(c, 312, n * K, 4.0f);
    if (c->be) {
        void *dl = ot_up_act(c, l, n * V), *dc = ot_up_raw(c, cols, 4 * K);
        if (set) {
            void *dt = ot_up_act(c, t, n * K);
            OT_RUN(c, 1, ft_op_cols_set(c->be, dl, dt, dc, n, V, K));
        } else {
            void *g = ot_poison(c, ot_act_size(c) * n * K);
            OT_RUN(c, 1, ft_op_cols_take(c->be, g, dl, dc, n, V, K));
            ot_out_add(o, "g", ot_down_act(c, g, n * K), n * K);
        }
        ot_out_add(o, "logits", ot_down_act(c, dl, n * V), n * V);
    } else {
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < K; j++) {
                float *e = l + i * V + cols[j];
                if (set) {
                    *e = t[i * K + j];
                } else {
                    t[i * K + j] = *e;
                    *e = 0.0f;
                }
            }
        if (!set) ot_out_add(o, "g", t, n * K), t = NULL;
        ot_out_add(o, "logits", l, n * V);
        l = NULL;
    }
    free(l), free(t), free(cols);
}
