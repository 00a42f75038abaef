/* test_run_dataset.c: a recipe's data preparation (trainer/dataset.h), without a model.
 *   - chat JSONL with the Qwen3 tokenizer (shared assets): template detected from
 *     tokenizer_config.json, a malformed line skipped and counted (fatal with data.on_error:
 *     fatal, naming FILE:LINE), the held-out split by data.val_fraction;
 *   - a generation prompt renders as a user turn plus the assistant header; <|im_end|> and EOS stop;
 *   - the tokenized shards are reused by a second open and not after the data file changes; then the
 *     earlier fingerprint's cache (train and valid, with a killed writer's temporaries) is removed and
 *     this one's kept, as are a live writer's temporary and files not named like a cache; while
 *     another process holds the data directory's lock (taken here) nothing is removed, and the next
 *     open removes it;
 *   - the data cursor: restoring a saved cursor yields the same micro-batch again;
 *   - raw text with stories260K: prompts start with BOS, decode round trip. */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "data/tokenizer.h"
#include "tests/harness.h"
#include "trainer/dataset.h"
#include "trainer/recipe.h"

static const char *tmp;

static ft_status open_with(ft_dataset **ds, ft_recipe *r, const char **sets, int n) {
    memset(r, 0, sizeof *r);
    ft_status st = ft_recipe_defaults(r, sets, n);
    if (st != FT_OK) return st;
    mkdir(r->output_dir, 0777); /* ft_run creates it */
    return ft_dataset_open(ds, r, r->output_dir);
}

static void write_chat(const char *path, int extra) {
    FILE *f = fopen(path, "w");
    for (int i = 0; i < 8 + extra; i++) {
        fprintf(f, "{\"messages\": [{\"role\": \"user\", \"content\": \"What is %d plus %d?\"}, "
                   "{\"role\": \"assistant\", \"content\": \"%d plus %d is %d.\"}]}\n", i, i, i, i, 2 * i);
        if (i == 3) fprintf(f, "{\"messages\": [{\"role\": \"user\", \"content\": \"broken\"\n"); /* line 5 */
    }
    fclose(f);
}

/* Files in dir whose name contains `part` (-1: no directory). */
static int count_files(const char *dir, const char *part) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) n += e->d_name[0] != '.' && strstr(e->d_name, part) != NULL;
    closedir(d);
    return n;
}

static void touch(const char *dir, const char *file) {
    char p[4500];
    snprintf(p, sizeof p, "%s/%s", dir, file);
    FILE *f = fopen(p, "wb");
    if (f) fputs("not a shard", f), fclose(f);
}

/* The 16 hex digits of a train index path ".../train-<fp>.index.json" ("" if none). */
static void fp_of(const ft_dataset_info *info, char out[17]) {
    const char *b = strrchr(info->train_index ? info->train_index : "", '/');
    snprintf(out, 17, "%s", b && strncmp(b + 1, "train-", 6) == 0 ? b + 7 : "");
}

