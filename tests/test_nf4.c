/* test_nf4.c: NF4 quantization with double-quantized absmax against bitsandbytes, and its
 * properties.
 *
 * With tests/fixtures/nf4/ (tests/ref/make_nf4_golden.py: bitsandbytes 0.50 quantize_4bit(nf4, 64,
 * compress_statistics=True) on CPU): the packed codes, nested codes, nested absmax, offset and the
 * float32 dequantization must match bit for bit, through the host reference and through the CPU
 * backend (ft_weight_set / ft_op_nf4_dequantize / ft_weight_get_f32); the NF4 levels and the
 * dynamic map must equal the fixture's tables. Without the fixture those checks print SKIP.
 * Always: the tables against docs/formats.md 7.1 and the shared dynmap.txt, midpoint ties,
 * packing and the odd-length pad nibble, all-zero blocks, thread-count independence, the 8-bit
 * lookup's end points, and dequantization error statistics with asserted bounds. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"
#include "kernels/nf4.h"
#include "kernels/ops.h"
#include "kernels/rng.h"
#include "tests/harness.h"

typedef struct {
    ft_nf4 q;
    int64_t n;
} qbuf;

static void qbuf_init(qbuf *b, int64_t n) {
    b->n = n;
    b->q.codes = calloc((size_t)(n + 1) / 2 + 1, 1);
    b->q.qabsmax = calloc((size_t)ft_nf4_nblocks(n) + 1, 1);
    b->q.absmax2 = calloc((size_t)ft_nf4_nblocks2(n) + 1, 4);
    b->q.offset = 0.0f;
}
static void qbuf_free(qbuf *b) { free(b->q.codes), free(b->q.qabsmax), free(b->q.absmax2); }
static int code_at(const ft_nf4 *q, int64_t i) { return (i & 1) ? q->codes[i / 2] & 15 : q->codes[i / 2] >> 4; }

/* Reads a whole fixture file; NULL if absent. */
static void *read_fx(const char *name, int64_t *len) {
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/fixtures/nf4/%s", ft_test_src_dir(), name);
    char *buf = NULL;
    if (ft_test_read_file(path, &buf, len) != FT_OK) return NULL;
    return buf;
}

static uint32_t bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* ---- tables ------------------------------------------------------------------------------------ */
static void test_tables(void) {
    /* docs/formats.md 7.1, the float32 literals of bitsandbytes' NF4 table */
    static const char *nf4_doc[16] = {"-1.0", "-0.6961928009986877", "-0.5250730514526367", "-0.39491748809814453",
                                      "-0.28444138169288635", "-0.18477343022823334", "-0.09105003625154495", "0.0",
                                      "0.07958029955625534", "0.16093020141124725", "0.24611230194568634",
                                      "0.33791524171829224", "0.44070982933044434", "0.5626170039176941",
                                      "0.7229568362236023", "1.0"};
    int same = 1, asc = 1;
    for (int i = 0; i < 16; i++) same &= ft_nf4_levels[i] == strtof(nf4_doc[i], NULL);
    for (int i = 1; i < 16; i++) asc &= ft_nf4_levels[i] > ft_nf4_levels[i - 1];
    FT_CHECK(same && asc, "ft_nf4_levels differ from docs/formats.md 7.1 or are not ascending");
    asc = 1;
    for (int i = 1; i < 256; i++) asc &= ft_nf4_dynmap[i] > ft_nf4_dynmap[i - 1];
    FT_CHECK(asc && ft_nf4_dynmap[127] == 0.0f && ft_nf4_dynmap[255] == 1.0f && fabsf(ft_nf4_dynmap[0] + 0.99296875f) < 1e-6f,
             "ft_nf4_dynmap: not ascending or wrong anchors (%g %g %g)", ft_nf4_dynmap[0], ft_nf4_dynmap[127],
             ft_nf4_dynmap[255]);

    /* the shared float32-emulated table (may differ in the last ulp) */
    char path[1024], *txt = NULL;
    snprintf(path, sizeof path, "%s/docs/dynmap.txt", ft_test_shared_dir());
    if (ft_test_read_file(path, &txt, NULL) != FT_OK) {
        printf("SKIP dynmap vs %s (absent)\n", path);
        return;
    }
    int k = 0, worst = 0;
    for (char *line = strtok(txt, "\n"); line && k < 256; line = strtok(NULL, "\n")) {
        char *p = strchr(line, ':');
        if (line[0] == '#' || !p) continue;
        for (p++; k < 256;) {
            char *end;
            float v = strtof(p, &end);
            if (end == p) break;
            int d = abs((int)((int32_t)bits(v) - (int32_t)bits(ft_nf4_dynmap[k])));
            if (d > worst) worst = d;
            k++;
            p = end;
            while (*p == ',' || *p == ' ') p++;
        }
    }
    free(txt);
    FT_CHECK(k == 256 && worst <= 2, "dynmap vs shared dynmap.txt: %d values, worst %d ulp", k, worst);
}

