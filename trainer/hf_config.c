/* hf_config.c: config.json parsing and validation (cJSON), shapes and parameter counts.
 * See hf_config.h. Keys are looked up case-sensitively; a JSON null counts as absent for optional
 * keys (HF writes `"head_dim": null`, `"rope_scaling": null`). Dimensions are capped at 2^31-1
 * (GGUF stores them as UINT32; layer indices are formatted with %d). */
#include "trainer/hf_config.h"

#include "trainer/gguf_config.h"

#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "kernels/fileio.h"
#include "kernels/json.h"
#include "kernels/mem.h"

#define FT_CFG_DIM_MAX 2147483647LL
#define FT_CFG_JSON_INT_MAX 9007199254740992.0 /* 2^53 */

static const char *ft_cfg_type(const cJSON *v) {
    if (cJSON_IsString(v)) return "a string";
    if (cJSON_IsNumber(v)) return "a number";
    if (cJSON_IsBool(v)) return "a boolean";
    if (cJSON_IsNull(v)) return "null";
    if (cJSON_IsArray(v)) return "a list";
    if (cJSON_IsObject(v)) return "an object";
    return "invalid";
}

/* The value of key, or NULL when absent or null. */
static const cJSON *ft_cfg_item(const cJSON *obj, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return v && !cJSON_IsNull(v) ? v : NULL;
}

static ft_status ft_cfg_missing(const char *path, const char *pre, const char *key) {
    return FT_ERR(FT_E_FORMAT, "%s: missing required key \"%s%s\"", path, pre, key);
}

static int ft_cfg_is_int(const cJSON *v, int64_t *out) {
    if (!cJSON_IsNumber(v)) return 0;
    double d = v->valuedouble;
    if (!isfinite(d) || fabs(d) > FT_CFG_JSON_INT_MAX || d != floor(d)) return 0;
    *out = (int64_t)d;
    return 1;
}

/* Integer key; `pre` prefixes the key in messages ("rope_scaling."). */
static ft_status ft_cfg_int(const char *path, const cJSON *obj, const char *pre, const char *key, int required,
                            int64_t def, int64_t *out) {
    const cJSON *v = ft_cfg_item(obj, key);
    if (!v) {
        if (required) return ft_cfg_missing(path, pre, key);
        *out = def;
        return FT_OK;
    }
    if (!ft_cfg_is_int(v, out)) {
        if (cJSON_IsNumber(v))
            return FT_ERR(FT_E_FORMAT, "%s: %s%s must be an integer (got %g)", path, pre, key, v->valuedouble);
        return FT_ERR(FT_E_FORMAT, "%s: %s%s must be an integer (got %s)", path, pre, key, ft_cfg_type(v));
    }
    return FT_OK;
}

/* A model dimension: integer in [1, 2^31-1]. */
static ft_status ft_cfg_dimension(const char *path, const cJSON *obj, const char *key, int required, int64_t def,
                                  int64_t *out) {
    FT_TRY(ft_cfg_int(path, obj, "", key, required, def, out));
    if (*out <= 0) return FT_ERR(FT_E_FORMAT, "%s: %s must be positive (got %lld)", path, key, (long long)*out);
    if (*out > FT_CFG_DIM_MAX)
        return FT_ERR(FT_E_FORMAT, "%s: %s = %lld is out of range (at most %lld)", path, key, (long long)*out,
                      FT_CFG_DIM_MAX);
    return FT_OK;
}

static ft_status ft_cfg_num(const char *path, const cJSON *obj, const char *pre, const char *key, int required,
                            double def, double *out) {
    const cJSON *v = ft_cfg_item(obj, key);
    if (!v) {
        if (required) return ft_cfg_missing(path, pre, key);
        *out = def;
        return FT_OK;
    }
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return FT_ERR(FT_E_FORMAT, "%s: %s%s must be a number (got %s)", path, pre, key, ft_cfg_type(v));
    *out = v->valuedouble;
    return FT_OK;
}

