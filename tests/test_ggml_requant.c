/* test_ggml_requant.c: ft_ggml_requantize_row (kernels/ggml_requant.c), the re-encoder of a GGUF
 * base's merged weights (export/merge_gguf.c, --type base), for every type ftune encodes:
 * - a zero delta gives back the base's bytes exactly, with no block re-encoded: on the committed
 *   random-but-valid blocks of tests/fixtures/ggml (made by gguf-py, apart from ftune: zero, negative
 *   and subnormal scales, zero sub-block scales, Q8_0's -128), their x the independent decoder's
 *   floats; and on blocks ft_ggml_quantize_row made from random rows (Gaussian, heavy-tailed, sparse,
 *   constant, zero). Printed beside: how many bytes ggml's fresh encoding of the same decoded values
 *   changes (what the merge did before);
 * - a delta on some blocks: those take ggml's fresh encoding byte for byte, the others keep theirs;
 * - refusals: a type it does not encode, a partial block. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/ggml_quants.h"
#include "kernels/rng.h"
#include "tests/harness.h"

typedef struct {
    const char *file; /* tests/fixtures/ggml/<file>.bin / .f32 */
    int t;
} rq_case;

static const rq_case cases[] = {
    {"q4_0", FT_GGML_Q4_0}, {"q5_0", FT_GGML_Q5_0}, {"q8_0", FT_GGML_Q8_0},
    {"q4_k", FT_GGML_Q4_K}, {"q5_k", FT_GGML_Q5_K}, {"q6_k", FT_GGML_Q6_K},
};
enum { NCASES = sizeof cases / sizeof cases[0] };

static int64_t bytes_differ(const uint8_t *a, const uint8_t *b, int64_t n) {
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++) k += a[i] != b[i];
    return k;
}

/* Zero delta on nb blocks `base`: requantizing their decoded values x gives the bytes back. */
static void check_zero(const rq_case *c, const uint8_t *base, const float *x, int64_t n, const char *what) {
    const int64_t rb = ft_ggml_row_size(c->t, n);
    uint8_t *out = malloc((size_t)rb), *fresh = malloc((size_t)rb);
    int64_t nf = -1;
    FT_CHECK(ft_ggml_requantize_row(c->t, base, x, out, n, &nf) == 0, "%s %s: requantize", c->file, what);
    FT_CHECK(ft_ggml_quantize_row(c->t, x, fresh, n) == 0, "%s %s: quantize", c->file, what);
    const int64_t d_new = bytes_differ(out, base, rb), d_old = bytes_differ(fresh, base, rb);
    FT_CHECK(d_new == 0 && nf == 0, "%s %s: zero delta: %lld of %lld bytes differ from the base, %lld blocks fresh",
             c->file, what, (long long)d_new, (long long)rb, (long long)nf);
    printf("note %s %s: zero delta: %lld of %lld bytes changed (ggml's fresh encoding: %lld)\n", c->file, what,
           (long long)d_new, (long long)rb, (long long)d_old);
    free(out), free(fresh);
}

static float gauss(ft_rng *r) {
    const float u1 = ft_rng_uniform(r) + 1e-7f, u2 = ft_rng_uniform(r);
    return sqrtf(-2.0f * logf(u1)) * cosf(6.2831853f * u2);
}

/* Random rows of n values in a few shapes real weights take. */
static void random_row(ft_rng *r, float *x, int64_t n, int shape) {
    for (int64_t i = 0; i < n; i++) {
        float v = gauss(r) * 0.02f;
        if (shape == 1 && ft_rng_uniform(r) < 0.01f) v *= 30.0f;       /* outliers */
        if (shape == 2 && ft_rng_uniform(r) < 0.7f) v = 0.0f;          /* sparse */
        if (shape == 3) v = 0.013f;                                    /* constant */
        if (shape == 4) v = 0.0f;                                      /* zero */
        if (shape == 5) v = fabsf(v) + 0.05f;                          /* all positive, offset */
        x[i] = v;
    }
}

