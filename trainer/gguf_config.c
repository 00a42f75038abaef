/* gguf_config.c: see gguf_config.h. Key names and defaults follow llama.cpp's llama-arch.cpp and
 * llama-model.cpp (load_hparams), which is what reads these files everywhere else. */
#include "trainer/gguf_config.h"

#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int ft_is_gguf_file(const char *path) {
    struct stat sb;
    if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) return 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    char magic[4];
    ssize_t n = read(fd, magic, 4);
    close(fd);
    return n == 4 && memcmp(magic, "GGUF", 4) == 0;
}

int ft_is_gguf_path(const char *path) {
    const size_t n = strlen(path);
    struct stat sb;
    if (ft_is_gguf_file(path)) return 1;
    return n > 5 && strcmp(path + n - 5, ".gguf") == 0 && !(stat(path, &sb) == 0 && S_ISDIR(sb.st_mode));
}

/* An integer hyperparameter "<arch>.<key>": any integer type (llama.cpp's converters write UINT32,
 * other writers INT32 or UINT64). *found = 0 when absent; an array (per-layer values) is refused. */
static ft_status ft_gk_int(const ft_gguf *g, const char *path, const char *arch, const char *key, int required,
                           int64_t *out, int *found) {
    char name[160];
    snprintf(name, sizeof name, "%s%s%s", arch ? arch : "", arch ? "." : "", key);
    const int64_t i = ft_gguf_find_key(g, name);
    if (found) *found = i >= 0;
    if (i < 0) return required ? FT_ERR(FT_E_FORMAT, "%s: no key %s", path, name) : FT_OK;
    const int t = ft_gguf_kv_type(g, i);
    if (t == FT_GGUF_ARRAY)
        return FT_ERR(FT_E_UNSUPPORTED, "%s: %s differs between layers (an array); ftune trains models whose "
                      "layers are alike", path, name);
    double v;
    char buf[64];
    ft_gguf_kv_format(g, i, buf, sizeof buf);
    switch (t) {
    case FT_GGUF_UINT8: case FT_GGUF_INT8: case FT_GGUF_UINT16: case FT_GGUF_INT16: case FT_GGUF_UINT32:
    case FT_GGUF_INT32: case FT_GGUF_UINT64: case FT_GGUF_INT64: v = strtod(buf, NULL); break;
    default: return FT_ERR(FT_E_FORMAT, "%s: %s must be an integer (got %s)", path, name, ft_gguf_vtype_name(t));
    }
    if (!(v >= 0 && v <= (double)(1LL << 40)))
        return FT_ERR(FT_E_FORMAT, "%s: %s = %s is out of range", path, name, buf);
    *out = (int64_t)v;
    return FT_OK;
}

/* A float hyperparameter (FLOAT32, or FLOAT64 from other writers); def when absent. */
static ft_status ft_gk_num(const ft_gguf *g, const char *path, const char *arch, const char *key, double def,
                           double *out) {
    char name[160];
    snprintf(name, sizeof name, "%s.%s", arch, key);
    const int64_t i = ft_gguf_find_key(g, name);
    *out = def;
    if (i < 0) return FT_OK;
    const int t = ft_gguf_kv_type(g, i);
    float f;
    if (ft_gguf_get_f32(g, i, &f)) {
        *out = f;
    } else if (t == FT_GGUF_FLOAT64) {
        char buf[64];
        ft_gguf_kv_format(g, i, buf, sizeof buf);
        *out = strtod(buf, NULL);
    } else {
        return FT_ERR(FT_E_FORMAT, "%s: %s must be a float (got %s)", path, name, ft_gguf_vtype_name(t));
    }
    if (!(*out > 0) || isinf(*out)) return FT_ERR(FT_E_FORMAT, "%s: %s = %g must be positive", path, name, *out);
    return FT_OK;
}

/* A string key; NULL when absent. */
static ft_status ft_gk_str(const ft_gguf *g, const char *path, const char *key, char *out, size_t cap, int *found) {
    const int64_t i = ft_gguf_find_key(g, key);
    *found = i >= 0;
    if (i < 0) return FT_OK;
    const char *s;
    int64_t len;
    if (!ft_gguf_get_str(g, i, &s, &len))
        return FT_ERR(FT_E_FORMAT, "%s: %s must be a string (got %s)", path, key, ft_gguf_vtype_name(ft_gguf_kv_type(g, i)));
    snprintf(out, cap, "%.*s", (int)(len < (int64_t)cap ? len : (int64_t)cap - 1), s);
    return FT_OK;
}

