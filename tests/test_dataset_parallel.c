/* test_dataset_parallel.c: encoding a recipe's data on several threads (trainer/dataset.c) gives
 * exactly what the one-record-at-a-time loop gave:
 *   - ~9000 chat records (many look-ahead chunks, sized by the thread count) with malformed
 *     lines, Qwen3 tokenizer: the shard files and indexes written with model.threads 1, 2 and 3 are byte for
 *     byte the same, so are the counts and the first error; the examples equal a sequential
 *     render + encode of the file written here, split as ft_examples_split does;
 *   - a failure keeps its place in the file whatever stage finds it: a render failure (mistral
 *     roles) or an encode failure (a template token the tokenizer lacks: found on the worker
 *     threads) on line 1 is the error named, not the invalid JSON on line 2, both with
 *     data.on_error fatal and as the first skipped record;
 *   - data.on_error fatal names the exact FILE:LINE of a malformed line in a later chunk. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/chat_template.h"
#include "data/jsonl.h"
#include "data/pack.h"
#include "data/shard.h"
#include "data/tokenizer.h"
#include "tests/harness.h"
#include "trainer/dataset.h"
#include "trainer/recipe.h"

static char tokdir[4200], s_model[4300], s_tok[4300];

static ft_status open_with(ft_dataset **ds, ft_recipe *r, const char *train, const char *out, const char *threads,
                           const char *extra1, const char *extra2) {
    char s_train[4300], s_out[4300];
    if (strlen(train) > 4000 || strlen(out) > 4000) return FT_ERR(FT_E_ARG, "test path too long");
    snprintf(s_train, sizeof s_train, "data.train=%.4000s", train);
    snprintf(s_out, sizeof s_out, "output_dir=%.4000s", out);
    const char *sets[] = {s_model, s_tok, s_train, s_out, threads, "data.format=chat", "data.seq_len=256",
                          "training.micro_batch=2", "training.seed=7", extra1, extra2};
    memset(r, 0, sizeof *r);
    *ds = NULL;
    ft_status st = ft_recipe_defaults(r, sets, 11);
    if (st != FT_OK) return st;
    return ft_dataset_open(ds, r, r->output_dir);
}

/* Record i: a chat of varying length (some long), with non-ASCII text. Malformed lines in between. */
static int64_t write_data(const char *path, int n, int64_t *bad_line) {
    FILE *f = fopen(path, "w");
    int64_t line = 0;
    *bad_line = 0;
    for (int i = 0; i < n; i++) {
        if (i == 100 || i == 4500 || i == 8300) {
            fprintf(f, "{\"messages\": [{\"role\": \"user\", \"content\": \"cut off\"\n");
            if (!*bad_line && i == 4500) *bad_line = line + 1;
            line++;
        }
        if (i == 2000) fprintf(f, "\n"), line++; /* blank: ignored */
        if (i == 6000) fprintf(f, "{\"text\": \"a text record in a chat file\"}\n"), line++;
        if (i == 7000) fprintf(f, "{\"messages\": [{\"role\": \"user\", \"content\": \"no answer\"}]}\n"), line++;
        fprintf(f, "{\"messages\": [");
        if (i % 5 == 0) fprintf(f, "{\"role\": \"system\", \"content\": \"Be brief (%d).\"}, ", i);
        fprintf(f, "{\"role\": \"user\", \"content\": \"Question %d: what is %d times %d? Café, naïve, 東京.\"}, ", i, i,
                i % 13);
        fprintf(f, "{\"role\": \"assistant\", \"content\": \"%d times %d is %d.", i, i % 13, i * (i % 13));
        for (int k = 0; k < (i * 7) % 23 + (i % 97 == 0 ? 300 : 0); k++) fprintf(f, " word%d", (i + k) % 31);
        fprintf(f, "\"}]}\n");
        line++;
    }
    fclose(f);
    return line;
}

