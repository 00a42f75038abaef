/* op_table_linear.c: runners of the op test table (tests/op_table.h) for the products: linear and
 * linear_bwd_x over F32/F16/BF16/NF4 and ggml block weights, lora_fwd and lora_bwd. Each runs a case on a backend
 * or, with c->be == NULL, computes the double-precision reference by plain loops. */
#include <stdint.h>
#include <stdlib.h>

#include "kernels/ops.h"
#include "kernels/rng.h"
#include "tests/op_table.h"

/* s = {N, in, out}; flag F_ACC, F_BIAS */
void ot_run_linear(ot_ctx *c, const ot_case *k, ot_out *o) {
    const int64_t N = k->s[0], in = k->s[1], out = k->s[2];
    const int acc = k->flag & F_ACC, bias = (k->flag & F_BIAS) && k->op == OP_LINEAR;
    c->flops = 2.0 * N * in * out;
    if (k->wt == FT_NF4 && k->op == OP_LINEAR && N <= FT_LINEAR_FEW_ROWS) { /* decoding: bound by the weight's reads */
        c->flops = 0;
        c->bytes = out * in / 2.0 + out * in / 64.0 + 2.0 * N * (in + out); /* codes, absmax bytes, x and y in BF16 */
    }
    if (ft_dtype_is_ggml(k->wt) && k->op == OP_LINEAR && N <= FT_LINEAR_FEW_ROWS) { /* the same for ggml blocks */
        c->flops = 0;
        c->bytes = (double)ft_weight_nbytes(k->wt, out, in) + 2.0 * N * (in + out);
    }
    float *x = ot_gen(c, 31, N * in, 1.0f), *W = ot_gen(c, 32, out * in, 0.2f), *b = ot_gen(c, 33, out, 0.5f);
    float *dy = ot_gen(c, 34, N * out, 1.0f), *y0 = ot_gen(c, 35, N * out, 1.0f), *dx0 = ot_gen(c, 36, N * in, 1.0f);
    if (c->be) {
        ft_weight *dw = ot_up_weight(c, W, out, in, k->wt), *db = bias ? ot_up_weight(c, b, 1, out, FT_BF16) : NULL;
        if (k->op == OP_LINEAR) {
            void *dxx = ot_up_act(c, x, N * in), *y = acc ? ot_up_act(c, y0, N * out) : ot_poison(c, ot_act_size(c) * N * out);
            OT_RUN(c, 1, ft_op_linear(c->be, y, dxx, dw, db, N, acc));
            ot_out_add(o, "y", ot_down_act(c, y, N * out), N * out);
        } else {
            void *ddy = ot_up_act(c, dy, N * out), *dx = acc ? ot_up_act(c, dx0, N * in) : ot_poison(c, ot_act_size(c) * N * in);
            OT_RUN(c, 1, ft_op_linear_bwd_x(c->be, dx, ddy, dw, N, acc));
            ot_out_add(o, "dx", ot_down_act(c, dx, N * in), N * in);
        }
    } else {
        float *wv = ot_weight_values(W, out * in, k->wt), *bv = ot_weight_values(b, out, FT_BF16);
        if (k->op == OP_LINEAR) {
            double *y = ot_dzeros(N * out);
            for (int64_t n = 0; n < N; n++)
                for (int64_t j = 0; j < out; j++) {
                    double s = acc ? y0[n * out + j] : 0.0;
                    for (int64_t i = 0; i < in; i++) s += (double)x[n * in + i] * wv[j * in + i];
                    y[n * out + j] = s + (bias ? bv[j] : 0.0);
                }
            ot_out_add(o, "y", ot_f32_of_double(y, N * out), N * out);
            free(y);
        } else {
            double *dx = ot_dzeros(N * in);
            for (int64_t n = 0; n < N; n++)
                for (int64_t i = 0; i < in; i++) {
                    double s = acc ? dx0[n * in + i] : 0.0;
                    for (int64_t j = 0; j < out; j++) s += (double)dy[n * out + j] * wv[j * in + i];
                    dx[n * in + i] = s;
                }
            ot_out_add(o, "dx", ot_f32_of_double(dx, N * in), N * in);
            free(dx);
        }
        free(wv);
        free(bv);
    }
    free(x), free(W), free(b), free(dy), free(y0), free(dx0);
}

/* s = {N, in, out, R}; scale 1.5; flag F_ACC: y (lora_fwd) and dx (lora_bwd) start from random data
 * and accumulate, else they start poisoned and are overwritten. dA and dB always accumulate. The
 * backward case runs lora_fwd with the same flag first, for its t. F_TONLY (lora_fwd): y is NULL,
 * only t comes out (the recompute's down_proj). F_TGIVEN (lora_fwd): t alone first (y NULL), then y from
 * that t with no input (x NULL), as the forward and the recompute split it. F_DROP: dropout 0.1 on
 * the input, the reference masking with kernels/rng.h's draw (the mask's definition). */
