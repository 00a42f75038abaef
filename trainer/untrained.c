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

/* The template's tokens with an untrained embedding (read) and the ends of an answer with an
 * untrained lm_head row (stop), each listed once; tokens in `skip` (sorted, n_skip) are left out. */
static ft_status ft_untrained_lists(ft_backend *be, ft_model *m, const ft_dataset *ds, const int32_t *skip,
                                    int64_t n_skip, int32_t **read_out, int64_t *nr_out, int32_t **stop_out,
                                    int64_t *ns_out) {
    const ft_model_weights *w = ft_model_get_weights(m);
    const int64_t V = w->embed.rows;
    uint8_t *flags = NULL;
    int32_t *prompt = NULL, *read = NULL, *stop = NULL;
    int64_t np = 0, nr = 0, ns = 0;
    ft_status st;
    *read_out = *stop_out = NULL;
    *nr_out = *ns_out = 0;
    if (w->embed.dtype == FT_NF4 || w->lm_head.dtype == FT_NF4) return FT_OK; /* never so: they keep their width */
    FT_CHECK_GOTO(st, ft_untrained_scan(be, w, &flags), done);
    for (int64_t i = 0; i < n_skip; i++)
        if (skip[i] >= 0 && skip[i] < V) flags[skip[i]] = 0; /* trained by the adapter */
    FT_CHECK_GOTO(st, ft_dataset_prompt_ids(ds, "x", &prompt, &np), done);
    FT_CHECK_GOTO(st, ft_malloc((void **)&read, (size_t)(np > 0 ? np : 1) * 4, "untrained tokens"), done);
    FT_CHECK_GOTO(st, ft_malloc((void **)&stop, 64 * 4, "untrained tokens"), done);
    for (int64_t i = 0; i < np; i++)
        if (prompt[i] >= 0 && prompt[i] < V && (flags[prompt[i]] & FT_UNTRAINED_EMBED)) ft_untrained_add(read, &nr, prompt[i]);
    for (int64_t v = 0; v < V && ns < 64; v++)
        if ((flags[v] & FT_UNTRAINED_LM_HEAD) && ft_dataset_is_stop(ds, (int32_t)v)) ft_untrained_add(stop, &ns, (int32_t)v);
    *read_out = read, *nr_out = nr, read = NULL;
    *stop_out = stop, *ns_out = ns, stop = NULL;
done:
    ft_free(flags);
    free(prompt);
    ft_free(read);
    ft_free(stop);
    return st;
}

static int ft_untrained_id_cmp(const void *x, const void *y) {
    int32_t a = *(const int32_t *)x, b = *(const int32_t *)y;
    return (a > b) - (a < b);
}

ft_status ft_untrained_ids(ft_backend *be, ft_model *m, const ft_dataset *ds, int32_t **ids, int64_t *n) {
    int32_t *read = NULL, *stop = NULL, *all = NULL;
    int64_t nr = 0, ns = 0, k = 0;
    *ids = NULL;
    *n = 0;
    FT_TRY(ft_untrained_lists(be, m, ds, NULL, 0, &read, &nr, &stop, &ns));
    ft_status st = ft_malloc((void **)&all, (size_t)(nr + ns + 1) * 4, "untrained tokens");
    if (st == FT_OK) {
        for (int64_t i = 0; i < nr; i++) ft_untrained_add(all, &k, read[i]);
        for (int64_t i = 0; i < ns; i++) ft_untrained_add(all, &k, stop[i]);
        qsort(all, (size_t)k, sizeof *all, ft_untrained_id_cmp);
        *ids = all, *n = k;
    }
    ft_free(read);
    ft_free(stop);
    return st;
}

