/* attention_mma.cu: causal GQA attention with packed-document masks on the tensor cores with
 * mma.sync (kernels/cuda/mma.cuh), head_dim 64 or 128: the fast path of ft_cuda_attention / _bwd.
 * Same layouts, masks and outputs as attention_tc.cu (WMMA, FT_CUDA_ATTN=wmma) and the SIMT kernels
 * of attention.cu (FT_CUDA_ATTN=simt); all three are tested against the CPU backend.
 *
 * Why a second tensor-core version: the WMMA kernels send every score tile through shared memory
 * (F32) for the softmax, because a WMMA fragment's layout is unspecified; on the H100 the whole
 * attention ran at ~46 TFLOP/s and took 43% of a 70B step (docs/perf.md, 2026-11-23). With
 * mma.sync the accumulator layout is documented, so scores, the online softmax and the
 * probabilities stay in registers (FlashAttention-2), K/V (or Q/dO) tiles stream in with cp.async
 * into two stages while the previous stage is computed, and fragments come from ldmatrix.
 *
 * A block is 4 warps over a 64-row tile, each warp 16 rows; key (or query) tiles are 64 wide.
 *  forward  grid (T/64, H, B), latest query tiles first: per key tile S = Q K^T (Q fragments held in
 *           registers), online softmax in base 2 per row (a row's 64 columns live in the 4 lanes of
 *           a quad, 16 each), O = O*corr + P V. lse = m + log l.
 *  dq       grid (T/64, H, B): per key tile, in two 32-key halves, S = Q K^T, dP = dO V^T,
 *           dS = P (dP - Dl), dq += dS K; times scale at the end.
 *  dk, dv   grid (T/64, Hkv, B), earliest keys (the most work) first: a block owns 64 keys, each
 *           warp 16; for every query head of the group and every query tile at or after the keys,
 *           in two 32-query halves, S^T = K Q^T, dP^T = V dO^T, dv += P^T dO, dk += dS^T Q. The
 *           group's heads are summed in the accumulators: no atomics, deterministic gradients.
 * Shared tiles are [64][D + 8] BF16: the 16-byte pad puts the 8 rows of an ldmatrix in different
 * banks. Streamed tiles are double-buffered: the next one loads while this one is computed. The
 * backward's are 64 rows where the device's shared memory per block holds that (H100: 227 KiB);
 * on GB10 (99 KiB) head_dim 128 would need 104 KiB, so there they are 32 rows (70 KiB: twice the
 * steps and barriers, each step one 32-row half of the compute; single-buffered 64-row tiles, as
 * before, left every step waiting for its tiles from memory).
 * Tiles that every row sees whole (all but the diagonal and document-boundary tiles of a long row)
 * take a mask-free instantiation of the softmax step: counted in the sm_90 SASS, the instructions
 * between a backward half's products fell from ~375 to ~100 (dk/dv) and ~330 to ~70 (dq), a third
 * of them from exp2f's fix-up for results below 2^-126 and from converting BF16 one at a time. */
#include "kernels/cuda/attention.cuh"
#include "kernels/cuda/check.h"
#include "kernels/cuda/mma.cuh"

#include <type_traits> /* std::true_type / false_type: the two instantiations of a softmax step */

static constexpr int FT_AM_WARPS = 4, FT_AM_THREADS = FT_AM_WARPS * FT_WARP, FT_AM_TILE = 64;
#define FT_AM_LOG2E 1.4426950408889634f
#define FT_AM_LN2 0.6931471805599453f

/* dst[ROWS][D + 8] <- rows row0.. of src (row r at src + r * stride), zeros at and after row T;
 * cp.async: the caller commits and waits. */
template <int D, int ROWS = FT_AM_TILE>
__device__ __forceinline__ void ft_am_load(act_t *dst, const act_t *src, int64_t row0, int64_t T, int64_t stride) {
    constexpr int V = D / 8, LD = D + 8;
    for (int e = threadIdx.x; e < ROWS * V; e += FT_AM_THREADS) {
        const int r = e / V, c = e % V;
        const bool ok = row0 + r < T;
        ft_cp_async<16>(dst + r * LD + c * 8, ok ? src + (row0 + r) * stride + c * 8 : src, ok);
    }
}

/* The document bounds of a lane's two rows ia, ib (= w0 + g, w0 + g + 8): lo of each (INT64_MAX
 * past T), the warp's smallest and largest lo, and the block's smallest (syncs the block). */
struct ft_am_bounds {
    int64_t a, b, wmin, wmax, bmin;
};
__device__ __forceinline__ ft_am_bounds ft_am_rows(const int32_t *doc_start, int64_t bt, int64_t T, int64_t ia,
                                                   int64_t ib, unsigned *err) {
    __shared__ int64_t wmin_s[FT_AM_WARPS];
    ft_am_bounds r;
    r.a = ia < T ? ft_at_lo(doc_start, bt + ia, ia, err) : INT64_MAX;
    r.b = ib < T ? ft_at_lo(doc_start, bt + ib, ib, err) : INT64_MAX;
    int64_t mn = r.a < r.b ? r.a : r.b, mx = r.a > r.b ? r.a : r.b;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const int64_t x = __shfl_xor_sync(FT_FULL_MASK, mn, o), y = __shfl_xor_sync(FT_FULL_MASK, mx, o);
        mn = x < mn ? x : mn;
        mx = y > mx ? y : mx;
    }
    r.wmin = mn;
    r.wmax = mx;
    if (threadIdx.x % FT_WARP == 0) wmin_s[threadIdx.x / FT_WARP] = mn;
    __syncthreads();
    r.bmin = INT64_MAX;
