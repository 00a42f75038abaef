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
    /* ggml's block-quantized types, as a frozen weight read from a GGUF base keeps them (the bytes
     * of kernels/ggml_quants.h, row-major, whole blocks per row; dequantized where used) */
    FT_Q4_0,
    FT_Q4_1,
    FT_Q5_0,
    FT_Q5_1,
    FT_Q8_0,
    FT_Q2_K,
    FT_Q3_K,
    FT_Q4_K,
    FT_Q5_K,
    FT_Q6_K,
    FT_IQ4_NL, /* 16 non-linear levels (ggml's kvalues_iq4nl): decoded, never encoded by ftune */
    FT_IQ4_XS,
    FT_DTYPE_COUNT
} ft_dtype;

const char *ft_dtype_name(ft_dtype t);
/* Bytes for n elements of t (NF4: n/2 code bytes only; its constants are counted in nf4.h; a ggml
 * block type: n must be whole blocks, else -1). */
int64_t ft_dtype_nbytes(ft_dtype t, int64_t n);
/* 1 for the ggml block types FT_Q4_0 .. FT_IQ4_XS. */
int ft_dtype_is_ggml(ft_dtype t);
/* The ggml_type id of a ggml block type (FT_Q4_K -> 12), -1 for any other dtype. */
int ft_dtype_ggml_type(ft_dtype t);
/* The dtype of a ggml_type id (F32/F16/BF16 and the block types above); 0 when there is none. */
int ft_dtype_from_ggml(int ggml_type, ft_dtype *out);
/* Elements and bytes per block of a ggml block type (0 for other dtypes). */
int64_t ft_dtype_block_elems(ft_dtype t);
int64_t ft_dtype_block_bytes(ft_dtype t);

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
