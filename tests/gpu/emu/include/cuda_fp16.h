// cuda_fp16.h (emulator): binary16 storage and its conversion to float.
#pragma once
#include "cuda_emu.h"
struct __half { uint16_t x; };
inline __half __ushort_as_half(unsigned short u) { __half h; h.x = u; return h; } // bits as they are
inline float __half2float(__half h) {
    uint32_t s = (h.x >> 15) & 1, e = (h.x >> 10) & 31, m = h.x & 1023; float v;
    if (e == 0) v = ldexpf((float)m, -24); else if (e == 31) v = m ? NAN : INFINITY; else v = ldexpf((float)(m | 1024), (int)e - 25);
    return s ? -v : v; }
// float -> binary16, round to nearest even (as kernels/dtype.c ft_f32_to_f16)
inline __half __float2half_rn(float f) {
    uint32_t u; memcpy(&u, &f, 4); uint32_t s = (u >> 16) & 0x8000u; int e = (int)((u >> 23) & 255); uint32_t m = u & 0x7fffffu;
    __half r;
    if (e == 255) { r.x = (uint16_t)(s | 0x7c00u | (m ? 0x200u : 0)); return r; }
    int he = e - 127 + 15;
    if (he >= 31) { r.x = (uint16_t)(s | 0x7c00u); return r; }
    if (he <= 0) {
        if (he < -10) { r.x = (uint16_t)s; return r; }
        m |= 0x800000u; int shift = 14 - he; uint32_t hm = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (hm & 1))) hm++;
        r.x = (uint16_t)(s | hm); return r; }
    uint32_t hm = m >> 13, rem = m & 0x1fffu;
    uint32_t v = ((uint32_t)he << 10) | hm;
    if (rem > 0x1000u || (rem == 0x1000u && (hm & 1))) v++;
    r.x = (uint16_t)(s | v); return r; }
