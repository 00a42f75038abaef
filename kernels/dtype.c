/* dtype.c: names, sizes and bulk conversions of element types. */
#include "kernels/dtype.h"

#include "kernels/ggml_quants.h"

#include <math.h>
#include <string.h>

const char *ft_dtype_name(ft_dtype t) {
    switch (t) {
    case FT_F32: return "F32";
    case FT_F16: return "F16";
    case FT_BF16: return "BF16";
    case FT_NF4: return "NF4";
    case FT_I32: return "I32";
    case FT_U8: return "U8";
    case FT_Q4_0: return "Q4_0";
    case FT_Q4_1: return "Q4_1";
    case FT_Q5_0: return "Q5_0";
    case FT_Q5_1: return "Q5_1";
    case FT_Q8_0: return "Q8_0";
    case FT_Q2_K: return "Q2_K";
    case FT_Q3_K: return "Q3_K";
    case FT_Q4_K: return "Q4_K";
    case FT_Q5_K: return "Q5_K";
    case FT_Q6_K: return "Q6_K";
    case FT_IQ4_NL: return "IQ4_NL";
    case FT_IQ4_XS: return "IQ4_XS";
    default: return "?";
    }
}

/* The ggml block types as dtypes, in ft_dtype order (their geometry lives in ggml_quants.c). */
static const int ft_ggml_of[] = {FT_GGML_Q4_0, FT_GGML_Q4_1, FT_GGML_Q5_0, FT_GGML_Q5_1, FT_GGML_Q8_0,
                                 FT_GGML_Q2_K, FT_GGML_Q3_K, FT_GGML_Q4_K, FT_GGML_Q5_K, FT_GGML_Q6_K,
                                 FT_GGML_IQ4_NL, FT_GGML_IQ4_XS};
_Static_assert(sizeof ft_ggml_of / sizeof ft_ggml_of[0] == FT_DTYPE_COUNT - FT_Q4_0, "one ggml type per dtype");

int ft_dtype_is_ggml(ft_dtype t) { return ft_dtype_ggml_type(t) >= 0; }

int ft_dtype_ggml_type(ft_dtype t) { return t >= FT_Q4_0 && t < FT_DTYPE_COUNT ? ft_ggml_of[t - FT_Q4_0] : -1; }

int ft_dtype_from_ggml(int ggml_type, ft_dtype *out) {
    switch (ggml_type) {
    case FT_GGML_F32: *out = FT_F32; return 1;
    case FT_GGML_F16: *out = FT_F16; return 1;
    case FT_GGML_BF16: *out = FT_BF16; return 1;
    default: break;
    }
    for (int t = FT_Q4_0; t < FT_DTYPE_COUNT; t++)
        if (ft_ggml_of[t - FT_Q4_0] == ggml_type) return *out = (ft_dtype)t, 1;
    return 0;
}

int64_t ft_dtype_block_elems(ft_dtype t) { return ft_dtype_is_ggml(t) ? ft_ggml_block_size(ft_dtype_ggml_type(t)) : 0; }
int64_t ft_dtype_block_bytes(ft_dtype t) { return ft_dtype_is_ggml(t) ? ft_ggml_type_size(ft_dtype_ggml_type(t)) : 0; }

int64_t ft_dtype_nbytes(ft_dtype t, int64_t n) {
    switch (t) {
    case FT_F32: case FT_I32: return 4 * n;
    case FT_F16: case FT_BF16: return 2 * n;
    case FT_NF4: return (n + 1) / 2;
    case FT_U8: return n;
    default: {
        const int64_t e = ft_dtype_block_elems(t);
        if (e == 0) return 0;
        return n % e ? -1 : n / e * ft_dtype_block_bytes(t);
    }
    }
}

float ft_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff, u;
    if (exp == 0) {
        if (man == 0) {
            u = sign;
        } else { /* subnormal: value = man * 2^-24 */
            float f = ldexpf((float)man, -24);
            return sign ? -f : f;
        }
    } else if (exp == 31) {
        u = sign | 0x7f800000u | (man << 13);
    } else {
        u = sign | ((exp + 112) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t ft_f32_to_f16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t sign = (u >> 16) & 0x8000u;
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);          /* NaN */
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);         /* overflow -> inf (RNE) */
    if (a < 0x38800000u) {                                            /* subnormal or zero */
        /* round a * 2^24 to nearest even integer */
        float af;
        memcpy(&af, &a, 4);
        float m = af * 16777216.0f; /* exact: power-of-two scaling */
        uint32_t r = (uint32_t)nearbyintf(m);
        return (uint16_t)(sign | r);
    }
    uint32_t mant = a & 0x7fffffu, exp = (a >> 23) - 112;
    uint32_t h = (exp << 10) | (mant >> 13);
    uint32_t rem = mant & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++;
    return (uint16_t)(sign | h);
}

void ft_to_f32(float *dst, const void *src, ft_dtype t, int64_t n) {
    if (t == FT_F32) {
        memmove(dst, src, (size_t)n * 4);
    } else if (t == FT_BF16) {
        const uint16_t *s = src;
        for (int64_t i = 0; i < n; i++) dst[i] = ft_bf16_to_f32(s[i]);
    } else if (t == FT_F16) {
        const uint16_t *s = src;
        for (int64_t i = 0; i < n; i++) dst[i] = ft_f16_to_f32(s[i]);
    }
}

void ft_from_f32(void *dst, ft_dtype t, const float *src, int64_t n) {
    if (t == FT_F32) {
        memmove(dst, src, (size_t)n * 4);
    } else if (t == FT_BF16) {
        uint16_t *d = dst;
        for (int64_t i = 0; i < n; i++) d[i] = ft_f32_to_bf16(src[i]);
    } else if (t == FT_F16) {
        uint16_t *d = dst;
        for (int64_t i = 0; i < n; i++) d[i] = ft_f32_to_f16(src[i]);
    }
}
