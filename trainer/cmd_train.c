/* cmd_train.c: `ftune train`, two ways.
 *
 *   ftune train RECIPE.yaml [--set key=value]... [--resume [latest|auto|CKPT]] [--resume-fallback]
 *       a recipe run (trainer/run.h): JSONL data, checkpoints, resume, metrics, evaluation, final/.
 *   ftune train --model DIR --tokens FILE [--steps N --lr X ...]
 *       the flag mode over token-id data (tests and reference comparisons): one line per
 *       optimizer step on stdout, optionally the first step's LoRA gradients (--dump-grads) and the
 *       trained adapter (--save), both under PEFT tensor names.
 * Both run the same optimizer step (train.h). `--resume` without a value means "latest". */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kernels/log.h"
#include "kernels/mem.h"
#include "trainer/cli.h"
#include "trainer/commands.h"
#include "trainer/hf_config.h"
#include "trainer/loader.h"
#include "trainer/plan.h"
#include "trainer/recipe.h"
#include "trainer/run.h"
#include "trainer/train.h"
#include "trainer/untrained.h"

static const ft_opt ft_train_opts[] = {
    {"model", FT_OPT_STR, "DIR", NULL, "Hugging Face model directory"},
    {"tokens", FT_OPT_STR, "FILE", NULL, "training token ids, one sequence per line"},
    {"quant", FT_OPT_STR, "nf4|none", "nf4", "storage of the frozen linear weights"},
    {"steps", FT_OPT_INT, "N", "10", "optimizer steps"},
    {"lr", FT_OPT_FLOAT, "X", "2e-4", "peak learning rate"},
    {"schedule", FT_OPT_STR, "S", "cosine", "constant, linear or cosine (with warmup)"},
    {"warmup", FT_OPT_INT, "N", "0", "warmup steps"},
    {"weight-decay", FT_OPT_FLOAT, "X", "0", "AdamW decoupled weight decay"},
    {"beta1", FT_OPT_FLOAT, "X", "0.9", "AdamW beta1"},
    {"beta2", FT_OPT_FLOAT, "X", "0.999", "AdamW beta2"},
    {"eps", FT_OPT_FLOAT, "X", "1e-8", "AdamW epsilon"},
    {"clip", FT_OPT_FLOAT, "X", "1.0", "max global gradient norm (0: off)"},
    {"lora-r", FT_OPT_INT, "R", "16", "LoRA rank"},
    {"lora-alpha", FT_OPT_FLOAT, "A", "32", "LoRA alpha"},
    {"lora-dropout", FT_OPT_FLOAT, "P", "0", "LoRA dropout"},
    {"lora-targets", FT_OPT_STR, "LIST", "all", "comma list of q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"},
    {"rslora", FT_OPT_FLAG, NULL, NULL, "scale by alpha/sqrt(r) instead of alpha/r"},
    {"dora", FT_OPT_FLAG, NULL, NULL, "DoRA: also train a magnitude per output row of each module (PEFT use_dora)"},
    {"lora-init", FT_OPT_STR, "FILE", NULL, "initial A/B from a safetensors file under PEFT names"},
    {"trainable-tokens", FT_OPT_STR, "LIST", NULL,
     "comma list of token ids (or token strings) whose embedding and lm_head rows are trained whole"},
    {"micro-batch", FT_OPT_INT, "B", "1", "sequences per micro-batch"},
    {"grad-accum", FT_OPT_INT, "K", "1", "micro-batches per optimizer step"},
    {"max-len", FT_OPT_INT, "T", "0", "truncate sequences to T tokens (0: no limit)"},
    {"seed", FT_OPT_INT, "S", "42", "seed for LoRA initialization and dropout"},
    {"no-recompute", FT_OPT_FLAG, NULL, NULL, "keep every layer's activations instead of recomputing"},
    {"mlp-chunk", FT_OPT_INT, "N", "0", "run each layer's MLP over N tokens at a time (training.mlp_chunk; 0: all)"},
    {"boundary-every", FT_OPT_INT, "N", "0",
     "keep every Nth layer's input only, the rest recomputed per segment (training.boundary_every; 0: every layer's)"},
    {"dump-grads", FT_OPT_STR, "OUT", NULL, "write the first step's LoRA gradients (safetensors)"},
    {"save", FT_OPT_STR, "OUT", NULL, "write the trained adapter weights (safetensors, PEFT names)"},
    {"device", FT_OPT_STR, "auto|cpu|cuda", "auto", "compute backend (auto: cuda when a GPU is present)"},
    {"threads", FT_OPT_INT, "N", "0", "CPU threads (0: all cores)"},
    {"set", FT_OPT_LIST, "KEY=VALUE", NULL, "with a recipe: override a recipe key (repeatable)"},
    {"resume", FT_OPT_STR, "[latest|auto|CKPT]", NULL,
     "with a recipe: continue from the newest (or the given) checkpoint; auto: the newest if there is one, else start "
     "(one command line for a job a scheduler may requeue)"},
    {"resume-fallback", FT_OPT_FLAG, NULL, NULL, "with --resume: if the checkpoint is corrupt, use the previous one"},
};

