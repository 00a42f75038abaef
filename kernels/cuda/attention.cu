/* attention.cu: causal grouped-query attention with packed-document masks, forward and backward,
 * flash-style (scores never leave the chip), float32 softmax and accumulation over BF16 inputs.
 *
 * Layouts (ops.h): q[N, H*D], k and v [N, Hkv*D], out[N, H*D] BF16, N = B*T token-major; query head h
 * reads kv head h / (H/Hkv). Query i of row b sees keys j of that row with lo(i) <= j <= i,
 * lo(i) = doc_start[b*T + i] (0 when doc_start is NULL). lse[N, H] f32 = log-sum-exp of the scaled
 * scores. A doc_start outside [0, i] raises FT_CUERR_DOC_START (reported by ft_backend_sync) and is
 * clamped, so the kernels never read out of bounds.
 *
 * The op entries at the end take the tensor-core kernels for head_dim 64 and 128 (aligned tensors):
 * those of attention_mma.cu (mma.sync, softmax in registers), else, where their shared memory does
 * not fit or under FT_CUDA_ATTN=wmma, those of attention_tc.cu (WMMA); never under
 * FT_CUDA_ATTN=simt. The SIMT kernels here serve any head_dim
 * D <= 256 (template DPL = head-dim values per lane: D <= 32 * DPL): the fallback for every other
 * shape and the cross-check of the fast path. Under FT_CUDA_ATTN=cudnn, cuDNN's fused attention
 * (attention_cudnn.cu) takes the plain causal calls it serves first.
 *
 * Work split (8 warps per block, 4 rows per warp, key/query tiles of 32 in shared memory):
 *  forward  grid (T/32, H, B): each warp owns 4 query rows; for a key tile, lane L scores key L
 *           against the 4 rows (one pass over K), online softmax per row with warp max/sum, then
 *           acc[d] += p_j v_j[d] with lanes over d (p_j broadcast by shuffle).
 *  backward three kernels, no atomics, so gradients are deterministic:
 *    Dl[N,H] = rowsum(dout * out);
 *    dq  grid (T/32, H, B): as the forward, P from lse, dS = P (dout.v - Dl), dq += dS k;
 *    dk,dv grid (T/32, Hkv, B): each warp owns 4 key rows; for every query head of the group and
 *           every query tile at or after the keys, lane L takes query L: P and dS as above, then
 *           dv += P dout_i and dk += dS q_i with lanes over d. */
#include "kernels/cuda/attention.cuh"
#include "kernels/cuda/check.h"

enum { FT_AT_WARPS = 8, FT_AT_ROWS = 4, FT_AT_BQ = FT_AT_WARPS * FT_AT_ROWS, FT_AT_BK = 32 };

/* acc[r][.] += sum over the tile's 32 keys jj of c[r] of lane jj (a warp-wide shuffle) times
 * row jj of X (shared memory, pitch ld, D values, lanes over d): the P.V product of the forward and
 * the dS.K product of dq, for the warp's FT_AT_ROWS rows. */
template <int DPL>
__device__ __forceinline__ void ft_at_accumulate_rows(float (&acc)[FT_AT_ROWS][DPL], const float (&c)[FT_AT_ROWS],
                                                      const float *X, int64_t ld, int64_t D, int lane) {
    for (int jj = 0; jj < FT_AT_BK; jj++) {
        float xt[DPL];
#pragma unroll
        for (int t = 0; t < DPL; t++) {
            const int64_t d = lane + FT_WARP * t;
            xt[t] = d < D ? X[jj * ld + d] : 0.0f;
        }
#pragma unroll
        for (int r = 0; r < FT_AT_ROWS; r++) {
            const float cj = __shfl_sync(FT_FULL_MASK, c[r], jj);
#pragma unroll
            for (int t = 0; t < DPL; t++) acc[r][t] += cj * xt[t];
        }
    }
}

