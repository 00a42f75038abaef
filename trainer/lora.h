/* lora.h: LoRA adapters over the frozen linear layers of the decoder.
 *
 * For a target module with frozen W[out,in]: y = W x + scale * B (A dropout(x)),
 * A[R,in], B[out,R], scale = alpha/R (alpha/sqrt(R) with rsLoRA). Initialization is PEFT's
 * default: A ~ kaiming_uniform(a=sqrt(5)) = U(-1/sqrt(in), 1/sqrt(in)) from ftune's counter RNG
 * (seeded, reproducible; not torch's stream), B = 0.
 *
 * All adapter parameters live in ONE f32 backend allocation (and their gradients in another of
 * the same layout), so the optimizer state is two more allocations of the same size that a later
 * stage can page. Tensor names follow PEFT: base_model.model.model.layers.L.self_attn.q_proj.lora_A.weight. */
#ifndef FT_LORA_H
#define FT_LORA_H

#include <stdint.h>

#include "kernels/backend.h"
#include "kernels/weight.h"

struct ft_st_tensor; /* trainer/safetensors_read.h */

typedef enum {
    FT_MOD_Q = 0, FT_MOD_K, FT_MOD_V, FT_MOD_O, FT_MOD_GATE, FT_MOD_UP, FT_MOD_DOWN, FT_MOD_COUNT
} ft_module;

#define FT_MOD_ALL ((1u << FT_MOD_COUNT) - 1u)

/* "q_proj", ... "down_proj". */
const char *ft_module_name(ft_module m);
/* HF path of a module inside a layer: "self_attn.q_proj", "mlp.down_proj". */
const char *ft_module_path(ft_module m);
/* Parses "q_proj,k_proj,..." (or "all") into a bitmask. */
ft_status ft_lora_parse_targets(const char *list, unsigned *mask);

typedef struct ft_lora_cfg {
    int64_t r;        /* rank R */
    double alpha;     /* lora_alpha */
    double dropout;   /* lora_dropout, in [0, 1) */
    int rslora;       /* scale = alpha / sqrt(r) */
    unsigned targets; /* bitmask over ft_module */
    uint64_t seed;    /* initialization seed */
    int vlm;          /* the base is a vision-language checkpoint's text model (hf_config.h): PEFT names
                       * under model.language_model. */
    const int32_t *tokens; /* trainable tokens (PEFT's trainable_token_indices): n_tokens distinct ids in
                            * any order, copied by ft_lora_create; NULL/0: none */
    int64_t n_tokens;
    int tied;         /* the model ties lm_head to the embeddings: one set of token rows serves both */
    int dora;         /* DoRA (PEFT use_dora): every targeted module also trains a magnitude per output row */
} ft_lora_cfg;

typedef struct ft_lora_tensor {
    int64_t a_off, b_off;  /* offsets (floats) of A[R,in] and B[out,R] in params/grads */
    int64_t m_off;         /* DoRA: offset of the magnitude [out] in params/grads; -1 without DoRA */
    int64_t wn_off;        /* DoRA: offset of the weight norm [out] in wn; -1 without DoRA */
    int64_t in, out;
} ft_lora_tensor;

/* DoRA (Liu et al. 2024; PEFT's LoraConfig(use_dora=True), peft/tuners/lora/dora.py): a targeted
 * module computes y = (mag / wn) * (x W^T + scale * x A^T B^T) + bias, mag[out] trained (PEFT's
 * lora_magnitude_vector, initialized to wn), wn[o] = ||W[o,:] + scale (B A)[o,:]|| recomputed from
 * the current A, B in every forward pass and treated as a constant (no gradient; DoRA sec. 4.3).
 * The magnitudes sit after the LoRA tensors and the token rows in params/grads (so a DoRA run's A
 * draws the same initial values as plain LoRA's); the norms are not parameters (wn, below). */

/* Trainable tokens: for each id, its embedding row and its lm_head row are trained as whole f32
 * rows that replace the base's (PEFT's TrainableTokensLayer: trainable_tokens_delta holds the rows'
 * values, not a difference, initialized from the base's rows, applied with index_copy). A tied
 * model has one set of rows for both uses, so both gradients add into it. The rows sit after the
 * LoRA tensors in params/grads: the optimizer, clipping and checkpoints cover them unchanged. */
#define FT_LORA_MAX_TOKENS 1024 /* trainable tokens of one adapter (a checkpoint records them) */
typedef struct ft_lora_tokens {
    int64_t k;          /* trainable tokens; 0: none */
    int32_t *ids;       /* host [k], ascending */
    int64_t C;          /* row width: the hidden size */
    int64_t embed_off;  /* offset (floats) of the embedding rows [k,C] in params/grads */
    int64_t head_off;   /* of the lm_head rows [k,C]; embed_off when tied */
} ft_lora_tokens;

