/* ops.h: the op interface. The one decoder (trainer/model.c), the optimizer (optim/) and the
 * loader call only these; each backend (kernels/cpu, kernels/cuda) implements all of them.
 *
 * Conventions
 * - Letters: N tokens in a micro-batch (N = B*T, row-major token-major), C hidden size,
 *   H query heads, Hkv key/value heads, D head_dim, F intermediate size, V vocabulary, R LoRA rank.
 * - "act" = backend memory in the backend's activation dtype (ft_backend_act_dtype: F32 on CPU,
 *   BF16 on CUDA). "f32" = backend memory in float32. "i32" = backend memory int32.
 * - Backward ops write the input gradient (overwrite) unless the parameter is named `accumulate`;
 *   LoRA weight gradients always accumulate (+=), so micro-batches add up.
 * - Ops may use backend-internal scratch; they never keep pointers across calls.
 * - Every op returns FT_OK or a status with a message (bad shapes are FT_E_INTERNAL: the caller's
 *   invariants, not user input). */
#ifndef FT_OPS_H
#define FT_OPS_H

#include <stdint.h>

#include "kernels/backend.h"
#include "kernels/weight.h"

/* ---- embedding --------------------------------------------------------------------------- */
/* out[N,C] (act) = table[ids[n], :]; ids i32 [N]; table [V,C]. */
ft_status ft_op_embed(ft_backend *be, void *out, const int32_t *ids, const ft_weight *table, int64_t N);

/* ---- RMSNorm ----------------------------------------------------------------------------- */
/* out[N,C] = x * rsqrt(mean(x^2) + eps) * w; rstd[N] (f32, may be NULL) saves the rsqrt for
 * the backward. Math in f32 (as transformers: normalize in f32, then multiply by the weight). */
ft_status ft_op_rmsnorm(ft_backend *be, void *out, float *rstd, const void *x, const ft_weight *w,
                        int64_t N, int64_t C, float eps);
/* dx[N,C] (=, or += if accumulate) from dout[N,C], the forward input x and rstd. Weight is frozen:
 * no dw. accumulate adds the norm's input gradient to the residual gradient already in dx, one
 * rounding and no separate add pass (the model's residual stream). */
ft_status ft_op_rmsnorm_bwd(ft_backend *be, void *dx, const void *dout, const void *x,
                            const ft_weight *w, const float *rstd, int64_t N, int64_t C, int accumulate);

/* ---- frozen linear (F32/F16/BF16/NF4 weight) ---------------------------------------------- */
/* y[N,out] (=, or += if accumulate) x[N,in] . W[out,in]^T (+ bias[out] if bias != NULL). */
ft_status ft_op_linear(ft_backend *be, void *y, const void *x, const ft_weight *W, const ft_weight *bias,
                       int64_t N, int accumulate);
/* dx[N,in] (=, or += if accumulate) dy[N,out] . W[out,in]. No weight or bias gradient. */
ft_status ft_op_linear_bwd_x(ft_backend *be, void *dx, const void *dy, const ft_weight *W, int64_t N,
                             int accumulate);

/* ---- LoRA (trainable, f32 master weights) -------------------------------------------------- */
/* The dropout on a LoRA product's input (PEFT's lora_dropout): xd = dropout(x) is
 * ft_op_dropout(x, p, seed) over the [N, in] input as one flat array; p 0: none. The ops apply the
 * mask themselves, so a backend can draw it inside its products instead of writing xd (and the
 * masked input gradient) out and reading it back. */
typedef struct ft_lora_drop {
    float p;
    uint64_t seed;
} ft_lora_drop;

/* t[N,R] (act) = xd[N,in] . A[R,in]^T, xd = dropout(x);
 * y[N,out] (=, or += if accumulate) scale * t . B[out,R]^T.
 * The model writes the LoRA product first and lets the frozen linear accumulate on top, where
 * reading y costs its compute-bound GEMM next to nothing. y NULL: only t, for a module whose output
 * is not used. x NULL: t is given (the forward's, kept for the recompute), only y's product runs. */
ft_status ft_op_lora_fwd(ft_backend *be, void *y, void *t, const void *x, ft_lora_drop drop, const float *A,
                         const float *B, int64_t N, int64_t in, int64_t out, int64_t R, float scale, int accumulate);
