/* test_ops_grad.c: finite-difference checks of every backward op of the CPU reference backend.
 *
 * For an op y = f(x) and fixed random output weights w, L(x) = sum(w * f(x)) (accumulated in
 * double). The analytic gradient g = df/dx^T w comes from the backward op with dout = w. Along six
 * directions u (three dense, three supported on 4 random coordinates) the central difference
 * L(x+) - L(x-) with x+- = fl(x +- eps u) is compared with g . (x+ - x-) (the step actually taken
 * in float32); the relative error must be <= tol (1e-2 here, at eps 1e-2 on O(1) inputs: float32
 * rounding of L contributes ~1e-5, truncation ~eps^2). To show the check can fail, the same
 * comparison is made for two corrupted gradients, which must be rejected: g * 1.05, and g with the
 * sign of its largest term in a sparse direction flipped. Every backward is also run twice and
 * must be bit-identical (determinism), and dropout's forward and backward must use one mask.
 *
 * The CPU backend's memory is host memory, so host arrays are handed to the ops directly. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"
#include "kernels/ops.h"
#include "kernels/rng.h"
#include "kernels/rope.h"
#include "tests/harness.h"

enum { NDIR = 6 };
static const double TOL = 1e-2, EPS = 1e-2;

typedef double (*loss_fn)(void *ctx);

static float *arr(int64_t n, uint64_t seed, float scale) {
    float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    if (!p) abort();
    for (int64_t i = 0; i < n; i++) p[i] = (2.0f * ft_uniform(seed, (uint64_t)i) - 1.0f) * scale;
    return p;
}
static float *zeros(int64_t n) {
    float *p = calloc((size_t)(n > 0 ? n : 1), sizeof(float));
    if (!p) abort();
    return p;
}
static double wsum(const float *w, const float *y, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)w[i] * y[i];
    return s;
}
static double rel_err(double num, double ana, double floor) {
    double den = fmax(fmax(fabs(num), fabs(ana)), floor);
    return den > 0 ? fabs(num - ana) / den : 0.0;
}

/* Checks gradient g of L w.r.t. x[n] (x is perturbed and restored). */
static void fd_check(const char *what, float *x, int64_t n, const float *g, loss_fn L, void *ctx) {
    float *x0 = malloc((size_t)n * sizeof(float));
    memcpy(x0, x, (size_t)n * sizeof(float));
    double gnorm = 0;
    for (int64_t i = 0; i < n; i++) gnorm += (double)g[i] * g[i];
    gnorm = sqrt(gnorm);
    double worst = 0, rej_scale = 0, rej_flip = 0;
    double *u = calloc((size_t)n, sizeof(double)), *dx = calloc((size_t)n, sizeof(double));
    for (int d = 0; d < NDIR; d++) {
        memset(u, 0, (size_t)n * sizeof(double));
        if (d < 3) {
            for (int64_t i = 0; i < n; i++) u[i] = 2.0 * ft_uniform(1000 + d, (uint64_t)i) - 1.0;
        } else {
            for (int j = 0; j < 4; j++) u[(int64_t)(ft_uniform(2000 + d, (uint64_t)j) * n) % n] = j % 2 ? -1.0 : 1.0;
        }
        double unorm = 0;
        for (int64_t i = 0; i < n; i++) unorm += u[i] * u[i];
        unorm = sqrt(unorm);
        for (int64_t i = 0; i < n; i++) x[i] = (float)(x0[i] + EPS * u[i] / unorm * sqrt((double)(d < 3 ? n : 4)));
        double lp = L(ctx);
        for (int64_t i = 0; i < n; i++) {
            float xp = x[i];
            x[i] = (float)(x0[i] - EPS * u[i] / unorm * sqrt((double)(d < 3 ? n : 4)));
            dx[i] = (double)xp - x[i];
        }
        double lm = L(ctx);
        memcpy(x, x0, (size_t)n * sizeof(float));
        double ana = 0, dxn = 0, big = 0;
        int64_t kbig = 0;
        for (int64_t i = 0; i < n; i++) {
            ana += (double)g[i] * dx[i];
            dxn += dx[i] * dx[i];
            if (fabs(g[i] * dx[i]) > big) big = fabs(g[i] * dx[i]), kbig = i;
        }
        const double num = lp - lm, floor = 1e-3 * gnorm * sqrt(dxn);
        worst = fmax(worst, rel_err(num, ana, floor));
        rej_scale = fmax(rej_scale, rel_err(num, 1.05 * ana, floor));
        if (d >= 3) rej_flip = fmax(rej_flip, rel_err(num, ana - 2.0 * g[kbig] * dx[kbig], floor));
    }
    if (FT_CHECK(worst <= TOL, "%s: finite-difference rel err %.3e > %.0e", what, worst, TOL))
        printf("ok   %-44s fd rel err %.2e (corrupted gradients: %.2e, %.2e)\n", what, worst, rej_scale, rej_flip);
    FT_CHECK(rej_scale > TOL && rej_flip > TOL, "%s: a corrupted gradient passed (%.2e, %.2e)", what, rej_scale,
             rej_flip);
    free(u), free(dx), free(x0);
}

