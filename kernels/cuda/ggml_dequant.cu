/* ggml_dequant.cu: ggml block-quantized frozen weights (FT_Q4_0 .. FT_IQ4_XS, a GGUF base's bytes) to
 * BF16 on the device, feeding the GEMMs of matmul.cu and the weight cache's ring (wcache.cu) exactly
 * as nf4.cu's dequantization does for NF4.
 *
 * Values: each element is ggml's dequantize_row_* f32 (ggml_dequant.cuh: the same roundings as the
 * host decoder of kernels/ggml_quants.c, bit for bit), rounded to BF16 (RNE), the copy the CPU
 * backend's BF16 path would make from the host decoder's floats.
 *
 * One thread per group of 8 elements (grid-stride, 64-bit indices: a 70B down_proj holds 2^27.8
 * elements, a Q6_K output embedding 2^30), one 16-byte store per group where the output is
 * aligned. A weight's element count is whole blocks (a multiple of 32), so groups never straddle
 * the end.
 *
 * ft_cuda_frozen_dequantize_on is the one entry that turns any quantized frozen weight (NF4 or
 * ggml) into its BF16 copy on a stream, so the product path and the prefetch ring cannot disagree
 * about which dtypes they serve. */
#include "kernels/cuda/check.h"
#include "kernels/cuda/cuda_impl.h"
#include "kernels/cuda/ggml_dequant.cuh"

template <int DT>
__global__ void ft_k_ggml_dequant(act_t *out, const uint8_t *w, int64_t ngroups, int aligned16) {
    for (int64_t g = ft_gtid(); g < ngroups; g += ft_gstride()) {
        float v[8];
        ft_ggml_dq8_at<DT>(w, 8 * g, v);
        if (aligned16) {
            ft_st_vec<8>(out + 8 * g, v);
        } else {
#pragma unroll
            for (int i = 0; i < 8; i++) ft_st(out, 8 * g + i, v[i]);
        }
    }
}

struct ft_ggml_dequant_launch {
    template <int DT>
    static void run(act_t *out, const uint8_t *w, int64_t ngroups, int aligned16, unsigned grid, cudaStream_t s) {
        ft_k_ggml_dequant<DT><<<grid, 256, 0, s>>>(out, w, ngroups, aligned16);
    }
};

ft_status ft_cuda_ggml_dequantize_on(ft_backend_cuda *b, void *out, const ft_weight *w, cudaStream_t s) {
    const int64_t n = ft_weight_numel(w);
    if (!ft_dtype_is_ggml(w->dtype))
        return FT_ERR(FT_E_INTERNAL, "ggml dequantize: weight is %s", ft_dtype_name(w->dtype));
    if (n == 0) return FT_OK;
    if (w->cols % ft_dtype_block_elems(w->dtype) != 0)
        return FT_ERR(FT_E_INTERNAL, "ggml dequantize: %s rows of %lld elements are not whole %lld-element blocks",
                      ft_dtype_name(w->dtype), (long long)w->cols, (long long)ft_dtype_block_elems(w->dtype));
    const int64_t ngroups = n / 8; /* whole blocks: n is a multiple of 32 */
    const int aligned16 = (uintptr_t)out % 16 == 0;
    const unsigned grid = ft_grid_1d(ngroups, 256, 32LL * b->sm_count * 8);
    ft_ggml_dispatch<ft_ggml_dequant_launch>((int)w->dtype, (act_t *)out, (const uint8_t *)w->data, ngroups, aligned16,
                                             grid, s);
    FT_CUDA_LAUNCH_TRY("ft_k_ggml_dequant");
    return FT_OK;
}

ft_status ft_cuda_frozen_dequantize_on(ft_backend_cuda *b, void *out, const ft_weight *w, cudaStream_t s) {
    if (w->dtype == FT_NF4) return ft_cuda_nf4_dequantize_on(b, out, w, s);
    if (ft_dtype_is_ggml(w->dtype)) return ft_cuda_ggml_dequantize_on(b, out, w, s);
    return FT_ERR(FT_E_INTERNAL, "cuda: dequantize a %s weight (not quantized)", ft_dtype_name(w->dtype));
}
