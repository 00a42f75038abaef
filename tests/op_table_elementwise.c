/* op_table_elementwise.c: runners of the op test table (tests/op_table.h) for the row-wise and
 * elementwise ops: embed, rmsnorm and its backward, dropout, swiglu and its backward, add. Each runs
 * a case on a backend or, with c->be == NULL, computes the double-precision reference by plain loops. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "kernels/ops.h"
#include "kernels/rng.h"
#include "tests/op_table.h"

/* s = {V, C, N} */
void ot_run_embed(ot_ctx *c, const ot_case *k, ot_out *o) {
    const int64_t V = k->s[0], C = k->s[1], N = k->s[2];
    const double wbytes = k->wt == FT_NF4          ? 0.5 + 1.0 / 64
                          : ft_dtype_is_ggml(k->wt) ? (double)ft_dtype_block_bytes(k->wt) / ft_dtype_block_elems(k->wt)
                                                    : (double)ft_dtype_nbytes(k->wt, 1); /* a weight element */
    c->bytes = (double)N * C * (2 + wbytes);
    float *tab = ot_gen(c, 11, V * C, 1.0f);
    int32_t *ids = malloc((size_t)N * sizeof(int32_t));
    for (int64_t n = 0; n < N; n++) ids[n] = (int32_t)(n == 0 ? 0 : n == 1 ? V - 1 : (n * 7919) % V);
    if (c->be) {
        ft_weight *w = ot_up_weight(c, tab, V, C, k->wt);
        void *di = ot_up_raw(c, ids, 4 * N), *out = ot_poison(c, ot_act_size(c) * N * C);
        OT_RUN(c, 1, ft_op_embed(c->be, out, di, w, N));
        ot_out_add(o, "out", ot_down_act(c, out, N * C), N * C);
    } else {
        float *wv = ot_weight_values(tab, V * C, k->wt), *out = ot_hmalloc(N * C);
        for (int64_t n = 0; n < N; n++)
            for (int64_t j = 0; j < C; j++) out[n * C + j] = wv[(int64_t)ids[n] * C + j];
        ot_out_add(o, "out", out, N * C);
        free(wv);
    }
    free(tab);
    free(ids);
}

/* s = {N, C}; eps 1e-5; flag F_ACC (rmsnorm_bwd): dx starts from random data and accumulates, else
 * it starts poisoned and is overwritten */
void ot_run_rmsnorm(ot_ctx *c, const ot_case *k, ot_out *o) {
    const int64_t N = k->s[0], C = k->s[1];
    const float eps = 1e-5f;
    const int acc = k->op != OP_RMSNORM && (k->flag & F_ACC);
    c->bytes = (double)N * C * (k->op == OP_RMSNORM ? 4 : acc ? 8 : 6) + (double)N * 4;
    float *x = ot_gen(c, 21, N * C, 3.0f), *w = ot_gen(c, 22, C, 1.5f), *dout = ot_gen(c, 23, N * C, 1.0f);
    float *dx0 = ot_gen(c, 24, N * C, 1.0f);
    if (c->be) {
        ft_weight *dw = ot_up_weight(c, w, 1, C, k->wt);
        void *dx = ot_up_act(c, x, N * C), *out = ot_poison(c, ot_act_size(c) * N * C), *rstd = ot_poison(c, 4 * N);
        OT_RUN(c, k->op == OP_RMSNORM, ft_op_rmsnorm(c->be, out, rstd, dx, dw, N, C, eps));
        if (k->op == OP_RMSNORM) {
            ot_out_add(o, "out", ot_down_act(c, out, N * C), N * C);
            ot_out_add(o, "rstd", ot_down_f32(c, rstd, N), N);
        } else {
            void *dd = ot_up_act(c, dout, N * C);
            void *gx = acc ? ot_up_act(c, dx0, N * C) : ot_poison(c, ot_act_size(c) * N * C);
            OT_RUN(c, 1, ft_op_rmsnorm_bwd(c->be, gx, dd, dx, dw, rstd, N, C, acc));
            ot_out_add(o, "dx", ot_down_act(c, gx, N * C), N * C);
        }
    } else {
        float *wv = ot_weight_values(w, C, k->wt);
        double *out = ot_dzeros(N * C), *rs = ot_dzeros(N), *gx = ot_dzeros(N * C);
        for (int64_t n = 0; n < N; n++) {
            double ss = 0, dot = 0;
            for (int64_t j = 0; j < C; j++) ss += (double)x[n * C + j] * x[n * C + j];
            const double r = 1.0 / sqrt(ss / C + eps);
            rs[n] = r;
            for (int64_t j = 0; j < C; j++) out[n * C + j] = wv[j] * x[n * C + j] * r;
            for (int64_t j = 0; j < C; j++) dot += (double)wv[j] * dout[n * C + j] * x[n * C + j];
            for (int64_t j = 0; j < C; j++)
                gx[n * C + j] = (acc ? dx0[n * C + j] : 0.0) + r * wv[j] * dout[n * C + j] - x[n * C + j] * r * r * r * dot / C;
        }
        if (k->op == OP_RMSNORM) {
            ot_out_add(o, "out", ot_f32_of_double(out, N * C), N * C);
            ot_out_add(o, "rstd", ot_f32_of_double(rs, N), N);
        } else {
            ot_out_add(o, "dx", ot_f32_of_double(gx, N * C), N * C);
        }
        free(wv);
        free(out);
        free(rs);
        free(gx);
    }
    free(x);
    free(w);
    free(dout);
    free(dx0);
}

