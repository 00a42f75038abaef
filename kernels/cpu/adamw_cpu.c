/* adamw_cpu.c: one AdamW step over an f32 parameter vector, reading its scalars (ops.h FT_ADAMW_*)
 * from memory so the step needs no host arguments.
 *
 * Follows torch.optim.AdamW's single-tensor update operation by operation in float32, so a CPU run
 * tracks torch to the last bits:
 *   p *= 1 - lr*wd;  g *= gscale;  m = lerp(m, g, 1 - b1) = m + (1 - b1)(g - m);
 *   v = v*b2 + (1 - b2) g g;  denom = sqrt(v) / sqrt(bc2) + eps;  p += -(lr / bc1) * m / denom.
 * Scalars torch derives in double (1 - lr*wd, lr/bc1, sqrt(bc2)) are derived in double here too. */
#include <math.h>
#include <omp.h>

#include "kernels/cpu/cpu_impl.h"

ft_status ft_cpu_adamw(ft_backend *be, float *p, const float *g, float *m, float *v, int64_t n,
                       const float *scalars) {
    const double lr = scalars[FT_ADAMW_LR], wd = scalars[FT_ADAMW_WD];
    const float b1 = scalars[FT_ADAMW_BETA1], b2 = scalars[FT_ADAMW_BETA2], eps = scalars[FT_ADAMW_EPS];
    const float gscale = scalars[FT_ADAMW_GSCALE];
    const float decay = (float)(1.0 - lr * wd);
    const float w1 = (float)(1.0 - (double)b1), w2 = (float)(1.0 - (double)b2);
    const float step = (float)(lr / (double)scalars[FT_ADAMW_BC1]);
    const float bc2s = (float)sqrt((double)scalars[FT_ADAMW_BC2]);
#pragma omp parallel for num_threads(ft_cpu_threads_for(be, n)) schedule(static)
    for (int64_t i = 0; i < n; i++) {
        const float gi = g[i] * gscale;
        const float pi = p[i] * decay;
        const float mi = m[i] + w1 * (gi - m[i]);
        const float vi = v[i] * b2 + w2 * gi * gi;
        const float denom = sqrtf(vi) / bc2s + eps;
        m[i] = mi;
        v[i] = vi;
        p[i] = pi + (-step) * mi / denom;
    }
    return FT_OK;
}

/* As optim/adamw.c always computed it on the host: the norm and the factor in double. */
ft_status ft_cpu_clip_factor(ft_backend *be, float *scalars, const float *sumsq, double max_norm) {
    (void)be;
    double gscale = 1.0;
    if (max_norm > 0) {
        const double c = max_norm / (sqrt((double)*sumsq) + 1e-6);
        if (c < 1.0) gscale = c;
    }
    scalars[FT_ADAMW_GSCALE] = (float)gscale;
    return FT_OK;
}
