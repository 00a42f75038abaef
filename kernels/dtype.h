/* dtype.h: element types and scalar conversions shared by every module.
 * BF16 rounding follows ggml (round-to-nearest-even, NaN kept quiet); F16 is IEEE binary16 RNE. */
#ifndef FT_DTYPE_H
#define FT_DTYPE_H

#include <stddef.h>
#include <stdint.h>

typedef enum ft_dtype {
    FT_F32 = 0,
    FT_F16,
    FT_BF16,
    FT_NF4,   /* bitsandbytes NF4, blocksize 64, double-quantized absmax (see kernels/nf4.h) */
    FT_I32,
    FT_U8,
    FT_DTYPE_COUNT
} ft_dtype;

const char *ft_dtype_name(ft_dtype t);
/* Bytes for n elements of t (NF4: n/2 code bytes only; its constants are counted in nf4.h). */
int64_t ft_dtype_nbytes(ft_dtype t, int64_t n);

static inline float ft_bf16_to_f32(uint16_t h) {
    union { uint32_t u; float f; } v = {(uint32_t)h << 16};
    return v.f;
}
static inline uint16_t ft_f32_to_bf16(float f) {
    union { float f; uint32_t u; } v = {f};
    if ((v.u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((v.u >> 16) | 0x40);
    return (uint16_t)((v.u + 0x7fffu + ((v.u >> 16) & 1u)) >> 16);
}
float ft_f16_to_f32(uint16_t h);
uint16_t ft_f32_to_f16(float f);

/* Converts n elements of src (F32/F16/BF16) to float. */
void ft_to_f32(float *dst, const void *src, ft_dtype t, int64_t n);
/* Converts n floats to F32/F16/BF16. */
void ft_from_f32(void *dst, ft_dtype t, const float *src, int64_t n);

#endif
