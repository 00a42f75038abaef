/* adapter.c: see adapter.h. */
#include "export/adapter.h"

#include "trainer/gguf_config.h"

#include <cJSON.h>
#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "export/adapter_tokens.h"
#include "export/export_util.h"
#include "export/gguf.h"
#include "export/safetensors_write.h"
#include "export/stagedir.h"
#include "kernels/fileio.h"
#include "kernels/json.h"
#include "kernels/log.h"
#include "kernels/mem.h"
#include "trainer/safetensors_read.h"

static int ft_has_config(const char *dir) {
    char p[4400];
    snprintf(p, sizeof p, "%s/adapter_config.json", dir);
    return ft_is_file(p);
}

ft_status ft_adapter_resolve(const char *path, char *out, size_t cap) {
    if (!ft_is_dir(path)) return FT_ERR(FT_E_IO, "%s: not a directory (expected a PEFT adapter, run or checkpoint directory)", path);
    char c[4200];
    if (ft_has_config(path)) return ft_copy_path(out, cap, path);
    static const char *const subs[] = {"adapter", "final", "final/adapter"};
    for (size_t i = 0; i < sizeof subs / sizeof *subs; i++) {
        snprintf(c, sizeof c, "%s/%s", path, subs[i]);
        if (ft_has_config(c)) return ft_copy_path(out, cap, c);
    }
    return FT_ERR(FT_E_FORMAT,
                  "%s: no adapter found: expected adapter_config.json + adapter_model.safetensors here or in final/ "
                  "(a run directory), or checkpoints/step-N.ckpt",
                  path);
}

void ft_adapter_free(ft_adapter *a) {
    if (!a) return;
    for (int64_t i = 0; i < a->n; i++) free(a->m[i].A), free(a->m[i].B), free(a->m[i].mag);
    free(a->m);
    free(a->rank_pattern);
    free(a->alpha_pattern);
    ft_adapter_tokens_free(a);
    memset(a, 0, sizeof *a);
}

/* PEFT's pattern rule: key matches module name `mod` when mod == key or mod ends with "." + key. */
static int ft_pattern_match(const char *mod, const char *key) {
    size_t lm = strlen(mod), lk = strlen(key);
    if (lm == lk) return strcmp(mod, key) == 0;
    return lm > lk && mod[lm - lk - 1] == '.' && strcmp(mod + lm - lk, key) == 0;
}

static int ft_mod_cmp(const void *x, const void *y) {
    const ft_adapter_mod *a = x, *b = y;
    if (a->layer != b->layer) return a->layer < b->layer ? -1 : 1;
    return (int)a->lin - (int)b->lin;
}

/* The text model's layers of a vision-language checkpoint in PEFT keys as transformers before 4.52
 * named its modules (language_model.model.layers.N); read like FT_PEFT_VLM_LAYERS, written as it. */
#define FT_PEFT_VLM_LAYERS_OLD "language_model.model.layers."

/* Parses "model.layers.N.<module path>" into (layer, linear); *vlm = 1 when the layers are
 * "model.language_model.layers." (a vision-language checkpoint's text model, arch.h). */
static int ft_parse_module(const char *name, int64_t *layer, ft_linear *lin, int *vlm) {
    const char *pre = "model.layers.";
    *vlm = strncmp(name, FT_PEFT_VLM_LAYERS, strlen(FT_PEFT_VLM_LAYERS)) == 0 ||
           strncmp(name, FT_PEFT_VLM_LAYERS_OLD, strlen(FT_PEFT_VLM_LAYERS_OLD)) == 0;
    if (*vlm) pre = name[0] == 'm' ? FT_PEFT_VLM_LAYERS : FT_PEFT_VLM_LAYERS_OLD;
    if (strncmp(name, pre, strlen(pre)) != 0) return 0;
    char *end;
    long long l = strtoll(name + strlen(pre), &end, 10);
    if (end == name + strlen(pre) || *end != '.' || l < 0) return 0;
    for (int k = 0; k < FT_LIN_COUNT; k++) {
        const ft_linear_info *li = ft_linear_info_get((ft_linear)k);
        const char *suffix = strstr(li->hf_module, "%d") + 2; /* ".self_attn.q_proj" */
        if (strcmp(end, suffix) == 0) {
            *layer = l, *lin = (ft_linear)k;
            return 1;
        }
    }
    return 0;
}

/* Ranks above this are refused as garbage (peft's largest useful ranks are a few thousand). */
#define FT_ADAPTER_MAX_R 65536

/* adapter_config.json's number `key` (dflt when absent); null or another type is an error. */
static ft_status ft_cfg_number(const cJSON *j, const char *key, double dflt, const char *cfgp, double *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!v) {
        *out = dflt;
        return FT_OK;
    }
    if (!cJSON_IsNumber(v)) return FT_ERR(FT_E_FORMAT, "%s: %s must be a number", cfgp, key);
    *out = v->valuedouble;
    return FT_OK;
}

