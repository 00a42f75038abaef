/* schedule.h: learning-rate schedules as pure functions of the optimizer step, matching
 * transformers' get_{constant,linear,cosine}_schedule_with_warmup (LambdaLR): the multiplier
 * at step s (0-based: the first optimizer step uses s = 0) times the peak lr. */
#ifndef FT_SCHEDULE_H
#define FT_SCHEDULE_H

#include <stdint.h>

#include "kernels/status.h"

typedef enum { FT_SCHED_CONSTANT = 0, FT_SCHED_LINEAR, FT_SCHED_COSINE } ft_sched_type;

typedef struct ft_schedule {
    ft_sched_type type;
    double lr;           /* peak learning rate */
    int64_t warmup;      /* warmup steps (linear from 0) */
    int64_t total;       /* total optimizer steps */
    double min_lr_ratio; /* floor as a fraction of lr (0 = transformers' behaviour) */
} ft_schedule;

ft_status ft_sched_parse(const char *s, ft_sched_type *out);
const char *ft_sched_name(ft_sched_type t);
double ft_sched_lr(const ft_schedule *s, int64_t step);

#endif
