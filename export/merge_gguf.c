/* merge_gguf.c: ft_merge of a llama.cpp GGUF base model file (merge.h, "GGUF base").
 *
 * The point of training on an already-quantized GGUF is that nothing is dequantized and quantized
 * again that need not be: the output copies the base's metadata key by key and, in the base's order,
 * every tensor the adapter does not touch byte for byte (ft_ggufw_add_tensor_bytes). A tensor with an
 * adapter module is decoded a chunk of rows at a time (ft_gguf_tensor_rows_f32), gets scale * B A (DoRA:
 * and each row's mag / norm of the decoded row + delta, ft_adapter_apply_rows), and is encoded: in
 * its own type (--type base, a type ftune encodes) against the base's blocks
 * (ft_ggml_requantize_row: a block the delta left unchanged keeps its bytes, a moved one takes ggml's
 * fresh encoding); in another type by the writer (ft_ggufw_add_tensor), as llama.cpp's quantizer would. The adapter lives in the HF layout (q/k rows un-permuted when the base
 * was loaded, trainer/gguf_load.c), so for a llama-arch q/k weight GGUF row r takes delta row
 * ft_gguf_permuted_row(r, D), as the LoRA GGUF export permutes lora_B (export/adapter.c).
 * Trainable tokens: token_embd / output take the adapter's rows (export/adapter_tokens_out.c) and count
 * as merged; in their own type every other row keeps the base's bytes (ft_gsrc_tokbytes).
 *
 * Memory: one chunk of rows per tensor in flight; the pages of the base's mapping that were consumed
 * are dropped behind the writer, so RSS stays near a chunk, not the model. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "export/gguf.h"
#include "export/merge.h"
#include "kernels/log.h"
#include "kernels/mem.h"
#include "trainer/gguf_config.h"

/* ---- types ---------------------------------------------------------------------------------- */

static double ft_bpw(int t) { return (double)ft_ggml_type_size(t) * 8.0 / (double)ft_ggml_block_size(t); }

ft_ggml_type ft_merge_base_type(int type, int64_t ne0) {
    if (ft_ggml_can_encode(type)) return (ft_ggml_type)type;
    /* never fewer bits than the base had: merging must not lower the precision of a weight, and among
     * equal sizes the same block size keeps the layout's family (IQ4_NL -> Q4_0 rather than Q4_K). The
     * types ftune decodes but cannot encode so go Q2_K, Q3_K, IQ4_XS -> Q4_K, IQ4_NL -> Q4_0 (Q4_1 and
     * Q5_1, encoded since llama.cpp's Q5_K_M fallback needs Q5_1, keep their own type above). For
     * IQ4_NL, Q4_K would fit the merged weights closer (rel l2 0.062 vs 0.088) but the merged loss was
     * lower with Q4_0 for two of three adapters on qwen3_iq4_nl (+0.041 / -0.082 / +0.034 over the
     * training-time loss, Q4_K +0.152 / +0.502 / +0.020; docs/recipes.md "Merging into a GGUF base") */
    static const ft_ggml_type enc[] = {FT_GGML_Q4_0, FT_GGML_Q4_K, FT_GGML_Q5_0, FT_GGML_Q5_K, FT_GGML_Q6_K,
                                       FT_GGML_Q8_0, FT_GGML_F16,  FT_GGML_BF16, FT_GGML_F32};
    const double need = ft_bpw(type);
    ft_ggml_type best = FT_GGML_F32;
    double best_b = 1e30;
    int best_same = 0;
    for (size_t k = 0; k < sizeof enc / sizeof *enc; k++) {
        const double b = ft_bpw(enc[k]);
        if (ne0 % ft_ggml_block_size(enc[k]) != 0 || b < need) continue;
        const int same = ft_ggml_block_size(enc[k]) == ft_ggml_block_size(type);
        if (b < best_b || (b == best_b && same && !best_same)) best = enc[k], best_b = b, best_same = same;
    }
    return best;
}

/* (layer, linear) of a GGUF linear weight name ("blk.3.attn_q.weight"); 0 for any other tensor. */
static int ft_gguf_linear(const char *name, int64_t *layer, ft_linear *lin) {
    long long l;
    int n = 0;
    if (sscanf(name, "blk.%lld.%n", &l, &n) != 1 || n == 0 || l < 0) return 0;
    for (int r = 0; r < FT_TR_COUNT; r++) {
        const ft_tensor_info *ti = ft_tensor_info_get((ft_tensor_role)r);
        char want[128];
        if (!ti->per_layer || ti->linear == FT_LIN_COUNT || ti->ndim != 2) continue;
        ft_arch_name(want, sizeof want, ti->gguf, (int64_t)l);
        if (strcmp(want, name) == 0) {
            *layer = l, *lin = ti->linear;
            return 1;
        }
    }
    return 0;
}

