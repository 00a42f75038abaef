/* nf4_cpu.c: NF4 quantization with double-quantized absmax, bit-exact with bitsandbytes 0.50
 * quantize_4bit(nf4, blocksize 64, compress_statistics=True) on CPU, and its dequantization.
 *
 * The steps and why each is written the way it is are in kernels/nf4.h. The host functions here
 * (ft_nf4_quantize_host / _dequantize_host / _dequantize_range) are the reference for every
 * backend; the CPU ops call them directly, since CPU backend memory is host memory.
 * All arithmetic is float32 and relies on the C11 default of no FMA contraction (-std=c11:
 * -ffp-contract=off), because bitsandbytes rounds each product and sum separately. */
#include <math.h>
#include <omp.h>

#include "kernels/cpu/cpu_impl.h"
#include "kernels/mem.h"

/* The 4-bit code of a scaled value: number of float32 midpoints strictly below it. */
static inline uint8_t ft_nf4_code(const float *mid, float v) {
    uint8_t c = 0;
    for (int i = 0; i < 15; i++) c += mid[i] < v;
    return c;
}

static inline float ft_clamp1(float v) { return v < -1.0f ? -1.0f : (v > 1.0f ? 1.0f : v); }

ft_status ft_nf4_quantize_host(const float *x, int64_t n, ft_nf4 *q, int nthreads) {
    const int64_t nb = ft_nf4_nblocks(n), nb2 = ft_nf4_nblocks2(n), nfull = n / FT_NF4_BLOCK;
    const int nt = nthreads > 0 ? nthreads : omp_get_max_threads();
    float *absmax = NULL;
    uint8_t *lut = NULL;
    ft_status st;
    FT_CHECK_GOTO(st, ft_malloc((void **)&absmax, (size_t)(nb > 0 ? nb : 1) * sizeof(float), "nf4 absmax"), done);
    FT_CHECK_GOTO(st, ft_malloc((void **)&lut, FT_NF4_QLUT_SIZE, "nf4 nested lookup table"), done);
    float mid[15];
    for (int i = 0; i < 15; i++) mid[i] = (ft_nf4_levels[i] + ft_nf4_levels[i + 1]) / 2.0f;

    /* 1. Per 64-block absmax and codes. Blocks start at even elements, so each owns whole bytes. */
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t b = 0; b < nb; b++) {
        const int64_t s = b * FT_NF4_BLOCK, len = n - s < FT_NF4_BLOCK ? n - s : FT_NF4_BLOCK;
        const float *xb = x + s;
        float am = 0.0f;
        for (int64_t i = 0; i < len; i++) am = fmaxf(am, fabsf(xb[i]));
        absmax[b] = am;
        const float amc = am < 1e-38f ? 1e-38f : am; /* absmax.clamp(min=1e-38) */
        const float r = 1.0f / amc;
        uint8_t c[FT_NF4_BLOCK + 1];
        for (int64_t i = 0; i < len; i++) /* full blocks: x * (1/absmax); the tail block: x / absmax */
            c[i] = ft_nf4_code(mid, ft_clamp1(b < nfull ? xb[i] * r : xb[i] / amc));
        if (len & 1) c[len] = ft_nf4_code(mid, 0.0f); /* torch pads the odd tail with 0.0 */
        for (int64_t i = 0; i < len; i += 2) q->codes[(s + i) / 2] = (uint8_t)(c[i] << 4 | c[i + 1]);
    }

    /* 2. Double quantization of absmax - offset in 256-blocks under the dynamic map. */
    q->offset = ft_nf4_absmax_mean(absmax, nb);
    ft_nf4_qlut_build(lut);
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t j = 0; j < nb2; j++) {
        const int64_t s = j * FT_NF4_BLOCK2, e = nb - s < FT_NF4_BLOCK2 ? nb : s + FT_NF4_BLOCK2;
        float a2 = 0.0f;
        for (int64_t b = s; b < e; b++) a2 = fmaxf(a2, fabsf(absmax[b] - q->offset));
        q->absmax2[j] = a2;
        if (a2 == 0.0f) {
            for (int64_t b = s; b < e; b++) q->qabsmax[b] = 0;
            continue;
        }
        const float inv = 1.0f / a2;
        for (int64_t b = s; b < e; b++) q->qabsmax[b] = ft_nf4_qlut_code(lut, (absmax[b] - q->offset) * inv);
    }
    st = FT_OK;
done:
    ft_free(lut);
    ft_free(absmax);
    return st;
}

static inline float ft_nf4_block_absmax(const ft_nf4 *q, int64_t b) {
    const float a = ft_nf4_dynmap[q->qabsmax[b]] * q->absmax2[b / FT_NF4_BLOCK2];
    return a + q->offset;
}

void ft_nf4_dequantize_range(const ft_nf4 *q, int64_t start, int64_t count, float *out) {
    int64_t b = -1;
    float am = 0.0f;
    for (int64_t k = 0; k < count; k++) {
        const int64_t i = start + k;
        if (i / FT_NF4_BLOCK != b) {
            b = i / FT_NF4_BLOCK;
            am = ft_nf4_block_absmax(q, b);
        }
        const uint8_t byte = q->codes[i >> 1];
        out[k] = ft_nf4_levels[(i & 1) ? (byte & 15) : (byte >> 4)] * am;
    }
}

void ft_nf4_dequantize_host(const ft_nf4 *q, int64_t n, float *out, int nthreads) {
    const int64_t nb = ft_nf4_nblocks(n);
    const int nt = nthreads > 0 ? nthreads : omp_get_max_threads();
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t b = 0; b < nb; b++) {
        const int64_t s = b * FT_NF4_BLOCK, len = n - s < FT_NF4_BLOCK ? n - s : FT_NF4_BLOCK;
        ft_nf4_dequantize_range(q, s, len, out + s);
    }
}

ft_status ft_cpu_nf4_quantize(ft_backend *be, ft_weight *w, const void *src, ft_dtype src_dtype) {
    const int64_t n = ft_weight_numel(w);
    if (src_dtype == FT_F32) return ft_nf4_quantize_host(src, n, &w->nf4, ft_cpu_threads(be));
    float *x; /* [n] f32 copy of a 16-bit source */
    FT_TRY(ft_malloc((void **)&x, (size_t)(n > 0 ? n : 1) * sizeof(float), "nf4 quantize source"));
    ft_to_f32(x, src, src_dtype, n);
    ft_status st = ft_nf4_quantize_host(x, n, &w->nf4, ft_cpu_threads(be));
    ft_free(x);
    return st;
}

ft_status ft_cpu_nf4_dequantize(ft_backend *be, void *out, const ft_weight *w) {
    ft_nf4_dequantize_host(&w->nf4, ft_weight_numel(w), out, ft_cpu_threads(be));
    return FT_OK;
}