#pragma unroll
    for (int w = 0; w < FT_AM_WARPS; w++) r.bmin = wmin_s[w] < r.bmin ? wmin_s[w] : r.bmin;
    return r;
}

__device__ __forceinline__ float ft_am_quad_max(float v) {
    v = fmaxf(v, __shfl_xor_sync(FT_FULL_MASK, v, 1));
    return fmaxf(v, __shfl_xor_sync(FT_FULL_MASK, v, 2));
}
__device__ __forceinline__ float ft_am_quad_sum(float v) {
    v += __shfl_xor_sync(FT_FULL_MASK, v, 1);
    return v + __shfl_xor_sync(FT_FULL_MASK, v, 2);
}

/* The columns of a 64-wide tile starting at c0 that row r (document start lo) sees, as int offsets
 * first..last inside the tile: the masks compare small ints per element instead of int64
 * positions. None when the row is past T (lo is then INT64_MAX). */
struct ft_am_span {
    int first, last;
};
__device__ __forceinline__ ft_am_span ft_am_span_of(int64_t r, int64_t lo, int64_t c0, int64_t T) {
    if (r >= T) return ft_am_span{FT_AM_TILE, -1};
    return ft_am_span{(int)max((int64_t)0, min(lo - c0, (int64_t)FT_AM_TILE)),
                      (int)max((int64_t)-1, min(r - c0, (int64_t)FT_AM_TILE - 1))};
}

/* Writes a lane's part of 16 rows x D from accumulators acc[D/8][4] (rows ia: [0..1], ib: [2..3])
 * times mul, as BF16 pairs. */
template <int D>
__device__ __forceinline__ void ft_am_store(act_t *base_a, act_t *base_b, const float (*acc)[4], float mul_a,
                                            float mul_b) {
    const int t = threadIdx.x % 4;
#pragma unroll
    for (int nd = 0; nd < D / 8; nd++) {
        if (base_a) *(uint32_t *)(base_a + nd * 8 + 2 * t) = ft_pack_bf16(acc[nd][0] * mul_a, acc[nd][1] * mul_a);
        if (base_b) *(uint32_t *)(base_b + nd * 8 + 2 * t) = ft_pack_bf16(acc[nd][2] * mul_b, acc[nd][3] * mul_b);
    }
}

