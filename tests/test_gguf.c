/* test_gguf.c: the GGUF writer and reader (export/gguf.h) and ggml quantization
 * (kernels/ggml_quants.h).
 * - quantizers against the bytes ggml's own ggml_quantize_chunk gives on the same rows
 *   (tests/fixtures/export/quant, made by tests/ref/make_export_golden.py with the libggml that
 *   llama-cpp-python builds): Q8_0, Q4_0, Q5_0, Q4_K, Q5_K, Q6_K, Q4_1, Q5_1; where a block differs (fused
 *   multiply-add in a ggml build can move a rounding), our row error must be no worse than ggml's;
 * - decoders: round trip error bounds per type;
 * - writer -> reader round trip: metadata of every type, tensors of every writable type, offsets,
 *   alignment; declared file size equals the written size;
 * - reader rejects garbage (truncations at every length, bad magic/version, nested arrays)
 *   without crashing, and the writer leaves nothing at the output path on failure;
 * - the Q4_K_M / Q5_K_M / Q6_K / Q4_0 / Q8_0 tensor-type rules of llama.cpp's llama_tensor_get_type
 *   (src/llama-quant.cpp: llama_tensor_get_type_impl, then tensor_type_fallback), the kinds' names and
 *   general.file_type (llama_ftype), and ft_merge_base_type keeping Q4_1/Q5_1 now that they encode. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kernels/ggml_quants.h"
#include "export/gguf.h"
#include "export/merge.h"
#include "tests/harness.h"

static const char *const qnames[] = {"q8_0", "q4_0", "q5_0", "q4_k", "q5_k", "q6_k", "q4_1", "q5_1"};
static const ft_ggml_type qtypes[] = {FT_GGML_Q8_0, FT_GGML_Q4_0, FT_GGML_Q5_0, FT_GGML_Q4_K,
                                      FT_GGML_Q5_K, FT_GGML_Q6_K, FT_GGML_Q4_1, FT_GGML_Q5_1};
enum { NQ = sizeof qtypes / sizeof *qtypes };

static double row_err(int type, const void *q, const float *x, int64_t n) {
    float *y = malloc((size_t)n * 4);
    ft_ggml_dequantize_row(type, q, y, n);
    double e = 0;
    for (int64_t i = 0; i < n; i++) e += ((double)y[i] - x[i]) * ((double)y[i] - x[i]);
    free(y);
    return sqrt(e);
}

static void test_quant_golden(void) {
    char p[4096];
    char *buf = NULL;
    int64_t len = 0;
    snprintf(p, sizeof p, "%s/tests/fixtures/export/quant/input_f32.bin", ft_test_src_dir());
    FT_CHECK_OK(ft_test_read_file(p, &buf, &len));
    if (!buf) return;
    const int64_t rows = 16, cols = 1024;
    FT_CHECK(len == rows * cols * 4, "input size %lld", (long long)len);
    const float *x = (const float *)buf;
    for (int k = 0; k < NQ; k++) {
        char *gold = NULL;
        int64_t glen = 0;
        snprintf(p, sizeof p, "%s/tests/fixtures/export/quant/%s.bin", ft_test_src_dir(), qnames[k]);
        FT_CHECK_OK(ft_test_read_file(p, &gold, &glen));
        int64_t rs = ft_ggml_row_size(qtypes[k], cols);
        FT_CHECK(glen == rows * rs, "%s golden size", qnames[k]);
        uint8_t *ours = malloc((size_t)(rows * rs));
        int64_t blocks = 0, same = 0;
        int64_t bs = ft_ggml_type_size(qtypes[k]), blk = ft_ggml_block_size(qtypes[k]);
        for (int64_t r = 0; r < rows; r++) {
            FT_CHECK(ft_ggml_quantize_row(qtypes[k], x + r * cols, ours + r * rs, cols) == 0, "quantize");
            for (int64_t b = 0; b < cols / blk; b++, blocks++)
                same += memcmp(ours + r * rs + b * bs, gold + r * rs + b * bs, (size_t)bs) == 0;
            double eo = row_err(qtypes[k], ours + r * rs, x + r * cols, cols);
            double eg = row_err(qtypes[k], gold + r * rs, x + r * cols, cols);
            FT_CHECK(eo <= eg * 1.0001 + 1e-30, "%s row %lld: error %.6g vs ggml %.6g", qnames[k], (long long)r, eo, eg);
        }
        printf("%s: %lld/%lld blocks bit-identical to ggml_quantize_chunk\n", qnames[k], (long long)same,
               (long long)blocks);
        FT_CHECK(same * 1000 >= blocks * 995, "%s: only %lld of %lld blocks identical", qnames[k], (long long)same,
                 (long long)blocks);
        free(ours);
        free(gold);
    }
    free(buf);
}

static void test_roundtrip_errors(void) {
    /* decoding what we encode: max error per element relative to the block's absmax */
    const int64_t n = 1024;
    float x[1024], y[1024];
    uint8_t q[4096];
    for (int64_t i = 0; i < n; i++) x[i] = sinf((float)i * 0.37f) * (1.0f + (float)(i % 7));
    struct { ft_ggml_type t; double tol; } cases[] = {{FT_GGML_F32, 0}, {FT_GGML_F16, 1e-3}, {FT_GGML_BF16, 8e-3},
                                                     {FT_GGML_Q8_0, 1.0 / 127}, {FT_GGML_Q4_0, 1.0 / 8},
                                                     {FT_GGML_Q5_0, 1.0 / 16}, {FT_GGML_Q4_K, 0.15}, {FT_GGML_Q5_K, 0.08}, {FT_GGML_Q6_K, 0.04},
                                                     /* half a step of a block's range (<= 14) over 15 / 31 steps,
                                                      * plus the F16 rounding of d and m */
                                                     {FT_GGML_Q4_1, 1.0 / 15 + 1e-3}, {FT_GGML_Q5_1, 1.0 / 31 + 1e-3}};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        FT_CHECK(ft_ggml_quantize_row(cases[c].t, x, q, n) == 0, "encode %s", ft_ggml_type_name(cases[c].t));
        FT_CHECK(ft_ggml_dequantize_row(cases[c].t, q, y, n) == 0, "decode %s", ft_ggml_type_name(cases[c].t));
        double worst = 0;
        for (int64_t i = 0; i < n; i++) {
            double e = fabs((double)y[i] - x[i]) / 7.0; /* |x| <= 7 */
            if (e > worst) worst = e;
        }
        FT_CHECK(worst <= cases[c].tol + 1e-7, "%s: worst relative error %.4g > %.4g", ft_ggml_type_name(cases[c].t),
                 worst, cases[c].tol);
    }
    FT_CHECK(ft_ggml_quantize_row(FT_GGML_Q4_K, x, q, 100) == -1, "partial block refused");
    FT_CHECK(ft_ggml_quantize_row(FT_GGML_Q2_K, x, q, 256) == -1, "unsupported type refused");
}

