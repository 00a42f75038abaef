/* batcher.h: a resumable cursor over packed rows that yields micro-batches of B rows.
 *
 * Training mode walks the rows of epoch e in the order of a permutation determined by
 * (seed, e) alone, and runs on into epoch e + 1 without a gap, so every batch is full (a batch
 * may hold the last rows of one epoch and the first of the next; batch.epoch is the epoch of its
 * first row). Evaluation mode walks the rows once in plan order; the last batch is padded with
 * empty rows (labels -100) and then batches come back with n_rows == 0.
 *
 * The whole position is the small ft_batcher_state (seed, epoch, index): a checkpoint stores it,
 * and a run restored from it yields exactly the batches the interrupted run would have yielded
 * next, provided the plan is the same; the state carries the row count and the plan's hash so a
 * different dataset or packing is refused instead of silently resuming elsewhere. */
#ifndef FT_BATCHER_H
#define FT_BATCHER_H

#include <stdint.h>

#include "data/pack.h"
#include "kernels/status.h"

typedef enum ft_batch_mode { FT_BATCH_TRAIN = 0, FT_BATCH_EVAL } ft_batch_mode;

typedef struct ft_batcher_opts {
    int64_t batch_rows;  /* B >= 1 */
    ft_batch_mode mode;
    uint64_t seed;       /* row order per epoch (training) */
} ft_batcher_opts;

typedef struct ft_batcher_state {
    uint64_t seed;
    int64_t epoch;       /* epoch of the next row (0-based) */
    int64_t index;       /* position of the next row in that epoch's order, 0 <= index < rows */
    int64_t rows;        /* rows per epoch of the plan it was taken from */
    uint64_t plan_hash;  /* ft_pack_hash of that plan */
} ft_batcher_state;

/* One micro-batch; all arrays [B * T] (N = B*T tokens, row-major by row). */
typedef struct ft_row_batch {
    int64_t B, T;
    int32_t *tokens;
    int32_t *labels;     /* next-token targets, -100 where ignored */
    int32_t *positions;  /* RoPE positions, restarting per example */
    int32_t *doc_start;  /* attention: query t sees keys doc_start[t] .. t of its row */
    int64_t n_rows;      /* rows holding data: B, or fewer for the last eval batch, 0 at the end */
    int64_t n_targets;   /* labels != -100 */
    int64_t epoch;       /* epoch of the first row */
} ft_row_batch;

typedef struct ft_batcher ft_batcher;

/* plan and ex must outlive the batcher. */
ft_status ft_batcher_create(ft_batcher **out, const ft_pack *plan, const ft_examples *ex, const ft_batcher_opts *o);
void ft_batcher_free(ft_batcher *b);
/* Allocates a batch for this batcher's B and T (release with ft_row_batch_free). */
ft_status ft_row_batch_alloc(const ft_batcher *b, ft_row_batch *batch);
void ft_row_batch_free(ft_row_batch *batch);
/* Fills the next micro-batch and advances. */
ft_status ft_batcher_next(ft_batcher *b, ft_row_batch *batch);

void ft_batcher_get_state(const ft_batcher *b, ft_batcher_state *s);
/* Moves to a saved position; FT_E_ARG when the state belongs to another plan or seed. */
ft_status ft_batcher_set_state(ft_batcher *b, const ft_batcher_state *s);
/* ceil(rows / B): optimizer micro-batches per epoch. */
int64_t ft_batcher_batches_per_epoch(const ft_batcher *b);
/* Epochs done, fractional (epoch + index / rows). */
double ft_batcher_progress(const ft_batcher *b);

#endif