/* adapter_config.json's flag `key` (false when absent or null); another type is an error. */
static ft_status ft_cfg_bool(const cJSON *j, const char *key, const char *cfgp, int *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    *out = cJSON_IsTrue(v);
    if (v && !cJSON_IsBool(v) && !cJSON_IsNull(v)) return FT_ERR(FT_E_FORMAT, "%s: %s must be true or false", cfgp, key);
    return FT_OK;
}

/* Whether a module listed by target_modules (a list: peft's exact or ".name" suffix rule; a string,
 * a regular expression or "all-linear": not checked here) holds LoRA tensor module `mod`. */
static int ft_targeted(const cJSON *targets, const char *mod) {
    if (!cJSON_IsArray(targets)) return 1;
    const cJSON *e;
    cJSON_ArrayForEach(e, targets) {
        if (ft_pattern_match(mod, e->valuestring)) return 1;
    }
    return 0;
}

/* Reads adapter_config.json's text (cfgp names it in messages) as peft reads it into a's scalars
 * and patterns. *jout keeps the object: the tensors are checked against target_modules and
 * alpha_pattern. On failure *jout is NULL and a keeps what was filled (the caller frees it). */
static ft_status ft_adapter_parse_config(ft_adapter *a, const char *text, int64_t text_len, const char *cfgp,
                                         cJSON **jout) {
    ft_status st;
    cJSON *j = NULL;
    *jout = NULL;
    FT_CHECK_GOTO(st, ft_json_parse(text, text_len, cfgp, &j), fail); /* as peft reads it: last key wins */
    if (!cJSON_IsObject(j)) {
        st = FT_ERR(FT_E_FORMAT, "%s: not a JSON object", cfgp);
        goto fail;
    }
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "peft_type");
    if (!cJSON_IsString(v) || strcmp(v->valuestring, "LORA") != 0) {
        st = FT_ERR(FT_E_UNSUPPORTED, "%s: peft_type is %s; only LORA adapters can be exported", cfgp,
                    cJSON_IsString(v) ? v->valuestring : "missing");
        goto fail;
    }
    /* as peft reads them: a key of the wrong type would fail there (or, a string "true", mean true) */
    v = cJSON_GetObjectItemCaseSensitive(j, "r");
    if (!cJSON_IsNumber(v) || v->valuedouble < 1 || v->valuedouble > FT_ADAPTER_MAX_R || v->valuedouble != floor(v->valuedouble)) {
        st = FT_ERR(FT_E_FORMAT, "%s: r must be a positive integer of at most %d", cfgp, FT_ADAPTER_MAX_R);
        goto fail;
    }
    a->r = (int64_t)v->valuedouble;
    FT_CHECK_GOTO(st, ft_cfg_number(j, "lora_alpha", 8.0, cfgp, &a->alpha), fail);
    FT_CHECK_GOTO(st, ft_cfg_number(j, "lora_dropout", 0.0, cfgp, &a->dropout), fail);
    FT_CHECK_GOTO(st, ft_cfg_bool(j, "use_rslora", cfgp, &a->rslora), fail);
    FT_CHECK_GOTO(st, ft_cfg_bool(j, "use_dora", cfgp, &a->dora), fail);
    v = cJSON_GetObjectItemCaseSensitive(j, "base_model_name_or_path");
    if (cJSON_IsString(v)) snprintf(a->base, sizeof a->base, "%s", v->valuestring);
    static const char *const unsupported[] = {"fan_in_fan_out", "lora_bias"};
    for (size_t k = 0; k < sizeof unsupported / sizeof *unsupported; k++) {
        int on = 0;
        FT_CHECK_GOTO(st, ft_cfg_bool(j, unsupported[k], cfgp, &on), fail);
        if (on) {
            st = FT_ERR(FT_E_UNSUPPORTED, "%s: %s is true; ftune supports plain LoRA, rsLoRA and DoRA only",
                        cfgp, unsupported[k]);
            goto fail;
        }
    }
    const cJSON *targets = cJSON_GetObjectItemCaseSensitive(j, "target_modules");
    if (cJSON_IsArray(targets)) {
        const cJSON *e;
        cJSON_ArrayForEach(e, targets) {
            if (!cJSON_IsString(e)) {
                st = FT_ERR(FT_E_FORMAT, "%s: target_modules must be a list of module names or a string", cfgp);
                goto fail;
            }
        }
    } else if (targets && !cJSON_IsString(targets) && !cJSON_IsNull(targets)) {
        st = FT_ERR(FT_E_FORMAT, "%s: target_modules must be a list of module names or a string", cfgp);
        goto fail;
    }
    v = cJSON_GetObjectItemCaseSensitive(j, "bias");
    if (cJSON_IsString(v) && strcmp(v->valuestring, "none") != 0) {
        st = FT_ERR(FT_E_UNSUPPORTED, "%s: bias is \"%s\"; only \"none\" is supported", cfgp, v->valuestring);
        goto fail;
    }
    v = cJSON_GetObjectItemCaseSensitive(j, "modules_to_save");
    if (cJSON_IsArray(v) && cJSON_GetArraySize(v) > 0) {
        st = FT_ERR(FT_E_UNSUPPORTED, "%s: modules_to_save is set; fully trained modules cannot go into a LoRA GGUF", cfgp);
        goto fail;
    }
    const cJSON *rp = cJSON_GetObjectItemCaseSensitive(j, "rank_pattern");
    const cJSON *ap = cJSON_GetObjectItemCaseSensitive(j, "alpha_pattern");
    if ((rp && !cJSON_IsObject(rp) && !cJSON_IsNull(rp)) || (ap && !cJSON_IsObject(ap) && !cJSON_IsNull(ap))) {
        st = FT_ERR(FT_E_FORMAT, "%s: %s must be an object of module names", cfgp,
                    rp && !cJSON_IsObject(rp) && !cJSON_IsNull(rp) ? "rank_pattern" : "alpha_pattern");
        goto fail;
    }
    FT_CHECK_GOTO(st, ft_adapter_tokens_config(a, j, cfgp), fail);
    a->rank_pattern = cJSON_IsObject(rp) ? cJSON_PrintUnformatted(rp) : strdup("{}");
    a->alpha_pattern = cJSON_IsObject(ap) ? cJSON_PrintUnformatted(ap) : strdup("{}");
    if (!a->rank_pattern || !a->alpha_pattern) {
        st = FT_ERR(FT_E_OOM, "out of memory");
        goto fail;
    }
    *jout = j;
    return FT_OK;