/* ---- forward ---------------------------------------------------------------------------------- */
template <int D>
__global__ void __launch_bounds__(FT_AM_THREADS, 2)
ft_k_attn_fwd_mma(act_t *out, float *lse, const act_t *q, const act_t *k, const act_t *v, const int32_t *doc_start,
                  int64_t T, int64_t H, int64_t Hkv, float scale, unsigned *err) {
    constexpr int LD = D + 8, NK = D / 16, ND = D / 8;
    extern __shared__ __align__(128) float smem[];
    act_t *Qs = (act_t *)smem, *Ks = Qs + FT_AM_TILE * LD, *Vs = Ks + 2 * FT_AM_TILE * LD; /* K, V: 2 stages */
    const int lane = threadIdx.x % FT_WARP, warp = threadIdx.x / FT_WARP, t = lane & 3;
    const int64_t b = blockIdx.z, h = blockIdx.y, kh = h / (H / Hkv);
    const int64_t i0 = (int64_t)(gridDim.x - 1 - blockIdx.x) * FT_AM_TILE; /* latest rows first */
    const int64_t qs = H * D, ks = Hkv * D, w0 = i0 + warp * 16, ia = w0 + (lane >> 2), ib = ia + 8;
    const int64_t wlast = min(T - 1, w0 + 15); /* < w0: the warp has no rows */
    const act_t *kb = k + b * T * ks + kh * D, *vb = v + b * T * ks + kh * D;

    ft_am_load<D>(Qs, q + b * T * qs + h * D, i0, T, qs);
    ft_cp_async_commit();
    const ft_am_bounds lo = ft_am_rows(doc_start, b * T, T, ia, ib, t == 0 ? err : NULL); /* syncs */
    const int64_t jstart = lo.bmin / FT_AM_TILE * FT_AM_TILE, jlast = min(T - 1, i0 + FT_AM_TILE - 1);
    const int ntiles = (int)((jlast - jstart) / FT_AM_TILE) + 1;
    ft_am_load<D>(Ks, kb, jstart, T, ks);
    ft_am_load<D>(Vs, vb, jstart, T, ks);
    ft_cp_async_commit();

    const float sl2 = scale * FT_AM_LOG2E; /* scores in base 2: exp(x) = exp2(x log2 e) */
    float o[ND][4], m_a = -INFINITY, m_b = -INFINITY, l_a = 0.0f, l_b = 0.0f;
#pragma unroll
    for (int n = 0; n < ND; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
    uint32_t qf[NK][4];
    for (int it = 0; it < ntiles; it++) {
        const int64_t jt = jstart + (int64_t)it * FT_AM_TILE;
        if (it + 1 < ntiles) { /* the next tile streams in while this one is computed */
            const int st = (it + 1) & 1;
            ft_am_load<D>(Ks + st * FT_AM_TILE * LD, kb, jt + FT_AM_TILE, T, ks);
            ft_am_load<D>(Vs + st * FT_AM_TILE * LD, vb, jt + FT_AM_TILE, T, ks);
            ft_cp_async_commit();
            ft_cp_async_wait<1>();
        } else {
            ft_cp_async_wait<0>();
        }
        __syncthreads();
        if (it == 0) {
#pragma unroll
            for (int kk = 0; kk < NK; kk++) ft_ldsm_x4(qf[kk], ft_frag_a(Qs, LD, warp * 16, kk * 16));
        }
        const act_t *Kt = Ks + (it & 1) * FT_AM_TILE * LD, *Vt = Vs + (it & 1) * FT_AM_TILE * LD;
        if (w0 < T && jt <= wlast && jt + FT_AM_TILE - 1 >= lo.wmin) { /* warp-uniform */
            float s[8][4];
#pragma unroll
            for (int n = 0; n < 8; n++) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
#pragma unroll
            for (int kk = 0; kk < NK; kk++) {
#pragma unroll
                for (int np = 0; np < 4; np++) {
                    uint32_t kf[4];
                    ft_ldsm_x4(kf, ft_frag_b_nk(Kt, LD, np * 16, kk * 16));
                    ft_mma_bf16(s[2 * np], qf[kk], kf[0], kf[1]);
                    ft_mma_bf16(s[2 * np + 1], qf[kk], kf[2], kf[3]);
                }
            }
            /* every key of the tile visible to every row of the warp: no mask. One branch around
             * the whole mask, not one per element (each cost a BSSY/BRA/BSYNC in every tile). */
            const bool full = jt + FT_AM_TILE - 1 <= w0 && jt >= lo.wmax;
            if (!full) {
                const ft_am_span va = ft_am_span_of(ia, lo.a, jt, T), vb = ft_am_span_of(ib, lo.b, jt, T);
#pragma unroll
                for (int n = 0; n < 8; n++) {
#pragma unroll
                    for (int e = 0; e < 2; e++) {
                        const int c = n * 8 + 2 * t + e;
                        if (!(c >= va.first && c <= va.last)) s[n][e] = -INFINITY;
                        if (!(c >= vb.first && c <= vb.last)) s[n][2 + e] = -INFINITY;
                    }
                }
            }
            float mx_a = -INFINITY, mx_b = -INFINITY;
#pragma unroll
            for (int n = 0; n < 8; n++) {
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    s[n][e] *= sl2;
                    s[n][2 + e] *= sl2;
                    mx_a = fmaxf(mx_a, s[n][e]);
                    mx_b = fmaxf(mx_b, s[n][2 + e]);
                }
            }
            const float mn_a = fmaxf(m_a, ft_am_quad_max(mx_a)), mn_b = fmaxf(m_b, ft_am_quad_max(mx_b));
            /* a row with nothing visible yet keeps p = 0 and its state (no -inf - -inf) */
            const float c_a = mn_a == -INFINITY ? 1.0f : ft_ex2(m_a - mn_a), c_b = mn_b == -INFINITY ? 1.0f : ft_ex2(m_b - mn_b);
            const float z_a = mn_a == -INFINITY ? 0.0f : mn_a, z_b = mn_b == -INFINITY ? 0.0f : mn_b;
            float sum_a = 0.0f, sum_b = 0.0f;
            uint32_t pf[4][4]; /* P as the A fragments of 4 k-steps of 16 keys */
#pragma unroll
            for (int n = 0; n < 8; n++) {
                const float p0 = ft_ex2(s[n][0] - z_a), p1 = ft_ex2(s[n][1] - z_a);
                const float p2 = ft_ex2(s[n][2] - z_b), p3 = ft_ex2(s[n][3] - z_b);
                sum_a += p0 + p1;
                sum_b += p2 + p3;
                ft_c_to_a(pf, n, p0, p1, p2, p3);
            }
            l_a = l_a * c_a + sum_a; /* per lane; the quad's sum is taken at the end */
            l_b = l_b * c_b + sum_b;
            m_a = mn_a;
            m_b = mn_b;
            /* rescale only when some row's maximum moved (exact: the skipped factors are 1); past
             * a row's first tiles it rarely does, and this is ND x 4 multiplies a lane */
            if (__any_sync(FT_FULL_MASK, c_a != 1.0f || c_b != 1.0f)) {
#pragma unroll
                for (int n = 0; n < ND; n++) {
                    o[n][0] *= c_a;
                    o[n][1] *= c_a;
                    o[n][2] *= c_b;
                    o[n][3] *= c_b;
                }
            }
#pragma unroll
            for (int kk = 0; kk < 4; kk++) {
#pragma unroll
                for (int dp = 0; dp < D / 16; dp++) {
                    uint32_t vf[4];
                    ft_ldsm_x4_trans(vf, ft_frag_b_kn(Vt, LD, kk * 16, dp * 16));
                    ft_mma_bf16(o[2 * dp], pf[kk], vf[0], vf[1]);
                    ft_mma_bf16(o[2 * dp + 1], pf[kk], vf[2], vf[3]);
                }
            }
        }
        __syncthreads(); /* this stage is consumed before the next iteration refills it */
    }
    l_a = ft_am_quad_sum(l_a);
    l_b = ft_am_quad_sum(l_b);
    const int64_t ra = b * T + ia, rb = b * T + ib;
    ft_am_store<D>(ia < T ? out + ra * qs + h * D : NULL, ib < T ? out + rb * qs + h * D : NULL, o,
                   1.0f / l_a, 1.0f / l_b);
    if (t == 0) {
        if (ia < T) lse[ra * H + h] = (m_a + log2f(l_a)) * FT_AM_LN2;
        if (ib < T) lse[rb * H + h] = (m_b + log2f(l_b)) * FT_AM_LN2;
    }
}

