/* ggml_quants.h: the ggml tensor types ftune writes into GGUF files, their block geometry, and
 * encoders/decoders for one row of float32 values.
 *
 * Encoders follow ggml's reference (no-imatrix) quantizers, quantize_row_*_ref in
 * ggml/src/ggml-quants.c, which is what llama-quantize runs without an importance matrix:
 * Q8_0 and Q4_0/Q5_0 use roundf / C truncation, Q4_1/Q5_1 (block min and range) C truncation of
 * code + 0.5, the K-quants use nearest_int (round half to even)
 * with make_qkx2_quants (Q4_K, Q5_K) and make_qx_quants (Q6_K); fp16 scales are RNE
 * (docs: formats.md section 4). This file is built with -ffp-contract=off semantics (ISO C11), so a
 * ggml build that fuses multiply-adds may differ in the last bit of a rare scale; tests/test_gguf.c
 * compares against bytes made by ggml itself.
 * Decoders are ggml's dequantize_row_* (the normative side of each format), also what a GGUF base
 * model's frozen weights are read with (kernels/weight.h); tests/test_ggml_decode.c holds every one
 * bit-identical to gguf-py's gguf.quants.dequantize.
 *
 * A row of n values must hold whole blocks (n % ft_ggml_block_size(t) == 0). */
#ifndef FT_GGML_QUANTS_H
#define FT_GGML_QUANTS_H

#include <stdint.h>

/* ggml_type ids (ggml.h) of the types ftune writes or reads. */
typedef enum ft_ggml_type {
    FT_GGML_F32 = 0,
    FT_GGML_F16 = 1,
    FT_GGML_Q4_0 = 2,
    FT_GGML_Q4_1 = 3,
    FT_GGML_Q5_0 = 6,
    FT_GGML_Q5_1 = 7,
    FT_GGML_Q8_0 = 8,
    FT_GGML_Q2_K = 10,
    FT_GGML_Q3_K = 11,
    FT_GGML_Q4_K = 12,
    FT_GGML_Q5_K = 13,
    FT_GGML_Q6_K = 14,
    FT_GGML_IQ4_NL = 20,
    FT_GGML_IQ4_XS = 23,
    FT_GGML_I8 = 24,
    FT_GGML_I16 = 25,
    FT_GGML_I32 = 26,
    FT_GGML_I64 = 27,
    FT_GGML_F64 = 28,
    FT_GGML_BF16 = 30,
    FT_GGML_TYPE_LIMIT = 64 /* ids at or past this are rejected by the reader */
} ft_ggml_type;

#define FT_QK_K 256

/* "F16", "Q4_K", ...; "?" for an id ftune does not know. */
const char *ft_ggml_type_name(int t);
/* Parses a name (case-insensitive: "q8_0", "F16"). Returns 1 when known. */
int ft_ggml_type_from_name(const char *s, ft_ggml_type *out);
/* Elements per block and bytes per block; 0 for an unknown id. */
int64_t ft_ggml_block_size(int t);
int64_t ft_ggml_type_size(int t);
/* Bytes of a row of n elements (n a multiple of the block size), -1 if not. */
int64_t ft_ggml_row_size(int t, int64_t n);
/* Whether ftune can encode (write) rows of this type: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K,
 * Q5_K, Q6_K (Q5_1 is llama.cpp's fallback for a Q5_K tensor whose rows are not whole 256-blocks). */
int ft_ggml_can_encode(int t);
/* Whether ftune can decode it: the encodable types plus Q2_K, Q3_K, IQ4_NL and IQ4_XS (the other IQ
 * types, lattice codebooks, are known by their geometry only). */
int ft_ggml_can_decode(int t);

/* Encodes x[n] into dst (ft_ggml_row_size(t, n) bytes). Returns 0, or -1 for a type it cannot
 * encode or a length that is not whole blocks. */
int ft_ggml_quantize_row(int t, const float *x, void *dst, int64_t n);
/* Re-encodes x[n], the values of base (n values of type t: a GGUF base's blocks) after a merge moved
 * some of them, into dst (ft_ggml_row_size(t, n) bytes; neither may overlap x or base): a block whose
 * decoded values equal x's (as floats: -0 == +0) keeps the base's bytes, any other takes ft_ggml_quantize_row's
 * fresh encoding (kernels/ggml_requant.c says why not its old scales). *n_fresh (may be NULL): blocks
 * re-encoded. Returns 0, or -1 for a type ft_ggml_quantize_row refuses or a partial block. */
int ft_ggml_requantize_row(int t, const void *base, const float *x, void *dst, int64_t n, int64_t *n_fresh);
/* Decodes n values of type t from src into y[n]. Returns 0 or -1 (unknown type / partial block). */
int ft_ggml_dequantize_row(int t, const void *src, float *y, int64_t n);

/* Half-precision conversion exactly as ggml (RNE; the F16C path and the software path agree). */
uint16_t ft_ggml_fp32_to_fp16(float f);
float ft_ggml_fp16_to_fp32(uint16_t h);

#endif
