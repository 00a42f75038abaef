/* test_json.c: kernels/json (ft_json_parse), the JSON reading rules every input file goes through:
 *   - exactly one value: trailing data is rejected with the byte offset, JSON whitespace (space, tab,
 *     LF, CR) after it is accepted, a NUL byte or any other control byte after it is not;
 *   - empty, whitespace-only and truncated input fail with one line naming `what`;
 *   - duplicate keys resolve as Python's json does (last value, first position), at every depth: the
 *     fixture tests/fixtures/json/dups.json against dups_expected.json made by json.loads
 *     (tests/ref/json_dups.py), compared as trees and as printed bytes (key order);
 *   - ft_json_parse_keep_dups keeps them, ft_json_dup_key finds one, ft_json_parse_quiet reports where. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/json.h"
#include "tests/harness.h"

/* Parses and expects failure with a message naming `what` and containing `want`. */
static void expect_bad(const char *name, const char *text, int64_t len, const char *want) {
    cJSON *j = (cJSON *)1;
    ft_status st = ft_json_parse(text, len, "some/dir/file.json:7", &j);
    const char *msg = ft_error_msg();
    FT_CHECK(st == FT_E_FORMAT && j == NULL, "%s: status %s, out %p", name, ft_status_str(st), (void *)j);
    FT_CHECK(strncmp(msg, "some/dir/file.json:7: ", 22) == 0, "%s: message names what: %s", name, msg);
    FT_CHECK(strstr(msg, want) != NULL, "%s: message has \"%s\": %s", name, want, msg);
    FT_CHECK(strchr(msg, '\n') == NULL, "%s: one line: %s", name, msg);
    if (st == FT_OK) cJSON_Delete(j);
}

static void expect_ok(const char *name, const char *text, int64_t len, const char *printed) {
    cJSON *j = NULL;
    ft_status st = ft_json_parse(text, len, "mem.json", &j);
    FT_CHECK(st == FT_OK && j, "%s: %s", name, ft_error_msg());
    if (!j) return;
    char *p = cJSON_PrintUnformatted(j);
    FT_CHECK(p && strcmp(p, printed) == 0, "%s: got %s, want %s", name, p ? p : "(null)", printed);
    free(p);
    cJSON_Delete(j);
}

static void test_trailing(void) {
    expect_bad("garbage after object", "{\"a\": 1} x", -1, "unexpected data after the JSON value at byte 9");
    expect_bad("second object", "{\"a\": 1}{\"b\": 2}", -1, "unexpected data after the JSON value at byte 8");
    expect_bad("garbage after number", "12 34", -1, "unexpected data after the JSON value at byte 3");
    expect_bad("closing brace twice", "{\"a\": [1]}}", -1, "unexpected data after the JSON value at byte 10");
    expect_bad("control byte after value", "{}\x01", -1, "unexpected data after the JSON value at byte 2");
    expect_bad("form feed after value", "{}\f", -1, "unexpected data after the JSON value at byte 2");
    /* a NUL inside the length: never JSON text (cJSON alone would stop there and accept) */
    expect_bad("NUL after value", "{\"a\": 1}\0garbage", 16, "unexpected data after the JSON value at byte 8");
    expect_bad("NUL inside value", "{\"a\": \"x\0y\"}", 12, "not valid JSON");
    /* the length bounds the text: what lies past it is not read */
    expect_ok("length excludes the rest", "{\"a\": 1} x", 8, "{\"a\":1}");
    expect_ok("trailing whitespace", "{\"a\": 1} \t\r\n\n  ", -1, "{\"a\":1}");
    expect_ok("leading whitespace", "\n\t {\"a\": [true, null]}", -1, "{\"a\":[true,null]}");
    expect_ok("scalar", " \"s\" ", -1, "\"s\"");
    printf("ok   trailing data rejected, whitespace accepted\n");
}

static void test_empty_truncated(void) {
    expect_bad("empty", "", 0, "not valid JSON (malformed at byte 0)");
    expect_bad("empty, NUL-terminated length", "", -1, "not valid JSON");
    expect_bad("whitespace only", "  \n\t", -1, "not valid JSON");
    expect_bad("truncated object", "{\"hidden_size\": 4096,", -1, "not valid JSON (malformed at byte");
    expect_bad("truncated string", "{\"a\": \"abc", -1, "not valid JSON");
    expect_bad("truncated array", "[1, 2", -1, "not valid JSON");
    expect_bad("truncated by length", "{\"a\": 1}", 7, "not valid JSON");
    expect_bad("syntax error", "{\"t\" 5}", -1, "not valid JSON (malformed at byte");
    /* the byte offset points at the problem, not past the text */
    int64_t at = -1;
    int after = -1;
    FT_CHECK(ft_json_parse_quiet("[1, 2, x]", -1, &at, &after) == NULL && after == 0 && at >= 6 && at <= 7,
             "quiet: error at %lld, after %d", (long long)at, after);
    FT_CHECK(ft_json_parse_quiet("[1] ]", -1, &at, &after) == NULL && after == 1 && at == 4, "quiet trailing: %lld %d",
             (long long)at, after);
    printf("ok   empty and truncated input name the file\n");
}

