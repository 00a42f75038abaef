/* attention_tc.cu: causal GQA attention with packed-document masks on the tensor cores (WMMA, BF16
 * operands, F32 accumulation), head_dim 64 or 128: the fast path of ft_cuda_attention / _bwd.
 * Same layouts, masks and outputs as the SIMT kernels of attention.cu, which stay the fallback for
 * other shapes and the cross-check (FT_CUDA_ATTN=simt); both are tested against the CPU backend.
 *
 * Why WMMA and not mma.sync / wgmma: the fragment API is the same on sm_90 and sm_121 (GB10) and
 * its semantics are layout-free, so the CPU-side emulator (tests/gpu/emu) checks these kernels
 * too; a Hopper wgmma kernel is a later step that this one will cross-check.
 *
 * A block is 4 warps; each warp owns 16 rows of a 64-row tile and every product is a 16x16x16
 * fragment MMA. Scores go through shared memory (F32) to SIMT code for the masks and the softmax,
 * which lane pairs do row by row (lane = 2*row + half, half the columns each), and come back as
 * BF16 probabilities for the next product, as in FlashAttention-2. Accumulators that only add
 * (dq, dk, dv) stay in fragments for the whole kernel; the forward's output, rescaled at every key
 * tile by the online softmax, lives in registers in the lane-pair layout instead (a fragment's
 * element layout is unspecified, so per-row scaling cannot be applied to it).
 *
 *  forward  grid (T/64, H, B), heaviest query tiles (latest rows) first: for each key tile
 *           S = Q K^T, online softmax in base 2, O = O*corr + P V. lse = m + log l.
 *  dq       grid (T/64, H, B): for each key tile S = Q K^T, dP = dO V^T, P = exp(S - lse),
 *           dS = P (dP - Dl), dq += dS K; times scale at the end.
 *  dk, dv   grid (T/64, Hkv, B): each block owns 64 keys; for every query head of the group and
 *           every query tile at or after them, S^T = K Q^T, dP^T = V dO^T, dv += P^T dO,
 *           dk += dS^T Q. No atomics: gradients are deterministic.
 * Shared-memory tiles are padded by 8 BF16 (16 bytes) per row against bank conflicts; every
 * fragment pointer stays 32-byte aligned (WMMA's rule). */
#include <mma.h>

#include "kernels/cuda/attention.cuh"
#include "kernels/cuda/check.h"

using namespace nvcuda;

static constexpr int FT_TC_WARPS = 4, FT_TC_THREADS = FT_TC_WARPS * FT_WARP, FT_TC_TILE = 64,
                     FT_TC_PLD = FT_TC_TILE + 8, FT_TC_FLD = FT_TC_TILE + 4;
#define FT_TC_LOG2E 1.4426950408889634f
#define FT_TC_LN2 0.6931471805599453f

typedef wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> ft_fa;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major> ft_fb_row;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> ft_fb_col;
typedef wmma::fragment<wmma::accumulator, 16, 16, 16, float> ft_facc;

/* Shared-memory row pitches: BF16 tiles [64][D + 8]; the F32 scratch that also receives a [16][D]
 * result [16][max(64, D) + 4]. */
template <int D> struct ft_tc_dims {
    static constexpr int LD = D + 8, SLD = (D > FT_TC_TILE ? D : FT_TC_TILE) + 4, NF = D / 16;
};

/* dst[64][D + 8] = rows row0.. of src (row r at src + r * stride), zeros at and after row T. */
template <int D>
__device__ __forceinline__ void ft_tc_load_tile(act_t *dst, const act_t *src, int64_t row0, int64_t T, int64_t stride) {
    constexpr int V = D / 8; /* 16-byte vectors per row */
    for (int e = threadIdx.x; e < FT_TC_TILE * V; e += FT_TC_THREADS) {
        const int r = e / V, c = e % V;
        uint4 val = {0u, 0u, 0u, 0u};
        if (row0 + r < T) val = *(const uint4 *)(src + (row0 + r) * stride + c * 8);
        *(uint4 *)(dst + r * ft_tc_dims<D>::LD + c * 8) = val;
    }
}

/* acc = A[16, D] . B^T where B is a [16, D] row-major slice (so B^T is col-major), both in
 * shared memory with pitch LD. */
