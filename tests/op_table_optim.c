/* op_table_optim.c: runners of the op test table (tests/op_table.h) for the loss and the optimizer
 * step: xent, sumsq, scale, adamw, clip_factor. Each runs a case on a backend or, with
 * c->be == NULL, computes the double-precision reference by plain loops. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "kernels/ops.h"
#include "tests/op_table.h"

/* s = {n, V}; flag: 0 loss only, 1 grad_scale 1, 2 grad_scale 0.25 */
void ot_run_xent(ot_ctx *c, const ot_case *k, ot_out *o) {
    const int64_t n = k->s[0], V = k->s[1];
    const float gs = k->flag == 1 ? 1.0f : k->flag == 2 ? 0.25f : 0.0f;
    c->bytes = (double)n * V * (k->flag ? 4 : 2);
    float *lg = ot_gen(c, 101, n * V, 8.0f), init[2] = {1.5f, 2.0f};
    int32_t *lab = malloc((size_t)n * sizeof(int32_t));
    for (int64_t r = 0; r < n; r++) lab[r] = r % 3 == 1 ? -100 : (int32_t)((r * 131) % V);
    if (c->be) {
        void *dl = ot_up_act(c, lg, n * V), *dlab = ot_up_raw(c, lab, 4 * n), *acc = ot_up_raw(c, init, 8);
        OT_RUN(c, 1, ft_op_xent(c->be, acc, (float *)acc + 1, dl, dlab, n, V, gs));
        ot_out_add(o, "logits/grad", ot_down_act(c, dl, n * V), n * V);
        ot_out_add(o, "loss_sum,count", ot_down_f32(c, acc, 2), 2);
    } else {
        double *g = ot_dzeros(n * V), ls = init[0], cnt = init[1];
        for (int64_t r = 0; r < n; r++) {
            const float *l = lg + r * V;
            if (lab[r] < 0) {
                for (int64_t j = 0; j < V; j++) g[r * V + j] = gs != 0.0f ? 0.0 : l[j];
                continue;
            }
            double m = -INFINITY, s = 0;
            for (int64_t j = 0; j < V; j++) m = fmax(m, l[j]);
            for (int64_t j = 0; j < V; j++) s += exp(l[j] - m);
            const double lse = m + log(s);
            ls += lse - l[lab[r]];
            cnt += 1;
            for (int64_t j = 0; j < V; j++)
                g[r * V + j] = gs != 0.0f ? gs * (exp(l[j] - lse) - (j == lab[r])) : l[j];
        }
        ot_out_add(o, "logits/grad", ot_f32_of_double(g, n * V), n * V);
        float *a = ot_hmalloc(2);
        a[0] = (float)ls, a[1] = (float)cnt;
        ot_out_add(o, "loss_sum,count", a, 2);
        free(g);
    }
    free(lg), free(lab);
}

/* s = {n}: sumsq (accumulating onto 2.0) and scale by 0.37 */
void ot_run_reduce(ot_ctx *c, const ot_case *k, ot_out *o) {
    const int64_t n = k->s[0];
    c->bytes = (double)n * (k->op == OP_SUMSQ ? 4 : 8);
    float *x = ot_gen(c, 111, n, 1.0f), two = 2.0f;
    if (c->be) {
        void *dx = ot_up_raw(c, x, 4 * n);
        if (k->op == OP_SUMSQ) {
            void *acc = ot_up_raw(c, &two, 4);
            OT_RUN(c, 1, ft_op_sumsq(c->be, acc, dx, n));
            ot_out_add(o, "sumsq", ot_down_f32(c, acc, 1), 1);
        } else {
            OT_RUN(c, 1, ft_op_scale(c->be, dx, n, 0.37f));
            ot_out_add(o, "x", ot_down_f32(c, dx, n), n);
        }
    } else {
        if (k->op == OP_SUMSQ) {
            double s = two;
            for (int64_t i = 0; i < n; i++) s += (double)x[i] * x[i];
            float *r = ot_hmalloc(1);
            r[0] = (float)s;
            ot_out_add(o, "sumsq", r, 1);
        } else {
            float *r = ot_hmalloc(n);
            for (int64_t i = 0; i < n; i++) r[i] = (float)((double)x[i] * 0.37f);
            ot_out_add(o, "x", r, n);
        }
    }
    free(x);
}