fail:
    cJSON_Delete(j);
    return st;
}

/* Adds the LoRA tensors ts[0, nt) (stp names them in messages) to a, checked against the config
 * j of parse_config, and derives each module's scale. The one reading of PEFT tensors, whether
 * from a file (ft_adapter_load) or from memory (ft_adapter_load_tensors). On failure the caller
 * frees a. */
static ft_status ft_adapter_add_tensors(ft_adapter *a, const cJSON *j, const char *cfgp, const ft_st_tensor *ts,
                                        int64_t nt, const char *stp) {
    ft_status st;
    const cJSON *targets = cJSON_GetObjectItemCaseSensitive(j, "target_modules");
    const cJSON *ap = cJSON_GetObjectItemCaseSensitive(j, "alpha_pattern");
    FT_CHECK_GOTO(st, ft_calloc((void **)&a->m, (size_t)(nt / 2 + 1) * sizeof *a->m, "adapter modules"), fail);
    int64_t n_vision = 0, n_text = 0;
    int tok_vlm = -1; /* the trainable-token rows' names: a vision-language text model's (1) or not (0) */
    for (int64_t i = 0; i < nt; i++) {
        const ft_st_tensor *t = &ts[i];
        const char *nm = t->name;
        size_t ln = strlen(nm), lp = strlen(FT_PEFT_PREFIX);
        /* PEFT's own target names ("q_proj", "all-linear") also wrap a vision-language model's vision
         * tower and projector: ftune trains, applies and exports the text model only (llama.cpp's text
         * GGUF has no place for them either), so those modules are left out, with a warning below */
        static const char *const vision[] = {"model.vision_tower.", "model.multi_modal_projector.", "vision_tower.",
                                             "multi_modal_projector."};
        int is_vision = 0;
        for (size_t v = 0; v < sizeof vision / sizeof *vision && strncmp(nm, FT_PEFT_PREFIX, lp) == 0; v++)
            is_vision |= strncmp(nm + lp, vision[v], strlen(vision[v])) == 0;
        if (is_vision) {
            n_vision++;
            continue;
        }
        int tok_head, tvlm;
        if (ft_adapter_tokens_match(nm, &tok_head, &tvlm)) {
            FT_CHECK_GOTO(st, ft_adapter_tokens_add(a, t, tok_head, cfgp, stp), fail);
            if (tvlm >= 0) tok_vlm = tvlm;
            continue;
        }
        int isA = ln > strlen(FT_PEFT_LORA_A) && strcmp(nm + ln - strlen(FT_PEFT_LORA_A), FT_PEFT_LORA_A) == 0;
        int isB = ln > strlen(FT_PEFT_LORA_B) && strcmp(nm + ln - strlen(FT_PEFT_LORA_B), FT_PEFT_LORA_B) == 0;
        size_t lsuf = strlen(FT_PEFT_LORA_A);
        int isM = !isA && !isB && ft_adapter_dora_match(nm, &lsuf); /* DoRA's lora_magnitude_vector */
        if (!isA && !isB && !isM) {
            st = FT_ERR(FT_E_UNSUPPORTED, "%s: tensor %s is not a LoRA A/B weight or DoRA magnitude of a linear layer "
                        "(embedding/lm_head LoRA, saved modules and other modules' trainable tokens are not supported)",
                        stp, nm);
            goto fail;
        }
        if (isM && !a->dora) {
            st = FT_ERR(FT_E_FORMAT, "%s: tensor %s is a DoRA magnitude but %s does not set use_dora: true", stp, nm,
                        cfgp);
            goto fail;
        }
        char mod[512];
        size_t lm = ln - lsuf;
        if (strncmp(nm, FT_PEFT_PREFIX, lp) != 0 || lm - lp >= sizeof mod) {
            st = FT_ERR(FT_E_FORMAT, "%s: tensor %s does not start with %s", stp, nm, FT_PEFT_PREFIX);
            goto fail;
        }
        memcpy(mod, nm + lp, lm - lp);
        mod[lm - lp] = 0;
        int64_t layer;
        ft_linear lin;
        int vlm;
        if (!ft_parse_module(mod, &layer, &lin, &vlm)) {
            st = FT_ERR(FT_E_UNSUPPORTED, "%s: tensor %s: module %s is not one of the decoder linears "
                        "(q/k/v/o_proj, gate/up/down_proj of model.layers.N or " FT_PEFT_VLM_LAYERS "N)", stp, nm, mod);
            goto fail;
        }
        if (n_text++ > 0 && vlm != a->vlm) {
            st = FT_ERR(FT_E_FORMAT, "%s: tensor %s: modules both under model.layers. and " FT_PEFT_VLM_LAYERS
                        " (two different base models)", stp, nm);
            goto fail;
        }
        a->vlm = vlm;
        if (!ft_targeted(targets, mod)) {
            st = FT_ERR(FT_E_FORMAT, "%s: tensor %s: module %s is not in target_modules of %s", stp, nm, mod, cfgp);
            goto fail;
        }
        ft_adapter_mod *m = NULL;
        for (int64_t k = 0; k < a->n; k++)
            if (a->m[k].layer == layer && a->m[k].lin == lin) m = &a->m[k];
        if (!m) {
            if (a->n >= nt / 2 + 1) {
                st = FT_ERR(FT_E_FORMAT, "%s: unpaired LoRA tensors", stp);
                goto fail;
            }
            m = &a->m[a->n++];
            m->layer = layer, m->lin = lin;
        }
        if (isM) {
            FT_CHECK_GOTO(st, ft_adapter_dora_read(m, t, nm, stp), fail);
            continue;
        }
        ft_dtype dt;
        FT_CHECK_GOTO(st, ft_st_tensor_dtype(t, &dt), fail);
        if (t->ndim != 2 || !(dt == FT_F32 || dt == FT_F16 || dt == FT_BF16)) {
            st = FT_ERR(FT_E_FORMAT, "%s: tensor %s must be a 2-D F32/F16/BF16 matrix", stp, nm);
            goto fail;
        }
        if (t->shape[0] < 1 || t->shape[1] < 1 || t->shape[isA ? 0 : 1] > FT_ADAPTER_MAX_R) {
            st = FT_ERR(FT_E_FORMAT, "%s: tensor %s has shape [%lld, %lld]: not a LoRA matrix of rank 1 to %d", stp, nm,
                        (long long)t->shape[0], (long long)t->shape[1], FT_ADAPTER_MAX_R);
            goto fail;
        }
        float **dst = isA ? &m->A : &m->B;
        if (*dst) {
            st = FT_ERR(FT_E_FORMAT, "%s: tensor %s appears twice", stp, nm);
            goto fail;
        }
        FT_CHECK_GOTO(st, ft_malloc((void **)dst, (size_t)t->numel * 4, "LoRA tensor"), fail);
        ft_to_f32(*dst, t->data, dt, t->numel);
        for (int64_t e = 0; e < t->numel; e++) {
            if (!isfinite((*dst)[e])) {
                st = FT_ERR(FT_E_FORMAT, "%s: tensor %s holds %s at element %lld (a diverged adapter)", stp, nm,
                            isnan((*dst)[e]) ? "NaN" : "Inf", (long long)e);
                goto fail;
            }
        }
        if (isA) m->r = t->shape[0], m->in = t->shape[1];
        else {
            if (m->A && m->r != t->shape[1]) goto rank_mismatch;
            if (m->mag && m->out != t->shape[0]) {
                st = FT_ERR(FT_E_FORMAT, "%s: module %s: lora_B has %lld rows but its lora_magnitude_vector %lld values",
                            stp, mod, (long long)t->shape[0], (long long)m->out);
                goto fail;
            }
            m->out = t->shape[0];
            if (!m->A) m->r = t->shape[1];
        }
        if (isA && m->B && m->r != t->shape[0]) {
        rank_mismatch:
            st = FT_ERR(FT_E_FORMAT, "%s: module %s: lora_A has %lld rows but lora_B %lld columns", stp, mod,
                        (long long)m->r, (long long)t->shape[isA ? 0 : 1]);
            goto fail;
        }
        /* effective scaling: alpha_pattern overrides lora_alpha for matching modules */
        double alpha = a->alpha;
        if (cJSON_IsObject(ap)) {
            const cJSON *e;
            cJSON_ArrayForEach(e, ap) {
                if (cJSON_IsNumber(e) && ft_pattern_match(mod, e->string)) alpha = e->valuedouble;
            }
        }
        m->scale = alpha; /* divided by r (or sqrt r) once both halves are known */
    }
    if (a->n == 0) {
        st = FT_ERR(FT_E_FORMAT, "%s: no LoRA tensors%s", stp, n_vision ? " of the text model (only the vision tower's)" : "");
        goto fail;
    }
    FT_CHECK_GOTO(st, ft_adapter_tokens_finish(a, cfgp, stp), fail);
    if (tok_vlm >= 0 && tok_vlm != a->vlm) {
        st = FT_ERR(FT_E_FORMAT, "%s: trainable-token rows under %s but LoRA modules under %s (two different base "
                    "models)", stp, tok_vlm ? "model.language_model." : "model.", a->vlm ? FT_PEFT_VLM_LAYERS : "model.layers.");
        goto fail;
    }
    if (n_vision)
        ft_warn("%s: %lld LoRA tensors of the vision tower and projector left out: ftune applies and exports the text "
                "model's %lld modules", stp, (long long)n_vision, (long long)a->n);
    for (int64_t k = 0; k < a->n; k++) {
        ft_adapter_mod *m = &a->m[k];
        if (!m->A || !m->B) {
            st = FT_ERR(FT_E_FORMAT, "%s: layer %lld %s has only %s", stp, (long long)m->layer,
                        ft_linear_info_get(m->lin)->peft_name,
                        m->A ? "lora_A" : m->B ? "lora_B" : "a lora_magnitude_vector");
            goto fail;
        }
        /* without a rank_pattern, peft builds every module at rank r: tensors of another rank fail to load there */
        if (strcmp(a->rank_pattern, "{}") == 0 && m->r != a->r) {
            st = FT_ERR(FT_E_FORMAT, "%s: layer %lld %s has rank %lld but %s says r = %lld (and no rank_pattern)", stp,
                        (long long)m->layer, ft_linear_info_get(m->lin)->peft_name, (long long)m->r, cfgp,
                        (long long)a->r);
            goto fail;
        }
        m->scale = a->rslora ? m->scale / sqrt((double)m->r) : m->scale / (double)m->r;
    }
    qsort(a->m, (size_t)a->n, sizeof *a->m, ft_mod_cmp);
    return ft_adapter_dora_finish(a, cfgp, stp);
fail:
    return st;
}

