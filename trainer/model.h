/* model.h: the one decoder (Llama 3.x, Mistral, Qwen2/2.5, Qwen3) over kernels/ops.h.
 *
 * The same code runs forward, recomputation and backward on every backend; family differences
 * (q/k/v/o biases, Qwen3 q/k RMSNorm, tied embeddings, head_dim != C/H, GQA ratio, RoPE scaling)
 * are data in ft_model_dims, not code copies.
 *
 * Training keeps only each decoder layer's input (the "boundary", [N,C] per layer) when
 * recompute is on, and recomputes the layer in the backward pass; with recompute off it keeps
 * every layer's working set. Both paths run the same ops in the same order, so on the CPU
 * backend their gradients are bit-identical. The lm_head + cross-entropy runs over chunks of
 * rows so full-sequence logits [N,V] are never materialized. */
#ifndef FT_MODEL_H
#define FT_MODEL_H

#include <stdint.h>

#include "kernels/backend.h"
#include "kernels/rope.h"
#include "kernels/weight.h"
#include "trainer/lora.h"

typedef struct ft_model_dims {
    int64_t C, F, L, H, Hkv, D, V;  /* hidden, intermediate, layers, heads, kv heads, head_dim, vocab */
    float eps;                      /* rms_norm_eps */
    ft_rope_cfg rope;
    int qkv_bias, o_bias, qk_norm, tied;
} ft_model_dims;

/* Frozen weights of one layer ([out,in] for linears; NULL data / rows == 0 when absent). */
typedef struct ft_layer_weights {
    ft_weight attn_norm, ffn_norm;        /* [C] */
    ft_weight lin[FT_MOD_COUNT];          /* q [H*D,C], k,v [Hkv*D,C], o [C,H*D], gate,up [F,C], down [C,F] */
    ft_weight q_bias, k_bias, v_bias, o_bias;
    ft_weight q_norm, k_norm;             /* [D] (Qwen3) */
} ft_layer_weights;

typedef struct ft_model_weights {
    ft_weight embed;                      /* [V,C] */
    ft_weight final_norm;                 /* [C] */
    ft_weight lm_head;                    /* [V,C]; aliases embed when tied */
    ft_layer_weights *layers;             /* [L] */
} ft_model_weights;

typedef struct ft_model ft_model;

/* DoRA's backward (trainer/model.c ft_proj_bwd_dora) needs a module's output before the row scale,
 * z = (y - bias) wn / mag. Where the backward still holds the module's own output y and the module
 * has no bias, z's use there (the magnitude's gradient sum_n dy z / wn = sum_n dy y / mag) needs no
 * second frozen product: gate and up (SwiGLU's inputs), v (the attention's), and q and k before
 * Qwen3's q/k-norm (its input). Elsewhere (q and k rotated in place, o and down added into the
 * residual, or a bias that y - bias would cancel in BF16) z is computed again. */
static inline int ft_dora_output_kept(const ft_model_dims *d, ft_module mod) {
    if (mod == FT_MOD_GATE || mod == FT_MOD_UP) return 1;
    if (d->qkv_bias) return 0;
    return mod == FT_MOD_V || ((mod == FT_MOD_Q || mod == FT_MOD_K) && d->qk_norm);
}

/* One micro-batch on the host: B rows of T tokens. labels < 0 are ignored; pos are the RoPE
 * positions; doc_start (may be NULL) marks packed-example starts (see ft_op_attention). */
typedef struct ft_batch {
    int64_t B, T;
    const int32_t *tokens;    /* [B*T] */
    const int32_t *labels;    /* [B*T] next-token targets, -100 = ignore */
    const int32_t *pos;       /* [B*T] or NULL: 0..T-1 per row */
    const int32_t *doc_start; /* [B*T] or NULL */
} ft_batch;

