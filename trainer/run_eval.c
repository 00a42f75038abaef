/* run_eval.c: a run's evaluations (validation loss and perplexity over the held-out rows, greedy
 * completions of eval.prompts into samples/) and its final adapter in PEFT layout.
 *
 * Evaluation and generation run without LoRA dropout (the model draws dropout only in training
 * passes). Generation runs the prompt once and then each new token alone against a KV cache
 * (ft_model_decode); without memory for the cache, each new token re-runs the whole sequence. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "export/adapter.h"
#include "export/export_util.h"
#include "kernels/fileio.h"
#include "kernels/log.h"
#include "kernels/mem.h"
#include "trainer/run_impl.h"

/* Greedy continuation of one prompt: *text (malloc'd) is the decoded new tokens. */
static ft_status ft_complete(ft_run_state *R, const char *prompt, char **text, int64_t *n_new) {
    int32_t *ids = NULL, *buf = NULL;
    int64_t n = 0;
    ft_kv_cache *kv = NULL;
    *text = NULL, *n_new = 0;
    FT_TRY(ft_dataset_prompt_ids(R->ds, prompt, &ids, &n));
    const int64_t max_new = R->r->eval.max_new_tokens, V = ft_model_get_dims(R->model)->V;
    ft_status st;
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= V) {
            st = FT_ERR(FT_E_ARG, "eval.prompts: prompt \"%.40s\" encodes to id %d, outside the model's vocabulary "
                                  "of %lld", prompt, ids[i], (long long)V);
            goto done;
        }
    FT_CHECK_GOTO(st, ft_malloc((void **)&buf, (size_t)(n + max_new + 1) * sizeof *buf, "generation"), done);
    memcpy(buf, ids, (size_t)n * sizeof *buf);
    const int64_t n0 = n;
    if (n > 0 && (st = ft_model_kv_new(R->model, n + max_new, &kv)) != FT_OK) {
        if (st != FT_E_OOM) goto done;
        /* a device full of training's memory: a run goes on without the cache rather than fail */
        ft_warn("eval.prompts: no memory for a KV cache (%s): each new token re-runs the sequence", ft_error_msg());
        ft_error_clear();
        st = FT_OK;
    }
    for (int64_t i = 0; i < max_new && n > 0; i++) {
        ft_batch b = {.B = 1, .T = n, .tokens = buf};
        const int64_t fed = kv ? ft_model_kv_len(kv) : 0; /* the prompt once, then each new token alone */
        FT_CHECK_GOTO(st, kv ? ft_model_decode(R->model, kv, buf + fed, n - fed, R->logits)
                             : ft_model_last_logits(R->model, &b, R->logits), done);
        int32_t best = 0;
        for (int64_t v = 1; v < V; v++)
            if (R->logits[v] > R->logits[best]) best = (int32_t)v;
        if (ft_dataset_is_stop(R->ds, best)) break;
        buf[n++] = best;
    }
    *n_new = n - n0;
    st = ft_dataset_decode(R->ds, buf + n0, n - n0, text);
done:
    ft_model_kv_free(R->model, kv);
    free(ids);
    ft_free(buf);
    return st;
}