ft_status ft_adapter_load(ft_adapter *a, const char *path) {
    memset(a, 0, sizeof *a);
    ft_status st;
    char cfgp[4200], stp[4200];
    char *text = NULL;
    int64_t text_len = 0;
    cJSON *j = NULL;
    ft_st_model *sm = NULL;
    ft_st_tensor *ts = NULL;
    FT_TRY(ft_adapter_resolve(path, a->dir, sizeof a->dir));
    snprintf(cfgp, sizeof cfgp, "%s/adapter_config.json", a->dir);
    snprintf(stp, sizeof stp, "%s/adapter_model.safetensors", a->dir);
    FT_CHECK_GOTO(st, ft_read_file(cfgp, 0, &text, &text_len, NULL), done);
    FT_CHECK_GOTO(st, ft_adapter_parse_config(a, text, text_len, cfgp, &j), done);
    FT_CHECK_GOTO(st, ft_st_open(&sm, stp), done);
    int64_t nt = ft_st_count(sm);
    FT_CHECK_GOTO(st, ft_malloc((void **)&ts, (size_t)(nt + 1) * sizeof *ts, "adapter tensor list"), done);
    for (int64_t i = 0; i < nt; i++) ts[i] = *ft_st_at(sm, i);
    st = ft_adapter_add_tensors(a, j, cfgp, ts, nt, stp);
done:
    if (st != FT_OK) ft_adapter_free(a);
    free(ts);
    ft_st_close(sm); /* the tensors were copied out of its mapping */
    cJSON_Delete(j);
    free(text);
    return st;
}

