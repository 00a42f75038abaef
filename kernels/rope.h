/* rope.h: rotary-embedding frequencies from a model config (host math), fed to ft_op_rope.
 * Matches transformers' _compute_default_rope_parameters and _compute_llama3_parameters
 * (float32 arithmetic as torch does it). */
#ifndef FT_ROPE_H
#define FT_ROPE_H

#include <stdint.h>

#include "kernels/status.h"

typedef enum { FT_ROPE_DEFAULT = 0, FT_ROPE_LINEAR, FT_ROPE_LLAMA3 } ft_rope_type;

typedef struct ft_rope_cfg {
    ft_rope_type type;
    double theta;            /* rope_theta */
    int64_t dim;             /* rotary dims (= head_dim) */
    double factor;           /* linear / llama3 */
    double low_freq_factor;  /* llama3 */
    double high_freq_factor; /* llama3 */
    int64_t original_max_pos;/* llama3 original_max_position_embeddings */
} ft_rope_cfg;

/* inv_freq[dim/2] (host floats). */
ft_status ft_rope_inv_freq(const ft_rope_cfg *cfg, float *inv_freq);

#endif
