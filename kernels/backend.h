/* backend.h: a compute device behind one interface (CPU reference or CUDA).
 *
 * A backend owns memory ("backend memory": host heap for CPU, device memory for CUDA) and runs
 * the ops of kernels/ops.h on it. Activations live in the backend's activation dtype
 * (F32 on CPU, BF16 on CUDA); LoRA master weights, gradients, optimizer state, norms' rstd and
 * attention's log-sum-exp are always F32. The model (trainer/model.c) is written once against
 * this interface. */
#ifndef FT_BACKEND_H
#define FT_BACKEND_H

#include <stdint.h>

#include "kernels/dtype.h"
#include "kernels/status.h"

typedef struct ft_backend ft_backend;

typedef enum { FT_BACKEND_CPU = 0, FT_BACKEND_CUDA } ft_backend_kind;

/* nthreads <= 0: all cores (OpenMP default). */
ft_status ft_backend_cpu_create(ft_backend **out, int nthreads);
/* FT_E_UNSUPPORTED when ftune was built without CUDA or no GPU is present. */
ft_status ft_backend_cuda_create(ft_backend **out, int device);
void ft_backend_free(ft_backend *be);

ft_backend_kind ft_backend_kind_of(const ft_backend *be);
const char *ft_backend_name(const ft_backend *be);
ft_dtype ft_backend_act_dtype(const ft_backend *be);

/* Backend memory. `what` names the allocation in out-of-memory messages. */
ft_status ft_backend_alloc(ft_backend *be, void **ptr, int64_t bytes, const char *what);
void ft_backend_release(ft_backend *be, void *ptr);
ft_status ft_backend_upload(ft_backend *be, void *dst, const void *host_src, int64_t bytes);
ft_status ft_backend_download(ft_backend *be, void *host_dst, const void *src, int64_t bytes);
ft_status ft_backend_copy(ft_backend *be, void *dst, const void *src, int64_t bytes);
ft_status ft_backend_memset(ft_backend *be, void *dst, int value, int64_t bytes);
ft_status ft_backend_sync(ft_backend *be);
/* Bytes currently allocated through ft_backend_alloc, and the high-water mark. */
int64_t ft_backend_bytes_in_use(const ft_backend *be);
int64_t ft_backend_bytes_peak(const ft_backend *be);
void ft_backend_reset_peak(ft_backend *be);

#endif
