/* adapter_tokens.c: trainable tokens of a PEFT LoRA adapter (see adapter_tokens.h, adapter.h).
 *
 * PEFT (0.17+; checked against 0.21.2) writes `trainable_token_indices` either as a list (the input
 * embedding's ids) or as an object {module name: ids}, the module found by name suffix
 * (`key.endswith(name)`: "embed_tokens", "model.embed_tokens", "lm_head", ...). Each wrapped module
 * saves `<module>.token_adapter.trainable_tokens_delta` [len(ids), C]: the rows' full values in the
 * order of the ids as listed (PEFT never sorts them), written over the base's with index_copy.
 *
 * Tied embeddings: when the base ties lm_head to the embedding and lm_head is not listed, or listed
 * with exactly the embedding's list, PEFT wraps lm_head with the embedding's own token adapter and
 * saves only the embedding's delta (the "tied form"). With another lm_head list it wraps both
 * independently, so a tied base then has separate lm_head rows over the shared matrix: accepted
 * here as PEFT builds it (adapter.h says what each consumer does with them). */
#include "export/adapter_tokens.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/mem.h"
#include "trainer/arch.h"

#define FT_TT_SUFFIX ".token_adapter.trainable_tokens_delta"

/* PEFT module names of the text model's embedding and lm_head (a vision-language checkpoint's as
 * transformers >= 4.52 and before it names them) that a dict key may name by suffix. */
static const char *const ft_tt_embed_mods[] = {"model.embed_tokens", "model.language_model.embed_tokens",
                                               "language_model.model.embed_tokens"};
static const char *const ft_tt_head_mods[] = {"lm_head", "language_model.lm_head"};

/* PEFT's match of a key to a module, at a dot boundary ("tokens" would match there too, but names
 * nothing a user means; it is refused with the names that work). */
static int ft_tt_suffix(const char *mod, const char *key) {
    size_t lm = strlen(mod), lk = strlen(key);
    return lk > 0 && lk <= lm && strcmp(mod + lm - lk, key) == 0 && (lk == lm || mod[lm - lk - 1] == '.');
}

static int ft_tt_key_is(const char *key, const char *const *mods, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (ft_tt_suffix(mods[i], key)) return 1;
    return 0;
}

/* One id list: integers in [0, 2^31), distinct (PEFT's index_copy would write a row twice). */
static ft_status ft_tt_ids(const cJSON *list, const char *what, const char *cfgp, int32_t **ids, int64_t *n) {
    *ids = NULL, *n = 0;
    if (!cJSON_IsArray(list))
        return FT_ERR(FT_E_FORMAT, "%s: trainable_token_indices%s must be a list of token ids", cfgp, what);
    int64_t k = cJSON_GetArraySize(list);
    if (k == 0) return FT_OK;
    if (k > FT_ADAPTER_MAX_TOKENS)
        return FT_ERR(FT_E_FORMAT, "%s: trainable_token_indices%s lists %lld tokens; ftune reads at most %d", cfgp, what,
                      (long long)k, FT_ADAPTER_MAX_TOKENS);
    FT_TRY(ft_malloc((void **)ids, (size_t)k * sizeof **ids, "trainable token ids"));
    const cJSON *e;
    int64_t i = 0;
    cJSON_ArrayForEach(e, list) {
        if (!cJSON_IsNumber(e) || e->valuedouble != floor(e->valuedouble) || e->valuedouble < 0 ||
            e->valuedouble > 2147483647.0) {
            char *txt = cJSON_PrintUnformatted(e);
            ft_status st = FT_ERR(FT_E_FORMAT, "%s: trainable_token_indices%s: %s is not a token id (an integer >= 0)",
                                  cfgp, what, txt ? txt : "?");
            cJSON_free(txt);
            ft_free(*ids), *ids = NULL;
            return st;
        }
        int32_t id = (int32_t)e->valuedouble;
        for (int64_t p = 0; p < i; p++)
            if ((*ids)[p] == id) {
                ft_free(*ids), *ids = NULL;
                return FT_ERR(FT_E_FORMAT, "%s: trainable_token_indices%s lists token %d twice", cfgp, what, id);
            }
        (*ids)[i++] = id;
    }
    *n = k;
    return FT_OK;
}

