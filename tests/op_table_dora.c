/* op_table_dora.c: runners of the op test table (tests/op_table.h) for DoRA's ops (PEFT use_dora;
 * contracts in kernels/ops.h): dora_norm (s = {in, out, R}, wt the frozen weight's dtype), dora_scale
 * and its backward dora_mag_grad (s = {N, out}, wt the bias's dtype). Each runs a case on a backend or,
 * with c->be == NULL, computes the double-precision reference by plain loops.
 *
 * dora_norm's inputs are sized so that s (B A) is as large as W (A, B uniform in +-0.3, R 8..32, scale
 * 1.5 against W in +-0.2): a wrong rank, row or column of the product moves the norm as much as one of W.
 * Its weight is any frozen linear weight (F32/F16/BF16, NF4, ggml blocks); the reference takes W's
 * decoded values (ot_weight_values). A BF16 backend multiplies the BF16 rounding of those values (the
 * copy its GEMM reads, ops.h), so against the CPU its f32 norm differs by that rounding: the rows give
 * 1e-5 for BF16 weights (the same values on both) and more for the others (docs/ops.md).
 * mag and wn are f32 parameters (never rounded to BF16), wn kept in [0.5, 1.5). Outputs that an op
 * overwrites start poisoned; accumulated ones (dora_scale F_ACC, dmag) start from random values. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "kernels/ops.h"
#include "kernels/rng.h"
#include "tests/harness.h"
#include "tests/op_table.h"

/* f32 parameters: uniform in [center - scale, center + scale), never rounded to BF16 */
static float *gen_f32(const ot_ctx *c, uint64_t seed, int64_t n, float center, float scale) {
    float *p = ot_hmalloc(n);
    for (int64_t i = 0; i < n; i++) p[i] = center + (2.0f * ft_uniform(seed ^ c->salt, (uint64_t)i) - 1.0f) * scale;
    return p;
}

/* s = {in, out, R}; wt W's dtype; scale 1.5 */
void ot_run_dora_norm(ot_ctx *c, const ot_case *k, ot_out *o) {
    const int64_t in = k->s[0], out = k->s[1], R = k->s[2];
    const float scale = 1.5f;
    c->flops = 2.0 * out * in * (double)R;
    /* F32/F16 weights get values off the BF16 grid, so a BF16 backend's rounding of them is exercised */
    const int wide = k->wt == FT_F32 || k->wt == FT_F16;
    float *W = wide ? gen_f32(c, 501, out * in, 0.0f, 0.2f) : ot_gen(c, 501, out * in, 0.2f);
    float *A = gen_f32(c, 502, R * in, 0.0f, 0.3f), *B = gen_f32(c, 503, out * R, 0.0f, 0.3f);
    if (c->be) {
        ft_weight *dw = ot_up_weight(c, W, out, in, k->wt);
        float *dA = ot_up_raw(c, A, 4 * R * in), *dB = ot_up_raw(c, B, 4 * out * R);
        float *wn = ot_poison(c, 4 * out);
        OT_RUN(c, 1, ft_op_dora_norm(c->be, wn, dw, dA, dB, R, scale));
        float *got = ot_down_f32(c, wn, out);
        if (in <= 2048 && c->reps == 0) {
            /* ops.h: W's values as this backend's ft_op_linear multiplies with them. The linear of the
             * identity [in, in] returns them exactly (one product by 1 each, in any act dtype: a BF16
             * backend's operand is BF16 already), so the norm of those values + s B A, in double, is
             * what wn must be on every backend, to f32 summation error. */
            float *eye = ot_hmalloc(in * in);
            for (int64_t i = 0; i < in * in; i++) eye[i] = i % (in + 1) == 0 ? 1.0f : 0.0f;
            void *x = ot_up_act(c, eye, in * in), *y = ot_poison(c, ot_act_size(c) * in * out);
            FT_CHECK_OK(ft_op_linear(c->be, y, x, dw, NULL, in, 0));
            float *wt = ot_down_act(c, y, in * out); /* [in, out]: W^T as the product read it */
            float *want = ot_hmalloc(out);
            for (int64_t j = 0; j < out; j++) {
                double ss = 0.0;
                for (int64_t i = 0; i < in; i++) {
                    double ba = 0.0;
                    for (int64_t r = 0; r < R; r++) ba += (double)B[j * R + r] * A[r * in + i];
                    const double v = wt[i * out + j] + (double)scale * ba;
                    ss += v * v;
                }
                want[j] = (float)sqrt(ss);
            }
            char what[160];
            snprintf(what, sizeof what, "dora_norm %s: wn against the norm of the linear's own operand", k->name);
            FT_CHECK_CLOSE(got, want, out, 1e-5, what);
            free(eye), free(wt), free(want);
        }
        ot_out_add(o, "wn", got, out);
    } else {
        float *wv = ot_weight_values(W, out * in, k->wt);
        double *wn = ot_dzeros(out);
        for (int64_t j = 0; j < out; j++) {
            double ss = 0.0;
            for (int64_t i = 0; i < in; i++) {
                double ba = 0.0;
                for (int64_t r = 0; r < R; r++) ba += (double)B[j * R + r] * A[r * in + i];
                const double v = wv[j * in + i] + (double)scale * ba;
                ss += v * v;
            }
            wn[j] = sqrt(ss);
        }
        ot_out_add(o, "wn", ot_f32_of_double(wn, out), out);
        free(wv), free(wn);
    }
    free(W), free(A), free(B);
}

