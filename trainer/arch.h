/* arch.h: the model families ftune trains (Llama, Mistral, Qwen2, Qwen3) as pure data.
 *
 * Everything that differs between the families is a field of ft_arch_info (HF architecture
 * string, GGUF arch name, which attention biases exist, Qwen3's q/k norm, config defaults);
 * everything they share is one table of tensors (HF name, GGUF name, shape in config dims) and
 * one table of linear modules (PEFT name, HF module path, GGUF base name, [out, in] dims).
 * Code asks the tables; no module branches on the family for names or shapes.
 *
 * Name patterns: per-layer names hold exactly one "%d" (the layer index); format them with
 * ft_arch_name(). Shapes are PyTorch's ([out, in] for a linear weight), in the letters of
 * kernels/ops.h: C hidden, F intermediate, V vocab, D head_dim, Q = H*D, KV = Hkv*D. */
#ifndef FT_ARCH_H
#define FT_ARCH_H

#include <stddef.h>
#include <stdint.h>

typedef enum ft_arch { FT_ARCH_LLAMA = 0, FT_ARCH_MISTRAL, FT_ARCH_QWEN2, FT_ARCH_QWEN3, FT_ARCH_COUNT } ft_arch;

/* Which attention projections carry a bias. */
typedef enum ft_bias_policy {
    FT_BIAS_NONE = 0, /* none, whatever the config says (Mistral) */
    FT_BIAS_QKV,      /* q, k, v always; o never (Qwen2) */
    FT_BIAS_CONFIG,   /* q, k, v and o together when config attention_bias is true (Llama, Qwen3) */
} ft_bias_policy;

/* When attention is limited to a sliding window. */
typedef enum ft_window_policy {
    FT_WINDOW_NONE = 0, /* never: the key is ignored (Llama) */
    FT_WINDOW_KEY,      /* `sliding_window` when not null (Mistral) */
    FT_WINDOW_FLAG,     /* only with `use_sliding_window: true` (Qwen2/Qwen3; unsupported) */
} ft_window_policy;

typedef struct ft_arch_info {
    ft_arch arch;
    const char *name;            /* "llama": ftune's name, equal to HF model_type */
    const char *hf_architecture; /* config.json architectures[0]: "LlamaForCausalLM" */
    const char *gguf_arch;       /* general.architecture: "llama" (Mistral too), "qwen2", "qwen3" */
    int gguf_permute_qk;         /* GGUF rope is NORM (adjacent pairs): q/k rows permuted at export */
    ft_bias_policy attn_bias;
    int qk_norm;                 /* per-head RMSNorm of q and k before RoPE (Qwen3) */
    ft_window_policy window;
    /* config.json defaults, from transformers' configuration_*.py (docs: formats.md section 8.1) */
    int64_t default_kv_heads;    /* 0: equal to num_attention_heads */
    int64_t default_max_pos;
    double default_rms_eps;
    double default_rope_theta;
    int64_t default_window;      /* FT_WINDOW_KEY: sliding_window when the key is absent */
} ft_arch_info;

/* The seven linear modules of a decoder layer (LoRA targets). */
typedef enum ft_linear {
    FT_LIN_Q = 0,
    FT_LIN_K,
    FT_LIN_V,
    FT_LIN_O,
    FT_LIN_GATE,
    FT_LIN_UP,
    FT_LIN_DOWN,
    FT_LIN_COUNT
} ft_linear;

/* A shape letter, resolved against a config by ft_cfg_dim (trainer/hf_config.h). */
typedef enum ft_dim {
    FT_DIM_ONE = 0, /* unused trailing dim */
    FT_DIM_C,       /* hidden_size */
    FT_DIM_F,       /* intermediate_size */
    FT_DIM_V,       /* vocab_size */
    FT_DIM_D,       /* head_dim */
    FT_DIM_Q,       /* num_attention_heads * head_dim */
    FT_DIM_KV,      /* num_key_value_heads * head_dim */
} ft_dim;

typedef enum ft_tensor_role {
    FT_TR_TOKEN_EMBD = 0,
    FT_TR_OUTPUT_NORM,
    FT_TR_OUTPUT,
    FT_TR_ATTN_NORM,
    FT_TR_ATTN_Q,
    FT_TR_ATTN_K,
    FT_TR_ATTN_V,
    FT_TR_ATTN_O,
    FT_TR_ATTN_Q_BIAS,
    FT_TR_ATTN_K_BIAS,
    FT_TR_ATTN_V_BIAS,
    FT_TR_ATTN_O_BIAS,
    FT_TR_ATTN_Q_NORM,
    FT_TR_ATTN_K_NORM,
    FT_TR_FFN_NORM,
    FT_TR_FFN_GATE,
    FT_TR_FFN_UP,
    FT_TR_FFN_DOWN,
    FT_TR_COUNT
} ft_tensor_role;

