/* ggml_quants.c: see ggml_quants.h. Each encoder is a line-by-line port of ggml's
 * quantize_row_*_ref (ggml/src/ggml-quants.c); block layouts from ggml-common.h. */
#include "kernels/ggml_quants.h"

#include <ctype.h>
#include <float.h>
#include <math.h>
#include <string.h>

#include "kernels/dtype.h"

#define FT_MIN(a, b) ((a) < (b) ? (a) : (b))
#define FT_MAX(a, b) ((a) > (b) ? (a) : (b))
#define FT_GROUP_MAX_EPS 1e-15f

typedef struct {
    int id;
    const char *name;
    int64_t blck, size;
    int enc, dec;
} ft_ggml_traits;

static const ft_ggml_traits ft_traits[] = {
    {FT_GGML_F32, "F32", 1, 4, 1, 1},     {FT_GGML_F16, "F16", 1, 2, 1, 1},
    {FT_GGML_Q4_0, "Q4_0", 32, 18, 1, 1}, {FT_GGML_Q4_1, "Q4_1", 32, 20, 1, 1},
    {FT_GGML_Q5_0, "Q5_0", 32, 22, 1, 1}, {FT_GGML_Q5_1, "Q5_1", 32, 24, 1, 1},
    {FT_GGML_Q8_0, "Q8_0", 32, 34, 1, 1}, {FT_GGML_Q2_K, "Q2_K", 256, 84, 0, 1},
    {FT_GGML_Q3_K, "Q3_K", 256, 110, 0, 1}, {FT_GGML_Q4_K, "Q4_K", 256, 144, 1, 1},
    {FT_GGML_Q5_K, "Q5_K", 256, 176, 1, 1}, {FT_GGML_Q6_K, "Q6_K", 256, 210, 1, 1},
    {FT_GGML_I8, "I8", 1, 1, 0, 0},       {FT_GGML_I16, "I16", 1, 2, 0, 0},
    {FT_GGML_I32, "I32", 1, 4, 0, 0},     {FT_GGML_I64, "I64", 1, 8, 0, 0},
    {FT_GGML_F64, "F64", 1, 8, 0, 0},     {FT_GGML_BF16, "BF16", 1, 2, 1, 1},
    /* the IQ types: IQ4_NL and IQ4_XS are decoded (a GGUF base's frozen weights), never encoded; the
     * others are known by their geometry (ggml-common.h) only, so that a file holding them opens: a base
     * names them when it refuses them, merge --type base copies them */
    {16, "IQ2_XXS", 256, 66, 0, 0}, {17, "IQ2_XS", 256, 74, 0, 0}, {18, "IQ3_XXS", 256, 98, 0, 0},
    {FT_GGML_IQ4_NL, "IQ4_NL", 32, 18, 0, 1}, {FT_GGML_IQ4_XS, "IQ4_XS", 256, 136, 0, 1},
    {19, "IQ1_S", 256, 50, 0, 0},   {21, "IQ3_S", 256, 110, 0, 0}, {22, "IQ2_S", 256, 82, 0, 0},
    {29, "IQ1_M", 256, 56, 0, 0},
    {34, "TQ1_0", 256, 54, 0, 0},   {35, "TQ2_0", 256, 66, 0, 0},  {39, "MXFP4", 32, 17, 0, 0},
};
#define FT_NTRAITS ((int)(sizeof ft_traits / sizeof *ft_traits))

static const ft_ggml_traits *ft_tr(int t) {
    for (int i = 0; i < FT_NTRAITS; i++)
        if (ft_traits[i].id == t) return &ft_traits[i];
    return NULL;
}

const char *ft_ggml_type_name(int t) {
    const ft_ggml_traits *tr = ft_tr(t);
    return tr ? tr->name : "?";
}

int ft_ggml_type_from_name(const char *s, ft_ggml_type *out) {
    for (int i = 0; i < FT_NTRAITS; i++) {
        if (strcasecmp(s, ft_traits[i].name) == 0) {
            *out = (ft_ggml_type)ft_traits[i].id;
            return 1;
        }
    }
    return 0;
}