/* Options that belong to one mode only. */
static const char *const ft_flag_only[] = {"model", "tokens", "quant", "steps", "lr", "schedule", "warmup",
                                           "weight-decay", "beta1", "beta2", "eps", "clip", "lora-r", "lora-alpha",
                                           "lora-dropout", "lora-targets", "rslora", "dora", "lora-init", "trainable-tokens", "micro-batch",
                                           "grad-accum", "max-len", "seed", "no-recompute", "mlp-chunk", "boundary-every", "dump-grads", "save",
                                           "device", "threads"};

static int ft_is_recipe_arg(const char *a) {
    size_t n = strlen(a);
    return (n > 5 && strcmp(a + n - 5, ".yaml") == 0) || (n > 4 && strcmp(a + n - 4, ".yml") == 0);
}

static ft_status ft_cmd_train_recipe(ft_cli *cli) {
    const char *sets_joined, *resume;
    FT_TRY(ft_cli_str(cli, "set", &sets_joined));
    FT_TRY(ft_cli_str(cli, "resume", &resume));
    for (size_t i = 0; i < sizeof ft_flag_only / sizeof *ft_flag_only; i++)
        if (ft_cli_has(cli, ft_flag_only[i]))
            return FT_ERR(FT_E_ARG, "train: --%s is an option of the flag mode; with a recipe use --set KEY=VALUE "
                                    "(see docs/recipes.md)", ft_flag_only[i]);
    if (cli->npos != 1) return FT_ERR(FT_E_ARG, "train: give one recipe file (see 'ftune train --help')");
    /* split the joined --set values */
    const char *sets[64];
    int n_sets = 0;
    char *copy = sets_joined ? strdup(sets_joined) : NULL;
    if (sets_joined && !copy) return FT_ERR(FT_E_OOM, "out of memory");
    char *save = NULL;
    for (char *t = copy ? strtok_r(copy, "\n", &save) : NULL; t; t = strtok_r(NULL, "\n", &save)) {
        if (n_sets == 64) {
            free(copy);
            return FT_ERR(FT_E_ARG, "train: more than 64 --set options");
        }
        sets[n_sets++] = t;
    }
    ft_recipe r;
    memset(&r, 0, sizeof r);
    ft_status st = ft_recipe_load(&r, cli->pos[0], sets, n_sets);
    if (st == FT_OK) st = ft_recipe_check_files(&r);
    if (st == FT_OK) {
        ft_run_opts o = {.recipe_path = cli->pos[0], .resume = resume,
                         .resume_fallback = ft_cli_flag(cli, "resume-fallback"), .export_fn = ft_run_exports};
        if (o.resume_fallback && !o.resume) st = FT_ERR(FT_E_ARG, "train: --resume-fallback needs --resume");
        else st = ft_run(&r, &o);
    }
    ft_recipe_free(&r);
    free(copy);
    return st;
}