/* The type tensor t of the base gets under kind: as the base (merged: an encodable one), or
 * llama.cpp's per-tensor choice for the explicit kind. *i_attn_v counts the attn_v tensors seen. */
static ft_ggml_type ft_out_type(const ft_model_config *c, ft_merge_kind kind, const ft_gguf_tensor *t, int merged,
                                int64_t layer, int64_t *i_attn_v) {
    if (kind == FT_MERGE_BASE) return merged ? ft_merge_base_type(t->type, t->ne[0]) : (ft_ggml_type)t->type;
    if (kind == FT_MERGE_BASE_F16) /* llama-export-lora's get_out_tensor_type */
        return !merged ? (ft_ggml_type)t->type : t->type == FT_GGML_F32 ? FT_GGML_F32 : FT_GGML_F16;
    const ft_ggml_type gt = ft_merge_role_type(c, kind, t->name, t->n_dims, t->ne[0], *i_attn_v, layer,
                                               c->tie_word_embeddings);
    if (strstr(t->name, "attn_v.weight")) (*i_attn_v)++;
    return gt;
}

/* ---- sources -------------------------------------------------------------------------------- */

typedef struct {
    const ft_gguf *g;
    const ft_gguf_tensor *t;
    const ft_adapter_mod *mod; /* NULL: the decoded rows as they are */
    ft_token_rows tok;         /* trainable-token rows replacing the base's (token_embd, output) */
    int64_t perm_d;            /* >0: llama-arch q/k with heads of perm_d rows */
    float *bscratch;           /* lora_B rows gathered in GGUF order */
    int64_t bcap;
    int64_t dropped;           /* bytes of t's data whose pages were dropped */
    float *rows;               /* requantized tensors: a chunk of target rows [nrows, ne0] ... */
    uint8_t *enc;              /* ... and their encoding */
    int64_t rcap;              /* rows both hold */
    int64_t blocks, fresh;     /* blocks written, and those that took ggml's fresh encoding */
} ft_gsrc;

/* Drops the pages of t's data before byte `upto` from this process: the reader maps the file
 * MAP_PRIVATE read-only, so they are clean file pages that fault back in if read again; without
 * this a merge's RSS grows to the whole base. Only whole pages inside the consumed range. */
static void ft_drop_pages(ft_gsrc *s, int64_t upto) {
    const long page = sysconf(_SC_PAGESIZE);
    if (page <= 0 || upto <= s->dropped) return;
    const uintptr_t base = (uintptr_t)s->t->data, pz = (uintptr_t)page;
    const uintptr_t b = (base + (uintptr_t)s->dropped + pz - 1) / pz * pz, e = (base + (uintptr_t)upto) / pz * pz;
    if (e > b) (void)madvise((void *)b, e - b, MADV_DONTNEED); /* advice: failure changes nothing */
    s->dropped = upto;
}

static ft_status ft_gsrc_bytes(void *user, void *dst, int64_t offset, int64_t nbytes) {
    ft_gsrc *s = user;
    memcpy(dst, (const uint8_t *)s->t->data + offset, (size_t)nbytes);
    ft_drop_pages(s, offset + nbytes);
    return FT_OK;
}

/* Rows [row0, row0 + nrows) of the target: the base's decoded rows + the module's delta. */
static ft_status ft_gsrc_fill(ft_gsrc *s, int64_t row0, int64_t nrows, float *dst) {
    const ft_gguf_tensor *t = s->t;
    const int64_t n0 = t->ne[0], rows = t->nelem / n0;
    ft_status st = FT_OK;
    /* decoding on all cores, as the writer encodes: blocks of 16 rows */
#pragma omp parallel for schedule(static) if (nrows * n0 >= 65536)
    for (int64_t r = 0; r < nrows; r += 16) {
        const int64_t nr = nrows - r < 16 ? nrows - r : 16;
        if (ft_gguf_tensor_rows_f32(s->g, t, row0 + r, nr, dst + r * n0) != FT_OK) {
#pragma omp critical
            st = FT_E_FORMAT; /* the type was checked decodable when declared: not reached */
        }
    }
    if (st != FT_OK) return FT_ERR(st, "cannot decode tensor %s", t->name);
    /* + scale B A (DoRA: then each row times mag / the norm of the decoded row + delta: the weights the
     * adapter was trained against, trainer/gguf_load.c) */
    if (s->mod) FT_TRY(ft_adapter_apply_rows(s->mod, row0, nrows, s->perm_d, &s->bscratch, &s->bcap, dst));
    ft_token_rows_apply(&s->tok, row0, nrows, dst);
    if (row0 + nrows >= rows) {
        free(s->bscratch);
        s->bscratch = NULL;
        s->bcap = 0;
    }
    return FT_OK;
}

