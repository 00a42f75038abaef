/* ggml_dequant.cuh: device decoding of ggml's block-quantized weights (FT_Q4_0 .. FT_IQ4_XS), eight
 * consecutive elements at a time, shared by the dequantization kernel (ggml_dequant.cu), the
 * few-row products that read blocks directly (gemv.cu) and the embedding gather (embed.cu).
 *
 * A ggml weight is one allocation of ft_dtype_nbytes(dtype, rows * cols) bytes, the GGUF file's
 * bytes: rows of whole blocks, so flat element i lies in block i / B at position i % B, and a row
 * of `cols` elements is cols / B blocks (B = ft_dtype_block_elems). Layouts are ggml-common.h's
 * (block_q4_K etc.; ../shared/docs/formats.md).
 *
 * Values: each element is computed in f32 exactly as ggml's dequantize_row_* (and its host port,
 * kernels/ggml_quants.c) computes it: fp16 scales converted exactly, the same products and
 * differences in the same order, each rounded once (__fmul_rn / __fsub_rn / __fadd_rn, because nvcc
 * would otherwise contract `a * b - c` into an FMA, which the host decoder, built as ISO C without
 * contraction, never does). Callers round the f32 to BF16 (RNE) where they store it.
 *
 * Why groups of 8: in every format, 8 consecutive elements starting at a multiple of 8 share their
 * scale (and min), take their quant bits from consecutive bytes, and the same nibble or bit plane;
 * a thread decodes one group and writes it as one 16-byte store. The bytes are read one at a time:
 * blocks of 18, 22, 34, 110, 136 or 210 bytes leave most fields only 2-byte aligned. */
#ifndef FT_CUDA_GGML_DEQUANT_CUH
#define FT_CUDA_GGML_DEQUANT_CUH

#include "kernels/cuda/common.cuh"

/* Elements and bytes of one block of a ggml dtype, at compile time (ft_dtype_block_elems /
 * ft_dtype_block_bytes on the host; tests/gpu/emu checks the two agree through the op table). */
template <int DT> struct ft_ggml_blk;
template <> struct ft_ggml_blk<FT_Q4_0> { enum { E = 32, BYTES = 18 }; };
template <> struct ft_ggml_blk<FT_Q4_1> { enum { E = 32, BYTES = 20 }; };
template <> struct ft_ggml_blk<FT_Q5_0> { enum { E = 32, BYTES = 22 }; };
template <> struct ft_ggml_blk<FT_Q5_1> { enum { E = 32, BYTES = 24 }; };
template <> struct ft_ggml_blk<FT_Q8_0> { enum { E = 32, BYTES = 34 }; };
template <> struct ft_ggml_blk<FT_Q2_K> { enum { E = 256, BYTES = 84 }; };
template <> struct ft_ggml_blk<FT_Q3_K> { enum { E = 256, BYTES = 110 }; };
template <> struct ft_ggml_blk<FT_Q4_K> { enum { E = 256, BYTES = 144 }; };
template <> struct ft_ggml_blk<FT_Q5_K> { enum { E = 256, BYTES = 176 }; };
template <> struct ft_ggml_blk<FT_Q6_K> { enum { E = 256, BYTES = 210 }; };
template <> struct ft_ggml_blk<FT_IQ4_NL> { enum { E = 32, BYTES = 18 }; };
template <> struct ft_ggml_blk<FT_IQ4_XS> { enum { E = 256, BYTES = 136 }; };

/* The fp16 at p (2-byte aligned: every fp16 field of every format is), exactly as float. */
__device__ __forceinline__ float ft_gg_f16(const uint8_t *p) {
    return __half2float(__ushort_as_half(*(const unsigned short *)p));
}

