/* matmul_cpu.c: frozen linear layers and LoRA on the CPU, through OpenBLAS sgemm.
 *
 * Layouts are PyTorch's, row-major: x[N,in], W[out,in], y[N,out]. An F32 weight goes to sgemm as
 * is; a BF16/F16/NF4 weight is converted a tile of FT_CPU_WTILE rows at a time into an f32 scratch
 * [tile, in] and multiplied tile by tile, so the scratch stays small for 128k-row embeddings. The
 * tile order is fixed, so results are deterministic. LoRA math follows ops.h, xd = dropout(x) drawn
 * into a heap copy by ft_cpu_dropout (the reference: the CUDA backend draws the mask inside its
 * products):
 *   fwd  t = xd . A^T;  y (=, or +=) scale * t . B^T
 *   bwd  dB += scale * dy^T . t;  dt = scale * dy . B;  dA += dt^T . xd;
 *        dx (=, or +=) dropout(dt . A), the same mask */
#include <cblas.h>
#include <omp.h>

#include "kernels/cpu/cpu_impl.h"
#include "kernels/mem.h"

enum { FT_CPU_WTILE = 256 };

/* Rows [r0, r0 + nr) of W as f32 in tile[nr, cols]. */
static void ft_cpu_weight_rows(ft_backend *be, const ft_weight *W, int64_t r0, int64_t nr, float *tile) {
    const int64_t cols = W->cols;
#pragma omp parallel for num_threads(ft_cpu_threads_for(be, nr * cols)) schedule(static)
    for (int64_t r = 0; r < nr; r++) ft_cpu_weight_f32(W, (r0 + r) * cols, cols, tile + r * cols);
}

ft_status ft_cpu_linear(ft_backend *be, void *yv, const void *xv, const ft_weight *W, const ft_weight *bias,
                        int64_t N, int accumulate) {
    float *y = yv; /* [N, out] */
    const float *x = xv; /* [N, in] */
    const int64_t out = W->rows, in = W->cols;
    if (N == 0) return FT_OK;
    if (W->dtype == FT_F32) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, (int)out, (int)in, 1.0f, x, (int)in,
                    (const float *)W->data, (int)in, accumulate ? 1.0f : 0.0f, y, (int)out);
    } else {
        const int64_t tr = out < FT_CPU_WTILE ? out : FT_CPU_WTILE;
        float *tile;
        FT_TRY(ft_malloc((void **)&tile, (size_t)(tr * in) * sizeof(float), "linear weight tile"));
        for (int64_t r0 = 0; r0 < out; r0 += tr) {
            const int64_t nr = out - r0 < tr ? out - r0 : tr;
            ft_cpu_weight_rows(be, W, r0, nr, tile);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, (int)nr, (int)in, 1.0f, x, (int)in, tile,
                        (int)in, accumulate ? 1.0f : 0.0f, y + r0, (int)out);
        }
        ft_free(tile);
    }
    if (bias) {
        float *b;
        FT_TRY(ft_cpu_weight_vec(bias, &b));
#pragma omp parallel for num_threads(ft_cpu_threads_for(be, N * out)) schedule(static)
        for (int64_t n = 0; n < N; n++)
            for (int64_t o = 0; o < out; o++) y[n * out + o] += b[o];
        ft_free(b);
    }
    return FT_OK;
}

ft_status ft_cpu_linear_bwd_x(ft_backend *be, void *dxv, const void *dyv, const ft_weight *W, int64_t N,
                              int accumulate) {
    float *dx = dxv; /* [N, in] */
    const float *dy = dyv; /* [N, out] */
    const int64_t out = W->rows, in = W->cols;
    if (N == 0) return FT_OK;
    if (W->dtype == FT_F32) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)N, (int)in, (int)out, 1.0f, dy, (int)out,
                    (const float *)W->data, (int)in, accumulate ? 1.0f : 0.0f, dx, (int)in);
        return FT_OK;
    }
    /* dx = sum over row tiles of dy[:, tile] . W[tile, :], the first tile overwriting unless accumulate. */
    const int64_t tr = out < FT_CPU_WTILE ? out : FT_CPU_WTILE;
    float *tile;
    FT_TRY(ft_malloc((void **)&tile, (size_t)(tr * in) * sizeof(float), "linear_bwd_x weight tile"));
    for (int64_t r0 = 0; r0 < out; r0 += tr) {
        const int64_t nr = out - r0 < tr ? out - r0 : tr;
        ft_cpu_weight_rows(be, W, r0, nr, tile);
        const float beta = (r0 == 0 && !accumulate) ? 0.0f : 1.0f;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)N, (int)in, (int)nr, 1.0f, dy + r0, (int)out,
                    tile, (int)in, beta, dx, (int)in);
    }
    ft_free(tile);
    return FT_OK;
}

