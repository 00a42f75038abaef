/* batcher.c: see batcher.h. The permutation of the current epoch is recomputed from
 * (seed, epoch) whenever the epoch changes (O(rows) work and memory, once per epoch). */
#include "data/batcher.h"

#include <stdlib.h>
#include <string.h>

#include "kernels/mem.h"
#include "kernels/rng.h"

struct ft_batcher {
    const ft_pack *plan;
    const ft_examples *ex;
    ft_batcher_opts o;
    uint64_t plan_hash;
    int64_t epoch, index;
    int64_t perm_epoch;   /* epoch perm was made for, -1 none */
    int64_t *perm;        /* [rows] */
};

static uint64_t epoch_seed(uint64_t seed, int64_t epoch) { return ft_mix64(seed ^ ft_mix64((uint64_t)epoch + 1)); }

ft_status ft_batcher_create(ft_batcher **out, const ft_pack *plan, const ft_examples *ex, const ft_batcher_opts *o) {
    *out = NULL;
    if (o->batch_rows < 1) return FT_ERR(FT_E_ARG, "batch size %lld must be at least 1", (long long)o->batch_rows);
    if (plan->n_rows < 1) return FT_ERR(FT_E_ARG, "no packed rows to batch (the dataset is empty after packing)");
    ft_batcher *b;
    FT_TRY(ft_calloc((void **)&b, sizeof *b, "batcher"));
    ft_status st = ft_malloc((void **)&b->perm, (size_t)plan->n_rows * sizeof *b->perm, "batcher row order");
    if (st != FT_OK) {
        free(b);
        return st;
    }
    b->plan = plan;
    b->ex = ex;
    b->o = *o;
    b->plan_hash = ft_pack_hash(plan);
    b->perm_epoch = -1;
    *out = b;
    return FT_OK;
}

void ft_batcher_free(ft_batcher *b) {
    if (!b) return;
    free(b->perm);
    free(b);
}

ft_status ft_row_batch_alloc(const ft_batcher *b, ft_row_batch *batch) {
    memset(batch, 0, sizeof *batch);
    const int64_t B = b->o.batch_rows, T = b->plan->seq_len;
    const size_t bytes = (size_t)(B * T) * sizeof(int32_t);
    ft_status st = ft_malloc((void **)&batch->tokens, bytes, "batch tokens");
    if (st == FT_OK) st = ft_malloc((void **)&batch->labels, bytes, "batch labels");
    if (st == FT_OK) st = ft_malloc((void **)&batch->positions, bytes, "batch positions");
    if (st == FT_OK) st = ft_malloc((void **)&batch->doc_start, bytes, "batch doc_start");
    if (st != FT_OK) {
        ft_row_batch_free(batch);
        return st;
    }
    batch->B = B;
    batch->T = T;
    return FT_OK;
}

void ft_row_batch_free(ft_row_batch *batch) {
    free(batch->tokens);
    free(batch->labels);
    free(batch->positions);
    free(batch->doc_start);
    memset(batch, 0, sizeof *batch);
}

/* An empty row: all padding, nothing trained. */
static void empty_row(const ft_pack *p, int32_t *tk, int32_t *lb, int32_t *ps, int32_t *ds) {
    for (int64_t t = 0; t < p->seq_len; t++) {
        tk[t] = p->pad_id;
        lb[t] = FT_IGNORE_INDEX;
        ps[t] = 0;
        ds[t] = (int32_t)t;
    }
}

ft_status ft_batcher_next(ft_batcher *b, ft_row_batch *batch) {
    const ft_pack *p = b->plan;
    const int64_t B = b->o.batch_rows, T = p->seq_len, rows = p->n_rows;
    if (batch->B != B || batch->T != T)
        return FT_ERR(FT_E_ARG, "batch buffer is [%lld x %lld], the batcher makes [%lld x %lld]", (long long)batch->B,
                      (long long)batch->T, (long long)B, (long long)T);
    batch->n_rows = 0;
    batch->n_targets = 0;
    batch->epoch = b->epoch;
    for (int64_t i = 0; i < B; i++) {
        int32_t *tk = batch->tokens + i * T, *lb = batch->labels + i * T, *ps = batch->positions + i * T,
                *ds = batch->doc_start + i * T;
        if (b->o.mode == FT_BATCH_EVAL && b->epoch > 0) {
            empty_row(p, tk, lb, ps, ds);
            continue;
        }
        int64_t row = b->index;
        if (b->o.mode == FT_BATCH_TRAIN) {
            if (b->perm_epoch != b->epoch) {
                ft_permutation(b->perm, rows, epoch_seed(b->o.seed, b->epoch));
                b->perm_epoch = b->epoch;
            }
            row = b->perm[b->index];
        }
        ft_pack_row(p, b->ex, row, tk, lb, ps, ds);
        for (int64_t t = 0; t < T; t++) batch->n_targets += lb[t] != FT_IGNORE_INDEX;
        batch->n_rows++;
        if (++b->index == rows) {
            b->index = 0;
            b->epoch++;
        }
    }
    return FT_OK;
}

void ft_batcher_get_state(const ft_batcher *b, ft_batcher_state *s) {
    s->seed = b->o.seed;
    s->epoch = b->epoch;
    s->index = b->index;
    s->rows = b->plan->n_rows;
    s->plan_hash = b->plan_hash;
}

ft_status ft_batcher_set_state(ft_batcher *b, const ft_batcher_state *s) {
    if (s->rows != b->plan->n_rows || s->plan_hash != b->plan_hash)
        return FT_ERR(FT_E_ARG,
                      "cannot resume the data cursor: it was saved for %lld packed rows (plan %016llx), the data now "
                      "packs into %lld rows (plan %016llx); the dataset, tokenizer or packing options changed",
                      (long long)s->rows, (unsigned long long)s->plan_hash, (long long)b->plan->n_rows,
                      (unsigned long long)b->plan_hash);
    if (s->seed != b->o.seed)
        return FT_ERR(FT_E_ARG, "cannot resume the data cursor: it was saved with seed %llu, this run uses %llu",
                      (unsigned long long)s->seed, (unsigned long long)b->o.seed);
    if (s->epoch < 0 || s->index < 0 || s->index >= s->rows)
        return FT_ERR(FT_E_ARG, "invalid data cursor (epoch %lld, index %lld of %lld)", (long long)s->epoch,
                      (long long)s->index, (long long)s->rows);
    b->epoch = s->epoch;
    b->index = s->index;
    return FT_OK;
}

int64_t ft_batcher_batches_per_epoch(const ft_batcher *b) {
    return (b->plan->n_rows + b->o.batch_rows - 1) / b->o.batch_rows;
}

double ft_batcher_progress(const ft_batcher *b) {
    return (double)b->epoch + (double)b->index / (double)b->plan->n_rows;
}
