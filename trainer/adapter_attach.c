/* adapter_attach.c: see adapter_attach.h. */
#include "trainer/adapter_attach.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/log.h"
#include "kernels/mem.h"
#include "trainer/commands.h"

ft_status ft_adapter_load_for(const char *model_dir, const char *path, ft_adapter *a) {
    ft_model_config cfg;
    char base_dir[4096];
    ft_status st;
    memset(a, 0, sizeof *a);
    /* as `ftune export` reads it (the config and every tensor checked), and against the model's
     * config as `ftune merge` checks it: its family, layers and shapes */
    FT_CHECK_GOTO(st, ft_export_load_adapter(path, a), fail);
    FT_CHECK_GOTO(st, ft_adapter_base_config(a, model_dir, &cfg, base_dir, sizeof base_dir), fail);
    FT_CHECK_GOTO(st, ft_adapter_check(a, &cfg, base_dir), fail);
    if (a->n == 0) {
        st = FT_ERR(FT_E_FORMAT, "%s: the adapter holds no LoRA tensor", a->dir);
        goto fail;
    }
    for (int64_t i = 0; i < a->n; i++) {
        const ft_adapter_mod *md = &a->m[i];
        /* ft_lora holds one rank and one scale: what ftune trains; PEFT's rank_pattern and
         * alpha_pattern are for `ftune merge`, which applies each module's own */
        if (md->r != a->m[0].r || !(fabs(md->scale - a->m[0].scale) <= 1e-12 * fabs(a->m[0].scale))) {
            st = FT_ERR(FT_E_UNSUPPORTED, "%s: modules of different ranks or scales (rank_pattern/alpha_pattern): "
                                          "apply it with 'ftune merge --base %s --adapter %s' instead", a->dir,
                        model_dir, path);
            goto fail;
        }
    }
    return FT_OK;
fail:
    ft_adapter_free(a);
    return st;
}

static int ft_id_cmp(const void *x, const void *y) {
    int32_t a = *(const int32_t *)x, b = *(const int32_t *)y;
    return (a > b) - (a < b);
}

/* The adapter's trainable tokens as ft_lora holds them: one ascending id list whose embedding and
 * lm_head rows are both trained (one set of rows when tied). *ids (malloc'd) is the embedding's
 * list, or lm_head's when the embedding has none; whichever half the file lacks is the base's rows
 * (ft_lora_init_tokens), as PEFT leaves a module it did not wrap. What ft_lora cannot hold is
 * refused: two different lists (with the command that applies them, `ftune merge`), or lm_head rows
 * of their own on a tied model (ft_lora's tied rows serve the embedding and lm_head both). */
static ft_status ft_attach_tokens(const ft_adapter *a, const ft_model_dims *d, int32_t **ids, int64_t *k) {
    *ids = NULL, *k = 0;
    if (!a->n_embed_tokens && !a->n_head_tokens) return FT_OK;
    if (d->tied && a->n_head_tokens)
        return FT_ERR(FT_E_UNSUPPORTED, "%s: trainable tokens with lm_head rows of their own on a model whose lm_head "
                                        "is its embedding (tie_word_embeddings; PEFT trains them so when given another "
                                        "lm_head list than the embedding's): not supported, ftune's tied rows serve both",
                      a->dir);
    const int64_t n = a->n_embed_tokens ? a->n_embed_tokens : a->n_head_tokens;
    if (n > FT_LORA_MAX_TOKENS)
        return FT_ERR(FT_E_UNSUPPORTED, "%s: %lld trainable tokens: ftune applies at most %d on the fly; apply it with "
                                        "'ftune merge' instead", a->dir, (long long)n, FT_LORA_MAX_TOKENS);
    FT_TRY(ft_malloc((void **)ids, (size_t)n * sizeof **ids, "trainable tokens"));
    memcpy(*ids, a->n_embed_tokens ? a->embed_ids : a->head_ids, (size_t)n * sizeof **ids);
    qsort(*ids, (size_t)n, sizeof **ids, ft_id_cmp);
    if (a->n_embed_tokens && a->n_head_tokens) {
        int same = a->n_head_tokens == n;
        for (int64_t i = 0; i < a->n_head_tokens && same; i++)
            same = bsearch(&a->head_ids[i], *ids, (size_t)n, sizeof **ids, ft_id_cmp) != NULL;
        if (!same) {
            ft_free(*ids), *ids = NULL;
            return FT_ERR(FT_E_UNSUPPORTED, "%s: the embedding and lm_head train different tokens "
                                            "(trainable_token_indices): apply it with 'ftune merge' instead", a->dir);
        }
    }
    *k = n;
    return FT_OK;
}

/* Writes the file's rows [n, C] (ids in the file's order) over their places in host's [k, C] rows
 * of ascending tok->ids. */
static void ft_attach_rows(const ft_lora_tokens *tok, float *rows, const int32_t *ids, const float *src, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        const int32_t *at = bsearch(&ids[i], tok->ids, (size_t)tok->k, sizeof *tok->ids, ft_id_cmp);
        FT_ASSERT(at); /* tok->ids is this list's set (ft_attach_tokens) */
        memcpy(rows + (at - tok->ids) * tok->C, src + i * tok->C, (size_t)tok->C * sizeof *rows);
    }
}

