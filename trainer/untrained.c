/* untrained.c: see untrained.h. */
#include "trainer/untrained.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "data/tokenizer.h"
#include "kernels/log.h"
#include "kernels/mem.h"
#include "kernels/weight.h"
#include "trainer/dataset.h"
#include "trainer/loader.h"

#define FT_UNTRAINED_EPS 1e-16f /* Unsloth's: the largest element, not the largest magnitude */

/* Sets `bit` in flags[r] for each row of w whose largest element is <= FT_UNTRAINED_EPS. */
static ft_status ft_untrained_rows(ft_backend *be, const ft_weight *w, uint8_t bit, uint8_t *flags) {
    const int64_t C = w->cols, chunk = C > 0 && (16 << 20) / (4 * C) > 0 ? (16 << 20) / (4 * C) : 1;
    float *buf;
    FT_TRY(ft_malloc((void **)&buf, (size_t)(chunk * C) * 4, "untrained-token scan"));
    ft_status st = FT_OK;
    for (int64_t r0 = 0; r0 < w->rows && st == FT_OK; r0 += chunk) {
        const int64_t n = w->rows - r0 < chunk ? w->rows - r0 : chunk;
        st = ft_weight_rows_f32(be, w, r0, n, buf);
        for (int64_t r = 0; r < n && st == FT_OK; r++) {
            const float *x = buf + r * C;
            float mx = -INFINITY;
            for (int64_t c = 0; c < C; c++) mx = x[c] > mx ? x[c] : mx;
            if (mx <= FT_UNTRAINED_EPS) flags[r0 + r] |= bit;
        }
    }
    ft_free(buf);
    return st;
}

/* The Llama 3.1 case: lm_head rows of the tokens with untrained embeddings that equal (to 3
 * decimals, as Unsloth compares them) another such token's row. */
static ft_status ft_untrained_repeats(ft_backend *be, const ft_weight *lm, uint8_t *flags) {
    const int64_t V = lm->rows, C = lm->cols;
    int64_t n = 0;
    for (int64_t v = 0; v < V; v++) n += (flags[v] & FT_UNTRAINED_EMBED) != 0;
    if (n < 2) return FT_OK;
    float *row = NULL;
    int32_t *q = NULL;
    uint64_t *hash = NULL;
    int64_t *id = NULL;
    ft_status st;
    FT_CHECK_GOTO(st, ft_malloc((void **)&row, (size_t)C * 4, "untrained-token scan"), done);
    FT_CHECK_GOTO(st, ft_malloc((void **)&q, (size_t)C * 4, "untrained-token scan"), done);
    FT_CHECK_GOTO(st, ft_malloc((void **)&hash, (size_t)n * 8, "untrained-token scan"), done);
    FT_CHECK_GOTO(st, ft_malloc((void **)&id, (size_t)n * 8, "untrained-token scan"), done);
    n = 0;
    for (int64_t v = 0; v < V; v++) {
        if (!(flags[v] & FT_UNTRAINED_EMBED)) continue;
        FT_CHECK_GOTO(st, ft_weight_rows_f32(be, lm, v, 1, row), done);
        for (int64_t c = 0; c < C; c++) q[c] = (int32_t)lrintf(row[c] * 1000.0f);
        hash[n] = XXH3_64bits(q, (size_t)C * 4), id[n++] = v;
    }
    /* a few hundred reserved tokens at most: the quadratic pass costs nothing beside the scan */
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = i + 1; j < n; j++)
            if (hash[i] == hash[j]) flags[id[i]] |= FT_UNTRAINED_LM_HEAD, flags[id[j]] |= FT_UNTRAINED_LM_HEAD;
done:
    ft_free(row);
    ft_free(q);
    ft_free(hash);
    ft_free(id);
    return st;
}

ft_status ft_untrained_scan(ft_backend *be, const ft_model_weights *w, uint8_t **out) {
    const int64_t V = w->embed.rows;
    uint8_t *flags;
    FT_TRY(ft_calloc((void **)&flags, (size_t)(V > 0 ? V : 1), "untrained-token flags"));
    ft_status st = ft_untrained_rows(be, &w->embed, FT_UNTRAINED_EMBED, flags);
    const int tied = w->lm_head.data == w->embed.data;
    if (st == FT_OK && tied) {
        for (int64_t v = 0; v < V; v++)
            if (flags[v] & FT_UNTRAINED_EMBED) flags[v] |= FT_UNTRAINED_LM_HEAD;
    } else if (st == FT_OK && w->lm_head.rows == V) {
        st = ft_untrained_rows(be, &w->lm_head, FT_UNTRAINED_LM_HEAD, flags);
        if (st == FT_OK) st = ft_untrained_repeats(be, &w->lm_head, flags);
    }
    if (st != FT_OK) {
        ft_free(flags);
        return st;
    }
    *out = flags;
    return FT_OK;
}

