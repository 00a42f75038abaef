/* nf4.h: the bitsandbytes NF4 format with double quantization (QLoRA paper), as ftune stores
 * frozen weights.
 *
 * A tensor of n elements (flattened row-major) is split into blocks of 64. Per block:
 *   absmax_b = max |x| over the block; codes = nearest NF4 level of x / absmax_b (4 bits each,
 *   element 2i in the HIGH nibble of byte i, as bitsandbytes packs them).
 * Double quantization of the absmax vector (float32 [nb]):
 *   offset = mean(absmax); (absmax - offset) is quantized blockwise with blocksize 256 under the
 *   signed 8-bit dynamic map: absmax2[j] = max |absmax - offset| over block j,
 *   qabsmax[b] = nearest code of (absmax_b - offset) / absmax2[b/256].
 * Recovery: absmax_b = dynmap[qabsmax[b]] * absmax2[b/256] + offset; x = nf4[code] * absmax_b.
 * Sizes: n/2 + nb + 4*ceil(nb/256) bytes, about 4.127 bits per element. */
#ifndef FT_NF4_H
#define FT_NF4_H

#include <stdint.h>

#include "kernels/status.h"

#define FT_NF4_BLOCK 64
#define FT_NF4_BLOCK2 256

/* The 16 NF4 levels (bitsandbytes' table, ascending, level 7 = 0). */
extern const float ft_nf4_levels[16];
/* The signed 8-bit dynamic map of bitsandbytes create_dynamic_map(signed=True) (256, ascending). */
extern const float ft_nf4_dynmap[256];

typedef struct ft_nf4 {
    uint8_t *codes;   /* [ceil(n/2)] backend memory */
    uint8_t *qabsmax; /* [nb] backend memory */
    float *absmax2;   /* [nb2] backend memory */
    float offset;     /* host scalar */
} ft_nf4;

static inline int64_t ft_nf4_nblocks(int64_t n) { return (n + FT_NF4_BLOCK - 1) / FT_NF4_BLOCK; }
static inline int64_t ft_nf4_nblocks2(int64_t n) {
    return (ft_nf4_nblocks(n) + FT_NF4_BLOCK2 - 1) / FT_NF4_BLOCK2;
}
/* Total bytes of an NF4 tensor of n elements (codes + qabsmax + absmax2). */
static inline int64_t ft_nf4_nbytes(int64_t n) {
    return (n + 1) / 2 + ft_nf4_nblocks(n) + 4 * ft_nf4_nblocks2(n);
}

/* ---- host reference (plain host memory), shared by every backend ----------------------------
 * Bit-exactness notes (bitsandbytes 0.50 on CPU, the reference the fixtures come from):
 * - NF4 codes: full blocks scale by x * (1/absmax) (reciprocal first), the partial tail block by
 *   x / absmax; clamp to [-1, 1]; code = number of float32 midpoints (l[i] + l[i+1]) / 2 strictly
 *   below the value (a value on a midpoint takes the lower code). An odd n pads the last low nibble
 *   with the code of 0.0 (7).
 * - offset = mean(absmax) as torch's CPU float32 sum (cascade sum, 8-lane AVX2 kernel, one thread)
 *   divided by nb in float32: ft_nf4_absmax_mean. torch splits sums of >= 32768 values across its
 *   threads, so for tensors of >= 2M elements bitsandbytes' own offset depends on its thread count.
 * - The nested 8-bit quantization does not search the dynamic map: libbitsandbytes_cpu maps
 *   v = dev * (1/absmax2) to one of 65536 bins, idx = (int)fmaf((clamp(v) + 1) * 0.5f, 65535, 0.5f),
 *   and reads the code from a table built on the map's float32 midpoints (ft_nf4_qlut_build).
 *   A 256-block whose absmax2 is 0 gets code 0.
 * - Recovery is two float32 roundings (no FMA): absmax_b = dynmap[q] * absmax2 + offset. */
#define FT_NF4_QLUT_SIZE 65536
/* Builds bitsandbytes' 8-bit quantization lookup table for ft_nf4_dynmap: lut[FT_NF4_QLUT_SIZE]. */
void ft_nf4_qlut_build(uint8_t *lut);
/* The 8-bit code of v = dev * (1/absmax2) through that table. */
uint8_t ft_nf4_qlut_code(const uint8_t *lut, float v);
/* offset = mean(absmax[nb]) exactly as torch computes it on CPU (see above). */
float ft_nf4_absmax_mean(const float *absmax, int64_t nb);

/* Quantizes x[n] (host f32) into q's codes, qabsmax, absmax2 (here HOST arrays of the sizes above)
 * and q->offset, bit-exact with bitsandbytes quantize_4bit(nf4, blocksize 64,
 * compress_statistics=True). nthreads <= 0: OpenMP default. FT_E_OOM if scratch cannot be had. */
ft_status ft_nf4_quantize_host(const float *x, int64_t n, ft_nf4 *q, int nthreads);
/* out[n] (host f32) = dequantized q (host arrays), bit-exact with bitsandbytes dequantize_4bit to
 * float32. */
void ft_nf4_dequantize_host(const ft_nf4 *q, int64_t n, float *out, int nthreads);
/* Dequantizes elements [start, start + count) of q (host arrays) into out[count]. */
void ft_nf4_dequantize_range(const ft_nf4 *q, int64_t start, int64_t count, float *out);

#endif
