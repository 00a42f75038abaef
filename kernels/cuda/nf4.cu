/* nf4.cu: NF4 quantization (used while loading frozen weights) and dequantization to BF16 (feeding
 * the GEMMs of matmul.cu), bit-exact with the CPU reference of kernels/cpu/nf4_cpu.c.
 *
 * Quantization, three kernels in stream order (nf4.h gives the format and each rounding rule):
 *  1. ft_k_nf4_blocks: one warp per 64-block: absmax (max, order-free), then each lane codes two
 *     elements, full blocks as x * (1/absmax), the tail block as x / absmax, clamp, count of float32
 *     midpoints strictly below; the odd tail pads the low nibble with the code of 0.0.
 *  2. ft_k_nf4_offset: one warp: offset = mean(absmax) in torch's CPU summation order
 *     (nf4_mean.h): bit-identical to the CPU loader's offset, not merely close.
 *  3. ft_k_nf4_double: one block per 256-block: absmax2 = max |absmax - offset| and the 8-bit codes
 *     through bitsandbytes' lookup table (fmaf bin index, truncation), uploaded once per backend.
 * Every product, quotient and sum is written with an explicit _rn intrinsic where nvcc could
 * otherwise contract it into an FMA, so each rounds exactly as the reference's float32 C.
 * The offset is a host field of ft_nf4, so ft_op_nf4_quantize ends by downloading it (one sync per
 * weight); the streaming loader (load.cu) runs the same kernels chunk by chunk (ft_cuda_nf4_blocks,
 * ft_cuda_nf4_finish) and collects the offsets once, when loading ends.
 *
 * Dequantization: x = nf4[code] * (dynmap[q] * absmax2 + offset), the two roundings of the
 * reference, then rounded to BF16: 8 elements (4 code bytes, one 64-block) per thread with a
 * 16-byte store where the output is aligned. */
#include "kernels/cuda/check.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_impl.h"
#include "kernels/cuda/nf4_mean.h"

__device__ __forceinline__ float ft_src_at(const void *src, int dtype, int64_t i) {
    switch (dtype) {
    case FT_F32: return ((const float *)src)[i];
    case FT_F16: return __half2float(((const __half *)src)[i]);
    default: return __bfloat162float(((const __nv_bfloat16 *)src)[i]);
    }
}

/* Number of midpoints strictly below v. */
__device__ __forceinline__ int ft_nf4_code_dev(const float *mid, float v) {
    int c = 0;
#pragma unroll
    for (int i = 0; i < 15; i++) c += mid[i] < v;
    return c;
}

__device__ __forceinline__ float ft_clamp1(float v) { return v < -1.0f ? -1.0f : (v > 1.0f ? 1.0f : v); }

/* 1. One warp per 64-block b: absmax[b] and the block's 32 code bytes. */
__global__ void ft_k_nf4_blocks(uint8_t *codes, float *absmax, const void *src, int dtype, int64_t n,
                                const float *tables) {
    __shared__ float mid[15];
    if (threadIdx.x < 15)
        mid[threadIdx.x] = __fdiv_rn(__fadd_rn(tables[threadIdx.x], tables[threadIdx.x + 1]), 2.0f);
    __syncthreads();
    const int lane = threadIdx.x % FT_WARP;
    const int64_t nb = ft_cdiv(n, FT_NF4_BLOCK), nfull = n / FT_NF4_BLOCK;
    const int64_t wpb = blockDim.x / FT_WARP;
    for (int64_t b = (int64_t)blockIdx.x * wpb + threadIdx.x / FT_WARP; b < nb; b += (int64_t)gridDim.x * wpb) {
        const int64_t s = b * FT_NF4_BLOCK, len = n - s < FT_NF4_BLOCK ? n - s : FT_NF4_BLOCK;
        const int64_t i0 = 2 * lane, i1 = 2 * lane + 1;
        const float x0 = i0 < len ? ft_src_at(src, dtype, s + i0) : 0.0f;
        const float x1 = i1 < len ? ft_src_at(src, dtype, s + i1) : 0.0f;
        const float am = fmaxf(0.0f, ft_warp_max(fmaxf(fabsf(x0), fabsf(x1)))); /* padding is 0: no effect */
        if (lane == 0) absmax[b] = am;
        if (i0 >= len) continue;
        const float amc = am < 1e-38f ? 1e-38f : am;
        int c0, c1;
        if (b < nfull) {
            const float r = __fdiv_rn(1.0f, amc);
            c0 = ft_nf4_code_dev(mid, ft_clamp1(__fmul_rn(x0, r)));
            c1 = ft_nf4_code_dev(mid, ft_clamp1(__fmul_rn(x1, r)));
        } else {
            c0 = ft_nf4_code_dev(mid, ft_clamp1(__fdiv_rn(x0, amc)));
            c1 = i1 < len ? ft_nf4_code_dev(mid, ft_clamp1(__fdiv_rn(x1, amc))) : ft_nf4_code_dev(mid, 0.0f);
        }
        codes[(s + i0) / 2] = (uint8_t)(c0 << 4 | c1);
    }
}

