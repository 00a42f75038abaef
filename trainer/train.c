/* train.c: see train.h. */
#include "trainer/train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/mem.h"
#include "kernels/rng.h"

static double ft_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

ft_status ft_seq_batch(ft_seq_batcher *sb, int64_t index, ft_batch *out) {
    const ft_token_seqs *s = sb->seqs;
    int64_t T = 0;
    for (int64_t b = 0; b < sb->B; b++) {
        int64_t k = (index * sb->B + b) % s->n, len = s->start[k + 1] - s->start[k];
        if (sb->max_len > 0 && len > sb->max_len) len = sb->max_len;
        if (len > T) T = len;
    }
    if (T > sb->T_cap) {
        free(sb->tokens);
        free(sb->labels);
        sb->tokens = sb->labels = NULL;
        FT_TRY(ft_malloc((void **)&sb->tokens, (size_t)(sb->B * T) * 4, "batch tokens"));
        FT_TRY(ft_malloc((void **)&sb->labels, (size_t)(sb->B * T) * 4, "batch labels"));
        sb->T_cap = T;
    }
    for (int64_t b = 0; b < sb->B; b++) {
        int64_t k = (index * sb->B + b) % s->n, len = s->start[k + 1] - s->start[k];
        if (sb->max_len > 0 && len > sb->max_len) len = sb->max_len;
        const int32_t *ids = s->ids + s->start[k];
        for (int64_t t = 0; t < T; t++) {
            sb->tokens[b * T + t] = t < len ? ids[t] : 0;
            sb->labels[b * T + t] = t + 1 < len ? ids[t + 1] : -100;
        }
    }
    memset(out, 0, sizeof *out);
    out->B = sb->B, out->T = T, out->tokens = sb->tokens, out->labels = sb->labels;
    return FT_OK;
}

void ft_seq_batcher_free(ft_seq_batcher *sb) {
    free(sb->tokens);
    free(sb->labels);
    sb->tokens = sb->labels = NULL;
}

static int64_t ft_count_targets(const ft_batch *b) {
    int64_t n = 0;
    for (int64_t i = 0; i < b->B * b->T; i++) n += b->labels[i] >= 0;
    return n;
}

/* Adds the losses of micro-batches [first, first + n) from their slots to *loss and *count, in
 * micro-batch order, in double (as ft_model_step's callers always summed them). */
static ft_status ft_take_losses(ft_model *m, int64_t n, double *loss, int64_t *count) {
    float sc[2 * FT_MODEL_LOSS_SLOTS];
    FT_TRY(ft_model_read_losses(m, n, sc));
    for (int64_t i = 0; i < n; i++) {
        *loss += sc[2 * i];
        *count += (int64_t)llroundf(sc[2 * i + 1]);
    }
    return FT_OK;
}