/* ---- backward: dq ---------------------------------------------------------------------------- */
template <int D, int KT>
__global__ void __launch_bounds__(FT_AM_THREADS, 2)
ft_k_attn_dq_mma(act_t *dq, const act_t *dout, const act_t *q, const act_t *k, const act_t *v, const float *lse,
                 const float *Dl, const int32_t *doc_start, int64_t T, int64_t H, int64_t Hkv, float scale,
                 unsigned *err) {
    constexpr int LD = D + 8, NK = D / 16, ND = D / 8;
    extern __shared__ __align__(128) float smem[];
    act_t *Qs = (act_t *)smem, *Gs = Qs + FT_AM_TILE * LD, *Ks = Gs + FT_AM_TILE * LD, *Vs = Ks + 2 * KT * LD;
    const int lane = threadIdx.x % FT_WARP, warp = threadIdx.x / FT_WARP, t = lane & 3;
    const int64_t b = blockIdx.z, h = blockIdx.y, kh = h / (H / Hkv);
    const int64_t i0 = (int64_t)(gridDim.x - 1 - blockIdx.x) * FT_AM_TILE;
    const int64_t qs = H * D, ks = Hkv * D, w0 = i0 + warp * 16, ia = w0 + (lane >> 2), ib = ia + 8;
    const int64_t wlast = min(T - 1, w0 + 15);
    const act_t *kb = k + b * T * ks + kh * D, *vb = v + b * T * ks + kh * D;

    ft_am_load<D>(Qs, q + b * T * qs + h * D, i0, T, qs);
    ft_am_load<D>(Gs, dout + b * T * qs + h * D, i0, T, qs);
    ft_cp_async_commit();
    const ft_am_bounds lo = ft_am_rows(doc_start, b * T, T, ia, ib, t == 0 ? err : NULL);
    const int64_t jstart = lo.bmin / KT * KT, jlast = min(T - 1, i0 + FT_AM_TILE - 1);
    const int ntiles = (int)((jlast - jstart) / KT) + 1;
    ft_am_load<D, KT>(Ks, kb, jstart, T, ks);
    ft_am_load<D, KT>(Vs, vb, jstart, T, ks);
    ft_cp_async_commit();

    const float sl2 = scale * FT_AM_LOG2E;
    const float L_a = ia < T ? lse[(b * T + ia) * H + h] * FT_AM_LOG2E : 0.0f;
    const float L_b = ib < T ? lse[(b * T + ib) * H + h] * FT_AM_LOG2E : 0.0f;
    const float D_a = ia < T ? Dl[(b * T + ia) * H + h] : 0.0f, D_b = ib < T ? Dl[(b * T + ib) * H + h] : 0.0f;
    float acc[ND][4];
#pragma unroll
    for (int n = 0; n < ND; n++) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;
    uint32_t qf[NK][4];
    for (int it = 0; it < ntiles; it++) {
        const int64_t jt = jstart + (int64_t)it * KT;
        if (it + 1 < ntiles) { /* the next tile streams in while this one is computed */
            const int st = (it + 1) & 1;
            ft_am_load<D, KT>(Ks + st * KT * LD, kb, jt + KT, T, ks);
            ft_am_load<D, KT>(Vs + st * KT * LD, vb, jt + KT, T, ks);
            ft_cp_async_commit();
            ft_cp_async_wait<1>();
        } else {
            ft_cp_async_wait<0>();
        }
        __syncthreads();
        if (it == 0) {
#pragma unroll
            for (int kk = 0; kk < NK; kk++) ft_ldsm_x4(qf[kk], ft_frag_a(Qs, LD, warp * 16, kk * 16));
        }
        const act_t *Kt = Ks + (it & 1) * KT * LD, *Vt = Vs + (it & 1) * KT * LD;
        if (w0 < T && jt <= wlast && jt + KT - 1 >= lo.wmin) {
            const bool full = jt + KT - 1 <= w0 && jt >= lo.wmax;
#pragma unroll
            for (int hh = 0; hh < KT / 32; hh++) { /* 32 keys at a time: fewer live registers */
                float s[4][4], dp[4][4];
#pragma unroll
                for (int n = 0; n < 4; n++) s[n][0] = s[n][1] = s[n][2] = s[n][3] = dp[n][0] = dp[n][1] = dp[n][2] = dp[n][3] = 0.0f;
#pragma unroll
                for (int kk = 0; kk < NK; kk++) {
                    uint32_t gf[4];
                    ft_ldsm_x4(gf, ft_frag_a(Gs, LD, warp * 16, kk * 16));
#pragma unroll
                    for (int np = 0; np < 2; np++) {
                        uint32_t kf[4], vf[4];
                        ft_ldsm_x4(kf, ft_frag_b_nk(Kt, LD, hh * 32 + np * 16, kk * 16));
                        ft_ldsm_x4(vf, ft_frag_b_nk(Vt, LD, hh * 32 + np * 16, kk * 16));
                        ft_mma_bf16(s[2 * np], qf[kk], kf[0], kf[1]);
                        ft_mma_bf16(s[2 * np + 1], qf[kk], kf[2], kf[3]);
                        ft_mma_bf16(dp[2 * np], gf, vf[0], vf[1]);
                        ft_mma_bf16(dp[2 * np + 1], gf, vf[2], vf[3]);
                    }
                }
                uint32_t df[2][4]; /* dS as the A fragments of 2 k-steps of 16 keys */
                auto probs = [&](auto masked) { /* the mask only where a tile needs it (dk/dv's note) */
                    ft_am_span va{0, 0}, vb{0, 0};
                    if (decltype(masked)::value) {
                        va = ft_am_span_of(ia, lo.a, jt, T);
                        vb = ft_am_span_of(ib, lo.b, jt, T);
                    }
#pragma unroll
                    for (int n = 0; n < 4; n++) {
                        float ds[4];
#pragma unroll
                        for (int e = 0; e < 2; e++) {
                            float pa = ft_ex2(s[n][e] * sl2 - L_a), pb = ft_ex2(s[n][2 + e] * sl2 - L_b);
                            if (decltype(masked)::value) { /* inf past the mask is selected away */
                                const int c = hh * 32 + n * 8 + 2 * t + e;
                                if (!(c >= va.first && c <= va.last)) pa = 0.0f;
                                if (!(c >= vb.first && c <= vb.last)) pb = 0.0f;
                            }
                            ds[e] = pa * (dp[n][e] - D_a);
                            ds[2 + e] = pb * (dp[n][2 + e] - D_b);
                        }
                        ft_c_to_a(df, n, ds[0], ds[1], ds[2], ds[3]);
                    }
                };
                if (full) probs(std::false_type{});
                else probs(std::true_type{});
#pragma unroll
                for (int kk = 0; kk < 2; kk++) {
#pragma unroll
                    for (int dp2 = 0; dp2 < D / 16; dp2++) {
                        uint32_t kf[4];
                        ft_ldsm_x4_trans(kf, ft_frag_b_kn(Kt, LD, hh * 32 + kk * 16, dp2 * 16));
                        ft_mma_bf16(acc[2 * dp2], df[kk], kf[0], kf[1]);
                        ft_mma_bf16(acc[2 * dp2 + 1], df[kk], kf[2], kf[3]);
                    }
                }
            }
        }
        __syncthreads();
    }
    ft_am_store<D>(ia < T ? dq + (b * T + ia) * qs + h * D : NULL, ib < T ? dq + (b * T + ib) * qs + h * D : NULL, acc,
                   scale, scale);
}

