/* adapter_attach.c: see adapter_attach.h. */
#include "trainer/adapter_attach.h"

#include <math.h>
#include <stdio.h>

#include "export/adapter.h"
#include "kernels/log.h"

ft_status ft_model_attach_adapter(ft_model *m, ft_backend *be, const char *path, ft_lora **out) {
    char dir[4096], st_path[4200];
    ft_adapter a = {0};
    ft_lora *l = NULL;
    ft_status st;
    *out = NULL;
    FT_CHECK_GOTO(st, ft_adapter_resolve(path, dir, sizeof dir), done);
    FT_CHECK_GOTO(st, ft_adapter_load(&a, dir), done); /* the config and every tensor checked, as export does */
    const ft_model_dims *d = ft_model_get_dims(m);
    unsigned targets = 0;
    for (int64_t i = 0; i < a.n; i++) {
        const ft_adapter_mod *md = &a.m[i];
        /* ft_lora holds one rank and one scale: what ftune trains; PEFT's rank_pattern and
         * alpha_pattern are for `ftune merge`, which applies each module's own */
        if (md->r != a.m[0].r || !(fabs(md->scale - a.m[0].scale) <= 1e-12 * fabs(a.m[0].scale))) {
            st = FT_ERR(FT_E_UNSUPPORTED, "%s: modules of different ranks or scales (rank_pattern/alpha_pattern): "
                                          "apply it with 'ftune merge --adapter %s' instead", dir, dir);
            goto done;
        }
        if (md->layer >= d->L) {
            st = FT_ERR(FT_E_FORMAT, "%s: a tensor of layer %lld, but the model has %lld layers", dir,
                        (long long)md->layer, (long long)d->L);
            goto done;
        }
        targets |= 1u << (unsigned)md->lin; /* ft_linear and ft_module share their order (q k v o gate up down) */
    }
    if (a.n == 0) {
        st = FT_ERR(FT_E_FORMAT, "%s: the adapter holds no LoRA tensor", dir);
        goto done;
    }
    ft_lora_cfg cfg = {.r = a.m[0].r, .alpha = a.alpha, .dropout = 0.0, .rslora = a.rslora, .targets = targets};
    if (a.m[0].r != a.r) cfg.alpha = a.m[0].scale * (a.rslora ? sqrt((double)a.m[0].r) : (double)a.m[0].r);
    const ft_lora_shapes shapes = ft_model_lora_shapes(d);
    FT_CHECK_GOTO(st, ft_lora_create(&l, be, &cfg, &shapes, d->L), done);
    /* every (layer, module) of the mask must be in the file with the model's shapes */
    snprintf(st_path, sizeof st_path, "%s/adapter_model.safetensors", dir);
    FT_CHECK_GOTO(st, ft_lora_load(l, be, st_path), done);
    ft_model_set_lora(m, l);
    ft_info("adapter: %s (r %lld, scale %g, %lld modules) applied to the model", dir, (long long)cfg.r, a.m[0].scale,
            (long long)a.n);
    *out = l, l = NULL;
done:
    if (l) ft_lora_free(l, be);
    ft_adapter_free(&a);
    return st;
}