/* ---- forward ---------------------------------------------------------------------------------- */
template <int DPL>
__global__ void __launch_bounds__(FT_AT_WARPS * FT_WARP)
ft_k_attn_fwd(act_t *out, float *lse, const act_t *q, const act_t *k, const act_t *v, const int32_t *doc_start,
              int64_t T, int64_t H, int64_t Hkv, int64_t D, float scale, unsigned *err) {
    extern __shared__ float smem[];
    float *Qs = smem;                   /* [BQ][D] */
    float *Ks = Qs + FT_AT_BQ * D;      /* [BK][D+1] */
    float *Vs = Ks + FT_AT_BK * (D + 1);/* [BK][D] */
    __shared__ int64_t jmin_s;
    const int lane = threadIdx.x % FT_WARP, warp = threadIdx.x / FT_WARP;
    const int64_t b = blockIdx.z, h = blockIdx.y, kh = h / (H / Hkv), i0 = (int64_t)blockIdx.x * FT_AT_BQ;
    const int64_t qs = H * D, ks = Hkv * D;
    const act_t *kb = k + b * T * ks + kh * D, *vb = v + b * T * ks + kh * D;

    if (threadIdx.x == 0) jmin_s = INT64_MAX;
    for (int e = threadIdx.x; e < FT_AT_BQ * D; e += blockDim.x) {
        const int64_t r = e / D, d = e % D, i = i0 + r;
        Qs[e] = i < T ? ft_ld(q, (b * T + i) * qs + h * D + d) : 0.0f;
    }
    __syncthreads();
    int64_t lo[FT_AT_ROWS], ii[FT_AT_ROWS];
    float m[FT_AT_ROWS], l[FT_AT_ROWS], acc[FT_AT_ROWS][DPL];
    int64_t wlo = INT64_MAX, whi = -1; /* the warp's key range */
#pragma unroll
    for (int r = 0; r < FT_AT_ROWS; r++) {
        ii[r] = i0 + warp * FT_AT_ROWS + r;
        lo[r] = ii[r] < T ? ft_at_lo(doc_start, b * T + ii[r], ii[r], lane == 0 ? err : NULL) : INT64_MAX;
        if (ii[r] < T) {
            wlo = min(wlo, lo[r]);
            whi = ii[r];
        }
        m[r] = -INFINITY;
        l[r] = 0.0f;
#pragma unroll
        for (int t = 0; t < DPL; t++) acc[r][t] = 0.0f;
    }
    if (lane == 0 && whi >= 0) atomicMin((unsigned long long *)&jmin_s, (unsigned long long)wlo);
    __syncthreads();
    const int64_t jlast = min(T - 1, i0 + FT_AT_BQ - 1);
    for (int64_t jt = jmin_s / FT_AT_BK * FT_AT_BK; jt <= jlast; jt += FT_AT_BK) {
        for (int e = threadIdx.x; e < FT_AT_BK * D; e += blockDim.x) {
            const int64_t jj = e / D, d = e % D, j = jt + jj;
            Ks[jj * (D + 1) + d] = j < T ? ft_ld(kb, j * ks + d) : 0.0f;
            Vs[jj * D + d] = j < T ? ft_ld(vb, j * ks + d) : 0.0f;
        }
        __syncthreads();
        if (whi >= jt && wlo <= jt + FT_AT_BK - 1) { /* warp-uniform: some row sees some key of the tile */
            const int64_t j = jt + lane;
            float s[FT_AT_ROWS] = {0.0f};
            for (int d = 0; d < (int)D; d++) {
                const float kd = Ks[lane * (D + 1) + d];
#pragma unroll
                for (int r = 0; r < FT_AT_ROWS; r++) s[r] += Qs[(warp * FT_AT_ROWS + r) * D + d] * kd;
            }
            float p[FT_AT_ROWS];
#pragma unroll
            for (int r = 0; r < FT_AT_ROWS; r++) {
                const bool ok = ii[r] < T && j <= ii[r] && j >= lo[r];
                const float sv = ok ? s[r] * scale : -INFINITY;
                const float mn = fmaxf(m[r], ft_warp_max(sv));
                if (mn == -INFINITY) { /* nothing visible yet for this row */
                    p[r] = 0.0f;
                    continue;
                }
                const float corr = expf(m[r] - mn); /* m = -inf: 0 */
                p[r] = ok ? expf(sv - mn) : 0.0f;
                l[r] = l[r] * corr + ft_warp_sum(p[r]);
                m[r] = mn;
#pragma unroll
                for (int t = 0; t < DPL; t++) acc[r][t] *= corr;
            }
            ft_at_accumulate_rows<DPL>(acc, p, Vs, D, D, lane);
        }
        __syncthreads();
    }
#pragma unroll
    for (int r = 0; r < FT_AT_ROWS; r++) {
        if (ii[r] >= T) continue;
        const int64_t row = b * T + ii[r];
        const float inv = 1.0f / l[r];
#pragma unroll
        for (int t = 0; t < DPL; t++) {
            const int64_t d = lane + FT_WARP * t;
            if (d < D) ft_st(out, row * qs + h * D + d, acc[r][t] * inv);
        }
        if (lane == 0) lse[row * H + h] = m[r] + logf(l[r]);
    }
}

