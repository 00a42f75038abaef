/* run.c: see run.h. Set-up, the loop and the signal handling; checkpoints are in run_ckpt.c,
 * evaluation and the final adapter in run_eval.c. */
#include "trainer/run.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "data/tokenizer.h"
#include "export/export_util.h"
#include "kernels/log.h"
#include "kernels/mem.h"
#include "trainer/checkpoint.h"
#include "trainer/loader.h"
#include "trainer/run_impl.h"
#include "trainer/untrained.h"

/* The signal number that asked the run to stop (0: none). Process state by necessity: a signal
 * handler can reach nothing else. Written only by the handler, read and reset by ft_run. */
static volatile sig_atomic_t ft_run_signal = 0;

static void ft_run_on_signal(int sig) { ft_run_signal = sig; }

typedef struct ft_sigsave {
    struct sigaction intr, term, xfsz;
} ft_sigsave;

static void ft_signals_install(ft_sigsave *save) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = ft_run_on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESETHAND | SA_RESTART; /* one-shot: a second Ctrl-C terminates at once */
    ft_run_signal = 0;
    sigaction(SIGINT, &sa, &save->intr);
    if (save->intr.sa_handler == SIG_IGN) sigaction(SIGINT, &save->intr, NULL); /* a background job of a script */
    sigaction(SIGTERM, &sa, &save->term);
    sa.sa_handler = SIG_IGN;
    sa.sa_flags = 0;
    sigaction(SIGXFSZ, &sa, &save->xfsz);
}

static void ft_signals_restore(const ft_sigsave *save) {
    sigaction(SIGINT, &save->intr, NULL);
    sigaction(SIGTERM, &save->term, NULL);
    sigaction(SIGXFSZ, &save->xfsz, NULL);
}

double ft_run_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double ft_run_elapsed(const ft_run_state *R) { return R->elapsed_base + (ft_run_now() - R->t_start); }

/* ---- set-up ------------------------------------------------------------------------------- */