static ft_status ft_cfg_pos_num(const char *path, const cJSON *obj, const char *pre, const char *key, int required,
                                double def, double *out) {
    FT_TRY(ft_cfg_num(path, obj, pre, key, required, def, out));
    if (!(*out > 0)) return FT_ERR(FT_E_FORMAT, "%s: %s%s must be positive (got %g)", path, pre, key, *out);
    return FT_OK;
}

static ft_status ft_cfg_bool(const char *path, const cJSON *obj, const char *key, int def, int *out) {
    const cJSON *v = ft_cfg_item(obj, key);
    if (!v) {
        *out = def;
        return FT_OK;
    }
    if (!cJSON_IsBool(v))
        return FT_ERR(FT_E_FORMAT, "%s: %s must be true or false (got %s)", path, key, ft_cfg_type(v));
    *out = cJSON_IsTrue(v);
    return FT_OK;
}

/* String key; *out is NULL when absent (or def when given). */
static ft_status ft_cfg_str(const char *path, const cJSON *obj, const char *pre, const char *key, const char *def,
                            const char **out) {
    const cJSON *v = ft_cfg_item(obj, key);
    if (!v) {
        *out = def;
        return FT_OK;
    }
    if (!cJSON_IsString(v))
        return FT_ERR(FT_E_FORMAT, "%s: %s%s must be a string (got %s)", path, pre, key, ft_cfg_type(v));
    *out = v->valuestring;
    return FT_OK;
}

/* bos/eos: an int, a list of ints, or absent/null. */
static ft_status ft_cfg_ids(const char *path, const cJSON *root, const char *key, int64_t *ids, int *n) {
    const cJSON *v = ft_cfg_item(root, key);
    *n = 0;
    if (!v) return FT_OK;
    if (cJSON_IsArray(v)) {
        if (cJSON_GetArraySize(v) > FT_CFG_MAX_TOKEN_IDS)
            return FT_ERR(FT_E_FORMAT, "%s: %s lists more than %d ids", path, key, (int)FT_CFG_MAX_TOKEN_IDS);
        for (const cJSON *e = v->child; e; e = e->next) {
            if (!ft_cfg_is_int(e, &ids[*n]) || ids[*n] < 0)
                return FT_ERR(FT_E_FORMAT, "%s: %s must be a non-negative integer or a list of them", path, key);
            (*n)++;
        }
        return FT_OK;
    }
    if (!ft_cfg_is_int(v, &ids[0]) || ids[0] < 0)
        return FT_ERR(FT_E_FORMAT, "%s: %s must be a non-negative integer or a list of them (got %s)", path, key,
                      ft_cfg_type(v));
    *n = 1;
    return FT_OK;
}

static ft_status ft_cfg_partial_rotary(const char *path, const cJSON *obj, const char *pre) {
    double f = 1.0;
    FT_TRY(ft_cfg_num(path, obj, pre, "partial_rotary_factor", 0, 1.0, &f));
    if (f != 1.0)
        return FT_ERR(FT_E_UNSUPPORTED, "%s: %spartial_rotary_factor = %g is not supported (only full rotary)", path,
                      pre, f);
    return FT_OK;
}