typedef struct {
    int64_t cols;
    float base;
} src_t;

static ft_status rows_fn(void *user, int64_t row0, int64_t nrows, float *dst) {
    const src_t *s = user;
    for (int64_t r = 0; r < nrows; r++)
        for (int64_t c = 0; c < s->cols; c++) dst[r * s->cols + c] = s->base + (float)(row0 + r) * 0.5f + (float)c * 0.01f;
    return FT_OK;
}

static ft_status fail_fn(void *user, int64_t row0, int64_t nrows, float *dst) {
    (void)user, (void)row0, (void)nrows, (void)dst;
    return FT_ERR(FT_E_IO, "simulated failure");
}

static void test_write_read(void) {
    char path[4096];
    snprintf(path, sizeof path, "%s/t.gguf", ft_test_tmpdir());
    ft_ggufw *w = NULL;
    FT_CHECK_OK(ft_ggufw_open(&w, path));
    FT_CHECK_OK(ft_ggufw_set_str(w, "general.architecture", "llama"));
    FT_CHECK_OK(ft_ggufw_set_u32(w, "llama.block_count", 7));
    FT_CHECK_OK(ft_ggufw_set_i32(w, "x.i32", -5));
    FT_CHECK_OK(ft_ggufw_set_f32(w, "x.f32", 0.25f));
    FT_CHECK_OK(ft_ggufw_set_bool(w, "x.bool", 1));
    FT_CHECK_OK(ft_ggufw_set_u32(w, "llama.block_count", 8)); /* replaces */
    const char *strs[] = {"a", "bc", ""};
    FT_CHECK_OK(ft_ggufw_set_arr_str(w, "x.strs", strs, 3));
    int32_t iv[] = {1, -2, 3};
    FT_CHECK_OK(ft_ggufw_set_arr_i32(w, "x.i32s", iv, 3));
    float fv[] = {0.5f, 1.5f};
    FT_CHECK_OK(ft_ggufw_set_arr_f32(w, "x.f32s", fv, 2));
    src_t s1 = {256, 0.0f}, s2 = {64, 1.0f}, s3 = {5, -1.0f};
    int64_t ne1[2] = {256, 3}, ne2[2] = {64, 4}, ne3[1] = {5};
    ft_ggml_type types[] = {FT_GGML_F32, FT_GGML_F16, FT_GGML_BF16, FT_GGML_Q8_0, FT_GGML_Q4_0, FT_GGML_Q5_0,
                            FT_GGML_Q4_K, FT_GGML_Q5_K, FT_GGML_Q6_K};
    for (size_t k = 0; k < sizeof types / sizeof *types; k++) {
        char nm[64];
        snprintf(nm, sizeof nm, "t.%s", ft_ggml_type_name(types[k]));
        FT_CHECK_OK(ft_ggufw_add_tensor(w, nm, types[k], 2, ne1, rows_fn, &s1));
    }
    FT_CHECK_OK(ft_ggufw_add_tensor(w, "small.q8", FT_GGML_Q8_0, 2, ne2, rows_fn, &s2));
    FT_CHECK_OK(ft_ggufw_add_tensor(w, "vec", FT_GGML_F32, 1, ne3, rows_fn, &s3));
    FT_CHECK(ft_ggufw_add_tensor(w, "bad.q4k", FT_GGML_Q4_K, 2, ne2, rows_fn, &s2) == FT_E_ARG, "64 not a Q4_K block");
    FT_CHECK(ft_ggufw_add_tensor(w, "a_name_that_is_far_too_long_for_ggml_which_allows_only_63_bytes_x", FT_GGML_F32, 1,
                                 ne3, rows_fn, &s3) == FT_E_ARG,
             "64-byte name refused");
    int64_t expect_size = ft_ggufw_file_size(w);
    FT_CHECK_OK(ft_ggufw_finish(w));
    struct stat sb;
    FT_CHECK(stat(path, &sb) == 0 && sb.st_size == expect_size, "file size %lld, declared %lld",
             (long long)sb.st_size, (long long)expect_size);

    ft_gguf *g = NULL;
    FT_CHECK_OK(ft_gguf_open(&g, path));
    if (!g) return;
    uint32_t u;
    int32_t i32;
    float f;
    int b;
    const char *sp;
    int64_t sl;
    FT_CHECK(ft_gguf_get_u32(g, ft_gguf_find_key(g, "llama.block_count"), &u) && u == 8, "u32 replaced");
    FT_CHECK(ft_gguf_kv_count(g) == 8, "8 keys (replacement kept one)");
    FT_CHECK(ft_gguf_get_i32(g, ft_gguf_find_key(g, "x.i32"), &i32) && i32 == -5, "i32");
    FT_CHECK(ft_gguf_get_f32(g, ft_gguf_find_key(g, "x.f32"), &f) && f == 0.25f, "f32");
    FT_CHECK(ft_gguf_get_bool(g, ft_gguf_find_key(g, "x.bool"), &b) && b == 1, "bool");
    FT_CHECK(!ft_gguf_get_u32(g, ft_gguf_find_key(g, "x.i32"), &u), "type-strict getter");
    FT_CHECK(ft_gguf_get_str(g, ft_gguf_find_key(g, "general.architecture"), &sp, &sl) && sl == 5 &&
                 memcmp(sp, "llama", 5) == 0, "string");
    int64_t ks = ft_gguf_find_key(g, "x.strs");
    FT_CHECK(ft_gguf_arr_n(g, ks) == 3 && ft_gguf_arr_str(g, ks, 1, &sp, &sl) && sl == 2 && memcmp(sp, "bc", 2) == 0,
             "string array");
    double d;
    FT_CHECK(ft_gguf_arr_num(g, ft_gguf_find_key(g, "x.i32s"), 1, &d) && d == -2, "i32 array");
    FT_CHECK(ft_gguf_arr_num(g, ft_gguf_find_key(g, "x.f32s"), 1, &d) && d == 1.5, "f32 array");
    FT_CHECK(ft_gguf_tensor_count(g) == 11, "11 tensors");
    float got[3 * 256], want[3 * 256];
    rows_fn(&s1, 0, 3, want);
    for (size_t k = 0; k < sizeof types / sizeof *types; k++) {
        char nm[64];
        snprintf(nm, sizeof nm, "t.%s", ft_ggml_type_name(types[k]));
        const ft_gguf_tensor *t = ft_gguf_tensor_find(g, nm);
        FT_CHECK(t && t->type == (int)types[k] && t->ne[0] == 256 && t->ne[1] == 3 && t->n_dims == 2, "%s info", nm);
        if (!t) continue;
        FT_CHECK(t->offset % 32 == 0, "aligned");
        FT_CHECK_OK(ft_gguf_tensor_rows_f32(g, t, 0, 3, got));
        double tol = types[k] == FT_GGML_F32 ? 0 : types[k] == FT_GGML_F16 ? 1e-3 : types[k] == FT_GGML_BF16 ? 4e-3 : 0.06;
        FT_CHECK_CLOSE(got, want, 3 * 256, tol, nm);
    }
    const ft_gguf_tensor *v = ft_gguf_tensor_find(g, "vec");
    FT_CHECK(v && v->n_dims == 1 && v->ne[0] == 5 && ((const float *)v->data)[4] == -1.0f + 0.04f, "1-D f32 exact");
    ft_gguf_close(g);

    /* a failing row source: nothing left at the path, an existing file untouched */
    FT_CHECK_OK(ft_ggufw_open(&w, path));
    FT_CHECK_OK(ft_ggufw_add_tensor(w, "x", FT_GGML_F32, 1, ne3, fail_fn, NULL));
    FT_CHECK(ft_ggufw_finish(w) == FT_E_IO, "failure propagates");
    FT_CHECK(strstr(ft_error_msg(), "simulated failure") != NULL, "message kept: %s", ft_error_msg());
    FT_CHECK(stat(path, &sb) == 0 && sb.st_size == expect_size, "old file untouched");
    char other[4200];
    snprintf(other, sizeof other, "%s/new.gguf", ft_test_tmpdir());
    FT_CHECK_OK(ft_ggufw_open(&w, other));
    FT_CHECK_OK(ft_ggufw_add_tensor(w, "x", FT_GGML_F32, 1, ne3, fail_fn, NULL));
    FT_CHECK(ft_ggufw_finish(w) != FT_OK, "fails");
    FT_CHECK(access(other, F_OK) != 0, "no partial file");
    /* duplicate tensor names */
    FT_CHECK_OK(ft_ggufw_open(&w, other));
    FT_CHECK_OK(ft_ggufw_add_tensor(w, "x", FT_GGML_F32, 1, ne3, rows_fn, &s3));
    FT_CHECK_OK(ft_ggufw_add_tensor(w, "x", FT_GGML_F32, 1, ne3, rows_fn, &s3));
    FT_CHECK(ft_ggufw_finish(w) == FT_E_ARG && access(other, F_OK) != 0, "duplicate refused");
    /* unwritable directory */
    FT_CHECK_OK(ft_ggufw_open(&w, "/nonexistent-dir/x.gguf"));
    FT_CHECK_OK(ft_ggufw_add_tensor(w, "x", FT_GGML_F32, 1, ne3, rows_fn, &s3));
    FT_CHECK(ft_ggufw_finish(w) == FT_E_IO, "unwritable output is an IO error");

    /* truncated copies at many lengths and corrupted headers: clean errors, no crash */
    char *buf = NULL;
    int64_t len = 0;
    FT_CHECK_OK(ft_test_read_file(path, &buf, &len));
    char cut[4200];
    snprintf(cut, sizeof cut, "%s/cut.gguf", ft_test_tmpdir());
    int rejected = 0, tried = 0;
    for (int64_t n = 0; n < len; n += (n < 600 ? 1 : 97)) {
        FILE *fo = fopen(cut, "wb");
        fwrite(buf, 1, (size_t)n, fo);
        fclose(fo);
        tried++;
        if (ft_gguf_open(&g, cut) != FT_OK) rejected++;
        else ft_gguf_close(g);
    }
    FT_CHECK(rejected == tried, "every truncation rejected (%d of %d)", rejected, tried);
    struct { int64_t off; uint32_t val; const char *what; } bad[] = {
        {0, 0x46554748, "magic"}, {4, 1, "version 1"}, {4, 0x00030000, "byte-swapped version"}, {4, 4, "version 4"}};
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        char *c = malloc((size_t)len);
        memcpy(c, buf, (size_t)len);
        memcpy(c + bad[k].off, &bad[k].val, 4);
        FILE *fo = fopen(cut, "wb");
        fwrite(c, 1, (size_t)len, fo);
        fclose(fo);
        free(c);
        FT_CHECK(ft_gguf_open(&g, cut) == FT_E_FORMAT, "%s rejected", bad[k].what);
    }
    free(buf);
    FT_CHECK(ft_gguf_open(&g, "/nonexistent.gguf") == FT_E_IO, "missing file is IO");
}