template <int D>
__device__ __forceinline__ void ft_tc_abt(ft_facc &acc, const act_t *A, const act_t *Bt) {
    constexpr int LD = ft_tc_dims<D>::LD;
    wmma::fill_fragment(acc, 0.0f);
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++) {
        ft_fa a;
        ft_fb_col bt;
        wmma::load_matrix_sync(a, A + kk * 16, LD);
        wmma::load_matrix_sync(bt, Bt + kk * 16, LD);
        wmma::mma_sync(acc, a, bt, acc);
    }
}

/* The backward's two score-shaped products of a warp: S[16, 64] = A1 . B1^T and dP[16, 64] = A2 . B2^T
 * (A1, A2 the warp's 16 rows, B1, B2 64-row tiles, pitch LD), stored F32 with pitch FLD. */
template <int D>
__device__ __forceinline__ void ft_tc_two_products(float *S, float *dP, const act_t *A1, const act_t *B1,
                                                   const act_t *A2, const act_t *B2) {
#pragma unroll
    for (int n = 0; n < FT_TC_TILE / 16; n++) {
        ft_facc s, dp;
        ft_tc_abt<D>(s, A1, B1 + n * 16 * ft_tc_dims<D>::LD);
        ft_tc_abt<D>(dp, A2, B2 + n * 16 * ft_tc_dims<D>::LD);
        wmma::store_matrix_sync(S + n * 16, s, FT_TC_FLD, wmma::mem_row_major);
        wmma::store_matrix_sync(dP + n * 16, dp, FT_TC_FLD, wmma::mem_row_major);
    }
}

/* acc[n] += P[16, 64] (BF16, pitch PLD) . X[64, D] (pitch LD), for the 16-column block n of X. */
template <int D>
__device__ __forceinline__ void ft_tc_pv(ft_facc &acc, const act_t *P, const act_t *X, int n) {
#pragma unroll
    for (int kk = 0; kk < FT_TC_TILE / 16; kk++) {
        ft_fa a;
        ft_fb_row x;
        wmma::load_matrix_sync(a, P + kk * 16, FT_TC_PLD);
        wmma::load_matrix_sync(x, X + kk * 16 * ft_tc_dims<D>::LD + n * 16, ft_tc_dims<D>::LD);
        wmma::mma_sync(acc, a, x, acc);
    }
}

/* Writes the lane pair's half row (D/2 values of vals) as BF16 to dst (16-byte aligned). */
template <int D>
__device__ __forceinline__ void ft_tc_store_half_row(act_t *dst, const float *vals, float mul) {
#pragma unroll
    for (int t = 0; t < D / 2; t += 8) {
        union {
            uint4 u;
            act_t h[8];
        } pk;
#pragma unroll
        for (int e = 0; e < 8; e++) pk.h[e] = __float2bfloat16_rn(vals[t + e] * mul);
        *(uint4 *)(dst + t) = pk.u;
    }
}

/* Smallest lo(i) over the block's valid query rows (the first key tile any row sees); every
 * thread gets it. *lo_out gets this lane's row's lo, *wlo_out the warp's minimum. */
__device__ __forceinline__ int64_t ft_tc_block_lo(const int32_t *doc_start, int64_t b, int64_t T, int64_t i,
                                                  int half, unsigned *err, int64_t *lo_out, int64_t *wlo_out) {
    __shared__ int64_t wlo_s[FT_TC_WARPS];
    const int warp = threadIdx.x / FT_WARP;
    const int64_t lo = i < T ? ft_at_lo(doc_start, b * T + i, i, half == 0 ? err : NULL) : INT64_MAX;
    int64_t wl = lo;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const int64_t x = __shfl_xor_sync(FT_FULL_MASK, wl, o);
        wl = x < wl ? x : wl;
    }
    if (threadIdx.x % FT_WARP == 0) wlo_s[warp] = wl;
    __syncthreads();
    int64_t m = INT64_MAX;
#pragma unroll
    for (int w = 0; w < FT_TC_WARPS; w++) m = wlo_s[w] < m ? wlo_s[w] : m;
    *lo_out = lo;
    *wlo_out = wl;
    return m;
}

