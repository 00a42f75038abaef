/* embed.cu: token embedding gather, out[n, :] = table[ids[n], :] rounded to BF16, for tables of any
 * frozen dtype (F32/F16/BF16, NF4 dequantized element by element exactly as the reference, or a
 * GGUF base's ggml blocks, FT_Q4_0 .. FT_IQ4_XS, decoded 8 at a time as ggml's dequantize_row_*:
 * ggml_dequant.cuh; a row is C / B whole blocks, row v's bytes start at v * row_bytes).
 *
 * One block per token (grid-stride over tokens), threads over the C columns. An id outside
 * [0, V) is the caller's broken invariant (model.c validates ids on the host before upload): the
 * row is filled with NaN, so it cannot pass silently, and FT_CUERR_EMBED_ID is raised for
 * ft_backend_sync to report. The table is frozen, so there is no backward (ops.h). */
#include "kernels/cuda/check.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_impl.h"
#include "kernels/cuda/ggml_dequant.cuh"

/* An id outside [0, V): flagged in err, its output row NaN (so nothing downstream reads a stale row). */
__device__ __forceinline__ bool ft_embed_bad_id(int32_t id, int64_t V, act_t *o, int64_t C, unsigned *err) {
    if (id >= 0 && id < V) return false;
    if (threadIdx.x == 0) atomicOr(err, (unsigned)FT_CUERR_EMBED_ID);
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) ft_st(o, c, __int_as_float(0x7fc00000));
    return true;
}

__global__ void ft_k_embed(act_t *out, const int32_t *ids, ft_cu_wview w, int64_t N, int64_t V, int64_t C,
                           unsigned *err) {
    for (int64_t n = blockIdx.x; n < N; n += gridDim.x) {
        const int32_t id = ids[n];
        act_t *o = out + n * C;
        if (ft_embed_bad_id(id, V, o, C, err)) continue;
        const int64_t base = (int64_t)id * C;
        if (w.dtype == FT_BF16) { /* the common case: a straight copy */
            const act_t *row = (const act_t *)w.data + base;
            for (int64_t c = threadIdx.x; c < C; c += blockDim.x) o[c] = row[c];
        } else {
            for (int64_t c = threadIdx.x; c < C; c += blockDim.x) ft_st(o, c, ft_weight_at(w, base + c));
        }
    }
}

/* The same for a ggml table (C a multiple of the block size, so of 8). */
template <int DT>
__global__ void ft_k_embed_ggml(act_t *out, const int32_t *ids, const uint8_t *w, int64_t row_bytes, int64_t N,
                                int64_t V, int64_t C, unsigned *err) {
    for (int64_t n = blockIdx.x; n < N; n += gridDim.x) {
        const int32_t id = ids[n];
        act_t *o = out + n * C;
        if (ft_embed_bad_id(id, V, o, C, err)) continue;
        const uint8_t *row = w + (int64_t)id * row_bytes;
        for (int64_t c = 8 * (int64_t)threadIdx.x; c < C; c += 8 * (int64_t)blockDim.x) {
            float v[8];
            ft_ggml_dq8_at<DT>(row, c, v);
#pragma unroll
            for (int i = 0; i < 8; i++) ft_st(o, c + i, v[i]);
        }
    }
}

struct ft_embed_ggml_launch {
    template <int DT>
    static void run(unsigned grid, int threads, cudaStream_t s, act_t *out, const int32_t *ids, const uint8_t *w,
                    int64_t row_bytes, int64_t N, int64_t V, int64_t C, unsigned *err) {
        ft_k_embed_ggml<DT><<<grid, threads, 0, s>>>(out, ids, w, row_bytes, N, V, C, err);
    }
};

ft_status ft_cuda_embed(ft_backend *be, void *out, const int32_t *ids, const ft_weight *table, int64_t N) {
    ft_backend_cuda *b = ft_cu(be);
    const int64_t V = table->rows, C = table->cols;
    if (N == 0 || C == 0) return FT_OK;
    const int ggml = ft_dtype_is_ggml(table->dtype);
    if (table->dtype != FT_F32 && table->dtype != FT_F16 && table->dtype != FT_BF16 && table->dtype != FT_NF4 && !ggml)
        return FT_ERR(FT_E_UNSUPPORTED, "embed: table dtype %s", ft_dtype_name(table->dtype));
    FT_TRY(ft_cuda_load_settle(be)); /* a streamed NF4 table gets its offset first */
    const int threads = C >= 1024 ? 256 : 128;
    const unsigned grid = (unsigned)(N < 65535LL * 16 ? N : 65535LL * 16);
    if (ggml) {
        const int64_t row_bytes = ft_dtype_nbytes(table->dtype, C);
        if (row_bytes < 0)
            return FT_ERR(FT_E_INTERNAL, "embed: %s rows of %lld elements are not whole blocks",
                          ft_dtype_name(table->dtype), (long long)C);
        ft_ggml_dispatch<ft_embed_ggml_launch>((int)table->dtype, grid, threads, b->stream, (act_t *)out, ids,
                                               (const uint8_t *)table->data, row_bytes, N, V, C, b->err);
        FT_CUDA_LAUNCH_TRY("ft_k_embed_ggml");
        return FT_OK;
    }
    ft_k_embed<<<grid, threads, 0, b->stream>>>((act_t *)out, ids, ft_cu_view(table, b->nf4_tables), N, V, C, b->err);
    FT_CUDA_LAUNCH_TRY("ft_k_embed");
    return FT_OK;
}