ft_status ft_adapter_load_tensors(ft_adapter *a, const char *src, const char *config_json,
                                  const struct ft_st_tensor *ts, int64_t n) {
    memset(a, 0, sizeof *a);
    cJSON *j = NULL;
    ft_status st = ft_copy_path(a->dir, sizeof a->dir, src);
    if (st == FT_OK) st = ft_adapter_parse_config(a, config_json, (int64_t)strlen(config_json), src, &j);
    if (st == FT_OK) st = ft_adapter_add_tensors(a, j, src, ts, n, src);
    if (st != FT_OK) ft_adapter_free(a);
    cJSON_Delete(j);
    return st;
}

const ft_adapter_mod *ft_adapter_find(const ft_adapter *a, int64_t layer, ft_linear lin) {
    for (int64_t k = 0; k < a->n; k++)
        if (a->m[k].layer == layer && a->m[k].lin == lin) return &a->m[k];
    return NULL;
}

ft_status ft_adapter_base_config(const ft_adapter *a, const char *base_dir, ft_model_config *cfg, char *base_out,
                                 size_t cap) {
    char p[8400];
    if (base_dir) { /* a checkpoint directory, or a GGUF model file */
        FT_TRY(ft_copy_path(base_out, cap, base_dir));
        return ft_cfg_load(cfg, base_dir);
    }
    if (a->base[0]) {
        const char *cands[2] = {a->base, NULL};
        char rel[8400];
        if (a->base[0] != '/') {
            snprintf(rel, sizeof rel, "%s/%s", a->dir, a->base);
            cands[1] = rel;
        }
        for (int i = 0; i < 2 && cands[i]; i++) {
            snprintf(p, sizeof p, "%s/config.json", cands[i]);
            if (ft_is_file(p) || ft_is_gguf_file(cands[i])) {
                FT_TRY(ft_copy_path(base_out, cap, cands[i]));
                return ft_cfg_load(cfg, ft_is_gguf_file(cands[i]) ? cands[i] : p);
            }
        }
    }
    return FT_ERR(FT_E_ARG,
                  "%s: cannot find the base model's config.json or GGUF file (base_model_name_or_path is \"%s\"): "
                  "pass --base DIR|FILE.gguf",
                  a->dir, a->base);
}

