/* test_hf_config.c: config.json parsing (trainer/hf_config) and the family tables (trainer/arch).
 * Real-looking configs of six public models (tests/fixtures/configs/, see PROVENANCE there) are
 * checked field by field and against parameter counts derived by hand from their shapes (the same
 * numbers transformers 5.23 reports for these configs); a table of bad configs checks status and
 * message (naming config.json and the key). */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tests/harness.h"
#include "trainer/arch.h"
#include "trainer/hf_config.h"
#include "trainer/safetensors_read.h"

typedef struct good_case {
    const char *dir; /* under tests/fixtures/configs */
    ft_arch arch;
    int64_t C, F, L, H, Hkv, D, V, max_pos;
    double eps, theta;
    ft_rope_type rope;
    int qkv_bias, o_bias, qk_norm, tied;
    int64_t bos, eos0;
    int n_eos;
    const char *dtype;
    int64_t linear_per_layer, per_layer, total;
} good_case;

/* Parameter counts, derived by hand (Q = H*D, KV = Hkv*D; linear = q Q*C + k,v 2*KV*C + o C*Q + 3*C*F):
 *
 * Llama-3.1-8B: C 4096, F 14336, L 32, H 32, Hkv 8, D 128, V 128256.
 *   q,o 4096*4096 = 16,777,216 each; k,v 1024*4096 = 4,194,304 each; gate,up,down 14336*4096 = 58,720,256 each
 *   linear 218,103,808 + norms 2*4096 = 218,112,000 per layer; x32 = 6,979,584,000
 *   embed = lm_head = 128256*4096 = 525,336,576; final norm 4096  -> total 8,030,261,248
 * Llama-3.3-70B: C 8192, F 28672, L 80, H 64, Hkv 8, D 128, V 128256.
 *   q,o 67,108,864 each; k,v 8,388,608 each; mlp 3*234,881,024 = 704,643,072
 *   linear 855,638,016 + norms 16,384 = 855,654,400 per layer; x80 = 68,452,352,000
 *   embed = lm_head = 1,050,673,152; final norm 8192                -> total 70,553,706,496
 * Qwen2.5-7B: C 3584, F 18944, L 28, H 28, Hkv 4, D 128, V 152064; q,k,v biases.
 *   q,o 12,845,056 each; k,v 1,835,008 each; mlp 3*67,895,296 = 203,685,888 -> linear 233,046,016
 *   biases 3584 + 512 + 512 = 4608; norms 7168 -> 233,057,792 per layer; x28 = 6,525,618,176
 *   embed = lm_head = 544,997,376; final norm 3584                  -> total 7,615,616,512
 * Qwen3-32B: C 5120, F 25600, L 64, H 64, Hkv 8, D 128 (Q 8192 != C), V 151936; q/k norms [128].
 *   q,o 41,943,040 each; k,v 5,242,880 each; mlp 3*131,072,000 = 393,216,000 -> linear 487,587,840
 *   norms 2*5120 + 2*128 = 10,496 -> 487,598,336 per layer; x64 = 31,206,293,504
 *   embed = lm_head = 777,912,320; final norm 5120                  -> total 32,762,123,264
 * Qwen3-14B: C 5120, F 17408, L 40, H 40, Hkv 8, D 128, V 151936.
 *   q,o 26,214,400 each; k,v 5,242,880 each; mlp 3*89,128,960 = 267,386,880 -> linear 330,301,440
 *   norms 10,496 -> 330,311,936 per layer; x40 = 13,212,477,440
 *   embed = lm_head = 777,912,320; final norm 5120                  -> total 14,768,307,200
 * Mistral-Small-24B-2501: C 5120, F 32768, L 40, H 32, Hkv 8, D 128 (Q 4096 != C), V 131072.
 *   q,o 20,971,520 each; k,v 5,242,880 each; mlp 3*167,772,160 = 503,316,480 -> linear 555,745,280
 *   norms 10,240 -> 555,755,520 per layer; x40 = 22,230,220,800
 *   embed = lm_head = 671,088,640; final norm 5120                  -> total 23,572,403,200 */
