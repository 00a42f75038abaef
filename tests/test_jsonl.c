/* test_jsonl.c: the JSONL/JSON record reader: each format and its auto-detection, ShareGPT
 * chats, blank lines and CRLF, a 1 MiB line, malformed records reported as FILE:LINE under the
 * skip and fatal policies, rejection by a later stage, a .json array, and the shared real
 * datasets (mlx WikiSQL text, mlx WWDC prompt-completion, LLaMA-Factory identity.json). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/jsonl.h"
#include "kernels/log.h"
#include "tests/harness.h"

static const char *write_tmp(const char *name, const char *content) {
    static char path[1024];
    snprintf(path, sizeof path, "%s/%s", ft_test_tmpdir(), name);
    FILE *f = fopen(path, "wb");
    fputs(content, f);
    fclose(f);
    return path;
}

/* Reads all records; returns count, fills stats. */
static int64_t read_all(const char *path, ft_data_format fmt, int fatal, ft_status *st_out, ft_jsonl_stats *stats,
                        ft_data_format *detected) {
    ft_jsonl *r;
    ft_jsonl_opts o = {.format = fmt, .fatal = fatal};
    ft_status st = ft_jsonl_open(&r, path, &o);
    *st_out = st;
    if (st != FT_OK) return -1;
    int64_t n = 0;
    const ft_record *rec;
    while ((st = ft_jsonl_next(r, &rec)) == FT_OK && rec) n++;
    *st_out = st;
    ft_jsonl_get_stats(r, stats);
    if (detected) *detected = ft_jsonl_format(r);
    ft_jsonl_close(r);
    return n;
}

static void test_formats(void) {
    /* text, with a blank line, CRLF and a BOM */
    const char *p = write_tmp("text.jsonl", "\xEF\xBB\xBF{\"text\": \"hello\"}\r\n\n   \n{\"text\": \"w\\u00f6rld\"}\n");
    ft_jsonl *r;
    FT_CHECK_OK(ft_jsonl_open(&r, p, NULL));
    const ft_record *rec;
    FT_CHECK_OK(ft_jsonl_next(r, &rec));
    FT_CHECK(rec && rec->format == FT_FMT_TEXT && strcmp(rec->text, "hello") == 0 && rec->line == 1, "text 1");
    FT_CHECK_OK(ft_jsonl_next(r, &rec));
    FT_CHECK(rec && strcmp(rec->text, "w\xc3\xb6rld") == 0 && rec->line == 4 && rec->index == 1, "text 2 utf-8");
    FT_CHECK_OK(ft_jsonl_next(r, &rec));
    FT_CHECK(rec == NULL, "end");
    ft_jsonl_stats s;
    ft_jsonl_get_stats(r, &s);
    FT_CHECK(s.lines == 4 && s.blank == 2 && s.records == 2 && s.skipped == 0, "stats lines %lld blank %lld",
             (long long)s.lines, (long long)s.blank);
    ft_jsonl_close(r);

    /* alpaca with and without input */
    p = write_tmp("alpaca.jsonl", "{\"instruction\": \"Add\", \"input\": \"1 2\", \"output\": \"3\"}\n"
                                  "{\"instruction\": \"Say hi\", \"output\": \"hi\"}\n");
    FT_CHECK_OK(ft_jsonl_open(&r, p, NULL));
    FT_CHECK_OK(ft_jsonl_next(r, &rec));
    FT_CHECK(rec && rec->format == FT_FMT_ALPACA && !strcmp(rec->instruction, "Add") && !strcmp(rec->input, "1 2") &&
                 !strcmp(rec->output, "3"),
             "alpaca 1");
    FT_CHECK_OK(ft_jsonl_next(r, &rec));
    FT_CHECK(rec && !strcmp(rec->input, "") && !strcmp(rec->output, "hi"), "alpaca without input");
    ft_jsonl_close(r);

    p = write_tmp("pc.jsonl", "{\"prompt\": \"Q?\", \"completion\": \" A.\", \"extra\": 1}\n");
    FT_CHECK_OK(ft_jsonl_open(&r, p, NULL));
    FT_CHECK_OK(ft_jsonl_next(r, &rec));
    FT_CHECK(rec && rec->format == FT_FMT_PROMPT_COMPLETION && !strcmp(rec->prompt, "Q?") &&
                 !strcmp(rec->completion, " A."),
             "prompt-completion");
    ft_jsonl_close(r);

    p = write_tmp("chat.jsonl",
                  "{\"messages\": [{\"role\": \"system\", \"content\": \"S\"}, {\"role\": \"user\", \"content\": "
                  "\"U\"}, {\"role\": \"assistant\", \"content\": \"A\", \"reasoning_content\": \"R\"}]}\n"
                  "{\"conversations\": [{\"from\": \"human\", \"value\": \"hu\"}, {\"from\": \"gpt\", \"value\": "
                  "\"gp\"}]}\n");
    FT_CHECK_OK(ft_jsonl_open(&r, p, NULL));
    FT_CHECK_OK(ft_jsonl_next(r, &rec));
    FT_CHECK(rec && rec->format == FT_FMT_CHAT && rec->n_messages == 3 && rec->messages[0].role == FT_ROLE_SYSTEM &&
                 rec->messages[2].role == FT_ROLE_ASSISTANT && !strcmp(rec->messages[2].content, "A") &&
                 rec->messages[2].reasoning && !strcmp(rec->messages[2].reasoning, "R") &&
                 rec->messages[1].reasoning == NULL,
             "chat messages");
    FT_CHECK_OK(ft_jsonl_next(r, &rec));
    FT_CHECK(rec && rec->n_messages == 2 && rec->messages[0].role == FT_ROLE_USER &&
                 !strcmp(rec->messages[1].content, "gp"),
             "sharegpt");
    ft_jsonl_close(r);

    ft_data_format f;
    FT_CHECK(ft_data_format_parse("prompt-completion", &f) == FT_OK && f == FT_FMT_PROMPT_COMPLETION, "parse name");
    FT_CHECK(ft_data_format_parse("bogus", &f) == FT_E_ARG && strstr(ft_error_msg(), "bogus"), "bad name");
}