ft_status ft_untrained_check(ft_backend *be, ft_model *m, const ft_dataset *ds, const char *model_path,
                             const char *tok_dir, const int32_t *trained, int64_t n_trained, int64_t *n_flagged) {
    int32_t *read = NULL, *stop = NULL;
    int64_t nr = 0, ns = 0;
    ft_tok *tok = NULL;
    ft_status st;
    *n_flagged = 0;
    FT_CHECK_GOTO(st, ft_untrained_lists(be, m, ds, trained, n_trained, &read, &nr, &stop, &ns), done);
    if (nr + ns == 0) goto done;
    if (ft_model_tokenizer(&tok, tok_dir) != FT_OK) { /* the names are a courtesy: the ids still say it */
        ft_error_clear();
        tok = NULL;
    }
    char names[1024];
    if (nr) {
        ft_untrained_names(tok, read, nr, names, sizeof names);
        ft_warn("%s: the template's token%s %s %s an untrained embedding in this base (a zero row): LoRA leaves the "
                "embeddings frozen, so the model cannot learn to read %s; set lora.trainable_tokens: auto to train "
                "%s rows, train from the instruct checkpoint, or set data.template to one whose tokens this base knows",
                model_path, nr > 1 ? "s" : "", names, nr > 1 ? "have" : "has", nr > 1 ? "them" : "it",
                nr > 1 ? "their" : "its");
    }
    if (ns) {
        ft_untrained_names(tok, stop, ns, names, sizeof names);
        ft_warn("%s: %s, which end%s an answer, %s an untrained lm_head row in this base: LoRA leaves lm_head frozen, "
                "so the adapter can hardly teach the model to produce %s, and the exported model may never stop; set "
                "lora.trainable_tokens: auto to train %s rows, train from the instruct checkpoint, or set "
                "data.template to one whose end of turn this base knows",
                model_path, names, ns > 1 ? "" : "s", ns > 1 ? "have" : "has", ns > 1 ? "them" : "it",
                ns > 1 ? "their" : "its");
    }
    *n_flagged = nr + ns;
done:
    ft_tok_free(tok);
    ft_free(read);
    ft_free(stop);
    return st;
}

ft_status ft_trainable_tokens_pick(char *const *items, int n, const char *what, ft_backend *be, ft_model *m,
                                   const ft_dataset *ds, const char *tok_dir, int32_t **ids, int64_t *k) {
    const int64_t V = ft_model_get_dims(m)->V;
    int32_t *list = NULL, *untrained = NULL;
    int64_t nl = 0, nu = 0;
    ft_tok *tok = NULL;
    ft_status st = FT_OK;
    *ids = NULL;
    *k = 0;
    if (n <= 0) return FT_OK;
    for (int i = 0; i < n && st == FT_OK; i++) {
        if (strcmp(items[i], "auto") == 0 && !untrained) {
            if (!ds) st = FT_ERR(FT_E_ARG, "%s: auto needs the run's data and template", what);
            else st = ft_untrained_ids(be, m, ds, &untrained, &nu);
            if (st == FT_OK && nu == 0) ft_info("%s: auto: this base has trained every token of the template: none to "
                                                "train", what);
        }
    }
    if (st == FT_OK) st = ft_malloc((void **)&list, (size_t)(n + nu + 1) * 4, "trainable tokens");
    for (int64_t i = 0; i < nu && st == FT_OK; i++) ft_untrained_add(list, &nl, untrained[i]);
    for (int i = 0; i < n && st == FT_OK; i++) {
        const char *s = items[i];
        if (strcmp(s, "auto") == 0) continue;
        char *end = NULL;
        long long v = strtoll(s, &end, 10);
        int32_t id = -1;
        if (*s && end && *end == 0) {
            if (v < 0 || v >= V) {
                st = FT_ERR(FT_E_ARG, "%s: id %s is outside the vocabulary (0..%lld)", what, s, (long long)V - 1);
                break;
            }
            id = (int32_t)v;
        } else {
            if (!tok) st = ft_model_tokenizer(&tok, tok_dir);
            if (st != FT_OK) break;
            id = ft_tok_token_to_id(tok, s);
            if (id < 0 || id >= V) {
                st = FT_ERR(FT_E_ARG, "%s: '%s' is not a token of %s's tokenizer (a token string must be spelled as "
                                      "the tokenizer's added tokens or vocabulary spell it; or give its id)", what, s,
                            tok_dir);
                break;
            }
        }
        ft_untrained_add(list, &nl, id);
    }
    if (st == FT_OK) {
        qsort(list, (size_t)nl, sizeof *list, ft_untrained_id_cmp);
        *ids = list, *k = nl, list = NULL;
    }
    ft_tok_free(tok);
    ft_free(list);
    ft_free(untrained);
    return st;
}