static const good_case good[] = {
    {"Llama-3.1-8B-Instruct", FT_ARCH_LLAMA, 4096, 14336, 32, 32, 8, 128, 128256, 131072, 1e-5, 500000.0,
     FT_ROPE_LLAMA3, 0, 0, 0, 0, 128000, 128001, 3, "bfloat16", 218103808LL, 218112000LL, 8030261248LL},
    {"Llama-3.1-8B-Instruct-v5", FT_ARCH_LLAMA, 4096, 14336, 32, 32, 8, 128, 128256, 131072, 1e-5, 500000.0,
     FT_ROPE_LLAMA3, 0, 0, 0, 0, 128000, 128001, 3, "bfloat16", 218103808LL, 218112000LL, 8030261248LL},
    {"Llama-3.3-70B-Instruct", FT_ARCH_LLAMA, 8192, 28672, 80, 64, 8, 128, 128256, 131072, 1e-5, 500000.0,
     FT_ROPE_LLAMA3, 0, 0, 0, 0, 128000, 128001, 3, "bfloat16", 855638016LL, 855654400LL, 70553706496LL},
    {"Qwen2.5-7B", FT_ARCH_QWEN2, 3584, 18944, 28, 28, 4, 128, 152064, 131072, 1e-6, 1000000.0, FT_ROPE_DEFAULT, 1, 0,
     0, 0, 151643, 151643, 1, "bfloat16", 233046016LL, 233057792LL, 7615616512LL},
    {"Qwen3-32B", FT_ARCH_QWEN3, 5120, 25600, 64, 64, 8, 128, 151936, 40960, 1e-6, 1000000.0, FT_ROPE_DEFAULT, 0, 0, 1,
     0, 151643, 151645, 1, "bfloat16", 487587840LL, 487598336LL, 32762123264LL},
    {"Qwen3-14B", FT_ARCH_QWEN3, 5120, 17408, 40, 40, 8, 128, 151936, 40960, 1e-6, 1000000.0, FT_ROPE_DEFAULT, 0, 0, 1,
     0, 151643, 151645, 1, "bfloat16", 330301440LL, 330311936LL, 14768307200LL},
    {"Mistral-Small-24B-Base-2501", FT_ARCH_MISTRAL, 5120, 32768, 40, 32, 8, 128, 131072, 32768, 1e-5, 100000000.0,
     FT_ROPE_DEFAULT, 0, 0, 0, 0, 1, 2, 1, "bfloat16", 555745280LL, 555755520LL, 23572403200LL},
};

static void test_good_configs(void) {
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        const good_case *g = &good[i];
        char path[1024];
        snprintf(path, sizeof path, "%s/tests/fixtures/configs/%s", ft_test_src_dir(), g->dir);
        ft_model_config c;
        ft_status st = ft_cfg_load(&c, path);
        FT_CHECK(st == FT_OK, "%s: %s", g->dir, ft_error_msg());
        if (st != FT_OK) continue;
        FT_CHECK(c.arch == g->arch && strcmp(c.architecture, ft_arch_get(g->arch)->hf_architecture) == 0, "%s: arch %s",
                 g->dir, c.architecture);
        FT_CHECK(c.hidden_size == g->C && c.intermediate_size == g->F && c.num_hidden_layers == g->L &&
                     c.num_attention_heads == g->H && c.num_key_value_heads == g->Hkv && c.head_dim == g->D &&
                     c.vocab_size == g->V && c.max_position_embeddings == g->max_pos,
                 "%s: dims", g->dir);
        FT_CHECK(c.rms_norm_eps == g->eps && c.rope.theta == g->theta && c.rope.type == g->rope && c.rope.dim == g->D,
                 "%s: eps %g theta %g rope %d dim %lld", g->dir, c.rms_norm_eps, c.rope.theta, (int)c.rope.type,
                 (long long)c.rope.dim);
        if (g->rope == FT_ROPE_LLAMA3)
            FT_CHECK(c.rope.factor == 8.0 && c.rope.low_freq_factor == 1.0 && c.rope.high_freq_factor == 4.0 &&
                         c.rope.original_max_pos == 8192, "%s: llama3 rope parameters", g->dir);
        FT_CHECK(c.qkv_bias == g->qkv_bias && c.o_bias == g->o_bias && c.qk_norm == g->qk_norm &&
                     c.tie_word_embeddings == g->tied, "%s: bias/norm/tie flags", g->dir);
        FT_CHECK(c.n_bos == 1 && c.bos_token_id[0] == g->bos && c.n_eos == g->n_eos && c.eos_token_id[0] == g->eos0,
                 "%s: bos/eos", g->dir);
        FT_CHECK(strcmp(c.torch_dtype, g->dtype) == 0, "%s: dtype %s", g->dir, c.torch_dtype);
        ft_param_counts pc;
        FT_CHECK_OK(ft_cfg_param_counts(&c, &pc));
        FT_CHECK(pc.linear_per_layer == g->linear_per_layer && pc.per_layer == g->per_layer && pc.total == g->total,
                 "%s: params linear/layer %lld per layer %lld total %lld (want %lld %lld %lld)", g->dir,
                 (long long)pc.linear_per_layer, (long long)pc.per_layer, (long long)pc.total,
                 (long long)g->linear_per_layer, (long long)g->per_layer, (long long)g->total);
        FT_CHECK(pc.embedding == g->V * g->C && pc.lm_head == g->V * g->C && pc.final_norm == g->C &&
                     pc.layers == g->L * g->per_layer, "%s: components", g->dir);
        printf("ok   %-28s %-18s total %lld params\n", g->dir, c.architecture, (long long)pc.total);
    }
    /* the v4 and v5 layouts of the same model parse to the same struct (but for the dtype key spelling) */
    ft_model_config a, b;
    char pa[1024], pb[1024];
    snprintf(pa, sizeof pa, "%s/tests/fixtures/configs/Llama-3.1-8B-Instruct/config.json", ft_test_src_dir());
    snprintf(pb, sizeof pb, "%s/tests/fixtures/configs/Llama-3.1-8B-Instruct-v5/config.json", ft_test_src_dir());
    FT_CHECK_OK(ft_cfg_load(&a, pa));
    FT_CHECK_OK(ft_cfg_load(&b, pb));
    FT_CHECK(memcmp(&a, &b, sizeof a) == 0, "v4 and v5 Llama-3.1 configs parse identically");
}