/* ---- bitsandbytes fixture ---------------------------------------------------------------------- */
static void test_fixture(ft_backend *be) {
    int64_t nx = 0, l1, l2, l3, l4, l5, l6, l7, l8, lm;
    float *x = read_fx("input.bin", &nx);
    if (!x) {
        printf("SKIP bitsandbytes fixture: tests/fixtures/nf4/input.bin absent (run tests/ref/make_nf4_golden.py)\n");
        return;
    }
    const int64_t n = nx / 4, nb = ft_nf4_nblocks(n), nb2 = ft_nf4_nblocks2(n);
    uint8_t *codes = read_fx("codes.bin", &l1), *qa = read_fx("qabsmax.bin", &l2);
    float *a2 = read_fx("absmax2.bin", &l3), *deq = read_fx("dequant.bin", &l4), *dyn = read_fx("dynmap.bin", &l5);
    float *lev = read_fx("nf4_code.bin", &l6), *raw = read_fx("absmax_raw.bin", &l7), *adq = read_fx("absmax_dq.bin", &l8);
    char *meta = read_fx("meta.json", &lm);
    if (!FT_CHECK(codes && qa && a2 && deq && dyn && lev && raw && adq && meta, "nf4 fixture incomplete")) goto done;
    FT_CHECK(l1 == (n + 1) / 2 && l2 == nb && l3 == 4 * nb2 && l4 == 4 * n && l5 == 1024 && l6 == 64 && l7 == 4 * nb,
             "nf4 fixture sizes");
    const char *ob = strstr(meta, "\"offset_bits_u32\":");
    if (!FT_CHECK(ob != NULL, "meta.json has no offset_bits_u32")) goto done;
    const uint32_t off_bits = (uint32_t)strtoul(ob + strlen("\"offset_bits_u32\":"), NULL, 10);

    FT_CHECK(memcmp(dyn, ft_nf4_dynmap, 1024) == 0, "ft_nf4_dynmap differs from bitsandbytes' state2.code");
    FT_CHECK(memcmp(lev, ft_nf4_levels, 64) == 0, "ft_nf4_levels differ from bitsandbytes' quant_state.code");
    FT_CHECK(bits(ft_nf4_absmax_mean(raw, nb)) == off_bits, "offset: torch-mean emulation %.9g vs bnb bits 0x%08x",
             ft_nf4_absmax_mean(raw, nb), off_bits);

    /* host reference */
    qbuf b;
    qbuf_init(&b, n);
    FT_CHECK_OK(ft_nf4_quantize_host(x, n, &b.q, 2));
    int64_t dc = 0, dq = 0, da = 0, dd = 0, dadq = 0;
    for (int64_t i = 0; i < (n + 1) / 2; i++) dc += b.q.codes[i] != codes[i];
    for (int64_t i = 0; i < nb; i++) dq += b.q.qabsmax[i] != qa[i];
    for (int64_t i = 0; i < nb2; i++) da += bits(b.q.absmax2[i]) != bits(a2[i]);
    for (int64_t i = 0; i < nb; i++) {
        const float am = ft_nf4_dynmap[b.q.qabsmax[i]] * b.q.absmax2[i / FT_NF4_BLOCK2];
        dadq += bits(am + b.q.offset) != bits(adq[i]);
    }
    float *out = malloc((size_t)n * 4);
    ft_nf4_dequantize_host(&b.q, n, out, 2);
    for (int64_t i = 0; i < n; i++) dd += bits(out[i]) != bits(deq[i]);
    FT_CHECK(dc == 0, "codes: %lld of %lld bytes differ from bitsandbytes", (long long)dc, (long long)(n + 1) / 2);
    FT_CHECK(dq == 0, "qabsmax: %lld of %lld differ from bitsandbytes", (long long)dq, (long long)nb);
    FT_CHECK(da == 0, "absmax2: %lld of %lld differ", (long long)da, (long long)nb2);
    FT_CHECK(bits(b.q.offset) == off_bits, "offset %.9g (0x%08x) vs bnb 0x%08x", b.q.offset, bits(b.q.offset), off_bits);
    FT_CHECK(dadq == 0, "recovered absmax: %lld of %lld differ", (long long)dadq, (long long)nb);
    FT_CHECK(dd == 0, "dequantized: %lld of %lld floats differ", (long long)dd, (long long)n);
    printf("ok   bitsandbytes fixture (n=%lld, %lld blocks, %lld nested): codes, qabsmax, absmax2, offset, "
           "recovered absmax and dequantization bit-exact\n", (long long)n, (long long)nb, (long long)nb2);

    int64_t ln;
    uint8_t *near = read_fx("qabsmax_nearest.bin", &ln);
    if (near) { /* informational: exact-nearest nested codes (CUDA bitsandbytes) vs the CPU lookup table */
        int64_t dn = 0;
        for (int64_t i = 0; i < nb && i < ln; i++) dn += b.q.qabsmax[i] != near[i];
        printf("info nested codes differ from the exact-nearest variant in %lld of %lld blocks (bnb's CPU "
               "quantize_blockwise uses a 65536-bin lookup table)\n", (long long)dn, (long long)nb);
        free(near);
    }

    /* the same through the CPU backend: ft_weight_set (ft_op_nf4_quantize), the op's dequantize and
     * ft_weight_get_f32 */
    const int64_t rows = n % 10 == 0 ? n / 10 : 1, cols = n / rows;
    ft_weight w;
    FT_CHECK_OK(ft_weight_alloc(be, &w, FT_NF4, rows, cols, "fixture"));
    FT_CHECK_OK(ft_weight_set(be, &w, x, FT_F32));
    FT_CHECK(memcmp(w.nf4.codes, codes, (size_t)(n + 1) / 2) == 0 && memcmp(w.nf4.qabsmax, qa, (size_t)nb) == 0 &&
                 memcmp(w.nf4.absmax2, a2, (size_t)(4 * nb2)) == 0 && bits(w.nf4.offset) == off_bits,
             "backend ft_op_nf4_quantize differs from bitsandbytes");
    float *o2 = malloc((size_t)n * 4);
    FT_CHECK_OK(ft_op_nf4_dequantize(be, o2, &w));
    FT_CHECK(memcmp(o2, deq, (size_t)n * 4) == 0, "backend ft_op_nf4_dequantize differs from bitsandbytes");
    memset(o2, 0xFF, (size_t)n * 4);
    FT_CHECK_OK(ft_weight_get_f32(be, &w, o2));
    FT_CHECK(memcmp(o2, deq, (size_t)n * 4) == 0, "ft_weight_get_f32 differs from bitsandbytes");
    ft_weight_release(be, &w);
    free(o2), free(out);
    qbuf_free(&b);
done:
    free(x), free(codes), free(qa), free(a2), free(deq), free(dyn), free(lev), free(raw), free(adq), free(meta);
}

