/* jsonl.c: see jsonl.h. JSONL is read with getline (any line length, CRLF and a UTF-8 BOM
 * tolerated); a .json array is mapped whole and parsed one element at a time, so each element has
 * a line number and is freed before the next. */
#include "data/jsonl.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "data/unicode.h"
#include "kernels/fileio.h"
#include "kernels/json.h"
#include "kernels/log.h"
#include "kernels/mem.h"

struct ft_jsonl {
    char *path;
    FILE *f;
    ft_jsonl_opts opts;
    ft_data_format fmt;
    /* JSONL */
    char *line;
    size_t line_cap;
    int64_t line_no;   /* line of the record being parsed */
    /* .json array */
    int is_array;
    char *buf;
    int64_t buf_len, pos, pos_line;
    int mapped;        /* buf is an mmap of the file (else malloc'd); never NUL-terminated then */
    int array_state;   /* 0: before first element, 1: after an element, 2: done */
    /* current record */
    cJSON *cur;
    ft_chat_msg *msgs;
    int64_t msgs_cap;
    ft_record rec;
    int have_rec;
    ft_jsonl_stats st;
    int summarized;
};

const char *ft_data_format_name(ft_data_format f) {
    switch (f) {
    case FT_FMT_AUTO: return "auto";
    case FT_FMT_TEXT: return "text";
    case FT_FMT_ALPACA: return "alpaca";
    case FT_FMT_PROMPT_COMPLETION: return "prompt-completion";
    case FT_FMT_CHAT: return "chat";
    }
    return "?";
}

ft_status ft_data_format_parse(const char *name, ft_data_format *out) {
    static const struct { const char *n; ft_data_format f; } tab[] = {
        {"auto", FT_FMT_AUTO}, {"text", FT_FMT_TEXT}, {"alpaca", FT_FMT_ALPACA},
        {"prompt-completion", FT_FMT_PROMPT_COMPLETION}, {"completion", FT_FMT_PROMPT_COMPLETION},
        {"chat", FT_FMT_CHAT}, {"messages", FT_FMT_CHAT}, {"sharegpt", FT_FMT_CHAT},
    };
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++) {
        if (strcmp(name, tab[i].n) == 0) {
            *out = tab[i].f;
            return FT_OK;
        }
    }
    return FT_ERR(FT_E_ARG, "unknown data format \"%s\" (expected auto, text, alpaca, prompt-completion or chat)",
                  name);
}

const char *ft_role_name(ft_role r) {
    switch (r) {
    case FT_ROLE_SYSTEM: return "system";
    case FT_ROLE_USER: return "user";
    case FT_ROLE_ASSISTANT: return "assistant";
    }
    return "?";
}

/* ---- errors ------------------------------------------------------------------------------ */

/* Reports a malformed record at `line` according to the policy. */
/* Byte offset of the first byte of s[0, n) that is not valid UTF-8, or -1. */
static int64_t jl_utf8_bad_at(const char *s, int64_t n) {
    if (ft_utf8_valid(s, n)) return -1;
    for (int64_t i = 0; i < n;) {
        int k = 1;
        if (ft_utf8_decode((const uint8_t *)s + i, n - i, &k) < 0) return i;
        i += k;
    }
    return -1;
}

/* Byte offset of the first \\uD800-\\uDFFF escape not in a high-low pair in s[0, n), or -1: cJSON
 * refuses such a lone surrogate, Python's json accepts it and the tokenizer then cannot (it is not
 * Unicode text), so it is a malformed record named as such rather than "invalid JSON". */
