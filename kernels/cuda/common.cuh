/* common.cuh: device helpers shared by every .cu file of kernels/cuda: BF16 activation loads and
 * stores, warp and block reductions with a fixed combination order (so every reduction is
 * deterministic run to run), 64-bit index helpers, launch-size helpers and the read-only view of
 * a frozen weight (F32/F16/BF16/NF4) that kernels index element by element.
 *
 * Conventions for all CUDA files (style.md §6 point 14): each file is kernel(s), then the launcher
 * that picks the grid, then the op entry (ft_cuda_<op>, declared in cuda_impl.h) that validates and
 * calls the launcher. Every index into a tensor is int64_t: a 70B model's tensors pass 2^31
 * elements. Activations are `act` = __nv_bfloat16 on this backend; math is float32. */
#ifndef FT_CUDA_COMMON_CUH
#define FT_CUDA_COMMON_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <math.h>
#include <stdint.h>

extern "C" {
#include "kernels/dtype.h"
#include "kernels/nf4.h"
#include "kernels/weight.h"
}

typedef __nv_bfloat16 act_t;

#define FT_WARP 32
#define FT_FULL_MASK 0xffffffffu

static inline __host__ __device__ int64_t ft_cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* Blocks for a grid-stride loop over n items with `threads` threads and at most `cap` blocks. */
static inline unsigned ft_grid_1d(int64_t n, int threads, int64_t cap) {
    int64_t b = ft_cdiv(n > 0 ? n : 1, threads);
    return (unsigned)(b < cap ? b : cap);
}

/* Global 64-bit thread index and stride of a 1-D grid (never 32-bit: llm.c adamw.cuh:22). */
__device__ __forceinline__ int64_t ft_gtid() { return (int64_t)blockIdx.x * blockDim.x + threadIdx.x; }
__device__ __forceinline__ int64_t ft_gstride() { return (int64_t)gridDim.x * blockDim.x; }

__device__ __forceinline__ float ft_ld(const act_t *p, int64_t i) { return __bfloat162float(p[i]); }
__device__ __forceinline__ void ft_st(act_t *p, int64_t i, float v) { p[i] = __float2bfloat16_rn(v); }

/* VEC consecutive BF16 values to and from float: VEC 8 is one 16-byte access (p 16-byte aligned),
 * which memory-bound kernels need to approach the bandwidth that 2-byte accesses leave unused;
 * VEC 1 is the scalar path for odd sizes and unaligned views. */
template <int VEC>
__device__ __forceinline__ void ft_ld_vec(const act_t *p, float *v) {
    if (VEC == 8) {
        const uint4 u = *(const uint4 *)p;
        const __nv_bfloat162 *h = (const __nv_bfloat162 *)&u;
#pragma unroll
        for (int q = 0; q < 4; q++) {
            const float2 f = __bfloat1622float2(h[q]);
            v[2 * q] = f.x;
            v[2 * q + 1] = f.y;
        }
    } else {
        v[0] = __bfloat162float(p[0]);
    }
}

template <int VEC>
__device__ __forceinline__ void ft_st_vec(act_t *p, const float *v) {
    if (VEC == 8) {
        uint4 u;
        __nv_bfloat162 *h = (__nv_bfloat162 *)&u;
#pragma unroll
        for (int q = 0; q < 4; q++) h[q] = __floats2bfloat162_rn(v[2 * q], v[2 * q + 1]);
        *(uint4 *)p = u;
    } else {
        p[0] = __float2bfloat16_rn(v[0]);
    }
}

/* 1: every pointer is 16-byte aligned and n a multiple of 8, so a kernel may take VEC = 8. */
static inline int ft_vec8_ok(int64_t n, const void *a, const void *b = NULL, const void *c = NULL,
                             const void *d = NULL, const void *e = NULL) {
    const void *p[5] = {a, b, c, d, e};
    for (int i = 0; i < 5; i++)
        if (p[i] && (uintptr_t)p[i] % 16 != 0) return 0;
    return n % 8 == 0;
}

/* ---- reductions: fixed butterfly order, so results do not depend on scheduling --------------- */
__device__ __forceinline__ float ft_warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(FT_FULL_MASK, v, o);
    return v;
}
__device__ __forceinline__ double ft_warp_sum_d(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(FT_FULL_MASK, v, o);
    return v;
}
__device__ __forceinline__ float ft_warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(FT_FULL_MASK, v, o));
    return v;
}

/* Sum over the block (blockDim.x a multiple of 32, <= 1024); every thread gets the result.
 * `sh` is __shared__ scratch of 32 elements; the function syncs before reusing it, so it may be
 * called repeatedly with the same scratch. */
