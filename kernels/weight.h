/* weight.h: a frozen (non-trainable) parameter as the ops consume it: 16/32-bit elements, NF4, or
 * ggml's block-quantized bytes (FT_Q4_0 .. FT_Q6_K, FT_IQ4_NL, FT_IQ4_XS: a GGUF base's linears, kept
 * as the file has them and dequantized where used, as NF4 is).
 * Shapes are PyTorch's: [rows, cols] row-major, a linear layer's weight is [out, in];
 * a 1-D tensor (norm weight, bias) has rows = 1. All pointers are backend memory. */
#ifndef FT_WEIGHT_H
#define FT_WEIGHT_H

#include <stdint.h>

#include "kernels/backend.h"
#include "kernels/nf4.h"

typedef struct ft_weight {
    ft_dtype dtype;   /* FT_F32, FT_F16, FT_BF16, FT_NF4 or a ggml block type (ft_dtype_is_ggml) */
    int64_t rows, cols;
    void *data;       /* elements for F32/F16/BF16; a ggml type's blocks, row-major, cols / block
                         elements blocks a row (ft_dtype_nbytes(dtype, rows * cols) bytes); NULL for NF4 */
    ft_nf4 nf4;       /* NF4 storage (dtype == FT_NF4) */
} ft_weight;

static inline int64_t ft_weight_numel(const ft_weight *w) { return w->rows * w->cols; }
/* Backend bytes this weight occupies (the size function the allocator and `ftune plan` share);
 * -1 for a ggml block type whose cols are not whole blocks. */
int64_t ft_weight_nbytes(ft_dtype dtype, int64_t rows, int64_t cols);

/* Allocates storage for a weight of the given dtype and shape on `be` (contents undefined).
 * A ggml block type needs cols a multiple of its block (32, or 256 for the K-quants): FT_E_FORMAT
 * naming the weight otherwise. */
ft_status ft_weight_alloc(ft_backend *be, ft_weight *w, ft_dtype dtype, int64_t rows, int64_t cols,
                          const char *name);
void ft_weight_release(ft_backend *be, ft_weight *w);

/* Fills w from host data of dtype src_dtype (F32/F16/BF16) with w->rows*w->cols elements.
 * For an NF4 weight this quantizes (ft_op_nf4_quantize); otherwise it converts and uploads.
 * A ggml block weight takes its own blocks (src_dtype == w->dtype: uploaded as they are, the GGUF
 * loader's path) or F32/F16/BF16 values, quantized on the host with ggml's reference encoders
 * (kernels/ggml_quants.h) for Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K and Q6_K; FT_E_UNSUPPORTED
 * for the others (Q2_K, Q3_K, the IQ types: decoded, never encoded). Quantized blocks go up through
 * ft_backend_upload; a weight's own blocks through the backend's streamed path (CUDA) or the same.
 * The CUDA backend streams the source through pinned staging buffers and quantizes on the device
 * while the next chunk is copied; it returns once it has read host_src (so the caller may drop
 * those pages), and the weight is complete at the next ft_backend_sync, or before any op uses it. */
ft_status ft_weight_set(ft_backend *be, ft_weight *w, const void *host_src, ft_dtype src_dtype);
/* Fills w with mean + scale * (2u - 1), u = ft_uniform(seed, i) for element i (kernels/rng.h), in
 * float32 (a product, then a sum, no FMA), rounded to BF16, then stored in w's dtype (quantized for
 * NF4 and the ggml types ftune encodes; FT_E_UNSUPPORTED for the others). The same values on every
 * backend: CUDA generates and quantizes NF4 on the device in chunks (no host copy of the tensor);
 * the generic path, and every ggml block weight, builds the BF16 values on the host a chunk at a
 * time and stores them as ft_weight_set would.
 * A uniform of half-width scale has standard deviation scale / sqrt(3). */
ft_status ft_weight_init_random(ft_backend *be, ft_weight *w, uint64_t seed, float mean, float scale);
/* Reads rows row0 .. row0 + nrows - 1 of a 16/32-bit or ggml block weight back to host float32
 * (dst holds nrows * cols floats; ggml blocks decoded on the host); FT_E_UNSUPPORTED for NF4. */
ft_status ft_weight_rows_f32(ft_backend *be, const ft_weight *w, int64_t row0, int64_t nrows, float *dst);
/* Reads the weight back to host float32 (dequantized for NF4 and the ggml block types, on the host
 * with the reference decoders: exact on every backend). dst holds rows*cols floats. */
ft_status ft_weight_get_f32(ft_backend *be, const ft_weight *w, float *dst);

#endif
