/* gemv.cu: frozen NF4 and ggml block-quantized linear layers over a few rows (decoding: one token
 * at a time), reading the 4-bit codes or the ggml blocks directly instead of dequantizing the
 * weight to BF16 first.
 *
 * Why: a decoding step's product y[N,out] = x[N,in] . W[out,in]^T with N <= FT_LINEAR_FEW_ROWS
 * is bound by reading W. Dequantize-then-GEMM (matmul.cu) reads the codes, writes a BF16 copy
 * and reads it again: 4.5 bits + 32 bits per weight; this reads 4.5 (the codes and one absmax byte
 * per 64). For the 70B's 35 GB of codes that is ~10 ms a token on an H100 instead of ~95.
 *
 * Values are the GEMM path's: each weight is dequantized exactly as nf4.cu does (the reference's
 * two roundings) and rounded to BF16, as the copy the GEMM would read; products accumulate in f32
 * (in another order than cuBLAS's); the bias is rounded to BF16 as matmul.cu's epilogue bias; y is
 * read in f32 when accumulating and rounded to BF16 once.
 *
 * One warp per output row, 8 warps a block. A lane takes 32 consecutive weights at a time (one
 * 16-byte load of code bytes, all in one 64-block, so one absmax) when `in` is a multiple of 32, 8
 * (a 32-bit load) when it is a multiple of 8, and the matching elements of each of the N input
 * rows; the warp then reduces each row's sum.
 *
 * ggml weights (FT_Q4_0 .. FT_IQ4_XS, a GGUF base): the same warp per output row; a lane decodes 8
 * consecutive weights at a time with ggml_dequant.cuh (the f32 of ggml's dequantize_row_*, then
 * BF16, the copy ggml_dequant.cu would give the GEMM), lanes taking consecutive groups so a warp
 * reads 256 consecutive weights (one K-quant block, eight 32-blocks) a step. A row is cols / B whole
 * blocks, so row o's bytes start at o * row_bytes. */
#include "kernels/cuda/check.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_impl.h"
#include "kernels/cuda/ggml_dequant.cuh"

#define FT_GEMV_WARPS 8

__device__ __forceinline__ float ft_bf16_round(float v) { return __bfloat162float(__float2bfloat16_rn(v)); }

/* The products of 8 weights starting at flat index c (all in one 64-block: c % 8 == 0) whose code
 * bytes are `four`, with the N input rows at column i, into acc. */
__device__ __forceinline__ void ft_gemv8(const ft_cu_wview &w, uint32_t four, float am, const act_t *x, int64_t i,
                                         int64_t N, int64_t in, float *acc) {
    float wv[8];
#pragma unroll
    for (int q = 0; q < 4; q++) {
        const uint32_t byte = (four >> (8 * q)) & 0xffu;
        wv[2 * q] = ft_bf16_round(__fmul_rn(w.tables[byte >> 4], am));
        wv[2 * q + 1] = ft_bf16_round(__fmul_rn(w.tables[byte & 15u], am));
    }
#pragma unroll
    for (int n = 0; n < FT_LINEAR_FEW_ROWS; n++) {
        if (n < N) {
            float xv[8];
            ft_ld_vec<8>(x + n * in + i, xv);
#pragma unroll
            for (int q = 0; q < 8; q++) acc[n] = fmaf(wv[q], xv[q], acc[n]);
        }
    }
}

/* The end of both few-row kernels: each row's warp sum (+ the bias) into y[n, o], = or +=. */
__device__ __forceinline__ void ft_gemv_store(act_t *y, const float *acc, ft_cu_wview bias, int has_bias, int64_t N,
                                              int64_t out, int64_t o, int lane, int accumulate) {
    const float b = has_bias ? ft_bf16_round(ft_weight_at(bias, o)) : 0.0f;
#pragma unroll
    for (int n = 0; n < FT_LINEAR_FEW_ROWS; n++) {
        if (n < N) {
            const float s = ft_warp_sum(acc[n]);
            if (lane == 0) {
                const int64_t at = n * out + o;
                ft_st(y, at, (accumulate ? ft_ld(y, at) : 0.0f) + s + b);
            }
        }
    }
}

/* VEC: 32 (in % 32 == 0, codes 16-byte aligned: 32 weights per 16-byte load, the real shapes, so a
 * warp keeps 512 bytes of codes in flight a step), 8 (in % 8 == 0, codes 4-byte aligned), or 1 (one
 * weight at a time through ft_weight_at); x rows 16-byte aligned for 32 and 8. */