/* ---- properties ------------------------------------------------------------------------------- */
static void test_ties_and_packing(void) {
    /* One block with absmax exactly 1: x * (1/1) == x, so every float32 midpoint appears exactly. */
    float mid[15], x[64 * 3 + 1];
    for (int i = 0; i < 15; i++) mid[i] = (ft_nf4_levels[i] + ft_nf4_levels[i + 1]) / 2.0f;
    for (int i = 0; i < 64; i++) x[i] = 0.0f;
    x[0] = 1.0f, x[1] = -1.0f;
    for (int i = 0; i < 15; i++) {
        x[2 + i] = mid[i];
        x[17 + i] = nextafterf(mid[i], 2.0f);
        x[32 + i] = nextafterf(mid[i], -2.0f);
    }
    for (int i = 64; i < 128; i++) x[i] = 0.0f;                  /* all-zero block */
    for (int i = 128; i < 193; i++) x[i] = (float)(i - 160) * 0.5f; /* 64 + a 1-element tail: odd n */
    const int64_t n = 193;
    qbuf b;
    qbuf_init(&b, n);
    FT_CHECK_OK(ft_nf4_quantize_host(x, n, &b.q, 1));
    int ok = code_at(&b.q, 0) == 15 && code_at(&b.q, 1) == 0;
    for (int i = 0; i < 15; i++) ok &= code_at(&b.q, 2 + i) == i && code_at(&b.q, 17 + i) == i + 1 && code_at(&b.q, 32 + i) == i;
    FT_CHECK(ok, "NF4 midpoint ties: a value on a midpoint must take the lower code");
    ok = 1;
    for (int i = 64; i < 128; i++) ok &= code_at(&b.q, i) == 7;
    FT_CHECK(ok, "all-zero block must code 7 (0.0)");
    FT_CHECK(b.q.codes[0] == (15 << 4 | 0), "packing: first element in the high nibble (byte 0x%02x)", b.q.codes[0]);
    FT_CHECK((b.q.codes[n / 2] & 15) == 7, "odd length: pad nibble 0x%x, want 7 (the code of 0.0)", b.q.codes[n / 2] & 15);
    float *d = malloc(n * 4);
    ft_nf4_dequantize_host(&b.q, n, d, 1);
    int zeros = 1;
    for (int i = 64; i < 128; i++) zeros &= d[i] == 0.0f;
    /* the zero block's absmax is recovered as dynmap[q] * absmax2 + offset, which need not be 0, but
     * its codes are 7 (level 0.0), so the values are exactly 0 */
    FT_CHECK(zeros, "all-zero block does not dequantize to 0");
    qbuf_free(&b);
    free(d);

    uint8_t lut[FT_NF4_QLUT_SIZE];
    ft_nf4_qlut_build(lut);
    /* 0.0 falls in bin 32768, which stands for 2^-16 (not 0): bitsandbytes' CPU table gives code 131 */
    FT_CHECK(ft_nf4_qlut_code(lut, 1.0f) == 255 && ft_nf4_qlut_code(lut, -1.0f) == 0 && ft_nf4_qlut_code(lut, 0.0f) == 131 &&
                 ft_nf4_qlut_code(lut, 3.0f) == 255 && ft_nf4_qlut_code(lut, NAN) == lut[0],
             "8-bit lookup end points: %d %d %d", ft_nf4_qlut_code(lut, 1.0f), ft_nf4_qlut_code(lut, -1.0f),
             ft_nf4_qlut_code(lut, 0.0f));
}