static void test_long_line(void) {
    int64_t n = 1 << 20;
    char *buf = malloc((size_t)n + 64);
    strcpy(buf, "{\"text\": \"");
    size_t o = strlen(buf);
    for (int64_t i = 0; i < n; i++) buf[o + i] = (char)('a' + i % 26);
    strcpy(buf + o + n, "\"}\n");
    const char *p = write_tmp("long.jsonl", buf);
    ft_jsonl *r;
    const ft_record *rec;
    FT_CHECK_OK(ft_jsonl_open(&r, p, NULL));
    FT_CHECK_OK(ft_jsonl_next(r, &rec));
    FT_CHECK(rec && (int64_t)strlen(rec->text) == n && rec->text[n - 1] == (char)('a' + (n - 1) % 26), "1 MiB line");
    ft_jsonl_close(r);
    free(buf);
}

static const char *BAD =
    "{\"instruction\": \"a\", \"output\": \"b\"}\n"            /* 1 ok: locks alpaca */
    "{\"instruction\": \"a\", \"output\": \"b\"\n"             /* 2 bad JSON */
    "{\"instruction\": \"a\"}\n"                               /* 3 missing output */
    "{\"instruction\": 5, \"output\": \"b\"}\n"                /* 4 wrong type */
    "\n"                                                        /* 5 blank */
    "[1, 2]\n"                                                  /* 6 not an object */
    "{\"instruction\": \"a\", \"output\": \"\"}\n"             /* 7 empty output */
    "{\"text\": \"other format\"}\n"                           /* 8 not alpaca */
    "{\"instruction\": \"c\", \"input\": \"d\", \"output\": \"e\"}\n"; /* 9 ok */

/* The file NAME holding CONTENT, read with the fatal policy, fails with "PATH:WANT". */
static void expect_fatal(const char *name, const char *content, const char *want) {
    char path[1024], full[1200];
    snprintf(path, sizeof path, "%s", write_tmp(name, content));
    snprintf(full, sizeof full, "%s:%s", path, want);
    ft_status st;
    ft_jsonl_stats s;
    read_all(path, FT_FMT_AUTO, 1, &st, &s, NULL);
    FT_CHECK(st == FT_E_FORMAT && strstr(ft_error_msg(), full), "%s: got \"%s\" want \"%s\"", name, ft_error_msg(),
             full);
}

