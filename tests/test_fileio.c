/* test_fileio.c: ft_read_file, the one whole-file read (kernels/fileio.h): binary content and the
 * trailing NUL, the size limit, missing files with and without `missing`, directories, files
 * whose size stat does not report (/proc), and an empty file. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/fileio.h"
#include "tests/harness.h"

static void write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    FT_CHECK(f && fwrite(data, 1, n, f) == n && fclose(f) == 0, "cannot write %s", path);
}

int main(void) {
    char path[1200], dir[512];
    snprintf(dir, sizeof dir, "%s", ft_test_tmpdir());

    /* binary with embedded NULs, and a size that crosses the internal probe */
    snprintf(path, sizeof path, "%s/bin", dir);
    enum { NB = 70001 };
    unsigned char *data = malloc(NB);
    for (int i = 0; i < NB; i++) data[i] = (unsigned char)(i * 131 + 7);
    data[5] = 0;
    write_bytes(path, data, NB);
    char *buf = NULL;
    int64_t len = -1;
    int missing = -1;
    FT_CHECK_OK(ft_read_file(path, 0, &buf, &len, &missing));
    FT_CHECK(buf && len == NB && memcmp(buf, data, NB) == 0 && buf[NB] == 0 && missing == 0, "binary read: len %lld",
             (long long)len);
    free(buf);

    /* the limit: exactly at it reads, one byte over is FT_E_FORMAT naming both sizes */
    FT_CHECK_OK(ft_read_file(path, NB, &buf, NULL, NULL));
    free(buf);
    buf = (char *)1;
    ft_status st = ft_read_file(path, NB - 1, &buf, &len, NULL);
    FT_CHECK(st == FT_E_FORMAT && buf == NULL && strstr(ft_error_msg(), path) &&
                 strstr(ft_error_msg(), "70001 bytes exceeds the 70000-byte limit"),
             "over the limit: %s", ft_error_msg());
    free(data);

    /* missing: an FT_E_IO naming the file, or *missing = 1 when asked */
    snprintf(path, sizeof path, "%s/nope.json", dir);
    st = ft_read_file(path, 0, &buf, &len, NULL);
    FT_CHECK(st == FT_E_IO && buf == NULL && strstr(ft_error_msg(), "nope.json: cannot open: ") &&
                 strstr(ft_error_msg(), strerror(ENOENT)),
             "missing: %s", ft_error_msg());
    missing = 0;
    FT_CHECK(ft_read_file(path, 0, &buf, &len, &missing) == FT_OK && missing == 1 && buf == NULL, "missing flag");
    snprintf(path, sizeof path, "%s/bin/below-a-file", dir); /* ENOTDIR is missing too */
    missing = 0;
    FT_CHECK(ft_read_file(path, 0, &buf, &len, &missing) == FT_OK && missing == 1, "missing under a file");

    /* a directory is an error even with `missing` */
    st = ft_read_file(dir, 0, &buf, &len, &missing);
    FT_CHECK(st == FT_E_IO && missing == 0 && strstr(ft_error_msg(), "cannot open"), "directory: %s", ft_error_msg());

    /* /proc reports size 0: reading goes to end of file */
    FT_CHECK_OK(ft_read_file("/proc/self/status", 0, &buf, &len, NULL));
    FT_CHECK(buf && len > 0 && (int64_t)strlen(buf) == len && strstr(buf, "VmRSS"), "/proc read: %lld bytes",
             (long long)len);
    free(buf);
    st = ft_read_file("/proc/self/status", 16, &buf, &len, NULL);
    FT_CHECK(st == FT_E_FORMAT && buf == NULL && strstr(ft_error_msg(), "exceeds the 16-byte limit"),
             "/proc over the limit: %s", ft_error_msg());

    /* empty file: an empty string */
    snprintf(path, sizeof path, "%s/empty", dir);
    write_bytes(path, "", 0);
    FT_CHECK_OK(ft_read_file(path, 0, &buf, &len, NULL));
    FT_CHECK(buf && len == 0 && buf[0] == 0, "empty file");
    free(buf);
    return ft_test_finish();
}