/* Gaussian weights with per-block scales over one decade (as in LLM weight matrices), several sizes
 * (partial tails, > 256 blocks). Per block, with A the true absmax and A' the recovered one:
 *   |x - l[c] A'| <= |x - l[c] A| + |A - A'| <= 0.1520 A + |A - A'|,
 * 0.1520 being half the widest NF4 gap (-1 .. -0.696); |A - A'| <= 0.0071 absmax2, half the 8-bit
 * map's coarsest step near +-1 (0.0141) plus the lookup table's bin. */
static void test_error_stats(void) {
    static const int64_t sizes[] = {64, 4097, 64 * 256, 64 * 300 + 5, 1 << 20};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        const int64_t n = sizes[s], nb = ft_nf4_nblocks(n);
        float *x = malloc((size_t)n * 4), *d = malloc((size_t)n * 4);
        for (int64_t i = 0; i < n; i += 2) { /* Box-Muller */
            double u1 = ft_uniform(77 + s, (uint64_t)i) + 1e-12, u2 = ft_uniform(77 + s, (uint64_t)i + 1);
            double r = sqrt(-2.0 * log(u1)), sc = 0.02 * pow(10.0, ft_uniform(99, (uint64_t)(i / 64)) - 0.5);
            x[i] = (float)(r * cos(2 * M_PI * u2) * sc);
            if (i + 1 < n) x[i + 1] = (float)(r * sin(2 * M_PI * u2) * sc);
        }
        qbuf a, b;
        qbuf_init(&a, n), qbuf_init(&b, n);
        FT_CHECK_OK(ft_nf4_quantize_host(x, n, &a.q, 1));
        FT_CHECK_OK(ft_nf4_quantize_host(x, n, &b.q, 2));
        FT_CHECK(memcmp(a.q.codes, b.q.codes, (size_t)(n + 1) / 2) == 0 && memcmp(a.q.qabsmax, b.q.qabsmax, (size_t)nb) == 0 &&
                     a.q.offset == b.q.offset,
                 "n=%lld: quantization depends on the thread count", (long long)n);
        ft_nf4_dequantize_host(&a.q, n, d, 2);
        double sum_abs_err = 0, sum_abs = 0, worst_block = 0, worst_am = 0, worst_excess = 0;
        for (int64_t blk = 0; blk < nb; blk++) {
            const int64_t s0 = blk * 64, e = s0 + 64 < n ? s0 + 64 : n;
            double am = 0, me = 0;
            for (int64_t i = s0; i < e; i++) am = fmax(am, fabs(x[i]));
            for (int64_t i = s0; i < e; i++) {
                me = fmax(me, fabs((double)x[i] - d[i]));
                sum_abs_err += fabs((double)x[i] - d[i]);
                sum_abs += fabs(x[i]);
            }
            const double a2 = a.q.absmax2[blk / 256];
            const double recovered = ft_nf4_dynmap[a.q.qabsmax[blk]] * a2 + a.q.offset;
            worst_am = fmax(worst_am, fabs(recovered - am) / a2);
            worst_block = fmax(worst_block, me / am);
            worst_excess = fmax(worst_excess, (me - 0.1520 * am - fabs(recovered - am)) / am);
        }
        const double rel_mae = sum_abs_err / sum_abs;
        printf("ok   nf4 n=%-8lld mean|err|/mean|x| %.4f, max per-block |err|/absmax %.4f, absmax recovery "
               "|A-A'|/absmax2 %.2e\n", (long long)n, rel_mae, worst_block, worst_am);
        FT_CHECK(rel_mae < 0.12, "n=%lld: mean relative error %.4f", (long long)n, rel_mae);
        FT_CHECK(worst_excess <= 1e-6, "n=%lld: a block exceeds 0.152 absmax + |A - A'| by %.2e absmax", (long long)n,
                 worst_excess);
        FT_CHECK(worst_am <= 0.0071, "n=%lld: absmax recovery error %.2e of absmax2", (long long)n, worst_am);
        qbuf_free(&a), qbuf_free(&b);
        free(x), free(d);
    }
}

static void test_mean(void) {
    /* The torch-mean emulation is a float32 sum: within a few ulp of the exact mean. */
    static const int64_t sizes[] = {1, 3, 7, 8, 9, 31, 64, 65, 1000, 4097, 100000};
    double worst = 0;
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        const int64_t n = sizes[s];
        float *a = malloc((size_t)n * 4);
        double exact = 0;
        for (int64_t i = 0; i < n; i++) exact += a[i] = 3.0f * ft_uniform(5 + s, (uint64_t)i);
        exact /= (double)n;
        worst = fmax(worst, fabs(ft_nf4_absmax_mean(a, n) - exact) / exact);
        free(a);
    }
    FT_CHECK(worst < 1e-6, "torch-mean emulation off by %.2e relative", worst);
}

int main(void) {
    ft_backend *be = NULL;
    FT_CHECK_OK(ft_backend_cpu_create(&be, 2));
    test_tables();
    test_ties_and_packing();
    test_mean();
    test_error_stats();
    if (be) test_fixture(be);
    FT_CHECK(!be || ft_backend_bytes_in_use(be) == 0, "leak");
    ft_backend_free(be);
    return ft_test_finish();
}
