/* test_run_guard.c: the step guard (trainer/guard.h) on synthetic loss sequences: non-finite
 * values always skip, spikes only after the warm-up and only above the z-score, the standard
 * deviation floor, a falling loss is never a spike, and the skip counters. Divergence: a steady
 * climb stops after exactly FT_GUARD_DIVERGE_STEPS steps above the bound; one huge accepted
 * spike, noise, a falling curve, a near-zero loss and factor 0 never do; a skipped step inside the
 * run neither counts nor breaks it, and the run's first step (above_from) is kept for the advice. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "tests/harness.h"
#include "trainer/guard.h"

static ft_guard_verdict step(ft_guard *g, double zs, double loss, double *z) {
    ft_guard_verdict v = ft_guard_check(g, zs, loss, 1.0, z);
    ft_guard_record(g, v, loss, g->n + g->skipped + 1, 0);
    return v;
}

/* Feeds `loss` as accepted steps with divergence factor `f`; returns the step count at which
 * the guard reports divergence, 0 if it never does. */
static int64_t feed(ft_guard *g, double f, int n, double (*loss)(int)) {
    for (int i = 0; i < n; i++) {
        ft_guard_record(g, FT_GUARD_OK, loss(i), g->n + 1, f);
        if (ft_guard_diverged(g)) return g->n;
    }
    return 0;
}

/* 2.0 flat for 50 steps, then +0.1 a step: past 4.0 (2 x best) from step 71 on */
static double climb(int i) { return i < 50 ? 2.0 : 2.0 + 0.1 * (i - 49); }
static double one_spike(int i) { return i == 30 ? 1000.0 : 2.0; }
static double noisy(int i) { return 2.0 + 0.8 * ((double)rand() / RAND_MAX - 0.5); }
static double falling(int i) { return 6.0 * exp(-i / 50.0) + 0.5; }
static double memorized(int i) { return i < 100 ? 0.02 : 0.4; } /* 20x its best, below best + margin */

static void divergence(void) {
    ft_guard g = {0};
    int64_t at = feed(&g, 2.0, 400, climb);
    /* step i+1 has loss 2 + 0.1 (i - 49) > 4.0 from i = 70 (step 71): the 20th is step 90 */
    FT_CHECK(at == 90, "steady climb: diverged at step %lld (want 90)", (long long)at);
    FT_CHECK(g.best == 2.0 && g.best_step == 1 && fabs(ft_guard_diverge_bound(&g, 2.0) - 4.0) < 1e-12,
             "best 2.0 from step 1 (%g, step %lld), bound 4.0", g.best, (long long)g.best_step);
    ft_guard off = {0};
    FT_CHECK(feed(&off, 0, 400, climb) == 0 && off.above == 0, "factor 0: divergence not counted");
    ft_guard s = {0};
    FT_CHECK(feed(&s, 2.0, 300, one_spike) == 0, "one accepted spike of 1000 is not divergence (above %lld)",
             (long long)s.above);
    ft_guard nz = {0};
    srand(7);
    FT_CHECK(feed(&nz, 2.0, 20000, noisy) == 0, "2.0 +- 0.4 noise for 20000 steps: no divergence");
    ft_guard fl = {0};
    FT_CHECK(feed(&fl, 1.5, 2000, falling) == 0, "falling curve, factor 1.5: no divergence");
    ft_guard m = {0};
    FT_CHECK(feed(&m, 2.0, 400, memorized) == 0 && m.best > 0 && m.best < 0.03,
             "a near-zero loss rising 0.02 -> 0.4 stays within the 0.5 margin (best %g)", m.best);
    /* spikes skipped by the z-score test are not accepted steps: the run of high losses goes on */
    ft_guard k = {0};
    for (int i = 0; i < 30; i++) ft_guard_record(&k, FT_GUARD_OK, 2.0, i + 1, 2.0);
    for (int i = 0; i < 10; i++) ft_guard_record(&k, FT_GUARD_OK, 5.0, 31 + i, 2.0);
    ft_guard_record(&k, FT_GUARD_SPIKE, 50.0, 41, 2.0);
    FT_CHECK(k.above == 10, "a skipped step neither counts nor resets the run (%lld)", (long long)k.above);
    FT_CHECK(k.above_from == 31, "the run of high losses began at step 31 (%lld)", (long long)k.above_from);
    for (int i = 0; i < 10; i++) ft_guard_record(&k, FT_GUARD_OK, 5.0, 42 + i, 2.0);
    /* diverged at step 51 after 20 high steps around one skip: the rise began at 31, not 51 - 20 + 1 */
    FT_CHECK(ft_guard_diverged(&k) && k.above == 20 && k.above_from == 31,
             "diverged with a skip inside the run: above %lld from step %lld (want 20 from 31)", (long long)k.above,
             (long long)k.above_from);
    ft_guard_record(&k, FT_GUARD_OK, 3.9, 52, 2.0);
    FT_CHECK(k.above == 0, "a step below the bound resets it");
    ft_guard_record(&k, FT_GUARD_OK, 5.0, 53, 2.0);
    FT_CHECK(k.above == 1 && k.above_from == 53, "a new run of high losses starts at its own step (%lld)",
             (long long)k.above_from);
    /* a checkpoint of an older version has no best: it restarts from the next step's mean */
    ft_guard old = {.n = 50, .mean = 2.0, .var = 0.01};
    ft_guard_record(&old, FT_GUARD_OK, 2.0, 51, 2.0);
    FT_CHECK(old.best == 2.0 && old.best_step == 51, "no best in the state: the next mean becomes it (%g)", old.best);
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
    divergence();
    return ft_test_finish();
}
