/* cpu_impl.h: internals of the CPU reference backend, shared by the kernels/cpu sources only.
 *
 * The CPU backend is the ground truth every CUDA kernel is checked against, so it favours clarity
 * and accuracy over speed: activations are F32 (act = float), sums that decide accuracy accumulate
 * in double, and GEMMs go through OpenBLAS sgemm. Every op is deterministic for a fixed thread
 * count: work is split over independent outputs (never atomics), and reductions over many
 * elements use fixed-size chunks combined in a fixed order. */
#ifndef FT_CPU_IMPL_H
#define FT_CPU_IMPL_H

#include <stdint.h>

#include "kernels/backend_impl.h"

typedef struct ft_backend_cpu {
    struct ft_backend base; /* must be first */
    int nthreads;           /* OpenMP threads used by every op (>= 1) */
    ft_backend_vtbl vt_bf16; /* ft_backend_cpu_bf16's op table (bf16_cpu.c), when selected */
} ft_backend_cpu;

static inline int ft_cpu_threads(const ft_backend *be) { return ((const ft_backend_cpu *)be)->nthreads; }
/* The threads for an op of `work` elements: one below FT_CPU_PAR_MIN (1 MiB of f32), where waking a
 * team costs more than the work and its threads, spinning after the region (libgomp's default), take
 * the cores OpenBLAS's threads need. A tiny model's steps are thousands of such ops: the stories260K
 * demo ran at 333 tokens/s on a 16-core GPU machine with all threads (2026-11-24), against ~3,000 on
 * a 2-core development machine. Every parallel loop here splits independent items, so results do not
 * depend on the count. */
enum { FT_CPU_PAR_MIN = 1 << 18 };
static inline int ft_cpu_threads_for(const ft_backend *be, int64_t work) {
    return work < FT_CPU_PAR_MIN ? 1 : ft_cpu_threads(be);
}

/* Elements [start, start + count) of a weight of any dtype (NF4 and ggml blocks dequantized) as f32 in
 * dst[count]; for a ggml block weight start and count are whole blocks (whole rows, as the ops ask). */
void ft_cpu_weight_f32(const ft_weight *w, int64_t start, int64_t count, float *dst);
/* A whole 1-D weight (norm weight, bias) as a malloc'd f32 copy (ft_free it). */
ft_status ft_cpu_weight_vec(const ft_weight *w, float **out);

/* ---- ops (signatures of ft_op_* in kernels/ops.h) ---------------------------------------- */
ft_status ft_cpu_embed(ft_backend *be, void *out, const int32_t *ids, const ft_weight *table, int64_t N);
ft_status ft_cpu_rmsnorm(ft_backend *be, void *out, float *rstd, const void *x, const ft_weight *w, int64_t N,
                         int64_t C, float eps);
ft_status ft_cpu_rmsnorm_bwd(ft_backend *be, void *dx, const void *dout, const void *x, const ft_weight *w,
                             const float *rstd, int64_t N, int64_t C, int accumulate);
ft_status ft_cpu_linear(ft_backend *be, void *y, const void *x, const ft_weight *W, const ft_weight *bias,
                        int64_t N, int accumulate);
ft_status ft_cpu_linear_bwd_x(ft_backend *be, void *dx, const void *dy, const ft_weight *W, int64_t N,
                              int accumulate);
ft_status ft_cpu_lora_fwd(ft_backend *be, void *y, void *t, const void *x, ft_lora_drop drop, const float *A,
                          const float *B, int64_t N, int64_t in, int64_t out, int64_t R, float scale,
                          int accumulate);
ft_status ft_cpu_lora_bwd(ft_backend *be, void *dx, float *dA, float *dB, const void *dy, const void *x,
                          ft_lora_drop drop, const void *t, const float *A, const float *B, int64_t N, int64_t in,
                          int64_t out, int64_t R, float scale, int accumulate);
ft_status ft_cpu_dropout(ft_backend *be, void *out, const void *in, int64_t n, float p, uint64_t seed);
ft_status ft_cpu_rope(ft_backend *be, void *x, const int32_t *pos, const float *inv_freq, int64_t N, int64_t nh,
                      int64_t D, int inverse);
ft_status ft_cpu_attention(ft_backend *be, void *out, float *lse, const void *q, const void *k, const void *v,
                           const int32_t *doc_start, int64_t ndocs, int64_t B, int64_t T, int64_t H, int64_t Hkv, int64_t D,
                           float scale);
ft_status ft_cpu_attention_kv(ft_backend *be, void *out, const void *q, const void *k, const void *v, int64_t Tq,
                              int64_t Tk, int64_t H, int64_t Hkv, int64_t D, float scale);
ft_status ft_cpu_attention_bwd(ft_backend *be, void *dq, void *dk, void *dv, const void *dout, const void *q,
                               const void *k, const void *v, const void *out, const float *lse,
                               const int32_t *doc_start, int64_t ndocs, int64_t B, int64_t T, int64_t H, int64_t Hkv,
                               int64_t D, float scale);
ft_status ft_cpu_swiglu(ft_backend *be, void *out, const void *gate, const void *up, int64_t n);
ft_status ft_cpu_swiglu_bwd(ft_backend *be, void *dgate, void *dup, const void *dout, const void *gate,
                            const void *up, int64_t n);
ft_status ft_cpu_add(ft_backend *be, void *y, const void *x, int64_t n);
ft_status ft_cpu_xent(ft_backend *be, float *loss_sum, float *count, void *logits, const int32_t *labels,
                      int64_t n, int64_t V, float grad_scale);
ft_status ft_cpu_sumsq(ft_backend *be, float *out, const float *x, int64_t n);
ft_status ft_cpu_scale(ft_backend *be, float *x, int64_t n, float s);
ft_status ft_cpu_adamw(ft_backend *be, float *p, const float *g, float *m, float *v, int64_t n,
                       const float *scalars);
ft_status ft_cpu_clip_factor(ft_backend *be, float *scalars, const float *sumsq, double max_norm);
ft_status ft_cpu_rows_set(ft_backend *be, void *x, const float *rows, const int32_t *pos, int64_t k, int64_t C);
ft_status ft_cpu_rows_sum(ft_backend *be, float *drows, const void *dx, const int32_t *pos, int64_t k, int64_t C);
ft_status ft_cpu_cols_set(ft_backend *be, void *logits, const void *t, const int32_t *cols, int64_t n, int64_t V,
                          int64_t k);
ft_status ft_cpu_cols_take(ft_backend *be, void *g, void *logits, const int32_t *cols, int64_t n, int64_t V,
                           int64_t k);
ft_status ft_cpu_dora_norm(ft_backend *be, float *wn, const ft_weight *W, const float *A, const float *B, int64_t R,
                           float scale);
ft_status ft_cpu_dora_scale(ft_backend *be, void *y, const void *z, const float *mag, const float *wn, float shift,
                            const ft_weight *bias, int64_t N, int64_t out, int accumulate);
ft_status ft_cpu_dora_mag_grad(ft_backend *be, float *dmag, const void *dy, const void *z, const float *wn,
                               int64_t N, int64_t out);
ft_status ft_cpu_nf4_quantize(ft_backend *be, ft_weight *w, const void *src, ft_dtype src_dtype);
ft_status ft_cpu_nf4_dequantize(ft_backend *be, void *out, const ft_weight *w);

#endif
