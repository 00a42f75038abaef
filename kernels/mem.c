/* mem.c: status-returning allocation and RSS readings. */
#include "kernels/mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

ft_status ft_malloc(void **out, size_t bytes, const char *what) {
    *out = malloc(bytes ? bytes : 1);
    if (!*out) return FT_ERR(FT_E_OOM, "out of memory allocating %zu bytes for %s", bytes, what);
    return FT_OK;
}

ft_status ft_calloc(void **out, size_t bytes, const char *what) {
    *out = calloc(1, bytes ? bytes : 1);
    if (!*out) return FT_ERR(FT_E_OOM, "out of memory allocating %zu bytes for %s", bytes, what);
    return FT_OK;
}

void ft_free(void *p) { free(p); }

ft_status ft_strdup(char **out, const char *s, const char *what) {
    size_t len = strlen(s);
    FT_TRY(ft_malloc((void **)out, len + 1, what));
    memcpy(*out, s, len + 1);
    return FT_OK;
}

ft_status ft_grow(void **arr, int64_t *cap, int64_t need, size_t elem, const char *what) {
    if (need <= *cap) return FT_OK;
    int64_t ncap = *cap ? *cap * 2 : 16;
    while (ncap < need) ncap *= 2;
    void *p = realloc(*arr, (size_t)ncap * elem);
    if (!p) return FT_ERR(FT_E_OOM, "out of memory growing %s to %lld items", what, (long long)ncap);
    *arr = p;
    *cap = ncap;
    return FT_OK;
}

static int64_t ft_proc_status_kb(const char *key) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    int64_t v = -1;
    size_t klen = strlen(key);
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, key, klen) == 0) {
            v = strtoll(line + klen, NULL, 10);
            break;
        }
    }
    fclose(f);
    return v;
}

int64_t ft_rss_bytes(void) { return ft_proc_status_kb("VmRSS:") * 1024; }
int64_t ft_peak_rss_bytes(void) { return ft_proc_status_kb("VmHWM:") * 1024; }
