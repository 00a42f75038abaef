/* test_ggml_decode.c: ggml's block formats as frozen weights.
 * - ft_ggml_dequantize_row of every type ftune decodes (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0,
 *   Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS) against gguf-py's gguf.quants.dequantize on seeded random blocks
 *   (tests/fixtures/ggml, made by tests/ref/make_ggml_decode_golden.py): bit for bit, a NaN failing;
 *   and what ft_ggml_can_decode / can_encode report (the other IQ types: neither);
 * - a ggml block weight on the CPU backend (kernels/weight.h): its size (ft_weight_nbytes, accounted
 *   bytes), the refusal of columns that are not whole blocks, the raw upload of its own blocks, host
 *   quantization of F32/BF16 sources for the encodable types (the bytes ft_ggml_quantize_row gives)
 *   and FT_E_UNSUPPORTED for the others, ft_weight_init_random (the quantized BF16 values of the
 *   generic path), and reading back by ft_weight_get_f32 / ft_weight_rows_f32 (the fixture's floats);
 *   the same on the CUDA backend where a device is present (the ops there: the op table);
 * - ft_op_embed and ft_op_linear over a Q2_K and an IQ4_XS weight made of the fixture's blocks against
 *   the gguf-py values (the op table covers every type in tests/op_table_ggml.c). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"
#include "kernels/ggml_quants.h"
#include "kernels/ops.h"
#include "kernels/rng.h"
#include "kernels/weight.h"
#include "tests/harness.h"

typedef struct {
    const char *file; /* tests/fixtures/ggml/<file>.bin / .f32 */
    int ggml;
    ft_dtype dtype;   /* its weight dtype (F32/F16/BF16 for the plain types) */
    int encodable;
} ggml_case;

static const ggml_case cases[] = {
    {"f32", FT_GGML_F32, FT_F32, 1},     {"f16", FT_GGML_F16, FT_F16, 1},     {"bf16", FT_GGML_BF16, FT_BF16, 1},
    {"q4_0", FT_GGML_Q4_0, FT_Q4_0, 1},  {"q4_1", FT_GGML_Q4_1, FT_Q4_1, 1},  {"q5_0", FT_GGML_Q5_0, FT_Q5_0, 1},
    {"q5_1", FT_GGML_Q5_1, FT_Q5_1, 1},  {"q8_0", FT_GGML_Q8_0, FT_Q8_0, 1},  {"q2_k", FT_GGML_Q2_K, FT_Q2_K, 0},
    {"q3_k", FT_GGML_Q3_K, FT_Q3_K, 0},  {"q4_k", FT_GGML_Q4_K, FT_Q4_K, 1},  {"q5_k", FT_GGML_Q5_K, FT_Q5_K, 1},
    {"q6_k", FT_GGML_Q6_K, FT_Q6_K, 1},  {"iq4_nl", FT_GGML_IQ4_NL, FT_IQ4_NL, 0},
    {"iq4_xs", FT_GGML_IQ4_XS, FT_IQ4_XS, 0},
};
enum { NCASES = sizeof cases / sizeof cases[0] };

/* The fixture of case c: its bytes and floats (malloc'd), *n the element count. */
static int load_case(const ggml_case *c, char **bytes, float **vals, int64_t *n) {
    char p[4096];
    int64_t blen = 0, flen = 0;
    char *fv = NULL;
    *bytes = NULL, *vals = NULL, *n = 0;
    snprintf(p, sizeof p, "%s/tests/fixtures/ggml/%s.bin", ft_test_src_dir(), c->file);
    FT_CHECK_OK(ft_test_read_file(p, bytes, &blen));
    snprintf(p, sizeof p, "%s/tests/fixtures/ggml/%s.f32", ft_test_src_dir(), c->file);
    FT_CHECK_OK(ft_test_read_file(p, &fv, &flen));
    if (!*bytes || !fv) {
        free(*bytes), free(fv);
        *bytes = NULL;
        return 0;
    }
    const int64_t bs = ft_ggml_block_size(c->ggml), ts = ft_ggml_type_size(c->ggml);
    *n = flen / 4;
    if (!FT_CHECK(blen % ts == 0 && blen / ts * bs == *n, "%s: %lld bytes for %lld values", c->file, (long long)blen,
                  (long long)*n)) {
        free(*bytes), free(fv);
        *bytes = NULL;
        return 0;
    }
    *vals = (float *)(void *)fv;
    return 1;
}

