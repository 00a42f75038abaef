/* test_ops_cpu.c: the CPU backend against the op test table (tests/op_table.h, test-backend-ops
 * style), and any BF16 backend against the CPU backend.
 *
 * Every small-tier case runs on the CPU backend and is compared with its double-precision reference
 * (independent loops in the runners), tolerance `tol`. When a GPU is present, every small-tier case
 * also runs on the CUDA backend and is compared with the CPU backend from the same inputs rounded to
 * BF16, tolerance `tol_act`. Outputs are poisoned with NaN before each run, so an element an op
 * forgets to write fails. Also checked here: ft_rope_inv_freq against transformers
 * (tests/fixtures/rope), and backend memory accounting. tests/test_ops_cuda.c runs the other tiers
 * and the test / grad / perf modes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"
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

int main(void) {
    ft_backend *cpu = NULL;
    FT_CHECK_OK(ft_backend_cpu_create(&cpu, 2));
    if (!cpu) return ft_test_finish();
    ot_test_memory(cpu);
    test_rope_freqs();
    check_backend(cpu, NULL);
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
