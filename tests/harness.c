/* harness.c: see harness.h. */
#include "tests/harness.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kernels/fileio.h"

typedef struct { int passed, failed; char tmp[512]; } ft_test_state;
static ft_test_state ft_ts; /* test-process state only (never in the product) */

int ft_check_impl(int ok, const char *file, int line, const char *fmt, ...) {
    if (ok) {
        ft_ts.passed++;
        return 1;
    }
    ft_ts.failed++;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stdout, "FAIL %s:%d: ", file, line);
    vfprintf(stdout, fmt, ap);
    fputc('\n', stdout);
    va_end(ap);
    fflush(stdout);
    return 0;
}

ft_cmp ft_compare_f32(const float *a, const float *ref, int64_t n) {
    ft_cmp c = {0, 0, -1, 0};
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(a[i]) || !isfinite(ref[i])) {
            c.n_nonfinite++;
            continue;
        }
        double d = (double)a[i] - (double)ref[i];
        num += d * d;
        den += (double)ref[i] * ref[i];
        if (fabs(d) > c.max_abs || c.worst < 0) {
            c.max_abs = fabs(d);
            c.worst = i;
        }
    }
    c.rel_l2 = den > 0 ? sqrt(num / den) : sqrt(num);
    return c;
}

int ft_check_close_impl(const float *a, const float *ref, int64_t n, double tol, const char *what, const char *file,
                        int line) {
    ft_cmp c = ft_compare_f32(a, ref, n);
    int ok = c.n_nonfinite == 0 && c.rel_l2 <= tol;
    if (!ok) {
        return ft_check_impl(0, file, line,
                             "%s: rel_l2 %.3e (tol %.1e), max_abs %.3e at %lld (%g vs ref %g), %lld non-finite of %lld",
                             what, c.rel_l2, tol, c.max_abs, (long long)c.worst,
                             c.worst >= 0 ? a[c.worst] : 0.0, c.worst >= 0 ? ref[c.worst] : 0.0,
                             (long long)c.n_nonfinite, (long long)n);
    }
    printf("ok   %s: rel_l2 %.3e (tol %.1e) over %lld values\n", what, c.rel_l2, tol, (long long)n);
    return ft_check_impl(1, file, line, "%s", what);
}

int ft_test_failures(void) { return ft_ts.failed; }

int ft_test_finish(void) {
    printf("%d passed, %d failed\n", ft_ts.passed, ft_ts.failed);
    if (ft_ts.tmp[0] && ft_ts.failed == 0 && !getenv("FT_KEEP_TMP")) {
        char cmd[600];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", ft_ts.tmp);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", ft_ts.tmp);
    }
    return ft_ts.failed ? 1 : 0;
}

const char *ft_test_src_dir(void) { return FT_SOURCE_DIR; }
const char *ft_test_shared_dir(void) {
    const char *e = getenv("FT_SHARED_DIR");
    return e ? e : FT_SHARED_DIR;
}
const char *ft_test_binary(void) { return FT_BINARY; }

const char *ft_test_tmpdir(void) {
    if (!ft_ts.tmp[0]) {
        const char *base = getenv("TMPDIR");
        snprintf(ft_ts.tmp, sizeof ft_ts.tmp, "%s/ftune-test-XXXXXX", base ? base : "/tmp");
        if (!mkdtemp(ft_ts.tmp)) {
            perror("mkdtemp");
            abort();
        }
    }
    return ft_ts.tmp;
}

ft_status ft_test_read_file(const char *path, char **out, int64_t *len) {
    return ft_read_file(path, 0, out, len, NULL);
}

void ft_test_doc_section(const char *doc, const char *name, const char *command, void (*gen)(void *file)) {
    char p[4300], begin[96], end[96], *text = NULL, *table = NULL;
    size_t tlen = 0;
    int64_t dlen = 0;
    snprintf(p, sizeof p, "%s/%s", ft_test_src_dir(), doc);
    FT_CHECK_OK(ft_test_read_file(p, &text, &dlen));
    FILE *m = open_memstream(&table, &tlen);
    gen(m);
    fclose(m);
    snprintf(begin, sizeof begin, "<!-- %s:begin", name);
    snprintf(end, sizeof end, "<!-- %s:end -->", name);
    char *b = text ? strstr(text, begin) : NULL, *e = text ? strstr(text, end) : NULL;
    if (b) b = strchr(b, '\n');
    FT_CHECK(b && e && e > b, "%s has the %s markers", doc, name);
    if (b && e && e > b) {
        b++;
        if (!((size_t)(e - b) == tlen && memcmp(b, table, tlen) == 0)) {
            char fix[4300];
            snprintf(fix, sizeof fix, "%s/%s.md", ft_test_tmpdir(), name);
            FILE *f = fopen(fix, "wb");
            if (f) fwrite(table, 1, tlen, f), fclose(f);
            FT_CHECK(0, "%s is out of date: replace the lines between its %s markers with the output of `%s` "
                        "(written to %s)", doc, name, command, fix);
        }
    }
    free(text);
    free(table);
}

int ft_test_run(const char *cmd, char **output) {
    char full[8192];
    snprintf(full, sizeof full, "%s 2>&1", cmd);
    FILE *p = popen(full, "r");
    if (!p) return -1;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    size_t got;
    while ((got = fread(buf + len, 1, cap - len - 1, p)) > 0) {
        len += got;
        if (cap - len < 2) buf = realloc(buf, cap *= 2);
    }
    buf[len] = 0;
    int rc = pclose(p);
    if (output) *output = buf; else free(buf);
    if (WIFEXITED(rc)) return WEXITSTATUS(rc);
    return -1;
}