/* RoPE: v5 `rope_parameters` (theta and type inside) or v4 `rope_theta` + `rope_scaling`. */
static ft_status ft_cfg_rope(const char *path, const cJSON *root, const ft_arch_info *ai, ft_rope_cfg *r) {
    memset(r, 0, sizeof *r);
    r->type = FT_ROPE_DEFAULT;
    r->factor = 1.0;
    const cJSON *rp = cJSON_GetObjectItemCaseSensitive(root, "rope_parameters");
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(root, "rope_scaling");
    if (rp && !cJSON_IsNull(rp) && !cJSON_IsObject(rp))
        return FT_ERR(FT_E_FORMAT, "%s: rope_parameters must be an object (got %s)", path, ft_cfg_type(rp));
    if (rs && !cJSON_IsNull(rs) && !cJSON_IsObject(rs))
        return FT_ERR(FT_E_FORMAT, "%s: rope_scaling must be an object (got %s)", path, ft_cfg_type(rs));
    rp = cJSON_IsObject(rp) ? rp : NULL;
    rs = cJSON_IsObject(rs) ? rs : NULL;
    if (rp && ft_cfg_item(rp, "rope_theta"))
        FT_TRY(ft_cfg_pos_num(path, rp, "rope_parameters.", "rope_theta", 1, 0, &r->theta));
    else
        FT_TRY(ft_cfg_pos_num(path, root, "", "rope_theta", 0, ai->default_rope_theta, &r->theta));
    FT_TRY(ft_cfg_partial_rotary(path, root, ""));

    const cJSON *sc = NULL;
    const char *pre = NULL;
    if (rp && (ft_cfg_item(rp, "rope_type") || ft_cfg_item(rp, "type"))) {
        sc = rp;
        pre = "rope_parameters.";
    } else if (rs) {
        sc = rs;
        pre = "rope_scaling.";
    }
    if (!sc) return FT_OK;
    FT_TRY(ft_cfg_partial_rotary(path, sc, pre));
    const char *tkey = ft_cfg_item(sc, "rope_type") ? "rope_type" : "type", *type = NULL;
    FT_TRY(ft_cfg_str(path, sc, pre, tkey, NULL, &type));
    if (!type) return FT_ERR(FT_E_FORMAT, "%s: %.*s has no \"rope_type\"", path, (int)strlen(pre) - 1, pre);
    if (strcmp(type, "default") == 0) return FT_OK;
    if (strcmp(type, "linear") == 0) {
        r->type = FT_ROPE_LINEAR;
        return ft_cfg_pos_num(path, sc, pre, "factor", 1, 0, &r->factor);
    }
    if (strcmp(type, "llama3") == 0) {
        r->type = FT_ROPE_LLAMA3;
        FT_TRY(ft_cfg_pos_num(path, sc, pre, "factor", 1, 0, &r->factor));
        FT_TRY(ft_cfg_pos_num(path, sc, pre, "low_freq_factor", 1, 0, &r->low_freq_factor));
        FT_TRY(ft_cfg_pos_num(path, sc, pre, "high_freq_factor", 1, 0, &r->high_freq_factor));
        FT_TRY(ft_cfg_int(path, sc, pre, "original_max_position_embeddings", 1, 0, &r->original_max_pos));
        if (r->original_max_pos <= 0)
            return FT_ERR(FT_E_FORMAT, "%s: %soriginal_max_position_embeddings must be positive", path, pre);
        if (!(r->high_freq_factor > r->low_freq_factor))
            return FT_ERR(FT_E_FORMAT, "%s: %shigh_freq_factor (%g) must be greater than low_freq_factor (%g)", path,
                          pre, r->high_freq_factor, r->low_freq_factor);
        return FT_OK;
    }
    return FT_ERR(FT_E_UNSUPPORTED, "%s: %s%s \"%.40s\" is not supported (supported: default, linear, llama3)", path,
                  pre, tkey, type);
}

static ft_status ft_cfg_arch(const char *path, const cJSON *root, ft_model_config *cfg) {
    const char *mt = NULL;
    FT_TRY(ft_cfg_str(path, root, "", "model_type", "", &mt));
    snprintf(cfg->model_type, sizeof cfg->model_type, "%s", mt);
    const cJSON *a = ft_cfg_item(root, "architectures");
    if (!a) {
        /* Some hand-made configs carry only model_type; HF files always list architectures. */
        if (!mt[0]) return ft_cfg_missing(path, "", "architectures");
        if (!ft_arch_from_model_type(mt, &cfg->arch))
            return FT_ERR(FT_E_UNSUPPORTED, "%s: model_type \"%.40s\" is not supported (supported: %s)", path, mt,
                          ft_arch_supported_list());
        snprintf(cfg->architecture, sizeof cfg->architecture, "%s", ft_arch_get(cfg->arch)->hf_architecture);
        return FT_OK;
    }
    if (!cJSON_IsArray(a) || !a->child || !cJSON_IsString(a->child))
        return FT_ERR(FT_E_FORMAT, "%s: architectures must be a non-empty list of strings (got %s)", path,
                      ft_cfg_type(a));
    const char *name = a->child->valuestring;
    if (!ft_arch_from_hf(name, &cfg->arch))
        return FT_ERR(FT_E_UNSUPPORTED, "%s: architectures[0] \"%.60s\" is not supported (supported: %s)", path, name,
                      ft_arch_supported_list());
    snprintf(cfg->architecture, sizeof cfg->architecture, "%s", name);
    return FT_OK;
}

