/* adapter_tokens_out.c: an adapter's trainable tokens (struct ft_adapter's embed/head rows: whole rows
 * that replace the base's, PEFT's TrainableTokensLayer) where they leave ftune. The reading side
 * (adapter_config.json's trainable_token_indices, the trainable_tokens_delta tensors) is
 * export/adapter_tokens.h's.
 *
 * Merges (export/merge.c, merge_gguf.c): the base's rows of the listed ids are overwritten with the
 * adapter's, as PEFT's merge index_copy's them into the weight; a tied model's lm_head is its
 * embedding, so the embedding's rows serve both and there is no lm_head to change.
 *
 * llama.cpp LoRA GGUF: llama.cpp adapters hold lora_a/lora_b pairs only, looked up by the base
 * tensor's name (src/llama-adapter.cpp, llama_adapter_lora::get_weight), each scaled by
 * adapter.lora.alpha / rank with rank = lora_b's ne[0] (llama_adapter_lora_weight::get_scale). A
 * replacement of k rows is a rank-k LoRA exactly, given the base's rows:
 *  - token_embd (src/llama-graph.cpp, build_inp_embd: cur += scale * mul_mat(b, get_rows(a, tokens)),
 *    llama-adapter.cpp checks b->ne[1] == n_embd and a->ne[1] == n_vocab): a ne [k, V] one-hot
 *    (row id_j = e_j), b ne [k, C] with b[c][j] = (new_j - base_j)[c] / scale;
 *  - output, an untied lm_head (build_lora_mm: res += scale * mul_mat(b, mul_mat(a, cur))): a ne [C, k]
 *    whose row j is (new_j - base_j) / scale, b ne [k, V] one-hot (row id_j = e_j).
 * The base rows are what llama.cpp adds to: a GGUF base's decoded rows, or a checkpoint's 16/32-bit
 * ones (what its F16/F32 GGUF holds). A TIED model cannot be served: its output matmul is
 * build_lora_mm(model.output, ...) where model.output is token_embd.weight itself (llama-model.cpp
 * creates it as TENSOR_DUPLICATED under that name), so llama.cpp would find the embedding's pair there
 * too and multiply mul_mat(a, cur) with a->ne[0] = k against cur->ne[0] = C: no pair fits both uses
 * unless k = C = V. Refused, pointing at `ftune merge`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "export/adapter.h"
#include "export/gguf.h"
#include "kernels/dtype.h"
#include "kernels/log.h"
#include "kernels/mem.h"
#include "trainer/gguf_config.h"
#include "trainer/safetensors_read.h"

ft_token_rows ft_adapter_token_rows(const ft_adapter *a, int head, int tied) {
    ft_token_rows r = {0};
    if (!a) return r;
    if (head && !tied) {
        r.n = a->n_head_tokens, r.ids = a->head_ids, r.rows = a->head_rows;
    } else { /* the embedding; a tied model's lm_head (a checkpoint may store it) is the embedding */
        r.n = a->n_embed_tokens, r.ids = a->embed_ids, r.rows = a->embed_rows;
    }
    r.C = r.n ? a->tokens_C : 0;
    return r;
}

ft_status ft_adapter_token_rows_check(const ft_adapter *a, const ft_model_config *cfg, const char *base) {
    if (!a || (a->n_embed_tokens == 0 && a->n_head_tokens == 0)) return FT_OK;
    if (a->n_head_tokens && cfg->tie_word_embeddings)
        return FT_ERR(FT_E_UNSUPPORTED, "%s: the adapter has trainable-token rows of its own for lm_head but the base %s "
                      "ties lm_head to the embedding, so a merged model cannot hold both sets of rows (load it with "
                      "PEFT instead)", a->dir, base);
    if (a->tokens_C != cfg->hidden_size)
        return FT_ERR(FT_E_FORMAT, "%s: trainable-token rows of %lld values but the base %s has hidden_size %lld", a->dir,
                      (long long)a->tokens_C, base, (long long)cfg->hidden_size);
    for (int head = 0; head < 2; head++) {
        const int64_t n = head ? a->n_head_tokens : a->n_embed_tokens;
        const int32_t *ids = head ? a->head_ids : a->embed_ids;
        for (int64_t j = 0; j < n; j++)
            if (ids[j] < 0 || ids[j] >= cfg->vocab_size)
                return FT_ERR(FT_E_FORMAT, "%s: trainable token id %d is outside the vocabulary of %s (0..%lld)", a->dir,
                              ids[j], base, (long long)cfg->vocab_size - 1);
    }
    return FT_OK;
}

ft_status ft_token_rows_fit(const ft_token_rows *r, const char *base, const char *tensor, int64_t nrows, int64_t cols) {
    if (!r->n) return FT_OK;
    if (r->C != cols)
        return FT_ERR(FT_E_FORMAT, "%s: tensor %s has rows of %lld values but the adapter's trainable-token rows have %lld",
                      base, tensor, (long long)cols, (long long)r->C);
    for (int64_t j = 0; j < r->n; j++)
        if (r->ids[j] < 0 || r->ids[j] >= nrows)
            return FT_ERR(FT_E_FORMAT, "%s: trainable token id %d is outside tensor %s's %lld rows", base, r->ids[j],
                          tensor, (long long)nrows);
    return FT_OK;
}

