/* dora.cu: DoRA's three ops (PEFT use_dora; contracts in kernels/ops.h, reference kernels/cpu/dora_cpu.c)
 * on CUDA: the per-row norm of the adapted weight, the output's row scale, and the magnitude's gradient.
 *
 * dora_norm: wn[o] = ||W[o,:] + s (B A)[o,:]||, out*in*R multiply-adds, never the [out,in] matrix in
 * memory. A block owns 32 rows and a run of 256-column tiles; per tile, A's 256 columns and B's 32 rows
 * are staged through shared memory 16 ranks at a time, and each thread forms a 4-row x 8-column tile of
 * B A in registers (per rank one broadcast 16-byte read of B, two 16-byte reads of A, 32 FMAs), then
 * decodes its 8 consecutive weights of each of the 4 rows straight from W's storage (codes, ggml blocks
 * or elements: no BF16 copy, no weight cache), each rounded to BF16 as the copy the linear's GEMM reads
 * (ops.h: W's values as ft_op_linear multiplies with them), adds s (B A), squares and sums in f32
 * (tiles in order, per thread). A block's 32 column groups
 * are added in order into part[split][o]; ft_k_dora_norm_fin adds the splits in order and takes the
 * square root. The splits (runs of tiles) are as many as keep the partials within 1 MiB (the scratch
 * slot ftune plan already counts), fixed by the shape. Odd widths (in % 8 != 0, F32/F16/BF16/NF4 only:
 * ggml rows are whole blocks) read W one element at a time.
 *
 * dora_scale: elementwise, 16-byte accesses when out % 8 == 0; y = z * (mag / wn - shift) + bias with the
 * reference's roundings (a quotient, a difference, a product, a sum, and for accumulate one more sum, each an _rn
 * intrinsic so nvcc fuses none into an FMA), rounded to BF16 once. The bias is read at its own value
 * (F32/F16/BF16), as the CPU adds it, not the BF16 copy matmul.cu's epilogue uses.
 *
 * dora_mag_grad: a grid of 256-column tiles x row chunks (partials within 1 MiB too), fixed by (N, out)
 * alone (ft_dora_chunks): within a chunk, row lane j (0..7) sums rows j, j+8, ... in f32, the 8 lanes are added
 * in order into part[chunk][o], and ft_k_dora_mag_fin adds the chunks in order, divides by wn and adds
 * to dmag. The 16-byte path (a thread's 8 columns of one lane) and the scalar path (a thread's column,
 * all 8 lanes in registers) add in the same order, so the bits depend on (N, out) and the inputs only.
 * No atomics anywhere; plain loads and stores (sm_90 and sm_121 alike). */
#include "kernels/cuda/check.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_impl.h"
#include "kernels/cuda/ggml_dequant.cuh"

enum { FT_DN_ROWS = 32, FT_DN_COLS = 256, FT_DN_RC = 16, FT_DN_THREADS = 256 };
enum { FT_DM_COLS = 256, FT_DM_LANES = 8, FT_DM_THREADS = 256, FT_DM_BLOCKS = 1024 };
/* Both reductions keep their f32 partials within 1 MiB (2^18 floats), the least the FT_SCR_REDUCE slot
 * grows to (FT_CUDA_SCRATCH_ROUND), which trainer/plan.c counts already: DoRA adds no workspace. The CPU
 * emulator's small shapes take the multi-tile and few-chunk paths of the real ones with a smaller bound
 * (FT_EMU_CFLAGS=-DFT_DORA_PART_FLOATS=64). */
#ifndef FT_DORA_PART_FLOATS
#define FT_DORA_PART_FLOATS ((int64_t)1 << 18)
#endif

/* How many parts a reduction of `parts` pieces over `out` columns may keep: at most `parts`, at most
 * FT_DORA_PART_FLOATS / out, at least 1. Fixed by the shape alone. */
static int64_t ft_dora_splits(int64_t parts, int64_t out) {
    int64_t most = FT_DORA_PART_FLOATS / (out > 0 ? out : 1);
    if (most > parts) most = parts;
    return most > 1 ? most : 1;
}
/* A's staged columns, padded by 4 floats every 32, so the 8 column groups of a quarter warp read
 * distinct banks with their 16-byte loads (lora.cu's FT_LT_PAD) */
