/* lora.cu: the LoRA products on the GPU (ops.h lora_fwd / lora_bwd).
 *
 * Without dropout every product goes through cuBLASLt (matmul.cu's ft_cuda_gemm): the f32 master A
 * and B are cast to BF16, t and dt are BF16 activations, and dA and dB accumulate in f32 (beta 1),
 * so micro-batches add up without a separate add.
 *
 * With dropout (PEFT's lora_dropout: xd = dropout(x) feeds A), drawing xd into memory costs two
 * passes over the [N, in] input per product that reads it (write xd, read it back), and the input
 * gradient a third (mask it in place), all with an uncoalescable draw per element. For ranks 8, 16
 * and 32 the mask is drawn inside three kernels instead (kernels/rng.h: one draw per aligned group
 * of 4 elements, the same mask as ft_op_dropout over the flat [N, in] input):
 *   ft_k_lora_t_drop   t[N,R] = xd . A^T: each thread sums 8 input columns at a time of two rows
 *                      against A (f32, staged in shared memory), a block covers 64 rows and
 *                      FT_LORA_KCHUNK columns, f32 partials per chunk; ft_k_lora_t_sum adds the
 *                      chunks in order and rounds t to BF16.
 *   ft_k_lora_da_drop  dA[R,in] += dt^T . xd: each thread owns CT columns (A's rank x CT
 *                      accumulators in registers) and walks the tokens of its warp; a block's 8
 *                      warps add up in a fixed order, FT_LORA_NSPLIT token parts in f32 partials
 *                      that ft_k_lora_da_sum adds to dA in order.
 *   ft_k_lora_dx_drop  dx[N,in] (=, or +=) mask / (1 - p) * (dt . A): each thread holds A's CT
 *                      columns (R x CT in registers) and writes its CT outputs of every row.
 * These read x (or write dx) once, in 8- or 16-byte accesses, and do R multiply-adds per element on
 * the CUDA cores, about what the memory time allows for R <= 32 (docs/ops.md has the count); the
 * rank-r products are bound by memory either way. Every sum runs in a fixed order, so results are
 * bit-identical run to run. Ranks 64 and 128 run the same products on the tensor cores
 * (lora_mma.cu), as do 16 and 32 under FT_CUDA_LORA=mma. Other ranks (and rows that are not a
 * multiple of 8 elements) take the unfused path, as does every rank under FT_CUDA_LORA=unfused:
 * dropout into BF16 scratch, then cuBLASLt. */
#include "kernels/cuda/check.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_impl.h"

extern "C" {
#include "kernels/rng.h"
}

enum { FT_LT_THREADS = 256, FT_LT_KSUB = 256, FT_LT_ROWS = 64, FT_LDX_ROWS = 64 };

/* columns per thread in dA and dx: R x CT accumulators (or A values) stay at 64 registers */
template <int R>
struct ft_lora_ct {
    static const int CT = R <= 16 ? 4 : 2;
};

/* CT consecutive BF16 of p (CT 2 or 4: a 4- or 8-byte access) to float, and back */
template <int CT>
__device__ __forceinline__ void ft_ld_ct(const act_t *p, float *v) {
    if (CT == 4) {
        const uint2 u = *(const uint2 *)p;
        const float2 a = __bfloat1622float2(*(const __nv_bfloat162 *)&u.x);
        const float2 b = __bfloat1622float2(*(const __nv_bfloat162 *)&u.y);
        v[0] = a.x, v[1] = a.y, v[2] = b.x, v[3] = b.y;
    } else {
        const float2 a = __bfloat1622float2(*(const __nv_bfloat162 *)p);
        v[0] = a.x, v[1] = a.y;
    }
}
template <int CT>
__device__ __forceinline__ void ft_st_ct(act_t *p, const float *v) {
    if (CT == 4) {
        uint2 u;
        *(__nv_bfloat162 *)&u.x = __floats2bfloat162_rn(v[0], v[1]);
        *(__nv_bfloat162 *)&u.y = __floats2bfloat162_rn(v[2], v[3]);
        *(uint2 *)p = u;
    } else {
        *(__nv_bfloat162 *)p = __floats2bfloat162_rn(v[0], v[1]);
    }
}