ft_status ft_model_attach_adapter(ft_model *m, ft_backend *be, const ft_adapter *a, ft_lora **out) {
    ft_lora *l = NULL;
    float *host = NULL;
    int32_t *tok_ids = NULL;
    ft_status st;
    *out = NULL;
    const ft_model_dims *d = ft_model_get_dims(m);
    unsigned targets = 0;
    for (int64_t i = 0; i < a->n; i++)
        targets |= 1u << (unsigned)a->m[i].lin; /* ft_linear and ft_module share their order (q k v o gate up down) */
    const int64_t r = a->m[0].r;
    /* alpha from the effective scale, so that ft_lora's alpha/r (or alpha/sqrt(r)) reproduces it */
    ft_lora_cfg cfg = {.r = r, .alpha = a->m[0].scale * (a->rslora ? sqrt((double)r) : (double)r), .dropout = 0.0,
                       .rslora = a->rslora, .targets = targets, .vlm = a->vlm, .tied = d->tied, .dora = a->dora};
    const ft_lora_shapes shapes = ft_model_lora_shapes(d);
    FT_CHECK_GOTO(st, ft_attach_tokens(a, d, &tok_ids, &cfg.n_tokens), done);
    cfg.tokens = tok_ids;
    FT_CHECK_GOTO(st, ft_lora_create(&l, be, &cfg, &shapes, d->L), done);
    FT_CHECK_GOTO(st, ft_calloc((void **)&host, (size_t)l->n_params * sizeof *host, "adapter"), done);
    if (l->tok.k) {
        /* the base's rows first (a half the file lacks keeps them), then the file's over them */
        const ft_lora_tokens *tk = &l->tok;
        if (tk->C != a->tokens_C) { /* ft_adapter_load_for checked it against hidden_size */
            st = FT_ERR(FT_E_FORMAT, "%s: trainable-token rows of %lld where the model's are %lld", a->dir,
                        (long long)a->tokens_C, (long long)tk->C);
            goto done;
        }
        FT_CHECK_GOTO(st, ft_lora_init_tokens(l, be, &ft_model_get_weights(m)->embed, &ft_model_get_weights(m)->lm_head),
                      done);
        const int64_t off = tk->embed_off < tk->head_off ? tk->embed_off : tk->head_off; /* the rows come last */
        FT_CHECK_GOTO(st, ft_backend_download(be, host + off, l->params + off, (l->n_params - off) * 4), done);
        if (a->n_embed_tokens) ft_attach_rows(tk, host + tk->embed_off, a->embed_ids, a->embed_rows, a->n_embed_tokens);
        if (a->n_head_tokens) ft_attach_rows(tk, host + tk->head_off, a->head_ids, a->head_rows, a->n_head_tokens);
    }
    int64_t placed = 0;
    for (int64_t layer = 0; layer < d->L; layer++)
        for (int mod = 0; mod < FT_MOD_COUNT; mod++) {
            const ft_lora_tensor *t = ft_lora_get(l, layer, (ft_module)mod);
            if (!t) continue;
            /* a layer the adapter leaves alone (PEFT's layers_to_transform) keeps A = B = 0: its
             * product adds nothing, as `ftune merge` leaves that layer's weight as it is */
            const ft_adapter_mod *md = ft_adapter_find(a, layer, (ft_linear)mod);
            if (!md && a->dora) { /* its magnitude would have to be ||W||: only a merge applies such an adapter */
                st = FT_ERR(FT_E_UNSUPPORTED,
                            "%s: a DoRA adapter that leaves layer %lld %s alone (layers_to_transform): apply it with "
                            "'ftune merge' instead", a->dir, (long long)layer, ft_module_name((ft_module)mod));
                goto done;
            }
            if (!md) continue;
            if (md->r != r || md->in != t->in || md->out != t->out) { /* ft_adapter_load_for checked them */
                st = FT_ERR(FT_E_FORMAT, "%s: layer %lld: a module of [%lld, %lld] where the model's is [%lld, %lld]",
                            a->dir, (long long)layer, (long long)md->out, (long long)md->in, (long long)t->out,
                            (long long)t->in);
                goto done;
            }
            memcpy(host + t->a_off, md->A, (size_t)(r * t->in) * sizeof *host);
            memcpy(host + t->b_off, md->B, (size_t)(t->out * r) * sizeof *host);
            if (a->dora) memcpy(host + t->m_off, md->mag, (size_t)t->out * sizeof *host); /* DoRA (lora.h) */
            placed++;
        }
    FT_CHECK_GOTO(st, ft_backend_upload(be, l->params, host, l->n_params * 4), done);
    l->mag_set = a->dora; /* the magnitudes are the file's: the model's first pass keeps them */
    ft_model_set_lora(m, l);
    if (l->tok.k)
        ft_info("adapter: %s (r %lld, scale %g, %lld modules, %lld trainable tokens) applied to the model", a->dir,
                (long long)r, a->m[0].scale, (long long)placed, (long long)l->tok.k);
    else
        ft_info("adapter: %s (r %lld, scale %g, %lld modules%s) applied to the model", a->dir, (long long)r,
                a->m[0].scale, (long long)placed, a->dora ? ", DoRA" : "");
    *out = l, l = NULL;
done:
    if (l) ft_lora_free(l, be);
    ft_free(host);
    ft_free(tok_ids);
    return st;
}

_Static_assert(FT_ADAPTER_MAX_TOKENS == FT_LORA_MAX_TOKENS, "an adapter lists at most the tokens an ft_lora trains");