/* ---- forward ---------------------------------------------------------------------------------- */
template <int D>
__global__ void __launch_bounds__(FT_TC_THREADS)
ft_k_attn_fwd_tc(act_t *out, float *lse, const act_t *q, const act_t *k, const act_t *v, const int32_t *doc_start,
                 int64_t T, int64_t H, int64_t Hkv, float scale, unsigned *err) {
    typedef ft_tc_dims<D> dm;
    extern __shared__ __align__(128) float smem[]; /* WMMA pointers must be 32-byte aligned */
    const int lane = threadIdx.x % FT_WARP, warp = threadIdx.x / FT_WARP, r = lane >> 1, half = lane & 1;
    act_t *Qs = (act_t *)smem, *Ks = Qs + FT_TC_TILE * dm::LD, *Vs = Ks + FT_TC_TILE * dm::LD;
    float *Sf = (float *)(Vs + FT_TC_TILE * dm::LD) + warp * 16 * dm::SLD;                 /* [16][SLD] */
    act_t *Ps = (act_t *)((float *)(Vs + FT_TC_TILE * dm::LD) + FT_TC_WARPS * 16 * dm::SLD) + warp * 16 * FT_TC_PLD;
    const int64_t b = blockIdx.z, h = blockIdx.y, kh = h / (H / Hkv);
    const int64_t i0 = (int64_t)(gridDim.x - 1 - blockIdx.x) * FT_TC_TILE; /* latest rows first */
    const int64_t qs = H * D, ks = Hkv * D, w0 = i0 + warp * 16, i = w0 + r;
    const act_t *kb = k + b * T * ks + kh * D, *vb = v + b * T * ks + kh * D;

    ft_tc_load_tile<D>(Qs, q + b * T * qs + h * D, i0, T, qs);
    int64_t lo, wlo;
    const int64_t jmin = ft_tc_block_lo(doc_start, b, T, i, half, err, &lo, &wlo); /* syncs */
    const int64_t wi1 = min(T - 1, w0 + 15);                                        /* < w0: no rows */
    ft_fa qf[dm::NF];
#pragma unroll
    for (int kk = 0; kk < dm::NF; kk++) wmma::load_matrix_sync(qf[kk], Qs + warp * 16 * dm::LD + kk * 16, dm::LD);

    const float sl2 = scale * FT_TC_LOG2E; /* scores in base 2: exp(x) = exp2(x log2 e) */
    float m = -INFINITY, l = 0.0f, o[D / 2];
#pragma unroll
    for (int t = 0; t < D / 2; t++) o[t] = 0.0f;
    const int64_t jlast = min(T - 1, i0 + FT_TC_TILE - 1);
    for (int64_t jt = jmin / FT_TC_TILE * FT_TC_TILE; jt <= jlast; jt += FT_TC_TILE) {
        __syncthreads(); /* the previous tile is consumed */
        ft_tc_load_tile<D>(Ks, kb, jt, T, ks);
        ft_tc_load_tile<D>(Vs, vb, jt, T, ks);
        __syncthreads();
        if (wi1 < w0 || jt > wi1 || jt + FT_TC_TILE - 1 < wlo) continue; /* warp-uniform */
#pragma unroll
        for (int n = 0; n < FT_TC_TILE / 16; n++) {
            ft_facc acc;
            wmma::fill_fragment(acc, 0.0f);
#pragma unroll
            for (int kk = 0; kk < dm::NF; kk++) {
                ft_fb_col kf;
                wmma::load_matrix_sync(kf, Ks + n * 16 * dm::LD + kk * 16, dm::LD);
                wmma::mma_sync(acc, qf[kk], kf, acc);
            }
            wmma::store_matrix_sync(Sf + n * 16, acc, dm::SLD, wmma::mem_row_major);
        }
        __syncwarp();
        float s[32], mx = -INFINITY;
#pragma unroll
        for (int c = 0; c < 32; c++) {
            const int64_t j = jt + half * 32 + c;
            const bool ok = i < T && j <= i && j >= lo;
            s[c] = ok ? Sf[r * dm::SLD + half * 32 + c] * sl2 : -INFINITY;
            mx = fmaxf(mx, s[c]);
        }
        mx = fmaxf(mx, __shfl_xor_sync(FT_FULL_MASK, mx, 1));
        const float mn = fmaxf(m, mx);
        float corr = 1.0f, sum = 0.0f;
        if (mn != -INFINITY) { /* else nothing visible yet: p = 0, state unchanged */
            corr = exp2f(m - mn); /* m = -inf: 0 */
#pragma unroll
            for (int c = 0; c < 32; c++) {
                const float p = exp2f(s[c] - mn);
                sum += p;
                Ps[r * FT_TC_PLD + half * 32 + c] = __float2bfloat16_rn(p);
            }
        } else {
#pragma unroll
            for (int c = 0; c < 32; c++) Ps[r * FT_TC_PLD + half * 32 + c] = __float2bfloat16_rn(0.0f);
        }
        sum += __shfl_xor_sync(FT_FULL_MASK, sum, 1);
        l = l * corr + sum;
        m = mn;
        __syncwarp(); /* Ps written; Sf read */
#pragma unroll
        for (int n = 0; n < dm::NF; n++) {
            ft_facc acc;
            wmma::fill_fragment(acc, 0.0f);
            ft_tc_pv<D>(acc, Ps, Vs, n);
            wmma::store_matrix_sync(Sf + n * 16, acc, dm::SLD, wmma::mem_row_major);
        }
        __syncwarp();
#pragma unroll
        for (int t = 0; t < D / 2; t++) o[t] = o[t] * corr + Sf[r * dm::SLD + half * (D / 2) + t];
        __syncwarp(); /* Sf read before the next tile's scores overwrite it */
    }
    if (i < T) {
        const int64_t row = b * T + i;
        ft_tc_store_half_row<D>(out + row * qs + h * D + half * (D / 2), o, 1.0f / l);
        if (half == 0) lse[row * H + h] = (m + log2f(l)) * FT_TC_LN2;
    }
}