int64_t ft_ggml_block_size(int t) {
    const ft_ggml_traits *tr = ft_tr(t);
    return tr ? tr->blck : 0;
}
int64_t ft_ggml_type_size(int t) {
    const ft_ggml_traits *tr = ft_tr(t);
    return tr ? tr->size : 0;
}
int64_t ft_ggml_row_size(int t, int64_t n) {
    const ft_ggml_traits *tr = ft_tr(t);
    if (!tr || n < 0 || n % tr->blck) return -1;
    /* a file can declare any ne[0]: -1 rather than a signed overflow for a row of over 8 EiB */
    if (n / tr->blck > INT64_MAX / tr->size) return -1;
    return n / tr->blck * tr->size;
}
int ft_ggml_can_encode(int t) {
    const ft_ggml_traits *tr = ft_tr(t);
    return tr && tr->enc;
}
int ft_ggml_can_decode(int t) {
    const ft_ggml_traits *tr = ft_tr(t);
    return tr && tr->dec;
}

uint16_t ft_ggml_fp32_to_fp16(float f) { return ft_f32_to_f16(f); }
float ft_ggml_fp16_to_fp32(uint16_t h) { return ft_f16_to_f32(h); }

static void ft_put16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static float ft_get16f(const uint8_t *p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return ft_f16_to_f32(v);
}

/* ggml's kvalues_iq4nl (ggml-common.h): IQ4_NL's and IQ4_XS's 16 non-uniform levels. */
static const int8_t ft_kvalues_iq4nl[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

/* ggml's nearest_int: round half to even through the 1.5*2^23 trick. */
static inline int ft_nearest_int(float fval) {
    float val = fval + 12582912.f;
    int i;
    memcpy(&i, &val, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

/* ---- 32-blocks ------------------------------------------------------------------------------ */

static void ft_q8_0(const float *x, uint8_t *y, int64_t k) {
    for (int64_t i = 0; i < k / 32; i++, x += 32, y += 34) {
        float amax = 0.0f;
        for (int j = 0; j < 32; j++) amax = FT_MAX(amax, fabsf(x[j]));
        const float d = amax / ((1 << 7) - 1);
        const float id = d ? 1.0f / d : 0.0f;
        ft_put16(y, ft_f32_to_f16(d));
        for (int j = 0; j < 32; ++j) {
            const float x0 = x[j] * id;
            y[2 + j] = (uint8_t)(int8_t)roundf(x0);
        }
    }
}

static void ft_q4_0(const float *x, uint8_t *y, int64_t k) {
    for (int64_t i = 0; i < k / 32; i++, x += 32, y += 18) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < 32; j++) {
            const float v = x[j];
            if (amax < fabsf(v)) amax = fabsf(v), max = v;
        }
        const float d = max / -8;
        const float id = d ? 1.0f / d : 0.0f;
        ft_put16(y, ft_f32_to_f16(d));
        for (int j = 0; j < 16; ++j) {
            const float x0 = x[j] * id;
            const float x1 = x[16 + j] * id;
            const uint8_t xi0 = (uint8_t)FT_MIN(15, (int8_t)(x0 + 8.5f));
            const uint8_t xi1 = (uint8_t)FT_MIN(15, (int8_t)(x1 + 8.5f));
            y[2 + j] = (uint8_t)(xi0 | (xi1 << 4));
        }
    }
}

static void ft_q5_0(const float *x, uint8_t *y, int64_t k) {
    for (int64_t i = 0; i < k / 32; i++, x += 32, y += 22) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < 32; j++) {
            const float v = x[j];
            if (amax < fabsf(v)) amax = fabsf(v), max = v;
        }
        const float d = max / -16;
        const float id = d ? 1.0f / d : 0.0f;
        ft_put16(y, ft_f32_to_f16(d));
        uint32_t qh = 0;
        for (int j = 0; j < 16; ++j) {
            const float x0 = x[j] * id;
            const float x1 = x[16 + j] * id;
            const uint8_t xi0 = (uint8_t)FT_MIN(31, (int8_t)(x0 + 16.5f));
            const uint8_t xi1 = (uint8_t)FT_MIN(31, (int8_t)(x1 + 16.5f));
            y[6 + j] = (uint8_t)((xi0 & 0x0F) | ((xi1 & 0x0F) << 4));
            qh |= ((xi0 & 0x10u) >> 4) << (j + 0);
            qh |= ((xi1 & 0x10u) >> 4) << (j + 16);
        }
        memcpy(y + 2, &qh, 4);
    }
}