static void test_mix_rules(void) {
    /* Q4_K_M on a 32-layer model, hidden 4096 (formats.md 4.5 example) */
    int q6[32] = {0};
    for (int i = 0; i < 32; i++) {
        char nm[64];
        snprintf(nm, sizeof nm, "blk.%d.ffn_down.weight", i);
        q6[i] = ft_merge_tensor_type(FT_MERGE_Q4_K_M, nm, 2, 14336, 0, 32, i, 32, 0, 0) == FT_GGML_Q6_K;
    }
    int want[] = {0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31};
    int n6 = 0;
    for (int i = 0; i < 32; i++) n6 += q6[i];
    FT_CHECK(n6 == 16, "16 Q6_K ffn_down layers, got %d", n6);
    for (size_t k = 0; k < sizeof want / sizeof *want; k++) FT_CHECK(q6[want[k]], "layer %d is Q6_K", want[k]);
    FT_CHECK(ft_merge_tensor_type(FT_MERGE_Q4_K_M, "blk.4.attn_v.weight", 2, 4096, 4, 32, 4, 32, 0, 0) == FT_GGML_Q4_K, "attn_v 4");
    FT_CHECK(ft_merge_tensor_type(FT_MERGE_Q4_K_M, "blk.0.attn_v.weight", 2, 4096, 0, 32, 0, 32, 0, 0) == FT_GGML_Q6_K, "attn_v 0");
    FT_CHECK(ft_merge_tensor_type(FT_MERGE_Q4_K_M, "output.weight", 2, 4096, 0, 32, -1, 32, 0, 0) == FT_GGML_Q6_K, "output");
    FT_CHECK(ft_merge_tensor_type(FT_MERGE_Q4_K_M, "token_embd.weight", 2, 4096, 0, 32, -1, 32, 0, 0) == FT_GGML_Q4_K, "embd untied");
    FT_CHECK(ft_merge_tensor_type(FT_MERGE_Q4_K_M, "token_embd.weight", 2, 4096, 0, 32, -1, 32, 1, 0) == FT_GGML_Q6_K, "embd tied");
    FT_CHECK(ft_merge_tensor_type(FT_MERGE_Q4_K_M, "token_embd.weight", 2, 896, 0, 32, -1, 32, 1, 0) == FT_GGML_Q8_0, "embd tied 896");
    FT_CHECK(ft_merge_tensor_type(FT_MERGE_Q4_K_M, "blk.3.attn_q.weight", 2, 896, 0, 24, 3, 24, 1, 0) == FT_GGML_Q5_0, "896 fallback");
    FT_CHECK(ft_merge_tensor_type(FT_MERGE_Q4_K_M, "blk.3.ffn_down.weight", 2, 172, 0, 5, 0, 5, 1, 0) == FT_GGML_F16, "172 -> F16");
    FT_CHECK(ft_merge_tensor_type(FT_MERGE_Q4_K_M, "blk.3.attn_norm.weight", 1, 4096, 0, 32, 3, 32, 0, 0) == FT_GGML_F32, "norm");
    FT_CHECK(ft_merge_tensor_type(FT_MERGE_Q4_K_M, "blk.3.attn_q_norm.weight", 1, 128, 0, 32, 3, 32, 0, 0) == FT_GGML_F32, "qnorm");
    FT_CHECK(ft_merge_tensor_type(FT_MERGE_Q8_0, "blk.3.ffn_down.weight", 2, 172, 0, 5, 3, 5, 0, 0) == FT_GGML_F16, "q8 172");
    FT_CHECK(ft_merge_tensor_type(FT_MERGE_Q8_0, "output.weight", 2, 4096, 0, 5, 3, 5, 0, 0) == FT_GGML_Q8_0, "q8 output");
    FT_CHECK(ft_merge_tensor_type(FT_MERGE_Q4_0, "output.weight", 2, 4096, 0, 5, 3, 5, 0, 0) == FT_GGML_Q6_K, "q4_0 output");
    FT_CHECK(ft_merge_tensor_type(FT_MERGE_Q4_0, "output.weight", 2, 64, 0, 5, 3, 5, 0, 0) == FT_GGML_Q8_0, "q4_0 output 64");
    FT_CHECK(ft_merge_tensor_type(FT_MERGE_F16, "blk.0.attn_q.bias", 1, 64, 0, 5, 0, 5, 0, 0) == FT_GGML_F32, "bias f32");
    FT_CHECK(ft_merge_tensor_type(FT_MERGE_Q4_K_M, "blk.20.attn_v.weight", 2, 8192, 20, 80, 20, 80, 0, 1) == FT_GGML_Q5_K, "70B attn_v Q5_K");
    FT_CHECK(ft_merge_tensor_type(FT_MERGE_Q4_K_M, "blk.0.attn_v.weight", 2, 8192, 0, 80, 0, 80, 0, 1) == FT_GGML_Q6_K, "70B attn_v 0 Q6_K");
    FT_CHECK(ft_merge_tensor_type(FT_MERGE_Q4_K_M, "blk.4.attn_q.weight", 2, 8192, 4, 80, 4, 80, 0, 1) == FT_GGML_Q4_K, "70B attn_q Q4_K");
    FT_CHECK(ft_merge_tensor_type(FT_MERGE_BF16, "blk.0.attn_q.weight", 2, 64, 0, 5, 0, 5, 0, 0) == FT_GGML_BF16, "bf16");
}