/* ---- backward: dk, dv ------------------------------------------------------------------------ */
template <int D, int QT>
__global__ void __launch_bounds__(FT_AM_THREADS, 2)
ft_k_attn_dkv_mma(act_t *dk, act_t *dv, const act_t *dout, const act_t *q, const act_t *k, const act_t *v,
                  const float *lse, const float *Dl, const int32_t *doc_start, int64_t T, int64_t H, int64_t Hkv,
                  float scale) {
    constexpr int LD = D + 8, NK = D / 16, ND = D / 8;
    extern __shared__ __align__(128) float smem[];
    act_t *Kb = (act_t *)smem, *Vb = Kb + FT_AM_TILE * LD, *Qs = Vb + FT_AM_TILE * LD, *Gs = Qs + 2 * QT * LD;
    /* per query of a streamed tile: lse, Dl and the raw doc_start ([2][QT] each) */
    float *Ls = (float *)(Gs + 2 * QT * LD), *Ds = Ls + 2 * QT;
    int32_t *LOs = (int32_t *)(Ds + 2 * QT);
    const int lane = threadIdx.x % FT_WARP, warp = threadIdx.x / FT_WARP, t = lane & 3;
    const int64_t b = blockIdx.z, kh = blockIdx.y, j0 = (int64_t)blockIdx.x * FT_AM_TILE, grp = H / Hkv;
    const int64_t qs = H * D, ks = Hkv * D, wj0 = j0 + warp * 16, ja = wj0 + (lane >> 2), jb = ja + 8;
    const int64_t wj1 = min(T - 1, wj0 + 15);
    const float sl2 = scale * FT_AM_LOG2E;
    const int64_t ntq = ft_cdiv(T - j0, QT), total = grp * ntq; /* (head, query tile) steps */

    ft_am_load<D>(Kb, k + b * T * ks + kh * D, j0, T, ks);
    ft_am_load<D>(Vb, v + b * T * ks + kh * D, j0, T, ks);
    if (!doc_start && threadIdx.x < 2 * QT) LOs[threadIdx.x] = 0;
    /* step n: query head kh * grp + n / ntq, query tile j0 + (n % ntq) * QT, into stage st. The
     * per-query scalars come by cp.async too: a plain load here would hold warps 0-1 for a
     * global-memory latency at every step, and the block with them at the step's barrier. */
    auto issue = [&](int64_t n, int st) {
        const int64_t h = kh * grp + n / ntq, it = j0 + (n % ntq) * QT;
        ft_am_load<D, QT>(Qs + st * QT * LD, q + b * T * qs + h * D, it, T, qs);
        ft_am_load<D, QT>(Gs + st * QT * LD, dout + b * T * qs + h * D, it, T, qs);
        if (threadIdx.x < QT) {
            const int64_t iq = it + threadIdx.x, row = b * T + (iq < T ? iq : 0); /* zeros past T */
            ft_cp_async<4>(Ls + st * QT + threadIdx.x, lse + row * H + h, iq < T);
            ft_cp_async<4>(Ds + st * QT + threadIdx.x, Dl + row * H + h, iq < T);
            /* unclamped: the dq kernel validates the same rows and fails the call on a bad one;
             * here a bad value only changes which products are skipped */
            if (doc_start) ft_cp_async<4>(LOs + st * QT + threadIdx.x, doc_start + row, iq < T);
        }
    };
    issue(0, 0);
    ft_cp_async_commit();
    float ak[ND][4], av[ND][4];
#pragma unroll
    for (int n = 0; n < ND; n++) ak[n][0] = ak[n][1] = ak[n][2] = ak[n][3] = av[n][0] = av[n][1] = av[n][2] = av[n][3] = 0.0f;
    for (int64_t n = 0; n < total; n++) {
        if (n + 1 < total) { /* the next step's tiles stream in while this one is computed */
            issue(n + 1, (int)((n + 1) & 1));
            ft_cp_async_commit();
            ft_cp_async_wait<1>();
        } else {
            ft_cp_async_wait<0>();
        }
        __syncthreads();
        const int st = (int)(n & 1);
        const int64_t it = j0 + (n % ntq) * QT;
        const act_t *Qt = Qs + st * QT * LD, *Gt = Gs + st * QT * LD;
        const float *Lt = Ls + st * QT, *Dt = Ds + st * QT;
        const int32_t *LOt = LOs + st * QT;
        /* skip the tile when no query in it sees any of the warp's keys (warp-uniform); a lane
         * checks queries lane and lane + 32 */
        const int64_t qa = it + lane, qb = it + lane + 32;
        const bool va = qa < T && qa >= wj0 && LOt[lane] <= wj1;
        const bool vb = QT > 32 && qb < T && qb >= wj0 && LOt[(lane + 32) % QT] <= wj1;
        /* every query of the tile sees every key of the warp (the common case of long causal
         * sequences): no per-element mask */
        const bool full = it >= wj1 && it + QT <= T && wj1 == wj0 + 15 &&
                          !__any_sync(FT_FULL_MASK, LOt[lane] > wj0 || LOt[(lane + 32) % QT] > wj0);
        if (wj0 < T && __any_sync(FT_FULL_MASK, va || vb)) {
#pragma unroll
            for (int qh = 0; qh < QT / 32; qh++) { /* 32 queries at a time */
                float s[4][4], dp[4][4];
#pragma unroll
                for (int n4 = 0; n4 < 4; n4++) s[n4][0] = s[n4][1] = s[n4][2] = s[n4][3] = dp[n4][0] = dp[n4][1] = dp[n4][2] = dp[n4][3] = 0.0f;
#pragma unroll
                for (int kk = 0; kk < NK; kk++) {
                    uint32_t kf[4], vf[4];
                    ft_ldsm_x4(kf, ft_frag_a(Kb, LD, warp * 16, kk * 16));
                    ft_ldsm_x4(vf, ft_frag_a(Vb, LD, warp * 16, kk * 16));
#pragma unroll
                    for (int np = 0; np < 2; np++) {
                        uint32_t qf[4], gf[4];
                        ft_ldsm_x4(qf, ft_frag_b_nk(Qt, LD, qh * 32 + np * 16, kk * 16));
                        ft_ldsm_x4(gf, ft_frag_b_nk(Gt, LD, qh * 32 + np * 16, kk * 16));
                        ft_mma_bf16(s[2 * np], kf, qf[0], qf[1]);
                        ft_mma_bf16(s[2 * np + 1], kf, qf[2], qf[3]);
                        ft_mma_bf16(dp[2 * np], vf, gf[0], gf[1]);
                        ft_mma_bf16(dp[2 * np + 1], vf, gf[2], gf[3]);
                    }
                }
                uint32_t pf[2][4], df[2][4]; /* P^T, dS^T: A fragments of 2 k-steps of 16 queries */
                /* P and dS; the mask is a second instantiation, taken only for a tile that needs
                 * it: computed and selected per element it was ~2/3 of the instructions between
                 * the products in every tile (int64 compares), masked or not */
                auto probs = [&](auto masked) {
                    /* key ja sees query column c when c >= fa (at or after the key), c < qn (before
                     * T) and its document starts at or before the key (positions fit int32, as
                     * doc_start's do) */
                    int fa = 0, fb = 0, qn = 0, ja32 = 0, jb32 = 0;
                    if (decltype(masked)::value) {
                        fa = ja < T ? (int)max((int64_t)0, min(ja - it, (int64_t)QT)) : QT;
                        fb = jb < T ? (int)max((int64_t)0, min(jb - it, (int64_t)QT)) : QT;
                        qn = (int)min(T - it, (int64_t)QT);
                        ja32 = (int)min(ja, (int64_t)INT32_MAX);
                        jb32 = (int)min(jb, (int64_t)INT32_MAX);
                    }
#pragma unroll
                    for (int n4 = 0; n4 < 4; n4++) {
                        const int c0 = qh * 32 + n4 * 8 + 2 * t; /* this lane's 2 queries */
                        const float2 L2 = *(const float2 *)(Lt + c0), D2 = *(const float2 *)(Dt + c0);
                        float p[4], ds[4];
#pragma unroll
                        for (int e = 0; e < 2; e++) {
                            const float L = (e ? L2.y : L2.x) * FT_AM_LOG2E, Dd = e ? D2.y : D2.x;
                            p[e] = ft_ex2(s[n4][e] * sl2 - L);
                            p[2 + e] = ft_ex2(s[n4][2 + e] * sl2 - L);
                            if (decltype(masked)::value) { /* inf past the mask is selected away */
                                const int c = c0 + e, lq = LOt[c];
                                if (!(c >= fa && c < qn && lq <= ja32)) p[e] = 0.0f;
                                if (!(c >= fb && c < qn && lq <= jb32)) p[2 + e] = 0.0f;
                            }
                            ds[e] = p[e] * (dp[n4][e] - Dd);
                            ds[2 + e] = p[2 + e] * (dp[n4][2 + e] - Dd);
                        }
                        ft_c_to_a(pf, n4, p[0], p[1], p[2], p[3]);
                        ft_c_to_a(df, n4, ds[0], ds[1], ds[2], ds[3]);
                    }
                };
                if (full) probs(std::false_type{});
                else probs(std::true_type{});
#pragma unroll
                for (int kk = 0; kk < 2; kk++) {
#pragma unroll
                    for (int dp2 = 0; dp2 < D / 16; dp2++) {
                        uint32_t gf[4], qf[4];
                        ft_ldsm_x4_trans(gf, ft_frag_b_kn(Gt, LD, qh * 32 + kk * 16, dp2 * 16));
                        ft_ldsm_x4_trans(qf, ft_frag_b_kn(Qt, LD, qh * 32 + kk * 16, dp2 * 16));
                        ft_mma_bf16(av[2 * dp2], pf[kk], gf[0], gf[1]);
                        ft_mma_bf16(av[2 * dp2 + 1], pf[kk], gf[2], gf[3]);
                        ft_mma_bf16(ak[2 * dp2], df[kk], qf[0], qf[1]);
                        ft_mma_bf16(ak[2 * dp2 + 1], df[kk], qf[2], qf[3]);
                    }
                }
            }
        }
        __syncthreads();
    }
    const int64_t ra = b * T + ja, rb = b * T + jb;
    ft_am_store<D>(ja < T ? dk + ra * ks + kh * D : NULL, jb < T ? dk + rb * ks + kh * D : NULL, ak, scale, scale);
    ft_am_store<D>(ja < T ? dv + ra * ks + kh * D : NULL, jb < T ? dv + rb * ks + kh * D : NULL, av, 1.0f, 1.0f);
}

