/* gguf_load.c: a GGUF model file as the frozen base (loader.h, ft_model_load_gguf).
 *
 * The seven linears of each layer keep the bytes llama-quantize wrote (Q4_K, Q6_K, Q8_0, ...: the
 * ggml block dtypes of kernels/dtype.h), decoded where a product uses them, so training sees the very
 * weights llama.cpp will run the adapter on; nothing is requantized. 16/32-bit linears are quantized
 * to NF4 or kept, as model.quant says for a safetensors checkpoint. Embeddings, lm_head, norms and
 * biases are kept in BF16 as a checkpoint's would be (a quantized token_embd/output is decoded).
 * Llama-arch q/k rows are permuted back from GGUF's interleaved RoPE order to HF's halves, whole rows
 * of blocks at a time (a row of a block type is a run of whole blocks), so the model and its LoRA
 * adapters live in the HF layout that every export expects. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/log.h"
#include "kernels/mem.h"
#include "trainer/gguf_config.h"
#include "trainer/loader.h"

/* The model's weight of a tensor role in layer l (NULL for a role the model does not have). */
static ft_weight *ft_role_weight(ft_model_weights *w, ft_tensor_role r, int64_t l) {
    const ft_tensor_info *ti = ft_tensor_info_get(r);
    if (!ti->per_layer) return r == FT_TR_TOKEN_EMBD ? &w->embed : r == FT_TR_OUTPUT_NORM ? &w->final_norm : &w->lm_head;
    ft_layer_weights *lw = &w->layers[l];
    switch (r) {
    case FT_TR_ATTN_NORM: return &lw->attn_norm;
    case FT_TR_FFN_NORM: return &lw->ffn_norm;
    case FT_TR_ATTN_Q_BIAS: return &lw->q_bias;
    case FT_TR_ATTN_K_BIAS: return &lw->k_bias;
    case FT_TR_ATTN_V_BIAS: return &lw->v_bias;
    case FT_TR_ATTN_O_BIAS: return &lw->o_bias;
    case FT_TR_ATTN_Q_NORM: return &lw->q_norm;
    case FT_TR_ATTN_K_NORM: return &lw->k_norm;
    default: return ti->linear < FT_LIN_COUNT && ti->ndim == 2 ? &lw->lin[ti->linear] : NULL;
    }
}

static ft_status ft_tensor_of(const ft_gguf *g, const char *path, ft_tensor_role r, int64_t l,
                              const ft_gguf_tensor **out) {
    char name[96];
    ft_arch_name(name, sizeof name, ft_tensor_info_get(r)->gguf, l);
    *out = ft_gguf_tensor_find(g, name);
    if (!*out) return FT_ERR(FT_E_FORMAT, "%s: no tensor %s", path, name);
    return FT_OK;
}

/* Fills w from tensor t; perm_D > 0 permutes rows back from GGUF's q/k order (heads of perm_D rows). */
static ft_status ft_fill(ft_backend *be, const ft_gguf *g, const char *path, const ft_gguf_tensor *t, ft_weight *w,
                         int64_t perm_D) {
    const int two_d = w->rows > 1 || t->n_dims == 2;
    if ((two_d && (t->n_dims != 2 || t->ne[0] != w->cols || t->ne[1] != w->rows)) ||
        (!two_d && (t->n_dims != 1 || t->ne[0] != w->cols)))
        return FT_ERR(FT_E_FORMAT, "%s: tensor %s has ne [%lld, %lld], the model's metadata implies [%lld, %lld]", path,
                      t->name, (long long)t->ne[0], (long long)t->ne[1], (long long)w->cols, (long long)w->rows);
    ft_dtype src;
    const int known = ft_dtype_from_ggml(t->type, &src);
    const void *data = t->data;
    void *tmp = NULL;
    ft_status st = FT_OK;
    if (known && (src == w->dtype || !ft_dtype_is_ggml(src))) {
        /* as stored: the blocks themselves, or 16/32-bit values the backend converts or quantizes */
        if (perm_D > 0) { /* rows of a weight, elements of a bias (convert_hf_to_gguf.py permutes both) */
            const int64_t units = two_d ? w->rows : w->cols, ub = t->nbytes / units;
            FT_TRY(ft_malloc(&tmp, (size_t)t->nbytes, "q/k rows"));
            for (int64_t r = 0; r < units; r++)
                memcpy((char *)tmp + r * ub, (const char *)t->data + ft_gguf_unpermuted_row(r, perm_D) * ub, (size_t)ub);
            data = tmp;
        }
    } else {
        /* a quantized tensor kept at 16/32 bits (embeddings, lm_head; everything with gguf_f32): decoded */
        if (!ft_ggml_can_decode(t->type) || (w->dtype != FT_BF16 && w->dtype != FT_F32))
            return FT_ERR(FT_E_UNSUPPORTED, "%s: tensor %s has type %s, which ftune does not read", path, t->name,
                          ft_ggml_type_name(t->type));
        const int64_t n = w->rows * w->cols, units = two_d ? w->rows : w->cols, uc = n / units;
        float *vals = NULL;
        if (w->dtype == FT_BF16 && perm_D == 0) { /* rows decoded in chunks into the BF16 copy: 2 bytes a value */
            const int64_t chunk = 256;
            FT_TRY(ft_malloc(&tmp, (size_t)n * 2, "decoded tensor"));
            st = ft_malloc((void **)&vals, (size_t)(chunk * w->cols) * 4, "decoded rows");
            for (int64_t r0 = 0; st == FT_OK && r0 < w->rows; r0 += chunk) {
                const int64_t nr = w->rows - r0 < chunk ? w->rows - r0 : chunk;
                st = ft_gguf_tensor_rows_f32(g, t, r0, nr, vals);
                if (st == FT_OK) ft_from_f32((uint16_t *)tmp + r0 * w->cols, FT_BF16, vals, nr * w->cols);
            }
            ft_free(vals);
            if (st == FT_OK) st = ft_weight_set(be, w, tmp, FT_BF16);
            if (st != FT_OK) ft_error_wrap(st, "%s: tensor %s", path, t->name);
            ft_free(tmp);
            return st;
        }
        FT_TRY(ft_malloc(&tmp, (size_t)n * 4, "decoded tensor"));
        st = ft_gguf_tensor_rows_f32(g, t, 0, t->nelem / t->ne[0], tmp);
        if (st == FT_OK && perm_D > 0) { /* q/k rows (bias elements) back to the HF order */
            st = ft_malloc((void **)&vals, (size_t)n * 4, "q/k rows");
            for (int64_t r = 0; st == FT_OK && r < units; r++)
                memcpy(vals + r * uc, (const float *)tmp + ft_gguf_unpermuted_row(r, perm_D) * uc, (size_t)uc * 4);
            if (st == FT_OK) ft_free(tmp), tmp = vals;
        }
        data = tmp, src = FT_F32; /* ft_weight_set rounds to the weight's BF16 where it is one */
    }
    if (st == FT_OK) st = ft_weight_set(be, w, data, src);
    if (st != FT_OK) ft_error_wrap(st, "%s: tensor %s", path, t->name);
    ft_free(tmp);
    return st;
}

