/* test_ops_cpu.c: the op test table (test-backend-ops style).
 *
 * Every case names an op, its shapes, a weight dtype, a flag (accumulate, bias, packing, ...) and
 * two tolerances. One function per op runs the case on a backend (be != NULL) or, with be == NULL,
 * computes a naive double-precision reference on the host from the same deterministic inputs
 * (independent code: plain loops, nothing from kernels/cpu). Outputs are poisoned with NaN (0xFF
 * bytes) before each run, so an element an op forgets to write fails the comparison.
 *
 * check_backend(be, NULL) compares a backend against the double references (here: the CPU backend,
 * tolerance `tol`). check_backend(be, cpu) compares another backend against the CPU backend on the
 * same inputs (rounded to that backend's activation dtype first; tolerance `tol_act` when that is
 * BF16): main() runs it for CUDA when a GPU is present. Also checked here: ft_rope_inv_freq against
 * transformers (tests/fixtures/rope), and backend memory accounting.
 *
 * tests/test_ops_cuda.c includes this file (FT_OPS_TABLE_NO_MAIN) to run the same cases, plus
 * mid-size and real layer shapes, in test / grad / perf modes: run_ctx's `salt` draws fresh inputs
 * and `reps` times the case's op (OP_RUN); both are 0 here, so this suite is unchanged by them. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/backend.h"
#include "kernels/nf4.h"
#include "kernels/ops.h"
#include "kernels/rng.h"
#include "kernels/rope.h"
#include "tests/harness.h"

enum {
    OP_EMBED, OP_RMSNORM, OP_RMSNORM_BWD, OP_LINEAR, OP_LINEAR_BWD_X, OP_LORA_FWD, OP_LORA_BWD, OP_DROPOUT,
    OP_ROPE, OP_ATTN, OP_ATTN_BWD, OP_SWIGLU, OP_SWIGLU_BWD, OP_ADD, OP_XENT, OP_SUMSQ, OP_SCALE, OP_ADAMW,
    OP_NF4, OP_CLIP,
};
enum { F_ACC = 1, F_BIAS = 2, F_PACK = 1, F_INV = 1, F_LLAMA3 = 2, F_INPLACE = 2 };

typedef struct op_case {
    const char *name;
    int op;
    int64_t s[5];  /* shape, per op: see the op's function */
    ft_dtype wt;   /* weight / source dtype */
    int flag;      /* F_* bits, or a per-op selector */
    double tol;    /* rel_l2 against the double reference */
    double tol_act;/* rel_l2 against the CPU backend, for a backend with BF16 activations */
} op_case;

static const op_case cases[] = {
    /* name                         op              shape                 wt       flag      tol     tol_act */
    {"embed f32",                   OP_EMBED,       {50, 24, 17},         FT_F32,  0,        0,      8e-3},
    {"embed bf16",                  OP_EMBED,       {50, 24, 17},         FT_BF16, 0,        0,      0},
    {"embed f16",                   OP_EMBED,       {50, 24, 17},         FT_F16,  0,        0,      8e-3},
    {"embed nf4",                   OP_EMBED,       {37, 40, 9},          FT_NF4,  0,        1e-7,   8e-3},
    {"rmsnorm bf16 w",              OP_RMSNORM,     {7, 96},              FT_BF16, 0,        1e-6,   1e-2},
    {"rmsnorm qk-norm [N*H, D]",    OP_RMSNORM,     {20, 16},             FT_F32,  0,        1e-6,   1e-2},
    {"rmsnorm_bwd",                 OP_RMSNORM_BWD, {7, 96},              FT_BF16, 0,        1e-6,   2e-2},
    {"linear f32",                  OP_LINEAR,      {9, 70, 300},         FT_F32,  0,        1e-6,   1e-2},
    {"linear f32 +bias +acc",       OP_LINEAR,      {9, 70, 300},         FT_F32,  F_ACC | F_BIAS, 1e-6, 1e-2},
    {"linear bf16",                 OP_LINEAR,      {9, 70, 300},         FT_BF16, 0,        1e-6,   1e-2},
    {"linear f16 +bias",            OP_LINEAR,      {5, 64, 33},          FT_F16,  F_BIAS,   1e-6,   1e-2},
    {"linear nf4",                  OP_LINEAR,      {9, 70, 300},         FT_NF4,  0,        1e-6,   1e-2},
    {"linear nf4 +bias +acc",       OP_LINEAR,      {3, 130, 257},        FT_NF4,  F_ACC | F_BIAS, 1e-6, 1e-2},
    {"linear_bwd_x f32",            OP_LINEAR_BWD_X,{9, 70, 300},         FT_F32,  0,        1e-6,   1e-2},
    {"linear_bwd_x bf16 +acc",      OP_LINEAR_BWD_X,{9, 70, 300},         FT_BF16, F_ACC,    1e-6,   1e-2},
    {"linear_bwd_x nf4",            OP_LINEAR_BWD_X,{9, 70, 600},         FT_NF4,  0,        1e-6,   1e-2},
    {"lora_fwd",                    OP_LORA_FWD,    {11, 40, 33, 8},      FT_F32,  0,        1e-6,   1e-2},
    {"lora_bwd",                    OP_LORA_BWD,    {11, 40, 33, 8},      FT_F32,  0,        1e-6,   2e-2},
    {"dropout p=0.1",               OP_DROPOUT,     {1000},               FT_F32,  100,      1e-7,   8e-3},
    {"dropout p=0.1 in place",      OP_DROPOUT,     {1001},               FT_F32,  100 | (F_INPLACE << 16), 1e-7, 8e-3},
    {"dropout p=0",                 OP_DROPOUT,     {999},                FT_F32,  0,        0,      8e-3},
    {"rope default",                OP_ROPE,        {6, 3, 16},           FT_F32,  0,        1e-6,   1e-2},
    {"rope llama3 inverse",         OP_ROPE,        {6, 2, 64},           FT_F32,  F_INV | F_LLAMA3, 1e-6, 1e-2},
    {"attention gqa 2:1",           OP_ATTN,        {2, 9, 4, 2, 8},      FT_F32,  0,        1e-6,   2e-2},
    {"attention gqa 4:1 packed",    OP_ATTN,        {2, 13, 8, 2, 6},     FT_F32,  F_PACK,   1e-6,   2e-2},
    {"attention mha packed",        OP_ATTN,        {1, 17, 3, 3, 16},    FT_F32,  F_PACK,   1e-6,   2e-2},
    {"attention_bwd gqa 2:1",       OP_ATTN_BWD,    {2, 9, 4, 2, 8},      FT_F32,  0,        1e-6,   3e-2},
    {"attention_bwd gqa 4:1 packed",OP_ATTN_BWD,    {2, 13, 8, 2, 6},     FT_F32,  F_PACK,   1e-6,   3e-2},
    {"swiglu",                      OP_SWIGLU,      {1000},               FT_F32,  0,        1e-6,   1e-2},
    {"swiglu_bwd",                  OP_SWIGLU_BWD,  {1000},               FT_F32,  0,        1e-6,   2e-2},
    {"add",                         OP_ADD,         {777},                FT_F32,  0,        1e-7,   8e-3},
    {"xent grad 1",                 OP_XENT,        {7, 50},              FT_F32,  1,        1e-6,   2e-2},
    {"xent grad 0.25",              OP_XENT,        {9, 300},             FT_F32,  2,        1e-6,   2e-2},
    {"xent loss only",              OP_XENT,        {5, 64},              FT_F32,  0,        1e-6,   2e-2},
    {"sumsq",                       OP_SUMSQ,       {200003},             FT_F32,  0,        1e-7,   1e-6},
    {"scale",                       OP_SCALE,       {1234},               FT_F32,  0,        1e-7,   1e-7},
    {"adamw",                       OP_ADAMW,       {1000},               FT_F32,  0,        1e-6,   1e-6},
    {"clip_factor",                 OP_CLIP,        {11},                 FT_F32,  0,        0,      0},
    {"nf4 from f32",                OP_NF4,         {33, 200},            FT_F32,  0,        0,      0},
    {"nf4 from bf16 (odd n)",       OP_NF4,         {17, 129},            FT_BF16, 0,        0,      0},
};
enum { NCASES = sizeof cases / sizeof cases[0] };

