/* launches.c (emulator): every op of the CUDA backend at the real widths of the trained models and
 * the long token counts they train at, under FT_EMU_DRY=1 (tests/gpu/emu/run.sh launches): each
 * launch is checked against CUDA's limits (cuda_emu.h: grid, block, dynamic shared memory against
 * the opt-in value set with cudaFuncSetAttribute) and each cuBLASLt product's layouts, but no block
 * runs, so shapes whose arithmetic the emulator could never finish are in reach. Device memory is
 * only reserved (untouched pages cost nothing), so the tensors of a 131072-token micro-batch fit.
 * It proves launch configurations, not results: test_ops_cuda checks those at smaller sizes.
 *
 * Models: Llama-3-70B, Qwen3-32B, Mistral-Small-24B (C, F, H, Hkv, D 128, V). Token counts:
 * B 1 x T 52000 (the longest sequence trained), B 16 x T 4096 and B 32 x T 4096 (N = 131072).
 * Llama-3-70B's down_proj (28672 x 8192) also as a GGUF base stores it, Q4_K and Q6_K (dequantized
 * for the products and into the weight cache's ring, read directly by the decoding products), and
 * each model's token embedding as Q6_K. LoRA ranks 8..256 with and without dropout; attention plain
 * and packed, through every kernel family the backend picks from (FT_CUDA_ATTN = default mma, wmma,
 * simt, mma32) and FT_CUDA_LORA / FT_CUDA_GEMM variants; run once with FT_EMU_SMEM_KIB=99 for GB10
 * (run.sh does both).
 * Exit 0 when every op returned FT_OK (a refused launch makes its op fail with the CUDA error). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"
#include "kernels/ops.h"
#include "kernels/status.h"
#include "kernels/weight.h"

long long ft_emu_launch_count(void);      /* emu_globals.cpp */
void ft_emu_fail_host_alloc_in(int k);    /* the k-th next cudaHostAlloc fails */

typedef struct {
    const char *name;
    int64_t C, F, H, Hkv, D, V;
} lc_model;
static const lc_model lc_models[] = {
    {"L70", 8192, 28672, 64, 8, 128, 128256},
    {"Q32", 5120, 25600, 64, 8, 128, 151936},
    {"M24", 5120, 32768, 32, 8, 128, 131072},
};
static const int64_t lc_bt[][2] = {{1, 52000}, {16, 4096}, {32, 4096}};

static int lc_fail;
static ft_backend *lc_be;

/* Device buffers of one op call, released after it. */
enum { LC_MAXBUF = 16 };
static void *lc_buf[LC_MAXBUF];
static int lc_nbuf;
static void *lc_alloc(int64_t bytes) {
    void *p = NULL;
    if (lc_nbuf == LC_MAXBUF || ft_backend_alloc(lc_be, &p, bytes > 0 ? bytes : 1, "launch check") != FT_OK) {
        fprintf(stderr, "launches: cannot reserve %lld bytes: %s\n", (long long)bytes, ft_error_msg());
        exit(1);
    }
    lc_buf[lc_nbuf++] = p;
    return p;
}
static void lc_release(void) {
    while (lc_nbuf) ft_backend_release(lc_be, lc_buf[--lc_nbuf]);
}

static void lc_check(ft_status st, const char *what, const char *m, int64_t B, int64_t T) {
    if (st != FT_OK) {
        lc_fail++;
        printf("FAIL %s %s B %lld T %lld: %s\n", m, what, (long long)B, (long long)T, ft_error_msg());
    }
    lc_release();
}
#define LC(call, what) lc_check((call), what, M->name, B, T)

/* The product and its backward with a frozen weight of dtype dt (NF4, or a GGUF base's ggml blocks);
 * with `ring`, once more through the weight cache with the weight prefetched into it (wcache.cu). */