#define FT_DN_PAD(k) ((k) + ((k) >> 5) * 4)

__device__ __forceinline__ float ft_dn_bf16(float v) { return __bfloat162float(__float2bfloat16_rn(v)); }

/* How W is read: element by element through the view (any width), 8 elements a step through the view
 * (F32/F16/BF16/NF4, in % 8 == 0), or 8 elements a step of ggml blocks of type DT. */
enum { FT_DN_SCALAR = 0, FT_DN_VEC8 = 1, FT_DN_GGML = 2 };

/* v[8] = the BF16 values of W[o, i .. i+7] (columns past `in` only on the scalar path: 0 there) */
template <int KIND, int DT>
__device__ __forceinline__ void ft_dn_w8(const ft_cu_wview &w, const uint8_t *gw, int64_t row_bytes, int vec,
                                         int64_t o, int64_t i, int64_t in, float *v) {
    if constexpr (KIND == FT_DN_GGML) {
        ft_ggml_dq8_at<DT>(gw + o * row_bytes, i, v);
    } else if (KIND == FT_DN_VEC8 && w.dtype == FT_NF4) { /* 8 codes in 4 bytes, one 64-block */
        const int64_t c = o * in + i;
        const uint32_t four = *(const uint32_t *)(w.codes + (c >> 1));
        const float am = ft_nf4_absmax_dev(w, c / FT_NF4_BLOCK);
#pragma unroll
        for (int q = 0; q < 4; q++) {
            const uint32_t byte = (four >> (8 * q)) & 0xffu;
            v[2 * q] = __fmul_rn(w.tables[byte >> 4], am); /* the high nibble first */
            v[2 * q + 1] = __fmul_rn(w.tables[byte & 15u], am);
        }
    } else if (KIND == FT_DN_VEC8) {
        ft_weight_vec<8>(w, o * in + i, vec, v);
    } else {
#pragma unroll
        for (int q = 0; q < 8; q++) v[q] = i + q < in ? ft_weight_at(w, o * in + i + q) : 0.0f;
    }
#pragma unroll
    for (int q = 0; q < 8; q++) v[q] = ft_dn_bf16(v[q]);
}

/* part[blockIdx.y][o] = sum over column tiles t0 .. t1-1 (256 columns each, t0 = blockIdx.y * tps) of
 * (W[o,i] + s (B A)[o,i])^2 for the block's 32 rows. A f32 [R, in], B f32 [out, R]. Thread (rg, cg):
 * rows rg*4 .. +3, columns cg*8 .. +7 of each tile; a warp is 4 row groups x 8 column groups. Each thread
 * adds its tiles in order, then the 32 column groups are added in order. */
