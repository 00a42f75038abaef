/* lora_mma.cu: the LoRA products with the dropout mask drawn inside them at ranks 64 and 128, on the
 * tensor cores (mma.sync m16n8k16, kernels/cuda/mma.cuh); at ranks 16 and 32 too under
 * FT_CUDA_LORA=mma, against lora.cu's CUDA-core kernels, which serve ranks 8-32 by default: R
 * multiply-adds per element about fit in the memory time at R 16, are ~2x over it at R 32 and
 * would be ~4x at R 64 (docs/ops.md), where the unfused path (dropout(x) into memory, read back
 * twice, and a masking pass over dx) adds about 5% to a 70B step. Which wins at 16 and 32 is for a
 * GPU to say (`run.sh ablate`: dropout-mma). These kernels run the same
 * three products as BF16 mma with f32 accumulation, reading x (or writing dx) once:
 *   ft_k_lora_t_mma   part[chunk][N][R] = xd[N, chunk] . A[R, chunk]^T: a block is 128 rows (8
 *                     warps of 16) by one chunk of input columns, in steps of 64 columns staged in
 *                     shared memory, x masked on its way in;
 *   ft_k_lora_da_mma  part[split][R][in] = dt[rows of split]^T . xd[rows of split, in]: a block is
 *                     R x 128 columns (8 warps: R/4 rows by 64 columns each), in steps of 64 tokens;
 *   ft_k_lora_dx_mma  dx[N, in] (=, or +=) mask / (1 - p) * dt . A: a block is 64 x 64 outputs,
 *                     K = R in one step, the mask applied to the accumulators.
 * The mask zeroes dropped elements in the staged tiles, exactly (BF16 x or 0); 1 / (1 - p) multiplies
 * the f32 sums, so xd is never rounded. A is the f32 master rounded to BF16 once per call (the
 * FT_SCR_LORA_A slot), as the unfused path's cuBLASLt products take it. The tile sizes keep what a
 * block re-reads from L2 (A or dt, the same for every block) at or below what it streams from memory
 * (x, or dx written): 128 rows of x against R rows of A per step in t, 128 columns of x against R of
 * dt in dA. lora.cu's ft_k_lora_t_sum / _da_sum add the partial sums in a fixed order: results are
 * bit-identical run to run.
 * Shared tiles have a pitch of (width + 8) BF16 so the 8 rows an ldmatrix reads sit in distinct
 * banks. */
#include "kernels/cuda/check.h"
#include "kernels/cuda/cuda_impl.h"
#include "kernels/cuda/mma.cuh"

extern "C" {
#include "kernels/rng.h"
}

enum { FT_LM_THREADS = 128, FT_LM_THREADS8 = 256, FT_LM_TILE = 64, FT_LM_LD = FT_LM_TILE + 8 };

/* 8 BF16 of x (element index i, a multiple of 8) with the dropped ones zeroed, unscaled: two groups
 * of 4, one draw each (kernels/rng.h) */
__device__ __forceinline__ uint4 ft_lm_mask8(uint4 u, uint64_t i, uint64_t seed, uint32_t thr) {
    uint32_t w[4] = {u.x, u.y, u.z, u.w};
    const uint64_t bits[2] = {ft_dropout_bits(seed, i >> 2), ft_dropout_bits(seed, (i >> 2) + 1)};
#pragma unroll
    for (int q = 0; q < 4; q++) {
        const int j = (q & 1) * 2; /* register q holds elements 2q, 2q + 1: group q / 2, positions j, j + 1 */
        if (!ft_dropout_keep_in(bits[q >> 1], j, thr)) w[q] &= 0xffff0000u;
        if (!ft_dropout_keep_in(bits[q >> 1], j + 1, thr)) w[q] &= 0x0000ffffu;
    }
    uint4 r;
    r.x = w[0], r.y = w[1], r.z = w[2], r.w = w[3];
    return r;
}

/* dst[ROWS][COLS + 8] <- x[row0 + r][col0 .. col0 + COLS) (rows of `in` elements), masked; zeros at
 * and past row `rend` or column `cend`. Both column bounds are multiples of 8, so a 16-byte vector
 * is wholly inside or wholly outside. NT threads share the copy. */
