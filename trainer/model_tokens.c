/* model_tokens.c: the trainable tokens of an adapter (lora.h ft_lora_tokens, PEFT's
 * trainable_token_indices) in the model's passes.
 *
 * Embedding: the rows of the batch that hold a trainable token take its f32 row in place of the
 * base's (ft_op_rows_set after ft_op_embed); their gradient, the residual stream's at the
 * embedding once the backward has gone through every layer, sums into the row's (ft_op_rows_sum).
 * Which rows hold which token is known on the host when the batch is uploaded: a CSR list per
 * token (kernels/ops.h), so the sums are deterministic and cost what the tokens' rows cost.
 *
 * lm_head: the logits of trainable tokens are h . row^T instead of the base's. The product of a
 * chunk's h[n,C] with the rows [k,C] is LoRA's down-projection (ft_op_lora_fwd with y NULL: t =
 * h . A^T, A = the rows), written over the chunk's k columns (ft_op_cols_set). After the
 * cross-entropy has turned the logits into their gradient, those columns are taken out and zeroed
 * (ft_op_cols_take), so the frozen lm_head's input-gradient GEMM sees none of the base's rows for
 * them, and ft_op_lora_bwd with B = I[k,k] and scale 1 gives the rows' gradient (dA += g^T . h)
 * and adds g . rows to the hidden state's gradient (dx += dt . A, dt = g . I). Its dB is
 * discarded. The LoRA kernels are tested at every rank and width; a second GEMM path for a
 * product this small (k is a handful of tokens) would buy nothing. */
#include <string.h>

#include "kernels/mem.h"
#include "kernels/ops.h"
#include "trainer/model_impl.h"

void ft_tt_release(ft_model *m) {
    ft_backend_release(m->be, m->tt_pos);
    ft_backend_release(m->be, m->tt_cols);
    ft_backend_release(m->be, m->tt_eye);
    ft_backend_release(m->be, m->tt_db);
    ft_backend_release(m->be, m->tt_t);
    ft_backend_release(m->be, m->tt_g);
    m->tt_pos = m->tt_t = m->tt_g = NULL;
    m->tt_cols = NULL;
    m->tt_eye = m->tt_db = NULL;
    m->tt_pos_cap = m->tt_tcap = m->tt_gcap = m->tt_m = 0;
    m->tt_ready = 0;
}

static const ft_lora_tokens *ft_tt(const ft_model *m) { return m->lora && m->lora->tok.k ? &m->lora->tok : NULL; }

/* The adapter's fixed device state: the ids as lm_head columns, and the identity the head's
 * product uses as its B. */
static ft_status ft_tt_setup(ft_model *m, const ft_lora_tokens *tk) {
    if (m->tt_ready) return FT_OK;
    ft_backend *be = m->be;
    const int64_t k = tk->k;
    float *eye = NULL;
    ft_status st;
    FT_CHECK_GOTO(st, ft_backend_alloc(be, (void **)&m->tt_cols, k * 4, "trainable tokens"), fail);
    FT_CHECK_GOTO(st, ft_backend_upload(be, m->tt_cols, tk->ids, k * 4), fail);
    FT_CHECK_GOTO(st, ft_backend_alloc(be, (void **)&m->tt_eye, k * k * 4, "trainable tokens"), fail);
    FT_CHECK_GOTO(st, ft_backend_alloc(be, (void **)&m->tt_db, k * k * 4, "trainable tokens"), fail);
    FT_CHECK_GOTO(st, ft_calloc((void **)&eye, (size_t)(k * k) * 4, "trainable tokens"), fail);
    for (int64_t j = 0; j < k; j++) eye[j * k + j] = 1.0f;
    FT_CHECK_GOTO(st, ft_backend_upload(be, m->tt_eye, eye, k * k * 4), fail);
    ft_free(eye);
    m->tt_ready = 1;
    return FT_OK;
fail:
    ft_free(eye);
    ft_tt_release(m); /* nothing half made is kept, so the next call starts over without leaking */
    return st;
}

/* Grows a backend buffer to hold `need` bytes (its contents are not kept). */
static ft_status ft_tt_grow(ft_backend *be, void **buf, int64_t *cap, int64_t need, int64_t unit) {
    if (*buf && *cap >= need) return FT_OK;
    ft_backend_release(be, *buf);
    *buf = NULL;
    *cap = 0;
    FT_TRY(ft_backend_alloc(be, buf, need * unit, "trainable tokens"));
    *cap = need;
    return FT_OK;
}

