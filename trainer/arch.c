/* arch.c: the family, tensor and linear-module tables of arch.h. Names come from
 * transformers' modeling_{llama,mistral,qwen2,qwen3}.py and llama.cpp's gguf-py tensor_mapping.py
 * (formats.md sections 3.2, 3.3, 6.3); defaults from configuration_*.py (section 8.1). */
#include "trainer/arch.h"

#include <stdio.h>
#include <string.h>

/* Mistral is the llama GGUF arch; its HF modeling has no attention bias whatever the config says. */
static const ft_arch_info ft_arch_table[FT_ARCH_COUNT] = {
    [FT_ARCH_LLAMA] = {.arch = FT_ARCH_LLAMA, .name = "llama", .hf_architecture = "LlamaForCausalLM",
                       .gguf_arch = "llama", .gguf_permute_qk = 1, .attn_bias = FT_BIAS_CONFIG, .qk_norm = 0,
                       .window = FT_WINDOW_NONE, .default_kv_heads = 0, .default_max_pos = 2048,
                       .default_rms_eps = 1e-6, .default_rope_theta = 10000.0, .default_window = 0},
    [FT_ARCH_MISTRAL] = {.arch = FT_ARCH_MISTRAL, .name = "mistral", .hf_architecture = "MistralForCausalLM",
                         .gguf_arch = "llama", .gguf_permute_qk = 1, .attn_bias = FT_BIAS_NONE, .qk_norm = 0,
                         .window = FT_WINDOW_KEY, .default_kv_heads = 8, .default_max_pos = 4096 * 32,
                         .default_rms_eps = 1e-6, .default_rope_theta = 10000.0, .default_window = 4096},
    [FT_ARCH_QWEN2] = {.arch = FT_ARCH_QWEN2, .name = "qwen2", .hf_architecture = "Qwen2ForCausalLM",
                       .gguf_arch = "qwen2", .gguf_permute_qk = 0, .attn_bias = FT_BIAS_QKV, .qk_norm = 0,
                       .window = FT_WINDOW_FLAG, .default_kv_heads = 32, .default_max_pos = 32768,
                       .default_rms_eps = 1e-6, .default_rope_theta = 10000.0, .default_window = 0},
    [FT_ARCH_QWEN3] = {.arch = FT_ARCH_QWEN3, .name = "qwen3", .hf_architecture = "Qwen3ForCausalLM",
                       .gguf_arch = "qwen3", .gguf_permute_qk = 0, .attn_bias = FT_BIAS_CONFIG, .qk_norm = 1,
                       .window = FT_WINDOW_FLAG, .default_kv_heads = 32, .default_max_pos = 32768,
                       .default_rms_eps = 1e-6, .default_rope_theta = 10000.0, .default_window = 0},
};

