/* token_file.c: see token_file.h. */
#include "trainer/token_file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/mem.h"

typedef struct {
    ft_token_seqs s;
    int64_t cap_ids, cap_seq;
} ft_seq_builder;

/* Appends one parsed line (ids already validated) as a new sequence. */
static ft_status ft_push_seq(ft_seq_builder *b, const int32_t *ids, int64_t n) {
    int64_t used = b->s.start[b->s.n];
    if (used + n > b->cap_ids) {
        int64_t cap = (used + n) * 2 + 1024;
        int32_t *p = realloc(b->s.ids, (size_t)cap * 4);
        if (!p) return FT_ERR(FT_E_OOM, "out of memory reading token ids");
        b->s.ids = p, b->cap_ids = cap;
    }
    if (b->s.n + 2 > b->cap_seq) {
        int64_t cap = b->cap_seq * 2 + 16;
        int64_t *p = realloc(b->s.start, (size_t)cap * 8);
        if (!p) return FT_ERR(FT_E_OOM, "out of memory reading token ids");
        b->s.start = p, b->cap_seq = cap;
    }
    memcpy(b->s.ids + used, ids, (size_t)n * 4);
    b->s.n++;
    b->s.start[b->s.n] = used + n;
    return FT_OK;
}

/* Parses ids from line into *ids (growing); *n ids. */
static ft_status ft_parse_ids(const char *line, const char *what, int64_t lineno, int32_t **ids, int64_t *cap,
                              int64_t *n) {
    const char *p = line;
    *n = 0;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == ',' || *p == '\r' || *p == '\n') p++;
        if (!*p) break;
        char *end;
        errno = 0;
        long long v = strtoll(p, &end, 10);
        if (end == p || errno || v < 0 || v > INT32_MAX || (*end && !strchr(" \t,\r\n", *end))) {
            int len = 0;
            while (p[len] && !strchr(" \t,\r\n", p[len]) && len < 20) len++;
            if (lineno > 0)
                return FT_ERR(FT_E_FORMAT, "%s:%lld: '%.*s' is not a token id (non-negative integer)", what,
                              (long long)lineno, len, p);
            return FT_ERR(FT_E_ARG, "%s: '%.*s' is not a token id (non-negative integer)", what, len, p);
        }
        if (*n >= *cap) {
            *cap = *cap * 2 + 256;
            int32_t *q = realloc(*ids, (size_t)*cap * 4);
            if (!q) return FT_ERR(FT_E_OOM, "out of memory reading token ids");
            *ids = q;
        }
        (*ids)[(*n)++] = (int32_t)v;
        p = end;
    }
    return FT_OK;
}

static ft_status ft_builder_init(ft_seq_builder *b) {
    memset(b, 0, sizeof *b);
    b->cap_seq = 16;
    b->s.start = calloc((size_t)b->cap_seq, 8);
    if (!b->s.start) return FT_ERR(FT_E_OOM, "out of memory reading token ids");
    return FT_OK;
}

ft_status ft_token_file_read(const char *path, ft_token_seqs *out) {
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "r");
    if (!f) return FT_ERR(FT_E_IO, "%s: cannot open token file: %s", path, strerror(errno));
    ft_seq_builder b;
    ft_status st = ft_builder_init(&b);
    char *line = NULL;
    size_t lcap = 0;
    int32_t *ids = NULL;
    int64_t icap = 0, n, lineno = 0;
    ssize_t len;
    while (st == FT_OK && (len = getline(&line, &lcap, f)) != -1) {
        lineno++;
        /* the parser stops at a NUL: without this check the rest of the line would be dropped
         * silently (a binary or corrupt file would train on whatever ids precede the NUL) */
        if (memchr(line, '\0', (size_t)len)) {
            st = FT_ERR(FT_E_FORMAT, "%s:%lld: NUL byte in the line (not a text file of token ids?)", path,
                        (long long)lineno);
            break;
        }
        const char *p = line;
        while (*p == ' ' || *p == '\t') p++;
        if (*p == '#' || *p == '\n' || *p == '\r' || !*p) continue;
        st = ft_parse_ids(line, path, lineno, &ids, &icap, &n);
        if (st == FT_OK && n > 0) st = ft_push_seq(&b, ids, n);
    }
    if (st == FT_OK && ferror(f)) st = FT_ERR(FT_E_IO, "%s: read error", path);
    if (st == FT_OK && b.s.n == 0) st = FT_ERR(FT_E_FORMAT, "%s: no token sequences in file", path);
    free(line);
    free(ids);
    fclose(f);
    if (st != FT_OK) {
        ft_token_seqs_free(&b.s);
        return st;
    }
    *out = b.s;
    return FT_OK;
}

ft_status ft_token_list_parse(const char *s, const char *what, ft_token_seqs *out) {
    memset(out, 0, sizeof *out);
    ft_seq_builder b;
    FT_TRY(ft_builder_init(&b));
    int32_t *ids = NULL;
    int64_t icap = 0, n = 0;
    ft_status st = ft_parse_ids(s, what, 0, &ids, &icap, &n);
    if (st == FT_OK && n == 0) st = FT_ERR(FT_E_ARG, "%s: no token ids given", what);
    if (st == FT_OK) st = ft_push_seq(&b, ids, n);
    free(ids);
    if (st != FT_OK) {
        ft_token_seqs_free(&b.s);
        return st;
    }
    *out = b.s;
    return FT_OK;
}

void ft_token_seqs_free(ft_token_seqs *s) {
    free(s->ids);
    free(s->start);
    memset(s, 0, sizeof *s);
}