static ft_status ft_gsrc_rows(void *user, int64_t row0, int64_t nrows, float *dst) {
    ft_gsrc *s = user;
    FT_TRY(ft_gsrc_fill(s, row0, nrows, dst));
    ft_drop_pages(s, (row0 + nrows) * ft_ggml_row_size(s->t->type, s->t->ne[0]));
    return FT_OK;
}

/* A merged tensor written in its own type (--type base): the target rows re-encoded against the
 * base's blocks (ft_ggml_requantize_row), so that a block the delta does not move keeps the base's
 * bytes instead of paying the encoder's fresh rounding. The writer asks for
 * byte ranges of a few MiB that need not start or end on a row: the rows overlapping one are made
 * in chunks of about FT_REQUANT_CHUNK floats (a row cut by a range boundary is made twice, once
 * for each side; the result is the same), and each block is counted once, in the range its row
 * starts in. */
#define FT_REQUANT_CHUNK (4 << 20)
static ft_status ft_gsrc_requant(void *user, void *dst, int64_t offset, int64_t nbytes) {
    ft_gsrc *s = user;
    const ft_gguf_tensor *t = s->t;
    const int64_t n0 = t->ne[0], rowb = ft_ggml_row_size(t->type, n0), total = rowb * (t->nelem / n0);
    const int64_t end = offset + nbytes, bpr = n0 / ft_ggml_block_size(t->type);
    const uint8_t *base = t->data;
    int64_t chunk = FT_REQUANT_CHUNK / n0;
    if (chunk < 1) chunk = 1;
    for (int64_t r = offset / rowb; r * rowb < end;) {
        int64_t nr = (end + rowb - 1) / rowb - r;
        if (nr > chunk) nr = chunk;
        if (nr > s->rcap) {
            free(s->rows), free(s->enc);
            s->rows = NULL, s->enc = NULL, s->rcap = 0;
            FT_TRY(ft_malloc((void **)&s->rows, (size_t)(nr * n0) * 4, "merge rows"));
            FT_TRY(ft_malloc((void **)&s->enc, (size_t)(nr * rowb), "merge rows"));
            s->rcap = nr;
        }
        FT_TRY(ft_gsrc_fill(s, r, nr, s->rows));
        int64_t fresh = 0, blocks = 0;
#pragma omp parallel for schedule(static) reduction(+ : fresh, blocks) if (nr * n0 >= 65536)
        for (int64_t k = 0; k < nr; k++) {
            int64_t f = 0;
            (void)ft_ggml_requantize_row(t->type, base + (r + k) * rowb, s->rows + k * n0, s->enc + k * rowb, n0, &f);
            if ((r + k) * rowb >= offset) fresh += f, blocks += bpr; /* the type was checked encodable */
        }
        s->fresh += fresh, s->blocks += blocks;
        const int64_t lo = r * rowb > offset ? r * rowb : offset, hi = (r + nr) * rowb < end ? (r + nr) * rowb : end;
        memcpy((uint8_t *)dst + (lo - offset), s->enc + (lo - r * rowb), (size_t)(hi - lo));
        ft_drop_pages(s, hi);
        r += nr;
    }
    if (end >= total) { /* the tensor is done: one chunk in flight per tensor, not one per tensor */
        free(s->rows), free(s->enc);
        s->rows = NULL, s->enc = NULL, s->rcap = 0;
    }
    return FT_OK;
}

/* A tensor whose only change is trainable-token rows, in its own type (--type base): the base's bytes,
 * with the rows of the adapter's ids re-encoded against the base's blocks as ft_gsrc_requant does
 * (a block the new row leaves equal keeps its bytes). Blocks are counted in the range a row starts in. */