static const ft_gguf_tensor *ft_gt(const ft_gguf *g, const char *pattern, int64_t layer) {
    char name[96];
    if (ft_arch_name(name, sizeof name, pattern, layer) < 0) return NULL;
    return ft_gguf_tensor_find(g, name);
}

/* Llama 3 rope scaling from rope_freqs.weight (convert_hf_to_gguf.py's divisors f[i] of inv_freq[i]).
 * The divisors depend on original_max_pos / low_freq_factor and original_max_pos / high_freq_factor
 * only, so low_freq_factor is taken as 1 and the other two solved from the smoothed band, where
 * s = (1/f - 1/factor) / (1 - 1/factor) is linear in 1/wavelength; a file whose band is too narrow
 * to solve is matched against Llama 3.1's own ratio (high 4) over powers of two. Either way the
 * result must reproduce every divisor. */
static ft_status ft_gguf_llama3(const ft_gguf *g, const char *path, const ft_gguf_tensor *t, ft_rope_cfg *r) {
    const int64_t half = r->dim / 2;
    if (t->n_dims != 1 || t->ne[0] != half)
        return FT_ERR(FT_E_FORMAT, "%s: rope_freqs.weight has %lld values, head_dim %lld needs %lld", path,
                      (long long)t->nelem, (long long)r->dim, (long long)half);
    float f[512];
    if (half > 512) return FT_ERR(FT_E_UNSUPPORTED, "%s: head_dim %lld is too large", path, (long long)r->dim);
    FT_TRY(ft_gguf_tensor_rows_f32(g, t, 0, 1, f));
    double factor = 1;
    for (int64_t i = 0; i < half; i++) {
        if (!(f[i] >= 1 && f[i] < 1e6))
            return FT_ERR(FT_E_FORMAT, "%s: rope_freqs.weight[%lld] = %g is not a llama3 divisor", path,
                          (long long)i, (double)f[i]);
        factor = f[i] > factor ? f[i] : factor;
    }
    if (factor == 1) return FT_OK; /* divisors of 1: plain rope */
    /* least squares s = a * u + b over the band, u = 1 / wavelength */
    double su = 0, ss = 0, suu = 0, sus = 0;
    int n = 0;
    for (int64_t i = 0; i < half; i++) {
        if (!(f[i] > 1 + 1e-6 && f[i] < factor * (1 - 1e-6))) continue;
        const double freq = 1.0 / pow(r->theta, (double)(2 * i) / (double)r->dim), u = freq / (2 * M_PI);
        const double s = (1.0 / f[i] - 1.0 / factor) / (1 - 1.0 / factor);
        su += u, ss += s, suu += u * u, sus += u * s, n++;
    }
    ft_rope_cfg c = *r;
    c.type = FT_ROPE_LLAMA3, c.factor = factor, c.low_freq_factor = 1;
    float want[512], got[512], base[512];
    ft_rope_cfg plain = *r;
    plain.type = FT_ROPE_DEFAULT;
    FT_TRY(ft_rope_inv_freq(&plain, base));
    for (int64_t i = 0; i < half; i++) want[i] = base[i] / f[i];
    for (int attempt = -1; attempt < 64; attempt++) {
        if (attempt <= 0) {
            /* the fit is exact to float rounding only (high 4.0000002 for Llama 3.1's 4, a few inv_freq an
             * ulp off the model's): first the fit rounded to 3 decimals, which config files hold, then as is */
            const double den = n * suu - su * su;
            if (n < 2 || !(fabs(den) > 0)) continue;
            const double a = (n * sus - su * ss) / den, b = (ss - a * su) / n;
            if (!(b < 0)) continue;
            c.high_freq_factor = 1 - 1 / b, c.original_max_pos = (int64_t)llround(-a / b);
            if (attempt < 0) c.high_freq_factor = nearbyint(c.high_freq_factor * 1000) / 1000;
        } else {
            c.high_freq_factor = 4, c.original_max_pos = (int64_t)1 << attempt;
            if (attempt > 40) break;
        }
        if (c.original_max_pos <= 0 || ft_rope_inv_freq(&c, got) != FT_OK) continue;
        int ok = 1;
        for (int64_t i = 0; i < half && ok; i++) ok = fabs(got[i] - want[i]) <= 1e-5 * fabs(want[i]);
        if (ok) {
            *r = c;
            return FT_OK;
        }
    }
    return FT_ERR(FT_E_UNSUPPORTED, "%s: rope_freqs.weight is not Llama 3 rope scaling of any parameters ftune "
                  "recognizes (divisors from 1 to %g)", path, factor);
}

