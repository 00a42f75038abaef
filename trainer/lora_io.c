/* lora_io.c: adapter tensors to and from safetensors under PEFT names
 * (base_model.model.model.layers.L.self_attn.q_proj.lora_A.weight, A [R,in], B [out,R]). */
#include <stdio.h>
#include <string.h>

#include "export/safetensors_write.h"
#include "kernels/mem.h"
#include "trainer/lora.h"
#include "trainer/safetensors_read.h"

ft_status ft_lora_load(ft_lora *l, ft_backend *be, const char *path) {
    ft_st_model *st_m = NULL;
    float *host = NULL;
    ft_status st;
    FT_TRY(ft_st_open(&st_m, path));
    FT_CHECK_GOTO(st, ft_malloc((void **)&host, (size_t)l->n_params * 4, "LoRA weights"), done);
    for (int64_t layer = 0; layer < l->n_layers; layer++) {
        for (int m = 0; m < FT_MOD_COUNT; m++) {
            const ft_lora_tensor *t = ft_lora_get(l, layer, m);
            if (!t) continue;
            for (int which = 0; which < 2; which++) {
                char name[160];
                ft_lora_tensor_name(name, sizeof name, layer, m, which ? 'B' : 'A');
                int64_t rows = which ? t->out : l->cfg.r, cols = which ? l->cfg.r : t->in;
                ft_st_tensor info;
                ft_dtype dt;
                FT_CHECK_GOTO(st, ft_st_find(st_m, name, &info), done);
                FT_CHECK_GOTO(st, ft_st_tensor_dtype(&info, &dt), done);
                if (info.ndim != 2 || info.shape[0] != rows || info.shape[1] != cols ||
                    !(dt == FT_F32 || dt == FT_F16 || dt == FT_BF16)) {
                    st = FT_ERR(FT_E_FORMAT, "%s: tensor %s has shape [%lld, %lld] %s, expected [%lld, %lld] float",
                                path, name, (long long)info.shape[0], (long long)(info.ndim > 1 ? info.shape[1] : 0),
                                ft_dtype_name(dt), (long long)rows, (long long)cols);
                    goto done;
                }
                ft_to_f32(host + (which ? t->b_off : t->a_off), info.data, dt, rows * cols);
            }
        }
    }
    st = ft_backend_upload(be, l->params, host, l->n_params * 4);
done:
    ft_free(host);
    ft_st_close(st_m);
    return st;
}

ft_status ft_lora_save(const ft_lora *l, ft_backend *be, const char *path, char which_vec) {
    ft_stw *w = NULL;
    float *host = NULL;
    ft_status st;
    FT_TRY(ft_malloc((void **)&host, (size_t)l->n_params * 4, "LoRA tensors"));
    FT_CHECK_GOTO(st, ft_backend_download(be, host, which_vec == 'g' ? l->grads : l->params, l->n_params * 4), fail);
    FT_CHECK_GOTO(st, ft_stw_open(&w, path), fail);
    FT_CHECK_GOTO(st, ft_stw_set_metadata(w, "format", "pt"), fail);
    for (int64_t layer = 0; layer < l->n_layers; layer++) {
        for (int m = 0; m < FT_MOD_COUNT; m++) {
            const ft_lora_tensor *t = ft_lora_get(l, layer, m);
            if (!t) continue;
            char name[160];
            int64_t sa[2] = {l->cfg.r, t->in}, sb[2] = {t->out, l->cfg.r};
            ft_lora_tensor_name(name, sizeof name, layer, m, 'A');
            FT_CHECK_GOTO(st, ft_stw_add(w, name, FT_ST_F32, 2, sa, host + t->a_off), fail);
            ft_lora_tensor_name(name, sizeof name, layer, m, 'B');
            FT_CHECK_GOTO(st, ft_stw_add(w, name, FT_ST_F32, 2, sb, host + t->b_off), fail);
        }
    }
    st = ft_stw_finish(w);
    w = NULL;
fail:
    ft_stw_discard(w);
    ft_free(host);
    return st;
}
