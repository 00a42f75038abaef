/* op_table_attention.c: runners of the op test table (tests/op_table.h) for positions and attention:
 * rope (default and llama3 frequencies, forward and inverse), causal GQA attention and its backward,
 * with packed documents, and the cached decoding's attention. Each runs a case on a backend or, with c->be == NULL, computes the
 * double-precision reference by plain loops. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "kernels/ops.h"
#include "kernels/rope.h"
#include "tests/op_table.h"

static void rope_freqs(int llama3, int64_t D, float *inv) {
    ft_rope_cfg cfg = {llama3 ? FT_ROPE_LLAMA3 : FT_ROPE_DEFAULT, llama3 ? 500000.0 : 10000.0, D, 8.0, 1.0, 4.0, 8192};
    FT_CHECK_OK(ft_rope_inv_freq(&cfg, inv));
}

/* s = {N, nh, D}; flag F_INV, F_LLAMA3 */
void ot_run_rope(ot_ctx *c, const ot_case *k, ot_out *o) {
    const int64_t N = k->s[0], nh = k->s[1], D = k->s[2], n = N * nh * D;
    c->bytes = (double)n * 4;
    float *x = ot_gen(c, 61, n, 1.0f), inv[512];
    rope_freqs(k->flag & F_LLAMA3, D, inv);
    int32_t *pos = malloc((size_t)N * sizeof(int32_t));
    for (int64_t i = 0; i < N; i++) pos[i] = (int32_t)(i == N - 1 ? 100000 : i * 37 % 5000);
    if (c->be) {
        void *dx = ot_up_act(c, x, n), *dpos = ot_up_raw(c, pos, 4 * N), *dinv = ot_up_raw(c, inv, 4 * (D / 2));
        OT_RUN(c, 1, ft_op_rope(c->be, dx, dpos, dinv, N, nh, D, k->flag & F_INV));
        ot_out_add(o, "x", ot_down_act(c, dx, n), n);
    } else {
        /* transformers: angle = float(pos) * inv_freq in float32, then cos/sin of that angle */
        double *y = ot_dzeros(n);
        const double sg = (k->flag & F_INV) ? -1.0 : 1.0;
        for (int64_t t = 0; t < N; t++)
            for (int64_t h = 0; h < nh; h++)
                for (int64_t i = 0; i < D / 2; i++) {
                    const float ang = (float)pos[t] * inv[i];
                    const double cs = cos((double)ang), sn = sg * sin((double)ang);
                    const float *r = x + (t * nh + h) * D;
                    y[(t * nh + h) * D + i] = r[i] * cs - r[i + D / 2] * sn;
                    y[(t * nh + h) * D + i + D / 2] = r[i + D / 2] * cs + r[i] * sn;
                }
        ot_out_add(o, "x", ot_f32_of_double(y, n), n);
        free(y);
    }
    free(x);
    free(pos);
}

/* Packed documents: within each row, documents start at 0 and at a few row-dependent positions. */
static void make_doc_start(int32_t *ds, int64_t B, int64_t T, int pack) {
    for (int64_t b = 0; b < B; b++) {
        int32_t start = 0;
        for (int64_t i = 0; i < T; i++) {
            if (pack && i > 0 && (i % (4 + b) == 0 || i == T - 1)) start = (int32_t)i;
            ds[b * T + i] = start;
        }
    }
}

