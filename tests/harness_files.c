/* harness_files.c: the harness's file comparisons that need the trainer's safetensors reader and
 * zstd (harness.h); its own file, so the CUDA emulator (tests/gpu/emu), which builds harness.c alone
 * for the op tests, links without them. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zstd.h>

#include "tests/harness.h"
#include "trainer/safetensors_read.h"

int ft_test_unzstd(const char *src, const char *dst) {
    char *z = NULL;
    int64_t zn = 0;
    if (ft_test_read_file(src, &z, &zn) != FT_OK) return 0;
    ZSTD_DStream *ds = ZSTD_createDStream();
    size_t cap = 1 << 22, have = 0;
    char *raw = malloc(cap);
    int ok = ds && raw;
    ZSTD_inBuffer zi = {z, (size_t)zn, 0};
    while (ok && zi.pos < zi.size) {
        if (cap - have < (1 << 20)) {
            char *r2 = realloc(raw, cap *= 2);
            if (!r2) {
                ok = 0;
                break;
            }
            raw = r2;
        }
        ZSTD_outBuffer zo = {raw + have, cap - have, 0};
        size_t r = ZSTD_decompressStream(ds, &zo, &zi);
        if (ZSTD_isError(r)) ok = 0;
        have += zo.pos;
    }
    FILE *f = ok ? fopen(dst, "wb") : NULL;
    ok = f && fwrite(raw, 1, have, f) == have;
    if (f && fclose(f) != 0) ok = 0;
    free(raw);
    ZSTD_freeDStream(ds);
    free(z);
    return ok;
}

int ft_test_files_equal(const char *p1, const char *p2) {
    char *a = NULL, *b = NULL;
    int64_t la = -1, lb = -2;
    int eq = ft_test_read_file(p1, &a, &la) == FT_OK && ft_test_read_file(p2, &b, &lb) == FT_OK && la == lb &&
             memcmp(a, b, (size_t)la) == 0;
    free(a);
    free(b);
    return eq;
}

ft_st_cmp ft_test_st_compare(const char *ours, const char *ref, const char *what, double tol, const char *show) {
    ft_st_cmp r = {.worst = -1};
    ft_st_model *a = NULL, *b = NULL;
    FT_CHECK_OK(ft_st_open(&a, ours));
    FT_CHECK_OK(ft_st_open(&b, ref));
    if (!a || !b) goto done;
    FT_CHECK(ft_st_count(a) == ft_st_count(b), "%s: %lld tensors, the reference has %lld", what,
             (long long)ft_st_count(a), (long long)ft_st_count(b));
    for (int64_t i = 0; i < ft_st_count(b); i++) {
        const ft_st_tensor *rt = ft_st_at(b, i), *ot = ft_st_lookup(a, rt->name);
        if (!FT_CHECK(ot != NULL, "%s: no tensor %s in %s", what, rt->name, ours)) continue;
        int same_shape = ot->ndim == rt->ndim;
        for (int d = 0; same_shape && d < rt->ndim; d++) same_shape = ot->shape[d] == rt->shape[d];
        if (!FT_CHECK(ot->st_dtype == FT_ST_F32 && rt->st_dtype == FT_ST_F32 && ot->numel == rt->numel && same_shape,
                      "%s: %s shape/dtype differs", what, rt->name))
            continue;
        float *x = malloc((size_t)rt->numel * 4), *y = malloc((size_t)rt->numel * 4);
        memcpy(x, ot->data, (size_t)rt->numel * 4); /* the mapped data need not be 4-byte aligned */
        memcpy(y, rt->data, (size_t)rt->numel * 4);
        ft_cmp c = ft_compare_f32(x, y, rt->numel);
        double rel = c.n_nonfinite ? INFINITY : c.rel_l2;
        r.n++;
        if (!(rel <= tol)) {
            r.bad++;
            printf("     %s: %s rel_l2 %.3e max_abs %.3e at %lld (%g vs %g)\n", what, rt->name, rel, c.max_abs,
                   (long long)c.worst, c.worst >= 0 ? x[c.worst] : 0.0, c.worst >= 0 ? y[c.worst] : 0.0);
        } else if (show && strstr(rt->name, show)) {
            printf("     %s: %s rel_l2 %.3e\n", what, rt->name, rel);
        }
        if (show && strstr(rt->name, show)) r.shown++;
        if (!(rel <= r.worst)) r.worst = rel, r.max_abs = c.max_abs, snprintf(r.name, sizeof r.name, "%s", rt->name);
        free(x);
        free(y);
    }
    FT_CHECK(r.bad == 0 && r.n > 0, "%s: %d of %d tensors over rel-L2 %.0e (worst %.3e, %s)", what, r.bad, r.n, tol,
             r.worst, r.name);
done:
    ft_st_close(a);
    ft_st_close(b);
    return r;
}
