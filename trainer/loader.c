/* loader.c: see loader.h. Tensors are consumed in file order (the order the bytes sit on disk)
 * and each one's pages are dropped right after it is converted or quantized. */
#include "trainer/loader.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/log.h"
#include "kernels/mem.h"
#include "trainer/gguf_config.h"
#include "trainer/gguf_tokenizer.h"
#include "trainer/hf_config.h"
#include "trainer/safetensors_read.h"

ft_status ft_quant_parse(const char *s, ft_quant *out) {
    if (strcmp(s, "nf4") == 0) *out = FT_QUANT_NF4;
    else if (strcmp(s, "none") == 0 || strcmp(s, "bf16") == 0) *out = FT_QUANT_NONE;
    else return FT_ERR(FT_E_ARG, "unknown quantization '%s' (expected nf4 or none)", s);
    return FT_OK;
}

/* FT_CPU_BF16=1: the CPU backend rounds its activations to BF16 as CUDA stores them, to measure
 * what BF16 storage alone does to a run (the e2e noise floor of tests/gpu/run.sh) */
static ft_status ft_cpu_open(ft_backend **out, int threads) {
    FT_TRY(ft_backend_cpu_create(out, threads));
    const char *e = getenv("FT_CPU_BF16");
    if (e && strcmp(e, "1") == 0) {
        ft_warn("FT_CPU_BF16=1: the cpu backend stores activations as BF16 (a diagnostic)");
        return ft_backend_cpu_bf16(*out);
    }
    return FT_OK;
}

ft_status ft_backend_open(ft_backend **out, const char *device, int threads) {
    if (strcmp(device, "cpu") == 0) return ft_cpu_open(out, threads);
    if (strcmp(device, "cuda") == 0) return ft_backend_cuda_create(out, 0);
    if (strcmp(device, "auto") == 0) {
        if (ft_backend_cuda_create(out, 0) == FT_OK) return FT_OK;
        ft_error_clear();
        return ft_cpu_open(out, threads);
    }
    return FT_ERR(FT_E_ARG, "unknown device '%s' (expected cpu, cuda or auto)", device);
}

/* One expected checkpoint tensor and where it goes. */
typedef struct {
    char name[128];
    ft_weight *w;
    int found;
} ft_slot;

typedef struct {
    ft_slot *s;
    int64_t n, cap;
} ft_slots;

static ft_status ft_slot_add(ft_slots *t, ft_weight *w, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static ft_status ft_slot_add(ft_slots *t, ft_weight *w, const char *fmt, ...) {
    if (t->n == t->cap) {
        int64_t cap = t->cap * 2 + 64;
        ft_slot *p = realloc(t->s, (size_t)cap * sizeof *p);
        if (!p) return FT_ERR(FT_E_OOM, "out of memory");
        t->s = p, t->cap = cap;
    }
    ft_slot *s = &t->s[t->n++];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->name, sizeof s->name, fmt, ap);
    va_end(ap);
    s->w = w, s->found = 0;
    return FT_OK;
}

static ft_status ft_expected_tensors(ft_model *m, ft_slots *t) {
    ft_model_weights *w = ft_model_get_weights(m);
    const ft_model_dims *d = ft_model_get_dims(m);
    static const char *const lin[FT_MOD_COUNT] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                                  "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"};
    FT_TRY(ft_slot_add(t, &w->embed, "model.embed_tokens.weight"));
    FT_TRY(ft_slot_add(t, &w->final_norm, "model.norm.weight"));
    if (!d->tied) FT_TRY(ft_slot_add(t, &w->lm_head, "lm_head.weight"));
    for (int64_t l = 0; l < d->L; l++) {
        ft_layer_weights *lw = &w->layers[l];
        long long L = (long long)l;
        FT_TRY(ft_slot_add(t, &lw->attn_norm, "model.layers.%lld.input_layernorm.weight", L));
        FT_TRY(ft_slot_add(t, &lw->ffn_norm, "model.layers.%lld.post_attention_layernorm.weight", L));
        for (int k = 0; k < FT_MOD_COUNT; k++)
            FT_TRY(ft_slot_add(t, &lw->lin[k], "model.layers.%lld.%s.weight", L, lin[k]));
        if (d->qkv_bias) {
            FT_TRY(ft_slot_add(t, &lw->q_bias, "model.layers.%lld.self_attn.q_proj.bias", L));
            FT_TRY(ft_slot_add(t, &lw->k_bias, "model.layers.%lld.self_attn.k_proj.bias", L));
            FT_TRY(ft_slot_add(t, &lw->v_bias, "model.layers.%lld.self_attn.v_proj.bias", L));
        }
        if (d->o_bias) FT_TRY(ft_slot_add(t, &lw->o_bias, "model.layers.%lld.self_attn.o_proj.bias", L));
        if (d->qk_norm) {
            FT_TRY(ft_slot_add(t, &lw->q_norm, "model.layers.%lld.self_attn.q_norm.weight", L));
            FT_TRY(ft_slot_add(t, &lw->k_norm, "model.layers.%lld.self_attn.k_norm.weight", L));
        }
    }
    return FT_OK;
}

static ft_slot *ft_slot_find(ft_slots *t, const char *name) {
    for (int64_t i = 0; i < t->n; i++)
        if (strcmp(t->s[i].name, name) == 0) return &t->s[i];
    return NULL;
}

