/* test_ops_cuda.c: the op test table (tests/op_table.h) run against the CUDA backend: the small,
 * mid and real-shape tiers (the real layer shapes of Llama-3-70B, Qwen3-32B and Mistral-Small-24B),
 * with test / grad / perf modes and one summary table. tests/gpu/run.sh runs it on a GPU machine;
 * CTest runs it everywhere.
 *
 * The case table, the op runners (one per op, each able to run on a backend or compute a double
 * reference) and the poisoning of every output (0xFF bytes: NaN in BF16 and F32, so an element an
 * op forgets to write fails) are the library test_ops_cpu links too: a new op cannot get a CUDA
 * kernel without a case, and check_coverage() below fails when the backend vtable gains an op the
 * table does not map.
 *
 * Without a GPU (CI) it checks what needs none: the NF4 offset formulation of
 * kernels/cuda/nf4_mean.h against the CPU's ft_nf4_absmax_mean, bit for bit, over many sizes; that
 * every vtable op has a small and a real-shape case; and that this executable carries device code for
 * every architecture of the build (FT_CUDA_ARCHS, sm_90 and sm_121 by default). Then it prints
 * SKIP for the device part and passes.
 *
 * With a GPU each case runs on the CUDA backend and on the CPU backend from the same inputs,
 * drawn fresh each run (a random salt, printed; --seed repeats a run) and rounded to BF16 for both.
 * Tolerances on ||cuda - cpu|| / ||cpu||: the case's tol_act for the small tier; for the mid
 * and real tiers 1e-2 for BF16 results and 1e-5 for f32 results (rstd, lse, loss sums, sums of squares,
 * AdamW, scale); NF4 codes exact. NaN or Inf fails. GPU memory must return to its level after
 * each case (a second run tells a leak from grow-only scratch). Before the table: the weight cache
 * against uncached products, and every ggml block type's device decoding (random blocks) against the
 * host decoder bit for bit on each path that reads a ggml weight (check_ggml_weights).
 *
 * Usage: test_ops_cuda [--mode test|grad|perf|all] [--filter a,b] [--small] [--mid] [--big]
 *                      [--seed S] [--reps R] [--summary FILE]
 *   --small / --mid / --big pick tiers (default all three): the small table test_ops_cpu runs too,
 *   odd mid-size shapes (every attention head_dim class, several tiles), the real layer shapes.
 *   test  compare every case with the CPU backend (default)
 *   grad  only the backward cases (GPU gradients against CPU gradients; the finite-difference
 *         checks of the CPU backward ops themselves are test_ops_grad)
 *   perf  time each case's op (no comparison, no CPU run)
 *   all   test, then perf, one row per case */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h> /* getpid */

#include "kernels/backend_impl.h" /* only for check_coverage: the vtable's op slots */
#include "kernels/cuda/nf4_mean.h"
#include "kernels/dtype.h"
#include "kernels/ggml_quants.h"
#include "kernels/nf4.h"
#include "kernels/ops.h"
#include "kernels/weight.h"
#include "kernels/rng.h"
#include "tests/harness.h"
#include "tests/op_table.h"

#ifndef FT_CUDA_ARCHS
#define FT_CUDA_ARCHS ""
#endif

/* ---- checks that need no GPU ------------------------------------------------------------------- */

static void check_nf4_mean(void) {
    static const int64_t sizes[] = {1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 31, 32, 33, 63, 64, 65, 127, 128, 129, 255,
                                    256, 257, 511, 512, 1000, 4095, 4096, 4097, 65535, 65536, 65537, 100003,
                                    1048576, 1048577, 3670016, 3670017};
    int64_t checked = 0, same = 0;
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        const int64_t nb = sizes[s];
        float *x = ot_hmalloc(nb);
        for (int rep = 0; rep < 3; rep++) {
            for (int64_t i = 0; i < nb; i++)
                x[i] = ft_uniform(0xab5u + (uint64_t)(nb * 3 + rep), (uint64_t)i) * (rep == 2 ? 1e-3f : 1.7f);
            const float a = ft_nf4_absmax_mean(x, nb), b = ft_nf4m_mean_serial(x, nb);
            checked++;
            same += memcmp(&a, &b, sizeof a) == 0;
        }
        free(x);
    }
    FT_CHECK(same == checked, "nf4 offset: the warp formulation differs from ft_nf4_absmax_mean in %lld of %lld",
             (long long)(checked - same), (long long)checked);
    printf("ok   nf4 offset: warp formulation bit-identical to the CPU mean over %lld arrays (nb 1..3670017)\n",
           (long long)checked);
}

/* Every op slot of the backend vtable must be covered by exactly one op of the table (ot_ops[].vt),
 * and every op needs a runner, a small and a real-shape case. */