static void lc_linear_dt(const lc_model *M, int64_t B, int64_t T, int64_t in, int64_t out, const char *what,
                         ft_dtype dt, int ring) {
    const int64_t N = B * T;
    ft_weight W;
    memset(&W, 0, sizeof W);
    if (ft_weight_alloc(lc_be, &W, dt, out, in, what) != FT_OK) {
        printf("FAIL %s %s: weight: %s\n", M->name, what, ft_error_msg());
        lc_fail++;
        return;
    }
    void *x = lc_alloc(2 * N * in), *y = lc_alloc(2 * N * out);
    LC(ft_op_linear(lc_be, y, x, &W, NULL, N, 1), what);
    x = lc_alloc(2 * N * in), y = lc_alloc(2 * N * out);
    LC(ft_op_linear_bwd_x(lc_be, x, y, &W, N, 1), what);
    if (ring) {
        const int64_t numel[1] = {in * out};
        LC(ft_backend_weight_cache(lc_be, ft_weight_cache_bytes(numel, 1)), "weight cache");
        LC(ft_backend_weight_prefetch(lc_be, &W), "weight prefetch");
        x = lc_alloc(2 * N * in), y = lc_alloc(2 * N * out);
        LC(ft_op_linear(lc_be, y, x, &W, NULL, N, 1), what);
        LC(ft_backend_weight_cache(lc_be, 0), "weight cache");
    }
    ft_weight_release(lc_be, &W);
}
static void lc_linear(const lc_model *M, int64_t B, int64_t T, int64_t in, int64_t out, const char *what) {
    lc_linear_dt(M, B, T, in, out, what, FT_NF4, 0);
}

static void lc_lora(const lc_model *M, int64_t B, int64_t T, int64_t in, int64_t out) {
    static const int64_t ranks[] = {8, 16, 32, 64, 128, 256};
    const int64_t N = B * T;
    for (size_t r = 0; r < sizeof ranks / sizeof *ranks; r++)
        for (int d = 0; d < 2; d++) {
            const int64_t R = ranks[r];
            const ft_lora_drop drop = {d ? 0.1f : 0.0f, 7};
            void *x = lc_alloc(2 * N * in), *y = lc_alloc(2 * N * out), *t = lc_alloc(2 * N * R);
            float *A = lc_alloc(4 * R * in), *Bm = lc_alloc(4 * out * R);
            LC(ft_op_lora_fwd(lc_be, y, t, x, drop, A, Bm, N, in, out, R, 2.0f, 1), "lora_fwd");
            x = lc_alloc(2 * N * in), y = lc_alloc(2 * N * out), t = lc_alloc(2 * N * R);
            A = lc_alloc(4 * R * in), Bm = lc_alloc(4 * out * R);
            void *dx = lc_alloc(2 * N * in);
            float *dA = lc_alloc(4 * R * in), *dB = lc_alloc(4 * out * R);
            LC(ft_op_lora_bwd(lc_be, dx, dA, dB, y, x, drop, t, A, Bm, N, in, out, R, 2.0f, 1), "lora_bwd");
        }
}

/* DoRA: the weight norm of each projection shape at ranks 8..256 (NF4; Llama-3-70B's down_proj also as
 * Q4_K and BF16), the row scale (= and +=, with a BF16 bias) and the magnitude's gradient over the whole
 * micro-batch at each output width */