void ft_token_rows_apply(const ft_token_rows *r, int64_t row0, int64_t nrows, float *dst) {
    for (int64_t j = 0; j < r->n; j++) {
        const int64_t id = r->ids[j];
        if (id >= row0 && id < row0 + nrows) memcpy(dst + (id - row0) * r->C, r->rows + j * r->C, (size_t)r->C * 4);
    }
}

/* ---- llama.cpp LoRA GGUF ------------------------------------------------------------------------ */

/* Rows [n, C] of the base's embedding (head 0) or lm_head (head 1) at ids: from a GGUF file's
 * token_embd/output (decoded), or a checkpoint's model.embed_tokens/lm_head (F32/F16/BF16). */
static ft_status ft_base_token_rows(const char *base, int head, const ft_token_rows *r, float *out) {
    ft_status st = FT_OK;
    const ft_tensor_info *ti = ft_tensor_info_get(head ? FT_TR_OUTPUT : FT_TR_TOKEN_EMBD);
    if (ft_is_gguf_file(base)) {
        ft_gguf *g = NULL;
        FT_TRY(ft_gguf_open(&g, base));
        const ft_gguf_tensor *t = ft_gguf_tensor_find(g, ti->gguf);
        if (!t || t->n_dims != 2) st = FT_ERR(FT_E_FORMAT, "%s: no 2-D tensor %s (the adapter has its trainable-token rows)",
                                              base, ti->gguf);
        else st = ft_token_rows_fit(r, base, ti->gguf, t->ne[1], t->ne[0]);
        for (int64_t j = 0; st == FT_OK && j < r->n; j++) st = ft_gguf_tensor_rows_f32(g, t, r->ids[j], 1, out + j * r->C);
        ft_gguf_close(g);
        return st;
    }
    ft_st_model *sm = NULL;
    FT_TRY(ft_st_open(&sm, base));
    const ft_st_tensor *t = ft_st_lookup(sm, ti->hf);
    ft_dtype dt = FT_F32;
    if (!t || t->ndim != 2) {
        st = FT_ERR(FT_E_FORMAT, "%s: checkpoint has no 2-D tensor %s (the adapter has its trainable-token rows)", base, ti->hf);
    } else if ((st = ft_st_tensor_dtype(t, &dt)) == FT_OK && dt != FT_F32 && dt != FT_F16 && dt != FT_BF16) {
        st = FT_ERR(FT_E_UNSUPPORTED, "%s: tensor %s has dtype %s; ftune reads F32, F16 or BF16 rows", t->shard, ti->hf,
                    ft_dtype_name(dt));
    }
    if (st == FT_OK) st = ft_token_rows_fit(r, base, ti->hf, t->shape[0], t->shape[1]);
    for (int64_t j = 0; st == FT_OK && j < r->n; j++)
        ft_to_f32(out + j * r->C, (const uint8_t *)t->data + (int64_t)r->ids[j] * r->C * ft_dtype_nbytes(dt, 1), dt, r->C);
    ft_st_close(sm);
    return st;
}

/* One tensor of a pair: which says what its rows hold (ne[0] = k for all but out_a's). */
typedef enum { FT_TOK_ONEHOT, FT_TOK_DELTA_T, FT_TOK_DELTA } ft_tok_kind;
typedef struct {
    ft_tok_kind kind;
    const int32_t *ids; /* [k] */
    const float *delta; /* [k, C]: (new - base) / scale */
    int64_t k, C;
} ft_tok_src;

static ft_status ft_tok_rows(void *user, int64_t row0, int64_t nrows, float *dst) {
    const ft_tok_src *s = user;
    if (s->kind == FT_TOK_DELTA) { /* rows j of [k, C] */
        memcpy(dst, s->delta + row0 * s->C, (size_t)(nrows * s->C) * 4);
        return FT_OK;
    }
    memset(dst, 0, (size_t)(nrows * s->k) * 4);
    for (int64_t j = 0; j < s->k; j++) {
        if (s->kind == FT_TOK_DELTA_T) { /* rows c of [C, k]: the transpose */
            for (int64_t r = 0; r < nrows; r++) dst[r * s->k + j] = s->delta[j * s->C + row0 + r];
        } else if (s->ids[j] >= row0 && s->ids[j] < row0 + nrows) { /* rows v of [V, k]: e_j at id_j */
            dst[(s->ids[j] - row0) * s->k + j] = 1.0f;
        }
    }
    return FT_OK;
}

