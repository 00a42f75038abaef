/* bf16_cpu.c: the CPU backend storing activations as the CUDA backend does (ft_backend_cpu_bf16,
 * selected by FT_CPU_BF16=1 in trainer/loader.c). A diagnostic, not a second reference.
 *
 * Every op runs the reference kernel in f32 and then rounds what it wrote into activation memory
 * (void * in ops.h, BF16 on CUDA) to BF16, round to nearest even; f32 outputs (rstd, lse, LoRA
 * gradients, optimizer state) are left alone. The frozen linears multiply with their weights
 * rounded to BF16, as CUDA's dequantized copies are, and LoRA's y product reads t as stored. The
 * arithmetic stays the reference's, so the gap between this backend and the plain CPU one is what
 * BF16 storage alone does to a training run: the floor a CUDA-vs-CPU loss gap is read against
 * (tests/gpu/run.sh e2e, docs/perf.md). Not modelled: the BF16 operands inside CUDA's kernels
 * (attention's P, the BF16 copies of LoRA's A and B in the cuBLASLt products). */
#include "kernels/cpu/cpu_impl.h"

#include "kernels/dtype.h"
#include "kernels/mem.h"

/* x[n] (f32 activation memory) rounded to the nearest BF16 in place; NULL: nothing was written */
static void ft_bf16_round(void *x, int64_t n) {
    if (!x) return;
    float *f = (float *)x;
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++) f[i] = ft_bf16_to_f32(ft_f32_to_bf16(f[i]));
}

#define FT_THEN_ROUND(call, ...)        \
    do {                                \
        ft_status st_ = (call);         \
        if (st_ == FT_OK) {__VA_ARGS__;} \
        return st_;                     \
    } while (0)

static ft_status bf_embed(ft_backend *be, void *out, const int32_t *ids, const ft_weight *table, int64_t N) {
    FT_THEN_ROUND(ft_cpu_embed(be, out, ids, table, N), ft_bf16_round(out, N * table->cols));
}
static ft_status bf_rmsnorm(ft_backend *be, void *out, float *rstd, const void *x, const ft_weight *w, int64_t N,
                            int64_t C, float eps) {
    FT_THEN_ROUND(ft_cpu_rmsnorm(be, out, rstd, x, w, N, C, eps), ft_bf16_round(out, N * C));
}
static ft_status bf_rmsnorm_bwd(ft_backend *be, void *dx, const void *dout, const void *x, const ft_weight *w,
                                const float *rstd, int64_t N, int64_t C, int acc) {
    FT_THEN_ROUND(ft_cpu_rmsnorm_bwd(be, dx, dout, x, w, rstd, N, C, acc), ft_bf16_round(dx, N * C));
}
/* The frozen weight as CUDA multiplies with it: dequantized (NF4) or converted to BF16, here as an
 * f32 copy of the BF16 values (*buf, ft_free it). The whole weight at once: a diagnostic for small
 * models, not for 70B layers. */
static ft_status bf_weight(const ft_weight *W, ft_weight *view, float **buf) {
    const int64_t n = ft_weight_numel(W);
    FT_TRY(ft_malloc((void **)buf, (size_t)n * sizeof(float), "bf16 weight copy"));
    ft_cpu_weight_f32(W, 0, n, *buf);
    ft_bf16_round(*buf, n);
    *view = (ft_weight){.dtype = FT_F32, .rows = W->rows, .cols = W->cols, .data = *buf};
    return FT_OK;
}

