/* model_impl.h: the model's structures, shared by model.c (the passes) and model_acts.c (the
 * activation memory: its sizes and its layout); not for other modules. */
#ifndef FT_MODEL_IMPL_H
#define FT_MODEL_IMPL_H

#include "kernels/ops.h"
#include "trainer/model.h"

/* One layer's forward working set; pointers into the activation block. */
typedef struct ft_layer_acts {
    void *a;                 /* [N,C] attention-norm output */
    float *rstd1;            /* [N] */
    void *q_pre, *k_pre;     /* [N,H*D], [N,Hkv*D] projections before q/k-norm (Qwen3 only) */
    void *q, *k, *v;         /* [N,H*D], [N,Hkv*D], [N,Hkv*D] attention inputs (after RoPE) */
    float *rstd_q, *rstd_k;  /* [N*H], [N*Hkv] (Qwen3 only) */
    void *att;               /* [N,H*D] */
    float *lse;              /* [N,H] */
    void *x2;                /* [N,C] */
    void *f;                 /* [N,C] */
    float *rstd2;            /* [N] */
    void *g, *u, *s;         /* [N,F]; [mlp rows,F] in the set recomputed layers share (ft_model_mlp_rows) */
    void *t[FT_MOD_COUNT];   /* [N,R] LoRA A-products (targeted modules only) */
} ft_layer_acts;

/* Backward scratch of one layer. */
typedef struct ft_bwd_scratch {
    void *ds, *dg, *du;      /* [mlp rows,F] (ft_model_mlp_rows) */
    void *df, *da;           /* [N,C] */
    void *datt, *dq, *dqp;   /* [N,H*D] */
    void *dk, *dkp, *dv;     /* [N,Hkv*D] */
    void *dz;                /* DoRA: [N, max(F, H*D, C)] a module's unscaled output, then its gradient */
    void *xd;                /* DoRA with LoRA dropout: [N, max(F, H*D, C)] a module's dropped input, then the
                              * masked gradient of its second frozen product (model_dora.c) */
} ft_bwd_scratch;

struct ft_model {
    ft_backend *be;
    ft_model_dims d;
    ft_model_opts opts;
    ft_dtype act;
    int64_t es;              /* bytes per activation element */
    ft_model_weights w;
    ft_lora *lora;
    float *inv_freq;         /* backend f32 [D/2] */

    /* activation block: layout depends on N = B*T only */
    void *block;
    int64_t capN, cap_recompute, cap_host, cap_keep, cap_r, cap_kl, cap_dora; /* sized for capN tokens,
                                                              * recompute mode, host boundaries, kept attention,
                                                              * LoRA rank, kept layers, DoRA */
    void **bound;            /* [L+1] boundaries [N,C] (host boundaries: unused) */
    void **katt;             /* keep_attention: [L] attention outputs [N,H*D] */
    float **klse;            /* keep_attention: [L] log-sum-exp [N,H] */
    void **kt;               /* recompute with LoRA: [L * FT_MOD_COUNT] each layer's A-products t [N,R], kept
                              * from the forward so the recompute neither redraws dropout nor re-reads inputs */
    void *slot[2];           /* host boundaries: device slots [N,C] (l % 2) */
    char *hbound;            /* host boundaries: [L-1][N,C] in ft_backend_alloc_host memory */
    ft_layer_acts *acts;     /* [L] without recompute; with it [0] the recompute's, [1 + i] kept layer L - kl + i */
    ft_bwd_scratch bs;
    void *hn, *dhn;          /* [N,C] final-norm output and its gradient */
    float *rstdn;            /* [N] */
    void *dres;              /* [N,C] the residual stream's gradient, updated in place layer by layer */
    void *logits;            /* [chunk,V] */
    int32_t *tokens, *labels, *pos, *doc_start; /* [N] */
    const int32_t *attn_docs; /* doc_start when the batch packs documents in a row, else NULL: plain
                               * causal attention, which a backend may serve faster (cuDNN's) */
    int64_t ndocs;            /* the batch's documents (ft_attn_doc_count), for attn_docs */
    /* the adapter's trainable tokens (model_tokens.c), when it has some */
    int tt_ready;            /* tt_cols, tt_eye, tt_db made for m->lora */
    void *tt_pos;            /* i32 [k+1+M] CSR: the batch's M rows that hold each trainable token (ops.h) */
    int64_t tt_pos_cap, tt_m;/* ints tt_pos holds room for; M */
    int32_t *tt_cols;        /* i32 [k] the ids: lm_head's columns */
    float *tt_eye, *tt_db;   /* f32 [k,k] the head product's B (identity) and its discarded gradient */
    void *tt_t, *tt_g;       /* [chunk,k] act: the rows' logits, then their gradient */
    int64_t tt_tcap, tt_gcap;/* elements tt_t, tt_g hold room for */
    int dora_reuse;          /* the next pass keeps DoRA's weight norms (ft_model_reuse_dora_norms) */
    float *scalars;          /* [FT_MODEL_LOSS_SLOTS][2] loss sum, target count per micro-batch: its own
                              * allocation, so a re-carved activation block keeps a step's losses */
};