/* The one-record-at-a-time loop: read, render, encode, append (skip policy). */
static void reference(const char *path, const ft_tok *tok, ft_examples *ex) {
    ft_jsonl *jl = NULL;
    ft_jsonl_opts jo = {.format = FT_FMT_CHAT, .quiet = 1};
    ft_render_opts ro;
    memset(&ro, 0, sizeof ro);
    ft_render_opts_from_tok(&ro, tok);
    ro.tmpl = FT_TMPL_QWEN3;
    ft_rendered rd = {0};
    ft_encoded enc = {0};
    ft_examples_init(ex);
    FT_CHECK_OK(ft_jsonl_open(&jl, path, &jo));
    for (;;) {
        const ft_record *rec = NULL;
        if (ft_jsonl_next(jl, &rec) != FT_OK || !rec) break;
        if (ft_render_record(rec, &ro, &rd) != FT_OK || ft_rendered_encode(tok, &rd, &enc) != FT_OK) continue;
        ft_examples_add(ex, enc.ids, enc.mask, enc.n);
    }
    ft_jsonl_close(jl);
    ft_rendered_free(&rd);
    ft_encoded_free(&enc);
}

static int same_examples(const ft_examples *a, const ft_examples *b) {
    return a->n == b->n && a->n_tokens == b->n_tokens &&
           memcmp(a->offsets, b->offsets, (size_t)(a->n + 1) * sizeof *a->offsets) == 0 &&
           memcmp(a->tokens, b->tokens, (size_t)a->n_tokens * sizeof *a->tokens) == 0 &&
           memcmp(a->mask, b->mask, (size_t)a->n_tokens) == 0;
}

/* Every file of dir a/data has a byte-identical twin in b/data; returns the files compared. */
static int compare_dirs(const char *a, const char *b) {
    char da[4300], path[8800];
    snprintf(da, sizeof da, "%s/data", a);
    DIR *d = opendir(da);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char *x = NULL, *y = NULL;
        int64_t nx = 0, ny = 0;
        snprintf(path, sizeof path, "%s/%s", da, e->d_name);
        FT_CHECK_OK(ft_test_read_file(path, &x, &nx));
        snprintf(path, sizeof path, "%s/data/%s", b, e->d_name);
        FT_CHECK_OK(ft_test_read_file(path, &y, &ny));
        FT_CHECK(x && y && nx == ny && memcmp(x, y, (size_t)nx) == 0, "%s identical in %s and %s (%lld bytes)",
                 e->d_name, a, b, (long long)nx);
        free(x);
        free(y);
        n++;
    }
    closedir(d);
    return n;
}