static void test_shapes(void) {
    ft_model_config c;
    char p[1024];
    snprintf(p, sizeof p, "%s/tests/fixtures/configs/Qwen3-32B", ft_test_src_dir());
    FT_CHECK_OK(ft_cfg_load(&c, p));
    static const struct { const char *m; int64_t o, i; } want[] = {
        {"q_proj", 8192, 5120}, {"k_proj", 1024, 5120},  {"v_proj", 1024, 5120},  {"o_proj", 5120, 8192},
        {"gate_proj", 25600, 5120}, {"up_proj", 25600, 5120}, {"down_proj", 5120, 25600},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        int64_t s[2] = {0, 0};
        FT_CHECK_OK(ft_cfg_linear_shape(&c, want[i].m, s));
        FT_CHECK(s[0] == want[i].o && s[1] == want[i].i, "Qwen3-32B %s [%lld, %lld]", want[i].m, (long long)s[0],
                 (long long)s[1]);
    }
    int64_t s[2];
    FT_CHECK(ft_cfg_linear_shape(&c, "lm_head", s) == FT_E_ARG && strstr(ft_error_msg(), "\"lm_head\"") &&
                 strstr(ft_error_msg(), "down_proj"), "unknown module: %s", ft_error_msg());
    int nd;
    ft_cfg_tensor_shape(&c, FT_TR_ATTN_Q_NORM, &nd, s);
    FT_CHECK(nd == 1 && s[0] == 128, "q_norm [128]");
    ft_cfg_tensor_shape(&c, FT_TR_TOKEN_EMBD, &nd, s);
    FT_CHECK(nd == 2 && s[0] == 151936 && s[1] == 5120, "embed [V, C]");
    FT_CHECK(ft_cfg_has_tensor(&c, FT_TR_ATTN_Q_NORM) && !ft_cfg_has_tensor(&c, FT_TR_ATTN_Q_BIAS) &&
                 ft_cfg_has_tensor(&c, FT_TR_OUTPUT), "Qwen3 tensors");
    snprintf(p, sizeof p, "%s/tests/fixtures/configs/Qwen2.5-7B", ft_test_src_dir());
    FT_CHECK_OK(ft_cfg_load(&c, p));
    FT_CHECK(ft_cfg_has_tensor(&c, FT_TR_ATTN_K_BIAS) && !ft_cfg_has_tensor(&c, FT_TR_ATTN_O_BIAS) &&
                 !ft_cfg_has_tensor(&c, FT_TR_ATTN_K_NORM), "Qwen2 tensors");
}

static void test_tables(void) {
    char buf[128];
    const ft_tensor_info *q = ft_tensor_info_get(FT_TR_ATTN_Q);
    FT_CHECK(ft_arch_name(buf, sizeof buf, q->hf, 3) > 0 && strcmp(buf, "model.layers.3.self_attn.q_proj.weight") == 0,
             "hf name %s", buf);
    FT_CHECK(ft_arch_name(buf, sizeof buf, q->gguf, 79) > 0 && strcmp(buf, "blk.79.attn_q.weight") == 0, "gguf %s", buf);
    FT_CHECK(ft_arch_name(buf, sizeof buf, ft_tensor_info_get(FT_TR_OUTPUT)->gguf, 5) > 0 &&
                 strcmp(buf, "output.weight") == 0, "global name %s", buf);
    FT_CHECK(ft_arch_name(buf, 8, q->hf, 3) == -1, "truncation reported");
    const ft_linear_info *o = ft_linear_info_get(FT_LIN_O);
    FT_CHECK(strcmp(o->peft_name, "o_proj") == 0 && strcmp(o->gguf_base, "blk.%d.attn_output") == 0, "o_proj info");
    ft_arch_name(buf, sizeof buf, o->hf_module, 0);
    char key[256];
    snprintf(key, sizeof key, FT_PEFT_PREFIX "%s" FT_PEFT_LORA_A, buf);
    FT_CHECK(strcmp(key, "base_model.model.model.layers.0.self_attn.o_proj.lora_A.weight") == 0, "PEFT key %s", key);
    FT_CHECK(strcmp(ft_arch_get(FT_ARCH_MISTRAL)->gguf_arch, "llama") == 0 &&
                 strcmp(ft_arch_get(FT_ARCH_QWEN2)->gguf_arch, "qwen2") == 0 &&
                 strcmp(ft_arch_get(FT_ARCH_QWEN3)->gguf_arch, "qwen3") == 0, "GGUF arch names");
    FT_CHECK(ft_arch_get(FT_ARCH_LLAMA)->gguf_permute_qk && !ft_arch_get(FT_ARCH_QWEN3)->gguf_permute_qk, "permute");
    FT_CHECK(ft_arch_get(FT_ARCH_COUNT) == NULL && ft_tensor_info_get(FT_TR_COUNT) == NULL, "range");
    /* the tables agree with each other */
    for (int r = 0; r < FT_TR_COUNT; r++) {
        const ft_tensor_info *t = ft_tensor_info_get((ft_tensor_role)r);
        FT_CHECK(t->role == (ft_tensor_role)r && (t->per_layer == (strstr(t->hf, "%d") != NULL)) &&
                     (t->per_layer == (strstr(t->gguf, "%d") != NULL)), "tensor table row %d", r);
    }
    for (int l = 0; l < FT_LIN_COUNT; l++) {
        const ft_linear_info *li = ft_linear_info_get((ft_linear)l);
        const ft_tensor_info *w = ft_tensor_info_get(li->weight);
        ft_linear back;
        FT_CHECK(li->id == (ft_linear)l && w->linear == (ft_linear)l && w->dims[0] == li->out_dim &&
                     w->dims[1] == li->in_dim && strncmp(w->hf, li->hf_module, strlen(li->hf_module)) == 0 &&
                     strncmp(w->gguf, li->gguf_base, strlen(li->gguf_base)) == 0 &&
                     ft_linear_from_name(li->peft_name, &back) && back == (ft_linear)l,
                 "linear table row %d", l);
        if (li->bias != FT_TR_COUNT) FT_CHECK(ft_tensor_info_get(li->bias)->linear == (ft_linear)l, "bias row %d", l);
    }
    for (int a = 0; a < FT_ARCH_COUNT; a++) {
        ft_arch back;
        const ft_arch_info *ai = ft_arch_get((ft_arch)a);
        FT_CHECK(ai->arch == (ft_arch)a && ft_arch_from_hf(ai->hf_architecture, &back) && back == (ft_arch)a &&
                     ft_arch_from_model_type(ai->name, &back) && back == (ft_arch)a &&
                     strstr(ft_arch_supported_list(), ai->hf_architecture), "arch table row %d", a);
    }
}

