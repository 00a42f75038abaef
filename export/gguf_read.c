/* gguf_read.c: the validating mmap reader of gguf.h, following the checks of ggml's gguf.cpp
 * (gguf_init_from_file_impl). Every length is checked against the bytes left before it is used. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "export/gguf.h"

#define FT_GGUF_MAX_STR ((int64_t)1 << 30)
#define FT_GGUF_MAX_ARR ((int64_t)1 << 30)

typedef struct {
    const char *key;
    int64_t key_len;
    int type;
    int arr_type;        /* arrays */
    int64_t arr_n;
    const uint8_t *val;  /* scalar: the value; array: first element */
    int64_t val_len;     /* bytes of the value (array: all elements) */
} ft_rkv;

struct ft_gguf {
    char *path;
    const uint8_t *map;
    int64_t size;
    uint32_t version;
    int64_t align, data_off;
    ft_rkv *kv;
    int64_t nkv;
    ft_gguf_tensor *t;
    char **tnames;
    char **knames;
    int64_t nt;
};

typedef struct {
    const uint8_t *p;
    int64_t left;
} ft_cur;

static int ft_rd(ft_cur *c, void *dst, int64_t n) {
    if (n < 0 || n > c->left) return 0;
    if (dst) memcpy(dst, c->p, (size_t)n);
    c->p += n, c->left -= n;
    return 1;
}

static int ft_vsize(int t) {
    switch (t) {
    case FT_GGUF_UINT8: case FT_GGUF_INT8: case FT_GGUF_BOOL: return 1;
    case FT_GGUF_UINT16: case FT_GGUF_INT16: return 2;
    case FT_GGUF_UINT32: case FT_GGUF_INT32: case FT_GGUF_FLOAT32: return 4;
    case FT_GGUF_UINT64: case FT_GGUF_INT64: case FT_GGUF_FLOAT64: return 8;
    default: return 0;
    }
}

static int ft_rd_str(ft_cur *c, const char **s, int64_t *len) {
    uint64_t n;
    if (!ft_rd(c, &n, 8) || n > (uint64_t)FT_GGUF_MAX_STR || (int64_t)n > c->left) return 0;
    *s = (const char *)c->p, *len = (int64_t)n;
    return ft_rd(c, NULL, (int64_t)n);
}

void ft_gguf_close(ft_gguf *g) {
    if (!g) return;
    if (g->map) munmap((void *)g->map, (size_t)g->size);
    if (g->tnames)
        for (int64_t i = 0; i < g->nt; i++) free(g->tnames[i]);
    free(g->tnames);
    if (g->knames)
        for (int64_t i = 0; i < g->nkv; i++) free(g->knames[i]);
    free(g->knames);
    free(g->t);
    free(g->kv);
    free(g->path);
    free(g);
}

static int ft_key_eq(const ft_rkv *kv, const char *key) {
    return (int64_t)strlen(key) == kv->key_len && memcmp(kv->key, key, (size_t)kv->key_len) == 0;
}

static int ft_cmp_kv(const void *x, const void *y) {
    const ft_rkv *a = *(const ft_rkv *const *)x, *b = *(const ft_rkv *const *)y;
    if (a->key_len != b->key_len) return a->key_len < b->key_len ? -1 : 1;
    return memcmp(a->key, b->key, (size_t)a->key_len);
}

static int ft_cmp_tensor(const void *x, const void *y) {
    return strcmp((*(const ft_gguf_tensor *const *)x)->name, (*(const ft_gguf_tensor *const *)y)->name);
}

/* *dup: an element of items[n] (each `size` bytes) equal under cmp (on pointers to element pointers) to
 * another, or NULL. FT_E_OOM only when the pointer array cannot be allocated. */