/* A vision-language checkpoint (Mistral3ForConditionalGeneration: Mistral Small 3.1 and 3.2) keeps
 * its text model's config under text_config and its weights under language_model. ftune trains and
 * exports that text model and never reads the vision tower. *text: the object to read the model
 * from (root itself for a text-only checkpoint). */
static ft_status ft_cfg_unwrap(const char *path, const cJSON *root, ft_model_config *cfg, const cJSON **text) {
    *text = root;
    const cJSON *a = ft_cfg_item(root, "architectures");
    if (!cJSON_IsArray(a) || !a->child || !cJSON_IsString(a->child)) return FT_OK;
    const char *text_type, *what;
    if (!ft_arch_vlm(a->child->valuestring, &text_type, &what)) return FT_OK;
    const cJSON *tc = ft_cfg_item(root, "text_config");
    if (!tc) return ft_cfg_missing(path, "", "text_config");
    if (!cJSON_IsObject(tc)) return FT_ERR(FT_E_FORMAT, "%s: text_config must be an object (got %s)", path, ft_cfg_type(tc));
    const char *mt = NULL;
    FT_TRY(ft_cfg_str(path, tc, "text_config.", "model_type", "", &mt));
    if (strcmp(mt, text_type) != 0)
        return FT_ERR(FT_E_UNSUPPORTED, "%s: %s with text_config.model_type \"%.40s\" is not supported (only \"%s\", "
                      "%s)", path, a->child->valuestring, mt, text_type, what);
    cfg->vlm = 1;
    *text = tc;
    return FT_OK;
}

