// cuda_runtime.h (emulator): the runtime calls kernels/cuda uses, on host memory; streams are synchronous.
#pragma once
#include "cuda_emu.h"
#include <malloc.h>
typedef int cudaError_t;
enum { cudaSuccess = 0, cudaErrorMemoryAllocation = 2, cudaErrorInvalidValue = FT_EMU_ERR_INVALID_VALUE,
       cudaErrorInvalidConfiguration = FT_EMU_ERR_INVALID_CONFIG };
typedef struct ft_emu_stream *cudaStream_t;
typedef void *cudaMemPool_t;
enum cudaMemcpyKind { cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice, cudaMemcpyDefault };
enum { cudaStreamNonBlocking = 1 };
enum cudaDeviceAttr { cudaDevAttrMemoryPoolsSupported = 1, cudaDevAttrConcurrentManagedAccess = 2 };
enum cudaMemPoolAttr { cudaMemPoolAttrReleaseThreshold = 1 };
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 1 };
struct cudaDeviceProp { char name[256]; int multiProcessorCount, major, minor, integrated; size_t sharedMemPerBlockOptin; };
// events: the host clock when recorded (streams are synchronous, so that is when the work before it ended)
struct ft_emu_event { double t; };
typedef ft_emu_event *cudaEvent_t;
enum { cudaEventDefault = 0, cudaEventDisableTiming = 2, cudaHostAllocDefault = 0, cudaMemAttachGlobal = 1 };
enum cudaMemLocationType { cudaMemLocationTypeInvalid = 0, cudaMemLocationTypeDevice = 1, cudaMemLocationTypeHost = 2 };
struct cudaMemLocation { cudaMemLocationType type; int id; };
enum cudaMemoryAdvise { cudaMemAdviseSetPreferredLocation = 3, cudaMemAdviseSetAccessedBy = 5 };
#include <time.h>
inline double ft_emu_now() { timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts); return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec; }
inline cudaError_t cudaEventCreate(cudaEvent_t *e) { *e = new ft_emu_event{0.0}; return 0; }
inline cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned) { return cudaEventCreate(e); }
inline cudaError_t cudaEventDestroy(cudaEvent_t e) { delete e; return 0; }
inline cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t) { e->t = ft_emu_now(); return 0; }
inline cudaError_t cudaEventSynchronize(cudaEvent_t) { return 0; }
inline cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b) { *ms = (float)(1e3 * (b->t - a->t)); return 0; }
inline cudaError_t cudaStreamWaitEvent(cudaStream_t, cudaEvent_t, unsigned) { return 0; }
extern int ft_emu_host_fail_in; // > 0: the ft_emu_host_fail_in-th next cudaHostAlloc fails (error paths, launches.c)
inline cudaError_t cudaHostAlloc(void **p, size_t n, unsigned) {
    if (ft_emu_host_fail_in > 0 && --ft_emu_host_fail_in == 0) return cudaErrorMemoryAllocation;
    *p = aligned_alloc(256, (n + 255) / 256 * 256); return *p ? 0 : 2; }
inline cudaError_t cudaFreeHost(void *p) { free(p); return 0; }
// Device memory (cudaMalloc, cudaMallocAsync, cudaMallocManaged) is counted, so cudaMemGetInfo's
// free memory falls as the program allocates, as on a GPU; with FT_EMU_MEM_MIB set, an allocation
// past that size fails with cudaErrorMemoryAllocation (the out-of-memory paths, on the CPU).
extern std::atomic<long long> ft_emu_dev_used;
inline size_t ft_emu_mem_total() {
    const char *e = getenv("FT_EMU_MEM_MIB");
    const size_t mib = e ? (size_t)strtoull(e, NULL, 10) : 0;
    return mib ? mib << 20 : 1ull << 35;
}
inline cudaError_t ft_emu_dev_alloc(void **p, size_t n) {
    const size_t sz = (n + 255) / 256 * 256 + (n == 0) * 256;
    *p = NULL;
    if (getenv("FT_EMU_MEM_MIB") && (size_t)ft_emu_dev_used.load() + sz > ft_emu_mem_total()) return cudaErrorMemoryAllocation;
    *p = aligned_alloc(256, sz);
    if (!*p) return cudaErrorMemoryAllocation;
    ft_emu_dev_used += (long long)malloc_usable_size(*p);
    if (!ft_emu_dry()) memset(*p, 0xCD, n); /* dry: untouched pages cost nothing (the real shapes) */
    return 0;
}
inline void ft_emu_dev_free(void *p) {
    if (p) ft_emu_dev_used -= (long long)malloc_usable_size(p);
    free(p);
}
inline cudaError_t cudaMallocManaged(void **p, size_t n, unsigned) { return ft_emu_dev_alloc(p, n); }
inline cudaError_t cudaMemAdvise(const void *, size_t, cudaMemoryAdvise, cudaMemLocation loc) { return loc.type == cudaMemLocationTypeDevice ? 0 : 1; }
inline cudaError_t cudaMemPrefetchAsync(const void *, size_t, cudaMemLocation loc, unsigned, cudaStream_t) { return loc.type == cudaMemLocationTypeDevice ? 0 : 1; }
struct cudaFuncAttributes { int dummy; };
inline const char *cudaGetErrorString(cudaError_t e) {
    return e == cudaErrorInvalidValue ? "invalid argument" : e == cudaErrorInvalidConfiguration ? "invalid configuration argument"
         : e == cudaErrorMemoryAllocation ? "out of memory" : "emu error"; }