typedef struct ft_model_opts {
    int recompute;            /* keep only layer boundaries, recompute in backward */
    int64_t logits_chunk;     /* rows of logits materialized at once (0: auto) */
    /* With recompute: keep the layer boundaries in host memory (ft_backend_alloc_host: pinned on
     * CUDA) instead of on the device, for contexts whose L x N x C boundaries do not fit beside the
     * model on a discrete GPU. The device then holds three [N,C] slots: the forward copies each
     * layer's input out while the next layer runs, the backward copies layer l-1's input in while
     * layer l recomputes and runs backward (ft_backend_copy_async), so the copies overlap compute.
     * Results are identical to keeping them on the device. Ignored without recompute. */
    int host_boundaries;
    /* With recompute: keep every layer's attention output [N, H*D] and log-sum-exp [N, H] from the
     * forward instead of recomputing attention in the backward (selective recomputation: the rest
     * of the layer is still recomputed, q, k and v included, which the attention backward reads).
     * One attention forward less per layer and step, for L x N x (H*D*es + H*4) bytes. Results are
     * identical (the attention kernels are deterministic). Ignored without recompute. */
    int keep_attention;
    /* With recompute: the last keep_layers layers (0..L) are not recomputed. Each keeps what its
     * backward reads from the forward (q, k, v, the attention output and lse, x2, gate and up, the
     * norms' rstd; [N, 2C + 2H*D + 2Hkv*D + 2F] and more for Qwen3's q/k norms) except the two
     * RMSNorm outputs and SwiGLU's, which its backward recomputes from x, x2, gate and up: three
     * elementwise passes instead of six GEMMs and an attention forward. The memory the device has
     * left over after the one-layer working set buys back recompute FLOPs layer by layer (`ftune
     * plan` says how many fit). Results are identical. keep_layers = L recomputes no layer, only
     * those three passes. Ignored without recompute. */
    int64_t keep_layers;
    /* With recompute: the MLP (gate, up, SwiGLU, down) of every layer runs over the tokens in slices
     * of mlp_chunk rows (rounded up to a multiple of 4, at least 16; 0 or >= N: one slice), in the forward and in
     * the backward, where a recomputed layer's gate and up products are redone slice by slice instead
     * of in its recompute. The one-layer working set and the backward scratch then hold [mlp_chunk, F]
     * for gate, up and SwiGLU's output and their gradients instead of [N, F]: for a 70B layer (F 28672)
     * 336 of the 522 KiB a token they hold, what bounds the longest context. The same FLOPs (each
     * product runs once over each row, only in smaller pieces); LoRA's gradients then add per slice,
     * so results equal those without to rounding, not bit for bit; the dropout masks are the same
     * (ft_dropout_seed_at). Ignored without recompute. */
    int64_t mlp_chunk;
    /* With recompute, boundaries on the device: keep the input of every boundary_every-th layer only
     * (two-level recomputation). The layers between two kept inputs form a segment; their inputs
     * share boundary_every - 1 slots. Before the backward reaches a segment (but the last, whose
     * inputs the forward left in the slots), it runs the segment's layers forward once more from the
     * kept input to refill the slots: one more forward for (boundary_every - 1) of every
     * boundary_every layers, for ceil(L / boundary_every) + boundary_every boundaries (K = 1: L + 1;
     * K near sqrt(L) makes them fewest: 9 for 80 layers, 18 instead of 81). The forward is the
     * same computation on the same inputs: results are bit-identical. For the longest contexts where
     * host memory cannot take the boundaries (unified memory: a DGX Spark). 0 or 1: every layer's;
     * ignored without recompute and with host_boundaries. */
    int64_t boundary_every;
    /* Sizing only (ft_model_act_bytes_opts, for `ftune plan`): count DoRA's backward scratch (1), and
     * with LoRA dropout its dropped-input scratch too (2). The model itself lays out what its adapter
     * needs (ft_model_set_lora). */
    int dora;
} ft_model_opts;

