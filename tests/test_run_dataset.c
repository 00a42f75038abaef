/* test_run_dataset.c: a recipe's data preparation (trainer/dataset.h), without a model.
 *   - chat JSONL with the Qwen3 tokenizer (shared assets): template detected from
 *     tokenizer_config.json, a malformed line skipped and counted (fatal with data.on_error:
 *     fatal, naming FILE:LINE), the held-out split by data.val_fraction;
 *   - a generation prompt renders as a user turn plus the assistant header; <|im_end|> and EOS stop;
 *   - the tokenized shards are reused by a second open and not after the data file changes;
 *   - the data cursor: restoring a saved cursor yields the same micro-batch again;
 *   - raw text with stories260K: prompts start with BOS, decode round trip. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

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
    ft_dataset_free(ds);
    ft_recipe_free(&r);
    write_chat(chat, 1);
    FT_CHECK_OK(open_with(&ds, &r, sets, n_sets));
    if (ds) ft_dataset_get_info(ds, &info);
    FT_CHECK(ds && !info.cached && info.train_examples + info.valid_examples == 9, "changed data is tokenized again");
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