template <int KIND, int DT>
__global__ void __launch_bounds__(FT_DN_THREADS)
    ft_k_dora_norm_part(float *part, ft_cu_wview w, const uint8_t *gw, int64_t row_bytes, int vec, const float *A,
                        const float *B, int64_t out, int64_t in, int64_t R, float scale, int64_t tps) {
    __align__(16) __shared__ float As[FT_DN_RC * FT_DN_PAD(FT_DN_COLS)]; /* [r][column] */
    __align__(16) __shared__ float Bs[FT_DN_RC * FT_DN_ROWS];            /* [r][row] */
    __shared__ float red[FT_DN_COLS / 8][FT_DN_ROWS + 1];                 /* [column group][row] */
    const int tid = threadIdx.x, lane = tid % FT_WARP, warp = tid / FT_WARP;
    const int rg = (warp & 1) * 4 + lane / 8, cg = (warp >> 1) * 8 + lane % 8;
    const int64_t o0 = (int64_t)blockIdx.x * FT_DN_ROWS, nt = ft_cdiv(in, FT_DN_COLS);
    const int64_t t0 = (int64_t)blockIdx.y * tps, t1 = t0 + tps < nt ? t0 + tps : nt;
    float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f}; /* the thread's rows' sums of squares */
    for (int64_t t = t0; t < t1; t++) {
        const int64_t c0 = t * FT_DN_COLS;
        float d[4][8]; /* (B A)[o0 + rg*4 + j, c0 + cg*8 + q] */
#pragma unroll
        for (int j = 0; j < 4; j++)
#pragma unroll
            for (int q = 0; q < 8; q++) d[j][q] = 0.0f;
        for (int64_t r0 = 0; r0 < R; r0 += FT_DN_RC) {
            const int rc = (int)(R - r0 < (int64_t)FT_DN_RC ? R - r0 : (int64_t)FT_DN_RC);
            __syncthreads(); /* the previous ranks are read */
            for (int e = tid; e < FT_DN_RC * FT_DN_COLS; e += FT_DN_THREADS) {
                const int r = e / FT_DN_COLS, k = e % FT_DN_COLS;
                As[r * FT_DN_PAD(FT_DN_COLS) + FT_DN_PAD(k)] =
                    r < rc && c0 + k < in ? A[(r0 + r) * in + c0 + k] : 0.0f;
            }
            for (int e = tid; e < FT_DN_RC * FT_DN_ROWS; e += FT_DN_THREADS) {
                const int row = e / FT_DN_RC, r = e % FT_DN_RC;
                Bs[r * FT_DN_ROWS + row] = r < rc && o0 + row < out ? B[(o0 + row) * R + r0 + r] : 0.0f;
            }
            __syncthreads();
#pragma unroll 4
            for (int r = 0; r < rc; r++) {
                const float4 b = *(const float4 *)&Bs[r * FT_DN_ROWS + rg * 4];
                const float *ap = &As[r * FT_DN_PAD(FT_DN_COLS) + FT_DN_PAD(cg * 8)];
                const float4 a0 = *(const float4 *)ap, a1 = *(const float4 *)(ap + 4);
                const float bv[4] = {b.x, b.y, b.z, b.w};
                const float av[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
#pragma unroll
                for (int j = 0; j < 4; j++)
#pragma unroll
                    for (int q = 0; q < 8; q++) d[j][q] = fmaf(bv[j], av[q], d[j][q]);
            }
        }
        const int64_t i = c0 + cg * 8;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            const int64_t o = o0 + rg * 4 + j;
            if (o >= out || i >= in) continue;
            float wv[8];
            ft_dn_w8<KIND, DT>(w, gw, row_bytes, vec, o, i, in, wv);
#pragma unroll
            for (int q = 0; q < 8; q++) {
                if (KIND == FT_DN_SCALAR && i + q >= in) break;
                const float v = fmaf(scale, d[j][q], wv[q]);
                acc[j] = fmaf(v, v, acc[j]);
            }
        }
    }
#pragma unroll
    for (int j = 0; j < 4; j++) red[cg][rg * 4 + j] = acc[j];
    __syncthreads();
    if (tid < FT_DN_ROWS && o0 + tid < out) {
        float sum = 0.0f;
        for (int c = 0; c < FT_DN_COLS / 8; c++) sum += red[c][tid];
        part[(int64_t)blockIdx.y * out + o0 + tid] = sum;
    }
}

/* wn[o] = sqrt(sum of the ns column splits' partials, in order) */
__global__ void ft_k_dora_norm_fin(float *wn, const float *part, int64_t out, int64_t ns) {
    for (int64_t o = ft_gtid(); o < out; o += ft_gstride()) {
        float s = 0.0f;
        for (int64_t t = 0; t < ns; t++) s += part[t * out + o];
        wn[o] = sqrtf(s);
    }
}

template <int KIND>
static void ft_dora_norm_launch(dim3 grid, cudaStream_t s, float *part, ft_cu_wview w, int vec, const float *A,
                                const float *B, int64_t out, int64_t in, int64_t R, float scale, int64_t tps) {
    ft_k_dora_norm_part<KIND, 0><<<grid, FT_DN_THREADS, 0, s>>>(part, w, (const uint8_t *)NULL, (int64_t)0, vec, A,
                                                                  B, out, in, R, scale, tps);
}

struct ft_dora_norm_ggml {
    template <int DT>
    static void run(dim3 grid, cudaStream_t s, float *part, ft_cu_wview w, const uint8_t *gw, int64_t row_bytes,
                    const float *A, const float *B, int64_t out, int64_t in, int64_t R, float scale, int64_t tps) {
        ft_k_dora_norm_part<FT_DN_GGML, DT><<<grid, FT_DN_THREADS, 0, s>>>(part, w, gw, row_bytes, 0, A, B, out, in,
                                                                           R, scale, tps);
    }
};

