/* lora_io.c: adapter tensors to and from safetensors under PEFT names
 * (base_model.model.model.layers.L.self_attn.q_proj.lora_A.weight, A [R,in], B [out,R]). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "export/adapter.h"
#include "export/safetensors_write.h"
#include "kernels/fileio.h"
#include "kernels/log.h"
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
    const int64_t nmag = l->cfg.dora ? cap / 2 : 0;               /* DoRA magnitudes, one after each pair */
    cap += ntok + nmag;
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
            if (nmag) { /* DoRA: the module's magnitude right after its pair, where ft_adapter_write_peft puts it,
                         * so that `ftune export CHECKPOINT --format peft` writes final/'s bytes */
                ft_st_tensor *e = &t[k];
                char *name = names + k * FT_LORA_NAME_CAP;
                ft_lora_mag_name(name, FT_LORA_NAME_CAP, layer, m, l->cfg.vlm);
                e->name = name;
                e->st_dtype = FT_ST_F32;
                e->dtype = FT_F32;
                e->ndim = 1;
                e->shape[0] = lt->out; /* [out] */
                e->numel = lt->out;
                e->nbytes = e->numel * 4;
                e->data = host + lt->m_off;
                k++;
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

/* "3, 7, 14" (the first 8) of ids[n]. */
static void ft_id_list(char *out, size_t cap, const int32_t *ids, int64_t n) {
    size_t o = 0;
    out[0] = 0;
    for (int64_t i = 0; i < n && i < 8 && o + 1 < cap; i++) {
        int w = snprintf(out + o, cap - o, "%s%d", i ? ", " : "", ids[i]);
        o += w > 0 ? (size_t)w : 0;
    }
    if (n > 8 && o + 1 < cap) snprintf(out + o, cap - o, ", ...");
}

static int64_t ft_id_find(const int32_t *ids, int64_t n, int32_t id) {
    for (int64_t i = 0; i < n; i++)
        if (ids[i] == id) return i;
    return -1;
}

/* The trainable-token rows of an init file, by id. The rows of a PEFT file are in its
 * adapter_config.json's order, which names the tokens: without it, or with other ids, a row copied
 * by position would land on another token. Each of l's tokens the file has takes its row (the
 * embedding's; lm_head's where both are untied and the file has them); the others keep theirs
 * (the base's); the file's rows of tokens l does not train are left out, with a warning. */
static ft_status ft_lora_load_token_rows(ft_lora *l, float *host, const char *path, const ft_st_model *st_m) {
    int64_t n = ft_st_count(st_m), has = 0;
    for (int64_t i = 0; i < n; i++) has += strstr(ft_st_at(st_m, i)->name, ".token_adapter.") != NULL;
    if (!has) return FT_OK;
    char dir[4096], cfgp[4200];
    snprintf(dir, sizeof dir, "%s", path);
    char *sl = strrchr(dir, '/');
    if (sl) *sl = 0;
    else snprintf(dir, sizeof dir, ".");
    snprintf(cfgp, sizeof cfgp, "%s/adapter_config.json", dir);
    char *text = NULL;
    int64_t len = 0;
    ft_st_tensor *ts = NULL;
    ft_adapter a;
    memset(&a, 0, sizeof a);
    int missing = 0;
    FT_TRY(ft_read_file(cfgp, 1 << 24, &text, &len, &missing));
    if (missing)
        return FT_ERR(FT_E_FORMAT, "%s holds trainable-token rows, but no adapter_config.json beside it says which "
                                   "tokens they belong to (%s)", path, cfgp);
    ft_status st;
    FT_CHECK_GOTO(st, ft_malloc((void **)&ts, (size_t)n * sizeof *ts, "LoRA init tensors"), done);
    for (int64_t i = 0; i < n; i++) ts[i] = *ft_st_at(st_m, i);
    FT_CHECK_GOTO(st, ft_adapter_load_tensors(&a, path, text, ts, n), done); /* PEFT's reading and checks */
    const ft_lora_tokens *tk = &l->tok;
    if (a.tokens_C && tk->k && a.tokens_C != tk->C) {
        st = FT_ERR(FT_E_FORMAT, "%s: trainable-token rows of %lld values, this model's hidden size is %lld", path,
                    (long long)a.tokens_C, (long long)tk->C);
        goto done;
    }
    int64_t got = 0;
    for (int64_t j = 0; j < tk->k; j++) {
        int64_t e = ft_id_find(a.embed_ids, a.n_embed_tokens, tk->ids[j]);
        int64_t h = ft_id_find(a.head_ids, a.n_head_tokens, tk->ids[j]);
        if (e >= 0) memcpy(host + tk->embed_off + j * tk->C, a.embed_rows + e * tk->C, (size_t)tk->C * 4);
        if (h >= 0 && !l->cfg.tied) memcpy(host + tk->head_off + j * tk->C, a.head_rows + h * tk->C, (size_t)tk->C * 4);
        got += e >= 0 || (h >= 0 && !l->cfg.tied);
    }
    int32_t *left = NULL;
    int64_t nl = 0;
    FT_CHECK_GOTO(st, ft_malloc((void **)&left, (size_t)(a.n_embed_tokens + a.n_head_tokens + 1) * 4, "ids"), done);
    for (int64_t i = 0; i < a.n_embed_tokens + a.n_head_tokens; i++) {
        int32_t id = i < a.n_embed_tokens ? a.embed_ids[i] : a.head_ids[i - a.n_embed_tokens];
        if (ft_id_find(tk->ids, tk->k, id) < 0 && ft_id_find(left, nl, id) < 0) left[nl++] = id;
    }
    char list[256];
    if (nl) {
        ft_id_list(list, sizeof list, left, nl);
        ft_warn("%s: the rows of %lld token%s (%s) are left out: lora.trainable_tokens does not train %s", path,
                (long long)nl, nl > 1 ? "s" : "", list, nl > 1 ? "them" : "it");
    }
    if (tk->k)
        ft_info("%s: %lld of the %lld trainable tokens start from its rows%s", path, (long long)got, (long long)tk->k,
                got < tk->k ? ", the others from the base's" : "");
    ft_free(left);
done:
    ft_adapter_free(&a);
    ft_free(ts);
    free(text);
    return st;
}

/* Tensor `name` of the file, or NULL (no error set): as named, or as a vision-language text model's
 * adapter was named before transformers 4.52 (model.language_model.layers. -> language_model.model.layers.);
 * a DoRA magnitude also with the DoraLinearLayer's ".weight", which PEFT's loader takes too
 * (export/adapter_dora.c ft_adapter_dora_match). */
static const ft_st_tensor *ft_lora_lookup(const ft_st_model *st_m, const char *name, int vlm) {
    static const char now[] = FT_PEFT_PREFIX "model.language_model.layers.",
                      old[] = FT_PEFT_PREFIX "language_model.model.layers.";
    _Static_assert(sizeof now == sizeof old, "the two layouts' prefixes have one length");
    const int mag = strstr(name, ".lora_magnitude_vector") != NULL;
    char alt[FT_LORA_NAME_CAP + 16];
    for (int v = 0; v < (vlm ? 2 : 1); v++) {
        if (v && strncmp(name, now, sizeof now - 1) != 0) break;
        for (int w = 0; w < (mag ? 2 : 1); w++) {
            snprintf(alt, sizeof alt, "%s%s%s", v ? old : "", v ? name + sizeof now - 1 : name, w ? ".weight" : "");
            const ft_st_tensor *t = ft_st_lookup(st_m, alt);
            if (t) return t;
        }
    }
    return NULL;
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
    /* DoRA magnitudes: the file has one for each of this adapter's modules or none at all (those of
     * modules this adapter does not target are left out, as their A and B are) */
    int64_t in_file = 0, mags = 0, mag_want = 0;
    for (int64_t i = 0; i < ft_st_count(st_m); i++) in_file += strstr(ft_st_at(st_m, i)->name, ".lora_magnitude_vector") != NULL;
    for (int64_t i = 0; i < nt; i++)
        if (ts[i].ndim == 1) mag_want++, mags += ft_lora_lookup(st_m, ts[i].name, l->cfg.vlm) != NULL;
    if (in_file && !l->cfg.dora) {
        st = FT_ERR(FT_E_FORMAT, "%s is a DoRA adapter (it has lora_magnitude_vector tensors): set lora.dora: true "
                                 "(--dora) to use it", path);
        goto done;
    }
    if (in_file && mags != mag_want) {
        st = FT_ERR(FT_E_FORMAT, "%s has DoRA magnitude vectors for %lld of this adapter's %lld modules: all or none",
                    path, (long long)mags, (long long)mag_want);
        goto done;
    }
    for (int64_t i = 0; i < nt; i++) {
        const ft_st_tensor *want = &ts[i];
        int64_t rows = want->shape[0], cols = want->ndim > 1 ? want->shape[1] : 1;
        ft_st_tensor info;
        ft_dtype dt;
        if (strstr(want->name, ".token_adapter.")) continue; /* by id, below */
        if (want->ndim == 1 && !mags) continue;              /* a LoRA file as a DoRA run's start: set from the norms */
        const ft_st_tensor *found = ft_lora_lookup(st_m, want->name, l->cfg.vlm);
        if (!found) {
            st = ft_st_find(st_m, want->name, &info); /* its message: no tensor of that name */
            if (st == FT_OK) st = FT_ERR(FT_E_INTERNAL, "%s: lookup of %s", path, want->name);
            goto done;
        }
        info = *found;
        FT_CHECK_GOTO(st, ft_st_tensor_dtype(&info, &dt), done);
        if (want->ndim == 1 && (info.ndim != 1 || info.shape[0] != rows || !(dt == FT_F32 || dt == FT_F16 || dt == FT_BF16))) {
            st = FT_ERR(FT_E_FORMAT, "%s: tensor %s has %lld dimension%s [%lld%s] %s, expected [%lld] float (DoRA's magnitude "
                        "per output row)", path, found->name, (long long)info.ndim, info.ndim == 1 ? "" : "s",
                        (long long)info.shape[0], info.ndim > 1 ? ", ..." : "", ft_dtype_name(dt), (long long)rows);
            goto done;
        }
        if (want->ndim == 2 && (info.ndim != 2 || info.shape[0] != rows || info.shape[1] != cols ||
                                !(dt == FT_F32 || dt == FT_F16 || dt == FT_BF16))) {
            st = FT_ERR(FT_E_FORMAT, "%s: tensor %s has shape [%lld, %lld] %s, expected [%lld, %lld] float", path,
                        want->name, (long long)info.shape[0], (long long)(info.ndim > 1 ? info.shape[1] : 0),
                        ft_dtype_name(dt), (long long)rows, (long long)cols);
            goto done;
        }
        float *dst = host + ((const float *)want->data - host);
        ft_to_f32(dst, info.data, dt, rows * cols);
        for (int64_t o = 0; want->ndim == 1 && o < rows; o++)
            if (!(dst[o] != 0.0f && isfinite(dst[o]))) { /* the backward divides by it (model.h ft_dora_output_kept) */
                st = FT_ERR(FT_E_FORMAT, "%s: %s[%lld] is %g: a DoRA magnitude must be finite and not 0", path,
                            found->name, (long long)o, (double)dst[o]);
                goto done;
            }
    }
    FT_CHECK_GOTO(st, ft_lora_load_token_rows(l, host, path, st_m), done);
    st = ft_backend_upload(be, l->params, host, l->n_params * 4);
    if (st == FT_OK && mags) l->mag_set = 1;
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
        FT_CHECK_GOTO(st, ft_stw_add(w, ts[i].name, FT_ST_F32, ts[i].ndim, ts[i].shape, ts[i].data), fail);
    st = ft_stw_finish(w);
    w = NULL;
fail:
    ft_stw_discard(w);
    free(ts);
    ft_free(host);
    return st;
}