/* ---- backward ---------------------------------------------------------------------------------- */

/* Dl[row, h] = dout[row, h, :] . out[row, h, :], one warp per (row, h). */
__global__ void ft_k_attn_dl(float *Dl, const act_t *dout, const act_t *out, int64_t NH, int64_t D) {
    const int lane = threadIdx.x % FT_WARP;
    const int64_t wpb = blockDim.x / FT_WARP;
    for (int64_t rh = (int64_t)blockIdx.x * wpb + threadIdx.x / FT_WARP; rh < NH; rh += (int64_t)gridDim.x * wpb) {
        float s = 0.0f;
        for (int64_t d = lane; d < D; d += FT_WARP) s += ft_ld(dout, rh * D + d) * ft_ld(out, rh * D + d);
        s = ft_warp_sum(s);
        if (lane == 0) Dl[rh] = s;
    }
}

template <int DPL>
__global__ void __launch_bounds__(FT_AT_WARPS * FT_WARP)
ft_k_attn_dq(act_t *dq, const act_t *dout, const act_t *q, const act_t *k, const act_t *v, const float *lse,
             const float *Dl, const int32_t *doc_start, int64_t T, int64_t H, int64_t Hkv, int64_t D, float scale,
             unsigned *err) {
    extern __shared__ float smem[];
    float *Qs = smem;                    /* [BQ][D] */
    float *Gs = Qs + FT_AT_BQ * D;       /* [BQ][D] dout */
    float *Ks = Gs + FT_AT_BQ * D;       /* [BK][D+1] */
    float *Vs = Ks + FT_AT_BK * (D + 1); /* [BK][D+1] */
    __shared__ int64_t jmin_s;
    const int lane = threadIdx.x % FT_WARP, warp = threadIdx.x / FT_WARP;
    const int64_t b = blockIdx.z, h = blockIdx.y, kh = h / (H / Hkv), i0 = (int64_t)blockIdx.x * FT_AT_BQ;
    const int64_t qs = H * D, ks = Hkv * D;
    const act_t *kb = k + b * T * ks + kh * D, *vb = v + b * T * ks + kh * D;

    if (threadIdx.x == 0) jmin_s = INT64_MAX;
    for (int e = threadIdx.x; e < FT_AT_BQ * D; e += blockDim.x) {
        const int64_t r = e / D, d = e % D, i = i0 + r;
        Qs[e] = i < T ? ft_ld(q, (b * T + i) * qs + h * D + d) : 0.0f;
        Gs[e] = i < T ? ft_ld(dout, (b * T + i) * qs + h * D + d) : 0.0f;
    }
    __syncthreads();
    int64_t lo[FT_AT_ROWS], ii[FT_AT_ROWS];
    float L[FT_AT_ROWS], Dr[FT_AT_ROWS], acc[FT_AT_ROWS][DPL];
    int64_t wlo = INT64_MAX, whi = -1;
#pragma unroll
    for (int r = 0; r < FT_AT_ROWS; r++) {
        ii[r] = i0 + warp * FT_AT_ROWS + r;
        const bool in = ii[r] < T;
        lo[r] = in ? ft_at_lo(doc_start, b * T + ii[r], ii[r], lane == 0 ? err : NULL) : INT64_MAX;
        L[r] = in ? lse[(b * T + ii[r]) * H + h] : 0.0f;
        Dr[r] = in ? Dl[(b * T + ii[r]) * H + h] : 0.0f;
        if (in) {
            wlo = min(wlo, lo[r]);
            whi = ii[r];
        }
#pragma unroll
        for (int t = 0; t < DPL; t++) acc[r][t] = 0.0f;
    }
    if (lane == 0 && whi >= 0) atomicMin((unsigned long long *)&jmin_s, (unsigned long long)wlo);
    __syncthreads();
    const int64_t jlast = min(T - 1, i0 + FT_AT_BQ - 1);
    for (int64_t jt = jmin_s / FT_AT_BK * FT_AT_BK; jt <= jlast; jt += FT_AT_BK) {
        for (int e = threadIdx.x; e < FT_AT_BK * D; e += blockDim.x) {
            const int64_t jj = e / D, d = e % D, j = jt + jj;
            Ks[jj * (D + 1) + d] = j < T ? ft_ld(kb, j * ks + d) : 0.0f;
            Vs[jj * (D + 1) + d] = j < T ? ft_ld(vb, j * ks + d) : 0.0f;
        }
        __syncthreads();
        if (whi >= jt && wlo <= jt + FT_AT_BK - 1) {
            const int64_t j = jt + lane;
            float s[FT_AT_ROWS] = {0.0f}, dp[FT_AT_ROWS] = {0.0f};
            for (int d = 0; d < (int)D; d++) {
                const float kd = Ks[lane * (D + 1) + d], vd = Vs[lane * (D + 1) + d];
#pragma unroll
                for (int r = 0; r < FT_AT_ROWS; r++) {
                    s[r] += Qs[(warp * FT_AT_ROWS + r) * D + d] * kd;
                    dp[r] += Gs[(warp * FT_AT_ROWS + r) * D + d] * vd;
                }
            }
            float ds[FT_AT_ROWS];
#pragma unroll
            for (int r = 0; r < FT_AT_ROWS; r++) {
                const bool ok = ii[r] < T && j <= ii[r] && j >= lo[r];
                const float p = ok ? expf(s[r] * scale - L[r]) : 0.0f;
                ds[r] = p * (dp[r] - Dr[r]);
            }
            ft_at_accumulate_rows<DPL>(acc, ds, Ks, D + 1, D, lane);
        }
        __syncthreads();
    }
#pragma unroll
    for (int r = 0; r < FT_AT_ROWS; r++) {
        if (ii[r] >= T) continue;
        const int64_t row = b * T + ii[r];
#pragma unroll
        for (int t = 0; t < DPL; t++) {
            const int64_t d = lane + FT_WARP * t;
            if (d < D) ft_st(dq, row * qs + h * D + d, acc[r][t] * scale);
        }
    }
}