static void test_malformed(void) {
    const char *p = write_tmp("bad.jsonl", BAD);
    char path[1024];
    snprintf(path, sizeof path, "%s", p);
    ft_status st;
    ft_jsonl_stats s;
    ft_log_set_level(FT_LOG_ERROR); /* the skip warnings are expected here */
    int64_t n = read_all(path, FT_FMT_AUTO, 0, &st, &s, NULL);
    ft_log_set_level(FT_LOG_INFO);
    FT_CHECK(st == FT_OK && n == 2, "skip policy keeps 2 records, got %lld (%s)", (long long)n, ft_error_msg());
    FT_CHECK(s.skipped == 6 && s.blank == 1 && s.lines == 9, "skipped %lld blank %lld lines %lld",
             (long long)s.skipped, (long long)s.blank, (long long)s.lines);
    char want[1100];
    snprintf(want, sizeof want, "%s:2: invalid JSON", path);
    FT_CHECK(strstr(s.first_error, want) != NULL, "first error names file:line: %s", s.first_error);

    /* fatal policy: each malformed line alone gives FILE:LINE: problem */
    static const struct { int line; const char *needle; } cases[] = {
        {2, "invalid JSON"}, {3, "missing key \"output\""}, {4, "\"instruction\" is a number"},
        {6, "record is an array, expected a JSON object"}, {7, "empty \"output\""}, {8, "missing key \"instruction\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        /* keep lines 1..line so the error is the first one hit */
        char *content = strdup(BAD);
        char *q = content;
        for (int l = 0; l < cases[i].line; l++) q = strchr(q, '\n') + 1;
        *q = 0;
        /* drop earlier bad lines by blanking them (lines 2..line-1) so line numbers hold */
        char *ln = strchr(content, '\n') + 1;
        for (int l = 2; l < cases[i].line; l++) {
            char *e = strchr(ln, '\n');
            memset(ln, ' ', (size_t)(e - ln));
            ln = e + 1;
        }
        p = write_tmp("bad1.jsonl", content);
        snprintf(path, sizeof path, "%s", p);
        free(content);
        n = read_all(path, FT_FMT_AUTO, 1, &st, &s, NULL);
        snprintf(want, sizeof want, "%s:%d: %s", path, cases[i].line, cases[i].needle);
        FT_CHECK(st == FT_E_FORMAT && strstr(ft_error_msg(), want), "fatal line %d: got \"%s\" want \"%s\"",
                 cases[i].line, ft_error_msg(), want);
    }

    /* data after a record's JSON value (Python's json.loads rejects it; cJSON alone would take the
     * prefix), and a byte that is not UTF-8 (Python's text read of the file fails there): each a
     * malformed record, named by file:line */
    expect_fatal("trail.jsonl", "{\"text\": \"fine\"}\n{\"text\": \"a\"} {\"text\": \"b\"}\n",
                 "2: invalid JSON: unexpected data after the value");
    expect_fatal("utf8.jsonl", "{\"text\": \"fine\"}\n{\"text\": \"caf\xe9\"}\n", "2: not valid UTF-8 at column 14");
    /* a \u0000 escape: cJSON ends its C string there, so "a\u0000b" would train on "a" alone; Python
     * keeps the NUL. A malformed record, whether in a value or a key; an escaped backslash before
     * "u0000" is plain text and stays. */
    expect_fatal("nul.jsonl", "{\"text\": \"a\\\\u0000 is text\"}\n{\"text\": \"a\\u0000b\"}\n",
                 "2: \\u0000 (a NUL character) at column 12");
    expect_fatal("nulkey.jsonl", "{\"text\\u0000x\": \"a\"}\n", "1: \\u0000 (a NUL character) at column 7");

    /* chat problems */
    p = write_tmp("badchat.jsonl",
                  "{\"messages\": [{\"role\": \"user\", \"content\": \"u\"}, {\"role\": \"tool\", \"content\": \"t\"}]}\n"
                  "{\"messages\": []}\n"
                  "{\"messages\": [{\"role\": \"user\", \"content\": \"u\"}]}\n"
                  "{\"messages\": [{\"role\": \"user\", \"content\": null}, {\"role\": \"assistant\", \"content\": \"a\"}]}\n"
                  "{\"messages\": \"hi\"}\n");
    snprintf(path, sizeof path, "%s", p);
    ft_jsonl *r;
    ft_jsonl_opts o = {.format = FT_FMT_CHAT, .fatal = 0, .max_logged = 100};
    FT_CHECK_OK(ft_jsonl_open(&r, path, &o));
    const ft_record *rec;
    ft_log_set_level(FT_LOG_ERROR);
    FT_CHECK_OK(ft_jsonl_next(r, &rec));
    ft_log_set_level(FT_LOG_INFO);
    FT_CHECK(rec == NULL, "all chat lines malformed");
    ft_jsonl_get_stats(r, &s);
    FT_CHECK(s.skipped == 5, "5 chat lines skipped, got %lld", (long long)s.skipped);
    snprintf(want, sizeof want, "%s:1: messages[1]: unknown role \"tool\"", path);
    FT_CHECK(strstr(s.first_error, want) != NULL, "unknown role message: %s", s.first_error);
    ft_jsonl_close(r);
    static const struct { int line; const char *needle; } chat_cases[] = {
        {1, "unknown role \"tool\""}, {2, "empty \"messages\""}, {3, "no assistant message"},
        {4, "\"content\" is null"}, {5, "\"messages\" is a string"},
    };
    for (size_t i = 0; i < sizeof chat_cases / sizeof chat_cases[0]; i++) {
        char content[4096] = "";
        const char *all = "{\"messages\": [{\"role\": \"user\", \"content\": \"u\"}, {\"role\": \"tool\", \"content\": \"t\"}]}\n"
                          "{\"messages\": []}\n"
                          "{\"messages\": [{\"role\": \"user\", \"content\": \"u\"}]}\n"
                          "{\"messages\": [{\"role\": \"user\", \"content\": null}, {\"role\": \"assistant\", \"content\": \"a\"}]}\n"
                          "{\"messages\": \"hi\"}\n";
        const char *q = all;
        for (int l = 1; l < chat_cases[i].line; l++) {
            q = strchr(q, '\n') + 1;
            strcat(content, "\n");
        }
        strncat(content, q, (size_t)(strchr(q, '\n') - q + 1));
        p = write_tmp("badchat1.jsonl", content);
        snprintf(path, sizeof path, "%s", p);
        read_all(path, FT_FMT_AUTO, 1, &st, &s, NULL);
        snprintf(want, sizeof want, "%s:%d:", path, chat_cases[i].line);
        FT_CHECK(st == FT_E_FORMAT && strstr(ft_error_msg(), want) && strstr(ft_error_msg(), chat_cases[i].needle),
                 "chat fatal line %d: got \"%s\"", chat_cases[i].line, ft_error_msg());
    }

    /* rejection by a later stage */
    p = write_tmp("rej.jsonl", "{\"text\": \"a\"}\n{\"text\": \"b\"}\n{\"text\": \"c\"}\n");
    snprintf(path, sizeof path, "%s", p);
    FT_CHECK_OK(ft_jsonl_open(&r, path, NULL));
    int kept = 0;
    ft_log_set_level(FT_LOG_ERROR);
    while (ft_jsonl_next(r, &rec) == FT_OK && rec) {
        if (!strcmp(rec->text, "b")) FT_CHECK_OK(ft_jsonl_reject(r, "too long (%d tokens)", 99));
        else kept++;
    }
    ft_log_set_level(FT_LOG_INFO);
    ft_jsonl_get_stats(r, &s);
    snprintf(want, sizeof want, "%s:2: too long (99 tokens)", path);
    FT_CHECK(kept == 2 && s.records == 2 && s.skipped == 1 && strstr(s.first_error, want), "reject: %s",
             s.first_error);
    ft_jsonl_close(r);
    o = (ft_jsonl_opts){.fatal = 1};
    FT_CHECK_OK(ft_jsonl_open(&r, path, &o));
    FT_CHECK_OK(ft_jsonl_next(r, &rec));
    FT_CHECK(ft_jsonl_reject(r, "refused") == FT_E_FORMAT && strstr(ft_error_msg(), ":1: refused"), "fatal reject");
    ft_jsonl_close(r);

    /* a missing file */
    FT_CHECK(ft_jsonl_open(&r, "/nonexistent/x.jsonl", NULL) == FT_E_IO && strstr(ft_error_msg(), "/nonexistent/x.jsonl"),
             "missing file names the path");
}

static void test_json_array(void) {
    const char *p = write_tmp("arr.json", "[\n  {\"prompt\": \"p1\", \"completion\": \"c1\"},\n"
                                         "  {\"prompt\": \"p2\"},\n"
                                         "  {\"prompt\": \"p3\",\n   \"completion\": \"c3\"}\n]\n");
    char path[1024];
    snprintf(path, sizeof path, "%s", p);
    ft_jsonl *r;
    const ft_record *rec;
    FT_CHECK_OK(ft_jsonl_open(&r, path, NULL));
    ft_log_set_level(FT_LOG_ERROR);
    FT_CHECK_OK(ft_jsonl_next(r, &rec));
    FT_CHECK(rec && rec->line == 2 && !strcmp(rec->completion, "c1"), "array elem 1 at line 2");
    FT_CHECK_OK(ft_jsonl_next(r, &rec));
    FT_CHECK(rec && rec->line == 4 && !strcmp(rec->completion, "c3"), "array elem 3 at line 4 (elem 2 skipped)");
    FT_CHECK_OK(ft_jsonl_next(r, &rec));
    ft_log_set_level(FT_LOG_INFO);
    FT_CHECK(rec == NULL, "array end");
    ft_jsonl_stats s;
    ft_jsonl_get_stats(r, &s);
    char want[1100];
    snprintf(want, sizeof want, "%s:3: missing key \"completion\"", path);
    FT_CHECK(s.skipped == 1 && strstr(s.first_error, want), "array error at line 3: %s", s.first_error);
    ft_jsonl_close(r);

    /* in an array as in JSONL: bytes that are not UTF-8 and a \u0000 escape make the element
     * malformed (skipped, named by its line and column), not text passed through or cut short */
    p = write_tmp("arrtext.json", "[{\"text\": \"caf\xe9\"},\n {\"text\": \"ok\"},\n {\"text\":\n  \"x\\u0000y\"}]\n");
    snprintf(path, sizeof path, "%s", p);
    ft_log_set_level(FT_LOG_ERROR);
    ft_status ast;
    int64_t n_ok = read_all(path, FT_FMT_AUTO, 0, &ast, &s, NULL);
    ft_log_set_level(FT_LOG_INFO);
    snprintf(want, sizeof want, "%s:1: not valid UTF-8 at column 15", path);
    FT_CHECK(ast == FT_OK && n_ok == 1 && s.skipped == 2 && strstr(s.first_error, want), "array text: %lld kept, %lld "
             "skipped, first %s", (long long)n_ok, (long long)s.skipped, s.first_error);
    expect_fatal("arrnul.json", "[{\"text\": \"ok\"},\n {\"text\":\n  \"x\\u0000y\"}]\n",
                 "3: \\u0000 (a NUL character) at column 5");

    p = write_tmp("arrbad.json", "[\n {\"text\": \"a\"},\n {\"text\": \"b\",,}\n]");
    snprintf(path, sizeof path, "%s", p);
    ft_status st;
    read_all(path, FT_FMT_AUTO, 0, &st, &s, NULL);
    FT_CHECK(st == FT_E_FORMAT && strstr(ft_error_msg(), ":3: invalid JSON"), "array syntax error fatal: %s",
             ft_error_msg());
    p = write_tmp("arrtrunc.json", "[\n {\"text\": \"a\"},\n");
    snprintf(path, sizeof path, "%s", p);
    read_all(path, FT_FMT_AUTO, 0, &st, &s, NULL);
    FT_CHECK(st == FT_E_FORMAT && strstr(ft_error_msg(), "unterminated"), "unterminated array: %s", ft_error_msg());
    /* the array's syntax around its elements is the file's, not a record's: fatal under either
     * policy, named by file:line (Python's json.load fails on each) */
    static const struct { const char *name, *content, *want; } arr_cases[] = {
        {"arrtail.json", "[{\"text\": \"a\"}]\n\n{\"text\": \"b\"}\n", "3: unexpected data after the JSON array"},
        {"arrcomma.json", "[{\"text\": \"a\"}\n {\"text\": \"b\"}]\n", "2: expected ',' or ']' between array elements"},
        {"arrempty.json", "", "1: expected a JSON array of records"},
        {"arrblank.json", " \n\n", "1: expected a JSON array of records"},
    };
    for (size_t i = 0; i < sizeof arr_cases / sizeof *arr_cases; i++) {
        char full[1200];
        snprintf(path, sizeof path, "%s", write_tmp(arr_cases[i].name, arr_cases[i].content));
        snprintf(full, sizeof full, "%s:%s", path, arr_cases[i].want);
        ft_log_set_level(FT_LOG_ERROR);
        int64_t got = read_all(path, FT_FMT_AUTO, 0, &st, &s, NULL);
        ft_log_set_level(FT_LOG_INFO);
        FT_CHECK(st == FT_E_FORMAT && strstr(ft_error_msg(), full), "%s (%lld records): got \"%s\" want \"%s\"",
                 arr_cases[i].name, (long long)got, ft_error_msg(), full);
    }
}

/* A record whose one required value is empty says which key, under the fatal policy; skipped
 * (and counted) under the skip policy, as a wrong type is. */
static void test_empty_values(void) {
    static const struct { const char *name, *content, *want; } cases[] = {
        {"emptytext.jsonl", "{\"text\": \"ok\"}\n{\"text\": \"\"}\n", "2: empty \"text\""},
        {"emptycomp.jsonl", "{\"prompt\": \"p\", \"completion\": \"\"}\n", "1: empty \"completion\""},
        {"emptyinstr.jsonl", "{\"instruction\": \"\", \"output\": \"o\"}\n", "1: empty \"instruction\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) expect_fatal(cases[i].name, cases[i].content, cases[i].want);
    const char *p = write_tmp("emptyskip.jsonl", "{\"text\": \"a\"}\n{\"text\": \"\"}\n{\"text\": \"b\"}\n");
    char path[1024];
    snprintf(path, sizeof path, "%s", p);
    ft_status st;
    ft_jsonl_stats s;
    ft_log_set_level(FT_LOG_ERROR);
    int64_t n = read_all(path, FT_FMT_AUTO, 0, &st, &s, NULL);
    ft_log_set_level(FT_LOG_INFO);
    FT_CHECK(st == FT_OK && n == 2 && s.skipped == 1, "empty text skipped: %lld kept, %lld skipped", (long long)n,
             (long long)s.skipped);
}

static void test_real_datasets(void) {
    char path[1024];
    ft_status st;
    ft_jsonl_stats s;
    ft_data_format f = FT_FMT_AUTO;
    static const struct { const char *rel; ft_data_format fmt; int64_t n; } sets[] = {
        {"datasets/mlx-wikisql-text/train.jsonl", FT_FMT_TEXT, 1000},
        {"datasets/mlx-wwdc25-prompt-completion/train.jsonl", FT_FMT_PROMPT_COMPLETION, 1800},
        {"datasets/llamafactory/identity.json", FT_FMT_ALPACA, 91},
    };
    for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++) {
        snprintf(path, sizeof path, "%s/assets/%s", ft_test_shared_dir(), sets[i].rel);
        int64_t n = read_all(path, FT_FMT_AUTO, 1, &st, &s, &f);
        FT_CHECK(st == FT_OK && n == sets[i].n && f == sets[i].fmt && s.skipped == 0, "%s: %lld records as %s (%s)",
                 sets[i].rel, (long long)n, ft_data_format_name(f), ft_error_msg());
    }
}

/* A lone UTF-16 surrogate: Python's json reads it, but it is not Unicode text (the tokenizer cannot
 * take it), and cJSON refuses it: one malformed record, named as such, skipped under the skip policy
 * in a JSON array as in JSONL; a surrogate pair is a character like any other. */
static void test_lone_surrogate(void) {
    const char *arr = "[{\"text\": \"ok\"},\n {\"text\": [\"x\", \"\\ud800\"]},\n {\"text\": \"ok2 \\ud83d\\ude00\"}]";
    char path[1024];
    snprintf(path, sizeof path, "%s", write_tmp("sur.json", arr));
    ft_status st;
    ft_jsonl_stats s;
    ft_log_set_level(FT_LOG_ERROR); /* the skip warning is expected */
    int64_t n = read_all(path, FT_FMT_AUTO, 0, &st, &s, NULL);
    FT_CHECK(st == FT_OK && n == 2 && s.skipped == 1 && strstr(s.first_error, ":2: a lone UTF-16 surrogate \\ud800"),
             "JSON array: %lld records, %lld skipped, first error '%s'", (long long)n, (long long)s.skipped,
             s.first_error);
    expect_fatal("sur2.json", arr, "2: a lone UTF-16 surrogate \\ud800 (not Unicode text)");
    snprintf(path, sizeof path, "%s", write_tmp("sur.jsonl", "{\"text\": \"a\"}\n{\"text\": \"b \\udc00\"}\n"));
    n = read_all(path, FT_FMT_AUTO, 0, &st, &s, NULL);
    FT_CHECK(st == FT_OK && n == 1 && s.skipped == 1 && strstr(s.first_error, ":2: a lone UTF-16 surrogate \\udc00 at column 13"),
             "JSONL: %lld records, first error '%s'", (long long)n, s.first_error);
    ft_log_set_level(FT_LOG_INFO);
}

int main(void) {
    test_lone_surrogate();
    test_formats();
    test_long_line();
    test_malformed();
    test_json_array();
    test_empty_values();
    test_real_datasets();
    return ft_test_finish();
}
