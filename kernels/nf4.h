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

#endif