static ft_status bf_linear(ft_backend *be, void *y, const void *x, const ft_weight *W, const ft_weight *bias,
                           int64_t N, int acc) {
    ft_weight v;
    float *buf;
    FT_TRY(bf_weight(W, &v, &buf));
    ft_status st = ft_cpu_linear(be, y, x, &v, bias, N, acc);
    ft_free(buf);
    if (st == FT_OK) ft_bf16_round(y, N * W->rows);
    return st;
}
static ft_status bf_linear_bwd_x(ft_backend *be, void *dx, const void *dy, const ft_weight *W, int64_t N, int acc) {
    ft_weight v;
    float *buf;
    FT_TRY(bf_weight(W, &v, &buf));
    ft_status st = ft_cpu_linear_bwd_x(be, dx, dy, &v, N, acc);
    ft_free(buf);
    if (st == FT_OK) ft_bf16_round(dx, N * W->cols);
    return st;
}
/* As on CUDA, y's product reads t as stored (BF16). x NULL: t is given, only y's product runs. */
static ft_status bf_lora_fwd(ft_backend *be, void *y, void *t, const void *x, ft_lora_drop drop, const float *A,
                             const float *B, int64_t N, int64_t in, int64_t out, int64_t R, float scale, int acc) {
    if (x) {
        FT_TRY(ft_cpu_lora_fwd(be, NULL, t, x, drop, A, B, N, in, out, R, scale, 0));
        ft_bf16_round(t, N * R);
    }
    if (!y) return FT_OK;
    FT_THEN_ROUND(ft_cpu_lora_fwd(be, y, t, NULL, drop, A, B, N, in, out, R, scale, acc), ft_bf16_round(y, N * out));
}
static ft_status bf_lora_bwd(ft_backend *be, void *dx, float *dA, float *dB, const void *dy, const void *x,
                             ft_lora_drop drop, const void *t, const float *A, const float *B, int64_t N, int64_t in,
                             int64_t out, int64_t R, float scale, int acc) {
    FT_THEN_ROUND(ft_cpu_lora_bwd(be, dx, dA, dB, dy, x, drop, t, A, B, N, in, out, R, scale, acc),
                  ft_bf16_round(dx, N * in));
}
static ft_status bf_dropout(ft_backend *be, void *out, const void *in, int64_t n, float p, uint64_t seed) {
    FT_THEN_ROUND(ft_cpu_dropout(be, out, in, n, p, seed), ft_bf16_round(out, n));
}
static ft_status bf_rope(ft_backend *be, void *x, const int32_t *pos, const float *inv_freq, int64_t N, int64_t nh,
                         int64_t D, int inverse) {
    FT_THEN_ROUND(ft_cpu_rope(be, x, pos, inv_freq, N, nh, D, inverse), ft_bf16_round(x, N * nh * D));
}
static ft_status bf_attention(ft_backend *be, void *out, float *lse, const void *q, const void *k, const void *v,
                              const int32_t *doc_start, int64_t ndocs, int64_t B, int64_t T, int64_t H, int64_t Hkv,
                              int64_t D, float scale) {
    FT_THEN_ROUND(ft_cpu_attention(be, out, lse, q, k, v, doc_start, ndocs, B, T, H, Hkv, D, scale),
                  ft_bf16_round(out, B * T * H * D));
}
static ft_status bf_attention_bwd(ft_backend *be, void *dq, void *dk, void *dv, const void *dout, const void *q,
                                  const void *k, const void *v, const void *out, const float *lse,
                                  const int32_t *doc_start, int64_t ndocs, int64_t B, int64_t T, int64_t H,
                                  int64_t Hkv, int64_t D, float scale) {
    FT_THEN_ROUND(ft_cpu_attention_bwd(be, dq, dk, dv, dout, q, k, v, out, lse, doc_start, ndocs, B, T, H, Hkv, D,
                                       scale),
                  ft_bf16_round(dq, B * T * H * D); ft_bf16_round(dk, B * T * Hkv * D);
                  ft_bf16_round(dv, B * T * Hkv * D));
}
static ft_status bf_swiglu(ft_backend *be, void *out, const void *gate, const void *up, int64_t n) {
    FT_THEN_ROUND(ft_cpu_swiglu(be, out, gate, up, n), ft_bf16_round(out, n));
}
static ft_status bf_swiglu_bwd(ft_backend *be, void *dgate, void *dup, const void *dout, const void *gate,
                               const void *up, int64_t n) {
    FT_THEN_ROUND(ft_cpu_swiglu_bwd(be, dgate, dup, dout, gate, up, n), ft_bf16_round(dgate, n);
                  ft_bf16_round(dup, n));
}
static ft_status bf_add(ft_backend *be, void *y, const void *x, int64_t n) {
    FT_THEN_ROUND(ft_cpu_add(be, y, x, n), ft_bf16_round(y, n));
}
/* the logits' gradient replaces them in place */
static ft_status bf_xent(ft_backend *be, float *loss_sum, float *count, void *logits, const int32_t *labels,
                         int64_t n, int64_t V, float grad_scale) {
    FT_THEN_ROUND(ft_cpu_xent(be, loss_sum, count, logits, labels, n, V, grad_scale), ft_bf16_round(logits, n * V));
}