/* ---- backward: dq ---------------------------------------------------------------------------- */
template <int D>
__global__ void __launch_bounds__(FT_TC_THREADS)
ft_k_attn_dq_tc(act_t *dq, const act_t *dout, const act_t *q, const act_t *k, const act_t *v, const float *lse,
                const float *Dl, const int32_t *doc_start, int64_t T, int64_t H, int64_t Hkv, float scale,
                unsigned *err) {
    typedef ft_tc_dims<D> dm;
    extern __shared__ __align__(128) float smem[]; /* WMMA pointers must be 32-byte aligned */
    const int lane = threadIdx.x % FT_WARP, warp = threadIdx.x / FT_WARP, r = lane >> 1, half = lane & 1;
    act_t *Qs = (act_t *)smem, *Gs = Qs + FT_TC_TILE * dm::LD, *Ks = Gs + FT_TC_TILE * dm::LD,
          *Vs = Ks + FT_TC_TILE * dm::LD;
    float *Sf = (float *)(Vs + FT_TC_TILE * dm::LD) + warp * 16 * FT_TC_FLD;     /* [16][FLD] scores */
    float *Pf = (float *)(Vs + FT_TC_TILE * dm::LD) + (FT_TC_WARPS + warp) * 16 * FT_TC_FLD; /* dP */
    act_t *dSs = (act_t *)((float *)(Vs + FT_TC_TILE * dm::LD) + 2 * FT_TC_WARPS * 16 * FT_TC_FLD) + warp * 16 * FT_TC_PLD;
    const int64_t b = blockIdx.z, h = blockIdx.y, kh = h / (H / Hkv);
    const int64_t i0 = (int64_t)(gridDim.x - 1 - blockIdx.x) * FT_TC_TILE;
    const int64_t qs = H * D, ks = Hkv * D, w0 = i0 + warp * 16, i = w0 + r;
    const act_t *kb = k + b * T * ks + kh * D, *vb = v + b * T * ks + kh * D;

    ft_tc_load_tile<D>(Qs, q + b * T * qs + h * D, i0, T, qs);
    ft_tc_load_tile<D>(Gs, dout + b * T * qs + h * D, i0, T, qs);
    int64_t lo, wlo;
    const int64_t jmin = ft_tc_block_lo(doc_start, b, T, i, half, err, &lo, &wlo);
    const int64_t wi1 = min(T - 1, w0 + 15);
    const float sl2 = scale * FT_TC_LOG2E;
    const float L2 = i < T ? lse[(b * T + i) * H + h] * FT_TC_LOG2E : 0.0f;
    const float Dr = i < T ? Dl[(b * T + i) * H + h] : 0.0f;
    ft_facc acc[dm::NF];
#pragma unroll
    for (int n = 0; n < dm::NF; n++) wmma::fill_fragment(acc[n], 0.0f);
    const int64_t jlast = min(T - 1, i0 + FT_TC_TILE - 1);
    for (int64_t jt = jmin / FT_TC_TILE * FT_TC_TILE; jt <= jlast; jt += FT_TC_TILE) {
        __syncthreads();
        ft_tc_load_tile<D>(Ks, kb, jt, T, ks);
        ft_tc_load_tile<D>(Vs, vb, jt, T, ks);
        __syncthreads();
        if (wi1 < w0 || jt > wi1 || jt + FT_TC_TILE - 1 < wlo) continue;
        ft_tc_two_products<D>(Sf, Pf, Qs + warp * 16 * dm::LD, Ks, Gs + warp * 16 * dm::LD, Vs);
        __syncwarp();
#pragma unroll
        for (int c = 0; c < 32; c++) {
            const int cc = half * 32 + c;
            const int64_t j = jt + cc;
            const bool ok = i < T && j <= i && j >= lo;
            const float p = ok ? exp2f(Sf[r * FT_TC_FLD + cc] * sl2 - L2) : 0.0f;
            dSs[r * FT_TC_PLD + cc] = __float2bfloat16_rn(p * (Pf[r * FT_TC_FLD + cc] - Dr));
        }
        __syncwarp();
#pragma unroll
        for (int n = 0; n < dm::NF; n++) ft_tc_pv<D>(acc[n], dSs, Ks, n);
        __syncwarp(); /* dSs, Sf, Pf read before the next tile */
    }
    __syncthreads(); /* the tiles are free: they become each warp's [16][SLD] F32 staging */
    float *St = smem + warp * 16 * dm::SLD;
#pragma unroll
    for (int n = 0; n < dm::NF; n++) wmma::store_matrix_sync(St + n * 16, acc[n], dm::SLD, wmma::mem_row_major);
    __syncwarp();
    if (i < T) ft_tc_store_half_row<D>(dq + (b * T + i) * qs + h * D + half * (D / 2), St + r * dm::SLD + half * (D / 2), scale);
}