static void check_same(const char *what, const float *a, const float *b, int64_t n) {
    FT_CHECK(memcmp(a, b, (size_t)n * sizeof(float)) == 0, "%s: two backward runs differ (not deterministic)", what);
}

static ft_backend *be;

static void weight(ft_weight *w, ft_dtype t, int64_t rows, int64_t cols, uint64_t seed, float scale) {
    float *h = arr(rows * cols, seed, scale);
    FT_CHECK_OK(ft_weight_alloc(be, w, t, rows, cols, "grad test weight"));
    FT_CHECK_OK(ft_weight_set(be, w, h, FT_F32));
    free(h);
}

/* ---- RMSNorm ---------------------------------------------------------------------------------- */
typedef struct { float *x, *out, *wout; ft_weight *w; int64_t N, C; } rms_ctx;
static double rms_loss(void *p) {
    rms_ctx *c = p;
    FT_CHECK_OK(ft_op_rmsnorm(be, c->out, NULL, c->x, c->w, c->N, c->C, 1e-6f));
    return wsum(c->wout, c->out, c->N * c->C);
}
static void grad_rmsnorm(const char *what, int64_t N, int64_t C, ft_dtype wt) {
    ft_weight w;
    weight(&w, wt, 1, C, 3, 1.5f);
    rms_ctx c = {arr(N * C, 1, 2.0f), zeros(N * C), arr(N * C, 2, 1.0f), &w, N, C};
    float *rstd = zeros(N), *g = zeros(N * C), *g2 = zeros(N * C);
    FT_CHECK_OK(ft_op_rmsnorm(be, c.out, rstd, c.x, &w, N, C, 1e-6f));
    FT_CHECK_OK(ft_op_rmsnorm_bwd(be, g, c.wout, c.x, &w, rstd, N, C, 0));
    FT_CHECK_OK(ft_op_rmsnorm_bwd(be, g2, c.wout, c.x, &w, rstd, N, C, 0));
    check_same(what, g, g2, N * C);
    fd_check(what, c.x, N * C, g, rms_loss, &c);
    ft_weight_release(be, &w);
    free(c.x), free(c.out), free(c.wout), free(rstd), free(g), free(g2);
}