ft_status ft_train_step(const ft_step_ctx *c, int64_t step, ft_microbatch_fn get, void *user,
                        ft_step_guard_fn guard, void *guard_user, ft_step_info *info) {
    ft_backend *be = ft_model_backend(c->m);
    const int64_t K = c->grad_accum;
    const double t0 = ft_now();
    memset(info, 0, sizeof *info);
    info->step = step + 1;
    /* the step's target count first: it normalizes every micro-batch's gradient */
    int64_t total = 0, tokens = 0;
    for (int64_t k = 0; k < K; k++) {
        ft_batch b;
        FT_TRY(get(user, k, &b));
        total += ft_count_targets(&b);
        tokens += b.B * b.T;
    }
    if (total == 0)
        return FT_ERR(FT_E_FORMAT, "step %lld has no target tokens (sequences shorter than 2 tokens?)",
                      (long long)step + 1);
    FT_TRY(ft_backend_prefetch(be, c->lora->params, c->lora->n_params * 4)); /* paged master weights */
    FT_TRY(ft_lora_zero_grads(c->lora, be));
    /* Nothing below waits for the device until the losses and the norm are read for the report
     * (or for the guard): each micro-batch leaves its loss in its own slot. */
    double loss = 0;
    int64_t n = 0, pending = 0;
    for (int64_t k = 0; k < K; k++) {
        ft_batch b;
        FT_TRY(get(user, k, &b));
        if (pending == FT_MODEL_LOSS_SLOTS) { /* more micro-batches than slots: empty them */
            FT_TRY(ft_take_losses(c->m, pending, &loss, &n));
            pending = 0;
        }
        uint64_t seed = ft_mix64(c->seed ^ ft_mix64((uint64_t)(step * K + k)));
        if (k > 0) ft_model_reuse_dora_norms(c->m); /* DoRA: the adapter is the first micro-batch's */
        FT_TRY(ft_model_step_async(c->m, &b, (float)(1.0 / (double)total), seed, pending++));
    }
    if (step == 0 && c->dump_grads) FT_TRY(ft_lora_save(c->lora, be, c->dump_grads, 'g'));
    info->targets = total;
    info->tokens = tokens;
    info->lr = ft_sched_lr(c->sched, step);
    FT_TRY(ft_grad_norm_start(be, c->opt->norm_acc, c->lora->grads, c->lora->n_params));
    float sumsq = 0;
    if (guard) { /* the guard decides on the host: read loss and norm first */
        FT_TRY(ft_take_losses(c->m, pending, &loss, &n));
        FT_TRY(ft_backend_download(be, &sumsq, c->opt->norm_acc, 4));
        info->loss = loss / (double)total;
        info->grad_norm = sqrt((double)sumsq);
        if (!guard(guard_user, info)) {
            info->skipped = 1;
        } else {
            FT_TRY(ft_adamw_step_dev(c->opt, be, c->lora->params, c->lora->grads, info->lr));
        }
    } else { /* the update first, then one read for the report */
        FT_TRY(ft_adamw_step_dev(c->opt, be, c->lora->params, c->lora->grads, info->lr));
        FT_TRY(ft_take_losses(c->m, pending, &loss, &n));
        FT_TRY(ft_backend_download(be, &sumsq, c->opt->norm_acc, 4));
        info->loss = loss / (double)total;
        info->grad_norm = sqrt((double)sumsq);
    }
    FT_TRY(ft_backend_sync(be));
    info->seconds = ft_now() - t0;
    return FT_OK;
}

typedef struct ft_seq_source {
    ft_seq_batcher *sb;
    int64_t base;             /* step * K */
} ft_seq_source;

static ft_status ft_seq_get(void *user, int64_t k, ft_batch *out) {
    ft_seq_source *s = user;
    return ft_seq_batch(s->sb, s->base + k, out);
}

ft_status ft_train_tokens(ft_model *m, ft_lora *lora, const ft_token_seqs *seqs, const ft_train_cfg *cfg,
                          ft_step_cb cb, void *user) {
    ft_backend *be = ft_model_backend(m);
    ft_adamw *opt = NULL;
    ft_seq_batcher sb = {.seqs = seqs, .B = cfg->micro_batch, .max_len = cfg->max_len};
    ft_status st;
    FT_TRY(ft_adamw_create(&opt, be, lora->n_params, &cfg->opt));
    ft_model_set_lora(m, lora);
    ft_step_ctx ctx = {.m = m, .lora = lora, .opt = opt, .sched = &cfg->sched, .grad_accum = cfg->grad_accum,
                       .seed = cfg->seed, .dump_grads = cfg->dump_grads};
    for (int64_t step = 0; step < cfg->steps; step++) {
        ft_seq_source src = {&sb, step * cfg->grad_accum};
        ft_step_info info;
        FT_CHECK_GOTO(st, ft_train_step(&ctx, step, ft_seq_get, &src, NULL, NULL, &info), done);
        if (cb) FT_CHECK_GOTO(st, cb(user, &info), done);
    }
    st = FT_OK;
done:
    ft_seq_batcher_free(&sb);
    ft_adamw_free(opt, be);
    return st;
}