ft_status ft_adapter_tokens_config(ft_adapter *a, const cJSON *j, const char *cfgp) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "trainable_token_indices");
    if (!v || cJSON_IsNull(v)) return FT_OK;
    if (cJSON_IsArray(v)) return ft_tt_ids(v, "", cfgp, &a->embed_ids, &a->n_embed_tokens); /* the input embedding */
    if (!cJSON_IsObject(v))
        return FT_ERR(FT_E_FORMAT, "%s: trainable_token_indices must be a list of token ids or an object "
                                   "{\"embed_tokens\": [...], \"lm_head\": [...]}", cfgp);
    const cJSON *e;
    int seen_embed = 0, seen_head = 0;
    cJSON_ArrayForEach(e, v) {
        char what[160];
        snprintf(what, sizeof what, ".%.120s", e->string);
        int head;
        if (ft_tt_key_is(e->string, ft_tt_embed_mods, sizeof ft_tt_embed_mods / sizeof *ft_tt_embed_mods)) head = 0;
        else if (ft_tt_key_is(e->string, ft_tt_head_mods, sizeof ft_tt_head_mods / sizeof *ft_tt_head_mods)) head = 1;
        else
            return FT_ERR(FT_E_UNSUPPORTED, "%s: trainable_token_indices names module \"%s\": ftune trains tokens of "
                                            "the embedding (\"embed_tokens\") and \"lm_head\" only", cfgp, e->string);
        if (head ? seen_head++ : seen_embed++)
            return FT_ERR(FT_E_FORMAT, "%s: trainable_token_indices names the %s twice (\"%s\")", cfgp,
                          head ? "lm_head" : "embedding", e->string);
        FT_TRY(ft_tt_ids(e, what, cfgp, head ? &a->head_ids : &a->embed_ids, head ? &a->n_head_tokens : &a->n_embed_tokens));
    }
    return FT_OK;
}

int ft_adapter_tokens_match(const char *name, int *head, int *vlm) {
    size_t lp = strlen(FT_PEFT_PREFIX), ln = strlen(name), ls = strlen(FT_TT_SUFFIX);
    if (ln <= lp + ls || strncmp(name, FT_PEFT_PREFIX, lp) != 0 || strcmp(name + ln - ls, FT_TT_SUFFIX) != 0) return 0;
    const size_t lm = ln - lp - ls;
    const char *mod = name + lp;
    for (int h = 0; h < 2; h++) {
        const char *const *mods = h ? ft_tt_head_mods : ft_tt_embed_mods;
        size_t n = h ? sizeof ft_tt_head_mods / sizeof *ft_tt_head_mods : sizeof ft_tt_embed_mods / sizeof *ft_tt_embed_mods;
        for (size_t i = 0; i < n; i++)
            if (strlen(mods[i]) == lm && strncmp(mod, mods[i], lm) == 0) {
                *head = h;
                *vlm = i > 0 ? 1 : h ? -1 : 0; /* plain "lm_head" is both kinds' name */
                return 1;
            }
    }
    *head = -1; /* a delta of another module: the caller's "not a LoRA tensor" message names it */
    return 0;
}

ft_status ft_adapter_tokens_add(ft_adapter *a, const ft_st_tensor *t, int head, const char *cfgp, const char *stp) {
    const int64_t n = head ? a->n_head_tokens : a->n_embed_tokens;
    float **rows = head ? &a->head_rows : &a->embed_rows;
    const char *mod = head ? "lm_head" : "embed_tokens";
    ft_dtype dt;
    FT_TRY(ft_st_tensor_dtype(t, &dt));
    if (*rows) return FT_ERR(FT_E_FORMAT, "%s: two trainable_tokens_delta tensors of the %s (%s)", stp, mod, t->name);
    if (n == 0) {
        if (t->ndim == 2 && t->shape[0] == 0) return FT_OK; /* an empty list's rows */
        return FT_ERR(FT_E_FORMAT, "%s: tensor %s holds trainable-token rows of the %s but %s lists no "
                                   "trainable_token_indices for it", stp, t->name, mod, cfgp);
    }
    if (t->ndim != 2 || !(dt == FT_F32 || dt == FT_F16 || dt == FT_BF16))
        return FT_ERR(FT_E_FORMAT, "%s: tensor %s must be a 2-D F32/F16/BF16 matrix", stp, t->name);
    if (t->shape[0] != n || t->shape[1] < 1 || (a->tokens_C && t->shape[1] != a->tokens_C))
        return FT_ERR(FT_E_FORMAT, "%s: tensor %s has shape [%lld, %lld] but %s lists %lld %s tokens: expected "
                                   "[%lld, %s]", stp, t->name, (long long)t->shape[0], (long long)t->shape[1], cfgp,
                      (long long)n, mod, (long long)n, a->tokens_C ? "the embedding's width" : "hidden_size");
    FT_TRY(ft_malloc((void **)rows, (size_t)t->numel * sizeof **rows, "trainable token rows"));
    ft_to_f32(*rows, t->data, dt, t->numel);
    for (int64_t e = 0; e < t->numel; e++)
        if (!isfinite((*rows)[e]))
            return FT_ERR(FT_E_FORMAT, "%s: tensor %s holds %s at element %lld (a diverged adapter)", stp, t->name,
                          isnan((*rows)[e]) ? "NaN" : "Inf", (long long)e);
    a->tokens_C = t->shape[1];
    return FT_OK;
}

