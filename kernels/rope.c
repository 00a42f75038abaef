/* rope.c: rotary inverse frequencies from a model config, as transformers computes them on CPU in
 * float32 (modeling_rope_utils: _compute_default_rope_parameters, _compute_linear_scaling_...,
 * _compute_llama3_parameters).
 *
 * Each torch tensor op is one float32 rounding, with Python scalars cast to float first:
 *   e = float(2i) / dim;  p = base ** e;  inv = 1 / p.
 *   The power is float(base) to the float power computed in double and rounded once (correctly
 *   rounded). torch uses SLEEF's powf (<= 1 ulp), so for some (theta, dim) one or two low
 *   frequencies differ from transformers by 1 ulp (e.g. theta 1e6, dim 128: one of 64; Llama 3's
 *   500000/128 is exact): a relative angle error of 6e-8, below the rounding of the float angle
 *   pos * inv_freq itself. tests/test_ops_cpu.c checks the transformers values within 1 ulp.
 *   llama3: wavelen = (1 / inv) * float(2 pi) (Python's scalar / tensor is reciprocal-then-multiply);
 *   long wavelengths (> orig/low) divide by factor; the band between orig/high and orig/low blends
 *   smooth = ((1 / wavelen) * orig - low) / (high - low), inv' = (1 - smooth) * inv / factor + smooth * inv. */
#include "kernels/rope.h"

#include <math.h>

ft_status ft_rope_inv_freq(const ft_rope_cfg *cfg, float *inv_freq) {
    const int64_t dim = cfg->dim;
    if (dim <= 0 || dim % 2 != 0) return FT_ERR(FT_E_ARG, "rope: rotary dimension %lld must be even and > 0", (long long)dim);
    if (!(cfg->theta > 0.0)) return FT_ERR(FT_E_ARG, "rope: rope_theta %g must be > 0", cfg->theta);
    const float base = (float)cfg->theta;
    for (int64_t i = 0; i < dim / 2; i++) {
        const float e = (float)(2 * i) / (float)dim;
        const float p = (float)pow((double)base, (double)e);
        inv_freq[i] = 1.0f / p;
    }
    if (cfg->type == FT_ROPE_DEFAULT) return FT_OK;
    if (!(cfg->factor > 0.0)) return FT_ERR(FT_E_ARG, "rope: scaling factor %g must be > 0", cfg->factor);
    const float factor = (float)cfg->factor;
    if (cfg->type == FT_ROPE_LINEAR) {
        for (int64_t i = 0; i < dim / 2; i++) inv_freq[i] = inv_freq[i] / factor;
        return FT_OK;
    }
    if (cfg->type != FT_ROPE_LLAMA3) return FT_ERR(FT_E_UNSUPPORTED, "rope: scaling type %d", (int)cfg->type);
    const double low = cfg->low_freq_factor, high = cfg->high_freq_factor, orig = (double)cfg->original_max_pos;
    if (!(low > 0.0) || !(high > low) || !(orig > 0.0))
        return FT_ERR(FT_E_ARG, "rope: llama3 scaling needs 0 < low_freq_factor < high_freq_factor and "
                                "original_max_position_embeddings > 0 (got %g, %g, %g)", low, high, orig);
    const float low_wavelen = (float)(orig / low), high_wavelen = (float)(orig / high);
    const float two_pi = (float)(2.0 * M_PI), origf = (float)orig, lowf = (float)low, span = (float)(high - low);
    for (int64_t i = 0; i < dim / 2; i++) {
        const float inv = inv_freq[i];
        const float wavelen = (1.0f / inv) * two_pi;
        const float scaled = wavelen > low_wavelen ? inv / factor : inv;
        const float smooth = ((1.0f / wavelen) * origf - lowf) / span;
        const float smoothed = (1.0f - smooth) * scaled / factor + smooth * scaled;
        const int medium = !(wavelen < high_wavelen) && !(wavelen > low_wavelen);
        inv_freq[i] = medium ? smoothed : scaled;
    }
    return FT_OK;
}