/* Each linear's storage (ft_gguf_linear_dtypes), and a line saying what they are. */
static ft_status ft_linear_types(const ft_gguf *g, const char *path, const ft_model_dims *d, const ft_load_opts *opts,
                                 ft_dtype *types) {
    FT_TRY(ft_gguf_linear_dtypes(g, path, d->L, opts->quant == FT_QUANT_NF4, types));
    int64_t count[FT_DTYPE_COUNT] = {0};
    for (int64_t i = 0; i < d->L * FT_MOD_COUNT; i++) count[types[i]]++;
    char line[256] = "";
    size_t at = 0;
    for (int t = 0; t < FT_DTYPE_COUNT; t++)
        if (count[t] && at < sizeof line)
            at += (size_t)snprintf(line + at, sizeof line - at, "%s%s x %lld", at ? ", " : "", ft_dtype_name((ft_dtype)t),
                                   (long long)count[t]);
    ft_info("%s: frozen linears: %s", path, line);
    return FT_OK;
}

ft_status ft_model_load_gguf(ft_model **out, ft_backend *be, const char *path, const ft_load_opts *opts) {
    ft_gguf *g = NULL;
    ft_model *m = NULL;
    ft_dtype *types = NULL;
    ft_model_config cfg;
    ft_model_dims d;
    ft_status st;
    *out = NULL;
    FT_TRY(ft_gguf_open(&g, path));
    FT_CHECK_GOTO(st, ft_cfg_from_gguf(&cfg, g, path), done);
    ft_model_dims_from_config(&cfg, &d);
    FT_CHECK_GOTO(st, ft_malloc((void **)&types, (size_t)(d.L * FT_MOD_COUNT) * sizeof *types, "linear types"), done);
    FT_CHECK_GOTO(st, ft_linear_types(g, path, &d, opts, types), done);
    if (opts->gguf_f32)
        for (int64_t i = 0; i < d.L * FT_MOD_COUNT; i++) types[i] = FT_F32;
    ft_dtype cache = FT_BF16; /* any linear that is not BF16 already is dequantized through the cache */
    for (int64_t i = 0; i < d.L * FT_MOD_COUNT; i++)
        if (types[i] != FT_BF16) cache = types[i];
    FT_CHECK_GOTO(st, ft_model_create_typed(&m, be, &d, cache, types, opts->gguf_f32 ? FT_F32 : FT_BF16, &opts->model),
                  done);

    ft_model_weights *w = ft_model_get_weights(m);
    const int perm = ft_arch_get(cfg.arch)->gguf_permute_qk;
    for (int r = 0; r < FT_TR_COUNT; r++) {
        const ft_tensor_info *ti = ft_tensor_info_get((ft_tensor_role)r);
        if (!ft_cfg_has_tensor(&cfg, (ft_tensor_role)r)) continue;
        for (int64_t l = 0; l < (ti->per_layer ? d.L : 1); l++) {
            const ft_gguf_tensor *t;
            FT_CHECK_GOTO(st, ft_tensor_of(g, path, (ft_tensor_role)r, l, &t), done);
            const int qk = ti->linear == FT_LIN_Q || ti->linear == FT_LIN_K; /* weights and biases */
            FT_CHECK_GOTO(st, ft_fill(be, g, path, t, ft_role_weight(w, (ft_tensor_role)r, l), perm && qk ? d.D : 0),
                          done);
        }
    }
    /* as ft_model_load: the CUDA backend completes the streamed weights here */
    FT_CHECK_GOTO(st, ft_backend_sync(be), done);
    *out = m;
    m = NULL;
done:
    ft_model_free(m);
    ft_free(types);
    ft_gguf_close(g);
    return st;
}
