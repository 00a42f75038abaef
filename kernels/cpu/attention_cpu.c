/* attention_cpu.c: naive causal grouped-query attention with packed-document masks, forward and
 * backward, and the cached decoding's forward (ft_op_attention_kv: new queries against a sequence's
 * keys so far), materializing one row of scores at a time (reference only: O(T^2) per head).
 *
 * Layouts (ops.h): q[N, H*D], k and v [N, Hkv*D], out[N, H*D], N = B*T token-major; query head h reads
 * kv head h / (H/Hkv). Query i of row b sees keys j of that row with lo(i) <= j <= i, lo(i) =
 * doc_start[b*T + i] (0 without packing). Scores, softmax sums and outputs accumulate in double;
 * lse[N, H] = log-sum-exp of the scaled scores.
 * Backward with P_ij = exp(s_ij - lse_i), Dl_i = dout_i . out_i:
 *   dS_ij = P_ij (dout_i . v_j - Dl_i);  dq_i = scale sum_j dS_ij k_j;
 *   dk_j = scale sum_{h in group, i} dS_ij q_i;  dv_j = sum_{h in group, i} P_ij dout_i.
 * dq is computed per query and dk/dv per key (re-deriving P), so no two threads write one element:
 * deterministic for any thread count. */
#include <math.h>
#include <omp.h>

#include "kernels/cpu/cpu_impl.h"
#include "kernels/mem.h"

static ft_status ft_attn_check(const int32_t *doc_start, int64_t B, int64_t T) {
    if (!doc_start) return FT_OK;
    for (int64_t b = 0; b < B; b++)
        for (int64_t i = 0; i < T; i++) {
            int32_t lo = doc_start[b * T + i];
            if (lo < 0 || lo > i)
                return FT_ERR(FT_E_INTERNAL, "attention: doc_start[%lld] = %d outside [0, %lld]",
                              (long long)(b * T + i), lo, (long long)i);
        }
    return FT_OK;
}

static inline double ft_dot(const float *a, const float *b, int64_t D) {
    double s = 0.0;
    for (int64_t d = 0; d < D; d++) s += (double)a[d] * b[d];
    return s;
}

/* One query row: o[D] = softmax(scale * qi . k_j) v_j over keys lo <= j <= hi, whose rows start at
 * k and v and step by ks; returns its log-sum-exp. s [hi + 1] and acc [D] are scratch. The causal
 * forward and the cached decoding share it, so both give a query the same bits. */
static double ft_attn_row(float *o, const float *qi, const float *k, const float *v, int64_t ks, int64_t lo,
                          int64_t hi, int64_t D, float scale, double *s, double *acc) {
    double m = -INFINITY;
    for (int64_t j = lo; j <= hi; j++) {
        s[j] = ft_dot(qi, k + j * ks, D) * scale;
        if (s[j] > m) m = s[j];
    }
    double l = 0.0;
    for (int64_t d = 0; d < D; d++) acc[d] = 0.0;
    for (int64_t j = lo; j <= hi; j++) {
        const double p = exp(s[j] - m);
        const float *vj = v + j * ks;
        l += p;
        for (int64_t d = 0; d < D; d++) acc[d] += p * vj[d];
    }
    for (int64_t d = 0; d < D; d++) o[d] = (float)(acc[d] / l);
    return m + log(l);
}

ft_status ft_cpu_attention(ft_backend *be, void *outv, float *lse, const void *qv, const void *kv, const void *vv,
                           const int32_t *doc_start, int64_t ndocs, int64_t B, int64_t T, int64_t H, int64_t Hkv,
                           int64_t D, float scale) {
    (void)ndocs; /* the reference masks each query by its doc_start */
    float *out = outv;
    const float *q = qv, *k = kv, *v = vv;
    const int64_t grp = H / Hkv, qs = H * D, ks = Hkv * D; /* token strides */
    const int nt = ft_cpu_threads(be);
    FT_TRY(ft_attn_check(doc_start, B, T));
    double *scratch; /* per thread: scores [T] + accumulator [D] */
    FT_TRY(ft_malloc((void **)&scratch, (size_t)nt * (size_t)(T + D) * sizeof(double), "attention scores"));
#pragma omp parallel num_threads(nt)
    {
        double *s = scratch + (int64_t)omp_get_thread_num() * (T + D), *acc = s + T;
#pragma omp for schedule(static) collapse(2)
        for (int64_t bh = 0; bh < B * H; bh++)
            for (int64_t i = 0; i < T; i++) {
                const int64_t b = bh / H, h = bh % H, kh = h / grp, row = b * T + i;
                const int64_t lo = doc_start ? doc_start[row] : 0;
                lse[row * H + h] = (float)ft_attn_row(out + row * qs + h * D, q + row * qs + h * D,
                                                      k + b * T * ks + kh * D, v + b * T * ks + kh * D, ks, lo, i, D,
                                                      scale, s, acc);
            }
    }
    ft_free(scratch);
    return FT_OK;
}