/* ---- per-run context: backend memory owned by one case run ---------------------------------- */
enum { MAXBUF = 32, MAXW = 4, MAXOUT = 4 };
typedef struct {
    ft_backend *be;   /* NULL: host reference run */
    int round_act;    /* round generated activations to BF16 (comparing against a BF16 backend) */
    void *buf[MAXBUF];
    int nbuf;
    ft_weight w[MAXW];
    int nw;
    uint64_t salt;      /* xor'ed into every input seed: 0 here; fresh per run in test_ops_cuda.c */
    int reps;           /* perf mode (test_ops_cuda.c): > 0 repeats the case's op and times it */
    double op_seconds;  /* perf mode: mean time of one call of the case's op */
} run_ctx;

typedef struct {
    int n;
    const char *name[MAXOUT];
    float *v[MAXOUT];
    int64_t len[MAXOUT];
    double tol_act[MAXOUT]; /* >= 0: overrides the case's tol_act for this output */
} op_out;

static void out_add_tol(op_out *o, const char *name, float *v, int64_t len, double tol_act) {
    o->name[o->n] = name;
    o->v[o->n] = v;
    o->len[o->n] = len;
    o->tol_act[o->n++] = tol_act;
}
static void out_add(op_out *o, const char *name, float *v, int64_t len) { out_add_tol(o, name, v, len, -1.0); }
static void out_free(op_out *o) {
    for (int i = 0; i < o->n; i++) free(o->v[i]);
    o->n = 0;
}
static void ctx_free(run_ctx *c) {
    for (int i = 0; i < c->nbuf; i++) ft_backend_release(c->be, c->buf[i]);
    for (int i = 0; i < c->nw; i++) ft_weight_release(c->be, &c->w[i]);
    c->nbuf = c->nw = 0;
}

static float *hmalloc(int64_t n) {
    float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    if (!p) abort();
    return p;
}
static float *hcopy(const float *src, int64_t n) {
    float *p = hmalloc(n);
    memcpy(p, src, (size_t)n * sizeof(float));
    return p;
}

/* Deterministic inputs: uniform in [-scale, scale) from (seed, tensor id). */
static float *gen(const run_ctx *c, uint64_t seed, int64_t n, float scale) {
    float *p = hmalloc(n);
    for (int64_t i = 0; i < n; i++) {
        p[i] = (2.0f * ft_uniform(seed ^ c->salt, (uint64_t)i) - 1.0f) * scale;
        if (c->round_act) p[i] = ft_bf16_to_f32(ft_f32_to_bf16(p[i]));
    }
    return p;
}

/* Runs an op call and checks its status. When `is_main` (the call is the op the case is about) and
 * the context is in perf mode, repeats the call and records its mean time (host clock around a
 * backend sync; about 0.2 s of repeats, at most c->reps). Perf mode never compares outputs, so
 * repeating in-place or accumulating ops is harmless. */
static double op_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
#define OP_RUN(c, is_main, call)                                                                   \
    do {                                                                                           \
        FT_CHECK_OK(call);                                                                         \
        if ((is_main) && (c)->be && (c)->reps > 0) {                                               \
            FT_CHECK_OK(ft_backend_sync((c)->be));                                                 \
            double t0_ = op_now();                                                                 \
            (void)(call);                                                                          \
            FT_CHECK_OK(ft_backend_sync((c)->be));                                                 \
            const double t1_ = op_now() - t0_;                                                     \
            int n_ = t1_ > 0 ? (int)(0.2 / t1_) : (c)->reps;                                       \
            n_ = n_ < 1 ? 1 : n_ > (c)->reps ? (c)->reps : n_;                                     \
            t0_ = op_now();                                                                        \
            for (int r_ = 0; r_ < n_; r_++) (void)(call);                                          \
            FT_CHECK_OK(ft_backend_sync((c)->be));                                                 \
            (c)->op_seconds = (op_now() - t0_) / n_;                                               \
        }                                                                                          \
    } while (0)