static ft_status ft_gsrc_tokbytes(void *user, void *dst, int64_t offset, int64_t nbytes) {
    ft_gsrc *s = user;
    const ft_gguf_tensor *t = s->t;
    const int64_t n0 = t->ne[0], rowb = ft_ggml_row_size(t->type, n0), total = rowb * (t->nelem / n0);
    const int64_t end = offset + nbytes, bpr = n0 / ft_ggml_block_size(t->type);
    const uint8_t *base = t->data;
    memcpy(dst, base + offset, (size_t)nbytes);
    if (!s->rcap) {
        FT_TRY(ft_malloc((void **)&s->rows, (size_t)n0 * 4, "merge rows"));
        FT_TRY(ft_malloc((void **)&s->enc, (size_t)rowb, "merge rows"));
        s->rcap = 1;
    }
    s->blocks += ((end + rowb - 1) / rowb - (offset + rowb - 1) / rowb) * bpr;
    for (int64_t j = 0; j < s->tok.n; j++) {
        const int64_t lo = (int64_t)s->tok.ids[j] * rowb, hi = lo + rowb;
        if (hi <= offset || lo >= end) continue;
        int64_t f = 0;
        memcpy(s->rows, s->tok.rows + j * n0, (size_t)n0 * 4);
        (void)ft_ggml_requantize_row(t->type, base + lo, s->rows, s->enc, n0, &f); /* the type was checked encodable */
        if (lo >= offset) s->fresh += f;
        const int64_t a = lo > offset ? lo : offset, b = hi < end ? hi : end;
        memcpy((uint8_t *)dst + (a - offset), s->enc + (a - lo), (size_t)(b - a));
    }
    ft_drop_pages(s, end);
    if (end >= total) {
        free(s->rows), free(s->enc);
        s->rows = NULL, s->enc = NULL, s->rcap = 0;
    }
    return FT_OK;
}

/* ---- metadata ------------------------------------------------------------------------------- */

static void ft_str_key(const ft_gguf *g, const char *key, char *out, size_t cap) {
    const char *s;
    int64_t n;
    out[0] = 0;
    if (ft_gguf_get_str(g, ft_gguf_find_key(g, key), &s, &n))
        snprintf(out, cap, "%.*s", (int)(n < (int64_t)cap ? n : (int64_t)cap - 1), s);
}

/* The tokenizer summary of the base (what cmd_merge reports), from its tokenizer.ggml.* keys. */
static ft_status ft_vinfo_from_gguf(const ft_gguf *g, ft_vocab_info *vi) {
    memset(vi, 0, sizeof *vi);
    vi->bos = vi->eos = vi->eot = -1;
    ft_str_key(g, "tokenizer.ggml.model", vi->model, sizeof vi->model);
    ft_str_key(g, "tokenizer.ggml.pre", vi->pre, sizeof vi->pre);
    const int64_t toks = ft_gguf_find_key(g, "tokenizer.ggml.tokens");
    vi->n_tokens = ft_gguf_arr_n(g, toks);
    static const char *const ids[] = {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                                      "tokenizer.ggml.eot_token_id"};
    int64_t *dst[] = {&vi->bos, &vi->eos, &vi->eot};
    char *text[] = {NULL, vi->eos_text, vi->eot_text};
    for (int k = 0; k < 3; k++) {
        uint32_t id;
        const char *s;
        int64_t n;
        if (!ft_gguf_get_u32(g, ft_gguf_find_key(g, ids[k]), &id)) continue;
        *dst[k] = id;
        if (text[k] && ft_gguf_arr_str(g, toks, id, &s, &n))
            snprintf(text[k], sizeof vi->eos_text, "%.*s", (int)(n < 63 ? n : 63), s);
    }
    const char *s;
    int64_t n;
    if (ft_gguf_get_str(g, ft_gguf_find_key(g, "tokenizer.chat_template"), &s, &n)) {
        FT_TRY(ft_malloc((void **)&vi->chat_template, (size_t)n + 1, "chat template"));
        memcpy(vi->chat_template, s, (size_t)n);
        vi->chat_template[n] = 0;
    }
    return FT_OK;
}