/* 2. One warp: *offset = mean(absmax[nb]) in the reference order (nf4_mean.h). */
__global__ void ft_k_nf4_offset(float *offset, const float *absmax, int64_t nb) {
    __shared__ float col[FT_NF4M_MAXW];
    int w;
    int64_t size;
    ft_nf4m_layout(nb, &w, &size);
    const int c = threadIdx.x;
    if (c < w) col[c] = ft_nf4m_column(absmax, size, w, c);
    __syncwarp();
    if (c == 0) *offset = ft_nf4m_finish(absmax, nb, col);
}

__device__ __forceinline__ uint8_t ft_qlut_code_dev(const uint8_t *lut, float v) {
    const float c = v < -1.0f ? -1.0f : (1.0f < v ? 1.0f : v);
    const float f = __fmaf_rn(__fmul_rn(__fadd_rn(c, 1.0f), 0.5f), 65535.0f, 0.5f);
    if (!(f >= 0.0f)) return lut[0];
    return lut[(uint16_t)(int32_t)f];
}

/* 3. One block of 256 threads per 256-block j of absmax: absmax2[j] and qabsmax. */
__global__ void ft_k_nf4_double(uint8_t *qabsmax, float *absmax2, const float *absmax, const float *offset_p,
                                int64_t nb, const uint8_t *lut) {
    __shared__ float sh[32];
    const int64_t j = blockIdx.x, b = j * FT_NF4_BLOCK2 + threadIdx.x;
    const float offset = *offset_p;
    const float dev = b < nb ? __fsub_rn(absmax[b], offset) : 0.0f;
    const float a2 = fmaxf(0.0f, ft_block_max(fabsf(dev), sh));
    if (threadIdx.x == 0) absmax2[j] = a2;
    if (b >= nb) return;
    if (a2 == 0.0f) {
        qabsmax[b] = 0;
        return;
    }
    const float inv = __fdiv_rn(1.0f, a2);
    qabsmax[b] = ft_qlut_code_dev(lut, __fmul_rn(dev, inv));
}

/* Dequantization: thread t covers elements [8t, 8t + 8) (code bytes [4t, 4t + 4)), all in one
 * 64-block. */
__global__ void ft_k_nf4_dequant(act_t *out, ft_cu_wview w, int64_t n, int aligned16) {
    __shared__ float lv[16];
    if (threadIdx.x < 16) lv[threadIdx.x] = w.tables[threadIdx.x];
    __syncthreads();
    const int64_t ncodes = (n + 1) / 2, nt = ft_cdiv(n, 8);
    for (int64_t t = ft_gtid(); t < nt; t += ft_gstride()) {
        const int64_t e0 = 8 * t;
        const float am = ft_nf4_absmax_dev(w, e0 / FT_NF4_BLOCK);
        if (aligned16 && e0 + 8 <= n && 4 * t + 4 <= ncodes) {
            const uint32_t word = *(const uint32_t *)(w.codes + 4 * t);
            __align__(16) __nv_bfloat16 v[8];
#pragma unroll
            for (int q = 0; q < 4; q++) {
                const uint32_t byte = (word >> (8 * q)) & 0xffu;
                v[2 * q] = __float2bfloat16_rn(__fmul_rn(lv[byte >> 4], am));
                v[2 * q + 1] = __float2bfloat16_rn(__fmul_rn(lv[byte & 15u], am));
            }
            *(uint4 *)(out + e0) = *(const uint4 *)v;
        } else {
            for (int64_t i = e0; i < e0 + 8 && i < n; i++) {
                const uint8_t byte = w.codes[i >> 1];
                ft_st(out, i, __fmul_rn(lv[(i & 1) ? (byte & 15) : (byte >> 4)], am));
            }
        }
    }
}

