// cublasLt.h (emulator): descriptors record their attributes; cublasLtMatmul checks that the layouts
// agree with the transposes (as cuBLASLt requires) and computes D = alpha op(A) op(B) + beta C (+ bias)
// in double, rounding once (FT_EMU_DRY=1: checks only). FT_EMU_NO_LT=1 makes the heuristic offer no algorithm.
#pragma once
#include "cuda_emu.h"
#include "cuda_bf16.h"
#include "cuda_runtime.h"
typedef int cublasStatus_t;
enum { CUBLAS_STATUS_SUCCESS = 0, CUBLAS_STATUS_INVALID_VALUE = 7, CUBLAS_STATUS_NOT_SUPPORTED = 15 };
typedef enum { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 } cublasOperation_t;
typedef enum { CUBLAS_COMPUTE_32F = 68 } cublasComputeType_t;
typedef enum { CUDA_R_32F = 0, CUDA_R_16BF = 14 } cudaDataType_t;
typedef enum { CUBLASLT_MATMUL_DESC_TRANSA, CUBLASLT_MATMUL_DESC_TRANSB, CUBLASLT_MATMUL_DESC_EPILOGUE,
               CUBLASLT_MATMUL_DESC_BIAS_POINTER, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE } cublasLtMatmulDescAttributes_t;
typedef enum { CUBLASLT_EPILOGUE_DEFAULT = 1, CUBLASLT_EPILOGUE_BIAS = 4 } cublasLtEpilogue_t;
typedef enum { CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
               CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
               CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES } cublasLtMatmulPreferenceAttributes_t;
struct ft_emu_lt_desc { cublasComputeType_t ct; cudaDataType_t st; int ta, tb, epi; const void *bias; int bias_type; };
struct ft_emu_lt_layout { cudaDataType_t t; uint64_t rows, cols; int64_t ld; };
struct ft_emu_lt_pref { int dummy; };
typedef struct ft_emu_lt_handle *cublasLtHandle_t;
typedef ft_emu_lt_desc *cublasLtMatmulDesc_t;
typedef ft_emu_lt_layout *cublasLtMatrixLayout_t;
typedef ft_emu_lt_pref *cublasLtMatmulPreference_t;
typedef struct { uint64_t data[8]; } cublasLtMatmulAlgo_t;
typedef struct { cublasLtMatmulAlgo_t algo; size_t workspaceSize; cublasStatus_t state; float wavesCount; int reserved[4]; } cublasLtMatmulHeuristicResult_t;
inline const char *cublasLtGetStatusName(cublasStatus_t) { return "CUBLAS_STATUS_EMU"; }
inline const char *cublasLtGetStatusString(cublasStatus_t) { return "emulated cublas error"; }
inline cublasStatus_t cublasLtCreate(cublasLtHandle_t *h) { *h = (cublasLtHandle_t)0x1; return 0; }
inline cublasStatus_t cublasLtDestroy(cublasLtHandle_t) { return 0; }
inline cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *d, cublasComputeType_t ct, cudaDataType_t st) {
    *d = new ft_emu_lt_desc{ct, st, 0, 0, 1, nullptr, -1}; return 0; }
inline cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d) { delete d; return 0; }
inline cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t a, const void *v, size_t n) {
    switch (a) {
    case CUBLASLT_MATMUL_DESC_TRANSA: if (n != sizeof(cublasOperation_t)) return 7; d->ta = *(const int *)v; break;
    case CUBLASLT_MATMUL_DESC_TRANSB: if (n != sizeof(cublasOperation_t)) return 7; d->tb = *(const int *)v; break;
    case CUBLASLT_MATMUL_DESC_EPILOGUE: if (n != sizeof(cublasLtEpilogue_t)) return 7; d->epi = *(const int *)v; break;
    case CUBLASLT_MATMUL_DESC_BIAS_POINTER: if (n != sizeof(void *)) return 7; memcpy(&d->bias, v, sizeof(void *)); break;
    case CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE: if (n != sizeof(cudaDataType_t)) return 7; d->bias_type = *(const int *)v; break;
    }
    return 0; }
inline cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *l, cudaDataType_t t, uint64_t r, uint64_t c, int64_t ld) {
    if (ld < (int64_t)r) return 7;
    *l = new ft_emu_lt_layout{t, r, c, ld}; return 0; }
