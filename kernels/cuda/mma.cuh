/* mma.cuh: warp-level BF16 tensor-core primitives with a documented register layout: mma.sync
 * m16n8k16 (F32 accumulators), ldmatrix (plain and transposed) and cp.async copies (4 to 16 bytes).
 * Used by attention_mma.cu, whose online softmax works on the accumulators in registers (that is
 * why these are PTX and not WMMA, whose fragment layout is unspecified), and by lora_mma.cu.
 *
 * Fragment layouts (PTX ISA, "Matrix Fragments for mma.m16n8k16", .bf16), with g = lane / 4 and
 * t = lane % 4; a 32-bit register holds two BF16, the lower column (or row, for B) in the low half:
 *   A 16x16 (row-major): a[0] = A[g][2t..2t+1]   a[1] = A[g+8][2t..]   a[2] = A[g][2t+8..]   a[3] = A[g+8][2t+8..]
 *   B 16x8  (k x n):     b[0] = B[2t..2t+1][g]   b[1] = B[2t+8..2t+9][g]
 *   C 16x8  (F32):       c[0..1] = C[g][2t..2t+1]                c[2..3] = C[g+8][2t..2t+1]
 * So the C fragments of two adjacent n-tiles are, once packed to BF16, the A fragment of a 16-wide
 * k-step (FlashAttention-2's trick): P never leaves registers.
 *
 * ldmatrix.x4 loads four 8x8 BF16 matrices; lane l gives the row address of row l % 8 of matrix
 * l / 8 (16-byte aligned), and register i receives matrix i's row g, columns 2t..2t+1 (plain), or
 * rows 2t..2t+1 of column g (.trans). The callers below pick the row addresses so that the four
 * registers are exactly an A fragment or the B fragments of two n-tiles.
 *
 * Without a GPU (tests/gpu/emu, FT_CUDA_EMULATED) each primitive is computed from the layouts
 * above by exchanging the lanes' registers, so the emulator checks the kernels' index arithmetic
 * against the documented semantics, not against a second layout-free implementation. */
#ifndef FT_CUDA_MMA_CUH
#define FT_CUDA_MMA_CUH

#include "kernels/cuda/common.cuh"

/* Two floats to one register of two BF16 (lo in the low half), in one cvt.rn.bf16x2 (F2FP): two
 * scalar conversions cost a PRMT besides and, per softmax element, showed up in the count of the
 * attention kernels' instructions between products. */
__device__ __forceinline__ uint32_t ft_pack_bf16(float lo, float hi) {
    union {
        __nv_bfloat162 h;
        uint32_t u;
    } p;
    p.h = __floats2bfloat162_rn(lo, hi);
    return p.u;
}

/* 2^x with the MUFU alone (ex2.approx.ftz: ~2 ulp, as exp2f). exp2f adds a fix-up for results
 * below 2^-126 (a compare and two multiplies per call); softmax weights that small are 0 to the
 * sums they enter, so the attention kernels flush them. */
__device__ __forceinline__ float ft_ex2(float x) {
#if defined(__CUDA_ARCH__)
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
#else
    return exp2f(x);
#endif
}

/* The C fragment c[0..3] of n-tile n (of 8 columns), packed to BF16 into the A fragments a[k][4] of
 * 16-wide k-steps: n-tiles 2k and 2k+1 are k-step k (the layouts above). */
__device__ __forceinline__ void ft_c_to_a(uint32_t (*a)[4], int n, float c0, float c1, float c2, float c3) {
    a[n >> 1][(n & 1) * 2] = ft_pack_bf16(c0, c1);
    a[n >> 1][(n & 1) * 2 + 1] = ft_pack_bf16(c2, c3);
}

#if defined(FT_CUDA_EMULATED)
__device__ __forceinline__ float ft_emu_bf16_half(uint32_t w, int hi) {
    union {
        uint16_t s;
        act_t h;
    } p;
    p.s = (uint16_t)(hi ? w >> 16 : w & 0xffffu);
    return __bfloat162float(p.h);
}
/* ldmatrix's exchange: every lane's row address, as rows[lane] on every lane. */
__device__ __forceinline__ void ft_emu_ldsm_rows(const act_t *row_addr, const act_t *rows[32]) {
    const uint64_t p = (uint64_t)(uintptr_t)row_addr;
    if (p % 16) { fprintf(stderr, "emu: ldmatrix row address %p is not 16-byte aligned\n", (const void *)row_addr); abort(); }
    const uint32_t mine[2] = {(uint32_t)p, (uint32_t)(p >> 32)};
    uint32_t all[32][8];
    ft_emu_gather32(mine, 2, all);
    for (int l = 0; l < 32; l++) rows[l] = (const act_t *)(uintptr_t)((uint64_t)all[l][0] | (uint64_t)all[l][1] << 32);
}
#endif