/* ggml's get_scale_min_k4: the 6-bit scale and min of sub-block j (0..7) of a Q4_K/Q5_K block. */
__device__ __forceinline__ void ft_gg_scale_min_k4(int j, const uint8_t *q, int *d, int *m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

/* ggml's kvalues_iq4nl[q] (q 0..15: -127, -104, ..., 113), the levels of IQ4_NL and IQ4_XS, read from
 * two 64-bit immediates (eight int8 levels each, little-endian) rather than a table: no __constant__
 * array for each translation unit that includes this header, no memory load per element. */
__device__ __forceinline__ int ft_gg_kv_iq4(int q) {
    const unsigned long long lo = 0xF6EADDCFBFAD9881ull, hi = 0x7159453526190D01ull;
    return (int8_t)(((q & 8) ? hi : lo) >> (8 * (q & 7)));
}

/* v[0..8) = elements e .. e+7 of the block at blk (e % 8 == 0, e < ft_ggml_blk<DT>::E). */
template <int DT>
__device__ __forceinline__ void ft_ggml_dq8(const uint8_t *blk, int e, float *v) {
    if (DT == FT_Q8_0) { /* d @0, qs[32] int8 @2: y = q * d */
        const float d = ft_gg_f16(blk);
#pragma unroll
        for (int i = 0; i < 8; i++) v[i] = __fmul_rn((float)(int8_t)blk[2 + e + i], d);
    } else if (DT == FT_Q4_0 || DT == FT_Q4_1) {
        /* Q4_0: d @0, qs[16] @2: y = (nib - 8) * d. Q4_1: d @0, m @2, qs[16] @4: y = nib * d + m.
         * Element j < 16 is the low nibble of qs[j], element j + 16 its high nibble. */
        const int one = DT == FT_Q4_1;
        const float d = ft_gg_f16(blk), m = one ? ft_gg_f16(blk + 2) : 0.0f;
        const uint8_t *qs = blk + (one ? 4 : 2) + (e & 15);
        const int sh = e >= 16 ? 4 : 0;
#pragma unroll
        for (int i = 0; i < 8; i++) {
            const int q = (qs[i] >> sh) & 0xF;
            v[i] = one ? __fadd_rn(__fmul_rn((float)q, d), m) : __fmul_rn((float)(q - 8), d);
        }
    } else if (DT == FT_Q5_0 || DT == FT_Q5_1) {
        /* Q5_0: d @0, qh u32 @2, qs[16] @6: y = (q5 - 16) * d. Q5_1: d @0, m @2, qh @4, qs @8:
         * y = q5 * d + m. The fifth bit of element e is bit e of qh (little-endian): byte e / 8. */
        const int one = DT == FT_Q5_1;
        const float d = ft_gg_f16(blk), m = one ? ft_gg_f16(blk + 2) : 0.0f;
        const int hb = blk[(one ? 4 : 2) + (e >> 3)];
        const uint8_t *qs = blk + (one ? 8 : 6) + (e & 15);
        const int sh = e >= 16 ? 4 : 0;
#pragma unroll
        for (int i = 0; i < 8; i++) {
            const int q = ((qs[i] >> sh) & 0xF) | (((hb >> i) & 1) << 4);
            v[i] = one ? __fadd_rn(__fmul_rn((float)q, d), m) : __fmul_rn((float)(q - 16), d);
        }
    } else if (DT == FT_Q2_K) {
        /* scales[16] @0, qs[64] @16, d @80, dmin @82. Element e = 128 h + 32 j + 16 s + l takes bits
         * 2j of qs[32 h + 16 s + l] and scale byte scales[8 h + 2 j + s] (low nibble: scale, high:
         * min): y = (d * sc) * q - (dmin * mn). */
        const int h = e >> 7, j = (e >> 5) & 3, s = (e >> 4) & 1, l = e & 15;
        const int sc = blk[8 * h + 2 * j + s];
        const float dl = __fmul_rn(ft_gg_f16(blk + 80), (float)(sc & 0xF));
        const float ml = __fmul_rn(ft_gg_f16(blk + 82), (float)(sc >> 4));
        const uint8_t *q = blk + 16 + 32 * h + 16 * s + l;
#pragma unroll
        for (int i = 0; i < 8; i++) v[i] = __fsub_rn(__fmul_rn(dl, (float)((q[i] >> (2 * j)) & 3)), ml);
    } else if (DT == FT_Q3_K) {
        /* hmask[32] @0, qs[64] @32, scales[12] @96, d @108. Element e = 128 h + 32 j + 16 s + l: low
         * bits 2j of qs[32 h + 16 s + l], high bit (4 h + j) of hmask[16 s + l] (clear: minus 4),
         * 6-bit scale k = 8 h + 2 j + s unpacked as ggml's kmask shuffle does: y = (d * (sc - 32)) * q. */
        const int h = e >> 7, j = (e >> 5) & 3, s = (e >> 4) & 1, l = e & 15;
        const int k = 8 * h + 2 * j + s;
        const uint8_t *sc = blk + 96;
        const int lo = k < 8 ? (sc[k] & 0xF) : (sc[k - 8] >> 4);
        const int hi = (sc[8 + (k & 3)] >> (2 * (k >> 2))) & 3;
        const float dl = __fmul_rn(ft_gg_f16(blk + 108), (float)((lo | hi << 4) - 32));
        const uint8_t *q = blk + 32 + 32 * h + 16 * s + l, *hm = blk + 16 * s + l;
        const int bit = 4 * h + j;
#pragma unroll
        for (int i = 0; i < 8; i++) {
            const int qv = ((q[i] >> (2 * j)) & 3) - (((hm[i] >> bit) & 1) ? 0 : 4);
            v[i] = __fmul_rn(dl, (float)qv);
        }
    } else if (DT == FT_Q4_K || DT == FT_Q5_K) {
        /* d @0, dmin @2, scales[12] @4; Q4_K qs[128] @16, Q5_K qh[32] @16, qs[128] @48. Element
         * e = 64 g + 32 s + l: nibble s of qs[32 g + l], for Q5_K plus 16 when bit (2 g + s) of qh[l] is
         * set; sub-block 2 g + s: y = (d * sc) * q - (dmin * m). */
        const int five = DT == FT_Q5_K;
        const int g = e >> 6, s = (e >> 5) & 1, l = e & 31;
        int sc, mn;
        ft_gg_scale_min_k4(2 * g + s, blk + 4, &sc, &mn);
        const float d1 = __fmul_rn(ft_gg_f16(blk), (float)sc), m1 = __fmul_rn(ft_gg_f16(blk + 2), (float)mn);
        const uint8_t *qs = blk + (five ? 48 : 16) + 32 * g + l, *qh = blk + 16 + l;
#pragma unroll
        for (int i = 0; i < 8; i++) {
            const int q = ((qs[i] >> (4 * s)) & 0xF) + (five && ((qh[i] >> (2 * g + s)) & 1) ? 16 : 0);
            v[i] = __fsub_rn(__fmul_rn(d1, (float)q), m1);
        }
    } else if (DT == FT_IQ4_NL) {
        /* d @0, qs[16] @2, Q4_0's layout: element j < 16 the low nibble of qs[j], j + 16 its high
         * nibble, an index into kvalues_iq4nl: y = d * kv */
        const float d = ft_gg_f16(blk);
        const uint8_t *qs = blk + 2 + (e & 15);
        const int sh = e >= 16 ? 4 : 0;
#pragma unroll
        for (int i = 0; i < 8; i++) v[i] = __fmul_rn(d, (float)ft_gg_kv_iq4((qs[i] >> sh) & 0xF));
    } else if (DT == FT_IQ4_XS) {
        /* d @0, scales_h u16 @2, scales_l[4] @4, qs[128] @8. Sub-block ib = e / 32 is IQ4_NL's layout
         * over qs[16 ib ..]; its 6-bit scale is nibble ib % 2 of scales_l[ib / 2] with bits 2 ib of
         * scales_h above, biased by 32: y = (d * (ls - 32)) * kv */
        const int ib = e >> 5, l = e & 31;
        const int sh2 = blk[2] | blk[3] << 8;
        const int ls = ((blk[4 + (ib >> 1)] >> (4 * (ib & 1))) & 0xF) | (((sh2 >> (2 * ib)) & 3) << 4);
        const float dl = __fmul_rn(ft_gg_f16(blk), (float)(ls - 32));
        const uint8_t *qs = blk + 8 + 16 * ib + (l & 15);
        const int sh = l >= 16 ? 4 : 0;
#pragma unroll
        for (int i = 0; i < 8; i++) v[i] = __fmul_rn(dl, (float)ft_gg_kv_iq4((qs[i] >> sh) & 0xF));
    } else { /* FT_Q6_K */
        /* ql[128] @0, qh[64] @128, scales[16] int8 @192, d @208. Element e = 128 h + 32 u + l: low
         * nibble (u < 2) or high nibble of ql[64 h + 32 (u & 1) + l], bits 2u of qh[32 h + l], minus 32;
         * scale scales[8 h + l / 16 + 2 u]: y = (d * sc) * q. */
        const int h = e >> 7, u = (e >> 5) & 3, l = e & 31;
        const float dl = __fmul_rn(ft_gg_f16(blk + 208), (float)(int8_t)blk[192 + 8 * h + (l >> 4) + 2 * u]);
        const uint8_t *ql = blk + 64 * h + 32 * (u & 1) + l, *qh = blk + 128 + 32 * h + l;
#pragma unroll
        for (int i = 0; i < 8; i++) {
            const int q = (((ql[i] >> (u >= 2 ? 4 : 0)) & 0xF) | (((qh[i] >> (2 * u)) & 3) << 4)) - 32;
            v[i] = __fmul_rn(dl, (float)q);
        }
    }
}

/* Elements c .. c+7 (c % 8 == 0) of a ggml weight whose bytes start at base, flat index c. */
template <int DT>
__device__ __forceinline__ void ft_ggml_dq8_at(const uint8_t *base, int64_t c, float *v) {
    typedef ft_ggml_blk<DT> K;
    ft_ggml_dq8<DT>(base + (c / K::E) * (int64_t)K::BYTES, (int)(c % K::E), v);
}

/* Calls F::template run<DT>(args...) for the ggml dtype dt (a runtime ft_dtype): one switch, so each
 * user instantiates its kernel for the twelve formats in one place. Returns 0 for any other dtype. */
template <typename F, typename... A>
static inline int ft_ggml_dispatch(int dt, A... a) {
    switch (dt) {
    case FT_Q4_0: F::template run<FT_Q4_0>(a...); return 1;
    case FT_Q4_1: F::template run<FT_Q4_1>(a...); return 1;
    case FT_Q5_0: F::template run<FT_Q5_0>(a...); return 1;
    case FT_Q5_1: F::template run<FT_Q5_1>(a...); return 1;
    case FT_Q8_0: F::template run<FT_Q8_0>(a...); return 1;
    case FT_Q2_K: F::template run<FT_Q2_K>(a...); return 1;
    case FT_Q3_K: F::template run<FT_Q3_K>(a...); return 1;
    case FT_Q4_K: F::template run<FT_Q4_K>(a...); return 1;
    case FT_Q5_K: F::template run<FT_Q5_K>(a...); return 1;
    case FT_Q6_K: F::template run<FT_Q6_K>(a...); return 1;
    case FT_IQ4_NL: F::template run<FT_IQ4_NL>(a...); return 1;
    case FT_IQ4_XS: F::template run<FT_IQ4_XS>(a...); return 1;
    default: return 0;
    }
}

#endif