/* The 4 hex digits at s as a number, or -1 when they are not 4 hex digits. */
static long jl_hex4(const char *s) {
    long v = 0;
    for (int k = 0; k < 4; k++) {
        int c = (unsigned char)s[k], d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                                                : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

static int64_t jl_lone_surrogate_at(const char *s, int64_t n) {
    for (int64_t i = 0; i + 5 < n; i++) {
        if (s[i] != '\\') continue;
        if (s[i + 1] != 'u') {
            i++;
            continue;
        }
        long v = jl_hex4(s + i + 2);
        if (v < 0) continue;
        if (v >= 0xD800 && v <= 0xDBFF) { /* high: a low one must follow */
            long w = i + 11 < n && s[i + 6] == '\\' && s[i + 7] == 'u' ? jl_hex4(s + i + 8) : -1;
            if (w >= 0xDC00 && w <= 0xDFFF) {
                i += 11;
                continue;
            }
            return i;
        }
        if (v >= 0xDC00 && v <= 0xDFFF) return i;
        i += 5;
    }
    return -1;
}

/* Where the JSON value starting at s[0, n) ends, by brackets and strings alone (not validating it),
 * so that an array element cJSON cannot parse can be skipped; -1 when it does not end. */
static int64_t jl_value_end(const char *s, int64_t n) {
    int64_t depth = 0;
    for (int64_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '"') {
            for (i++; i < n && s[i] != '"'; i++)
                if (s[i] == '\\') i++;
            if (i >= n) return -1;
            if (depth == 0) return i + 1;
        } else if (c == '{' || c == '[') {
            depth++;
        } else if (c == '}' || c == ']') {
            if (depth == 0) return i; /* a scalar element ended by the array's ']' */
            if (--depth == 0) return i + 1;
        } else if (c == ',' && depth == 0) {
            return i;
        }
    }
    return -1;
}

/* The problem of a record's text that parsed as JSON but cannot be read as Python reads it (bytes
 * that are not UTF-8, a \u0000 that cJSON would cut the string at), in err; 0 when there is none.
 * Columns count from the start of the problem's line, found in s or, for s's first line, back in
 * the buffer that begins at `floor`; *line_off is the line of the problem counted from s's (optional). */
static int jl_text_problem(const char *s, int64_t n, const char *floor, char *err, size_t errlen, int64_t *line_off) {
    int64_t at = jl_utf8_bad_at(s, n);
    const char *what = "not valid UTF-8", *why = "";
    if (at < 0) {
        at = ft_json_nul_escape_at(s, n);
        what = "\\u0000 (a NUL character)", why = ": not supported in a string";
    }
    if (at < 0) return 0;
    int64_t lines = 0, col0 = 0;
    for (int64_t i = 0; i < at; i++)
        if (s[i] == '\n') lines++, col0 = i + 1;
    if (lines == 0)
        while (s + col0 > floor && s[col0 - 1] != '\n') col0--;
    if (line_off) *line_off = lines;
    snprintf(err, errlen, "%s at column %lld%s", what, (long long)(at - col0 + 1), why);
    return 1;
}

static ft_status jl_bad(ft_jsonl *r, int64_t line, const char *problem) {
    char msg[sizeof r->st.first_error];
    snprintf(msg, sizeof msg, "%s:%lld: %s", r->path, (long long)line, problem);
    if (r->opts.fatal) return FT_ERR(FT_E_FORMAT, "%s", msg);
    r->st.skipped++;
    if (!r->st.first_error[0]) snprintf(r->st.first_error, sizeof r->st.first_error, "%s", msg);
    if (!r->opts.quiet && r->st.skipped <= r->opts.max_logged) ft_warn("skipping %s", msg);
    return FT_OK;
}

ft_status ft_jsonl_reject(ft_jsonl *r, const char *fmt, ...) {
    char problem[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(problem, sizeof problem, fmt, ap);
    va_end(ap);
    int64_t line = r->have_rec ? r->rec.line : r->line_no;
    if (r->have_rec && r->st.records > 0) r->st.records--; /* it no longer counts as a record */
    r->have_rec = 0;
    return jl_bad(r, line, problem);
}

static void jl_summary(ft_jsonl *r) {
    if (r->summarized) return;
    r->summarized = 1;
    if (r->st.skipped > 0 && !r->opts.quiet) {
        int64_t hidden = r->st.skipped - r->opts.max_logged;
        ft_warn("%s: skipped %lld malformed record(s), kept %lld (first: %s)%s", r->path, (long long)r->st.skipped,
                (long long)r->st.records, r->st.first_error, hidden > 0 ? " (not all shown)" : "");
    }
}

/* ---- record classification ---------------------------------------------------------------- */

static const char *jl_type_name(const cJSON *v) {
    if (cJSON_IsNull(v)) return "null";
    if (cJSON_IsBool(v)) return "a boolean";
    if (cJSON_IsNumber(v)) return "a number";
    if (cJSON_IsString(v)) return "a string";
    if (cJSON_IsArray(v)) return "an array";
    if (cJSON_IsObject(v)) return "an object";
    return "invalid";
}

/* Looks up a string field. Returns 0 and sets *out (NULL if absent and optional), or -1 with
 * the problem in err. */
static int jl_str(const cJSON *o, const char *key, int required, const char **out, char *err, size_t errlen,
                  const char *what) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    *out = NULL;
    if (!v) {
        if (!required) return 0;
        snprintf(err, errlen, "missing key \"%s\"%s%s%s", key, what ? " (expected " : "", what ? what : "",
                 what ? " record)" : "");
        return -1;
    }
    if (!cJSON_IsString(v) || !v->valuestring) {
        snprintf(err, errlen, "\"%s\" is %s, expected a string", key, jl_type_name(v));
        return -1;
    }
    *out = v->valuestring;
    return 0;
}

static ft_data_format jl_classify(const cJSON *o) {
    if (cJSON_GetObjectItemCaseSensitive(o, "messages") || cJSON_GetObjectItemCaseSensitive(o, "conversations"))
        return FT_FMT_CHAT;
    if (cJSON_GetObjectItemCaseSensitive(o, "instruction") && cJSON_GetObjectItemCaseSensitive(o, "output"))
        return FT_FMT_ALPACA;
    if (cJSON_GetObjectItemCaseSensitive(o, "prompt") && cJSON_GetObjectItemCaseSensitive(o, "completion"))
        return FT_FMT_PROMPT_COMPLETION;
    if (cJSON_GetObjectItemCaseSensitive(o, "text")) return FT_FMT_TEXT;
    return FT_FMT_AUTO;
}

static int jl_role(const char *s, ft_role *out) {
    if (strcmp(s, "system") == 0) *out = FT_ROLE_SYSTEM;
    else if (strcmp(s, "user") == 0 || strcmp(s, "human") == 0) *out = FT_ROLE_USER;
    else if (strcmp(s, "assistant") == 0 || strcmp(s, "gpt") == 0) *out = FT_ROLE_ASSISTANT;
    else return -1;
    return 0;
}

static int jl_parse_chat(ft_jsonl *r, const cJSON *o, char *err, size_t errlen) {
    const char *key = "messages";
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!arr) arr = cJSON_GetObjectItemCaseSensitive(o, key = "conversations");
    if (!arr) {
        snprintf(err, errlen, "missing key \"messages\" (expected a chat record)");
        return -1;
    }
    if (!cJSON_IsArray(arr)) {
        snprintf(err, errlen, "\"%s\" is %s, expected an array", key, jl_type_name(arr));
        return -1;
    }
    int64_t n = cJSON_GetArraySize(arr);
    if (n == 0) {
        snprintf(err, errlen, "empty \"%s\"", key);
        return -1;
    }
    if (n > r->msgs_cap) {
        ft_chat_msg *m = realloc(r->msgs, (size_t)n * sizeof *m);
        if (!m) {
            snprintf(err, errlen, "out of memory for %lld messages", (long long)n);
            return -1;
        }
        r->msgs = m;
        r->msgs_cap = n;
    }
    int64_t i = 0, n_asst = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, arr) {
        char sub[256];
        if (!cJSON_IsObject(m)) {
            snprintf(err, errlen, "%s[%lld] is %s, expected an object", key, (long long)i, jl_type_name(m));
            return -1;
        }
        /* OpenAI style role/content, or ShareGPT from/value. */
        const char *rk = "role", *ck = "content";
        if (!cJSON_GetObjectItemCaseSensitive(m, "role") && cJSON_GetObjectItemCaseSensitive(m, "from")) {
            rk = "from";
            ck = "value";
        }
        const char *role, *content, *reasoning;
        if (jl_str(m, rk, 1, &role, sub, sizeof sub, NULL) || jl_str(m, ck, 1, &content, sub, sizeof sub, NULL)) {
            snprintf(err, errlen, "%s[%lld]: %s", key, (long long)i, sub);
            return -1;
        }
        ft_role rl;
        if (jl_role(role, &rl)) {
            snprintf(err, errlen, "%s[%lld]: unknown role \"%.64s\" (expected system, user or assistant)", key,
                     (long long)i, role);
            return -1;
        }
        const cJSON *rv = cJSON_GetObjectItemCaseSensitive(m, "reasoning_content");
        reasoning = NULL;
        if (rv && !cJSON_IsNull(rv)) {
            if (!cJSON_IsString(rv)) {
                snprintf(err, errlen, "%s[%lld]: \"reasoning_content\" is %s, expected a string", key, (long long)i,
                         jl_type_name(rv));
                return -1;
            }
            reasoning = rv->valuestring;
        }
        r->msgs[i].role = rl;
        r->msgs[i].content = content;
        r->msgs[i].reasoning = reasoning;
        n_asst += rl == FT_ROLE_ASSISTANT;
        i++;
    }
    if (n_asst == 0) {
        snprintf(err, errlen, "conversation has no assistant message (nothing to train on)");
        return -1;
    }
    r->rec.messages = r->msgs;
    r->rec.n_messages = n;
    return 0;
}