/* ---------------------------------------------------------------------------------------------- */

/* A small valid Llama config; cases replace or remove keys. */
static const char *base_keys[][2] = {
    {"architectures", "[\"LlamaForCausalLM\"]"}, {"model_type", "\"llama\""}, {"hidden_size", "256"},
    {"intermediate_size", "512"}, {"num_hidden_layers", "2"}, {"num_attention_heads", "8"},
    {"num_key_value_heads", "4"}, {"vocab_size", "1000"}, {"rms_norm_eps", "1e-05"}, {"hidden_act", "\"silu\""},
    {"rope_theta", "10000.0"}, {"max_position_embeddings", "512"}, {"tie_word_embeddings", "false"},
    {"bos_token_id", "1"}, {"eos_token_id", "2"},
};
enum { NBASE = sizeof base_keys / sizeof base_keys[0] };

/* Builds JSON: base keys with overrides (value NULL removes the key; unknown keys are appended). */
static void build_config(char *out, size_t n, const char *const (*ov)[2], int nov) {
    size_t len = (size_t)snprintf(out, n, "{");
    int used[8] = {0};
    for (int i = 0; i < NBASE; i++) {
        const char *v = base_keys[i][1];
        for (int j = 0; j < nov; j++)
            if (strcmp(ov[j][0], base_keys[i][0]) == 0) v = ov[j][1], used[j] = 1;
        if (v) len += (size_t)snprintf(out + len, n - len, "%s\"%s\": %s", len > 1 ? ", " : "", base_keys[i][0], v);
    }
    for (int j = 0; j < nov; j++)
        if (!used[j] && ov[j][1])
            len += (size_t)snprintf(out + len, n - len, "%s\"%s\": %s", len > 1 ? ", " : "", ov[j][0], ov[j][1]);
    snprintf(out + len, n - len, "}");
}

typedef struct bad_cfg {
    const char *name;
    const char *ov[3][2];
    int nov;
    const char *raw; /* whole file instead of base + overrides */
    ft_status want;
    const char *substr;
} bad_cfg;