/* The flag run's plan on its backend, made as a recipe run makes its own (plan.h
 * ft_plan_for_backend), before the first allocation: running out of memory then says what the plan
 * predicted and which knob to turn (named by its recipe key: training.micro_batch is
 * --micro-batch). The planned seq_len is the longest sequence after --max-len. A flag run the
 * recipe keys cannot express (a sequence under 16 tokens) is planned at their bound; one that
 * cannot be planned at all runs without the explanation. NULL: no plan. */
static ft_plan *ft_flag_plan(ft_backend *be, const char *dir, const char *quant, const char *targets, int64_t r,
                             double dropout, int dora, int64_t B, int64_t K, int64_t steps, int64_t threads,
                             const ft_model_opts *mo, int64_t max_len, const ft_token_seqs *seqs) {
    int64_t T = 16;
    for (int64_t i = 0; i < seqs->n; i++) {
        int64_t len = seqs->start[i + 1] - seqs->start[i];
        if (max_len > 0 && len > max_len) len = max_len;
        if (len > T) T = len;
    }
    char k[12][4200];
    snprintf(k[0], sizeof k[0], "model.path=%s", dir);
    snprintf(k[1], sizeof k[1], "model.quant=%s", quant);
    snprintf(k[2], sizeof k[2], "lora.targets=%s", targets);
    snprintf(k[3], sizeof k[3], "lora.r=%lld", (long long)r);
    snprintf(k[4], sizeof k[4], "lora.dropout=%.17g", dropout);
    snprintf(k[5], sizeof k[5], "training.micro_batch=%lld", (long long)B);
    snprintf(k[6], sizeof k[6], "training.grad_accum=%lld", (long long)K);
    snprintf(k[7], sizeof k[7], "training.steps=%lld", (long long)steps);
    snprintf(k[8], sizeof k[8], "data.seq_len=%lld", (long long)T);
    snprintf(k[9], sizeof k[9], "training.recompute=%s", mo->recompute ? "true" : "false");
    snprintf(k[10], sizeof k[10], "training.mlp_chunk=%lld", (long long)mo->mlp_chunk);
    snprintf(k[11], sizeof k[11], "training.boundary_every=%lld", (long long)mo->boundary_every);
    char th[64];
    snprintf(th, sizeof th, "model.threads=%lld", (long long)threads);
    const char *sets[] = {k[0], k[1], k[2], k[3], k[4], k[5], k[6], k[7], k[8], k[9], k[10], k[11], th,
                          dora ? "lora.dora=true" : "lora.dora=false"};
    ft_recipe rec;
    ft_plan *p = NULL;
    ft_status st = ft_calloc((void **)&p, sizeof *p, "plan");
    if (st == FT_OK) st = ft_recipe_defaults(&rec, sets, (int)(sizeof sets / sizeof *sets));
    if (st == FT_OK) {
        st = ft_plan_for_backend(p, NULL, &rec, be, NULL);
        ft_recipe_free(&rec);
    }
    if (st != FT_OK) {
        ft_info("train: no plan, so no explanation if memory runs out (%s)", ft_error_msg());
        ft_error_clear();
        ft_free(p);
        return NULL;
    }
    char need[48], have[48];
    ft_plan_format_bytes(p->total_bytes, need, sizeof need);
    ft_plan_format_bytes(p->device_bytes, have, sizeof have);
    if (p->fits) ft_info("train: the plan predicts %s of memory at seq_len %lld; %s has %s", need, (long long)T,
                         p->dev.name, have);
    else ft_warn("train: the plan predicts %s of memory at seq_len %lld, more than %s's %s: %s", need, (long long)T,
                 p->dev.name, have, p->advice);
    return p;
}

/* The flag run's files, checked before the model loads: an unwritable --save failed after the last
 * step (the trained adapter lost), a missing --lora-init after the whole load. */