/* ---- launchers ------------------------------------------------------------------------------- */

/* Dynamic shared memory of each kernel (bytes), from the carve-ups above, with the backward's
 * streamed tiles `rows` high (64; 32 where a block's shared memory does not hold 64, GB10). */
static size_t ft_am_smem(int64_t D, int kernel, int rows) {
    const size_t tile = 2 * FT_AM_TILE * ((size_t)D + 8), streamed = 2 * (size_t)rows * ((size_t)D + 8);
    switch (kernel) {
    case 0: return 5 * tile;                                           /* fwd: Q, 2 x (K, V) */
    case 1: return 2 * tile + 4 * streamed;                            /* dq: Q, dO, 2 x (K, V) */
    default: return 2 * tile + 4 * streamed + 2 * (size_t)rows * 12; /* dkv: K, V, 2 x (Q, dO, L, D, lo) */
    }
}

/* The backward's streamed tile height on this device (0: the kernels do not fit); FT_CUDA_ATTN=mma32
 * takes GB10's 32 rows anywhere, so an H100 run can check that layout too (tests/gpu/run.sh ops). */
static int ft_am_bwd_rows(const ft_backend_cuda *b, int64_t D) {
    for (int rows = b->attn_rows32 ? 32 : FT_AM_TILE; rows >= 32; rows /= 2)
        if (ft_am_smem(D, 1, rows) <= b->smem_optin && ft_am_smem(D, 2, rows) <= b->smem_optin) return rows;
    return 0;
}