/* Bit for bit: got[i] == want[i] for every i (so a NaN anywhere fails), and the one comparator. */
static void check_exact(const float *got, const float *want, int64_t n, const char *what) {
    int64_t bad = 0, first = -1;
    for (int64_t i = 0; i < n; i++) {
        if (!(got[i] == want[i]) || signbit(got[i]) != signbit(want[i])) {
            if (first < 0) first = i;
            bad++;
        }
    }
    FT_CHECK(bad == 0, "%s: %lld of %lld values differ, first at %lld: %a vs %a", what, (long long)bad, (long long)n,
             (long long)first, first >= 0 ? got[first] : 0.0, first >= 0 ? want[first] : 0.0);
    FT_CHECK_CLOSE(got, want, n, 0.0, what);
}

static void test_decoders(void) {
    int64_t total = 0;
    for (int k = 0; k < NCASES; k++) {
        const ggml_case *c = &cases[k];
        char *bytes;
        float *want;
        int64_t n;
        FT_CHECK(ft_ggml_can_decode(c->ggml), "%s: ft_ggml_can_decode", c->file);
        FT_CHECK(ft_ggml_can_encode(c->ggml) == c->encodable, "%s: ft_ggml_can_encode", c->file);
        if (!load_case(c, &bytes, &want, &n)) continue;
        float *got = malloc((size_t)n * 4);
        FT_CHECK(ft_ggml_dequantize_row(c->ggml, bytes, got, n) == 0, "%s: decode", c->file);
        char what[64];
        snprintf(what, sizeof what, "%s vs gguf.quants.dequantize", c->file);
        check_exact(got, want, n, what);
        /* a row of several blocks decodes as its blocks one by one (no state across blocks) */
        const int64_t bs = ft_ggml_block_size(c->ggml), ts = ft_ggml_type_size(c->ggml);
        for (int64_t b = 0; b < n / bs; b++)
            FT_CHECK(ft_ggml_dequantize_row(c->ggml, bytes + b * ts, got + b * bs, bs) == 0, "%s: block", c->file);
        check_exact(got, want, n, what);
        if (bs > 1) FT_CHECK(ft_ggml_dequantize_row(c->ggml, bytes, got, bs - 1) == -1, "%s: partial block", c->file);
        total += n;
        free(got), free(bytes), free(want);
    }
    /* the IQ types that need an importance matrix are known by name and geometry only */
    static const char *const iq[] = {"IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ3_S", "IQ2_S", "IQ1_M"};
    for (size_t k = 0; k < sizeof iq / sizeof *iq; k++) {
        ft_ggml_type t;
        float y[256];
        static const uint8_t zero[256];
        FT_CHECK(ft_ggml_type_from_name(iq[k], &t) && ft_ggml_block_size(t) == 256 && !ft_ggml_can_decode(t) &&
                     !ft_ggml_can_encode(t) && ft_ggml_dequantize_row(t, zero, y, 256) == -1,
                 "%s: known, neither decoded nor encoded", iq[k]);
        ft_dtype dt;
        FT_CHECK(!ft_dtype_from_ggml(t, &dt), "%s: no dtype", iq[k]);
    }
    FT_CHECK(ft_dtype_ggml_type(FT_IQ4_NL) == 20 && ft_dtype_ggml_type(FT_IQ4_XS) == 23 &&
                 ft_dtype_block_bytes(FT_IQ4_XS) == 136 && ft_dtype_nbytes(FT_IQ4_NL, 64) == 36 &&
                 strcmp(ft_dtype_name(FT_IQ4_XS), "IQ4_XS") == 0,
             "IQ4 dtypes");
    printf("ok   decoders: %lld values of %d types bit-identical to gguf-py\n", (long long)total, NCASES);
}