/* Q5_K_M and Q6_K (llama.cpp's LLAMA_FTYPE_MOSTLY_Q5_K_M = 17, MOSTLY_Q6_K = 18): default types Q5_K and
 * Q6_K; Q5_K_M gives Q6_K to the layers use_more_bits picks (the Q4_K_M ones) and to the output,
 * falls back Q5_K -> Q5_1, Q6_K -> Q8_0, then F16 for rows that are not whole 32-blocks. */
static void test_mix_rules_k56(void) {
    int q6[32] = {0}, v6[32] = {0}, n6 = 0, nv6 = 0;
    for (int i = 0; i < 32; i++) {
        char nm[64];
        snprintf(nm, sizeof nm, "blk.%d.ffn_down.weight", i);
        const ft_ggml_type t = ft_merge_tensor_type(FT_MERGE_Q5_K_M, nm, 2, 14336, 0, 32, i, 32, 0, 0);
        FT_CHECK(t == FT_GGML_Q6_K || t == FT_GGML_Q5_K, "q5_k_m ffn_down %d: %s", i, ft_ggml_type_name(t));
        q6[i] = t == FT_GGML_Q6_K, n6 += q6[i];
        snprintf(nm, sizeof nm, "blk.%d.attn_v.weight", i);
        const ft_ggml_type tv = ft_merge_tensor_type(FT_MERGE_Q5_K_M, nm, 2, 4096, i, 32, i, 32, 0, 0);
        FT_CHECK(tv == FT_GGML_Q6_K || tv == FT_GGML_Q5_K, "q5_k_m attn_v %d: %s", i, ft_ggml_type_name(tv));
        v6[i] = tv == FT_GGML_Q6_K, nv6 += v6[i];
        snprintf(nm, sizeof nm, "blk.%d.ffn_up.weight", i);
        FT_CHECK(ft_merge_tensor_type(FT_MERGE_Q5_K_M, nm, 2, 4096, 0, 32, i, 32, 0, 0) == FT_GGML_Q5_K, "ffn_up %d", i);
        snprintf(nm, sizeof nm, "blk.%d.ffn_down.weight", i);
        FT_CHECK(ft_merge_tensor_type(FT_MERGE_Q6_K, nm, 2, 14336, 0, 32, i, 32, 0, 0) == FT_GGML_Q6_K, "q6_k %s", nm);
    }
    /* use_more_bits(i, 32): i < 4, i >= 28, (i - 4) % 3 == 2 */
    const int want[] = {0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31};
    FT_CHECK(n6 == 16 && nv6 == 16, "q5_k_m: 16 Q6_K ffn_down and attn_v layers, got %d and %d", n6, nv6);
    for (size_t k = 0; k < sizeof want / sizeof *want; k++)
        FT_CHECK(q6[want[k]] && v6[want[k]], "q5_k_m: layer %d's ffn_down and attn_v are Q6_K", want[k]);
    for (int i = 0; i < 32; i++) FT_CHECK(q6[i] == v6[i], "layer %d: ffn_down and attn_v differ", i);
    static const struct {
        ft_merge_kind kind;
        const char *name;
        int nd;
        int64_t ne0, layer;
        int tied, is_70b;
        ft_ggml_type want;
    } c[] = {
        {FT_MERGE_Q5_K_M, "blk.3.attn_q.weight", 2, 4096, 3, 0, 0, FT_GGML_Q5_K},
        {FT_MERGE_Q5_K_M, "blk.3.attn_output.weight", 2, 4096, 3, 0, 0, FT_GGML_Q5_K},
        {FT_MERGE_Q5_K_M, "output.weight", 2, 4096, -1, 0, 0, FT_GGML_Q6_K},
        {FT_MERGE_Q5_K_M, "output.weight", 2, 896, -1, 0, 0, FT_GGML_Q8_0},      /* ne0 % 256: Q8_0 */
        {FT_MERGE_Q5_K_M, "token_embd.weight", 2, 4096, -1, 0, 0, FT_GGML_Q5_K},  /* untied: the default */
        {FT_MERGE_Q5_K_M, "token_embd.weight", 2, 4096, -1, 1, 0, FT_GGML_Q6_K},  /* tied: the output's */
        {FT_MERGE_Q5_K_M, "token_embd.weight", 2, 896, -1, 1, 0, FT_GGML_Q8_0},
        {FT_MERGE_Q5_K_M, "token_embd.weight", 2, 896, -1, 0, 0, FT_GGML_Q5_1},   /* untied: Q5_K's fallback */
        {FT_MERGE_Q5_K_M, "blk.3.attn_q.weight", 2, 896, 3, 1, 0, FT_GGML_Q5_1},  /* Q5_K -> Q5_1 */
        {FT_MERGE_Q5_K_M, "blk.0.ffn_down.weight", 2, 96, 0, 0, 0, FT_GGML_Q8_0}, /* Q6_K -> Q8_0 */
        {FT_MERGE_Q5_K_M, "blk.4.ffn_down.weight", 2, 96, 4, 0, 0, FT_GGML_Q5_1},
        {FT_MERGE_Q5_K_M, "blk.0.ffn_down.weight", 2, 172, 0, 0, 0, FT_GGML_F16}, /* no 32-block: F16 */
        {FT_MERGE_Q5_K_M, "blk.4.ffn_down.weight", 2, 172, 4, 0, 0, FT_GGML_F16},
        {FT_MERGE_Q5_K_M, "blk.3.attn_norm.weight", 1, 4096, 3, 0, 0, FT_GGML_F32},
        /* the 70B rule lifts Q3_K/Q4_K attn_v only: a Q5_K one stays */
        {FT_MERGE_Q5_K_M, "blk.20.attn_v.weight", 2, 8192, 20, 0, 1, FT_GGML_Q5_K},
        {FT_MERGE_Q5_K_M, "blk.0.attn_v.weight", 2, 8192, 0, 0, 1, FT_GGML_Q6_K},
        {FT_MERGE_Q6_K, "blk.3.attn_q.weight", 2, 4096, 3, 0, 0, FT_GGML_Q6_K},
        {FT_MERGE_Q6_K, "blk.20.attn_v.weight", 2, 8192, 20, 0, 1, FT_GGML_Q6_K},
        {FT_MERGE_Q6_K, "output.weight", 2, 4096, -1, 0, 0, FT_GGML_Q6_K},
        {FT_MERGE_Q6_K, "output.weight", 2, 896, -1, 0, 0, FT_GGML_Q8_0},
        {FT_MERGE_Q6_K, "token_embd.weight", 2, 4096, -1, 0, 0, FT_GGML_Q6_K},
        {FT_MERGE_Q6_K, "token_embd.weight", 2, 896, -1, 1, 0, FT_GGML_Q8_0},
        {FT_MERGE_Q6_K, "blk.3.attn_q.weight", 2, 896, 3, 1, 0, FT_GGML_Q8_0},     /* Q6_K -> Q8_0 */
        {FT_MERGE_Q6_K, "blk.3.ffn_down.weight", 2, 172, 3, 0, 0, FT_GGML_F16},
        {FT_MERGE_Q6_K, "blk.3.attn_q_norm.weight", 1, 128, 3, 0, 0, FT_GGML_F32},
        {FT_MERGE_Q6_K, "blk.0.attn_q.bias", 1, 4096, 0, 0, 0, FT_GGML_F32},
    };
    for (size_t k = 0; k < sizeof c / sizeof *c; k++) {
        const int64_t L = c[k].is_70b ? 80 : 32, iv = c[k].layer < 0 ? 0 : c[k].layer;
        const ft_ggml_type t =
            ft_merge_tensor_type(c[k].kind, c[k].name, c[k].nd, c[k].ne0, iv, L, c[k].layer, L, c[k].tied, c[k].is_70b);
        FT_CHECK(t == c[k].want, "%s %s ne0 %lld%s: %s, want %s", ft_merge_kind_name(c[k].kind), c[k].name,
                 (long long)c[k].ne0, c[k].tied ? " tied" : "", ft_ggml_type_name(t), ft_ggml_type_name(c[k].want));
    }
    /* names and general.file_type (llama.h's llama_ftype) */
    ft_merge_kind k5 = FT_MERGE_F32, k6 = FT_MERGE_F32;
    FT_CHECK(ft_merge_kind_parse("q5_k_m", &k5) && k5 == FT_MERGE_Q5_K_M && ft_merge_kind_parse("Q6_K", &k6) &&
                 k6 == FT_MERGE_Q6_K && strcmp(ft_merge_kind_name(FT_MERGE_Q5_K_M), "q5_k_m") == 0 &&
                 strcmp(ft_merge_kind_name(FT_MERGE_Q6_K), "q6_k") == 0 && !ft_merge_kind_parse("q5_k", &k5),
             "q5_k_m / q6_k names");
    FT_CHECK(ft_merge_file_type(FT_MERGE_Q5_K_M) == 17 && ft_merge_file_type(FT_MERGE_Q6_K) == 18 &&
                 ft_merge_file_type(FT_MERGE_Q4_K_M) == 15,
             "file types 17 / 18 / 15");
    /* a GGUF base's merged Q4_1 / Q5_1 tensors keep their type (ftune encodes them); Q2_K still Q4_K */
    FT_CHECK(ft_merge_base_type(FT_GGML_Q4_1, 64) == FT_GGML_Q4_1 &&
                 ft_merge_base_type(FT_GGML_Q5_1, 96) == FT_GGML_Q5_1 &&
                 ft_merge_base_type(FT_GGML_Q2_K, 256) == FT_GGML_Q4_K &&
                 ft_merge_base_type(FT_GGML_IQ4_NL, 64) == FT_GGML_Q4_0,
             "ft_merge_base_type");
}

