/* adapter_attach.c: see adapter_attach.h. */
#include "trainer/adapter_attach.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "export/adapter.h"
#include "kernels/log.h"
#include "kernels/mem.h"
#include "trainer/commands.h"

ft_status ft_model_attach_adapter(ft_model *m, ft_backend *be, const char *path, ft_lora **out) {
    ft_adapter a = {0};
    ft_lora *l = NULL;
    float *host = NULL;
    ft_status st;
    *out = NULL;
    /* as `ftune export` reads it: the config and every tensor checked */
    FT_CHECK_GOTO(st, ft_export_load_adapter(path, &a), done);
    const ft_model_dims *d = ft_model_get_dims(m);
    unsigned targets = 0;
    for (int64_t i = 0; i < a.n; i++) {
        const ft_adapter_mod *md = &a.m[i];
        /* ft_lora holds one rank and one scale: what ftune trains; PEFT's rank_pattern and
         * alpha_pattern are for `ftune merge`, which applies each module's own */
        if (md->r != a.m[0].r || !(fabs(md->scale - a.m[0].scale) <= 1e-12 * fabs(a.m[0].scale))) {
            st = FT_ERR(FT_E_UNSUPPORTED, "%s: modules of different ranks or scales (rank_pattern/alpha_pattern): "
                                          "apply it with 'ftune merge --adapter %s' instead", a.dir, path);
            goto done;
        }
        if (md->layer >= d->L) {
            st = FT_ERR(FT_E_FORMAT, "%s: a tensor of layer %lld, but the model has %lld layers", a.dir,
                        (long long)md->layer, (long long)d->L);
            goto done;
        }
        targets |= 1u << (unsigned)md->lin; /* ft_linear and ft_module share their order (q k v o gate up down) */
    }
    if (a.n == 0) {
        st = FT_ERR(FT_E_FORMAT, "%s: the adapter holds no LoRA tensor", a.dir);
        goto done;
    }
    const int64_t r = a.m[0].r;
    /* alpha from the effective scale, so that ft_lora's alpha/r (or alpha/sqrt(r)) reproduces it */
    ft_lora_cfg cfg = {.r = r, .alpha = a.m[0].scale * (a.rslora ? sqrt((double)r) : (double)r), .dropout = 0.0,
                       .rslora = a.rslora, .targets = targets};
    const ft_lora_shapes shapes = ft_model_lora_shapes(d);
    FT_CHECK_GOTO(st, ft_lora_create(&l, be, &cfg, &shapes, d->L), done);
    FT_CHECK_GOTO(st, ft_calloc((void **)&host, (size_t)l->n_params * sizeof *host, "adapter"), done);
    int64_t placed = 0;
    for (int64_t layer = 0; layer < d->L; layer++)
        for (int mod = 0; mod < FT_MOD_COUNT; mod++) {
            const ft_lora_tensor *t = ft_lora_get(l, layer, (ft_module)mod);
            if (!t) continue;
            const ft_adapter_mod *md = ft_adapter_find(&a, layer, (ft_linear)mod);
            if (!md || md->in != t->in || md->out != t->out) {
                char name[160];
                ft_lora_tensor_name(name, sizeof name, layer, (ft_module)mod, 'A');
                st = md ? FT_ERR(FT_E_FORMAT, "%s: %s is [%lld, %lld], the model's module is [%lld, %lld]", a.dir, name,
                                 (long long)r, (long long)md->in, (long long)r, (long long)t->in)
                        : FT_ERR(FT_E_FORMAT, "%s: no %s, though the adapter targets that module in other layers "
                                              "(ftune applies a module to every layer)", a.dir, name);
                goto done;
            }
            memcpy(host + t->a_off, md->A, (size_t)(r * t->in) * sizeof *host);
            memcpy(host + t->b_off, md->B, (size_t)(t->out * r) * sizeof *host);
            placed++;
        }
    FT_CHECK_GOTO(st, ft_backend_upload(be, l->params, host, l->n_params * 4), done);
    ft_model_set_lora(m, l);
    ft_info("adapter: %s (r %lld, scale %g, %lld modules) applied to the model", a.dir, (long long)r, a.m[0].scale,
            (long long)placed);
    *out = l, l = NULL;
done:
    if (l) ft_lora_free(l, be);
    ft_free(host);
    ft_adapter_free(&a);
    return st;
}
