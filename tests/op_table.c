/* op_table.c: the op descriptions of the op test table and the machinery every case runs through:
 * the run context (inputs, backend buffers, poisoned outputs), the comparison of a backend with the
 * double reference or with the CPU backend, perf timing, and the memory accounting test. The cases
 * are in op_table_cases.c, the runners in op_table_<family>.c; the contract is tests/op_table.h. */
#include "tests/op_table.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/backend_impl.h" /* only for the vtable slot offsets of ot_ops (test_ops_cuda's coverage check) */
#include "kernels/nf4.h"
#include "kernels/rng.h"

#define VT(slot) offsetof(ft_backend_vtbl, slot)

const ot_op_info ot_ops[OP_COUNT] = {
    /* [op] = {name, runner, bwd, shape letters, shape shows wt, f32 outputs, vtable slots, backward op} */
    [OP_EMBED] = {"embed", ot_run_embed, 0, {"V", "C", "N"}, 1, {NULL}, {VT(embed)}},
    [OP_RMSNORM] = {"rmsnorm", ot_run_rmsnorm, 0, {"N", "C"}, 0, {"rstd"}, {VT(rmsnorm)}, OP_RMSNORM_BWD},
    [OP_RMSNORM_BWD] = {"rmsnorm_bwd", ot_run_rmsnorm, 1, {"N", "C"}, 0, {NULL}, {VT(rmsnorm_bwd)}},
    [OP_LINEAR] = {"linear", ot_run_linear, 0, {"N", "in", "out"}, 1, {NULL}, {VT(linear)}, OP_LINEAR_BWD_X},
    [OP_LINEAR_BWD_X] = {"linear_bwd_x", ot_run_linear, 1, {"N", "in", "out"}, 1, {NULL}, {VT(linear_bwd_x)}},
    [OP_LORA_FWD] = {"lora_fwd", ot_run_lora, 0, {"N", "in", "out", "R"}, 0, {NULL}, {VT(lora_fwd)}, OP_LORA_BWD},
    [OP_LORA_BWD] = {"lora_bwd", ot_run_lora, 1, {"N", "in", "out", "R"}, 0, {NULL}, {VT(lora_bwd)}},
    [OP_DROPOUT] = {"dropout", ot_run_dropout, 0, {"n"}, 0, {NULL}, {VT(dropout)}},
    [OP_ROPE] = {"rope", ot_run_rope, 0, {"N", "nh", "D"}, 0, {NULL}, {VT(rope)}},
    [OP_ATTN] = {"attention", ot_run_attention, 0, {"B", "T", "H", "Hkv", "D"}, 0, {"lse"}, {VT(attention)}, OP_ATTN_BWD},
    [OP_ATTN_BWD] = {"attention_bwd", ot_run_attention, 1, {"B", "T", "H", "Hkv", "D"}, 0, {NULL}, {VT(attention_bwd)}},
    [OP_ATTN_KV] = {"attention_kv", ot_run_attention_kv, 0, {"Tq", "Tk", "H", "Hkv", "D"}, 0, {NULL}, {VT(attention_kv)}},
    [OP_SWIGLU] = {"swiglu", ot_run_swiglu, 0, {"n"}, 0, {NULL}, {VT(swiglu)}, OP_SWIGLU_BWD},
    [OP_SWIGLU_BWD] = {"swiglu_bwd", ot_run_swiglu, 1, {"n"}, 0, {NULL}, {VT(swiglu_bwd)}},
    [OP_ADD] = {"add", ot_run_add, 0, {"n"}, 0, {NULL}, {VT(add)}},
    [OP_XENT] = {"xent", ot_run_xent, 0, {"n", "V"}, 0, {"loss_sum,count"}, {VT(xent)}},
    [OP_SUMSQ] = {"sumsq", ot_run_reduce, 0, {"n"}, 0, {"*"}, {VT(sumsq)}},
    [OP_SCALE] = {"scale", ot_run_reduce, 0, {"n"}, 0, {"*"}, {VT(scale)}},
    [OP_ADAMW] = {"adamw", ot_run_adamw, 0, {"n"}, 0, {"*"}, {VT(adamw)}},
    [OP_NF4] = {"nf4", ot_run_nf4, 0, {"rows", "cols"}, 1, {NULL}, {VT(nf4_quantize), VT(nf4_dequantize)}},
    [OP_CLIP] = {"clip_factor", ot_run_clip, 0, {"n"}, 0, {"*"}, {VT(clip_factor)}},
    [OP_ROWS_SET] = {"rows_set", ot_run_rows, 0, {"N", "C", "k", "M"}, 0, {NULL}, {VT(rows_set)}, OP_ROWS_SUM},
    [OP_ROWS_SUM] = {"rows_sum", ot_run_rows, 1, {"N", "C", "k", "M"}, 0, {"drows"}, {VT(rows_sum)}},
    [OP_COLS_SET] = {"cols_set", ot_run_cols, 0, {"n", "V", "k"}, 0, {NULL}, {VT(cols_set)}, OP_COLS_TAKE},
    [OP_COLS_TAKE] = {"cols_take", ot_run_cols, 1, {"n", "V", "k"}, 0, {NULL}, {VT(cols_take)}},
    /* dora_norm's wn is f32 but not held to the f32 rule: a BF16 backend's W is the BF16 rounding of the
     * CPU's (ops.h), so its rows set tol_act by the weight's dtype (op_table_dora.c) */
    [OP_DORA_NORM] = {"dora_norm", ot_run_dora_norm, 0, {"in", "out", "R"}, 1, {NULL}, {VT(dora_norm)}},
    [OP_DORA_SCALE] = {"dora_scale", ot_run_dora, 0, {"N", "out"}, 0, {NULL}, {VT(dora_scale)}, OP_DORA_MAG_GRAD},
    [OP_DORA_MAG_GRAD] = {"dora_mag_grad", ot_run_dora, 1, {"N", "out"}, 0, {"*"}, {VT(dora_mag_grad)}},
};

