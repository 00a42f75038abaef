// mma.h (emulator): nvcuda::wmma with BF16/F16 operands and F32 accumulators, 16x16x16 tiles.
// On a GPU a fragment is spread over the 32 lanes of a warp in an unspecified layout; here every
// emulated thread holds the whole tile in row-major order and does the whole operation itself.
// That is the same function for code that only uses the documented API (load, store, fill, mma,
// and element-wise ops applied uniformly to x[0..num_elements)), which is all a kernel may rely
// on; a kernel that indexes x[] expecting a particular lane layout is wrong on the GPU and is not
// caught here. Products are exact in float, sums in float, as the tensor cores' F32 accumulation.
#pragma once
#include "cuda_bf16.h"
#include "cuda_fp16.h"

namespace nvcuda {
namespace wmma {
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <class Use, int M, int N, int K> struct ft_emu_shape;
template <int M, int N, int K> struct ft_emu_shape<matrix_a, M, N, K> { enum { rows = M, cols = K }; };
template <int M, int N, int K> struct ft_emu_shape<matrix_b, M, N, K> { enum { rows = K, cols = N }; };
template <int M, int N, int K> struct ft_emu_shape<accumulator, M, N, K> { enum { rows = M, cols = N }; };

template <class Use, int M, int N, int K, class T, class Layout = void> struct fragment {
    enum { rows = ft_emu_shape<Use, M, N, K>::rows, cols = ft_emu_shape<Use, M, N, K>::cols,
           num_elements = rows * cols };
    T x[num_elements];
};

// WMMA's rule: every fragment pointer is 256-bit aligned. A kernel that breaks it is wrong on the GPU.
inline void ft_emu_wmma_align(const void *p, const char *what) {
    if ((uintptr_t)p % 32 != 0) {
        fprintf(stderr, "emu: %s pointer %p is not 32-byte aligned (WMMA needs 256-bit alignment)\n", what, p);
        abort();
    }
}

inline float ft_emu_f(float v) { return v; }
inline float ft_emu_f(__nv_bfloat16 v) { return __bfloat162float(v); }
inline float ft_emu_f(__half v) { return __half2float(v); }

template <class Use, int M, int N, int K, class T, class L, class V>
inline void fill_fragment(fragment<Use, M, N, K, T, L> &f, const V &v) {
    for (int i = 0; i < f.num_elements; i++) f.x[i] = v;
}

template <class Use, int M, int N, int K, class T>
inline void load_matrix_sync(fragment<Use, M, N, K, T, row_major> &f, const T *p, unsigned ldm) {
    ft_emu_wmma_align(p, "load_matrix_sync");
    for (int r = 0; r < f.rows; r++)
        for (int c = 0; c < f.cols; c++) f.x[r * f.cols + c] = p[(size_t)r * ldm + c];
}
template <class Use, int M, int N, int K, class T>
inline void load_matrix_sync(fragment<Use, M, N, K, T, col_major> &f, const T *p, unsigned ldm) {
    ft_emu_wmma_align(p, "load_matrix_sync");
    for (int r = 0; r < f.rows; r++)
        for (int c = 0; c < f.cols; c++) f.x[r * f.cols + c] = p[(size_t)c * ldm + r];
}
template <int M, int N, int K>
inline void load_matrix_sync(fragment<accumulator, M, N, K, float> &f, const float *p, unsigned ldm, layout_t l) {
    ft_emu_wmma_align(p, "load_matrix_sync");
    for (int r = 0; r < M; r++)
        for (int c = 0; c < N; c++) f.x[r * N + c] = l == mem_row_major ? p[(size_t)r * ldm + c] : p[(size_t)c * ldm + r];
}
template <int M, int N, int K>
inline void store_matrix_sync(float *p, const fragment<accumulator, M, N, K, float> &f, unsigned ldm, layout_t l) {
    ft_emu_wmma_align(p, "store_matrix_sync");
    for (int r = 0; r < M; r++)
        for (int c = 0; c < N; c++) (l == mem_row_major ? p[(size_t)r * ldm + c] : p[(size_t)c * ldm + r]) = f.x[r * N + c];
}
template <int M, int N, int K, class T, class LA, class LB>
inline void mma_sync(fragment<accumulator, M, N, K, float> &d, const fragment<matrix_a, M, N, K, T, LA> &a,
                     const fragment<matrix_b, M, N, K, T, LB> &b, const fragment<accumulator, M, N, K, float> &c) {
    float out[M * N];
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            float s = c.x[i * N + j];
            for (int k = 0; k < K; k++) s += ft_emu_f(a.x[i * K + k]) * ft_emu_f(b.x[k * N + j]);
            out[i * N + j] = s;
        }
    for (int i = 0; i < M * N; i++) d.x[i] = out[i];
}
} // namespace wmma
} // namespace nvcuda