template <int DPL>
__global__ void __launch_bounds__(FT_AT_WARPS * FT_WARP)
ft_k_attn_dkv(act_t *dk, act_t *dv, const act_t *dout, const act_t *q, const act_t *k, const act_t *v,
              const float *lse, const float *Dl, const int32_t *doc_start, int64_t T, int64_t H, int64_t Hkv,
              int64_t D, float scale, unsigned *err) {
    extern __shared__ float smem[];
    float *Kb = smem;                    /* [32][D] the block's keys */
    float *Vb = Kb + FT_AT_BK * D;       /* [32][D] */
    float *Qs = Vb + FT_AT_BK * D;       /* [32][D+1] a query tile */
    float *Gs = Qs + FT_AT_BQ * (D + 1); /* [32][D+1] its dout */
    __shared__ float Ls[FT_AT_BQ], Ds[FT_AT_BQ];
    __shared__ int64_t LOs[FT_AT_BQ];
    const int lane = threadIdx.x % FT_WARP, warp = threadIdx.x / FT_WARP;
    const int64_t b = blockIdx.z, kh = blockIdx.y, j0 = (int64_t)blockIdx.x * FT_AT_BK, grp = H / Hkv;
    const int64_t qs = H * D, ks = Hkv * D;

    for (int e = threadIdx.x; e < FT_AT_BK * D; e += blockDim.x) {
        const int64_t jj = e / D, d = e % D, j = j0 + jj;
        Kb[e] = j < T ? ft_ld(k, (b * T + j) * ks + kh * D + d) : 0.0f;
        Vb[e] = j < T ? ft_ld(v, (b * T + j) * ks + kh * D + d) : 0.0f;
    }
    int64_t jr[FT_AT_ROWS];
    float ak[FT_AT_ROWS][DPL], av[FT_AT_ROWS][DPL];
#pragma unroll
    for (int r = 0; r < FT_AT_ROWS; r++) {
        jr[r] = j0 + warp * FT_AT_ROWS + r;
#pragma unroll
        for (int t = 0; t < DPL; t++) ak[r][t] = av[r][t] = 0.0f;
    }
    const int64_t wj0 = j0 + warp * FT_AT_ROWS, wj1 = min(T - 1, wj0 + FT_AT_ROWS - 1); /* the warp's keys */
    for (int64_t h = kh * grp; h < (kh + 1) * grp; h++) {
        for (int64_t it = j0 / FT_AT_BQ * FT_AT_BQ; it < T; it += FT_AT_BQ) {
            __syncthreads(); /* the previous tile is consumed */
            for (int e = threadIdx.x; e < FT_AT_BQ * D; e += blockDim.x) {
                const int64_t r = e / D, d = e % D, i = it + r;
                Qs[r * (D + 1) + d] = i < T ? ft_ld(q, (b * T + i) * qs + h * D + d) : 0.0f;
                Gs[r * (D + 1) + d] = i < T ? ft_ld(dout, (b * T + i) * qs + h * D + d) : 0.0f;
            }
            if (threadIdx.x < FT_AT_BQ) {
                const int64_t i = it + threadIdx.x;
                Ls[threadIdx.x] = i < T ? lse[(b * T + i) * H + h] : 0.0f;
                Ds[threadIdx.x] = i < T ? Dl[(b * T + i) * H + h] : 0.0f;
                /* error flags are raised by the dq kernel, which validates the same rows */
                LOs[threadIdx.x] = i < T ? ft_at_lo(doc_start, b * T + i, i, NULL) : INT64_MAX;
            }
            __syncthreads();
            if (wj0 >= T) continue;
            const int64_t i = it + lane, loi = LOs[lane];
            /* skip the tile when no query in it sees any of the warp's keys (warp-uniform) */
            const bool any = __any_sync(FT_FULL_MASK, i < T && i >= wj0 && loi <= wj1);
            if (!any) continue;
            float s[FT_AT_ROWS] = {0.0f}, dp[FT_AT_ROWS] = {0.0f};
            for (int d = 0; d < (int)D; d++) {
                const float qd = Qs[lane * (D + 1) + d], gd = Gs[lane * (D + 1) + d];
#pragma unroll
                for (int r = 0; r < FT_AT_ROWS; r++) {
                    s[r] += qd * Kb[(warp * FT_AT_ROWS + r) * D + d];
                    dp[r] += gd * Vb[(warp * FT_AT_ROWS + r) * D + d];
                }
            }
            float p[FT_AT_ROWS], ds[FT_AT_ROWS];
#pragma unroll
            for (int r = 0; r < FT_AT_ROWS; r++) {
                const bool ok = jr[r] < T && i < T && i >= jr[r] && loi <= jr[r];
                p[r] = ok ? expf(s[r] * scale - Ls[lane]) : 0.0f;
                ds[r] = p[r] * (dp[r] - Ds[lane]);
            }
            for (int qq = 0; qq < FT_AT_BQ; qq++) {
                float qt[DPL], gt[DPL];
#pragma unroll
                for (int t = 0; t < DPL; t++) {
                    const int64_t d = lane + FT_WARP * t;
                    qt[t] = d < D ? Qs[qq * (D + 1) + d] : 0.0f;
                    gt[t] = d < D ? Gs[qq * (D + 1) + d] : 0.0f;
                }
#pragma unroll
                for (int r = 0; r < FT_AT_ROWS; r++) {
                    const float pq = __shfl_sync(FT_FULL_MASK, p[r], qq), dsq = __shfl_sync(FT_FULL_MASK, ds[r], qq);
#pragma unroll
                    for (int t = 0; t < DPL; t++) {
                        av[r][t] += pq * gt[t];
                        ak[r][t] += dsq * qt[t];
                    }
                }
            }
        }
    }
#pragma unroll
    for (int r = 0; r < FT_AT_ROWS; r++) {
        if (jr[r] >= T) continue;
        const int64_t row = b * T + jr[r];
#pragma unroll
        for (int t = 0; t < DPL; t++) {
            const int64_t d = lane + FT_WARP * t;
            if (d < D) {
                ft_st(dk, row * ks + kh * D + d, ak[r][t] * scale);
                ft_st(dv, row * ks + kh * D + d, av[r][t]);
            }
        }
    }
}

