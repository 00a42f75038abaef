/* run_ckpt.c: a run's checkpoints: the state of run_impl.h to and from checkpoint.h files,
 * choosing the checkpoint to resume from, and rotation. */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "kernels/log.h"
#include "kernels/mem.h"
#include "trainer/checkpoint.h"
#include "trainer/run_impl.h"

static const char *ft_base(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

ft_status ft_run_check_disk(const ft_run_state *R) {
    const ft_plan *p = R->plan;
    int64_t free_bytes = p->disk_free;
    int64_t hooked = 0;
    int set = 0; /* test hook (docs/design.md): the free bytes the check sees, as a nearly full disk would show */
    FT_TRY(ft_run_hook("FT_FAULT_DISK_FREE", 0, "the disk check sees that many bytes free", &hooked, &set));
    if (set) free_bytes = hooked;
    if (free_bytes < 0) return FT_OK; /* the filesystem could not be asked */
    int64_t *steps = NULL, n = 0;
    if (ft_ckpt_list(R->ckpt_dir, &steps, &n) != FT_OK) ft_error_clear(), n = 0;
    free(steps);
    const int64_t more = p->disk_ckpts - n > 1 ? p->disk_ckpts - n : 1; /* a resumed run has some on disk already */
    const int64_t need = more * p->disk_ckpt + p->disk_adapter + p->disk_merged;
    if (need <= free_bytes) return FT_OK;
    char b_need[48], b_free[48], b_ck[48], b_ad[48], b_mg[96] = "";
    ft_plan_format_bytes(need, b_need, sizeof b_need);
    ft_plan_format_bytes(free_bytes, b_free, sizeof b_free);
    ft_plan_format_bytes(p->disk_ckpt, b_ck, sizeof b_ck);
    ft_plan_format_bytes(p->disk_adapter, b_ad, sizeof b_ad);
    if (p->disk_merged > 0) {
        char m[48];
        ft_plan_format_bytes(p->disk_merged, m, sizeof m);
        snprintf(b_mg, sizeof b_mg, ", the merged model %s", m);
    }
    return FT_ERR(FT_E_IO, "%s: the run will write up to %s more (%lld checkpoints of up to %s, the adapters %s%s) and "
                           "its filesystem has %s free: free space, or lower checkpoint.keep%s, then start it again "
                           "(`ftune plan` shows the disk a recipe needs)",
                  R->dir, b_need, (long long)more, b_ck, b_ad, b_mg, b_free,
                  p->disk_merged > 0 ? " or set export.merged: none (`ftune merge` makes it later)" : "");
}

ft_status ft_run_save_checkpoint(ft_run_state *R) {
    const double t0 = ft_run_now();
    const int64_t n = R->lora->n_params;
    float *host = NULL;
    FT_TRY(ft_malloc((void **)&host, (size_t)(3 * n > 0 ? 3 * n : 1) * sizeof *host, "checkpoint staging"));
    ft_status st;
    FT_CHECK_GOTO(st, ft_backend_download(R->be, host, R->lora->params, n * 4), done);
    FT_CHECK_GOTO(st, ft_backend_download(R->be, host + n, R->opt->m, 2 * n * 4), done); /* m then v */
    ft_ckpt_state s = {.step = R->step, .steps_total = R->total, .seed = (uint64_t)R->r->training.seed,
                       .n_params = n, .lora_r = R->lora->cfg.r, .lora_layers = R->lora->n_layers,
                       .lora_targets = R->lora->cfg.targets, .adamw_t = R->opt->t, .guard = R->guard, .val = R->val,
                       .elapsed_s = ft_run_elapsed(R), .tokens_seen = R->tokens_seen};
    ft_dataset_get_cursor(R->ds, &s.cursor);
    s.n_tokens = R->lora->tok.k; /* ft_lora_create keeps it within FT_CKPT_MAX_TOKENS */
    s.dora = R->lora->cfg.dora;
    if (s.n_tokens) memcpy(s.tokens, R->lora->tok.ids, (size_t)s.n_tokens * sizeof *s.tokens);
    char path[FT_PATH_MAX + 32];
    ft_ckpt_path(path, sizeof path, R->ckpt_dir, R->step);
    st = ft_ckpt_write(path, &s, host, host + n, host + 2 * n);
    if (st != FT_OK) {
        char msg[1024], prev[FT_PATH_MAX + 128];
        snprintf(msg, sizeof msg, "%s", ft_error_msg());
        if (R->last_ckpt_step >= 0)
            snprintf(prev, sizeof prev, "the previous checkpoint %s (step %lld) is intact", R->last_ckpt_path,
                     (long long)R->last_ckpt_step);
        else
            snprintf(prev, sizeof prev, "there is no earlier checkpoint");
        ft_progress_clear(&R->prog);
        st = FT_ERR(st, "checkpoint at step %lld failed: %s; nothing was left half-written and %s; free disk space "
                        "or fix the directory, then resume with: ftune train %s --resume",
                    (long long)R->step, msg, prev, R->o->recipe_path ? R->o->recipe_path : "RECIPE");
        goto done;
    }
    snprintf(R->last_ckpt_path, sizeof R->last_ckpt_path, "%s", path);
    R->last_ckpt_step = R->step;
    R->last_ckpt_time = ft_run_now();
    FT_CHECK_GOTO(st, ft_ckpt_prune(R->ckpt_dir, R->r->checkpoint.keep), done);
    ft_progress_clear(&R->prog);
    struct stat sb;
    const double secs = ft_run_now() - t0;
    if (secs > R->ckpt_s_max) R->ckpt_s_max = secs; /* training.max_hours: the stop's own checkpoint */
    ft_info("checkpoint: %s (%.1f MB, %.2f s)", path, stat(path, &sb) == 0 ? (double)sb.st_size / 1048576.0 : 0.0,
            secs);
done:
    ft_free(host);
    return st;
}

/* Moves a checkpoint file out of the run's line: "<path><suffix>". */
static void ft_set_aside(const char *path, const char *suffix) {
    char to[FT_PATH_MAX + 32];
    snprintf(to, sizeof to, "%s%s", path, suffix);
    if (rename(path, to) == 0) ft_warn("moved %s aside to %s", path, ft_base(to));
    else ft_warn("cannot rename %s: %s", path, strerror(errno));
}

/* Loads the first intact checkpoint of cand[0..n) (newest first); falls back only when asked. */
static ft_status ft_pick(ft_run_state *R, char (*cand)[FT_PATH_MAX + 32], int64_t n, ft_ckpt_state *s, float **data,
                         int64_t *used) {
    for (int64_t i = 0; i < n; i++) {
        ft_status st = ft_ckpt_read(cand[i], s, data);
        if (st == FT_OK) {
            *used = i;
            return FT_OK;
        }
        if (st != FT_E_FORMAT) return st;
        if (!R->o->resume_fallback) {
            char msg[1024];
            snprintf(msg, sizeof msg, "%s", ft_error_msg());
            if (i + 1 < n)
                return FT_ERR(st, "%s; run again with --resume-fallback to resume from the previous checkpoint (%s)",
                              msg, ft_base(cand[i + 1]));
            return st;
        }
        ft_warn("%s; falling back to %s", ft_error_msg(), i + 1 < n ? ft_base(cand[i + 1]) : "(none left)");
        ft_error_clear();
        ft_set_aside(cand[i], ".corrupt");
    }
    return FT_ERR(FT_E_FORMAT, "%s: no intact checkpoint left to resume from", R->ckpt_dir);
}

/* The learning rate the run's rollbacks left: training.lr x rollback_lr_factor^rollbacks. */
static void ft_run_rollback_lr(ft_run_state *R) {
    R->sched.lr = R->r->training.lr * pow(R->r->training.rollback_lr_factor, (double)R->guard.rollbacks);
}

ft_status ft_run_resume(ft_run_state *R) {
    char (*cand)[FT_PATH_MAX + 32] = NULL;
    int64_t *steps = NULL, n = 0, used = 0;
    float *data = NULL;
    ft_ckpt_state s;
    ft_status st;
    const char *recipe = R->o->recipe_path ? R->o->recipe_path : "RECIPE";
    FT_CHECK_GOTO(st, ft_ckpt_list(R->ckpt_dir, &steps, &n), done);
    if (strcmp(R->o->resume, "latest") == 0) {
        if (n == 0) {
            st = FT_ERR(FT_E_ARG, "%s: no checkpoint to resume from (run 'ftune train %s' without --resume to start)",
                        R->ckpt_dir, recipe);
            goto done;
        }
        FT_CHECK_GOTO(st, ft_malloc((void **)&cand, (size_t)n * sizeof *cand, "checkpoint list"), done);
        for (int64_t i = 0; i < n; i++) ft_ckpt_path(cand[i], sizeof cand[i], R->ckpt_dir, steps[n - 1 - i]);
        FT_CHECK_GOTO(st, ft_pick(R, cand, n, &s, &data, &used), done);
    } else {
        FT_CHECK_GOTO(st, ft_malloc((void **)&cand, sizeof *cand, "checkpoint list"), done);
        snprintf(cand[0], sizeof cand[0], "%s", R->o->resume);
        FT_CHECK_GOTO(st, ft_ckpt_read(cand[0], &s, &data), done);
    }
    const char *path = cand[used];
    const ft_lora *l = R->lora;
    if (s.n_tokens != l->tok.k ||
        (s.n_tokens && memcmp(s.tokens, l->tok.ids, (size_t)s.n_tokens * sizeof *s.tokens) != 0)) {
        char had[160], has[160];
        size_t o = 0;
        had[0] = has[0] = 0;
        for (int64_t i = 0; i < s.n_tokens && i < 8 && o + 12 < sizeof had; i++)
            o += (size_t)snprintf(had + o, sizeof had - o, "%s%d", i ? ", " : "", s.tokens[i]);
        o = 0;
        for (int64_t i = 0; i < l->tok.k && i < 8 && o + 12 < sizeof has; i++)
            o += (size_t)snprintf(has + o, sizeof has - o, "%s%d", i ? ", " : "", l->tok.ids[i]);
        st = FT_ERR(FT_E_ARG, "%s: the checkpoint trains the rows of %lld tokens (lora.trainable_tokens: %s%s), this "
                              "recipe those of %lld (%s%s): resume with the recipe the run was started with",
                    path, (long long)s.n_tokens, had, s.n_tokens > 8 ? ", ..." : "", (long long)l->tok.k, has,
                    l->tok.k > 8 ? ", ..." : "");
        goto done;
    }
    if (s.dora != l->cfg.dora) {
        st = FT_ERR(FT_E_ARG, "%s: the checkpoint's adapter is %s, this recipe's is %s (lora.dora): resume with the "
                              "recipe the run was started with", path, s.dora ? "DoRA" : "plain LoRA",
                    l->cfg.dora ? "DoRA" : "plain LoRA");
        goto done;
    }
    if (s.n_params != l->n_params || s.lora_r != l->cfg.r || s.lora_layers != l->n_layers ||
        s.lora_targets != l->cfg.targets) {
        st = FT_ERR(FT_E_ARG,
                    "%s: the checkpoint holds an adapter of %lld parameters (r=%lld, target mask 0x%x), this recipe "
                    "makes %lld (r=%lld, target mask 0x%x): resume with the recipe the run was started with",
                    path, (long long)s.n_params, (long long)s.lora_r, s.lora_targets, (long long)l->n_params,
                    (long long)l->cfg.r, l->cfg.targets);
        goto done;
    }
    if (s.seed != (uint64_t)R->r->training.seed) {
        st = FT_ERR(FT_E_ARG, "%s: the checkpoint was made with training.seed %llu, the recipe has %lld", path,
                    (unsigned long long)s.seed, (long long)R->r->training.seed);
        goto done;
    }
    st = ft_dataset_set_cursor(R->ds, &s.cursor);
    if (st != FT_OK) {
        st = ft_error_wrap(st, "%s", path);
        goto done;
    }
    const int64_t np = l->n_params;
    FT_CHECK_GOTO(st, ft_backend_upload(R->be, R->lora->params, data, np * 4), done);
    R->lora->mag_set = 1; /* DoRA: the checkpoint's magnitudes, not the norms a fresh adapter starts from */
    FT_CHECK_GOTO(st, ft_backend_upload(R->be, R->opt->m, data + np, 2 * np * 4), done);
    R->opt->t = s.adamw_t;
    R->guard = s.guard;
    ft_run_rollback_lr(R);
    if (s.guard.rollbacks > 0)
        ft_info("resume: after %lld rollback%s the learning rate is %g (training.lr %g x %g^%lld)",
                (long long)s.guard.rollbacks, s.guard.rollbacks == 1 ? "" : "s", R->sched.lr, R->r->training.lr,
                R->r->training.rollback_lr_factor, (long long)s.guard.rollbacks);
    R->val = s.val;
    R->step = s.step;
    R->elapsed_base = s.elapsed_s;
    R->tokens_seen = s.tokens_seen;
    R->last_ckpt_step = s.step;
    snprintf(R->last_ckpt_path, sizeof R->last_ckpt_path, "%s", path);
    if (s.steps_total != R->total)
        ft_info("resume: the run was planned for %lld steps, the recipe now gives %lld; the schedule follows the new "
                "total", (long long)s.steps_total, (long long)R->total);
    /* checkpoints past this one belong to an abandoned future of the run */
    for (int64_t i = 0; i < n; i++) {
        if (steps[i] <= s.step) continue;
        char p[FT_PATH_MAX + 32];
        ft_ckpt_path(p, sizeof p, R->ckpt_dir, steps[i]);
        struct stat sb;
        if (stat(p, &sb) == 0) ft_set_aside(p, ".superseded");
    }
    ft_info("resumed from %s at step %lld of %lld (%.1f s of training so far)", path, (long long)s.step,
            (long long)R->total, s.elapsed_s);
    st = FT_OK;
done:
    free(steps);
    ft_free(cand);
    ft_free(data);
    return st;
}

ft_status ft_run_rollback(ft_run_state *R) {
    char path[FT_PATH_MAX + 32];
    ft_ckpt_path(path, sizeof path, R->ckpt_dir, R->rollback_step);
    const int64_t n = R->guard.rollbacks + 1, diverged_at = R->step;
    ft_run_opts ro = *R->o; /* the resume of that checkpoint, as `--resume PATH` would do it */
    ro.resume = path, ro.resume_fallback = 0;
    const ft_run_opts *saved = R->o;
    R->o = &ro;
    ft_status st = ft_run_resume(R);
    R->o = saved;
    FT_TRY(st);
    R->rollback_step = -1;
    R->guard.rollbacks = n;
    ft_run_rollback_lr(R);
    R->last_eval_step = -1;
    ft_run_check_best(R);
    ft_metrics_close(R->metrics);
    R->metrics = NULL;
    FT_TRY(ft_metrics_open_tb(&R->metrics, R->metrics_path, ft_run_tb_dir(R), R->step, n - 1));
    ft_warn("rollback %lld of %lld: training again from step %lld with the learning rate %g (training.lr %g x %g^%lld)",
            (long long)n, (long long)R->r->training.max_rollbacks, (long long)R->step, R->sched.lr, R->r->training.lr,
            R->r->training.rollback_lr_factor, (long long)n);
    /* the line before the checkpoint: a kill between the two resumes from the checkpoint before the
     * rollback, whose count drops the line (ft_metrics_open_at), and the repeated rollback writes it
     * again, as an uninterrupted run has it once */
    if (ft_metrics_rollback_line(R->metrics, R->step, diverged_at, n, R->sched.lr) != FT_OK) {
        ft_warn("%s", ft_error_msg());
        ft_error_clear();
    }
    int64_t kill_at = 0; /* test hook (run_guard.sh): a crash between the line and the checkpoint */
    int armed = 0;
    FT_TRY(ft_run_hook("FT_FAULT_KILL_AT_ROLLBACK", 1, "SIGKILL between that rollback's metrics line and its checkpoint",
                       &kill_at, &armed));
    if (armed && kill_at == n) raise(SIGKILL);
    return ft_run_save_checkpoint(R);
}

_Static_assert(FT_LORA_MAX_TOKENS <= FT_CKPT_MAX_TOKENS, "a checkpoint records every trainable token of an adapter");