static const bad_cfg bad[] = {
    {"missing hidden_size", {{"hidden_size", NULL}}, 1, NULL, FT_E_FORMAT, "missing required key \"hidden_size\""},
    {"missing vocab_size", {{"vocab_size", NULL}}, 1, NULL, FT_E_FORMAT, "missing required key \"vocab_size\""},
    {"hidden_size as a string", {{"hidden_size", "\"256\""}}, 1, NULL, FT_E_FORMAT,
     "hidden_size must be an integer (got a string)"},
    {"fractional hidden_size", {{"hidden_size", "256.5"}}, 1, NULL, FT_E_FORMAT,
     "hidden_size must be an integer (got 256.5)"},
    {"zero layers", {{"num_hidden_layers", "0"}}, 1, NULL, FT_E_FORMAT, "num_hidden_layers must be positive (got 0)"},
    {"negative vocab", {{"vocab_size", "-5"}}, 1, NULL, FT_E_FORMAT, "vocab_size must be positive (got -5)"},
    {"huge hidden_size", {{"hidden_size", "1e12"}}, 1, NULL, FT_E_FORMAT, "hidden_size = 1000000000000 is out of range"},
    {"heads not divisible by kv heads", {{"num_key_value_heads", "3"}}, 1, NULL, FT_E_FORMAT,
     "num_attention_heads (8) is not divisible by num_key_value_heads (3)"},
    {"hidden not divisible by heads", {{"hidden_size", "250"}}, 1, NULL, FT_E_FORMAT,
     "hidden_size (250) is not divisible by num_attention_heads (8)"},
    {"odd head_dim", {{"head_dim", "31"}}, 1, NULL, FT_E_FORMAT, "head_dim 31 must be even"},
    {"gelu", {{"hidden_act", "\"gelu\""}}, 1, NULL, FT_E_UNSUPPORTED, "hidden_act \"gelu\" is not supported"},
    {"hidden_act not a string", {{"hidden_act", "1"}}, 1, NULL, FT_E_FORMAT, "hidden_act must be a string"},
    {"unknown architecture", {{"architectures", "[\"GPT2LMHeadModel\"]"}}, 1, NULL, FT_E_UNSUPPORTED,
     "architectures[0] \"GPT2LMHeadModel\" is not supported (supported: LlamaForCausalLM, MistralForCausalLM, "
     "Qwen2ForCausalLM, Qwen3ForCausalLM, and the text model of Mistral3ForConditionalGeneration)"},
    {"vision-language wrapper without text_config", {{"architectures", "[\"Mistral3ForConditionalGeneration\"]"}}, 1,
     NULL, FT_E_FORMAT, "missing required key \"text_config\""},
    {"vision-language wrapper of another text model",
     {{"architectures", "[\"Mistral3ForConditionalGeneration\"]"}, {"text_config", "{\"model_type\": \"ministral3\"}"}},
     2, NULL, FT_E_UNSUPPORTED, "Mistral3ForConditionalGeneration with text_config.model_type \"ministral3\" is not "
     "supported (only \"mistral\", Mistral Small 3.1/3.2)"},
    {"text_config not an object", {{"architectures", "[\"Mistral3ForConditionalGeneration\"]"}, {"text_config", "[]"}},
     2, NULL, FT_E_FORMAT, "text_config must be an object (got a list)"},
    /* a text model's key is named where it is (it read "config.json: missing required key", the top level's) */
    {"vision-language wrapper's text_config without hidden_size",
     {{"architectures", "[\"Mistral3ForConditionalGeneration\"]"},
      {"text_config", "{\"model_type\": \"mistral\", \"intermediate_size\": 512, \"num_hidden_layers\": 2, "
                      "\"num_attention_heads\": 8, \"vocab_size\": 1000}"}},
     2, NULL, FT_E_FORMAT, "config.json: text_config: missing required key \"hidden_size\""},
    {"architectures not a list", {{"architectures", "\"LlamaForCausalLM\""}}, 1, NULL, FT_E_FORMAT,
     "architectures must be a non-empty list of strings"},
    {"no architectures, no model_type", {{"architectures", NULL}, {"model_type", NULL}}, 2, NULL, FT_E_FORMAT,
     "missing required key \"architectures\""},
    {"yarn rope", {{"rope_scaling", "{\"rope_type\": \"yarn\", \"factor\": 4.0}"}}, 1, NULL, FT_E_UNSUPPORTED,
     "rope_scaling.rope_type \"yarn\" is not supported (supported: default, linear, llama3)"},
    {"dynamic rope (v5)", {{"rope_parameters", "{\"rope_type\": \"dynamic\", \"rope_theta\": 1e4, \"factor\": 2}"}}, 1,
     NULL, FT_E_UNSUPPORTED, "rope_parameters.rope_type \"dynamic\" is not supported"},
    {"longrope (legacy type key)", {{"rope_scaling", "{\"type\": \"longrope\"}"}}, 1, NULL, FT_E_UNSUPPORTED,
     "rope_scaling.type \"longrope\" is not supported"},
    {"rope_scaling without a type", {{"rope_scaling", "{\"factor\": 2.0}"}}, 1, NULL, FT_E_FORMAT,
     "rope_scaling has no \"rope_type\""},
    {"rope_scaling not an object", {{"rope_scaling", "5"}}, 1, NULL, FT_E_FORMAT, "rope_scaling must be an object"},
    {"llama3 rope missing low_freq_factor",
     {{"rope_scaling", "{\"rope_type\": \"llama3\", \"factor\": 8.0, \"high_freq_factor\": 4.0, "
                       "\"original_max_position_embeddings\": 8192}"}}, 1, NULL, FT_E_FORMAT,
     "missing required key \"rope_scaling.low_freq_factor\""},
    {"linear rope without factor", {{"rope_scaling", "{\"rope_type\": \"linear\"}"}}, 1, NULL, FT_E_FORMAT,
     "missing required key \"rope_scaling.factor\""},
    {"rope_theta as a string", {{"rope_theta", "\"1e4\""}}, 1, NULL, FT_E_FORMAT, "rope_theta must be a number"},
    {"partial rotary", {{"partial_rotary_factor", "0.5"}}, 1, NULL, FT_E_UNSUPPORTED, "partial_rotary_factor = 0.5"},
    {"mlp_bias", {{"mlp_bias", "true"}}, 1, NULL, FT_E_UNSUPPORTED, "mlp_bias = true is not supported"},
    {"tie_word_embeddings as a string", {{"tie_word_embeddings", "\"yes\""}}, 1, NULL, FT_E_FORMAT,
     "tie_word_embeddings must be true or false (got a string)"},
    {"rms_norm_eps as a string", {{"rms_norm_eps", "\"1e-5\""}}, 1, NULL, FT_E_FORMAT, "rms_norm_eps must be a number"},
    {"zero rms_norm_eps", {{"rms_norm_eps", "0"}}, 1, NULL, FT_E_FORMAT, "rms_norm_eps must be positive"},
    {"eos as a string", {{"eos_token_id", "\"2\""}}, 1, NULL, FT_E_FORMAT,
     "eos_token_id must be a non-negative integer or a list of them"},
    {"eos list with a string", {{"eos_token_id", "[2, \"x\"]"}}, 1, NULL, FT_E_FORMAT, "eos_token_id must be"},
    {"Qwen2 sliding window",
     {{"architectures", "[\"Qwen2ForCausalLM\"]"}, {"use_sliding_window", "true"}}, 2, NULL, FT_E_UNSUPPORTED,
     "use_sliding_window = true is not supported"},
    {"Qwen3 sliding layer (v5)",
     {{"architectures", "[\"Qwen3ForCausalLM\"]"}, {"layer_types", "[\"full_attention\", \"sliding_attention\"]"}}, 2,
     NULL, FT_E_UNSUPPORTED, "layer_types[1] is not \"full_attention\""},
    {"not JSON", {{0}}, 0, "{\"hidden_size\": 4096,", FT_E_FORMAT, "not valid JSON"},
    {"not an object", {{0}}, 0, "[{\"hidden_size\": 4096}]", FT_E_FORMAT, "not a JSON object"},
    {"empty file", {{0}}, 0, "", FT_E_FORMAT, "not valid JSON"},
};

