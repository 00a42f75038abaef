/* guard.h: the step guard of unattended runs. After forward+backward and before the update, a
 * step whose loss or gradient norm is NaN/Inf, or whose loss is a spike (more than `zscore`
 * standard deviations above the recent mean), is skipped: parameters and optimizer moments stay
 * as they were, the data moves on. Too many skipped steps in a row stop the run.
 *
 * "Recent" is an exponentially weighted mean and variance of the accepted steps' losses
 * (weight FT_GUARD_ALPHA, about the last 1/alpha steps). Spikes are judged only after
 * FT_GUARD_WARMUP accepted steps, and the standard deviation is floored at FT_GUARD_SD_FLOOR of
 * the mean, so the small wobble of a flat curve is never a spike. A falling loss (the usual
 * trend) only lowers z.
 *
 * A spike test cannot see divergence: when the learning rate is too high the loss climbs step
 * by step (2 -> 16 over a hundred steps), the mean follows it and no single step stands out. So
 * the guard also keeps the lowest mean of the run ("best") and counts the accepted steps in a
 * row whose loss is above max(factor x best, best + FT_GUARD_DIVERGE_MARGIN). After
 * FT_GUARD_DIVERGE_STEPS of them the run has diverged. The best starts at the first step's loss,
 * with no warm-up: a LoRA adapter starts at zero, so that loss is the base model's own, and a
 * learning rate too high for the run ruins it within the first steps (tiny.yaml at lr 1: 2.1,
 * 2.0, then 10 from step 3 on). One spike, however large, is one step and resets nothing but
 * itself; the margin keeps a near-zero loss (a memorized dataset) from counting its noise.
 *
 * The state is a few numbers that a checkpoint stores, so a resumed run judges exactly as the
 * uninterrupted one would. */
#ifndef FT_GUARD_H
#define FT_GUARD_H

#include <stdint.h>

#define FT_GUARD_ALPHA 0.05
#define FT_GUARD_WARMUP 10
#define FT_GUARD_SD_FLOOR 0.01
#define FT_GUARD_DIVERGE_STEPS 20
#define FT_GUARD_DIVERGE_MARGIN 0.5

typedef struct ft_guard {
    int64_t n;            /* accepted steps seen */
    double mean, var;     /* exponentially weighted loss mean and variance */
    int64_t consecutive;  /* skipped steps in a row */
    int64_t skipped;      /* skipped steps in the run */
    double best;          /* lowest mean of the run (0: no step yet) */
    int64_t best_step;    /* the step that reached it */
    int64_t above;        /* accepted steps in a row with a loss above the divergence bound */
    int64_t above_from;   /* the step that began that run (0: unknown, a checkpoint older than it) */
    int64_t rollbacks;    /* divergences the run went back from (training.max_rollbacks): its learning rate is
                           * training.lr x training.rollback_lr_factor^rollbacks */
} ft_guard;

typedef enum { FT_GUARD_OK = 0, FT_GUARD_NONFINITE, FT_GUARD_SPIKE } ft_guard_verdict;

/* zscore <= 0: spikes are not checked (non-finite values always are). *z gets the loss's
 * z-score (0 before the warm-up). */
ft_guard_verdict ft_guard_check(const ft_guard *g, double zscore, double loss, double grad_norm, double *z);
/* Records step `step`'s verdict: an accepted loss updates the statistics, the best mean and the
 * run of losses above the divergence bound of `factor` (<= 0: not counted); a skip counts. */
void ft_guard_record(ft_guard *g, ft_guard_verdict v, double loss, int64_t step, double factor);
/* The loss above which a step counts toward divergence (0 before the first step or with factor <= 0). */
double ft_guard_diverge_bound(const ft_guard *g, double factor);
/* 1 when FT_GUARD_DIVERGE_STEPS accepted steps in a row were above the bound. */
int ft_guard_diverged(const ft_guard *g);
/* "nonfinite", "spike" or "ok". */
const char *ft_guard_verdict_name(ft_guard_verdict v);

#endif