/* v[CT] *= keep / (1 - p) for the elements i .. i + CT - 1 (i a multiple of CT, CT 2 or 4: one
 * group of 4 holds them all) */
template <int CT>
__device__ __forceinline__ void ft_mask_ct(float *v, uint64_t i, uint64_t seed, uint32_t thr, float s) {
    const uint64_t bits = ft_dropout_bits(seed, i >> 2);
#pragma unroll
    for (int q = 0; q < CT; q++) v[q] = ft_dropout_keep_in(bits, (int)((i & 3) + q), thr) ? v[q] * s : 0.0f;
}

/* ---- t = dropout(x) . A^T ---------------------------------------------------------------------------
 * grid (ceil(N / 64), ceil(in / FT_LORA_KCHUNK)); thread (kg = tid % 8, rp = tid / 8) sums columns
 * kg*8 .. kg*8+7 of every 64 of the chunk for rows n0 + rp and n0 + rp + 32. A's chunk is staged
 * 256 columns at a time, each 32 padded by 4 floats so the 8 kg's 16-byte reads hit distinct banks.
 * part[chunk][N][R]. */
#define FT_LT_PAD(k) ((k) + ((k) >> 5) * 4)
/* at least 2 blocks (16 warps) an SM, for the loads in flight a memory-bound kernel needs: at R 32
 * that caps ptxas at 128 registers (from 143; 12 bytes spilled), R 8 and 16 fit anyway */
template <int R>
__global__ void __launch_bounds__(FT_LT_THREADS, 2)
    ft_k_lora_t_drop(float *part, const act_t *x, const float *A, int64_t N, int64_t in, uint32_t thr, float s,
                     uint64_t seed) {
    __align__(16) __shared__ float As[R * FT_LT_PAD(FT_LT_KSUB)];
    const int tid = threadIdx.x, kg = tid & 7, rp = tid >> 3;
    const int64_t n0 = (int64_t)blockIdx.x * FT_LT_ROWS + rp, n1 = n0 + 32;
    const int64_t k0 = (int64_t)blockIdx.y * FT_LORA_KCHUNK, kend = min(in, k0 + (int64_t)FT_LORA_KCHUNK);
    float acc[2][R];
#pragma unroll
    for (int r = 0; r < R; r++) acc[0][r] = acc[1][r] = 0.0f;
    for (int64_t ks = k0; ks < kend; ks += FT_LT_KSUB) {
        const int kw = (int)min((int64_t)FT_LT_KSUB, kend - ks); /* a multiple of 8 (in is) */
        __syncthreads();                                         /* the previous sub-chunk is read */
        for (int e = tid; e < R * FT_LT_KSUB; e += FT_LT_THREADS) {
            const int r = e / FT_LT_KSUB, kk = e % FT_LT_KSUB;
            As[r * FT_LT_PAD(FT_LT_KSUB) + FT_LT_PAD(kk)] = kk < kw ? A[r * in + ks + kk] : 0.0f;
        }
        __syncthreads();
        for (int kk = kg * 8; kk < kw; kk += 64) {
            float v[2][8];
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const int64_t n = h ? n1 : n0;
                if (n < N) {
                    const uint64_t i = (uint64_t)(n * in + ks + kk); /* a multiple of 8 */
                    ft_ld_vec<8>(x + i, v[h]);
                    ft_mask_ct<4>(v[h], i, seed, thr, s);
                    ft_mask_ct<4>(v[h] + 4, i + 4, seed, thr, s);
                } else {
#pragma unroll
                    for (int q = 0; q < 8; q++) v[h][q] = 0.0f;
                }
            }
#pragma unroll
            for (int r = 0; r < R; r++) {
                const float *a = &As[r * FT_LT_PAD(FT_LT_KSUB) + FT_LT_PAD(kk)];
                const float4 a0 = *(const float4 *)a, a1 = *(const float4 *)(a + 4);
                const float av[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
#pragma unroll
                for (int q = 0; q < 8; q++) {
                    acc[0][r] = fmaf(v[0][q], av[q], acc[0][r]);
                    acc[1][r] = fmaf(v[1][q], av[q], acc[1][r]);
                }
            }
        }
    }
    /* the 8 kg lanes of a row are lanes 8j .. 8j+7 of the warp: a fixed butterfly */
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int o = 1; o < 8; o <<= 1) {
            acc[0][r] += __shfl_xor_sync(FT_FULL_MASK, acc[0][r], o);
            acc[1][r] += __shfl_xor_sync(FT_FULL_MASK, acc[1][r], o);
        }
    float *out = part + (int64_t)blockIdx.y * N * R;