static void lc_dora(const lc_model *M, int64_t B, int64_t T) {
    static const int64_t ranks[] = {8, 16, 64, 256};
    const int64_t N = B * T, C = M->C, F = M->F, qd = M->H * M->D, kv = M->Hkv * M->D;
    const int64_t shapes[][2] = {{C, qd}, {C, kv}, {qd, C}, {C, F}, {F, C}}; /* {in, out} */
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        const int64_t in = shapes[s][0], out = shapes[s][1];
        static const ft_dtype dts[] = {FT_NF4, FT_Q4_K, FT_BF16};
        for (int d = 0; d < (M == &lc_models[0] && s == 4 ? 3 : 1); d++) {
            ft_weight W;
            memset(&W, 0, sizeof W);
            if (ft_weight_alloc(lc_be, &W, dts[d], out, in, "dora W") != FT_OK) {
                printf("FAIL %s dora W: %s\n", M->name, ft_error_msg());
                lc_fail++;
                continue;
            }
            for (size_t r = 0; r < sizeof ranks / sizeof *ranks; r++) {
                const int64_t R = ranks[r];
                float *wn = lc_alloc(4 * out), *A = lc_alloc(4 * R * in), *Bm = lc_alloc(4 * out * R);
                LC(ft_op_dora_norm(lc_be, wn, &W, A, Bm, R, 2.0f), "dora_norm");
            }
            ft_weight_release(lc_be, &W);
        }
        ft_weight bias;
        memset(&bias, 0, sizeof bias);
        if (ft_weight_alloc(lc_be, &bias, FT_BF16, 1, out, "dora bias") != FT_OK) {
            printf("FAIL %s dora bias: %s\n", M->name, ft_error_msg());
            lc_fail++;
            continue;
        }
        for (int acc = 0; acc < 2; acc++) {
            void *y = lc_alloc(2 * N * out), *z = lc_alloc(2 * N * out);
            float *mag = lc_alloc(4 * out), *wn = lc_alloc(4 * out);
            LC(ft_op_dora_scale(lc_be, y, acc ? z : y, mag, wn, (float)acc, acc ? &bias : NULL, N, out, acc), "dora_scale");
        }
        ft_weight_release(lc_be, &bias);
        void *dy = lc_alloc(2 * N * out), *z = lc_alloc(2 * N * out);
        float *dmag = lc_alloc(4 * out), *wn = lc_alloc(4 * out);
        LC(ft_op_dora_mag_grad(lc_be, dmag, dy, z, wn, N, out), "dora_mag_grad");
    }
}

static void lc_attention(const lc_model *M, int64_t B, int64_t T) {
    const int64_t N = B * T, H = M->H, Hkv = M->Hkv, D = M->D, qb = 2 * N * H * D, kb = 2 * N * Hkv * D;
    for (int packed = 0; packed < 2; packed++) {
        void *q = lc_alloc(qb), *k = lc_alloc(kb), *v = lc_alloc(kb), *o = lc_alloc(qb);
        float *lse = lc_alloc(4 * N * H);
        int32_t *ds = packed ? lc_alloc(4 * N) : NULL;
        LC(ft_op_attention(lc_be, o, lse, q, k, v, ds, packed ? 64 : 0, B, T, H, Hkv, D, 0.088f), "attention");
        q = lc_alloc(qb), k = lc_alloc(kb), v = lc_alloc(kb), o = lc_alloc(qb), lse = lc_alloc(4 * N * H);
        ds = packed ? lc_alloc(4 * N) : NULL;
        void *dq = lc_alloc(qb), *dk = lc_alloc(kb), *dv = lc_alloc(kb), *dout = lc_alloc(qb);
        LC(ft_op_attention_bwd(lc_be, dq, dk, dv, dout, q, k, v, o, lse, ds, packed ? 64 : 0, B, T, H, Hkv, D,
                               0.088f),
           "attention_bwd");
    }
}