/* Q4_1 and Q5_1: an affine block, x ~ q * d + m with m the block's minimum and d its range over
 * 15 (31) steps. The codes are (x - min) / d + 0.5 truncated, as ggml's reference does (not roundf
 * like Q8_0): the same bytes llama-quantize writes. Q4_1 clamps the code to 15 (int8 truncation,
 * then MIN); Q5_1 does not, as its reference does not ((x - min) * id is 31 up to a rounding at the
 * block's maximum, so the truncated code stays <= 31).
 * block_q4_1: d @0, m @2, qs[16] @4 (20 bytes); block_q5_1: d @0, m @2, qh u32 @4, qs[16] @8 (24 bytes) */
static void ft_qx_1(const float *x, uint8_t *y, int64_t k, int five) {
    const int64_t bs = five ? 24 : 20;
    const int nmax = five ? 31 : 15;
    for (int64_t i = 0; i < k / 32; i++, x += 32, y += bs) {
        float min = FLT_MAX, max = -FLT_MAX;
        for (int j = 0; j < 32; j++) {
            if (x[j] < min) min = x[j];
            if (x[j] > max) max = x[j];
        }
        const float d = (max - min) / nmax;
        const float id = d ? 1.0f / d : 0.0f;
        ft_put16(y, ft_f32_to_f16(d));
        ft_put16(y + 2, ft_f32_to_f16(min));
        uint8_t *qs = y + (five ? 8 : 4);
        uint32_t qh = 0;
        for (int j = 0; j < 16; ++j) {
            const float x0 = (x[j] - min) * id;
            const float x1 = (x[16 + j] - min) * id;
            uint8_t xi0, xi1;
            if (five) {
                xi0 = (uint8_t)(x0 + 0.5f);
                xi1 = (uint8_t)(x1 + 0.5f);
                qh |= ((xi0 & 0x10u) >> 4) << (j + 0);
                qh |= ((xi1 & 0x10u) >> 4) << (j + 16);
            } else {
                xi0 = (uint8_t)FT_MIN(15, (int8_t)(x0 + 0.5f));
                xi1 = (uint8_t)FT_MIN(15, (int8_t)(x1 + 0.5f));
            }
            qs[j] = (uint8_t)((xi0 & 0x0F) | ((xi1 & 0x0F) << 4));
        }
        if (five) memcpy(y + 4, &qh, 4);
    }
}

/* ---- K-quants ------------------------------------------------------------------------------- */

