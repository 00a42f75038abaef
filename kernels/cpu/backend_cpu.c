/* backend_cpu.c: the CPU reference backend: host memory behind the backend interface and the op
 * table pointing at the reference kernels of kernels/cpu/.
 *
 * Backend memory is the host heap, 64-byte aligned. Each block carries a 64-byte header holding its
 * size, so release() can tell backend.c how many bytes left (ft_backend_account_release). Threads:
 * every op runs `nthreads` OpenMP threads; OpenBLAS keeps its own pool, set to the same count when
 * the caller asked for one (openblas_set_num_threads is process-wide, which is fine: this is the
 * only CPU backend a process uses). */
#include "kernels/cpu/cpu_impl.h"

#include <cblas.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/ggml_quants.h"
#include "kernels/mem.h"

enum { FT_CPU_ALIGN = 64 };
typedef struct { int64_t bytes; int64_t pad[FT_CPU_ALIGN / 8 - 1]; } ft_cpu_alloc_hdr;

static ft_status ft_cpu_alloc(ft_backend *be, void **ptr, int64_t bytes) {
    (void)be;
    void *p = NULL;
    size_t total = sizeof(ft_cpu_alloc_hdr) + (size_t)bytes;
    if (posix_memalign(&p, FT_CPU_ALIGN, total) != 0 || !p)
        return FT_ERR(FT_E_OOM, "out of host memory (%lld bytes)", (long long)bytes);
    ((ft_cpu_alloc_hdr *)p)->bytes = bytes;
    *ptr = (char *)p + sizeof(ft_cpu_alloc_hdr);
    return FT_OK;
}

static void ft_cpu_release(ft_backend *be, void *ptr) {
    ft_cpu_alloc_hdr *h = (ft_cpu_alloc_hdr *)((char *)ptr - sizeof(ft_cpu_alloc_hdr));
    ft_backend_account_release(be, h->bytes);
    free(h);
}

static ft_status ft_cpu_memcpy(ft_backend *be, void *dst, const void *src, int64_t bytes) {
    (void)be;
    memmove(dst, src, (size_t)bytes);
    return FT_OK;
}

static ft_status ft_cpu_memset(ft_backend *be, void *dst, int value, int64_t bytes) {
    (void)be;
    memset(dst, value, (size_t)bytes);
    return FT_OK;
}

static ft_status ft_cpu_sync(ft_backend *be) {
    (void)be;
    return FT_OK;
}

static void ft_cpu_destroy(ft_backend *be) { free(be); }

static const ft_backend_vtbl ft_cpu_vtbl = {
    .name = "cpu",
    .kind = FT_BACKEND_CPU,
    .act_dtype = FT_F32,
    .destroy = ft_cpu_destroy,
    .alloc = ft_cpu_alloc,
    .release = ft_cpu_release,
    .upload = ft_cpu_memcpy,
    .download = ft_cpu_memcpy,
    .copy = ft_cpu_memcpy,
    .memset = ft_cpu_memset,
    .sync = ft_cpu_sync,
    .embed = ft_cpu_embed,
    .rmsnorm = ft_cpu_rmsnorm,
    .rmsnorm_bwd = ft_cpu_rmsnorm_bwd,
    .linear = ft_cpu_linear,
    .linear_bwd_x = ft_cpu_linear_bwd_x,
    .lora_fwd = ft_cpu_lora_fwd,
    .lora_bwd = ft_cpu_lora_bwd,
    .dropout = ft_cpu_dropout,
    .rope = ft_cpu_rope,
    .attention = ft_cpu_attention,
    .attention_bwd = ft_cpu_attention_bwd,
    .attention_kv = ft_cpu_attention_kv,
    .swiglu = ft_cpu_swiglu,
    .swiglu_bwd = ft_cpu_swiglu_bwd,
    .add = ft_cpu_add,
    .xent = ft_cpu_xent,
    .sumsq = ft_cpu_sumsq,
    .scale = ft_cpu_scale,
    .adamw = ft_cpu_adamw,
    .nf4_quantize = ft_cpu_nf4_quantize,
    .nf4_dequantize = ft_cpu_nf4_dequantize,
    .clip_factor = ft_cpu_clip_factor,
    .rows_set = ft_cpu_rows_set,
    .rows_sum = ft_cpu_rows_sum,
    .cols_set = ft_cpu_cols_set,
    .cols_take = ft_cpu_cols_take,
    .dora_norm = ft_cpu_dora_norm,
    .dora_scale = ft_cpu_dora_scale,
    .dora_mag_grad = ft_cpu_dora_mag_grad,
};

ft_status ft_backend_cpu_create(ft_backend **out, int nthreads) {
    *out = NULL;
    ft_backend_cpu *be;
    FT_TRY(ft_calloc((void **)&be, sizeof *be, "cpu backend"));
    be->base.vt = &ft_cpu_vtbl;
    be->nthreads = nthreads > 0 ? nthreads : omp_get_max_threads();
    if (be->nthreads < 1) be->nthreads = 1;
    if (nthreads > 0) openblas_set_num_threads(nthreads);
    *out = &be->base;
    return FT_OK;
}

/* ---- weights as f32 ------------------------------------------------------------------------ */

void ft_cpu_weight_f32(const ft_weight *w, int64_t start, int64_t count, float *dst) {
    switch (w->dtype) {
    case FT_F32: ft_to_f32(dst, (const float *)w->data + start, FT_F32, count); break;
    case FT_F16:
    case FT_BF16: ft_to_f32(dst, (const uint16_t *)w->data + start, w->dtype, count); break;
    case FT_NF4: ft_nf4_dequantize_range(&w->nf4, start, count, dst); break;
    default: {
        /* a ggml block weight: the ops ask for whole rows (a row is whole blocks, ft_weight_alloc),
         * so the range starts and ends on block boundaries */
        FT_ASSERT(ft_dtype_is_ggml(w->dtype) && "weight dtype");
        const int64_t blk = ft_dtype_block_elems(w->dtype);
        FT_ASSERT(start % blk == 0 && count % blk == 0);
        const int rc = ft_ggml_dequantize_row(ft_dtype_ggml_type(w->dtype),
                                              (const uint8_t *)w->data + ft_dtype_nbytes(w->dtype, start), dst, count);
        FT_ASSERT(rc == 0);
    }
    }
}

ft_status ft_cpu_weight_vec(const ft_weight *w, float **out) {
    int64_t n = ft_weight_numel(w);
    FT_TRY(ft_malloc((void **)out, (size_t)n * sizeof(float), "weight copy"));
    ft_cpu_weight_f32(w, 0, n, *out);
    return FT_OK;
}
