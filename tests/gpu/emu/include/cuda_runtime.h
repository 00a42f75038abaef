// cuda_runtime.h (emulator): the runtime calls kernels/cuda uses, on host memory; streams are synchronous.
#pragma once
#include "cuda_emu.h"
typedef int cudaError_t;
enum { cudaSuccess = 0, cudaErrorMemoryAllocation = 2, cudaErrorInvalidValue = 1 };
typedef struct ft_emu_stream *cudaStream_t;
typedef void *cudaMemPool_t;
enum cudaMemcpyKind { cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice };
enum { cudaStreamNonBlocking = 1 };
enum cudaDeviceAttr { cudaDevAttrMemoryPoolsSupported = 1 };
enum cudaMemPoolAttr { cudaMemPoolAttrReleaseThreshold = 1 };
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 1 };
struct cudaDeviceProp { char name[256]; int multiProcessorCount, major, minor; size_t sharedMemPerBlockOptin; };
struct cudaFuncAttributes { int dummy; };
inline const char *cudaGetErrorString(cudaError_t) { return "emu error"; }
inline const char *cudaGetErrorName(cudaError_t) { return "cudaErrorEmu"; }
inline cudaError_t cudaGetDeviceCount(int *n) { *n = 1; return 0; }
inline cudaError_t cudaGetDevice(int *d) { *d = 0; return 0; }
inline cudaError_t cudaSetDevice(int) { return 0; }
inline cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int) {
    memset(p, 0, sizeof *p); strcpy(p->name, "emulated"); p->multiProcessorCount = 2; p->major = 9; p->minor = 0;
    p->sharedMemPerBlockOptin = 227 * 1024; return 0; }
template <typename T> cudaError_t cudaFuncGetAttributes(cudaFuncAttributes *, T) { return 0; }
template <typename T> cudaError_t cudaFuncSetAttribute(T, cudaFuncAttribute, int) { return 0; }
inline cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned) { *s = (cudaStream_t)0x1; return 0; }
inline cudaError_t cudaStreamDestroy(cudaStream_t) { return 0; }
inline cudaError_t cudaStreamSynchronize(cudaStream_t) { return 0; }
inline cudaError_t cudaDeviceGetAttribute(int *v, cudaDeviceAttr, int) { *v = 1; return 0; }
inline cudaError_t cudaDeviceGetDefaultMemPool(cudaMemPool_t *p, int) { *p = 0; return 0; }
inline cudaError_t cudaMemPoolSetAttribute(cudaMemPool_t, cudaMemPoolAttr, void *) { return 0; }
inline cudaError_t cudaMalloc(void **p, size_t n) { *p = aligned_alloc(256, (n + 255) / 256 * 256); memset(*p, 0xCD, n); return *p ? 0 : 2; }
inline cudaError_t cudaMallocAsync(void **p, size_t n, cudaStream_t) { return cudaMalloc(p, n); }
inline cudaError_t cudaFree(void *p) { free(p); return 0; }
inline cudaError_t cudaFreeAsync(void *p, cudaStream_t) { free(p); return 0; }
inline cudaError_t cudaMemcpyAsync(void *d, const void *s, size_t n, cudaMemcpyKind, cudaStream_t) { memmove(d, s, n); return 0; }
inline cudaError_t cudaMemsetAsync(void *d, int v, size_t n, cudaStream_t) { memset(d, v, n); return 0; }
inline cudaError_t cudaGetLastError() { return 0; }
inline cudaError_t cudaMemGetInfo(size_t *f, size_t *t) { *f = 1ull << 34; *t = 1ull << 35; return 0; }