int ft_attn_mma_ok(ft_backend_cuda *b, int64_t D, const void *const *ptrs, int nptrs, int bwd) {
    if (b->attn_simt || b->attn_wmma || (D != 64 && D != 128)) return 0;
    for (int i = 0; i < nptrs; i++)
        if (ptrs[i] && ((uintptr_t)ptrs[i] & 15u)) return 0;
    return bwd ? ft_am_bwd_rows(b, D) > 0 : ft_am_smem(D, 0, FT_AM_TILE) <= b->smem_optin;
}

#define FT_AM_LAUNCH1(k, grid, smem, stream, ...)                                                    \
    do {                                                                                             \
        FT_CUDA_TRY(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)(smem))); \
        k<<<grid, FT_AM_THREADS, smem, stream>>>(__VA_ARGS__);                                        \
    } while (0)

ft_status ft_attn_mma_fwd(ft_backend_cuda *b, act_t *out, float *lse, const act_t *q, const act_t *k,
                          const act_t *v, const int32_t *doc_start, int64_t B, int64_t T, int64_t H, int64_t Hkv,
                          int64_t D, float scale) {
    const dim3 grid((unsigned)ft_cdiv(T, FT_AM_TILE), (unsigned)H, (unsigned)B);
    const size_t smem = ft_am_smem(D, 0, FT_AM_TILE);
    if (D == 64) FT_AM_LAUNCH1(ft_k_attn_fwd_mma<64>, grid, smem, b->stream, out, lse, q, k, v, doc_start, T, H, Hkv, scale, b->err);
    else FT_AM_LAUNCH1(ft_k_attn_fwd_mma<128>, grid, smem, b->stream, out, lse, q, k, v, doc_start, T, H, Hkv, scale, b->err);
    FT_CUDA_LAUNCH_TRY("ft_k_attn_fwd_mma");
    return FT_OK;
}