static ft_status ft_cfg_fill(const char *file, const cJSON *top, ft_model_config *cfg) {
    const cJSON *root;
    FT_TRY(ft_cfg_unwrap(file, top, cfg, &root));
    /* messages about the text model's keys say where they are: "config.json: text_config: ..." */
    char text_path[4200];
    const char *path = file;
    if (cfg->vlm) snprintf(text_path, sizeof text_path, "%s: text_config", file), path = text_path;
    FT_TRY(ft_cfg_arch(path, root, cfg));
    if (cfg->vlm) snprintf(cfg->architecture, sizeof cfg->architecture, "%s", ft_cfg_item(top, "architectures")->child->valuestring);
    const ft_arch_info *ai = ft_arch_get(cfg->arch);

    FT_TRY(ft_cfg_dimension(path, root, "hidden_size", 1, 0, &cfg->hidden_size));
    FT_TRY(ft_cfg_dimension(path, root, "intermediate_size", 1, 0, &cfg->intermediate_size));
    FT_TRY(ft_cfg_dimension(path, root, "num_hidden_layers", 1, 0, &cfg->num_hidden_layers));
    FT_TRY(ft_cfg_dimension(path, root, "num_attention_heads", 1, 0, &cfg->num_attention_heads));
    FT_TRY(ft_cfg_dimension(path, root, "vocab_size", 1, 0, &cfg->vocab_size));
    const int64_t C = cfg->hidden_size, H = cfg->num_attention_heads;
    FT_TRY(ft_cfg_dimension(path, root, "num_key_value_heads", 0, ai->default_kv_heads ? ai->default_kv_heads : H,
                            &cfg->num_key_value_heads));
    if (H % cfg->num_key_value_heads != 0)
        return FT_ERR(FT_E_FORMAT, "%s: num_attention_heads (%lld) is not divisible by num_key_value_heads (%lld)", path,
                      (long long)H, (long long)cfg->num_key_value_heads);
    if (ft_cfg_item(root, "head_dim")) {
        FT_TRY(ft_cfg_dimension(path, root, "head_dim", 1, 0, &cfg->head_dim));
    } else {
        if (C % H != 0)
            return FT_ERR(FT_E_FORMAT, "%s: hidden_size (%lld) is not divisible by num_attention_heads (%lld) and no "
                          "head_dim is given", path, (long long)C, (long long)H);
        cfg->head_dim = C / H;
    }
    if (cfg->head_dim % 2 != 0)
        return FT_ERR(FT_E_FORMAT, "%s: head_dim %lld must be even (RoPE rotates pairs)", path, (long long)cfg->head_dim);
    if (H * cfg->head_dim > FT_CFG_DIM_MAX)
        return FT_ERR(FT_E_FORMAT, "%s: num_attention_heads * head_dim is out of range", path);
    FT_TRY(ft_cfg_dimension(path, root, "max_position_embeddings", 0, ai->default_max_pos,
                            &cfg->max_position_embeddings));
    FT_TRY(ft_cfg_pos_num(path, root, "", "rms_norm_eps", 0, ai->default_rms_eps, &cfg->rms_norm_eps));

    const char *act;
    FT_TRY(ft_cfg_str(path, root, "", "hidden_act", "silu", &act));
    if (strcmp(act, "silu") != 0 && strcmp(act, "swish") != 0) /* transformers maps both to SiLU */
        return FT_ERR(FT_E_UNSUPPORTED, "%s: hidden_act \"%.40s\" is not supported (only silu)", path, act);

    FT_TRY(ft_cfg_bool(path, root, "tie_word_embeddings", 0, &cfg->tie_word_embeddings));
    /* a wrapper's own key decides in transformers 5 (its text_config's is ignored there). Without one,
     * transformers 5.23 defaults to tied but unties when the checkpoint's lm_head differs from its
     * embeddings (checked with a checkpoint that has no wrapper key, text_config false and an
     * lm_head of its own): text_config's value gives that same model here */
    if (cfg->vlm && ft_cfg_item(top, "tie_word_embeddings"))
        FT_TRY(ft_cfg_bool(file, top, "tie_word_embeddings", 0, &cfg->tie_word_embeddings));
    int attn_bias, mlp_bias;
    FT_TRY(ft_cfg_bool(path, root, "attention_bias", 0, &attn_bias));
    FT_TRY(ft_cfg_bool(path, root, "mlp_bias", 0, &mlp_bias));
    if (mlp_bias) return FT_ERR(FT_E_UNSUPPORTED, "%s: mlp_bias = true is not supported", path);
    switch (ai->attn_bias) {
    case FT_BIAS_NONE: cfg->qkv_bias = cfg->o_bias = 0; break;
    case FT_BIAS_QKV: cfg->qkv_bias = 1; cfg->o_bias = 0; break;
    case FT_BIAS_CONFIG: cfg->qkv_bias = cfg->o_bias = attn_bias; break;
    }
    cfg->qk_norm = ai->qk_norm;

    cfg->sliding_window = 0;
    if (ai->window == FT_WINDOW_KEY) {
        const cJSON *sw = cJSON_GetObjectItemCaseSensitive(root, "sliding_window");
        if (!sw) cfg->sliding_window = ai->default_window;
        else if (!cJSON_IsNull(sw)) FT_TRY(ft_cfg_dimension(path, root, "sliding_window", 1, 0, &cfg->sliding_window));
    } else if (ai->window == FT_WINDOW_FLAG) {
        int use;
        FT_TRY(ft_cfg_bool(path, root, "use_sliding_window", 0, &use));
        if (use) return FT_ERR(FT_E_UNSUPPORTED, "%s: use_sliding_window = true is not supported", path);
        /* transformers v5 states the same per layer */
        const cJSON *lt = ft_cfg_item(root, "layer_types");
        if (lt && !cJSON_IsArray(lt))
            return FT_ERR(FT_E_FORMAT, "%s: layer_types must be a list (got %s)", path, ft_cfg_type(lt));
        int i = 0;
        for (const cJSON *e = lt ? lt->child : NULL; e; e = e->next, i++) {
            if (!cJSON_IsString(e) || strcmp(e->valuestring, "full_attention") != 0)
                return FT_ERR(FT_E_UNSUPPORTED, "%s: layer_types[%d] is not \"full_attention\" (sliding-window "
                              "layers are not supported)", path, i);
        }
    }

    FT_TRY(ft_cfg_rope(path, root, ai, &cfg->rope));
    cfg->rope.dim = cfg->head_dim;
    FT_TRY(ft_cfg_ids(path, root, "bos_token_id", cfg->bos_token_id, &cfg->n_bos));
    FT_TRY(ft_cfg_ids(path, root, "eos_token_id", cfg->eos_token_id, &cfg->n_eos));
    const char *dt;
    FT_TRY(ft_cfg_str(path, root, "", "torch_dtype", NULL, &dt));
    if (!dt) FT_TRY(ft_cfg_str(path, root, "", "dtype", NULL, &dt)); /* transformers v5 name */
    if (!dt && cfg->vlm) FT_TRY(ft_cfg_str(file, top, "", "torch_dtype", NULL, &dt));
    if (!dt && cfg->vlm) FT_TRY(ft_cfg_str(file, top, "", "dtype", NULL, &dt));
    if (!dt) dt = "";
    snprintf(cfg->torch_dtype, sizeof cfg->torch_dtype, "%s", dt);
    return FT_OK;
}