ft_status ft_cuda_dora_norm(ft_backend *be, float *wn, const ft_weight *W, const float *A, const float *B, int64_t R,
                            float scale) {
    const int64_t out = W->rows, in = W->cols;
    const int ggml = ft_dtype_is_ggml(W->dtype);
    if (!ggml && W->dtype != FT_F32 && W->dtype != FT_F16 && W->dtype != FT_BF16 && W->dtype != FT_NF4)
        return FT_ERR(FT_E_UNSUPPORTED, "cuda dora_norm: weights of dtype %s are not supported",
                      ft_dtype_name(W->dtype));
    if (R < 0 || out < 0 || in < 0)
        return FT_ERR(FT_E_INTERNAL, "dora_norm: shape [%lld, %lld], R %lld", (long long)out, (long long)in,
                      (long long)R);
    const int64_t row_bytes = ggml ? ft_dtype_nbytes(W->dtype, in) : 0;
    if (row_bytes < 0)
        return FT_ERR(FT_E_INTERNAL, "dora_norm: %s rows of %lld elements are not whole blocks",
                      ft_dtype_name(W->dtype), (long long)in);
    if (out == 0) return FT_OK;
    /* ns splits of the nt column tiles, tps tiles each, so the partials stay within FT_DORA_PART_FLOATS */
    const int64_t rb = ft_cdiv(out, FT_DN_ROWS), nt = ft_cdiv(in, FT_DN_COLS);
    const int64_t tps = ft_cdiv(nt, ft_dora_splits(nt, out)), ns = nt > 0 ? ft_cdiv(nt, tps) : 0;
    if (rb > 0x7fffffff || ns > 65535)
        return FT_ERR(FT_E_UNSUPPORTED, "cuda dora_norm: a [%lld, %lld] weight is past the grid's limits",
                      (long long)out, (long long)in);
    FT_TRY(ft_cuda_load_settle(be)); /* streamed weights: NF4 offsets, blocks' copies ordered before */
    ft_backend_cuda *b = ft_cu(be);
    void *part = NULL;
    FT_TRY(ft_cuda_scratch_get(be, FT_SCR_REDUCE, 4 * (ns * out > 0 ? ns * out : 1), &part));
    if (ns > 0) {
        const ft_cu_wview wv = ft_cu_view(W, b->nf4_tables);
        const dim3 grid((unsigned)rb, (unsigned)ns);
        if (ggml) {
            ft_ggml_dispatch<ft_dora_norm_ggml>((int)W->dtype, grid, b->stream, (float *)part, wv,
                                                (const uint8_t *)W->data, row_bytes, A, B, out, in, R, scale, tps);
        } else {
            /* 8 weights a step: whole groups of 8 in every row, NF4 codes 4-byte aligned (flat index a
             * multiple of 8 then); BF16/F32 also take 16-byte loads when their data is 16-byte aligned */
            const int vec8 = in % 8 == 0 && (W->dtype != FT_NF4 || (uintptr_t)W->nf4.codes % 4 == 0);
            if (vec8)
                ft_dora_norm_launch<FT_DN_VEC8>(grid, b->stream, (float *)part, wv, ft_wview_vec8(wv), A, B, out, in,
                                                R, scale, tps);
            else
                ft_dora_norm_launch<FT_DN_SCALAR>(grid, b->stream, (float *)part, wv, 0, A, B, out, in, R, scale, tps);
        }
        FT_CUDA_LAUNCH_TRY("ft_k_dora_norm_part");
    }
    ft_k_dora_norm_fin<<<ft_grid_1d(out, 256, 64LL * b->sm_count), 256, 0, b->stream>>>(wn, (const float *)part, out,
                                                                                       ns);
    FT_CUDA_LAUNCH_TRY("ft_k_dora_norm_fin");
    return FT_OK;
}

/* ---- y = z * (mag / wn - shift) + bias -------------------------------------------------------------------- */