static ft_status ft_flag_files(const char *init, const char *save, const char *dump) {
    struct stat sb;
    if (init) {
        if (stat(init, &sb) != 0) return FT_ERR(FT_E_IO, "%s: cannot open: %s", init, strerror(errno));
        if (S_ISDIR(sb.st_mode)) return FT_ERR(FT_E_IO, "%s: is a directory, not a file (--lora-init)", init);
        if (access(init, R_OK) != 0) return FT_ERR(FT_E_IO, "%s: cannot read: %s", init, strerror(errno));
    }
    const char *outs[2] = {save, dump}, *names[2] = {"save", "dump-grads"};
    for (int i = 0; i < 2; i++) {
        if (!outs[i]) continue;
        char dir[4096];
        snprintf(dir, sizeof dir, "%s", outs[i]);
        char *sl = strrchr(dir, '/');
        if (!sl) snprintf(dir, sizeof dir, ".");
        else if (sl == dir) dir[1] = 0;
        else *sl = 0;
        if (stat(outs[i], &sb) == 0 && S_ISDIR(sb.st_mode))
            return FT_ERR(FT_E_ARG, "train: --%s %s is a directory (expected the path of a .safetensors file)", names[i],
                          outs[i]);
        if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
            return FT_ERR(FT_E_IO, "%s: cannot write: no directory %s", outs[i], dir);
        if (access(dir, W_OK | X_OK) != 0)
            return FT_ERR(FT_E_IO, "%s: cannot write in %s: %s", outs[i], dir, strerror(errno));
    }
    return FT_OK;
}

static ft_status ft_print_step(void *user, const ft_step_info *s) {
    (void)user;
    printf("step %lld loss %.6f lr %.6e grad_norm %.6f tokens %lld time %.3fs\n", (long long)s->step, s->loss, s->lr,
           s->grad_norm, (long long)s->targets, s->seconds);
    fflush(stdout);
    return FT_OK;
}

