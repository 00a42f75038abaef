/* json.c: see json.h. The trailing-data check accepts JSON whitespace only (cJSON's own skipping also
 * passes control bytes); duplicate keys are found by sorting the members of each object, so a
 * tokenizer.json vocabulary of 150k keys costs one sort, not a quadratic scan. */
#include "kernels/json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/fileio.h"
#include "kernels/mem.h"

cJSON *ft_json_parse_quiet(const char *text, int64_t len, int64_t *err_at, int *after_value) {
    if (err_at) *err_at = 0;
    if (after_value) *after_value = 0;
    if (!text) return NULL;
    if (len < 0) len = (int64_t)strlen(text);
    const char *nul = memchr(text, 0, (size_t)len); /* never in JSON text (it is written \u0000) */
    int64_t n = nul ? (int64_t)(nul - text) : len;
    const char *end = NULL;
    cJSON *v = n > 0 ? cJSON_ParseWithLengthOpts(text, (size_t)n, &end, 0) : NULL;
    if (!v) {
        int64_t at = end && end >= text && end <= text + n ? (int64_t)(end - text) : n;
        if (err_at) *err_at = at;
        return NULL;
    }
    for (const char *c = end; c < text + len; c++) {
        if (*c != ' ' && *c != '\t' && *c != '\n' && *c != '\r') {
            if (err_at) *err_at = (int64_t)(c - text);
            if (after_value) *after_value = 1;
            cJSON_Delete(v);
            return NULL;
        }
    }
    return v;
}

typedef struct ft_json_key {
    const char *k;
    int64_t i; /* position in the object: ties sort in document order */
    cJSON *item;
} ft_json_key;

static int ft_json_cmp_key(const void *a, const void *b) {
    const ft_json_key *x = a, *y = b;
    int c = strcmp(x->k, y->k);
    return c ? c : (x->i > y->i) - (x->i < y->i);
}

/* The members of obj sorted by (key, position); NULL with *n 0 or 1 when there is nothing to compare. */
static ft_status ft_json_sorted_keys(const cJSON *obj, const char *what, ft_json_key **out, int64_t *n) {
    *out = NULL;
    *n = 0;
    for (const cJSON *c = obj->child; c; c = c->next) (*n)++;
    if (*n < 2) return FT_OK;
    FT_TRY(ft_malloc((void **)out, (size_t)*n * sizeof **out, what ? what : "JSON object keys"));
    int64_t i = 0;
    for (cJSON *c = obj->child; c; c = c->next, i++) (*out)[i] = (ft_json_key){c->string ? c->string : "", i, c};
    qsort(*out, (size_t)*n, sizeof **out, ft_json_cmp_key);
    return FT_OK;
}

const cJSON *ft_json_dup_key(const cJSON *obj) {
    if (!cJSON_IsObject(obj)) return NULL;
    ft_json_key *k = NULL;
    int64_t n = 0;
    if (ft_json_sorted_keys(obj, NULL, &k, &n) != FT_OK) { /* out of memory: fall back to pairwise */
        ft_error_clear();
        for (const cJSON *a = obj->child; a; a = a->next)
            for (const cJSON *b = a->next; b; b = b->next)
                if (a->string && b->string && !strcmp(a->string, b->string)) return a;
        return NULL;
    }
    const cJSON *dup = NULL;
    for (int64_t i = 1; i < n && !dup; i++)
        if (!strcmp(k[i - 1].k, k[i].k)) dup = k[i - 1].item;
    free(k);
    return dup;
}

ft_status ft_json_dedupe(cJSON *node, const char *what) {
    if (!node) return FT_OK;
    if (cJSON_IsObject(node)) {
        ft_json_key *k = NULL;
        int64_t n = 0;
        FT_TRY(ft_json_sorted_keys(node, what, &k, &n));
        for (int64_t g = 0, h; g < n; g = h) {
            for (h = g + 1; h < n && !strcmp(k[h].k, k[g].k); h++) {}
            if (h - g < 2) continue;
            /* keep the last value at the first position: {"a":1,"b":2,"a":3} -> {"a":3,"b":2} */
            for (int64_t m = g + 1; m < h - 1; m++) cJSON_Delete(cJSON_DetachItemViaPointer(node, k[m].item));
            cJSON *last = cJSON_DetachItemViaPointer(node, k[h - 1].item);
            cJSON_ReplaceItemViaPointer(node, k[g].item, last); /* frees the first */
        }
        free(k);
    }
    if (cJSON_IsObject(node) || cJSON_IsArray(node))
        for (cJSON *c = node->child; c; c = c->next) FT_TRY(ft_json_dedupe(c, what));
    return FT_OK;
}

ft_status ft_json_parse_keep_dups(const char *text, int64_t len, const char *what, cJSON **out) {
    *out = NULL;
    int64_t at = 0;
    int after = 0;
    cJSON *v = ft_json_parse_quiet(text, len, &at, &after);
    if (!v) {
        if (after)
            return FT_ERR(FT_E_FORMAT, "%s: not valid JSON (unexpected data after the JSON value at byte %lld)", what,
                          (long long)at);
        return FT_ERR(FT_E_FORMAT, "%s: not valid JSON (malformed at byte %lld)", what, (long long)at);
    }
    *out = v;
    return FT_OK;
}

ft_status ft_json_parse(const char *text, int64_t len, const char *what, cJSON **out) {
    FT_TRY(ft_json_parse_keep_dups(text, len, what, out));
    ft_status st = ft_json_dedupe(*out, what);
    if (st != FT_OK) {
        cJSON_Delete(*out);
        *out = NULL;
    }
    return st;
}

ft_status ft_json_chat_template_file(const char *dir, char **out) {
    *out = NULL;
    char path[4200];
    char *text = NULL;
    int64_t len = 0;
    int missing = 1;
    snprintf(path, sizeof path, "%s/chat_template.jinja", dir);
    FT_TRY(ft_read_file(path, 0, &text, &len, &missing));
    if (!missing) {
        *out = text;
        return FT_OK;
    }
    snprintf(path, sizeof path, "%s/chat_template.json", dir);
    FT_TRY(ft_read_file(path, 1 << 26, &text, &len, &missing));
    if (missing) return FT_OK;
    cJSON *j = NULL;
    ft_status st = ft_json_parse(text, len, path, &j);
    free(text);
    if (st != FT_OK) return st;
    const cJSON *ct = cJSON_GetObjectItemCaseSensitive(j, "chat_template");
    if (!cJSON_IsString(ct)) st = FT_ERR(FT_E_FORMAT, "%s: no \"chat_template\" string", path);
    else if (!(*out = strdup(ct->valuestring))) st = FT_ERR(FT_E_OOM, "out of memory");
    cJSON_Delete(j);
    return st;
}

int64_t ft_json_nul_escape_at(const char *s, int64_t n) {
    for (int64_t i = 0; i + 1 < n; i++) {
        if (s[i] != '\\') continue;
        if (s[i + 1] == 'u' && i + 6 <= n && memcmp(s + i + 2, "0000", 4) == 0) return i;
        i++; /* the escaped character */
    }
    return -1;
}
