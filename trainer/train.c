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

ft_status ft_train_tokens(ft_model *m, ft_lora *lora, const ft_token_seqs *seqs, const ft_train_cfg *cfg,
                          ft_step_cb cb, void *user) {
    ft_backend *be = ft_model_backend(m);
    ft_adamw *opt = NULL;
    ft_seq_batcher sb = {.seqs = seqs, .B = cfg->micro_batch, .max_len = cfg->max_len};
    ft_status st;
    FT_TRY(ft_adamw_create(&opt, be, lora->n_params, &cfg->opt));
    ft_model_set_lora(m, lora);
    int64_t K = cfg->grad_accum;
    for (int64_t step = 0; step < cfg->steps; step++) {
        double t0 = ft_now();
        /* the step's target count first: it normalizes every micro-batch's gradient */
        int64_t total = 0;
        for (int64_t k = 0; k < K; k++) {
            ft_batch b;
            FT_CHECK_GOTO(st, ft_seq_batch(&sb, step * K + k, &b), done);
            total += ft_count_targets(&b);
        }
        if (total == 0) {
            st = FT_ERR(FT_E_FORMAT, "step %lld has no target tokens (sequences shorter than 2 tokens?)",
                        (long long)step + 1);
            goto done;
        }
        FT_CHECK_GOTO(st, ft_lora_zero_grads(lora, be), done);
        double loss = 0;
        int64_t n = 0;
        for (int64_t k = 0; k < K; k++) {
            ft_batch b;
            FT_CHECK_GOTO(st, ft_seq_batch(&sb, step * K + k, &b), done);
            uint64_t seed = ft_mix64(cfg->seed ^ ft_mix64((uint64_t)(step * K + k)));
            FT_CHECK_GOTO(st, ft_model_step(m, &b, (float)(1.0 / (double)total), seed, &loss, &n), done);
        }
        if (step == 0 && cfg->dump_grads) FT_CHECK_GOTO(st, ft_lora_save(lora, be, cfg->dump_grads, 'g'), done);
        ft_step_info info = {.step = step + 1, .loss = loss / (double)total, .targets = total};
        FT_CHECK_GOTO(st, ft_grad_norm(be, opt->norm_acc, lora->grads, lora->n_params, &info.grad_norm), done);
        info.lr = ft_sched_lr(&cfg->sched, step);
        FT_CHECK_GOTO(st, ft_adamw_step(opt, be, lora->params, lora->grads, info.lr, info.grad_norm), done);
        FT_CHECK_GOTO(st, ft_backend_sync(be), done);
        info.seconds = ft_now() - t0;
        if (cb) FT_CHECK_GOTO(st, cb(user, &info), done);
    }
    st = FT_OK;
done:
    ft_seq_batcher_free(&sb);
    ft_adamw_free(opt, be);
    return st;
}
