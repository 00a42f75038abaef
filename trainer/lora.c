/* lora.c: adapter layout, PEFT-default initialization, PEFT tensor names. Loading and saving
 * of adapter files is in lora_io.c. */
#include "trainer/lora.h"

#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "kernels/mem.h"
#include "kernels/rng.h"
#include "trainer/arch.h"

/* A module mask is also a linear mask (ft_peft_target_regex, ft_peft_module): the orders agree. */
_Static_assert((int)FT_MOD_Q == (int)FT_LIN_Q && (int)FT_MOD_DOWN == (int)FT_LIN_DOWN &&
                   (int)FT_MOD_COUNT == (int)FT_LIN_COUNT,
               "ft_module and ft_linear list the seven linears in the same order");

static const char *const ft_mod_names[FT_MOD_COUNT] = {"q_proj", "k_proj", "v_proj", "o_proj",
                                                        "gate_proj", "up_proj", "down_proj"};
static const char *const ft_mod_paths[FT_MOD_COUNT] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                                        "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj",
                                                        "mlp.down_proj"};

const char *ft_module_name(ft_module m) { return m < FT_MOD_COUNT ? ft_mod_names[m] : "?"; }
const char *ft_module_path(ft_module m) { return m < FT_MOD_COUNT ? ft_mod_paths[m] : "?"; }

ft_status ft_lora_parse_targets(const char *list, unsigned *mask) {
    *mask = 0;
    if (!list || !*list) return FT_ERR(FT_E_ARG, "empty LoRA target list");
    if (strcmp(list, "all") == 0 || strcmp(list, "all-linear") == 0) {
        *mask = FT_MOD_ALL;
        return FT_OK;
    }
    const char *p = list;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        int found = 0;
        for (int m = 0; m < FT_MOD_COUNT; m++) {
            if (strlen(ft_mod_names[m]) == len && strncmp(p, ft_mod_names[m], len) == 0) {
                *mask |= 1u << m;
                found = 1;
            }
        }
        if (!found)
            return FT_ERR(FT_E_ARG, "unknown LoRA target '%.*s' (expected q_proj, k_proj, v_proj, o_proj, gate_proj, "
                                    "up_proj, down_proj or all)", (int)len, p);
        p += len;
        if (*p == ',') p++;
    }
    return FT_OK;
}

int64_t ft_lora_param_count(const ft_lora_cfg *cfg, const ft_lora_shapes *s, int64_t n_layers) {
    int64_t per_layer = 0;
    for (int m = 0; m < FT_MOD_COUNT; m++)
        if (cfg->targets & (1u << m)) per_layer += cfg->r * (s->in[m] + s->out[m]) + (cfg->dora ? s->out[m] : 0);
    return per_layer * n_layers + cfg->n_tokens * s->in[FT_MOD_Q] * (cfg->tied ? 1 : 2);
}

void ft_lora_tensor_name(char *buf, size_t cap, int64_t layer, ft_module m, char which, int vlm) {
    char mod[160]; /* the module path as export/adapter.c writes it: one place knows the vision-language layout */
    ft_peft_module(mod, sizeof mod, (ft_linear)m, layer, vlm);
    snprintf(buf, cap, FT_PEFT_PREFIX "%s.lora_%c.weight", mod, which);
}

void ft_lora_mag_name(char *buf, size_t cap, int64_t layer, ft_module m, int vlm) {
    char mod[160];
    ft_peft_module(mod, sizeof mod, (ft_linear)m, layer, vlm);
    snprintf(buf, cap, FT_PEFT_PREFIX "%s.lora_magnitude_vector", mod);
}

void ft_lora_tokens_name(char *buf, size_t cap, int head, int vlm) {
    snprintf(buf, cap, FT_PEFT_PREFIX "%s.token_adapter.trainable_tokens_delta",
             head ? "lm_head" : vlm ? "model.language_model.embed_tokens" : "model.embed_tokens");
}

static int ft_id_cmp(const void *x, const void *y) {
    int32_t a = *(const int32_t *)x, b = *(const int32_t *)y;
    return (a > b) - (a < b);
}