/* The element type of tensor `name` in the checkpoint (F32/F16/BF16), for dtype choices. */
static ft_status ft_tensor_float_dtype(const ft_st_model *st, const char *name, ft_dtype *out) {
    ft_st_tensor info;
    FT_TRY(ft_st_find(st, name, &info));
    FT_TRY(ft_st_tensor_dtype(&info, out));
    if (*out != FT_F32 && *out != FT_F16 && *out != FT_BF16)
        return FT_ERR(FT_E_UNSUPPORTED, "%s: tensor %s has dtype %s; ftune loads F32, F16 or BF16 weights",
                      info.shard, name, ft_dtype_name(*out));
    return FT_OK;
}

void ft_model_dims_from_config(const ft_model_config *c, ft_model_dims *d) {
    memset(d, 0, sizeof *d);
    d->C = c->hidden_size, d->F = c->intermediate_size, d->L = c->num_hidden_layers;
    d->H = c->num_attention_heads, d->Hkv = c->num_key_value_heads, d->D = c->head_dim, d->V = c->vocab_size;
    d->eps = (float)c->rms_norm_eps;
    d->rope = c->rope;
    d->qkv_bias = c->qkv_bias, d->o_bias = c->o_bias, d->qk_norm = c->qk_norm, d->tied = c->tie_word_embeddings;
}

ft_status ft_model_load(ft_model **out, ft_backend *be, const char *dir, const ft_load_opts *opts) {
    char path[4096];
    ft_model_config cfg;
    ft_model_dims d;
    ft_st_model *st_m = NULL;
    ft_model *m = NULL;
    ft_slots slots = {0};
    ft_status st;
    *out = NULL;
    if (ft_is_gguf_path(dir)) return ft_model_load_gguf(out, be, dir, opts);
    snprintf(path, sizeof path, "%s/config.json", dir);
    FT_TRY(ft_cfg_load(&cfg, path));
    ft_model_dims_from_config(&cfg, &d);
    FT_CHECK_GOTO(st, ft_st_open(&st_m, dir), done);

    /* frozen linears: NF4, or the checkpoint's own width; everything else keeps its width */
    ft_dtype lin_dt, other_dt;
    FT_CHECK_GOTO(st, ft_tensor_float_dtype(st_m, "model.layers.0.self_attn.q_proj.weight", &lin_dt), done);
    FT_CHECK_GOTO(st, ft_tensor_float_dtype(st_m, "model.embed_tokens.weight", &other_dt), done);
    if (opts->quant == FT_QUANT_NF4) lin_dt = FT_NF4;
    FT_CHECK_GOTO(st, ft_model_create(&m, be, &d, lin_dt, other_dt, &opts->model), done);
    FT_CHECK_GOTO(st, ft_expected_tensors(m, &slots), done);

    for (int64_t i = 0; i < ft_st_count(st_m); i++) {
        const ft_st_tensor *t = ft_st_at(st_m, i);
        char text_name[512]; /* a vision-language checkpoint's text model: its names without the wrapper's */
        const char *name = ft_st_text_name(t->name, text_name, sizeof text_name);
        ft_slot *s = ft_slot_find(&slots, name);
        if (!s) {
            if (!(d.tied && strcmp(name, "lm_head.weight") == 0))
                ft_debug("%s: ignoring tensor %s", t->shard, t->name);
            continue;
        }
        ft_weight *w = s->w;
        ft_dtype dt;
        FT_CHECK_GOTO(st, ft_st_tensor_dtype(t, &dt), done);
        int shape_ok = (w->rows == 1 && t->ndim == 1 && t->shape[0] == w->cols) ||
                       (t->ndim == 2 && t->shape[0] == w->rows && t->shape[1] == w->cols);
        if (!shape_ok) {
            st = FT_ERR(FT_E_FORMAT, "%s: tensor %s has shape [%lld%s%lld], config.json implies [%lld, %lld]",
                        t->shard, t->name, (long long)t->shape[0], t->ndim > 1 ? ", " : "",
                        t->ndim > 1 ? (long long)t->shape[1] : 0LL, (long long)w->rows, (long long)w->cols);
            if (t->ndim != 2 && t->ndim != 1)
                st = FT_ERR(FT_E_FORMAT, "%s: tensor %s has %d dimensions", t->shard, t->name, t->ndim);
            goto done;
        }
        if (dt != FT_F32 && dt != FT_F16 && dt != FT_BF16) {
            st = FT_ERR(FT_E_UNSUPPORTED, "%s: tensor %s has dtype %s; ftune loads F32, F16 or BF16 weights",
                        t->shard, t->name, ft_st_dtype_name(t->st_dtype));
            goto done;
        }
        st = ft_weight_set(be, w, t->data, dt);
        if (st != FT_OK) {
            ft_error_wrap(st, "%s: tensor %s", t->shard, t->name);
            goto done;
        }
        s->found = 1;
        ft_st_release_tensor_pages(st_m, t);
    }
    /* the CUDA backend streams tensors in and completes them (NF4 offsets) when loading ends here,
     * freeing its staging, so what is in use after loading is the weights alone */
    FT_CHECK_GOTO(st, ft_backend_sync(be), done);
    for (int64_t i = 0; i < slots.n; i++) {
        if (!slots.s[i].found) {
            st = FT_ERR(FT_E_FORMAT, "%s: checkpoint has no tensor %s (required by config.json)", dir,
                        slots.s[i].name);
            goto done;
        }
    }
    *out = m;
    m = NULL;
    st = FT_OK;
done:
    free(slots.s);
    ft_model_free(m);
    ft_st_close(st_m);
    return st;
}

ft_status ft_model_tokenizer(ft_tok **out, const char *path) {
    if (!ft_is_gguf_path(path)) return ft_tok_load(out, path);
    ft_gguf *g = NULL;
    FT_TRY(ft_gguf_open(&g, path));
    ft_status st = ft_gguf_tok_load(out, g, path);
    ft_gguf_close(g);
    return st;
}