template <typename T>
__device__ __forceinline__ T ft_block_sum(T v, T *sh) {
    const int lane = threadIdx.x % FT_WARP, warp = threadIdx.x / FT_WARP, nw = blockDim.x / FT_WARP;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(FT_FULL_MASK, v, o);
    __syncthreads(); /* previous use of sh is finished */
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    T r = lane < nw ? sh[lane] : (T)0;
    for (int o = 16; o > 0; o >>= 1) r += __shfl_xor_sync(FT_FULL_MASK, r, o);
    return r;
}
__device__ __forceinline__ float ft_block_max(float v, float *sh) {
    const int lane = threadIdx.x % FT_WARP, warp = threadIdx.x / FT_WARP, nw = blockDim.x / FT_WARP;
    v = ft_warp_max(v);
    __syncthreads();
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    float r = lane < nw ? sh[lane] : -INFINITY;
    return ft_warp_max(r);
}

/* ---- frozen weights ------------------------------------------------------------------------ */
/* A weight as kernels read it. For NF4, `tables` is the backend's device copy of
 * ft_nf4_levels[16] followed by ft_nf4_dynmap[256]. The ggml block types (a GGUF base) are never
 * read through a view element by element: ft_weight_at would take them for NF4; their kernels
 * decode whole groups of their bytes (ggml_dequant.cuh), and every op entry that builds a view
 * either routes them there or refuses them. */
typedef struct ft_cu_wview {
    int dtype;               /* ft_dtype: FT_F32, FT_F16, FT_BF16 or FT_NF4 */
    const void *data;        /* F32/F16/BF16 elements */
    const uint8_t *codes;    /* NF4 [ceil(n/2)] */
    const uint8_t *qabsmax;  /* NF4 [nb] */
    const float *absmax2;    /* NF4 [nb2] */
    const float *tables;     /* NF4 levels[16], dynmap[256] */
    float offset;            /* NF4 */
} ft_cu_wview;

static inline ft_cu_wview ft_cu_view(const ft_weight *w, const float *tables) {
    ft_cu_wview v;
    v.dtype = (int)w->dtype;
    v.data = w->data;
    v.codes = w->nf4.codes;
    v.qabsmax = w->nf4.qabsmax;
    v.absmax2 = w->nf4.absmax2;
    v.tables = tables;
    v.offset = w->nf4.offset;
    return v;
}

/* The absmax of NF4 block b, rounded as the reference (kernels/nf4.h: two float32 roundings, no
 * FMA: nvcc would otherwise contract the multiply-add). */
__device__ __forceinline__ float ft_nf4_absmax_dev(const ft_cu_wview &w, int64_t b) {
    const float *dyn = w.tables + 16;
    return __fadd_rn(__fmul_rn(dyn[w.qabsmax[b]], w.absmax2[b / FT_NF4_BLOCK2]), w.offset);
}
/* Elements c..c+VEC-1 of a weight as float, the values of ft_weight_at: with VEC 8 and a BF16 or
 * F32 weight whose data is 16-byte aligned (vec, from ft_wview_vec8), one or two 16-byte loads
 * instead of eight loads and dtype switches. */
__device__ __forceinline__ float ft_weight_at(const ft_cu_wview &w, int64_t i);
template <int VEC>
__device__ __forceinline__ void ft_weight_vec(const ft_cu_wview &w, int64_t c, int vec, float *v) {
    if (VEC == 8 && vec && w.dtype == FT_BF16) {
        ft_ld_vec<8>((const act_t *)w.data + c, v);
    } else if (VEC == 8 && vec && w.dtype == FT_F32) {
        const float4 a = *(const float4 *)((const float *)w.data + c), b = *(const float4 *)((const float *)w.data + c + 4);
        v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
    } else {
#pragma unroll
        for (int q = 0; q < VEC; q++) v[q] = ft_weight_at(w, c + q);
    }
}
static inline int ft_wview_vec8(const ft_cu_wview &w) {
    return (w.dtype == FT_BF16 || w.dtype == FT_F32) && (uintptr_t)w.data % 16 == 0;
}

/* Element i of the weight as float (exactly the reference value for every dtype). */
__device__ __forceinline__ float ft_weight_at(const ft_cu_wview &w, int64_t i) {
    switch (w.dtype) {
    case FT_F32: return ((const float *)w.data)[i];
    case FT_F16: return __half2float(((const __half *)w.data)[i]);
    case FT_BF16: return __bfloat162float(((const __nv_bfloat16 *)w.data)[i]);
    default: { /* FT_NF4: element 2i in the high nibble */
        const uint8_t byte = w.codes[i >> 1];
        const int code = (i & 1) ? (byte & 15) : (byte >> 4);
        return __fmul_rn(w.tables[code], ft_nf4_absmax_dev(w, i / FT_NF4_BLOCK));
    }
    }
}

#endif