/* s = {n}; flag: p in 1/1000 (low 16 bits), F_INPLACE << 16 */
void ot_run_dropout(ot_ctx *c, const ot_case *k, ot_out *o) {
    const int64_t n = k->s[0];
    const float p = (float)(k->flag & 0xffff) / 1000.0f;
    const uint64_t seed = 0x5eed;
    c->bytes = (double)n * 4;
    float *x = ot_gen(c, 51, n, 2.0f);
    if (c->be) {
        void *in = ot_up_act(c, x, n), *out = (k->flag >> 16) & F_INPLACE ? in : ot_poison(c, ot_act_size(c) * n);
        OT_RUN(c, 1, ft_op_dropout(c->be, out, in, n, p, seed));
        ot_out_add(o, "out", ot_down_act(c, out, n), n);
    } else {
        float *out = ot_hmalloc(n);
        for (int64_t i = 0; i < n; i++)
            out[i] = p == 0.0f                                            ? x[i]
                     : ft_dropout_keep(seed, (uint64_t)i, ft_dropout_threshold(p)) ? (float)(x[i] / (1.0 - p))
                                                                                   : 0.0f;
        ot_out_add(o, "out", out, n);
    }
    free(x);
}

/* s = {n} */
void ot_run_swiglu(ot_ctx *c, const ot_case *k, ot_out *o) {
    const int64_t n = k->s[0];
    c->bytes = (double)n * (k->op == OP_SWIGLU ? 6 : 10);
    float *g = ot_gen(c, 81, n, 6.0f), *u = ot_gen(c, 82, n, 2.0f), *dout = ot_gen(c, 83, n, 1.0f);
    g[0] = -90.0f, g[1] = 90.0f, g[2] = 0.0f; /* saturated and zero gates */
    if (c->be) {
        void *dg = ot_up_act(c, g, n), *du = ot_up_act(c, u, n);
        if (k->op == OP_SWIGLU) {
            void *out = ot_poison(c, ot_act_size(c) * n);
            OT_RUN(c, 1, ft_op_swiglu(c->be, out, dg, du, n));
            ot_out_add(o, "out", ot_down_act(c, out, n), n);
        } else {
            void *dd = ot_up_act(c, dout, n), *gg = ot_poison(c, ot_act_size(c) * n), *gu = ot_poison(c, ot_act_size(c) * n);
            OT_RUN(c, 1, ft_op_swiglu_bwd(c->be, gg, gu, dd, dg, du, n));
            ot_out_add(o, "dgate", ot_down_act(c, gg, n), n);
            ot_out_add(o, "dup", ot_down_act(c, gu, n), n);
        }
    } else {
        double *a = ot_dzeros(n), *b = ot_dzeros(n);
        for (int64_t i = 0; i < n; i++) {
            const double x = g[i], sig = 1.0 / (1.0 + exp(-x));
            if (k->op == OP_SWIGLU) {
                a[i] = x * sig * u[i];
            } else {
                a[i] = dout[i] * u[i] * (sig + x * sig * (1.0 - sig));
                b[i] = dout[i] * x * sig;
            }
        }
        if (k->op == OP_SWIGLU) {
            ot_out_add(o, "out", ot_f32_of_double(a, n), n);
        } else {
            ot_out_add(o, "dgate", ot_f32_of_double(a, n), n);
            ot_out_add(o, "dup", ot_f32_of_double(b, n), n);
        }
        free(a), free(b);
    }
    free(g), free(u), free(dout);
}

/* s = {n} */
void ot_run_add(ot_ctx *c, const ot_case *k, ot_out *o) {
    const int64_t n = k->s[0];
    c->bytes = (double)n * 6;
    float *x = ot_gen(c, 91, n, 1.0f), *y = ot_gen(c, 92, n, 1.0f);
    if (c->be) {
        void *dx = ot_up_act(c, x, n), *dy = ot_up_act(c, y, n);
        OT_RUN(c, 1, ft_op_add(c->be, dy, dx, n));
        ot_out_add(o, "y", ot_down_act(c, dy, n), n);
    } else {
        float *r = ot_hmalloc(n);
        for (int64_t i = 0; i < n; i++) r[i] = (float)((double)y[i] + x[i]);
        ot_out_add(o, "y", r, n);
    }
    free(x), free(y);
}