inline cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l) { delete l; return 0; }
inline cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t *p) { *p = new ft_emu_lt_pref{0}; return 0; }
inline cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t p) { delete p; return 0; }
inline cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t, cublasLtMatmulPreferenceAttributes_t, const void *, size_t) { return 0; }
inline cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t, cublasLtMatmulDesc_t, cublasLtMatrixLayout_t,
    cublasLtMatrixLayout_t, cublasLtMatrixLayout_t, cublasLtMatrixLayout_t, cublasLtMatmulPreference_t, int req,
    cublasLtMatmulHeuristicResult_t *res, int *found) {
    if (req < 1) return 7;
    *found = getenv("FT_EMU_NO_LT") ? 0 : 1; memset(res, 0, sizeof *res); res->algo.data[0] = 42; return 0; }
static inline double ft_emu_get(const void *p, cudaDataType_t t, int64_t i) {
    return t == CUDA_R_32F ? ((const float *)p)[i] : __bfloat162float(((const __nv_bfloat16 *)p)[i]); }
inline cublasStatus_t cublasLtMatmul(cublasLtHandle_t, cublasLtMatmulDesc_t d, const void *alpha, const void *A,
    cublasLtMatrixLayout_t la, const void *B, cublasLtMatrixLayout_t lb, const void *beta, const void *C,
    cublasLtMatrixLayout_t lc, void *D, cublasLtMatrixLayout_t ld, const cublasLtMatmulAlgo_t *algo, void *, size_t, cudaStream_t) {
    if (!algo || algo->data[0] != 42) return 7;
    if (d->ct != CUBLAS_COMPUTE_32F || d->st != CUDA_R_32F) return 15;
    if (la->t != CUDA_R_16BF || lb->t != CUDA_R_16BF || lc->t != ld->t) return 15;
    const uint64_t m = d->ta ? la->cols : la->rows, k = d->ta ? la->rows : la->cols;
    const uint64_t kb = d->tb ? lb->cols : lb->rows, n = d->tb ? lb->rows : lb->cols;
    if (k != kb || ld->rows != m || ld->cols != n || lc->rows != m || lc->cols != n || lc->ld != ld->ld) {
        fprintf(stderr, "emu cublasLtMatmul: shape mismatch m %llu k %llu / kb %llu n %llu / D %llux%llu\n",
                (unsigned long long)m, (unsigned long long)k, (unsigned long long)kb, (unsigned long long)n,
                (unsigned long long)ld->rows, (unsigned long long)ld->cols);
        return 7; }
    if (d->epi == CUBLASLT_EPILOGUE_BIAS && (!d->bias || d->bias_type != CUDA_R_16BF)) return 7;
    if (ft_emu_dry()) return 0; /* FT_EMU_DRY: the layouts are checked, nothing computed */
    const float al = *(const float *)alpha, be = *(const float *)beta;
    std::vector<double> out(m * n);
    for (uint64_t j = 0; j < n; j++)
        for (uint64_t i = 0; i < m; i++) {
            double s = 0;
            for (uint64_t p = 0; p < k; p++) {
                double a = ft_emu_get(A, la->t, d->ta ? (int64_t)(p + i * la->ld) : (int64_t)(i + p * la->ld));
                double b = ft_emu_get(B, lb->t, d->tb ? (int64_t)(j + p * lb->ld) : (int64_t)(p + j * lb->ld));
                s += a * b;
            }
            double r = al * s;
            if (be != 0) r += be * ft_emu_get(C, lc->t, (int64_t)(i + j * lc->ld));
            if (d->epi == CUBLASLT_EPILOGUE_BIAS) r += __bfloat162float(((const __nv_bfloat16 *)d->bias)[i]);
            out[i + j * m] = r;
        }
    for (uint64_t j = 0; j < n; j++)
        for (uint64_t i = 0; i < m; i++) {
            int64_t at = (int64_t)(i + j * ld->ld);
            if (ld->t == CUDA_R_32F) ((float *)D)[at] = (float)out[i + j * m];
            else ((__nv_bfloat16 *)D)[at] = __float2bfloat16_rn((float)out[i + j * m]);
        }
    return 0; }
