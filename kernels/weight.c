/* weight.c: frozen weights on a backend: size, allocation, filling from host data (converting or
 * NF4-quantizing) and reading back as f32.
 *
 * An NF4 weight holds three backend allocations (codes, qabsmax, absmax2) whose sizes add up to
 * ft_weight_nbytes, the number `ftune plan` uses. Conversions between host dtypes run in bounded
 * chunks so filling a 2 GB embedding never needs a second 4 GB f32 copy on the host. Reading an NF4
 * weight back downloads its three arrays and dequantizes on the host with the reference code, so
 * the result is exact f32 on every backend (the backend's own dequantize writes act, BF16 on CUDA).
 *
 * A ggml block weight (FT_Q4_0 .. FT_IQ4_XS, a GGUF base's frozen linears) is one allocation of its
 * blocks, whole blocks per row. Its blocks from a GGUF file are uploaded as they are: by the
 * backend's weight_set hook where it has one (CUDA streams them through pinned chunks, as any
 * same-dtype source; the hook is only ever given a ggml weight's own blocks), else by
 * ft_backend_upload. F32/F16/BF16 sources and random initialization are quantized here on the host
 * with ggml's reference encoders (kernels/ggml_quants.h), a chunk of whole rows at a time, rows in
 * parallel (each row's bytes depend on that row alone, so the thread count changes nothing), and
 * uploaded by ft_backend_upload on every backend; reading back downloads and decodes on the host. A
 * backend then only needs its own dequantization where the ops use the weight. */
#include "kernels/weight.h"

#include <string.h>

#include "kernels/backend_impl.h"
#include "kernels/ggml_quants.h"
#include "kernels/mem.h"
#include "kernels/ops.h"
#include "kernels/rng.h"

enum { FT_WEIGHT_CHUNK = 1 << 20 }; /* elements per host conversion chunk */

int64_t ft_weight_nbytes(ft_dtype dtype, int64_t rows, int64_t cols) {
    const int64_t n = rows * cols;
    if (ft_dtype_is_ggml(dtype)) return cols % ft_dtype_block_elems(dtype) ? -1 : ft_dtype_nbytes(dtype, n);
    return dtype == FT_NF4 ? ft_nf4_nbytes(n) : ft_dtype_nbytes(dtype, n);
}

/* Bytes of one row of a ggml block weight. */
static int64_t ft_row_bytes(const ft_weight *w) { return ft_dtype_nbytes(w->dtype, w->cols); }

ft_status ft_weight_alloc(ft_backend *be, ft_weight *w, ft_dtype dtype, int64_t rows, int64_t cols,
                          const char *name) {
    memset(w, 0, sizeof *w);
    if (rows < 0 || cols < 0) return FT_ERR(FT_E_INTERNAL, "%s: negative shape", name);
    w->dtype = dtype;
    w->rows = rows;
    w->cols = cols;
    const int64_t n = rows * cols;
    if (dtype == FT_NF4) {
        ft_status st;
        FT_CHECK_GOTO(st, ft_backend_alloc(be, (void **)&w->nf4.codes, (n + 1) / 2, name), fail);
        FT_CHECK_GOTO(st, ft_backend_alloc(be, (void **)&w->nf4.qabsmax, ft_nf4_nblocks(n), name), fail);
        FT_CHECK_GOTO(st, ft_backend_alloc(be, (void **)&w->nf4.absmax2, 4 * ft_nf4_nblocks2(n), name), fail);
        return FT_OK;
    fail:
        ft_weight_release(be, w);
        return st;
    }
    if (ft_dtype_is_ggml(dtype)) {
        /* blocks never straddle rows (GGUF stores ne[0] as whole blocks): a row is then a whole
         * number of blocks, which every decoder and the row tiles of the ops rely on */
        const int64_t blk = ft_dtype_block_elems(dtype);
        if (cols % blk)
            return FT_ERR(FT_E_FORMAT, "%s: %lld columns are not whole %s blocks of %lld elements", name,
                          (long long)cols, ft_dtype_name(dtype), (long long)blk);
        return ft_backend_alloc(be, &w->data, ft_dtype_nbytes(dtype, n), name);
    }
    if (dtype != FT_F32 && dtype != FT_F16 && dtype != FT_BF16)
        return FT_ERR(FT_E_UNSUPPORTED, "%s: weights of dtype %s are not supported", name, ft_dtype_name(dtype));
    return ft_backend_alloc(be, &w->data, ft_dtype_nbytes(dtype, n), name);
}

