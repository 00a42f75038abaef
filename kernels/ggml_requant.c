/* ggml_requant.c: ft_ggml_requantize_row (ggml_quants.h): re-encoding a GGUF base's blocks after a
 * merge moved their values (export/merge_gguf.c, --type base).
 *
 * A block whose values the delta left exactly as they were keeps its bytes: ggml's reference
 * encoders are not idempotent on decoded blocks (fed a block's own values they often land on another
 * scale: ~4% of a Q6_K tensor's bytes changed at a zero delta, moving logits by ~1e-2), so re-encoding
 * an unchanged block only adds error. A moved block takes ggml's fresh encoding.
 *
 * Keeping a moved block's scales and re-rounding only its codes was tried (session 16) and lost: it
 * lowers the block's squared error (by 0.7% on the Q4_K_M fixture's merge, 6.6% on Q4_0's) but rounds
 * away every delta smaller than a step, an error pointed against the direction training moved the
 * weight (its projection on the delta -0.30 |delta|^2 against -0.28 for the fresh encoding), and the
 * merged model's loss rose (2.873 -> 2.934 on the Q4_K_M fixture, 3.993 -> 4.143 on Q4_0). */
#include <math.h>
#include <string.h>

#include "kernels/ggml_quants.h"

int ft_ggml_requantize_row(int t, const void *base, const float *x, void *dst, int64_t n, int64_t *n_fresh) {
    const int64_t bs = ft_ggml_block_size(t), ts = ft_ggml_type_size(t);
    if (n_fresh) *n_fresh = 0;
    if (!ft_ggml_can_encode(t) || bs <= 0 || n % bs != 0) return -1;
    float y[FT_QK_K];
    for (int64_t b = 0; b < n / bs; b++) {
        const uint8_t *src = (const uint8_t *)base + b * ts;
        uint8_t *out = (uint8_t *)dst + b * ts;
        /* unchanged: every decoded value equal (-0 and +0 alike: a zero delta adds +0.0 to a decoded
         * -0.0; NaN to NaN) */
        int same = ft_ggml_dequantize_row(t, src, y, bs) == 0;
        for (int64_t e = 0; same && e < bs; e++) {
            const float a = y[e], v = x[b * bs + e];
            same = a == v || (isnan(a) && isnan(v));
        }
        if (same) {
            memcpy(out, src, (size_t)ts);
            continue;
        }
        if (ft_ggml_quantize_row(t, x + b * bs, out, bs) != 0) return -1;
        if (n_fresh) (*n_fresh)++;
    }
    return 0;
}
