/* train.h: the optimizer step shared by `ftune train` with flags (ft_train_tokens, below) and
 * with a recipe (trainer/run.c): both call ft_train_step, so there is one implementation of it.
 *
 * One optimizer step = grad_accum micro-batches of micro_batch rows. The loss and the gradient
 * are normalized by the number of target tokens of the whole step (not averaged per
 * micro-batch), so unequal micro-batches weigh their tokens equally: the update equals that of
 * one big batch. The dropout seed of micro-batch k of step s is mix(seed, s*K + k): a pure
 * function of the step, so a resumed run draws the same masks. The callers differ only in where
 * micro-batches come from (token-file sequences here, the resumable batcher for recipes) and in
 * whether a guard may veto the update. */
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
    int64_t tokens;           /* input tokens in the step (B*T per micro-batch, padding included) */
    double seconds;
    int skipped;              /* the guard vetoed the update (parameters and optimizer unchanged) */
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

/* Fills micro-batch k (0 <= k < K) of the current step. It may be called twice per k within a
 * step (once to count the step's targets, once to run it) and must give the same rows each time;
 * *out stays valid until the next call. */
typedef ft_status (*ft_microbatch_fn)(void *user, int64_t k, ft_batch *out);
/* Called after forward+backward with loss, grad_norm and lr filled in: returns 1 to apply the
 * AdamW update, 0 to skip it (the step still counts; parameters and moments stay as they were). */
typedef int (*ft_step_guard_fn)(void *user, const ft_step_info *info);

typedef struct ft_step_ctx {
    ft_model *m;
    ft_lora *lora;            /* attached to m */
    ft_adamw *opt;
    const ft_schedule *sched;
    int64_t grad_accum;       /* K */
    uint64_t seed;            /* dropout stream */
    const char *dump_grads;   /* safetensors path for step 0's gradients, or NULL */
} ft_step_ctx;

/* One optimizer step (0-based `step`): count the step's targets, zero the gradients, forward and
 * backward each micro-batch scaled by 1/targets, take the global grad norm, ask the guard (NULL:
 * always apply), then AdamW at the schedule's lr. *info is filled (step is reported 1-based). */
ft_status ft_train_step(const ft_step_ctx *c, int64_t step, ft_microbatch_fn get, void *user,
                        ft_step_guard_fn guard, void *guard_user, ft_step_info *info);

/* Runs cfg->steps optimizer steps over token sequences. */
ft_status ft_train_tokens(ft_model *m, ft_lora *lora, const ft_token_seqs *seqs, const ft_train_cfg *cfg,
                          ft_step_cb cb, void *user);

#endif