/* The rows as CUDA writes them: rounded to BF16 (a copy; rows are f32 parameters, never rounded in
 * place). N is not passed, so rounding x afterwards is not possible; the column ops and rows_sum
 * only copy activations or write f32, so they need nothing. */
static ft_status bf_rows_set(ft_backend *be, void *x, const float *rows, const int32_t *pos, int64_t k, int64_t C) {
    float *r;
    FT_TRY(ft_malloc((void **)&r, (size_t)(k * C) * sizeof(float), "bf16 rows copy"));
    for (int64_t i = 0; i < k * C; i++) r[i] = rows[i];
    ft_bf16_round(r, k * C);
    const ft_status st = ft_cpu_rows_set(be, x, r, pos, k, C);
    ft_free(r);
    return st;
}

/* DoRA: the norm over the weights as the GEMM sees them (BF16), the row scale's output rounded;
 * the magnitude's gradient writes f32 only. */
static ft_status bf_dora_norm(ft_backend *be, float *wn, const ft_weight *W, const float *A, const float *B, int64_t R,
                              float scale) {
    ft_weight v;
    float *buf;
    FT_TRY(bf_weight(W, &v, &buf));
    ft_status st = ft_cpu_dora_norm(be, wn, &v, A, B, R, scale);
    ft_free(buf);
    return st;
}
static ft_status bf_dora_scale(ft_backend *be, void *y, const void *z, const float *mag, const float *wn, float shift,
                               const ft_weight *bias, int64_t N, int64_t out, int acc) {
    FT_THEN_ROUND(ft_cpu_dora_scale(be, y, z, mag, wn, shift, bias, N, out, acc), ft_bf16_round(y, N * out));
}

ft_status ft_backend_cpu_bf16(ft_backend *be) {
    if (ft_backend_kind_of(be) != FT_BACKEND_CPU)
        return FT_ERR(FT_E_ARG, "BF16 storage is a mode of the cpu backend, not of %s", ft_backend_name(be));
    ft_backend_cpu *c = (ft_backend_cpu *)be;
    c->vt_bf16 = *be->vt;
    ft_backend_vtbl *vt = &c->vt_bf16;
    vt->name = "cpu-bf16";
    vt->embed = bf_embed, vt->rmsnorm = bf_rmsnorm, vt->rmsnorm_bwd = bf_rmsnorm_bwd;
    vt->linear = bf_linear, vt->linear_bwd_x = bf_linear_bwd_x;
    vt->lora_fwd = bf_lora_fwd, vt->lora_bwd = bf_lora_bwd, vt->dropout = bf_dropout;
    vt->rope = bf_rope, vt->attention = bf_attention, vt->attention_bwd = bf_attention_bwd;
    vt->swiglu = bf_swiglu, vt->swiglu_bwd = bf_swiglu_bwd, vt->add = bf_add, vt->xent = bf_xent;
    vt->rows_set = bf_rows_set;
    vt->dora_norm = bf_dora_norm, vt->dora_scale = bf_dora_scale;
    be->vt = vt;
    return FT_OK;
}
