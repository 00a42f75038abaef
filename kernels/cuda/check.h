/* check.h: the one place where CUDA runtime, cuBLAS(Lt) and cuDNN statuses become ft_status.
 *
 * Every call into a CUDA library in kernels/cuda/ goes through one of these macros. On failure
 * they record FT_E_CUDA with a one-line message naming the failed statement, the enclosing
 * function, the source file and line, the library's error name and text, and the current device
 * (as ggml's CUDA_CHECK_GEN does), then RETURN the status from the enclosing function: nothing in
 * kernels/cuda/ exits or aborts on a library error.
 *
 *   FT_CUDA_TRY(cudaMemcpyAsync(...));          runtime API
 *   FT_CUBLAS_TRY(cublasLtMatmul(...));         cuBLAS / cuBLASLt (cublasStatus_t)
 *   FT_CUDNN_TRY(cudnnBackendExecute(...));     cuDNN (only where cudnn.h is included first)
 *   FT_CUDA_LAUNCH_TRY("rmsnorm_fwd");          after a kernel launch: cudaGetLastError()
 *   FT_CUDA_GOTO(st, stmt, label)               as FT_CUDA_TRY, but stores into st and jumps
 *
 * Asynchronous faults (an illegal address inside a kernel) surface at the next synchronizing call,
 * which is itself checked, so they are reported there with that call's location. */
#ifndef FT_CUDA_CHECK_H
#define FT_CUDA_CHECK_H

#include <cublasLt.h>
#include <cuda_runtime.h>

extern "C" {
#include "kernels/status.h"
}

/* Records the failure (see above) and returns FT_E_CUDA. `lib` is "CUDA", "cuBLAS" or "cuDNN";
 * `name` and `text` are the library's error name and description. Defined in backend_cuda.cu. */
ft_status ft_cuda_fail(const char *lib, int code, const char *name, const char *text, const char *stmt,
                       const char *func, const char *file, int line);

static inline ft_status ft_cuda_status(cudaError_t e, const char *stmt, const char *func, const char *file,
                                       int line) {
    if (e == cudaSuccess) return FT_OK;
    return ft_cuda_fail("CUDA", (int)e, cudaGetErrorName(e), cudaGetErrorString(e), stmt, func, file, line);
}

static inline ft_status ft_cublas_status(cublasStatus_t e, const char *stmt, const char *func, const char *file,
                                         int line) {
    if (e == CUBLAS_STATUS_SUCCESS) return FT_OK;
    return ft_cuda_fail("cuBLAS", (int)e, cublasLtGetStatusName(e), cublasLtGetStatusString(e), stmt, func, file,
                        line);
}

#define FT_CUDA_TRY(stmt)                                                                          \
    do {                                                                                           \
        ft_status ft_cu_s_ = ft_cuda_status((stmt), #stmt, __func__, __FILE__, __LINE__);          \
        if (ft_cu_s_ != FT_OK) return ft_cu_s_;                                                    \
    } while (0)

#define FT_CUBLAS_TRY(stmt)                                                                        \
    do {                                                                                           \
        ft_status ft_cu_s_ = ft_cublas_status((stmt), #stmt, __func__, __FILE__, __LINE__);        \
        if (ft_cu_s_ != FT_OK) return ft_cu_s_;                                                    \
    } while (0)

#define FT_CUDA_GOTO(st, stmt, label)                                                              \
    do {                                                                                           \
        (st) = ft_cuda_status((stmt), #stmt, __func__, __FILE__, __LINE__);                        \
        if ((st) != FT_OK) goto label;                                                             \
    } while (0)

#define FT_CUBLAS_GOTO(st, stmt, label)                                                            \
    do {                                                                                           \
        (st) = ft_cublas_status((stmt), #stmt, __func__, __FILE__, __LINE__);                      \
        if ((st) != FT_OK) goto label;                                                             \
    } while (0)

/* A launch fails synchronously for bad configurations (too much shared memory, too many
 * threads, no kernel image for this GPU); `what` names the kernel in the message. */
#define FT_CUDA_LAUNCH_TRY(what)                                                                   \
    do {                                                                                           \
        ft_status ft_cu_s_ = ft_cuda_status(cudaGetLastError(), "launch of " what, __func__,        \
                                            __FILE__, __LINE__);                                   \
        if (ft_cu_s_ != FT_OK) return ft_cu_s_;                                                    \
    } while (0)

#ifdef CUDNN_MAJOR /* only in translation units that include cudnn.h first */
static inline ft_status ft_cudnn_status(cudnnStatus_t e, const char *stmt, const char *func, const char *file,
                                        int line) {
    if (e == CUDNN_STATUS_SUCCESS) return FT_OK;
    return ft_cuda_fail("cuDNN", (int)e, "cudnnStatus", cudnnGetErrorString(e), stmt, func, file, line);
}
#define FT_CUDNN_TRY(stmt)                                                                         \
    do {                                                                                           \
        ft_status ft_cu_s_ = ft_cudnn_status((stmt), #stmt, __func__, __FILE__, __LINE__);         \
        if (ft_cu_s_ != FT_OK) return ft_cu_s_;                                                    \
    } while (0)
#endif

#endif
