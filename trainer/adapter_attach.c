/* adapter_attach.c: see adapter_attach.h. */
#include "trainer/adapter_attach.h"

#include <math.h>
#include <stdio.h>
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

ft_status ft_model_attach_adapter(ft_model *m, ft_backend *be, const ft_adapter *a, ft_lora **out) {
    ft_lora *l = NULL;
    float *host = NULL;
    ft_status st;
    *out = NULL;
    const ft_model_dims *d = ft_model_get_dims(m);
    unsigned targets = 0;
    for (int64_t i = 0; i < a->n; i++)
        targets |= 1u << (unsigned)a->m[i].lin; /* ft_linear and ft_module share their order (q k v o gate up down) */
    const int64_t r = a->m[0].r;
    /* alpha from the effective scale, so that ft_lora's alpha/r (or alpha/sqrt(r)) reproduces it */
    ft_lora_cfg cfg = {.r = r, .alpha = a->m[0].scale * (a->rslora ? sqrt((double)r) : (double)r), .dropout = 0.0,
                       .rslora = a->rslora, .targets = targets};
    const ft_lora_shapes shapes = ft_model_lora_shapes(d);
    FT_CHECK_GOTO(st, ft_lora_create(&l, be, &cfg, &shapes, d->L), done);
    FT_CHECK_GOTO(st, ft_calloc((void **)&host, (size_t)l->n_params * sizeof *host, "adapter"), done);
    int64_t placed = 0;
    for (int64_t layer = 0; layer < d->L; layer++)
        for (int mod = 0; mod < FT_MOD_COUNT; mod++) {
            const ft_lora_tensor *t = ft_lora_get(l, layer, (ft_module)mod);
            if (!t) continue;
            /* a layer the adapter leaves alone (PEFT's layers_to_transform) keeps A = B = 0: its
             * product adds nothing, as `ftune merge` leaves that layer's weight as it is */
            const ft_adapter_mod *md = ft_adapter_find(a, layer, (ft_linear)mod);
            if (!md) continue;
            if (md->r != r || md->in != t->in || md->out != t->out) { /* ft_adapter_load_for checked them */
                st = FT_ERR(FT_E_FORMAT, "%s: layer %lld: a module of [%lld, %lld] where the model's is [%lld, %lld]",
                            a->dir, (long long)layer, (long long)md->out, (long long)md->in, (long long)t->out,
                            (long long)t->in);
                goto done;
            }
            memcpy(host + t->a_off, md->A, (size_t)(r * t->in) * sizeof *host);
            memcpy(host + t->b_off, md->B, (size_t)(t->out * r) * sizeof *host);
            placed++;
        }
    FT_CHECK_GOTO(st, ft_backend_upload(be, l->params, host, l->n_params * 4), done);
    ft_model_set_lora(m, l);
    ft_info("adapter: %s (r %lld, scale %g, %lld modules) applied to the model", a->dir, (long long)r, a->m[0].scale,
            (long long)placed);
    *out = l, l = NULL;
done:
    if (l) ft_lora_free(l, be);
    ft_free(host);
    return st;
}
