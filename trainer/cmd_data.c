/* cmd_data.c: `ftune data RECIPE.yaml [--set key=value]...`: only the data preparation of a recipe,
 * through the function the run itself uses (ft_dataset_open, trainer/dataset.h): the data files
 * are read, rendered, encoded on model.threads threads and written as shards + index under
 * OUTPUT_DIR/data/, where `ftune train` reuses them (same fingerprint) and `ftune plan` reads the
 * index for an epochs-based step count. Prints a summary on stdout: records read and skipped
 * (with the first error), examples, tokens, targets, the train/valid split, the packing into
 * data.seq_len, the shard files, time and tokens/s. Running it again reuses the shards. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "trainer/cli.h"
#include "trainer/commands.h"
#include "trainer/dataset.h"
#include "trainer/recipe.h"

static const ft_opt ft_data_cli_opts[] = {
    {"set", FT_OPT_LIST, "KEY=VALUE", NULL, "override a recipe key (repeatable)"},
};

static double ft_data_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double ft_pct(int64_t a, int64_t b) { return b > 0 ? 100.0 * (double)a / (double)b : 0.0; }

static void ft_data_print(const ft_recipe *r, const ft_dataset_info *di, double seconds, FILE *f) {
    const int64_t examples = di->train_examples + di->valid_examples;
    const int64_t tokens = di->train_tokens + di->valid_tokens;
    fprintf(f, "data: %s\n", r->source && r->source[0] ? r->source : "recipe");
    fprintf(f, "  tokenizer   %s (format %s, template %s)\n",
            r->data.tokenizer && r->data.tokenizer[0] ? r->data.tokenizer : r->model.path, di->format,
            di->template_name);
    if (di->cached)
        fprintf(f, "  records     not read: the tokenized data of these inputs was reused\n");
    else
        fprintf(f, "  records     %lld read, %lld kept, %lld skipped\n", (long long)di->records,
                (long long)(di->records - di->skipped_records), (long long)di->skipped_records);
    if (!di->cached && di->first_error[0]) fprintf(f, "  first error %s\n", di->first_error);
    fprintf(f, "  examples    %lld: train %lld, valid %lld (%s)\n", (long long)examples, (long long)di->train_examples,
            (long long)di->valid_examples,
            r->data.n_valid > 0 ? "data.valid" : r->data.val_fraction > 0 ? "held out by data.val_fraction" : "no validation");
    fprintf(f, "  tokens      %lld: train %lld, valid %lld (%.1f per example)\n", (long long)tokens,
            (long long)di->train_tokens, (long long)di->valid_tokens, examples ? (double)tokens / (double)examples : 0.0);
    fprintf(f, "  targets     train %lld per epoch (%.1f%% of its tokens), valid %lld\n", (long long)di->train_targets,
            ft_pct(di->train_targets, di->train_tokens), (long long)di->valid_targets);
    fprintf(f, "  packing     data.seq_len %lld (%s): efficiency %.1f%%, fill %.1f%%; train %lld rows, valid %lld rows\n",
            (long long)r->data.seq_len, r->data.packing, 100.0 * di->train_efficiency, 100.0 * di->train_fill,
            (long long)di->train_rows, (long long)di->valid_rows);
    fprintf(f, "              train: %s\n", di->train_packing);
    if (strcmp(r->data.packing, "none") != 0)
        fprintf(f, "  attention   within each example: S = %.0f of %lld tokens, the example a token sits in on average "
                   "(`ftune plan`'s attention length)\n",
                di->train_attn_len, (long long)r->data.seq_len);
    fprintf(f, "  shards      %lld files, %lld bytes (index %s)\n", (long long)di->shard_files, (long long)di->shard_bytes,
            di->train_index);
    if (di->cached)
        fprintf(f, "  time        %.2f s (reused)\n", seconds);
    else
        fprintf(f, "  time        %.2f s, tokenized in %.2f s: %.0f records/s, %.0f tokens/s on %d threads\n", seconds,
                di->tokenize_seconds, di->tokenize_seconds > 0 ? (double)di->records / di->tokenize_seconds : 0.0,
                di->tokenize_seconds > 0 ? (double)tokens / di->tokenize_seconds : 0.0, di->threads);
}

ft_status ft_cmd_data(int argc, char **argv) {
    ft_cli cli = {.command = "data",
                  .summary = "Tokenize a recipe's data into OUTPUT_DIR/data (the shards `ftune train` reuses) and "
                             "print a summary.",
                  .positional = "RECIPE.yaml",
                  .opts = ft_data_cli_opts,
                  .nopts = sizeof ft_data_cli_opts / sizeof *ft_data_cli_opts};
    ft_recipe r;
    memset(&r, 0, sizeof r);
    ft_dataset *ds = NULL;
    char *copy = NULL;
    const char *sets[256];
    int n_sets = 0;
    ft_status st = ft_cli_parse(&cli, argc, argv);
    if (st != FT_OK) goto done;
    if (cli.help) {
        ft_cli_usage(&cli);
        goto done;
    }
    if (cli.npos != 1) {
        st = FT_ERR(FT_E_ARG, "data: expected one recipe file (see 'ftune data --help')");
        goto done;
    }
    const char *joined;
    FT_CHECK_GOTO(st, ft_cli_str(&cli, "set", &joined), done);
    if (joined) {
        copy = strdup(joined);
        if (!copy) {
            st = FT_ERR(FT_E_OOM, "out of memory");
            goto done;
        }
        char *save = NULL;
        for (char *t = strtok_r(copy, "\n", &save); t; t = strtok_r(NULL, "\n", &save)) {
            if (n_sets == (int)(sizeof sets / sizeof *sets)) {
                st = FT_ERR(FT_E_ARG, "data: more than %d --set options", n_sets);
                goto done;
            }
            sets[n_sets++] = t;
        }
    }
    FT_CHECK_GOTO(st, ft_recipe_load(&r, cli.pos[0], sets, n_sets), done);
    FT_CHECK_GOTO(st, ft_recipe_check_files(&r), done);
    const double t0 = ft_data_now();
    FT_CHECK_GOTO(st, ft_dataset_open(&ds, &r, r.output_dir), done);
    const double seconds = ft_data_now() - t0;
    ft_dataset_info di;
    ft_dataset_get_info(ds, &di);
    ft_data_print(&r, &di, seconds, stdout);
    fflush(stdout);
done:
    ft_dataset_free(ds);
    ft_recipe_free(&r);
    free(copy);
    ft_cli_free(&cli);
    return st;
}
