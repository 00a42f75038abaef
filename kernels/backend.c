/* backend.c: public entry points of backends and ops. Validates once, forwards to the vtable,
 * keeps the byte accounting that `ftune plan` is checked against, attributes every op to a phase
 * for the step timers, and provides the generic (CPU) version of the optional hooks. */
#include "kernels/backend_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kernels/log.h"
#include "kernels/mem.h"

#ifndef FT_HAVE_CUDA
ft_status ft_backend_cuda_create(ft_backend **out, int device) {
    (void)device;
    *out = NULL;
    return FT_ERR(FT_E_UNSUPPORTED, "this ftune was built without CUDA (configure with -DFT_CUDA=ON)");
}
#endif

static void ft_clock_free(ft_phase_clock *c);

void ft_backend_free(ft_backend *be) {
    if (!be) return;
    ft_clock_free(be->clock);
    be->clock = NULL;
    be->vt->destroy(be);
}
ft_backend_kind ft_backend_kind_of(const ft_backend *be) { return be->vt->kind; }
const char *ft_backend_name(const ft_backend *be) { return be->vt->name; }
const char *ft_backend_device_name(const ft_backend *be) {
    return be->device_name[0] ? be->device_name : be->vt->name;
}
ft_dtype ft_backend_act_dtype(const ft_backend *be) { return be->vt->act_dtype; }

static double ft_mib(int64_t b) { return (double)b / (1 << 20); }

/* The failure message of an allocation: what, how much, what is in use, the backend's reason and,
 * for lack of memory, the caller's explanation (plan figure, knob). */
static ft_status ft_alloc_failed(ft_backend *be, ft_status st, int64_t bytes, const char *what, const char *kind) {
    char reason[640], extra[640] = "";
    snprintf(reason, sizeof reason, "%s", ft_error_msg());
    if (st == FT_E_OOM && be->oom_fn) be->oom_fn(be->oom_user, what, bytes, extra, sizeof extra);
    return FT_ERR(st, "allocating %.1f MiB of %s memory on %s for %s (%.1f MiB already allocated, peak %.1f MiB): %s%s%s",
                  ft_mib(bytes), kind, be->vt->name, what, ft_mib(be->bytes_in_use), ft_mib(be->bytes_peak), reason,
                  extra[0] ? "; " : "", extra);
}

ft_status ft_backend_alloc_failed(ft_backend *be, ft_status st, int64_t bytes, const char *what) {
    return ft_alloc_failed(be, st, bytes, what, "backend");
}

static void ft_account(ft_backend *be, int64_t bytes) {
    be->bytes_in_use += bytes;
    if (be->bytes_in_use > be->bytes_peak) be->bytes_peak = be->bytes_in_use;
}

/* FT_E_OOM when `bytes` more would pass the memory limit: the same status a full device gives,
 * so the caller's handling and the explanation are the same too. */
static ft_status ft_over_limit(const ft_backend *be, int64_t bytes) {
    if (be->mem_limit <= 0 || be->bytes_in_use + bytes <= be->mem_limit) return FT_OK;
    return FT_ERR(FT_E_OOM, "over this backend's memory limit of %.1f MiB", ft_mib(be->mem_limit));
}

ft_status ft_backend_alloc(ft_backend *be, void **ptr, int64_t bytes, const char *what) {
    *ptr = NULL;
    if (bytes < 0) return FT_ERR(FT_E_INTERNAL, "negative allocation for %s", what);
    ft_status st = ft_over_limit(be, bytes);
    if (st == FT_OK) st = be->vt->alloc(be, ptr, bytes);
    if (st != FT_OK) return ft_alloc_failed(be, st, bytes, what, "backend");
    ft_account(be, bytes);
    return FT_OK;
}