ft_status ft_gguf_linear_dtypes(const ft_gguf *g, const char *path, int64_t layers, int nf4, ft_dtype *types) {
    for (int64_t l = 0; l < layers; l++) {
        for (int k = 0; k < FT_LIN_COUNT; k++) {
            const char *pattern = ft_tensor_info_get(ft_linear_info_get((ft_linear)k)->weight)->gguf;
            const ft_gguf_tensor *t = ft_gt(g, pattern, l);
            char name[96];
            ft_arch_name(name, sizeof name, pattern, l);
            if (!t) return FT_ERR(FT_E_FORMAT, "%s: no tensor %s", path, name);
            ft_dtype dt;
            if (!ft_dtype_from_ggml(t->type, &dt))
                return FT_ERR(FT_E_UNSUPPORTED, "%s: tensor %s has type %s; ftune trains on F32, F16, BF16, Q4_0, "
                              "Q4_1, Q5_0, Q5_1, Q8_0, Q2_K..Q6_K, IQ4_NL and IQ4_XS weights (not the other IQ, TQ "
                              "or MXFP4 types)", path, name, ft_ggml_type_name(t->type));
            if (!ft_dtype_is_ggml(dt) && nf4) dt = FT_NF4;
            types[l * FT_LIN_COUNT + k] = dt;
        }
    }
    /* token_embd and output are decoded to BF16 when loaded (gguf_load.c) */
    static const char *const kept[] = {"token_embd.weight", "output.weight"};
    for (int k = 0; k < 2; k++) {
        const ft_gguf_tensor *t = ft_gguf_tensor_find(g, kept[k]);
        if (t && !ft_ggml_can_decode(t->type))
            return FT_ERR(FT_E_UNSUPPORTED, "%s: tensor %s has type %s, which ftune does not read", path, kept[k],
                          ft_ggml_type_name(t->type));
    }
    return FT_OK;
}

/* Every tensor the config says the model reads is present with the shape the keys imply. Checked with
 * the config, before anything is sized from the keys: a wrong block_count or feed_forward_length must
 * be a line naming the file and the tensor, not an allocation of terabytes (or a plan that "does not
 * fit") before the first tensor is compared. */
static ft_status ft_gguf_check_tensors(const ft_gguf *g, const char *path, const char *arch, const ft_model_config *cfg) {
    const int64_t L = cfg->num_hidden_layers;
    if (L > ft_gguf_tensor_count(g))
        return FT_ERR(FT_E_FORMAT, "%s: %s.block_count is %lld, more layers than the file has tensors (%lld)", path,
                      arch, (long long)L, (long long)ft_gguf_tensor_count(g));
    for (int r = 0; r < FT_TR_COUNT; r++) {
        const ft_tensor_info *ti = ft_tensor_info_get((ft_tensor_role)r);
        if (!ft_cfg_has_tensor(cfg, (ft_tensor_role)r)) continue;
        int nd;
        int64_t s[2];
        ft_cfg_tensor_shape(cfg, (ft_tensor_role)r, &nd, s);
        const int64_t ne0 = nd == 2 ? s[1] : s[0], ne1 = nd == 2 ? s[0] : 1; /* GGUF order: [in, out] */
        for (int64_t l = 0; l < (ti->per_layer ? L : 1); l++) {
            char name[96];
            ft_arch_name(name, sizeof name, ti->gguf, l);
            const ft_gguf_tensor *t = ft_gguf_tensor_find(g, name);
            if (!t)
                return ti->per_layer ? FT_ERR(FT_E_FORMAT, "%s: no tensor %s (%s.block_count is %lld)", path, name, arch,
                                              (long long)L)
                                     : FT_ERR(FT_E_FORMAT, "%s: no tensor %s", path, name);
            if (t->ne[0] != ne0 || t->ne[1] != ne1 || t->n_dims > 2 || (nd == 2 && t->n_dims != 2))
                return FT_ERR(FT_E_FORMAT, "%s: tensor %s has ne [%lld, %lld], the model's metadata implies [%lld, %lld]",
                              path, name, (long long)t->ne[0], (long long)t->ne[1], (long long)ne0, (long long)ne1);
        }
    }
    if (ft_gt(g, "blk.%d.attn_norm.weight", L))
        return FT_ERR(FT_E_FORMAT, "%s: %s.block_count is %lld but the file has tensors of layer %lld "
                      "(blk.%lld.attn_norm.weight)", path, arch, (long long)L, (long long)L, (long long)L);
    return FT_OK;
}