static void test_bad_configs(void) {
    int n = (int)(sizeof bad / sizeof bad[0]);
    char json[4096], dir[1024], file[1100];
    for (int i = 0; i < n; i++) {
        const bad_cfg *b = &bad[i];
        snprintf(dir, sizeof dir, "%s/bad%02d", ft_test_tmpdir(), i);
        mkdir(dir, 0755);
        snprintf(file, sizeof file, "%s/config.json", dir);
        if (b->raw) snprintf(json, sizeof json, "%s", b->raw);
        else build_config(json, sizeof json, b->ov, b->nov);
        FILE *f = fopen(file, "w");
        fputs(json, f);
        fclose(f);
        ft_model_config c;
        c.hidden_size = 77;
        ft_status st = ft_cfg_load(&c, dir);
        const char *msg = ft_error_msg();
        FT_CHECK(st == b->want, "%s: status %s, want %s (%s)", b->name, ft_status_str(st), ft_status_str(b->want), msg);
        FT_CHECK(strstr(msg, file) != NULL, "%s: message names %s: %s", b->name, file, msg);
        FT_CHECK(strstr(msg, b->substr) != NULL, "%s: message has \"%s\": %s", b->name, b->substr, msg);
        FT_CHECK(c.hidden_size == 0, "%s: config cleared on failure", b->name);
    }
    printf("ok   %d bad configs rejected\n", n);
    ft_model_config c;
    FT_CHECK(ft_cfg_load(&c, "/nonexistent-ftune/config.json") == FT_E_IO &&
                 strstr(ft_error_msg(), "/nonexistent-ftune/config.json: cannot open"), "missing file: %s",
             ft_error_msg());
}

static ft_status parse_with(ft_model_config *c, const char *const (*ov)[2], int nov) {
    char json[4096];
    build_config(json, sizeof json, ov, nov);
    return ft_cfg_parse(c, json, (int64_t)strlen(json), "mem/config.json");
}

