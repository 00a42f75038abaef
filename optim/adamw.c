/* adamw.c: see adamw.h. */
#include "optim/adamw.h"

#include <math.h>

#include "kernels/mem.h"
#include "kernels/ops.h"

int64_t ft_adamw_state_bytes(int64_t n) { return 2 * n * 4; }
int64_t ft_adamw_scalar_bytes(void) { return (FT_ADAMW_NSCALARS + 1) * 4; }

ft_status ft_adamw_create(ft_adamw **out, ft_backend *be, int64_t n, const ft_adamw_cfg *cfg) {
    ft_adamw *o = NULL;
    ft_status st;
    *out = NULL;
    FT_TRY(ft_calloc((void **)&o, sizeof *o, "optimizer"));
    o->cfg = *cfg, o->n = n;
    FT_CHECK_GOTO(st, ft_backend_alloc_paged(be, (void **)&o->m, ft_adamw_state_bytes(n),
                                             "optimizer state (AdamW m, v)"), fail);
    o->v = o->m + n;
    FT_CHECK_GOTO(st, ft_backend_memset(be, o->m, 0, ft_adamw_state_bytes(n)), fail);
    FT_CHECK_GOTO(st, ft_backend_alloc(be, (void **)&o->scalars, ft_adamw_scalar_bytes(), "optimizer scalars"), fail);
    o->norm_acc = o->scalars + FT_ADAMW_NSCALARS;
    *out = o;
    return FT_OK;
fail:
    ft_adamw_free(o, be);
    return st;
}

void ft_adamw_free(ft_adamw *o, ft_backend *be) {
    if (!o) return;
    ft_backend_release(be, o->m);
    ft_backend_release(be, o->scalars);
    ft_free(o);
}

ft_status ft_grad_norm_start(ft_backend *be, float *acc, const float *grads, int64_t n) {
    FT_TRY(ft_backend_memset(be, acc, 0, 4));
    return ft_op_sumsq(be, acc, grads, n);
}

ft_status ft_adamw_step_dev(ft_adamw *o, ft_backend *be, float *params, const float *grads, double lr) {
    o->t++;
    float sc[FT_ADAMW_NSCALARS];
    sc[FT_ADAMW_LR] = (float)lr;
    sc[FT_ADAMW_BETA1] = (float)o->cfg.beta1;
    sc[FT_ADAMW_BETA2] = (float)o->cfg.beta2;
    sc[FT_ADAMW_EPS] = (float)o->cfg.eps;
    sc[FT_ADAMW_WD] = (float)o->cfg.weight_decay;
    sc[FT_ADAMW_BC1] = (float)(1.0 - pow(o->cfg.beta1, (double)o->t));
    sc[FT_ADAMW_BC2] = (float)(1.0 - pow(o->cfg.beta2, (double)o->t));
    sc[FT_ADAMW_GSCALE] = 1.0f; /* with clipping, replaced on the device before the update reads it */
    FT_TRY(ft_backend_upload(be, o->scalars, sc, sizeof sc));
    if (o->cfg.clip > 0) FT_TRY(ft_op_clip_factor(be, o->scalars, o->norm_acc, o->cfg.clip));
    FT_TRY(ft_backend_prefetch(be, o->m, ft_adamw_state_bytes(o->n))); /* paged: bring m, v back */
    return ft_op_adamw(be, params, grads, o->m, o->v, o->n, o->scalars);
}

