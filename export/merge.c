/* merge.c: see merge.h. */
#include "export/merge.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "export/export_util.h"
#include "export/gguf.h"
#include "export/safetensors_write.h"
#include "kernels/log.h"
#include "kernels/mem.h"
#include "kernels/nf4.h"
#include "trainer/gguf_config.h"
#include "trainer/safetensors_read.h"

static const struct {
    const char *name;
    ft_merge_kind kind;
} ft_kinds[] = {{"f32", FT_MERGE_F32},   {"f16", FT_MERGE_F16},       {"bf16", FT_MERGE_BF16},
                {"q8_0", FT_MERGE_Q8_0}, {"q4_0", FT_MERGE_Q4_0},     {"q4_k_m", FT_MERGE_Q4_K_M},
                {"q5_k_m", FT_MERGE_Q5_K_M}, {"q6_k", FT_MERGE_Q6_K},
                {"safetensors", FT_MERGE_SAFETENSORS}, {"base", FT_MERGE_BASE},
                {"base-f16", FT_MERGE_BASE_F16}};

int ft_merge_kind_parse(const char *s, ft_merge_kind *out) {
    for (size_t i = 0; i < sizeof ft_kinds / sizeof *ft_kinds; i++) {
        if (strcasecmp(s, ft_kinds[i].name) == 0) {
            *out = ft_kinds[i].kind;
            return 1;
        }
    }
    return 0;
}

const char *ft_merge_kind_name(ft_merge_kind k) {
    for (size_t i = 0; i < sizeof ft_kinds / sizeof *ft_kinds; i++)
        if (ft_kinds[i].kind == k) return ft_kinds[i].name;
    return "?";
}

/* llama_ftype written as general.file_type. */
uint32_t ft_merge_file_type(ft_merge_kind k) {
    switch (k) {
    case FT_MERGE_F32: return 0;
    case FT_MERGE_F16: return 1;
    case FT_MERGE_BF16: return 32;
    case FT_MERGE_Q8_0: return 7;
    case FT_MERGE_Q4_0: return 2;
    case FT_MERGE_Q4_K_M: return 15;
    case FT_MERGE_Q5_K_M: return 17;
    case FT_MERGE_Q6_K: return 18;
    default: return 0;
    }
}

ft_merge_kind ft_merge_kind_resolve(ft_merge_kind kind, const ft_model_config *c) {
    if (kind == FT_MERGE_BASE_F16) return FT_MERGE_F16;
    if (kind != FT_MERGE_BASE) return kind;
    /* a checkpoint's own 16/32-bit type; F16 when config.json does not say (llama.cpp's default) */
    if (strcmp(c->torch_dtype, "bfloat16") == 0) return FT_MERGE_BF16;
    if (strcmp(c->torch_dtype, "float32") == 0) return FT_MERGE_F32;
    return FT_MERGE_F16;
}

static int ft_ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

