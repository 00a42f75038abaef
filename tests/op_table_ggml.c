/* op_table_ggml.c: ggml block weights (FT_Q4_0 .. FT_IQ4_XS, a GGUF base's frozen linears) for the op
 * test table (tests/op_table.h): the bytes a case's weight holds and the values they decode to.
 *
 * For the types ftune encodes (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K) the weight is the case's generated
 * floats quantized by ggml's reference encoder (kernels/ggml_quants.h, checked against ggml's own
 * bytes by test_gguf), and the backend gets the floats (ft_weight_set quantizes them on the host).
 * The others (Q2_K, Q3_K, IQ4_NL, IQ4_XS) are read from GGUF files, never written: their blocks are
 * random bytes drawn from the generated floats (so a fresh salt gives fresh blocks) with the fp16
 * scale fields overwritten by finite values of a size that keeps the decoded weight near the other
 * types', and the backend gets the blocks themselves. Either way the reference values are the
 * blocks decoded by ft_ggml_dequantize_row, which test_ggml_decode checks bit for bit against
 * gguf-py. Rows are whole blocks, so quantizing or drawing the tensor as one long row gives the
 * bytes of its rows one after the other. */
#include <stdlib.h>
#include <string.h>

#include "kernels/ggml_quants.h"
#include "kernels/rng.h"
#include "tests/op_table.h"

/* Byte offsets of a block's fp16 scale fields and the size of a scale that keeps the decoded values
 * within about +-0.3 (ggml-common.h layouts): d, then m / dmin where the type has one. */
typedef struct { int type; int off[2]; int nf; float mag; } ot_fp16_fields;
static const ot_fp16_fields ot_fields[] = {
    {FT_GGML_Q4_1, {0, 2}, 2, 0.02f},   /* d, m, qs[16]: q in 0..15 */
    {FT_GGML_Q5_1, {0, 2}, 2, 0.01f},   /* d, m, qh[4], qs[16]: q in 0..31 */
    {FT_GGML_Q2_K, {80, 82}, 2, 0.006f}, /* scales[16], qs[64], d, dmin: 4-bit scale and min, q in 0..3 */
    {FT_GGML_Q3_K, {108, 0}, 1, 0.002f}, /* hmask[32], qs[64], scales[12], d: scale -32..31, q -4..3 */
    {FT_GGML_IQ4_NL, {0, 0}, 1, 0.0025f}, /* d, qs[16]: levels -127..113 */
    {FT_GGML_IQ4_XS, {0, 0}, 1, 1e-4f},   /* d, scales_h, scales_l[4], qs[128]: scale -32..31, levels -127..113 */
};

static const ot_fp16_fields *ot_fields_of(int t) {
    for (size_t i = 0; i < sizeof ot_fields / sizeof *ot_fields; i++)
        if (ot_fields[i].type == t) return &ot_fields[i];
    return NULL;
}

/* A hash of the bits of h[n] (the seed of one block's bytes). */
static uint64_t ot_hash(const float *h, int64_t n) {
    uint64_t z = 0x9e3779b97f4a7c15ull;
    for (int64_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &h[i], 4);
        z = ft_mix64(z ^ u);
    }
    return z;
}

uint8_t *ot_ggml_blocks(const float *h, int64_t n, ft_dtype t) {
    const int gt = ft_dtype_ggml_type(t);
    const int64_t bs = ft_dtype_block_elems(t), ts = ft_dtype_block_bytes(t), nb = n / bs;
    FT_ASSERT(gt >= 0 && n % bs == 0);
    uint8_t *q = malloc((size_t)(nb > 0 ? nb * ts : 1));
    if (!q) abort();
    if (ft_ggml_can_encode(gt)) {
        FT_CHECK(ft_ggml_quantize_row(gt, h, q, n) == 0, "quantize %lld values to %s", (long long)n, ft_dtype_name(t));
        return q;
    }
    const ot_fp16_fields *f = ot_fields_of(gt);
    FT_ASSERT(f != NULL);
    for (int64_t b = 0; b < nb; b++) {
        uint8_t *blk = q + b * ts;
        const uint64_t seed = ot_hash(h + b * bs, bs);
        for (int64_t j = 0; j < ts; j++) blk[j] = (uint8_t)(ft_mix64(seed + (uint64_t)j) >> 56);
        for (int k = 0; k < f->nf; k++) { /* +-mag * [0.5, 1.5): finite, never subnormal or zero */
            const float u = ft_uniform(seed, (uint64_t)(ts + k));
            const float v = f->mag * (0.5f + u) * ((ft_mix64(seed ^ (uint64_t)k) & 1) ? -1.0f : 1.0f);
            const uint16_t bits = ft_ggml_fp32_to_fp16(v);
            memcpy(blk + f->off[k], &bits, 2);
        }
    }
    return q;
}

float *ot_ggml_values(const float *h, int64_t n, ft_dtype t) {
    uint8_t *q = ot_ggml_blocks(h, n, t);
    float *v = ot_hmalloc(n);
    FT_CHECK(ft_ggml_dequantize_row(ft_dtype_ggml_type(t), q, v, n) == 0, "decode %s", ft_dtype_name(t));
    free(q);
    return v;
}

void ot_ggml_set(ot_ctx *c, ft_weight *w, const float *h) {
    if (ft_ggml_can_encode(ft_dtype_ggml_type(w->dtype))) { /* quantized by ft_weight_set on the host */
        FT_CHECK_OK(ft_weight_set(c->be, w, h, FT_F32));
        return;
    }
    uint8_t *q = ot_ggml_blocks(h, ft_weight_numel(w), w->dtype);
    FT_CHECK_OK(ft_weight_set(c->be, w, q, w->dtype)); /* the blocks as they are, as the GGUF loader does */
    free(q);
}