/* Every op once at (model, B, T). */
static void lc_model_run(const lc_model *M, int64_t B, int64_t T, int attention_only) {
    const int64_t N = B * T, C = M->C, F = M->F, H = M->H, D = M->D, V = M->V;
    lc_attention(M, B, T);
    if (attention_only) return;
    { /* embedding: the whole table, BF16, NF4 and (a GGUF base's token_embd) Q6_K and IQ4_XS */
        static const ft_dtype et[] = {FT_BF16, FT_NF4, FT_Q6_K, FT_IQ4_XS};
        for (int k = 0; k < 4; k++) {
            ft_weight E;
            memset(&E, 0, sizeof E);
            if (ft_weight_alloc(lc_be, &E, et[k], V, C, "embed") != FT_OK) {
                printf("FAIL %s embed table: %s\n", M->name, ft_error_msg());
                lc_fail++;
                continue;
            }
            void *out = lc_alloc(2 * N * C);
            int32_t *ids = lc_alloc(4 * N);
            LC(ft_op_embed(lc_be, out, ids, &E, N), "embed");
            if (et[k] == FT_NF4) { /* the largest NF4 tensors: quantize from BF16, dequantize */
                void *src = lc_alloc(2 * V * C);
                LC(ft_op_nf4_quantize(lc_be, &E, src, FT_BF16), "nf4_quantize");
                src = lc_alloc(2 * V * C);
                LC(ft_op_nf4_dequantize(lc_be, src, &E), "nf4_dequantize");
            }
            ft_weight_release(lc_be, &E);
        }
    }
    { /* norms: hidden rows and Qwen3's q/k-norm rows [N*H, D] */
        const int64_t rows[2] = {N, N * H}, cols[2] = {C, D};
        for (int i = 0; i < 2; i++) {
            ft_weight w;
            memset(&w, 0, sizeof w);
            if (ft_weight_alloc(lc_be, &w, FT_BF16, 1, cols[i], "norm") != FT_OK) continue;
            {
                void *x = lc_alloc(2 * rows[i] * cols[i]), *o = lc_alloc(2 * rows[i] * cols[i]);
                float *rstd = lc_alloc(4 * rows[i]);
                LC(ft_op_rmsnorm(lc_be, o, rstd, x, &w, rows[i], cols[i], 1e-5f), "rmsnorm");
                x = lc_alloc(2 * rows[i] * cols[i]), o = lc_alloc(2 * rows[i] * cols[i]);
                void *dy = lc_alloc(2 * rows[i] * cols[i]);
                rstd = lc_alloc(4 * rows[i]);
                LC(ft_op_rmsnorm_bwd(lc_be, o, dy, x, &w, rstd, rows[i], cols[i], 1), "rmsnorm_bwd");
            }
            ft_weight_release(lc_be, &w);
        }
    }
    {
        void *x = lc_alloc(2 * N * H * D);
        int32_t *pos = lc_alloc(4 * N);
        float *inv = lc_alloc(4 * D / 2);
        LC(ft_op_rope(lc_be, x, pos, inv, N, H, D, 0), "rope");
    }
    lc_linear(M, B, T, C, H * D, "q_proj");
    lc_linear(M, B, T, C, M->Hkv * D, "k_proj");
    lc_linear(M, B, T, C, F, "gate_proj");
    lc_linear(M, B, T, F, C, "down_proj");
    if (M == &lc_models[0]) { /* a GGUF base: Llama-3-70B's down_proj as Q4_K_M files store it (Q4_K, Q6_K) */
        lc_linear_dt(M, B, T, F, C, "down_proj Q4_K", FT_Q4_K, 1);
        lc_linear_dt(M, B, T, F, C, "down_proj Q6_K", FT_Q6_K, 1);
        lc_linear_dt(M, B, T, F, C, "down_proj IQ4_XS", FT_IQ4_XS, 1); /* an IQ4_XS file */
        lc_linear_dt(M, B, T, C, F, "gate_proj IQ4_NL", FT_IQ4_NL, 1);
    }
    lc_lora(M, B, T, C, F);
    lc_lora(M, B, T, F, C);
    lc_dora(M, B, T);
    /* decoding: 1 and FT_LINEAR_FEW_ROWS new tokens against N cached keys (attention_kv), and the
     * products of that few rows, which read NF4 codes directly (gemv.cu) */
    for (int64_t nq = 1; nq <= FT_LINEAR_FEW_ROWS; nq += FT_LINEAR_FEW_ROWS - 1) {
        const int64_t Hkv = M->Hkv;
        void *q = lc_alloc(2 * nq * H * D), *k = lc_alloc(2 * N * Hkv * D), *v = lc_alloc(2 * N * Hkv * D);
        void *o = lc_alloc(2 * nq * H * D);
        LC(ft_op_attention_kv(lc_be, o, q, k, v, nq, N, H, Hkv, D, 0.088f), "attention_kv");
        lc_linear(M, 1, nq, C, H * D, "q_proj (decoding)");
        lc_linear(M, 1, nq, F, C, "down_proj (decoding)");
        if (M == &lc_models[0]) { /* the ggml blocks read directly (gemv.cu) */
            lc_linear_dt(M, 1, nq, F, C, "down_proj Q4_K (decoding)", FT_Q4_K, 0);
            lc_linear_dt(M, 1, nq, F, C, "down_proj Q6_K (decoding)", FT_Q6_K, 0);
            lc_linear_dt(M, 1, nq, F, C, "down_proj IQ4_XS (decoding)", FT_IQ4_XS, 0);
            lc_linear_dt(M, 1, nq, C, F, "gate_proj IQ4_NL (decoding)", FT_IQ4_NL, 0);
        }
    }
    { /* the MLP's elementwise ops over [N, F], the residual's over [N, C] */
        const int64_t n = N * F;
        void *a = lc_alloc(2 * n), *g = lc_alloc(2 * n), *u = lc_alloc(2 * n);
        LC(ft_op_swiglu(lc_be, a, g, u, n), "swiglu");
        a = lc_alloc(2 * n), g = lc_alloc(2 * n), u = lc_alloc(2 * n);
        void *dg = lc_alloc(2 * n), *du = lc_alloc(2 * n);
        LC(ft_op_swiglu_bwd(lc_be, dg, du, a, g, u, n), "swiglu_bwd");
        a = lc_alloc(2 * N * C), g = lc_alloc(2 * N * C);
        LC(ft_op_add(lc_be, a, g, N * C), "add");
        a = lc_alloc(2 * N * C), g = lc_alloc(2 * N * C);
        LC(ft_op_dropout(lc_be, a, g, N * C, 0.1f, 3), "dropout");
    }
    { /* cross-entropy over a chunk of rows (the model bounds the logits buffer) */
        const int64_t rows = N < 8192 ? N : 8192;
        void *logits = lc_alloc(2 * rows * V);
        int32_t *labels = lc_alloc(4 * rows);
        float *sums = lc_alloc(8);
        LC(ft_op_xent(lc_be, sums, sums + 1, logits, labels, rows, V, 1.0f), "xent");
    }
    { /* trainable tokens (k 8): their rows of the whole micro-batch's embedding, their logits columns
       * of a cross-entropy chunk */
        const int64_t k = 8, rows = N < 8192 ? N : 8192;
        void *x = lc_alloc(2 * N * C);
        float *r = lc_alloc(4 * k * C);
        int32_t *pos = lc_alloc(4 * (k + 1 + N));
        LC(ft_op_rows_set(lc_be, x, r, pos, k, C), "rows_set");
        x = lc_alloc(2 * N * C), r = lc_alloc(4 * k * C), pos = lc_alloc(4 * (k + 1 + N));
        LC(ft_op_rows_sum(lc_be, r, x, pos, k, C), "rows_sum");
        void *logits = lc_alloc(2 * rows * V), *t = lc_alloc(2 * rows * k);
        int32_t *cols = lc_alloc(4 * k);
        LC(ft_op_cols_set(lc_be, logits, t, cols, rows, V, k), "cols_set");
        logits = lc_alloc(2 * rows * V), t = lc_alloc(2 * rows * k), cols = lc_alloc(4 * k);
        LC(ft_op_cols_take(lc_be, t, logits, cols, rows, V, k), "cols_take");
    }
}

