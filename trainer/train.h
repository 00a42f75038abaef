/* train.h: the optimizer-step loop shared by `ftune train` with flags and, later, recipes.
 *
 * One optimizer step = grad_accum micro-batches of micro_batch rows. The loss and the gradient
 * are normalized by the number of target tokens of the whole step (not averaged per
 * micro-batch), so unequal micro-batches weigh their tokens equally: the update equals that of
 * one big batch. */
#ifndef FT_TRAIN_H
#define FT_TRAIN_H

#include <stdint.h>

#include "optim/adamw.h"
#include "optim/schedule.h"
#include "trainer/model.h"
#include "trainer/token_file.h"

typedef struct ft_train_cfg {
    int64_t steps;
    int64_t micro_batch;
    int64_t grad_accum;
    int64_t max_len;          /* truncate sequences to this many tokens (0: no limit) */
    ft_schedule sched;
    ft_adamw_cfg opt;
    uint64_t seed;            /* dropout stream */
    const char *dump_grads;   /* safetensors path for the first step's LoRA gradients, or NULL */
} ft_train_cfg;

/* Per-step report. */
typedef struct ft_step_info {
    int64_t step;             /* 1-based */
    double loss;              /* mean token loss of the step */
    double lr;
    double grad_norm;         /* before clipping */
    int64_t targets;          /* target tokens in the step */
    double seconds;
} ft_step_info;

typedef ft_status (*ft_step_cb)(void *user, const ft_step_info *info);

/* Builds micro-batch `index` (0-based, global) from token sequences: rows are sequences
 * (index*B + b) mod n, right-padded with label -100. Buffers are sized [B*T]. */
typedef struct ft_seq_batcher {
    const ft_token_seqs *seqs;
    int64_t B, max_len, T_cap;
    int32_t *tokens, *labels;
} ft_seq_batcher;
ft_status ft_seq_batch(ft_seq_batcher *sb, int64_t index, ft_batch *out);
void ft_seq_batcher_free(ft_seq_batcher *sb);

/* Runs cfg->steps optimizer steps over token sequences. */
ft_status ft_train_tokens(ft_model *m, ft_lora *lora, const ft_token_seqs *seqs, const ft_train_cfg *cfg,
                          ft_step_cb cb, void *user);

#endif
