/* backend.c: public entry points of backends and ops. Validates once, forwards to the vtable,
 * and keeps the byte accounting that `ftune plan` is checked against. */
#include "kernels/backend_impl.h"

#include <string.h>

#include "kernels/log.h"

#ifndef FT_HAVE_CUDA
ft_status ft_backend_cuda_create(ft_backend **out, int device) {
    (void)device;
    *out = NULL;
    return FT_ERR(FT_E_UNSUPPORTED, "this ftune was built without CUDA (configure with -DFT_CUDA=ON)");
}
#endif

void ft_backend_free(ft_backend *be) {
    if (be) be->vt->destroy(be);
}
ft_backend_kind ft_backend_kind_of(const ft_backend *be) { return be->vt->kind; }
const char *ft_backend_name(const ft_backend *be) { return be->vt->name; }
ft_dtype ft_backend_act_dtype(const ft_backend *be) { return be->vt->act_dtype; }

ft_status ft_backend_alloc(ft_backend *be, void **ptr, int64_t bytes, const char *what) {
    *ptr = NULL;
    if (bytes < 0) return FT_ERR(FT_E_INTERNAL, "negative allocation for %s", what);
    ft_status st = be->vt->alloc(be, ptr, bytes);
    if (st != FT_OK) {
        return ft_error_wrap(st, "allocating %.1f MiB on %s for %s", (double)bytes / (1 << 20), be->vt->name,
                             what);
    }
    be->bytes_in_use += bytes;
    if (be->bytes_in_use > be->bytes_peak) be->bytes_peak = be->bytes_in_use;
    return FT_OK;
}

void ft_backend_release(ft_backend *be, void *ptr) {
    if (ptr) be->vt->release(be, ptr);
}

ft_status ft_backend_upload(ft_backend *be, void *dst, const void *src, int64_t bytes) {
    return bytes ? be->vt->upload(be, dst, src, bytes) : FT_OK;
}
ft_status ft_backend_download(ft_backend *be, void *dst, const void *src, int64_t bytes) {
    return bytes ? be->vt->download(be, dst, src, bytes) : FT_OK;
}
ft_status ft_backend_copy(ft_backend *be, void *dst, const void *src, int64_t bytes) {
    return bytes ? be->vt->copy(be, dst, src, bytes) : FT_OK;
}
ft_status ft_backend_memset(ft_backend *be, void *dst, int value, int64_t bytes) {
    return bytes ? be->vt->memset(be, dst, value, bytes) : FT_OK;
}
ft_status ft_backend_sync(ft_backend *be) { return be->vt->sync(be); }
int64_t ft_backend_bytes_in_use(const ft_backend *be) { return be->bytes_in_use; }
int64_t ft_backend_bytes_peak(const ft_backend *be) { return be->bytes_peak; }
void ft_backend_reset_peak(ft_backend *be) { be->bytes_peak = be->bytes_in_use; }

void ft_backend_account_release(ft_backend *be, int64_t bytes) { be->bytes_in_use -= bytes; }

#define FT_REQUIRE(cond, ...) \
    do { if (!(cond)) return FT_ERR(FT_E_INTERNAL, __VA_ARGS__); } while (0)

static int ft_is_float_weight(const ft_weight *w) {
    return w->dtype == FT_F32 || w->dtype == FT_F16 || w->dtype == FT_BF16;
}

ft_status ft_op_embed(ft_backend *be, void *out, const int32_t *ids, const ft_weight *table, int64_t N) {
    FT_REQUIRE(N >= 0 && table->rows > 0, "embed: bad shape");
    return be->vt->embed(be, out, ids, table, N);
}

ft_status ft_op_rmsnorm(ft_backend *be, void *out, float *rstd, const void *x, const ft_weight *w, int64_t N,
                        int64_t C, float eps) {
    FT_REQUIRE(ft_weight_numel(w) == C && ft_is_float_weight(w), "rmsnorm: weight has %lld elements, want %lld",
               (long long)ft_weight_numel(w), (long long)C);
    return be->vt->rmsnorm(be, out, rstd, x, w, N, C, eps);
}

ft_status ft_op_rmsnorm_bwd(ft_backend *be, void *dx, const void *dout, const void *x, const ft_weight *w,
                            const float *rstd, int64_t N, int64_t C) {
    FT_REQUIRE(ft_weight_numel(w) == C && rstd, "rmsnorm_bwd: bad arguments");
    return be->vt->rmsnorm_bwd(be, dx, dout, x, w, rstd, N, C);
}

ft_status ft_op_linear(ft_backend *be, void *y, const void *x, const ft_weight *W, const ft_weight *bias,
                       int64_t N, int accumulate) {
    FT_REQUIRE(!bias || ft_weight_numel(bias) == W->rows, "linear: bias has %lld elements, want %lld",
               bias ? (long long)ft_weight_numel(bias) : 0LL, (long long)W->rows);
    return be->vt->linear(be, y, x, W, bias, N, accumulate);
}

ft_status ft_op_linear_bwd_x(ft_backend *be, void *dx, const void *dy, const ft_weight *W, int64_t N,
                             int accumulate) {
    return be->vt->linear_bwd_x(be, dx, dy, W, N, accumulate);
}