/* s = {B, T, H, Hkv, D}; flag F_PACK */
void ot_run_attention(ot_ctx *c, const ot_case *k, ot_out *o) {
    const int64_t B = k->s[0], T = k->s[1], H = k->s[2], Hkv = k->s[3], D = k->s[4], N = B * T;
    /* causal: the visible half of the scores; the backward counts 2.5x the forward, as usual */
    c->flops = (k->op == OP_ATTN ? 1.0 : 2.5) * 4 * B * H * D * ((double)T * (T + 1) / 2);
    const int64_t nq = N * H * D, nk = N * Hkv * D, grp = H / Hkv;
    const float scale = 1.0f / sqrtf((float)D);
    float *q = ot_gen(c, 71, nq, 1.5f), *kk = ot_gen(c, 72, nk, 1.5f), *v = ot_gen(c, 73, nk, 1.0f);
    float *dout = ot_gen(c, 74, nq, 1.0f);
    int32_t *ds = malloc((size_t)N * sizeof(int32_t));
    make_doc_start(ds, B, T, k->flag & F_PACK);
    if (c->be) {
        void *dq = ot_up_act(c, q, nq), *dk = ot_up_act(c, kk, nk), *dv = ot_up_act(c, v, nk);
        void *dds = (k->flag & F_PACK) ? ot_up_raw(c, ds, 4 * N) : NULL;
        const int64_t nd = (k->flag & F_PACK) ? ft_attn_doc_count(ds, B, T) : 0; /* what the model passes */
        void *out = ot_poison(c, ot_act_size(c) * nq), *lse = ot_poison(c, 4 * N * H);
        OT_RUN(c, k->op == OP_ATTN, ft_op_attention(c->be, out, lse, dq, dk, dv, dds, nd, B, T, H, Hkv, D, scale));
        if (k->op == OP_ATTN) {
            ot_out_add(o, "out", ot_down_act(c, out, nq), nq);
            ot_out_add(o, "lse", ot_down_f32(c, lse, N * H), N * H);
        } else {
            void *gq = ot_poison(c, ot_act_size(c) * nq), *gk = ot_poison(c, ot_act_size(c) * nk), *gv = ot_poison(c, ot_act_size(c) * nk);
            void *ddo = ot_up_act(c, dout, nq);
            OT_RUN(c, 1, ft_op_attention_bwd(c->be, gq, gk, gv, ddo, dq, dk, dv, out, lse, dds, nd, B, T, H, Hkv, D, scale));
            ot_out_add(o, "dq", ot_down_act(c, gq, nq), nq);
            ot_out_add(o, "dk", ot_down_act(c, gk, nk), nk);
            ot_out_add(o, "dv", ot_down_act(c, gv, nk), nk);
        }
    } else {
        /* Full T x T probability matrix per (b, h), masked entries 0. */
        double *P = ot_dzeros(T * T), *out = ot_dzeros(nq), *lse = ot_dzeros(N * H);
        double *gq = ot_dzeros(nq), *gk = ot_dzeros(nk), *gv = ot_dzeros(nk), *dP = ot_dzeros(T * T);
        for (int64_t b = 0; b < B; b++)
            for (int64_t h = 0; h < H; h++) {
                const int64_t kh = h / grp;
                for (int64_t i = 0; i < T; i++) {
                    double m = -INFINITY, l = 0;
                    for (int64_t j = 0; j < T; j++) {
                        if (j > i || j < ds[b * T + i]) continue;
                        double s = 0;
                        for (int64_t d = 0; d < D; d++)
                            s += (double)q[((b * T + i) * H + h) * D + d] * kk[((b * T + j) * Hkv + kh) * D + d];
                        P[i * T + j] = s * scale;
                        m = fmax(m, P[i * T + j]);
                    }
                    for (int64_t j = 0; j < T; j++) {
                        if (j > i || j < ds[b * T + i]) { P[i * T + j] = 0; continue; }
                        P[i * T + j] = exp(P[i * T + j] - m);
                        l += P[i * T + j];
                    }
                    for (int64_t j = 0; j < T; j++) P[i * T + j] /= l;
                    lse[(b * T + i) * H + h] = m + log(l);
                    for (int64_t d = 0; d < D; d++) {
                        double s = 0;
                        for (int64_t j = 0; j < T; j++) s += P[i * T + j] * v[((b * T + j) * Hkv + kh) * D + d];
                        out[((b * T + i) * H + h) * D + d] = s;
                    }
                }
                /* backward: dP = dout . v^T; dS = P (dP - rowsum(P dP)); dq = scale dS k; dk = scale dS^T q; dv = P^T dout */
                for (int64_t i = 0; i < T; i++) {
                    double rs = 0;
                    for (int64_t j = 0; j < T; j++) {
                        double s = 0;
                        for (int64_t d = 0; d < D; d++)
                            s += (double)dout[((b * T + i) * H + h) * D + d] * v[((b * T + j) * Hkv + kh) * D + d];
                        dP[i * T + j] = s;
                        rs += P[i * T + j] * s;
                    }
                    for (int64_t j = 0; j < T; j++) {
                        const double dS = P[i * T + j] * (dP[i * T + j] - rs);
                        for (int64_t d = 0; d < D; d++) {
                            gq[((b * T + i) * H + h) * D + d] += scale * dS * kk[((b * T + j) * Hkv + kh) * D + d];
                            gk[((b * T + j) * Hkv + kh) * D + d] += scale * dS * q[((b * T + i) * H + h) * D + d];
                            gv[((b * T + j) * Hkv + kh) * D + d] += P[i * T + j] * dout[((b * T + i) * H + h) * D + d];
                        }
                    }
                }
            }
        if (k->op == OP_ATTN) {
            ot_out_add(o, "out", ot_f32_of_double(out, nq), nq);
            ot_out_add(o, "lse", ot_f32_of_double(lse, N * H), N * H);
        } else {
            ot_out_add(o, "dq", ot_f32_of_double(gq, nq), nq);
            ot_out_add(o, "dk", ot_f32_of_double(gk, nk), nk);
            ot_out_add(o, "dv", ot_f32_of_double(gv, nk), nk);
        }
        free(P), free(out), free(lse), free(gq), free(gk), free(gv), free(dP);
    }
    free(q), free(kk), free(v), free(dout), free(ds);
}