static ft_status ft_find_dup(const void *items, int64_t n, size_t size, int (*cmp)(const void *, const void *),
                             const void **dup) {
    *dup = NULL;
    if (n < 2) return FT_OK;
    const void **p = malloc((size_t)n * sizeof *p);
    if (!p) return FT_ERR(FT_E_OOM, "out of memory checking %lld GGUF names", (long long)n);
    for (int64_t i = 0; i < n; i++) p[i] = (const char *)items + (size_t)i * size;
    qsort(p, (size_t)n, sizeof *p, cmp);
    for (int64_t i = 1; i < n && !*dup; i++)
        if (cmp(&p[i - 1], &p[i]) == 0) *dup = p[i];
    free(p);
    return FT_OK;
}

ft_status ft_gguf_open(ft_gguf **out, const char *path) {
    *out = NULL;
    ft_gguf *g = calloc(1, sizeof *g);
    if (!g || !(g->path = strdup(path))) {
        free(g);
        return FT_ERR(FT_E_OOM, "out of memory");
    }
    ft_status st = FT_OK;
#define FAIL(...)                                      \
    do {                                               \
        st = FT_ERR(FT_E_FORMAT, __VA_ARGS__);         \
        goto fail;                                     \
    } while (0)
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC); /* a FIFO would block: refused below */
    if (fd < 0) {
        st = FT_ERR(FT_E_IO, "%s: cannot open: %s", path, strerror(errno));
        goto fail;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        FAIL("%s: not a regular file", path);
    }
    g->size = (int64_t)sb.st_size;
    if (g->size < 24) {
        close(fd);
        FAIL("%s: not a GGUF file (%lld bytes, too short for the header)", path, (long long)g->size);
    }
    void *m = mmap(NULL, (size_t)g->size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) {
        st = FT_ERR(FT_E_IO, "%s: cannot map: %s", path, strerror(errno));
        goto fail;
    }
    g->map = m;
    ft_cur c = {g->map, g->size};
    char magic[4] = {0};
    ft_rd(&c, magic, 4);
    if (memcmp(magic, "GGUF", 4) != 0) FAIL("%s: not a GGUF file (bad magic)", path);
    ft_rd(&c, &g->version, 4);
    if (g->version == 1) FAIL("%s: GGUF version 1 is not supported", path);
    if ((g->version & 0xFFFF) == 0) FAIL("%s: GGUF version %u looks byte-swapped (big-endian file?)", path, g->version);
    if (g->version > 3) FAIL("%s: GGUF version %u is newer than 3", path, g->version);
    int64_t nt = 0, nkv = 0;
    ft_rd(&c, &nt, 8);
    ft_rd(&c, &nkv, 8);
    if (nt < 0 || nkv < 0) FAIL("%s: bad tensor count %lld or key count %lld", path, (long long)nt, (long long)nkv);
    if (nt > c.left / 8 || nkv > c.left / 8)
        FAIL("%s: the header declares %lld tensors and %lld keys, more than the file's remaining %lld bytes can "
             "hold (truncated?)", path, (long long)nt, (long long)nkv, (long long)c.left);
    g->kv = calloc((size_t)nkv + 1, sizeof *g->kv);
    g->t = calloc((size_t)nt + 1, sizeof *g->t);
    g->tnames = calloc((size_t)nt + 1, sizeof *g->tnames);
    g->knames = calloc((size_t)nkv + 1, sizeof *g->knames);
    if (!g->kv || !g->t || !g->tnames || !g->knames) {
        st = FT_ERR(FT_E_OOM, "%s: out of memory", path);
        goto fail;
    }
    g->align = FT_GGUF_ALIGNMENT;
    for (int64_t i = 0; i < nkv; i++) {
        ft_rkv *kv = &g->kv[i];
        int32_t type;
        if (!ft_rd_str(&c, &kv->key, &kv->key_len)) FAIL("%s: key %lld: truncated", path, (long long)i);
        if (kv->key_len == 0) FAIL("%s: key %lld is empty", path, (long long)i);
        g->nkv = i + 1; /* so that close frees the key copies made so far */
        if (!(g->knames[i] = strndup(kv->key, (size_t)kv->key_len))) {
            st = FT_ERR(FT_E_OOM, "%s: out of memory", path);
            goto fail;
        }
        if (!ft_rd(&c, &type, 4)) FAIL("%s: key %.*s: truncated", path, (int)kv->key_len, kv->key);
        kv->type = type;
        kv->val = c.p;
        if (type == FT_GGUF_STRING) {
            const char *s;
            int64_t n;
            if (!ft_rd_str(&c, &s, &n)) FAIL("%s: key %.*s: truncated string", path, (int)kv->key_len, kv->key);
        } else if (type == FT_GGUF_ARRAY) {
            int32_t et;
            uint64_t n;
            if (!ft_rd(&c, &et, 4) || !ft_rd(&c, &n, 8)) FAIL("%s: key %.*s: truncated array", path, (int)kv->key_len, kv->key);
            if (et == FT_GGUF_ARRAY) FAIL("%s: key %.*s: nested arrays are not supported", path, (int)kv->key_len, kv->key);
            if (n > (uint64_t)FT_GGUF_MAX_ARR) FAIL("%s: key %.*s: array too long", path, (int)kv->key_len, kv->key);
            kv->arr_type = et, kv->arr_n = (int64_t)n;
            kv->val = c.p;
            if (et == FT_GGUF_STRING) {
                for (uint64_t j = 0; j < n; j++) {
                    const char *s;
                    int64_t sl;
                    if (!ft_rd_str(&c, &s, &sl)) FAIL("%s: key %.*s: truncated string array", path, (int)kv->key_len, kv->key);
                }
            } else {
                int es = ft_vsize(et);
                if (!es) FAIL("%s: key %.*s: bad array element type %d", path, (int)kv->key_len, kv->key, et);
                if ((int64_t)n > c.left / es || !ft_rd(&c, NULL, (int64_t)n * es))
                    FAIL("%s: key %.*s: truncated array", path, (int)kv->key_len, kv->key);
            }
        } else {
            int es = ft_vsize(type);
            if (!es) FAIL("%s: key %.*s: bad value type %d", path, (int)kv->key_len, kv->key, type);
            if (!ft_rd(&c, NULL, es)) FAIL("%s: key %.*s: truncated", path, (int)kv->key_len, kv->key);
        }
        kv->val_len = c.p - kv->val;
        if (ft_key_eq(kv, "general.alignment")) {
            uint32_t a;
            if (type != FT_GGUF_UINT32) FAIL("%s: general.alignment must be UINT32", path);
            memcpy(&a, kv->val, 4);
            if (a == 0 || (a & (a - 1))) FAIL("%s: general.alignment %u is not a power of two", path, a);
            g->align = a;
        }
    }
    g->nkv = nkv;
    /* duplicates by sorting: a pairwise check took minutes on a file declaring a million keys */
    const ft_rkv *dup_kv = NULL;
    if ((st = ft_find_dup(g->kv, nkv, sizeof *g->kv, ft_cmp_kv, (const void **)&dup_kv)) != FT_OK) goto fail;
    if (dup_kv) FAIL("%s: duplicate key %.*s", path, (int)dup_kv->key_len, dup_kv->key);
    int64_t expect = 0;
    for (int64_t i = 0; i < nt; i++) {
        ft_gguf_tensor *t = &g->t[i];
        const char *nm;
        int64_t nl;
        uint32_t nd;
        int32_t type;
        uint64_t off;
        if (!ft_rd_str(&c, &nm, &nl)) FAIL("%s: tensor info %lld: truncated", path, (long long)i);
        if (nl == 0 || nl > FT_GGUF_MAX_NAME) FAIL("%s: tensor %lld: name of %lld bytes (1 to 63 allowed)", path, (long long)i, (long long)nl);
        if (!(g->tnames[i] = strndup(nm, (size_t)nl))) {
            st = FT_ERR(FT_E_OOM, "%s: out of memory", path);
            goto fail;
        }
        t->name = g->tnames[i];
        g->nt = i + 1;
        if (strlen(t->name) != (size_t)nl) FAIL("%s: tensor %lld: name holds a NUL byte", path, (long long)i);
        if (!ft_rd(&c, &nd, 4) || nd < 1 || nd > FT_GGUF_MAX_DIMS)
            FAIL("%s: tensor %s: bad number of dimensions", path, t->name);
        t->n_dims = (int)nd;
        t->nelem = 1;
        for (int d = 0; d < FT_GGUF_MAX_DIMS; d++) {
            int64_t v = 1;
            if (d < (int)nd && !ft_rd(&c, &v, 8)) FAIL("%s: tensor %s: truncated", path, t->name);
            if (v < 0 || (v && t->nelem > INT64_MAX / v)) FAIL("%s: tensor %s: bad dimension", path, t->name);
            t->ne[d] = v;
            t->nelem *= v;
        }
        if (!ft_rd(&c, &type, 4) || !ft_rd(&c, &off, 8)) FAIL("%s: tensor %s: truncated", path, t->name);
        t->type = type;
        if (type < 0 || type >= FT_GGML_TYPE_LIMIT || ft_ggml_block_size(type) == 0)
            FAIL("%s: tensor %s: unknown ggml type %d", path, t->name, type);
        if (t->ne[0] % ft_ggml_block_size(type))
            FAIL("%s: tensor %s: ne[0] = %lld is not a multiple of the %s block size", path, t->name,
                 (long long)t->ne[0], ft_ggml_type_name(type));
        int64_t rs = ft_ggml_row_size(type, t->ne[0]);
        int64_t rows = t->ne[0] ? t->nelem / t->ne[0] : 0;
        if (rs < 0 || (rows && rs > INT64_MAX / rows)) FAIL("%s: tensor %s: too large", path, t->name);
        t->nbytes = rs * rows;
        /* checked here, not only after the loop, so that `expect` below cannot overflow */
        if (t->nbytes > g->size)
            FAIL("%s: tensor %s: %lld bytes of data, more than the whole file (truncated file?)", path, t->name,
                 (long long)t->nbytes);
        t->offset = (int64_t)off;
        if ((int64_t)off != expect)
            FAIL("%s: tensor %s: data offset %llu, expected %lld (tensors must be consecutive)", path, t->name,
                 (unsigned long long)off, (long long)expect);
        expect += (t->nbytes + g->align - 1) / g->align * g->align;
    }
    g->nt = nt;
    const ft_gguf_tensor *dup_t = NULL;
    if ((st = ft_find_dup(g->t, nt, sizeof *g->t, ft_cmp_tensor, (const void **)&dup_t)) != FT_OK) goto fail;
    if (dup_t) FAIL("%s: duplicate tensor %s", path, dup_t->name);
    int64_t hdr = g->size - c.left;
    g->data_off = (hdr + g->align - 1) / g->align * g->align;
    if (nt > 0) {
        for (int64_t i = 0; i < nt; i++) {
            ft_gguf_tensor *t = &g->t[i];
            if (g->data_off + t->offset + t->nbytes > g->size)
                FAIL("%s: tensor %s: data runs past the end of the file (truncated file?)", path, t->name);
            t->data = g->map + g->data_off + t->offset;
        }
    }