#define L "model.layers.%d."
#define B "blk.%d."
static const ft_tensor_info ft_tensor_table[FT_TR_COUNT] = {
    [FT_TR_TOKEN_EMBD] = {FT_TR_TOKEN_EMBD, "model.embed_tokens.weight", "token_embd.weight", 0, FT_PRESENT_ALWAYS,
                          FT_LIN_COUNT, 2, {FT_DIM_V, FT_DIM_C}},
    [FT_TR_OUTPUT_NORM] = {FT_TR_OUTPUT_NORM, "model.norm.weight", "output_norm.weight", 0, FT_PRESENT_ALWAYS,
                           FT_LIN_COUNT, 1, {FT_DIM_C, FT_DIM_ONE}},
    [FT_TR_OUTPUT] = {FT_TR_OUTPUT, "lm_head.weight", "output.weight", 0, FT_PRESENT_UNTIED, FT_LIN_COUNT, 2,
                      {FT_DIM_V, FT_DIM_C}},
    [FT_TR_ATTN_NORM] = {FT_TR_ATTN_NORM, L "input_layernorm.weight", B "attn_norm.weight", 1, FT_PRESENT_ALWAYS,
                         FT_LIN_COUNT, 1, {FT_DIM_C, FT_DIM_ONE}},
    [FT_TR_ATTN_Q] = {FT_TR_ATTN_Q, L "self_attn.q_proj.weight", B "attn_q.weight", 1, FT_PRESENT_ALWAYS, FT_LIN_Q, 2,
                      {FT_DIM_Q, FT_DIM_C}},
    [FT_TR_ATTN_K] = {FT_TR_ATTN_K, L "self_attn.k_proj.weight", B "attn_k.weight", 1, FT_PRESENT_ALWAYS, FT_LIN_K, 2,
                      {FT_DIM_KV, FT_DIM_C}},
    [FT_TR_ATTN_V] = {FT_TR_ATTN_V, L "self_attn.v_proj.weight", B "attn_v.weight", 1, FT_PRESENT_ALWAYS, FT_LIN_V, 2,
                      {FT_DIM_KV, FT_DIM_C}},
    [FT_TR_ATTN_O] = {FT_TR_ATTN_O, L "self_attn.o_proj.weight", B "attn_output.weight", 1, FT_PRESENT_ALWAYS,
                      FT_LIN_O, 2, {FT_DIM_C, FT_DIM_Q}},
    [FT_TR_ATTN_Q_BIAS] = {FT_TR_ATTN_Q_BIAS, L "self_attn.q_proj.bias", B "attn_q.bias", 1, FT_PRESENT_QKV_BIAS,
                           FT_LIN_Q, 1, {FT_DIM_Q, FT_DIM_ONE}},
    [FT_TR_ATTN_K_BIAS] = {FT_TR_ATTN_K_BIAS, L "self_attn.k_proj.bias", B "attn_k.bias", 1, FT_PRESENT_QKV_BIAS,
                           FT_LIN_K, 1, {FT_DIM_KV, FT_DIM_ONE}},
    [FT_TR_ATTN_V_BIAS] = {FT_TR_ATTN_V_BIAS, L "self_attn.v_proj.bias", B "attn_v.bias", 1, FT_PRESENT_QKV_BIAS,
                           FT_LIN_V, 1, {FT_DIM_KV, FT_DIM_ONE}},
    [FT_TR_ATTN_O_BIAS] = {FT_TR_ATTN_O_BIAS, L "self_attn.o_proj.bias", B "attn_output.bias", 1, FT_PRESENT_O_BIAS,
                           FT_LIN_O, 1, {FT_DIM_C, FT_DIM_ONE}},
    [FT_TR_ATTN_Q_NORM] = {FT_TR_ATTN_Q_NORM, L "self_attn.q_norm.weight", B "attn_q_norm.weight", 1,
                           FT_PRESENT_QK_NORM, FT_LIN_COUNT, 1, {FT_DIM_D, FT_DIM_ONE}},
    [FT_TR_ATTN_K_NORM] = {FT_TR_ATTN_K_NORM, L "self_attn.k_norm.weight", B "attn_k_norm.weight", 1,
                           FT_PRESENT_QK_NORM, FT_LIN_COUNT, 1, {FT_DIM_D, FT_DIM_ONE}},
    [FT_TR_FFN_NORM] = {FT_TR_FFN_NORM, L "post_attention_layernorm.weight", B "ffn_norm.weight", 1, FT_PRESENT_ALWAYS,
                        FT_LIN_COUNT, 1, {FT_DIM_C, FT_DIM_ONE}},
    [FT_TR_FFN_GATE] = {FT_TR_FFN_GATE, L "mlp.gate_proj.weight", B "ffn_gate.weight", 1, FT_PRESENT_ALWAYS,
                        FT_LIN_GATE, 2, {FT_DIM_F, FT_DIM_C}},
    [FT_TR_FFN_UP] = {FT_TR_FFN_UP, L "mlp.up_proj.weight", B "ffn_up.weight", 1, FT_PRESENT_ALWAYS, FT_LIN_UP, 2,
                      {FT_DIM_F, FT_DIM_C}},
    [FT_TR_FFN_DOWN] = {FT_TR_FFN_DOWN, L "mlp.down_proj.weight", B "ffn_down.weight", 1, FT_PRESENT_ALWAYS,
                        FT_LIN_DOWN, 2, {FT_DIM_C, FT_DIM_F}},
};

static const ft_linear_info ft_linear_table[FT_LIN_COUNT] = {
    [FT_LIN_Q] = {FT_LIN_Q, "q_proj", L "self_attn.q_proj", B "attn_q", FT_DIM_Q, FT_DIM_C, FT_TR_ATTN_Q,
                  FT_TR_ATTN_Q_BIAS},
    [FT_LIN_K] = {FT_LIN_K, "k_proj", L "self_attn.k_proj", B "attn_k", FT_DIM_KV, FT_DIM_C, FT_TR_ATTN_K,
                  FT_TR_ATTN_K_BIAS},
    [FT_LIN_V] = {FT_LIN_V, "v_proj", L "self_attn.v_proj", B "attn_v", FT_DIM_KV, FT_DIM_C, FT_TR_ATTN_V,
                  FT_TR_ATTN_V_BIAS},
    [FT_LIN_O] = {FT_LIN_O, "o_proj", L "self_attn.o_proj", B "attn_output", FT_DIM_C, FT_DIM_Q, FT_TR_ATTN_O,
                  FT_TR_ATTN_O_BIAS},
    [FT_LIN_GATE] = {FT_LIN_GATE, "gate_proj", L "mlp.gate_proj", B "ffn_gate", FT_DIM_F, FT_DIM_C, FT_TR_FFN_GATE,
                     FT_TR_COUNT},
    [FT_LIN_UP] = {FT_LIN_UP, "up_proj", L "mlp.up_proj", B "ffn_up", FT_DIM_F, FT_DIM_C, FT_TR_FFN_UP, FT_TR_COUNT},
    [FT_LIN_DOWN] = {FT_LIN_DOWN, "down_proj", L "mlp.down_proj", B "ffn_down", FT_DIM_C, FT_DIM_F, FT_TR_FFN_DOWN,
                     FT_TR_COUNT},
};
#undef L
#undef B