int main(void) {
    tmp = ft_test_tmpdir();
    char tokdir[4200], cmd[16000], chat[4200], out[4200];
    snprintf(tokdir, sizeof tokdir, "%s/qwen3", tmp);
    snprintf(cmd, sizeof cmd,
             "mkdir -p '%s' && gzip -dc '%s/assets/qwen3-tokenizer/tokenizer.json.gz' > '%s/tokenizer.json' && "
             "cp '%s/assets/qwen3-tokenizer/tokenizer_config.json' '%s/'",
             tokdir, ft_test_shared_dir(), tokdir, ft_test_shared_dir(), tokdir);
    FT_CHECK(ft_test_run(cmd, NULL) == 0, "qwen3 tokenizer from the shared assets");
    snprintf(chat, sizeof chat, "%s/chat.jsonl", tmp);
    snprintf(out, sizeof out, "%s/run", tmp);
    write_chat(chat, 0);

    char s_model[4300], s_tok[4300], s_train[4300], s_out[4300];
    snprintf(s_model, sizeof s_model, "model.path=%s/models/stories260K", ft_test_src_dir());
    snprintf(s_tok, sizeof s_tok, "data.tokenizer=%s", tokdir);
    snprintf(s_train, sizeof s_train, "data.train=%s", chat);
    snprintf(s_out, sizeof s_out, "output_dir=%s", out);
    const char *sets[] = {s_model, s_tok, s_train, s_out, "data.format=chat", "data.seq_len=64",
                          "data.val_fraction=0.25", "training.micro_batch=2", "training.seed=3", "data.on_error=skip"};
    const int n_sets = sizeof sets / sizeof *sets;
    ft_recipe r;
    ft_dataset *ds = NULL;
    FT_CHECK_OK(open_with(&ds, &r, sets, n_sets));
    if (!ds) return ft_test_finish();
    ft_dataset_info info;
    ft_dataset_get_info(ds, &info);
    FT_CHECK(strcmp(info.template_name, "qwen3") == 0 && strcmp(info.format, "chat") == 0,
             "template %s, format %s", info.template_name, info.format);
    FT_CHECK(info.train_examples == 6 && info.valid_examples == 2 && info.skipped_records == 1 && !info.cached,
             "8 records: 6 train + 2 held out, 1 malformed skipped (got %lld + %lld, %lld skipped)",
             (long long)info.train_examples, (long long)info.valid_examples, (long long)info.skipped_records);

    /* prompt: the user turn and the assistant header */
    ft_tok *tok = NULL;
    FT_CHECK_OK(ft_tok_load(&tok, tokdir));
    int32_t *ids = NULL, *hdr = NULL;
    int64_t n = 0, nh = 0;
    FT_CHECK_OK(ft_dataset_prompt_ids(ds, "Hello", &ids, &n));
    FT_CHECK_OK(ft_tok_encode(tok, "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n", -1, 0, &hdr, &nh));
    FT_CHECK(n >= nh && ids && hdr && memcmp(ids + n - nh, hdr, (size_t)nh * 4) == 0,
             "prompt ends with the user turn and the assistant header (%lld ids)", (long long)n);
    FT_CHECK(ft_dataset_is_stop(ds, ft_tok_token_to_id(tok, "<|im_end|>")) && ft_dataset_is_stop(ds, ft_tok_eos_id(tok)) &&
                 !ft_dataset_is_stop(ds, hdr[nh - 1]),
             "<|im_end|> and EOS stop a completion");
    free(ids);
    free(hdr);

    /* the data cursor */
    ft_rows a, b;
    FT_CHECK_OK(ft_rows_alloc(ds, &a));
    FT_CHECK_OK(ft_rows_alloc(ds, &b));
    FT_CHECK_OK(ft_dataset_next(ds, &a));
    ft_data_cursor cur;
    ft_dataset_get_cursor(ds, &cur);
    for (int i = 0; i < 5; i++) FT_CHECK_OK(ft_dataset_next(ds, &a)); /* past an epoch boundary */
    FT_CHECK_OK(ft_dataset_next(ds, &a));
    FT_CHECK_OK(ft_dataset_set_cursor(ds, &cur));
    for (int i = 0; i < 5; i++) FT_CHECK_OK(ft_dataset_next(ds, &b));
    FT_CHECK_OK(ft_dataset_next(ds, &b));
    size_t bytes = (size_t)(a.B * a.T) * 4;
    FT_CHECK(a.n_rows == 2 && a.n_targets > 0 && a.n_targets == b.n_targets && memcmp(a.tokens, b.tokens, bytes) == 0 &&
                 memcmp(a.labels, b.labels, bytes) == 0 && memcmp(a.pos, b.pos, bytes) == 0 &&
                 memcmp(a.doc_start, b.doc_start, bytes) == 0,
             "a restored cursor yields the same micro-batch (%lld targets)", (long long)a.n_targets);
    ft_data_cursor other = cur;
    other.plan_hash ^= 1;
    FT_CHECK(ft_dataset_set_cursor(ds, &other) == FT_E_ARG && strstr(ft_error_msg(), "packing options changed"),
             "a cursor of other data is refused: %s", ft_error_msg());
    /* evaluation: the held-out rows once, then n_rows == 0 */
    FT_CHECK_OK(ft_dataset_eval_begin(ds));
    int64_t rows = 0;
    for (int i = 0; i < 10; i++) {
        FT_CHECK_OK(ft_dataset_eval_next(ds, &a));
        if (a.n_rows == 0) break;
        rows += a.n_rows;
    }
    FT_CHECK(rows == info.valid_rows && rows > 0, "evaluation walks the %lld held-out rows once", (long long)rows);
    ft_rows_free(&a);
    ft_rows_free(&b);
    ft_dataset_free(ds);
    ft_recipe_free(&r);

    /* the cache */
    FT_CHECK_OK(open_with(&ds, &r, sets, n_sets));
    if (ds) ft_dataset_get_info(ds, &info);
    FT_CHECK(ds && info.cached && info.train_examples == 6 && info.valid_examples == 2, "second open reuses the shards");
    char fp_a[17], fp_b[17], fp_c[17], data_dir[4300], fname[200];
    fp_of(&info, fp_a);
    ft_dataset_free(ds);
    ft_recipe_free(&r);
    snprintf(data_dir, sizeof data_dir, "%s/data", out);
    FT_CHECK(strlen(fp_a) == 16 && count_files(data_dir, fp_a) == 4, "fingerprint %s: 2 indexes + 2 shards", fp_a);
    /* beside it: a killed writer's temporary of it and a partial cache of another fingerprint (to go), a
     * live writer's temporary of a third and files that only look like a cache (to stay) */
    pid_t dead = fork();
    if (dead == 0) _exit(0);
    waitpid(dead, NULL, 0);
    snprintf(fname, sizeof fname, "train-%s-00001.ftshard.tmp.%ld", fp_a, (long)dead);
    touch(data_dir, fname);
    touch(data_dir, "train-00000000000000d0-00000.ftshard");
    snprintf(fname, sizeof fname, "valid-00000000000000e0-00000.ftshard.tmp.%ld", (long)getpid());
    touch(data_dir, fname);
    static const char *keep[] = {"notes.txt", "train-00000000000000f0.index.json.bak",
                                 "train-00000000000000F0.index.json", "train-00000000000000f0-0001.ftshard",
                                 "train-f0.index.json", "other-00000000000000f0.index.json"};
    for (size_t i = 0; i < sizeof keep / sizeof *keep; i++) touch(data_dir, keep[i]);
    write_chat(chat, 1);
    FT_CHECK_OK(open_with(&ds, &r, sets, n_sets));
    if (ds) ft_dataset_get_info(ds, &info);
    FT_CHECK(ds && !info.cached && info.train_examples + info.valid_examples == 9, "changed data is tokenized again");
    fp_of(&info, fp_b);
    ft_dataset_free(ds);
    ft_recipe_free(&r);
    FT_CHECK(strlen(fp_b) == 16 && strcmp(fp_a, fp_b) != 0 && count_files(data_dir, fp_b) == 4,
             "the new fingerprint %s: its 2 indexes + 2 shards", fp_b);
    FT_CHECK(count_files(data_dir, fp_a) == 0 && count_files(data_dir, "00000000000000d0") == 0,
             "the earlier fingerprint's cache, its dead writer's temporary and a partial cache are removed "
             "(%d, %d left)",
             count_files(data_dir, fp_a), count_files(data_dir, "00000000000000d0"));
    int kept = count_files(data_dir, "00000000000000e0");
    for (size_t i = 0; i < sizeof keep / sizeof *keep; i++) kept += count_files(data_dir, keep[i]);
    FT_CHECK(kept == 1 + (int)(sizeof keep / sizeof *keep),
             "a live writer's temporary and files not a cache's are kept (%d of %d)", kept,
             1 + (int)(sizeof keep / sizeof *keep));
    /* another process (a second open file description here) holds the directory's shared lock */
    int lk = open(data_dir, O_RDONLY | O_DIRECTORY);
    FT_CHECK(lk >= 0 && flock(lk, LOCK_SH) == 0, "shared lock on %s", data_dir);
    write_chat(chat, 2);
    FT_CHECK_OK(open_with(&ds, &r, sets, n_sets));
    if (ds) ft_dataset_get_info(ds, &info);
    fp_of(&info, fp_c);
    FT_CHECK(ds && !info.cached && strcmp(fp_c, fp_b) != 0 && count_files(data_dir, fp_c) == 4 &&
                 count_files(data_dir, fp_b) == 4,
             "while the directory is locked by another: %s written, %s left (%d files)", fp_c, fp_b,
             count_files(data_dir, fp_b));
    ft_dataset_free(ds);
    ft_recipe_free(&r);
    if (lk >= 0) close(lk);
    FT_CHECK_OK(open_with(&ds, &r, sets, n_sets));
    if (ds) ft_dataset_get_info(ds, &info);
    FT_CHECK(ds && info.cached && count_files(data_dir, fp_b) == 0 && count_files(data_dir, fp_c) == 4,
             "lock released: the next (cached) open removes %s and keeps %s", fp_b, fp_c);
    ft_dataset_free(ds);
    ft_recipe_free(&r);

    /* fatal policy */
    const char *fatal[n_sets];
    memcpy(fatal, sets, sizeof fatal);
    fatal[n_sets - 1] = "data.on_error=fatal";
    ds = NULL;
    ft_status st = open_with(&ds, &r, fatal, n_sets);
    FT_CHECK(st == FT_E_FORMAT && strstr(ft_error_msg(), "chat.jsonl:5"), "fatal: %s", ft_error_msg());
    ft_dataset_free(ds);
    ft_recipe_free(&r);

    /* raw text with the model's own tokenizer */
    char txt[4200];
    snprintf(txt, sizeof txt, "%s/text.jsonl", tmp);
    FILE *f = fopen(txt, "w");
    for (int i = 0; i < 6; i++) fprintf(f, "{\"text\": \"Once upon a time there was a cat number %d.\"}\n", i);
    fclose(f);
    snprintf(s_train, sizeof s_train, "data.train=%s", txt);
    snprintf(s_out, sizeof s_out, "output_dir=%s/run2", tmp);
    const char *tsets[] = {s_model, s_train, s_out, "data.format=text", "data.seq_len=64", "data.val_fraction=0"};
    FT_CHECK_OK(open_with(&ds, &r, tsets, 6));
    if (ds) {
        ft_dataset_get_info(ds, &info);
        FT_CHECK(strcmp(info.template_name, "none") == 0 && info.valid_rows == 0 && info.train_examples == 6,
                 "text: no template, no validation split");
        char *text = NULL;
        FT_CHECK_OK(ft_dataset_prompt_ids(ds, "Once upon a time", &ids, &n));
        FT_CHECK(n > 1 && ids[0] == 1, "text prompt starts with BOS");
        FT_CHECK_OK(ft_dataset_decode(ds, ids, n, &text));
        FT_CHECK(text && strcmp(text, "Once upon a time") == 0, "decode: \"%s\"", text ? text : "");
        free(text);
        free(ids);
        FT_CHECK_OK(ft_dataset_eval_begin(ds));
        ft_rows e;
        FT_CHECK_OK(ft_rows_alloc(ds, &e));
        FT_CHECK_OK(ft_dataset_eval_next(ds, &e));
        FT_CHECK(e.n_rows == 0, "no validation rows: evaluation yields nothing");
        ft_rows_free(&e);
    }
    ft_dataset_free(ds);
    ft_recipe_free(&r);
    ft_tok_free(tok);
    return ft_test_finish();
}