ft_status ft_adapter_gguf_finish_tokens(const ft_adapter *a, const ft_model_config *cfg, struct ft_ggufw *w, double alpha,
                                        ft_ggml_type type) {
    ft_status st = FT_OK;
    float *delta[2] = {NULL, NULL};
    ft_tok_src src[4];
    char base[4096];
    ft_model_config bc;
    if (a->n_embed_tokens == 0 && a->n_head_tokens == 0) return ft_ggufw_finish(w);
    if (cfg->tie_word_embeddings) {
        st = FT_ERR(FT_E_UNSUPPORTED,
                    "%s: trainable tokens of a tied model cannot go into a llama.cpp adapter: llama.cpp finds an adapter's "
                    "pair by tensor name and a tied model's output matmul uses token_embd.weight, so the embedding's pair "
                    "would be multiplied as an output LoRA of the wrong shape: use `ftune merge` (the rows merged into "
                    "the model), or `ftune export --format peft`", a->dir);
        goto done;
    }
    /* the base whose rows llama.cpp adds the pairs to: the adapter's base_model_name_or_path */
    FT_CHECK_GOTO(st, ft_adapter_base_config(a, NULL, &bc, base, sizeof base), done);
    if (bc.vocab_size != cfg->vocab_size || bc.hidden_size != cfg->hidden_size || bc.tie_word_embeddings) {
        st = FT_ERR(FT_E_FORMAT, "%s: base_model_name_or_path %s is not the untied model of vocab %lld x hidden %lld the "
                    "adapter is exported for: its trainable tokens are stored as new rows minus that base's rows",
                    a->dir, base, (long long)cfg->vocab_size, (long long)cfg->hidden_size);
        goto done;
    }
    FT_CHECK_GOTO(st, ft_adapter_token_rows_check(a, cfg, base), done);
    ft_ggml_type one = type == FT_GGML_F32 ? FT_GGML_F32 : FT_GGML_F16; /* 0 and 1 exactly (Q8_0's 1 is 0.99998) */
    for (int head = 0; head < 2; head++) {
        const ft_token_rows r = ft_adapter_token_rows(a, head, 0);
        if (!r.n) continue;
        const int64_t k = r.n, C = r.C, V = cfg->vocab_size;
        /* llama.cpp multiplies the pair by alpha / rank, rank = lora_b's ne[0] = k for both pairs */
        const double scale = alpha != 0 ? alpha / (double)k : 1.0;
        FT_CHECK_GOTO(st, ft_malloc((void **)&delta[head], (size_t)(k * C) * 4, "trainable-token rows"), done);
        FT_CHECK_GOTO(st, ft_base_token_rows(base, head, &r, delta[head]), done);
        for (int64_t i = 0; i < k * C; i++) delta[head][i] = (float)(((double)r.rows[i] - delta[head][i]) / scale);
        ft_tok_src *sa = &src[2 * head], *sb = &src[2 * head + 1];
        *sa = (ft_tok_src){.ids = r.ids, .delta = delta[head], .k = k, .C = C};
        *sb = *sa;
        const char *name = head ? "output.weight" : "token_embd.weight";
        char na[96], nb[96];
        snprintf(na, sizeof na, "%s" FT_GGUF_LORA_A, name);
        snprintf(nb, sizeof nb, "%s" FT_GGUF_LORA_B, name);
        /* the delta's type as asked (Q8_0 when its rows are whole blocks, else F16, as the modules) */
        if (head) {
            sa->kind = FT_TOK_DELTA, sb->kind = FT_TOK_ONEHOT;
            const int64_t nea[2] = {C, k}, neb[2] = {k, V};
            const ft_ggml_type ta = type == FT_GGML_Q8_0 && C % 32 ? FT_GGML_F16 : type;
            FT_CHECK_GOTO(st, ft_ggufw_add_tensor(w, na, ta, 2, nea, ft_tok_rows, sa), done);
            FT_CHECK_GOTO(st, ft_ggufw_add_tensor(w, nb, one, 2, neb, ft_tok_rows, sb), done);
        } else {
            sa->kind = FT_TOK_ONEHOT, sb->kind = FT_TOK_DELTA_T;
            const int64_t nea[2] = {k, V}, neb[2] = {k, C};
            const ft_ggml_type tb = type == FT_GGML_Q8_0 && k % 32 ? FT_GGML_F16 : type;
            FT_CHECK_GOTO(st, ft_ggufw_add_tensor(w, na, one, 2, nea, ft_tok_rows, sa), done);
            FT_CHECK_GOTO(st, ft_ggufw_add_tensor(w, nb, tb, 2, neb, ft_tok_rows, sb), done);
        }
    }
    ft_info("trainable tokens: %lld embedding / %lld output rows as rank-k LoRA pairs of token_embd / output (new rows "
            "minus the rows of %s)", (long long)a->n_embed_tokens, (long long)a->n_head_tokens, base);
    st = ft_ggufw_finish(w);
    w = NULL;
done:
    ft_ggufw_discard(w);
    free(delta[0]);
    free(delta[1]);
    return st;
}