/* Fills r->rec from object o in format fmt; -1 with the problem in err. */
static int jl_parse_record(ft_jsonl *r, const cJSON *o, ft_data_format fmt, char *err, size_t errlen) {
    ft_record *rec = &r->rec;
    memset(rec, 0, sizeof *rec);
    rec->format = fmt;
    rec->source = r->path;
    switch (fmt) {
    case FT_FMT_TEXT:
        if (jl_str(o, "text", 1, &rec->text, err, errlen, "a text")) return -1;
        if (!rec->text[0]) {
            snprintf(err, errlen, "empty \"text\"");
            return -1;
        }
        return 0;
    case FT_FMT_ALPACA:
        if (jl_str(o, "instruction", 1, &rec->instruction, err, errlen, "an alpaca") ||
            jl_str(o, "input", 0, &rec->input, err, errlen, NULL) ||
            jl_str(o, "output", 1, &rec->output, err, errlen, "an alpaca"))
            return -1;
        if (!rec->input) rec->input = "";
        if (!rec->instruction[0] || !rec->output[0]) {
            snprintf(err, errlen, "empty \"%s\"", rec->instruction[0] ? "output" : "instruction");
            return -1;
        }
        return 0;
    case FT_FMT_PROMPT_COMPLETION:
        if (jl_str(o, "prompt", 1, &rec->prompt, err, errlen, "a prompt-completion") ||
            jl_str(o, "completion", 1, &rec->completion, err, errlen, "a prompt-completion"))
            return -1;
        if (!rec->completion[0]) {
            snprintf(err, errlen, "empty \"completion\"");
            return -1;
        }
        return 0;
    case FT_FMT_CHAT:
        return jl_parse_chat(r, o, err, errlen);
    case FT_FMT_AUTO:
        break;
    }
    snprintf(err, errlen, "internal: no format");
    return -1;
}