/* s = {N, out}. dora_scale: flag F_ACC (y += ...), F_BIAS (a bias of dtype wt), F_ALIAS (y is z, in
 * place), F_SHIFT (the factor mag / wn - 1: DoRA with dropout). dora_mag_grad: dmag += (sum_n dy z) / wn, dmag from random values. */
void ot_run_dora(ot_ctx *c, const ot_case *k, ot_out *o) {
    const int64_t N = k->s[0], out = k->s[1];
    const int scale_op = k->op == OP_DORA_SCALE, acc = scale_op && (k->flag & F_ACC);
    const int bias = scale_op && (k->flag & F_BIAS), alias = scale_op && !acc && (k->flag & F_ALIAS);
    const float shift = scale_op && (k->flag & F_SHIFT) ? 1.0f : 0.0f;
    c->bytes = (double)N * out * (scale_op ? (acc ? 3 : 2) : 2) * (c->be ? (double)ot_act_size(c) : 4.0);
    float *z = ot_gen(c, 511, N * out, 1.0f), *y0 = ot_gen(c, 512, N * out, 1.0f), *dy = ot_gen(c, 513, N * out, 1.0f);
    float *mag = gen_f32(c, 514, out, 1.0f, 0.5f), *wn = gen_f32(c, 515, out, 1.0f, 0.5f);
    float *b = ot_gen(c, 516, out, 0.5f), *dmag0 = gen_f32(c, 517, out, 0.0f, 0.1f);
    if (c->be) {
        float *dwn = ot_up_raw(c, wn, 4 * out);
        void *dz = ot_up_act(c, z, N * out);
        if (scale_op) {
            float *dmag = ot_up_raw(c, mag, 4 * out);
            ft_weight *db = bias ? ot_up_weight(c, b, 1, out, k->wt) : NULL;
            void *y = alias ? dz : acc ? ot_up_act(c, y0, N * out) : ot_poison(c, ot_act_size(c) * N * out);
            OT_RUN(c, 1, ft_op_dora_scale(c->be, y, dz, dmag, dwn, shift, db, N, out, acc));
            ot_out_add(o, "y", ot_down_act(c, y, N * out), N * out);
        } else {
            void *ddy = ot_up_act(c, dy, N * out);
            float *gm = ot_up_raw(c, dmag0, 4 * out);
            OT_RUN(c, 1, ft_op_dora_mag_grad(c->be, gm, ddy, dz, dwn, N, out));
            ot_out_add(o, "dmag", ot_down_f32(c, gm, out), out);
        }
    } else if (scale_op) {
        float *bv = ot_weight_values(b, out, k->wt);
        double *y = ot_dzeros(N * out);
        for (int64_t n = 0; n < N; n++)
            for (int64_t j = 0; j < out; j++)
                y[n * out + j] = (acc ? y0[n * out + j] : 0.0) + (double)z[n * out + j] * ((double)mag[j] / wn[j] - shift) +
                                 (bias ? bv[j] : 0.0);
        ot_out_add(o, "y", ot_f32_of_double(y, N * out), N * out);
        free(bv), free(y);
    } else {
        double *g = ot_dzeros(out);
        for (int64_t j = 0; j < out; j++) {
            double s = 0.0;
            for (int64_t n = 0; n < N; n++) s += (double)dy[n * out + j] * z[n * out + j];
            g[j] = dmag0[j] + s / wn[j];
        }
        ot_out_add(o, "dmag", ot_f32_of_double(g, out), out);
        free(g);
    }
    free(z), free(y0), free(dy), free(mag), free(wn), free(b), free(dmag0);
}