/* ---- RoPE ------------------------------------------------------------------------------------- */
typedef struct { float *x, *out, *wout, *inv; int32_t *pos; int64_t N, nh, D; } rope_ctx;
static double rope_loss(void *p) {
    rope_ctx *c = p;
    memcpy(c->out, c->x, (size_t)(c->N * c->nh * c->D) * sizeof(float));
    FT_CHECK_OK(ft_op_rope(be, c->out, c->pos, c->inv, c->N, c->nh, c->D, 0));
    return wsum(c->wout, c->out, c->N * c->nh * c->D);
}
static void grad_rope(const char *what, ft_rope_cfg cfg, int64_t N, int64_t nh) {
    const int64_t D = cfg.dim, n = N * nh * D;
    float inv[256];
    FT_CHECK_OK(ft_rope_inv_freq(&cfg, inv));
    int32_t pos[32];
    for (int64_t i = 0; i < N; i++) pos[i] = (int32_t)(i * 1237 % 9000);
    rope_ctx c = {arr(n, 11, 1.0f), zeros(n), arr(n, 12, 1.0f), inv, pos, N, nh, D};
    float *g = malloc((size_t)n * 4), *g2 = malloc((size_t)n * 4);
    memcpy(g, c.wout, (size_t)n * 4), memcpy(g2, c.wout, (size_t)n * 4);
    FT_CHECK_OK(ft_op_rope(be, g, pos, inv, N, nh, D, 1));
    FT_CHECK_OK(ft_op_rope(be, g2, pos, inv, N, nh, D, 1));
    check_same(what, g, g2, n);
    fd_check(what, c.x, n, g, rope_loss, &c);
    free(c.x), free(c.out), free(c.wout), free(g), free(g2);
}

/* ---- attention -------------------------------------------------------------------------------- */
typedef struct { float *q, *k, *v, *out, *lse, *wout; int32_t *ds; int64_t B, T, H, Hkv, D; } attn_ctx;
static double attn_loss(void *p) {
    attn_ctx *c = p;
    FT_CHECK_OK(ft_op_attention(be, c->out, c->lse, c->q, c->k, c->v, c->ds, ft_attn_doc_count(c->ds, c->B, c->T),
                                c->B, c->T, c->H, c->Hkv, c->D, 1.0f / sqrtf((float)c->D)));
    return wsum(c->wout, c->out, c->B * c->T * c->H * c->D);
}
static void grad_attention(const char *what, int64_t B, int64_t T, int64_t H, int64_t Hkv, int64_t D, int pack) {
    const int64_t N = B * T, nq = N * H * D, nk = N * Hkv * D;
    int32_t *ds = malloc((size_t)N * sizeof(int32_t));
    for (int64_t b = 0; b < B; b++)
        for (int64_t i = 0, s = 0; i < T; i++) {
            if (pack && i > 0 && i % (3 + b) == 0) s = i;
            ds[b * T + i] = (int32_t)s;
        }
    attn_ctx c = {arr(nq, 21, 1.5f), arr(nk, 22, 1.5f), arr(nk, 23, 1.0f), zeros(nq), zeros(N * H), arr(nq, 24, 1.0f),
                  pack ? ds : NULL, B, T, H, Hkv, D};
    float *gq = zeros(nq), *gk = zeros(nk), *gv = zeros(nk), *gq2 = zeros(nq), *gk2 = zeros(nk), *gv2 = zeros(nk);
    const float scale = 1.0f / sqrtf((float)D);
    attn_loss(&c);
    const int64_t nd = ft_attn_doc_count(c.ds, B, T);
    FT_CHECK_OK(ft_op_attention_bwd(be, gq, gk, gv, c.wout, c.q, c.k, c.v, c.out, c.lse, c.ds, nd, B, T, H, Hkv, D, scale));
    FT_CHECK_OK(ft_op_attention_bwd(be, gq2, gk2, gv2, c.wout, c.q, c.k, c.v, c.out, c.lse, c.ds, nd, B, T, H, Hkv, D,
                                    scale));
    char name[128];
    snprintf(name, sizeof name, "%s dq", what);
    check_same(name, gq, gq2, nq);
    fd_check(name, c.q, nq, gq, attn_loss, &c);
    snprintf(name, sizeof name, "%s dk", what);
    check_same(name, gk, gk2, nk);
    fd_check(name, c.k, nk, gk, attn_loss, &c);
    snprintf(name, sizeof name, "%s dv", what);
    check_same(name, gv, gv2, nk);
    fd_check(name, c.v, nk, gv, attn_loss, &c);
    free(c.q), free(c.k), free(c.v), free(c.out), free(c.lse), free(c.wout), free(ds);
    free(gq), free(gk), free(gv), free(gq2), free(gk2), free(gv2);
}