/* ---- a ggml block weight on a backend -------------------------------------------------------- */

static void test_weight_raw(ft_backend *be, const ggml_case *c) {
    char *bytes;
    float *want;
    int64_t n;
    if (!load_case(c, &bytes, &want, &n)) return;
    const int64_t bs = ft_dtype_block_elems(c->dtype), cols = 2 * bs, rows = n / cols;
    const int64_t base = ft_backend_bytes_in_use(be);
    ft_weight w;
    FT_CHECK_OK(ft_weight_alloc(be, &w, c->dtype, rows, cols, c->file));
    FT_CHECK(ft_weight_nbytes(c->dtype, rows, cols) == rows * 2 * ft_dtype_block_bytes(c->dtype) &&
                 ft_backend_bytes_in_use(be) - base == ft_weight_nbytes(c->dtype, rows, cols),
             "%s: %lld bytes in use, ft_weight_nbytes %lld", c->file, (long long)(ft_backend_bytes_in_use(be) - base),
             (long long)ft_weight_nbytes(c->dtype, rows, cols));
    FT_CHECK_OK(ft_weight_set(be, &w, bytes, c->dtype));
    float *got = malloc((size_t)n * 4);
    FT_CHECK_OK(ft_weight_get_f32(be, &w, got));
    char what[96];
    snprintf(what, sizeof what, "%s weight [%lld, %lld] get_f32", c->file, (long long)rows, (long long)cols);
    check_exact(got, want, n, what);
    memset(got, 0xFF, (size_t)n * 4);
    FT_CHECK_OK(ft_weight_rows_f32(be, &w, 1, rows - 1, got));
    snprintf(what, sizeof what, "%s weight rows 1..%lld", c->file, (long long)rows);
    check_exact(got, want + cols, n - cols, what);
    /* F32 values into a type ftune cannot encode: refused, naming it */
    ft_status st = ft_weight_set(be, &w, want, FT_F32);
    if (!c->encodable) {
        FT_CHECK(st == FT_E_UNSUPPORTED && strstr(ft_error_msg(), ft_dtype_name(c->dtype)),
                 "%s: set from F32 -> %s: %s", c->file, ft_status_str(st), ft_error_msg());
        FT_CHECK(ft_weight_init_random(be, &w, 1, 0.0f, 1.0f) == FT_E_UNSUPPORTED, "%s: init_random", c->file);
    }
    ft_weight_release(be, &w);
    FT_CHECK(ft_backend_bytes_in_use(be) == base, "%s: leak", c->file);
    free(got), free(bytes), free(want);
}

/* F32/BF16 sources and random initialization of an encodable type: the bytes ggml's reference
 * quantizer gives for the same values, row by row. */