/* ---- launchers and op entries ---------------------------------------------------------------- */

static int ft_at_dpl(int64_t D) { return D <= 32 ? 1 : D <= 64 ? 2 : D <= 128 ? 4 : D <= 256 ? 8 : 0; }

static ft_status ft_at_check(ft_backend_cuda *b, const char *op, int64_t B, int64_t T, int64_t H, int64_t D,
                             size_t smem) {
    if (ft_at_dpl(D) == 0)
        return FT_ERR(FT_E_UNSUPPORTED, "%s: head_dim %lld > 256 is not supported on cuda", op, (long long)D);
    if (smem > b->smem_optin)
        return FT_ERR(FT_E_UNSUPPORTED, "%s: head_dim %lld needs %zu bytes of shared memory, this GPU has %zu", op,
                      (long long)D, smem, b->smem_optin);
    if (H > 65535 || B > 65535 || ft_cdiv(T, FT_AT_BQ) > 0x7fffffff)
        return FT_ERR(FT_E_UNSUPPORTED, "%s: grid too large (B %lld, H %lld)", op, (long long)B, (long long)H);
    return FT_OK;
}

/* Launches kern<DPL> for the DPL that fits D, raising the dynamic shared memory limit first. */
#define FT_AT_LAUNCH(kern, grid, smem, stream, ...)                                                  \
    do {                                                                                             \
        switch (ft_at_dpl(D)) {                                                                      \
        case 1: FT_AT_LAUNCH1(kern<1>, grid, smem, stream, __VA_ARGS__); break;                      \
        case 2: FT_AT_LAUNCH1(kern<2>, grid, smem, stream, __VA_ARGS__); break;                      \
        case 4: FT_AT_LAUNCH1(kern<4>, grid, smem, stream, __VA_ARGS__); break;                      \
        default: FT_AT_LAUNCH1(kern<8>, grid, smem, stream, __VA_ARGS__); break;                     \
        }                                                                                            \
        FT_CUDA_LAUNCH_TRY(#kern);                                                                   \
    } while (0)
#define FT_AT_LAUNCH1(k, grid, smem, stream, ...)                                                    \
    do {                                                                                             \
        FT_CUDA_TRY(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)(smem))); \
        k<<<grid, FT_AT_WARPS * FT_WARP, smem, stream>>>(__VA_ARGS__);                               \
    } while (0)