/* ---- SwiGLU ----------------------------------------------------------------------------------- */
typedef struct { float *g, *u, *out, *wout; int64_t n; } swi_ctx;
static double swi_loss(void *p) {
    swi_ctx *c = p;
    FT_CHECK_OK(ft_op_swiglu(be, c->out, c->g, c->u, c->n));
    return wsum(c->wout, c->out, c->n);
}
static void grad_swiglu(void) {
    const int64_t n = 300;
    swi_ctx c = {arr(n, 31, 4.0f), arr(n, 32, 2.0f), zeros(n), arr(n, 33, 1.0f), n};
    float *dg = zeros(n), *du = zeros(n), *dg2 = zeros(n), *du2 = zeros(n);
    FT_CHECK_OK(ft_op_swiglu_bwd(be, dg, du, c.wout, c.g, c.u, n));
    FT_CHECK_OK(ft_op_swiglu_bwd(be, dg2, du2, c.wout, c.g, c.u, n));
    check_same("swiglu", dg, dg2, n);
    check_same("swiglu", du, du2, n);
    fd_check("swiglu dgate", c.g, n, dg, swi_loss, &c);
    fd_check("swiglu dup", c.u, n, du, swi_loss, &c);
    free(c.g), free(c.u), free(c.out), free(c.wout), free(dg), free(du), free(dg2), free(du2);
}

/* ---- frozen linear ---------------------------------------------------------------------------- */
typedef struct { float *x, *y, *wout; ft_weight *W, *b; int64_t N; } lin_ctx;
static double lin_loss(void *p) {
    lin_ctx *c = p;
    FT_CHECK_OK(ft_op_linear(be, c->y, c->x, c->W, c->b, c->N, 0));
    return wsum(c->wout, c->y, c->N * c->W->rows);
}
static void grad_linear(const char *what, ft_dtype wt, int bias) {
    const int64_t N = 6, in = 70, out = 300;
    ft_weight W, b;
    weight(&W, wt, out, in, 41, 0.3f);
    if (bias) weight(&b, FT_BF16, 1, out, 42, 1.0f);
    lin_ctx c = {arr(N * in, 43, 1.0f), zeros(N * out), arr(N * out, 44, 1.0f), &W, bias ? &b : NULL, N};
    float *g = zeros(N * in), *g2 = zeros(N * in);
    FT_CHECK_OK(ft_op_linear_bwd_x(be, g, c.wout, &W, N, 0));
    FT_CHECK_OK(ft_op_linear_bwd_x(be, g2, c.wout, &W, N, 0));
    check_same(what, g, g2, N * in);
    fd_check(what, c.x, N * in, g, lin_loss, &c);
    ft_weight_release(be, &W);
    if (bias) ft_weight_release(be, &b);
    free(c.x), free(c.y), free(c.wout), free(g), free(g2);
}