void ft_weight_release(ft_backend *be, ft_weight *w) {
    ft_backend_release(be, w->data);
    ft_backend_release(be, w->nf4.codes);
    ft_backend_release(be, w->nf4.qabsmax);
    ft_backend_release(be, w->nf4.absmax2);
    w->data = NULL;
    w->nf4.codes = w->nf4.qabsmax = NULL;
    w->nf4.absmax2 = NULL;
}

static int ft_is_host_float(ft_dtype t) { return t == FT_F32 || t == FT_F16 || t == FT_BF16; }

/* Fills f32[0..m) with elements [i, i+m) of a weight's source values. */
typedef void (*ft_fill_f32_fn)(const void *user, float *f32, int64_t i, int64_t m);

/* f32[m] (whole rows for a ggml block weight) in w's storage dtype into dst. */
static void ft_encode(const ft_weight *w, void *dst, const float *f32, int64_t m) {
    if (!ft_dtype_is_ggml(w->dtype)) {
        ft_from_f32(dst, w->dtype, f32, m);
        return;
    }
    const int t = ft_dtype_ggml_type(w->dtype);
    const int64_t cols = w->cols, rb = ft_row_bytes(w), nr = m / cols;
#pragma omp parallel for schedule(dynamic, 1) if (nr > 1 && m >= (1 << 16))
    for (int64_t r = 0; r < nr; r++) {
        const int rc = ft_ggml_quantize_row(t, f32 + r * cols, (char *)dst + r * rb, cols);
        FT_ASSERT(rc == 0); /* an encodable type (checked by the callers), whole blocks (ft_weight_alloc) */
    }
}

/* Converts a weight's source values to its dtype chunk by chunk and uploads them, so host
 * scratch stays at FT_WEIGHT_CHUNK elements whatever the tensor's size (a ggml block weight: whole
 * rows a chunk, at least one). */
static ft_status ft_upload_chunks(ft_backend *be, ft_weight *w, ft_fill_f32_fn fill, const void *user,
                                  const char *what) {
    const int64_t n = ft_weight_numel(w);
    int64_t chunk = n < FT_WEIGHT_CHUNK ? n : FT_WEIGHT_CHUNK;
    if (ft_dtype_is_ggml(w->dtype) && w->cols > 0) chunk = chunk < w->cols ? w->cols : chunk / w->cols * w->cols;
    float *f32 = NULL;
    void *conv = NULL;
    ft_status st;
    FT_CHECK_GOTO(st, ft_malloc((void **)&f32, (size_t)(chunk > 0 ? chunk : 1) * 4, what), done);
    /* 4 bytes an element covers every storage dtype (F32 is the widest; ggml blocks are <= 1.1) */
    FT_CHECK_GOTO(st, ft_malloc(&conv, (size_t)(chunk > 0 ? chunk : 1) * 4, what), done);
    for (int64_t i = 0; i < n; i += chunk) {
        const int64_t m = n - i < chunk ? n - i : chunk;
        fill(user, f32, i, m);
        ft_encode(w, conv, f32, m);
        FT_CHECK_GOTO(st, ft_backend_upload(be, (char *)w->data + ft_dtype_nbytes(w->dtype, i), conv,
                                            ft_dtype_nbytes(w->dtype, m)), done);
    }
    st = FT_OK;
done:
    ft_free(conv);
    ft_free(f32);
    return st;
}

typedef struct { const void *src; ft_dtype dtype; } ft_host_src;
static void ft_fill_from_host(const void *user, float *f32, int64_t i, int64_t m) {
    const ft_host_src *h = user;
    ft_to_f32(f32, (const char *)h->src + ft_dtype_nbytes(h->dtype, i), h->dtype, m);
}

/* Whether w is a ggml block weight that ftune can quantize into (from F32/F16/BF16 values);
 * FT_E_UNSUPPORTED naming the type otherwise. */
static ft_status ft_ggml_encodable(const ft_weight *w, const char *what) {
    if (ft_ggml_can_encode(ft_dtype_ggml_type(w->dtype))) return FT_OK;
    return FT_ERR(FT_E_UNSUPPORTED,
                  "%s: ftune cannot quantize into %s (it encodes Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K and Q6_K); "
                  "a %s weight can only be filled with its blocks as they are",
                  what, ft_dtype_name(w->dtype), ft_dtype_name(w->dtype));
}