ft_status ft_adapter_check(const ft_adapter *a, const ft_model_config *cfg, const char *base_dir) {
    /* the family the adapter was trained on, when its base is at hand */
    ft_model_config trained;
    char tdir[4096];
    if (a->base[0] && ft_adapter_base_config(a, NULL, &trained, tdir, sizeof tdir) == FT_OK) {
        if (trained.arch != cfg->arch)
            return FT_ERR(FT_E_FORMAT, "%s: the adapter was trained on a %s model (%s) but the base %s is %s", a->dir,
                          trained.architecture, tdir, base_dir, cfg->architecture);
    } else {
        ft_error_clear();
    }
    for (int64_t k = 0; k < a->n; k++) {
        const ft_adapter_mod *m = &a->m[k];
        const ft_linear_info *li = ft_linear_info_get(m->lin);
        if (m->layer >= cfg->num_hidden_layers)
            return FT_ERR(FT_E_FORMAT, "%s: adapter has layer %lld but the base model %s has %lld layers", a->dir,
                          (long long)m->layer, base_dir, (long long)cfg->num_hidden_layers);
        /* (a DoRA magnitude holds m->out values, ft_adapter_dora_read: checked with lora_B here) */
        int64_t out = ft_cfg_dim(cfg, li->out_dim), in = ft_cfg_dim(cfg, li->in_dim);
        if (m->out != out || m->in != in)
            return FT_ERR(FT_E_FORMAT,
                          "%s: layer %lld %s: adapter is [%lld, %lld] (lora_B rows x lora_A columns) but the base model %s "
                          "has [%lld, %lld]: the adapter was trained on another model",
                          a->dir, (long long)m->layer, li->peft_name, (long long)m->out, (long long)m->in, base_dir,
                          (long long)out, (long long)in);
    }
    return ft_adapter_tokens_check(a, cfg, base_dir);
}

void ft_adapter_add_delta(const ft_adapter_mod *m, int64_t row0, int64_t nrows, float *dst) {
    /* dst[nrows, in] += scale * B[row0:row0+nrows, r] @ A[r, in] */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nrows, (int)m->in, (int)m->r, (float)m->scale,
                m->B + row0 * m->r, (int)m->r, m->A, (int)m->in, 1.0f, dst, (int)m->in);
}

/* ---- GGUF ----------------------------------------------------------------------------------- */

typedef struct {
    const ft_adapter_mod *m;
    int is_b;
    int64_t perm_d;   /* >0: permute rows with heads of this many rows */
    float factor;     /* multiplies lora_b */
} ft_lora_src;

static ft_status ft_lora_rows(void *user, int64_t row0, int64_t nrows, float *dst) {
    const ft_lora_src *s = user;
    const ft_adapter_mod *m = s->m;
    if (!s->is_b) {
        memcpy(dst, m->A + row0 * m->in, (size_t)(nrows * m->in) * 4);
        return FT_OK;
    }
    for (int64_t r = 0; r < nrows; r++) {
        int64_t src = s->perm_d ? ft_gguf_permuted_row(row0 + r, s->perm_d) : row0 + r;
        for (int64_t c = 0; c < m->r; c++) dst[r * m->r + c] = m->B[src * m->r + c] * s->factor;
    }
    return FT_OK;
}

