/* test_ops_cpu.c: the CPU backend against the op test table (tests/op_table.h, test-backend-ops
 * style), and any BF16 backend against the CPU backend.
 *
 * Every small-tier case runs on the CPU backend and is compared with its double-precision reference
 * (independent loops in the runners), tolerance `tol`. When a GPU is present, every small-tier case
 * also runs on the CUDA backend and is compared with the CPU backend from the same inputs rounded to
 * BF16, tolerance `tol_act`. Outputs are poisoned with NaN before each run, so an element an op
 * forgets to write fails. Also checked here: ft_rope_inv_freq against transformers
 * (tests/fixtures/rope), and backend memory accounting. tests/test_ops_cuda.c runs the other tiers
 * and the test / grad / perf modes. Also: the BF16-storage mode of the CPU backend (FT_CPU_BF16,
 * kernels/cpu/bf16_cpu.c) writes exactly the plain backend's results rounded to BF16. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"
#include "kernels/dtype.h"
#include "kernels/ops.h"
#include "kernels/rng.h"
#include "kernels/rope.h"
#include "tests/harness.h"
#include "tests/op_table.h"

/* Runs every small-tier case on `be` and compares with the double references (ref == NULL) or with
 * the same case run on ref (the CPU backend). */
static void check_backend(ft_backend *be, ft_backend *ref) {
    printf("== %s vs %s\n", ft_backend_name(be), ref ? ft_backend_name(ref) : "double reference");
    for (int i = 0; i < ot_case_count(); i++) {
        const ot_case k = ot_case_at(i);
        if (k.tier != OT_SMALL) continue;
        ot_result r = {0};
        ot_run_compare(be, ref, &k, 0, &r);
    }
}

/* ---- RoPE frequencies against transformers ---------------------------------------------------- */
static void test_rope_freqs(void) {
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/fixtures/rope/inv_freq.txt", ft_test_src_dir());
    FILE *f = fopen(path, "r");
    if (!FT_CHECK(f != NULL, "cannot open %s", path)) return;
    int type, dim, orig, lines = 0;
    double theta, factor, low, high;
    int64_t total = 0, exact = 0;
    while (fscanf(f, "%d %lf %d %lf %lf %lf %d", &type, &theta, &dim, &factor, &low, &high, &orig) == 7) {
        ft_rope_cfg cfg = {(ft_rope_type)type, theta, dim, factor, low, high, orig};
        float got[512];
        FT_CHECK_OK(ft_rope_inv_freq(&cfg, got));
        int64_t worst = 0;
        for (int i = 0; i < dim / 2; i++) {
            double want;
            if (fscanf(f, "%la", &want) != 1) break;
            float wf = (float)want;
            int32_t a, b;
            memcpy(&a, &got[i], 4), memcpy(&b, &wf, 4);
            const int64_t ulp = llabs((long long)a - (long long)b);
            if (ulp > worst) worst = ulp;
            exact += ulp == 0;
            total++;
        }
        FT_CHECK(worst <= 1, "rope type %d theta %g dim %d: %lld ulp from transformers", type, theta, dim,
                 (long long)worst);
        lines++;
    }
    fclose(f);
    FT_CHECK(lines >= 10, "rope fixture: %d configurations", lines);
    printf("ok   rope inv_freq vs transformers: %lld of %lld values bit-exact, all within 1 ulp (%d configs)\n",
           (long long)exact, (long long)total, lines);
    ft_rope_cfg bad = {FT_ROPE_DEFAULT, 10000.0, 7, 0, 0, 0, 0};
    float tmp[8];
    FT_CHECK(ft_rope_inv_freq(&bad, tmp) == FT_E_ARG, "odd rotary dim accepted");
}

/* ---- BF16 storage mode ------------------------------------------------------------------------- */

/* got[n] must be want[n] rounded to BF16, bit for bit; NaN-safe (a NaN anywhere fails) */
static void check_rounded(const char *what, const float *want, const float *got, int64_t n) {
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) {
        const float w = ft_bf16_to_f32(ft_f32_to_bf16(want[i]));
        bad += !(got[i] == w) || !(want[i] == want[i]);
    }
    FT_CHECK(bad == 0, "bf16 storage: %s: %lld of %lld values are not the reference rounded to BF16", what,
             (long long)bad, (long long)n);
}

static void fill(float *x, int64_t n, uint64_t seed) {
    for (int64_t i = 0; i < n; i++) x[i] = 2.0f * ft_uniform(seed, (uint64_t)i) - 1.0f;
}

/* Each op of the two backends from the same inputs: the mode's activations are the reference's
 * rounded (so it changes storage, never arithmetic), its f32 outputs are the reference's. */