static ft_status ft_mkdir_p(const char *path) {
    char buf[FT_PATH_MAX];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(buf, 0777) != 0 && errno != EEXIST)
            return FT_ERR(FT_E_IO, "output_dir: cannot create %s: %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0777) != 0 && errno != EEXIST)
        return FT_ERR(FT_E_IO, "output_dir: cannot create %s: %s", buf, strerror(errno));
    struct stat sb;
    if (stat(buf, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return FT_ERR(FT_E_IO, "output_dir: %s is not a directory", buf);
    return FT_OK;
}

/* pid of a temporary output file's writer: "<name>.tmp.<pid>" (kernels/fileio.c) or
 * ".<name>.tmp-<pid>-<hex>" (export/safetensors_write.c); 0: not a temporary. */
static long ft_tmp_owner(const char *name) {
    const char *p = strstr(name, ".tmp."), *q = name[0] == '.' ? strstr(name, ".tmp-") : NULL;
    char *end = NULL;
    long pid = 0;
    if (p && p[5] >= '1' && p[5] <= '9') pid = strtol(p + 5, &end, 10), pid = *end ? 0 : pid;
    if (!pid && q && q[5] >= '1' && q[5] <= '9') pid = strtol(q + 5, &end, 10), pid = *end == '-' ? pid : 0;
    return pid;
}

/* Removes the temporaries of dead writers in dir: a run killed (SIGKILL, a second Ctrl-C) while
 * writing its final adapter, merged model, samples or metrics leaves them, and the merged model's
 * is as large as the model. Those of a live process (a concurrent `ftune export`) stay. */
static void ft_run_clean_stale(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        long pid = ft_tmp_owner(e->d_name);
        if (pid <= 0 || pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
        char path[FT_PATH_MAX + 512];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (unlink(path) == 0) ft_info("removed %s (left by an interrupted run, process %ld)", path, pid);
    }
    closedir(d);
}

static ft_status ft_run_dirs(ft_run_state *R) {
    const char *d = R->r->output_dir;
    if (!d || !d[0]) return FT_ERR(FT_E_ARG, "output_dir: not set");
    if (strlen(d) > FT_PATH_MAX - 64) return FT_ERR(FT_E_ARG, "output_dir: path too long");
    snprintf(R->dir, sizeof R->dir, "%s", d);
    snprintf(R->ckpt_dir, sizeof R->ckpt_dir, "%s/checkpoints", d);
    snprintf(R->samples_dir, sizeof R->samples_dir, "%s/samples", d);
    snprintf(R->final_dir, sizeof R->final_dir, "%s/final", d);
    snprintf(R->best_dir, sizeof R->best_dir, "%s/best", d);
    snprintf(R->metrics_path, sizeof R->metrics_path, "%s/metrics.jsonl", d);
    snprintf(R->svg_path, sizeof R->svg_path, "%s/loss.svg", d);
    snprintf(R->tb_dir, sizeof R->tb_dir, "%s/tensorboard", d);
    FT_TRY(ft_mkdir_p(R->dir));
    /* one run per directory at a time */
    char lock[FT_PATH_MAX + 8];
    snprintf(lock, sizeof lock, "%s/.lock", d);
    R->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (R->lock_fd < 0) return FT_ERR(FT_E_IO, "output_dir: cannot write in %s: %s", d, strerror(errno));
    if (flock(R->lock_fd, LOCK_EX | LOCK_NB) != 0)
        return FT_ERR(FT_E_IO, "output_dir: %s is in use by another ftune run (it holds %s)", d, lock);
    FT_TRY(ft_mkdir_p(R->ckpt_dir));
    FT_TRY(ft_mkdir_p(R->samples_dir));
    ft_ckpt_clean_tmp(R->ckpt_dir);
    ft_run_clean_stale(R->dir);
    ft_run_clean_stale(R->samples_dir);
    ft_run_clean_stale(R->final_dir);
    ft_run_clean_stale(R->best_dir);
    return FT_OK;
}

/* The next key of a resolved recipe file (ft_recipe_write: "section:" lines, "  key: value" lines,
 * "    - item" lines under a list key) as "section.key" and its value (a list's items joined by
 * ", "); 0 at the end. */
static int ft_recipe_next_key(FILE *f, char *section, char *key, size_t kcap, char *val, size_t vcap) {
    char line[8192];
    key[0] = val[0] = 0;
    long back = ftell(f);
    while (fgets(line, (int)sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        if (line[0] == '#' || !line[0]) continue;
        if (line[0] != ' ') { /* a section */
            if (key[0]) break;
            snprintf(section, 128, "%.*s", (int)strcspn(line, ":"), line);
        } else if (strncmp(line, "    - ", 6) == 0 && key[0]) { /* a list item */
            size_t n = strlen(val);
            snprintf(val + n, vcap - n, "%s%s", n ? ", " : "", line + 6);
        } else { /* "  key: value" */
            if (key[0]) break;
            const char *k = line + strspn(line, " "), *colon = strchr(k, ':');
            snprintf(key, kcap, "%s.%.*s", section, colon ? (int)(colon - k) : (int)strlen(k), k);
            snprintf(val, vcap, "%s", colon && colon[1] == ' ' ? colon + 2 : "");
        }
        back = ftell(f);
    }
    if (key[0]) fseek(f, back, SEEK_SET); /* the line that ended this key starts the next */
    return key[0] != 0;
}

/* "training.lr 0.003 -> 0.001, lora.alpha 16 -> 32" for the keys whose values differ between two
 * resolved recipe files (both list every key in the same order), into out. */
static void ft_recipe_changes(FILE *a, FILE *b, char *out, size_t cap) {
    char sa[128] = "", sb[128] = "", ka[256], kb[256], va[1024], vb[1024], item[sizeof ka + 2 * sizeof va + 16];
    size_t n = 0;
    out[0] = 0;
    for (;;) {
        const int ha = ft_recipe_next_key(a, sa, ka, sizeof ka, va, sizeof va);
        const int hb = ft_recipe_next_key(b, sb, kb, sizeof kb, vb, sizeof vb);
        if (!ha && !hb) break;
        const int other = ha != hb || strcmp(ka, kb) != 0; /* another build's key set: the first difference only */
        if (other) snprintf(item, sizeof item, "%s%s", n ? ", " : "", ha ? ka : kb);
        else if (strcmp(va, vb) != 0) snprintf(item, sizeof item, "%s%s %s -> %s", n ? ", " : "", ka, va, vb);
        else continue;
        const size_t k = strlen(item);
        if (n + k + 6 > cap) { /* no room for more: say so */
            if (n + 6 <= cap) memcpy(out + n, ", ...", 6);
            break;
        }
        memcpy(out + n, item, k + 1);
        n += k;
        if (other) break;
    }
}

/* The resolved recipe as the run directory's record. On resume a changed recipe is reported, key by key. */
static ft_status ft_run_write_recipe(ft_run_state *R) {
    char path[FT_PATH_MAX + 16], tmp[FT_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/recipe.yaml", R->dir);
    if (!R->o->resume) return ft_recipe_write(R->r, path);
    snprintf(tmp, sizeof tmp, "%s/recipe.resume.yaml", R->dir);
    FT_TRY(ft_recipe_write(R->r, tmp));
    FILE *a = fopen(path, "rb"), *b = fopen(tmp, "rb");
    char changes[2048] = "";
    if (a && b) ft_recipe_changes(a, b, changes, sizeof changes);
    if (a) fclose(a);
    if (b) fclose(b);
    if (changes[0])
        ft_warn("the recipe differs from the one this run started with (%s): %s; continuing with the new one", path,
                changes);
    if (rename(tmp, path) != 0) return FT_ERR(FT_E_IO, "%s: cannot rename into place: %s", path, strerror(errno));
    return FT_OK;
}

/* One line on what the plan predicts; a warning when it predicts running out of a device whose
 * size is known (a GPU, or model.memory_gib: the CPU's free RAM is only a snapshot). */
static void ft_run_plan_note(const ft_plan *p) {
    char need[48], have[48], host[96] = "";
    ft_plan_format_bytes(p->total_bytes, need, sizeof need);
    ft_plan_format_bytes(p->device_bytes, have, sizeof have);
    if (p->pinned_bytes > 0) {
        char b[48];
        ft_plan_format_bytes(p->pinned_bytes, b, sizeof b);
        snprintf(host, sizeof host, " + %s of layer boundaries in host memory", b);
    }
    const char *src = p->mem_source ? p->mem_source : "the device's figure";
    const int known = p->dev.backend == FT_BACKEND_CUDA || (p->mem_source && strcmp(p->mem_source, "model.memory_gib") == 0);
    if (p->fits || !known)
        ft_info("run: the plan predicts %s of memory%s; the %s device has %s (%s)", need, host, p->dev.name, have, src);
    else
        ft_warn("run: the plan predicts %s of memory%s, more than the %s the %s device has (%s): %s", need, host, have,
                p->dev.name, src, p->advice);
}

/* The tokenizer the run's data is made with: data.tokenizer, else the model's. */
static const char *ft_run_tok_dir(const ft_recipe *r) {
    return r->data.tokenizer && r->data.tokenizer[0] ? r->data.tokenizer : r->model.path;
}

/* "run: training the rows of <|eot_id|> (128009), ..." */
static void ft_run_note_tokens(const ft_run_state *R) {
    const ft_lora_tokens *tk = &R->lora->tok;
    ft_tok *tok = NULL;
    if (ft_model_tokenizer(&tok, ft_run_tok_dir(R->r)) != FT_OK) ft_error_clear(), tok = NULL;
    char names[1024];
    size_t o = 0;
    names[0] = 0;
    for (int64_t j = 0; j < tk->k && j < 8 && o + 1 < sizeof names; j++) {
        const char *p = tok ? ft_tok_id_to_piece(tok, tk->ids[j]) : NULL;
        int n = snprintf(names + o, sizeof names - o, "%s%s (%d)", j ? ", " : "", p ? p : "?", tk->ids[j]);
        o += n > 0 ? (size_t)n : 0;
    }
    ft_info("run: lora.trainable_tokens: the embedding%s rows of %lld token%s are trained whole: %s%s",
            R->lora->cfg.tied ? " (tied lm_head)" : " and lm_head", (long long)tk->k, tk->k > 1 ? "s" : "", names,
            tk->k > 8 ? ", ..." : "");
    ft_tok_free(tok);
}

static ft_status ft_run_build_model(ft_run_state *R) {
    const ft_recipe *r = R->r;
    ft_load_opts lo = {0};
    ft_lora_cfg lc = {0};
    ft_adamw_cfg oc = {0};
    FT_TRY(ft_quant_parse(r->model.quant, &lo.quant));
    lo.model.recompute = r->training.recompute;
    lo.model.host_boundaries = r->training.host_boundaries; /* (the model ignores it without recompute) */
    lo.model.keep_attention = r->training.keep_attention;   /* (likewise) */
    lo.model.mlp_chunk = r->training.mlp_chunk;             /* (likewise) */
    lo.model.boundary_every = r->training.boundary_every;   /* (likewise) */
    FT_TRY(ft_lora_parse_targets(r->lora.targets, &lc.targets));
    lc.r = r->lora.r, lc.alpha = r->lora.alpha, lc.dropout = r->lora.dropout, lc.rslora = r->lora.rslora;
    lc.dora = r->lora.dora;
    lc.seed = (uint64_t)r->training.seed;
    FT_TRY(ft_backend_open(&R->be, r->model.device, (int)r->model.threads));
    if (r->model.memory_gib > 0)
        ft_backend_set_memory_limit(R->be, (int64_t)(r->model.memory_gib * 1024.0 * 1024.0 * 1024.0));
    /* The run's own plan (this recipe, this backend) before the first allocation, so that running
     * out of memory anywhere (loading, LoRA, optimizer state, the first step's activations) says
     * what the plan predicted and which knob to turn. */
    FT_TRY(ft_calloc((void **)&R->plan, sizeof *R->plan, "run plan"));
    FT_TRY(ft_plan_for_backend(R->plan, NULL, r, R->be, NULL));
    ft_run_plan_note(R->plan);
    FT_TRY(ft_run_check_disk(R));
    lo.model.keep_layers = R->plan->keep_layers; /* the recipe's, or what `max` found room for */
    if (R->plan->keep_layers_max)
        ft_info("run: training.keep_layers: max keeps %lld of %lld layers", (long long)R->plan->keep_layers,
                (long long)R->plan->dims.L);
    lc.vlm = R->plan->cfg.vlm; /* PEFT names of a vision-language checkpoint's text model */
    FT_TRY(ft_model_load(&R->model, R->be, r->model.path, &lo));
    const ft_model_dims *d = ft_model_get_dims(R->model);
    ft_lora_shapes shapes = ft_model_lora_shapes(d);
    int32_t *tokens = NULL;
    FT_TRY(ft_trainable_tokens_pick(r->lora.tokens, r->lora.n_tokens, "lora.trainable_tokens", R->be, R->model, R->ds, ft_run_tok_dir(r),
                                    &tokens, &lc.n_tokens));
    lc.tokens = tokens, lc.tied = d->tied;
    ft_status st = ft_lora_create(&R->lora, R->be, &lc, &shapes, d->L);
    ft_free(tokens);
    FT_TRY(st);
    FT_TRY(ft_lora_init_tokens(R->lora, R->be, &ft_model_get_weights(R->model)->embed,
                               &ft_model_get_weights(R->model)->lm_head));
    if (R->lora->tok.k) ft_run_note_tokens(R);
    if (R->lora->tok.k && d->tied && r->exports.formats && strstr(r->exports.formats, "gguf"))
        return FT_ERR(FT_E_ARG, "export.formats: gguf: %s ties lm_head to its embeddings, and llama.cpp cannot apply "
                                "trainable-token rows to such a model as an adapter (it would apply the embedding's "
                                "pair to the output too): drop gguf from export.formats and set export.merged, or "
                                "`ftune merge` the adapter after the run", r->model.path);
    if (r->lora.init && r->lora.init[0]) FT_TRY(ft_lora_load(R->lora, R->be, r->lora.init));
    ft_model_set_lora(R->model, R->lora);
    oc.beta1 = r->training.beta1, oc.beta2 = r->training.beta2, oc.eps = r->training.eps;
    oc.weight_decay = r->training.weight_decay, oc.clip = r->training.clip;
    FT_TRY(ft_adamw_create(&R->opt, R->be, R->lora->n_params, &oc));
    FT_TRY(ft_malloc((void **)&R->logits, (size_t)d->V * sizeof *R->logits, "generation logits"));
    return FT_OK;
}

/* The template's tokens this base never trained (trainer/untrained.h): a warning before the
 * night, not a stop; a check that cannot run says so and the run goes on. */
static void ft_run_check_untrained(ft_run_state *R) {
    const ft_recipe *r = R->r;
    int64_t n;
    if (ft_untrained_check(R->be, R->model, R->ds, r->model.path, ft_run_tok_dir(r), R->lora->tok.ids, R->lora->tok.k,
                           &n) != FT_OK) {
        ft_warn("cannot check the base for untrained template tokens: %s", ft_error_msg());
        ft_error_clear();
    }
}

static ft_status ft_run_plan(ft_run_state *R) {
    const ft_recipe *r = R->r;
    R->K = r->training.grad_accum;
    ft_dataset_info di;
    ft_dataset_get_info(R->ds, &di);
    /* rows per step: an epoch's rows in whole steps, as `ftune plan` counts them (a step that crosses
     * the end of an epoch takes its last rows from the next one) */
    const double rows_per_step = (double)r->training.micro_batch * (double)R->K;
    if (r->training.steps > 0) {
        R->total = r->training.steps;
    } else {
        R->total = (int64_t)ceil(r->training.epochs * (double)di.train_rows / rows_per_step - 1e-9);
        if (R->total < 1) R->total = 1;
    }
    FT_TRY(ft_sched_parse(r->training.schedule, &R->sched.type));
    R->sched.lr = r->training.lr;
    R->sched.total = R->total;
    R->sched.warmup = r->training.warmup > 0 ? r->training.warmup : llround(r->training.warmup_ratio * (double)R->total);
    R->sched.min_lr_ratio = r->training.min_lr_ratio;
    R->ctx = (ft_step_ctx){.m = R->model, .lora = R->lora, .opt = R->opt, .sched = &R->sched, .grad_accum = R->K,
                           .seed = (uint64_t)r->training.seed};
    const int64_t V = ft_model_get_dims(R->model)->V;
    if (di.max_token_id >= V)
        return FT_ERR(FT_E_ARG, "data.tokenizer: the data has token id %d but %s has a vocabulary of %lld: the "
                                "tokenizer does not belong to this model",
                      di.max_token_id, r->model.path, (long long)V);
    FT_TRY(ft_calloc((void **)&R->mb, (size_t)R->K * sizeof *R->mb, "micro-batches"));
    for (int64_t k = 0; k < R->K; k++) FT_TRY(ft_rows_alloc(R->ds, &R->mb[k]));
    ft_info("run: %s: %lld steps of %lld x %lld rows x %lld tokens (%.2f epochs of %lld rows), "
            "warmup %lld, %s lr %g",
            R->dir, (long long)R->total, (long long)R->K, (long long)r->training.micro_batch,
            (long long)r->data.seq_len, (double)R->total * rows_per_step / (double)(di.train_rows > 0 ? di.train_rows : 1),
            (long long)di.train_rows, (long long)R->sched.warmup, ft_sched_name(R->sched.type), r->training.lr);
    ft_info("run: %lld %s parameters (r=%lld, alpha=%g, targets %s) on %s", (long long)R->lora->n_params,
            r->lora.dora ? "DoRA" : "LoRA", (long long)r->lora.r, r->lora.alpha, r->lora.targets, ft_backend_name(R->be));
    return FT_OK;
}

/* ---- the loop ----------------------------------------------------------------------------- */

static ft_status ft_run_get(void *user, int64_t k, ft_batch *out) {
    const ft_rows *rw = &((ft_run_state *)user)->mb[k];
    *out = (ft_batch){.B = rw->B, .T = rw->T, .tokens = rw->tokens, .labels = rw->labels, .pos = rw->pos,
                      .doc_start = rw->doc_start};
    return FT_OK;
}

static int ft_run_guard(void *user, const ft_step_info *info) {
    ft_run_state *R = user;
    R->verdict = ft_guard_check(&R->guard, R->r->training.spike_zscore, info->loss, info->grad_norm, &R->z);
    return R->verdict == FT_GUARD_OK;
}

static void ft_run_log_skip(ft_run_state *R, const ft_step_info *s) {
    ft_progress_clear(&R->prog);
    if (R->verdict == FT_GUARD_NONFINITE)
        ft_warn("step %lld skipped: non-finite loss %g or gradient norm %g (update not applied)", (long long)s->step,
                s->loss, s->grad_norm);
    else
        ft_warn("step %lld skipped: loss %.4f is a spike (z-score %.1f > training.spike_zscore %g; recent mean %.4f)",
                (long long)s->step, s->loss, R->z, R->r->training.spike_zscore, R->guard.mean);
}

static void ft_run_record(ft_run_state *R, const ft_step_info *s) {
    ft_metrics_train t = {.step = s->step, .loss = s->loss, .lr = s->lr, .grad_norm = s->grad_norm,
                          .targets = s->targets, .tokens = s->tokens, .epoch = ft_dataset_epoch(R->ds),
                          .skipped = s->skipped ? ft_guard_verdict_name(R->verdict) : NULL, .z = R->z,
                          .elapsed_s = ft_run_elapsed(R), .step_s = s->seconds,
                          .tok_s = s->seconds > 0 ? (double)s->tokens / s->seconds : 0,
                          .mem_bytes = ft_backend_bytes_in_use(R->be), .rss_bytes = ft_rss_bytes()};
    if (ft_metrics_train_line(R->metrics, &t) != FT_OK) { /* a log: carry on, the checkpoint decides */
        ft_progress_clear(&R->prog);
        ft_warn("%s", ft_error_msg());
    }
    ft_progress_step p = {.step = s->step, .loss = s->loss, .lr = s->lr, .tok_s = t.tok_s, .step_s = s->seconds,
                          .mem_bytes = t.mem_bytes, .skipped = s->skipped};
    ft_progress_update(&R->prog, &p);
}

void ft_run_plot(ft_run_state *R) {
    char title[FT_PATH_MAX + 32];
    snprintf(title, sizeof title, "ftune: %s", R->dir);
    if (ft_metrics_plot(R->metrics, R->svg_path, title, R->total) != FT_OK) {
        ft_progress_clear(&R->prog);
        ft_warn("loss chart not updated: %s", ft_error_msg());
    }
}

static ft_status ft_run_interrupted(ft_run_state *R) {
    ft_progress_clear(&R->prog);
    int sig = ft_run_signal;
    ft_info("received %s: stopping after step %lld", sig == SIGINT ? "SIGINT" : "SIGTERM", (long long)R->step);
    ft_status st;
    if (R->step == 0) {
        st = FT_ERR(FT_E_INTERRUPTED, "interrupted before the first step: nothing to save");
    } else {
        if (R->last_ckpt_step != R->step) {
            ft_run_plot(R);
            FT_TRY(ft_run_save_checkpoint(R));
        }
        st = FT_ERR(FT_E_INTERRUPTED,
                    "interrupted at step %lld: checkpoint written to %s; resume with: ftune train %s --resume",
                    (long long)R->step, R->last_ckpt_path, R->o->recipe_path ? R->o->recipe_path : "RECIPE");
    }
    ft_error_note_signal(sig);
    return st;
}

/* The loss diverged (guard.h): nothing of the diverged state is saved. The advice names the
 * newest checkpoint written before the rise began, if rotation kept one. */
static ft_status ft_run_diverged(ft_run_state *R, const ft_step_info *s) {
    const ft_recipe *r = R->r;
    const ft_guard *g = &R->guard;
    const char *recipe = R->o->recipe_path ? R->o->recipe_path : "RECIPE";
    /* the first step of the run of high losses; skipped steps inside it make it earlier than
     * step - above + 1 (a checkpoint of an older version has no above_from: that estimate) */
    const int64_t rise = g->above_from > 0 ? g->above_from : R->step - g->above + 1;
    ft_progress_clear(&R->prog);
    ft_run_plot(R);
    int64_t *steps = NULL, n = 0, before = -1;
    if (ft_ckpt_list(R->ckpt_dir, &steps, &n) == FT_OK)
        for (int64_t i = 0; i < n; i++)
            if (steps[i] < rise) before = steps[i];
    free(steps);
    ft_error_clear();
    const int64_t rb = R->guard.rollbacks, max_rb = r->training.max_rollbacks;
    if (before >= 0 && rb < max_rb) { /* training.max_rollbacks: back to before the rise, a lower rate (ft_run) */
        ft_warn("step %lld: the loss diverged: %d steps in a row (from step %lld) had a loss above %.4g (this step's "
                "%.4g); going back to step %lld's checkpoint",
                (long long)R->step, FT_GUARD_DIVERGE_STEPS, (long long)rise,
                ft_guard_diverge_bound(g, r->training.diverge_factor), s->loss, (long long)before);
        R->rollback_step = before;
        return FT_ERR(FT_E_STOPPED, "diverged at step %lld: rolling back to step %lld", (long long)R->step,
                      (long long)before);
    }
    char advice[FT_PATH_MAX + 200];
    if (before >= 0) {
        char p[FT_PATH_MAX + 32];
        ft_ckpt_path(p, sizeof p, R->ckpt_dir, before);
        snprintf(advice, sizeof advice, "lower training.lr, then resume from before the rise with: ftune train %s --resume %s",
                 recipe, p);
    } else {
        snprintf(advice, sizeof advice, "no checkpoint is older than the rise: lower training.lr and start again in "
                                        "another output_dir (or after deleting %s)", R->dir);
    }
    /* the bound is the larger of factor x best and best + margin: say which one it is */
    char bound[160];
    const double b = ft_guard_diverge_bound(g, r->training.diverge_factor);
    if (r->training.diverge_factor * g->best >= g->best + FT_GUARD_DIVERGE_MARGIN)
        snprintf(bound, sizeof bound, "%.4g, training.diverge_factor %g x its lowest recent mean (%.4g, step %lld)", b,
                 r->training.diverge_factor, g->best, (long long)g->best_step);
    else
        snprintf(bound, sizeof bound, "%.4g, its lowest recent mean (%.4g, step %lld) + %g (more than "
                 "training.diverge_factor %g x it)", b, g->best, (long long)g->best_step, FT_GUARD_DIVERGE_MARGIN,
                 r->training.diverge_factor);
    char rbs[160] = "";
    if (rb > 0)
        snprintf(rbs, sizeof rbs, " after %lld rollback%s (training.max_rollbacks %lld; the learning rate is %g)",
                 (long long)rb, rb == 1 ? "" : "s", (long long)max_rb, R->sched.lr);
    return FT_ERR(FT_E_STOPPED,
                  "stopped at step %lld%s: the loss diverged: %d steps in a row (from step %lld) had a loss above %s; "
                  "this step's was %.4g. No checkpoint was written of it (training.lr is %g); %s",
                  (long long)R->step, rbs, FT_GUARD_DIVERGE_STEPS, (long long)rise, bound, s->loss, r->training.lr,
                  advice);
}

/* ---- fault injection: a test hook ------------------------------------------------------------------
 * The resume tests (tests/cli/run_resume.sh, tests/gpu/resume.sh) must interrupt a run at a known
 * step on any machine. A script that waits for a checkpoint file and then sends a signal races the
 * run: on an H100 the whole 24-step tiny run ended within the 0.3 s between the step-8 checkpoint
 * and the SIGKILL. So the run can signal itself at the end of step N, after everything that step
 * writes (its metrics line, its evaluation, and its checkpoint when one is due):
 *   FT_FAULT_KILL_AFTER_STEP=N  raise(SIGKILL): a crash at a known point. Nothing is flushed or
 *                               cleaned up, as in a real kill; --resume must continue from the last
 *                               checkpoint and drop whatever the run logged after it.
 *   FT_FAULT_TERM_AFTER_STEP=N  raise(SIGTERM): the handler's flag stops the loop before step N+1,
 *                               exactly as a SIGTERM that arrives during step N does.
 * Unset or empty: off. Not a user setting (docs/design.md lists them as test hooks); a run that has
 * one armed says so on stderr, so that it never surprises anyone. */
ft_status ft_run_hook(const char *name, int64_t min, const char *what, int64_t *value, int *set) {
    *set = 0;
    const char *v = getenv(name);
    if (!v || !*v) return FT_OK;
    char *end = NULL;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (errno != 0 || *end != '\0' || n < min)
        return FT_ERR(FT_E_ARG, "%s=%s: expected a number >= %lld (a test hook; unset it for a normal run)", name, v,
                      (long long)min);
    *value = (int64_t)n, *set = 1;
    ft_warn("%s=%lld: test hook armed: %s", name, n, what);
    return FT_OK;
}

static ft_status ft_run_fault_step(const char *name, const char *sig_name, int64_t *step) {
    char what[96];
    int set;
    *step = 0;
    snprintf(what, sizeof what, "this run will raise %s on itself after that step", sig_name);
    return ft_run_hook(name, 1, what, step, &set);
}

static void ft_run_fault(const ft_run_state *R) {
    if (R->step == R->fault_term_step) raise(SIGTERM); /* sets ft_run_signal; the loop stops next */
    if (R->step == R->fault_kill_step) raise(SIGKILL); /* does not return */
}

static ft_status ft_run_loop(ft_run_state *R) {
    const ft_recipe *r = R->r;
    ft_progress_init(&R->prog, R->total);
    R->t_start = ft_run_now();
    R->last_ckpt_time = R->t_start;
    if (R->step < R->total && ft_run_patience_out(R)) {
        ft_info("the run stopped early at step %lld (eval.patience %lld: no validation loss below %.4f, step %lld, "
                "in %lld evaluations); writing the final adapter",
                (long long)R->step, (long long)r->eval.patience, R->val.loss, (long long)R->val.step,
                (long long)R->val.since);
        return FT_OK;
    }
    if (r->eval.at_start && R->step == 0 && R->step < R->total) { /* the base model's own, the adapter at zero */
        FT_TRY(ft_run_eval(R));
        ft_run_plot(R);
    }
    while (R->step < R->total) {
        if (ft_run_signal) return ft_run_interrupted(R);
        if (ft_run_limit_reached(R)) return ft_run_limit_stop(R);
        const double t_it = ft_run_now(); /* training.max_hours: the data, the step and its record */
        for (int64_t k = 0; k < R->K; k++) FT_TRY(ft_dataset_next(R->ds, &R->mb[k]));
        ft_step_info s;
        R->verdict = FT_GUARD_OK;
        R->z = 0;
        FT_TRY(ft_train_step(&R->ctx, R->step, ft_run_get, R, ft_run_guard, R, &s));
        R->step++;
        R->tokens_seen += s.tokens;
        ft_guard_record(&R->guard, R->verdict, s.loss, R->step, r->training.diverge_factor);
        if (s.skipped) ft_run_log_skip(R, &s);
        ft_run_record(R, &s);
        ft_run_limit_step(R, ft_run_now() - t_it);
        if (s.skipped && r->training.max_skips > 0 && R->guard.consecutive >= r->training.max_skips) {
            ft_run_plot(R);
            FT_TRY(ft_run_save_checkpoint(R));
            return FT_ERR(FT_E_STOPPED,
                          "stopped at step %lld: %lld steps in a row were skipped (training.max_skips), the last for "
                          "%s; the adapter is that of the last good step, saved in %s. Lower training.lr or set "
                          "training.clip, check the data, then resume with: ftune train %s --resume",
                          (long long)R->step, (long long)R->guard.consecutive,
                          R->verdict == FT_GUARD_SPIKE ? "a loss spike" : "a non-finite loss or gradient",
                          R->last_ckpt_path, R->o->recipe_path ? R->o->recipe_path : "RECIPE");
        }
        if (!s.skipped && ft_guard_diverged(&R->guard)) return ft_run_diverged(R, &s);
        int last = R->step == R->total;
        if (last || (r->eval.every_steps > 0 && R->step % r->eval.every_steps == 0)) {
            FT_TRY(ft_run_eval(R));
            ft_run_plot(R);
        }
        const int early = !last && ft_run_patience_out(R);
        if (early) {
            ft_progress_clear(&R->prog);
            ft_info("early stop at step %lld of %lld: %lld evaluation%s in a row without a validation loss below %.4f "
                    "(step %lld; eval.patience %lld)",
                    (long long)R->step, (long long)R->total, (long long)R->val.since, R->val.since == 1 ? "" : "s",
                    R->val.loss,
                    (long long)R->val.step, (long long)r->eval.patience);
            last = 1;
        }
        int ckpt_on = r->checkpoint.every_steps > 0 || r->checkpoint.every_minutes > 0;
        int due = (r->checkpoint.every_steps > 0 && R->step % r->checkpoint.every_steps == 0) ||
                  (r->checkpoint.every_minutes > 0 && ft_run_now() - R->last_ckpt_time >= 60 * r->checkpoint.every_minutes);
        if (due || (last && ckpt_on)) {
            ft_run_plot(R);
            FT_TRY(ft_run_save_checkpoint(R));
        }
        ft_run_fault(R);
        if (early) break;
    }
    ft_progress_clear(&R->prog);
    return FT_OK;
}

/* ---- entry -------------------------------------------------------------------------------- */

/* OUTPUT_DIR/outcome.json: how this process's run ended ({"outcome", "step", "message"}), for
 * `ftune status` the morning after, when the terminal that showed the last line is gone. Removed
 * when a run starts, so a SIGKILL (nothing written) never leaves an older run's outcome standing. */
static void ft_run_outcome(const ft_run_state *R, ft_status st) {
    char path[FT_PATH_MAX + 32], msg[1024];
    snprintf(path, sizeof path, "%s/outcome.json", R->dir);
    snprintf(msg, sizeof msg, "%s", st == FT_OK ? "" : ft_error_msg());
    const int sig = ft_error_signal();
    const char *what = st == FT_OK ? (R->step < R->total ? "finished early" : "finished")
                       : st == FT_E_INTERRUPTED ? "interrupted"
                       : st == FT_E_STOPPED     ? "stopped by its guard"
                       : st == FT_E_TIMEUP      ? "stopped at its time limit"
                                                : "failed";
    cJSON *j = cJSON_CreateObject();
    char *text = NULL;
    if (j && cJSON_AddStringToObject(j, "outcome", what) && cJSON_AddNumberToObject(j, "step", (double)R->step) &&
        cJSON_AddStringToObject(j, "message", msg))
        text = cJSON_PrintUnformatted(j);
    if (!text || ft_write_text(path, text) != FT_OK)
        ft_warn("%s: not written (%s)", path, text ? ft_error_msg() : "out of memory");
    cJSON_free(text);
    cJSON_Delete(j);
    if (st != FT_OK) { /* the run's own status and message stay what main reports */
        ft_error_set(st, __FILE__, __LINE__, "%s", msg);
        if (sig) ft_error_note_signal(sig);
    }
}

static void ft_run_free(ft_run_state *R) {
    if (R->mb)
        for (int64_t k = 0; k < R->K; k++) ft_rows_free(&R->mb[k]);
    ft_free(R->mb);
    ft_free(R->logits);
    ft_metrics_close(R->metrics);
    if (R->model) ft_model_set_lora(R->model, NULL);
    ft_adamw_free(R->opt, R->be);
    ft_lora_free(R->lora, R->be);
    ft_model_free(R->model);
    ft_backend_free(R->be);
    ft_free(R->plan); /* after the backend: its explanation hook reads the plan */
    ft_dataset_free(R->ds);
    if (R->lock_fd >= 0) close(R->lock_fd);
}

ft_status ft_run(const ft_recipe *r, const ft_run_opts *opts) {
    ft_run_opts eff = *opts; /* --resume auto becomes latest or nothing, once the checkpoints are listed */
    const ft_run_opts *o = &eff;
    ft_run_state R;
    memset(&R, 0, sizeof R);
    R.r = r, R.o = o, R.lock_fd = -1, R.last_ckpt_step = -1, R.last_eval_step = -1, R.rollback_step = -1;
    R.val = (ft_val_best){.loss = NAN, .step = -1, .since = 0};
    ft_sigsave save;
    ft_signals_install(&save);
    ft_status st;
    int owned = 0;
    FT_CHECK_GOTO(st, ft_run_limit_init(&R), done);
    FT_CHECK_GOTO(st, ft_run_fault_step("FT_FAULT_KILL_AFTER_STEP", "SIGKILL", &R.fault_kill_step), done);
    FT_CHECK_GOTO(st, ft_run_fault_step("FT_FAULT_TERM_AFTER_STEP", "SIGTERM", &R.fault_term_step), done);
    FT_CHECK_GOTO(st, ft_run_dirs(&R), done);
    owned = 1; /* the directory's lock is ours: its outcome.json too */
    ft_run_limit_note(&R);
    {
        char outcome[FT_PATH_MAX + 32];
        snprintf(outcome, sizeof outcome, "%s/outcome.json", R.dir);
        unlink(outcome);
    }
    {
        int64_t *steps, n;
        FT_CHECK_GOTO(st, ft_ckpt_list(R.ckpt_dir, &steps, &n), done);
        int64_t newest = n ? steps[n - 1] : -1;
        free(steps);
        struct stat sb;
        if (o->resume && strcmp(o->resume, "auto") != 0 && strcmp(o->resume, "latest") != 0 &&
            stat(o->resume, &sb) != 0) { /* a path the user typed: before the data and the weights, exit 2 */
            st = FT_ERR(FT_E_ARG, "--resume %s: %s (give a checkpoint file, 'latest' or 'auto')", o->resume,
                        strerror(errno));
            goto done;
        }
        if (o->resume && strcmp(o->resume, "auto") == 0) {
            eff.resume = newest >= 0 ? "latest" : NULL;
            if (newest < 0) {
                /* checkpoints set aside as corrupt by an earlier --resume-fallback: say what starting over drops */
                int corrupt = 0;
                DIR *dp = opendir(R.ckpt_dir);
                for (struct dirent *e; dp && (e = readdir(dp));) {
                    const size_t l = strlen(e->d_name);
                    corrupt += l > 8 && strcmp(e->d_name + l - 8, ".corrupt") == 0;
                }
                if (dp) closedir(dp);
                if (corrupt)
                    ft_warn("--resume auto: %s holds only checkpoints set aside as corrupt (%d *.corrupt): starting the "
                            "run over; its metrics.jsonl is rewritten", R.ckpt_dir, corrupt);
                else
                    ft_info("--resume auto: no checkpoint in %s: starting the run", R.ckpt_dir);
            }
        }
        if (o->resume && newest < 0 && strcmp(o->resume, "latest") == 0) {
            st = FT_ERR(FT_E_ARG, "%s: no checkpoint to resume from (run 'ftune train %s' without --resume to start)",
                        R.ckpt_dir, o->recipe_path ? o->recipe_path : "RECIPE");
            goto done;
        }
        if (!o->resume && newest >= 0) {
            st = FT_ERR(FT_E_ARG,
                        "%s holds checkpoints of an earlier run (up to step %lld): continue it with 'ftune train %s "
                        "--resume', or choose another output_dir (or delete that one) to start over",
                        R.ckpt_dir, (long long)newest, o->recipe_path ? o->recipe_path : "RECIPE");
            goto done;
        }
    }
    FT_CHECK_GOTO(st, ft_dataset_open(&R.ds, r, R.dir), done);
    if (ft_run_signal) {
        st = FT_ERR(FT_E_INTERRUPTED, "interrupted while preparing the data: nothing to save");
        ft_error_note_signal(ft_run_signal);
        goto done;
    }
    FT_CHECK_GOTO(st, ft_run_build_model(&R), done);
    ft_run_check_untrained(&R);
    FT_CHECK_GOTO(st, ft_run_plan(&R), done);
    if (o->resume) FT_CHECK_GOTO(st, ft_run_resume(&R), done);
    ft_run_check_best(&R);
    if (r->checkpoint.every_steps == 0 && !(r->checkpoint.every_minutes > 0))
        ft_warn("checkpoint.every_steps and checkpoint.every_minutes are both 0: no checkpoint is written while the run "
                "trains (SIGINT/SIGTERM still save one): a crash or SIGKILL loses all of it");
    /* only now: a resume refused above must not rewrite the run's record of its recipe, which
     * `ftune export CHECKPOINT` reads (lora.alpha, model.path) */
    FT_CHECK_GOTO(st, ft_run_write_recipe(&R), done);
    FT_CHECK_GOTO(st, ft_metrics_open_tb(&R.metrics, R.metrics_path, ft_run_tb_dir(&R), o->resume ? R.step : -1,
                                         R.guard.rollbacks), done);
    if (R.step >= R.total)
        ft_info("the run is already complete at step %lld (training.steps %lld); writing the final adapter",
                (long long)R.step, (long long)R.total);
    st = ft_run_loop(&R);
    while (st == FT_E_STOPPED && R.rollback_step >= 0) { /* the loss diverged: training.max_rollbacks */
        ft_error_clear();
        FT_CHECK_GOTO(st, ft_run_rollback(&R), done);
        st = ft_run_loop(&R);
    }
    if (st != FT_OK) goto done;
    ft_run_plot(&R);
    FT_CHECK_GOTO(st, ft_run_write_final(&R), done);
    st = FT_OK;
done:
    ft_progress_clear(&R.prog);
    if (owned) ft_run_outcome(&R, st);
    ft_run_free(&R);
    ft_signals_restore(&save);
    return st;
}