#undef FAIL
    *out = g;
    return FT_OK;
fail:
    ft_gguf_close(g);
    return st;
}

uint32_t ft_gguf_version(const ft_gguf *g) { return g->version; }
int64_t ft_gguf_alignment(const ft_gguf *g) { return g->align; }
int64_t ft_gguf_data_offset(const ft_gguf *g) { return g->data_off; }
int64_t ft_gguf_file_size(const ft_gguf *g) { return g->size; }
int64_t ft_gguf_kv_count(const ft_gguf *g) { return g->nkv; }

const char *ft_gguf_kv_key(const ft_gguf *g, int64_t i) { return i >= 0 && i < g->nkv ? g->knames[i] : NULL; }

int64_t ft_gguf_find_key(const ft_gguf *g, const char *key) {
    for (int64_t i = 0; i < g->nkv; i++)
        if (ft_key_eq(&g->kv[i], key)) return i;
    return -1;
}

int ft_gguf_kv_type(const ft_gguf *g, int64_t i) { return i >= 0 && i < g->nkv ? g->kv[i].type : -1; }
int ft_gguf_arr_type(const ft_gguf *g, int64_t i) { return ft_gguf_kv_type(g, i) == FT_GGUF_ARRAY ? g->kv[i].arr_type : -1; }
int64_t ft_gguf_arr_n(const ft_gguf *g, int64_t i) { return ft_gguf_kv_type(g, i) == FT_GGUF_ARRAY ? g->kv[i].arr_n : 0; }

