/* test_run_guard.c: the step guard (trainer/guard.h) on synthetic loss sequences: non-finite
 * values always skip, spikes only after the warm-up and only above the z-score, the standard
 * deviation floor, a falling loss is never a spike, and the skip counters. */
#include <math.h>
#include <stdio.h>

#include "tests/harness.h"
#include "trainer/guard.h"

static ft_guard_verdict step(ft_guard *g, double zs, double loss, double *z) {
    ft_guard_verdict v = ft_guard_check(g, zs, loss, 1.0, z);
    ft_guard_record(g, v, loss);
    return v;
}

int main(void) {
    ft_guard g = {0};
    double z;
    FT_CHECK(ft_guard_check(&g, 0, NAN, 1, &z) == FT_GUARD_NONFINITE, "NaN loss skips even with spikes off");
    FT_CHECK(ft_guard_check(&g, 6, 2.0, INFINITY, &z) == FT_GUARD_NONFINITE, "Inf gradient norm skips");
    FT_CHECK(ft_guard_check(&g, 6, -INFINITY, 1, &z) == FT_GUARD_NONFINITE, "-Inf loss skips");

    /* warm-up: nothing is a spike before FT_GUARD_WARMUP accepted steps */
    for (int i = 0; i < FT_GUARD_WARMUP - 1; i++) step(&g, 6, 2.0 + 0.05 * (i % 2 ? 1 : -1), &z);
    FT_CHECK(ft_guard_check(&g, 6, 50.0, 1, &z) == FT_GUARD_OK && z == 0, "no spike during the warm-up");
    for (int i = 0; i < 30; i++) step(&g, 6, 2.0 + 0.05 * (i % 2 ? 1 : -1), &z);
    FT_CHECK(fabs(g.mean - 2.0) < 0.02, "mean tracks the loss (%.4f)", g.mean);
    FT_CHECK(ft_guard_check(&g, 6, 2.08, 1, &z) == FT_GUARD_OK, "ordinary noise accepted (z %.2f)", z);
    FT_CHECK(ft_guard_check(&g, 6, 5.0, 1, &z) == FT_GUARD_SPIKE && z > 6, "a jump to 5.0 is a spike (z %.1f)", z);
    FT_CHECK(ft_guard_check(&g, 0, 5.0, 1, &z) == FT_GUARD_OK, "spike_zscore 0 turns spikes off");
    FT_CHECK(ft_guard_check(&g, 100, 5.0, 1, &z) == FT_GUARD_OK, "below a high z-score threshold: accepted");

    /* counters */
    int64_t n0 = g.n;
    FT_CHECK(step(&g, 6, 5.0, &z) == FT_GUARD_SPIKE && g.consecutive == 1 && g.skipped == 1 && g.n == n0,
             "a skip counts and leaves the statistics alone");
    step(&g, 6, NAN, &z);
    FT_CHECK(g.consecutive == 2 && g.skipped == 2 && isfinite(g.mean), "two in a row; NaN never enters the mean");
    step(&g, 6, 2.0, &z);
    FT_CHECK(g.consecutive == 0 && g.skipped == 2 && g.n == n0 + 1, "an accepted step resets the run of skips");

    /* floor: a perfectly flat curve has zero variance; the floor (1% of the mean) decides */
    ft_guard f = {0};
    for (int i = 0; i < 40; i++) step(&f, 6, 2.0, &z);
    FT_CHECK(f.var == 0, "flat curve: variance 0");
    FT_CHECK(ft_guard_check(&f, 6, 2.1, 1, &z) == FT_GUARD_OK && fabs(z - 5.0) < 1e-9, "2.1 on a flat 2.0: z = 5 (floor sd 0.02)");
    FT_CHECK(ft_guard_check(&f, 6, 2.2, 1, &z) == FT_GUARD_SPIKE, "2.2 on a flat 2.0 is a spike (z %.1f)", z);

    /* a falling loss (the usual trend) never trips the guard */
    ft_guard d = {0};
    int spikes = 0;
    for (int i = 0; i < 500; i++) spikes += step(&d, 3, 6.0 * exp(-i / 50.0) + 0.5, &z) != FT_GUARD_OK;
    FT_CHECK(spikes == 0, "falling loss: %d spikes at z-score 3", spikes);
    return ft_test_finish();
}