/* The trainable tokens' ids, sorted and checked, and their rows' place after the LoRA tensors. */
static ft_status ft_lora_tokens_setup(ft_lora *l, const ft_lora_cfg *cfg, int64_t C, int64_t *off) {
    ft_lora_tokens *tk = &l->tok;
    l->cfg.tokens = NULL;
    if (cfg->n_tokens <= 0) return FT_OK;
    if (!cfg->tokens) return FT_ERR(FT_E_INTERNAL, "trainable tokens: %lld ids, no list", (long long)cfg->n_tokens);
    if (cfg->n_tokens > FT_LORA_MAX_TOKENS)
        return FT_ERR(FT_E_ARG, "%lld trainable tokens: at most %d", (long long)cfg->n_tokens, FT_LORA_MAX_TOKENS);
    FT_TRY(ft_malloc((void **)&tk->ids, (size_t)cfg->n_tokens * sizeof *tk->ids, "trainable tokens"));
    memcpy(tk->ids, cfg->tokens, (size_t)cfg->n_tokens * sizeof *tk->ids);
    qsort(tk->ids, (size_t)cfg->n_tokens, sizeof *tk->ids, ft_id_cmp);
    for (int64_t i = 0; i < cfg->n_tokens; i++) {
        if (tk->ids[i] < 0) return FT_ERR(FT_E_ARG, "trainable token id %d is negative", tk->ids[i]);
        if (i > 0 && tk->ids[i] == tk->ids[i - 1])
            return FT_ERR(FT_E_ARG, "trainable token id %d is listed twice", tk->ids[i]);
    }
    tk->k = cfg->n_tokens;
    tk->C = C;
    tk->embed_off = *off, *off += tk->k * C;
    tk->head_off = cfg->tied ? tk->embed_off : *off;
    if (!cfg->tied) *off += tk->k * C;
    l->cfg.tokens = tk->ids;
    return FT_OK;
}

ft_status ft_lora_init_tokens(ft_lora *l, ft_backend *be, const ft_weight *embed, const ft_weight *lm_head) {
    const ft_lora_tokens *tk = &l->tok;
    if (tk->k == 0) return FT_OK;
    const ft_weight *w[2] = {embed, lm_head};
    float *rows = NULL;
    ft_status st = FT_OK;
    FT_TRY(ft_malloc((void **)&rows, (size_t)(tk->k * tk->C) * sizeof *rows, "trainable token rows"));
    for (int head = 0; head < (l->cfg.tied ? 1 : 2) && st == FT_OK; head++) {
        if (w[head]->cols != tk->C) {
            st = FT_ERR(FT_E_INTERNAL, "trainable tokens: rows of %lld, the %s's are %lld", (long long)tk->C,
                        head ? "lm_head" : "embedding", (long long)w[head]->cols);
            break;
        }
        for (int64_t j = 0; j < tk->k && st == FT_OK; j++) {
            if (tk->ids[j] >= w[head]->rows)
                st = FT_ERR(FT_E_ARG, "trainable token id %d is outside the vocabulary (0..%lld)", tk->ids[j],
                            (long long)w[head]->rows - 1);
            else
                st = ft_weight_rows_f32(be, w[head], tk->ids[j], 1, rows + j * tk->C);
        }
        if (st == FT_OK)
            st = ft_backend_upload(be, l->params + (head ? tk->head_off : tk->embed_off), rows,
                                   tk->k * tk->C * (int64_t)sizeof *rows);
    }
    ft_free(rows);
    return st;
}