/* ---- backward: dk, dv ------------------------------------------------------------------------ */
template <int D>
__global__ void __launch_bounds__(FT_TC_THREADS)
ft_k_attn_dkv_tc(act_t *dk, act_t *dv, const act_t *dout, const act_t *q, const act_t *k, const act_t *v,
                 const float *lse, const float *Dl, const int32_t *doc_start, int64_t T, int64_t H, int64_t Hkv,
                 float scale) {
    typedef ft_tc_dims<D> dm;
    extern __shared__ __align__(128) float smem[]; /* WMMA pointers must be 32-byte aligned */
    __shared__ float Ls[FT_TC_TILE], Ds[FT_TC_TILE];
    __shared__ int64_t LOs[FT_TC_TILE];
    const int lane = threadIdx.x % FT_WARP, warp = threadIdx.x / FT_WARP, r = lane >> 1, half = lane & 1;
    act_t *Kb = (act_t *)smem, *Vb = Kb + FT_TC_TILE * dm::LD, *Qs = Vb + FT_TC_TILE * dm::LD,
          *Gs = Qs + FT_TC_TILE * dm::LD;
    float *Sf = (float *)(Gs + FT_TC_TILE * dm::LD) + warp * 16 * FT_TC_FLD;                  /* S^T */
    float *Pf = (float *)(Gs + FT_TC_TILE * dm::LD) + (FT_TC_WARPS + warp) * 16 * FT_TC_FLD; /* dP^T */
    act_t *Pt = (act_t *)((float *)(Gs + FT_TC_TILE * dm::LD) + 2 * FT_TC_WARPS * 16 * FT_TC_FLD) +
                warp * 2 * 16 * FT_TC_PLD;
    act_t *dSt = Pt + 16 * FT_TC_PLD;
    const int64_t b = blockIdx.z, kh = blockIdx.y, j0 = (int64_t)blockIdx.x * FT_TC_TILE, grp = H / Hkv;
    const int64_t qs = H * D, ks = Hkv * D, wj0 = j0 + warp * 16, j = wj0 + r, wj1 = min(T - 1, wj0 + 15);
    const float sl2 = scale * FT_TC_LOG2E;

    ft_tc_load_tile<D>(Kb, k + b * T * ks + kh * D, j0, T, ks);
    ft_tc_load_tile<D>(Vb, v + b * T * ks + kh * D, j0, T, ks);
    ft_facc ak[dm::NF], av[dm::NF];
#pragma unroll
    for (int n = 0; n < dm::NF; n++) {
        wmma::fill_fragment(ak[n], 0.0f);
        wmma::fill_fragment(av[n], 0.0f);
    }
    for (int64_t h = kh * grp; h < (kh + 1) * grp; h++) {
        for (int64_t it = j0 / FT_TC_TILE * FT_TC_TILE; it < T; it += FT_TC_TILE) {
            __syncthreads(); /* the previous tile is consumed */
            ft_tc_load_tile<D>(Qs, q + b * T * qs + h * D, it, T, qs);
            ft_tc_load_tile<D>(Gs, dout + b * T * qs + h * D, it, T, qs);
            if (threadIdx.x < FT_TC_TILE) {
                const int64_t iq = it + threadIdx.x;
                Ls[threadIdx.x] = iq < T ? lse[(b * T + iq) * H + h] * FT_TC_LOG2E : 0.0f;
                Ds[threadIdx.x] = iq < T ? Dl[(b * T + iq) * H + h] : 0.0f;
                /* error flags are raised by the dq kernel, which validates the same rows */
                LOs[threadIdx.x] = iq < T ? ft_at_lo(doc_start, b * T + iq, iq, NULL) : INT64_MAX;
            }
            __syncthreads();
            if (wj0 >= T) continue;
            /* skip the tile when no query in it sees any of the warp's keys (warp-uniform) */
            const int64_t ia = it + lane, ib = it + lane + 32;
            const bool va = ia < T && ia >= wj0 && LOs[lane] <= wj1, vb = ib < T && ib >= wj0 && LOs[lane + 32] <= wj1;
            if (!__any_sync(FT_FULL_MASK, va || vb)) continue;
            ft_tc_two_products<D>(Sf, Pf, Kb + warp * 16 * dm::LD, Qs, Vb + warp * 16 * dm::LD, Gs);
            __syncwarp();
#pragma unroll
            for (int c = 0; c < 32; c++) {
                const int cc = half * 32 + c;
                const int64_t iq = it + cc;
                const bool ok = j < T && iq < T && iq >= j && LOs[cc] <= j;
                const float p = ok ? exp2f(Sf[r * FT_TC_FLD + cc] * sl2 - Ls[cc]) : 0.0f;
                Pt[r * FT_TC_PLD + cc] = __float2bfloat16_rn(p);
                dSt[r * FT_TC_PLD + cc] = __float2bfloat16_rn(p * (Pf[r * FT_TC_FLD + cc] - Ds[cc]));
            }
            __syncwarp();
#pragma unroll
            for (int n = 0; n < dm::NF; n++) {
                ft_tc_pv<D>(av[n], Pt, Gs, n);
                ft_tc_pv<D>(ak[n], dSt, Qs, n);
            }
        }
    }
    __syncthreads(); /* the tiles become each warp's [16][SLD] F32 staging */
    float *St = smem + warp * 16 * dm::SLD;
    const int64_t row = b * T + j;
#pragma unroll
    for (int n = 0; n < dm::NF; n++) wmma::store_matrix_sync(St + n * 16, ak[n], dm::SLD, wmma::mem_row_major);
    __syncwarp();
    if (j < T) ft_tc_store_half_row<D>(dk + row * ks + kh * D + half * (D / 2), St + r * dm::SLD + half * (D / 2), scale);
    __syncwarp();
#pragma unroll
    for (int n = 0; n < dm::NF; n++) wmma::store_matrix_sync(St + n * 16, av[n], dm::SLD, wmma::mem_row_major);
    __syncwarp();
    if (j < T) ft_tc_store_half_row<D>(dv + row * ks + kh * D + half * (D / 2), St + r * dm::SLD + half * (D / 2), 1.0f);
}