#pragma unroll
    for (int r = 0; r < R; r++)
        if ((r & 7) == kg) {
            if (n0 < N) out[n0 * R + r] = acc[0][r];
            if (n1 < N) out[n1 * R + r] = acc[1][r];
        }
}

/* t[N*R] = BF16(sum over the nk chunks of part[chunk][N*R]), chunks in order */
__global__ void ft_k_lora_t_sum(act_t *t, const float *part, int64_t nr, int64_t nk) {
    for (int64_t i = ft_gtid(); i < nr; i += ft_gstride()) {
        float v = 0.0f;
        for (int64_t c = 0; c < nk; c++) v += part[c * nr + i];
        t[i] = __float2bfloat16_rn(v);
    }
}

/* ---- dA += dt^T . dropout(x) ------------------------------------------------------------------------
 * grid (ceil(in / (32 CT)), FT_LORA_NSPLIT); the block's 8 warps share 32 CT columns (lane l owns
 * columns c0 + l*CT ..) and take the rows of the block's token part in turn (warp w: rows w, w + 8,
 * ...). dt [N,R] BF16, read by every lane of a warp at once (a broadcast). The warps add their sums
 * in warp order through shared memory; part[split][R][in]. */
template <int R>
__global__ void __launch_bounds__(FT_LT_THREADS) ft_k_lora_da_drop(float *part, const act_t *x, const act_t *dt,
                                                                  int64_t N, int64_t in, uint32_t thr, float s,
                                                                  uint64_t seed) {
    const int CT = ft_lora_ct<R>::CT, W = 32 * CT;
    __shared__ float red[R * W];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int64_t c = (int64_t)blockIdx.x * W + lane * CT;
    const int64_t rows = ft_cdiv(N, FT_LORA_NSPLIT), nb = (int64_t)blockIdx.y * rows, ne = min(N, nb + rows);
    float acc[R][CT];
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int q = 0; q < CT; q++) acc[r][q] = 0.0f;
    if (c < in)
        for (int64_t n = nb + warp; n < ne; n += 8) {
            float v[CT], d[R];
            const uint64_t i = (uint64_t)(n * in + c);
            ft_ld_ct<CT>(x + i, v);
            ft_mask_ct<CT>(v, i, seed, thr, s);
#pragma unroll
            for (int r = 0; r < R; r += 8) ft_ld_vec<8>(dt + n * R + r, d + r);
#pragma unroll
            for (int r = 0; r < R; r++)
#pragma unroll
                for (int q = 0; q < CT; q++) acc[r][q] = fmaf(d[r], v[q], acc[r][q]);
        }
    for (int w = 0; w < 8; w++) {
        if (warp == w)
#pragma unroll
            for (int r = 0; r < R; r++)
#pragma unroll
                for (int q = 0; q < CT; q++) {
                    float *e = &red[r * W + lane * CT + q];
                    *e = (w ? *e : 0.0f) + acc[r][q];
                }
        __syncthreads();
    }
    float *out = part + (int64_t)blockIdx.y * R * in;
    for (int e = threadIdx.x; e < R * W; e += FT_LT_THREADS) {
        const int r = e / W;
        const int64_t col = (int64_t)blockIdx.x * W + e % W;
        if (col < in) out[r * in + col] = red[e];
    }
}

/* dA[R*in] += sum over the FT_LORA_NSPLIT parts of part[split][R*in], parts in order */
__global__ void ft_k_lora_da_sum(float *dA, const float *part, int64_t n) {
    for (int64_t i = ft_gtid(); i < n; i += ft_gstride()) {
        float v = 0.0f;
        for (int p = 0; p < FT_LORA_NSPLIT; p++) v += part[p * n + i];
        dA[i] += v;
    }
}