ft_status ft_cuda_attention(ft_backend *be, void *out, float *lse, const void *q, const void *k, const void *v,
                            const int32_t *doc_start, int64_t ndocs, int64_t B, int64_t T, int64_t H, int64_t Hkv, int64_t D,
                            float scale) {
    ft_backend_cuda *b = ft_cu(be);
    if (B == 0 || T == 0 || H == 0) return FT_OK;
    const size_t smem = sizeof(float) * (size_t)(FT_AT_BQ * D + FT_AT_BK * (D + 1) + FT_AT_BK * D);
    FT_TRY(ft_at_check(b, "attention", B, T, H, D, smem));
    if (b->attn_cudnn) { /* cuDNN where it serves (attention_cudnn.cu), else ours */
        const ft_status cs = ft_cuda_attn_cudnn_fwd(b, out, lse, q, k, v, doc_start, ndocs, B, T, H, Hkv, D, scale);
        if (cs != FT_E_UNSUPPORTED) return cs;
    }
    const void *ptrs[] = {out, q, k, v};
    if (ft_attn_mma_ok(b, D, ptrs, 4, 0))
        return ft_attn_mma_fwd(b, (act_t *)out, lse, (const act_t *)q, (const act_t *)k, (const act_t *)v, doc_start,
                               B, T, H, Hkv, D, scale);
    if (ft_attn_tc_ok(b, D, ptrs, 4, 0))
        return ft_attn_tc_fwd(b, (act_t *)out, lse, (const act_t *)q, (const act_t *)k, (const act_t *)v, doc_start, B,
                              T, H, Hkv, D, scale);
    const dim3 grid((unsigned)ft_cdiv(T, FT_AT_BQ), (unsigned)H, (unsigned)B);
    FT_AT_LAUNCH(ft_k_attn_fwd, grid, smem, b->stream, (act_t *)out, lse, (const act_t *)q, (const act_t *)k,
                 (const act_t *)v, doc_start, T, H, Hkv, D, scale, b->err);
    return FT_OK;
}