/* Hand-built headers with hostile tensor dimensions (found by the fuzz sweep): one tensor "x",
 * no metadata, 32 bytes of data. Each must be a clean FT_E_FORMAT, not a signed overflow in the
 * row size or in the running data offset. */
static void test_hostile_dims(void) {
    struct { int32_t type; int64_t ne0, ne1; const char *what; } cases[] = {
        {FT_GGML_F32, INT64_MAX, 1, "f32 ne[0] = INT64_MAX (row size overflows)"},
        {FT_GGML_Q8_0, INT64_MAX / 32 * 32, 1, "q8_0 ne[0] near INT64_MAX"},
        {FT_GGML_F32, 1, INT64_MAX / 4 + 1, "f32 rows * 4 bytes overflows"},
        {FT_GGML_F32, 1 << 20, 1 << 20, "4 TiB tensor in a tiny file"},
    };
    char path[4200];
    snprintf(path, sizeof path, "%s/dims.gguf", ft_test_tmpdir());
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        uint8_t b[256] = {0}, *p = b;
        const uint32_t version = 3, nd = 2;
        const uint64_t nt = 1, nkv = 0, name_len = 1, off = 0;
        memcpy(p, "GGUF", 4), p += 4;
        memcpy(p, &version, 4), p += 4;
        memcpy(p, &nt, 8), p += 8;
        memcpy(p, &nkv, 8), p += 8;
        memcpy(p, &name_len, 8), p += 8;
        *p++ = 'x';
        memcpy(p, &nd, 4), p += 4;
        memcpy(p, &cases[k].ne0, 8), p += 8;
        memcpy(p, &cases[k].ne1, 8), p += 8;
        memcpy(p, &cases[k].type, 4), p += 4;
        memcpy(p, &off, 8), p += 8;
        size_t len = (size_t)(p - b + 31) / 32 * 32 + 32;
        FILE *fo = fopen(path, "wb");
        fwrite(b, 1, len, fo);
        fclose(fo);
        ft_gguf *g = NULL;
        ft_status st = ft_gguf_open(&g, path);
        FT_CHECK(st == FT_E_FORMAT && strstr(ft_error_msg(), "dims.gguf"), "%s: status %d, %s", cases[k].what, (int)st,
                 st ? ft_error_msg() : "accepted");
        if (st == FT_OK) ft_gguf_close(g);
    }
}

