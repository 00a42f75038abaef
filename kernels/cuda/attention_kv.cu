/* attention_kv.cu: the cached decoding's attention (ft_op_attention_kv): Tq new queries of one
 * sequence against its keys and values so far, query i at position Tk - Tq + i.
 *
 * Decoding asks it for one query per head at a time, against at most a few thousand keys: the work
 * is reading K and V once, so one block per (query, head) streams them in tiles of FT_AKV_BK keys
 * with an online softmax (the flash forward's recurrence, in f32): each warp takes a key of the
 * tile at a time and reduces its dot product across lanes (coalesced reads of the key's row), then
 * every thread rescales and adds the tile's weighted values into the head dimensions it owns. The
 * prompt itself runs through ft_op_attention (the model calls this op only past the prompt). */
#include "kernels/cuda/check.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_impl.h"

#define FT_AKV_THREADS 128
#define FT_AKV_BK 64
#define FT_AKV_DMAX 256
#define FT_AKV_DPT (FT_AKV_DMAX / FT_AKV_THREADS) /* head dimensions per thread at most */

/* grid (Tq, H): out[i, h, :] = softmax_j(scale * q[i, h] . k[j, kh]) v[j, kh], j <= Tk - Tq + i. */
__global__ void __launch_bounds__(FT_AKV_THREADS)
    ft_k_attn_kv(act_t *out, const act_t *q, const act_t *k, const act_t *v, int64_t Tq, int64_t Tk, int64_t H,
                 int64_t Hkv, int64_t D, float scale) {
    __shared__ float qs[FT_AKV_DMAX], ps[FT_AKV_BK];
    const int64_t i = blockIdx.x, h = blockIdx.y, kh = h / (H / Hkv), ks = Hkv * D;
    const int64_t hi = Tk - Tq + i; /* the last key this query sees */
    const int lane = threadIdx.x % FT_WARP, warp = threadIdx.x / FT_WARP, nwarps = FT_AKV_THREADS / FT_WARP;
    const act_t *qi = q + (i * H + h) * D;
    for (int64_t d = threadIdx.x; d < D; d += FT_AKV_THREADS) qs[d] = ft_ld(qi, d);
    const act_t *kb = k + kh * D, *vb = v + kh * D;
    float m = -INFINITY, l = 0.0f, acc[FT_AKV_DPT];
#pragma unroll
    for (int c = 0; c < FT_AKV_DPT; c++) acc[c] = 0.0f;
    __syncthreads();
    for (int64_t j0 = 0; j0 <= hi; j0 += FT_AKV_BK) {
        const int64_t nk = hi + 1 - j0 < FT_AKV_BK ? hi + 1 - j0 : FT_AKV_BK;
        for (int64_t jj = warp; jj < nk; jj += nwarps) {
            const act_t *kj = kb + (j0 + jj) * ks;
            float s = 0.0f;
            for (int64_t d = lane; d < D; d += FT_WARP) s += qs[d] * ft_ld(kj, d);
            s = ft_warp_sum(s);
            if (lane == 0) ps[jj] = s * scale;
        }
        __syncthreads();
        float mt = m; /* every thread derives the same running max and sum from ps */
        for (int64_t jj = 0; jj < nk; jj++) mt = fmaxf(mt, ps[jj]);
        const float corr = expf(m - mt); /* 0 on the first tile (m = -inf, mt finite) */
        l *= corr;
#pragma unroll
        for (int c = 0; c < FT_AKV_DPT; c++) acc[c] *= corr;
        for (int64_t jj = 0; jj < nk; jj++) {
            const float p = expf(ps[jj] - mt);
            const act_t *vj = vb + (j0 + jj) * ks;
            l += p;
#pragma unroll
            for (int c = 0; c < FT_AKV_DPT; c++) {
                const int64_t d = threadIdx.x + (int64_t)c * FT_AKV_THREADS;
                if (d < D) acc[c] += p * ft_ld(vj, d);
            }
        }
        m = mt;
        __syncthreads(); /* ps is rewritten by the next tile */
    }
    act_t *o = out + (i * H + h) * D;
#pragma unroll
    for (int c = 0; c < FT_AKV_DPT; c++) {
        const int64_t d = threadIdx.x + (int64_t)c * FT_AKV_THREADS;
        if (d < D) ft_st(o, d, acc[c] / l);
    }
}

ft_status ft_cuda_attention_kv(ft_backend *be, void *out, const void *q, const void *k, const void *v, int64_t Tq,
                               int64_t Tk, int64_t H, int64_t Hkv, int64_t D, float scale) {
    if (Tq == 0 || H == 0) return FT_OK;
    if (D > FT_AKV_DMAX)
        return FT_ERR(FT_E_UNSUPPORTED, "attention_kv: head_dim %lld > %d is not supported on cuda", (long long)D,
                      FT_AKV_DMAX);
    if (H > 65535 || Tq > 0x7fffffff)
        return FT_ERR(FT_E_UNSUPPORTED, "attention_kv: grid too large (Tq %lld, H %lld)", (long long)Tq, (long long)H);
    const dim3 grid((unsigned)Tq, (unsigned)H);
    ft_k_attn_kv<<<grid, FT_AKV_THREADS, 0, ft_cu_stream(be)>>>((act_t *)out, (const act_t *)q, (const act_t *)k,
                                                                (const act_t *)v, Tq, Tk, H, Hkv, D, scale);
    FT_CUDA_LAUNCH_TRY("ft_k_attn_kv");
    return FT_OK;
}