/* When a tensor exists (decided against a config by ft_cfg_has_tensor). */
typedef enum ft_presence {
    FT_PRESENT_ALWAYS = 0,
    FT_PRESENT_UNTIED,   /* lm_head: only without tie_word_embeddings */
    FT_PRESENT_QKV_BIAS, /* q/k/v biases */
    FT_PRESENT_O_BIAS,
    FT_PRESENT_QK_NORM,
} ft_presence;

typedef struct ft_tensor_info {
    ft_tensor_role role;
    const char *hf;      /* "model.layers.%d.self_attn.q_proj.weight" */
    const char *gguf;    /* "blk.%d.attn_q.weight" */
    int per_layer;       /* 1: name holds %d */
    ft_presence presence;
    ft_linear linear;    /* module of a linear weight or bias; FT_LIN_COUNT otherwise */
    int ndim;            /* 1 or 2 */
    ft_dim dims[2];      /* PyTorch shape; dims[1] is FT_DIM_ONE when ndim == 1 */
} ft_tensor_info;

typedef struct ft_linear_info {
    ft_linear id;
    const char *peft_name; /* PEFT target_modules entry: "q_proj" */
    const char *hf_module; /* "model.layers.%d.self_attn.q_proj" (PEFT key = FT_PEFT_PREFIX + this + ".lora_A.weight") */
    const char *gguf_base; /* "blk.%d.attn_q" (LoRA GGUF: + ".weight.lora_a" / ".weight.lora_b") */
    ft_dim out_dim, in_dim; /* weight [out, in] */
    ft_tensor_role weight, bias;
} ft_linear_info;

/* PEFT adapter keys: FT_PEFT_PREFIX "<hf_module>" FT_PEFT_LORA_A / FT_PEFT_LORA_B. */
#define FT_PEFT_PREFIX "base_model.model."
#define FT_PEFT_LORA_A ".lora_A.weight"
#define FT_PEFT_LORA_B ".lora_B.weight"
/* LoRA GGUF tensor suffixes, appended to "<gguf_base>.weight". */
#define FT_GGUF_LORA_A ".lora_a"
#define FT_GGUF_LORA_B ".lora_b"
/* The extra GGUF tensor llama3 rope scaling needs (F32 [D/2] divisors; formats.md 3.1). */
#define FT_GGUF_ROPE_FREQS "rope_freqs.weight"

/* Table lookups; NULL when the id is out of range. */
const ft_arch_info *ft_arch_get(ft_arch a);
const ft_tensor_info *ft_tensor_info_get(ft_tensor_role r);
const ft_linear_info *ft_linear_info_get(ft_linear l);

/* Family by config.json architectures[0] / model_type. Return 1 when found. */
int ft_arch_from_hf(const char *hf_architecture, ft_arch *out);
int ft_arch_from_model_type(const char *model_type, ft_arch *out);
/* Linear module by its PEFT name ("q_proj"). Returns 1 when found. */
int ft_linear_from_name(const char *peft_name, ft_linear *out);
/* 1 when `wrapper` (config.json architectures[0]) is a vision-language checkpoint whose text model,
 * under text_config with model_type *text_type, ftune trains (hf_config.h vlm); *what names the
 * models for messages. Either out pointer may be NULL. */
int ft_arch_vlm(const char *wrapper, const char **text_type, const char **what);
/* "LlamaForCausalLM, MistralForCausalLM, ..." for messages. */
const char *ft_arch_supported_list(void);

/* Formats a name pattern for a layer (ignored by global names) into buf. Returns the length,
 * or -1 when it does not fit. */
int ft_arch_name(char *buf, size_t n, const char *pattern, int64_t layer);

/* PEFT's module path of a linear: "model.layers.N.self_attn.q_proj" (hf_module), or for the text
 * model of a vision-language checkpoint (hf_config.h vlm) transformers 5's
 * "model.language_model.layers.N.self_attn.q_proj". Returns the length, or -1 when it does not fit. */
int ft_peft_module(char *buf, size_t n, ft_linear lin, int64_t layer, int vlm);
/* adapter_config.json's target_modules of a vision-language checkpoint: a regular expression over
 * the text model's module paths of the linears in `mask` (bit k: ft_linear k), which peft matches
 * whole. A list of names ("q_proj") would also wrap the vision tower's modules of those names.
 * Returns the length, or -1 when it does not fit. */
int ft_peft_target_regex(char *buf, size_t n, unsigned mask);
/* The layers' prefix of a vision-language checkpoint's PEFT module paths. */
#define FT_PEFT_VLM_LAYERS "model.language_model.layers."

#endif
