// emu_globals.cpp (emulator): the per-thread CUDA built-ins.
#include "cuda_emu.h"
thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;
thread_local ft_emu_block *ft_emu_cur;
thread_local int ft_emu_tid;