/* ---- launchers ------------------------------------------------------------------------------- */

/* Dynamic shared memory of each kernel (bytes), from the carve-ups above. */
static size_t ft_tc_smem(int64_t D, int kernel) {
    const size_t LD = (size_t)D + 8, SLD = (size_t)(D > FT_TC_TILE ? D : FT_TC_TILE) + 4;
    const size_t tile = 2 * FT_TC_TILE * LD, w = FT_TC_WARPS * 16;
    switch (kernel) {
    case 0: return 3 * tile + 4 * w * SLD + 2 * w * FT_TC_PLD; /* fwd: Q K V, Sf, Ps */
    case 1: return 4 * tile + 4 * 2 * w * FT_TC_FLD + 2 * w * FT_TC_PLD; /* dq: Q dO K V, Sf Pf, dS */
    default: return 4 * tile + 4 * 2 * w * FT_TC_FLD + 2 * 2 * w * FT_TC_PLD; /* dkv: K V Q dO, S P, P dS */
    }
}

int ft_attn_tc_ok(ft_backend_cuda *b, int64_t D, const void *const *ptrs, int nptrs, int bwd) {
    if (b->attn_simt || (D != 64 && D != 128)) return 0;
    for (int i = 0; i < nptrs; i++)
        if (ptrs[i] && ((uintptr_t)ptrs[i] & 15u)) return 0;
    const size_t need = bwd ? (ft_tc_smem(D, 1) > ft_tc_smem(D, 2) ? ft_tc_smem(D, 1) : ft_tc_smem(D, 2))
                            : ft_tc_smem(D, 0);
    /* (the backward kernels' final F32 staging, 4 x [16][SLD], fits in their four BF16 tiles) */
    return need <= b->smem_optin;
}