/* Refuses what a GGUF base cannot be merged into, before anything is written. */
static ft_status ft_check_gguf_merge(const ft_merge_opts *o, const ft_gguf *g) {
    if (o->kind == FT_MERGE_SAFETENSORS)
        return FT_ERR(FT_E_ARG, "merge: %s is a GGUF model file: --type safetensors needs a Hugging Face base "
                      "(a GGUF base merges into a GGUF: --type base, f16, q8_0, ...)", o->base_dir);
    if (o->merge_into_nf4)
        return FT_ERR(FT_E_ARG, "merge: %s is a GGUF model file: --merge-into nf4 is for a Hugging Face base (the adapter "
                      "of a GGUF base was trained on its own blocks, which the merge starts from)", o->base_dir);
    char v[64];
    const int64_t k = ft_gguf_find_key(g, "split.count");
    if (k >= 0) {
        ft_gguf_kv_format(g, k, v, sizeof v);
        if (strtod(v, NULL) > 1)
            return FT_ERR(FT_E_UNSUPPORTED, "%s: one file of a split GGUF (split.count %s): merge the files into one "
                          "first (llama-gguf-split --merge)", o->base_dir, v);
    }
    return FT_OK;
}

/* ---- the merge ------------------------------------------------------------------------------ */

/* One line naming the merged tensors that are written in another type than the base's. */
static void ft_report_changes(const char *out, const ft_gguf *g, const int *to, int64_t nt) {
    char line[1024];
    size_t at = 0;
    int64_t total = 0;
    for (int64_t i = 0; i < nt; i++) total += to[i] >= 0;
    if (!total) return;
    for (int64_t i = 0; i < nt; i++) { /* grouped by (from, to), up to 3 names each */
        const ft_gguf_tensor *t = ft_gguf_tensor_at(g, i);
        int first = 1;
        for (int64_t k = 0; k < i; k++)
            first &= !(to[k] == to[i] && ft_gguf_tensor_at(g, k)->type == t->type);
        if (to[i] < 0 || !first) continue;
        int64_t n = 0;
        char names[256] = "";
        size_t na = 0;
        for (int64_t k = i; k < nt; k++) {
            if (to[k] != to[i] || ft_gguf_tensor_at(g, k)->type != t->type) continue;
            if (n++ < 3 && na < sizeof names)
                na += (size_t)snprintf(names + na, sizeof names - na, "%s%s", na ? ", " : "", ft_gguf_tensor_at(g, k)->name);
        }
        if (at < sizeof line)
            at += (size_t)snprintf(line + at, sizeof line - at, "%s%s -> %s x %lld (%s%s)", at ? "; " : "",
                                   ft_ggml_type_name(t->type), ft_ggml_type_name(to[i]), (long long)n, names,
                                   n > 3 ? ", ..." : "");
    }
    ft_info("%s: %lld merged tensors written in another type than the base's (ftune does not encode theirs; the "
            "nearest type with at least as many bits): %s", out, (long long)total, line);
}