typedef struct ft_lora {
    ft_lora_cfg cfg;    /* cfg.tokens points at tok.ids */
    ft_lora_tokens tok;
    float scale;
    int64_t n_layers;
    ft_lora_tensor *t;     /* [n_layers * FT_MOD_COUNT]; in == 0 where not targeted */
    int64_t n_params;      /* floats in params (and grads) */
    float *params;         /* backend f32 [n_params] */
    float *grads;          /* backend f32 [n_params] */
    float *wn;             /* DoRA: backend f32 [n_wn] each module's weight norm (ft_lora_tensor.wn_off), set by
                            * the model's forward passes; NULL without DoRA */
    int64_t n_wn;
    int mag_set;           /* DoRA: the magnitudes hold values (from a file, a checkpoint, or set to the norms by
                            * the model's first pass: ft_model_dora_init); 0 after ft_lora_create */
} ft_lora;

/* Module shapes [out, in] per module for one layer, from the model dims. */
typedef struct ft_lora_shapes { int64_t out[FT_MOD_COUNT], in[FT_MOD_COUNT]; } ft_lora_shapes;

/* Bytes of params (and of grads, and of each optimizer moment) for this config. */
int64_t ft_lora_param_count(const ft_lora_cfg *cfg, const ft_lora_shapes *s, int64_t n_layers);

ft_status ft_lora_create(ft_lora **out, ft_backend *be, const ft_lora_cfg *cfg, const ft_lora_shapes *s,
                         int64_t n_layers);
void ft_lora_free(ft_lora *l, ft_backend *be);
static inline const ft_lora_tensor *ft_lora_get(const ft_lora *l, int64_t layer, ft_module m) {
    const ft_lora_tensor *t = &l->t[layer * FT_MOD_COUNT + m];
    return t->in ? t : NULL;
}
/* PEFT name of a tensor: which = 'A' or 'B'; vlm: under model.language_model. (ft_lora_cfg). */
void ft_lora_tensor_name(char *buf, size_t cap, int64_t layer, ft_module m, char which, int vlm);
/* PEFT name of a DoRA module's magnitude: base_model.model.model.layers.L.self_attn.q_proj.lora_magnitude_vector. */
void ft_lora_mag_name(char *buf, size_t cap, int64_t layer, ft_module m, int vlm);
/* PEFT name of the trainable-token rows of the embedding (head 0) or of lm_head (head 1):
 * base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta. */
void ft_lora_tokens_name(char *buf, size_t cap, int head, int vlm);
/* The trainable-token rows from the base's embedding and lm_head (PEFT's initialization: the
 * base's own rows), into params. embed, lm_head [V,C] (the same weight when tied). */
ft_status ft_lora_init_tokens(ft_lora *l, ft_backend *be, const ft_weight *embed, const ft_weight *lm_head);
ft_status ft_lora_zero_grads(ft_lora *l, ft_backend *be);
/* Loads A/B from a PEFT-named safetensors file (every adapter tensor must be present with its
 * shape; F32/F16/BF16). Trainable-token rows are loaded when the file has them and otherwise keep
 * their values (an init file made without them). DoRA magnitudes likewise, for all of this adapter's
 * modules or none (under PEFT's key or with `.weight` appended; each finite and not 0): with them
 * l->mag_set becomes 1, without them it stays as it was (a fresh adapter's are then set from the
 * weights and the loaded A, B by the model's first pass: ||W + s B A||, where PEFT keeps the ||W|| it
 * set before loading A and B). A file with magnitudes for an adapter without DoRA is refused. */
ft_status ft_lora_load(ft_lora *l, ft_backend *be, const char *path);
/* Writes params (which = 'p') or grads ('g') under PEFT names to a safetensors file. */
ft_status ft_lora_save(const ft_lora *l, ft_backend *be, const char *path, char which);
/* The adapter's tensors over host f32 memory of l's layout ([n_params], e.g. a checkpoint's
 * parameters) as F32 safetensors descriptors under PEFT names, layer by layer in module order: the
 * one mapping from this layout to PEFT keys, shared by ft_lora_save, ft_lora_load and `ftune export
 * CHECKPOINT` (which builds its adapter from them in memory). *out is one malloc'd block holding
 * the names too (free() it once); data points into host; shard is NULL. */
ft_status ft_lora_peft_tensors(const ft_lora *l, const float *host, struct ft_st_tensor **out, int64_t *n);

#endif