ft_status ft_weight_set(ft_backend *be, ft_weight *w, const void *host_src, ft_dtype src_dtype) {
    const int64_t n = ft_weight_numel(w);
    if (ft_dtype_is_ggml(w->dtype)) { /* see the top of this file */
        if (src_dtype == w->dtype)
            return be->vt->weight_set ? be->vt->weight_set(be, w, host_src, src_dtype)
                                      : ft_backend_upload(be, w->data, host_src, ft_dtype_nbytes(w->dtype, n));
        if (!ft_is_host_float(src_dtype))
            return FT_ERR(FT_E_INTERNAL, "weight_set: a %s weight from %s data", ft_dtype_name(w->dtype),
                          ft_dtype_name(src_dtype));
        FT_TRY(ft_ggml_encodable(w, "weight_set"));
        ft_host_src hs = {host_src, src_dtype};
        return ft_upload_chunks(be, w, ft_fill_from_host, &hs, "weight quantization");
    }
    if (!ft_is_host_float(src_dtype))
        return FT_ERR(FT_E_INTERNAL, "weight_set: source dtype %s", ft_dtype_name(src_dtype));
    if (be->vt->weight_set) return be->vt->weight_set(be, w, host_src, src_dtype); /* CUDA: streamed */
    if (w->dtype == FT_NF4) { /* quantize on the backend from an uploaded copy of the source */
        void *tmp;
        FT_TRY(ft_backend_alloc(be, &tmp, ft_dtype_nbytes(src_dtype, n), "weight to quantize"));
        ft_status st = ft_backend_upload(be, tmp, host_src, ft_dtype_nbytes(src_dtype, n));
        if (st == FT_OK) st = ft_op_nf4_quantize(be, w, tmp, src_dtype);
        if (st == FT_OK) st = ft_backend_sync(be);
        ft_backend_release(be, tmp);
        return st;
    }
    if (w->dtype == src_dtype) return ft_backend_upload(be, w->data, host_src, ft_dtype_nbytes(src_dtype, n));
    ft_host_src hs = {host_src, src_dtype};
    return ft_upload_chunks(be, w, ft_fill_from_host, &hs, "weight conversion");
}

/* Element i of ft_weight_init_random's sequence before the BF16 rounding. The CUDA kernel writes
 * the same two roundings with __fmul_rn / __fadd_rn (this file is compiled without contraction). */
static float ft_init_value(uint64_t seed, int64_t i, float mean, float scale) {
    const float t = 2.0f * ft_uniform(seed, (uint64_t)i) - 1.0f; /* exact */
    const float p = t * scale;
    return p + mean;
}

typedef struct { uint64_t seed; float mean, scale; } ft_init_src;
static void ft_fill_random(const void *user, float *f32, int64_t i, int64_t m) {
    const ft_init_src *r = user;
    for (int64_t j = 0; j < m; j++)
        f32[j] = ft_bf16_to_f32(ft_f32_to_bf16(ft_init_value(r->seed, i + j, r->mean, r->scale)));
}

ft_status ft_weight_init_random(ft_backend *be, ft_weight *w, uint64_t seed, float mean, float scale) {
    if (ft_dtype_is_ggml(w->dtype)) { /* the BF16 values, quantized on the host a chunk of rows at a time */
        FT_TRY(ft_ggml_encodable(w, "weight_init"));
        ft_init_src is = {seed, mean, scale};
        return ft_upload_chunks(be, w, ft_fill_random, &is, "weight initialization");
    }
    if (be->vt->weight_init) return be->vt->weight_init(be, w, seed, mean, scale);
    const int64_t n = ft_weight_numel(w);
    if (w->dtype == FT_NF4) { /* one BF16 host copy of the tensor, then the ordinary path */
        uint16_t *h = NULL;
        FT_TRY(ft_malloc((void **)&h, (size_t)(n > 0 ? n : 1) * 2, "weight initialization"));
        for (int64_t i = 0; i < n; i++) h[i] = ft_f32_to_bf16(ft_init_value(seed, i, mean, scale));
        ft_status st = ft_weight_set(be, w, h, FT_BF16);
        ft_free(h);
        return st;
    }
    if (!ft_is_host_float(w->dtype))
        return FT_ERR(FT_E_UNSUPPORTED, "weight_init: dtype %s", ft_dtype_name(w->dtype));
    ft_init_src is = {seed, mean, scale};
    return ft_upload_chunks(be, w, ft_fill_random, &is, "weight initialization");
}

/* Rows [row0, row0 + nrows) of a ggml block weight, downloaded a chunk of rows at a time (host
 * scratch bounded by FT_WEIGHT_CHUNK elements' bytes) and decoded into dst[nrows * cols]. */