ft_status ft_cmd_train(int argc, char **argv) {
    ft_cli cli = {.command = "train",
                  .summary = "Train LoRA/QLoRA adapters: from a recipe (JSONL data, checkpoints, resume), or with "
                             "flags on token-id data.",
                  .positional = "[RECIPE.yaml]",
                  .opts = ft_train_opts, .nopts = sizeof ft_train_opts / sizeof *ft_train_opts};
    /* "--resume" may stand alone: give it its default value */
    char **args = malloc((size_t)(argc + 1) * sizeof *args);
    if (!args) return FT_ERR(FT_E_OOM, "out of memory");
    int nargs = 0;
    for (int i = 0; i < argc; i++) {
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(argv[i], "--resume") == 0 && (!next || strncmp(next, "--", 2) == 0 || ft_is_recipe_arg(next)))
            args[nargs++] = "--resume=latest";
        else
            args[nargs++] = argv[i];
    }
    args[nargs] = NULL;
    ft_status st = ft_cli_parse(&cli, nargs, args);
    ft_backend *be = NULL;
    ft_model *model = NULL;
    ft_lora *lora = NULL;
    ft_token_seqs seqs = {0};
    ft_plan *plan = NULL;
    char *tt_buf = NULL;    /* --trainable-tokens, split */
    int32_t *tt_ids = NULL; /* and resolved */
    if (st != FT_OK) goto done;
    if (cli.help) {
        ft_cli_usage(&cli);
        goto done;
    }
    if (cli.npos > 0 || ft_cli_has(&cli, "set") || ft_cli_has(&cli, "resume")) {
        st = ft_cmd_train_recipe(&cli);
        goto done;
    }
    if (ft_cli_has(&cli, "resume-fallback")) {
        st = FT_ERR(FT_E_ARG, "train: --resume-fallback works with a recipe and --resume");
        goto done;
    }
    const char *dir, *tokens, *quant_s, *sched_s, *targets_s, *init, *save, *device, *tt_s;
    char *tt_items[FT_LORA_MAX_TOKENS];
    int tt_n = 0;
    int64_t r, B, K, seed, threads, warmup, steps, max_len;
    double lr, wd, alpha, dropout;
    ft_train_cfg tc = {0};
    ft_lora_cfg lc = {0};
    ft_load_opts lo = {0};
    FT_CHECK_GOTO(st, ft_cli_req(&cli, "model", &dir), done);
    FT_CHECK_GOTO(st, ft_cli_req(&cli, "tokens", &tokens), done);
    FT_CHECK_GOTO(st, ft_cli_str(&cli, "quant", &quant_s), done);
    FT_CHECK_GOTO(st, ft_cli_str(&cli, "schedule", &sched_s), done);
    FT_CHECK_GOTO(st, ft_cli_str(&cli, "lora-targets", &targets_s), done);
    FT_CHECK_GOTO(st, ft_cli_str(&cli, "lora-init", &init), done);
    FT_CHECK_GOTO(st, ft_cli_str(&cli, "trainable-tokens", &tt_s), done);
    FT_CHECK_GOTO(st, ft_cli_str(&cli, "save", &save), done);
    FT_CHECK_GOTO(st, ft_cli_str(&cli, "dump-grads", &tc.dump_grads), done);
    FT_CHECK_GOTO(st, ft_cli_str(&cli, "device", &device), done);
    FT_CHECK_GOTO(st, ft_cli_int(&cli, "steps", &steps), done);
    FT_CHECK_GOTO(st, ft_cli_int(&cli, "lora-r", &r), done);
    FT_CHECK_GOTO(st, ft_cli_int(&cli, "micro-batch", &B), done);
    FT_CHECK_GOTO(st, ft_cli_int(&cli, "grad-accum", &K), done);
    FT_CHECK_GOTO(st, ft_cli_int(&cli, "seed", &seed), done);
    FT_CHECK_GOTO(st, ft_cli_int(&cli, "threads", &threads), done);
    FT_CHECK_GOTO(st, ft_cli_int(&cli, "warmup", &warmup), done);
    FT_CHECK_GOTO(st, ft_cli_int(&cli, "max-len", &max_len), done);
    FT_CHECK_GOTO(st, ft_cli_float(&cli, "lr", &lr), done);
    FT_CHECK_GOTO(st, ft_cli_float(&cli, "weight-decay", &wd), done);
    FT_CHECK_GOTO(st, ft_cli_float(&cli, "lora-alpha", &alpha), done);
    FT_CHECK_GOTO(st, ft_cli_float(&cli, "lora-dropout", &dropout), done);
    FT_CHECK_GOTO(st, ft_cli_float(&cli, "beta1", &tc.opt.beta1), done);
    FT_CHECK_GOTO(st, ft_cli_float(&cli, "beta2", &tc.opt.beta2), done);
    FT_CHECK_GOTO(st, ft_cli_float(&cli, "eps", &tc.opt.eps), done);
    FT_CHECK_GOTO(st, ft_cli_float(&cli, "clip", &tc.opt.clip), done);
    if (steps < 1 || B < 1 || K < 1 || r < 1 || warmup < 0 || max_len < 0 || !(lr >= 0)) {
        st = FT_ERR(FT_E_ARG, "train: need --steps, --micro-batch, --grad-accum, --lora-r >= 1, --warmup, --max-len "
                              ">= 0 and --lr >= 0");
        goto done;
    }
    FT_CHECK_GOTO(st, ft_quant_parse(quant_s, &lo.quant), done);
    FT_CHECK_GOTO(st, ft_sched_parse(sched_s, &tc.sched.type), done);
    FT_CHECK_GOTO(st, ft_lora_parse_targets(targets_s, &lc.targets), done);
    lo.model.recompute = !ft_cli_flag(&cli, "no-recompute");
    FT_CHECK_GOTO(st, ft_cli_int(&cli, "mlp-chunk", &lo.model.mlp_chunk), done);
    FT_CHECK_GOTO(st, ft_cli_int(&cli, "boundary-every", &lo.model.boundary_every), done);
    if (lo.model.mlp_chunk < 0 || lo.model.boundary_every < 0 || lo.model.boundary_every > FT_MODEL_MAX_SEGMENT) {
        st = FT_ERR(FT_E_ARG, "train: --mlp-chunk %lld (need >= 0), --boundary-every %lld (need 0..%d)",
                    (long long)lo.model.mlp_chunk, (long long)lo.model.boundary_every, FT_MODEL_MAX_SEGMENT);
        goto done;
    }
    tc.steps = steps, tc.micro_batch = B, tc.grad_accum = K, tc.max_len = max_len, tc.seed = (uint64_t)seed;
    tc.sched.lr = lr, tc.sched.warmup = warmup, tc.sched.total = steps;
    tc.opt.weight_decay = wd;
    lc.r = r, lc.alpha = alpha, lc.dropout = dropout, lc.rslora = ft_cli_flag(&cli, "rslora"), lc.seed = (uint64_t)seed;
    lc.dora = ft_cli_flag(&cli, "dora");

    FT_CHECK_GOTO(st, ft_flag_files(init, save, tc.dump_grads), done);
    FT_CHECK_GOTO(st, ft_token_file_read(tokens, &seqs), done);
    FT_CHECK_GOTO(st, ft_backend_open(&be, device, (int)threads), done);
    plan = ft_flag_plan(be, dir, quant_s, targets_s, r, dropout, lc.dora, B, K, steps, threads, &lo.model, max_len,
                        &seqs);
    FT_CHECK_GOTO(st, ft_model_load(&model, be, dir, &lo), done);
    ft_model_config mc; /* read again by the load just done: --save's PEFT names follow the base's layout */
    FT_CHECK_GOTO(st, ft_cfg_load(&mc, dir), done);
    lc.vlm = mc.vlm;
    ft_lora_shapes shapes = ft_model_lora_shapes(ft_model_get_dims(model));
    if (tt_s) { /* "3,17,<|eot_id|>": split at commas */
        tt_buf = strdup(tt_s);
        if (!tt_buf) FT_CHECK_GOTO(st, FT_ERR(FT_E_OOM, "out of memory"), done);
        for (char *p = tt_buf, *e; p && *p; p = e ? e + 1 : NULL) {
            if (tt_n == FT_LORA_MAX_TOKENS) {
                st = FT_ERR(FT_E_ARG, "--trainable-tokens: more than %d tokens", FT_LORA_MAX_TOKENS);
                goto done;
            }
            e = strchr(p, ',');
            if (e) *e = 0;
            tt_items[tt_n++] = p;
        }
        FT_CHECK_GOTO(st, ft_trainable_tokens_pick(tt_items, tt_n, "--trainable-tokens", be, model, NULL, dir, &tt_ids,
                                                   &lc.n_tokens), done);
        lc.tokens = tt_ids, lc.tied = ft_model_get_dims(model)->tied;
    }
    FT_CHECK_GOTO(st, ft_lora_create(&lora, be, &lc, &shapes, ft_model_get_dims(model)->L), done);
    FT_CHECK_GOTO(st, ft_lora_init_tokens(lora, be, &ft_model_get_weights(model)->embed,
                                          &ft_model_get_weights(model)->lm_head), done);
    if (init) FT_CHECK_GOTO(st, ft_lora_load(lora, be, init), done);
    ft_info("training %lld %s parameters (r=%lld, alpha=%g, scale %.4g) on %s", (long long)lora->n_params,
            lc.dora ? "DoRA" : "LoRA", (long long)r, alpha, lora->scale, ft_backend_name(be));
    FT_CHECK_GOTO(st, ft_train_tokens(model, lora, &seqs, &tc, ft_print_step, NULL), done);
    if (save) FT_CHECK_GOTO(st, ft_lora_save(lora, be, save, 'p'), done);
done:
    if (model) ft_model_set_lora(model, NULL);
    ft_lora_free(lora, be);
    ft_model_free(model);
    ft_backend_free(be); /* before the plan its out-of-memory explanation reads */
    ft_free(plan);
    ft_token_seqs_free(&seqs);
    ft_cli_free(&cli);
    free(args);
    free(tt_buf);
    ft_free(tt_ids);
    return st;
}