ft_status ft_cuda_attention_bwd(ft_backend *be, void *dq, void *dk, void *dv, const void *dout, const void *q,
                                const void *k, const void *v, const void *out, const float *lse,
                                const int32_t *doc_start, int64_t ndocs, int64_t B, int64_t T, int64_t H, int64_t Hkv,
                                int64_t D, float scale) {
    ft_backend_cuda *b = ft_cu(be);
    if (B == 0 || T == 0 || H == 0) return FT_OK;
    const size_t smem_q = sizeof(float) * (size_t)(2 * FT_AT_BQ * D + 2 * FT_AT_BK * (D + 1));
    const size_t smem_kv = sizeof(float) * (size_t)(2 * FT_AT_BK * D + 2 * FT_AT_BQ * (D + 1));
    FT_TRY(ft_at_check(b, "attention_bwd", B, T, H, D, smem_q > smem_kv ? smem_q : smem_kv));
    if (b->attn_cudnn) {
        const ft_status cs =
            ft_cuda_attn_cudnn_bwd(b, dq, dk, dv, dout, q, k, v, out, lse, doc_start, ndocs, B, T, H, Hkv, D, scale);
        if (cs != FT_E_UNSUPPORTED) return cs;
    }
    const int64_t N = B * T;
    void *dl = NULL;
    FT_TRY(ft_cuda_scratch_get(be, FT_SCR_ATTN, 4 * N * H, &dl));
    ft_k_attn_dl<<<ft_grid_1d(N * H, 8, 64LL * b->sm_count), 256, 0, b->stream>>>((float *)dl, (const act_t *)dout,
                                                                                 (const act_t *)out, N * H, D);
    FT_CUDA_LAUNCH_TRY("ft_k_attn_dl");
    const void *ptrs[] = {dq, dk, dv, dout, q, k, v};
    if (ft_attn_mma_ok(b, D, ptrs, 7, 1))
        return ft_attn_mma_bwd(b, (act_t *)dq, (act_t *)dk, (act_t *)dv, (const act_t *)dout, (const act_t *)q,
                               (const act_t *)k, (const act_t *)v, lse, (const float *)dl, doc_start, B, T, H, Hkv, D,
                               scale);
    if (ft_attn_tc_ok(b, D, ptrs, 7, 1))
        return ft_attn_tc_bwd(b, (act_t *)dq, (act_t *)dk, (act_t *)dv, (const act_t *)dout, (const act_t *)q,
                              (const act_t *)k, (const act_t *)v, lse, (const float *)dl, doc_start, B, T, H, Hkv, D,
                              scale);
    const dim3 gq((unsigned)ft_cdiv(T, FT_AT_BQ), (unsigned)H, (unsigned)B);
    FT_AT_LAUNCH(ft_k_attn_dq, gq, smem_q, b->stream, (act_t *)dq, (const act_t *)dout, (const act_t *)q,
                 (const act_t *)k, (const act_t *)v, lse, (const float *)dl, doc_start, T, H, Hkv, D, scale, b->err);
    const dim3 gkv((unsigned)ft_cdiv(T, FT_AT_BK), (unsigned)Hkv, (unsigned)B);
    FT_AT_LAUNCH(ft_k_attn_dkv, gkv, smem_kv, b->stream, (act_t *)dk, (act_t *)dv, (const act_t *)dout,
                 (const act_t *)q, (const act_t *)k, (const act_t *)v, lse, (const float *)dl, doc_start, T, H, Hkv,
                 D, scale, b->err);
    return FT_OK;
}
