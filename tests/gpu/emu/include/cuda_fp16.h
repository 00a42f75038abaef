// cuda_fp16.h (emulator): binary16 storage and its conversion to float.
#pragma once
#include "cuda_emu.h"
struct __half { uint16_t x; };
inline float __half2float(__half h) {
    uint32_t s = (h.x >> 15) & 1, e = (h.x >> 10) & 31, m = h.x & 1023; float v;
    if (e == 0) v = ldexpf((float)m, -24); else if (e == 31) v = m ? NAN : INFINITY; else v = ldexpf((float)(m | 1024), (int)e - 25);
    return s ? -v : v; }