static void check_coverage(void) {
    const size_t first = offsetof(ft_backend_vtbl, embed), ptr = sizeof(void (*)(void));
    const size_t nslots = (sizeof(ft_backend_vtbl) - first) / ptr;
    int *covered = calloc(nslots, sizeof(int));
    if (!covered) abort();
    size_t nmapped = 0;
    int missing = 0;
    for (int op = 0; op < OP_COUNT; op++) {
        const ot_op_info *d = &ot_ops[op];
        if (!FT_CHECK(d->name && d->run, "op %d has no entry in ot_ops (tests/op_table.c)", op)) continue;
        for (int j = 0; j < 2 && d->vt[j]; j++, nmapped++) {
            const size_t slot = (d->vt[j] - first) / ptr;
            if (d->vt[j] >= first && slot < nslots) covered[slot]++;
        }
        int n[OT_NTIERS] = {0};
        for (int c = 0; c < ot_case_count(); c++) {
            const ot_case k = ot_case_at(c);
            n[k.tier] += k.op == op;
        }
        missing += !n[OT_SMALL] || !n[OT_REAL];
        FT_CHECK(n[OT_SMALL] > 0 && n[OT_REAL] > 0, "op %s has %d small and %d real-shape cases: every op needs both",
                 d->name, n[OT_SMALL], n[OT_REAL]);
    }
    int once = 1;
    for (size_t s = 0; s < nslots; s++) once &= covered[s] == 1;
    FT_CHECK(nslots == nmapped && once,
             "the backend vtable has %zu op slots but the op table maps %zu (each slot once): add the new op's "
             "OP_ id, its row in ot_ops (tests/op_table.c), a runner and its cases (tests/op_table.h)", nslots, nmapped);
    free(covered);
    if (!missing && once) printf("ok   every one of the %zu vtable ops has small and real-shape cases\n", nmapped);
}

/* The executable must hold device code (SASS) for every architecture of the build. The cubins
 * nvcc embeds are plain ELF files (EM_CUDA = 190) inside the fat binary; their e_flags carry the SM
 * version (bits 8..15 from ELF ABI version 8, CUDA 12.8 on; bits 0..7 before). Scanning our own
 * executable needs no CUDA tool, so CI checks it too. A compressed fat binary hides the ELF
 * headers: then the check is skipped, not failed. */
static void check_archs(void) {
#ifdef FT_HAVE_CUDA
    char *img = NULL;
    int64_t len = 0;
    if (ft_test_read_file("/proc/self/exe", &img, &len) != FT_OK) {
        printf("SKIP device-code check: cannot read /proc/self/exe\n");
        return;
    }
    int have[1024] = {0}, ncubin = 0;
    for (int64_t i = 0; i + 64 <= len; i++) {
        if (memcmp(img + i, "\x7f" "ELF", 4) != 0 || img[i + 4] != 2) continue; /* ELF64 */
        uint16_t mach;
        uint32_t flags;
        memcpy(&mach, img + i + 18, 2);
        memcpy(&flags, img + i + 48, 4);
        if (mach != 190) continue;
        const int sm = (unsigned char)img[i + 8] >= 8 ? (int)((flags >> 8) & 0xff) : (int)(flags & 0xff);
        have[sm & 1023] = 1;
        ncubin++;
    }
    free(img);
    if (ncubin == 0) {
        printf("SKIP device-code check: no uncompressed cubin found in the executable\n");
        return;
    }
    char archs[256];
    snprintf(archs, sizeof archs, "%s", FT_CUDA_ARCHS);
    int found = 0;
    for (char *tok = strtok(archs, "; "); tok; tok = strtok(NULL, "; ")) {
        const int v = atoi(tok); /* "90", "121", "90-real", "90a" all start with the SM number */
        FT_CHECK(v > 0 && v < 1024 && have[v], "no sm_%d device code in this executable (build architectures %s)",
                 v, FT_CUDA_ARCHS);
        found++;
    }
    FT_CHECK(found > 0, "no CUDA architectures recorded for this build");
    printf("ok   sm device code for every build architecture (%s) in the executable (%d cubins)\n", FT_CUDA_ARCHS,
           ncubin);
#else
    printf("SKIP device-code check: built without CUDA\n");
#endif
}

/* ---- the device run ----------------------------------------------------------------------------- */