/* d[16x8] += A[16x16] . B[16x8], BF16 operands, F32 accumulation. */
__device__ __forceinline__ void ft_mma_bf16(float d[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
#if defined(__CUDA_ARCH__)
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#elif defined(FT_CUDA_EMULATED)
    const uint32_t mine[6] = {a[0], a[1], a[2], a[3], b0, b1};
    uint32_t all[32][8];
    ft_emu_gather32(mine, 6, all);
    const int lane = ft_emu_tid % 32, g = lane / 4, t = lane % 4;
    for (int e = 0; e < 4; e++) {
        const int row = g + (e >= 2 ? 8 : 0), col = 2 * t + (e & 1);
        float s = d[e];
        for (int k = 0; k < 16; k++) {
            /* A[row][k]: lane (row % 8) * 4 + (k % 8) / 2, register (row >= 8) + 2 (k >= 8) */
            const float av = ft_emu_bf16_half(all[(row % 8) * 4 + (k % 8) / 2][(row >= 8) + 2 * (k >= 8)], k & 1);
            /* B[k][col]: lane col * 4 + (k % 8) / 2, register 4 + (k >= 8) */
            const float bv = ft_emu_bf16_half(all[col * 4 + (k % 8) / 2][4 + (k >= 8)], k & 1);
            s += av * bv;
        }
        d[e] = s;
    }
#endif
}

/* r[0..3] = four 8x8 matrices, row addresses from the lanes as described above. */
__device__ __forceinline__ void ft_ldsm_x4(uint32_t r[4], const act_t *row_addr) {
#if defined(__CUDA_ARCH__)
    const unsigned s = (unsigned)__cvta_generic_to_shared(row_addr);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(s));
#elif defined(FT_CUDA_EMULATED)
    const act_t *rows[32];
    ft_emu_ldsm_rows(row_addr, rows);
    const int lane = ft_emu_tid % 32, g = lane / 4, t = lane % 4;
    for (int i = 0; i < 4; i++) memcpy(&r[i], rows[i * 8 + g] + 2 * t, 4); /* matrix i, row g, columns 2t, 2t+1 */
#endif
}

__device__ __forceinline__ void ft_ldsm_x4_trans(uint32_t r[4], const act_t *row_addr) {
#if defined(__CUDA_ARCH__)
    const unsigned s = (unsigned)__cvta_generic_to_shared(row_addr);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(s));
#elif defined(FT_CUDA_EMULATED)
    const act_t *rows[32];
    ft_emu_ldsm_rows(row_addr, rows);
    const int lane = ft_emu_tid % 32, g = lane / 4, t = lane % 4;
    for (int i = 0; i < 4; i++) { /* matrix i, rows 2t and 2t+1, column g */
        uint16_t h[2];
        memcpy(&h[0], rows[i * 8 + 2 * t] + g, 2);
        memcpy(&h[1], rows[i * 8 + 2 * t + 1] + g, 2);
        r[i] = (uint32_t)h[0] | (uint32_t)h[1] << 16;
    }
#endif
}

/* ldmatrix row addresses (for ft_ldsm_x4 / _trans) of whole fragments out of a shared tile with
 * pitch LD (elements; LD * 2 a multiple of 16):
 * ft_frag_a     the A fragment (16 rows from row0, 16 columns from col0) of a tile stored [m][k]:
 *               lane l reads row l % 16, column half l / 16 (plain ldmatrix);
 * ft_frag_a_km  the same A fragment from a tile stored [k][m] (A transposed in memory), with
 *               ldmatrix.trans: matrix l / 8 is (m half (l/8) & 1, k half (l/8) >> 1);
 * ft_frag_b_nk  the B fragments of two n-tiles (n0.., n0+8..) over the k-step k0.. of a tile stored
 *               [n][k] (K for Q K^T): registers 0,1 = n-tile n0, 2,3 = n-tile n0 + 8 (plain);
 * ft_frag_b_kn  the same from a tile stored [k][n] (V for P V), with ldmatrix.trans. */
__device__ __forceinline__ const act_t *ft_frag_a(const act_t *tile, int LD, int row0, int col0) {
    const int lane = threadIdx.x % FT_WARP;
    return tile + (row0 + (lane & 15)) * LD + col0 + (lane >> 4) * 8;
}
__device__ __forceinline__ const act_t *ft_frag_a_km(const act_t *tile, int LD, int m0, int k0) {
    const int lane = threadIdx.x % FT_WARP;
    return tile + (k0 + (lane >> 4) * 8 + (lane & 7)) * LD + m0 + ((lane >> 3) & 1) * 8;
}
__device__ __forceinline__ const act_t *ft_frag_b_nk(const act_t *tile, int LD, int n0, int k0) {
    const int lane = threadIdx.x % FT_WARP;
    return tile + (n0 + (lane >> 4) * 8 + (lane & 7)) * LD + k0 + ((lane >> 3) & 1) * 8;
}
__device__ __forceinline__ const act_t *ft_frag_b_kn(const act_t *tile, int LD, int k0, int n0) {
    const int lane = threadIdx.x % FT_WARP;
    return tile + (k0 + ((lane >> 3) & 1) * 8 + (lane & 7)) * LD + n0 + (lane >> 4) * 8;
}
/* BYTES (4, 8 or 16) global -> shared, asynchronously; zeros when !pred (gmem must still be a valid
 * address). 16-byte copies skip L1 (.cg); the smaller ones, per-row scalars of strided layouts,
 * must go through it (.ca takes every size, .cg only 16). */
template <int BYTES> __device__ __forceinline__ void ft_cp_async(void *smem, const void *gmem, bool pred) {
    static_assert(BYTES == 4 || BYTES == 8 || BYTES == 16, "cp.async copies 4, 8 or 16 bytes");
#if defined(__CUDA_ARCH__)
    const unsigned s = (unsigned)__cvta_generic_to_shared(smem);
    if (BYTES == 16)
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(pred ? 16 : 0));
    else
        asm volatile("cp.async.ca.shared.global [%0], [%1], %2, %3;\n" ::"r"(s), "l"(gmem), "n"(BYTES),
                     "r"(pred ? BYTES : 0));
#elif defined(FT_CUDA_EMULATED)
    if (pred) memcpy(smem, gmem, BYTES);
    else memset(smem, 0, BYTES);
#endif
}
__device__ __forceinline__ void ft_cp_async_commit() {
#if defined(__CUDA_ARCH__)
    asm volatile("cp.async.commit_group;\n" ::);
#endif
}
/* Waits until at most N of this thread's committed groups are still in flight. */
template <int N> __device__ __forceinline__ void ft_cp_async_wait() {
#if defined(__CUDA_ARCH__)
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
#endif
}

#endif