/* ---- LoRA -------------------------------------------------------------------------------------- */
typedef struct { float *x, *A, *B, *y, *t, *wout; int64_t N, in, out, R; float scale; ft_lora_drop drop; } lora_ctx;
static double lora_loss(void *p) {
    lora_ctx *c = p;
    FT_CHECK_OK(ft_op_lora_fwd(be, c->y, c->t, c->x, c->drop, c->A, c->B, c->N, c->in, c->out, c->R, c->scale, 0));
    return wsum(c->wout, c->y, c->N * c->out);
}
/* p > 0: the input gradient goes through the forward's dropout mask (the op draws it both times). */
static void grad_lora(float p) {
    const int64_t N = 7, in = 40, out = 30, R = 4;
    lora_ctx c = {arr(N * in, 51, 1.0f), arr(R * in, 52, 0.5f), arr(out * R, 53, 0.5f), zeros(N * out), zeros(N * R),
                  arr(N * out, 54, 1.0f), N, in, out, R, 2.0f, {p, 0x1234}};
    float *gx = zeros(N * in), *gA = zeros(R * in), *gB = zeros(out * R);
    float *gx2 = zeros(N * in), *gA2 = zeros(R * in), *gB2 = zeros(out * R);
    char what[3][32];
    snprintf(what[0], sizeof what[0], "lora p=%g dx", p);
    snprintf(what[1], sizeof what[1], "lora p=%g dA", p);
    snprintf(what[2], sizeof what[2], "lora p=%g dB", p);
    lora_loss(&c);
    FT_CHECK_OK(ft_op_lora_bwd(be, gx, gA, gB, c.wout, c.x, c.drop, c.t, c.A, c.B, N, in, out, R, c.scale, 0));
    FT_CHECK_OK(ft_op_lora_bwd(be, gx2, gA2, gB2, c.wout, c.x, c.drop, c.t, c.A, c.B, N, in, out, R, c.scale, 0));
    check_same(what[0], gx, gx2, N * in);
    check_same(what[1], gA, gA2, R * in);
    check_same(what[2], gB, gB2, out * R);
    fd_check(what[0], c.x, N * in, gx, lora_loss, &c);
    fd_check(what[1], c.A, R * in, gA, lora_loss, &c);
    fd_check(what[2], c.B, out * R, gB, lora_loss, &c);
    /* weight gradients accumulate: a second backward adds the same again; so does dx with
     * accumulate, onto what it held (x here) */
    memcpy(gx2, c.x, (size_t)(N * in) * 4);
    FT_CHECK_OK(ft_op_lora_bwd(be, gx2, gA, gB, c.wout, c.x, c.drop, c.t, c.A, c.B, N, in, out, R, c.scale, 1));
    int acc = 1, dropped = 0;
    for (int64_t i = 0; i < R * in; i++) acc &= fabsf(gA[i] - 2.0f * gA2[i]) <= 1e-5f * (1.0f + fabsf(gA2[i]));
    for (int64_t i = 0; i < out * R; i++) acc &= fabsf(gB[i] - 2.0f * gB2[i]) <= 1e-5f * (1.0f + fabsf(gB2[i]));
    FT_CHECK(acc, "lora_bwd p=%g: dA/dB do not accumulate", p);
    for (int64_t i = 0; i < N * in; i++) acc &= fabsf(gx2[i] - (c.x[i] + gx[i])) <= 1e-5f * (1.0f + fabsf(gx2[i]));
    for (int64_t i = 0; i < N * in; i++) dropped += gx[i] == 0.0f;
    FT_CHECK(acc, "lora_bwd p=%g: dx does not accumulate", p);
    FT_CHECK(p > 0 ? dropped > 0 : dropped == 0, "lora_bwd p=%g: %d of %lld input gradients are 0", p, dropped,
             (long long)(N * in));
    free(c.x), free(c.A), free(c.B), free(c.y), free(c.t), free(c.wout);
    free(gx), free(gA), free(gB), free(gx2), free(gA2), free(gB2);
}

