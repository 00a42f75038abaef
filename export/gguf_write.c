/* gguf_write.c: the streaming GGUF writer of gguf.h. Metadata is serialized into one growing
 * buffer as it is set (a repeated key is rewritten by rebuilding that buffer); tensor infos are
 * kept as records; ft_ggufw_finish writes everything through kernels/fileio.h. Rows are produced
 * and encoded in chunks of about FT_GGUFW_CHUNK floats; verbatim tensors are copied in chunks of
 * FT_GGUFW_BYTES bytes. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "export/export_util.h"
#include "export/gguf.h"
#include "kernels/fileio.h"
#include "kernels/log.h"
#include "kernels/mem.h"

#define FT_GGUFW_CHUNK (4 << 20) /* floats per chunk of rows */
#define FT_GGUFW_BYTES (16 << 20) /* bytes per chunk of a verbatim tensor */

typedef struct {
    char *key;
    uint8_t *val; /* type + value bytes */
    int64_t len;
} ft_kv;

typedef struct {
    char *name;
    ft_ggml_type type;
    int n_dims;
    int64_t ne[FT_GGUF_MAX_DIMS];
    int64_t nbytes, offset;
    ft_ggufw_rows_fn fn;     /* float rows, encoded here; or */
    ft_ggufw_bytes_fn bytes; /* the encoded bytes, written as they are */
    void *user;
} ft_ti;

struct ft_ggufw {
    char *path;
    ft_kv *kv;
    int64_t nkv, capkv;
    ft_ti *t;
    int64_t nt, capt;
    int64_t data_size;
};

const char *ft_gguf_vtype_name(int t) {
    static const char *const n[] = {"UINT8", "INT8",   "UINT16", "INT16", "UINT32", "INT32",  "FLOAT32",
                                    "BOOL",  "STRING", "ARRAY",  "UINT64", "INT64", "FLOAT64"};
    return t >= 0 && t < FT_GGUF_VTYPE_COUNT ? n[t] : "?";
}

ft_status ft_ggufw_open(ft_ggufw **out, const char *path) {
    struct stat sb;
    *out = NULL;
    /* refused before any work: a merge would otherwise run to the end and fail at the rename */
    if (!path[0]) return FT_ERR(FT_E_ARG, "the GGUF output path is empty");
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
        return FT_ERR(FT_E_ARG, "%s: is a directory (expected the path of the .gguf file to write)", path);
    ft_ggufw *w = calloc(1, sizeof *w);
    if (!w || !(w->path = strdup(path))) {
        free(w);
        return FT_ERR(FT_E_OOM, "out of memory");
    }
    *out = w;
    return FT_OK;
}

void ft_ggufw_discard(ft_ggufw *w) {
    if (!w) return;
    for (int64_t i = 0; i < w->nkv; i++) free(w->kv[i].key), free(w->kv[i].val);
    for (int64_t i = 0; i < w->nt; i++) free(w->t[i].name);
    free(w->kv);
    free(w->t);
    free(w->path);
    free(w);
}

/* A byte buffer for one serialized value. */
typedef struct {
    uint8_t *p;
    int64_t n, cap;
    int oom;
} ft_buf;

