/* metrics.c: see metrics.h. */
#include "trainer/metrics.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/fileio.h"
#include "kernels/json.h"
#include "kernels/log.h"
#include "kernels/mem.h"
#include "trainer/svg.h"
#include "trainer/tboard.h"

typedef struct ft_curve {
    double *x, *y;
    int64_t n, cap;
} ft_curve;

struct ft_metrics {
    char *path;
    FILE *f;
    ft_curve train, eval;
    ft_tb *tb;        /* NULL: no TensorBoard events (not asked for, or stopped by a failure) */
    double *walls;    /* [resume_step + 1] while the cut rewrites the events: the old files' times */
    int64_t n_walls;
};

/* Events are a log: a failure is said once, and the events stop for this process. */
static void ft_metrics_tb(ft_metrics *m, int64_t step, double wall, const ft_tb_scalar *v, int n) {
    if (!m->tb) return;
    if (ft_tb_write(m->tb, step, wall, v, n) == FT_OK) return;
    ft_warn("%s; no more TensorBoard events from this process (metrics.jsonl goes on)", ft_error_msg());
    ft_error_clear();
    ft_tb_close(m->tb);
    m->tb = NULL;
}

static void ft_metrics_tb_train(ft_metrics *m, int64_t step, double wall, double loss, double lr, double grad_norm,
                                double tok_s, double mem_mb) {
    const ft_tb_scalar v[5] = {{"train/loss", loss}, {"train/lr", lr}, {"train/grad_norm", grad_norm},
                               {"train/tokens_per_s", tok_s}, {"train/mem_mb", mem_mb}};
    ft_metrics_tb(m, step, wall, v, 5);
}

static void ft_metrics_tb_eval(ft_metrics *m, int64_t step, double wall, double val_loss) {
    const ft_tb_scalar v[2] = {{"eval/loss", val_loss}, {"eval/ppl", exp(val_loss)}};
    ft_metrics_tb(m, step, wall, v, 2);
}