ft_status ft_merge_from_gguf(const ft_merge_opts *o, ft_vocab_info *vinfo) {
    ft_gguf *g = NULL;
    ft_ggufw *w = NULL;
    ft_gsrc *src = NULL;
    int *changed = NULL;
    char *used = NULL;
    ft_model_config c;
    ft_status st;
    const ft_adapter *a = o->adapter;
    int64_t nt = 0;
    FT_TRY(ft_gguf_open(&g, o->base_dir));
    FT_CHECK_GOTO(st, ft_check_gguf_merge(o, g), done);
    FT_CHECK_GOTO(st, ft_cfg_from_gguf(&c, g, o->base_dir), done);
    if (a) FT_CHECK_GOTO(st, ft_adapter_check(a, &c, o->base_dir), done);
    if (a) FT_CHECK_GOTO(st, ft_adapter_token_rows_check(a, &c, o->base_dir), done);
    nt = ft_gguf_tensor_count(g);
    FT_CHECK_GOTO(st, ft_calloc((void **)&src, (size_t)(nt > 0 ? nt : 1) * sizeof *src, "merge plan"), done);
    FT_CHECK_GOTO(st, ft_malloc((void **)&changed, (size_t)(nt > 0 ? nt : 1) * sizeof *changed, "merge plan"), done);
    FT_CHECK_GOTO(st, ft_calloc((void **)&used, (size_t)(a && a->n > 0 ? a->n : 1), "merge plan"), done);
    FT_CHECK_GOTO(st, ft_ggufw_open(&w, o->out), done);

    /* metadata: the base's keys in its order; the writer aligns to 32 (ggml's default), so the base's
     * own general.alignment, if any, would misdescribe the output */
    for (int64_t i = 0; i < ft_gguf_kv_count(g); i++)
        if (strcmp(ft_gguf_kv_key(g, i), "general.alignment") != 0) FT_CHECK_GOTO(st, ft_ggufw_copy_kv(w, g, i), done);
    if (o->kind != FT_MERGE_BASE && o->kind != FT_MERGE_BASE_F16) {
        FT_CHECK_GOTO(st, ft_ggufw_set_u32(w, "general.file_type", ft_merge_file_type(o->kind)), done);
        if (ft_gguf_find_key(g, "general.quantization_version") < 0)
            FT_CHECK_GOTO(st, ft_ggufw_set_u32(w, "general.quantization_version", 2), done);
    }
    if (o->name) FT_CHECK_GOTO(st, ft_ggufw_set_str(w, "general.name", o->name), done);

    /* tensors in the base's order */
    const int perm = ft_arch_get(c.arch)->gguf_permute_qk;
    int64_t i_attn_v = 0, n_copied = 0, n_merged = 0, n_coded = 0, tok_used[2] = {0, 0};
    for (int64_t i = 0; i < nt; i++) {
        const ft_gguf_tensor *t = ft_gguf_tensor_at(g, i);
        ft_gsrc *s = &src[i];
        int64_t layer = -1;
        ft_linear lin = FT_LIN_COUNT;
        s->g = g, s->t = t;
        changed[i] = -1;
        if (ft_gguf_linear(t->name, &layer, &lin) && a) {
            for (int64_t k = 0; k < a->n && !s->mod; k++)
                if (a->m[k].layer == layer && a->m[k].lin == lin) s->mod = &a->m[k], used[k] = 1;
        }
        if (s->mod && (t->n_dims != 2 || t->ne[0] != s->mod->in || t->ne[1] != s->mod->out)) {
            st = FT_ERR(FT_E_FORMAT, "%s: tensor %s has ne [%lld, %lld] but the adapter's module is [out %lld, in %lld]",
                        o->base_dir, t->name, (long long)t->ne[0], (long long)t->ne[1], (long long)s->mod->out,
                        (long long)s->mod->in);
            goto done;
        }
        if (s->mod && perm && (lin == FT_LIN_Q || lin == FT_LIN_K)) s->perm_d = c.head_dim;
        const int head = strcmp(t->name, "output.weight") == 0;
        if (a && (head || strcmp(t->name, "token_embd.weight") == 0)) { /* trainable tokens (a tied base: no output) */
            s->tok = ft_adapter_token_rows(a, head, 0);
            if (s->tok.n && t->n_dims != 2) {
                st = FT_ERR(FT_E_FORMAT, "%s: tensor %s is not 2-D", o->base_dir, t->name);
                goto done;
            }
            FT_CHECK_GOTO(st, ft_token_rows_fit(&s->tok, o->base_dir, t->name, t->ne[1], t->ne[0]), done);
            tok_used[head] = 1;
        }
        const int merged = s->mod != NULL || s->tok.n > 0;
        ft_ggml_type gt = ft_out_type(&c, o->kind, t, merged, layer, &i_attn_v);
        if (o->kind == FT_MERGE_BASE && !s->mod && s->tok.n > 0 && !ft_ggml_can_encode(t->type))
            /* an embedding or lm_head in a type ftune cannot encode, changed only in a few token rows: the
             * others are not merged weights, and a 4-bit re-encoding would move them all (6-9% on the IQ4
             * fixtures); Q8_0 keeps them within its rounding */
            gt = t->ne[0] % 32 == 0 ? FT_GGML_Q8_0 : FT_GGML_F16;
        if (!merged && (int)gt == t->type) { /* untouched and already in its type: the base's bytes */
            FT_CHECK_GOTO(st, ft_ggufw_add_tensor_bytes(w, t->name, t->type, t->n_dims, t->ne, ft_gsrc_bytes, s), done);
            n_copied++;
            continue;
        }
        if (!ft_ggml_can_decode(t->type)) {
            st = FT_ERR(FT_E_UNSUPPORTED, "%s: tensor %s has type %s, which ftune cannot decode to %s it%s", o->base_dir,
                        t->name, ft_ggml_type_name(t->type), merged ? "merge into" : "re-encode",
                        merged ? "" : " (--type base copies it as it is)");
            goto done;
        }
        if (merged && (int)gt != t->type && o->kind == FT_MERGE_BASE) changed[i] = gt;
        n_merged += merged, n_coded += !merged;
        if (merged && o->kind == FT_MERGE_BASE && (int)gt == t->type) { /* its own type: against its blocks */
            FT_CHECK_GOTO(st, ft_ggufw_add_tensor_bytes(w, t->name, t->type, t->n_dims, t->ne,
                                                        s->mod ? ft_gsrc_requant : ft_gsrc_tokbytes, s), done);
            continue;
        }
        FT_CHECK_GOTO(st, ft_ggufw_add_tensor(w, t->name, gt, t->n_dims, t->ne, ft_gsrc_rows, s), done);
    }
    for (int64_t k = 0; a && k < a->n; k++) {
        if (!used[k]) {
            char name[128];
            ft_arch_name(name, sizeof name, ft_linear_info_get(a->m[k].lin)->gguf_base, a->m[k].layer);
            st = FT_ERR(FT_E_FORMAT, "%s: the adapter has module %s.weight, which the base has no tensor for",
                        o->base_dir, name);
            goto done;
        }
    }
    for (int head = 0; a && head < 2; head++) {
        if (!tok_used[head] && ft_adapter_token_rows(a, head, 0).n) {
            st = FT_ERR(FT_E_FORMAT, "%s: the adapter has trainable-token rows of %s, which the base has no tensor for",
                        o->base_dir, head ? "output.weight (an untied lm_head)" : "token_embd.weight");
            goto done;
        }
    }
    ft_report_changes(o->out, g, changed, nt);
    if (vinfo) FT_CHECK_GOTO(st, ft_vinfo_from_gguf(g, vinfo), done);
    ft_info("%s: %lld tensors: %lld copied from the base as they are, %lld merged with the adapter, %lld re-encoded; "
            "%.1f MiB", o->out, (long long)nt, (long long)n_copied, (long long)n_merged, (long long)n_coded,
            (double)ft_ggufw_file_size(w) / (1 << 20));
    st = ft_ggufw_finish(w);
    w = NULL;
    if (st == FT_OK) {
        int64_t blocks = 0, fresh = 0;
        for (int64_t i = 0; i < nt; i++) blocks += src[i].blocks, fresh += src[i].fresh;
        if (blocks)
            ft_info("%s: merged tensors in their own types: %lld of %lld blocks (%.1f%%) unchanged by the delta kept "
                    "the base's bytes, %lld were re-encoded", o->out, (long long)(blocks - fresh), (long long)blocks,
                    100.0 * (double)(blocks - fresh) / (double)blocks, (long long)fresh);
    }
done:
    ft_ggufw_discard(w);
    for (int64_t i = 0; src && i < nt; i++) free(src[i].bscratch), free(src[i].rows), free(src[i].enc);
    free(src);
    free(changed);
    free(used);
    ft_gguf_close(g);
    return st;
}