static int row_cases(const ot_case *row) { return row->op & OT_AND_BWD ? 2 : 1; }

int ot_case_count(void) {
    int n = 0;
    for (int r = 0; r < ot_nrows; r++) n += row_cases(&ot_rows[r]);
    return n;
}

ot_case ot_case_at(int i) {
    for (int r = 0; r < ot_nrows; r++) {
        const int n = row_cases(&ot_rows[r]);
        if (i >= n) {
            i -= n;
            continue;
        }
        ot_case k = ot_rows[r];
        k.op &= ~OT_AND_BWD;
        if (i == 1) k.op = ot_ops[k.op].bwd_op;
        FT_ASSERT(k.op >= 0 && k.op < OP_COUNT && ot_ops[k.op].run && (i == 0 || ot_ops[k.op].bwd));
        return k;
    }
    ft_assert_fail("case index < ot_case_count()", __FILE__, __LINE__);
}

/* ---- outputs and host arrays ---------------------------------------------------------------------- */

void ot_out_add_tol(ot_out *o, const char *name, float *v, int64_t len, double tol_act) {
    o->name[o->n] = name;
    o->v[o->n] = v;
    o->len[o->n] = len;
    o->tol_act[o->n++] = tol_act;
}
void ot_out_add(ot_out *o, const char *name, float *v, int64_t len) { ot_out_add_tol(o, name, v, len, -1.0); }
static void out_free(ot_out *o) {
    for (int i = 0; i < o->n; i++) free(o->v[i]);
    o->n = 0;
}
static void ctx_free(ot_ctx *c) {
    for (int i = 0; i < c->nbuf; i++) ft_backend_release(c->be, c->buf[i]);
    for (int i = 0; i < c->nw; i++) ft_weight_release(c->be, &c->w[i]);
    c->nbuf = c->nw = 0;
}

float *ot_hmalloc(int64_t n) {
    float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    if (!p) abort();
    return p;
}
double *ot_dzeros(int64_t n) {
    double *p = calloc((size_t)(n > 0 ? n : 1), sizeof(double));
    if (!p) abort();
    return p;
}
float *ot_f32_of_double(const double *d, int64_t n) {
    float *p = ot_hmalloc(n);
    for (int64_t i = 0; i < n; i++) p[i] = (float)d[i];
    return p;
}

float *ot_gen(const ot_ctx *c, uint64_t seed, int64_t n, float scale) {
    float *p = ot_hmalloc(n);
    for (int64_t i = 0; i < n; i++) {
        p[i] = (2.0f * ft_uniform(seed ^ c->salt, (uint64_t)i) - 1.0f) * scale;
        if (c->round_act) p[i] = ft_bf16_to_f32(ft_f32_to_bf16(p[i]));
    }
    return p;
}