static void zero_delta(const rq_case *c) {
    char p[4096], *bytes = NULL, *fv = NULL;
    int64_t blen = 0, flen = 0;
    snprintf(p, sizeof p, "%s/tests/fixtures/ggml/%s.bin", ft_test_src_dir(), c->file);
    FT_CHECK_OK(ft_test_read_file(p, &bytes, &blen));
    snprintf(p, sizeof p, "%s/tests/fixtures/ggml/%s.f32", ft_test_src_dir(), c->file);
    FT_CHECK_OK(ft_test_read_file(p, &fv, &flen));
    if (bytes && fv && FT_CHECK(ft_ggml_row_size(c->t, flen / 4) == blen, "%s: fixture sizes", c->file))
        check_zero(c, (const uint8_t *)bytes, (const float *)(void *)fv, flen / 4, "fixture (gguf-py)");
    free(bytes), free(fv);

    /* blocks ggml's encoder made: 6 shapes x 8 rows of 1024 */
    const int64_t n = 6 * 8 * 1024, rb = ft_ggml_row_size(c->t, n);
    float *x = malloc((size_t)n * 4), *y = malloc((size_t)n * 4);
    uint8_t *base = malloc((size_t)rb);
    ft_rng r = {(uint64_t)c->t * 7919u + 1};
    for (int s = 0; s < 6; s++)
        for (int k = 0; k < 8; k++) random_row(&r, x + (s * 8 + k) * 1024, 1024, s);
    ft_ggml_quantize_row(c->t, x, base, n);
    ft_ggml_dequantize_row(c->t, base, y, n);
    check_zero(c, base, y, n, "ggml-encoded random rows");
    free(x), free(y), free(base);
}

/* A delta on every third block of ggml-encoded random rows: those blocks take the fresh encoding
 * byte for byte, the rest keep the base's bytes, and the count of re-encoded blocks says so. */
static void moved_blocks(const rq_case *c) {
    const int64_t bs = ft_ggml_block_size(c->t), ts = ft_ggml_type_size(c->t), n = 4 * 1024, nb = n / bs;
    const int64_t rb = ft_ggml_row_size(c->t, n);
    float *x = malloc((size_t)n * 4);
    uint8_t *base = malloc((size_t)rb), *out = malloc((size_t)rb), *fresh = malloc((size_t)ts);
    ft_rng r = {(uint64_t)c->t * 104729u + 5};
    random_row(&r, x, n, 0);
    ft_ggml_quantize_row(c->t, x, base, n);
    ft_ggml_dequantize_row(c->t, base, x, n);
    int64_t moved = 0, nf = -1, bad_kept = 0, bad_fresh = 0;
    for (int64_t b = 0; b < nb; b += 3, moved++)
        for (int64_t e = 0; e < bs; e++) x[b * bs + e] += 0.002f * gauss(&r);
    FT_CHECK(ft_ggml_requantize_row(c->t, base, x, out, n, &nf) == 0, "%s: requantize", c->file);
    for (int64_t b = 0; b < nb; b++) {
        if (b % 3) {
            bad_kept += memcmp(out + b * ts, base + b * ts, (size_t)ts) != 0;
        } else {
            ft_ggml_quantize_row(c->t, x + b * bs, fresh, bs);
            bad_fresh += memcmp(out + b * ts, fresh, (size_t)ts) != 0;
        }
    }
    FT_CHECK(bad_kept == 0 && bad_fresh == 0 && nf == moved, "%s: %lld unmoved blocks changed, %lld moved ones not "
             "the fresh encoding, %lld re-encoded of %lld moved", c->file, (long long)bad_kept, (long long)bad_fresh,
             (long long)nf, (long long)moved);
    free(x), free(base), free(out), free(fresh);
}

/* F32/F16/BF16: decoded values given back are the same bytes. */
static void plain_types(void) {
    static const struct { const char *file; int t; } p[] = {{"f32", FT_GGML_F32}, {"f16", FT_GGML_F16}, {"bf16", FT_GGML_BF16}};
    for (int i = 0; i < 3; i++) {
        char path[4096], *bytes = NULL, *fv = NULL;
        int64_t blen = 0, flen = 0;
        snprintf(path, sizeof path, "%s/tests/fixtures/ggml/%s.bin", ft_test_src_dir(), p[i].file);
        FT_CHECK_OK(ft_test_read_file(path, &bytes, &blen));
        snprintf(path, sizeof path, "%s/tests/fixtures/ggml/%s.f32", ft_test_src_dir(), p[i].file);
        FT_CHECK_OK(ft_test_read_file(path, &fv, &flen));
        if (bytes && fv) {
            uint8_t *out = malloc((size_t)blen);
            FT_CHECK(ft_ggml_requantize_row(p[i].t, bytes, (const float *)(void *)fv, out, flen / 4, NULL) == 0 &&
                         memcmp(out, bytes, (size_t)blen) == 0,
                     "%s: zero delta gives the bytes back", p[i].file);
            free(out);
        }
        free(bytes), free(fv);
    }
}

int main(void) {
    for (int i = 0; i < NCASES; i++) {
        zero_delta(&cases[i]);
        moved_blocks(&cases[i]);
    }
    plain_types();
    uint8_t blk[84] = {0}, out[176];
    float x[256] = {0};
    FT_CHECK(ft_ggml_requantize_row(FT_GGML_Q2_K, blk, x, out, 256, NULL) == -1, "Q2_K (not encodable) refused");
    FT_CHECK(ft_ggml_requantize_row(FT_GGML_Q5_K, blk, x, out, 128, NULL) == -1, "a partial Q5_K block refused");
    return ft_test_finish();
}