/* y[N,out] (host f32) = x . W^T through the backend's linear op.
 * y is poisoned first, as the op table poisons every output (0xFF bytes: NaN in BF16), and every
 * element must come back finite. Two reasons. (1) Without the poison an element the product skipped
 * would keep the previous call's value (the allocator hands back the same address), and the callers'
 * bit-for-bit comparisons of two such calls would pass. (2) compute-sanitizer initcheck does not see
 * cuBLASLt's writes on sm_90. On an H100 it flagged the download of y as uninitialized over its
 * whole 1536 bytes (8 x 96 BF16), not a tail, call after call: 1536 errors per run, as many as
 * 16 calls x 48 32-byte sectors here plus 12 x 64 for the 4 x 256 ring check. Yet y is exactly the out x N matrix the
 * GEMM writes (ldd = out, no padding), memcheck was clean, and the op table's linear cases (outputs
 * poisoned, compared with the CPU) pass through the same cuBLASLt path, so every element is
 * written. Compute Sanitizer's release notes (known limitations): "Some tensormap ... instructions
 * accessing global memory are not currently supported, which may result in initcheck false
 * positives"; the sm_90 GEMM kernels store through TMA (tensormap) instructions. The memset makes
 * initcheck treat y as initialized (its checks of device-side reads stay), and the finite check
 * catches an unwritten element on every run, with or without the sanitizer. */
static void wc_linear(ft_backend *be, const uint16_t *xh, const ft_weight *W, int64_t N, float *y) {
    void *x = NULL, *yd = NULL;
    uint16_t *yh = calloc((size_t)(N * W->rows), 2);
    if (!yh) abort();
    FT_CHECK_OK(ft_backend_alloc(be, &x, 2 * N * W->cols, "x"));
    FT_CHECK_OK(ft_backend_alloc(be, &yd, 2 * N * W->rows, "y"));
    FT_CHECK_OK(ft_backend_upload(be, x, xh, 2 * N * W->cols));
    FT_CHECK_OK(ft_backend_memset(be, yd, 0xFF, 2 * N * W->rows));
    FT_CHECK_OK(ft_op_linear(be, yd, x, W, NULL, N, 0));
    FT_CHECK_OK(ft_backend_download(be, yh, yd, 2 * N * W->rows));
    int64_t unwritten = 0;
    for (int64_t i = 0; i < N * W->rows; i++) {
        y[i] = ft_bf16_to_f32(yh[i]);
        unwritten += !isfinite(y[i]);
    }
    FT_CHECK(unwritten == 0, "linear, weight %lldx%lld, N %lld: %lld of %lld outputs not finite (unwritten: poison)",
             (long long)W->rows, (long long)W->cols, (long long)N, (long long)unwritten, (long long)(N * W->rows));
    ft_backend_release(be, x);
    ft_backend_release(be, yd);
    free(yh);
}

/* The cache of dequantized weights (kernels/cuda/wcache.cu) must never serve stale values: a hit
 * gives exactly the uncached product, and a weight that is set again, or freed and replaced by
 * another at the same address, is dequantized afresh. Each product is compared bit for bit with
 * the same product with the cache off. */
static void check_weight_cache(ft_backend *gpu, uint64_t seed) {
    const int64_t N = 8, out = 96, in = 256;
    float *w1 = ot_hmalloc(out * in), *w2 = ot_hmalloc(out * in), *ref = ot_hmalloc(N * out), *y = ot_hmalloc(N * out);
    uint16_t *xh = calloc((size_t)(N * in), 2);
    if (!xh) abort();
    for (int64_t i = 0; i < out * in; i++) {
        w1[i] = ft_uniform(seed, (uint64_t)i) * 0.1f;
        w2[i] = ft_uniform(seed + 1, (uint64_t)i) * 0.1f;
    }
    for (int64_t i = 0; i < N * in; i++) xh[i] = ft_f32_to_bf16(ft_uniform(seed + 2, (uint64_t)i));
    int64_t numel[2] = {out * in, out * in};
    ft_weight W;
    memset(&W, 0, sizeof W);
    FT_CHECK_OK(ft_weight_alloc(gpu, &W, FT_NF4, out, in, "W"));
    int bad = 0;
    for (int round = 0; round < 3; round++) {
        const float *src = round == 1 ? w2 : w1;
        if (round == 2) { /* freed and allocated again (the allocator may hand back the same address) */
            ft_weight_release(gpu, &W);
            FT_CHECK_OK(ft_weight_alloc(gpu, &W, FT_NF4, out, in, "W again"));
        }
        FT_CHECK_OK(ft_backend_weight_cache(gpu, 0));
        FT_CHECK_OK(ft_weight_set(gpu, &W, src, FT_F32));
        wc_linear(gpu, xh, &W, N, ref); /* no cache */
        FT_CHECK_OK(ft_backend_weight_cache(gpu, ft_weight_cache_bytes(numel, 2)));
        for (int use = 0; use < 3; use++) { /* a miss, then hits */
            wc_linear(gpu, xh, &W, N, y);
            bad += memcmp(y, ref, sizeof(float) * (size_t)(N * out)) != 0;
        }
        /* the next round changes the weight while the cache is on: set it, then compare */
        const float *next = round == 0 ? w2 : w1;
        if (round < 2) {
            FT_CHECK_OK(ft_weight_set(gpu, &W, next, FT_F32));
            wc_linear(gpu, xh, &W, N, y);
            FT_CHECK_OK(ft_backend_weight_cache(gpu, 0));
            wc_linear(gpu, xh, &W, N, ref);
            bad += memcmp(y, ref, sizeof(float) * (size_t)(N * out)) != 0;
        }
    }
    FT_CHECK(bad == 0, "weight cache: %d products differ from the uncached product", bad);
    if (bad == 0) printf("ok   weight cache: hits, a weight set again and a weight freed and replaced all match the uncached product bit for bit\n");
    FT_CHECK_OK(ft_backend_weight_cache(gpu, 0));
    ft_weight_release(gpu, &W);
    free(w1), free(w2), free(ref), free(y), free(xh);
}

