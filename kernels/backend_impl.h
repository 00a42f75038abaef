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

    /* Optional hooks: NULL selects backend.c's (or weight.c's) generic version, which is what the
     * CPU backend uses. */
    ft_status (*alloc_paged)(ft_backend *, void **, int64_t);   /* generic: alloc */
    ft_status (*prefetch)(ft_backend *, const void *, int64_t); /* generic: nothing */
    ft_status (*alloc_host)(ft_backend *, void **, int64_t);    /* generic: aligned heap */
    int64_t (*release_host)(ft_backend *, void *);              /* returns the bytes freed */
    /* generic: copy now; ticket 0 */
    ft_status (*copy_async)(ft_backend *, void *, const void *, int64_t, int64_t *);
    ft_status (*copy_wait)(ft_backend *, int64_t);
    ft_status (*mem_info)(ft_backend *, int64_t *, int64_t *);  /* generic: RAM */
    /* Phase timers (generic: the host clock). timer_mark takes mark `idx` now in queue order;
     * timer_read waits for the last of n marks and writes ms[i] = time from mark i to i + 1. */
    ft_status (*timer_mark)(ft_backend *, int64_t idx);
    ft_status (*timer_read)(ft_backend *, int64_t n, double *ms);
    /* ft_weight_set / ft_weight_init_random (kernels/weight.h) for this backend */
    ft_status (*weight_set)(ft_backend *, ft_weight *, const void *, ft_dtype);
    ft_status (*weight_init)(ft_backend *, ft_weight *, uint64_t, float, float);
    /* ft_backend_weight_cache (generic: nothing; the backend dequantizes on every use) */
    ft_status (*weight_cache)(ft_backend *, int64_t bytes);
    /* ft_backend_attn_workspace (generic: nothing) */
    ft_status (*attn_workspace)(ft_backend *, int64_t bytes);
    ft_status (*weight_prefetch)(ft_backend *, const ft_weight *); /* generic: nothing */
    void (*dequant_counts)(ft_backend *, ft_dequant_counts *);     /* generic: zeros */

    /* The ops (kernels/ops.h), from here to the end: tests/test_ops_cuda.c counts them. */
    ft_status (*embed)(ft_backend *, void *, const int32_t *, const ft_weight *, int64_t);
    ft_status (*rmsnorm)(ft_backend *, void *, float *, const void *, const ft_weight *, int64_t, int64_t, float);
    ft_status (*rmsnorm_bwd)(ft_backend *, void *, const void *, const void *, const ft_weight *, const float *,
                             int64_t, int64_t, int);
    ft_status (*linear)(ft_backend *, void *, const void *, const ft_weight *, const ft_weight *, int64_t, int);
    ft_status (*linear_bwd_x)(ft_backend *, void *, const void *, const ft_weight *, int64_t, int);
    ft_status (*lora_fwd)(ft_backend *, void *, void *, const void *, ft_lora_drop, const float *, const float *,
                          int64_t, int64_t, int64_t, int64_t, float, int);
    ft_status (*lora_bwd)(ft_backend *, void *, float *, float *, const void *, const void *, ft_lora_drop,
                          const void *, const float *, const float *, int64_t, int64_t, int64_t, int64_t, float, int);
    ft_status (*dropout)(ft_backend *, void *, const void *, int64_t, float, uint64_t);
    ft_status (*rope)(ft_backend *, void *, const int32_t *, const float *, int64_t, int64_t, int64_t, int);
    ft_status (*attention)(ft_backend *, void *, float *, const void *, const void *, const void *,
                           const int32_t *, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, float);
    ft_status (*attention_bwd)(ft_backend *, void *, void *, void *, const void *, const void *, const void *,
                               const void *, const void *, const float *, const int32_t *, int64_t, int64_t,
                               int64_t, int64_t, int64_t, int64_t, float);
    ft_status (*attention_kv)(ft_backend *, void *, const void *, const void *, const void *, int64_t, int64_t,
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
    ft_status (*clip_factor)(ft_backend *, float *, const float *, double);
    ft_status (*rows_set)(ft_backend *, void *, const float *, const int32_t *, int64_t, int64_t);
    ft_status (*rows_sum)(ft_backend *, float *, const void *, const int32_t *, int64_t, int64_t);
    ft_status (*cols_set)(ft_backend *, void *, const void *, const int32_t *, int64_t, int64_t, int64_t);
    ft_status (*cols_take)(ft_backend *, void *, void *, const int32_t *, int64_t, int64_t, int64_t);
    ft_status (*dora_norm)(ft_backend *, float *, const ft_weight *, const float *, const float *, int64_t, float);
    ft_status (*dora_scale)(ft_backend *, void *, const void *, const float *, const float *, float,
                            const ft_weight *, int64_t, int64_t, int);
    ft_status (*dora_mag_grad)(ft_backend *, float *, const void *, const void *, const float *, int64_t, int64_t);

} ft_backend_vtbl;

typedef struct ft_phase_clock ft_phase_clock; /* backend.c */

/* Every backend struct starts with this header (C-style inheritance). */
struct ft_backend {
    const ft_backend_vtbl *vt;
    int64_t bytes_in_use, bytes_peak;
    int64_t bytes_paged;               /* part of bytes_in_use allocated by ft_backend_alloc_paged */
    int64_t host_bytes, host_peak;     /* ft_backend_alloc_host */
    ft_phase_clock *clock;             /* phase timers (NULL until first used) */
    ft_oom_explain_fn oom_fn;
    void *oom_user;
    int64_t mem_limit;                 /* ft_backend_set_memory_limit (0: none) */
    char device_name[256];             /* ft_backend_device_name; set at creation (empty: vt->name) */
};

/* Backends call this from their release() with the size they freed (backend.c added it to
 * bytes_in_use when ft_backend_alloc succeeded). */
void ft_backend_account_release(ft_backend *be, int64_t bytes);
/* The same for a pointer ft_backend_alloc_paged returned. */
void ft_backend_account_release_paged(ft_backend *be, int64_t bytes);
/* A backend-internal allocation (scratch, staging) failed with st: the message says for what and
 * how much, and carries the caller's explanation (ft_backend_set_oom_explain) for lack of memory. */
ft_status ft_backend_alloc_failed(ft_backend *be, ft_status st, int64_t bytes, const char *what);
/* Backend-internal phase change (the CUDA linear times its dequantization as FT_PHASE_DEQUANT,
 * then returns to FT_PHASE_GEMM). No-op unless timing is on. */
void ft_backend_phase_note(ft_backend *be, ft_phase p);

#endif