ft_status ft_cfg_from_gguf(ft_model_config *cfg, const ft_gguf *g, const char *path) {
    memset(cfg, 0, sizeof *cfg);
    char arch[64];
    int found;
    FT_TRY(ft_gk_str(g, path, "general.architecture", arch, sizeof arch, &found));
    if (!found) return FT_ERR(FT_E_FORMAT, "%s: no key general.architecture", path);
    if (strcmp(arch, "llama") == 0) cfg->arch = FT_ARCH_LLAMA;
    else if (strcmp(arch, "qwen2") == 0) cfg->arch = FT_ARCH_QWEN2;
    else if (strcmp(arch, "qwen3") == 0) cfg->arch = FT_ARCH_QWEN3;
    else
        return FT_ERR(FT_E_UNSUPPORTED, "%s: general.architecture \"%s\" is not supported (llama, qwen2, qwen3: "
                      "Llama, Mistral, Qwen2.5, Qwen3)", path, arch);
    const ft_arch_info *ai = ft_arch_get(cfg->arch);
    snprintf(cfg->architecture, sizeof cfg->architecture, "%s", ai->hf_architecture);
    snprintf(cfg->model_type, sizeof cfg->model_type, "%s", ai->name);

    FT_TRY(ft_gk_int(g, path, arch, "block_count", 1, &cfg->num_hidden_layers, NULL));
    FT_TRY(ft_gk_int(g, path, arch, "embedding_length", 1, &cfg->hidden_size, NULL));
    FT_TRY(ft_gk_int(g, path, arch, "feed_forward_length", 1, &cfg->intermediate_size, NULL));
    FT_TRY(ft_gk_int(g, path, arch, "attention.head_count", 1, &cfg->num_attention_heads, NULL));
    const int64_t C = cfg->hidden_size, H = cfg->num_attention_heads;
    if (C <= 0 || H <= 0 || cfg->num_hidden_layers <= 0 || cfg->intermediate_size <= 0)
        return FT_ERR(FT_E_FORMAT, "%s: %s.embedding_length, feed_forward_length, block_count and "
                      "attention.head_count must be positive", path, arch);
    FT_TRY(ft_gk_int(g, path, arch, "attention.head_count_kv", 0, &cfg->num_key_value_heads, &found));
    if (!found) cfg->num_key_value_heads = H;
    if (cfg->num_key_value_heads <= 0 || H % cfg->num_key_value_heads != 0)
        return FT_ERR(FT_E_FORMAT, "%s: %s.attention.head_count (%lld) is not divisible by head_count_kv (%lld)",
                      path, arch, (long long)H, (long long)cfg->num_key_value_heads);
    FT_TRY(ft_gk_int(g, path, arch, "attention.key_length", 0, &cfg->head_dim, &found));
    if (!found) {
        if (C % H != 0)
            return FT_ERR(FT_E_FORMAT, "%s: %s.embedding_length (%lld) is not divisible by attention.head_count "
                          "(%lld) and no attention.key_length is given", path, arch, (long long)C, (long long)H);
        cfg->head_dim = C / H;
    }
    int64_t v;
    FT_TRY(ft_gk_int(g, path, arch, "attention.value_length", 0, &v, &found));
    if (found && v != cfg->head_dim)
        return FT_ERR(FT_E_UNSUPPORTED, "%s: %s.attention.value_length %lld differs from key_length %lld", path,
                      arch, (long long)v, (long long)cfg->head_dim);
    if (cfg->head_dim <= 0 || cfg->head_dim % 2 != 0)
        return FT_ERR(FT_E_FORMAT, "%s: head_dim %lld must be even and positive (RoPE rotates pairs)", path,
                      (long long)cfg->head_dim);
    if (H > (1 << 20) || cfg->head_dim > (1 << 20)) /* their products (q rows) must not overflow */
        return FT_ERR(FT_E_FORMAT, "%s: %s.attention.head_count %lld or head_dim %lld is out of range", path, arch,
                      (long long)H, (long long)cfg->head_dim);
    FT_TRY(ft_gk_int(g, path, arch, "rope.dimension_count", 0, &v, &found));
    if (found && v != cfg->head_dim)
        return FT_ERR(FT_E_UNSUPPORTED, "%s: %s.rope.dimension_count %lld is not head_dim %lld (partial rotary "
                      "embeddings are not supported)", path, arch, (long long)v, (long long)cfg->head_dim);
    FT_TRY(ft_gk_int(g, path, arch, "context_length", 0, &cfg->max_position_embeddings, &found));
    if (!found) cfg->max_position_embeddings = ai->default_max_pos;
    if (cfg->max_position_embeddings <= 0)
        return FT_ERR(FT_E_FORMAT, "%s: %s.context_length must be positive (got 0)", path, arch);
    FT_TRY(ft_gk_num(g, path, arch, "attention.layer_norm_rms_epsilon", ai->default_rms_eps, &cfg->rms_norm_eps));

    /* rope: the base frequency, then linear or llama3 scaling */
    cfg->rope.type = FT_ROPE_DEFAULT, cfg->rope.dim = cfg->head_dim;
    FT_TRY(ft_gk_num(g, path, arch, "rope.freq_base", 10000.0, &cfg->rope.theta));
    char key[128], scaling[32] = "";
    snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
    FT_TRY(ft_gk_str(g, path, key, scaling, sizeof scaling, &found));
    double factor;
    FT_TRY(ft_gk_num(g, path, arch, "rope.scaling.factor", 1.0, &factor));
    if (strcmp(scaling, "linear") == 0 && factor != 1.0) {
        cfg->rope.type = FT_ROPE_LINEAR, cfg->rope.factor = factor;
    } else if (scaling[0] && strcmp(scaling, "none") != 0 && strcmp(scaling, "linear") != 0) {
        return FT_ERR(FT_E_UNSUPPORTED, "%s: %s = \"%s\" is not supported (none, linear, or Llama 3's "
                      "rope_freqs.weight)", path, key, scaling);
    }
    const ft_gguf_tensor *rf = ft_gguf_tensor_find(g, FT_GGUF_ROPE_FREQS);
    if (rf) {
        if (cfg->rope.type != FT_ROPE_DEFAULT)
            return FT_ERR(FT_E_UNSUPPORTED, "%s: both %s scaling and rope_freqs.weight", path, key);
        FT_TRY(ft_gguf_llama3(g, path, rf, &cfg->rope));
    }

    /* the tensors decide what the keys do not say */
    const ft_gguf_tensor *emb = ft_gguf_tensor_find(g, "token_embd.weight");
    if (!emb) return FT_ERR(FT_E_FORMAT, "%s: no tensor token_embd.weight", path);
    if (emb->n_dims != 2 || emb->ne[0] != C)
        return FT_ERR(FT_E_FORMAT, "%s: token_embd.weight has ne [%lld, %lld], embedding_length is %lld", path,
                      (long long)emb->ne[0], (long long)emb->ne[1], (long long)C);
    cfg->vocab_size = emb->ne[1];
    cfg->tie_word_embeddings = ft_gguf_tensor_find(g, "output.weight") == NULL;
    cfg->qkv_bias = ft_gt(g, "blk.%d.attn_q.bias", 0) != NULL;
    cfg->o_bias = ft_gt(g, "blk.%d.attn_output.bias", 0) != NULL;
    cfg->qk_norm = ft_gt(g, "blk.%d.attn_q_norm.weight", 0) != NULL;
    if (cfg->qk_norm != ai->qk_norm)
        return FT_ERR(FT_E_FORMAT, "%s: %s blk.0.attn_q_norm.weight (general.architecture %s)", path,
                      cfg->qk_norm ? "unexpected tensor" : "no tensor", arch);
    if (ft_gt(g, "blk.%d.ffn_gate_inp.weight", 0))
        return FT_ERR(FT_E_UNSUPPORTED, "%s: a mixture of experts (blk.0.ffn_gate_inp.weight) is not supported", path);

    /* special ids as the config's: bos, then eos and the end of turn (generation stops at either) */
    int64_t id;
    FT_TRY(ft_gk_int(g, path, NULL, "tokenizer.ggml.bos_token_id", 0, &id, &found));
    if (found) cfg->bos_token_id[cfg->n_bos++] = id;
    FT_TRY(ft_gk_int(g, path, NULL, "tokenizer.ggml.eos_token_id", 0, &id, &found));
    if (found) cfg->eos_token_id[cfg->n_eos++] = id;
    FT_TRY(ft_gk_int(g, path, NULL, "tokenizer.ggml.eot_token_id", 0, &id, &found));
    if (found && !(cfg->n_eos && cfg->eos_token_id[0] == id)) cfg->eos_token_id[cfg->n_eos++] = id;
    return ft_gguf_check_tensors(g, path, arch, cfg);
}