static ft_status ft_write_samples(ft_run_state *R, double val_loss) {
    const ft_recipe *r = R->r;
    size_t cap = 1024, len = 0;
    char *out = malloc(cap), *text = NULL; /* text: one completion, freed at done when APPEND fails on it */
    if (!out) return FT_ERR(FT_E_OOM, "out of memory writing samples");
    ft_status st = FT_OK;
#define APPEND(...)                                                                    \
    do {                                                                               \
        int need_ = snprintf(NULL, 0, __VA_ARGS__);                                    \
        while (len + (size_t)need_ + 1 > cap) {                                        \
            char *p_ = realloc(out, cap *= 2);                                         \
            if (!p_) {                                                                 \
                st = FT_ERR(FT_E_OOM, "out of memory writing samples");                \
                goto done;                                                             \
            }                                                                          \
            out = p_;                                                                  \
        }                                                                              \
        len += (size_t)snprintf(out + len, cap - len, __VA_ARGS__);                    \
    } while (0)
    if (isfinite(val_loss))
        APPEND("# ftune samples at step %lld of %lld: validation loss %.4f, perplexity %.3f\n", (long long)R->step,
               (long long)R->total, val_loss, exp(val_loss));
    else
        APPEND("# ftune samples at step %lld of %lld\n", (long long)R->step, (long long)R->total);
    APPEND("# greedy decoding, at most %lld new tokens, LoRA dropout off\n", (long long)r->eval.max_new_tokens);
    for (int i = 0; i < r->eval.n_prompts; i++) {
        int64_t n_new = 0;
        FT_CHECK_GOTO(st, ft_complete(R, r->eval.prompts[i], &text, &n_new), done);
        APPEND("\n=== prompt %d ===\n%s\n=== completion (%lld tokens) ===\n%s\n", i + 1, r->eval.prompts[i],
               (long long)n_new, text);
        free(text);
        text = NULL;
    }
    char path[FT_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/step-%06lld.txt", R->samples_dir, (long long)R->step);
    st = ft_write_bytes(path, out, len);
#undef APPEND
done:
    free(text);
    free(out);
    return st;
}

ft_status ft_run_eval(ft_run_state *R) {
    const ft_recipe *r = R->r;
    const double t0 = ft_run_now();
    ft_status st;
    double loss = 0, val = NAN;
    int64_t n = 0, batches = 0;
    ft_rows *rows = &R->mb[0]; /* the step's buffers are free between steps */
    FT_CHECK_GOTO(st, ft_dataset_eval_begin(R->ds), done);
    for (;;) {
        if (r->eval.max_batches > 0 && batches >= r->eval.max_batches) break;
        FT_CHECK_GOTO(st, ft_dataset_eval_next(R->ds, rows), done);
        if (rows->n_rows == 0) break;
        ft_batch b = {.B = rows->B, .T = rows->T, .tokens = rows->tokens, .labels = rows->labels, .pos = rows->pos,
                      .doc_start = rows->doc_start};
        FT_CHECK_GOTO(st, ft_model_step(R->model, &b, 0.0f, 0, &loss, &n), done);
        batches++;
    }
    ft_progress_clear(&R->prog);
    if (n > 0) {
        val = loss / (double)n;
        ft_status ms = ft_metrics_eval_line(R->metrics, R->step, val, n, ft_run_elapsed(R));
        if (ms != FT_OK) ft_warn("%s", ft_error_msg());
        ft_info("eval at step %lld: validation loss %.4f, perplexity %.3f (%lld tokens, %.1f s)", (long long)R->step,
                val, exp(val), (long long)n, ft_run_now() - t0);
        FT_CHECK_GOTO(st, ft_run_track_best(R, val), done);
    } else if (R->last_eval_step < 0) {
        if (r->data.n_valid > 0 || r->data.val_fraction > 0)
            ft_warn("eval: the validation data packed into no row (data's summary says what was dropped, e.g. "
                    "examples longer than data.seq_len); writing samples only");
        else
            ft_info("eval: no validation data (set data.val_fraction or data.valid); writing samples only");
    }
    if (r->eval.n_prompts > 0) {
        st = ft_write_samples(R, val);
        if (st != FT_OK) {
            if (st != FT_E_IO) goto done;
            ft_warn("samples not written: %s", ft_error_msg());
        }
    }
    R->last_eval_step = R->step;
    const double secs = ft_run_now() - t0;
    if (secs > R->eval_s_max) R->eval_s_max = secs; /* training.max_hours */
    st = FT_OK;
done:
    return st;
}

/* ---- final adapter ------------------------------------------------------------------------ */

ft_status ft_run_write_adapter_config(ft_run_state *R, const char *path) {
    const ft_recipe *r = R->r;
    cJSON *j = cJSON_CreateObject(), *mods = cJSON_CreateArray();
    ft_status st = FT_OK;
    char *text = NULL;
    if (!j || !mods) {
        cJSON_Delete(mods);
        st = FT_ERR(FT_E_OOM, "out of memory");
        goto done;
    }
    for (int m = 0; m < FT_MOD_COUNT; m++)
        if (R->lora->cfg.targets & (1u << m)) cJSON_AddItemToArray(mods, cJSON_CreateString(ft_module_name(m)));
    char regex[512]; /* a vision-language base: the names alone would reach its vision tower (arch.h) */
    if (R->lora->cfg.vlm && ft_peft_target_regex(regex, sizeof regex, R->lora->cfg.targets) > 0) {
        cJSON_Delete(mods);
        mods = cJSON_CreateString(regex);
    }
    cJSON_AddStringToObject(j, "peft_type", "LORA");
    cJSON_AddStringToObject(j, "task_type", "CAUSAL_LM");
    cJSON_AddStringToObject(j, "base_model_name_or_path", r->model.path);
    cJSON_AddNumberToObject(j, "r", (double)r->lora.r);
    cJSON_AddNumberToObject(j, "lora_alpha", r->lora.alpha);
    cJSON_AddNumberToObject(j, "lora_dropout", r->lora.dropout);
    cJSON_AddItemToObject(j, "target_modules", mods);
    cJSON_AddStringToObject(j, "bias", "none");
    cJSON_AddBoolToObject(j, "use_rslora", r->lora.rslora);
    cJSON_AddBoolToObject(j, "use_dora", r->lora.dora);
    cJSON_AddBoolToObject(j, "fan_in_fan_out", 0);
    cJSON_AddBoolToObject(j, "inference_mode", 1);
    cJSON_AddBoolToObject(j, "init_lora_weights", 1);
    cJSON_AddNullToObject(j, "modules_to_save");
    cJSON_AddNullToObject(j, "revision");
    /* PEFT's form (export/adapter.h): the list when lm_head is the embedding, else both modules */
    const ft_lora_tokens *tk = &R->lora->tok;
    ft_adapter_tokens_json(j, tk->ids, tk->k, tk->ids, R->lora->cfg.tied ? 0 : tk->k);
    text = cJSON_Print(j);
    if (!text) {
        st = FT_ERR(FT_E_OOM, "out of memory");
        goto done;
    }
    size_t len = strlen(text);
    text[len] = '\n'; /* the NUL becomes the final newline */
    st = ft_write_bytes(path, text, len + 1);
done:
    cJSON_free(text);
    cJSON_Delete(j);
    return st;
}

static int ft_wants_more_exports(const ft_recipe *r) {
    if (r->exports.merged && r->exports.merged[0]) return 1;
    const char *f = r->exports.formats ? r->exports.formats : "";
    while (*f) {
        size_t len = strcspn(f, ", ");
        if (len && !(len == 4 && strncmp(f, "peft", 4) == 0)) return 1;
        f += len;
        f += strspn(f, ", ");
    }
    return 0;
}

ft_status ft_run_write_final(ft_run_state *R) {
    char path[FT_PATH_MAX + 64];
    if (mkdir(R->final_dir, 0777) != 0 && errno != EEXIST)
        return FT_ERR(FT_E_IO, "%s: cannot create directory: %s", R->final_dir, strerror(errno));
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", R->final_dir);
    FT_TRY(ft_lora_save(R->lora, R->be, path, 'p'));
    snprintf(path, sizeof path, "%s/adapter_config.json", R->final_dir);
    FT_TRY(ft_run_write_adapter_config(R, path));
    ft_progress_clear(&R->prog);
    const int from_best = strcmp(R->r->exports.from, "best") == 0;
    const char *src = from_best ? R->best_dir : R->final_dir;
    struct stat sb;
    if (from_best && ft_wants_more_exports(R->r) && (R->val.step < 0 || stat(src, &sb) != 0))
        return FT_ERR(FT_E_ARG, "export.from: best: %s holds no adapter of a lowest validation loss (no evaluation "
                                "gave a finite one since the run started, or since best/ was found missing or moved "
                                "aside on resume); export final/ with 'ftune export %s'", src, R->final_dir);
    if (ft_wants_more_exports(R->r)) {
        if (R->o->export_fn) {
            FT_TRY(R->o->export_fn(R->o->export_user, R->r, src));
        } else {
            ft_info("export: formats \"%s\"%s%s are not produced by this run; the PEFT adapter is in %s",
                    R->r->exports.formats ? R->r->exports.formats : "",
                    R->r->exports.merged && R->r->exports.merged[0] ? ", merged " : "",
                    R->r->exports.merged ? R->r->exports.merged : "", src);
        }
    }
    /* the overnight log's last lines: what the run did, then where its adapters are */
    const double secs = ft_run_elapsed(R);
    char took[32];
    ft_format_duration(took, sizeof took, secs);
    char rbs[96] = ""; /* training.max_rollbacks: the divergences it went back from */
    if (R->guard.rollbacks > 0)
        snprintf(rbs, sizeof rbs, ", %lld rollback%s (learning rate %g)", (long long)R->guard.rollbacks,
                 R->guard.rollbacks == 1 ? "" : "s", R->sched.lr);
    printf("trained: %lld steps, %lld tokens in %s of training (%.0f tokens/s), %lld step%s skipped%s\n",
           (long long)R->step, (long long)R->tokens_seen, took, secs > 0 ? (double)R->tokens_seen / secs : 0.0,
           (long long)R->guard.skipped, R->guard.skipped == 1 ? "" : "s", rbs);
    double val = ft_metrics_last_eval(R->metrics);
    if (isfinite(val))
        printf("final adapter: %s (step %lld, validation loss %.4f, perplexity %.3f)\n", R->final_dir,
               (long long)R->step, val, exp(val));
    else
        printf("final adapter: %s (step %lld)\n", R->final_dir, (long long)R->step);
    if (R->r->eval.keep_best && R->val.step >= 0 && stat(R->best_dir, &sb) == 0) /* (gone: check_best said so) */
        printf("best adapter: %s (step %lld, validation loss %.4f, perplexity %.3f)%s\n", R->best_dir,
               (long long)R->val.step, R->val.loss, exp(R->val.loss), from_best ? ": the exports are made from it" : "");
    fflush(stdout);
    return FT_OK;
}