ft_status ft_cpu_attention_kv(ft_backend *be, void *outv, const void *qv, const void *kv, const void *vv, int64_t Tq,
                              int64_t Tk, int64_t H, int64_t Hkv, int64_t D, float scale) {
    float *out = outv;
    const float *q = qv, *k = kv, *v = vv;
    const int64_t grp = H / Hkv, qs = H * D, ks = Hkv * D, past = Tk - Tq;
    const int nt = ft_cpu_threads(be);
    double *scratch; /* per thread: scores [Tk] + accumulator [D] */
    FT_TRY(ft_malloc((void **)&scratch, (size_t)nt * (size_t)(Tk + D) * sizeof(double), "attention scores"));
#pragma omp parallel num_threads(nt)
    {
        double *s = scratch + (int64_t)omp_get_thread_num() * (Tk + D), *acc = s + Tk;
#pragma omp for schedule(static) collapse(2)
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < Tq; i++)
                (void)ft_attn_row(out + i * qs + h * D, q + i * qs + h * D, k + (h / grp) * D, v + (h / grp) * D, ks, 0,
                                  past + i, D, scale, s, acc);
    }
    ft_free(scratch);
    return FT_OK;
}

ft_status ft_cpu_attention_bwd(ft_backend *be, void *dqv, void *dkv, void *dvv, const void *doutv, const void *qv,
                               const void *kv, const void *vv, const void *outv, const float *lse,
                               const int32_t *doc_start, int64_t ndocs, int64_t B, int64_t T, int64_t H, int64_t Hkv,
                               int64_t D, float scale) {
    (void)ndocs;
    float *dq = dqv, *dk = dkv, *dv = dvv;
    const float *dout = doutv, *q = qv, *k = kv, *v = vv, *out = outv;
    const int64_t grp = H / Hkv, qs = H * D, ks = Hkv * D, N = B * T;
    const int nt = ft_cpu_threads(be);
    FT_TRY(ft_attn_check(doc_start, B, T));
    double *dl, *scratch; /* dl[N, H] = dout . out; scratch: per thread two accumulators [D] */
    FT_TRY(ft_malloc((void **)&dl, (size_t)(N * H) * sizeof(double), "attention_bwd D"));
    ft_status st = ft_malloc((void **)&scratch, (size_t)nt * 2 * (size_t)D * sizeof(double), "attention_bwd acc");
    if (st != FT_OK) {
        ft_free(dl);
        return st;
    }
#pragma omp parallel num_threads(nt)
    {
        double *a1 = scratch + (int64_t)omp_get_thread_num() * 2 * D, *a2 = a1 + D;
#pragma omp for schedule(static)
        for (int64_t rh = 0; rh < N * H; rh++) dl[rh] = ft_dot(dout + rh * D, out + rh * D, D);

        /* dq: one query row per iteration. */
#pragma omp for schedule(static) collapse(2)
        for (int64_t bh = 0; bh < B * H; bh++)
            for (int64_t i = 0; i < T; i++) {
                const int64_t b = bh / H, h = bh % H, kh = h / grp, row = b * T + i;
                const int64_t lo = doc_start ? doc_start[row] : 0;
                const float *qi = q + row * qs + h * D, *gi = dout + row * qs + h * D;
                const double li = lse[row * H + h], di = dl[row * H + h];
                for (int64_t d = 0; d < D; d++) a1[d] = 0.0;
                for (int64_t j = lo; j <= i; j++) {
                    const float *kj = k + (b * T + j) * ks + kh * D, *vj = v + (b * T + j) * ks + kh * D;
                    const double p = exp(ft_dot(qi, kj, D) * scale - li);
                    const double ds = p * (ft_dot(gi, vj, D) - di);
                    for (int64_t d = 0; d < D; d++) a1[d] += ds * kj[d];
                }
                float *o = dq + row * qs + h * D;
                for (int64_t d = 0; d < D; d++) o[d] = (float)(a1[d] * scale);
            }

        /* dk, dv: one key row per iteration, over the query heads of its group and the queries
         * i >= j whose document starts at or before j. */
#pragma omp for schedule(static) collapse(2)
        for (int64_t bk = 0; bk < B * Hkv; bk++)
            for (int64_t j = 0; j < T; j++) {
                const int64_t b = bk / Hkv, kh = bk % Hkv, krow = b * T + j;
                const float *kj = k + krow * ks + kh * D, *vj = v + krow * ks + kh * D;
                for (int64_t d = 0; d < D; d++) a1[d] = a2[d] = 0.0;
                for (int64_t h = kh * grp; h < (kh + 1) * grp; h++)
                    for (int64_t i = j; i < T; i++) {
                        const int64_t row = b * T + i;
                        if (doc_start && doc_start[row] > j) continue;
                        const float *qi = q + row * qs + h * D, *gi = dout + row * qs + h * D;
                        const double p = exp(ft_dot(qi, kj, D) * scale - (double)lse[row * H + h]);
                        const double ds = p * (ft_dot(gi, vj, D) - dl[row * H + h]);
                        for (int64_t d = 0; d < D; d++) {
                            a1[d] += ds * qi[d];
                            a2[d] += p * gi[d];
                        }
                    }
                float *ok = dk + krow * ks + kh * D, *ov = dv + krow * ks + kh * D;
                for (int64_t d = 0; d < D; d++) {
                    ok[d] = (float)(a1[d] * scale);
                    ov[d] = (float)a2[d];
                }
            }
    }
    ft_free(scratch);
    ft_free(dl);
    return FT_OK;
}