/* Given dy[N,out], the forward input x[N,in] (xd = dropout(x), the same mask) and t[N,R]:
 *   dB[out,R] += scale * dy^T . t;   dt = scale * dy . B;   dA[R,in] += dt^T . xd;
 *   dx[N,in] (=, or += if accumulate) mask / (1 - p) * (dt . A), the gradient through the dropout.
 * dA and dB always accumulate. */
ft_status ft_op_lora_bwd(ft_backend *be, void *dx, float *dA, float *dB, const void *dy, const void *x,
                         ft_lora_drop drop, const void *t, const float *A, const float *B, int64_t N, int64_t in,
                         int64_t out, int64_t R, float scale, int accumulate);

/* out[n] = in[n] * keep(seed, i) / (1 - p), keep(seed, i) a counter-based Bernoulli(1-p) draw
 * (ft_dropout_keep in kernels/rng.h), so a recomputation or another backend draws the same mask.
 * out may alias in. p == 0 copies. The mask the LoRA ops apply; the model calls it (and `add`) for
 * DoRA with dropout, whose second frozen product needs the dropped input itself (model_dora.c). */
ft_status ft_op_dropout(ft_backend *be, void *out, const void *in, int64_t n, float p, uint64_t seed);

/* ---- rotary embedding ------------------------------------------------------------------- */
/* In place on x[N, nh, D] (nh heads of D), rotating pairs (i, i + D/2) (Hugging Face layout) by
 * angle pos[n] * inv_freq[i] (inv_freq f32 [D/2], see kernels/rope.h). inverse != 0 rotates by
 * the negative angle, which is the backward of the forward rotation. */
ft_status ft_op_rope(ft_backend *be, void *x, const int32_t *pos, const float *inv_freq, int64_t N,
                     int64_t nh, int64_t D, int inverse);

/* ---- causal GQA attention ------------------------------------------------------------------ */
/* q[N,H*D], k[N,Hkv*D], v[N,Hkv*D], out[N,H*D] (act), N = B*T. Query head h uses kv head
 * h / (H/Hkv). Query token i of row b attends to keys j of the same row with
 * doc_start[i] <= j <= i (doc_start i32 [N]: the position within the row where i's packed
 * example begins; NULL means 0, plain causal). ndocs: how many documents doc_start holds
 * (ft_attn_doc_count of its host copy), or 0 when not known; a backend that runs each document as
 * its own sequence sizes its launch by it (CUDA under FT_CUDA_ATTN=cudnn), the others ignore it.
 * lse[N,H] (f32) saves log-sum-exp of the scaled scores for the backward. scale is usually
 * 1/sqrt(D). */
ft_status ft_op_attention(ft_backend *be, void *out, float *lse, const void *q, const void *k, const void *v,
                          const int32_t *doc_start, int64_t ndocs, int64_t B, int64_t T, int64_t H, int64_t Hkv,
                          int64_t D, float scale);
/* dq, dk, dv (overwrite) from dout and the forward's q, k, v, out, lse. */
ft_status ft_op_attention_bwd(ft_backend *be, void *dq, void *dk, void *dv, const void *dout, const void *q,
                              const void *k, const void *v, const void *out, const float *lse,
                              const int32_t *doc_start, int64_t ndocs, int64_t B, int64_t T, int64_t H,
                              int64_t Hkv, int64_t D, float scale);
/* Attention of Tq new queries of one sequence against its cached keys and values (incremental
 * decoding): q[Tq, H*D], k and v [Tk, Hkv*D] (the whole sequence so far, the new tokens' keys
 * last), out[Tq, H*D] (act); query i sits at position Tk - Tq + i and attends to keys 0..Tk-Tq+i.
 * Causal attention of a row is this with Tq = Tk. No lse, no backward: inference only. */
ft_status ft_op_attention_kv(ft_backend *be, void *out, const void *q, const void *k, const void *v, int64_t Tq,
                             int64_t Tk, int64_t H, int64_t Hkv, int64_t D, float scale);
/* The documents of a host doc_start[B*T]: token t of a row starts one when t == 0 or
 * doc_start[t] == t. */
int64_t ft_attn_doc_count(const int32_t *doc_start, int64_t B, int64_t T);