/* The optimizer over every LoRA parameter of rank 256 on all seven linears of every layer (L70: 80
 * layers, 3.3e9 parameters: past 2^31) */
static void lc_optim(void) {
    const lc_model *M = &lc_models[0];
    const int64_t B = 0, T = 0, C = M->C, F = M->F, kv = M->Hkv * M->D, R = 256;
    const int64_t n = 80 * R * (2 * (C + C) + 2 * (C + kv) + 3 * (C + F));
    float *p = lc_alloc(4 * n), *g = lc_alloc(4 * n), *m = lc_alloc(4 * n), *v = lc_alloc(4 * n);
    float *sc = lc_alloc(4 * FT_ADAMW_NSCALARS + 4);
    LC(ft_op_sumsq(lc_be, sc + FT_ADAMW_NSCALARS, g, n), "sumsq");
    p = lc_alloc(4 * n), g = lc_alloc(4 * n), m = lc_alloc(4 * n), v = lc_alloc(4 * n);
    sc = lc_alloc(4 * FT_ADAMW_NSCALARS + 4);
    LC(ft_op_scale(lc_be, g, n, 0.5f), "scale");
    p = lc_alloc(4 * n), g = lc_alloc(4 * n), m = lc_alloc(4 * n), v = lc_alloc(4 * n);
    sc = lc_alloc(4 * FT_ADAMW_NSCALARS + 4);
    LC(ft_op_clip_factor(lc_be, sc, sc + FT_ADAMW_NSCALARS, 1.0), "clip_factor");
    p = lc_alloc(4 * n), g = lc_alloc(4 * n), m = lc_alloc(4 * n), v = lc_alloc(4 * n);
    sc = lc_alloc(4 * FT_ADAMW_NSCALARS + 4);
    LC(ft_op_adamw(lc_be, p, g, m, v, n, sc), "adamw");
}