/* One tensor "w" [ne0] and one key general.alignment (of type atype, value aval) as the GGUF
 * spec lays them out; the data (ne0 float32 0, 1, 2, ...) at the aligned end of the header. */
static void write_aligned(const char *path, uint32_t atype, uint64_t aval, int32_t ttype, int64_t ne0, uint64_t off) {
    uint8_t b[512] = {0}, *p = b;
    const uint32_t version = 3, nd = 1;
    const uint64_t nt = 1, nkv = 1, klen = 17, name_len = 1;
    memcpy(p, "GGUF", 4), p += 4;
    memcpy(p, &version, 4), p += 4;
    memcpy(p, &nt, 8), p += 8;
    memcpy(p, &nkv, 8), p += 8;
    memcpy(p, &klen, 8), p += 8;
    memcpy(p, "general.alignment", 17), p += 17;
    memcpy(p, &atype, 4), p += 4;
    memcpy(p, &aval, atype == FT_GGUF_UINT64 ? 8 : 4), p += atype == FT_GGUF_UINT64 ? 8 : 4;
    memcpy(p, &name_len, 8), p += 8;
    *p++ = 'w';
    memcpy(p, &nd, 4), p += 4;
    memcpy(p, &ne0, 8), p += 8;
    memcpy(p, &ttype, 4), p += 4;
    memcpy(p, &off, 8), p += 8;
    const size_t align = aval && !(aval & (aval - 1)) && aval <= 128 ? (size_t)aval : 32;
    p = b + ((size_t)(p - b) + align - 1) / align * align;
    for (int64_t i = 0; i < ne0 && i < 16; i++, p += 4) memcpy(p, &(float){(float)i}, 4);
    FILE *fo = fopen(path, "wb");
    fwrite(b, 1, (size_t)(p - b) + 64, fo);
    fclose(fo);
}

