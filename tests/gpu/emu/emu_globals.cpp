// emu_globals.cpp (emulator): the per-thread CUDA built-ins.
#include "cuda_emu.h"
thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;
thread_local ft_emu_block *ft_emu_cur;
thread_local int ft_emu_tid;
std::atomic<long long> ft_emu_dev_used{0}; // cuda_runtime.h: device bytes allocated