static float ft_make_qx_quants(int n, int nmax, const float *x, int8_t *L, int rmse_type) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; ++i) {
        float ax = fabsf(x[i]);
        if (ax > amax) amax = ax, max = x[i];
    }
    if (amax < FT_GROUP_MAX_EPS) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        return 0.f;
    }
    float iscale = -nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; ++i) {
        int l = ft_nearest_int(iscale * x[i]);
        l = FT_MAX(-nmax, FT_MIN(nmax - 1, l));
        L[i] = (int8_t)(l + nmax);
        float w = rmse_type == 1 ? x[i] * x[i] : 1;
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    float scale = suml2 ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; ++is) {
        if (is == 0) continue;
        iscale = -(nmax + 0.1f * is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; ++i) {
            int l = ft_nearest_int(iscale * x[i]);
            l = FT_MAX(-nmax, FT_MIN(nmax - 1, l));
            float w = rmse_type == 1 ? x[i] * x[i] : 1;
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; ++i) {
                int l = ft_nearest_int(iscale * x[i]);
                L[i] = (int8_t)(nmax + FT_MAX(-nmax, FT_MIN(nmax - 1, l)));
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

static float ft_make_qkx2_quants(int n, int nmax, const float *x, const float *weights, uint8_t *L, float *the_min,
                                 uint8_t *Laux, float rmin, float rdelta, int nstep) {
    float min = x[0], max = x[0];
    float sum_w = weights[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; ++i) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        float w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        *the_min = -min;
        return 0.f;
    }
    float iscale = nmax / (max - min);
    float scale = 1 / iscale;
    float best_error = 0;
    for (int i = 0; i < n; ++i) {
        int l = ft_nearest_int(iscale * (x[i] - min));
        L[i] = (uint8_t)FT_MAX(0, FT_MIN(nmax, l));
        float diff = scale * L[i] + min - x[i];
        diff = diff * diff;
        best_error += weights[i] * diff;
    }
    for (int is = 0; is <= nstep; ++is) {
        iscale = (rmin + rdelta * is + nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; ++i) {
            int l = ft_nearest_int(iscale * (x[i] - min));
            l = FT_MAX(0, FT_MIN(nmax, l));
            Laux[i] = (uint8_t)l;
            float w = weights[i];
            sum_l += w * l;
            sum_l2 += w * l * l;
            sum_xl += w * l * x[i];
        }
        float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float cur_error = 0;
            for (int i = 0; i < n; ++i) {
                float diff = this_scale * Laux[i] + this_min - x[i];
                diff = diff * diff;
                cur_error += weights[i] * diff;
            }
            if (cur_error < best_error) {
                for (int i = 0; i < n; ++i) L[i] = Laux[i];
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

static inline void ft_get_scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4));
    }
}

/* Q4_K and Q5_K share the super-block fit: 8 sub-blocks of 32 with 6-bit scales and mins.
 * block_q4_K: d @0, dmin @2, scales[12] @4, qs[128] @16 (144 bytes)
 * block_q5_K: d @0, dmin @2, scales[12] @4, qh[32] @16, qs[128] @48 (176 bytes) */