/* dq, then dk/dv, as kern<D, ROWS> (through pointers: a template's comma cannot pass through a macro). */
#define FT_AM_BWD(D_, R_)                                                                            \
    do {                                                                                             \
        auto kq = ft_k_attn_dq_mma<D_, R_>;                                                          \
        auto kkv = ft_k_attn_dkv_mma<D_, R_>;                                                        \
        FT_AM_LAUNCH1(kq, gq, ft_am_smem(D_, 1, R_), b->stream, dq, dout, q, k, v, lse, Dl, doc_start, T, H, Hkv, \
                      scale, b->err);                                                                \
        FT_CUDA_LAUNCH_TRY("ft_k_attn_dq_mma");                                                      \
        FT_AM_LAUNCH1(kkv, gkv, ft_am_smem(D_, 2, R_), b->stream, dk, dv, dout, q, k, v, lse, Dl, doc_start, T, H, \
                      Hkv, scale);                                                                   \
        FT_CUDA_LAUNCH_TRY("ft_k_attn_dkv_mma");                                                     \
    } while (0)

ft_status ft_attn_mma_bwd(ft_backend_cuda *b, act_t *dq, act_t *dk, act_t *dv, const act_t *dout, const act_t *q,
                          const act_t *k, const act_t *v, const float *lse, const float *Dl,
                          const int32_t *doc_start, int64_t B, int64_t T, int64_t H, int64_t Hkv, int64_t D,
                          float scale) {
    const dim3 gq((unsigned)ft_cdiv(T, FT_AM_TILE), (unsigned)H, (unsigned)B);
    const dim3 gkv((unsigned)ft_cdiv(T, FT_AM_TILE), (unsigned)Hkv, (unsigned)B);
    const int rows = ft_am_bwd_rows(b, D);
    if (D == 64 && rows == FT_AM_TILE) FT_AM_BWD(64, 64);
    else if (D == 64) FT_AM_BWD(64, 32);
    else if (rows == FT_AM_TILE) FT_AM_BWD(128, 64);
    else FT_AM_BWD(128, 32);
    return FT_OK;
}
