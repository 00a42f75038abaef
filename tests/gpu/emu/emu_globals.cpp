// emu_globals.cpp (emulator): the per-thread CUDA built-ins.
#include "cuda_emu.h"
#include <map>
thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;
thread_local ft_emu_block *ft_emu_cur;
thread_local int ft_emu_tid;
std::atomic<long long> ft_emu_dev_used{0}; // cuda_runtime.h: device bytes allocated
int ft_emu_pending_error = 0;            // cuda_emu.h: a refused launch, until cudaGetLastError
std::atomic<long long> ft_emu_launches{0};

size_t ft_emu_smem_optin() {
    const char *sk = getenv("FT_EMU_SMEM_KIB");
    return (size_t)(sk && atoi(sk) > 0 ? atoi(sk) : 227) * 1024;
}
bool ft_emu_dry() {
    static const bool dry = [] { const char *e = getenv("FT_EMU_DRY"); return e && *e && strcmp(e, "0") != 0; }();
    return dry;
}

// cudaFuncAttributeMaxDynamicSharedMemorySize per kernel (cuda_runtime.h cudaFuncSetAttribute)
static std::mutex ft_emu_smem_mu;
static std::map<const void *, size_t> ft_emu_smem_attr;
int ft_emu_set_smem(const void *kernel, int bytes) {
    if (bytes < 0 || (size_t)bytes > ft_emu_smem_optin()) {
        fprintf(stderr, "emu: cudaFuncSetAttribute(MaxDynamicSharedMemorySize, %d) past the device's %zu bytes\n", bytes,
                ft_emu_smem_optin());
        return FT_EMU_ERR_INVALID_VALUE;
    }
    std::lock_guard<std::mutex> g(ft_emu_smem_mu);
    ft_emu_smem_attr[kernel] = (size_t)bytes;
    return 0;
}
size_t ft_emu_smem_allowed(const void *kernel) {
    std::lock_guard<std::mutex> g(ft_emu_smem_mu);
    const auto it = ft_emu_smem_attr.find(kernel);
    const size_t v = it == ft_emu_smem_attr.end() ? 48 * 1024 : it->second;
    return v < ft_emu_smem_optin() ? v : ft_emu_smem_optin();
}
extern "C" long long ft_emu_launch_count(void) { return ft_emu_launches.load(); } // launches.c
int ft_emu_host_fail_in = 0; // cuda_runtime.h cudaHostAlloc
extern "C" void ft_emu_fail_host_alloc_in(int k) { ft_emu_host_fail_in = k; } // launches.c