/* The ring under pressure, with prefetching: three weights of 0.5 MiB (BF16) through a cache of
 * 1 MiB (two of them), used as a layer's modules are: in order with the next one prefetched,
 * twice, then in reverse (as the backward after a recompute). Prefetches evict entries a product
 * may still read and land on the second stream; every product must equal the uncached one. */
static void check_weight_cache_ring(ft_backend *gpu, uint64_t seed) {
    enum { NW = 3 };
    const int64_t N = 4, out = 256, in = 1024;
    ft_weight W[NW];
    float *ref[NW], *y = ot_hmalloc(N * out), *src = ot_hmalloc(out * in);
    uint16_t *xh = calloc((size_t)(N * in), 2);
    if (!xh) abort();
    for (int64_t i = 0; i < N * in; i++) xh[i] = ft_f32_to_bf16(ft_uniform(seed + 7, (uint64_t)i));
    FT_CHECK_OK(ft_backend_weight_cache(gpu, 0));
    for (int k = 0; k < NW; k++) {
        memset(&W[k], 0, sizeof W[k]);
        FT_CHECK_OK(ft_weight_alloc(gpu, &W[k], FT_NF4, out, in, "W"));
        for (int64_t i = 0; i < out * in; i++) src[i] = ft_uniform(seed + 10 + (uint64_t)k, (uint64_t)i) * 0.1f;
        FT_CHECK_OK(ft_weight_set(gpu, &W[k], src, FT_F32));
        ref[k] = ot_hmalloc(N * out);
        wc_linear(gpu, xh, &W[k], N, ref[k]);
    }
    int64_t numel[2] = {out * in, out * in};
    FT_CHECK_OK(ft_backend_weight_cache(gpu, ft_weight_cache_bytes(numel, 2)));
    static const int order[] = {0, 1, 2, 0, 1, 2, 2, 1, 0};
    const int n = (int)(sizeof order / sizeof *order);
    int bad = 0;
    for (int s = 0; s < n; s++) {
        if (s + 1 < n && s < 6) FT_CHECK_OK(ft_backend_weight_prefetch(gpu, &W[order[s + 1]]));
        wc_linear(gpu, xh, &W[order[s]], N, y);
        bad += memcmp(y, ref[order[s]], sizeof(float) * (size_t)(N * out)) != 0;
    }
    FT_CHECK(bad == 0, "weight cache ring with prefetch: %d of %d products differ from the uncached product", bad, n);
    if (bad == 0) printf("ok   weight cache ring with prefetch: %d products through a two-weight ring match the uncached product bit for bit\n", n);
    FT_CHECK_OK(ft_backend_weight_cache(gpu, 0));
    for (int k = 0; k < NW; k++) {
        ft_weight_release(gpu, &W[k]);
        free(ref[k]);
    }
    free(y), free(src), free(xh);
}

/* ggml block weights (FT_Q4_0 .. FT_IQ4_XS, a GGUF base's bytes) on the device against the host
 * decoder (kernels/ggml_quants.c), bit for bit: each element must be the BF16 rounding of ggml's
 * dequantize_row_* f32. The blocks are random bytes (every quant bit pattern, every scale byte)
 * with random finite fp16 scales, subnormals included, so no value distribution hides an index or
 * rounding slip. Products with one-hot inputs make every path's copy of the weight visible exactly
 * (one nonzero term per sum): the dequantize + GEMM path (x = identity, N > FT_LINEAR_FEW_ROWS), the
 * backward (dy = identity), the few-row path that reads the blocks (gemv.cu: 8 one-hot rows per call),
 * the weight cache's prefetch, and the embedding gather. */
