/* plan_impl.h: what plan.c, plan_time.c and plan_data.c share; not for other modules. */
#ifndef FT_PLAN_IMPL_H
#define FT_PLAN_IMPL_H

#include <stddef.h>

#include "trainer/plan.h"
#include "trainer/recipe.h"

#define PL_GIB (1024.0 * 1024.0 * 1024.0)

/* The share of the layers the backward recomputes: 0 without recompute, else all but the kept
 * ones (training.keep_layers). */
static inline double ft_plan_recomputed(const ft_plan *p) {
    return p->recompute && p->dims.L > 0 ? (double)(p->dims.L - p->keep_layers) / (double)p->dims.L : 0.0;
}

/* "70.55 B", "35.31 GB", "416.57 GFLOP": v with an SI prefix and unit, into buf. */
const char *ft_plan_si(double v, const char *unit, char *buf, size_t cap);
/* The step's time into p (time[], micro_s, step_s, tokens_per_s, tflops): the parts at the device
 * profile's rates, or, with tflops > 0 (`--tflops`), a flat rate for all of it. Needs p's shapes,
 * FLOPs and memory lines filled. */
void ft_plan_time_model(ft_plan *p, const ft_recipe *r, double tflops);
/* plan_data.c: reads the newest cached dataset index of r's output_dir into p (data_*) and sets
 * attn_len: attn_len when > 0 (ftune bench --doc-len), T for unpacked rows, else the index's. Needs
 * p->T and p->packed. */
void ft_plan_data(ft_plan *p, const ft_recipe *r, double attn_len);
/* plan_data.c: p->steps and steps_from from training.steps, or the epochs over the index read. */
void ft_plan_steps(ft_plan *p, const ft_recipe *r);
/* plan_data.c: p->disk_*: what the run writes (needs lora_params, cfg and the index read) and what
 * output_dir's filesystem has free. */
void ft_plan_disk(ft_plan *p, const ft_recipe *r);
/* plan_time.c: n_evals, eval_tokens, eval_*_s from the steps, the validation rows and the rates. */
void ft_plan_eval_time(ft_plan *p, const ft_recipe *r);
/* plan_time.c: job_steps and jobs under training.max_hours, from hours (needs steps, disk_ckpt). */
void ft_plan_jobs(ft_plan *p, const ft_recipe *r);

#endif