/* ---- dx (=, or +=) dropout'(dt . A) -----------------------------------------------------------------
 * grid (ceil(in / (32 CT)), ceil(N / 64)); lane l of every warp holds A's columns c0 + l*CT ..
 * (R x CT f32 in registers); warp w writes rows w, w + 8, ... of the block's 64. */
template <int R>
__global__ void __launch_bounds__(FT_LT_THREADS) ft_k_lora_dx_drop(act_t *dx, const act_t *dt, const float *A,
                                                                  int64_t N, int64_t in, uint32_t thr, float s,
                                                                  uint64_t seed, int accumulate) {
    const int CT = ft_lora_ct<R>::CT;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int64_t c = ((int64_t)blockIdx.x * 32 + lane) * CT;
    if (c >= in) return; /* no block-wide sync below */
    float a[R][CT];
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int q = 0; q < CT; q++) a[r][q] = A[r * in + c + q];
    const int64_t ne = min(N, ((int64_t)blockIdx.y + 1) * FT_LDX_ROWS);
    for (int64_t n = (int64_t)blockIdx.y * FT_LDX_ROWS + warp; n < ne; n += 8) {
        float d[R], v[CT];
#pragma unroll
        for (int r = 0; r < R; r += 8) ft_ld_vec<8>(dt + n * R + r, d + r);
#pragma unroll
        for (int q = 0; q < CT; q++) {
            float g = 0.0f;
#pragma unroll
            for (int r = 0; r < R; r++) g = fmaf(d[r], a[r][q], g);
            v[q] = g;
        }
        const uint64_t i = (uint64_t)(n * in + c);
        ft_mask_ct<CT>(v, i, seed, thr, s);
        if (accumulate) {
            float o[CT];
            ft_ld_ct<CT>(dx + i, o);
#pragma unroll
            for (int q = 0; q < CT; q++) v[q] += o[q];
        }
        ft_st_ct<CT>(dx + i, v);
    }
}

/* ---- launchers -------------------------------------------------------------------------------------- */

/* the partial sums' reductions, shared with lora_mma.cu */
ft_status ft_cuda_lora_t_sum(ft_backend *be, void *t, const float *part, int64_t nr, int64_t nk) {
    ft_k_lora_t_sum<<<ft_grid_1d(nr, 256, 16LL * ft_cu(be)->sm_count), 256, 0, ft_cu_stream(be)>>>((act_t *)t, part,
                                                                                                    nr, nk);
    FT_CUDA_LAUNCH_TRY("ft_k_lora_t_sum");
    return FT_OK;
}
ft_status ft_cuda_lora_da_sum(ft_backend *be, float *dA, const float *part, int64_t n) {
    ft_k_lora_da_sum<<<ft_grid_1d(n, 256, 16LL * ft_cu(be)->sm_count), 256, 0, ft_cu_stream(be)>>>(dA, part, n);
    FT_CUDA_LAUNCH_TRY("ft_k_lora_da_sum");
    return FT_OK;
}

template <int R>
static ft_status ft_lora_t_drop_launch(ft_backend *be, void *t, const void *x, const float *A, int64_t N, int64_t in,
                                       ft_lora_drop dr) {
    const int64_t nk = ft_cdiv(in, FT_LORA_KCHUNK);
    float *part = NULL;
    FT_TRY(ft_cuda_scratch_get(be, FT_SCR_LORA_PART, ft_cuda_lora_part_bytes(N, in, R), (void **)&part));
    const dim3 grid((unsigned)ft_cdiv(N, FT_LT_ROWS), (unsigned)nk);
    ft_k_lora_t_drop<R><<<grid, FT_LT_THREADS, 0, ft_cu_stream(be)>>>(part, (const act_t *)x, A, N, in,
                                                                      ft_dropout_threshold(dr.p), 1.0f / (1.0f - dr.p),
                                                                      dr.seed);
    FT_CUDA_LAUNCH_TRY("ft_k_lora_t_drop");
    return ft_cuda_lora_t_sum(be, t, part, N * R, nk);
}