static void *dev_alloc(run_ctx *c, int64_t bytes) {
    void *p;
    FT_CHECK_OK(ft_backend_alloc(c->be, &p, bytes, "op test buffer"));
    c->buf[c->nbuf++] = p;
    return p;
}
static int64_t act_size(const run_ctx *c) { return ft_dtype_nbytes(ft_backend_act_dtype(c->be), 1); }
/* Host floats -> backend activations (act dtype). */
static void *up_act(run_ctx *c, const float *h, int64_t n) {
    ft_dtype t = ft_backend_act_dtype(c->be);
    void *d = dev_alloc(c, ft_dtype_nbytes(t, n));
    void *tmp = malloc((size_t)ft_dtype_nbytes(t, n > 0 ? n : 1));
    ft_from_f32(tmp, t, h, n);
    FT_CHECK_OK(ft_backend_upload(c->be, d, tmp, ft_dtype_nbytes(t, n)));
    free(tmp);
    return d;
}
static void *up_raw(run_ctx *c, const void *h, int64_t bytes) {
    void *d = dev_alloc(c, bytes);
    FT_CHECK_OK(ft_backend_upload(c->be, d, h, bytes));
    return d;
}
static void *poison(run_ctx *c, int64_t bytes) {
    void *d = dev_alloc(c, bytes);
    FT_CHECK_OK(ft_backend_memset(c->be, d, 0xFF, bytes));
    return d;
}
static float *down_act(run_ctx *c, const void *d, int64_t n) {
    ft_dtype t = ft_backend_act_dtype(c->be);
    float *h = hmalloc(n);
    void *tmp = malloc((size_t)ft_dtype_nbytes(t, n > 0 ? n : 1));
    FT_CHECK_OK(ft_backend_sync(c->be));
    FT_CHECK_OK(ft_backend_download(c->be, tmp, d, ft_dtype_nbytes(t, n)));
    ft_to_f32(h, tmp, t, n);
    free(tmp);
    return h;
}
static float *down_f32(run_ctx *c, const void *d, int64_t n) {
    float *h = hmalloc(n);
    FT_CHECK_OK(ft_backend_sync(c->be));
    FT_CHECK_OK(ft_backend_download(c->be, h, d, 4 * n));
    return h;
}
static ft_weight *up_weight(run_ctx *c, const float *h, int64_t rows, int64_t cols, ft_dtype t) {
    ft_weight *w = &c->w[c->nw++];
    FT_CHECK_OK(ft_weight_alloc(c->be, w, t, rows, cols, "op test weight"));
    FT_CHECK_OK(ft_weight_set(c->be, w, h, FT_F32));
    return w;
}
/* The values a weight of dtype t holds after being set from h (host, independent of backends
 * except NF4, whose reference quantizer is checked against bitsandbytes by test_nf4). */
static float *weight_values(const float *h, int64_t n, ft_dtype t) {
    float *v = hcopy(h, n);
    if (t == FT_BF16)
        for (int64_t i = 0; i < n; i++) v[i] = ft_bf16_to_f32(ft_f32_to_bf16(h[i]));
    if (t == FT_F16)
        for (int64_t i = 0; i < n; i++) v[i] = ft_f16_to_f32(ft_f32_to_f16(h[i]));
    if (t == FT_NF4) {
        ft_nf4 q = {malloc((size_t)(n + 1) / 2), malloc((size_t)ft_nf4_nblocks(n)),
                    malloc((size_t)(4 * ft_nf4_nblocks2(n))), 0.0f};
        FT_CHECK_OK(ft_nf4_quantize_host(h, n, &q, 1));
        ft_nf4_dequantize_host(&q, n, v, 1);
        free(q.codes);
        free(q.qabsmax);
        free(q.absmax2);
    }
    return v;
}
static float *f32_of_double(const double *d, int64_t n) {
    float *p = hmalloc(n);
    for (int64_t i = 0; i < n; i++) p[i] = (float)d[i];
    return p;
}
static double *dzeros(int64_t n) {
    double *p = calloc((size_t)(n > 0 ? n : 1), sizeof(double));
    if (!p) abort();
    return p;
}

/* ---- ops ------------------------------------------------------------------------------------- */

/* s = {V, C, N} */
static void op_embed(run_ctx *c, const op_case *k, op_out *o) {
    const int64_t V = k->s[0], C = k->s[1], N = k->s[2];
    float *tab = gen(c, 11, V * C, 1.0f);
    int32_t *ids = malloc((size_t)N * sizeof(int32_t));
    for (int64_t n = 0; n < N; n++) ids[n] = (int32_t)(n == 0 ? 0 : n == 1 ? V - 1 : (n * 7919) % V);
    if (c->be) {
        ft_weight *w = up_weight(c, tab, V, C, k->wt);
        void *di = up_raw(c, ids, 4 * N), *out = poison(c, act_size(c) * N * C);
        OP_RUN(c, 1, ft_op_embed(c->be, out, di, w, N));
        out_add(o, "out", down_act(c, out, N * C), N * C);
    } else {
        float *wv = weight_values(tab, V * C, k->wt), *out = hmalloc(N * C);
        for (int64_t n = 0; n < N; n++)
            for (int64_t j = 0; j < C; j++) out[n * C + j] = wv[(int64_t)ids[n] * C + j];
        out_add(o, "out", out, N * C);
        free(wv);
    }
    free(tab);
    free(ids);
}

/* s = {N, C}; eps 1e-5 */
static void op_rmsnorm(run_ctx *c, const op_case *k, op_out *o) {
    const int64_t N = k->s[0], C = k->s[1];
    const float eps = 1e-5f;
    float *x = gen(c, 21, N * C, 3.0f), *w = gen(c, 22, C, 1.5f), *dout = gen(c, 23, N * C, 1.0f);
    if (c->be) {
        ft_weight *dw = up_weight(c, w, 1, C, k->wt);
        void *dx = up_act(c, x, N * C), *out = poison(c, act_size(c) * N * C), *rstd = poison(c, 4 * N);
        OP_RUN(c, k->op == OP_RMSNORM, ft_op_rmsnorm(c->be, out, rstd, dx, dw, N, C, eps));
        if (k->op == OP_RMSNORM) {
            out_add(o, "out", down_act(c, out, N * C), N * C);
            out_add(o, "rstd", down_f32(c, rstd, N), N);
        } else {
            void *dd = up_act(c, dout, N * C), *gx = poison(c, act_size(c) * N * C);
            OP_RUN(c, 1, ft_op_rmsnorm_bwd(c->be, gx, dd, dx, dw, rstd, N, C));
            out_add(o, "dx", down_act(c, gx, N * C), N * C);
        }
    } else {
        float *wv = weight_values(w, C, k->wt);
        double *out = dzeros(N * C), *rs = dzeros(N), *gx = dzeros(N * C);
        for (int64_t n = 0; n < N; n++) {
            double ss = 0, dot = 0;
            for (int64_t j = 0; j < C; j++) ss += (double)x[n * C + j] * x[n * C + j];
            const double r = 1.0 / sqrt(ss / C + eps);
            rs[n] = r;
            for (int64_t j = 0; j < C; j++) out[n * C + j] = wv[j] * x[n * C + j] * r;
            for (int64_t j = 0; j < C; j++) dot += (double)wv[j] * dout[n * C + j] * x[n * C + j];
            for (int64_t j = 0; j < C; j++)
                gx[n * C + j] = r * wv[j] * dout[n * C + j] - x[n * C + j] * r * r * r * dot / C;
        }
        if (k->op == OP_RMSNORM) {
            out_add(o, "out", f32_of_double(out, N * C), N * C);
            out_add(o, "rstd", f32_of_double(rs, N), N);
        } else {
            out_add(o, "dx", f32_of_double(gx, N * C), N * C);
        }
        free(wv);
        free(out);
        free(rs);
        free(gx);
    }
    free(x);
    free(w);
    free(dout);
}