static void ft_qk_k(const float *x, uint8_t *y, int64_t k, int five) {
    uint8_t L[FT_QK_K], Laux[32];
    float weights[32], mins[FT_QK_K / 32], scales[FT_QK_K / 32];
    const int nmax = five ? 31 : 15;
    const int64_t bs = five ? 176 : 144;
    for (int64_t i = 0; i < k / FT_QK_K; i++, x += FT_QK_K, y += bs) {
        uint8_t *ysc = y + 4;
        memset(ysc, 0, 12);
        float max_scale = 0, max_min = 0;
        for (int j = 0; j < FT_QK_K / 32; ++j) {
            float sum_x2 = 0;
            for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
            float av_x = sqrtf(sum_x2 / 32);
            for (int l = 0; l < 32; ++l) weights[l] = av_x + fabsf(x[32 * j + l]);
            scales[j] = five ? ft_make_qkx2_quants(32, 31, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, -0.5f, 0.1f, 15)
                             : ft_make_qkx2_quants(32, 15, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, -1.f, 0.1f, 20);
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }
        float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
        float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
        for (int j = 0; j < FT_QK_K / 32; ++j) {
            uint8_t ls = (uint8_t)ft_nearest_int(inv_scale * scales[j]);
            uint8_t lm = (uint8_t)ft_nearest_int(inv_min * mins[j]);
            ls = FT_MIN(63, ls);
            lm = FT_MIN(63, lm);
            if (j < 4) {
                ysc[j] = ls;
                ysc[j + 4] = lm;
            } else {
                ysc[j + 4] = (uint8_t)((ls & 0xF) | ((lm & 0xF) << 4));
                ysc[j - 4] |= (uint8_t)((ls >> 4) << 6);
                ysc[j - 0] |= (uint8_t)((lm >> 4) << 6);
            }
        }
        uint16_t dh = ft_f32_to_f16(max_scale / 63.f), mh = ft_f32_to_f16(max_min / 63.f);
        ft_put16(y, dh);
        ft_put16(y + 2, mh);
        for (int j = 0; j < FT_QK_K / 32; ++j) {
            uint8_t sc, m;
            ft_get_scale_min_k4(j, ysc, &sc, &m);
            const float d = ft_f16_to_f32(dh) * sc;
            if (!d) continue;
            const float dm = ft_f16_to_f32(mh) * m;
            for (int ii = 0; ii < 32; ++ii) {
                int l = ft_nearest_int((x[32 * j + ii] + dm) / d);
                l = FT_MAX(0, FT_MIN(nmax, l));
                L[32 * j + ii] = (uint8_t)l;
            }
        }
        if (!five) {
            uint8_t *q = y + 16;
            for (int j = 0; j < FT_QK_K; j += 64) {
                for (int l = 0; l < 32; ++l) q[l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
                q += 32;
            }
        } else {
            uint8_t *qh = y + 16, *ql = y + 48;
            memset(qh, 0, FT_QK_K / 8);
            uint8_t m1 = 1, m2 = 2;
            for (int n = 0; n < FT_QK_K; n += 64) {
                for (int j = 0; j < 32; ++j) {
                    int l1 = L[n + j];
                    if (l1 > 15) l1 -= 16, qh[j] |= m1;
                    int l2 = L[n + j + 32];
                    if (l2 > 15) l2 -= 16, qh[j] |= m2;
                    ql[j] = (uint8_t)(l1 | (l2 << 4));
                }
                m1 = (uint8_t)(m1 << 2), m2 = (uint8_t)(m2 << 2);
                ql += 32;
            }
        }
    }
}

/* block_q6_K: ql[128] @0, qh[64] @128, scales[16] int8 @192, d @208 */
static void ft_q6_k(const float *x, uint8_t *y, int64_t k) {
    int8_t L[FT_QK_K];
    float scales[FT_QK_K / 16];
    for (int64_t i = 0; i < k / FT_QK_K; i++, x += FT_QK_K, y += 210) {
        float max_scale = 0, max_abs_scale = 0;
        for (int ib = 0; ib < FT_QK_K / 16; ++ib) {
            const float scale = ft_make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib, 1);
            scales[ib] = scale;
            const float abs_scale = fabsf(scale);
            if (abs_scale > max_abs_scale) max_abs_scale = abs_scale, max_scale = scale;
        }
        if (max_abs_scale < FT_GROUP_MAX_EPS) {
            memset(y, 0, 210);
            ft_put16(y + 208, ft_f32_to_f16(0.f));
            continue;
        }
        float iscale = -128.f / max_scale;
        uint16_t dh = ft_f32_to_f16(1 / iscale);
        ft_put16(y + 208, dh);
        int8_t *ysc = (int8_t *)(y + 192);
        for (int ib = 0; ib < FT_QK_K / 16; ++ib) ysc[ib] = (int8_t)FT_MIN(127, ft_nearest_int(iscale * scales[ib]));
        for (int j = 0; j < FT_QK_K / 16; ++j) {
            float d = ft_f16_to_f32(dh) * ysc[j];
            if (!d) continue;
            for (int ii = 0; ii < 16; ++ii) {
                int l = ft_nearest_int(x[16 * j + ii] / d);
                l = FT_MAX(-32, FT_MIN(31, l));
                L[16 * j + ii] = (int8_t)(l + 32);
            }
        }
        uint8_t *ql = y, *qh = y + 128;
        for (int j = 0; j < FT_QK_K; j += 128) {
            for (int l = 0; l < 32; ++l) {
                const uint8_t q1 = L[j + l + 0] & 0xF;
                const uint8_t q2 = L[j + l + 32] & 0xF;
                const uint8_t q3 = L[j + l + 64] & 0xF;
                const uint8_t q4 = L[j + l + 96] & 0xF;
                ql[l + 0] = (uint8_t)(q1 | (q3 << 4));
                ql[l + 32] = (uint8_t)(q2 | (q4 << 4));
                qh[l] = (uint8_t)((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) | ((L[j + l + 64] >> 4) << 4) |
                                  ((L[j + l + 96] >> 4) << 6));
            }
            ql += 64;
            qh += 32;
        }
    }
}