template <int R>
static ft_status ft_lora_bwd_drop_launch(ft_backend *be, void *dx, float *dA, const void *x, const void *dt,
                                         const float *A, int64_t N, int64_t in, ft_lora_drop dr, int accumulate) {
    const int W = 32 * ft_lora_ct<R>::CT;
    const uint32_t thr = ft_dropout_threshold(dr.p);
    const float s = 1.0f / (1.0f - dr.p);
    float *part = NULL;
    FT_TRY(ft_cuda_scratch_get(be, FT_SCR_LORA_PART, ft_cuda_lora_part_bytes(N, in, R), (void **)&part));
    ft_k_lora_da_drop<R><<<dim3((unsigned)ft_cdiv(in, W), FT_LORA_NSPLIT), FT_LT_THREADS, 0, ft_cu_stream(be)>>>(
        part, (const act_t *)x, (const act_t *)dt, N, in, thr, s, dr.seed);
    FT_CUDA_LAUNCH_TRY("ft_k_lora_da_drop");
    FT_TRY(ft_cuda_lora_da_sum(be, dA, part, R * in));
    ft_k_lora_dx_drop<R><<<dim3((unsigned)ft_cdiv(in, W), (unsigned)ft_cdiv(N, FT_LDX_ROWS)), FT_LT_THREADS, 0,
                           ft_cu_stream(be)>>>((act_t *)dx, (const act_t *)dt, A, N, in, thr, s, dr.seed, accumulate);
    FT_CUDA_LAUNCH_TRY("ft_k_lora_dx_drop");
    return FT_OK;
}

/* 1: the fused kernels serve this product (ranks 8/16/32 here, 64/128 in lora_mma.cu; 16-byte aligned
 * rows of a multiple of 8; not under FT_CUDA_LORA=unfused, which the GPU script's ablation compares
 * against) */
static int ft_lora_fused_ok(ft_backend *be, int64_t R, int64_t in, const void *a, const void *b) {
    return !ft_cu(be)->lora_unfused && ft_cuda_lora_fused(R, in) && ft_vec8_ok(in, a, b);
}
/* 1: a fused product of rank R runs on the tensor cores (lora_mma.cu): ranks 64 and 128, and 16 and
 * 32 under FT_CUDA_LORA=mma */
static int ft_lora_on_mma(ft_backend *be, int64_t R) { return R > 32 || (ft_cu(be)->lora_mma && R >= 16); }

/* ---- op entries -------------------------------------------------------------------------------------- */

ft_status ft_cuda_lora_fwd(ft_backend *be, void *y, void *t, const void *x, ft_lora_drop drop, const float *A,
                           const float *B, int64_t N, int64_t in, int64_t out, int64_t R, float scale,
                           int accumulate) {
    if (N == 0) return FT_OK;
    void *a16 = NULL, *b16 = NULL;
    if (x && drop.p > 0.0f && ft_lora_fused_ok(be, R, in, x, t)) {
        if (ft_lora_on_mma(be, R)) FT_TRY(ft_cuda_lora_t_mma(be, t, x, A, N, in, R, drop));
        else if (R == 8) FT_TRY(ft_lora_t_drop_launch<8>(be, t, x, A, N, in, drop));
        else if (R == 16) FT_TRY(ft_lora_t_drop_launch<16>(be, t, x, A, N, in, drop));
        else FT_TRY(ft_lora_t_drop_launch<32>(be, t, x, A, N, in, drop));
    } else if (x) { /* else t is given */
        const void *xd = x;
        if (drop.p > 0.0f) { /* other ranks: dropout(x) into scratch */
            void *buf = NULL;
            FT_TRY(ft_cuda_scratch_get(be, FT_SCR_LORA_X, 2 * N * in, &buf));
            FT_TRY(ft_cuda_dropout(be, buf, x, N * in, drop.p, drop.seed));
            xd = buf;
        }
        FT_TRY(ft_cuda_scratch_get(be, FT_SCR_LORA_A, 2 * R * in, &a16));
        FT_TRY(ft_cuda_f32_to_bf16(be, a16, A, R * in));
        /* t^T[R,N] = A[R,in] . xd^T[in,N] */
        FT_TRY(ft_cuda_gemm(be, 1, 0, R, N, in, 1.0f, a16, in, xd, in, 0.0f, t, R, 0, NULL));
    }
    if (!y) return FT_OK; /* t alone */
    FT_TRY(ft_cuda_scratch_get(be, FT_SCR_LORA_B, 2 * out * R, &b16));
    FT_TRY(ft_cuda_f32_to_bf16(be, b16, B, out * R));
    /* y^T[out,N] (=, or +=) scale * B[out,R] . t^T[R,N]: bandwidth-bound (K = R), so beta 0 saves
     * reading y; the model then lets the frozen linear add on top in its epilogue */
    return ft_cuda_gemm(be, 1, 0, out, N, R, scale, b16, R, t, R, accumulate ? 1.0f : 0.0f, y, out, 0, NULL);
}