/* Error path: the weight-streaming session's pinned buffers refused part way (the second of its
 * cudaHostAllocs). The call fails with FT_E_OOM; the next one must start a whole session, not
 * reuse the half-made one and copy into a NULL buffer (load.cu ft_load_begin). */
static void lc_load_error_path(void) {
    ft_weight w;
    memset(&w, 0, sizeof w);
    uint16_t *src = calloc(64 * 64, 2);
    ft_status first = FT_OK, second = FT_E_INTERNAL;
    if (ft_backend_cuda_create(&lc_be, 0) == FT_OK && src && ft_weight_alloc(lc_be, &w, FT_NF4, 64, 64, "w") == FT_OK) {
        ft_emu_fail_host_alloc_in(2);
        first = ft_weight_set(lc_be, &w, src, FT_BF16);
        second = ft_weight_set(lc_be, &w, src, FT_BF16);
        if (second == FT_OK) second = ft_backend_sync(lc_be);
        ft_weight_release(lc_be, &w);
    }
    ft_emu_fail_host_alloc_in(0);
    free(src);
    if (lc_be) ft_backend_free(lc_be);
    lc_be = NULL;
    const int ok = first != FT_OK && second == FT_OK;
    lc_fail += !ok;
    printf("%s weight streaming after a refused pinned buffer (first %d, second %d)\n", ok ? "ok  " : "FAIL",
           (int)first, (int)second);
}

/* One backend per setting of the environment switches that pick other kernels. */
static void lc_backend(const char *var, const char *val, int attention_only) {
    if (var) setenv(var, val, 1);
    if (ft_backend_cuda_create(&lc_be, 0) != FT_OK) {
        printf("FAIL backend (%s=%s): %s\n", var ? var : "-", val ? val : "", ft_error_msg());
        lc_fail++;
        if (var) unsetenv(var);
        return;
    }
    const long long before = ft_emu_launch_count();
    for (size_t m = 0; m < sizeof lc_models / sizeof *lc_models; m++)
        for (size_t c = 0; c < sizeof lc_bt / sizeof *lc_bt; c++)
            lc_model_run(&lc_models[m], lc_bt[c][0], lc_bt[c][1], attention_only);
    if (!attention_only) lc_optim();
    if (ft_backend_sync(lc_be) != FT_OK) {
        printf("FAIL sync: %s\n", ft_error_msg());
        lc_fail++;
    }
    printf("%-12s %-8s %7lld launches checked\n", var ? var : "defaults", var ? val : "", ft_emu_launch_count() - before);
    ft_backend_free(lc_be);
    lc_be = NULL;
    if (var) unsetenv(var);
}

int main(void) {
    const char *dry = getenv("FT_EMU_DRY");
    if (!dry || strcmp(dry, "1") != 0) {
        fprintf(stderr, "launches: run with FT_EMU_DRY=1 (tests/gpu/emu/run.sh launches)\n");
        return 2;
    }
    const char *sk = getenv("FT_EMU_SMEM_KIB");
    printf("launch check at real widths and long token counts, %s KiB of opt-in shared memory\n", sk ? sk : "227");
    lc_load_error_path();
    lc_backend(NULL, NULL, 0);
    lc_backend("FT_CUDA_ATTN", "wmma", 1);
    lc_backend("FT_CUDA_ATTN", "simt", 1);
    lc_backend("FT_CUDA_ATTN", "mma32", 1);
    lc_backend("FT_CUDA_LORA", "unfused", 0);
    lc_backend("FT_CUDA_LORA", "mma", 0);
    lc_backend("FT_CUDA_GEMM", "simt", 0);
    printf("%s: %d op call(s) failed\n", lc_fail ? "FAIL" : "ok", lc_fail);
    return lc_fail ? 1 : 0;
}
