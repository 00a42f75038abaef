/* cmd_status.c: `ftune status RUN_DIR`: where a run stands, from its directory alone, while it
 * runs (from another terminal, without touching it) or after: whether a process holds it, the
 * step against the recipe's, the recent loss and tokens/s, the estimated time left, the
 * validation losses and best/, the checkpoints and final/. It reads recipe.yaml, metrics.jsonl,
 * checkpoints/, best/ftune-best.json and final/ (trainer/run.h's layout) and writes nothing. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kernels/fileio.h"
#include "kernels/json.h"
#include "kernels/log.h"
#include "trainer/checkpoint.h"
#include "trainer/cli.h"
#include "trainer/commands.h"
#include "trainer/progress.h"
#include "trainer/recipe.h"

enum { FT_ST_RECENT = 20 }; /* steps the recent loss is taken over */

typedef struct ft_run_view {
    int64_t steps, last_step, skipped_spike, skipped_nonfinite, tokens, evals;
    double elapsed_s, last_loss, recent_loss[FT_ST_RECENT];
    int64_t n_recent;
    double last_val, best_val;
    int64_t last_val_step, best_val_step;
    int64_t bad_lines;
    int64_t rollbacks, rb_step, rb_from; /* training.max_rollbacks: how many, the last one's steps and rate */
    double rb_lr;
} ft_run_view;

/* Whether a process holds DIR/.lock (ft_run takes it for the whole run): a shared lock, tried and
 * let go at once, fails only then. 1 running, 0 not, -1 unknown (no lock file). */
/* While the run runs under training.max_hours (trainer/run_limit.c's job.json): by when this job
 * stops, and whether that is before the run's end (time_left seconds from now; 0: unknown). */
static void ft_status_job(const char *dir, double time_left) {
    char path[4200], *text = NULL;
    int64_t len = 0;
    snprintf(path, sizeof path, "%s/job.json", dir);
    if (ft_read_file(path, 1 << 12, &text, &len, NULL) != FT_OK) {
        ft_error_clear();
        return;
    }
    cJSON *j = cJSON_Parse(text);
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(j, "started"), *mh = cJSON_GetObjectItemCaseSensitive(j, "max_hours");
    if (cJSON_IsNumber(st) && cJSON_IsNumber(mh) && mh->valuedouble > 0) {
        const time_t start = (time_t)st->valuedouble, end = start + (time_t)(mh->valuedouble * 3600.0);
        struct tm a, b;
        char s1[32], s2[32];
        localtime_r(&start, &a), localtime_r(&end, &b);
        strftime(s1, sizeof s1, "%a %H:%M", &a);
        strftime(s2, sizeof s2, "%a %H:%M", &b);
        const double left = difftime(end, time(NULL));
        printf("job limit:    this job (started %s) stops with a checkpoint by %s, training.max_hours %g%s\n", s1, s2,
               mh->valuedouble,
               time_left > 0 && left < time_left ? ": before the run's end (`ftune train RECIPE --resume auto` goes on)"
                                                 : "");
    }
    cJSON_Delete(j);
    free(text);
}

static int ft_status_running(const char *dir) {
    char path[4200];
    snprintf(path, sizeof path, "%s/.lock", dir);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    int held = flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
    close(fd); /* releases the shared lock, if taken */
    return held;
}

static void ft_view_line(ft_run_view *v, const char *line) {
    cJSON *j = cJSON_Parse(line);
    const cJSON *type = j ? cJSON_GetObjectItemCaseSensitive(j, "type") : NULL;
    const cJSON *step = j ? cJSON_GetObjectItemCaseSensitive(j, "step") : NULL;
    if (!cJSON_IsString(type) || !cJSON_IsNumber(step)) {
        v->bad_lines++; /* a torn last line of a killed run, most often */
        cJSON_Delete(j);
        return;
    }
    const int64_t s = (int64_t)step->valuedouble;
    if (strcmp(type->valuestring, "train") == 0) {
        const cJSON *loss = cJSON_GetObjectItemCaseSensitive(j, "loss");
        const cJSON *skip = cJSON_GetObjectItemCaseSensitive(j, "skipped");
        const cJSON *tok = cJSON_GetObjectItemCaseSensitive(j, "tokens");
        const cJSON *wall = cJSON_GetObjectItemCaseSensitive(j, "wall");
        const cJSON *el = wall ? cJSON_GetObjectItemCaseSensitive(wall, "elapsed_s") : NULL;
        v->steps++, v->last_step = s;
        if (cJSON_IsNumber(tok)) v->tokens += (int64_t)tok->valuedouble;
        if (cJSON_IsNumber(el)) v->elapsed_s = el->valuedouble;
        if (cJSON_IsString(skip)) {
            if (strcmp(skip->valuestring, "spike") == 0) v->skipped_spike++;
            else v->skipped_nonfinite++;
        } else if (cJSON_IsNumber(loss)) {
            v->last_loss = loss->valuedouble;
            v->recent_loss[v->n_recent++ % FT_ST_RECENT] = loss->valuedouble;
        }
    } else if (strcmp(type->valuestring, "rollback") == 0) {
        const cJSON *from = cJSON_GetObjectItemCaseSensitive(j, "diverged_at");
        const cJSON *lr = cJSON_GetObjectItemCaseSensitive(j, "lr");
        const cJSON *nth = cJSON_GetObjectItemCaseSensitive(j, "rollback");
        /* the line's own count: a later rollback to an earlier checkpoint cut the lines of the
         * ones before it out of metrics.jsonl, so counting lines would undercount */
        v->rollbacks = cJSON_IsNumber(nth) && nth->valuedouble >= 1 ? (int64_t)nth->valuedouble : v->rollbacks + 1;
        v->rb_step = s;
        v->rb_from = cJSON_IsNumber(from) ? (int64_t)from->valuedouble : -1;
        v->rb_lr = cJSON_IsNumber(lr) ? lr->valuedouble : NAN;
    } else if (strcmp(type->valuestring, "eval") == 0) {
        const cJSON *vl = cJSON_GetObjectItemCaseSensitive(j, "val_loss");
        if (cJSON_IsNumber(vl)) {
            v->evals++;
            v->last_val = vl->valuedouble, v->last_val_step = s;
            if (!(vl->valuedouble >= v->best_val)) v->best_val = vl->valuedouble, v->best_val_step = s;
        }
    }
    cJSON_Delete(j);
}

