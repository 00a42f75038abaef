/* schedule.c: see schedule.h. */
#include "optim/schedule.h"

#include <math.h>
#include <string.h>

ft_status ft_sched_parse(const char *s, ft_sched_type *out) {
    if (strcmp(s, "constant") == 0) *out = FT_SCHED_CONSTANT;
    else if (strcmp(s, "linear") == 0) *out = FT_SCHED_LINEAR;
    else if (strcmp(s, "cosine") == 0) *out = FT_SCHED_COSINE;
    else return FT_ERR(FT_E_ARG, "unknown schedule '%s' (expected constant, linear or cosine)", s);
    return FT_OK;
}

const char *ft_sched_name(ft_sched_type t) {
    return t == FT_SCHED_LINEAR ? "linear" : t == FT_SCHED_COSINE ? "cosine" : "constant";
}

double ft_sched_lr(const ft_schedule *s, int64_t step) {
    double mult;
    if (step < s->warmup) {
        mult = (double)step / (double)(s->warmup > 1 ? s->warmup : 1);
    } else if (s->type == FT_SCHED_CONSTANT) {
        mult = 1.0;
    } else {
        int64_t span = s->total - s->warmup;
        double progress = (double)(step - s->warmup) / (double)(span > 1 ? span : 1);
        if (s->type == FT_SCHED_LINEAR) {
            mult = (double)(s->total - step) / (double)(span > 1 ? span : 1);
            if (mult < 0) mult = 0;
        } else {
            mult = 0.5 * (1.0 + cos(M_PI * progress));
            if (mult < 0) mult = 0;
        }
        if (mult < s->min_lr_ratio) mult = s->min_lr_ratio;
    }
    return s->lr * mult;
}