template <int ROWS, int COLS, int NT>
__device__ __forceinline__ void ft_lm_load_x(act_t *dst, const act_t *x, int64_t row0, int64_t rend, int64_t col0,
                                             int64_t cend, int64_t in, uint64_t seed, uint32_t thr) {
    for (int e = threadIdx.x; e < ROWS * (COLS / 8); e += NT) {
        const int r = e / (COLS / 8), c = (e % (COLS / 8)) * 8;
        const int64_t n = row0 + r, col = col0 + c;
        uint4 u;
        u.x = u.y = u.z = u.w = 0u;
        if (n < rend && col < cend) {
            const uint64_t i = (uint64_t)(n * in + col);
            u = ft_lm_mask8(*(const uint4 *)(x + i), i, seed, thr);
        }
        *(uint4 *)(dst + r * (COLS + 8) + c) = u;
    }
}

/* dst[R][FT_LM_LD] <- A16[r][col0 .. col0 + 63] (BF16 rows of `in`), zeros at and past column cend
 * (a multiple of 8) */
template <int R, int NT>
__device__ __forceinline__ void ft_lm_load_a(act_t *dst, const act_t *A16, int64_t col0, int64_t cend, int64_t in) {
    for (int e = threadIdx.x; e < R * 8; e += NT) {
        const int r = e >> 3, c = (e & 7) * 8;
        uint4 u;
        u.x = u.y = u.z = u.w = 0u;
        if (col0 + c < cend) u = *(const uint4 *)(A16 + r * in + col0 + c);
        *(uint4 *)(dst + r * FT_LM_LD + c) = u;
    }
}

/* dst[ROWS][R + 8] <- dt[row0 + r][0 .. R) (BF16 rows of R), zeros past `end` */
template <int R, int ROWS, int NT>
__device__ __forceinline__ void ft_lm_load_dt(act_t *dst, const act_t *dt, int64_t row0, int64_t end) {
    for (int e = threadIdx.x; e < ROWS * (R / 8); e += NT) {
        const int r = e / (R / 8), c = (e % (R / 8)) * 8;
        uint4 u;
        u.x = u.y = u.z = u.w = 0u;
        if (row0 + r < end) u = *(const uint4 *)(dt + (row0 + r) * R + c);
        *(uint4 *)(dst + r * (R + 8) + c) = u;
    }
}

/* ---- t = dropout(x) . A^T ---------------------------------------------------------------------------
 * grid (ceil(N / 128), nk); block y covers columns [y * kchunk, min(in, (y + 1) * kchunk)), kchunk a
 * multiple of 64; warp w owns rows w*16 .. of the block's 128. part[chunk][N][R]. */
enum { FT_LM_TROWS = 128 };
template <int R>
__global__ void __launch_bounds__(FT_LM_THREADS8) ft_k_lora_t_mma(float *part, const act_t *x, const act_t *A16,
                                                                 int64_t N, int64_t in, int64_t kchunk, uint32_t thr,
                                                                 float s, uint64_t seed) {
    __align__(16) __shared__ act_t Xs[FT_LM_TROWS * FT_LM_LD], As[R * FT_LM_LD];
    const int lane = threadIdx.x % FT_WARP, warp = threadIdx.x / FT_WARP, g = lane >> 2, t = lane & 3;
    const int64_t n0 = (int64_t)blockIdx.x * FT_LM_TROWS, k0 = (int64_t)blockIdx.y * kchunk;
    const int64_t kend = min(in, k0 + kchunk);
    float acc[R / 8][4];
#pragma unroll
    for (int n = 0; n < R / 8; n++) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;
    for (int64_t ks = k0; ks < kend; ks += FT_LM_TILE) {
        __syncthreads(); /* the previous step's tiles are read */
        ft_lm_load_x<FT_LM_TROWS, FT_LM_TILE, FT_LM_THREADS8>(Xs, x, n0, N, ks, kend, in, seed, thr);
        ft_lm_load_a<R, FT_LM_THREADS8>(As, A16, ks, kend, in);
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < FT_LM_TILE / 16; kk++) {
            uint32_t af[4];
            ft_ldsm_x4(af, ft_frag_a(Xs, FT_LM_LD, warp * 16, kk * 16));
#pragma unroll
            for (int np = 0; np < R / 16; np++) {
                uint32_t bf[4];
                ft_ldsm_x4(bf, ft_frag_b_nk(As, FT_LM_LD, np * 16, kk * 16));
                ft_mma_bf16(acc[2 * np], af, bf[0], bf[1]);
                ft_mma_bf16(acc[2 * np + 1], af, bf[2], bf[3]);
            }
        }
    }
    float *out = part + (int64_t)blockIdx.y * N * R;
    const int64_t ra = n0 + warp * 16 + g, rb = ra + 8;
