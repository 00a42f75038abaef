/* rope_cpu.c: rotary position embedding in place, Hugging Face layout (rotate_half: pairs (i, i+D/2)).
 *
 * As transformers computes it in float32: angle = float(pos) * inv_freq[i] (one float product),
 * cos/sin of that float angle (here in double, rounded: torch's float cos/sin are within an ulp),
 * then x_i' = x_i cos - x_j sin, x_j' = x_j cos + x_i sin (j = i + D/2) in float.
 * inverse != 0 rotates by -angle, the transpose of the rotation, which is its backward. */
#include <math.h>
#include <omp.h>

#include "kernels/cpu/cpu_impl.h"

ft_status ft_cpu_rope(ft_backend *be, void *xv, const int32_t *pos, const float *inv_freq, int64_t N, int64_t nh,
                      int64_t D, int inverse) {
    float *x = xv; /* [N, nh, D] */
    const int64_t half = D / 2;
#pragma omp parallel for num_threads(ft_cpu_threads_for(be, N * nh * D)) schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const float p = (float)pos[n];
        for (int64_t i = 0; i < half; i++) {
            const float ang = p * inv_freq[i];
            const float c = (float)cos((double)ang);
            const float s = inverse ? -(float)sin((double)ang) : (float)sin((double)ang);
            for (int64_t h = 0; h < nh; h++) {
                float *row = x + (n * nh + h) * D;
                const float a = row[i], b = row[i + half];
                row[i] = a * c - b * s;
                row[i + half] = b * c + a * s;
            }
        }
    }
    return FT_OK;
}