/* ---- cross-entropy ------------------------------------------------------------------------------ */
typedef struct { float *logits, *tmp; int32_t *labels; int64_t n, V; double mult; } xent_ctx;
static double xent_loss(void *p) { /* row by row, so the float32 loss_sum rounds small numbers */
    xent_ctx *c = p;
    double L = 0;
    memcpy(c->tmp, c->logits, (size_t)(c->n * c->V) * sizeof(float));
    for (int64_t r = 0; r < c->n; r++) {
        float ls = 0.0f;
        FT_CHECK_OK(ft_op_xent(be, &ls, NULL, c->tmp + r * c->V, c->labels + r, 1, c->V, 0.0f));
        L += ls;
    }
    return c->mult * L;
}
static void grad_xent(const char *what, float grad_scale) {
    const int64_t n = 6, V = 37;
    int32_t labels[6] = {3, -100, 36, 0, -1, 17};
    xent_ctx c = {arr(n * V, 61, 4.0f), zeros(n * V), labels, n, V, grad_scale};
    float *g = malloc((size_t)(n * V) * 4), *g2 = malloc((size_t)(n * V) * 4), ls = 0.0f, cnt = 0.0f;
    memcpy(g, c.logits, (size_t)(n * V) * 4), memcpy(g2, c.logits, (size_t)(n * V) * 4);
    FT_CHECK_OK(ft_op_xent(be, &ls, &cnt, g, labels, n, V, grad_scale));
    FT_CHECK_OK(ft_op_xent(be, &ls, NULL, g2, labels, n, V, grad_scale));
    check_same(what, g, g2, n * V);
    FT_CHECK(cnt == 4.0f, "%s: count %g, want 4 (two ignored labels)", what, cnt);
    int zero = 1;
    for (int64_t j = 0; j < V; j++) zero &= g[1 * V + j] == 0.0f && g[4 * V + j] == 0.0f;
    FT_CHECK(zero, "%s: ignored rows must have zero gradient", what);
    fd_check(what, c.logits, n * V, g, xent_loss, &c);
    free(c.logits), free(c.tmp), free(g), free(g2);
}

/* ---- dropout ------------------------------------------------------------------------------------ */
typedef struct { float *x, *out, *wout; int64_t n; float p; uint64_t seed; } drop_ctx;
static double drop_loss(void *p) {
    drop_ctx *c = p;
    FT_CHECK_OK(ft_op_dropout(be, c->out, c->x, c->n, c->p, c->seed));
    return wsum(c->wout, c->out, c->n);
}
static void grad_dropout(void) {
    const int64_t n = 2000;
    drop_ctx c = {arr(n, 71, 1.0f), zeros(n), arr(n, 72, 1.0f), n, 0.25f, 0xabcdef};
    for (int64_t i = 0; i < n; i++) c.x[i] += c.x[i] >= 0 ? 0.1f : -0.1f, c.wout[i] += c.wout[i] >= 0 ? 0.1f : -0.1f;
    float *g = zeros(n), *g2 = malloc((size_t)n * 4);
    drop_loss(&c);
    FT_CHECK_OK(ft_op_dropout(be, g, c.wout, n, c.p, c.seed)); /* the backward is the same op on dout */
    memcpy(g2, c.wout, (size_t)n * 4);
    FT_CHECK_OK(ft_op_dropout(be, g2, g2, n, c.p, c.seed)); /* in place */
    check_same("dropout", g, g2, n);
    int64_t dropped = 0, same_mask = 1;
    for (int64_t i = 0; i < n; i++) {
        dropped += c.out[i] == 0.0f;
        same_mask &= (c.out[i] == 0.0f) == (g[i] == 0.0f);
    }
    FT_CHECK(same_mask, "dropout: the forward and backward masks differ");
    FT_CHECK(dropped > n * 0.2 && dropped < n * 0.3, "dropout p=0.25 dropped %lld of %lld", (long long)dropped,
             (long long)n);
    fd_check("dropout p=0.25", c.x, n, g, drop_loss, &c);
    free(c.x), free(c.out), free(c.wout), free(g), free(g2);
}

/* The mask's statistics (kernels/rng.h draws 4 elements from one SplitMix64 output, 16 bits each):
 * the drop rate, and the joint drop rate of two elements in the same group, in neighbouring groups
 * and under neighbouring seeds, each within 5 standard deviations of a Bernoulli(p) law's. */