static void ggml_fill_blocks(uint8_t *b, ft_dtype t, int64_t nblocks, uint64_t seed) {
    static const struct { ft_dtype t; int f16[2]; } f16at[] = {
        {FT_Q4_0, {0, -1}}, {FT_Q4_1, {0, 2}},   {FT_Q5_0, {0, -1}}, {FT_Q5_1, {0, 2}},  {FT_Q8_0, {0, -1}},
        {FT_Q2_K, {80, 82}}, {FT_Q3_K, {108, -1}}, {FT_Q4_K, {0, 2}}, {FT_Q5_K, {0, 2}}, {FT_Q6_K, {208, -1}},
        {FT_IQ4_NL, {0, -1}}, {FT_IQ4_XS, {0, -1}},
    };
    const int64_t bb = ft_dtype_block_bytes(t);
    for (int64_t i = 0; i < nblocks * bb; i++) b[i] = (uint8_t)(ft_mix64(seed + (uint64_t)i) >> 24);
    for (size_t k = 0; k < sizeof f16at / sizeof *f16at; k++) {
        if (f16at[k].t != t) continue;
        for (int64_t blk = 0; blk < nblocks; blk++)
            for (int f = 0; f < 2 && f16at[k].f16[f] >= 0; f++) {
                const uint64_t r = ft_mix64(seed ^ (0x5eedull + (uint64_t)(blk * 2 + f)));
                /* sign and mantissa random, exponent 0..30: finite, subnormals included */
                const uint16_t h = (uint16_t)((r & 0x83ffu) | ((r >> 32) % 31) << 10);
                memcpy(b + blk * bb + f16at[k].f16[f], &h, 2);
            }
    }
}

static int64_t ggml_count_diff(const float *got, const float *want, int64_t n) {
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) bad += !(got[i] == want[i]); /* +0 == -0: a sum of +0 terms is +0 */
    return bad;
}

/* Trainable token indices are the caller's invariants: a negative row (rows_set, rows_sum) or a column
 * outside [0, V) (cols_set, cols_take) is skipped, cols_take writes NaN into g there, and the next sync
 * fails with FT_E_INTERNAL, once (the flag is cleared). */
static void check_token_indices(ft_backend *gpu) {
    enum { N = 4, C = 8, V = 16, K = 2 };
    const int32_t pos[K + 1 + 2] = {0, 1, 2, 3, -1}, cols[K] = {5, V};
    void *x, *dp, *dc, *g;
    float *r;
    FT_CHECK_OK(ft_backend_alloc(gpu, &x, 2 * N * V, "x"));
    FT_CHECK_OK(ft_backend_alloc(gpu, (void **)&r, 4 * K * C, "rows"));
    FT_CHECK_OK(ft_backend_alloc(gpu, &dp, sizeof pos, "pos"));
    FT_CHECK_OK(ft_backend_alloc(gpu, &dc, sizeof cols, "cols"));
    FT_CHECK_OK(ft_backend_alloc(gpu, &g, 2 * N * K, "g"));
    FT_CHECK_OK(ft_backend_memset(gpu, x, 0, 2 * N * V));
    FT_CHECK_OK(ft_backend_memset(gpu, r, 0, 4 * K * C));
    FT_CHECK_OK(ft_backend_memset(gpu, g, 0, 2 * N * K));
    FT_CHECK_OK(ft_backend_upload(gpu, dp, pos, sizeof pos));
    FT_CHECK_OK(ft_backend_upload(gpu, dc, cols, sizeof cols));
    int flagged = 0;
    FT_CHECK_OK(ft_op_rows_set(gpu, x, r, dp, K, C));
    flagged += ft_backend_sync(gpu) == FT_E_INTERNAL;
    FT_CHECK_OK(ft_op_rows_sum(gpu, r, x, dp, K, C));
    flagged += ft_backend_sync(gpu) == FT_E_INTERNAL;
    FT_CHECK_OK(ft_op_cols_set(gpu, x, g, dc, N, V, K));
    flagged += ft_backend_sync(gpu) == FT_E_INTERNAL;
    FT_CHECK_OK(ft_op_cols_take(gpu, g, x, dc, N, V, K));
    flagged += ft_backend_sync(gpu) == FT_E_INTERNAL;
    uint16_t gh[N * K];
    FT_CHECK_OK(ft_backend_download(gpu, gh, g, sizeof gh));
    int nan_ok = 1;
    for (int i = 0; i < N; i++) {
        const float a = ft_bf16_to_f32(gh[i * K]), b = ft_bf16_to_f32(gh[i * K + 1]);
        nan_ok &= a == 0.0f && b != b;
    }
    const ft_status after = ft_backend_sync(gpu);
    if (FT_CHECK(flagged == 4 && nan_ok && after == FT_OK,
                 "trainable token indices: %d of 4 bad-index calls failed their sync, g's bad column NaN %d, "
                 "next sync %s", flagged, nan_ok, ft_status_str(after)))
        printf("ok   trainable token ops: a negative row or a column outside [0, V) fails the next sync\n");
    ft_backend_release(gpu, x), ft_backend_release(gpu, r), ft_backend_release(gpu, dp);
    ft_backend_release(gpu, dc), ft_backend_release(gpu, g);
}