/* The segment length ft_model_opts.boundary_every takes effect with for L layers: 1 (every layer's
 * input kept) without recompute, with host boundaries, or for 0/1; at most L and FT_MODEL_MAX_SEGMENT. */
#define FT_MODEL_MAX_SEGMENT 64
static inline int64_t ft_model_boundary_every(const ft_model_opts *o, int64_t L) {
    if (!o->recompute || o->host_boundaries || o->boundary_every <= 1) return 1;
    int64_t k = o->boundary_every < L ? o->boundary_every : L;
    return k > FT_MODEL_MAX_SEGMENT ? FT_MODEL_MAX_SEGMENT : k < 1 ? 1 : k;
}

/* Creates a model with allocated (unfilled) weights on `be`. linear_dtype is the storage of the
 * seven frozen linear weights (FT_NF4, or FT_F32/FT_BF16/FT_F16 to keep 16/32-bit);
 * other_dtype that of embeddings, norms, biases and lm_head. */
ft_status ft_model_create(ft_model **out, ft_backend *be, const ft_model_dims *dims, ft_dtype linear_dtype,
                          ft_dtype other_dtype, const ft_model_opts *opts);
/* The same with each linear's own storage, lin_types[layer * FT_MOD_COUNT + module] (a GGUF base
 * keeps each tensor's ggml type, and llama-quantize mixes them); linear_dtype then only sizes the
 * cache of dequantized weights (any type but FT_BF16 asks for one). NULL: linear_dtype for all. */
ft_status ft_model_create_typed(ft_model **out, ft_backend *be, const ft_model_dims *dims, ft_dtype linear_dtype,
                                const ft_dtype *lin_types, ft_dtype other_dtype, const ft_model_opts *opts);
void ft_model_free(ft_model *m);
ft_model_weights *ft_model_get_weights(ft_model *m);
const ft_model_dims *ft_model_get_dims(const ft_model *m);
ft_backend *ft_model_backend(ft_model *m);
/* Attaches LoRA adapters (not owned; NULL detaches). */
void ft_model_set_lora(ft_model *m, ft_lora *lora);
/* Adapter module shapes for this model. */
ft_lora_shapes ft_model_lora_shapes(const ft_model_dims *d);

/* Forward (and, if grad_scale != 0, backward into lora->grads, accumulating) over one
 * micro-batch. Adds the summed token loss to *loss_sum and the number of target tokens to
 * *n_targets. grad_scale multiplies d(sum loss) (use 1/total targets of the optimizer step).
 * dropout_seed seeds this micro-batch's LoRA dropout masks. */
ft_status ft_model_step(ft_model *m, const ft_batch *b, float grad_scale, uint64_t dropout_seed,
                        double *loss_sum, int64_t *n_targets);

/* The same without waiting for the device: the micro-batch's f32 loss sum and target count stay in
 * loss slot `slot` (0 <= slot < FT_MODEL_LOSS_SLOTS) of a small backend array until
 * ft_model_read_losses downloads slots [0, n) as out[2n] = {loss_sum, count} pairs. ft_model_step
 * is this with slot 0, then the read. The training loop gives each micro-batch of a step its own
 * slot and reads them once, at the end of the step. */
#define FT_MODEL_LOSS_SLOTS 64
/* Backend bytes a model holds besides weights and activations: the loss slots. */
int64_t ft_model_fixed_bytes(void);
/* Bytes of the cache of dequantized weights the model asks its backend for (ft_backend_weight_cache):
 * one layer's seven linears in BF16 when they are not BF16 already (0 otherwise), so that the next
 * weights dequantize on a second stream while the current products run, and each recomputed layer's
 * backward reuses what its recompute dequantized. Only the CUDA backend takes it; `ftune plan`
 * counts it from this function. */
int64_t ft_model_weight_cache_bytes(const ft_model_dims *d, ft_dtype linear_dtype);
ft_status ft_model_step_async(ft_model *m, const ft_batch *b, float grad_scale, uint64_t dropout_seed,
                              int64_t slot);