static ft_status ft_ggml_rows_f32(ft_backend *be, const ft_weight *w, int64_t row0, int64_t nrows, float *dst) {
    const int t = ft_dtype_ggml_type(w->dtype);
    const int64_t cols = w->cols, rb = ft_row_bytes(w);
    if (nrows == 0 || cols == 0) return FT_OK;
    int64_t per = FT_WEIGHT_CHUNK / cols;
    per = per < 1 ? 1 : per > nrows ? nrows : per;
    uint8_t *buf;
    FT_TRY(ft_malloc((void **)&buf, (size_t)(per * rb), "weight readback"));
    ft_status st = FT_OK;
    for (int64_t r = 0; r < nrows && st == FT_OK; r += per) {
        const int64_t m = nrows - r < per ? nrows - r : per;
        st = ft_backend_download(be, buf, (const uint8_t *)w->data + (row0 + r) * rb, m * rb);
        for (int64_t i = 0; i < m && st == FT_OK; i++) {
            const int rc = ft_ggml_dequantize_row(t, buf + i * rb, dst + (r + i) * cols, cols);
            FT_ASSERT(rc == 0); /* every ggml dtype decodes (kernels/ggml_quants.h), whole blocks */
        }
    }
    ft_free(buf);
    return st;
}

ft_status ft_weight_rows_f32(ft_backend *be, const ft_weight *w, int64_t row0, int64_t nrows, float *dst) {
    if (w->dtype == FT_NF4) return FT_ERR(FT_E_UNSUPPORTED, "reading rows of an NF4 weight");
    if (row0 < 0 || nrows < 0 || row0 + nrows > w->rows)
        return FT_ERR(FT_E_INTERNAL, "rows %lld..%lld of a weight of %lld", (long long)row0, (long long)(row0 + nrows),
                      (long long)w->rows);
    const int64_t n = nrows * w->cols, at = row0 * w->cols;
    FT_TRY(ft_backend_sync(be));
    if (ft_dtype_is_ggml(w->dtype)) return ft_ggml_rows_f32(be, w, row0, nrows, dst);
    if (w->dtype == FT_F32) return ft_backend_download(be, dst, (const float *)w->data + at, 4 * n);
    uint16_t *buf; /* F16/BF16: downloaded, then widened */
    FT_TRY(ft_malloc((void **)&buf, (size_t)(n > 0 ? n : 1) * 2, "weight rows"));
    ft_status st = ft_backend_download(be, buf, (const uint16_t *)w->data + at, 2 * n);
    if (st == FT_OK) ft_to_f32(dst, buf, w->dtype, n);
    ft_free(buf);
    return st;
}

ft_status ft_weight_get_f32(ft_backend *be, const ft_weight *w, float *dst) {
    const int64_t n = ft_weight_numel(w);
    FT_TRY(ft_backend_sync(be));
    if (w->dtype == FT_F32) return ft_backend_download(be, dst, w->data, 4 * n);
    if (ft_dtype_is_ggml(w->dtype)) return ft_ggml_rows_f32(be, w, 0, w->rows, dst);
    if (w->dtype == FT_NF4) {
        const int64_t nc = (n + 1) / 2, nb = ft_nf4_nblocks(n), nb2 = ft_nf4_nblocks2(n);
        ft_nf4 h = {NULL, NULL, NULL, w->nf4.offset};
        ft_status st;
        FT_CHECK_GOTO(st, ft_malloc((void **)&h.codes, (size_t)(nc + nb + 4 * nb2 + 4), "nf4 readback"), done);
        h.qabsmax = h.codes + nc;
        h.absmax2 = (float *)(void *)(h.qabsmax + nb + ((4 - (nc + nb) % 4) % 4)); /* 4-aligned */
        FT_CHECK_GOTO(st, ft_backend_download(be, h.codes, w->nf4.codes, nc), done);
        FT_CHECK_GOTO(st, ft_backend_download(be, h.qabsmax, w->nf4.qabsmax, nb), done);
        FT_CHECK_GOTO(st, ft_backend_download(be, h.absmax2, w->nf4.absmax2, 4 * nb2), done);
        ft_nf4_dequantize_host(&h, n, dst, 0);
    done:
        ft_free(h.codes);
        return st;
    }
    /* F16/BF16: download in chunks and widen. */
    const int64_t chunk = n < FT_WEIGHT_CHUNK ? n : FT_WEIGHT_CHUNK;
    uint16_t *buf;
    FT_TRY(ft_malloc((void **)&buf, (size_t)(chunk > 0 ? chunk : 1) * 2, "weight readback"));
    ft_status st = FT_OK;
    for (int64_t i = 0; i < n && st == FT_OK; i += chunk) {
        const int64_t m = n - i < chunk ? n - i : chunk;
        st = ft_backend_download(be, buf, (const uint16_t *)w->data + i, 2 * m);
        if (st == FT_OK) ft_to_f32(dst + i, buf, w->dtype, m);
    }
    ft_free(buf);
    return st;
}