ft_status ft_lora_create(ft_lora **out, ft_backend *be, const ft_lora_cfg *cfg, const ft_lora_shapes *s,
                         int64_t n_layers) {
    *out = NULL;
    if (cfg->r <= 0) return FT_ERR(FT_E_ARG, "LoRA rank must be positive (got %lld)", (long long)cfg->r);
    if (!(cfg->dropout >= 0.0 && cfg->dropout < 1.0))
        return FT_ERR(FT_E_ARG, "LoRA dropout must be in [0, 1) (got %g)", cfg->dropout);
    if (!cfg->targets) return FT_ERR(FT_E_ARG, "no LoRA target modules");
    ft_lora *l = NULL;
    ft_status st;
    FT_TRY(ft_calloc((void **)&l, sizeof *l, "lora"));
    l->cfg = *cfg;
    l->n_layers = n_layers;
    l->scale = (float)(cfg->rslora ? cfg->alpha / sqrt((double)cfg->r) : cfg->alpha / (double)cfg->r);
    FT_CHECK_GOTO(st, ft_calloc((void **)&l->t, (size_t)(n_layers * FT_MOD_COUNT) * sizeof *l->t, "lora table"),
                  fail);
    int64_t off = 0;
    for (int64_t layer = 0; layer < n_layers; layer++) {
        for (int m = 0; m < FT_MOD_COUNT; m++) {
            if (!(cfg->targets & (1u << m))) continue;
            ft_lora_tensor *t = &l->t[layer * FT_MOD_COUNT + m];
            t->in = s->in[m], t->out = s->out[m];
            t->a_off = off, off += cfg->r * t->in;
            t->b_off = off, off += t->out * cfg->r;
            t->m_off = t->wn_off = -1;
        }
    }
    FT_CHECK_GOTO(st, ft_lora_tokens_setup(l, cfg, s->in[FT_MOD_Q], &off), fail);
    if (cfg->dora) { /* the magnitudes last: A's initial draws (by offset, below) are plain LoRA's */
        for (int64_t i = 0; i < n_layers * FT_MOD_COUNT; i++) {
            ft_lora_tensor *t = &l->t[i];
            if (!t->in) continue;
            t->m_off = off, off += t->out;
            t->wn_off = l->n_wn, l->n_wn += t->out;
        }
        FT_CHECK_GOTO(st, ft_backend_alloc(be, (void **)&l->wn, l->n_wn * 4, "DoRA weight norms"), fail);
    }
    l->n_params = off;
    /* the f32 master weights page under memory pressure (CUDA managed memory), like the moments */
    FT_CHECK_GOTO(st, ft_backend_alloc_paged(be, (void **)&l->params, off * 4, "LoRA weights"), fail);
    FT_CHECK_GOTO(st, ft_backend_alloc(be, (void **)&l->grads, off * 4, "LoRA gradients"), fail);
    FT_CHECK_GOTO(st, ft_backend_memset(be, l->grads, 0, off * 4), fail);

    /* PEFT default init on the host, uploaded once: A ~ U(-1/sqrt(in), 1/sqrt(in)), B = 0.
     * Element i of the whole parameter vector draws from (seed, i): independent of layout order. */
    float *host = NULL;
    FT_CHECK_GOTO(st, ft_calloc((void **)&host, (size_t)off * 4, "LoRA init"), fail);
    for (int64_t i = 0; i < n_layers * FT_MOD_COUNT; i++) {
        const ft_lora_tensor *t = &l->t[i];
        if (!t->in) continue;
        float bound = (float)(1.0 / sqrt((double)t->in));
        for (int64_t j = 0; j < cfg->r * t->in; j++) {
            uint64_t idx = (uint64_t)(t->a_off + j);
            host[t->a_off + j] = (2.0f * ft_uniform(cfg->seed, idx) - 1.0f) * bound;
        }
    }
    st = ft_backend_upload(be, l->params, host, off * 4);
    ft_free(host);
    if (st != FT_OK) goto fail;
    *out = l;
    return FT_OK;
fail:
    ft_lora_free(l, be);
    return st;
}

void ft_lora_free(ft_lora *l, ft_backend *be) {
    if (!l) return;
    ft_backend_release(be, l->params);
    ft_backend_release(be, l->grads);
    ft_backend_release(be, l->wn);
    ft_free(l->tok.ids);
    ft_free(l->t);
    ft_free(l);
}

ft_status ft_lora_zero_grads(ft_lora *l, ft_backend *be) {
    return ft_backend_memset(be, l->grads, 0, l->n_params * 4);
}