/* s = {Tq, Tk, H, Hkv, D}: the cached decoding's attention, Tq new queries of one sequence against
 * its Tk keys so far (query i at position Tk - Tq + i). */
void ot_run_attention_kv(ot_ctx *c, const ot_case *k, ot_out *o) {
    const int64_t Tq = k->s[0], Tk = k->s[1], H = k->s[2], Hkv = k->s[3], D = k->s[4], grp = H / Hkv;
    const int64_t nq = Tq * H * D, nk = Tk * Hkv * D;
    const float scale = 1.0f / sqrtf((float)D);
    float *q = ot_gen(c, 81, nq, 1.5f), *kk = ot_gen(c, 82, nk, 1.5f), *v = ot_gen(c, 83, nk, 1.0f);
    if (c->be) {
        c->bytes = 2.0 * (double)nk * ot_act_size(c); /* reading K and V once bounds it: the rate is GB/s */
        void *dq = ot_up_act(c, q, nq), *dk = ot_up_act(c, kk, nk), *dv = ot_up_act(c, v, nk);
        void *out = ot_poison(c, ot_act_size(c) * nq);
        OT_RUN(c, 1, ft_op_attention_kv(c->be, out, dq, dk, dv, Tq, Tk, H, Hkv, D, scale));
        ot_out_add(o, "out", ot_down_act(c, out, nq), nq);
    } else {
        double *out = ot_dzeros(nq), *p = ot_dzeros(Tk);
        for (int64_t i = 0; i < Tq; i++)
            for (int64_t h = 0; h < H; h++) {
                const int64_t hi = Tk - Tq + i, kh = h / grp;
                double m = -INFINITY, l = 0;
                for (int64_t j = 0; j <= hi; j++) {
                    double s = 0;
                    for (int64_t d = 0; d < D; d++) s += (double)q[(i * H + h) * D + d] * kk[(j * Hkv + kh) * D + d];
                    p[j] = s * scale;
                    m = fmax(m, p[j]);
                }
                for (int64_t j = 0; j <= hi; j++) l += (p[j] = exp(p[j] - m));
                for (int64_t d = 0; d < D; d++) {
                    double s = 0;
                    for (int64_t j = 0; j <= hi; j++) s += p[j] * v[(j * Hkv + kh) * D + d];
                    out[(i * H + h) * D + d] = s / l;
                }
            }
        ot_out_add(o, "out", ot_f32_of_double(out, nq), nq);
        free(out), free(p);
    }
    free(q), free(kk), free(v);
}
