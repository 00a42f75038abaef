/* adamw.h: AdamW over the LoRA parameter vector (one f32 allocation), torch.optim.AdamW
 * semantics (decoupled weight decay, bias correction), with global-norm gradient clipping
 * folded into the step as a gradient multiplier.
 *
 * The state is two f32 vectors (m, v) the size of the parameters plus the step count, in paged
 * backend memory (ft_backend_alloc_paged: CUDA managed memory that pages to the host under
 * memory pressure instead of failing, prefetched to the device before each step). The per-step
 * scalars live in a small backend array so the kernels read them from device memory; the clipping
 * factor is computed there too, from the norm accumulator (ft_op_clip_factor), so a step needs
 * no host round trip (ft_grad_norm_start + ft_adamw_step_dev). */
#ifndef FT_ADAMW_H
#define FT_ADAMW_H

#include <stdint.h>

#include "kernels/backend.h"

typedef struct ft_adamw_cfg {
    double beta1, beta2, eps, weight_decay;
    double clip;         /* max global grad norm; <= 0 disables clipping */
} ft_adamw_cfg;

typedef struct ft_adamw {
    ft_adamw_cfg cfg;
    int64_t n;           /* parameters */
    int64_t t;           /* optimizer steps taken */
    float *m, *v;        /* backend f32 [n] each: one allocation of 2n, m first */
    float *scalars;      /* backend f32 [FT_ADAMW_NSCALARS] */
    float *norm_acc;     /* backend f32 scalar for the grad-norm reduction */
} ft_adamw;

/* Bytes of optimizer state for n parameters (the size function plan and the allocator share). */
int64_t ft_adamw_state_bytes(int64_t n);
/* Bytes of the per-step scalars and the norm accumulator (one more small allocation). */
int64_t ft_adamw_scalar_bytes(void);
ft_status ft_adamw_create(ft_adamw **out, ft_backend *be, int64_t n, const ft_adamw_cfg *cfg);
void ft_adamw_free(ft_adamw *o, ft_backend *be);

/* The global gradient norm without reading it: *acc (backend f32) = sum of squares of grads[n];
 * the caller downloads it when it needs the norm (the step's metrics) and takes the square root. */
ft_status ft_grad_norm_start(ft_backend *be, float *acc, const float *grads, int64_t n);

/* One step at learning rate lr. With clipping, the factor of torch's clip_grad_norm_
 * (min(1, clip / (norm + 1e-6))) is computed on the device from o->norm_acc, which
 * ft_grad_norm_start(be, o->norm_acc, grads, n) filled, so the step never waits for the device.
 * Non-finite norms are the caller's to detect (it skips the step). */
ft_status ft_adamw_step_dev(ft_adamw *o, ft_backend *be, float *params, const float *grads, double lr);

#endif