static int ft_get(const ft_gguf *g, int64_t i, int type, void *out, int n) {
    if (ft_gguf_kv_type(g, i) != type) return 0;
    memcpy(out, g->kv[i].val, (size_t)n);
    return 1;
}
int ft_gguf_get_u32(const ft_gguf *g, int64_t i, uint32_t *out) { return ft_get(g, i, FT_GGUF_UINT32, out, 4); }
int ft_gguf_get_i32(const ft_gguf *g, int64_t i, int32_t *out) { return ft_get(g, i, FT_GGUF_INT32, out, 4); }
int ft_gguf_get_f32(const ft_gguf *g, int64_t i, float *out) { return ft_get(g, i, FT_GGUF_FLOAT32, out, 4); }
int ft_gguf_get_bool(const ft_gguf *g, int64_t i, int *out) {
    uint8_t b;
    if (!ft_get(g, i, FT_GGUF_BOOL, &b, 1)) return 0;
    *out = b != 0;
    return 1;
}
int ft_gguf_get_str(const ft_gguf *g, int64_t i, const char **s, int64_t *len) {
    if (ft_gguf_kv_type(g, i) != FT_GGUF_STRING) return 0;
    uint64_t n;
    memcpy(&n, g->kv[i].val, 8);
    *s = (const char *)g->kv[i].val + 8, *len = (int64_t)n;
    return 1;
}