/* VEC 8: out % 8 == 0 and y, z 16-byte aligned, so 8 consecutive elements share a row */
template <int VEC>
__global__ void ft_k_dora_scale(act_t *y, const act_t *z, const float *mag, const float *wn, float shift,
                                ft_cu_wview bias, int has_bias, int64_t n, int64_t out, int accumulate) {
    for (int64_t i = ft_gtid() * VEC; i < n; i += ft_gstride() * VEC) {
        float zv[VEC], yv[VEC];
        ft_ld_vec<VEC>(z + i, zv);
        if (accumulate) ft_ld_vec<VEC>(y + i, yv);
        const int64_t o = i % out;
#pragma unroll
        for (int q = 0; q < VEC; q++) {
            float v = __fmul_rn(zv[q], __fsub_rn(__fdiv_rn(mag[o + q], wn[o + q]), shift));
            v = __fadd_rn(v, has_bias ? ft_weight_at(bias, o + q) : 0.0f);
            zv[q] = accumulate ? __fadd_rn(yv[q], v) : v;
        }
        ft_st_vec<VEC>(y + i, zv);
    }
}

ft_status ft_cuda_dora_scale(ft_backend *be, void *y, const void *z, const float *mag, const float *wn, float shift,
                             const ft_weight *bias, int64_t N, int64_t out, int accumulate) {
    if (bias && ((bias->dtype != FT_F32 && bias->dtype != FT_F16 && bias->dtype != FT_BF16) ||
                 ft_weight_numel(bias) != out))
        return FT_ERR(FT_E_INTERNAL, "dora_scale: a %s bias of %lld elements for %lld outputs",
                      ft_dtype_name(bias->dtype), (long long)ft_weight_numel(bias), (long long)out);
    const int64_t n = N * out;
    if (n <= 0) return FT_OK;
    ft_backend_cuda *b = ft_cu(be);
    const ft_cu_wview bv = bias ? ft_cu_view(bias, b->nf4_tables) : ft_cu_wview();
    const int64_t cap = 64LL * b->sm_count;
    if (ft_vec8_ok(out, y, z))
        ft_k_dora_scale<8><<<ft_grid_1d(n / 8, 256, cap), 256, 0, b->stream>>>(
            (act_t *)y, (const act_t *)z, mag, wn, shift, bv, bias != NULL, n, out, accumulate);
    else
        ft_k_dora_scale<1><<<ft_grid_1d(n, 256, cap), 256, 0, b->stream>>>(
            (act_t *)y, (const act_t *)z, mag, wn, shift, bv, bias != NULL, n, out, accumulate);
    FT_CUDA_LAUNCH_TRY("ft_k_dora_scale");
    return FT_OK;
}

/* ---- dmag += (sum_n dy * z) / wn ------------------------------------------------------------------ */

/* The row chunks of a [N, out] sum, fixed by (N, out) alone: about FT_DM_BLOCKS blocks of 256 columns x
 * one chunk, chunks of at least 64 rows (8 a lane). *ch rows a chunk, *nch chunks (0 when N is 0). */
static void ft_dora_chunks(int64_t N, int64_t out, int64_t *ch, int64_t *nch) {
    const int64_t tiles = ft_cdiv(out, FT_DM_COLS);
    int64_t want = ft_cdiv(FT_DM_BLOCKS, tiles), most = ft_cdiv(N, 64);
    if (want > most) want = most;
    want = ft_dora_splits(want, out);
    *ch = ft_cdiv(N, want);
    *nch = *ch > 0 ? ft_cdiv(N, *ch) : 0;
}

/* part[blockIdx.y][o] = sum over the chunk's rows of dy[n,o] z[n,o]: lane j sums rows j, j+8, ... of the
 * chunk, then lanes 0..7 are added in order. VEC 8: thread (cx, lane) holds columns cx*8 .. +7 of one
 * lane (out % 8 == 0, dy and z 16-byte aligned); VEC 1: thread t holds column t and all 8 lanes. */