static void test_weight_quantized(ft_backend *be, ft_dtype dt) {
    const int t = ft_dtype_ggml_type(dt);
    const int64_t bs = ft_dtype_block_elems(dt), rows = 5, cols = 3 * bs, n = rows * cols;
    const int64_t rb = ft_dtype_nbytes(dt, cols);
    float *x = malloc((size_t)n * 4), *want = malloc((size_t)n * 4), *got = malloc((size_t)n * 4);
    uint16_t *h = malloc((size_t)n * 2);
    uint8_t *q = malloc((size_t)(rows * rb));
    for (int64_t i = 0; i < n; i++) {
        x[i] = (2.0f * ft_uniform(77, (uint64_t)i) - 1.0f) * (i % 97 == 0 ? 3.0f : 0.4f);
        h[i] = ft_f32_to_bf16(x[i]);
    }
    ft_weight w;
    FT_CHECK_OK(ft_weight_alloc(be, &w, dt, rows, cols, "quantized"));
    for (int src = 0; src < 3; src++) { /* F32, BF16, init_random */
        float *vals = malloc((size_t)n * 4);
        if (src == 0) {
            memcpy(vals, x, (size_t)n * 4);
            FT_CHECK_OK(ft_weight_set(be, &w, x, FT_F32));
        } else if (src == 1) {
            ft_to_f32(vals, h, FT_BF16, n);
            FT_CHECK_OK(ft_weight_set(be, &w, h, FT_BF16));
        } else {
            /* the generic path's values: mean + scale * (2u - 1) in float32, rounded to BF16 */
            for (int64_t i = 0; i < n; i++) {
                const float u = 2.0f * ft_uniform(1234, (uint64_t)i) - 1.0f, p = u * 0.05f;
                vals[i] = ft_bf16_to_f32(ft_f32_to_bf16(p + 0.01f));
            }
            FT_CHECK_OK(ft_weight_init_random(be, &w, 1234, 0.01f, 0.05f));
        }
        for (int64_t r = 0; r < rows; r++) {
            FT_CHECK(ft_ggml_quantize_row(t, vals + r * cols, q + r * rb, cols) == 0, "quantize");
            FT_CHECK(ft_ggml_dequantize_row(t, q + r * rb, want + r * cols, cols) == 0, "dequantize");
        }
        uint8_t *dev = malloc((size_t)(rows * rb));
        FT_CHECK_OK(ft_backend_sync(be));
        FT_CHECK_OK(ft_backend_download(be, dev, w.data, rows * rb));
        FT_CHECK(memcmp(dev, q, (size_t)(rows * rb)) == 0, "%s from source %d: not ft_ggml_quantize_row's bytes",
                 ft_dtype_name(dt), src);
        FT_CHECK_OK(ft_weight_get_f32(be, &w, got));
        char what[64];
        snprintf(what, sizeof what, "%s from source %d", ft_dtype_name(dt), src);
        check_exact(got, want, n, what);
        free(vals), free(dev);
    }
    ft_weight_release(be, &w);
    free(x), free(want), free(got), free(h), free(q);
}

static void test_weight_refusals(ft_backend *be) {
    ft_weight w;
    const int64_t base = ft_backend_bytes_in_use(be);
    ft_status st = ft_weight_alloc(be, &w, FT_Q4_K, 4, 300, "blk.0.attn_q.weight");
    FT_CHECK(st == FT_E_FORMAT && strstr(ft_error_msg(), "blk.0.attn_q.weight") && strstr(ft_error_msg(), "Q4_K"),
             "300 columns of Q4_K -> %s: %s", ft_status_str(st), ft_error_msg());
    st = ft_weight_alloc(be, &w, FT_Q8_0, 4, 48, "blk.0.ffn_down.weight");
    FT_CHECK(st == FT_E_FORMAT && strstr(ft_error_msg(), "blk.0.ffn_down.weight"), "48 columns of Q8_0 -> %s: %s",
             ft_status_str(st), ft_error_msg());
    FT_CHECK(ft_backend_bytes_in_use(be) == base, "a refused weight allocated memory");
    FT_CHECK(ft_weight_nbytes(FT_Q4_K, 4, 300) == -1 && ft_weight_nbytes(FT_Q6_K, 3, 512) == 3 * 2 * 210 &&
                 ft_weight_nbytes(FT_Q4_0, 2, 64) == 2 * 2 * 18,
             "ft_weight_nbytes of block types");
    printf("ok   weights: columns that are not whole blocks refused (%s)\n", ft_error_msg());
}

/* The ops read a Q2_K or IQ4_XS weight (types ftune only decodes) as the values gguf-py gives for its
 * blocks. */