static char *read_fixture(const char *name, int64_t *len) {
    char p[1024];
    snprintf(p, sizeof p, "%s/tests/fixtures/json/%s", ft_test_src_dir(), name);
    char *buf = NULL;
    FT_CHECK_OK(ft_test_read_file(p, &buf, len));
    return buf;
}

static void test_dups_fixture(void) {
    int64_t n1 = 0, n2 = 0;
    char *dups = read_fixture("dups.json", &n1), *want = read_fixture("dups_expected.json", &n2);
    if (!dups || !want) {
        free(dups), free(want);
        return;
    }
    cJSON *got = NULL, *ref = NULL, *raw = NULL;
    FT_CHECK_OK(ft_json_parse(dups, n1, "dups.json", &got));
    FT_CHECK_OK(ft_json_parse(want, n2, "dups_expected.json", &ref));
    if (got && ref) {
        FT_CHECK(cJSON_Compare(got, ref, 1), "dups.json resolves to what json.loads reads");
        char *p = cJSON_PrintUnformatted(got);
        while (n2 > 0 && want[n2 - 1] == '\n') want[--n2] = 0;
        FT_CHECK(p && strcmp(p, want) == 0, "printed in Python's key order:\n  got  %s\n  want %s", p, want);
        free(p);
        /* spot checks through the ordinary lookups the readers use */
        FT_CHECK(cJSON_GetObjectItemCaseSensitive(got, "num_hidden_layers")->valuedouble == 4, "top level: last wins");
        const cJSON *rs = cJSON_GetObjectItemCaseSensitive(got, "rope_scaling");
        FT_CHECK(!strcmp(cJSON_GetObjectItemCaseSensitive(rs, "rope_type")->valuestring, "llama3") &&
                     cJSON_GetObjectItemCaseSensitive(rs, "factor")->valuedouble == 8 && cJSON_GetArraySize(rs) == 3,
                 "nested object: last wins, one member per key");
        FT_CHECK(!strcmp(cJSON_GetObjectItemCaseSensitive(got, "x")->valuestring, "third"), "three occurrences");
        FT_CHECK(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(got, "kind")), "the last value's type");
        FT_CHECK(ft_json_dup_key(got) == NULL && ft_json_dup_key(rs) == NULL, "no duplicates left");
    }
    /* keep_dups keeps every occurrence (cJSON's first-wins lookup), which ft_json_dup_key finds */
    FT_CHECK_OK(ft_json_parse_keep_dups(dups, n1, "dups.json", &raw));
    if (raw) {
        FT_CHECK(cJSON_GetObjectItemCaseSensitive(raw, "num_hidden_layers")->valuedouble == 2, "keep_dups: first");
        const cJSON *d = ft_json_dup_key(raw);
        FT_CHECK(d && d->string, "ft_json_dup_key finds a repeated key");
        FT_CHECK_OK(ft_json_dedupe(raw, "dups.json"));
        FT_CHECK(ref && cJSON_Compare(raw, ref, 1), "ft_json_dedupe afterwards = ft_json_parse");
    }
    cJSON_Delete(got), cJSON_Delete(ref), cJSON_Delete(raw);
    free(dups), free(want);
    printf("ok   duplicate keys resolve as json.loads (fixture)\n");
}

static void test_dups_inline(void) {
    expect_ok("first position, last value", "{\"a\":1,\"b\":2,\"a\":3}", -1, "{\"a\":3,\"b\":2}");
    expect_ok("adjacent", "{\"a\":1,\"a\":2}", -1, "{\"a\":2}");
    expect_ok("in an array of objects", "[{\"a\":1,\"a\":2},{\"b\":[{\"c\":1,\"c\":{\"d\":1,\"d\":2}}]}]", -1,
              "[{\"a\":2},{\"b\":[{\"c\":{\"d\":2}}]}]");
    expect_ok("keys differing in case are distinct", "{\"A\":1,\"a\":2}", -1, "{\"A\":1,\"a\":2}");
    /* a large object (a tokenizer vocabulary): one sort, not a quadratic scan */
    enum { N = 200000 };
    size_t cap = (size_t)N * 24 + 64, len = 0;
    char *big = malloc(cap);
    FT_CHECK(big != NULL, "alloc");
    if (!big) return;
    len += (size_t)snprintf(big + len, cap - len, "{");
    for (int i = 0; i < N; i++) len += (size_t)snprintf(big + len, cap - len, "%s\"t%d\":%d", i ? "," : "", i % (N / 2), i);
    len += (size_t)snprintf(big + len, cap - len, "}");
    cJSON *j = NULL;
    FT_CHECK_OK(ft_json_parse(big, (int64_t)len, "big.json", &j));
    if (j) {
        const cJSON *t0 = cJSON_GetObjectItemCaseSensitive(j, "t0"), *tl = cJSON_GetObjectItemCaseSensitive(j, "t99999");
        FT_CHECK(cJSON_GetArraySize(j) == N / 2 && t0 && t0->valuedouble == N / 2 && tl && tl->valuedouble == N - 1 &&
                     j->child == t0,
                 "200k keys, each twice: %d left", cJSON_GetArraySize(j));
        cJSON_Delete(j);
    }
    free(big);
    printf("ok   duplicate keys inline and at scale\n");
}

int main(void) {
    test_trailing();
    test_empty_truncated();
    test_dups_fixture();
    test_dups_inline();
    return ft_test_finish();
}