#pragma unroll
    for (int n = 0; n < R / 8; n++) {
        if (ra < N) *(float2 *)(out + ra * R + n * 8 + 2 * t) = make_float2(acc[n][0] * s, acc[n][1] * s);
        if (rb < N) *(float2 *)(out + rb * R + n * 8 + 2 * t) = make_float2(acc[n][2] * s, acc[n][3] * s);
    }
}

/* ---- dA += dt^T . dropout(x) ------------------------------------------------------------------------
 * grid (ceil(in / 128), FT_LORA_NSPLIT); block y sums the tokens of part y (ceil(N / NSPLIT) rows).
 * The 8 warps tile the block's R x 128 outputs as RG row groups (MT m-tiles of 16 rows each) by CG
 * column groups of WC columns: R 16: 1 x 8 of 16 columns; R 32: 2 x 4 of 32; R 64: 4 x 2 of 64;
 * R 128: 4 x 2 of 64 with 2 m-tiles. part[split][R][in]. */
enum { FT_LM_DACOLS = 128, FT_LM_DALD = FT_LM_DACOLS + 8 };
template <int R>
struct ft_lm_da_tiling {
    static constexpr int MT = R >= 64 ? R / 64 : 1, RG = R / (16 * MT), WC = FT_LM_DACOLS * RG / 8, NP = WC / 16;
};
template <int R>
__global__ void __launch_bounds__(FT_LM_THREADS8) ft_k_lora_da_mma(float *part, const act_t *x, const act_t *dt,
                                                                  int64_t N, int64_t in, uint32_t thr, float s,
                                                                  uint64_t seed) {
    constexpr int MT = ft_lm_da_tiling<R>::MT, RG = ft_lm_da_tiling<R>::RG, WC = ft_lm_da_tiling<R>::WC;
    constexpr int NP = ft_lm_da_tiling<R>::NP, LDD = R + 8;
    __align__(16) __shared__ act_t Xs[FT_LM_TILE * FT_LM_DALD], Ds[FT_LM_TILE * LDD];
    const int lane = threadIdx.x % FT_WARP, warp = threadIdx.x / FT_WARP, g = lane >> 2, t = lane & 3;
    const int wr = warp % RG, wc = (warp / RG) * WC; /* the warp's row group and its first column */
    const int64_t c0 = (int64_t)blockIdx.x * FT_LM_DACOLS + wc;
    const int64_t rows = ft_cdiv(N, FT_LORA_NSPLIT), nb = (int64_t)blockIdx.y * rows, ne = min(N, nb + rows);
    float acc[MT][2 * NP][4];
#pragma unroll
    for (int m = 0; m < MT; m++)
#pragma unroll
        for (int n = 0; n < 2 * NP; n++) acc[m][n][0] = acc[m][n][1] = acc[m][n][2] = acc[m][n][3] = 0.0f;
    for (int64_t n0 = nb; n0 < ne; n0 += FT_LM_TILE) {
        __syncthreads();
        ft_lm_load_x<FT_LM_TILE, FT_LM_DACOLS, FT_LM_THREADS8>(Xs, x, n0, ne, c0 - wc, in, in, seed, thr);
        ft_lm_load_dt<R, FT_LM_TILE, FT_LM_THREADS8>(Ds, dt, n0, ne);
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < FT_LM_TILE / 16; kk++) { /* 16 tokens */
            uint32_t bf[NP][4];
#pragma unroll
            for (int np = 0; np < NP; np++)
                ft_ldsm_x4_trans(bf[np], ft_frag_b_kn(Xs, FT_LM_DALD, kk * 16, wc + np * 16));
#pragma unroll
            for (int m = 0; m < MT; m++) {
                uint32_t af[4];
                ft_ldsm_x4_trans(af, ft_frag_a_km(Ds, LDD, (wr * MT + m) * 16, kk * 16));
#pragma unroll
                for (int np = 0; np < NP; np++) {
                    ft_mma_bf16(acc[m][2 * np], af, bf[np][0], bf[np][1]);
                    ft_mma_bf16(acc[m][2 * np + 1], af, bf[np][2], bf[np][3]);
                }
            }
        }
    }
    float *out = part + (int64_t)blockIdx.y * R * in;
#pragma unroll
    for (int m = 0; m < MT; m++) {
        const int64_t ra = (wr * MT + m) * 16 + g, rb = ra + 8;
#pragma unroll
        for (int n = 0; n < 2 * NP; n++) {
            const int64_t col = c0 + n * 8 + 2 * t; /* even, and in is a multiple of 8: the pair is in or out */
            if (col < in) {
                *(float2 *)(out + ra * in + col) = make_float2(acc[m][n][0] * s, acc[m][n][1] * s);
                *(float2 *)(out + rb * in + col) = make_float2(acc[m][n][2] * s, acc[m][n][3] * s);
            }
        }
    }
}

