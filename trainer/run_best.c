/* run_best.c: the lowest validation loss of a run. Each evaluation that beats it copies the
 * adapter into OUTPUT_DIR/best/ (eval.keep_best), and eval.patience evaluations in a row that do
 * not end the run early: the adapter a user wants is often not the last one (a run of several
 * epochs over a small dataset overfits), and a 12-hour job should not train for hours after its
 * validation loss stopped falling.
 *
 * best/ holds the PEFT pair of final/ and ftune-best.json ({"step", "validation_loss"}), written
 * last, after the old one is removed: a best/ without it was cut short. The record of the lowest
 * loss (R->val) is in every checkpoint, so a resumed run keeps the same best and patience count;
 * best/ itself is checked against it on resume (ft_run_check_best). A new lowest also removes the
 * exports (export.from: best) made in best/ from the adapter it replaces. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "export/export_util.h"
#include "kernels/fileio.h"
#include "kernels/json.h"
#include "kernels/log.h"
#include "trainer/lora.h"
#include "trainer/run_impl.h"

#define FT_BEST_JSON "ftune-best.json"

int ft_run_patience_out(const ft_run_state *R) {
    return R->r->eval.patience > 0 && R->val.since >= R->r->eval.patience;
}

/* The exports an earlier end of the run made in best/ (export.from: best: adapter.gguf,
 * model-TYPE.gguf) are of the adapter being replaced: removed, so that none is taken for the new
 * one's. The run's end makes them again. */
static ft_status ft_best_drop_exports(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return FT_OK;
    struct dirent *e;
    ft_status st = FT_OK;
    while ((e = readdir(d)) && st == FT_OK) {
        const char *n = e->d_name;
        const size_t len = strlen(n);
        const int merged = strncmp(n, "model-", 6) == 0 && len > 11 && strcmp(n + len - 5, ".gguf") == 0;
        if (strcmp(n, "adapter.gguf") != 0 && !merged) continue;
        char path[FT_PATH_MAX + 300];
        snprintf(path, sizeof path, "%s/%s", dir, n);
        if (unlink(path) != 0 && errno != ENOENT)
            st = FT_ERR(FT_E_IO, "%s: cannot remove the export of the previous lowest loss's adapter: %s", path,
                        strerror(errno));
    }
    closedir(d);
    return st;
}

static ft_status ft_best_write(ft_run_state *R, double loss) {
    char path[FT_PATH_MAX + 64], text[128];
    if (mkdir(R->best_dir, 0777) != 0 && errno != EEXIST)
        return FT_ERR(FT_E_IO, "%s: cannot create directory: %s", R->best_dir, strerror(errno));
    snprintf(path, sizeof path, "%s/" FT_BEST_JSON, R->best_dir);
    if (unlink(path) != 0 && errno != ENOENT) /* from here until it is rewritten, best/ reads as incomplete */
        return FT_ERR(FT_E_IO, "%s: cannot remove: %s", path, strerror(errno));
    FT_TRY(ft_best_drop_exports(R->best_dir));
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", R->best_dir);
    FT_TRY(ft_lora_save(R->lora, R->be, path, 'p'));
    snprintf(path, sizeof path, "%s/adapter_config.json", R->best_dir);
    FT_TRY(ft_run_write_adapter_config(R, path));
    int n = snprintf(text, sizeof text, "{\"step\": %lld, \"validation_loss\": %.9g}\n", (long long)R->step, loss);
    snprintf(path, sizeof path, "%s/" FT_BEST_JSON, R->best_dir);
    return ft_write_bytes(path, text, (size_t)n);
}

ft_status ft_run_track_best(ft_run_state *R, double loss) {
    if (!isfinite(loss)) return FT_OK;
    if (isfinite(R->val.loss) && !(loss < R->val.loss)) {
        R->val.since++;
        ft_info("eval: the lowest validation loss is still %.4f (step %lld), %lld evaluation%s ago%s",
                R->val.loss, (long long)R->val.step, (long long)R->val.since, R->val.since == 1 ? "" : "s",
                R->r->eval.patience > 0 ? " (eval.patience counts them)" : "");
        return FT_OK;
    }
    R->val = (ft_val_best){.loss = loss, .step = R->step, .since = 0};
    if (!R->r->eval.keep_best) return FT_OK;
    ft_status st = ft_best_write(R, loss);
    if (st != FT_OK)
        return ft_error_wrap(st, "keeping the adapter of the lowest validation loss (eval.keep_best) in %s",
                             R->best_dir);
    ft_info("eval: lowest validation loss so far: adapter kept in %s", R->best_dir);
    return FT_OK;
}