inline const char *cudaGetErrorName(cudaError_t e) {
    return e == cudaErrorInvalidValue ? "cudaErrorInvalidValue" : e == cudaErrorInvalidConfiguration ? "cudaErrorInvalidConfiguration"
         : e == cudaErrorMemoryAllocation ? "cudaErrorMemoryAllocation" : "cudaErrorEmu"; }
inline cudaError_t cudaGetDeviceCount(int *n) { *n = 1; return 0; }
inline cudaError_t cudaGetDevice(int *d) { *d = 0; return 0; }
inline cudaError_t cudaSetDevice(int) { return 0; }
inline cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int) {
    memset(p, 0, sizeof *p); strcpy(p->name, "emulated"); p->multiProcessorCount = 2; p->major = 9; p->minor = 0;
    // FT_EMU_SMEM_KIB: the opt-in shared memory per block (default the H100's 227 KiB; 99 for GB10)
    p->sharedMemPerBlockOptin = ft_emu_smem_optin(); return 0; }
template <typename T> cudaError_t cudaFuncGetAttributes(cudaFuncAttributes *, T) { return 0; }
// The dynamic shared memory a kernel may launch with (cuda_emu.h checks launches against it): up to
// the device's opt-in maximum, else cudaErrorInvalidValue as on a GPU.
cudaError_t ft_emu_set_smem(const void *kernel, int bytes);
template <typename T> cudaError_t cudaFuncSetAttribute(T k, cudaFuncAttribute a, int v) {
    return a == cudaFuncAttributeMaxDynamicSharedMemorySize ? ft_emu_set_smem((const void *)k, v) : cudaErrorInvalidValue; }
inline cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned) { *s = (cudaStream_t)0x1; return 0; }
inline cudaError_t cudaStreamDestroy(cudaStream_t) { return 0; }
inline cudaError_t cudaStreamSynchronize(cudaStream_t) { return 0; }
inline cudaError_t cudaDeviceGetAttribute(int *v, cudaDeviceAttr, int) { *v = 1; return 0; }
inline cudaError_t cudaDeviceGetDefaultMemPool(cudaMemPool_t *p, int) { *p = 0; return 0; }
inline cudaError_t cudaMemPoolSetAttribute(cudaMemPool_t, cudaMemPoolAttr, void *) { return 0; }
inline cudaError_t cudaMemPoolTrimTo(cudaMemPool_t, size_t) { return 0; }
inline cudaError_t cudaMalloc(void **p, size_t n) { return ft_emu_dev_alloc(p, n); }
inline cudaError_t cudaMallocAsync(void **p, size_t n, cudaStream_t) { return ft_emu_dev_alloc(p, n); }
inline cudaError_t cudaFree(void *p) { ft_emu_dev_free(p); return 0; }
inline cudaError_t cudaFreeAsync(void *p, cudaStream_t) { ft_emu_dev_free(p); return 0; }
inline cudaError_t cudaMemcpyAsync(void *d, const void *s, size_t n, cudaMemcpyKind, cudaStream_t) { memmove(d, s, n); return 0; }
inline cudaError_t cudaMemsetAsync(void *d, int v, size_t n, cudaStream_t) { memset(d, v, n); return 0; }
inline cudaError_t cudaGetLastError() { const int e = ft_emu_pending_error; ft_emu_pending_error = 0; return e; }
// FT_EMU_MEM_MIB: a small device (rehearse.sh: `ftune bench --seq max` then picks a short sequence);
// without it 32 GiB, of which at most 16 free
inline cudaError_t cudaMemGetInfo(size_t *f, size_t *t) {
    *t = ft_emu_mem_total();
    const long long cap = getenv("FT_EMU_MEM_MIB") ? (long long)*t : 1ll << 34, used = ft_emu_dev_used.load();
    *f = (size_t)(used < cap ? cap - used : 0);
    return 0;
}