static void check_dropout_mask(void) {
    const int64_t n = 1 << 20;
    const float ps[] = {0.05f, 0.25f};
    float *x = malloc((size_t)n * 4), *a = malloc((size_t)n * 4), *b = malloc((size_t)n * 4);
    for (int64_t i = 0; i < n; i++) x[i] = 1.0f;
    for (int k = 0; k < 2; k++) {
        const double p = ps[k], pe = ft_dropout_threshold(ps[k]) / 65536.0;
        FT_CHECK(fabs(pe - p) <= 0.5 / 65536, "dropout threshold for p=%g is %g", p, pe);
        FT_CHECK_OK(ft_op_dropout(be, a, x, n, ps[k], 0x5eed));
        FT_CHECK_OK(ft_op_dropout(be, b, x, n, ps[k], 0x5eee));
        int64_t d = 0, d_in = 0, d_next = 0, d_seed = 0, n_in = 0, n_next = 0;
        for (int64_t i = 0; i < n; i++) {
            const int da = a[i] == 0.0f;
            d += da;
            d_seed += da && b[i] == 0.0f;
            if (i % 4 != 3) d_in += da && a[i + 1] == 0.0f, n_in++;         /* same group */
            if (i + 4 < n) d_next += da && a[i + 4] == 0.0f, n_next++;      /* next group */
        }
        const struct { const char *what; int64_t hits, trials; double q; } st[] = {
            {"drop rate", d, n, pe},
            {"both dropped, same group", d_in, n_in, pe * pe},
            {"both dropped, next group", d_next, n_next, pe * pe},
            {"both dropped, next seed", d_seed, n, pe * pe},
        };
        for (int j = 0; j < 4; j++) {
            const double mean = st[j].q * st[j].trials, sd = sqrt(st[j].trials * st[j].q * (1 - st[j].q));
            FT_CHECK(!(fabs(st[j].hits - mean) > 5 * sd), "dropout p=%g %s: %lld of %lld, expected %.0f +- %.0f", p,
                     st[j].what, (long long)st[j].hits, (long long)st[j].trials, mean, 5 * sd);
        }
    }
    free(x), free(a), free(b);
}

/* ---- trainable tokens: rows_sum is rows_set's backward, cols_take cols_set's ------------------- */
typedef struct { float *x, *x0, *rows, *wout; int32_t *pos; int64_t N, C, k; } rows_ctx;
static double rows_loss(void *p) {
    rows_ctx *c = p;
    memcpy(c->x, c->x0, (size_t)(c->N * c->C) * sizeof(float));
    FT_CHECK_OK(ft_op_rows_set(be, c->x, c->rows, c->pos, c->k, c->C));
    return wsum(c->wout, c->x, c->N * c->C);
}
/* L(rows) = sum(w * rows_set(x, rows)): drows = rows_sum(w) (from zero), token 1 with no rows */
static void grad_rows(void) {
    enum { N = 11, C = 7, K = 3, M = 6 };
    int32_t pos[K + 1 + M] = {0, 4, 4, 6, 9, 0, 3, 10, 5, 7};
    rows_ctx c = {zeros(N * C), arr(N * C, 41, 1.0f), arr(K * C, 42, 1.0f), arr(N * C, 43, 1.0f), pos, N, C, K};
    float *g = zeros(K * C), *g2 = zeros(K * C);
    FT_CHECK_OK(ft_op_rows_sum(be, g, c.wout, pos, K, C));
    FT_CHECK_OK(ft_op_rows_sum(be, g2, c.wout, pos, K, C));
    check_same("rows_sum", g, g2, K * C);
    fd_check("rows_set drows (rows_sum)", c.rows, K * C, g, rows_loss, &c);
    free(c.x), free(c.x0), free(c.rows), free(c.wout), free(g), free(g2);
}

typedef struct { float *l, *l0, *t, *wout; int32_t *cols; int64_t n, V, k; } cols_ctx;
static double cols_loss(void *p) {
    cols_ctx *c = p;
    memcpy(c->l, c->l0, (size_t)(c->n * c->V) * sizeof(float));
    FT_CHECK_OK(ft_op_cols_set(be, c->l, c->t, c->cols, c->n, c->V, c->k));
    return wsum(c->wout, c->l, c->n * c->V);
}
/* L(logits, t) = sum(w * cols_set(logits, t)): cols_take(w) gives dt and leaves dlogits (w with the
 * replaced columns zeroed) */