ft_status ft_backend_alloc_paged(ft_backend *be, void **ptr, int64_t bytes, const char *what) {
    *ptr = NULL;
    if (bytes < 0) return FT_ERR(FT_E_INTERNAL, "negative allocation for %s", what);
    ft_status st = ft_over_limit(be, bytes);
    if (st == FT_OK) st = be->vt->alloc_paged ? be->vt->alloc_paged(be, ptr, bytes) : be->vt->alloc(be, ptr, bytes);
    if (st != FT_OK) return ft_alloc_failed(be, st, bytes, what, "paged");
    ft_account(be, bytes); /* the hook adds to bytes_paged what really is paged */
    return FT_OK;
}

ft_status ft_backend_weight_cache(ft_backend *be, int64_t bytes) {
    return be->vt->weight_cache ? be->vt->weight_cache(be, bytes) : FT_OK;
}
ft_status ft_backend_weight_prefetch(ft_backend *be, const ft_weight *w) {
    return be->vt->weight_prefetch ? be->vt->weight_prefetch(be, w) : FT_OK;
}
ft_status ft_backend_attn_workspace(ft_backend *be, int64_t bytes) {
    return be->vt->attn_workspace ? be->vt->attn_workspace(be, bytes) : FT_OK;
}

void ft_backend_dequant_counts(ft_backend *be, ft_dequant_counts *out) {
    memset(out, 0, sizeof *out);
    if (be->vt->dequant_counts) be->vt->dequant_counts(be, out);
}
ft_status ft_backend_prefetch(ft_backend *be, const void *ptr, int64_t bytes) {
    return be->vt->prefetch && ptr && bytes > 0 ? be->vt->prefetch(be, ptr, bytes) : FT_OK;
}
int64_t ft_backend_bytes_paged(const ft_backend *be) { return be->bytes_paged; }

/* Generic host memory: 64-byte aligned heap blocks with a header holding the size. */
typedef struct { int64_t bytes; int64_t pad[7]; } ft_host_hdr;

ft_status ft_backend_alloc_host(ft_backend *be, void **ptr, int64_t bytes, const char *what) {
    *ptr = NULL;
    if (bytes < 0) return FT_ERR(FT_E_INTERNAL, "negative allocation for %s", what);
    ft_status st;
    if (be->vt->alloc_host) {
        st = be->vt->alloc_host(be, ptr, bytes);
    } else {
        void *p = NULL;
        if (posix_memalign(&p, 64, sizeof(ft_host_hdr) + (size_t)bytes) != 0 || !p) {
            st = FT_ERR(FT_E_OOM, "out of host memory");
        } else {
            ((ft_host_hdr *)p)->bytes = bytes;
            *ptr = (char *)p + sizeof(ft_host_hdr);
            st = FT_OK;
        }
    }
    if (st != FT_OK) return ft_alloc_failed(be, st, bytes, what, "pinned host");
    be->host_bytes += bytes;
    if (be->host_bytes > be->host_peak) be->host_peak = be->host_bytes;
    return FT_OK;
}

void ft_backend_release_host(ft_backend *be, void *ptr) {
    if (!ptr) return;
    if (be->vt->release_host) {
        be->host_bytes -= be->vt->release_host(be, ptr);
        return;
    }
    ft_host_hdr *h = (ft_host_hdr *)((char *)ptr - sizeof(ft_host_hdr));
    be->host_bytes -= h->bytes;
    free(h);
}
int64_t ft_backend_host_bytes(const ft_backend *be) { return be->host_bytes; }
int64_t ft_backend_host_bytes_peak(const ft_backend *be) { return be->host_peak; }

ft_status ft_backend_copy_async(ft_backend *be, void *dst, const void *src, int64_t bytes, int64_t *ticket) {
    *ticket = 0;
    if (bytes <= 0) return FT_OK;
    if (be->vt->copy_async) return be->vt->copy_async(be, dst, src, bytes, ticket);
    return be->vt->copy(be, dst, src, bytes);
}

ft_status ft_backend_copy_wait(ft_backend *be, int64_t ticket) {
    if (!be->vt->copy_wait || ticket <= 0) return FT_OK;
    ft_backend_phase_note(be, FT_PHASE_OTHER); /* a stall shows up as "other" */
    return be->vt->copy_wait(be, ticket);
}