/* ---- dx (=, or +=) dropout'(dt . A) -----------------------------------------------------------------
 * grid (ceil(in / 64), ceil(N / 64)); warp w computes rows w*16 .. of the block's 64 x 64 outputs
 * over K = R, then masks, scales and writes (adding to dx's BF16 values when accumulating). */
template <int R>
__global__ void __launch_bounds__(FT_LM_THREADS) ft_k_lora_dx_mma(act_t *dx, const act_t *dt, const act_t *A16,
                                                                 int64_t N, int64_t in, uint32_t thr, float s,
                                                                 uint64_t seed, int accumulate) {
    constexpr int LDD = R + 8;
    __align__(16) __shared__ act_t Ds[FT_LM_TILE * LDD], As[R * FT_LM_LD];
    const int lane = threadIdx.x % FT_WARP, warp = threadIdx.x / FT_WARP, g = lane >> 2, t = lane & 3;
    const int64_t c0 = (int64_t)blockIdx.x * FT_LM_TILE, n0 = (int64_t)blockIdx.y * FT_LM_TILE;
    ft_lm_load_dt<R, FT_LM_TILE, FT_LM_THREADS>(Ds, dt, n0, N);
    ft_lm_load_a<R, FT_LM_THREADS>(As, A16, c0, in, in);
    __syncthreads();
    float acc[8][4];
#pragma unroll
    for (int n = 0; n < 8; n++) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < R / 16; kk++) {
        uint32_t af[4];
        ft_ldsm_x4(af, ft_frag_a(Ds, LDD, warp * 16, kk * 16));
#pragma unroll
        for (int np = 0; np < 4; np++) {
            uint32_t bf[4];
            ft_ldsm_x4_trans(bf, ft_frag_b_kn(As, FT_LM_LD, kk * 16, np * 16));
            ft_mma_bf16(acc[2 * np], af, bf[0], bf[1]);
            ft_mma_bf16(acc[2 * np + 1], af, bf[2], bf[3]);
        }
    }
#pragma unroll
    for (int h = 0; h < 2; h++) { /* rows g and g + 8 of the warp's 16 */
        const int64_t row = n0 + warp * 16 + g + 8 * h;
        if (row >= N) continue;
#pragma unroll
        for (int n = 0; n < 8; n++) {
            const int64_t col = c0 + n * 8 + 2 * t;
            if (col >= in) continue;
            const uint64_t i = (uint64_t)(row * in + col); /* even: positions i & 3, + 1 of one group */
            const uint64_t bits = ft_dropout_bits(seed, i >> 2);
            float v0 = ft_dropout_keep_in(bits, (int)(i & 3), thr) ? acc[n][2 * h] * s : 0.0f;
            float v1 = ft_dropout_keep_in(bits, (int)(i & 3) + 1, thr) ? acc[n][2 * h + 1] * s : 0.0f;
            __nv_bfloat162 *p = (__nv_bfloat162 *)(dx + i);
            if (accumulate) {
                const float2 o = __bfloat1622float2(*p);
                v0 += o.x;
                v1 += o.y;
            }
            *p = __floats2bfloat162_rn(v0, v1);
        }
    }
}

/* ---- launchers -------------------------------------------------------------------------------------- */

/* Input columns per t chunk: enough chunks that the grid has about 4 blocks an SM, no more than
 * ft_cuda_lora_part_bytes allows for (FT_LORA_KCHUNK columns each); a multiple of 64. Fewer chunks
 * mean less partial-sum traffic (8 R bytes per token per chunk against 2 in of x). */
static int64_t ft_lm_kchunk(ft_backend *be, int64_t N, int64_t in) {
    const int64_t row_blocks = ft_cdiv(N, FT_LM_TROWS), want = ft_cdiv(4LL * ft_cu(be)->sm_count, row_blocks);
    const int64_t nk_max = ft_cdiv(in, FT_LORA_KCHUNK), nk = want < 1 ? 1 : want > nk_max ? nk_max : want;
    return ft_cdiv(ft_cdiv(in, nk), FT_LM_TILE) * FT_LM_TILE;
}

/* A [R, in] f32 -> BF16 in the FT_SCR_LORA_A slot (what the unfused path's products use too) */
static ft_status ft_lm_a16(ft_backend *be, const float *A, int64_t R, int64_t in, act_t **a16) {
    FT_TRY(ft_cuda_scratch_get(be, FT_SCR_LORA_A, 2 * R * in, (void **)a16));
    return ft_cuda_f32_to_bf16(be, *a16, A, R * in);
}