ft_status ft_adapter_tokens_finish(ft_adapter *a, const char *cfgp, const char *stp) {
    if (a->n_embed_tokens && !a->embed_rows)
        return FT_ERR(FT_E_FORMAT, "%s: %s lists %lld trainable tokens of the embedding but the file holds no "
                                   FT_PEFT_PREFIX "%s" FT_TT_SUFFIX " tensor", stp, cfgp, (long long)a->n_embed_tokens,
                      a->vlm ? "model.language_model.embed_tokens" : "model.embed_tokens");
    if (a->n_head_tokens && !a->head_rows) {
        /* PEFT's tied form: lm_head listed with the embedding's very list shares its rows, saved once */
        int same = a->n_head_tokens == a->n_embed_tokens &&
                   memcmp(a->head_ids, a->embed_ids, (size_t)a->n_head_tokens * sizeof *a->head_ids) == 0;
        if (!same)
            return FT_ERR(FT_E_FORMAT, "%s: %s lists %lld trainable tokens of lm_head but the file holds no "
                                       FT_PEFT_PREFIX "lm_head" FT_TT_SUFFIX " tensor", stp, cfgp,
                          (long long)a->n_head_tokens);
        ft_free(a->head_ids);
        a->head_ids = NULL, a->n_head_tokens = 0, a->tokens_tied = 1;
    }
    return FT_OK;
}

ft_status ft_adapter_tokens_check(const ft_adapter *a, const ft_model_config *cfg, const char *base_dir) {
    if (!a->n_embed_tokens && !a->n_head_tokens) return FT_OK;
    if (a->tokens_C != cfg->hidden_size)
        return FT_ERR(FT_E_FORMAT, "%s: trainable-token rows of %lld values but the base model %s has hidden_size %lld: "
                                   "the adapter was trained on another model", a->dir, (long long)a->tokens_C,
                      base_dir, (long long)cfg->hidden_size);
    for (int head = 0; head < 2; head++) {
        const int32_t *ids = head ? a->head_ids : a->embed_ids;
        int64_t n = head ? a->n_head_tokens : a->n_embed_tokens;
        for (int64_t i = 0; i < n; i++)
            if (ids[i] >= cfg->vocab_size)
                return FT_ERR(FT_E_FORMAT, "%s: trainable token %d (%s) is outside the vocabulary of the base model %s "
                                           "(vocab_size %lld)", a->dir, ids[i], head ? "lm_head" : "embed_tokens",
                              base_dir, (long long)cfg->vocab_size);
    }
    /* PEFT saves no lm_head rows only when lm_head shares the embedding's: on an untied base it wraps
     * lm_head on its own and fails to load the adapter (peft 0.21.2: KeyError on the lm_head delta) */
    if (a->tokens_tied && !cfg->tie_word_embeddings)
        return FT_ERR(FT_E_FORMAT, "%s: trainable_token_indices lists lm_head but the adapter holds no lm_head rows "
                                   "(PEFT's form for a model whose lm_head is its embedding), and the base model %s "
                                   "has a separate lm_head: the adapter was trained on another model", a->dir, base_dir);
    return FT_OK;
}

ft_status ft_adapter_tokens_write(const ft_adapter *a, ft_stw *w) {
    char name[192];
    for (int head = 0; head < 2; head++) {
        int64_t n = head ? a->n_head_tokens : a->n_embed_tokens;
        if (!n) continue;
        int64_t shape[2] = {n, a->tokens_C};
        snprintf(name, sizeof name, FT_PEFT_PREFIX "%s" FT_TT_SUFFIX,
                 head ? "lm_head" : a->vlm ? "model.language_model.embed_tokens" : "model.embed_tokens");
        FT_TRY(ft_stw_add(w, name, FT_ST_F32, 2, shape, head ? a->head_rows : a->embed_rows));
    }
    return FT_OK;
}

void ft_adapter_tokens_json(struct cJSON *j, const int32_t *embed, int64_t n_embed, const int32_t *head,
                            int64_t n_head) {
    if (n_embed + n_head == 0) return;
    cJSON *lists[2] = {NULL, NULL};
    for (int h = 0; h < 2; h++) {
        int64_t n = h ? n_head : n_embed;
        const int32_t *ids = h ? head : embed;
        if (!n) continue;
        lists[h] = cJSON_CreateArray();
        for (int64_t i = 0; i < n && lists[h]; i++) cJSON_AddItemToArray(lists[h], cJSON_CreateNumber(ids[i]));
    }
    if (!n_head) { /* PEFT's list form: the input embedding (and, tied, lm_head through it) */
        cJSON_AddItemToObject(j, "trainable_token_indices", lists[0]);
        return;
    }
    cJSON *d = cJSON_CreateObject();
    if (lists[0]) cJSON_AddItemToObject(d, "embed_tokens", lists[0]);
    cJSON_AddItemToObject(d, "lm_head", lists[1]);
    cJSON_AddItemToObject(j, "trainable_token_indices", d);
}

void ft_adapter_tokens_free(ft_adapter *a) {
    ft_free(a->embed_ids), ft_free(a->head_ids), ft_free(a->embed_rows), ft_free(a->head_rows);
    a->embed_ids = a->head_ids = NULL, a->embed_rows = a->head_rows = NULL;
    a->n_embed_tokens = a->n_head_tokens = a->tokens_C = 0, a->tokens_tied = 0;
}