ft_status ft_adapter_write_gguf(const ft_adapter *a, const ft_model_config *cfg, const char *path, ft_ggml_type type) {
    if (type != FT_GGML_F32 && type != FT_GGML_F16 && type != FT_GGML_BF16 && type != FT_GGML_Q8_0)
        return FT_ERR(FT_E_ARG, "adapter GGUF type must be f32, f16, bf16 or q8_0 (got %s)", ft_ggml_type_name(type));
    FT_TRY(ft_adapter_dora_gguf_refuse(a)); /* before anything is opened: nothing written */
    const ft_arch_info *ai = ft_arch_get(cfg->arch);
    ft_ggufw *w = NULL;
    ft_lora_src *src = NULL;
    ft_status st;
    FT_TRY(ft_ggufw_open(&w, path));
    FT_CHECK_GOTO(st, ft_calloc((void **)&src, (size_t)a->n * 2 * sizeof *src, "adapter sources"), fail);
    /* one global alpha: s*r of the first module; other modules get s*r/alpha folded into lora_b */
    double alpha_w = a->m[0].scale * (double)a->m[0].r;
    int n_folded = 0;
    FT_CHECK_GOTO(st, ft_ggufw_set_str(w, "general.architecture", ai->gguf_arch), fail);
    FT_CHECK_GOTO(st, ft_ggufw_set_str(w, "general.type", "adapter"), fail);
    FT_CHECK_GOTO(st, ft_ggufw_set_str(w, "general.name", "ftune LoRA adapter"), fail);
    FT_CHECK_GOTO(st, ft_ggufw_set_str(w, "adapter.type", "lora"), fail);
    FT_CHECK_GOTO(st, ft_ggufw_set_f32(w, "adapter.lora.alpha", (float)alpha_w), fail);
    FT_CHECK_GOTO(st, ft_ggufw_set_u32(w, "general.quantization_version", 2), fail);
    int warned = 0;
    for (int64_t k = 0; k < a->n; k++) {
        const ft_adapter_mod *m = &a->m[k];
        const ft_linear_info *li = ft_linear_info_get(m->lin);
        char base[64], name[96];
        ft_arch_name(base, sizeof base, li->gguf_base, m->layer);
        ft_lora_src *sa = &src[2 * k], *sb = &src[2 * k + 1];
        sa->m = sb->m = m;
        sb->is_b = 1;
        sb->factor = (float)(m->scale * (double)m->r / alpha_w);
        if (fabs(m->scale * (double)m->r - alpha_w) > 1e-9 * fabs(alpha_w)) n_folded++;
        else sb->factor = 1.0f;
        if (ai->gguf_permute_qk && (m->lin == FT_LIN_Q || m->lin == FT_LIN_K)) sb->perm_d = cfg->head_dim;
        ft_ggml_type ta = type, tb = type;
        if (type == FT_GGML_Q8_0 && (m->in % 32 || m->r % 32)) {
            if (m->in % 32) ta = FT_GGML_F16;
            if (m->r % 32) tb = FT_GGML_F16;
            if (!warned++) ft_warn("%s: rank %lld is not a multiple of 32: lora_b tensors written as F16 instead of Q8_0", path, (long long)m->r);
        }
        int64_t nea[2] = {m->in, m->r}, neb[2] = {m->r, m->out};
        snprintf(name, sizeof name, "%s.weight" FT_GGUF_LORA_A, base);
        FT_CHECK_GOTO(st, ft_ggufw_add_tensor(w, name, ta, 2, nea, ft_lora_rows, sa), fail);
        snprintf(name, sizeof name, "%s.weight" FT_GGUF_LORA_B, base);
        FT_CHECK_GOTO(st, ft_ggufw_add_tensor(w, name, tb, 2, neb, ft_lora_rows, sb), fail);
    }
    if (n_folded)
        ft_info("%s: %d modules have their own scale (rank/alpha patterns): folded into their lora_b", path, n_folded);
    st = ft_adapter_gguf_finish_tokens(a, cfg, w, alpha_w, type); /* + trainable tokens (adapter_tokens_out.c); finishes w */
    w = NULL;
fail:
    ft_ggufw_discard(w);
    free(src);
    return st;
}

/* ---- PEFT ----------------------------------------------------------------------------------- */

/* Writes the pair into `dir` (which exists): both files complete in temporaries (fsync'd) before
 * either replaces its old version, the config last because it is what makes a directory an adapter
 * (ft_adapter_resolve). In a staging directory (export/stagedir.h) the order does not matter; in an
 * output that cannot be staged it leaves the window of the two renames: a crash there leaves the
 * new tensors beside the old config. */