/* s = {n}: step 3 of AdamW with clipping factor 0.8 */
void ot_run_adamw(ot_ctx *c, const ot_case *k, ot_out *o) {
    const int64_t n = k->s[0];
    const double lr = 2e-3, b1 = 0.9, b2 = 0.999, eps = 1e-8, wd = 0.01, gsc = 0.8;
    const int step = 3;
    c->bytes = (double)n * 28;
    float sc[FT_ADAMW_NSCALARS];
    sc[FT_ADAMW_LR] = (float)lr, sc[FT_ADAMW_BETA1] = (float)b1, sc[FT_ADAMW_BETA2] = (float)b2;
    sc[FT_ADAMW_EPS] = (float)eps, sc[FT_ADAMW_WD] = (float)wd, sc[FT_ADAMW_GSCALE] = (float)gsc;
    sc[FT_ADAMW_BC1] = (float)(1.0 - pow(b1, step)), sc[FT_ADAMW_BC2] = (float)(1.0 - pow(b2, step));
    float *p = ot_gen(c, 121, n, 1.0f), *g = ot_gen(c, 122, n, 0.5f), *m = ot_gen(c, 123, n, 0.05f), *v = ot_gen(c, 124, n, 1e-3f);
    for (int64_t i = 0; i < n; i++) v[i] = fabsf(v[i]);
    g[0] = 0.0f, m[0] = 0.0f, v[0] = 0.0f; /* eps-dominated element */
    if (c->be) {
        void *dp = ot_up_raw(c, p, 4 * n), *dg = ot_up_raw(c, g, 4 * n), *dm = ot_up_raw(c, m, 4 * n), *dv = ot_up_raw(c, v, 4 * n);
        void *ds = ot_up_raw(c, sc, sizeof sc);
        OT_RUN(c, 1, ft_op_adamw(c->be, dp, dg, dm, dv, n, ds));
        ot_out_add(o, "p", ot_down_f32(c, dp, n), n);
        ot_out_add(o, "m", ot_down_f32(c, dm, n), n);
        ot_out_add(o, "v", ot_down_f32(c, dv, n), n);
    } else {
        /* torch.optim.AdamW step t: p -= lr wd p; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
         * p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps), in double from the float32
         * scalars the op receives (float(0.999) makes 1 - b2 off by 1.3e-5 relative: a property of
         * the f32 scalars array, not of the op). */
        const double B1 = sc[FT_ADAMW_BETA1], B2 = sc[FT_ADAMW_BETA2], LR = sc[FT_ADAMW_LR], WD = sc[FT_ADAMW_WD];
        const double EPS = sc[FT_ADAMW_EPS], GS = sc[FT_ADAMW_GSCALE];
        double *rp = ot_dzeros(n), *rm = ot_dzeros(n), *rv = ot_dzeros(n);
        for (int64_t i = 0; i < n; i++) {
            const double gi = (double)g[i] * GS;
            rm[i] = B1 * m[i] + (1 - B1) * gi;
            rv[i] = B2 * v[i] + (1 - B2) * gi * gi;
            const double mh = rm[i] / sc[FT_ADAMW_BC1], vh = rv[i] / sc[FT_ADAMW_BC2];
            rp[i] = p[i] * (1 - LR * WD) - LR * mh / (sqrt(vh) + EPS);
        }
        ot_out_add(o, "p", ot_f32_of_double(rp, n), n);
        ot_out_add(o, "m", ot_f32_of_double(rm, n), n);
        ot_out_add(o, "v", ot_f32_of_double(rv, n), n);
        free(rp), free(rm), free(rv);
    }
    free(p), free(g), free(m), free(v);
}

/* s = {n}: the clipping factor of n gradient sums of squares (zero, tiny, huge, NaN, Inf) under
 * max norms cycling through 1.0, 0.3, 0 (off) and -1 (off); exact: the op computes it in double as
 * optim/adamw.c always did on the host. */
void ot_run_clip(ot_ctx *c, const ot_case *k, ot_out *o) {
    const int64_t n = k->s[0];
    static const double norms[] = {1.0, 0.3, 0.0, -1.0};
    c->bytes = (double)n * 8;
    float *x = ot_gen(c, 141, n, 3.0f), *r = ot_hmalloc(n);
    for (int64_t i = 0; i < n; i++) x[i] = x[i] * x[i] * (float)pow(10.0, (double)(i % 7) - 3.0);
    if (n > 3) x[0] = 0.0f, x[1] = NAN, x[2] = INFINITY, x[3] = 1e-30f;
    float sc[FT_ADAMW_NSCALARS] = {0};
    void *ds = c->be ? ot_up_raw(c, sc, sizeof sc) : NULL, *dx = c->be ? ot_up_raw(c, x, 4 * n) : NULL;
    for (int64_t i = 0; i < n; i++) {
        const double mx = norms[i % 4];
        if (c->be) {
            OT_RUN(c, i == 0, ft_op_clip_factor(c->be, ds, (const float *)dx + i, mx));
            float *got = ot_down_f32(c, ds, FT_ADAMW_NSCALARS);
            r[i] = got[FT_ADAMW_GSCALE];
            free(got);
        } else {
            double g = 1.0;
            if (mx > 0) {
                const double f = mx / (sqrt((double)x[i]) + 1e-6);
                if (f < 1.0) g = f;
            }
            r[i] = (float)g;
        }
    }
    ot_out_add(o, "gscale", r, n);
    free(x);
}
