/* cmd_tokenize.c: `ftune tokenize`: encode text to ids or decode ids to text with a Hugging Face
 * tokenizer directory (tokenizer.json + tokenizer_config.json), exactly as `tokenizers` does.
 *
 * Line mode (default): each input line (its "\n" or "\r\n" removed) gives one output line of
 * space-separated ids; with --decode each line of ids gives one line of text (special tokens
 * kept; a decoded text that itself contains newlines spans several lines: use --json then).
 * JSON mode (--json): the input is one JSON array of strings and the output one JSON array of id
 * arrays (with --decode: arrays of ids in, array of strings out), so texts may hold newlines.
 * Returns the process exit code: 0 ok, 1 error ("ftune: error: ..." on stderr), 2 usage. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <cjson/cJSON.h>

#include "data/tokenizer.h"
#include "kernels/json.h"
#include "kernels/mem.h"
#include "trainer/cli.h"
#include "trainer/commands.h"
#include "trainer/loader.h"

static const ft_opt ft_tokenize_opts[] = {
    {"tokenizer", FT_OPT_STR, "DIR|GGUF", NULL, "directory with tokenizer.json (and tokenizer_config.json), or a GGUF model file"},
    {"file", FT_OPT_STR, "FILE", NULL, "read input from FILE instead of stdin"},
    {"decode", FT_OPT_FLAG, NULL, NULL, "ids -> text instead of text -> ids"},
    {"add-special", FT_OPT_FLAG, NULL, NULL, "add the post-processor's special tokens (e.g. BOS) when encoding"},
    {"skip-special", FT_OPT_FLAG, NULL, NULL, "drop special tokens when decoding"},
    {"json", FT_OPT_FLAG, NULL, NULL, "input is a JSON array of strings (or of id arrays with --decode)"},
};

static ft_status ft_tokz_read_all(FILE *in, const char *name, char **out, int64_t *len) {
    int64_t cap = 1 << 16, n = 0;
    char *buf;
    FT_TRY(ft_malloc((void **)&buf, (size_t)cap, "input"));
    for (;;) {
        if (n + 1 >= cap) {
            char *b = realloc(buf, (size_t)(cap *= 2));
            if (!b) {
                free(buf);
                return FT_ERR(FT_E_OOM, "%s: out of memory reading input", name);
            }
            buf = b;
        }
        size_t got = fread(buf + n, 1, (size_t)(cap - n - 1), in);
        if (got == 0) break;
        n += (int64_t)got;
    }
    if (ferror(in)) {
        free(buf);
        return FT_ERR(FT_E_IO, "%s: read error", name);
    }
    buf[n] = 0;
    *out = buf;
    *len = n;
    return FT_OK;
}

/* Parses "12 7 99" into v; FT_E_ARG naming the line on anything else. */
static ft_status ft_tokz_parse_ids(const char *s, const ft_tok *tok, const char *name, int64_t line, ft_tok_ids *v) {
    v->n = 0;
    while (*s) {
        while (*s == ' ' || *s == '\t' || *s == ',') s++;
        if (!*s) break;
        char *end;
        long long x = strtoll(s, &end, 10);
        if (end == s || x < 0 || x >= ft_tok_vocab_size(tok))
            return FT_ERR(FT_E_FORMAT, "%s:%lld: '%.20s' is not a token id of this tokenizer", name, (long long)line, s);
        FT_TRY(ft_tok_ids_push(v, (int32_t)x));
        s = end;
    }
    return FT_OK;
}

static ft_status ft_tokz_lines(const ft_tok *tok, FILE *in, const char *name, int decode, int add_special, int skip) {
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int64_t lineno = 0;
    ft_tok_ids v = {0};
    ft_status st = FT_OK;
    while ((n = getline(&line, &cap, in)) >= 0) {
        lineno++;
        if (n > 0 && line[n - 1] == '\n') line[--n] = 0;
        if (n > 0 && line[n - 1] == '\r') line[--n] = 0;
        if (decode) {
            char *text = NULL;
            int64_t tl = 0;
            if ((st = ft_tokz_parse_ids(line, tok, name, lineno, &v))) break;
            if ((st = ft_tok_decode(tok, v.ids, v.n, skip, &text, &tl))) break;
            fwrite(text, 1, (size_t)tl, stdout);
            fputc('\n', stdout);
            free(text);
        } else {
            v.n = 0;
            if ((st = ft_tok_encode_append(tok, line, n, add_special, &v))) {
                ft_error_wrap(st, "%s:%lld", name, (long long)lineno);
                break;
            }
            for (int64_t i = 0; i < v.n; i++) printf(i ? " %d" : "%d", v.ids[i]);
            fputc('\n', stdout);
        }
    }
    if (st == FT_OK && ferror(in)) st = FT_ERR(FT_E_IO, "%s: read error", name);
    free(line);
    ft_tok_ids_free(&v);
    return st;
}