ft_status ft_cfg_parse(ft_model_config *cfg, const char *json, int64_t len, const char *path) {
    memset(cfg, 0, sizeof *cfg);
    cJSON *root = NULL;
    FT_TRY(ft_json_parse(json, len, path, &root)); /* trailing data rejected, duplicate keys last-wins */
    ft_status st = cJSON_IsObject(root) ? ft_cfg_fill(path, root, cfg) : FT_ERR(FT_E_FORMAT, "%s: not a JSON object", path);
    cJSON_Delete(root);
    if (st != FT_OK) memset(cfg, 0, sizeof *cfg);
    return st;
}

ft_status ft_cfg_load(ft_model_config *cfg, const char *path) {
    char file[4096];
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        const char *base = strrchr(path, '/');
        base = base ? base + 1 : path;
        if (strcmp(base, "config.json") == 0) /* not a model directory: DIR/config.json/config.json would mislead */
            return FT_ERR(FT_E_IO, "%s: is a directory, not a file", path);
        snprintf(file, sizeof file, "%s/config.json", path);
    } else {
        snprintf(file, sizeof file, "%s", path);
    }
    if (ft_is_gguf_path(file)) { /* a GGUF model: its metadata is the config */
        ft_gguf *g = NULL;
        FT_TRY(ft_gguf_open(&g, file));
        ft_status st = ft_cfg_from_gguf(cfg, g, file);
        ft_gguf_close(g);
        return st;
    }
    char *buf = NULL;
    int64_t got = 0;
    ft_status st = ft_read_file(file, 16 << 20, &buf, &got, NULL);
    if (st == FT_OK) st = ft_cfg_parse(cfg, buf, got, file);
    ft_free(buf);
    return st;
}

/* ---------------------------------------------------------------------------------------------- */

int64_t ft_cfg_dim(const ft_model_config *cfg, ft_dim d) {
    switch (d) {
    case FT_DIM_ONE: return 1;
    case FT_DIM_C: return cfg->hidden_size;
    case FT_DIM_F: return cfg->intermediate_size;
    case FT_DIM_V: return cfg->vocab_size;
    case FT_DIM_D: return cfg->head_dim;
    case FT_DIM_Q: return cfg->num_attention_heads * cfg->head_dim;
    case FT_DIM_KV: return cfg->num_key_value_heads * cfg->head_dim;
    }
    return 0;
}