ft_status ft_tt_batch(ft_model *m, const int32_t *tokens, int64_t N) {
    const ft_lora_tokens *tk = ft_tt(m);
    m->tt_m = 0;
    if (!tk) return FT_OK;
    FT_TRY(ft_tt_setup(m, tk));
    const int64_t k = tk->k;
    int32_t *csr = NULL, *fill = NULL;
    FT_TRY(ft_calloc((void **)&csr, (size_t)(k + 1 + N) * 4, "trainable token rows"));
    ft_status st = ft_calloc((void **)&fill, (size_t)(k + 1) * 4, "trainable token rows");
    if (st != FT_OK) {
        ft_free(csr);
        return st;
    }
    /* token j of the sorted ids: a binary search per row; counts, offsets, then the rows in order */
    int32_t *which = csr + k + 1; /* first pass: each row's token index or -1, reused below */
    for (int64_t i = 0; i < N; i++) {
        int64_t lo = 0, hi = k;
        while (lo < hi) {
            int64_t mid = (lo + hi) / 2;
            if (tk->ids[mid] < tokens[i]) lo = mid + 1;
            else hi = mid;
        }
        which[i] = lo < k && tk->ids[lo] == tokens[i] ? (int32_t)lo : -1;
        if (which[i] >= 0) fill[which[i] + 1]++;
    }
    for (int64_t j = 0; j < k; j++) fill[j + 1] += fill[j];
    memcpy(csr, fill, (size_t)(k + 1) * 4);
    const int64_t M = fill[k];
    int32_t *rows = NULL;
    st = ft_malloc((void **)&rows, (size_t)(M > 0 ? M : 1) * 4, "trainable token rows");
    if (st == FT_OK) {
        for (int64_t i = 0; i < N; i++)
            if (which[i] >= 0) rows[fill[which[i]]++] = (int32_t)i;
        memcpy(csr + k + 1, rows, (size_t)M * 4);
        ft_free(rows);
        st = ft_tt_grow(m->be, &m->tt_pos, &m->tt_pos_cap, k + 1 + M, 4);
    }
    if (st == FT_OK) st = ft_backend_upload(m->be, m->tt_pos, csr, (k + 1 + M) * 4);
    if (st == FT_OK) m->tt_m = M;
    ft_free(fill);
    ft_free(csr);
    return st;
}

ft_status ft_tt_embed(ft_model *m, void *x) {
    const ft_lora_tokens *tk = ft_tt(m);
    if (!tk || m->tt_m == 0) return FT_OK;
    return ft_op_rows_set(m->be, x, m->lora->params + tk->embed_off, (const int32_t *)m->tt_pos, tk->k, tk->C);
}

ft_status ft_tt_embed_bwd(ft_model *m, const void *dx) {
    const ft_lora_tokens *tk = ft_tt(m);
    if (!tk || m->tt_m == 0) return FT_OK;
    return ft_op_rows_sum(m->be, m->lora->grads + tk->embed_off, dx, (const int32_t *)m->tt_pos, tk->k, tk->C);
}

ft_status ft_tt_head(ft_model *m, const void *h, int64_t n) {
    const ft_lora_tokens *tk = ft_tt(m);
    if (!tk) return FT_OK;
    FT_TRY(ft_tt_setup(m, tk));
    FT_TRY(ft_tt_grow(m->be, &m->tt_t, &m->tt_tcap, n * tk->k, m->es));
    FT_TRY(ft_tt_grow(m->be, &m->tt_g, &m->tt_gcap, n * tk->k, m->es));
    const ft_lora_drop none = {0};
    FT_TRY(ft_op_lora_fwd(m->be, NULL, m->tt_t, h, none, m->lora->params + tk->head_off, m->tt_eye, n, tk->C, tk->k,
                          tk->k, 1.0f, 0));
    return ft_op_cols_set(m->be, m->logits, m->tt_t, m->tt_cols, n, m->d.V, tk->k);
}

ft_status ft_tt_head_take(ft_model *m, int64_t n) {
    const ft_lora_tokens *tk = ft_tt(m);
    if (!tk) return FT_OK;
    return ft_op_cols_take(m->be, m->tt_g, m->logits, m->tt_cols, n, m->d.V, tk->k);
}

ft_status ft_tt_head_bwd(ft_model *m, void *dh, const void *h, int64_t n) {
    const ft_lora_tokens *tk = ft_tt(m);
    if (!tk) return FT_OK;
    const ft_lora_drop none = {0};
    FT_TRY(ft_backend_memset(m->be, m->tt_db, 0, tk->k * tk->k * 4)); /* discarded; kept from growing */
    return ft_op_lora_bwd(m->be, dh, m->lora->grads + tk->head_off, m->tt_db, m->tt_g, h, none, m->tt_t,
                          m->lora->params + tk->head_off, m->tt_eye, n, tk->C, tk->k, tk->k, 1.0f, 1);
}