template <int VEC>
__global__ void __launch_bounds__(FT_GEMV_WARPS * FT_WARP)
    ft_k_nf4_gemv(act_t *y, const act_t *x, ft_cu_wview w, ft_cu_wview bias, int has_bias, int64_t N, int64_t in,
                  int64_t out, int accumulate) {
    const int lane = threadIdx.x % FT_WARP;
    const int64_t o = (int64_t)blockIdx.x * FT_GEMV_WARPS + threadIdx.x / FT_WARP;
    if (o >= out) return; /* a whole warp leaves: no shuffle below is left half-empty */
    float acc[FT_LINEAR_FEW_ROWS];
#pragma unroll
    for (int n = 0; n < FT_LINEAR_FEW_ROWS; n++) acc[n] = 0.0f;
    const int64_t base = o * in; /* flat index of the row's first weight */
    if (VEC == 32) {
        for (int64_t i = (int64_t)lane * 32; i < in; i += FT_WARP * 32) {
            const int64_t c = base + i;
            const uint4 codes = *(const uint4 *)(w.codes + (c >> 1)); /* weights c..c+31 */
            const float am = ft_nf4_absmax_dev(w, c / FT_NF4_BLOCK);
            ft_gemv8(w, codes.x, am, x, i, N, in, acc);
            ft_gemv8(w, codes.y, am, x, i + 8, N, in, acc);
            ft_gemv8(w, codes.z, am, x, i + 16, N, in, acc);
            ft_gemv8(w, codes.w, am, x, i + 24, N, in, acc);
        }
    } else if (VEC == 8) {
        for (int64_t i = (int64_t)lane * 8; i < in; i += FT_WARP * 8) {
            const int64_t c = base + i;
            const uint32_t four = *(const uint32_t *)(w.codes + (c >> 1)); /* weights c..c+7, high nibble first */
            ft_gemv8(w, four, ft_nf4_absmax_dev(w, c / FT_NF4_BLOCK), x, i, N, in, acc);
        }
    } else {
        for (int64_t i = lane; i < in; i += FT_WARP) {
            const float wv = ft_bf16_round(ft_weight_at(w, base + i));
#pragma unroll
            for (int n = 0; n < FT_LINEAR_FEW_ROWS; n++)
                if (n < N) acc[n] = fmaf(wv, ft_ld(x, n * in + i), acc[n]);
        }
    }
    ft_gemv_store(y, acc, bias, has_bias, N, out, o, lane, accumulate);
}

ft_status ft_cuda_nf4_gemv(ft_backend *be, void *y, const void *x, const ft_weight *W, const ft_weight *bias,
                           int64_t N, int accumulate) {
    const int64_t out = W->rows, in = W->cols;
    if (W->dtype != FT_NF4 || N < 1 || N > FT_LINEAR_FEW_ROWS)
        return FT_ERR(FT_E_INTERNAL, "nf4_gemv: %lld rows of a %s weight", (long long)N, ft_dtype_name(W->dtype));
    if (out == 0) return FT_OK;
    FT_TRY(ft_cuda_load_settle(be)); /* streamed NF4 weights get their offsets first */
    ft_backend_cuda *b = ft_cu(be);
    const ft_cu_wview wv = ft_cu_view(W, b->nf4_tables);
    const ft_cu_wview bv = bias ? ft_cu_view(bias, b->nf4_tables) : wv;
    const int xal = (uintptr_t)x % 16 == 0;
    const int vec = xal && in % 32 == 0 && (uintptr_t)W->nf4.codes % 16 == 0 ? 32
                    : xal && in % 8 == 0 && (uintptr_t)W->nf4.codes % 4 == 0 ? 8
                                                                             : 1;
    const int64_t blocks = ft_cdiv(out, FT_GEMV_WARPS);
    if (blocks > 0x7fffffff) return FT_ERR(FT_E_UNSUPPORTED, "nf4_gemv: %lld output rows", (long long)out);
    const dim3 grid((unsigned)blocks), block(FT_GEMV_WARPS * FT_WARP);
    if (vec == 32)
        ft_k_nf4_gemv<32><<<grid, block, 0, b->stream>>>((act_t *)y, (const act_t *)x, wv, bv, bias != NULL, N, in,
                                                          out, accumulate);
    else if (vec == 8)
        ft_k_nf4_gemv<8><<<grid, block, 0, b->stream>>>((act_t *)y, (const act_t *)x, wv, bv, bias != NULL, N, in,
                                                         out, accumulate);
    else
        ft_k_nf4_gemv<1><<<grid, block, 0, b->stream>>>((act_t *)y, (const act_t *)x, wv, bv, bias != NULL, N, in,
                                                         out, accumulate);
    FT_CUDA_LAUNCH_TRY("ft_k_nf4_gemv");
    return FT_OK;
}

/* ---- ggml blocks ------------------------------------------------------------------------------- */