ft_status ft_op_lora_fwd(ft_backend *be, void *y, void *t, const void *xd, const float *A, const float *B,
                         int64_t N, int64_t in, int64_t out, int64_t R, float scale) {
    FT_REQUIRE(R > 0 && in > 0 && out > 0, "lora_fwd: bad shape");
    return be->vt->lora_fwd(be, y, t, xd, A, B, N, in, out, R, scale);
}

ft_status ft_op_lora_bwd(ft_backend *be, void *dxd, float *dA, float *dB, const void *dy, const void *xd,
                         const void *t, const float *A, const float *B, int64_t N, int64_t in, int64_t out,
                         int64_t R, float scale) {
    FT_REQUIRE(R > 0 && in > 0 && out > 0, "lora_bwd: bad shape");
    return be->vt->lora_bwd(be, dxd, dA, dB, dy, xd, t, A, B, N, in, out, R, scale);
}

ft_status ft_op_dropout(ft_backend *be, void *out, const void *in, int64_t n, float p, uint64_t seed) {
    FT_REQUIRE(p >= 0.0f && p < 1.0f, "dropout: p = %g out of [0, 1)", p);
    return be->vt->dropout(be, out, in, n, p, seed);
}

ft_status ft_op_rope(ft_backend *be, void *x, const int32_t *pos, const float *inv_freq, int64_t N, int64_t nh,
                     int64_t D, int inverse) {
    FT_REQUIRE(D % 2 == 0, "rope: odd head_dim %lld", (long long)D);
    return be->vt->rope(be, x, pos, inv_freq, N, nh, D, inverse);
}

ft_status ft_op_attention(ft_backend *be, void *out, float *lse, const void *q, const void *k, const void *v,
                          const int32_t *doc_start, int64_t B, int64_t T, int64_t H, int64_t Hkv, int64_t D,
                          float scale) {
    FT_REQUIRE(Hkv > 0 && H % Hkv == 0, "attention: %lld heads not a multiple of %lld kv heads", (long long)H,
               (long long)Hkv);
    return be->vt->attention(be, out, lse, q, k, v, doc_start, B, T, H, Hkv, D, scale);
}

ft_status ft_op_attention_bwd(ft_backend *be, void *dq, void *dk, void *dv, const void *dout, const void *q,
                              const void *k, const void *v, const void *out, const float *lse,
                              const int32_t *doc_start, int64_t B, int64_t T, int64_t H, int64_t Hkv, int64_t D,
                              float scale) {
    FT_REQUIRE(Hkv > 0 && H % Hkv == 0, "attention_bwd: bad heads");
    return be->vt->attention_bwd(be, dq, dk, dv, dout, q, k, v, out, lse, doc_start, B, T, H, Hkv, D, scale);
}

ft_status ft_op_swiglu(ft_backend *be, void *out, const void *gate, const void *up, int64_t n) {
    return be->vt->swiglu(be, out, gate, up, n);
}
ft_status ft_op_swiglu_bwd(ft_backend *be, void *dgate, void *dup, const void *dout, const void *gate,
                           const void *up, int64_t n) {
    return be->vt->swiglu_bwd(be, dgate, dup, dout, gate, up, n);
}
ft_status ft_op_add(ft_backend *be, void *y, const void *x, int64_t n) { return be->vt->add(be, y, x, n); }

ft_status ft_op_xent(ft_backend *be, float *loss_sum, float *count, void *logits, const int32_t *labels,
                     int64_t n, int64_t V, float grad_scale) {
    FT_REQUIRE(V > 0, "xent: empty vocabulary");
    return be->vt->xent(be, loss_sum, count, logits, labels, n, V, grad_scale);
}

ft_status ft_op_sumsq(ft_backend *be, float *out, const float *x, int64_t n) { return be->vt->sumsq(be, out, x, n); }
ft_status ft_op_scale(ft_backend *be, float *x, int64_t n, float s) { return be->vt->scale(be, x, n, s); }
ft_status ft_op_adamw(ft_backend *be, float *p, const float *g, float *m, float *v, int64_t n,
                      const float *scalars) {
    return be->vt->adamw(be, p, g, m, v, n, scalars);
}

ft_status ft_op_nf4_quantize(ft_backend *be, ft_weight *w, const void *src, ft_dtype src_dtype) {
    FT_REQUIRE(w->dtype == FT_NF4, "nf4_quantize: weight is %s", ft_dtype_name(w->dtype));
    FT_REQUIRE(src_dtype == FT_F32 || src_dtype == FT_F16 || src_dtype == FT_BF16, "nf4_quantize: source %s",
               ft_dtype_name(src_dtype));
    return be->vt->nf4_quantize(be, w, src, src_dtype);
}
ft_status ft_op_nf4_dequantize(ft_backend *be, void *out, const ft_weight *w) {
    FT_REQUIRE(w->dtype == FT_NF4, "nf4_dequantize: weight is %s", ft_dtype_name(w->dtype));
    return be->vt->nf4_dequantize(be, out, w);
}