template <int VEC>
__global__ void __launch_bounds__(FT_DM_THREADS)
    ft_k_dora_mag_part(float *part, const act_t *dy, const act_t *z, int64_t N, int64_t out, int64_t ch) {
    __shared__ float red[FT_DM_LANES][FT_DM_COLS];
    const int tid = threadIdx.x;
    const int64_t o0 = (int64_t)blockIdx.x * FT_DM_COLS, n0 = (int64_t)blockIdx.y * ch;
    const int64_t n1 = n0 + ch < N ? n0 + ch : N;
    if (VEC == 8) {
        const int cx = tid % FT_WARP, j = tid / FT_WARP;
        const int64_t oc = o0 + cx * 8;
        float s[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
        if (oc < out) {
            for (int64_t n = n0 + j; n < n1; n += FT_DM_LANES) {
                float a[8], c[8];
                ft_ld_vec<8>(dy + n * out + oc, a);
                ft_ld_vec<8>(z + n * out + oc, c);
#pragma unroll
                for (int q = 0; q < 8; q++) s[q] = fmaf(a[q], c[q], s[q]);
            }
        }
#pragma unroll
        for (int q = 0; q < 8; q++) red[j][cx * 8 + q] = s[q];
        __syncthreads();
        if (o0 + tid < out) {
            float t = 0.0f;
            for (int l = 0; l < FT_DM_LANES; l++) t += red[l][tid];
            part[(int64_t)blockIdx.y * out + o0 + tid] = t;
        }
    } else {
        const int64_t o = o0 + tid;
        if (o >= out) return;
        float s[FT_DM_LANES];
#pragma unroll
        for (int l = 0; l < FT_DM_LANES; l++) s[l] = 0.0f;
        for (int64_t n = n0; n < n1; n += FT_DM_LANES) {
#pragma unroll
            for (int l = 0; l < FT_DM_LANES; l++)
                if (n + l < n1) s[l] = fmaf(ft_ld(dy, (n + l) * out + o), ft_ld(z, (n + l) * out + o), s[l]);
        }
        float t = 0.0f;
        for (int l = 0; l < FT_DM_LANES; l++) t += s[l];
        part[(int64_t)blockIdx.y * out + o] = t;
    }
}

/* dmag[o] += (the nch chunks' partials added in order) / wn[o] */
__global__ void ft_k_dora_mag_fin(float *dmag, const float *part, const float *wn, int64_t out, int64_t nch) {
    for (int64_t o = ft_gtid(); o < out; o += ft_gstride()) {
        float s = 0.0f;
        for (int64_t c = 0; c < nch; c++) s += part[c * out + o];
        dmag[o] = __fadd_rn(dmag[o], __fdiv_rn(s, wn[o]));
    }
}

ft_status ft_cuda_dora_mag_grad(ft_backend *be, float *dmag, const void *dy, const void *z, const float *wn,
                                int64_t N, int64_t out) {
    if (N < 0 || out < 0) return FT_ERR(FT_E_INTERNAL, "dora_mag_grad: N %lld, out %lld", (long long)N, (long long)out);
    if (out == 0) return FT_OK;
    ft_backend_cuda *b = ft_cu(be);
    int64_t ch, nch;
    ft_dora_chunks(N, out, &ch, &nch);
    const int64_t tiles = ft_cdiv(out, FT_DM_COLS);
    if (tiles > 0x7fffffff || nch > 65535)
        return FT_ERR(FT_E_UNSUPPORTED, "cuda dora_mag_grad: [%lld, %lld] is past the grid's limits", (long long)N,
                      (long long)out);
    void *part = NULL;
    FT_TRY(ft_cuda_scratch_get(be, FT_SCR_REDUCE, 4 * (nch * out > 0 ? nch * out : 1), &part));
    if (nch > 0) {
        const dim3 grid((unsigned)tiles, (unsigned)nch);
        if (ft_vec8_ok(out, dy, z))
            ft_k_dora_mag_part<8><<<grid, FT_DM_THREADS, 0, b->stream>>>((float *)part, (const act_t *)dy,
                                                                         (const act_t *)z, N, out, ch);
        else
            ft_k_dora_mag_part<1><<<grid, FT_DM_THREADS, 0, b->stream>>>((float *)part, (const act_t *)dy,
                                                                         (const act_t *)z, N, out, ch);
        FT_CUDA_LAUNCH_TRY("ft_k_dora_mag_part");
    }
    ft_k_dora_mag_fin<<<ft_grid_1d(out, 256, 64LL * b->sm_count), 256, 0, b->stream>>>(dmag, (const float *)part, wn,
                                                                                      out, nch);
    FT_CUDA_LAUNCH_TRY("ft_k_dora_mag_fin");
    return FT_OK;
}