/* ---- SwiGLU ------------------------------------------------------------------------------- */
/* out[n] = silu(gate[n]) * up[n]. */
ft_status ft_op_swiglu(ft_backend *be, void *out, const void *gate, const void *up, int64_t n);
/* dgate, dup (overwrite) from dout and the forward inputs. */
ft_status ft_op_swiglu_bwd(ft_backend *be, void *dgate, void *dup, const void *dout, const void *gate,
                           const void *up, int64_t n);

/* ---- elementwise ---------------------------------------------------------------------------- */
/* y[n] += x[n] (act). */
ft_status ft_op_add(ft_backend *be, void *y, const void *x, int64_t n);

/* ---- cross-entropy ------------------------------------------------------------------------ */
/* logits[n,V] (act) with labels i32 [n] (label < 0: ignored). Adds the summed loss over the
 * non-ignored rows to *loss_sum (f32 scalar, backend memory) and the count of those rows to
 * *count (f32 scalar, may be NULL). If grad_scale != 0, overwrites logits with
 * grad_scale * d(loss)/d(logits) (softmax - onehot; zero rows for ignored labels); else leaves
 * logits untouched. Chunking over the sequence is the caller's (bounded logits buffer). */
ft_status ft_op_xent(ft_backend *be, float *loss_sum, float *count, void *logits, const int32_t *labels,
                     int64_t n, int64_t V, float grad_scale);

/* ---- trainable token rows (PEFT trainable_token_indices) ------------------------------------ */
/* pos: backend i32 [k + 1 + M], CSR form: pos[0..k] are offsets (pos[0] = 0, pos[k] = M) into the
 * M row indices that follow; token j's rows of x are pos[k+1+pos[j]] .. pos[k+1+pos[j+1]-1], each
 * in 0..N-1, and each row appears in at most one list. */
/* x[p, :] = rows[j, :] (f32 -> act, round to nearest even on BF16) for every row p of every token j.
 * x [N,C] act; rows f32 [k,C]. Other rows untouched. */
ft_status ft_op_rows_set(ft_backend *be, void *x, const float *rows, const int32_t *pos, int64_t k, int64_t C);
/* drows[j, :] += sum over token j's rows p, in list order, of dx[p, :] (act, summed in f32).
 * drows f32 [k,C], dx [N,C] act. Deterministic (no atomics): the same inputs give the same bits. */
ft_status ft_op_rows_sum(ft_backend *be, float *drows, const void *dx, const int32_t *pos, int64_t k, int64_t C);
/* logits[i, cols[j]] = t[i, j] for i < n, j < k. logits [n,V] act; t [n,k] act (row stride k);
 * cols backend i32 [k], distinct, each in 0..V-1. */
ft_status ft_op_cols_set(ft_backend *be, void *logits, const void *t, const int32_t *cols, int64_t n, int64_t V,
                         int64_t k);
/* g[i, j] = logits[i, cols[j]], then logits[i, cols[j]] = 0, for i < n, j < k. g [n,k] act. */
ft_status ft_op_cols_take(ft_backend *be, void *g, void *logits, const int32_t *cols, int64_t n, int64_t V,
                          int64_t k);
/* k == 0, M == 0 or n == 0: nothing to do, FT_OK. rows_sum's sum is, per element, s = 0; s += dx[p, c]
 * for p in list order; drows[j, c] += s, on every backend (so CUDA and CPU agree bit for bit on the
 * same inputs). Indices are the caller's invariants (N is not passed, so a row past N goes unchecked):
 * the CPU backend checks the offsets, the rows' signs and the columns' range (FT_E_INTERNAL); CUDA
 * skips a negative row or an out-of-range column and the next ft_backend_sync fails (FT_E_INTERNAL). */

/* ---- DoRA (PEFT use_dora): weight-decomposed LoRA ------------------------------------------ */
/* A DoRA module with frozen W[out,in] (bias b), LoRA A[R,in], B[out,R], scale s and a trained
 * magnitude mag[out] computes
 *   y = (mag / wn) * (x W^T + s (x A^T) B^T) + b,   wn[o] = || W[o,:] + s (B A)[o,:] ||_2,
 * wn a constant of the step (no gradient flows through it: PEFT detaches it, DoRA paper sec. 4.3).
 * The model builds it from these three ops around the LoRA and linear ones. */