/* Classifies and parses a parsed JSON value. 1: record ready; 0: malformed (reported). */
static ft_status jl_take(ft_jsonl *r, cJSON *v, int64_t line, int *ready) {
    char err[400];
    *ready = 0;
    if (!cJSON_IsObject(v)) {
        snprintf(err, sizeof err, "record is %s, expected a JSON object", jl_type_name(v));
        return jl_bad(r, line, err);
    }
    ft_data_format fmt = r->fmt;
    if (fmt == FT_FMT_AUTO) {
        fmt = jl_classify(v);
        if (fmt == FT_FMT_AUTO)
            return jl_bad(r, line,
                          "unrecognized record: expected key \"text\", \"instruction\"+\"output\", "
                          "\"prompt\"+\"completion\" or \"messages\"");
    }
    if (jl_parse_record(r, v, fmt, err, sizeof err)) return jl_bad(r, line, err);
    if (r->fmt == FT_FMT_AUTO) {
        r->fmt = fmt;
        if (!r->opts.quiet)
            ft_debug("%s: detected %s format at line %lld", r->path, ft_data_format_name(fmt), (long long)line);
    }
    r->rec.line = line;
    r->rec.index = r->st.records;
    *ready = 1;
    return FT_OK;
}

/* ---- open / next / close ------------------------------------------------------------------ */

static int jl_ends_with_json(const char *p) {
    size_t n = strlen(p);
    return n >= 5 && strcasecmp(p + n - 5, ".json") == 0;
}