/* s = {N, in, out}; flag F_ACC, F_BIAS */
static void op_linear(run_ctx *c, const op_case *k, op_out *o) {
    const int64_t N = k->s[0], in = k->s[1], out = k->s[2];
    const int acc = k->flag & F_ACC, bias = (k->flag & F_BIAS) && k->op == OP_LINEAR;
    float *x = gen(c, 31, N * in, 1.0f), *W = gen(c, 32, out * in, 0.2f), *b = gen(c, 33, out, 0.5f);
    float *dy = gen(c, 34, N * out, 1.0f), *y0 = gen(c, 35, N * out, 1.0f), *dx0 = gen(c, 36, N * in, 1.0f);
    if (c->be) {
        ft_weight *dw = up_weight(c, W, out, in, k->wt), *db = bias ? up_weight(c, b, 1, out, FT_BF16) : NULL;
        if (k->op == OP_LINEAR) {
            void *dxx = up_act(c, x, N * in), *y = acc ? up_act(c, y0, N * out) : poison(c, act_size(c) * N * out);
            OP_RUN(c, 1, ft_op_linear(c->be, y, dxx, dw, db, N, acc));
            out_add(o, "y", down_act(c, y, N * out), N * out);
        } else {
            void *ddy = up_act(c, dy, N * out), *dx = acc ? up_act(c, dx0, N * in) : poison(c, act_size(c) * N * in);
            OP_RUN(c, 1, ft_op_linear_bwd_x(c->be, dx, ddy, dw, N, acc));
            out_add(o, "dx", down_act(c, dx, N * in), N * in);
        }
    } else {
        float *wv = weight_values(W, out * in, k->wt), *bv = weight_values(b, out, FT_BF16);
        if (k->op == OP_LINEAR) {
            double *y = dzeros(N * out);
            for (int64_t n = 0; n < N; n++)
                for (int64_t j = 0; j < out; j++) {
                    double s = acc ? y0[n * out + j] : 0.0;
                    for (int64_t i = 0; i < in; i++) s += (double)x[n * in + i] * wv[j * in + i];
                    y[n * out + j] = s + (bias ? bv[j] : 0.0);
                }
            out_add(o, "y", f32_of_double(y, N * out), N * out);
            free(y);
        } else {
            double *dx = dzeros(N * in);
            for (int64_t n = 0; n < N; n++)
                for (int64_t i = 0; i < in; i++) {
                    double s = acc ? dx0[n * in + i] : 0.0;
                    for (int64_t j = 0; j < out; j++) s += (double)dy[n * out + j] * wv[j * in + i];
                    dx[n * in + i] = s;
                }
            out_add(o, "dx", f32_of_double(dx, N * in), N * in);
            free(dx);
        }
        free(wv);
        free(bv);
    }
    free(x), free(W), free(b), free(dy), free(y0), free(dx0);
}