ft_status ft_backend_mem_info(ft_backend *be, int64_t *free_bytes, int64_t *total_bytes) {
    if (be->vt->mem_info) {
        FT_TRY(be->vt->mem_info(be, free_bytes, total_bytes));
    } else {
        long pages = sysconf(_SC_PHYS_PAGES), avail = sysconf(_SC_AVPHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
        *total_bytes = pages > 0 && psize > 0 ? (int64_t)pages * psize : 0;
        *free_bytes = avail > 0 && psize > 0 ? (int64_t)avail * psize : 0;
    }
    if (be->mem_limit > 0) {
        const int64_t left = be->mem_limit > be->bytes_in_use ? be->mem_limit - be->bytes_in_use : 0;
        if (*total_bytes > be->mem_limit) *total_bytes = be->mem_limit;
        if (*free_bytes > left) *free_bytes = left;
    }
    return FT_OK;
}

void ft_backend_set_memory_limit(ft_backend *be, int64_t bytes) { be->mem_limit = bytes > 0 ? bytes : 0; }
int64_t ft_backend_memory_limit(const ft_backend *be) { return be->mem_limit; }

void ft_backend_set_oom_explain(ft_backend *be, ft_oom_explain_fn fn, void *user) {
    be->oom_fn = fn;
    be->oom_user = user;
}

int64_t ft_backend_cuda_load_bytes(int64_t max_nf4_numel) {
    if (max_nf4_numel <= 0) return 0;
    const int64_t nb = (max_nf4_numel + 63) / 64;
    return FT_LOAD_SLOTS * FT_LOAD_CHUNK_BYTES + 4 * (nb + 1);
}

/* ---- phase timers ----------------------------------------------------------------------------- */

struct ft_phase_clock {
    int on;
    int cur;          /* phase of the last mark; -1 before the first */
    int forced;       /* ft_backend_phase_begin's phase, or -1 */
    int64_t n, cap;   /* marks taken, room */
    unsigned char *phase;
    double *t;        /* generic: host seconds of each mark */
    double *ms;       /* timer_read's output [cap] */
    ft_status err;    /* first failure of a mark (reported at stop) */
    char err_msg[256];
};

static const char *const ft_phase_names[FT_PHASE_COUNT] = {"other", "dequant", "gemm", "attention",
                                                           "elementwise", "lora", "xent", "optimizer"};
const char *ft_phase_name(ft_phase p) { return (unsigned)p < FT_PHASE_COUNT ? ft_phase_names[p] : "?"; }

static void ft_clock_free(ft_phase_clock *c) {
    if (!c) return;
    free(c->phase);
    free(c->t);
    free(c->ms);
    free(c);
}

static double ft_host_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void ft_clock_mark(ft_backend *be, int ph) {
    ft_phase_clock *c = be->clock;
    if (c->n == c->cap) {
        int64_t cap = c->cap ? 2 * c->cap : 4096;
        unsigned char *p = realloc(c->phase, (size_t)cap);
        if (p) c->phase = p;
        double *t = p ? realloc(c->t, (size_t)cap * sizeof *t) : NULL;
        if (t) c->t = t;
        double *ms = t ? realloc(c->ms, (size_t)cap * sizeof *ms) : NULL;
        if (ms) c->ms = ms;
        if (!ms) {
            if (c->err == FT_OK) {
                c->err = FT_E_OOM;
                snprintf(c->err_msg, sizeof c->err_msg, "phase timers: out of memory after %lld marks", (long long)c->n);
            }
            return;
        }
        c->cap = cap;
    }
    if (be->vt->timer_mark) {
        ft_status st = be->vt->timer_mark(be, c->n);
        if (st != FT_OK) {
            if (c->err == FT_OK) {
                c->err = st;
                snprintf(c->err_msg, sizeof c->err_msg, "phase timers: %s", ft_error_msg());
            }
            return;
        }
    } else {
        c->t[c->n] = ft_host_seconds();
    }
    c->phase[c->n++] = (unsigned char)ph;
    c->cur = ph;
}

void ft_backend_phase_note(ft_backend *be, ft_phase p) {
    ft_phase_clock *c = be->clock;
    if (!c || !c->on) return;
    int ph = c->forced >= 0 ? c->forced : (int)p;
    if (ph != c->cur) ft_clock_mark(be, ph);
}

ft_status ft_backend_timing_start(ft_backend *be) {
    if (!be->clock) {
        ft_phase_clock *c = calloc(1, sizeof *c);
        if (!c) return FT_ERR(FT_E_OOM, "phase timers: out of memory");
        be->clock = c;
    }
    ft_phase_clock *c = be->clock;
    c->on = 1, c->cur = -1, c->forced = -1, c->n = 0, c->err = FT_OK;
    ft_clock_mark(be, FT_PHASE_OTHER);
    return FT_OK;
}

ft_status ft_backend_timing_stop(ft_backend *be, double ms[FT_PHASE_COUNT]) {
    ft_phase_clock *c = be->clock;
    if (!c || !c->on) return FT_ERR(FT_E_INTERNAL, "ft_backend_timing_stop without ft_backend_timing_start");
    c->cur = -1; /* the closing mark */
    ft_clock_mark(be, FT_PHASE_OTHER);
    c->on = 0;
    if (c->err != FT_OK) return FT_ERR(c->err, "%s", c->err_msg);
    if (c->n < 2) return FT_OK;
    if (be->vt->timer_read) {
        FT_TRY(be->vt->timer_read(be, c->n, c->ms));
    } else {
        for (int64_t i = 0; i + 1 < c->n; i++) c->ms[i] = 1e3 * (c->t[i + 1] - c->t[i]);
    }
    for (int64_t i = 0; i + 1 < c->n; i++) ms[c->phase[i]] += c->ms[i];
    return FT_OK;
}

void ft_backend_phase_begin(ft_backend *be, ft_phase p) {
    ft_phase_clock *c = be->clock;
    if (!c || !c->on) return;
    c->forced = -1;
    ft_backend_phase_note(be, p);
    c->forced = (int)p;
}

void ft_backend_phase_end(ft_backend *be) {
    if (be->clock) be->clock->forced = -1;
}

#define FT_PH(be, p) ft_backend_phase_note((be), (p))

void ft_backend_release(ft_backend *be, void *ptr) {
    if (ptr) be->vt->release(be, ptr);
}

ft_status ft_backend_upload(ft_backend *be, void *dst, const void *src, int64_t bytes) {
    FT_PH(be, FT_PHASE_OTHER);
    return bytes ? be->vt->upload(be, dst, src, bytes) : FT_OK;
}
ft_status ft_backend_download(ft_backend *be, void *dst, const void *src, int64_t bytes) {
    FT_PH(be, FT_PHASE_OTHER);
    return bytes ? be->vt->download(be, dst, src, bytes) : FT_OK;
}
ft_status ft_backend_copy(ft_backend *be, void *dst, const void *src, int64_t bytes) {
    FT_PH(be, FT_PHASE_ELEMENTWISE); /* the residual stream's copies inside a layer */
    return bytes ? be->vt->copy(be, dst, src, bytes) : FT_OK;
}
ft_status ft_backend_memset(ft_backend *be, void *dst, int value, int64_t bytes) {
    FT_PH(be, FT_PHASE_OTHER);
    return bytes ? be->vt->memset(be, dst, value, bytes) : FT_OK;
}
ft_status ft_backend_sync(ft_backend *be) { return be->vt->sync(be); }
int64_t ft_backend_bytes_in_use(const ft_backend *be) { return be->bytes_in_use; }
int64_t ft_backend_bytes_peak(const ft_backend *be) { return be->bytes_peak; }

void ft_backend_account_release(ft_backend *be, int64_t bytes) { be->bytes_in_use -= bytes; }
void ft_backend_account_release_paged(ft_backend *be, int64_t bytes) {
    be->bytes_in_use -= bytes;
    be->bytes_paged -= bytes;
}

#define FT_REQUIRE(cond, ...) \
    do { if (!(cond)) return FT_ERR(FT_E_INTERNAL, __VA_ARGS__); } while (0)

static int ft_is_float_weight(const ft_weight *w) {
    return w->dtype == FT_F32 || w->dtype == FT_F16 || w->dtype == FT_BF16;
}
/* A weight the products and the gather can read: any dtype ft_weight_alloc makes, a ggml block
 * type with whole blocks a row (the backends dequantize row tiles). */
static int ft_is_frozen_weight(const ft_weight *w) {
    if (ft_dtype_is_ggml(w->dtype)) return w->cols % ft_dtype_block_elems(w->dtype) == 0;
    return ft_is_float_weight(w) || w->dtype == FT_NF4;
}

ft_status ft_op_embed(ft_backend *be, void *out, const int32_t *ids, const ft_weight *table, int64_t N) {
    FT_REQUIRE(N >= 0 && table->rows > 0, "embed: bad shape");
    FT_REQUIRE(ft_is_frozen_weight(table), "embed: a table of dtype %s", ft_dtype_name(table->dtype));
    FT_PH(be, FT_PHASE_ELEMENTWISE);
    return be->vt->embed(be, out, ids, table, N);
}

ft_status ft_op_rmsnorm(ft_backend *be, void *out, float *rstd, const void *x, const ft_weight *w, int64_t N,
                        int64_t C, float eps) {
    FT_REQUIRE(ft_weight_numel(w) == C && ft_is_float_weight(w), "rmsnorm: weight has %lld elements, want %lld",
               (long long)ft_weight_numel(w), (long long)C);
    FT_PH(be, FT_PHASE_ELEMENTWISE);
    return be->vt->rmsnorm(be, out, rstd, x, w, N, C, eps);
}

ft_status ft_op_rmsnorm_bwd(ft_backend *be, void *dx, const void *dout, const void *x, const ft_weight *w,
                            const float *rstd, int64_t N, int64_t C, int accumulate) {
    FT_REQUIRE(ft_weight_numel(w) == C && rstd, "rmsnorm_bwd: bad arguments");
    FT_PH(be, FT_PHASE_ELEMENTWISE);
    return be->vt->rmsnorm_bwd(be, dx, dout, x, w, rstd, N, C, accumulate);
}

ft_status ft_op_linear(ft_backend *be, void *y, const void *x, const ft_weight *W, const ft_weight *bias,
                       int64_t N, int accumulate) {
    FT_REQUIRE(!bias || ft_weight_numel(bias) == W->rows, "linear: bias has %lld elements, want %lld",
               bias ? (long long)ft_weight_numel(bias) : 0LL, (long long)W->rows);
    FT_REQUIRE(ft_is_frozen_weight(W) && (!bias || ft_is_frozen_weight(bias)), "linear: a weight of dtype %s",
               ft_dtype_name(W->dtype));
    FT_PH(be, FT_PHASE_GEMM);
    return be->vt->linear(be, y, x, W, bias, N, accumulate);
}

ft_status ft_op_linear_bwd_x(ft_backend *be, void *dx, const void *dy, const ft_weight *W, int64_t N,
                             int accumulate) {
    FT_REQUIRE(ft_is_frozen_weight(W), "linear_bwd_x: a weight of dtype %s", ft_dtype_name(W->dtype));
    FT_PH(be, FT_PHASE_GEMM);
    return be->vt->linear_bwd_x(be, dx, dy, W, N, accumulate);
}

ft_status ft_op_lora_fwd(ft_backend *be, void *y, void *t, const void *x, ft_lora_drop drop, const float *A,
                         const float *B, int64_t N, int64_t in, int64_t out, int64_t R, float scale, int accumulate) {
    FT_REQUIRE(R > 0 && in > 0 && out > 0, "lora_fwd: bad shape");
    FT_REQUIRE(y || !accumulate, "lora_fwd: accumulate into no output");
    FT_REQUIRE(y || x, "lora_fwd: neither input nor output");
    FT_REQUIRE(drop.p >= 0.0f && drop.p < 1.0f, "lora_fwd: dropout p = %g out of [0, 1)", drop.p);
    FT_PH(be, FT_PHASE_LORA);
    return be->vt->lora_fwd(be, y, t, x, drop, A, B, N, in, out, R, scale, accumulate);
}

ft_status ft_op_lora_bwd(ft_backend *be, void *dx, float *dA, float *dB, const void *dy, const void *x,
                         ft_lora_drop drop, const void *t, const float *A, const float *B, int64_t N, int64_t in,
                         int64_t out, int64_t R, float scale, int accumulate) {
    FT_REQUIRE(R > 0 && in > 0 && out > 0, "lora_bwd: bad shape");
    FT_REQUIRE(drop.p >= 0.0f && drop.p < 1.0f, "lora_bwd: dropout p = %g out of [0, 1)", drop.p);
    FT_PH(be, FT_PHASE_LORA);
    return be->vt->lora_bwd(be, dx, dA, dB, dy, x, drop, t, A, B, N, in, out, R, scale, accumulate);
}

ft_status ft_op_dropout(ft_backend *be, void *out, const void *in, int64_t n, float p, uint64_t seed) {
    FT_REQUIRE(p >= 0.0f && p < 1.0f, "dropout: p = %g out of [0, 1)", p);
    FT_PH(be, FT_PHASE_LORA);
    return be->vt->dropout(be, out, in, n, p, seed);
}

ft_status ft_op_rope(ft_backend *be, void *x, const int32_t *pos, const float *inv_freq, int64_t N, int64_t nh,
                     int64_t D, int inverse) {
    FT_REQUIRE(D % 2 == 0, "rope: odd head_dim %lld", (long long)D);
    FT_PH(be, FT_PHASE_ELEMENTWISE);
    return be->vt->rope(be, x, pos, inv_freq, N, nh, D, inverse);
}

ft_status ft_op_attention(ft_backend *be, void *out, float *lse, const void *q, const void *k, const void *v,
                          const int32_t *doc_start, int64_t ndocs, int64_t B, int64_t T, int64_t H, int64_t Hkv,
                          int64_t D, float scale) {
    FT_REQUIRE(Hkv > 0 && H % Hkv == 0, "attention: %lld heads not a multiple of %lld kv heads", (long long)H,
               (long long)Hkv);
    FT_PH(be, FT_PHASE_ATTENTION);
    return be->vt->attention(be, out, lse, q, k, v, doc_start, ndocs, B, T, H, Hkv, D, scale);
}

ft_status ft_op_attention_kv(ft_backend *be, void *out, const void *q, const void *k, const void *v, int64_t Tq,
                             int64_t Tk, int64_t H, int64_t Hkv, int64_t D, float scale) {
    FT_REQUIRE(Hkv > 0 && H % Hkv == 0, "attention_kv: %lld heads not a multiple of %lld kv heads", (long long)H,
               (long long)Hkv);
    FT_REQUIRE(Tq > 0 && Tq <= Tk, "attention_kv: %lld queries against %lld keys", (long long)Tq, (long long)Tk);
    FT_PH(be, FT_PHASE_ATTENTION);
    return be->vt->attention_kv(be, out, q, k, v, Tq, Tk, H, Hkv, D, scale);
}

ft_status ft_op_attention_bwd(ft_backend *be, void *dq, void *dk, void *dv, const void *dout, const void *q,
                              const void *k, const void *v, const void *out, const float *lse,
                              const int32_t *doc_start, int64_t ndocs, int64_t B, int64_t T, int64_t H, int64_t Hkv,
                              int64_t D, float scale) {
    FT_REQUIRE(Hkv > 0 && H % Hkv == 0, "attention_bwd: bad heads");
    FT_PH(be, FT_PHASE_ATTENTION);
    return be->vt->attention_bwd(be, dq, dk, dv, dout, q, k, v, out, lse, doc_start, ndocs, B, T, H, Hkv, D, scale);
}

int64_t ft_attn_doc_count(const int32_t *doc_start, int64_t B, int64_t T) {
    int64_t n = 0;
    for (int64_t i = 0; i < B * T; i++) n += i % T == 0 || (doc_start && doc_start[i] == i % T);
    return n;
}

ft_status ft_op_swiglu(ft_backend *be, void *out, const void *gate, const void *up, int64_t n) {
    FT_PH(be, FT_PHASE_ELEMENTWISE);
    return be->vt->swiglu(be, out, gate, up, n);
}
ft_status ft_op_swiglu_bwd(ft_backend *be, void *dgate, void *dup, const void *dout, const void *gate,
                           const void *up, int64_t n) {
    FT_PH(be, FT_PHASE_ELEMENTWISE);
    return be->vt->swiglu_bwd(be, dgate, dup, dout, gate, up, n);
}
ft_status ft_op_add(ft_backend *be, void *y, const void *x, int64_t n) {
    FT_PH(be, FT_PHASE_ELEMENTWISE);
    return be->vt->add(be, y, x, n);
}

ft_status ft_op_xent(ft_backend *be, float *loss_sum, float *count, void *logits, const int32_t *labels,
                     int64_t n, int64_t V, float grad_scale) {
    FT_REQUIRE(V > 0, "xent: empty vocabulary");
    FT_PH(be, FT_PHASE_XENT);
    return be->vt->xent(be, loss_sum, count, logits, labels, n, V, grad_scale);
}

/* Trainable token rows: elementwise copies and gathers around the embedding and the lm_head. */
ft_status ft_op_rows_set(ft_backend *be, void *x, const float *rows, const int32_t *pos, int64_t k, int64_t C) {
    FT_REQUIRE(k >= 0 && C >= 0 && (k == 0 || pos), "rows_set: bad shape (k %lld, C %lld)", (long long)k,
               (long long)C);
    if (k == 0 || C == 0) return FT_OK;
    FT_PH(be, FT_PHASE_ELEMENTWISE);
    return be->vt->rows_set(be, x, rows, pos, k, C);
}
ft_status ft_op_rows_sum(ft_backend *be, float *drows, const void *dx, const int32_t *pos, int64_t k, int64_t C) {
    FT_REQUIRE(k >= 0 && C >= 0 && (k == 0 || pos), "rows_sum: bad shape (k %lld, C %lld)", (long long)k,
               (long long)C);
    if (k == 0 || C == 0) return FT_OK;
    FT_PH(be, FT_PHASE_ELEMENTWISE);
    return be->vt->rows_sum(be, drows, dx, pos, k, C);
}
ft_status ft_op_cols_set(ft_backend *be, void *logits, const void *t, const int32_t *cols, int64_t n, int64_t V,
                         int64_t k) {
    FT_REQUIRE(n >= 0 && k >= 0 && k <= V, "cols_set: bad shape (n %lld, V %lld, k %lld)", (long long)n, (long long)V,
               (long long)k);
    if (n == 0 || k == 0) return FT_OK;
    FT_PH(be, FT_PHASE_XENT);
    return be->vt->cols_set(be, logits, t, cols, n, V, k);
}
ft_status ft_op_cols_take(ft_backend *be, void *g, void *logits, const int32_t *cols, int64_t n, int64_t V,
                          int64_t k) {
    FT_REQUIRE(n >= 0 && k >= 0 && k <= V, "cols_take: bad shape (n %lld, V %lld, k %lld)", (long long)n,
               (long long)V, (long long)k);
    if (n == 0 || k == 0) return FT_OK;
    FT_PH(be, FT_PHASE_XENT);
    return be->vt->cols_take(be, g, logits, cols, n, V, k);
}

/* DoRA: the weight norm runs with the LoRA products (one per module per forward pass); the row scale
 * and the magnitude's gradient are elementwise passes over a module's output. */
ft_status ft_op_dora_norm(ft_backend *be, float *wn, const ft_weight *W, const float *A, const float *B, int64_t R,
                          float scale) {
    FT_REQUIRE(W && R > 0 && A && B && wn, "dora_norm: bad arguments (R %lld)", (long long)R);
    if (W->rows == 0) return FT_OK;
    if (W->cols == 0) return ft_backend_memset(be, wn, 0, W->rows * 4); /* empty rows: norm 0 */
    FT_PH(be, FT_PHASE_LORA);
    return be->vt->dora_norm(be, wn, W, A, B, R, scale);
}
ft_status ft_op_dora_scale(ft_backend *be, void *y, const void *z, const float *mag, const float *wn, float shift,
                           const ft_weight *bias, int64_t N, int64_t out, int accumulate) {
    FT_REQUIRE(N >= 0 && out >= 0 && !(accumulate && y == z), "dora_scale: bad shape (N %lld, out %lld%s)",
               (long long)N, (long long)out, accumulate && y == z ? ", y aliases z with accumulate" : "");
    FT_REQUIRE(!bias || bias->rows * bias->cols == out, "dora_scale: bias of %lld values for %lld outputs",
               (long long)(bias ? bias->rows * bias->cols : 0), (long long)out);
    if (N == 0 || out == 0) return FT_OK;
    FT_PH(be, FT_PHASE_LORA);
    return be->vt->dora_scale(be, y, z, mag, wn, shift, bias, N, out, accumulate);
}
ft_status ft_op_dora_mag_grad(ft_backend *be, float *dmag, const void *dy, const void *z, const float *wn, int64_t N,
                              int64_t out) {
    FT_REQUIRE(N >= 0 && out >= 0, "dora_mag_grad: bad shape (N %lld, out %lld)", (long long)N, (long long)out);
    if (N == 0 || out == 0) return FT_OK;
    FT_PH(be, FT_PHASE_LORA);
    return be->vt->dora_mag_grad(be, dmag, dy, z, wn, N, out);
}

ft_status ft_op_sumsq(ft_backend *be, float *out, const float *x, int64_t n) {
    FT_PH(be, FT_PHASE_OPTIMIZER);
    return be->vt->sumsq(be, out, x, n);
}
ft_status ft_op_scale(ft_backend *be, float *x, int64_t n, float s) {
    FT_PH(be, FT_PHASE_OPTIMIZER);
    return be->vt->scale(be, x, n, s);
}
ft_status ft_op_clip_factor(ft_backend *be, float *scalars, const float *sumsq, double max_norm) {
    FT_PH(be, FT_PHASE_OPTIMIZER);
    return be->vt->clip_factor(be, scalars, sumsq, max_norm);
}
ft_status ft_op_adamw(ft_backend *be, float *p, const float *g, float *m, float *v, int64_t n,
                      const float *scalars) {
    FT_PH(be, FT_PHASE_OPTIMIZER);
    return be->vt->adamw(be, p, g, m, v, n, scalars);
}

ft_status ft_op_nf4_quantize(ft_backend *be, ft_weight *w, const void *src, ft_dtype src_dtype) {
    FT_REQUIRE(w->dtype == FT_NF4, "nf4_quantize: weight is %s", ft_dtype_name(w->dtype));
    FT_REQUIRE(src_dtype == FT_F32 || src_dtype == FT_F16 || src_dtype == FT_BF16, "nf4_quantize: source %s",
               ft_dtype_name(src_dtype));
    FT_PH(be, FT_PHASE_DEQUANT);
    return be->vt->nf4_quantize(be, w, src, src_dtype);
}
ft_status ft_op_nf4_dequantize(ft_backend *be, void *out, const ft_weight *w) {
    FT_REQUIRE(w->dtype == FT_NF4, "nf4_dequantize: weight is %s", ft_dtype_name(w->dtype));
    FT_PH(be, FT_PHASE_DEQUANT);
    return be->vt->nf4_dequantize(be, out, w);
}