float *ot_weight_values(const float *h, int64_t n, ft_dtype t) {
    if (ft_dtype_is_ggml(t)) return ot_ggml_values(h, n, t);
    float *v = ot_hmalloc(n);
    memcpy(v, h, (size_t)n * sizeof(float));
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

/* ---- backend buffers ------------------------------------------------------------------------------ */

double ot_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void *ot_dev_alloc(ot_ctx *c, int64_t bytes) {
    void *p;
    FT_CHECK_OK(ft_backend_alloc(c->be, &p, bytes, "op test buffer"));
    c->buf[c->nbuf++] = p;
    return p;
}
int64_t ot_act_size(const ot_ctx *c) { return ft_dtype_nbytes(ft_backend_act_dtype(c->be), 1); }
void *ot_up_act(ot_ctx *c, const float *h, int64_t n) {
    ft_dtype t = ft_backend_act_dtype(c->be);
    void *d = ot_dev_alloc(c, ft_dtype_nbytes(t, n));
    void *tmp = malloc((size_t)ft_dtype_nbytes(t, n > 0 ? n : 1));
    ft_from_f32(tmp, t, h, n);
    FT_CHECK_OK(ft_backend_upload(c->be, d, tmp, ft_dtype_nbytes(t, n)));
    free(tmp);
    return d;
}
void *ot_up_raw(ot_ctx *c, const void *h, int64_t bytes) {
    void *d = ot_dev_alloc(c, bytes);
    FT_CHECK_OK(ft_backend_upload(c->be, d, h, bytes));
    return d;
}
void *ot_poison(ot_ctx *c, int64_t bytes) {
    void *d = ot_dev_alloc(c, bytes);
    FT_CHECK_OK(ft_backend_memset(c->be, d, 0xFF, bytes));
    return d;
}
float *ot_down_act(ot_ctx *c, const void *d, int64_t n) {
    ft_dtype t = ft_backend_act_dtype(c->be);
    float *h = ot_hmalloc(n);
    void *tmp = malloc((size_t)ft_dtype_nbytes(t, n > 0 ? n : 1));
    FT_CHECK_OK(ft_backend_sync(c->be));
    FT_CHECK_OK(ft_backend_download(c->be, tmp, d, ft_dtype_nbytes(t, n)));
    ft_to_f32(h, tmp, t, n);
    free(tmp);
    return h;
}
float *ot_down_f32(ot_ctx *c, const void *d, int64_t n) {
    float *h = ot_hmalloc(n);
    FT_CHECK_OK(ft_backend_sync(c->be));
    FT_CHECK_OK(ft_backend_download(c->be, h, d, 4 * n));
    return h;
}
ft_weight *ot_up_weight(ot_ctx *c, const float *h, int64_t rows, int64_t cols, ft_dtype t) {
    ft_weight *w = &c->w[c->nw++];
    FT_CHECK_OK(ft_weight_alloc(c->be, w, t, rows, cols, "op test weight"));
    if (ft_dtype_is_ggml(t))
        ot_ggml_set(c, w, h);
    else
        FT_CHECK_OK(ft_weight_set(c->be, w, h, FT_F32));
    return w;
}

/* ---- selecting, running, comparing ---------------------------------------------------------------- */

static const char *const mode_names[] = {[OT_TEST] = "test", [OT_GRAD] = "grad", [OT_PERF] = "perf", [OT_ALL] = "all"};
const char *ot_mode_name(ot_mode mode) { return mode_names[mode]; }
int ot_mode_parse(const char *s, ot_mode *mode) {
    for (int m = 0; m < (int)(sizeof mode_names / sizeof *mode_names); m++) {
        if (s && !strcmp(s, mode_names[m])) {
            *mode = (ot_mode)m;
            return 1;
        }
    }
    return 0;
}

int ot_case_selected(const ot_case *k, ot_mode mode, const char *filter) {
    if (mode == OT_GRAD && !ot_ops[k->op].bwd) return 0;
    if (!filter || !*filter) return 1;
    char buf[512], full[256];
    snprintf(full, sizeof full, "%s %s", ot_ops[k->op].name, k->name);
    snprintf(buf, sizeof buf, "%s", filter);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ","))
        if (strstr(full, tok)) return 1;
    return 0;
}

void ot_case_shape(const ot_case *k, char *s, size_t n) {
    const ot_op_info *op = &ot_ops[k->op];
    size_t at = 0;
    s[0] = 0;
    for (int i = 0; i < 5 && op->dims[i]; i++)
        at += (size_t)snprintf(s + at, at < n ? n - at : 0, "%s%s%lld", i ? " " : "", op->dims[i], (long long)k->s[i]);
    if (op->shows_wt) snprintf(s + at, at < n ? n - at : 0, " %s", ft_dtype_name(k->wt));
}