/* VEC 8: x 16-byte aligned (in is a multiple of 32, so every row of x is too); 1: x read by element. */
template <int DT, int VEC>
__global__ void __launch_bounds__(FT_GEMV_WARPS * FT_WARP)
    ft_k_ggml_gemv(act_t *y, const act_t *x, const uint8_t *w, int64_t row_bytes, ft_cu_wview bias, int has_bias,
                   int64_t N, int64_t in, int64_t out, int accumulate) {
    const int lane = threadIdx.x % FT_WARP;
    const int64_t o = (int64_t)blockIdx.x * FT_GEMV_WARPS + threadIdx.x / FT_WARP;
    if (o >= out) return; /* a whole warp leaves: no shuffle below is left half-empty */
    float acc[FT_LINEAR_FEW_ROWS];
#pragma unroll
    for (int n = 0; n < FT_LINEAR_FEW_ROWS; n++) acc[n] = 0.0f;
    const uint8_t *row = w + o * row_bytes;
    for (int64_t i = (int64_t)lane * 8; i < in; i += FT_WARP * 8) {
        float wv[8];
        ft_ggml_dq8_at<DT>(row, i, wv);
#pragma unroll
        for (int q = 0; q < 8; q++) wv[q] = ft_bf16_round(wv[q]);
#pragma unroll
        for (int n = 0; n < FT_LINEAR_FEW_ROWS; n++) {
            if (n < N) {
                float xv[8];
                if (VEC == 8) {
                    ft_ld_vec<8>(x + n * in + i, xv);
                } else {
#pragma unroll
                    for (int q = 0; q < 8; q++) xv[q] = ft_ld(x, n * in + i + q);
                }
#pragma unroll
                for (int q = 0; q < 8; q++) acc[n] = fmaf(wv[q], xv[q], acc[n]);
            }
        }
    }
    ft_gemv_store(y, acc, bias, has_bias, N, out, o, lane, accumulate);
}

struct ft_ggml_gemv_launch {
    template <int DT>
    static void run(dim3 grid, cudaStream_t s, int vec8, act_t *y, const act_t *x, const uint8_t *w,
                    int64_t row_bytes, ft_cu_wview bv, int has_bias, int64_t N, int64_t in, int64_t out,
                    int accumulate) {
        if (vec8)
            ft_k_ggml_gemv<DT, 8><<<grid, FT_GEMV_WARPS * FT_WARP, 0, s>>>(y, x, w, row_bytes, bv, has_bias, N, in,
                                                                           out, accumulate);
        else
            ft_k_ggml_gemv<DT, 1><<<grid, FT_GEMV_WARPS * FT_WARP, 0, s>>>(y, x, w, row_bytes, bv, has_bias, N, in,
                                                                           out, accumulate);
    }
};

ft_status ft_cuda_ggml_gemv(ft_backend *be, void *y, const void *x, const ft_weight *W, const ft_weight *bias,
                            int64_t N, int accumulate) {
    const int64_t out = W->rows, in = W->cols;
    if (!ft_dtype_is_ggml(W->dtype) || N < 1 || N > FT_LINEAR_FEW_ROWS || (bias && ft_dtype_is_ggml(bias->dtype)))
        return FT_ERR(FT_E_INTERNAL, "ggml_gemv: %lld rows of a %s weight", (long long)N, ft_dtype_name(W->dtype));
    const int64_t row_bytes = ft_dtype_nbytes(W->dtype, in);
    if (row_bytes < 0)
        return FT_ERR(FT_E_INTERNAL, "ggml_gemv: %s rows of %lld elements are not whole blocks",
                      ft_dtype_name(W->dtype), (long long)in);
    if (out == 0) return FT_OK;
    FT_TRY(ft_cuda_load_settle(be)); /* the blocks' copies are ordered before this product */
    ft_backend_cuda *b = ft_cu(be);
    const ft_cu_wview bv = bias ? ft_cu_view(bias, b->nf4_tables) : ft_cu_view(W, b->nf4_tables);
    const int64_t blocks = ft_cdiv(out, FT_GEMV_WARPS);
    if (blocks > 0x7fffffff) return FT_ERR(FT_E_UNSUPPORTED, "ggml_gemv: %lld output rows", (long long)out);
    ft_ggml_dispatch<ft_ggml_gemv_launch>((int)W->dtype, dim3((unsigned)blocks), b->stream,
                                          (int)((uintptr_t)x % 16 == 0), (act_t *)y, (const act_t *)x,
                                          (const uint8_t *)W->data, row_bytes, bv, (int)(bias != NULL), N, in, out,
                                          accumulate);
    FT_CUDA_LAUNCH_TRY("ft_k_ggml_gemv");
    return FT_OK;
}