ft_status ft_cuda_lora_bwd(ft_backend *be, void *dx, float *dA, float *dB, const void *dy, const void *x,
                           ft_lora_drop drop, const void *t, const float *A, const float *B, int64_t N, int64_t in,
                           int64_t out, int64_t R, float scale, int accumulate) {
    if (N == 0) return FT_OK;
    void *a16 = NULL, *b16 = NULL, *dt = NULL;
    const int drops = drop.p > 0.0f, fused = drops && ft_lora_fused_ok(be, R, in, x, dx);
    FT_TRY(ft_cuda_scratch_get(be, FT_SCR_LORA_B, 2 * out * R, &b16));
    FT_TRY(ft_cuda_scratch_get(be, FT_SCR_LORA_DT, 2 * N * R, &dt));
    FT_TRY(ft_cuda_f32_to_bf16(be, b16, B, out * R));
    /* dB^T[R,out] += scale * t^T[R,N] . dy[N,out]            (f32, beta 1) */
    FT_TRY(ft_cuda_gemm(be, 0, 1, R, out, N, scale, t, R, dy, out, 1.0f, dB, R, 1, NULL));
    /* dt^T[R,N] = scale * B^T[R,out] . dy^T[out,N]           (B row-major [out,R] is column-major [R,out]) */
    FT_TRY(ft_cuda_gemm(be, 0, 0, R, N, out, scale, b16, R, dy, out, 0.0f, dt, R, 0, NULL));
    if (fused) {
        if (ft_lora_on_mma(be, R)) return ft_cuda_lora_bwd_mma(be, dx, dA, x, dt, A, N, in, R, drop, accumulate);
        if (R == 8) return ft_lora_bwd_drop_launch<8>(be, dx, dA, x, dt, A, N, in, drop, accumulate);
        if (R == 16) return ft_lora_bwd_drop_launch<16>(be, dx, dA, x, dt, A, N, in, drop, accumulate);
        return ft_lora_bwd_drop_launch<32>(be, dx, dA, x, dt, A, N, in, drop, accumulate);
    }
    const void *xd = x;
    void *dl = dx; /* where dt . A lands: dx, or with dropout and accumulation a scratch */
    if (drops) {
        void *buf = NULL;
        FT_TRY(ft_cuda_scratch_get(be, FT_SCR_LORA_X, 2 * N * in, &buf));
        FT_TRY(ft_cuda_dropout(be, buf, x, N * in, drop.p, drop.seed));
        xd = buf;
        if (accumulate) FT_TRY(ft_cuda_scratch_get(be, FT_SCR_LORA_DX, 2 * N * in, &dl));
    }
    FT_TRY(ft_cuda_scratch_get(be, FT_SCR_LORA_A, 2 * R * in, &a16));
    FT_TRY(ft_cuda_f32_to_bf16(be, a16, A, R * in));
    /* dA^T[in,R] += xd^T[in,N] . dt[N,R]                     (f32, beta 1) */
    FT_TRY(ft_cuda_gemm(be, 0, 1, in, R, N, 1.0f, xd, in, dt, R, 1.0f, dA, in, 1, NULL));
    /* dl^T[in,N] (=, or +=) A^T[in,R] . dt^T[R,N] */
    FT_TRY(ft_cuda_gemm(be, 0, 0, in, N, R, 1.0f, a16, in, dt, R, accumulate && !drops ? 1.0f : 0.0f, dl, in, 0,
                        NULL));
    if (!drops) return FT_OK;
    FT_TRY(ft_cuda_dropout(be, dl, dl, N * in, drop.p, drop.seed)); /* through the forward's mask */
    return dl == dx ? FT_OK : ft_cuda_add(be, dx, dl, N * in);
}