#define FT_TC_LAUNCH(kern, grid, smem, stream, ...)                                                  \
    do {                                                                                             \
        if (D == 64) {                                                                               \
            FT_CUDA_TRY(cudaFuncSetAttribute(kern<64>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)(smem))); \
            kern<64><<<grid, FT_TC_THREADS, smem, stream>>>(__VA_ARGS__);                            \
        } else {                                                                                     \
            FT_CUDA_TRY(cudaFuncSetAttribute(kern<128>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)(smem))); \
            kern<128><<<grid, FT_TC_THREADS, smem, stream>>>(__VA_ARGS__);                           \
        }                                                                                            \
        FT_CUDA_LAUNCH_TRY(#kern);                                                                   \
    } while (0)

ft_status ft_attn_tc_fwd(ft_backend_cuda *b, act_t *out, float *lse, const act_t *q, const act_t *k,
                         const act_t *v, const int32_t *doc_start, int64_t B, int64_t T, int64_t H, int64_t Hkv,
                         int64_t D, float scale) {
    const dim3 grid((unsigned)ft_cdiv(T, FT_TC_TILE), (unsigned)H, (unsigned)B);
    FT_TC_LAUNCH(ft_k_attn_fwd_tc, grid, ft_tc_smem(D, 0), b->stream, out, lse, q, k, v, doc_start, T, H, Hkv,
                 scale, b->err);
    return FT_OK;
}

ft_status ft_attn_tc_bwd(ft_backend_cuda *b, act_t *dq, act_t *dk, act_t *dv, const act_t *dout, const act_t *q,
                         const act_t *k, const act_t *v, const float *lse, const float *Dl,
                         const int32_t *doc_start, int64_t B, int64_t T, int64_t H, int64_t Hkv, int64_t D,
                         float scale) {
    const dim3 gq((unsigned)ft_cdiv(T, FT_TC_TILE), (unsigned)H, (unsigned)B);
    FT_TC_LAUNCH(ft_k_attn_dq_tc, gq, ft_tc_smem(D, 1), b->stream, dq, dout, q, k, v, lse, Dl, doc_start, T, H, Hkv,
                 scale, b->err);
    const dim3 gkv((unsigned)ft_cdiv(T, FT_TC_TILE), (unsigned)Hkv, (unsigned)B);
    FT_TC_LAUNCH(ft_k_attn_dkv_tc, gkv, ft_tc_smem(D, 2), b->stream, dk, dv, dout, q, k, v, lse, Dl, doc_start, T,
                 H, Hkv, scale);
    return FT_OK;
}
