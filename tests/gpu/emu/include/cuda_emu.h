// cuda_emu.h: a minimal CUDA-on-CPU emulator for checking kernel logic (not performance).
// Every block runs its threads as std::threads; blocks run one after another. __syncthreads and
// warp collectives use std::barrier with arrive_and_drop for exited threads.
#pragma once
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>
#include <mutex>
#include <math.h>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define __align__(n) alignas(n)

struct dim3 {
    unsigned x, y, z;
    dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};
typedef dim3 uint3;
struct float2 { float x, y; };
struct alignas(8) uint2 { unsigned x, y; };
struct alignas(16) float4 { float x, y, z, w; };
inline float2 make_float2(float x, float y) { return float2{x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }
struct alignas(16) uint4 { unsigned x, y, z, w; };

struct ft_emu_block;
extern thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;
extern thread_local ft_emu_block *ft_emu_cur;
extern thread_local int ft_emu_tid;

struct ft_emu_warp {
    std::barrier<> *bar;
    uint64_t slot[32];
    uint32_t words[32][8]; // ft_emu_gather32: mma.sync and ldmatrix emulation (kernels/cuda/mma.cuh)
};
struct ft_emu_block {
    std::barrier<> *bar;
    std::vector<ft_emu_warp> warps;
    std::vector<unsigned char> dyn;
};

inline void __syncthreads() { ft_emu_cur->bar->arrive_and_wait(); }
inline void __syncwarp(unsigned = 0xffffffffu) { ft_emu_cur->warps[ft_emu_tid / 32].bar->arrive_and_wait(); }

template <typename T> inline T ft_emu_exchange(T v, int src_lane) {
    ft_emu_warp &w = ft_emu_cur->warps[ft_emu_tid / 32];
    uint64_t bits = 0;
    static_assert(sizeof(T) <= 8, "shuffle of a large type");
    memcpy(&bits, &v, sizeof(T));
    w.slot[ft_emu_tid % 32] = bits;
    w.bar->arrive_and_wait();
    uint64_t got = w.slot[src_lane & 31];
    w.bar->arrive_and_wait();
    T r;
    memcpy(&r, &got, sizeof(T));
    return r;
}
// Every lane of the warp publishes n (<= 8) 32-bit words; every lane then gets all 32 lanes' words
// in all[lane][0..n). One exchange for what a warp-wide instruction (mma.sync, ldmatrix) reads
// from its lanes' registers.
#define FT_CUDA_EMULATED 1
inline void ft_emu_gather32(const uint32_t *mine, int n, uint32_t all[32][8]) {
    ft_emu_warp &w = ft_emu_cur->warps[ft_emu_tid / 32];
    memcpy(w.words[ft_emu_tid % 32], mine, sizeof(uint32_t) * (size_t)n);
    w.bar->arrive_and_wait();
    memcpy(all, w.words, sizeof(w.words));
    w.bar->arrive_and_wait();
}
template <typename T> inline T __shfl_xor_sync(unsigned, T v, int m) { return ft_emu_exchange(v, (ft_emu_tid % 32) ^ m); }
template <typename T> inline T __shfl_sync(unsigned, T v, int src) { return ft_emu_exchange(v, src); }
inline int __any_sync(unsigned, int p) {
    ft_emu_warp &w = ft_emu_cur->warps[ft_emu_tid / 32];
    w.slot[ft_emu_tid % 32] = p ? 1 : 0;
    w.bar->arrive_and_wait();
    int any = 0;
    for (int i = 0; i < 32; i++) any |= (int)w.slot[i];
    w.bar->arrive_and_wait();
    return any;
}

inline unsigned atomicOr(unsigned *p, unsigned v) { return __atomic_fetch_or(p, v, __ATOMIC_SEQ_CST); }
inline unsigned long long atomicMin(unsigned long long *p, unsigned long long v) {
    unsigned long long old = __atomic_load_n(p, __ATOMIC_SEQ_CST);
    while (v < old && !__atomic_compare_exchange_n(p, &old, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {}
    return old;
}

static inline float ft_emu_vol(float x) { volatile float v = x; return v; }
inline float __fmul_rn(float a, float b) { return ft_emu_vol(a * b); }
inline float __fadd_rn(float a, float b) { return ft_emu_vol(a + b); }
inline float __fsub_rn(float a, float b) { return ft_emu_vol(a - b); }
inline float __fdiv_rn(float a, float b) { return ft_emu_vol(a / b); }
inline float __fsqrt_rn(float a) { return ft_emu_vol(sqrtf(a)); }
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline float __int_as_float(int i) { float f; memcpy(&f, &i, 4); return f; }
using std::min;
using std::max;

// Dynamic shared memory starts 128-byte aligned, as on the GPU (mma.h checks WMMA's 32-byte rule).
inline void *ft_emu_dyn_smem() { return (void *)(((uintptr_t)ft_emu_cur->dyn.data() + 127) & ~(uintptr_t)127); }

// CUDA's launch limits, checked before every launch as the runtime does (a GPU refuses such a launch
// synchronously, runs nothing, and cudaGetLastError reports it; the error is not sticky):
//   grid   x in [1, 2^31 - 1], y and z in [1, 65535]             else cudaErrorInvalidConfiguration
//   block  x, y <= 1024, z <= 64, x*y*z in [1, 1024]             else cudaErrorInvalidConfiguration
//   dynamic shared memory <= the kernel's cudaFuncAttributeMaxDynamicSharedMemorySize (48 KiB unless
//          raised, never past the device's opt-in maximum FT_EMU_SMEM_KIB)   else cudaErrorInvalidValue
// Static __shared__ arrays are not counted (the emulator does not know their size) and neither are
// __launch_bounds__ or registers. FT_EMU_DRY=1 checks every launch (and cuBLASLt's layouts) without
// running any block (run.sh launches: the real and long shapes, whose arithmetic is out of reach).
enum { FT_EMU_ERR_INVALID_VALUE = 1, FT_EMU_ERR_INVALID_CONFIG = 9 };
extern int ft_emu_pending_error;                 // what cudaGetLastError returns next (and clears)
extern std::atomic<long long> ft_emu_launches;   // launches checked (and run unless dry)
size_t ft_emu_smem_optin();                      // bytes: FT_EMU_SMEM_KIB, default 227 KiB (H100)
size_t ft_emu_smem_allowed(const void *kernel);  // the kernel's dynamic shared memory limit
bool ft_emu_dry();                               // FT_EMU_DRY=1
inline bool ft_emu_launch_ok(const char *name, dim3 g, dim3 b, size_t smem, const void *kernel) {
    const unsigned long long nt = (unsigned long long)b.x * b.y * b.z;
    int err = 0;
    char why[160] = "";
    if (g.x < 1 || g.x > 0x7fffffffu || g.y < 1 || g.y > 65535u || g.z < 1 || g.z > 65535u)
        err = FT_EMU_ERR_INVALID_CONFIG, snprintf(why, sizeof why, "grid (%u, %u, %u) past (2^31-1, 65535, 65535) or empty", g.x, g.y, g.z);
    else if (b.x < 1 || b.y < 1 || b.z < 1 || b.x > 1024u || b.y > 1024u || b.z > 64u || nt > 1024u)
        err = FT_EMU_ERR_INVALID_CONFIG, snprintf(why, sizeof why, "block (%u, %u, %u): %llu threads", b.x, b.y, b.z, nt);
    else if (smem > ft_emu_smem_allowed(kernel))
        err = FT_EMU_ERR_INVALID_VALUE, snprintf(why, sizeof why, "%zu bytes of dynamic shared memory, %zu allowed (cudaFuncSetAttribute raises 48 KiB up to %zu)",
                                                 smem, ft_emu_smem_allowed(kernel), ft_emu_smem_optin());
    if (!err) return true;
    fprintf(stderr, "emu: launch of %s refused: %s\n", name, why);
    if (!ft_emu_pending_error) ft_emu_pending_error = err;
    return false;
}

template <typename... P, typename... A>
void ft_emu_launch(void (*k)(P...), const char *name, dim3 g, dim3 b, size_t smem, A... args) {
    if (!ft_emu_launch_ok(name, g, b, smem, (const void *)k)) return;
    ft_emu_launches++;
    if (ft_emu_dry()) return;
    const int nt = (int)(b.x * b.y * b.z);
    if (nt % 32 != 0 && nt > 32) { fprintf(stderr, "emu: block of %d threads\n", nt); abort(); }
    for (unsigned bz = 0; bz < g.z; bz++)
        for (unsigned by = 0; by < g.y; by++)
            for (unsigned bx = 0; bx < g.x; bx++) {
                ft_emu_block blk;
                std::barrier<> bbar(nt);
                blk.bar = &bbar;
                const int nw = (nt + 31) / 32;
                std::vector<std::unique_ptr<std::barrier<>>> wb;
                blk.warps.resize(nw);
                for (int w = 0; w < nw; w++) {
                    int lanes = nt - 32 * w < 32 ? nt - 32 * w : 32;
                    wb.emplace_back(new std::barrier<>(lanes));
                    blk.warps[w].bar = wb.back().get();
                }
                blk.dyn.assign(smem + 128 + 16, 0xAB); // garbage, not zeros; room to align
                std::vector<std::thread> th;
                for (int t = 0; t < nt; t++) {
                    th.emplace_back([&, t]() {
                        ft_emu_cur = &blk;
                        ft_emu_tid = t;
                        threadIdx = dim3(t % b.x, (t / b.x) % b.y, t / (b.x * b.y));
                        blockIdx = dim3(bx, by, bz);
                        blockDim = b;
                        gridDim = g;
                        k(args...);
                        blk.warps[t / 32].bar->arrive_and_drop();
                        blk.bar->arrive_and_drop();
                    });
                }
                for (auto &x : th) x.join();
            }
}
