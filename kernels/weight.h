/* weight.h: a frozen (non-trainable) parameter as the ops consume it: 16/32-bit elements or NF4.
 * Shapes are PyTorch's: [rows, cols] row-major, a linear layer's weight is [out, in];
 * a 1-D tensor (norm weight, bias) has rows = 1. All pointers are backend memory. */
#ifndef FT_WEIGHT_H
#define FT_WEIGHT_H

#include <stdint.h>

#include "kernels/backend.h"
#include "kernels/nf4.h"

typedef struct ft_weight {
    ft_dtype dtype;   /* FT_F32, FT_F16, FT_BF16 or FT_NF4 */
    int64_t rows, cols;
    void *data;       /* elements for F32/F16/BF16; NULL for NF4 */
    ft_nf4 nf4;       /* NF4 storage (dtype == FT_NF4) */
} ft_weight;

static inline int64_t ft_weight_numel(const ft_weight *w) { return w->rows * w->cols; }
/* Backend bytes this weight occupies (the size function the allocator and `ftune plan` share). */
int64_t ft_weight_nbytes(ft_dtype dtype, int64_t rows, int64_t cols);

/* Allocates storage for a weight of the given dtype and shape on `be` (contents undefined). */
ft_status ft_weight_alloc(ft_backend *be, ft_weight *w, ft_dtype dtype, int64_t rows, int64_t cols,
                          const char *name);
void ft_weight_release(ft_backend *be, ft_weight *w);

/* Fills w from host data of dtype src_dtype (F32/F16/BF16) with w->rows*w->cols elements.
 * For an NF4 weight this quantizes (ft_op_nf4_quantize); otherwise it converts and uploads.
 * The CUDA backend streams the source through pinned staging buffers and quantizes on the device
 * while the next chunk is copied; it returns once it has read host_src (so the caller may drop
 * those pages), and the weight is complete at the next ft_backend_sync, or before any op uses it. */
ft_status ft_weight_set(ft_backend *be, ft_weight *w, const void *host_src, ft_dtype src_dtype);
/* Fills w with mean + scale * (2u - 1), u = ft_uniform(seed, i) for element i (kernels/rng.h), in
 * float32 (a product, then a sum, no FMA), rounded to BF16, then stored in w's dtype (quantized for
 * NF4). The same values on every backend: CUDA generates and quantizes on the device in chunks
 * (no host copy of the tensor); the generic path builds BF16 on the host and calls ft_weight_set.
 * A uniform of half-width scale has standard deviation scale / sqrt(3). */
ft_status ft_weight_init_random(ft_backend *be, ft_weight *w, uint64_t seed, float mean, float scale);
/* Reads rows row0 .. row0 + nrows - 1 of a 16/32-bit weight back to host float32 (dst holds
 * nrows * cols floats); FT_E_UNSUPPORTED for NF4. */
ft_status ft_weight_rows_f32(ft_backend *be, const ft_weight *w, int64_t row0, int64_t nrows, float *dst);
/* Reads the weight back to host float32 (dequantized for NF4). dst holds rows*cols floats. */
ft_status ft_weight_get_f32(ft_backend *be, const ft_weight *w, float *dst);

#endif