ft_status ft_jsonl_open(ft_jsonl **out, const char *path, const ft_jsonl_opts *opts) {
    *out = NULL;
    ft_jsonl *r;
    FT_TRY(ft_calloc((void **)&r, sizeof *r, "jsonl reader"));
    if (opts) r->opts = *opts;
    if (r->opts.max_logged <= 0) r->opts.max_logged = 20;
    r->fmt = r->opts.format;
    r->path = strdup(path);
    r->f = fopen(path, "rb");
    if (!r->path || !r->f) {
        int e = errno;
        ft_jsonl_close(r);
        return FT_ERR(FT_E_IO, "%s: cannot open: %s", path, strerror(e));
    }
    /* Peek at the first non-blank byte (after a BOM) to recognize a JSON array. */
    int c;
    do {
        c = fgetc(r->f);
    } while (c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == 0xEF || c == 0xBB || c == 0xBF);
    r->is_array = c == '[' || (c == EOF && jl_ends_with_json(path));
    rewind(r->f);
    if (r->is_array) { /* parsed from memory: the stream is not needed */
        /* mapped, not read: a dataset reads each file with two readers (trainer/dataset_tokenize.c),
         * and two malloc'd copies of a multi-GB array held 1.6x the file in anonymous memory beside
         * the tokens; the mappings share the page cache, which the kernel can take back */
        struct stat sb;
        if (fstat(fileno(r->f), &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_size > 0) {
            void *m = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fileno(r->f), 0);
            if (m != MAP_FAILED) {
                madvise(m, (size_t)sb.st_size, MADV_SEQUENTIAL);
                r->buf = m, r->buf_len = (int64_t)sb.st_size, r->mapped = 1;
            }
        }
        fclose(r->f);
        r->f = NULL;
        ft_status st = r->mapped ? FT_OK : ft_read_file(path, 0, &r->buf, &r->buf_len, NULL); /* a pipe, or empty */
        if (st != FT_OK) {
            ft_jsonl_close(r);
            return st;
        }
        r->pos_line = 1;
        char *lb = memchr(r->buf, '[', (size_t)r->buf_len);
        if (!lb) {
            ft_jsonl_close(r);
            return FT_ERR(FT_E_FORMAT, "%s:1: expected a JSON array of records", path);
        }
        for (char *p = r->buf; p < lb; p++) r->pos_line += *p == '\n';
        r->pos = lb - r->buf + 1;
    }
    *out = r;
    return FT_OK;
}

static void jl_free_cur(ft_jsonl *r) {
    if (r->cur) cJSON_Delete(r->cur);
    r->cur = NULL;
    r->have_rec = 0;
}

static void jl_skip_ws(ft_jsonl *r) {
    while (r->pos < r->buf_len && isspace((unsigned char)r->buf[r->pos])) r->pos_line += r->buf[r->pos++] == '\n';
}

static ft_status jl_next_array(ft_jsonl *r, const ft_record **rec) {
    for (;;) {
        jl_skip_ws(r);
        if (r->array_state == 2 || r->pos >= r->buf_len) {
            if (r->array_state != 2)
                return FT_ERR(FT_E_FORMAT, "%s:%lld: unterminated JSON array (missing ']')", r->path,
                              (long long)r->pos_line);
            *rec = NULL;
            jl_summary(r);
            return FT_OK;
        }
        char c = r->buf[r->pos];
        if (c == ']') {
            r->pos++;
            r->array_state = 2;
            jl_skip_ws(r);
            if (r->pos < r->buf_len)
                return FT_ERR(FT_E_FORMAT, "%s:%lld: unexpected data after the JSON array", r->path,
                              (long long)r->pos_line);
            continue;
        }
        if (r->array_state == 1) {
            if (c != ',')
                return FT_ERR(FT_E_FORMAT, "%s:%lld: expected ',' or ']' between array elements", r->path,
                              (long long)r->pos_line);
            r->pos++;
            jl_skip_ws(r);
            if (r->pos >= r->buf_len) continue; /* reported as unterminated above */
        }
        int64_t line = r->pos_line;
        const char *start = r->buf + r->pos, *end = NULL;
        cJSON *v = cJSON_ParseWithLengthOpts(start, (size_t)(r->buf_len - r->pos), &end, 0);
        if (!v) {
            /* an element that ends where its brackets say and holds a lone surrogate is one malformed
             * record (skipped under data.on_error: skip); anything else leaves no way to find the next */
            int64_t ve = jl_value_end(start, r->buf_len - r->pos);
            int64_t sur = ve > 0 ? jl_lone_surrogate_at(start, ve) : -1;
            if (sur >= 0) {
                int64_t sl = 0;
                for (const char *p = start; p < start + sur; p++) sl += *p == '\n';
                char err[160];
                snprintf(err, sizeof err, "a lone UTF-16 surrogate %.6s (not Unicode text)", start + sur);
                for (const char *p = start; p < start + ve; p++) r->pos_line += *p == '\n';
                r->pos += ve;
                r->array_state = 1;
                FT_TRY(jl_bad(r, line + sl, err));
                continue;
            }
            int64_t el = line;
            for (const char *p = start; end && p < end; p++) el += *p == '\n';
            return FT_ERR(FT_E_FORMAT, "%s:%lld: invalid JSON in array element starting at line %lld", r->path,
                          (long long)el, (long long)line);
        }
        for (const char *p = start; p < end; p++) r->pos_line += *p == '\n';
        r->pos = end - r->buf;
        r->array_state = 1;
        r->line_no = line;
        r->cur = v;
        char terr[160];
        int64_t tline = 0;
        if (jl_text_problem(start, (int64_t)(end - start), r->buf, terr, sizeof terr, &tline)) {
            FT_TRY(jl_bad(r, line + tline, terr));
            jl_free_cur(r);
            continue;
        }
        FT_TRY(ft_json_dedupe(v, r->path)); /* a repeated key: the last wins, as json.load */
        int ready;
        ft_status st = jl_take(r, v, line, &ready);
        if (st != FT_OK) return st;
        if (ready) {
            r->st.records++;
            r->have_rec = 1;
            *rec = &r->rec;
            return FT_OK;
        }
        jl_free_cur(r);
    }
}