static void grad_cols(void) {
    enum { n = 5, V = 13, K = 4 };
    int32_t cols[K] = {12, 0, 7, 3};
    cols_ctx c = {zeros(n * V), arr(n * V, 44, 2.0f), arr(n * K, 45, 2.0f), arr(n * V, 46, 1.0f), cols, n, V, K};
    float *dl = zeros(n * V), *dt = zeros(n * K);
    memcpy(dl, c.wout, sizeof(float) * n * V);
    FT_CHECK_OK(ft_op_cols_take(be, dt, dl, cols, n, V, K));
    fd_check("cols_set dt (cols_take)", c.t, n * K, dt, cols_loss, &c);
    fd_check("cols_set dlogits (cols_take)", c.l0, n * V, dl, cols_loss, &c);
    free(c.l), free(c.l0), free(c.t), free(c.wout), free(dl), free(dt);
}

/* ---- embedding (forward only: the table is frozen) ------------------------------------------- */
static void check_embed(void) {
    const int64_t V = 20, C = 12, N = 9;
    ft_weight t;
    weight(&t, FT_BF16, V, C, 81, 1.0f);
    float *tab = zeros(V * C), *out = zeros(N * C);
    FT_CHECK_OK(ft_weight_get_f32(be, &t, tab));
    int32_t ids[9] = {0, 19, 5, 5, 7, 1, 0, 12, 3};
    FT_CHECK_OK(ft_op_embed(be, out, ids, &t, N));
    FT_CHECK(memcmp(out + 4 * C, tab + 7 * C, (size_t)C * 4) == 0 && memcmp(out + C, tab + 19 * C, (size_t)C * 4) == 0,
             "embed: rows are not the table's");
    int32_t bad[1] = {20};
    FT_CHECK(ft_op_embed(be, out, bad, &t, 1) == FT_E_INTERNAL, "embed: out-of-vocabulary id accepted");
    ft_weight_release(be, &t);
    free(tab), free(out);
}

int main(void) {
    FT_CHECK_OK(ft_backend_cpu_create(&be, 2));
    if (!be) return ft_test_finish();
    grad_rmsnorm("rmsnorm [5, 48] bf16 weight", 5, 48, FT_BF16);
    grad_rmsnorm("rmsnorm as qk-norm [N*H=20, D=12]", 20, 12, FT_F32);
    ft_rope_cfg def = {FT_ROPE_DEFAULT, 10000.0, 16, 0, 0, 0, 0};
    ft_rope_cfg l3 = {FT_ROPE_LLAMA3, 500000.0, 64, 8.0, 1.0, 4.0, 8192};
    grad_rope("rope default [7, 3, 16]", def, 7, 3);
    grad_rope("rope llama3 [5, 2, 64]", l3, 5, 2);
    grad_attention("attn gqa 4:1", 2, 7, 8, 2, 6, 0);
    grad_attention("attn gqa 4:1 packed", 2, 9, 8, 2, 6, 1);
    grad_attention("attn mha 1:1", 1, 8, 3, 3, 10, 0);
    grad_attention("attn mha 1:1 packed", 2, 8, 3, 3, 10, 1);
    grad_swiglu();
    grad_linear("linear_bwd_x f32", FT_F32, 0);
    grad_linear("linear_bwd_x bf16", FT_BF16, 0);
    grad_linear("linear_bwd_x nf4", FT_NF4, 0);
    grad_linear("linear_bwd_x f16 with bias", FT_F16, 1);
    grad_lora(0.0f);
    grad_lora(0.25f);
    grad_xent("xent grad_scale 1 (ignored labels)", 1.0f);
    grad_xent("xent grad_scale 0.5", 0.5f);
    grad_dropout();
    check_dropout_mask();
    grad_rows();
    grad_cols();
    check_embed();
    FT_CHECK(ft_backend_bytes_in_use(be) == 0, "leak: %lld bytes", (long long)ft_backend_bytes_in_use(be));
    ft_backend_free(be);
    return ft_test_finish();
}
