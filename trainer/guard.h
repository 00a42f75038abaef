/* guard.h: the step guard of unattended runs. After forward+backward and before the update, a
 * step whose loss or gradient norm is NaN/Inf, or whose loss is a spike (more than `zscore`
 * standard deviations above the recent mean), is skipped: parameters and optimizer moments stay
 * as they were, the data moves on. Too many skipped steps in a row stop the run.
 *
 * "Recent" is an exponentially weighted mean and variance of the accepted steps' losses
 * (weight FT_GUARD_ALPHA, about the last 1/alpha steps). Spikes are judged only after
 * FT_GUARD_WARMUP accepted steps, and the standard deviation is floored at FT_GUARD_SD_FLOOR of
 * the mean, so the small wobble of a flat curve is never a spike. A falling loss (the usual
 * trend) only lowers z. The state is a few numbers that a checkpoint stores, so a resumed run
 * judges exactly as the uninterrupted one would. */
#ifndef FT_GUARD_H
#define FT_GUARD_H

#include <stdint.h>

#define FT_GUARD_ALPHA 0.05
#define FT_GUARD_WARMUP 10
#define FT_GUARD_SD_FLOOR 0.01

typedef struct ft_guard {
    int64_t n;            /* accepted steps seen */
    double mean, var;     /* exponentially weighted loss mean and variance */
    int64_t consecutive;  /* skipped steps in a row */
    int64_t skipped;      /* skipped steps in the run */
} ft_guard;

typedef enum { FT_GUARD_OK = 0, FT_GUARD_NONFINITE, FT_GUARD_SPIKE } ft_guard_verdict;

/* zscore <= 0: spikes are not checked (non-finite values always are). *z gets the loss's
 * z-score (0 before the warm-up). */
ft_guard_verdict ft_guard_check(const ft_guard *g, double zscore, double loss, double grad_norm, double *z);
/* Records the verdict: an accepted loss updates the statistics, a skip counts. */
void ft_guard_record(ft_guard *g, ft_guard_verdict v, double loss);
/* "nonfinite", "spike" or "ok". */
const char *ft_guard_verdict_name(ft_guard_verdict v);

#endif