const ft_arch_info *ft_arch_get(ft_arch a) { return (unsigned)a < FT_ARCH_COUNT ? &ft_arch_table[a] : NULL; }

const ft_tensor_info *ft_tensor_info_get(ft_tensor_role r) {
    return (unsigned)r < FT_TR_COUNT ? &ft_tensor_table[r] : NULL;
}

const ft_linear_info *ft_linear_info_get(ft_linear l) {
    return (unsigned)l < FT_LIN_COUNT ? &ft_linear_table[l] : NULL;
}

int ft_arch_from_hf(const char *hf_architecture, ft_arch *out) {
    for (int i = 0; i < FT_ARCH_COUNT; i++) {
        if (strcmp(hf_architecture, ft_arch_table[i].hf_architecture) == 0) {
            *out = (ft_arch)i;
            return 1;
        }
    }
    return 0;
}

int ft_arch_from_model_type(const char *model_type, ft_arch *out) {
    for (int i = 0; i < FT_ARCH_COUNT; i++) {
        if (strcmp(model_type, ft_arch_table[i].name) == 0) {
            *out = (ft_arch)i;
            return 1;
        }
    }
    return 0;
}

int ft_linear_from_name(const char *peft_name, ft_linear *out) {
    for (int i = 0; i < FT_LIN_COUNT; i++) {
        if (strcmp(peft_name, ft_linear_table[i].peft_name) == 0) {
            *out = (ft_linear)i;
            return 1;
        }
    }
    return 0;
}

/* The vision-language wrappers whose text model is one of ours. */
static const struct { const char *wrapper, *text_type, *what; } ft_arch_vlms[] = {
    {"Mistral3ForConditionalGeneration", "mistral", "Mistral Small 3.1/3.2"},
};

int ft_arch_vlm(const char *wrapper, const char **text_type, const char **what) {
    for (size_t i = 0; i < sizeof ft_arch_vlms / sizeof *ft_arch_vlms; i++) {
        if (strcmp(wrapper, ft_arch_vlms[i].wrapper) != 0) continue;
        if (text_type) *text_type = ft_arch_vlms[i].text_type;
        if (what) *what = ft_arch_vlms[i].what;
        return 1;
    }
    return 0;
}

const char *ft_arch_supported_list(void) {
    return "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, and the text model of "
           "Mistral3ForConditionalGeneration";
}

int ft_peft_module(char *buf, size_t n, ft_linear lin, int64_t layer, int vlm) {
    const ft_linear_info *li = ft_linear_info_get(lin);
    if (!li) return -1;
    const char *suffix = strstr(li->hf_module, "%d") + 2; /* ".self_attn.q_proj" */
    int len = vlm ? snprintf(buf, n, FT_PEFT_VLM_LAYERS "%lld%s", (long long)layer, suffix)
                  : snprintf(buf, n, "model.layers.%lld%s", (long long)layer, suffix);
    return len < 0 || (size_t)len >= n ? -1 : len;
}

int ft_peft_target_regex(char *buf, size_t n, unsigned mask) {
    int len = snprintf(buf, n, "model\\.language_model\\.layers\\.\\d+\\.(");
    for (int k = 0, first = 1; k < FT_LIN_COUNT && len >= 0 && (size_t)len < n; k++) {
        if (!(mask & (1u << k))) continue;
        const char *path = strstr(ft_linear_info_get((ft_linear)k)->hf_module, "%d") + 3; /* "self_attn.q_proj" */
        const char *dot = strchr(path, '.');
        len += snprintf(buf + len, n - (size_t)len, "%s%.*s\\.%s", first ? "" : "|", (int)(dot - path), path, dot + 1);
        first = 0;
    }
    if (len >= 0 && (size_t)len < n) len += snprintf(buf + len, n - (size_t)len, ")");
    return len < 0 || (size_t)len >= n ? -1 : len;
}

int ft_arch_name(char *buf, size_t n, const char *pattern, int64_t layer) {
    /* Patterns are the tables' own literals; a global name has no %d and ignores the argument. */
    int len = strstr(pattern, "%d") ? snprintf(buf, n, pattern, (int)layer) : snprintf(buf, n, "%s", pattern);
    return len < 0 || (size_t)len >= n ? -1 : len;
}