/* wn[o] (f32 [W->rows], overwrite) = sqrt(sum_i (W[o,i] + scale * sum_r B[o,r] A[r,i])^2), sums in
 * f32 (or wider), W's values as the backend's ft_op_linear multiplies with them (any weight type
 * it takes; CUDA: the BF16 of the decode, the GEMM's operand). A f32 [R, W->cols], B f32 [W->rows, R]. */
ft_status ft_op_dora_norm(ft_backend *be, float *wn, const ft_weight *W, const float *A, const float *B, int64_t R,
                          float scale);
/* y[n,o] (=, or += if accumulate) z[n,o] * (mag[o] / wn[o] - shift) + (bias ? bias[o] : 0), in f32,
 * rounded once. y, z act [N,out]; y may alias z (not with accumulate). mag, wn f32 [out]; bias a frozen
 * weight of out elements (F32/F16/BF16, as ft_op_linear's) or NULL. shift 1: PEFT's (m / wn - 1) x W^T,
 * the term of DoRA with dropout (model_dora.c); 0 otherwise. */
ft_status ft_op_dora_scale(ft_backend *be, void *y, const void *z, const float *mag, const float *wn, float shift,
                           const ft_weight *bias, int64_t N, int64_t out, int accumulate);
/* dmag[o] += (sum_n dy[n,o] * z[n,o]) / wn[o]; dy, z act [N,out]; dmag, wn f32 [out]. The sum over n
 * in f32, in an order fixed by (N, out) alone: the same inputs give the same bits (no atomics
 * across blocks whose order varies). */
ft_status ft_op_dora_mag_grad(ft_backend *be, float *dmag, const void *dy, const void *z, const float *wn, int64_t N,
                              int64_t out);

/* ---- f32 vector ops for gradients and the optimizer ----------------------------------------- */
/* *out += sum(x[i]^2) (out f32 scalar, backend memory). */
ft_status ft_op_sumsq(ft_backend *be, float *out, const float *x, int64_t n);
/* x[n] *= s. */
ft_status ft_op_scale(ft_backend *be, float *x, int64_t n, float s);

/* AdamW scalars, in this order, in an f32 array in backend memory, so a step reads them from
 * device memory (CUDA-graph friendly). */
enum {
    FT_ADAMW_LR = 0,     /* learning rate of this step */
    FT_ADAMW_BETA1,
    FT_ADAMW_BETA2,
    FT_ADAMW_EPS,
    FT_ADAMW_WD,         /* decoupled weight decay */
    FT_ADAMW_BC1,        /* 1 - beta1^t */
    FT_ADAMW_BC2,        /* 1 - beta2^t */
    FT_ADAMW_GSCALE,     /* gradient multiplier (clipping factor) */
    FT_ADAMW_NSCALARS
};
/* torch.optim.AdamW semantics: p *= 1 - lr*wd; g' = g*gscale; m = b1 m + (1-b1) g';
 * v = b2 v + (1-b2) g'^2; p -= lr * (m/bc1) / (sqrt(v/bc2) + eps). */
ft_status ft_op_adamw(ft_backend *be, float *p, const float *g, float *m, float *v, int64_t n,
                      const float *scalars);
/* scalars[FT_ADAMW_GSCALE] = torch clip_grad_norm_'s factor min(1, max_norm / (norm + 1e-6)),
 * norm = sqrt(*sumsq) (sumsq: the f32 sum of squared gradients ft_op_sumsq left in backend
 * memory), all in double and rounded to f32 once; 1 when max_norm <= 0 or the factor is not
 * below 1 (a NaN norm gives 1). Computing it where the norm is lets a step clip without reading
 * the norm on the host. */
ft_status ft_op_clip_factor(ft_backend *be, float *scalars, const float *sumsq, double max_norm);

/* ---- NF4 ---------------------------------------------------------------------------------- */
/* Quantizes src (backend memory, n = rows*cols elements of src_dtype F32/F16/BF16) into the
 * already-allocated NF4 weight w, bit-exact with bitsandbytes quantize_4bit(nf4, blocksize 64,
 * compress_statistics=True). */
ft_status ft_op_nf4_quantize(ft_backend *be, ft_weight *w, const void *src, ft_dtype src_dtype);
/* out[rows*cols] (act) = dequantized w. */
ft_status ft_op_nf4_dequantize(ft_backend *be, void *out, const ft_weight *w);

#endif