static void test_variants(void) {
    ft_model_config c;
    ft_param_counts pc;
    /* defaults: kv heads = heads for Llama, head_dim = C/H, rope 10000 default */
    const char *const a[][2] = {{"num_key_value_heads", NULL}, {"rope_theta", NULL}, {"rms_norm_eps", NULL},
                                {"max_position_embeddings", NULL}};
    FT_CHECK_OK(parse_with(&c, a, 4));
    FT_CHECK(c.num_key_value_heads == 8 && c.head_dim == 32 && c.rope.theta == 10000.0 && c.rope.type == FT_ROPE_DEFAULT
                 && c.rms_norm_eps == 1e-6 && c.max_position_embeddings == 2048, "Llama defaults");
    /* legacy "type" alias, llama3 */
    const char *const b[][2] = {{"rope_scaling", "{\"type\": \"llama3\", \"factor\": 32.0, \"low_freq_factor\": 1.0, "
                                                 "\"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 8192}"},
                                {"bos_token_id", "[1, 3]"}, {"eos_token_id", "null"}};
    FT_CHECK_OK(parse_with(&c, b, 3));
    FT_CHECK(c.rope.type == FT_ROPE_LLAMA3 && c.rope.factor == 32.0 && c.n_bos == 2 && c.bos_token_id[1] == 3 &&
                 c.n_eos == 0, "legacy type alias, bos list, null eos");
    const char *const d[][2] = {{"rope_scaling", "{\"rope_type\": \"linear\", \"factor\": 2.0}"}};
    FT_CHECK_OK(parse_with(&c, d, 1));
    FT_CHECK(c.rope.type == FT_ROPE_LINEAR && c.rope.factor == 2.0, "linear rope");
    const char *const d2[][2] = {{"rope_scaling", "{\"rope_type\": \"default\"}"}, {"head_dim", "null"}};
    FT_CHECK_OK(parse_with(&c, d2, 2));
    FT_CHECK(c.rope.type == FT_ROPE_DEFAULT && c.head_dim == 32, "explicit default rope, null head_dim");
    /* Llama attention_bias: q, k, v and o biases; counts include them */
    const char *const e[][2] = {{"attention_bias", "true"}};
    FT_CHECK_OK(parse_with(&c, e, 1));
    FT_CHECK(c.qkv_bias && c.o_bias && ft_cfg_has_tensor(&c, FT_TR_ATTN_O_BIAS), "Llama attention_bias");
    FT_CHECK_OK(ft_cfg_param_counts(&c, &pc));
    /* q 256 + k 128 + v 128 + o 256 */
    FT_CHECK(pc.bias_per_layer == 768, "bias count %lld", (long long)pc.bias_per_layer);
    /* Mistral ignores attention_bias; sliding_window default 4096, null = none */
    const char *const f[][2] = {{"architectures", "[\"MistralForCausalLM\"]"}, {"attention_bias", "true"},
                                {"num_key_value_heads", NULL}};
    FT_CHECK_OK(parse_with(&c, f, 3));
    FT_CHECK(c.arch == FT_ARCH_MISTRAL && !c.qkv_bias && !c.o_bias && c.sliding_window == 4096 &&
                 c.num_key_value_heads == 8, "Mistral defaults");
    const char *const g[][2] = {{"architectures", "[\"MistralForCausalLM\"]"}, {"sliding_window", "null"}};
    FT_CHECK_OK(parse_with(&c, g, 2));
    FT_CHECK(c.sliding_window == 0, "Mistral null sliding_window");
    /* model_type alone; Qwen2 biases and a tied, Qwen2.5-0.5B-shaped model */
    const char *const h[][2] = {{"architectures", NULL}, {"model_type", "\"qwen2\""}, {"tie_word_embeddings", "true"}};
    FT_CHECK_OK(parse_with(&c, h, 3));
    FT_CHECK(c.arch == FT_ARCH_QWEN2 && strcmp(c.architecture, "Qwen2ForCausalLM") == 0 && c.qkv_bias && !c.o_bias &&
                 c.tie_word_embeddings && !ft_cfg_has_tensor(&c, FT_TR_OUTPUT), "model_type fallback, tied");
    /* Qwen2.5-0.5B: C 896, F 4864, L 24, H 14, Hkv 2, D 64, V 151936, tied.
     * q,o 802,816 each; k,v 114,688 each; mlp 3*4,358,144 = 13,074,432 -> linear 14,909,440; biases 896+128+128 =
     * 1152; norms 1792 -> 14,912,384 per layer; x24 = 357,897,216; embed 136,134,656; no lm_head; final norm 896
     * -> total 494,032,768 */
    const char *const q[][2] = {{"architectures", "[\"Qwen2ForCausalLM\"]"}, {"hidden_size", "896"},
                                {"intermediate_size", "4864"}, {"num_hidden_layers", "24"},
                                {"num_attention_heads", "14"}, {"num_key_value_heads", "2"},
                                {"vocab_size", "151936"}, {"tie_word_embeddings", "true"}};
    FT_CHECK_OK(parse_with(&c, q, 8));
    FT_CHECK_OK(ft_cfg_param_counts(&c, &pc));
    FT_CHECK(pc.total == 494032768LL && pc.lm_head == 0 && pc.per_layer == 14912384LL, "Qwen2.5-0.5B total %lld",
             (long long)pc.total);
    /* Qwen3 with attention_bias: q, k, v, o biases plus q/k norms */
    const char *const r[][2] = {{"architectures", "[\"Qwen3ForCausalLM\"]"}, {"attention_bias", "true"},
                                {"head_dim", "64"}};
    FT_CHECK_OK(parse_with(&c, r, 3));
    FT_CHECK(c.qkv_bias && c.o_bias && c.qk_norm && ft_cfg_dim(&c, FT_DIM_Q) == 512 && ft_cfg_dim(&c, FT_DIM_KV) == 256,
             "Qwen3 with head_dim 64");
    /* load by file path as well as by directory */
    char p[1024];
    snprintf(p, sizeof p, "%s/tests/fixtures/configs/Qwen3-32B/config.json", ft_test_src_dir());
    FT_CHECK_OK(ft_cfg_load(&c, p));
    FT_CHECK(c.arch == FT_ARCH_QWEN3, "load by file");
}

/* The tables against checkpoints saved by transformers (the tiny models of tests/fixtures/forward
 * and models/stories260K): every tensor the config implies is present with the implied shape,
 * nothing else is in the file, and the parameter count equals the file's element count. */