/* One pass over the layers (trainer/model.c), and the KV cache incremental decoding extends. */
typedef struct ft_pass {
    ft_model *m;
    int64_t B, T, N;
    uint64_t seed;     /* dropout seed of this micro-batch */
    int train;         /* LoRA dropout is drawn only in training passes, never at inference */
    int next_layer;    /* layers run in increasing order (not the recompute): prefetch across them */
    int t_kept;        /* the recompute: each LoRA module's t is the forward's, kept (m->kt) */
    int norms_kept;    /* DoRA: the weight norms are the previous pass's (ft_model_reuse_dora_norms) */
    int64_t row0;      /* a slice of the MLP's rows (ft_model_opts.mlp_chunk): the rows before it, for
                        * the dropout masks (ft_lora_drop_of) */
    int partial;       /* a slice before the last: the backward leaves the weight cache alone
                        * (ft_bwd_next) until the last slice has read the weights */
    int64_t pass_N;    /* a slice: the rows of the whole pass (whether its products prefetch, ft_proj) */
    ft_kv_cache *kv;   /* incremental decoding: the sequence's earlier keys and values (inference only) */
} ft_pass;

struct ft_kv_cache {
    int64_t cap, len; /* tokens it holds room for, tokens in it */
    char *mem;        /* [L][2][cap, Hkv*D] activations: layer l's keys, then its values */
};

/* The projections' shared helpers (model.c): module mod's bias or NULL; the dropout of its LoRA input. */
const ft_weight *ft_bias_of(const ft_layer_weights *lw, int mod);
ft_lora_drop ft_lora_drop_of(const ft_pass *p, int64_t l, int mod);

/* DoRA (model_dora.c; each only for a DoRA adapter's targeted module): ft_proj_dora is ft_proj's
 * forward of module mod into y (=, or += with accumulate) from x; ft_proj_bwd_dora its backward,
 * dx (=, or +=) from dy, with y the module's own output where the backward holds it
 * (model.h ft_dora_output_kept) or NULL; ft_dora_init sets a fresh adapter's magnitudes to the norms
 * before its first pass (lora.h mag_set). */
ft_status ft_proj_dora(const ft_pass *p, int64_t l, int mod, ft_layer_acts *la, void *y, const void *x, int accumulate);
ft_status ft_proj_bwd_dora(const ft_pass *p, int64_t l, int mod, ft_layer_acts *la, void *dx, const void *dy,
                           const void *x, const void *y, int accumulate);
ft_status ft_dora_init(ft_model *m);

/* Rows of logits materialized at once for N tokens (chunk <= 0: about 64 Mi elements). */
int64_t ft_model_logits_chunk(const ft_model_dims *d, int64_t N, int64_t chunk);
/* Lays out the activation block for micro-batches of B x T under m->opts (a no-op when the current
 * one already serves them); ft_model_unreserve frees it. */
ft_status ft_model_reserve(ft_model *m, int64_t B, int64_t T);
void ft_model_unreserve(ft_model *m);

/* Trainable tokens (model_tokens.c; each a no-op without them). ft_tt_batch: which rows of the
 * batch's N tokens hold one, uploaded. ft_tt_embed: their rows over the embedding output x[N,C];
 * ft_tt_embed_bwd: its gradient dx[N,C] into the rows'. ft_tt_head: their logits over m->logits'
 * columns for h[n,C]; after the cross-entropy, ft_tt_head_take takes their gradient out of the
 * logits (zeroing it there) before the frozen lm_head's backward, and ft_tt_head_bwd adds the rows'
 * part of dh and accumulates their gradient. ft_tt_release frees the device state. */
ft_status ft_tt_batch(ft_model *m, const int32_t *tokens, int64_t N);
ft_status ft_tt_embed(ft_model *m, void *x);
ft_status ft_tt_embed_bwd(ft_model *m, const void *dx);
ft_status ft_tt_head(ft_model *m, const void *h, int64_t n);
ft_status ft_tt_head_take(ft_model *m, int64_t n);
ft_status ft_tt_head_bwd(ft_model *m, void *dh, const void *h, int64_t n);
void ft_tt_release(ft_model *m);

#endif