/* xd = dropout(x) in a heap copy, or x itself (*own NULL) when there is no dropout. */
static ft_status ft_cpu_lora_input(ft_backend *be, const float *x, ft_lora_drop drop, int64_t n, const float **xd,
                                   float **own) {
    *xd = x, *own = NULL;
    if (!(drop.p > 0.0f)) return FT_OK;
    FT_TRY(ft_malloc((void **)own, (size_t)n * sizeof(float), "lora dropout input"));
    *xd = *own;
    return ft_cpu_dropout(be, *own, x, n, drop.p, drop.seed);
}

ft_status ft_cpu_lora_fwd(ft_backend *be, void *yv, void *tv, const void *xv, ft_lora_drop drop, const float *A,
                          const float *B, int64_t N, int64_t in, int64_t out, int64_t R, float scale,
                          int accumulate) {
    float *y = yv, *t = tv; /* y[N, out], t[N, R] */
    if (N == 0) return FT_OK;
    if (xv) { /* else t is given */
        const float *xd; /* [N, in]; A[R, in], B[out, R] */
        float *own;
        FT_TRY(ft_cpu_lora_input(be, xv, drop, N * in, &xd, &own));
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, (int)R, (int)in, 1.0f, xd, (int)in, A, (int)in,
                    0.0f, t, (int)R);
        ft_free(own);
    }
    if (!y) return FT_OK; /* t alone */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, (int)out, (int)R, scale, t, (int)R, B, (int)R,
                accumulate ? 1.0f : 0.0f, y, (int)out);
    return FT_OK;
}

ft_status ft_cpu_lora_bwd(ft_backend *be, void *dxv, float *dA, float *dB, const void *dyv, const void *xv,
                          ft_lora_drop drop, const void *tv, const float *A, const float *B, int64_t N, int64_t in,
                          int64_t out, int64_t R, float scale, int accumulate) {
    float *dx = dxv;                  /* [N, in] */
    const float *dy = dyv, *t = tv;   /* dy[N, out], t[N, R] */
    if (N == 0) return FT_OK;
    const int drops = drop.p > 0.0f;
    float *dt = NULL, *own = NULL, *dxd = NULL; /* dt [N, R]; with dropout and accumulate, dxd [N, in] */
    const float *xd;                            /* [N, in] */
    ft_status st = ft_malloc((void **)&dt, (size_t)(N * R) * sizeof(float), "lora_bwd dt");
    if (st == FT_OK) st = ft_cpu_lora_input(be, xv, drop, N * in, &xd, &own);
    if (st == FT_OK && drops && accumulate)
        st = ft_malloc((void **)&dxd, (size_t)(N * in) * sizeof(float), "lora_bwd dx");
    if (st == FT_OK) {
        /* dB[out, R] += scale * dy^T . t */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)out, (int)R, (int)N, scale, dy, (int)out, t, (int)R,
                    1.0f, dB, (int)R);
        /* dt[N, R] = scale * dy . B */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)N, (int)R, (int)out, scale, dy, (int)out, B,
                    (int)R, 0.0f, dt, (int)R);
        /* dA[R, in] += dt^T . xd */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)R, (int)in, (int)N, 1.0f, dt, (int)R, xd, (int)in,
                    1.0f, dA, (int)in);
        /* dxd[N, in] (=, or +=) dt . A, then through the mask: in dx itself, or with dropout and
         * accumulate in dxd, masked there and added to dx */
        float *dl = dxd ? dxd : dx;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)N, (int)in, (int)R, 1.0f, dt, (int)R, A, (int)in,
                    accumulate && !drops ? 1.0f : 0.0f, dl, (int)in);
        if (drops) st = ft_cpu_dropout(be, dl, dl, N * in, drop.p, drop.seed);
        if (st == FT_OK && dxd) st = ft_cpu_add(be, dx, dxd, N * in);
    }
    ft_free(dt), ft_free(own), ft_free(dxd);
    return st;
}