static int is_f32_output(int op, const char *name) {
    for (int i = 0; i < 2 && ot_ops[op].f32[i]; i++)
        if (!strcmp(ot_ops[op].f32[i], "*") || !strcmp(ot_ops[op].f32[i], name)) return 1;
    return 0;
}

/* The tolerance of output j (see ot_run_compare). `act`: a BF16 backend against the CPU backend. */
static double out_tol(const ot_case *k, const ot_out *got, int j, int act) {
    if (!act) return k->tol;
    double tol = got->tol_act[j] >= 0 ? got->tol_act[j] : k->tol_act;
    if (k->tier != OT_SMALL && is_f32_output(k->op, got->name[j])) tol = 1e-5;
    if (k->op == OP_NF4 && got->tol_act[j] < 0) tol = 0; /* codes and the host dequantization: exact */
    return tol;
}

void ot_run_compare(ft_backend *be, ft_backend *ref, const ot_case *k, uint64_t salt, ot_result *r) {
    const int act = ref && ft_backend_act_dtype(be) == FT_BF16;
    ot_ctx rc = {.be = be, .round_act = act, .salt = salt}, cc = {.be = ref, .round_act = act, .salt = salt};
    ot_out got = {0}, want = {0};
    const char *op = ot_ops[k->op].name;
    const int fails0 = ft_test_failures();
    const int64_t before = ft_backend_bytes_in_use(be);
    ot_ops[k->op].run(&rc, k, &got);
    ctx_free(&rc);
    const int64_t after1 = ft_backend_bytes_in_use(be);
    if (after1 != before) { /* grown scratch is fine once; a leak grows on every run */
        ot_out again = {0};
        ot_ops[k->op].run(&rc, k, &again);
        ctx_free(&rc);
        out_free(&again);
        FT_CHECK(ft_backend_bytes_in_use(be) == after1, "%s %s: backend memory grows by %lld bytes per run (leak)",
                 op, k->name, (long long)(ft_backend_bytes_in_use(be) - after1));
    }
    ot_ops[k->op].run(&cc, k, &want);
    ctx_free(&cc);
    r->ran_test = 1;
    double worst = -1; /* largest rel_l2 / tol so far (a non-finite output counts as infinite) */
    for (int j = 0; j < got.n && j < want.n; j++) {
        const double tol = out_tol(k, &got, j, act);
        char what[200];
        snprintf(what, sizeof what, "%s %s: %s", op, k->name, got.name[j]);
        FT_CHECK(got.len[j] == want.len[j], "%s: length %lld vs %lld", what, (long long)got.len[j],
                 (long long)want.len[j]);
        const ft_cmp cmp = ft_compare_f32(got.v[j], want.v[j], got.len[j]);
        FT_CHECK_CLOSE(got.v[j], want.v[j], got.len[j], tol, what);
        r->nonfinite += cmp.n_nonfinite > 0;
        const double ratio = cmp.n_nonfinite ? INFINITY : tol > 0 ? cmp.rel_l2 / tol : (cmp.rel_l2 > 0 ? INFINITY : 0);
        if (ratio > worst) {
            worst = ratio;
            r->err = cmp.n_nonfinite ? NAN : cmp.rel_l2;
            r->tol = tol;
            snprintf(r->worst, sizeof r->worst, "%s", got.name[j]);
        }
    }
    FT_CHECK(got.n == want.n && got.n > 0, "%s %s: %d outputs vs %d", op, k->name, got.n, want.n);
    r->fails += ft_test_failures() - fails0;
    out_free(&got), out_free(&want);
}

void ot_run_perf(ft_backend *be, const ot_case *k, uint64_t salt, int reps, ot_result *r) {
    ot_ctx rc = {.be = be, .round_act = 1, .salt = salt, .reps = reps};
    ot_out got = {0};
    const int fails0 = ft_test_failures();
    ot_ops[k->op].run(&rc, k, &got);
    ctx_free(&rc);
    out_free(&got);
    r->ms = rc.op_seconds * 1e3;
    r->flops = rc.flops, r->bytes = rc.bytes;
    r->ran_perf = 1;
    r->fails += ft_test_failures() - fails0;
}

/* ---- memory accounting ---------------------------------------------------------------------------- */
void ot_test_memory(ft_backend *be) {
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