static ft_status ft_peft_write_pair(const ft_adapter *a, const char *dir, const char *txt) {
    ft_status st;
    ft_stw *w = NULL;
    char p[4200], cp[4200], st_tmp[4300];
    ft_afile cf;
    int cf_open = 0, st_staged = 0;
    snprintf(p, sizeof p, "%s/adapter_model.safetensors", dir);
    snprintf(cp, sizeof cp, "%s/adapter_config.json", dir);
    FT_CHECK_GOTO(st, ft_stw_open(&w, p), done);
    FT_CHECK_GOTO(st, ft_stw_set_metadata(w, "format", "pt"), done);
    for (int64_t k = 0; k < a->n; k++) {
        const ft_adapter_mod *m = &a->m[k];
        char mod[128], name[192];
        ft_peft_module(mod, sizeof mod, m->lin, m->layer, a->vlm);
        int64_t sa[2] = {m->r, m->in}, sb[2] = {m->out, m->r};
        snprintf(name, sizeof name, FT_PEFT_PREFIX "%s" FT_PEFT_LORA_A, mod);
        FT_CHECK_GOTO(st, ft_stw_add(w, name, FT_ST_F32, 2, sa, m->A), done);
        snprintf(name, sizeof name, FT_PEFT_PREFIX "%s" FT_PEFT_LORA_B, mod);
        FT_CHECK_GOTO(st, ft_stw_add(w, name, FT_ST_F32, 2, sb, m->B), done);
        if (m->mag) { /* DoRA: PEFT's key, without the DoraLinearLayer's ".weight" */
            snprintf(name, sizeof name, FT_PEFT_PREFIX "%s.lora_magnitude_vector", mod);
            FT_CHECK_GOTO(st, ft_stw_add(w, name, FT_ST_F32, 1, &m->out, m->mag), done);
        }
    }
    FT_CHECK_GOTO(st, ft_adapter_tokens_write(a, w), done);
    st = ft_stw_finish_tmp(w, st_tmp, sizeof st_tmp);
    w = NULL;
    if (st != FT_OK) goto done;
    st_staged = 1;
    FT_CHECK_GOTO(st, ft_afile_open(&cf, cp), done);
    cf_open = 1;
    FT_CHECK_GOTO(st, ft_afile_write(&cf, txt, (int64_t)strlen(txt)), done);
    st = ft_afile_sync(&cf);
    if (st != FT_OK) {
        cf_open = 0; /* removed by the failed sync */
        goto done;
    }
    if (rename(st_tmp, p) != 0) {
        st = FT_ERR(FT_E_IO, "%s: cannot rename %s into place: %s", p, st_tmp, strerror(errno));
    } else {
        st_staged = 0;
        cf_open = 0;
        st = ft_afile_commit(&cf); /* renames the config, then fsyncs the directory for both */
    }
done:
    if (cf_open) ft_afile_abort(&cf);
    if (st_staged) unlink(st_tmp);
    ft_stw_discard(w);
    return st;
}

ft_status ft_adapter_write_peft(const ft_adapter *a, const char *dir, const char *base_name) {
    ft_status st = FT_OK;
    cJSON *j = cJSON_CreateObject();
    char *txt = NULL;
    ft_stagedir sd;
    cJSON *tm = cJSON_CreateArray();
    unsigned seen = 0;
    for (int64_t k = 0; k < a->n; k++) {
        if (seen & (1u << a->m[k].lin)) continue;
        seen |= 1u << a->m[k].lin;
    }
    for (int k = 0; k < FT_LIN_COUNT; k++)
        if (seen & (1u << k)) cJSON_AddItemToArray(tm, cJSON_CreateString(ft_linear_info_get((ft_linear)k)->peft_name));
    char regex[512];
    if (a->vlm && ft_peft_target_regex(regex, sizeof regex, seen) > 0) { /* the names would reach the vision tower */
        cJSON_Delete(tm);
        tm = cJSON_CreateString(regex);
    }
    cJSON_AddStringToObject(j, "peft_type", "LORA");
    cJSON_AddStringToObject(j, "task_type", "CAUSAL_LM");
    const char *bn = base_name ? base_name : a->base;
    if (bn[0]) cJSON_AddStringToObject(j, "base_model_name_or_path", bn);
    else cJSON_AddNullToObject(j, "base_model_name_or_path");
    cJSON_AddNumberToObject(j, "r", (double)a->r);
    cJSON_AddNumberToObject(j, "lora_alpha", a->alpha);
    cJSON_AddNumberToObject(j, "lora_dropout", a->dropout);
    cJSON_AddItemToObject(j, "target_modules", tm);
    cJSON_AddStringToObject(j, "bias", "none");
    cJSON_AddBoolToObject(j, "use_rslora", a->rslora);
    cJSON_AddBoolToObject(j, "use_dora", a->dora);
    cJSON_AddBoolToObject(j, "fan_in_fan_out", 0);
    cJSON_AddBoolToObject(j, "inference_mode", 1);
    cJSON_AddBoolToObject(j, "init_lora_weights", 1);
    cJSON_AddNullToObject(j, "modules_to_save");
    cJSON_AddItemToObject(j, "rank_pattern", cJSON_Parse(a->rank_pattern ? a->rank_pattern : "{}"));
    cJSON_AddItemToObject(j, "alpha_pattern", cJSON_Parse(a->alpha_pattern ? a->alpha_pattern : "{}"));
    ft_adapter_tokens_json(j, a->embed_ids, a->n_embed_tokens, a->head_ids, a->n_head_tokens);
    txt = cJSON_Print(j);
    if (!txt) {
        cJSON_Delete(j);
        return FT_ERR(FT_E_OOM, "out of memory");
    }
    cJSON_Delete(j);
    st = ft_stagedir_begin(&sd, dir);
    if (st == FT_OK) {
        st = ft_peft_write_pair(a, ft_stagedir_path(&sd), txt);
        st = st == FT_OK ? ft_stagedir_commit(&sd, "adapter_config.json") : ft_stagedir_fail(&sd, st);
    }
    free(txt);
    return st;
}
