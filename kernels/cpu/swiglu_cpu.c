/* swiglu_cpu.c: the SwiGLU gate of Llama/Qwen/Mistral MLPs, out = silu(gate) * up, and its backward.
 *
 * Forward as torch in float32: silu(g) = g / (1 + exp(-g)), then times up. Backward in double per
 * element: with sig = 1 / (1 + exp(-g)), d silu/dg = sig (1 + g (1 - sig));
 *   dgate = dout * up * sig (1 + g (1 - sig)),  dup = dout * silu(g). */
#include <math.h>
#include <omp.h>

#include "kernels/cpu/cpu_impl.h"

ft_status ft_cpu_swiglu(ft_backend *be, void *outv, const void *gatev, const void *upv, int64_t n) {
    float *out = outv;
    const float *g = gatev, *u = upv;
#pragma omp parallel for num_threads(ft_cpu_threads_for(be, n)) schedule(static)
    for (int64_t i = 0; i < n; i++) out[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
    return FT_OK;
}

ft_status ft_cpu_swiglu_bwd(ft_backend *be, void *dgatev, void *dupv, const void *doutv, const void *gatev,
                            const void *upv, int64_t n) {
    float *dg = dgatev, *du = dupv;
    const float *dout = doutv, *g = gatev, *u = upv;
#pragma omp parallel for num_threads(ft_cpu_threads_for(be, n)) schedule(static)
    for (int64_t i = 0; i < n; i++) {
        const double x = g[i], sig = 1.0 / (1.0 + exp(-x));
        dg[i] = (float)((double)dout[i] * u[i] * sig * (1.0 + x * (1.0 - sig)));
        du[i] = (float)((double)dout[i] * x * sig);
    }
    return FT_OK;
}