ft_status ft_model_read_losses(ft_model *m, int64_t n, float *out);
/* DoRA: the next pass (one only) keeps the weight norms the previous pass computed instead of
 * computing them again (2 r in out FLOPs a module): for a caller that knows the adapter has not
 * changed since, i.e. ft_train_step's micro-batches after a step's first. A no-op without DoRA. */
void ft_model_reuse_dora_norms(ft_model *m);

/* Inference forward: logits of every position to host memory, logits[B*T*V] (float32). */
ft_status ft_model_logits(ft_model *m, const ft_batch *b, float *logits);
/* Inference forward for the last position of each row: logits[B*V]. */
ft_status ft_model_last_logits(ft_model *m, const ft_batch *b, float *logits);

/* Incremental decoding (greedy or sampled generation): a cache of every layer's keys and values
 * (after RoPE) for one sequence of up to max_tokens, so that each new token runs the layers on
 * itself alone instead of re-running the sequence. One backend allocation of
 * ft_model_kv_bytes(d, max_tokens, act dtype): 2 x L x max_tokens x Hkv x D activations. */
typedef struct ft_kv_cache ft_kv_cache;
int64_t ft_model_kv_bytes(const ft_model_dims *d, int64_t max_tokens, ft_dtype act);
ft_status ft_model_kv_new(ft_model *m, int64_t max_tokens, ft_kv_cache **out);
void ft_model_kv_free(ft_model *m, ft_kv_cache *kv);
/* Tokens in the cache so far. */
int64_t ft_model_kv_len(const ft_kv_cache *kv);
/* Runs tokens[n] at the positions after those already in kv (the first call: the prompt, as one
 * causal row; then usually one token), appends their keys and values, and writes the logits of
 * the last of them to logits[V] (host f32): what ft_model_last_logits gives for the whole sequence,
 * without dropout. FT_E_ARG when the cache has no room for n more. */
ft_status ft_model_decode(ft_model *m, ft_kv_cache *kv, const int32_t *tokens, int64_t n, float *logits);

/* Backend bytes of activations for a micro-batch of B x T (the size function the allocator
 * uses and `ftune plan` reports). */
typedef struct ft_act_bytes {
    int64_t boundaries;    /* (L+1) x N x C layer inputs (host_boundaries: 2 x N x C device slots) */
    int64_t layer_working; /* one layer's forward working set (x L when recompute is off) */
    int64_t backward;      /* backward scratch of one layer (DoRA: and a module's output [N, max(F, H*D, C)]) */
    int64_t logits;        /* one logits chunk and its head scratch (and the loss slots) */
    int64_t attention_kept; /* keep_attention: L x N x (H*D activations + H f32) */
    int64_t lora_kept;     /* recompute with LoRA: L x 7 x N x r, each layer's A-products t */
    int64_t layers_kept;   /* keep_layers x what a kept layer holds (ft_model_opts.keep_layers) */
    int64_t total;         /* backend bytes: the sum of the above (one allocation) */
    int64_t boundaries_host; /* host_boundaries: (L-1) x N x C in host memory (not in total) */
} ft_act_bytes;
ft_act_bytes ft_model_act_bytes(const ft_model_dims *d, int64_t B, int64_t T, int64_t lora_r, int recompute,
                                int64_t logits_chunk, ft_dtype act);
/* The same for any options (recompute, logits_chunk, host_boundaries, keep_attention, keep_layers). */
ft_act_bytes ft_model_act_bytes_opts(const ft_model_dims *d, int64_t B, int64_t T, int64_t lora_r,
                                     const ft_model_opts *o, ft_dtype act);
/* Rows of the MLP's slices for N tokens under o (ft_model_opts.mlp_chunk): N when it is not sliced. */
int64_t ft_model_mlp_rows(const ft_model_opts *o, int64_t N);

#endif