static int ft_use_more_bits(int64_t i, int64_t n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

/* llama.cpp's tensor_type_fallback (src/llama-quant.cpp). */
static ft_ggml_type ft_fallback(ft_ggml_type t, int64_t ne0) {
    int64_t qk = ft_ggml_block_size(t);
    if (qk <= 0 || ne0 % qk == 0) return t;
    ft_ggml_type r = t;
    switch (t) {
    case FT_GGML_Q4_K: r = FT_GGML_Q5_0; break;
    case FT_GGML_Q6_K: r = FT_GGML_Q8_0; break;
    case FT_GGML_Q5_K: r = FT_GGML_Q5_1; break;
    default: break;
    }
    if (ne0 % ft_ggml_block_size(r) != 0) r = FT_GGML_F16;
    return r;
}

ft_ggml_type ft_merge_tensor_type(ft_merge_kind kind, const char *name, int n_dims, int64_t ne0, int64_t i_attn_v,
                                  int64_t n_attn_v, int64_t layer, int64_t n_layer, int tied, int is_70b) {
    /* convert_hf_to_gguf: 1-D tensors and *_norm.weight stay F32 */
    if (n_dims < 2 || !ft_ends_with(name, "weight") || strstr(name, "_norm.weight")) return FT_GGML_F32;
    switch (kind) {
    case FT_MERGE_F32: return FT_GGML_F32;
    case FT_MERGE_F16: return FT_GGML_F16;
    case FT_MERGE_BF16: return FT_GGML_BF16;
    default: break;
    }
    /* the ftype's default type (llama.cpp's llama_model_quantize_impl) */
    ft_ggml_type t = FT_GGML_Q4_K;
    switch (kind) {
    case FT_MERGE_Q8_0: t = FT_GGML_Q8_0; break;
    case FT_MERGE_Q4_0: t = FT_GGML_Q4_0; break;
    case FT_MERGE_Q5_K_M: t = FT_GGML_Q5_K; break;
    case FT_MERGE_Q6_K: t = FT_GGML_Q6_K; break;
    default: break;
    }
    int is_output = strcmp(name, "output.weight") == 0 || (tied && strcmp(name, "token_embd.weight") == 0);
    if (is_output) {
        if (ne0 % ft_ggml_block_size(t) != 0) t = FT_GGML_Q8_0;
        else if (t != FT_GGML_Q8_0) t = FT_GGML_Q6_K;
    } else if (kind == FT_MERGE_Q4_K_M || kind == FT_MERGE_Q5_K_M) {
        /* the two _M mixes give the same layers Q6_K; only the 70B lift of a Q3_K/Q4_K attn_v to
         * Q5_K differs, and a Q5_K_M attn_v is never below Q5_K */
        if (strstr(name, "attn_v.weight")) {
            if (ft_use_more_bits(i_attn_v, n_attn_v)) t = FT_GGML_Q6_K;
            if (is_70b && t == FT_GGML_Q4_K) t = FT_GGML_Q5_K;
        } else if (strstr(name, "ffn_down")) {
            if (ft_use_more_bits(layer, n_layer)) t = FT_GGML_Q6_K;
        }
    }
    return ft_fallback(t, ne0);
}

/* ---- row sources ---------------------------------------------------------------------------- */

typedef struct {
    ft_st_model *sm;
    const ft_st_tensor *t;    /* NULL for generated data */
    ft_dtype dt;
    int64_t rows, cols;       /* PyTorch [rows, cols]; a 1-D tensor has rows = 1 */
    int one_d;
    int64_t perm_d;           /* >0: llama-arch q/k permutation with heads of perm_d rows (or elements) */
    const ft_adapter_mod *mod;
    ft_token_rows tok;        /* trainable-token rows replacing the base's (embedding, lm_head) */
    int nf4;
    float *full;              /* NF4 round trip of the whole tensor (nf4 only) */
    float *bscratch;          /* gathered lora_B rows for permuted tensors */
    int64_t bcap;
    int64_t released;         /* rows whose file pages were dropped already */
    const float *gen;         /* generated values (rope_freqs) */
    uint8_t *bytes;           /* safetensors output scratch */
    float *fscratch;
    int64_t scap;
} ft_src;

static void ft_src_free(ft_src *s) {
    free(s->full);
    free(s->bscratch);
    free(s->bytes);
    free(s->fscratch);
    s->full = s->bscratch = s->fscratch = NULL;
    s->bytes = NULL;
}

static ft_status ft_src_nf4(ft_src *s) {
    int64_t n = s->rows * s->cols;
    float *x = NULL;
    ft_nf4 q = {0};
    ft_status st;
    FT_CHECK_GOTO(st, ft_malloc((void **)&x, (size_t)n * 4, "NF4 round trip"), done);
    FT_CHECK_GOTO(st, ft_malloc((void **)&q.codes, (size_t)(n + 1) / 2, "NF4 codes"), done);
    FT_CHECK_GOTO(st, ft_malloc((void **)&q.qabsmax, (size_t)ft_nf4_nblocks(n), "NF4 absmax"), done);
    FT_CHECK_GOTO(st, ft_malloc((void **)&q.absmax2, (size_t)ft_nf4_nblocks2(n) * 4, "NF4 absmax2"), done);
    ft_to_f32(x, s->t->data, s->dt, n);
    FT_CHECK_GOTO(st, ft_nf4_quantize_host(x, n, &q, 0), done);
    ft_nf4_dequantize_host(&q, n, x, 0);
    s->full = x;
    x = NULL;
done:
    free(x);
    free(q.codes);
    free(q.qabsmax);
    free(q.absmax2);
    return st;
}

static ft_status ft_src_rows(void *user, int64_t row0, int64_t nrows, float *dst) {
    ft_src *s = user;
    if (s->gen) {
        memcpy(dst, s->gen + row0 * s->cols, (size_t)(nrows * s->cols) * 4);
        return FT_OK;
    }
    const uint8_t *data = s->t->data;
    int64_t esz = ft_dtype_nbytes(s->dt, 1);
    if (s->one_d) {
        for (int64_t i = 0; i < s->cols; i++) {
            int64_t k = s->perm_d ? ft_gguf_permuted_row(i, s->perm_d) : i;
            ft_to_f32(dst + i, data + k * esz, s->dt, 1);
        }
    } else {
        if (s->nf4 && !s->full) FT_TRY(ft_src_nf4(s));
        /* on all cores, as the writer quantizes: one thread widening bf16 and faulting in the mmap'd
         * base was the serial part that bounds a many-core q4_k_m merge */
#pragma omp parallel for schedule(static) if (nrows * s->cols >= 65536)
        for (int64_t r = 0; r < nrows; r++) {
            int64_t k = s->perm_d ? ft_gguf_permuted_row(row0 + r, s->perm_d) : row0 + r;
            if (s->full) memcpy(dst + r * s->cols, s->full + k * s->cols, (size_t)s->cols * 4);
            else ft_to_f32(dst + r * s->cols, data + k * s->cols * esz, s->dt, s->cols);
        }
        /* + scale B A (DoRA: then each row times mag / its norm): whole rows, as the writer asks for them */
        if (s->mod) FT_TRY(ft_adapter_apply_rows(s->mod, row0, nrows, s->perm_d, &s->bscratch, &s->bcap, dst));
        ft_token_rows_apply(&s->tok, row0, nrows, dst);
    }
    if (!s->one_d && !s->full) {
        /* drop the pages of rows consumed so far (a permuted tensor reads whole heads) */
        int64_t upto = row0 + nrows;
        if (s->perm_d) upto = upto / s->perm_d * s->perm_d;
        if (upto > s->released) {
            ft_st_tensor sub = *s->t;
            int64_t rowb = s->cols * esz;
            sub.file_offset += s->released * rowb;
            sub.nbytes = (upto - s->released) * rowb;
            ft_st_release_tensor_pages(s->sm, &sub);
            s->released = upto;
        }
    }
    if (row0 + nrows >= (s->one_d ? 1 : s->rows)) {
        ft_st_release_tensor_pages(s->sm, s->t);
        free(s->full);
        free(s->bscratch);
        s->full = s->bscratch = NULL;
        s->bcap = 0;
    }
    return FT_OK;
}

/* safetensors fill: bytes [offset, offset+nbytes) of the tensor in its own dtype. */
static ft_status ft_src_fill(void *user, void *dst, int64_t offset, int64_t nbytes) {
    ft_src *s = user;
    int64_t esz = ft_dtype_nbytes(s->dt, 1), rowb = s->cols * esz;
    int64_t r0 = offset / rowb, r1 = (offset + nbytes + rowb - 1) / rowb;
    int64_t n = (r1 - r0) * s->cols;
    if (n > s->scap) {
        free(s->fscratch);
        free(s->bytes);
        s->bytes = NULL;
        s->scap = n;
        FT_TRY(ft_malloc((void **)&s->fscratch, (size_t)n * 4, "merge rows"));
        FT_TRY(ft_malloc((void **)&s->bytes, (size_t)(n * esz), "merge rows"));
    }
    FT_TRY(ft_src_rows(s, r0, r1 - r0, s->fscratch));
    ft_from_f32(s->bytes, s->dt, s->fscratch, n);
    memcpy(dst, s->bytes + (offset - r0 * rowb), (size_t)nbytes);
    if (offset + nbytes >= s->t->nbytes) {
        /* the tensor is done: its ~12 MiB of scratch would otherwise stay until the whole merge ends,
         * one per tensor (6.5 GB for the 723 tensors of a 70B) */
        free(s->fscratch);
        free(s->bytes);
        s->fscratch = NULL;
        s->bytes = NULL;
        s->scap = 0;
    }
    return FT_OK;
}

/* ---- GGUF ----------------------------------------------------------------------------------- */

static ft_status ft_set_hparams(ft_ggufw *w, const ft_model_config *c, const char *name, ft_merge_kind kind) {
    const ft_arch_info *ai = ft_arch_get(c->arch);
    char k[128];
    const char *a = ai->gguf_arch;
#define KEY(s) (snprintf(k, sizeof k, "%s.%s", a, (s)), k)
    FT_TRY(ft_ggufw_set_str(w, "general.architecture", a));
    FT_TRY(ft_ggufw_set_str(w, "general.type", "model"));
    FT_TRY(ft_ggufw_set_str(w, "general.name", name));
    FT_TRY(ft_ggufw_set_u32(w, "general.file_type", ft_merge_file_type(kind)));
    FT_TRY(ft_ggufw_set_u32(w, "general.quantization_version", 2));
    FT_TRY(ft_ggufw_set_u32(w, KEY("context_length"), (uint32_t)c->max_position_embeddings));
    FT_TRY(ft_ggufw_set_u32(w, KEY("embedding_length"), (uint32_t)c->hidden_size));
    FT_TRY(ft_ggufw_set_u32(w, KEY("block_count"), (uint32_t)c->num_hidden_layers));
    FT_TRY(ft_ggufw_set_u32(w, KEY("feed_forward_length"), (uint32_t)c->intermediate_size));
    FT_TRY(ft_ggufw_set_u32(w, KEY("attention.head_count"), (uint32_t)c->num_attention_heads));
    FT_TRY(ft_ggufw_set_u32(w, KEY("attention.head_count_kv"), (uint32_t)c->num_key_value_heads));
    FT_TRY(ft_ggufw_set_f32(w, KEY("attention.layer_norm_rms_epsilon"), (float)c->rms_norm_eps));
    FT_TRY(ft_ggufw_set_f32(w, KEY("rope.freq_base"), (float)c->rope.theta));
    FT_TRY(ft_ggufw_set_u32(w, KEY("attention.key_length"), (uint32_t)c->head_dim));
    FT_TRY(ft_ggufw_set_u32(w, KEY("attention.value_length"), (uint32_t)c->head_dim));
    FT_TRY(ft_ggufw_set_u32(w, KEY("rope.dimension_count"), (uint32_t)c->head_dim));
    FT_TRY(ft_ggufw_set_u32(w, KEY("vocab_size"), (uint32_t)c->vocab_size));
    if (c->rope.type == FT_ROPE_LINEAR) {
        FT_TRY(ft_ggufw_set_str(w, KEY("rope.scaling.type"), "linear"));
        FT_TRY(ft_ggufw_set_f32(w, KEY("rope.scaling.factor"), (float)c->rope.factor));
    }
#undef KEY
    return FT_OK;
}

/* llama3 rope: per-frequency divisors, as convert_hf_to_gguf.py's generate_extra_tensors. */
static void ft_rope_freqs(const ft_model_config *c, float *out) {
    const ft_rope_cfg *r = &c->rope;
    int64_t dim = c->head_dim;
    double lw = (double)r->original_max_pos / r->low_freq_factor, hw = (double)r->original_max_pos / r->high_freq_factor;
    for (int64_t i = 0; i < dim / 2; i++) {
        double freq = 1.0 / pow(r->theta, (double)(2 * i) / (double)dim);
        double wavelen = 2 * M_PI / freq;
        if (wavelen < hw) out[i] = 1.0f;
        else if (wavelen > lw) out[i] = (float)r->factor;
        else {
            double smooth = ((double)r->original_max_pos / wavelen - r->low_freq_factor) /
                            (r->high_freq_factor - r->low_freq_factor);
            out[i] = (float)(1.0 / ((1 - smooth) / r->factor + smooth));
        }
    }
}

typedef struct {
    ft_src *src;
    int64_t n, cap;
} ft_srcs;

static ft_status ft_srcs_new(ft_srcs *v, ft_src **out) {
    if (v->n == v->cap) return FT_ERR(FT_E_INTERNAL, "too many tensors");
    *out = &v->src[v->n++];
    memset(*out, 0, sizeof **out);
    return FT_OK;
}

typedef struct {
    const ft_merge_opts *o;
    const ft_model_config *c;
    const ft_arch_info *ai;
    ft_st_model *sm;
    ft_ggufw *w;
    ft_srcs *v;
    int tied;
    int64_t i_attn_v;
    const float *rope;  /* rope_freqs' values (llama3 rope scaling) */
} ft_plan;

/* The GGUF type of tensor `name` (n_dims, ne0 its shape; i_attn_v the attn_v tensors before it) of c
 * under kind: ft_merge_tensor_type with llama.cpp's model size. */
ft_ggml_type ft_merge_role_type(const ft_model_config *c, ft_merge_kind kind, const char *name, int nd, int64_t ne0,
                                int64_t i_attn_v, int64_t layer, int tied) {
    const int64_t L = c->num_hidden_layers;
    /* llama.cpp's LLM_TYPE_70B: 80 layers (llama: with GQA; qwen2) */
    const int is_70b = L == 80 && ((c->arch == FT_ARCH_QWEN2) ||
                                   ((c->arch == FT_ARCH_LLAMA || c->arch == FT_ARCH_MISTRAL) &&
                                    c->num_attention_heads != c->num_key_value_heads));
    return ft_merge_tensor_type(kind, name, nd, ne0, i_attn_v, L, layer, L, tied, is_70b);
}

/* Declares the GGUF tensor of (role, layer) when the model has it. */
static ft_status ft_plan_add(ft_plan *pl, ft_tensor_role role, int64_t layer) {
    const ft_model_config *c = pl->c;
    const ft_tensor_info *ti = ft_tensor_info_get(role);
    if (!ft_cfg_has_tensor(c, role)) return FT_OK;
    char hf[256], name[128];
    ft_arch_name(hf, sizeof hf, ti->hf, layer);
    ft_arch_name(name, sizeof name, ti->gguf, layer);
    const ft_st_tensor *t = ft_st_lookup(pl->sm, hf);
    if (!t) return FT_ERR(FT_E_FORMAT, "%s: checkpoint has no tensor %s (required by config.json)", pl->o->base_dir, hf);
    int nd;
    int64_t shape[2];
    ft_cfg_tensor_shape(c, role, &nd, shape);
    if (t->ndim != nd || t->shape[0] != shape[0] || (nd == 2 && t->shape[1] != shape[1]))
        return FT_ERR(FT_E_FORMAT, "%s: tensor %s has the wrong shape for config.json", t->shard, hf);
    ft_src *s = NULL;
    FT_TRY(ft_srcs_new(pl->v, &s));
    s->sm = pl->sm, s->t = t;
    FT_TRY(ft_st_tensor_dtype(t, &s->dt));
    if (s->dt != FT_F32 && s->dt != FT_F16 && s->dt != FT_BF16)
        return FT_ERR(FT_E_UNSUPPORTED, "%s: tensor %s has dtype %s; ftune merges F32, F16 or BF16 weights", t->shard,
                      hf, ft_dtype_name(s->dt)); /* as the loader says it (trainer/loader.c) */
    s->one_d = nd == 1;
    s->rows = nd == 2 ? shape[0] : 1;
    s->cols = nd == 2 ? shape[1] : shape[0];
    int qk = ti->linear == FT_LIN_Q || ti->linear == FT_LIN_K;
    if (pl->ai->gguf_permute_qk && qk) s->perm_d = c->head_dim;
    if (nd == 2 && ti->linear != FT_LIN_COUNT) {
        if (pl->o->adapter) s->mod = ft_adapter_find(pl->o->adapter, layer, ti->linear);
        s->nf4 = pl->o->merge_into_nf4;
    }
    if (role == FT_TR_TOKEN_EMBD || role == FT_TR_OUTPUT) { /* (a tied model has no output here) */
        s->tok = ft_adapter_token_rows(pl->o->adapter, role == FT_TR_OUTPUT, pl->tied);
        FT_TRY(ft_token_rows_fit(&s->tok, pl->o->base_dir, hf, s->rows, s->cols));
    }
    int64_t ne[2] = {s->cols, s->rows};
    ft_ggml_type gt = ft_merge_role_type(c, pl->o->kind, name, nd, s->cols, pl->i_attn_v, layer, pl->tied);
    if (role == FT_TR_ATTN_V) pl->i_attn_v++;
    return ft_ggufw_add_tensor(pl->w, name, gt, nd, ne, ft_src_rows, s);
}

/* Every tensor the GGUF of c holds, in file order (token_embd, rope_freqs, blk.0.*, ..., output_norm,
 * output): fn(user, role, layer) with FT_TR_COUNT for rope_freqs; stops at the first failure. */
static ft_status ft_gguf_roles(const ft_model_config *c, ft_status (*fn)(void *, int, int64_t), void *user) {
    FT_TRY(fn(user, FT_TR_TOKEN_EMBD, -1));
    if (c->rope.type == FT_ROPE_LLAMA3 && ft_arch_get(c->arch)->gguf_permute_qk) FT_TRY(fn(user, FT_TR_COUNT, -1));
    for (int64_t layer = 0; layer < c->num_hidden_layers; layer++)
        for (int r = 0; r < FT_TR_COUNT; r++)
            if (ft_tensor_info_get((ft_tensor_role)r)->per_layer) FT_TRY(fn(user, r, layer));
    FT_TRY(fn(user, FT_TR_OUTPUT_NORM, -1));
    return fn(user, FT_TR_OUTPUT, -1);
}

/* ft_gguf_roles' callback for the merge: the role's tensor, or rope_freqs (FT_TR_COUNT). */
static ft_status ft_merge_role(void *user, int role, int64_t layer) {
    ft_plan *pl = user;
    if (role != FT_TR_COUNT) return ft_plan_add(pl, (ft_tensor_role)role, layer);
    ft_src *s = NULL;
    FT_TRY(ft_srcs_new(pl->v, &s));
    s->gen = pl->rope, s->rows = 1, s->cols = pl->c->head_dim / 2, s->one_d = 1;
    int64_t ne[1] = {pl->c->head_dim / 2};
    return ft_ggufw_add_tensor(pl->w, FT_GGUF_ROPE_FREQS, FT_GGML_F32, 1, ne, ft_src_rows, s);
}

typedef struct {
    const ft_model_config *c;
    ft_merge_kind kind;
    int64_t i_attn_v, bytes, n;
} ft_sizer;

static ft_status ft_size_role(void *user, int role, int64_t layer) {
    ft_sizer *z = user;
    const ft_model_config *c = z->c;
    int nd = 1;
    int64_t shape[2] = {c->head_dim / 2, 1}, rows = 1, cols;
    ft_ggml_type gt = FT_GGML_F32;
    if (role == FT_TR_COUNT) { /* rope_freqs: head_dim / 2 f32 */
        cols = shape[0];
    } else {
        if (!ft_cfg_has_tensor(c, (ft_tensor_role)role)) return FT_OK;
        char name[128];
        ft_arch_name(name, sizeof name, ft_tensor_info_get((ft_tensor_role)role)->gguf, layer);
        ft_cfg_tensor_shape(c, (ft_tensor_role)role, &nd, shape);
        rows = nd == 2 ? shape[0] : 1, cols = nd == 2 ? shape[1] : shape[0];
        gt = ft_merge_role_type(c, z->kind, name, nd, cols, z->i_attn_v, layer, c->tie_word_embeddings);
        if (role == FT_TR_ATTN_V) z->i_attn_v++;
    }
    const int64_t b = ft_ggml_row_size(gt, cols) * rows;
    z->bytes += (b + FT_GGUF_ALIGNMENT - 1) / FT_GGUF_ALIGNMENT * FT_GGUF_ALIGNMENT;
    z->n++;
    return FT_OK;
}

ft_status ft_merge_gguf_tensor_bytes(const ft_model_config *c, ft_merge_kind kind, int64_t *bytes, int64_t *count) {
    ft_sizer z = {.c = c, .kind = ft_merge_kind_resolve(kind, c)};
    *bytes = 0;
    if (kind == FT_MERGE_SAFETENSORS) return FT_ERR(FT_E_ARG, "merge: safetensors output is not a GGUF");
    FT_TRY(ft_gguf_roles(c, ft_size_role, &z));
    *bytes = z.bytes;
    if (count) *count = z.n;
    return FT_OK;
}

static ft_status ft_merge_gguf(const ft_merge_opts *o, const ft_model_config *c, ft_st_model *sm, ft_vocab_info *vinfo) {
    const ft_arch_info *ai = ft_arch_get(c->arch);
    ft_ggufw *w = NULL;
    ft_srcs v = {0};
    float *rope = NULL;
    ft_status st;
    int64_t L = c->num_hidden_layers;
    const char *nm = o->name;
    if (!nm) {
        nm = strrchr(o->base_dir, '/');
        nm = nm && nm[1] ? nm + 1 : o->base_dir;
    }
    FT_TRY(ft_ggufw_open(&w, o->out));
    v.cap = (L + 1) * FT_TR_COUNT + 4;
    FT_CHECK_GOTO(st, ft_calloc((void **)&v.src, (size_t)v.cap * sizeof *v.src, "merge plan"), done);
    FT_CHECK_GOTO(st, ft_set_hparams(w, c, nm, o->kind), done);
    int64_t bos = c->n_bos == 1 ? c->bos_token_id[0] : -1, eos = c->n_eos >= 1 ? c->eos_token_id[0] : -1;
    FT_CHECK_GOTO(st, ft_gguf_vocab_write(w, o->base_dir, c->vocab_size, bos, eos, vinfo), done);

    /* tensors in file order (ft_gguf_roles, as ft_merge_gguf_tensor_bytes counts them) */
    FT_CHECK_GOTO(st, ft_malloc((void **)&rope, (size_t)(c->head_dim / 2 > 0 ? c->head_dim / 2 : 1) * 4, "rope_freqs"),
                  done);
    ft_rope_freqs(c, rope);
    ft_plan pl = {.o = o, .c = c, .ai = ai, .sm = sm, .w = w, .v = &v, .tied = c->tie_word_embeddings, .rope = rope};
    FT_CHECK_GOTO(st, ft_gguf_roles(c, ft_merge_role, &pl), done);
    if (o->adapter) {
        for (int64_t k = 0; k < o->adapter->n; k++) {
            int used = 0;
            for (int64_t i = 0; i < v.n; i++) used |= v.src[i].mod == &o->adapter->m[k];
            if (!used) {
                st = FT_ERR(FT_E_INTERNAL, "adapter module layer %lld not merged", (long long)o->adapter->m[k].layer);
                goto done;
            }
        }
    }
    ft_info("%s: %lld tensors, %.1f MiB", o->out, (long long)ft_ggufw_tensor_count(w),
            (double)ft_ggufw_file_size(w) / (1 << 20));
    st = ft_ggufw_finish(w);
    w = NULL;
done:
    ft_ggufw_discard(w);
    for (int64_t i = 0; i < v.n; i++) ft_src_free(&v.src[i]);
    free(v.src);
    free(rope);
    return st;
}

/* ---- merged Hugging Face checkpoint ---------------------------------------------------------- */

/* (layer, linear) of an HF weight name "model.layers.N.<module>.weight". */
static int ft_hf_linear(const char *name, int64_t *layer, ft_linear *lin) {
    const char *pre = "model.layers.";
    if (strncmp(name, pre, strlen(pre)) != 0 || !ft_ends_with(name, ".weight")) return 0;
    char *end;
    long long l = strtoll(name + strlen(pre), &end, 10);
    if (end == name + strlen(pre) || *end != '.') return 0;
    for (int k = 0; k < FT_LIN_COUNT; k++) {
        const char *suffix = strstr(ft_linear_info_get((ft_linear)k)->hf_module, "%d") + 2;
        size_t ls = strlen(suffix);
        if (strncmp(end, suffix, ls) == 0 && strcmp(end + ls, ".weight") == 0) {
            *layer = l, *lin = (ft_linear)k;
            return 1;
        }
    }
    return 0;
}

static ft_status ft_merge_safetensors(const ft_merge_opts *o, const ft_model_config *c, ft_st_model *sm) {
    ft_status st;
    ft_stw *w = NULL;
    ft_src *srcs = NULL;
    char p[4200], q[4200];
    int created = mkdir(o->out, 0755) == 0; /* removed again if the merge fails and leaves it empty */
    if (!created && errno != EEXIST)
        return FT_ERR(FT_E_IO, "%s: cannot create directory: %s", o->out, strerror(errno));
    if (!ft_is_dir(o->out)) return FT_ERR(FT_E_IO, "%s: not a directory", o->out);
    int64_t n = ft_st_count(sm);
    FT_CHECK_GOTO(st, ft_calloc((void **)&srcs, (size_t)n * sizeof *srcs, "merge plan"), done);
    snprintf(p, sizeof p, "%s/model.safetensors", o->out);
    FT_CHECK_GOTO(st, ft_stw_open(&w, p), done);
    FT_CHECK_GOTO(st, ft_stw_set_metadata(w, "format", "pt"), done);
    for (int64_t i = 0; i < n; i++) {
        const ft_st_tensor *t = ft_st_at(sm, i);
        ft_src *s = &srcs[i];
        ft_dtype dt;
        int64_t layer;
        ft_linear lin;
        if (ft_st_dtype_to_ft(t->st_dtype, &dt) && (dt == FT_F32 || dt == FT_F16 || dt == FT_BF16) && t->ndim >= 1 &&
            t->ndim <= 2 && t->numel > 0) {
            s->sm = sm, s->t = t, s->dt = dt;
            s->one_d = t->ndim == 1;
            s->rows = t->ndim == 2 ? t->shape[0] : 1;
            s->cols = t->ndim == 2 ? t->shape[1] : t->shape[0];
            if (s->one_d) { /* 1-D: treat as one row, no permutation */
            }
            char text_name[512]; /* a vision-language checkpoint keeps its layout; its text model's linears merge */
            const char *tn = ft_st_text_name(t->name, text_name, sizeof text_name);
            const int embd = strcmp(tn, ft_tensor_info_get(FT_TR_TOKEN_EMBD)->hf) == 0,
                      head = strcmp(tn, ft_tensor_info_get(FT_TR_OUTPUT)->hf) == 0;
            if (t->ndim == 2 && (embd || head)) { /* trainable tokens: a tied checkpoint's stored lm_head is the embedding */
                s->tok = ft_adapter_token_rows(o->adapter, head, c->tie_word_embeddings);
                FT_CHECK_GOTO(st, ft_token_rows_fit(&s->tok, o->base_dir, t->name, s->rows, s->cols), done);
            }
            if (t->ndim == 2 && ft_hf_linear(tn, &layer, &lin)) {
                if (o->adapter) s->mod = ft_adapter_find(o->adapter, layer, lin);
                s->nf4 = o->merge_into_nf4;
                /* the delta is B[out, r] @ A[r, in] added row by row: a base tensor of another shape
                 * (e.g. transposed, same size) would be read and written out of bounds */
                if (s->mod && (s->mod->out != s->rows || s->mod->in != s->cols)) {
                    st = FT_ERR(FT_E_FORMAT, "%s: tensor %s has shape [%lld, %lld] but the adapter's module is [%lld, %lld]",
                                t->shard, t->name, (long long)s->rows, (long long)s->cols, (long long)s->mod->out,
                                (long long)s->mod->in);
                    goto done;
                }
            }
            FT_CHECK_GOTO(st, ft_stw_add_fill(w, t->name, t->st_dtype, t->ndim, t->shape, ft_src_fill, s), done);
        } else {
            FT_CHECK_GOTO(st, ft_stw_add(w, t->name, t->st_dtype, t->ndim, t->shape, t->data), done);
        }
    }
    st = ft_stw_finish(w);
    w = NULL;
    if (st != FT_OK) goto done;
    static const char *const copy[] = {"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                                       "special_tokens_map.json", "tokenizer.model", "chat_template.jinja",
                                       "added_tokens.json", "chat_template.json", "processor_config.json",
                                       "preprocessor_config.json"}; /* (the last three: a vision-language checkpoint's) */
    for (size_t k = 0; k < sizeof copy / sizeof *copy; k++) {
        snprintf(p, sizeof p, "%s/%s", o->base_dir, copy[k]);
        snprintf(q, sizeof q, "%s/%s", o->out, copy[k]);
        if (ft_is_file(p)) FT_CHECK_GOTO(st, ft_copy_file(p, q), done);
    }
done:
    ft_stw_discard(w);
    if (srcs)
        for (int64_t i = 0; i < n; i++) ft_src_free(&srcs[i]);
    free(srcs);
    if (st != FT_OK && created) rmdir(o->out); /* only when empty: what a failed copy left is kept */
    return st;
}

ft_status ft_merge(const ft_merge_opts *o, ft_vocab_info *vinfo) {
    ft_model_config c;
    ft_st_model *sm = NULL;
    ft_status st;
    char p[4200];
    if (ft_is_gguf_path(o->base_dir)) return ft_merge_from_gguf(o, vinfo);
    snprintf(p, sizeof p, "%s/config.json", o->base_dir);
    FT_TRY(ft_cfg_load(&c, p));
    if (o->adapter) FT_TRY(ft_adapter_check(o->adapter, &c, o->base_dir));
    if (o->adapter) FT_TRY(ft_adapter_token_rows_check(o->adapter, &c, o->base_dir));
    ft_merge_opts ro = *o; /* "base": the checkpoint's own type */
    ro.kind = ft_merge_kind_resolve(o->kind, &c);
    FT_TRY(ft_st_open(&sm, o->base_dir));
    if (ro.kind == FT_MERGE_SAFETENSORS) st = ft_merge_safetensors(&ro, &c, sm);
    else st = ft_merge_gguf(&ro, &c, sm, vinfo);
    ft_st_close(sm);
    return st;
}