static void check_ggml_weights(ft_backend *gpu, uint64_t seed) {
    for (int t = FT_Q4_0; t < FT_DTYPE_COUNT; t++) { /* every ggml dtype: they close the enum */
        const ft_dtype dt = (ft_dtype)t;
        const int64_t B = ft_dtype_block_elems(dt), rows = 6, cols = B == 32 ? 96 : 256, n = rows * cols;
        const int64_t nbytes = ft_dtype_nbytes(dt, n);
        uint8_t *blocks = malloc((size_t)nbytes);
        float *ref = ot_hmalloc(n), *got = ot_hmalloc(cols * (cols > rows ? cols : rows));
        if (!blocks) abort();
        ggml_fill_blocks(blocks, dt, n / B, seed + (uint64_t)t);
        int decodes = 1;
        const int gt = ft_dtype_ggml_type(dt);
        for (int64_t r = 0; r < rows; r++)
            decodes &= ft_ggml_dequantize_row(gt, blocks + r * (nbytes / rows), ref + r * cols, cols) == 0;
        if (!FT_CHECK(decodes, "%s: the host decoder refuses it", ft_dtype_name(dt))) {
            free(blocks), free(ref), free(got);
            continue;
        }
        for (int64_t i = 0; i < n; i++) ref[i] = ft_bf16_to_f32(ft_f32_to_bf16(ref[i]));
        ft_weight W;
        memset(&W, 0, sizeof W);
        FT_CHECK_OK(ft_weight_alloc(gpu, &W, dt, rows, cols, "ggml W"));
        /* weight.c uploads a ggml weight's bytes itself; the CUDA backend's streaming setter (load.cu)
         * takes them as they are too (every other type through it), and refuses values to quantize */
        if (gpu->vt->weight_set && t % 2) {
            FT_CHECK(gpu->vt->weight_set(gpu, &W, ref, FT_F32) == FT_E_UNSUPPORTED,
                     "%s: the CUDA weight setter accepted F32 values", ft_dtype_name(dt));
            FT_CHECK_OK(gpu->vt->weight_set(gpu, &W, blocks, dt));
        } else {
            FT_CHECK_OK(ft_weight_set(gpu, &W, blocks, dt));
        }
        int64_t bad_fwd = 0, bad_bwd = 0, bad_gemv = 0, bad_pf = 0, bad_emb = 0;
        void *x = NULL, *y = NULL;
        uint16_t *h = calloc((size_t)(cols * cols), 2), *yh = calloc((size_t)(cols * cols), 2);
        if (!h || !yh) abort();
        FT_CHECK_OK(ft_backend_alloc(gpu, &x, 2 * cols * cols, "x"));
        FT_CHECK_OK(ft_backend_alloc(gpu, &y, 2 * cols * cols, "y"));
        /* forward, dequantize + GEMM: x = I[cols] gives y[c][o] = W[o][c]; then through the weight
         * cache: a miss (dequantized into the ring), a hit, and a fresh ring filled by a prefetch */
        for (int64_t i = 0; i < cols; i++) h[i * cols + i] = 0x3f80; /* BF16 1.0 */
        FT_CHECK_OK(ft_backend_upload(gpu, x, h, 2 * cols * cols));
        const int64_t numel[1] = {n};
        for (int pass = 0; pass < 4; pass++) {
            if (pass == 3) FT_CHECK_OK(ft_backend_weight_cache(gpu, 0));
            if (pass == 1 || pass == 3) FT_CHECK_OK(ft_backend_weight_cache(gpu, ft_weight_cache_bytes(numel, 1)));
            if (pass == 3) FT_CHECK_OK(ft_backend_weight_prefetch(gpu, &W));
            FT_CHECK_OK(ft_backend_memset(gpu, y, 0xFF, 2 * cols * rows));
            FT_CHECK_OK(ft_op_linear(gpu, y, x, &W, NULL, cols, 0));
            FT_CHECK_OK(ft_backend_download(gpu, yh, y, 2 * cols * rows));
            for (int64_t c = 0; c < cols; c++)
                for (int64_t o = 0; o < rows; o++) got[o * cols + c] = ft_bf16_to_f32(yh[c * rows + o]);
            *(pass == 0 ? &bad_fwd : &bad_pf) += ggml_count_diff(got, ref, n);
        }
        FT_CHECK_OK(ft_backend_weight_cache(gpu, 0));
        /* backward: dy = I[rows] gives dx[r][c] = W[r][c] */
        memset(h, 0, (size_t)(rows * rows) * 2);
        for (int64_t i = 0; i < rows; i++) h[i * rows + i] = 0x3f80;
        FT_CHECK_OK(ft_backend_upload(gpu, y, h, 2 * rows * rows));
        FT_CHECK_OK(ft_backend_memset(gpu, x, 0xFF, 2 * rows * cols));
        FT_CHECK_OK(ft_op_linear_bwd_x(gpu, x, y, &W, rows, 0));
        FT_CHECK_OK(ft_backend_download(gpu, yh, x, 2 * rows * cols));
        for (int64_t i = 0; i < n; i++) got[i] = ft_bf16_to_f32(yh[i]);
        bad_bwd = ggml_count_diff(got, ref, n);
        /* few rows (the blocks read directly): 8 one-hot rows at columns c0 .. c0 + 7 per call */
        for (int64_t c0 = 0; c0 < cols; c0 += FT_LINEAR_FEW_ROWS) {
            memset(h, 0, (size_t)(FT_LINEAR_FEW_ROWS * cols) * 2);
            for (int64_t r = 0; r < FT_LINEAR_FEW_ROWS; r++) h[r * cols + c0 + r] = 0x3f80;
            FT_CHECK_OK(ft_backend_upload(gpu, x, h, 2 * FT_LINEAR_FEW_ROWS * cols));
            FT_CHECK_OK(ft_backend_memset(gpu, y, 0xFF, 2 * FT_LINEAR_FEW_ROWS * rows));
            FT_CHECK_OK(ft_op_linear(gpu, y, x, &W, NULL, FT_LINEAR_FEW_ROWS, 0));
            FT_CHECK_OK(ft_backend_download(gpu, yh, y, 2 * FT_LINEAR_FEW_ROWS * rows));
            for (int64_t r = 0; r < FT_LINEAR_FEW_ROWS; r++)
                for (int64_t o = 0; o < rows; o++)
                    bad_gemv += !(ft_bf16_to_f32(yh[r * rows + o]) == ref[o * cols + c0 + r]);
        }
        /* the embedding gather of every row, in reverse */
        int32_t ids[6];
        for (int64_t r = 0; r < rows; r++) ids[r] = (int32_t)(rows - 1 - r);
        FT_CHECK_OK(ft_backend_upload(gpu, y, ids, sizeof ids));
        FT_CHECK_OK(ft_backend_memset(gpu, x, 0xFF, 2 * n));
        FT_CHECK_OK(ft_op_embed(gpu, x, (const int32_t *)y, &W, rows));
        FT_CHECK_OK(ft_backend_download(gpu, yh, x, 2 * n));
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < cols; c++) bad_emb += !(ft_bf16_to_f32(yh[r * cols + c]) == ref[ids[r] * cols + c]);
        FT_CHECK(bad_fwd + bad_bwd + bad_gemv + bad_pf + bad_emb == 0,
                 "%s weight %lldx%lld: elements off the host decoder's BF16: linear %lld, cached/prefetched %lld, "
                 "linear_bwd_x %lld, few-row linear %lld, embed %lld", ft_dtype_name(dt), (long long)rows,
                 (long long)cols, (long long)bad_fwd, (long long)bad_pf, (long long)bad_bwd, (long long)bad_gemv,
                 (long long)bad_emb);
        if (bad_fwd + bad_bwd + bad_gemv + bad_pf + bad_emb == 0)
            printf("ok   %-4s weight %lldx%lld (random blocks): linear, cached + prefetched, linear_bwd_x, few-row "
                   "linear and embed equal the host decoder's BF16 bit for bit\n", ft_dtype_name(dt), (long long)rows,
                   (long long)cols);
        ft_backend_release(gpu, x);
        ft_backend_release(gpu, y);
        ft_weight_release(gpu, &W);
        free(blocks), free(ref), free(got), free(h), free(yh);
    }
}