/* A number of a kept line's object (NAN: null or missing). */
static double ft_jnum(const cJSON *o, const char *key) {
    const cJSON *v = o ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL;
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

/* A kept line into the rewritten event file, at the time the old files gave its step (else now). */
static void ft_metrics_tb_kept(ft_metrics *m, const cJSON *j, const char *type, int64_t step) {
    if (!m->tb || step < 0) return;
    double wall = step < m->n_walls ? m->walls[step] : NAN;
    if (!isfinite(wall)) wall = ft_tb_now();
    if (strcmp(type, "train") == 0) {
        const cJSON *w = cJSON_GetObjectItemCaseSensitive(j, "wall");
        ft_metrics_tb_train(m, step, wall, ft_jnum(j, "loss"), ft_jnum(j, "lr"), ft_jnum(j, "grad_norm"),
                            ft_jnum(w, "tok_s"), ft_jnum(w, "mem_mb"));
    } else if (strcmp(type, "eval") == 0) {
        ft_metrics_tb_eval(m, step, wall, ft_jnum(j, "val_loss"));
    }
}

static ft_status ft_curve_add(ft_curve *c, double x, double y) {
    if (c->n == c->cap) {
        int64_t cap = c->cap ? 2 * c->cap : 256;
        double *nx = realloc(c->x, (size_t)cap * sizeof *nx);
        if (nx) c->x = nx;
        double *ny = nx ? realloc(c->y, (size_t)cap * sizeof *ny) : NULL;
        if (ny) c->y = ny;
        if (!nx || !ny) return FT_ERR(FT_E_OOM, "out of memory keeping the loss history");
        c->cap = cap;
    }
    c->x[c->n] = x, c->y[c->n] = y;
    c->n++;
    return FT_OK;
}

static void ft_curve_free(ft_curve *c) {
    free(c->x);
    free(c->y);
    memset(c, 0, sizeof *c);
}

/* A number for JSON: non-finite values are null. */
static const char *ft_num(char *buf, size_t cap, const char *fmt, double v) {
    if (!isfinite(v)) return "null";
    snprintf(buf, cap, fmt, v);
    return buf;
}

/* Keeps the lines of steps <= resume_step from the existing file (rewritten atomically), less the
 * rollback lines numbered above `rollbacks`. */
static ft_status ft_metrics_cut(ft_metrics *m, int64_t resume_step, int64_t rollbacks) {
    FILE *in = fopen(m->path, "rb");
    if (!in) {
        if (errno == ENOENT) {
            ft_warn("%s: not found; the metrics of steps 1-%lld are lost", m->path, (long long)resume_step);
            return FT_OK;
        }
        return FT_ERR(FT_E_IO, "%s: cannot open: %s", m->path, strerror(errno));
    }
    ft_afile af;
    ft_status st = ft_afile_open(&af, m->path);
    if (st != FT_OK) {
        fclose(in);
        return st;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    /* later: lines of steps past the checkpoint (the normal case after a kill); bad: lines that are
     * torn or not a metrics record, reported apart: a torn line is not always one after the
     * checkpoint (a truncated or damaged file), and its step's metrics are then lost */
    int64_t later = 0, bad = 0, first_bad = 0, lineno = 0, kept_train = 0;
    while ((len = getline(&line, &cap, in)) > 0) {
        lineno++;
        cJSON *j = NULL;
        if (line[len - 1] == '\n' && ft_json_parse(line, (int64_t)len, m->path, &j) != FT_OK) ft_error_clear();
        const cJSON *step = cJSON_GetObjectItemCaseSensitive(j, "step");
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(j, "type");
        if (!cJSON_IsNumber(step) || !cJSON_IsString(type)) {
            if (!bad++) first_bad = lineno;
            cJSON_Delete(j);
            continue;
        }
        const cJSON *nth = strcmp(type->valuestring, "rollback") == 0 ? cJSON_GetObjectItemCaseSensitive(j, "rollback")
                                                                       : NULL;
        if ((int64_t)step->valuedouble > resume_step || (cJSON_IsNumber(nth) && nth->valuedouble > (double)rollbacks)) {
            later++;
            cJSON_Delete(j);
            continue;
        }
        double s = step->valuedouble;
        ft_metrics_tb_kept(m, j, type->valuestring, (int64_t)s);
        if (strcmp(type->valuestring, "train") == 0) {
            const cJSON *loss = cJSON_GetObjectItemCaseSensitive(j, "loss");
            const cJSON *skip = cJSON_GetObjectItemCaseSensitive(j, "skipped");
            kept_train++;
            if (cJSON_IsNumber(loss) && !cJSON_IsString(skip)) st = ft_curve_add(&m->train, s, loss->valuedouble);
        } else if (strcmp(type->valuestring, "eval") == 0) {
            const cJSON *vl = cJSON_GetObjectItemCaseSensitive(j, "val_loss");
            if (cJSON_IsNumber(vl)) st = ft_curve_add(&m->eval, s, vl->valuedouble);
        }
        cJSON_Delete(j);
        if (st == FT_OK) st = ft_afile_write(&af, line, len);
        if (st != FT_OK) break;
    }
    free(line);
    fclose(in);
    if (st != FT_OK) {
        ft_afile_abort(&af);
        return st;
    }
    FT_TRY(ft_afile_commit(&af));
    if (later) ft_info("%s: dropped %lld lines after step %lld (written after the checkpoint)", m->path,
                       (long long)later, (long long)resume_step);
    if (bad || kept_train < resume_step) {
        char why[160] = "";
        if (bad)
            snprintf(why, sizeof why, "; dropped %lld unreadable line%s (torn or not a metrics record), the first line %lld",
                     (long long)bad, bad > 1 ? "s" : "", (long long)first_bad);
        ft_warn("%s: holds the training lines of %lld of the %lld steps up to the checkpoint%s: the metrics of the "
                "others are lost", m->path, (long long)kept_train, (long long)resume_step, why);
    }
    return FT_OK;
}

ft_status ft_metrics_open(ft_metrics **out, const char *path, int64_t resume_step) {
    return ft_metrics_open_at(out, path, resume_step, INT64_MAX);
}

ft_status ft_metrics_open_at(ft_metrics **out, const char *path, int64_t resume_step, int64_t rollbacks) {
    return ft_metrics_open_tb(out, path, NULL, resume_step, rollbacks);
}

/* Opens a new event file in tb_dir before the cut, which writes the kept lines into it; the
 * older files' wall times are read first, for the rewritten records. A failure is a warning. */
static void ft_metrics_tb_open(ft_metrics *m, const char *tb_dir, int64_t resume_step) {
    /* a step count past any real run's: a damaged checkpoint's step must not size an allocation */
    if (resume_step >= 0 && resume_step < (int64_t)1 << 26) {
        if (ft_malloc((void **)&m->walls, (size_t)(resume_step + 1) * sizeof *m->walls, "tensorboard") != FT_OK)
            ft_error_clear(); /* the rewritten records then carry the time of the rewrite */
        else if (ft_tb_walls(tb_dir, resume_step, m->walls) != FT_OK)
            ft_error_clear();
        else
            m->n_walls = resume_step + 1;
    }
    if (ft_tb_open(&m->tb, tb_dir) != FT_OK) {
        ft_warn("%s: no TensorBoard events this run (metrics.jsonl is written)", ft_error_msg());
        ft_error_clear();
    }
}

/* After the cut: the new file holds the whole history; the older ones go. */
static void ft_metrics_tb_done(ft_metrics *m) {
    ft_free(m->walls);
    m->walls = NULL, m->n_walls = 0;
    if (m->tb && ft_tb_prune(m->tb) != FT_OK) {
        ft_warn("%s: TensorBoard may show some steps twice", ft_error_msg());
        ft_error_clear();
    }
}

ft_status ft_metrics_open_tb(ft_metrics **out, const char *path, const char *tb_dir, int64_t resume_step,
                             int64_t rollbacks) {
    *out = NULL;
    ft_metrics *m;
    FT_TRY(ft_calloc((void **)&m, sizeof *m, "metrics"));
    ft_status st = FT_OK;
    m->path = strdup(path);
    if (!m->path) {
        st = FT_ERR(FT_E_OOM, "out of memory");
        goto fail;
    }
    if (tb_dir) ft_metrics_tb_open(m, tb_dir, resume_step);
    if (resume_step >= 0) FT_CHECK_GOTO(st, ft_metrics_cut(m, resume_step, rollbacks), fail);
    if (tb_dir) ft_metrics_tb_done(m);
    m->f = fopen(path, resume_step >= 0 ? "ab" : "wb");
    if (!m->f) {
        st = FT_ERR(FT_E_IO, "%s: cannot open for writing: %s", path, strerror(errno));
        goto fail;
    }
    *out = m;
    return FT_OK;
fail:
    ft_metrics_close(m);
    return st;
}

void ft_metrics_close(ft_metrics *m) {
    if (!m) return;
    if (m->f) fclose(m->f);
    ft_tb_close(m->tb);
    ft_free(m->walls);
    ft_curve_free(&m->train);
    ft_curve_free(&m->eval);
    free(m->path);
    ft_free(m);
}

static ft_status ft_metrics_flush(ft_metrics *m) {
    if (ferror(m->f) || fflush(m->f) != 0) {
        clearerr(m->f);
        return FT_ERR(FT_E_IO, "%s: write failed: %s", m->path, strerror(errno));
    }
    return FT_OK;
}

ft_status ft_metrics_train_line(ft_metrics *m, const ft_metrics_train *t) {
    char a[32], b[32], c[32], z[48] = "";
    if (t->skipped) snprintf(z, sizeof z, ",\"z\":%s", ft_num(c, sizeof c, "%.4g", t->z));
    fprintf(m->f,
            "{\"type\":\"train\",\"step\":%lld,\"loss\":%s,\"lr\":%s,\"grad_norm\":%s,\"targets\":%lld,"
            "\"tokens\":%lld,\"epoch\":%.4f,\"skipped\":%s%s%s%s",
            (long long)t->step, ft_num(a, sizeof a, "%.9g", t->loss), ft_num(b, sizeof b, "%.9g", t->lr),
            ft_num(c, sizeof c, "%.9g", t->grad_norm), (long long)t->targets, (long long)t->tokens, t->epoch,
            t->skipped ? "\"" : "", t->skipped ? t->skipped : "null", t->skipped ? "\"" : "", z);
    fprintf(m->f, ",\"wall\":{\"elapsed_s\":%.3f,\"step_s\":%.4f,\"tok_s\":%.1f,\"mem_mb\":%.1f,\"rss_mb\":%.1f}}\n",
            t->elapsed_s, t->step_s, t->tok_s, (double)t->mem_bytes / 1048576.0, (double)t->rss_bytes / 1048576.0);
    /* before the flush: a warning of the events must not clear the error the caller reports */
    ft_metrics_tb_train(m, t->step, ft_tb_now(), t->loss, t->lr, t->grad_norm, t->tok_s,
                        (double)t->mem_bytes / 1048576.0);
    if (!t->skipped && isfinite(t->loss)) FT_TRY(ft_curve_add(&m->train, (double)t->step, t->loss));
    return ft_metrics_flush(m);
}

ft_status ft_metrics_eval_line(ft_metrics *m, int64_t step, double val_loss, int64_t val_targets, double elapsed_s) {
    char a[32], b[32];
    fprintf(m->f,
            "{\"type\":\"eval\",\"step\":%lld,\"val_loss\":%s,\"val_ppl\":%s,\"val_targets\":%lld,"
            "\"wall\":{\"elapsed_s\":%.3f}}\n",
            (long long)step, ft_num(a, sizeof a, "%.9g", val_loss), ft_num(b, sizeof b, "%.9g", exp(val_loss)),
            (long long)val_targets, elapsed_s);
    ft_metrics_tb_eval(m, step, ft_tb_now(), val_loss);
    if (isfinite(val_loss)) FT_TRY(ft_curve_add(&m->eval, (double)step, val_loss));
    return ft_metrics_flush(m);
}

ft_status ft_metrics_rollback_line(ft_metrics *m, int64_t step, int64_t diverged_at, int64_t n, double lr) {
    fprintf(m->f, "{\"type\":\"rollback\",\"step\":%lld,\"diverged_at\":%lld,\"rollback\":%lld,\"lr\":%.9g}\n",
            (long long)step, (long long)diverged_at, (long long)n, lr);
    return ft_metrics_flush(m);
}

double ft_metrics_last_eval(const ft_metrics *m) { return m->eval.n ? m->eval.y[m->eval.n - 1] : NAN; }

ft_status ft_metrics_plot(const ft_metrics *m, const char *svg_path, const char *title, int64_t total_steps) {
    /* smoothed training loss: EMA with a time constant of ~2% of the run (at least 5 steps) */
    double *smooth = NULL;
    int64_t n = m->train.n;
    FT_TRY(ft_malloc((void **)&smooth, (size_t)(n ? n : 1) * sizeof *smooth, "loss chart"));
    double span = total_steps / 50.0 < 5 ? 5 : total_steps / 50.0, a = 2.0 / (span + 1), e = 0;
    for (int64_t i = 0; i < n; i++) {
        e = i == 0 ? m->train.y[0] : e + a * (m->train.y[i] - e);
        smooth[i] = e;
    }
    char sub[160];
    double last_val = ft_metrics_last_eval(m);
    int64_t last_step = n ? (int64_t)m->train.x[n - 1] : 0;
    if (isfinite(last_val))
        snprintf(sub, sizeof sub, "step %lld of %lld   train loss %.4f (smoothed)   val loss %.4f (ppl %.2f)",
                 (long long)last_step, (long long)total_steps, n ? smooth[n - 1] : NAN, last_val, exp(last_val));
    else
        snprintf(sub, sizeof sub, "step %lld of %lld   train loss %.4f (smoothed)", (long long)last_step,
                 (long long)total_steps, n ? smooth[n - 1] : NAN);
    ft_svg_series s[3] = {
        {.name = "train loss", .color = "#9ecae1", .x = m->train.x, .y = m->train.y, .n = n, .width = 1.0},
        {.name = "train loss (smoothed)", .color = "#1f5fa8", .x = m->train.x, .y = smooth, .n = n, .width = 2.2},
        {.name = "validation loss", .color = "#e6550d", .x = m->eval.x, .y = m->eval.y, .n = m->eval.n,
         .width = 1.8, .markers = 1},
    };
    ft_svg_chart c = {.title = title, .subtitle = sub, .xlabel = "optimizer step", .ylabel = "loss (nats/token)",
                      .xmax = (double)total_steps};
    ft_status st = ft_svg_write(svg_path, &c, s, 3);
    ft_free(smooth);
    return st;
}