int ft_cfg_has_tensor(const ft_model_config *cfg, ft_tensor_role r) {
    const ft_tensor_info *ti = ft_tensor_info_get(r);
    if (!ti) return 0;
    switch (ti->presence) {
    case FT_PRESENT_ALWAYS: return 1;
    case FT_PRESENT_UNTIED: return !cfg->tie_word_embeddings;
    case FT_PRESENT_QKV_BIAS: return cfg->qkv_bias;
    case FT_PRESENT_O_BIAS: return cfg->o_bias;
    case FT_PRESENT_QK_NORM: return cfg->qk_norm;
    }
    return 0;
}

void ft_cfg_tensor_shape(const ft_model_config *cfg, ft_tensor_role r, int *ndim, int64_t shape[2]) {
    const ft_tensor_info *ti = ft_tensor_info_get(r);
    *ndim = ti ? ti->ndim : 0;
    shape[0] = ti ? ft_cfg_dim(cfg, ti->dims[0]) : 0;
    shape[1] = ti ? ft_cfg_dim(cfg, ti->dims[1]) : 0;
}

ft_status ft_cfg_linear_shape(const ft_model_config *cfg, const char *module, int64_t shape[2]) {
    ft_linear l;
    if (!module || !ft_linear_from_name(module, &l))
        return FT_ERR(FT_E_ARG, "unknown linear module \"%.60s\" (valid: q_proj, k_proj, v_proj, o_proj, gate_proj, "
                      "up_proj, down_proj)", module ? module : "(null)");
    const ft_linear_info *li = ft_linear_info_get(l);
    shape[0] = ft_cfg_dim(cfg, li->out_dim);
    shape[1] = ft_cfg_dim(cfg, li->in_dim);
    return FT_OK;
}

ft_status ft_cfg_param_counts(const ft_model_config *cfg, ft_param_counts *out) {
    memset(out, 0, sizeof *out);
    int ovf = 0;
    for (int r = 0; r < FT_TR_COUNT; r++) {
        if (!ft_cfg_has_tensor(cfg, (ft_tensor_role)r)) continue;
        const ft_tensor_info *ti = ft_tensor_info_get((ft_tensor_role)r);
        int nd;
        int64_t s[2], n;
        ft_cfg_tensor_shape(cfg, (ft_tensor_role)r, &nd, s);
        ovf |= __builtin_mul_overflow(s[0], nd == 2 ? s[1] : 1, &n);
        int64_t *dst;
        if (!ti->per_layer) dst = r == FT_TR_TOKEN_EMBD ? &out->embedding : r == FT_TR_OUTPUT ? &out->lm_head
                                                                                              : &out->final_norm;
        else if (ti->linear != FT_LIN_COUNT && nd == 2) dst = &out->linear[ti->linear];
        else if (ti->linear != FT_LIN_COUNT) dst = &out->bias_per_layer;
        else dst = &out->norm_per_layer;
        ovf |= __builtin_add_overflow(*dst, n, dst);
    }
    for (int l = 0; l < FT_LIN_COUNT; l++) ovf |= __builtin_add_overflow(out->linear_per_layer, out->linear[l], &out->linear_per_layer);
    ovf |= __builtin_add_overflow(out->linear_per_layer, out->bias_per_layer, &out->per_layer);
    ovf |= __builtin_add_overflow(out->per_layer, out->norm_per_layer, &out->per_layer);
    ovf |= __builtin_mul_overflow(out->per_layer, cfg->num_hidden_layers, &out->layers);
    ovf |= __builtin_add_overflow(out->embedding, out->layers, &out->total);
    ovf |= __builtin_add_overflow(out->total, out->final_norm, &out->total);
    ovf |= __builtin_add_overflow(out->total, out->lm_head, &out->total);
    if (ovf) return FT_ERR(FT_E_FORMAT, "%s model: parameter count overflows 64 bits", cfg->architecture);
    return FT_OK;
}