/* "<|eot_id|> (128009)" for each id, comma-separated, the first 8. */
static void ft_untrained_names(const ft_tok *tok, const int32_t *ids, int64_t n, char *out, size_t cap) {
    size_t o = 0;
    out[0] = 0;
    for (int64_t i = 0; i < n && o + 1 < cap; i++) {
        if (i == 8) {
            snprintf(out + o, cap - o, " and %lld more", (long long)(n - 8));
            return;
        }
        const char *p = tok ? ft_tok_id_to_piece(tok, ids[i]) : NULL;
        int k = p ? snprintf(out + o, cap - o, "%s%s (%d)", i ? ", " : "", p, ids[i])
                  : snprintf(out + o, cap - o, "%sid %d", i ? ", " : "", ids[i]);
        o += k > 0 ? (size_t)k : 0;
    }
}

/* Appends id to list[*n] unless it is there already. */
static void ft_untrained_add(int32_t *list, int64_t *n, int32_t id) {
    for (int64_t i = 0; i < *n; i++)
        if (list[i] == id) return;
    list[(*n)++] = id;
}

ft_status ft_untrained_check(ft_backend *be, ft_model *m, const ft_dataset *ds, const char *model_path,
                             const char *tok_dir, int64_t *n_flagged) {
    const ft_model_weights *w = ft_model_get_weights(m);
    const int64_t V = w->embed.rows;
    uint8_t *flags = NULL;
    int32_t *prompt = NULL, *read = NULL, *stop = NULL;
    int64_t np = 0, nr = 0, ns = 0;
    ft_tok *tok = NULL;
    ft_status st;
    *n_flagged = 0;
    if (w->embed.dtype == FT_NF4 || w->lm_head.dtype == FT_NF4) return FT_OK; /* never so: they keep their width */
    FT_CHECK_GOTO(st, ft_untrained_scan(be, w, &flags), done);
    FT_CHECK_GOTO(st, ft_dataset_prompt_ids(ds, "x", &prompt, &np), done);
    FT_CHECK_GOTO(st, ft_malloc((void **)&read, (size_t)(np > 0 ? np : 1) * 4, "untrained tokens"), done);
    FT_CHECK_GOTO(st, ft_malloc((void **)&stop, 64 * 4, "untrained tokens"), done);
    for (int64_t i = 0; i < np; i++)
        if (prompt[i] >= 0 && prompt[i] < V && (flags[prompt[i]] & FT_UNTRAINED_EMBED)) ft_untrained_add(read, &nr, prompt[i]);
    for (int64_t v = 0; v < V && ns < 64; v++)
        if ((flags[v] & FT_UNTRAINED_LM_HEAD) && ft_dataset_is_stop(ds, (int32_t)v)) ft_untrained_add(stop, &ns, (int32_t)v);
    if (nr + ns == 0) goto done;
    if (ft_model_tokenizer(&tok, tok_dir) != FT_OK) { /* the names are a courtesy: the ids still say it */
        ft_error_clear();
        tok = NULL;
    }
    char names[1024];
    if (nr) {
        ft_untrained_names(tok, read, nr, names, sizeof names);
        ft_warn("%s: the template's token%s %s %s an untrained embedding in this base (a zero row): LoRA leaves the "
                "embeddings frozen, so the model cannot learn to read %s; train from the instruct checkpoint, or "
                "set data.template to one whose tokens this base knows",
                model_path, nr > 1 ? "s" : "", names, nr > 1 ? "have" : "has", nr > 1 ? "them" : "it");
    }
    if (ns) {
        ft_untrained_names(tok, stop, ns, names, sizeof names);
        ft_warn("%s: %s, which end%s an answer, %s an untrained lm_head row in this base: LoRA leaves lm_head frozen, "
                "so the adapter can hardly teach the model to produce %s, and the exported model may never stop; train "
                "from the instruct checkpoint, or set data.template to one whose end of turn this base knows",
                model_path, names, ns > 1 ? "" : "s", ns > 1 ? "have" : "has", ns > 1 ? "them" : "it");
    }
    *n_flagged = nr + ns;
done:
    ft_tok_free(tok);
    ft_free(flags);
    free(prompt);
    ft_free(read);
    ft_free(stop);
    return st;
}