static void test_bf16_storage(ft_backend *cpu) {
    ft_backend *bf = NULL;
    FT_CHECK_OK(ft_backend_cpu_create(&bf, 2));
    if (!bf) return;
    FT_CHECK_OK(ft_backend_cpu_bf16(bf));
    FT_CHECK(strcmp(ft_backend_name(bf), "cpu-bf16") == 0, "bf16 storage: name %s", ft_backend_name(bf));
    FT_CHECK(ft_backend_act_dtype(bf) == FT_F32, "bf16 storage: activations are f32 arrays holding BF16 values");
    enum { N = 24, C = 40, F = 56, R = 8, V = 72 };
    static float x[N * F], u[N * F], y0[N * F], y1[N * F], t0[N * R], t1[N * R], s0[N], s1[N];
    static float wv[F * C], A[R * C], B[F * R], lg0[N * V], lg1[N * V];
    int32_t labels[N];
    for (int i = 0; i < N; i++) labels[i] = (i * 7) % V;
    fill(x, N * F, 1), fill(u, N * F, 2), fill(wv, F * C, 3), fill(A, R * C, 4), fill(B, F * R, 5);
    ft_weight w = {0}, g = {0};
    FT_CHECK_OK(ft_weight_alloc(cpu, &w, FT_F32, F, C, "w"));
    FT_CHECK_OK(ft_weight_set(cpu, &w, wv, FT_F32));
    FT_CHECK_OK(ft_weight_alloc(cpu, &g, FT_F32, 1, C, "g"));
    FT_CHECK_OK(ft_weight_set(cpu, &g, wv, FT_F32));
    ft_backend *be[2] = {cpu, bf};
    float *y[2] = {y0, y1}, *t[2] = {t0, t1}, *s[2] = {s0, s1}, *lg[2] = {lg0, lg1};
    for (int b = 0; b < 2; b++) FT_CHECK_OK(ft_op_rmsnorm(be[b], y[b], s[b], x, &g, N, C, 1e-5f));
    check_rounded("rmsnorm", y0, y1, N * C);
    FT_CHECK(memcmp(s0, s1, sizeof s0) == 0, "bf16 storage: rmsnorm's f32 rstd changed");
    /* the frozen linears multiply with the weight rounded to BF16: the reference gets it rounded */
    static float wr[F * C];
    for (int i = 0; i < F * C; i++) wr[i] = ft_bf16_to_f32(ft_f32_to_bf16(wv[i]));
    ft_weight w16 = {0};
    FT_CHECK_OK(ft_weight_alloc(cpu, &w16, FT_F32, F, C, "w16"));
    FT_CHECK_OK(ft_weight_set(cpu, &w16, wr, FT_F32));
    FT_CHECK_OK(ft_op_linear(cpu, y0, x, &w16, NULL, N, 0));
    FT_CHECK_OK(ft_op_linear(bf, y1, x, &w, NULL, N, 0));
    check_rounded("linear", y0, y1, N * F);
    FT_CHECK_OK(ft_op_linear_bwd_x(cpu, y0, u, &w16, N, 0));
    FT_CHECK_OK(ft_op_linear_bwd_x(bf, y1, u, &w, N, 0));
    check_rounded("linear_bwd_x", y0, y1, N * C);
    ft_weight_release(cpu, &w16);
    const ft_lora_drop drop = {0.25f, 99};
    for (int b = 0; b < 2; b++) FT_CHECK_OK(ft_op_lora_fwd(be[b], y[b], t[b], x, drop, A, B, N, C, F, R, 2.0f, 0));
    check_rounded("lora_fwd t", t0, t1, N * R);
    /* y's product reads t as stored: the reference's y from the rounded t, rounded */
    FT_CHECK_OK(ft_op_lora_fwd(cpu, y0, t1, NULL, drop, A, B, N, C, F, R, 2.0f, 0));
    check_rounded("lora_fwd y", y0, y1, N * F);
    for (int b = 0; b < 2; b++) FT_CHECK_OK(ft_op_swiglu(be[b], y[b], x, u, N * F));
    check_rounded("swiglu", y0, y1, N * F);
    for (int b = 0; b < 2; b++) {
        memcpy(y[b], u, sizeof u);
        FT_CHECK_OK(ft_op_add(be[b], y[b], x, N * F));
    }
    check_rounded("add", y0, y1, N * F);
    for (int b = 0; b < 2; b++) {
        fill(lg[b], N * V, 6);
        FT_CHECK_OK(ft_op_xent(be[b], &s[b][0], &s[b][1], lg[b], labels, N, V, 1.0f / N));
    }
    check_rounded("xent gradient", lg0, lg1, N * V);
    FT_CHECK(s0[0] == s1[0] && s0[1] == s1[1], "bf16 storage: xent's f32 loss changed");
    /* rows_set: the f32 rows rounded into x (x's other rows, BF16 values already, untouched) */
    const int32_t pos[2 + 3] = {0, 3, 5, 0, N - 1};
    for (int b = 0; b < 2; b++) {
        for (int i = 0; i < N * C; i++) y[b][i] = ft_bf16_to_f32(ft_f32_to_bf16(u[i]));
        FT_CHECK_OK(ft_op_rows_set(be[b], y[b], A, pos, 1, C));
    }
    check_rounded("rows_set", y0, y1, N * C);
    ft_weight_release(cpu, &w);
    ft_weight_release(cpu, &g);
    ft_backend_free(bf);
    printf("ok   cpu-bf16 storage: rmsnorm, linear (BF16 weight), lora, swiglu, add, xent and rows_set write the "
           "reference rounded\n");
}

int main(void) {
    ft_backend *cpu = NULL;
    FT_CHECK_OK(ft_backend_cpu_create(&cpu, 2));
    if (!cpu) return ft_test_finish();
    ot_test_memory(cpu);
    test_rope_freqs();
    check_backend(cpu, NULL);
    test_bf16_storage(cpu);
    FT_CHECK(ft_backend_bytes_in_use(cpu) == 0, "op cases leaked %lld bytes", (long long)ft_backend_bytes_in_use(cpu));

    ft_backend *gpu = NULL;
    if (ft_backend_cuda_create(&gpu, 0) == FT_OK && gpu) {
        check_backend(gpu, cpu);
        ft_backend_free(gpu);
    } else {
        printf("SKIP cuda vs cpu: %s\n", ft_error_msg());
    }
    ft_backend_free(cpu);
    return ft_test_finish();
}