ft_status ft_jsonl_next(ft_jsonl *r, const ft_record **rec) {
    *rec = NULL;
    jl_free_cur(r);
    if (r->is_array) return jl_next_array(r, rec);
    for (;;) {
        errno = 0;
        ssize_t n = getline(&r->line, &r->line_cap, r->f);
        if (n < 0) {
            if (ferror(r->f)) return FT_ERR(FT_E_IO, "%s: read failed: %s", r->path, strerror(errno));
            jl_summary(r);
            return FT_OK;
        }
        r->st.lines++;
        r->line_no = r->st.lines;
        char *s = r->line;
        if (r->line_no == 1 && n >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0) {
            s += 3;
            n -= 3;
        }
        while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r')) s[--n] = 0;
        ssize_t i = 0;
        while (i < n && isspace((unsigned char)s[i])) i++;
        if (i == n) {
            r->st.blank++;
            continue;
        }
        /* UTF-8 first: Python reads the file as text and fails on the first bad byte, cJSON would
         * pass the bytes through (and the tokenizer repair them) */
        int64_t bad = jl_utf8_bad_at(s, (int64_t)n);
        if (bad >= 0) {
            char err[96];
            snprintf(err, sizeof err, "not valid UTF-8 at column %lld", (long long)bad + 1);
            FT_TRY(jl_bad(r, r->line_no, err));
            continue;
        }
        /* one JSON value, only whitespace after it (as json.loads(line)); a repeated key: the last wins */
        int64_t at = 0;
        int after = 0;
        cJSON *v = ft_json_parse_quiet(s, (int64_t)n, &at, &after);
        if (!v) {
            char err[128];
            int64_t sur = jl_lone_surrogate_at(s, (int64_t)n);
            if (memchr(s, 0, (size_t)n)) snprintf(err, sizeof err, "NUL byte in line");
            else if (sur >= 0)
                snprintf(err, sizeof err, "a lone UTF-16 surrogate %.6s at column %lld (not Unicode text)", s + sur,
                         (long long)sur + 1);
            else if (after) snprintf(err, sizeof err, "invalid JSON: unexpected data after the value at column %lld", (long long)at + 1);
            else snprintf(err, sizeof err, "invalid JSON near column %lld", (long long)at + 1);
            FT_TRY(jl_bad(r, r->line_no, err));
            continue;
        }
        r->cur = v;
        char terr[160];
        if (jl_text_problem(s, (int64_t)n, s, terr, sizeof terr, NULL)) {
            FT_TRY(jl_bad(r, r->line_no, terr));
            jl_free_cur(r);
            continue;
        }
        FT_TRY(ft_json_dedupe(v, r->path));
        int ready;
        FT_TRY(jl_take(r, v, r->line_no, &ready));
        if (ready) {
            r->st.records++;
            r->have_rec = 1;
            *rec = &r->rec;
            return FT_OK;
        }
        jl_free_cur(r);
    }
}

ft_data_format ft_jsonl_format(const ft_jsonl *r) { return r->fmt; }

void ft_jsonl_get_stats(const ft_jsonl *r, ft_jsonl_stats *out) { *out = r->st; }

void ft_jsonl_close(ft_jsonl *r) {
    if (!r) return;
    jl_free_cur(r);
    if (r->f) fclose(r->f);
    free(r->line);
    if (r->mapped) munmap(r->buf, (size_t)r->buf_len);
    else free(r->buf);
    free(r->msgs);
    free(r->path);
    free(r);
}
