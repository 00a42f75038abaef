/* hf_config.h: an HF config.json (Llama, Mistral, Qwen2, Qwen3) as a validated struct, plus the
 * shape and parameter-count functions that `ftune plan`, the loader and export share.
 *
 * Contract: ft_cfg_load accepts transformers v4 files (`rope_theta` + `rope_scaling`) and v5
 * files (`rope_parameters` with rope_theta inside), `rope_type` or its legacy alias `type`,
 * bos/eos ids as an int or a list, `torch_dtype` or v5 `dtype`. Every failure is one message
 * naming the file and the key: FT_E_FORMAT for a missing required key, a wrong JSON type
 * ("hidden_size must be an integer"), a non-positive or inconsistent dimension; FT_E_UNSUPPORTED
 * for valid configs ftune does not train (unknown architectures[0], hidden_act other than silu,
 * mlp_bias, yarn/dynamic/longrope rope scaling, partial rotary, Qwen sliding-window layers).
 * Family defaults and tensor tables come from trainer/arch.h. */
#ifndef FT_HF_CONFIG_H
#define FT_HF_CONFIG_H

#include <stdint.h>

#include "kernels/rope.h"
#include "kernels/status.h"
#include "trainer/arch.h"

enum { FT_CFG_MAX_TOKEN_IDS = 16 };

typedef struct ft_model_config {
    ft_arch arch;
    char architecture[96];           /* architectures[0], e.g. "LlamaForCausalLM" */
    char model_type[32];             /* "" when absent */
    int64_t hidden_size;             /* C */
    int64_t intermediate_size;       /* F */
    int64_t num_hidden_layers;       /* L */
    int64_t num_attention_heads;     /* H */
    int64_t num_key_value_heads;     /* Hkv (H % Hkv == 0) */
    int64_t head_dim;                /* D: explicit, else C / H; even */
    int64_t vocab_size;              /* V */
    int64_t max_position_embeddings;
    double rms_norm_eps;
    ft_rope_cfg rope;                /* type, theta, dim = D, and the scaling fields of its type */
    int tie_word_embeddings;         /* lm_head shares embed_tokens (no lm_head.weight) */
    int qkv_bias;                    /* q_proj, k_proj, v_proj have biases */
    int o_bias;                      /* o_proj has a bias */
    int qk_norm;                     /* q_norm / k_norm per head (Qwen3) */
    int64_t sliding_window;          /* Mistral's window; 0 = none (full causal attention) */
    int n_bos, n_eos;                /* 0 when absent/null */
    int64_t bos_token_id[FT_CFG_MAX_TOKEN_IDS];
    int64_t eos_token_id[FT_CFG_MAX_TOKEN_IDS];
    char torch_dtype[24];            /* "bfloat16" ("" when absent) */
    int vlm;                         /* the text model of a vision-language checkpoint (Mistral3ForConditionalGeneration):
                                      * weights under language_model., PEFT modules under model.language_model. */
} ft_model_config;

/* Parameter counts (elements) of one model, from its config and the tensor table. */
typedef struct ft_param_counts {
    int64_t embedding;                /* V*C */
    int64_t linear[FT_LIN_COUNT];     /* per layer, weight of each linear module: [out*in] */
    int64_t linear_per_layer;         /* sum of linear[] */
    int64_t bias_per_layer;           /* q, k, v (and o) biases */
    int64_t norm_per_layer;           /* input + post-attention norms (+ q_norm, k_norm) */
    int64_t per_layer;                /* linear + bias + norm */
    int64_t layers;                   /* L * per_layer */
    int64_t final_norm;               /* C */
    int64_t lm_head;                  /* V*C; 0 when tied */
    int64_t total;                    /* embedding + layers + final_norm + lm_head */
} ft_param_counts;

/* Reads `path` (a config.json, or a directory holding one). */
ft_status ft_cfg_load(ft_model_config *cfg, const char *path);
/* Parses len bytes of JSON; `path` names the file in messages. */
ft_status ft_cfg_parse(ft_model_config *cfg, const char *json, int64_t len, const char *path);

/* Value of a shape letter for this config (FT_DIM_ONE -> 1). */
int64_t ft_cfg_dim(const ft_model_config *cfg, ft_dim d);
/* Whether this model has the tensor (biases, q/k norms and lm_head depend on the config). */
int ft_cfg_has_tensor(const ft_model_config *cfg, ft_tensor_role r);
/* PyTorch shape of a tensor: *ndim = 1 or 2, shape[0..ndim). */
void ft_cfg_tensor_shape(const ft_model_config *cfg, ft_tensor_role r, int *ndim, int64_t shape[2]);
/* [out, in] of a linear module by PEFT name (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj,
 * down_proj); FT_E_ARG naming the module and the valid names otherwise. */
ft_status ft_cfg_linear_shape(const ft_model_config *cfg, const char *module, int64_t shape[2]);
/* Counts per component; FT_E_FORMAT if a count overflows 64 bits. */
ft_status ft_cfg_param_counts(const ft_model_config *cfg, ft_param_counts *out);

#endif
