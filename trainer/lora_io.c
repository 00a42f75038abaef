/* lora_io.c: adapter tensors to and from safetensors under PEFT names
 * (base_model.model.model.layers.L.self_attn.q_proj.lora_A.weight, A [R,in], B [out,R]). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "export/safetensors_write.h"
#include "kernels/mem.h"
#include "trainer/arch.h"
#include "trainer/lora.h"
#include "trainer/safetensors_read.h"

/* Room for each name of ft_lora_peft_tensors: the longest ft_lora_tensor_name writes is about 80
 * characters (a 19-digit layer); 160 is what ft_lora_save and ft_lora_load always used. */
#define FT_LORA_NAME_CAP 160

ft_status ft_lora_peft_tensors(const ft_lora *l, const float *host, ft_st_tensor **out, int64_t *n) {
    *out = NULL;
    *n = 0;
    int64_t cap = 0;
    for (int64_t layer = 0; layer < l->n_layers; layer++)
        for (int m = 0; m < FT_MOD_COUNT; m++) cap += ft_lora_get(l, layer, m) ? 2 : 0;
    const int64_t ntok = l->tok.k ? (l->cfg.tied ? 1 : 2) : 0; /* trainable-token rows, after the pairs */
    cap += ntok;
    ft_st_tensor *t = NULL;
    /* one block, descriptors then names, so the caller frees it once */
    FT_TRY(ft_calloc((void **)&t, (size_t)cap * (sizeof *t + FT_LORA_NAME_CAP), "LoRA tensor list"));
    char *names = (char *)(t + cap);
    int64_t k = 0;
    for (int64_t layer = 0; layer < l->n_layers; layer++) {
        for (int m = 0; m < FT_MOD_COUNT; m++) {
            const ft_lora_tensor *lt = ft_lora_get(l, layer, m);
            if (!lt) continue;
            for (int which = 0; which < 2; which++, k++) {
                ft_st_tensor *e = &t[k];
                char *name = names + k * FT_LORA_NAME_CAP;
                ft_lora_tensor_name(name, FT_LORA_NAME_CAP, layer, m, which ? 'B' : 'A', l->cfg.vlm);
                e->name = name;
                e->st_dtype = FT_ST_F32;
                e->dtype = FT_F32;
                e->ndim = 2;
                e->shape[0] = which ? lt->out : l->cfg.r; /* A [R, in], B [out, R] */
                e->shape[1] = which ? l->cfg.r : lt->in;
                e->numel = e->shape[0] * e->shape[1];
                e->nbytes = e->numel * 4;
                e->data = host + (which ? lt->b_off : lt->a_off);
            }
        }
    }
    for (int head = 0; head < ntok; head++, k++) {
        ft_st_tensor *e = &t[k];
        char *name = names + k * FT_LORA_NAME_CAP;
        ft_lora_tokens_name(name, FT_LORA_NAME_CAP, head, l->cfg.vlm);
        e->name = name;
        e->st_dtype = FT_ST_F32;
        e->dtype = FT_F32;
        e->ndim = 2;
        e->shape[0] = l->tok.k, e->shape[1] = l->tok.C; /* [k, C] */
        e->numel = e->shape[0] * e->shape[1];
        e->nbytes = e->numel * 4;
        e->data = host + (head ? l->tok.head_off : l->tok.embed_off);
    }
    *out = t;
    *n = k;
    return FT_OK;
}

ft_status ft_lora_load(ft_lora *l, ft_backend *be, const char *path) {
    ft_st_model *st_m = NULL;
    float *host = NULL;
    ft_st_tensor *ts = NULL;
    int64_t nt = 0;
    ft_status st;
    FT_TRY(ft_st_open(&st_m, path));
    FT_CHECK_GOTO(st, ft_malloc((void **)&host, (size_t)l->n_params * 4, "LoRA weights"), done);
    /* what the file does not hold keeps its value: the trainable-token rows of an init file made without them */
    FT_CHECK_GOTO(st, ft_backend_download(be, host, l->params, l->n_params * 4), done);
    FT_CHECK_GOTO(st, ft_lora_peft_tensors(l, host, &ts, &nt), done);
    for (int64_t i = 0; i < nt; i++) {
        const ft_st_tensor *want = &ts[i];
        int64_t rows = want->shape[0], cols = want->shape[1];
        ft_st_tensor info;
        ft_dtype dt;
        if (strstr(want->name, ".token_adapter.") && !ft_st_has(st_m, want->name)) continue;
        st = ft_st_find(st_m, want->name, &info);
        if (st != FT_OK && l->cfg.vlm) { /* a vision-language text model's adapter as transformers < 4.52 named it */
            static const char now[] = FT_PEFT_PREFIX "model.language_model.layers.",
                              old[] = FT_PEFT_PREFIX "language_model.model.layers.";
            char alt[FT_LORA_NAME_CAP];
            _Static_assert(sizeof now == sizeof old, "the two layouts' prefixes have one length");
            if (strncmp(want->name, now, sizeof now - 1) == 0) {
                snprintf(alt, sizeof alt, "%s%s", old, want->name + sizeof now - 1);
                if (ft_st_find(st_m, alt, &info) == FT_OK) ft_error_clear(), st = FT_OK;
            }
        }
        if (st != FT_OK) goto done;
        FT_CHECK_GOTO(st, ft_st_tensor_dtype(&info, &dt), done);
        if (info.ndim != 2 || info.shape[0] != rows || info.shape[1] != cols ||
            !(dt == FT_F32 || dt == FT_F16 || dt == FT_BF16)) {
            st = FT_ERR(FT_E_FORMAT, "%s: tensor %s has shape [%lld, %lld] %s, expected [%lld, %lld] float", path,
                        want->name, (long long)info.shape[0], (long long)(info.ndim > 1 ? info.shape[1] : 0),
                        ft_dtype_name(dt), (long long)rows, (long long)cols);
            goto done;
        }
        ft_to_f32(host + ((const float *)want->data - host), info.data, dt, rows * cols);
    }
    st = ft_backend_upload(be, l->params, host, l->n_params * 4);
done:
    free(ts);
    ft_free(host);
    ft_st_close(st_m);
    return st;
}

ft_status ft_lora_save(const ft_lora *l, ft_backend *be, const char *path, char which_vec) {
    ft_stw *w = NULL;
    float *host = NULL;
    ft_st_tensor *ts = NULL;
    int64_t nt = 0;
    ft_status st;
    FT_TRY(ft_malloc((void **)&host, (size_t)l->n_params * 4, "LoRA tensors"));
    FT_CHECK_GOTO(st, ft_backend_download(be, host, which_vec == 'g' ? l->grads : l->params, l->n_params * 4), fail);
    FT_CHECK_GOTO(st, ft_lora_peft_tensors(l, host, &ts, &nt), fail);
    FT_CHECK_GOTO(st, ft_stw_open(&w, path), fail);
    FT_CHECK_GOTO(st, ft_stw_set_metadata(w, "format", "pt"), fail);
    for (int64_t i = 0; i < nt; i++)
        FT_CHECK_GOTO(st, ft_stw_add(w, ts[i].name, FT_ST_F32, 2, ts[i].shape, ts[i].data), fail);
    st = ft_stw_finish(w);
    w = NULL;
fail:
    ft_stw_discard(w);
    free(ts);
    ft_free(host);
    return st;
}