/* The step ftune-best.json records; -1 when it is missing or unreadable. */
static int64_t ft_best_step(const char *dir) {
    char path[FT_PATH_MAX + 64], *text = NULL;
    int64_t len = 0, step = -1;
    snprintf(path, sizeof path, "%s/" FT_BEST_JSON, dir);
    if (ft_read_file(path, 1 << 16, &text, &len, NULL) != FT_OK) {
        ft_error_clear();
        return -1;
    }
    cJSON *j = NULL;
    if (ft_json_parse(text, len, path, &j) == FT_OK) {
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(j, "step");
        if (cJSON_IsNumber(s) && s->valuedouble >= 0) step = (int64_t)s->valuedouble;
    }
    ft_error_clear();
    cJSON_Delete(j);
    free(text);
    return step;
}

/* Moves dir aside to dir.superseded, or dir.superseded.2, .3, ... where earlier ones are (a run
 * resumed twice from before a kept best/); 0 on success, else -1 with errno, to naming the last tried. */
static int ft_best_set_aside(const char *dir, char *to, size_t cap) {
    struct stat sb;
    for (int i = 1; i < 1000; i++) {
        if (i == 1) snprintf(to, cap, "%s.superseded", dir);
        else snprintf(to, cap, "%s.superseded.%d", dir, i);
        if (lstat(to, &sb) != 0 && errno == ENOENT) return rename(dir, to);
    }
    errno = EEXIST;
    return -1;
}

/* When the checkpoint resumed from is that of the lowest loss itself (a finished run's last
 * step, often), best/ is written again from its adapter and the record stands; 1 when it was. */
static int ft_best_restore(ft_run_state *R) {
    if (!R->r->eval.keep_best || R->val.step < 0 || R->val.step != R->step) return 0;
    if (ft_best_write(R, R->val.loss) == FT_OK) return 1;
    ft_warn("%s: cannot write the adapter of the lowest validation loss again from the checkpoint of step %lld: %s",
            R->best_dir, (long long)R->step, ft_error_msg());
    ft_error_clear();
    return 0;
}

void ft_run_check_best(ft_run_state *R) {
    struct stat sb;
    /* a run that has ended (its steps, or eval.patience) keeps its record: starting it over would
     * un-stop an early-stopped run, which would train on */
    const int over = R->step >= R->total || ft_run_patience_out(R);
    const char *ended = "; the run has ended (training.steps or eval.patience): nothing replaces it";
    if (stat(R->best_dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        if (R->val.step < 0 || !R->r->eval.keep_best) return;
        if (ft_best_restore(R)) {
            ft_warn("%s was missing: written again from the checkpoint, that of the lowest validation loss (step %lld)",
                    R->best_dir, (long long)R->val.step);
            return;
        }
        ft_warn("%s is missing: the adapter of the lowest validation loss (step %lld) is gone%s", R->best_dir,
                (long long)R->val.step, over ? ended : "; the next evaluation starts the record over");
        if (!over) R->val = (ft_val_best){.loss = NAN, .step = -1};
        return;
    }
    int64_t step = ft_best_step(R->best_dir);
    if (step >= 0 && step == R->val.step) return; /* the checkpoint's best, as kept */
    char to[FT_PATH_MAX + 48], why[160], fate[FT_PATH_MAX + 160] = "";
    if (step < 0)
        snprintf(why, sizeof why, "is incomplete (no " FT_BEST_JSON ": its write was cut short)");
    else if (!R->o->resume)
        snprintf(why, sizeof why, "belongs to an earlier run in this directory (step %lld)", (long long)step);
    else if (step > R->step)
        snprintf(why, sizeof why, "was kept at step %lld, after the checkpoint the run resumes from (step %lld)",
                 (long long)step, (long long)R->step);
    else if (R->val.step < 0)
        snprintf(why, sizeof why, "holds step %lld's adapter, and the checkpoint records no validation loss",
                 (long long)step);
    else
        snprintf(why, sizeof why, "holds step %lld's adapter, not that of the checkpoint's lowest validation loss "
                 "(step %lld)", (long long)step, (long long)R->val.step);
    const int moved = ft_best_set_aside(R->best_dir, to, sizeof to) == 0;
    const int err = errno, restored = ft_best_restore(R);
    const int kept = !restored && R->val.step >= 0 && R->r->eval.keep_best; /* without it the record stands alone */
    const int reset = kept && !over;
    if (restored)
        snprintf(fate, sizeof fate, "; %s is written again from the checkpoint, that of the lowest validation loss "
                                    "(step %lld)", R->best_dir, (long long)R->val.step);
    else if (kept)
        snprintf(fate, sizeof fate, "%s", over ? ended : "; the next evaluation starts the record over");
    if (moved)
        ft_warn("%s %s: moved aside to %s%s", R->best_dir, why, to, fate);
    else
        ft_warn("%s %s, and cannot be moved aside to %s (%s): %s", R->best_dir, why, to, strerror(err),
                fate[0] ? fate + 2 : "the next evaluation overwrites it");
    if (reset) R->val = (ft_val_best){.loss = NAN, .step = -1};
}