static void ft_buf_put(ft_buf *b, const void *d, int64_t n) {
    if (b->oom) return;
    if (b->n + n > b->cap) {
        int64_t cap = (b->cap + n) * 2 + 64;
        uint8_t *p = realloc(b->p, (size_t)cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p, b->cap = cap;
    }
    memcpy(b->p + b->n, d, (size_t)n);
    b->n += n;
}
static void ft_buf_u32(ft_buf *b, uint32_t v) { ft_buf_put(b, &v, 4); }
static void ft_buf_u64(ft_buf *b, uint64_t v) { ft_buf_put(b, &v, 8); }
static void ft_buf_str(ft_buf *b, const char *s, int64_t n) {
    ft_buf_u64(b, (uint64_t)n);
    ft_buf_put(b, s, n);
}

static ft_status ft_set(ft_ggufw *w, const char *key, ft_buf *b) {
    if (b->oom) {
        free(b->p);
        return FT_ERR(FT_E_OOM, "out of memory writing GGUF key %s", key);
    }
    if (!key[0]) {
        free(b->p);
        return FT_ERR(FT_E_ARG, "%s: empty GGUF key", w->path);
    }
    for (int64_t i = 0; i < w->nkv; i++) {
        if (strcmp(w->kv[i].key, key) == 0) {
            free(w->kv[i].val);
            w->kv[i].val = b->p, w->kv[i].len = b->n;
            return FT_OK;
        }
    }
    if (w->nkv == w->capkv) {
        int64_t cap = w->capkv * 2 + 32;
        ft_kv *p = realloc(w->kv, (size_t)cap * sizeof *p);
        if (!p) {
            free(b->p);
            return FT_ERR(FT_E_OOM, "out of memory");
        }
        w->kv = p, w->capkv = cap;
    }
    char *k = strdup(key);
    if (!k) {
        free(b->p);
        return FT_ERR(FT_E_OOM, "out of memory");
    }
    w->kv[w->nkv++] = (ft_kv){k, b->p, b->n};
    return FT_OK;
}

static ft_status ft_set_scalar(ft_ggufw *w, const char *key, ft_gguf_vtype t, const void *v, int64_t n) {
    ft_buf b = {0};
    ft_buf_u32(&b, (uint32_t)t);
    ft_buf_put(&b, v, n);
    return ft_set(w, key, &b);
}

ft_status ft_ggufw_set_str(ft_ggufw *w, const char *key, const char *value) {
    ft_buf b = {0};
    ft_buf_u32(&b, FT_GGUF_STRING);
    ft_buf_str(&b, value, (int64_t)strlen(value));
    return ft_set(w, key, &b);
}
ft_status ft_ggufw_set_u32(ft_ggufw *w, const char *key, uint32_t v) { return ft_set_scalar(w, key, FT_GGUF_UINT32, &v, 4); }
ft_status ft_ggufw_set_i32(ft_ggufw *w, const char *key, int32_t v) { return ft_set_scalar(w, key, FT_GGUF_INT32, &v, 4); }
ft_status ft_ggufw_set_f32(ft_ggufw *w, const char *key, float v) { return ft_set_scalar(w, key, FT_GGUF_FLOAT32, &v, 4); }
ft_status ft_ggufw_set_bool(ft_ggufw *w, const char *key, int v) {
    uint8_t b = v ? 1 : 0;
    return ft_set_scalar(w, key, FT_GGUF_BOOL, &b, 1);
}

static ft_status ft_set_arr(ft_ggufw *w, const char *key, ft_gguf_vtype et, const void *v, int64_t n, int64_t esz) {
    ft_buf b = {0};
    ft_buf_u32(&b, FT_GGUF_ARRAY);
    ft_buf_u32(&b, (uint32_t)et);
    ft_buf_u64(&b, (uint64_t)n);
    ft_buf_put(&b, v, n * esz);
    return ft_set(w, key, &b);
}
ft_status ft_ggufw_set_arr_str(ft_ggufw *w, const char *key, const char *const *values, int64_t n) {
    ft_buf b = {0};
    ft_buf_u32(&b, FT_GGUF_ARRAY);
    ft_buf_u32(&b, FT_GGUF_STRING);
    ft_buf_u64(&b, (uint64_t)n);
    for (int64_t i = 0; i < n; i++) ft_buf_str(&b, values[i], (int64_t)strlen(values[i]));
    return ft_set(w, key, &b);
}
ft_status ft_ggufw_set_arr_i32(ft_ggufw *w, const char *key, const int32_t *v, int64_t n) {
    return ft_set_arr(w, key, FT_GGUF_INT32, v, n, 4);
}
ft_status ft_ggufw_set_arr_u32(ft_ggufw *w, const char *key, const uint32_t *v, int64_t n) {
    return ft_set_arr(w, key, FT_GGUF_UINT32, v, n, 4);
}
ft_status ft_ggufw_set_arr_f32(ft_ggufw *w, const char *key, const float *v, int64_t n) {
    return ft_set_arr(w, key, FT_GGUF_FLOAT32, v, n, 4);
}

/* Appends value v as GGUF number type t (an element of an array, or a scalar's bytes). */
static void ft_buf_num(ft_buf *b, int t, double v) {
    union { uint8_t u8; int8_t i8; uint16_t u16; int16_t i16; uint32_t u32; int32_t i32; float f; uint64_t u64;
            int64_t i64; double d; } x;
    int n = 0;
    switch (t) {
    case FT_GGUF_UINT8: x.u8 = (uint8_t)v, n = 1; break;
    case FT_GGUF_INT8: x.i8 = (int8_t)v, n = 1; break;
    case FT_GGUF_BOOL: x.u8 = v != 0, n = 1; break;
    case FT_GGUF_UINT16: x.u16 = (uint16_t)v, n = 2; break;
    case FT_GGUF_INT16: x.i16 = (int16_t)v, n = 2; break;
    case FT_GGUF_UINT32: x.u32 = (uint32_t)v, n = 4; break;
    case FT_GGUF_INT32: x.i32 = (int32_t)v, n = 4; break;
    case FT_GGUF_FLOAT32: x.f = (float)v, n = 4; break; /* a float widened to double and back: exact */
    case FT_GGUF_UINT64: x.u64 = (uint64_t)v, n = 8; break;
    case FT_GGUF_INT64: x.i64 = (int64_t)v, n = 8; break;
    case FT_GGUF_FLOAT64: x.d = v, n = 8; break;
    default: b->oom = 1; return; /* not a number type: the reader never yields one here */
    }
    ft_buf_put(b, &x, n);
}

ft_status ft_ggufw_copy_kv(ft_ggufw *w, const ft_gguf *g, int64_t i) {
    const char *key = ft_gguf_kv_key(g, i);
    const int t = ft_gguf_kv_type(g, i);
    if (!key || t < 0) return FT_ERR(FT_E_ARG, "%s: no metadata key %lld to copy", w->path, (long long)i);
    ft_buf b = {0};
    ft_buf_u32(&b, (uint32_t)t);
    const char *s;
    int64_t len;
    int lossy = 0;
    if (t == FT_GGUF_STRING) {
        ft_gguf_get_str(g, i, &s, &len);
        ft_buf_str(&b, s, len);
    } else if (t == FT_GGUF_ARRAY) {
        const int et = ft_gguf_arr_type(g, i);
        const int64_t n = ft_gguf_arr_n(g, i);
        ft_buf_u32(&b, (uint32_t)et);
        ft_buf_u64(&b, (uint64_t)n);
        if (et == FT_GGUF_STRING && n > 0) {
            /* the strings lie one after the other in the file as (u64 length, bytes), which the reader
             * checked at open: walked here once (ft_gguf_arr_str walks from the start each call, and a
             * vocabulary has 150k of them) */
            ft_gguf_arr_str(g, i, 0, &s, &len);
            for (int64_t j = 0; j < n; j++) {
                ft_buf_str(&b, s, len);
                if (j + 1 < n) {
                    uint64_t next;
                    memcpy(&next, s + len, 8);
                    s = s + len + 8, len = (int64_t)next;
                }
            }
        } else {
            for (int64_t j = 0; j < n; j++) {
                double v = 0;
                ft_gguf_arr_num(g, i, j, &v);
                lossy |= (et == FT_GGUF_UINT64 || et == FT_GGUF_INT64) && fabs(v) > 9007199254740992.0;
                ft_buf_num(&b, et, v);
            }
        }
    } else if (t == FT_GGUF_UINT32 || t == FT_GGUF_INT32 || t == FT_GGUF_FLOAT32 || t == FT_GGUF_BOOL) {
        uint32_t u = 0;
        int32_t k = 0;
        float f = 0;
        int v = 0;
        if (t == FT_GGUF_UINT32) ft_gguf_get_u32(g, i, &u), ft_buf_put(&b, &u, 4);
        else if (t == FT_GGUF_INT32) ft_gguf_get_i32(g, i, &k), ft_buf_put(&b, &k, 4);
        else if (t == FT_GGUF_FLOAT32) ft_gguf_get_f32(g, i, &f), ft_buf_put(&b, &f, 4);
        else ft_gguf_get_bool(g, i, &v), ft_buf_num(&b, FT_GGUF_BOOL, v);
    } else {
        /* no getter for these scalars: the reader's display text ("%.0f" of the value for integers,
         * "%.9g" for FLOAT64) */
        char text[64];
        ft_gguf_kv_format(g, i, text, sizeof text);
        const double v = strtod(text, NULL);
        lossy = t == FT_GGUF_FLOAT64 || fabs(v) > 9007199254740992.0;
        ft_buf_num(&b, t, v);
    }
    if (lossy) ft_warn("%s: metadata key %s (%s) copied through a double: digits past its precision may differ",
                       w->path, key, ft_gguf_vtype_name(t == FT_GGUF_ARRAY ? ft_gguf_arr_type(g, i) : t));
    return ft_set(w, key, &b);
}

static int64_t ft_pad(int64_t x) { return (x + FT_GGUF_ALIGNMENT - 1) / FT_GGUF_ALIGNMENT * FT_GGUF_ALIGNMENT; }

/* Records a tensor of n_dims dims ne[] and type (whose rows must be whole blocks). */
static ft_status ft_declare(ft_ggufw *w, const char *name, int type, int n_dims, const int64_t *ne, ft_ti **out) {
    size_t len = strlen(name);
    if (len == 0 || len > FT_GGUF_MAX_NAME)
        return FT_ERR(FT_E_ARG, "%s: tensor name '%s' must have 1 to %d bytes", w->path, name, FT_GGUF_MAX_NAME);
    if (n_dims < 1 || n_dims > FT_GGUF_MAX_DIMS)
        return FT_ERR(FT_E_ARG, "%s: tensor %s: %d dimensions (1 to 4 allowed)", w->path, name, n_dims);
    if (type < 0 || type >= FT_GGML_TYPE_LIMIT || ft_ggml_block_size(type) <= 0)
        return FT_ERR(FT_E_UNSUPPORTED, "%s: tensor %s: unknown ggml type %d", w->path, name, type);
    int64_t nel = 1;
    for (int d = 0; d < n_dims; d++) {
        if (ne[d] < 1) return FT_ERR(FT_E_ARG, "%s: tensor %s: dimension %d is %lld", w->path, name, d, (long long)ne[d]);
        nel *= ne[d];
    }
    int64_t row = ft_ggml_row_size(type, ne[0]);
    if (row < 0)
        return FT_ERR(FT_E_ARG, "%s: tensor %s: ne[0] = %lld is not a multiple of %s's block of %lld", w->path, name,
                      (long long)ne[0], ft_ggml_type_name(type), (long long)ft_ggml_block_size(type));
    if (w->nt == w->capt) {
        int64_t cap = w->capt * 2 + 64;
        ft_ti *p = realloc(w->t, (size_t)cap * sizeof *p);
        if (!p) return FT_ERR(FT_E_OOM, "out of memory");
        w->t = p, w->capt = cap;
    }
    ft_ti *t = &w->t[w->nt];
    memset(t, 0, sizeof *t);
    if (!(t->name = strdup(name))) return FT_ERR(FT_E_OOM, "out of memory");
    t->type = (ft_ggml_type)type, t->n_dims = n_dims;
    for (int d = 0; d < FT_GGUF_MAX_DIMS; d++) t->ne[d] = d < n_dims ? ne[d] : 1;
    t->nbytes = row * (nel / ne[0]);
    t->offset = w->data_size;
    w->data_size += ft_pad(t->nbytes);
    w->nt++;
    *out = t;
    return FT_OK;
}

ft_status ft_ggufw_add_tensor(ft_ggufw *w, const char *name, ft_ggml_type type, int n_dims, const int64_t *ne,
                              ft_ggufw_rows_fn fn, void *user) {
    if (!ft_ggml_can_encode(type))
        return FT_ERR(FT_E_UNSUPPORTED, "%s: tensor %s: cannot write type %s", w->path, name, ft_ggml_type_name(type));
    ft_ti *t = NULL;
    FT_TRY(ft_declare(w, name, type, n_dims, ne, &t));
    t->fn = fn, t->user = user;
    return FT_OK;
}

ft_status ft_ggufw_add_tensor_bytes(ft_ggufw *w, const char *name, int type, int n_dims, const int64_t *ne,
                                    ft_ggufw_bytes_fn fn, void *user) {
    ft_ti *t = NULL;
    FT_TRY(ft_declare(w, name, type, n_dims, ne, &t));
    t->bytes = fn, t->user = user;
    return FT_OK;
}

int64_t ft_ggufw_tensor_count(const ft_ggufw *w) { return w->nt; }

static int64_t ft_header_size(const ft_ggufw *w) {
    int64_t n = 4 + 4 + 8 + 8;
    for (int64_t i = 0; i < w->nkv; i++) n += 8 + (int64_t)strlen(w->kv[i].key) + w->kv[i].len;
    for (int64_t i = 0; i < w->nt; i++) n += 8 + (int64_t)strlen(w->t[i].name) + 4 + 8 * w->t[i].n_dims + 4 + 8;
    return n;
}

int64_t ft_ggufw_file_size(const ft_ggufw *w) { return ft_pad(ft_header_size(w)) + w->data_size; }

static int ft_cmp_names(const void *a, const void *b) {
    return strcmp(**(const char *const *const *)a, **(const char *const *const *)b);
}

ft_status ft_ggufw_finish(ft_ggufw *w) {
    ft_status st = FT_OK;
    ft_afile af = {0};
    float *rows = NULL;
    uint8_t *enc = NULL;
    ft_buf hdr = {0};
    const char ***names = NULL;
    /* unique tensor names */
    if (w->nt > 1) {
        FT_CHECK_GOTO(st, ft_malloc((void **)&names, (size_t)w->nt * sizeof *names, "tensor names"), done);
        for (int64_t i = 0; i < w->nt; i++) names[i] = (const char **)&w->t[i].name;
        qsort(names, (size_t)w->nt, sizeof *names, ft_cmp_names);
        for (int64_t i = 1; i < w->nt; i++) {
            if (strcmp(*names[i], *names[i - 1]) == 0) {
                st = FT_ERR(FT_E_ARG, "%s: tensor %s declared twice", w->path, *names[i]);
                goto done;
            }
        }
    }
    /* header */
    ft_buf_put(&hdr, "GGUF", 4);
    ft_buf_u32(&hdr, 3);
    ft_buf_u64(&hdr, (uint64_t)w->nt);
    ft_buf_u64(&hdr, (uint64_t)w->nkv);
    for (int64_t i = 0; i < w->nkv; i++) {
        ft_buf_str(&hdr, w->kv[i].key, (int64_t)strlen(w->kv[i].key));
        ft_buf_put(&hdr, w->kv[i].val, w->kv[i].len);
    }
    for (int64_t i = 0; i < w->nt; i++) {
        const ft_ti *t = &w->t[i];
        ft_buf_str(&hdr, t->name, (int64_t)strlen(t->name));
        ft_buf_u32(&hdr, (uint32_t)t->n_dims);
        for (int d = 0; d < t->n_dims; d++) ft_buf_u64(&hdr, (uint64_t)t->ne[d]);
        ft_buf_u32(&hdr, (uint32_t)t->type);
        ft_buf_u64(&hdr, (uint64_t)t->offset);
    }
    {
        static const uint8_t zeros[FT_GGUF_ALIGNMENT] = {0};
        ft_buf_put(&hdr, zeros, ft_pad(hdr.n) - hdr.n);
    }
    if (hdr.oom) {
        st = FT_ERR(FT_E_OOM, "out of memory writing the GGUF header of %s", w->path);
        goto done;
    }
    FT_CHECK_GOTO(st, ft_afile_open(&af, w->path), done);
    FT_CHECK_GOTO(st, ft_reserve_file(fileno(af.f), w->path, hdr.n + w->data_size), done);
    FT_CHECK_GOTO(st, ft_afile_write(&af, hdr.p, hdr.n), done);
    for (int64_t i = 0; i < w->nt; i++) {
        const ft_ti *t = &w->t[i];
        static const uint8_t zeros[FT_GGUF_ALIGNMENT] = {0};
        if (t->bytes) { /* verbatim: through one buffer of at most FT_GGUFW_BYTES */
            const int64_t chunk = t->nbytes < FT_GGUFW_BYTES ? t->nbytes : FT_GGUFW_BYTES;
            free(enc);
            if (!(enc = malloc((size_t)(chunk > 0 ? chunk : 1)))) {
                st = FT_ERR(FT_E_OOM, "out of memory writing tensor %s", t->name);
                goto done;
            }
            for (int64_t o = 0; o < t->nbytes; o += chunk) {
                const int64_t n = t->nbytes - o < chunk ? t->nbytes - o : chunk;
                st = t->bytes(t->user, enc, o, n);
                if (st != FT_OK) {
                    ft_error_wrap(st, "%s: tensor %s", w->path, t->name);
                    goto done;
                }
                FT_CHECK_GOTO(st, ft_afile_write(&af, enc, n), done);
            }
            FT_CHECK_GOTO(st, ft_afile_write(&af, zeros, ft_pad(t->nbytes) - t->nbytes), done);
            continue;
        }
        int64_t n0 = t->ne[0], nrows = t->nbytes / ft_ggml_row_size(t->type, n0);
        int64_t chunk = FT_GGUFW_CHUNK / n0;
        if (chunk < 1) chunk = 1;
        if (chunk > nrows) chunk = nrows;
        int64_t rowb = ft_ggml_row_size(t->type, n0);
        free(rows);
        free(enc);
        rows = malloc((size_t)(chunk * n0) * 4);
        enc = malloc((size_t)(chunk * rowb));
        if (!rows || !enc) {
            st = FT_ERR(FT_E_OOM, "out of memory writing tensor %s", t->name);
            goto done;
        }
        for (int64_t r = 0; r < nrows; r += chunk) {
            int64_t nr = nrows - r < chunk ? nrows - r : chunk;
            st = t->fn(t->user, r, nr, rows);
            if (st != FT_OK) {
                ft_error_wrap(st, "%s: tensor %s", w->path, t->name);
                goto done;
            }
#pragma omp parallel for schedule(static) if (nr * n0 >= 65536 && t->type != FT_GGML_F32)
            for (int64_t k = 0; k < nr; k++) ft_ggml_quantize_row(t->type, rows + k * n0, enc + k * rowb, n0);
            FT_CHECK_GOTO(st, ft_afile_write(&af, enc, nr * rowb), done);
        }
        FT_CHECK_GOTO(st, ft_afile_write(&af, zeros, ft_pad(t->nbytes) - t->nbytes), done);
    }
    st = ft_afile_commit(&af);
done:
    if (af.f) ft_afile_abort(&af);
    free(rows);
    free(enc);
    free(hdr.p);
    free(names);
    ft_ggufw_discard(w);
    return st;
}