template <int R>
static ft_status ft_lm_t(ft_backend *be, void *t, const void *x, const float *A, int64_t N, int64_t in,
                         ft_lora_drop dr) {
    const int64_t kchunk = ft_lm_kchunk(be, N, in), nk = ft_cdiv(in, kchunk);
    float *part = NULL;
    act_t *a16 = NULL;
    FT_TRY(ft_cuda_scratch_get(be, FT_SCR_LORA_PART, ft_cuda_lora_part_bytes(N, in, R), (void **)&part));
    FT_TRY(ft_lm_a16(be, A, R, in, &a16));
    const dim3 grid((unsigned)ft_cdiv(N, FT_LM_TROWS), (unsigned)nk);
    ft_k_lora_t_mma<R><<<grid, FT_LM_THREADS8, 0, ft_cu_stream(be)>>>(part, (const act_t *)x, a16, N, in, kchunk,
                                                                      ft_dropout_threshold(dr.p),
                                                                      1.0f / (1.0f - dr.p), dr.seed);
    FT_CUDA_LAUNCH_TRY("ft_k_lora_t_mma");
    return ft_cuda_lora_t_sum(be, t, part, N * R, nk);
}

template <int R>
static ft_status ft_lm_bwd(ft_backend *be, void *dx, float *dA, const void *x, const void *dt, const float *A,
                           int64_t N, int64_t in, ft_lora_drop dr, int accumulate) {
    const uint32_t thr = ft_dropout_threshold(dr.p);
    const float s = 1.0f / (1.0f - dr.p);
    float *part = NULL;
    act_t *a16 = NULL;
    FT_TRY(ft_cuda_scratch_get(be, FT_SCR_LORA_PART, ft_cuda_lora_part_bytes(N, in, R), (void **)&part));
    FT_TRY(ft_lm_a16(be, A, R, in, &a16));
    ft_k_lora_da_mma<R><<<dim3((unsigned)ft_cdiv(in, FT_LM_DACOLS), FT_LORA_NSPLIT), FT_LM_THREADS8, 0,
                          ft_cu_stream(be)>>>(part, (const act_t *)x, (const act_t *)dt, N, in, thr, s, dr.seed);
    FT_CUDA_LAUNCH_TRY("ft_k_lora_da_mma");
    FT_TRY(ft_cuda_lora_da_sum(be, dA, part, R * in));
    ft_k_lora_dx_mma<R><<<dim3((unsigned)ft_cdiv(in, FT_LM_TILE), (unsigned)ft_cdiv(N, FT_LM_TILE)), FT_LM_THREADS, 0,
                          ft_cu_stream(be)>>>((act_t *)dx, (const act_t *)dt, a16, N, in, thr, s, dr.seed, accumulate);
    FT_CUDA_LAUNCH_TRY("ft_k_lora_dx_mma");
    return FT_OK;
}

ft_status ft_cuda_lora_t_mma(ft_backend *be, void *t, const void *x, const float *A, int64_t N, int64_t in,
                             int64_t R, ft_lora_drop drop) {
    if (R == 16) return ft_lm_t<16>(be, t, x, A, N, in, drop);
    if (R == 32) return ft_lm_t<32>(be, t, x, A, N, in, drop);
    if (R == 64) return ft_lm_t<64>(be, t, x, A, N, in, drop);
    if (R == 128) return ft_lm_t<128>(be, t, x, A, N, in, drop);
    return FT_ERR(FT_E_INTERNAL, "lora_mma: rank %lld", (long long)R);
}

ft_status ft_cuda_lora_bwd_mma(ft_backend *be, void *dx, float *dA, const void *x, const void *dt, const float *A,
                               int64_t N, int64_t in, int64_t R, ft_lora_drop drop, int accumulate) {
    if (R == 16) return ft_lm_bwd<16>(be, dx, dA, x, dt, A, N, in, drop, accumulate);
    if (R == 32) return ft_lm_bwd<32>(be, dx, dA, x, dt, A, N, in, drop, accumulate);
    if (R == 64) return ft_lm_bwd<64>(be, dx, dA, x, dt, A, N, in, drop, accumulate);
    if (R == 128) return ft_lm_bwd<128>(be, dx, dA, x, dt, A, N, in, drop, accumulate);
    return FT_ERR(FT_E_INTERNAL, "lora_mma: rank %lld", (long long)R);
}