static double ft_num(int t, const uint8_t *p) {
    union { uint8_t u8; int8_t i8; uint16_t u16; int16_t i16; uint32_t u32; int32_t i32; float f; uint64_t u64;
            int64_t i64; double d; } v;
    memcpy(&v, p, (size_t)ft_vsize(t));
    switch (t) {
    case FT_GGUF_UINT8: return v.u8;
    case FT_GGUF_INT8: return v.i8;
    case FT_GGUF_UINT16: return v.u16;
    case FT_GGUF_INT16: return v.i16;
    case FT_GGUF_UINT32: return v.u32;
    case FT_GGUF_INT32: return v.i32;
    case FT_GGUF_FLOAT32: return v.f;
    case FT_GGUF_BOOL: return v.u8 != 0;
    case FT_GGUF_UINT64: return (double)v.u64;
    case FT_GGUF_INT64: return (double)v.i64;
    case FT_GGUF_FLOAT64: return v.d;
    default: return 0;
    }
}

int ft_gguf_arr_num(const ft_gguf *g, int64_t i, int64_t j, double *out) {
    if (ft_gguf_kv_type(g, i) != FT_GGUF_ARRAY || j < 0 || j >= g->kv[i].arr_n) return 0;
    int es = ft_vsize(g->kv[i].arr_type);
    if (!es) return 0;
    *out = ft_num(g->kv[i].arr_type, g->kv[i].val + j * es);
    return 1;
}