void ot_run_lora(ot_ctx *c, const ot_case *k, ot_out *o) {
    const int64_t N = k->s[0], in = k->s[1], out = k->s[2], R = k->s[3];
    const int acc = k->flag & F_ACC, tonly = k->op == OP_LORA_FWD && (k->flag & F_TONLY);
    const int tgiven = k->op == OP_LORA_FWD && (k->flag & F_TGIVEN);
    const float scale = 1.5f;
    const ft_lora_drop drop = {k->flag & F_DROP ? 0.1f : 0.0f, 0x5eed};
    c->flops = (k->op == OP_LORA_FWD ? 2.0 : 4.0) * N * R * (in + out);
    float *x = ot_gen(c, 41, N * in, 1.0f), *A = ot_gen(c, 42, R * in, 0.3f), *B = ot_gen(c, 43, out * R, 0.3f);
    float *y0 = ot_gen(c, 44, N * out, 1.0f), *dy = ot_gen(c, 45, N * out, 1.0f);
    float *dA0 = ot_gen(c, 46, R * in, 0.1f), *dB0 = ot_gen(c, 47, out * R, 0.1f), *dx0 = ot_gen(c, 48, N * in, 1.0f);
    if (c->be) {
        void *dxv = ot_up_act(c, x, N * in), *dAw = ot_up_raw(c, A, 4 * R * in), *dBw = ot_up_raw(c, B, 4 * out * R);
        void *y = tonly ? NULL : acc ? ot_up_act(c, y0, N * out) : ot_poison(c, ot_act_size(c) * N * out);
        void *t = ot_poison(c, ot_act_size(c) * N * R);
        if (tgiven) {
            OT_RUN(c, 0, ft_op_lora_fwd(c->be, NULL, t, dxv, drop, dAw, dBw, N, in, out, R, scale, 0));
            OT_RUN(c, 1, ft_op_lora_fwd(c->be, y, t, NULL, drop, dAw, dBw, N, in, out, R, scale, acc));
        } else {
            OT_RUN(c, k->op == OP_LORA_FWD,
                   ft_op_lora_fwd(c->be, y, t, dxv, drop, dAw, dBw, N, in, out, R, scale, acc));
        }
        if (k->op == OP_LORA_FWD) {
            if (!tonly) ot_out_add(o, "y", ot_down_act(c, y, N * out), N * out);
            ot_out_add(o, "t", ot_down_act(c, t, N * R), N * R);
        } else {
            void *ddy = ot_up_act(c, dy, N * out);
            void *gx = acc ? ot_up_act(c, dx0, N * in) : ot_poison(c, ot_act_size(c) * N * in);
            void *gA = ot_up_raw(c, dA0, 4 * R * in), *gB = ot_up_raw(c, dB0, 4 * out * R);
            OT_RUN(c, 1, ft_op_lora_bwd(c->be, gx, gA, gB, ddy, dxv, drop, t, dAw, dBw, N, in, out, R, scale, acc));
            ot_out_add(o, "dx", ot_down_act(c, gx, N * in), N * in);
            ot_out_add(o, "dA", ot_down_f32(c, gA, R * in), R * in);
            ot_out_add(o, "dB", ot_down_f32(c, gB, out * R), out * R);
        }
    } else {
        double *t = ot_dzeros(N * R), *y = ot_dzeros(N * out), *dt = ot_dzeros(N * R);
        double *gx = ot_dzeros(N * in), *gA = ot_dzeros(R * in), *gB = ot_dzeros(out * R);
        double *xd = ot_dzeros(N * in), *mask = ot_dzeros(N * in); /* dropout(x), and its factor */
        const uint32_t thr = ft_dropout_threshold(drop.p);
        for (int64_t i = 0; i < N * in; i++) {
            mask[i] = drop.p == 0.0f ? 1.0 : ft_dropout_keep(drop.seed, (uint64_t)i, thr) ? 1.0 / (1.0 - drop.p) : 0.0;
            xd[i] = x[i] * mask[i];
        }
        for (int64_t n = 0; n < N; n++)
            for (int64_t r = 0; r < R; r++)
                for (int64_t i = 0; i < in; i++) t[n * R + r] += xd[n * in + i] * A[r * in + i];
        for (int64_t n = 0; n < N; n++)
            for (int64_t j = 0; j < out; j++) {
                double s = 0;
                for (int64_t r = 0; r < R; r++) s += t[n * R + r] * B[j * R + r];
                y[n * out + j] = (acc ? y0[n * out + j] : 0.0) + scale * s;
            }
        for (int64_t n = 0; n < N; n++)
            for (int64_t r = 0; r < R; r++)
                for (int64_t j = 0; j < out; j++) dt[n * R + r] += scale * (double)dy[n * out + j] * B[j * R + r];
        for (int64_t j = 0; j < out; j++)
            for (int64_t r = 0; r < R; r++) {
                gB[j * R + r] = dB0[j * R + r];
                for (int64_t n = 0; n < N; n++) gB[j * R + r] += scale * (double)dy[n * out + j] * t[n * R + r];
            }
        for (int64_t r = 0; r < R; r++)
            for (int64_t i = 0; i < in; i++) {
                gA[r * in + i] = dA0[r * in + i];
                for (int64_t n = 0; n < N; n++) gA[r * in + i] += dt[n * R + r] * xd[n * in + i];
            }
        for (int64_t n = 0; n < N; n++)
            for (int64_t i = 0; i < in; i++) {
                double g = 0.0;
                for (int64_t r = 0; r < R; r++) g += dt[n * R + r] * A[r * in + i];
                gx[n * in + i] = (acc ? dx0[n * in + i] : 0.0) + mask[n * in + i] * g;
            }
        if (k->op == OP_LORA_FWD) {
            if (!tonly) ot_out_add(o, "y", ot_f32_of_double(y, N * out), N * out);
            ot_out_add(o, "t", ot_f32_of_double(t, N * R), N * R);
        } else {
            ot_out_add(o, "dx", ot_f32_of_double(gx, N * in), N * in);
            ot_out_add(o, "dA", ot_f32_of_double(gA, R * in), R * in);
            ot_out_add(o, "dB", ot_f32_of_double(gB, out * R), out * R);
        }
        free(t), free(y), free(dt), free(gx), free(gA), free(gB), free(xd), free(mask);
    }
    free(x), free(A), free(B), free(y0), free(dy), free(dA0), free(dB0), free(dx0);
}