ft_status ft_cuda_nf4_blocks(ft_backend *be, uint8_t *codes, float *absmax, const void *src, ft_dtype src_dtype,
                             int64_t n) {
    ft_backend_cuda *b = ft_cu(be);
    if (n <= 0) return FT_OK;
    const int threads = 256, wpb = threads / FT_WARP;
    ft_k_nf4_blocks<<<ft_grid_1d(ft_nf4_nblocks(n), wpb, 16LL * b->sm_count * 8), threads, 0, b->stream>>>(
        codes, absmax, src, (int)src_dtype, n, b->nf4_tables);
    FT_CUDA_LAUNCH_TRY("ft_k_nf4_blocks");
    return FT_OK;
}

ft_status ft_cuda_nf4_finish(ft_backend *be, ft_weight *w, const float *absmax, float *offset_dev) {
    ft_backend_cuda *b = ft_cu(be);
    const int64_t n = ft_weight_numel(w), nb = ft_nf4_nblocks(n), nb2 = ft_nf4_nblocks2(n);
    if (nb2 > 0x7fffffff) return FT_ERR(FT_E_UNSUPPORTED, "nf4 quantize: tensor of %lld elements", (long long)n);
    ft_k_nf4_offset<<<1, FT_WARP, 0, b->stream>>>(offset_dev, absmax, nb);
    FT_CUDA_LAUNCH_TRY("ft_k_nf4_offset");
    ft_k_nf4_double<<<(unsigned)nb2, FT_NF4_BLOCK2, 0, b->stream>>>(w->nf4.qabsmax, w->nf4.absmax2, absmax, offset_dev,
                                                                   nb, b->nf4_qlut);
    FT_CUDA_LAUNCH_TRY("ft_k_nf4_double");
    return FT_OK;
}

ft_status ft_cuda_nf4_quantize(ft_backend *be, ft_weight *w, const void *src, ft_dtype src_dtype) {
    ft_backend_cuda *b = ft_cu(be);
    FT_TRY(ft_cuda_wcache_forget(b, ft_cuda_wcache_key(w), 1)); /* the weight's values change */
    const int64_t n = ft_weight_numel(w), nb = ft_nf4_nblocks(n);
    if (n == 0) {
        w->nf4.offset = 0.0f;
        return FT_OK;
    }
    void *scr = NULL; /* absmax [nb] f32, then the offset */
    FT_TRY(ft_cuda_scratch_get(be, FT_SCR_NF4, 4 * (nb + 1), &scr));
    float *absmax = (float *)scr, *offset = absmax + nb;
    FT_TRY(ft_cuda_nf4_blocks(be, w->nf4.codes, absmax, src, src_dtype, n));
    FT_TRY(ft_cuda_nf4_finish(be, w, absmax, offset));
    /* the offset lives on the host (ft_nf4.offset): the download synchronizes the stream */
    FT_CUDA_TRY(cudaMemcpyAsync(&w->nf4.offset, offset, sizeof(float), cudaMemcpyDeviceToHost, b->stream));
    FT_CUDA_TRY(cudaStreamSynchronize(b->stream));
    return FT_OK;
}

ft_status ft_cuda_nf4_dequantize(ft_backend *be, void *out, const ft_weight *w) {
    return ft_cuda_nf4_dequantize_on(ft_cu(be), out, w, ft_cu(be)->stream);
}

ft_status ft_cuda_nf4_dequantize_on(ft_backend_cuda *b, void *out, const ft_weight *w, cudaStream_t s) {
    const int64_t n = ft_weight_numel(w);
    if (n == 0) return FT_OK;
    FT_TRY(ft_cuda_load_settle(&b->base)); /* streamed weights get their offsets first */
    /* the vector path stores 16 bytes and loads the codes as 4-byte words: both must be aligned (codes
     * are their own allocation today, a view into a larger buffer need not be) */
    const int aligned16 = ((uintptr_t)out % 16) == 0 && ((uintptr_t)w->nf4.codes % 4) == 0;
    ft_k_nf4_dequant<<<ft_grid_1d(ft_cdiv(n, 8), 256, 32LL * b->sm_count * 8), 256, 0, s>>>(
        (act_t *)out, ft_cu_view(w, b->nf4_tables), n, aligned16);
    FT_CUDA_LAUNCH_TRY("ft_k_nf4_dequant");
    return FT_OK;
}
