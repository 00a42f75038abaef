/* embed_cpu.c: token embedding gather, out[n, :] = table[ids[n], :] as f32 (any table dtype; an NF4
 * table is dequantized row by row). The table is frozen, so there is no backward. */
#include <omp.h>

#include "kernels/cpu/cpu_impl.h"

ft_status ft_cpu_embed(ft_backend *be, void *outv, const int32_t *ids, const ft_weight *table, int64_t N) {
    float *out = outv; /* [N, C] */
    const int64_t V = table->rows, C = table->cols;
    for (int64_t n = 0; n < N; n++)
        if (ids[n] < 0 || ids[n] >= V)
            return FT_ERR(FT_E_INTERNAL, "embed: token id %d at %lld outside the vocabulary of %lld", ids[n],
                          (long long)n, (long long)V);
#pragma omp parallel for num_threads(ft_cpu_threads_for(be, N * C)) schedule(static)
    for (int64_t n = 0; n < N; n++) ft_cpu_weight_f32(table, (int64_t)ids[n] * C, C, out + n * C);
    return FT_OK;
}
