/* backend_impl.h: what a backend provides. Included only by kernels/backend.c, kernels/cpu/ and
 * kernels/cuda/. Every op pointer has the signature of its ft_op_ twin in ops.h, minus nothing:
 * the dispatcher in backend.c validates arguments once and forwards. */
#ifndef FT_BACKEND_IMPL_H
#define FT_BACKEND_IMPL_H

#include "kernels/ops.h"

typedef struct ft_backend_vtbl {
    const char *name;
    ft_backend_kind kind;
    ft_dtype act_dtype;
    void (*destroy)(ft_backend *be);

    ft_status (*alloc)(ft_backend *be, void **ptr, int64_t bytes);
    void (*release)(ft_backend *be, void *ptr);
    ft_status (*upload)(ft_backend *be, void *dst, const void *src, int64_t bytes);
    ft_status (*download)(ft_backend *be, void *dst, const void *src, int64_t bytes);
    ft_status (*copy)(ft_backend *be, void *dst, const void *src, int64_t bytes);
    ft_status (*memset)(ft_backend *be, void *dst, int value, int64_t bytes);
    ft_status (*sync)(ft_backend *be);

    ft_status (*embed)(ft_backend *, void *, const int32_t *, const ft_weight *, int64_t);
    ft_status (*rmsnorm)(ft_backend *, void *, float *, const void *, const ft_weight *, int64_t, int64_t, float);
    ft_status (*rmsnorm_bwd)(ft_backend *, void *, const void *, const void *, const ft_weight *, const float *,
                             int64_t, int64_t);
    ft_status (*linear)(ft_backend *, void *, const void *, const ft_weight *, const ft_weight *, int64_t, int);
    ft_status (*linear_bwd_x)(ft_backend *, void *, const void *, const ft_weight *, int64_t, int);
    ft_status (*lora_fwd)(ft_backend *, void *, void *, const void *, const float *, const float *, int64_t,
                          int64_t, int64_t, int64_t, float);
    ft_status (*lora_bwd)(ft_backend *, void *, float *, float *, const void *, const void *, const void *,
                          const float *, const float *, int64_t, int64_t, int64_t, int64_t, float);
    ft_status (*dropout)(ft_backend *, void *, const void *, int64_t, float, uint64_t);
    ft_status (*rope)(ft_backend *, void *, const int32_t *, const float *, int64_t, int64_t, int64_t, int);
    ft_status (*attention)(ft_backend *, void *, float *, const void *, const void *, const void *,
                           const int32_t *, int64_t, int64_t, int64_t, int64_t, int64_t, float);
    ft_status (*attention_bwd)(ft_backend *, void *, void *, void *, const void *, const void *, const void *,
                               const void *, const void *, const float *, const int32_t *, int64_t, int64_t,
                               int64_t, int64_t, int64_t, float);
    ft_status (*swiglu)(ft_backend *, void *, const void *, const void *, int64_t);
    ft_status (*swiglu_bwd)(ft_backend *, void *, void *, const void *, const void *, const void *, int64_t);
    ft_status (*add)(ft_backend *, void *, const void *, int64_t);
    ft_status (*xent)(ft_backend *, float *, float *, void *, const int32_t *, int64_t, int64_t, float);
    ft_status (*sumsq)(ft_backend *, float *, const float *, int64_t);
    ft_status (*scale)(ft_backend *, float *, int64_t, float);
    ft_status (*adamw)(ft_backend *, float *, const float *, float *, float *, int64_t, const float *);
    ft_status (*nf4_quantize)(ft_backend *, ft_weight *, const void *, ft_dtype);
    ft_status (*nf4_dequantize)(ft_backend *, void *, const ft_weight *);
} ft_backend_vtbl;

/* Every backend struct starts with this header (C-style inheritance). */
struct ft_backend {
    const ft_backend_vtbl *vt;
    int64_t bytes_in_use, bytes_peak;
};

/* Backends call this from their release() with the size they freed (backend.c added it to
 * bytes_in_use when ft_backend_alloc succeeded). */
void ft_backend_account_release(ft_backend *be, int64_t bytes);

#endif