int ft_gguf_arr_str(const ft_gguf *g, int64_t i, int64_t j, const char **s, int64_t *len) {
    if (ft_gguf_kv_type(g, i) != FT_GGUF_ARRAY || g->kv[i].arr_type != FT_GGUF_STRING || j < 0 || j >= g->kv[i].arr_n)
        return 0;
    /* strings are variable length: walk (callers iterating all elements should expect O(n^2)
     * only for huge arrays; the vocab is walked once by ft_gguf_kv_format/inspect) */
    const uint8_t *p = g->kv[i].val;
    for (int64_t k = 0; k < j; k++) {
        uint64_t n;
        memcpy(&n, p, 8);
        p += 8 + n;
    }
    uint64_t n;
    memcpy(&n, p, 8);
    *s = (const char *)p + 8, *len = (int64_t)n;
    return 1;
}

void ft_gguf_kv_format(const ft_gguf *g, int64_t i, char *buf, int64_t cap) {
    int t = ft_gguf_kv_type(g, i);
    if (t < 0) {
        snprintf(buf, (size_t)cap, "?");
        return;
    }
    if (t == FT_GGUF_STRING) {
        const char *s = "";
        int64_t n = 0; /* both set by ft_gguf_get_str for a string key */
        ft_gguf_get_str(g, i, &s, &n);
        int64_t show = n > cap - 8 ? cap - 8 : n;
        int64_t o = 0;
        for (int64_t k = 0; k < show && o < cap - 5; k++) {
            unsigned char ch = (unsigned char)s[k];
            if (ch == '\n') buf[o++] = '\\', buf[o++] = 'n';
            else buf[o++] = (char)ch;
        }
        if (show < n) buf[o++] = '.', buf[o++] = '.', buf[o++] = '.';
        buf[o] = 0;
    } else if (t == FT_GGUF_ARRAY) {
        snprintf(buf, (size_t)cap, "[%lld x %s]", (long long)g->kv[i].arr_n, ft_gguf_vtype_name(g->kv[i].arr_type));
    } else if (t == FT_GGUF_BOOL) {
        snprintf(buf, (size_t)cap, "%s", g->kv[i].val[0] ? "true" : "false");
    } else if (t == FT_GGUF_FLOAT32 || t == FT_GGUF_FLOAT64) {
        snprintf(buf, (size_t)cap, "%.9g", ft_num(t, g->kv[i].val));
    } else {
        snprintf(buf, (size_t)cap, "%.0f", ft_num(t, g->kv[i].val));
    }
}

int64_t ft_gguf_tensor_count(const ft_gguf *g) { return g->nt; }
const ft_gguf_tensor *ft_gguf_tensor_at(const ft_gguf *g, int64_t i) { return i >= 0 && i < g->nt ? &g->t[i] : NULL; }
const ft_gguf_tensor *ft_gguf_tensor_find(const ft_gguf *g, const char *name) {
    for (int64_t i = 0; i < g->nt; i++)
        if (strcmp(g->t[i].name, name) == 0) return &g->t[i];
    return NULL;
}

ft_status ft_gguf_tensor_rows_f32(const ft_gguf *g, const ft_gguf_tensor *t, int64_t row0, int64_t nrows, float *dst) {
    if (!ft_ggml_can_decode(t->type))
        return FT_ERR(FT_E_UNSUPPORTED, "%s: tensor %s: cannot decode type %s", g->path, t->name, ft_ggml_type_name(t->type));
    int64_t rs = ft_ggml_row_size(t->type, t->ne[0]);
    int64_t rows = t->ne[0] ? t->nelem / t->ne[0] : 0;
    if (row0 < 0 || nrows < 0 || row0 + nrows > rows)
        return FT_ERR(FT_E_ARG, "%s: tensor %s: rows [%lld, %lld) out of range", g->path, t->name, (long long)row0,
                      (long long)(row0 + nrows));
    const uint8_t *src = (const uint8_t *)t->data + row0 * rs;
    for (int64_t r = 0; r < nrows; r++) ft_ggml_dequantize_row(t->type, src + r * rs, dst + r * t->ne[0], t->ne[0]);
    return FT_OK;
}