/* general.alignment (GGUF's key for the data alignment, 32 when absent): a power of two is taken
 * and the data read at it; 48, 0 or a UINT64 are refused, as are a tensor of an unknown ggml type,
 * one whose row is not whole blocks, and a first tensor not at offset 0. Each one error naming the
 * file and what is wrong. */
static void test_header_rules(void) {
    char path[4200];
    snprintf(path, sizeof path, "%s/align.gguf", ft_test_tmpdir());
    ft_gguf *g = NULL;
    write_aligned(path, FT_GGUF_UINT32, 64, FT_GGML_F32, 8, 0);
    ft_status st = ft_gguf_open(&g, path);
    FT_CHECK(st == FT_OK, "alignment 64 accepted: %s", st ? ft_error_msg() : "");
    if (st == FT_OK) {
        const ft_gguf_tensor *t = ft_gguf_tensor_find(g, "w");
        float got[8] = {0}, want[8] = {0, 1, 2, 3, 4, 5, 6, 7};
        FT_CHECK(ft_gguf_alignment(g) == 64 && t && t->ne[0] == 8, "alignment 64, tensor w [8]");
        if (t) FT_CHECK_OK(ft_gguf_tensor_rows_f32(g, t, 0, 1, got));
        FT_CHECK_CLOSE(got, want, 8, 0, "data read at the 64-byte boundary");
        ft_gguf_close(g);
        g = NULL;
    }
    static const struct { uint32_t atype; uint64_t aval; int32_t ttype; int64_t ne0; uint64_t off; const char *want; } bad[] = {
        {FT_GGUF_UINT32, 48, FT_GGML_F32, 8, 0, "general.alignment 48 is not a power of two"},
        {FT_GGUF_UINT32, 0, FT_GGML_F32, 8, 0, "general.alignment 0 is not a power of two"},
        {FT_GGUF_UINT64, 32, FT_GGML_F32, 8, 0, "general.alignment must be UINT32"},
        {FT_GGUF_UINT32, 32, 99, 8, 0, "tensor w: unknown ggml type 99"},
        {FT_GGUF_UINT32, 32, FT_GGML_Q8_0, 8, 0, "tensor w: ne[0] = 8 is not a multiple of the"},
        {FT_GGUF_UINT32, 32, FT_GGML_F32, 8, 32, "tensor w: data offset 32, expected 0"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        write_aligned(path, bad[k].atype, bad[k].aval, bad[k].ttype, bad[k].ne0, bad[k].off);
        st = ft_gguf_open(&g, path);
        FT_CHECK(st == FT_E_FORMAT && strstr(ft_error_msg(), path) && strstr(ft_error_msg(), bad[k].want),
                 "want \"%s\": status %d, %s", bad[k].want, (int)st, st ? ft_error_msg() : "accepted");
        if (st == FT_OK) ft_gguf_close(g);
        g = NULL;
    }
}

/* A header declaring 300000 empty tensors (12 MiB): the duplicate-name check was pairwise and took
 * minutes (4.5e10 comparisons); sorted, it is immediate. A duplicate among them and a duplicate
 * key are still refused, naming the name. A FIFO is refused without blocking in open. */
static void test_many_tensors(void) {
    const int64_t n = 300000;
    char path[4200];
    snprintf(path, sizeof path, "%s/many.gguf", ft_test_tmpdir());
    for (int dup = 0; dup < 3; dup++) {
        FILE *fo = fopen(path, "wb");
        const uint32_t version = 3, nd = 1, str_type = 8;
        const uint64_t nkv = dup == 2 ? 2 : 0, name_len = 8, zero = 0, key_len = 3;
        fwrite("GGUF", 1, 4, fo), fwrite(&version, 4, 1, fo), fwrite(&n, 8, 1, fo), fwrite(&nkv, 8, 1, fo);
        for (uint64_t k = 0; k < nkv; k++) /* "a.b" = "" twice */
            fwrite(&key_len, 8, 1, fo), fwrite("a.b", 1, 3, fo), fwrite(&str_type, 4, 1, fo), fwrite(&zero, 8, 1, fo);
        for (int64_t i = 0; i < n; i++) {
            char name[9];
            snprintf(name, sizeof name, "t%07lld", (long long)(dup == 1 && i == n - 1 ? n / 2 : i));
            fwrite(&name_len, 8, 1, fo), fwrite(name, 1, 8, fo), fwrite(&nd, 4, 1, fo);
            fwrite(&zero, 8, 1, fo), fwrite(&zero, 4, 1, fo), fwrite(&zero, 8, 1, fo); /* ne0 = 0, F32, offset 0 */
        }
        static const uint8_t pad[64] = {0};
        fwrite(pad, 1, sizeof pad, fo);
        fclose(fo);
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        ft_gguf *g = NULL;
        ft_status st = ft_gguf_open(&g, path);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
        if (dup == 0) FT_CHECK(st == FT_OK && ft_gguf_tensor_count(g) == n, "%lld tensors: %s", (long long)n, st ? ft_error_msg() : "ok");
        else if (dup == 1) FT_CHECK(st == FT_E_FORMAT && strstr(ft_error_msg(), "duplicate tensor t0150000"), "dup tensor: %s", st ? ft_error_msg() : "accepted");
        else FT_CHECK(st == FT_E_FORMAT && strstr(ft_error_msg(), "duplicate key a.b"), "dup key: %s", st ? ft_error_msg() : "accepted");
        FT_CHECK(s < 10.0, "opening %lld tensor infos took %.1f s", (long long)n, s);
        ft_gguf_close(g);
    }
    remove(path);
    snprintf(path, sizeof path, "%s/fifo.gguf", ft_test_tmpdir());
    FT_CHECK(mkfifo(path, 0600) == 0, "mkfifo");
    ft_gguf *g = NULL;
    ft_status st = ft_gguf_open(&g, path); /* blocked forever before the fix */
    FT_CHECK(st != FT_OK && strstr(ft_error_msg(), "not a regular file"), "fifo: %s", st ? ft_error_msg() : "accepted");
    ft_gguf_close(g);
    remove(path);
}

int main(void) {
    test_hostile_dims();
    test_header_rules();
    test_many_tensors();
    test_quant_golden();
    test_roundtrip_errors();
    test_write_read();
    test_mix_rules();
    test_mix_rules_k56();
    return ft_test_finish();
}