static double ft_mean(const double *x, int64_t n) {
    if (n > FT_ST_RECENT) n = FT_ST_RECENT;
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += x[i];
    return n > 0 ? s / (double)n : NAN;
}

static const char *ft_age(const char *path, char *buf, size_t cap) {
    struct stat sb;
    if (stat(path, &sb) != 0) return "";
    char t[32];
    ft_format_duration(t, sizeof t, difftime(time(NULL), sb.st_mtime));
    snprintf(buf, cap, "written %s ago", t);
    return buf;
}

ft_status ft_cmd_status(int argc, char **argv) {
    ft_cli cli = {.command = "status", .positional = "RUN_DIR",
                  .summary = "Where a training run stands, from its directory (while it runs, or after)."};
    ft_status st = ft_cli_parse(&cli, argc, argv);
    ft_recipe r = {0};
    FILE *f = NULL;
    char *line = NULL;
    int64_t *steps = NULL, n_ck = 0;
    if (st != FT_OK) goto done;
    if (cli.help) {
        ft_cli_usage(&cli);
        goto done;
    }
    if (cli.npos != 1) {
        st = FT_ERR(FT_E_ARG, "status: expected one RUN_DIR (see 'ftune status --help')");
        goto done;
    }
    const char *dir = cli.pos[0];
    char path[4200], age[64];
    snprintf(path, sizeof path, "%s/recipe.yaml", dir);
    struct stat sb;
    if (stat(path, &sb) != 0) {
        st = FT_ERR(FT_E_ARG, "%s: not a run directory (no recipe.yaml: `ftune train` writes one when it starts)", dir);
        goto done;
    }
    FT_CHECK_GOTO(st, ft_recipe_load(&r, path, NULL, 0), done);

    ft_run_view v = {.last_loss = NAN, .last_val = NAN, .best_val = NAN, .last_val_step = -1, .best_val_step = -1};
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    f = fopen(path, "rb");
    if (f) {
        size_t cap = 0;
        while (getline(&line, &cap, f) > 0) ft_view_line(&v, line);
    }
    const int running = ft_status_running(dir);
    const int64_t total = r.training.steps;
    char b1[32], b2[32], fin[4200];
    snprintf(fin, sizeof fin, "%s/final/adapter_model.safetensors", dir);
    const int final = stat(fin, &sb) == 0;
    /* how it ended, as the run recorded it (trainer/run.c ft_run_outcome); none after a SIGKILL */
    char said[1400] = "", *oj = NULL;
    int64_t olen = 0;
    snprintf(path, sizeof path, "%s/outcome.json", dir);
    cJSON *o = running <= 0 && ft_read_file(path, 1 << 16, &oj, &olen, NULL) == FT_OK ? cJSON_Parse(oj) : NULL;
    const cJSON *ow = o ? cJSON_GetObjectItemCaseSensitive(o, "outcome") : NULL;
    const cJSON *om = o ? cJSON_GetObjectItemCaseSensitive(o, "message") : NULL;
    if (cJSON_IsString(ow))
        snprintf(said, sizeof said, "%s%s%s", ow->valuestring, cJSON_IsString(om) && om->valuestring[0] ? ": " : "",
                 cJSON_IsString(om) ? om->valuestring : "");
    cJSON_Delete(o);
    free(oj);
    ft_error_clear();
    const char *state = running > 0 ? "running: a process holds it"
                        : said[0]   ? said
                        : final     ? "finished"
                        : v.steps > 0 ? "stopped before its end: killed or crashed (no outcome.json recorded how)"
                                      : "not running";
    printf("run:          %s: %s\n", dir, state);
    printf("model:        %s, %s r %lld on %s", r.model.path, r.lora.dora ? "DoRA" : "LoRA", (long long)r.lora.r,
           r.lora.targets);
    for (int i = 0; i < r.lora.n_tokens; i++) /* lora.trainable_tokens as the recipe gives them */
        printf("%s%s", i ? ", " : ", trainable tokens ", r.lora.tokens[i]);
    printf("\n");
    if (v.steps == 0) {
        printf("progress:     no step recorded yet%s\n", f ? "" : " (no metrics.jsonl)");
    } else {
        ft_format_duration(b1, sizeof b1, v.elapsed_s);
        /* the run's wall clock (elapsed_s: carried across resumes, downtime left out) over its steps,
         * so that the evaluations and checkpoints between steps count: the lines' step_s is the
         * training step alone (half the time left, in a soak that evaluated every 10 steps) */
        const double step_s = v.last_step > 0 && v.elapsed_s > 0 ? v.elapsed_s / (double)v.last_step : NAN;
        if (total > 0)
            printf("progress:     step %lld of %lld (%.1f%%), %lld tokens, %s of training\n", (long long)v.last_step,
                   (long long)total, 100.0 * (double)v.last_step / (double)total, (long long)v.tokens, b1);
        else
            printf("progress:     step %lld (training.epochs %g), %lld tokens, %s of training\n", (long long)v.last_step,
                   r.training.epochs, (long long)v.tokens, b1);
        if (running > 0 && total > v.last_step && isfinite(step_s)) {
            ft_format_duration(b2, sizeof b2, step_s * (double)(total - v.last_step));
            printf("time left:    ~%s at the run's %.2f s a step so far (evaluations and checkpoints included)\n", b2,
                   step_s);
        }
        if (running > 0) ft_status_job(dir, total > v.last_step && isfinite(step_s) ? step_s * (double)(total - v.last_step)
                                                                                     : 0.0);
        printf("loss:         %.4f last, %.4f mean of the last %d steps\n", v.last_loss,
               ft_mean(v.recent_loss, v.n_recent), (int)(v.n_recent < FT_ST_RECENT ? v.n_recent : FT_ST_RECENT));
        if (v.rollbacks > 0)
            printf("rollbacks:    %lld (the last: the loss diverged at step %lld, back to step %lld; learning rate now "
                   "%g)\n",
                   (long long)v.rollbacks, (long long)v.rb_from, (long long)v.rb_step, v.rb_lr);
        if (v.skipped_spike + v.skipped_nonfinite > 0)
            printf("skipped:      %lld steps (%lld spikes, %lld non-finite)\n",
                   (long long)(v.skipped_spike + v.skipped_nonfinite), (long long)v.skipped_spike,
                   (long long)v.skipped_nonfinite);
    }
    if (v.evals > 0)
        printf("validation:   %.4f at step %lld (last), lowest %.4f at step %lld, %lld evaluation%s\n", v.last_val,
               (long long)v.last_val_step, v.best_val, (long long)v.best_val_step, (long long)v.evals,
               v.evals == 1 ? "" : "s");
    snprintf(path, sizeof path, "%s/best/adapter_model.safetensors", dir);
    if (stat(path, &sb) == 0) {
        char *js = NULL;
        int64_t len = 0;
        snprintf(path, sizeof path, "%s/best/ftune-best.json", dir);
        cJSON *j = ft_read_file(path, 1 << 16, &js, &len, NULL) == FT_OK ? cJSON_Parse(js) : NULL;
        const cJSON *s = j ? cJSON_GetObjectItemCaseSensitive(j, "step") : NULL;
        const cJSON *l = j ? cJSON_GetObjectItemCaseSensitive(j, "validation_loss") : NULL;
        if (cJSON_IsNumber(s) && cJSON_IsNumber(l))
            printf("best/:        step %lld, validation loss %.4f\n", (long long)s->valuedouble, l->valuedouble);
        else
            printf("best/:        incomplete (no ftune-best.json: its write was cut short)\n");
        cJSON_Delete(j);
        free(js);
        ft_error_clear();
    }
    snprintf(path, sizeof path, "%s/checkpoints", dir);
    if (ft_ckpt_list(path, &steps, &n_ck) == FT_OK && n_ck > 0) {
        char ck[4300];
        ft_ckpt_path(ck, sizeof ck, path, steps[n_ck - 1]);
        printf("checkpoints:  %lld, the newest step %lld, %s%s\n", (long long)n_ck, (long long)steps[n_ck - 1],
               ft_age(ck, age, sizeof age), running <= 0 && !final ? " (continue: ftune train RECIPE --resume)" : "");
    } else {
        ft_error_clear();
        printf("checkpoints:  none\n");
    }
    if (final) printf("final/:       %s\n", ft_age(fin, age, sizeof age));
    else printf("final/:       not yet\n");
    if (v.bad_lines > 0) printf("note:         %lld unreadable line(s) in metrics.jsonl (a torn write)\n", (long long)v.bad_lines);
    st = FT_OK;
done:
    free(steps);
    free(line);
    if (f) fclose(f);
    ft_recipe_free(&r);
    ft_cli_free(&cli);
    return st;
}