int ft_ggml_quantize_row(int t, const float *x, void *dst, int64_t n) {
    if (!ft_ggml_can_encode(t) || n < 0 || n % ft_ggml_block_size(t)) return -1;
    uint8_t *y = dst;
    switch (t) {
    case FT_GGML_F32: memcpy(y, x, (size_t)n * 4); break;
    case FT_GGML_F16:
        for (int64_t i = 0; i < n; i++) ft_put16(y + 2 * i, ft_f32_to_f16(x[i]));
        break;
    case FT_GGML_BF16:
        for (int64_t i = 0; i < n; i++) ft_put16(y + 2 * i, ft_f32_to_bf16(x[i]));
        break;
    case FT_GGML_Q8_0: ft_q8_0(x, y, n); break;
    case FT_GGML_Q4_0: ft_q4_0(x, y, n); break;
    case FT_GGML_Q5_0: ft_q5_0(x, y, n); break;
    case FT_GGML_Q4_1: ft_qx_1(x, y, n, 0); break;
    case FT_GGML_Q5_1: ft_qx_1(x, y, n, 1); break;
    case FT_GGML_Q4_K: ft_qk_k(x, y, n, 0); break;
    case FT_GGML_Q5_K: ft_qk_k(x, y, n, 1); break;
    case FT_GGML_Q6_K: ft_q6_k(x, y, n); break;
    default: return -1;
    }
    return 0;
}