static void print_row(FILE *f, const char *table, const ot_case *k, const ot_result *r, int tsv) {
    char shape[96], err[32] = "-", tol[32] = "-", ms[32] = "-";
    ot_case_shape(k, shape, sizeof shape);
    if (r->ran_test) {
        if (r->err != r->err)
            snprintf(err, sizeof err, "NaN");
        else
            snprintf(err, sizeof err, "%.2e", r->err);
        snprintf(tol, sizeof tol, "%.0e", r->tol);
    }
    char rate[32] = "-";
    if (r->ran_perf) {
        snprintf(ms, sizeof ms, "%.3f", r->ms);
        if (r->ms > 0 && r->flops > 0) snprintf(rate, sizeof rate, "%.1f TF/s", r->flops / (r->ms * 1e-3) / 1e12);
        else if (r->ms > 0 && r->bytes > 0) snprintf(rate, sizeof rate, "%.0f GB/s", r->bytes / (r->ms * 1e-3) / 1e9);
    }
    const char *st = r->fails ? (r->nonfinite ? "FAIL(NaN)" : "FAIL") : "ok";
    const char *op = ot_ops[k->op].name;
    const int bwd = ot_ops[k->op].bwd;
    if (tsv)
        fprintf(f, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", table, op, k->name, shape, bwd ? "-" : err,
                bwd ? err : "-", tol, r->ran_test ? r->worst : "-", ms, rate, st);
    else
        fprintf(f, "%-5s %-13s %-30s %-34s %9s %9s %6s %9s %11s  %s\n", table, op, k->name, shape, bwd ? "-" : err,
                bwd ? err : "-", tol, ms, rate, st);
}