static void test_ops(ft_backend *be, ft_dtype dt) {
    const ggml_case *c = NULL;
    for (int k = 0; k < NCASES; k++)
        if (cases[k].dtype == dt) c = &cases[k];
    char *bytes;
    float *wv;
    int64_t n;
    if (!FT_CHECK(c != NULL, "no case of %s", ft_dtype_name(dt)) || !load_case(c, &bytes, &wv, &n)) return;
    const int64_t in = 512, out = n / in, N = 3; /* [2, 512] */
    ft_weight w;
    char what[64];
    FT_CHECK_OK(ft_weight_alloc(be, &w, dt, out, in, c->file));
    FT_CHECK_OK(ft_weight_set(be, &w, bytes, dt));
    int32_t ids[3] = {1, 0, 1};
    float *x = malloc((size_t)(N * in) * 4), *y = malloc((size_t)(N * out) * 4), *e = malloc((size_t)(N * in) * 4);
    for (int64_t i = 0; i < N * in; i++) x[i] = 2.0f * ft_uniform(5, (uint64_t)i) - 1.0f;
    void *dx, *dy, *de, *dids;
    FT_CHECK_OK(ft_backend_alloc(be, &dx, 4 * N * in, "x"));
    FT_CHECK_OK(ft_backend_alloc(be, &dy, 4 * N * out, "y"));
    FT_CHECK_OK(ft_backend_alloc(be, &de, 4 * N * in, "e"));
    FT_CHECK_OK(ft_backend_alloc(be, &dids, sizeof ids, "ids"));
    FT_CHECK_OK(ft_backend_upload(be, dx, x, 4 * N * in));
    FT_CHECK_OK(ft_backend_upload(be, dids, ids, sizeof ids));
    FT_CHECK_OK(ft_op_linear(be, dy, dx, &w, NULL, N, 0));
    FT_CHECK_OK(ft_op_embed(be, de, dids, &w, N));
    FT_CHECK_OK(ft_backend_sync(be));
    FT_CHECK_OK(ft_backend_download(be, y, dy, 4 * N * out));
    FT_CHECK_OK(ft_backend_download(be, e, de, 4 * N * in));
    double num = 0, den = 0;
    for (int64_t t = 0; t < N; t++)
        for (int64_t o = 0; o < out; o++) {
            double s = 0;
            for (int64_t i = 0; i < in; i++) s += (double)x[t * in + i] * wv[o * in + i];
            num += (y[t * out + o] - s) * (y[t * out + o] - s), den += s * s;
        }
    FT_CHECK(sqrt(num / den) <= 1e-6, "linear over %s: rel_l2 %.3g", c->file, sqrt(num / den));
    snprintf(what, sizeof what, "embed over %s", c->file);
    for (int64_t t = 0; t < N; t++) check_exact(e + t * in, wv + ids[t] * in, in, what);
    ft_backend_release(be, dx), ft_backend_release(be, dy), ft_backend_release(be, de), ft_backend_release(be, dids);
    ft_weight_release(be, &w);
    free(x), free(y), free(e), free(bytes), free(wv);
}

/* The weight code on a backend: the same on every backend, as it moves bytes only through
 * ft_backend_upload / ft_backend_download. */
static void test_weights(ft_backend *be) {
    for (int k = 3; k < NCASES; k++) test_weight_raw(be, &cases[k]);
    const ft_dtype enc[] = {FT_Q4_0, FT_Q4_1, FT_Q5_0, FT_Q5_1, FT_Q8_0, FT_Q4_K, FT_Q5_K, FT_Q6_K};
    for (size_t k = 0; k < sizeof enc / sizeof *enc; k++) test_weight_quantized(be, enc[k]);
    printf("ok   weights on %s: raw blocks, F32/BF16 sources and init_random of every block type\n",
           ft_backend_name(be));
    test_weight_refusals(be);
}

int main(void) {
    test_decoders();
    ft_backend *be = NULL;
    FT_CHECK_OK(ft_backend_cpu_create(&be, 2));
    if (be) {
        test_weights(be);
        test_ops(be, FT_Q2_K);
        test_ops(be, FT_IQ4_XS);
        FT_CHECK(ft_backend_bytes_in_use(be) == 0, "leak: %lld bytes", (long long)ft_backend_bytes_in_use(be));
    }
    ft_backend_free(be);
    ft_backend *gpu = NULL;
    if (ft_backend_cuda_create(&gpu, 0) == FT_OK && gpu) {
        const int64_t base = ft_backend_bytes_in_use(gpu); /* the backend's own buffers */
        test_weights(gpu);
        FT_CHECK(ft_backend_bytes_in_use(gpu) == base, "cuda: leak of %lld bytes",
                 (long long)(ft_backend_bytes_in_use(gpu) - base));
        ft_backend_free(gpu);
    } else {
        printf("SKIP weights on cuda: %s\n", ft_error_msg());
    }
    return ft_test_finish();
}
