/* guard.c: see guard.h. */
#include "trainer/guard.h"

#include <math.h>

ft_guard_verdict ft_guard_check(const ft_guard *g, double zscore, double loss, double grad_norm, double *z) {
    *z = 0;
    if (!isfinite(loss) || !isfinite(grad_norm)) return FT_GUARD_NONFINITE;
    if (g->n < FT_GUARD_WARMUP) return FT_GUARD_OK;
    double sd = sqrt(g->var), floor_sd = FT_GUARD_SD_FLOOR * fabs(g->mean);
    if (sd < floor_sd) sd = floor_sd;
    if (!(sd > 0)) return FT_GUARD_OK;
    *z = (loss - g->mean) / sd;
    return zscore > 0 && *z > zscore ? FT_GUARD_SPIKE : FT_GUARD_OK;
}

double ft_guard_diverge_bound(const ft_guard *g, double factor) {
    if (!(factor > 0) || !(g->best > 0)) return 0;
    double b = factor * g->best, m = g->best + FT_GUARD_DIVERGE_MARGIN;
    return b > m ? b : m;
}

int ft_guard_diverged(const ft_guard *g) { return g->above >= FT_GUARD_DIVERGE_STEPS; }

void ft_guard_record(ft_guard *g, ft_guard_verdict v, double loss, int64_t step, double factor) {
    if (v != FT_GUARD_OK) {
        g->consecutive++;
        g->skipped++;
        return;
    }
    g->consecutive = 0;
    if (g->n++ == 0) {
        g->mean = loss, g->var = 0;
        g->best = loss, g->best_step = step, g->above = 0;
        return;
    }
    /* exponentially weighted (West 1979): mean and variance in one pass */
    double diff = loss - g->mean, incr = FT_GUARD_ALPHA * diff;
    g->mean += incr;
    g->var = (1.0 - FT_GUARD_ALPHA) * (g->var + diff * incr);
    /* the bound of the best so far, before this step may lower it: a rising loss never moves it */
    double bound = ft_guard_diverge_bound(g, factor);
    if (!(bound > 0 && loss > bound)) g->above = 0;
    else if (g->above++ == 0) g->above_from = step; /* skipped steps inside the run do not end it: count from here */
    if (!(g->best > 0) || g->mean < g->best) g->best = g->mean, g->best_step = step; /* 0: an older checkpoint's */
}

const char *ft_guard_verdict_name(ft_guard_verdict v) {
    return v == FT_GUARD_NONFINITE ? "nonfinite" : v == FT_GUARD_SPIKE ? "spike" : "ok";
}