static void usage(void) {
    printf("usage: test_ops_cuda [--mode test|grad|perf|all] [--filter a,b] [--small] [--mid] [--big] [--seed S] "
           "[--reps R] [--summary FILE]\n");
}

int main(int argc, char **argv) {
    ot_mode mode = OT_TEST;
    const char *filter = NULL, *summary = NULL;
    int tier[OT_NTIERS] = {0}, reps = 50, seeded = 0, picked = 0;
    uint64_t seed = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--mode") && v && ot_mode_parse(v, &mode)) i++;
        else if (!strcmp(a, "--filter") && v) filter = v, i++;
        else if (!strcmp(a, "--summary") && v) summary = v, i++;
        else if (!strcmp(a, "--seed") && v) seed = strtoull(v, NULL, 0), seeded = 1, i++;
        else if (!strcmp(a, "--reps") && v) reps = atoi(v), i++;
        else if (!strcmp(a, "--small")) tier[OT_SMALL] = 1, picked = 1;
        else if (!strcmp(a, "--mid")) tier[OT_MID] = 1, picked = 1;
        else if (!strcmp(a, "--big")) tier[OT_REAL] = 1, picked = 1;
        else {
            usage();
            return 2;
        }
    }
    if (!picked) tier[OT_SMALL] = tier[OT_MID] = tier[OT_REAL] = 1;
    const int do_test = mode != OT_PERF, do_perf = mode == OT_PERF || mode == OT_ALL;

    check_nf4_mean();
    check_coverage();
    check_archs();

    ft_backend *gpu = NULL, *cpu = NULL;
    if (ft_backend_cuda_create(&gpu, 0) != FT_OK || !gpu) {
        printf("SKIP cuda op table: %s\n", ft_error_msg());
        return ft_test_finish();
    }
    FT_CHECK_OK(ft_backend_cpu_create(&cpu, 0));
    if (!cpu) return ft_test_finish();
    if (!seeded) seed = ft_mix64((uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32));
    printf("== cuda vs cpu, mode %s, inputs salted with seed 0x%016llx (repeat with --seed 0x%llx)\n", ot_mode_name(mode),
           (unsigned long long)seed, (unsigned long long)seed);
    ot_test_memory(gpu);
    check_weight_cache(gpu, seed);
    check_weight_cache_ring(gpu, seed);
    check_ggml_weights(gpu, seed);
    check_token_indices(gpu);

    FILE *sum = summary ? fopen(summary, "w") : NULL;
    if (summary) FT_CHECK(sum != NULL, "cannot write %s", summary);
    if (sum) fprintf(sum, "table\top\tcase\tshape\tfwd_err\tbwd_err\ttol\tworst_output\tms\trate\tstatus\n");
    char *table_txt = NULL;
    size_t table_len = 0;
    FILE *tab = open_memstream(&table_txt, &table_len);
    int nrows = 0, nfail = 0;
    static const char *tname[OT_NTIERS] = {[OT_SMALL] = "small", [OT_MID] = "mid", [OT_REAL] = "real"};
    for (int t = 0; t < OT_NTIERS; t++) {
        if (!tier[t]) continue;
        for (int i = 0; i < ot_case_count(); i++) {
            const ot_case kc = ot_case_at(i), *k = &kc;
            if ((int)k->tier != t || !ot_case_selected(k, mode, filter)) continue;
            ot_result r;
            memset(&r, 0, sizeof r);
            const uint64_t salt = ft_mix64(seed + (uint64_t)i);
            printf("-- %s %s [%s]\n", ot_ops[k->op].name, k->name, tname[t]);
            fflush(stdout);
            if (do_test) ot_run_compare(gpu, cpu, k, salt, &r);
            if (do_perf) ot_run_perf(gpu, k, salt, reps, &r);
            print_row(tab, tname[t], k, &r, 0);
            if (sum) print_row(sum, tname[t], k, &r, 1);
            nrows++;
            nfail += r.fails > 0;
        }
    }
    fclose(tab);
    printf("\n%-5s %-13s %-30s %-34s %9s %9s %6s %9s %11s  %s\n", "table", "op", "case", "shape", "fwd err",
           "bwd err", "tol", "ms", "rate", "status");
    fputs(table_txt ? table_txt : "", stdout);
    printf("%d cases, %d failed\n", nrows, nfail);
    free(table_txt);
    if (sum) fclose(sum);
    ft_backend_free(cpu);
    ft_backend_free(gpu);
    return ft_test_finish();
}