/* s = {N, in, out, R}; scale 1.5 */
static void op_lora(run_ctx *c, const op_case *k, op_out *o) {
    const int64_t N = k->s[0], in = k->s[1], out = k->s[2], R = k->s[3];
    const float scale = 1.5f;
    float *xd = gen(c, 41, N * in, 1.0f), *A = gen(c, 42, R * in, 0.3f), *B = gen(c, 43, out * R, 0.3f);
    float *y0 = gen(c, 44, N * out, 1.0f), *dy = gen(c, 45, N * out, 1.0f);
    float *dA0 = gen(c, 46, R * in, 0.1f), *dB0 = gen(c, 47, out * R, 0.1f);
    if (c->be) {
        void *dxd = up_act(c, xd, N * in), *dAw = up_raw(c, A, 4 * R * in), *dBw = up_raw(c, B, 4 * out * R);
        void *y = up_act(c, y0, N * out), *t = poison(c, act_size(c) * N * R);
        OP_RUN(c, k->op == OP_LORA_FWD, ft_op_lora_fwd(c->be, y, t, dxd, dAw, dBw, N, in, out, R, scale));
        if (k->op == OP_LORA_FWD) {
            out_add(o, "y", down_act(c, y, N * out), N * out);
            out_add(o, "t", down_act(c, t, N * R), N * R);
        } else {
            void *ddy = up_act(c, dy, N * out), *gx = poison(c, act_size(c) * N * in);
            void *gA = up_raw(c, dA0, 4 * R * in), *gB = up_raw(c, dB0, 4 * out * R);
            OP_RUN(c, 1, ft_op_lora_bwd(c->be, gx, gA, gB, ddy, dxd, t, dAw, dBw, N, in, out, R, scale));
            out_add(o, "dxd", down_act(c, gx, N * in), N * in);
            out_add(o, "dA", down_f32(c, gA, R * in), R * in);
            out_add(o, "dB", down_f32(c, gB, out * R), out * R);
        }
    } else {
        double *t = dzeros(N * R), *y = dzeros(N * out), *dt = dzeros(N * R);
        double *gx = dzeros(N * in), *gA = dzeros(R * in), *gB = dzeros(out * R);
        for (int64_t n = 0; n < N; n++)
            for (int64_t r = 0; r < R; r++)
                for (int64_t i = 0; i < in; i++) t[n * R + r] += (double)xd[n * in + i] * A[r * in + i];
        for (int64_t n = 0; n < N; n++)
            for (int64_t j = 0; j < out; j++) {
                double s = 0;
                for (int64_t r = 0; r < R; r++) s += t[n * R + r] * B[j * R + r];
                y[n * out + j] = y0[n * out + j] + scale * s;
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
            for (int64_t i = 0; i < in; i++)
                for (int64_t r = 0; r < R; r++) gx[n * in + i] += dt[n * R + r] * A[r * in + i];
        if (k->op == OP_LORA_FWD) {
            out_add(o, "y", f32_of_double(y, N * out), N * out);
            out_add(o, "t", f32_of_double(t, N * R), N * R);
        } else {
            out_add(o, "dxd", f32_of_double(gx, N * in), N * in);
            out_add(o, "dA", f32_of_double(gA, R * in), R * in);
            out_add(o, "dB", f32_of_double(gB, out * R), out * R);
        }
        free(t), free(y), free(dt), free(gx), free(gA), free(gB);
    }
    free(xd), free(A), free(B), free(y0), free(dy), free(dA0), free(dB0);
}

/* s = {n}; flag: p in 1/1000 (low 16 bits), F_INPLACE << 16 */
static void op_dropout(run_ctx *c, const op_case *k, op_out *o) {
    const int64_t n = k->s[0];
    const float p = (float)(k->flag & 0xffff) / 1000.0f;
    const uint64_t seed = 0x5eed;
    float *x = gen(c, 51, n, 2.0f);
    if (c->be) {
        void *in = up_act(c, x, n), *out = (k->flag >> 16) & F_INPLACE ? in : poison(c, act_size(c) * n);
        OP_RUN(c, 1, ft_op_dropout(c->be, out, in, n, p, seed));
        out_add(o, "out", down_act(c, out, n), n);
    } else {
        float *out = hmalloc(n);
        for (int64_t i = 0; i < n; i++)
            out[i] = p == 0.0f ? x[i] : ft_uniform(seed, (uint64_t)i) >= p ? (float)(x[i] / (1.0 - p)) : 0.0f;
        out_add(o, "out", out, n);
    }
    free(x);
}

static void rope_freqs(int llama3, int64_t D, float *inv) {
    ft_rope_cfg cfg = {llama3 ? FT_ROPE_LLAMA3 : FT_ROPE_DEFAULT, llama3 ? 500000.0 : 10000.0, D, 8.0, 1.0, 4.0, 8192};
    FT_CHECK_OK(ft_rope_inv_freq(&cfg, inv));
}

/* s = {N, nh, D}; flag F_INV, F_LLAMA3 */
static void op_rope(run_ctx *c, const op_case *k, op_out *o) {
    const int64_t N = k->s[0], nh = k->s[1], D = k->s[2], n = N * nh * D;
    float *x = gen(c, 61, n, 1.0f), inv[512];
    rope_freqs(k->flag & F_LLAMA3, D, inv);
    int32_t *pos = malloc((size_t)N * sizeof(int32_t));
    for (int64_t i = 0; i < N; i++) pos[i] = (int32_t)(i == N - 1 ? 100000 : i * 37 % 5000);
    if (c->be) {
        void *dx = up_act(c, x, n), *dpos = up_raw(c, pos, 4 * N), *dinv = up_raw(c, inv, 4 * (D / 2));
        OP_RUN(c, 1, ft_op_rope(c->be, dx, dpos, dinv, N, nh, D, k->flag & F_INV));
        out_add(o, "x", down_act(c, dx, n), n);
    } else {
        /* transformers: angle = float(pos) * inv_freq in float32, then cos/sin of that angle */
        double *y = dzeros(n);
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
        out_add(o, "x", f32_of_double(y, n), n);
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
static void op_attention(run_ctx *c, const op_case *k, op_out *o) {
    const int64_t B = k->s[0], T = k->s[1], H = k->s[2], Hkv = k->s[3], D = k->s[4], N = B * T;
    const int64_t nq = N * H * D, nk = N * Hkv * D, grp = H / Hkv;
    const float scale = 1.0f / sqrtf((float)D);
    float *q = gen(c, 71, nq, 1.5f), *kk = gen(c, 72, nk, 1.5f), *v = gen(c, 73, nk, 1.0f);
    float *dout = gen(c, 74, nq, 1.0f);
    int32_t *ds = malloc((size_t)N * sizeof(int32_t));
    make_doc_start(ds, B, T, k->flag & F_PACK);
    if (c->be) {
        void *dq = up_act(c, q, nq), *dk = up_act(c, kk, nk), *dv = up_act(c, v, nk);
        void *dds = (k->flag & F_PACK) ? up_raw(c, ds, 4 * N) : NULL;
        void *out = poison(c, act_size(c) * nq), *lse = poison(c, 4 * N * H);
        OP_RUN(c, k->op == OP_ATTN, ft_op_attention(c->be, out, lse, dq, dk, dv, dds, B, T, H, Hkv, D, scale));
        if (k->op == OP_ATTN) {
            out_add(o, "out", down_act(c, out, nq), nq);
            out_add(o, "lse", down_f32(c, lse, N * H), N * H);
        } else {
            void *gq = poison(c, act_size(c) * nq), *gk = poison(c, act_size(c) * nk), *gv = poison(c, act_size(c) * nk);
            void *ddo = up_act(c, dout, nq);
            OP_RUN(c, 1, ft_op_attention_bwd(c->be, gq, gk, gv, ddo, dq, dk, dv, out, lse, dds, B, T, H, Hkv, D, scale));
            out_add(o, "dq", down_act(c, gq, nq), nq);
            out_add(o, "dk", down_act(c, gk, nk), nk);
            out_add(o, "dv", down_act(c, gv, nk), nk);
        }
    } else {
        /* Full T x T probability matrix per (b, h), masked entries 0. */
        double *P = dzeros(T * T), *out = dzeros(nq), *lse = dzeros(N * H);
        double *gq = dzeros(nq), *gk = dzeros(nk), *gv = dzeros(nk), *dP = dzeros(T * T);
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
            out_add(o, "out", f32_of_double(out, nq), nq);
            out_add(o, "lse", f32_of_double(lse, N * H), N * H);
        } else {
            out_add(o, "dq", f32_of_double(gq, nq), nq);
            out_add(o, "dk", f32_of_double(gk, nk), nk);
            out_add(o, "dv", f32_of_double(gv, nk), nk);
        }
        free(P), free(out), free(lse), free(gq), free(gk), free(gv), free(dP);
    }
    free(q), free(kk), free(v), free(dout), free(ds);
}

/* s = {n} */
static void op_swiglu(run_ctx *c, const op_case *k, op_out *o) {
    const int64_t n = k->s[0];
    float *g = gen(c, 81, n, 6.0f), *u = gen(c, 82, n, 2.0f), *dout = gen(c, 83, n, 1.0f);
    g[0] = -90.0f, g[1] = 90.0f, g[2] = 0.0f; /* saturated and zero gates */
    if (c->be) {
        void *dg = up_act(c, g, n), *du = up_act(c, u, n);
        if (k->op == OP_SWIGLU) {
            void *out = poison(c, act_size(c) * n);
            OP_RUN(c, 1, ft_op_swiglu(c->be, out, dg, du, n));
            out_add(o, "out", down_act(c, out, n), n);
        } else {
            void *dd = up_act(c, dout, n), *gg = poison(c, act_size(c) * n), *gu = poison(c, act_size(c) * n);
            OP_RUN(c, 1, ft_op_swiglu_bwd(c->be, gg, gu, dd, dg, du, n));
            out_add(o, "dgate", down_act(c, gg, n), n);
            out_add(o, "dup", down_act(c, gu, n), n);
        }
    } else {
        double *a = dzeros(n), *b = dzeros(n);
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
            out_add(o, "out", f32_of_double(a, n), n);
        } else {
            out_add(o, "dgate", f32_of_double(a, n), n);
            out_add(o, "dup", f32_of_double(b, n), n);
        }
        free(a), free(b);
    }
    free(g), free(u), free(dout);
}

/* s = {n} */
static void op_add(run_ctx *c, const op_case *k, op_out *o) {
    const int64_t n = k->s[0];
    float *x = gen(c, 91, n, 1.0f), *y = gen(c, 92, n, 1.0f);
    if (c->be) {
        void *dx = up_act(c, x, n), *dy = up_act(c, y, n);
        OP_RUN(c, 1, ft_op_add(c->be, dy, dx, n));
        out_add(o, "y", down_act(c, dy, n), n);
    } else {
        float *r = hmalloc(n);
        for (int64_t i = 0; i < n; i++) r[i] = (float)((double)y[i] + x[i]);
        out_add(o, "y", r, n);
    }
    free(x), free(y);
}

/* s = {n, V}; flag: 0 loss only, 1 grad_scale 1, 2 grad_scale 0.25 */
static void op_xent(run_ctx *c, const op_case *k, op_out *o) {
    const int64_t n = k->s[0], V = k->s[1];
    const float gs = k->flag == 1 ? 1.0f : k->flag == 2 ? 0.25f : 0.0f;
    float *lg = gen(c, 101, n * V, 8.0f), init[2] = {1.5f, 2.0f};
    int32_t *lab = malloc((size_t)n * sizeof(int32_t));
    for (int64_t r = 0; r < n; r++) lab[r] = r % 3 == 1 ? -100 : (int32_t)((r * 131) % V);
    if (c->be) {
        void *dl = up_act(c, lg, n * V), *dlab = up_raw(c, lab, 4 * n), *acc = up_raw(c, init, 8);
        OP_RUN(c, 1, ft_op_xent(c->be, acc, (float *)acc + 1, dl, dlab, n, V, gs));
        out_add(o, "logits/grad", down_act(c, dl, n * V), n * V);
        out_add(o, "loss_sum,count", down_f32(c, acc, 2), 2);
    } else {
        double *g = dzeros(n * V), ls = init[0], cnt = init[1];
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
        out_add(o, "logits/grad", f32_of_double(g, n * V), n * V);
        float *a = hmalloc(2);
        a[0] = (float)ls, a[1] = (float)cnt;
        out_add(o, "loss_sum,count", a, 2);
        free(g);
    }
    free(lg), free(lab);
}

/* s = {n}: sumsq (accumulating onto 2.0) and scale by 0.37 */
static void op_reduce(run_ctx *c, const op_case *k, op_out *o) {
    const int64_t n = k->s[0];
    float *x = gen(c, 111, n, 1.0f), two = 2.0f;
    if (c->be) {
        void *dx = up_raw(c, x, 4 * n);
        if (k->op == OP_SUMSQ) {
            void *acc = up_raw(c, &two, 4);
            OP_RUN(c, 1, ft_op_sumsq(c->be, acc, dx, n));
            out_add(o, "sumsq", down_f32(c, acc, 1), 1);
        } else {
            OP_RUN(c, 1, ft_op_scale(c->be, dx, n, 0.37f));
            out_add(o, "x", down_f32(c, dx, n), n);
        }
    } else {
        if (k->op == OP_SUMSQ) {
            double s = two;
            for (int64_t i = 0; i < n; i++) s += (double)x[i] * x[i];
            float *r = hmalloc(1);
            r[0] = (float)s;
            out_add(o, "sumsq", r, 1);
        } else {
            float *r = hmalloc(n);
            for (int64_t i = 0; i < n; i++) r[i] = (float)((double)x[i] * 0.37f);
            out_add(o, "x", r, n);
        }
    }
    free(x);
}

/* s = {n}: step 3 of AdamW with clipping factor 0.8 */
static void op_adamw(run_ctx *c, const op_case *k, op_out *o) {
    const int64_t n = k->s[0];
    const double lr = 2e-3, b1 = 0.9, b2 = 0.999, eps = 1e-8, wd = 0.01, gsc = 0.8;
    const int step = 3;
    float sc[FT_ADAMW_NSCALARS];
    sc[FT_ADAMW_LR] = (float)lr, sc[FT_ADAMW_BETA1] = (float)b1, sc[FT_ADAMW_BETA2] = (float)b2;
    sc[FT_ADAMW_EPS] = (float)eps, sc[FT_ADAMW_WD] = (float)wd, sc[FT_ADAMW_GSCALE] = (float)gsc;
    sc[FT_ADAMW_BC1] = (float)(1.0 - pow(b1, step)), sc[FT_ADAMW_BC2] = (float)(1.0 - pow(b2, step));
    float *p = gen(c, 121, n, 1.0f), *g = gen(c, 122, n, 0.5f), *m = gen(c, 123, n, 0.05f), *v = gen(c, 124, n, 1e-3f);
    for (int64_t i = 0; i < n; i++) v[i] = fabsf(v[i]);
    g[0] = 0.0f, m[0] = 0.0f, v[0] = 0.0f; /* eps-dominated element */
    if (c->be) {
        void *dp = up_raw(c, p, 4 * n), *dg = up_raw(c, g, 4 * n), *dm = up_raw(c, m, 4 * n), *dv = up_raw(c, v, 4 * n);
        void *ds = up_raw(c, sc, sizeof sc);
        OP_RUN(c, 1, ft_op_adamw(c->be, dp, dg, dm, dv, n, ds));
        out_add(o, "p", down_f32(c, dp, n), n);
        out_add(o, "m", down_f32(c, dm, n), n);
        out_add(o, "v", down_f32(c, dv, n), n);
    } else {
        /* torch.optim.AdamW step t: p -= lr wd p; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
         * p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps), in double from the float32
         * scalars the op receives (float(0.999) makes 1 - b2 off by 1.3e-5 relative: a property of
         * the f32 scalars array, not of the op). */
        const double B1 = sc[FT_ADAMW_BETA1], B2 = sc[FT_ADAMW_BETA2], LR = sc[FT_ADAMW_LR], WD = sc[FT_ADAMW_WD];
        const double EPS = sc[FT_ADAMW_EPS], GS = sc[FT_ADAMW_GSCALE];
        double *rp = dzeros(n), *rm = dzeros(n), *rv = dzeros(n);
        for (int64_t i = 0; i < n; i++) {
            const double gi = (double)g[i] * GS;
            rm[i] = B1 * m[i] + (1 - B1) * gi;
            rv[i] = B2 * v[i] + (1 - B2) * gi * gi;
            const double mh = rm[i] / sc[FT_ADAMW_BC1], vh = rv[i] / sc[FT_ADAMW_BC2];
            rp[i] = p[i] * (1 - LR * WD) - LR * mh / (sqrt(vh) + EPS);
        }
        out_add(o, "p", f32_of_double(rp, n), n);
        out_add(o, "m", f32_of_double(rm, n), n);
        out_add(o, "v", f32_of_double(rv, n), n);
        free(rp), free(rm), free(rv);
    }
    free(p), free(g), free(m), free(v);
}

/* s = {n}: the clipping factor of n gradient sums of squares (zero, tiny, huge, NaN, Inf) under
 * max norms cycling through 1.0, 0.3, 0 (off) and -1 (off); exact: the op computes it in double as
 * optim/adamw.c always did on the host. */
static void op_clip(run_ctx *c, const op_case *k, op_out *o) {
    const int64_t n = k->s[0];
    static const double norms[] = {1.0, 0.3, 0.0, -1.0};
    float *x = gen(c, 141, n, 3.0f), *r = hmalloc(n);
    for (int64_t i = 0; i < n; i++) x[i] = x[i] * x[i] * (float)pow(10.0, (double)(i % 7) - 3.0);
    if (n > 3) x[0] = 0.0f, x[1] = NAN, x[2] = INFINITY, x[3] = 1e-30f;
    float sc[FT_ADAMW_NSCALARS] = {0};
    void *ds = c->be ? up_raw(c, sc, sizeof sc) : NULL, *dx = c->be ? up_raw(c, x, 4 * n) : NULL;
    for (int64_t i = 0; i < n; i++) {
        const double mx = norms[i % 4];
        if (c->be) {
            OP_RUN(c, i == 0, ft_op_clip_factor(c->be, ds, (const float *)dx + i, mx));
            float *got = down_f32(c, ds, FT_ADAMW_NSCALARS);
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
    out_add(o, "gscale", r, n);
    free(x);
}

/* s = {rows, cols}; wt = source dtype. Outputs the packed codes, qabsmax, absmax2 and offset as
 * floats (exact) and the op's dequantized weight; the reference is the host quantizer. */
static void op_nf4(run_ctx *c, const op_case *k, op_out *o) {
    const int64_t rows = k->s[0], cols = k->s[1], n = rows * cols;
    const int64_t nc = (n + 1) / 2, nb = ft_nf4_nblocks(n), nb2 = ft_nf4_nblocks2(n);
    float *x = gen(c, 131, n, 1.0f);
    for (int64_t i = 0; i < n; i++) x[i] *= (float)pow(10.0, (double)((i / 64) % 5) - 3.0);
    if (k->wt == FT_BF16)
        for (int64_t i = 0; i < n; i++) x[i] = ft_bf16_to_f32(ft_f32_to_bf16(x[i]));
    ft_nf4 h = {malloc((size_t)nc), malloc((size_t)nb), malloc((size_t)(4 * nb2)), 0.0f};
    float *deq = hmalloc(n);
    if (c->be) {
        ft_weight *w = &c->w[c->nw++];
        FT_CHECK_OK(ft_weight_alloc(c->be, w, FT_NF4, rows, cols, "nf4 test"));
        void *src = dev_alloc(c, ft_dtype_nbytes(k->wt, n));
        void *tmp = malloc((size_t)ft_dtype_nbytes(k->wt, n));
        ft_from_f32(tmp, k->wt, x, n);
        FT_CHECK_OK(ft_backend_upload(c->be, src, tmp, ft_dtype_nbytes(k->wt, n)));
        free(tmp);
        OP_RUN(c, 1, ft_op_nf4_quantize(c->be, w, src, k->wt));
        FT_CHECK_OK(ft_backend_sync(c->be));
        FT_CHECK_OK(ft_backend_download(c->be, h.codes, w->nf4.codes, nc));
        FT_CHECK_OK(ft_backend_download(c->be, h.qabsmax, w->nf4.qabsmax, nb));
        FT_CHECK_OK(ft_backend_download(c->be, h.absmax2, w->nf4.absmax2, 4 * nb2));
        h.offset = w->nf4.offset;
        void *out = poison(c, act_size(c) * n);
        OP_RUN(c, 0, ft_op_nf4_dequantize(c->be, out, w));
        free(deq);
        deq = down_act(c, out, n);
    } else {
        FT_CHECK_OK(ft_nf4_quantize_host(x, n, &h, 1));
        ft_nf4_dequantize_host(&h, n, deq, 1);
    }
    float *q = hmalloc(nc + nb + nb2 + 1), *exact = hmalloc(n);
    for (int64_t i = 0; i < nc; i++) q[i] = h.codes[i];
    for (int64_t i = 0; i < nb; i++) q[nc + i] = h.qabsmax[i];
    for (int64_t i = 0; i < nb2; i++) q[nc + nb + i] = h.absmax2[i];
    q[nc + nb + nb2] = h.offset;
    ft_nf4_dequantize_host(&h, n, exact, 1); /* f32 from the backend's bytes */
    out_add(o, "codes,qabsmax,absmax2,offset", q, nc + nb + nb2 + 1);
    out_add(o, "dequantized (host from its bytes)", exact, n);
    out_add_tol(o, "dequantized (op, act)", deq, n, 4e-3);
    free(h.codes), free(h.qabsmax), free(h.absmax2), free(x);
}

static void run_case(run_ctx *c, const op_case *k, op_out *o) {
    switch (k->op) {
    case OP_EMBED: op_embed(c, k, o); break;
    case OP_RMSNORM: case OP_RMSNORM_BWD: op_rmsnorm(c, k, o); break;
    case OP_LINEAR: case OP_LINEAR_BWD_X: op_linear(c, k, o); break;
    case OP_LORA_FWD: case OP_LORA_BWD: op_lora(c, k, o); break;
    case OP_DROPOUT: op_dropout(c, k, o); break;
    case OP_ROPE: op_rope(c, k, o); break;
    case OP_ATTN: case OP_ATTN_BWD: op_attention(c, k, o); break;
    case OP_SWIGLU: case OP_SWIGLU_BWD: op_swiglu(c, k, o); break;
    case OP_ADD: op_add(c, k, o); break;
    case OP_XENT: op_xent(c, k, o); break;
    case OP_SUMSQ: case OP_SCALE: op_reduce(c, k, o); break;
    case OP_ADAMW: op_adamw(c, k, o); break;
    case OP_NF4: op_nf4(c, k, o); break;
    case OP_CLIP: op_clip(c, k, o); break;
    }
}

/* tests/test_ops_cuda.c includes this file for the table, the op runners and test_memory, and
 * brings its own main (modes, real layer shapes, the GPU summary table). */
#ifndef FT_OPS_TABLE_NO_MAIN
/* Runs every case on `be` and compares with the double references (ref_be == NULL) or with the
 * same case run on ref_be (the CPU backend). Returns the number of failed comparisons. */
static int check_backend(ft_backend *be, ft_backend *ref_be) {
    const int bf16 = ft_backend_act_dtype(be) == FT_BF16;
    const int fails0 = ft_test_failures();
    printf("== %s vs %s\n", ft_backend_name(be), ref_be ? ft_backend_name(ref_be) : "double reference");
    for (int i = 0; i < NCASES; i++) {
        const op_case *k = &cases[i];
        run_ctx rc = {be, ref_be && bf16, {0}, 0, {{0}}, 0, 0, 0, 0};
        run_ctx cc = {ref_be, ref_be && bf16, {0}, 0, {{0}}, 0, 0, 0, 0};
        op_out got = {0}, want = {0};
        run_case(&rc, k, &got);
        run_case(&cc, k, &want);
        for (int j = 0; j < got.n && j < want.n; j++) {
            const double tol = !(ref_be && bf16) ? k->tol : got.tol_act[j] >= 0 ? got.tol_act[j] : k->tol_act;
            char what[160];
            snprintf(what, sizeof what, "%s: %s", k->name, got.name[j]);
            FT_CHECK(got.len[j] == want.len[j], "%s: length %lld vs %lld", what, (long long)got.len[j],
                     (long long)want.len[j]);
            FT_CHECK_CLOSE(got.v[j], want.v[j], got.len[j], tol, what);
        }
        FT_CHECK(got.n == want.n && got.n > 0, "%s: %d outputs vs %d", k->name, got.n, want.n);
        out_free(&got), out_free(&want);
        ctx_free(&rc), ctx_free(&cc);
    }
    return ft_test_failures() - fails0;
}

/* ---- RoPE frequencies against transformers ---------------------------------------------------- */
static void test_rope_freqs(void) {
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/fixtures/rope/inv_freq.txt", ft_test_src_dir());
    FILE *f = fopen(path, "r");
    if (!FT_CHECK(f != NULL, "cannot open %s", path)) return;
    int type, dim, orig, lines = 0;
    double theta, factor, low, high;
    int64_t total = 0, exact = 0;
    while (fscanf(f, "%d %lf %d %lf %lf %lf %d", &type, &theta, &dim, &factor, &low, &high, &orig) == 7) {
        ft_rope_cfg cfg = {(ft_rope_type)type, theta, dim, factor, low, high, orig};
        float got[512];
        FT_CHECK_OK(ft_rope_inv_freq(&cfg, got));
        int64_t worst = 0;
        for (int i = 0; i < dim / 2; i++) {
            double want;
            if (fscanf(f, "%la", &want) != 1) break;
            float wf = (float)want;
            int32_t a, b;
            memcpy(&a, &got[i], 4), memcpy(&b, &wf, 4);
            const int64_t ulp = llabs((long long)a - (long long)b);
            if (ulp > worst) worst = ulp;
            exact += ulp == 0;
            total++;
        }
        FT_CHECK(worst <= 1, "rope type %d theta %g dim %d: %lld ulp from transformers", type, theta, dim,
                 (long long)worst);
        lines++;
    }
    fclose(f);
    FT_CHECK(lines >= 10, "rope fixture: %d configurations", lines);
    printf("ok   rope inv_freq vs transformers: %lld of %lld values bit-exact, all within 1 ulp (%d configs)\n",
           (long long)exact, (long long)total, lines);
    ft_rope_cfg bad = {FT_ROPE_DEFAULT, 10000.0, 7, 0, 0, 0, 0};
    float tmp[8];
    FT_CHECK(ft_rope_inv_freq(&bad, tmp) == FT_E_ARG, "odd rotary dim accepted");
}

#endif /* FT_OPS_TABLE_NO_MAIN */

/* ---- memory accounting -------------------------------------------------------------------------- */
static void test_memory(ft_backend *be) {
    const int64_t base = ft_backend_bytes_in_use(be);
    void *a, *b;
    FT_CHECK_OK(ft_backend_alloc(be, &a, 1000, "a"));
    FT_CHECK_OK(ft_backend_alloc(be, &b, 24, "b"));
    FT_CHECK(((uintptr_t)a % 64) == 0 && ((uintptr_t)b % 64) == 0, "backend memory not 64-byte aligned");
    FT_CHECK(ft_backend_bytes_in_use(be) == base + 1024, "in use %lld", (long long)ft_backend_bytes_in_use(be));
    ft_backend_release(be, a);
    FT_CHECK(ft_backend_bytes_in_use(be) == base + 24, "after release %lld", (long long)ft_backend_bytes_in_use(be));
    FT_CHECK(ft_backend_bytes_peak(be) >= base + 1024, "peak %lld", (long long)ft_backend_bytes_peak(be));
    ft_backend_release(be, b);
    ft_weight w;
    FT_CHECK_OK(ft_weight_alloc(be, &w, FT_NF4, 100, 130, "nf4"));
    FT_CHECK(ft_backend_bytes_in_use(be) - base == ft_weight_nbytes(FT_NF4, 100, 130),
             "nf4 weight uses %lld bytes, ft_weight_nbytes says %lld", (long long)(ft_backend_bytes_in_use(be) - base),
             (long long)ft_weight_nbytes(FT_NF4, 100, 130));
    ft_weight_release(be, &w);
    FT_CHECK_OK(ft_weight_alloc(be, &w, FT_BF16, 3, 5, "bf16"));
    FT_CHECK(ft_weight_nbytes(FT_BF16, 3, 5) == 30 && ft_backend_bytes_in_use(be) - base == 30, "bf16 weight size");
    float h[15], back[15];
    for (int i = 0; i < 15; i++) h[i] = (float)i * 0.37f - 2.0f;
    FT_CHECK_OK(ft_weight_set(be, &w, h, FT_F32));
    FT_CHECK_OK(ft_weight_get_f32(be, &w, back));
    int same = 1;
    for (int i = 0; i < 15; i++) same &= back[i] == ft_bf16_to_f32(ft_f32_to_bf16(h[i]));
    FT_CHECK(same, "bf16 weight set/get round trip");
    ft_weight_release(be, &w);
    FT_CHECK(ft_backend_bytes_in_use(be) == base, "leak: %lld bytes", (long long)(ft_backend_bytes_in_use(be) - base));
}

#ifndef FT_OPS_TABLE_NO_MAIN
int main(void) {
    ft_backend *cpu = NULL;
    FT_CHECK_OK(ft_backend_cpu_create(&cpu, 2));
    if (!cpu) return ft_test_finish();
    test_memory(cpu);
    test_rope_freqs();
    check_backend(cpu, NULL);
    FT_CHECK(ft_backend_bytes_in_use(cpu) == 0, "op cases leaked %lld bytes", (long long)ft_backend_bytes_in_use(cpu));

    ft_backend *gpu = NULL;
    if (ft_backend_cuda_create(&gpu, 0) == FT_OK && gpu) {
        check_backend(gpu, cpu);
        ft_backend_free(gpu);
    } else {
        printf("SKIP cuda vs cpu: %s\n", ft_error_msg());
    }
    ft_backend_free(cpu);
    return ft_test_finish();
}
#endif /* FT_OPS_TABLE_NO_MAIN */