static int check_checkpoint(const char *dir) {
    ft_model_config c;
    ft_st_model *m = NULL;
    char cfg[1100];
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    struct stat sb;
    if (stat(cfg, &sb) != 0) return 0;
    FT_CHECK_OK(ft_cfg_load(&c, dir));
    FT_CHECK_OK(ft_st_open(&m, dir));
    if (!m) return 0;
    int64_t want = 0, numel = 0;
    for (int64_t l = 0; l < c.num_hidden_layers; l++) {
        for (int r = 0; r < FT_TR_COUNT; r++) {
            const ft_tensor_info *ti = ft_tensor_info_get((ft_tensor_role)r);
            if (!ft_cfg_has_tensor(&c, (ft_tensor_role)r) || (!ti->per_layer && l > 0)) continue;
            char name[256];
            int nd;
            int64_t s[2];
            ft_arch_name(name, sizeof name, ti->hf, l);
            ft_cfg_tensor_shape(&c, (ft_tensor_role)r, &nd, s);
            const ft_st_tensor *t = ft_st_lookup(m, name);
            want++;
            FT_CHECK(t && t->ndim == nd && t->shape[0] == s[0] && (nd == 1 || t->shape[1] == s[1]), "%s: %s", dir, name);
        }
    }
    int64_t in_file = 0; /* a vision-language checkpoint: its text model's tensors (the rest is the vision tower) */
    for (int64_t i = 0; i < ft_st_count(m); i++) {
        const ft_st_tensor *t = ft_st_at(m, i);
        char buf[512];
        if (c.vlm && ft_st_text_name(t->name, buf, sizeof buf) == t->name) continue;
        numel += t->numel, in_file++;
    }
    ft_param_counts pc;
    FT_CHECK_OK(ft_cfg_param_counts(&c, &pc));
    FT_CHECK(want == in_file && pc.total == numel, "%s: %lld tensors expected, %lld in file; %lld params vs %lld",
             dir, (long long)want, (long long)in_file, (long long)pc.total, (long long)numel);
    ft_st_close(m);
    return 1;
}

static void test_real_checkpoints(void) {
    char dir[1024], sub[1400];
    int n = 0;
    snprintf(dir, sizeof dir, "%s/models/stories260K", ft_test_src_dir());
    n += check_checkpoint(dir);
    snprintf(dir, sizeof dir, "%s/tests/fixtures/forward", ft_test_src_dir());
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        snprintf(sub, sizeof sub, "%s/%s", dir, e->d_name);
        n += check_checkpoint(sub);
    }
    if (d) closedir(d);
    printf("ok   %d transformers checkpoints match the tables\n", n);
}

/* config.json as transformers reads it (json.load): a repeated key means its last value, and nothing but
 * whitespace may follow the object (cJSON alone reads the first occurrence and accepts a prefix). */
static void write_config(const char *file, const char *json) {
    FILE *f = fopen(file, "w");
    fputs(json, f);
    fclose(f);
}

static void test_json_rules(void) {
    char base[4096], json[4200], dir[1024], file[1100];
    build_config(base, sizeof base, NULL, 0);
    size_t bl = strlen(base);
    snprintf(dir, sizeof dir, "%s/jsonrules", ft_test_tmpdir());
    mkdir(dir, 0755);
    snprintf(file, sizeof file, "%s/config.json", dir);
    ft_model_config c;
    /* num_hidden_layers 2 in the base; repeated after it (7) and before it (9): the last one counts */
    snprintf(json, sizeof json, "%.*s, \"num_hidden_layers\": 7}", (int)(bl - 1), base);
    write_config(file, json);
    FT_CHECK_OK(ft_cfg_load(&c, dir));
    FT_CHECK(c.num_hidden_layers == 7, "duplicate num_hidden_layers: last value (7), got %lld",
             (long long)c.num_hidden_layers);
    snprintf(json, sizeof json, "{\"num_hidden_layers\": 9, %s", base + 1);
    write_config(file, json);
    FT_CHECK_OK(ft_cfg_load(&c, dir));
    FT_CHECK(c.num_hidden_layers == 2, "duplicate num_hidden_layers first: last value (2), got %lld",
             (long long)c.num_hidden_layers);
    /* nested: rope_scaling with rope_type twice */
    snprintf(json, sizeof json, "%.*s, \"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 2.0, \"rope_type\": \"linear\"}}",
             (int)(bl - 1), base);
    write_config(file, json);
    FT_CHECK_OK(ft_cfg_load(&c, dir));
    FT_CHECK(c.rope.type == FT_ROPE_LINEAR && c.rope.factor == 2.0, "nested duplicate rope_type: last (linear)");
    /* trailing whitespace is fine, trailing garbage is not */
    snprintf(json, sizeof json, "%s\n\n  \t\r\n", base);
    write_config(file, json);
    FT_CHECK_OK(ft_cfg_load(&c, dir));
    snprintf(json, sizeof json, "%s\n}\n", base);
    write_config(file, json);
    c.hidden_size = 77;
    ft_status st = ft_cfg_load(&c, dir);
    const char *msg = ft_error_msg();
    FT_CHECK(st == FT_E_FORMAT && strstr(msg, file) && strstr(msg, "unexpected data after the JSON value at byte") &&
                 c.hidden_size == 0,
             "trailing garbage rejected naming the file: %s", msg);
    printf("ok   config.json: duplicate keys last-wins, trailing garbage rejected\n");
}

int main(void) {
    test_tables();
    test_real_checkpoints();
    test_good_configs();
    test_shapes();
    test_variants();
    test_bad_configs();
    test_json_rules();
    return ft_test_finish();
}