int ft_ggml_dequantize_row(int t, const void *src, float *y, int64_t n) {
    if (!ft_ggml_can_decode(t) || n < 0 || n % ft_ggml_block_size(t)) return -1;
    const uint8_t *x = src;
    switch (t) {
    case FT_GGML_F32: memcpy(y, x, (size_t)n * 4); break;
    case FT_GGML_F16:
        for (int64_t i = 0; i < n; i++) y[i] = ft_get16f(x + 2 * i);
        break;
    case FT_GGML_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, x + 2 * i, 2);
            y[i] = ft_bf16_to_f32(h);
        }
        break;
    case FT_GGML_Q8_0:
        for (int64_t i = 0; i < n / 32; i++, x += 34, y += 32) {
            const float d = ft_get16f(x);
            for (int j = 0; j < 32; j++) y[j] = (int8_t)x[2 + j] * d;
        }
        break;
    case FT_GGML_Q4_0:
        for (int64_t i = 0; i < n / 32; i++, x += 18, y += 32) {
            const float d = ft_get16f(x);
            for (int j = 0; j < 16; j++) {
                y[j] = ((x[2 + j] & 0x0F) - 8) * d;
                y[j + 16] = ((x[2 + j] >> 4) - 8) * d;
            }
        }
        break;
    case FT_GGML_Q4_1:
        for (int64_t i = 0; i < n / 32; i++, x += 20, y += 32) {
            const float d = ft_get16f(x), m = ft_get16f(x + 2);
            for (int j = 0; j < 16; j++) {
                y[j] = (x[4 + j] & 0x0F) * d + m;
                y[j + 16] = (x[4 + j] >> 4) * d + m;
            }
        }
        break;
    case FT_GGML_Q5_0:
    case FT_GGML_Q5_1: {
        const int one = t == FT_GGML_Q5_1;
        const int64_t bs = one ? 24 : 22;
        for (int64_t i = 0; i < n / 32; i++, x += bs, y += 32) {
            const float d = ft_get16f(x), m = one ? ft_get16f(x + 2) : 0.0f;
            uint32_t qh;
            memcpy(&qh, x + (one ? 4 : 2), 4);
            const uint8_t *qs = x + (one ? 8 : 6);
            for (int j = 0; j < 16; ++j) {
                const uint8_t xh_0 = (uint8_t)(((qh >> (j + 0)) << 4) & 0x10);
                const uint8_t xh_1 = (uint8_t)(((qh >> (j + 12))) & 0x10);
                const int32_t x0 = ((qs[j] & 0x0F) | xh_0) - (one ? 0 : 16);
                const int32_t x1 = ((qs[j] >> 4) | xh_1) - (one ? 0 : 16);
                y[j] = one ? x0 * d + m : x0 * d;
                y[j + 16] = one ? x1 * d + m : x1 * d;
            }
        }
        break;
    }
    /* block_q2_K: scales[16] @0 (low nibble scale, high nibble min), qs[64] @16, d @80, dmin @82 */
    case FT_GGML_Q2_K:
        for (int64_t i = 0; i < n / FT_QK_K; i++, x += 84) {
            const float d = ft_get16f(x + 80), min = ft_get16f(x + 82);
            const uint8_t *q = x + 16, *sc8 = x;
            int is = 0;
            for (int nn = 0; nn < FT_QK_K; nn += 128) {
                int shift = 0;
                for (int j = 0; j < 4; ++j) {
                    uint8_t sc = sc8[is++];
                    float dl = d * (sc & 0xF), ml = min * (sc >> 4);
                    for (int l = 0; l < 16; ++l) *y++ = dl * (int8_t)((q[l] >> shift) & 3) - ml;
                    sc = sc8[is++];
                    dl = d * (sc & 0xF), ml = min * (sc >> 4);
                    for (int l = 0; l < 16; ++l) *y++ = dl * (int8_t)((q[l + 16] >> shift) & 3) - ml;
                    shift += 2;
                }
                q += 32;
            }
        }
        break;
    /* block_q3_K: hmask[32] @0, qs[64] @32, scales[12] @96 (16 6-bit scales, biased by 32), d @108 */
    case FT_GGML_Q3_K: {
        const uint32_t kmask1 = 0x03030303, kmask2 = 0x0f0f0f0f;
        for (int64_t i = 0; i < n / FT_QK_K; i++, x += 110) {
            const float d_all = ft_get16f(x + 108);
            const uint8_t *q = x + 32, *hm = x;
            uint32_t aux[4];
            int8_t scales[16];
            memcpy(aux, x + 96, 12);
            const uint32_t tmp = aux[2];
            aux[2] = ((aux[0] >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4);
            aux[3] = ((aux[1] >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4);
            aux[0] = (aux[0] & kmask2) | (((tmp >> 0) & kmask1) << 4);
            aux[1] = (aux[1] & kmask2) | (((tmp >> 2) & kmask1) << 4);
            memcpy(scales, aux, 16); /* little-endian bytes, as ggml reads them through its int8_t view */
            uint8_t m = 1;
            int is = 0;
            for (int nn = 0; nn < FT_QK_K; nn += 128) {
                int shift = 0;
                for (int j = 0; j < 4; ++j) {
                    float dl = d_all * (scales[is++] - 32);
                    for (int l = 0; l < 16; ++l)
                        *y++ = dl * ((int8_t)((q[l + 0] >> shift) & 3) - ((hm[l + 0] & m) ? 0 : 4));
                    dl = d_all * (scales[is++] - 32);
                    for (int l = 0; l < 16; ++l)
                        *y++ = dl * ((int8_t)((q[l + 16] >> shift) & 3) - ((hm[l + 16] & m) ? 0 : 4));
                    shift += 2;
                    m = (uint8_t)(m << 1);
                }
                q += 32;
            }
        }
        break;
    }
    case FT_GGML_Q4_K:
        for (int64_t i = 0; i < n / FT_QK_K; i++, x += 144) {
            const float d = ft_get16f(x), min = ft_get16f(x + 2);
            const uint8_t *q = x + 16, *sc8 = x + 4;
            int is = 0;
            for (int j = 0; j < FT_QK_K; j += 64) {
                uint8_t sc, m;
                ft_get_scale_min_k4(is + 0, sc8, &sc, &m);
                const float d1 = d * sc, m1 = min * m;
                ft_get_scale_min_k4(is + 1, sc8, &sc, &m);
                const float d2 = d * sc, m2 = min * m;
                for (int l = 0; l < 32; ++l) *y++ = d1 * (q[l] & 0xF) - m1;
                for (int l = 0; l < 32; ++l) *y++ = d2 * (q[l] >> 4) - m2;
                q += 32;
                is += 2;
            }
        }
        break;
    case FT_GGML_Q5_K:
        for (int64_t i = 0; i < n / FT_QK_K; i++, x += 176) {
            const float d = ft_get16f(x), min = ft_get16f(x + 2);
            const uint8_t *ql = x + 48, *qh = x + 16, *sc8 = x + 4;
            int is = 0;
            uint8_t u1 = 1, u2 = 2;
            for (int j = 0; j < FT_QK_K; j += 64) {
                uint8_t sc, m;
                ft_get_scale_min_k4(is + 0, sc8, &sc, &m);
                const float d1 = d * sc, m1 = min * m;
                ft_get_scale_min_k4(is + 1, sc8, &sc, &m);
                const float d2 = d * sc, m2 = min * m;
                for (int l = 0; l < 32; ++l) *y++ = d1 * ((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
                for (int l = 0; l < 32; ++l) *y++ = d2 * ((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
                ql += 32;
                is += 2;
                u1 = (uint8_t)(u1 << 2), u2 = (uint8_t)(u2 << 2);
            }
        }
        break;
    case FT_GGML_Q6_K:
        for (int64_t i = 0; i < n / FT_QK_K; i++, x += 210) {
            const float d = ft_get16f(x + 208);
            const uint8_t *ql = x, *qh = x + 128;
            const int8_t *sc = (const int8_t *)(x + 192);
            for (int nn = 0; nn < FT_QK_K; nn += 128) {
                for (int l = 0; l < 32; ++l) {
                    int is = l / 16;
                    const int8_t q1 = (int8_t)((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                    const int8_t q2 = (int8_t)((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                    const int8_t q3 = (int8_t)((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                    const int8_t q4 = (int8_t)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                    y[l + 0] = d * sc[is + 0] * q1;
                    y[l + 32] = d * sc[is + 2] * q2;
                    y[l + 64] = d * sc[is + 4] * q3;
                    y[l + 96] = d * sc[is + 6] * q4;
                }
                y += 128;
                ql += 64;
                qh += 32;
                sc += 8;
            }
        }
        break;
    /* block_iq4_nl: d @0, qs[16] @2; element j < 16 the low nibble of qs[j], j + 16 its high nibble,
     * each an index into ggml's non-linear grid kvalues_iq4nl: y = d * kv */
    case FT_GGML_IQ4_NL:
        for (int64_t i = 0; i < n / 32; i++, x += 18, y += 32) {
            const float d = ft_get16f(x);
            for (int j = 0; j < 16; j++) {
                y[j] = d * ft_kvalues_iq4nl[x[2 + j] & 0xF];
                y[j + 16] = d * ft_kvalues_iq4nl[x[2 + j] >> 4];
            }
        }
        break;
    /* block_iq4_xs: d @0, scales_h u16 @2, scales_l[4] @4, qs[128] @8; sub-block ib (32 values, the
     * IQ4_NL layout over qs[16 ib ..]) has the 6-bit scale (nibble ib % 2 of scales_l[ib / 2]) | (bits
     * 2 ib of scales_h) << 4, biased by 32: y = (d * (ls - 32)) * kv */
    case FT_GGML_IQ4_XS:
        for (int64_t i = 0; i < n / FT_QK_K; i++, x += 136) {
            const float d = ft_get16f(x);
            const unsigned sh = (unsigned)x[2] | (unsigned)x[3] << 8;
            const uint8_t *qs = x + 8;
            for (int ib = 0; ib < FT_QK_K / 32; ++ib, y += 32, qs += 16) {
                const int ls = ((x[4 + ib / 2] >> 4 * (ib % 2)) & 0xF) | (int)(((sh >> 2 * ib) & 3) << 4);
                const float dl = d * (ls - 32);
                for (int j = 0; j < 16; ++j) {
                    y[j] = dl * ft_kvalues_iq4nl[qs[j] & 0xF];
                    y[j + 16] = dl * ft_kvalues_iq4nl[qs[j] >> 4];
                }
            }
        }
        break;
    default: return -1;
    }
    return 0;
}