ft_status ft_merge_output_tensor_bytes(const char *base, const ft_model_config *c, ft_merge_kind kind, int64_t *bytes,
                                       int64_t *count) {
    if (!base || !ft_is_gguf_file(base)) return ft_merge_gguf_tensor_bytes(c, kind, bytes, count);
    ft_gguf *g = NULL;
    ft_model_config gc;
    ft_status st;
    *bytes = 0;
    if (kind == FT_MERGE_SAFETENSORS) return FT_ERR(FT_E_ARG, "merge: %s is a GGUF: its merge is a GGUF", base);
    FT_TRY(ft_gguf_open(&g, base));
    FT_CHECK_GOTO(st, ft_cfg_from_gguf(&gc, g, base), done);
    int64_t i_attn_v = 0, sum = 0;
    for (int64_t i = 0; i < ft_gguf_tensor_count(g); i++) {
        const ft_gguf_tensor *t = ft_gguf_tensor_at(g, i);
        int64_t layer = -1;
        ft_linear lin;
        const int linear = ft_gguf_linear(t->name, &layer, &lin);
        const ft_ggml_type gt = ft_out_type(&gc, kind, t, linear, layer, &i_attn_v);
        const int64_t b = ft_ggml_row_size(gt, t->ne[0]) * (t->nelem / t->ne[0]);
        sum += (b + FT_GGUF_ALIGNMENT - 1) / FT_GGUF_ALIGNMENT * FT_GGUF_ALIGNMENT;
    }
    *bytes = sum;
    if (count) *count = ft_gguf_tensor_count(g);
done:
    ft_gguf_close(g);
    return st;
}