int main(void) {
    const char *tmp = ft_test_tmpdir();
    char cmd[16000];
    snprintf(tokdir, sizeof tokdir, "%s/qwen3", tmp);
    snprintf(cmd, sizeof cmd,
             "mkdir -p '%s' && gzip -dc '%s/assets/qwen3-tokenizer/tokenizer.json.gz' > '%s/tokenizer.json' && "
             "cp '%s/assets/qwen3-tokenizer/tokenizer_config.json' '%s/'",
             tokdir, ft_test_shared_dir(), tokdir, ft_test_shared_dir(), tokdir);
    FT_CHECK(ft_test_run(cmd, NULL) == 0, "qwen3 tokenizer from the shared assets");
    snprintf(s_model, sizeof s_model, "model.path=%s/models/stories260K", ft_test_src_dir());
    snprintf(s_tok, sizeof s_tok, "data.tokenizer=%s", tokdir);

    /* ---- the same shards on 1, 2 and 3 threads, equal to the sequential loop ---- */
    char data[4200], out[3][4200];
    snprintf(data, sizeof data, "%s/chats.jsonl", tmp);
    int64_t bad_line;
    const int n_records = 9000;
    write_data(data, n_records, &bad_line);
    const char *threads[3] = {"model.threads=1", "model.threads=2", "model.threads=3"};
    ft_dataset_info info[3];
    char first_error[3][512], train_index[4300] = "";
    ft_recipe r;
    ft_dataset *ds;
    for (int t = 0; t < 3; t++) {
        snprintf(out[t], sizeof out[t], "%s/run%d", tmp, t + 1);
        FT_CHECK_OK(open_with(&ds, &r, data, out[t], threads[t], "data.val_fraction=0.1", "data.on_error=skip"));
        memset(&info[t], 0, sizeof info[t]);
        if (ds) ft_dataset_get_info(ds, &info[t]);
        snprintf(first_error[t], sizeof first_error[t], "%s", ds ? info[t].first_error : "");
        if (ds && t == 1) snprintf(train_index, sizeof train_index, "%s", info[t].train_index);
        FT_CHECK(ds && !info[t].cached && info[t].threads == t + 1, "threads %d: tokenized, not cached", t + 1);
        if (ds && t > 0) {
            FT_CHECK(info[t].train_examples == info[0].train_examples && info[t].valid_examples == info[0].valid_examples &&
                         info[t].train_tokens == info[0].train_tokens && info[t].records == info[0].records &&
                         info[t].skipped_records == info[0].skipped_records &&
                         strcmp(first_error[t], first_error[0]) == 0 &&
                         info[t].shard_files == info[0].shard_files && info[t].shard_bytes == info[0].shard_bytes,
                     "threads %d: same counts as 1 thread", t + 1);
        }
        if (ds && t == 0) {
            FT_CHECK(info[0].records == n_records + 5 && info[0].skipped_records == 5 &&
                         info[0].train_examples + info[0].valid_examples == n_records,
                     "%d records + 5 malformed: %lld read, %lld skipped, %lld + %lld examples", n_records,
                     (long long)info[0].records, (long long)info[0].skipped_records,
                     (long long)info[0].train_examples, (long long)info[0].valid_examples);
            FT_CHECK(strstr(first_error[0], "chats.jsonl:101: ") != NULL, "first error: %s", first_error[0]);
            FT_CHECK(info[0].shard_files == 2 && info[0].shard_bytes > 0, "2 shard files, %lld bytes",
                     (long long)info[0].shard_bytes);
        }
        ft_dataset_free(ds);
        ft_recipe_free(&r);
    }
    FT_CHECK(compare_dirs(out[0], out[1]) == 4, "1 vs 2 threads: 2 shards + 2 indexes compared");
    FT_CHECK(compare_dirs(out[0], out[2]) == 4, "1 vs 3 threads: 2 shards + 2 indexes compared");

    ft_tok *tok = NULL;
    FT_CHECK_OK(ft_tok_load(&tok, tokdir));
    ft_examples all, rtrain, rvalid, strain, svalid;
    reference(data, tok, &all);
    FT_CHECK_OK(ft_examples_split(&all, 0.1, 7, &rtrain, &rvalid));
    char vidx[4300];
    snprintf(vidx, sizeof vidx, "%s", train_index);
    char *slash = strrchr(vidx, '/');
    if (slash && strncmp(slash + 1, "train-", 6) == 0) memcpy(slash + 1, "valid", 5);
    char tidx[4300];
    snprintf(tidx, sizeof tidx, "%s", vidx);
    slash = strrchr(tidx, '/');
    if (slash) memcpy(slash + 1, "train", 5);
    FT_CHECK_OK(ft_shards_load(tidx, NULL, &strain, NULL));
    FT_CHECK_OK(ft_shards_load(vidx, NULL, &svalid, NULL));
    FT_CHECK(same_examples(&strain, &rtrain) && same_examples(&svalid, &rvalid),
             "2-thread shards = the sequential loop (%lld + %lld examples, %lld tokens)", (long long)strain.n,
             (long long)svalid.n, (long long)(strain.n_tokens + svalid.n_tokens));
    ft_examples_free(&all);
    ft_examples_free(&rtrain);
    ft_examples_free(&rvalid);
    ft_examples_free(&strain);
    ft_examples_free(&svalid);
    ft_tok_free(tok);

    /* ---- fatal: the first malformed line ---- */
    char o2[4200], expect[4300];
    snprintf(o2, sizeof o2, "%s/fatal", tmp);
    ft_status st = open_with(&ds, &r, data, o2, "model.threads=2", "data.val_fraction=0.1", "data.on_error=fatal");
    FT_CHECK(st == FT_E_FORMAT && strstr(ft_error_msg(), "chats.jsonl:101: invalid JSON"), "fatal: %s", ft_error_msg());
    ft_error_clear();
    ft_dataset_free(ds);
    ft_recipe_free(&r);
    snprintf(expect, sizeof expect, "fixed.jsonl:%lld: invalid JSON", (long long)bad_line);

    /* ---- a failure found by a later stage keeps its place ---- */
    char f1[4200];
    snprintf(f1, sizeof f1, "%s/order.jsonl", tmp);
    FILE *f = fopen(f1, "w");
    fprintf(f, "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"content\": \"b\"}, "
               "{\"role\": \"assistant\", \"content\": \"c\"}]}\n");
    fprintf(f, "{\"messages\": [{\"role\": \"user\", \"content\": \"cut off\"\n");
    for (int i = 0; i < 3; i++)
        fprintf(f, "{\"messages\": [{\"role\": \"user\", \"content\": \"q%d\"}, {\"role\": \"assistant\", "
                   "\"content\": \"a%d\"}]}\n", i, i);
    fclose(f);
    struct {
        const char *tmpl, *want;
    } cases[] = {{"data.template=mistral", "order.jsonl:1: messages[2]: mistral needs roles alternating"},
                 {"data.template=llama3", "order.jsonl:1: "}};
    for (int c = 0; c < 2; c++) {
        for (int fatal = 1; fatal >= 0; fatal--) {
            snprintf(o2, sizeof o2, "%s/order%d%d", tmp, c, fatal);
            st = open_with(&ds, &r, f1, o2, "model.threads=2", cases[c].tmpl,
                           fatal ? "data.on_error=fatal" : "data.on_error=skip");
            const char *msg = ft_error_msg();
            FT_CHECK(st == FT_E_FORMAT && strstr(msg, cases[c].want) &&
                         (c == 0 || strstr(msg, "has no token \"<|begin_of_text|>\"")) && !strstr(msg, ":2: invalid"),
                     "%s, %s: the record on line 1 is the error: %s", cases[c].tmpl, fatal ? "fatal" : "skip", msg);
            ft_error_clear();
            ft_dataset_free(ds);
            ft_recipe_free(&r);
        }
    }

    /* ---- fatal: a malformed line past the first chunk (the earlier one blanked) ---- */
    {
        char *text = NULL;
        int64_t len = 0;
        FT_CHECK_OK(ft_test_read_file(data, &text, &len));
        char fixed[4200];
        snprintf(fixed, sizeof fixed, "%s/fixed.jsonl", tmp);
        f = fopen(fixed, "w");
        int64_t line = 1;
        for (char *p = text; text && *p;) {
            char *nl = strchr(p, '\n');
            size_t n = nl ? (size_t)(nl - p + 1) : strlen(p);
            if (line < bad_line && strstr(p, "cut off") && strstr(p, "cut off") < p + n)
                fprintf(f, "\n"); /* keep the line numbers */
            else
                fwrite(p, 1, n, f);
            p += n;
            line++;
        }
        fclose(f);
        free(text);
        snprintf(o2, sizeof o2, "%s/fatal2", tmp);
        st = open_with(&ds, &r, fixed, o2, "model.threads=2", "data.val_fraction=0.1", "data.on_error=fatal");
        FT_CHECK(st == FT_E_FORMAT && strstr(ft_error_msg(), expect), "fatal in chunk 2: %s (want %s)", ft_error_msg(),
                 expect);
        ft_error_clear();
        ft_dataset_free(ds);
        ft_recipe_free(&r);
    }
    return ft_test_finish();
}