static ft_status ft_tokz_json(const ft_tok *tok, FILE *in, const char *name, int decode, int add_special, int skip) {
    char *buf = NULL;
    int64_t len = 0;
    FT_TRY(ft_tokz_read_all(in, name, &buf, &len));
    cJSON *arr = NULL;
    ft_status pst = ft_json_parse(buf, len, name, &arr);
    const int64_t nul = pst == FT_OK ? ft_json_nul_escape_at(buf, len) : -1;
    free(buf);
    FT_TRY(pst);
    if (nul >= 0) { /* cJSON's strings end at it: the text after it would be dropped */
        cJSON_Delete(arr);
        return FT_ERR(FT_E_FORMAT, "%s: a \\u0000 (a NUL character) at byte %lld: not supported in a string", name,
                      (long long)nul);
    }
    if (!cJSON_IsArray(arr)) {
        cJSON_Delete(arr);
        return FT_ERR(FT_E_FORMAT, "%s: --json input must be one JSON array", name);
    }
    /* the array is built in memory and printed whole: a bad element must not leave a truncated
     * array on stdout ('["a",' then the error) for the next program in a pipe to misread */
    char *obuf = NULL;
    size_t olen = 0;
    FILE *out = open_memstream(&obuf, &olen);
    if (!out) {
        cJSON_Delete(arr);
        return FT_ERR(FT_E_OOM, "out of memory writing JSON");
    }
    ft_status st = FT_OK;
    ft_tok_ids v = {0};
    int64_t i = 0;
    const cJSON *e;
    fputc('[', out);
    cJSON_ArrayForEach(e, arr) {
        if (i) fputc(',', out);
        if (decode) {
            v.n = 0;
            const cJSON *x;
            if (!cJSON_IsArray(e)) st = FT_ERR(FT_E_FORMAT, "%s: element %lld is not an array of ids", name, (long long)i);
            cJSON_ArrayForEach(x, e) {
                if (st) break;
                /* 3.7 is no id (it was decoded as 3) */
                if (!cJSON_IsNumber(x) || x->valuedouble < 0 || x->valuedouble >= (double)ft_tok_vocab_size(tok) ||
                    x->valuedouble != (double)(int64_t)x->valuedouble)
                    st = FT_ERR(FT_E_FORMAT, "%s: element %lld holds a value that is not a token id", name, (long long)i);
                else
                    st = ft_tok_ids_push(&v, (int32_t)x->valuedouble);
            }
            char *text = NULL;
            int64_t tlen = 0;
            if (st == FT_OK) st = ft_tok_decode(tok, v.ids, v.n, skip, &text, &tlen);
            if (st) break;
            if ((int64_t)strlen(text) != tlen) { /* a JSON string from cJSON would end at the NUL */
                st = FT_ERR(FT_E_FORMAT, "%s: element %lld decodes to text holding a NUL character, which --json "
                                         "cannot write (decode it without --json)", name, (long long)i);
                free(text);
                break;
            }
            cJSON *s = cJSON_CreateString(text);
            char *js = s ? cJSON_PrintUnformatted(s) : NULL;
            if (js) fputs(js, out);
            else st = FT_ERR(FT_E_OOM, "out of memory writing JSON");
            free(js);
            cJSON_Delete(s);
            free(text);
            if (st) break;
        } else {
            if (!cJSON_IsString(e)) {
                st = FT_ERR(FT_E_FORMAT, "%s: element %lld is not a string", name, (long long)i);
                break;
            }
            v.n = 0;
            if ((st = ft_tok_encode_append(tok, e->valuestring, -1, add_special, &v))) break;
            fputc('[', out);
            for (int64_t k = 0; k < v.n; k++) fprintf(out, k ? ",%d" : "%d", v.ids[k]);
            fputc(']', out);
        }
        i++;
    }
    fputs("]\n", out);
    if (fclose(out) != 0 && st == FT_OK) st = FT_ERR(FT_E_OOM, "out of memory writing JSON");
    if (st == FT_OK) fwrite(obuf, 1, olen, stdout);
    free(obuf);
    ft_tok_ids_free(&v);
    cJSON_Delete(arr);
    return st;
}

int ft_cmd_tokenize(int argc, char **argv) {
    ft_cli cli = {.command = "tokenize", .summary = "Encode text to token ids or decode ids to text (tokenizer.json).",
                  .opts = ft_tokenize_opts, .nopts = sizeof ft_tokenize_opts / sizeof *ft_tokenize_opts};
    ft_tok *tok = NULL;
    FILE *in = stdin;
    int rc = 0;
    ft_status st = ft_cli_parse(&cli, argc, argv);
    if (st == FT_OK && cli.help) {
        ft_cli_usage(&cli);
        ft_cli_free(&cli);
        return 0;
    }
    const char *dir = NULL, *file = NULL;
    if (st == FT_OK) st = ft_cli_req(&cli, "tokenizer", &dir);
    if (st == FT_OK) st = ft_cli_str(&cli, "file", &file);
    if (st != FT_OK) {
        fprintf(stderr, "ftune: error: %s\n", ft_error_msg());
        ft_cli_free(&cli);
        return 2;
    }
    st = ft_model_tokenizer(&tok, dir);
    if (st == FT_OK && file) {
        struct stat sb;
        in = fopen(file, "rb");
        if (!in) st = FT_ERR(FT_E_IO, "%s: cannot open: %s", file, strerror(errno));
        else if (fstat(fileno(in), &sb) == 0 && S_ISDIR(sb.st_mode)) /* was "read error" */
            st = FT_ERR(FT_E_IO, "%s: is a directory, not a file", file);
    }
    if (st == FT_OK) {
        int dec = ft_cli_flag(&cli, "decode"), sp = ft_cli_flag(&cli, "add-special"), sk = ft_cli_flag(&cli, "skip-special");
        const char *name = file ? file : "<stdin>";
        st = ft_cli_flag(&cli, "json") ? ft_tokz_json(tok, in, name, dec, sp, sk) : ft_tokz_lines(tok, in, name, dec, sp, sk);
    }
    if (fflush(stdout) != 0 && st == FT_OK) st = FT_ERR(FT_E_IO, "<stdout>: write failed");
    if (st != FT_OK) {
        fprintf(stderr, "ftune: error: %s\n", ft_error_msg());
        rc = 1;
    }
    if (in && in != stdin) fclose(in);
    ft_tok_free(tok);
    ft_cli_free(&cli);
    return rc;
}
