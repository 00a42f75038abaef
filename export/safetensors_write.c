/* safetensors_write.c: the safetensors dtype table and the atomic streaming writer
 * (see safetensors_write.h for the contract). The header JSON is built with cJSON; integers are
 * inserted as raw decimal text so that byte offsets are never printed in exponent form (which the
 * Rust reader would reject). */
#include "export/safetensors_write.h"

#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "export/export_util.h"
#include "kernels/mem.h"

static const struct {
    const char *name;
    int bits;
} ft_st_dtypes[FT_ST_DTYPE_COUNT] = {
    [FT_ST_BOOL] = {"BOOL", 8},       [FT_ST_U8] = {"U8", 8},           [FT_ST_I8] = {"I8", 8},
    [FT_ST_F8_E5M2] = {"F8_E5M2", 8}, [FT_ST_F8_E4M3] = {"F8_E4M3", 8}, [FT_ST_F8_E8M0] = {"F8_E8M0", 8},
    [FT_ST_I16] = {"I16", 16},        [FT_ST_U16] = {"U16", 16},        [FT_ST_F16] = {"F16", 16},
    [FT_ST_BF16] = {"BF16", 16},      [FT_ST_I32] = {"I32", 32},        [FT_ST_U32] = {"U32", 32},
    [FT_ST_F32] = {"F32", 32},        [FT_ST_F64] = {"F64", 64},        [FT_ST_I64] = {"I64", 64},
    [FT_ST_U64] = {"U64", 64},        [FT_ST_C64] = {"C64", 64},        [FT_ST_F4] = {"F4", 4},
    [FT_ST_F6_E2M3] = {"F6_E2M3", 6}, [FT_ST_F6_E3M2] = {"F6_E3M2", 6},
};

const char *ft_st_dtype_name(ft_st_dtype t) {
    return (unsigned)t < FT_ST_DTYPE_COUNT ? ft_st_dtypes[t].name : "?";
}

int ft_st_dtype_from_name(const char *s, ft_st_dtype *out) {
    for (int i = 0; i < FT_ST_DTYPE_COUNT; i++) {
        if (strcmp(s, ft_st_dtypes[i].name) == 0) {
            *out = (ft_st_dtype)i;
            return 1;
        }
    }
    return 0;
}

int ft_st_dtype_bits(ft_st_dtype t) { return (unsigned)t < FT_ST_DTYPE_COUNT ? ft_st_dtypes[t].bits : 0; }

int ft_st_dtype_to_ft(ft_st_dtype t, ft_dtype *out) {
    switch (t) {
    case FT_ST_F32: *out = FT_F32; return 1;
    case FT_ST_F16: *out = FT_F16; return 1;
    case FT_ST_BF16: *out = FT_BF16; return 1;
    case FT_ST_I32: *out = FT_I32; return 1;
    case FT_ST_U8: *out = FT_U8; return 1;
    default: return 0;
    }
}

int ft_st_dtype_from_ft(ft_dtype t, ft_st_dtype *out) {
    switch (t) {
    case FT_F32: *out = FT_ST_F32; return 1;
    case FT_F16: *out = FT_ST_F16; return 1;
    case FT_BF16: *out = FT_ST_BF16; return 1;
    case FT_I32: *out = FT_ST_I32; return 1;
    case FT_U8: *out = FT_ST_U8; return 1;
    default: return 0;
    }
}

char *ft_st_shape_str(char *buf, int64_t n, int ndim, const int64_t *shape) {
    int64_t len = 0;
    if (n <= 0) return buf;
    buf[0] = 0;
    len += snprintf(buf, (size_t)n, "[");
    for (int i = 0; i < ndim && len < n; i++)
        len += snprintf(buf + len, (size_t)(n - len), "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (len < n) snprintf(buf + len, (size_t)(n - len), "]");
    return buf;
}

ft_status ft_st_dtype_nbytes(ft_st_dtype t, int ndim, const int64_t *shape, int64_t *numel, int64_t *nbytes) {
    char s[160];
    if ((unsigned)t >= FT_ST_DTYPE_COUNT) return FT_ERR(FT_E_FORMAT, "invalid dtype %d", (int)t);
    if (ndim < 0 || ndim > FT_ST_MAX_DIMS)
        return FT_ERR(FT_E_FORMAT, "%d dimensions (at most %d supported)", ndim, (int)FT_ST_MAX_DIMS);
    int64_t n = 1, bits;
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0)
            return FT_ERR(FT_E_FORMAT, "shape %s has a negative dimension", ft_st_shape_str(s, sizeof s, ndim, shape));
    for (int i = 0; i < ndim; i++)
        if (__builtin_mul_overflow(n, shape[i], &n))
            return FT_ERR(FT_E_FORMAT, "shape %s overflows a 64-bit element count",
                          ft_st_shape_str(s, sizeof s, ndim, shape));
    if (__builtin_mul_overflow(n, (int64_t)ft_st_dtypes[t].bits, &bits))
        return FT_ERR(FT_E_FORMAT, "shape %s of %s overflows a 64-bit byte count",
                      ft_st_shape_str(s, sizeof s, ndim, shape), ft_st_dtypes[t].name);
    if (bits % 8 != 0)
        return FT_ERR(FT_E_FORMAT, "shape %s of %s does not end on a byte boundary",
                      ft_st_shape_str(s, sizeof s, ndim, shape), ft_st_dtypes[t].name);
    if (numel) *numel = n;
    if (nbytes) *nbytes = bits / 8;
    return FT_OK;
}

/* ---------------------------------------------------------------------------------------------- */

typedef struct ft_stw_entry {
    char *name;
    ft_st_dtype dtype;
    int ndim;
    int64_t shape[FT_ST_MAX_DIMS];
    int64_t nbytes;
    const void *data;    /* or NULL with fill */
    ft_stw_fill_fn fill;
    void *user;
} ft_stw_entry;

struct ft_stw {
    char *path;
    ft_stw_entry *e; /* [n] in add order = file order */
    int64_t n, cap;
    char **mkey, **mval; /* [nmeta] */
    int64_t nmeta, mcap;
};

ft_status ft_stw_open(ft_stw **out, const char *path) {
    *out = NULL;
    if (!path || !path[0]) return FT_ERR(FT_E_ARG, "safetensors writer: empty output path");
    ft_stw *w;
    FT_TRY(ft_calloc((void **)&w, sizeof *w, "safetensors writer"));
    ft_status st = ft_strdup(&w->path, path, "safetensors writer path");
    if (st != FT_OK) {
        ft_free(w);
        return st;
    }
    *out = w;
    return FT_OK;
}

void ft_stw_discard(ft_stw *w) {
    if (!w) return;
    for (int64_t i = 0; i < w->n; i++) ft_free(w->e[i].name);
    for (int64_t i = 0; i < w->nmeta; i++) {
        ft_free(w->mkey[i]);
        ft_free(w->mval[i]);
    }
    ft_free(w->e);
    ft_free(w->mkey);
    ft_free(w->mval);
    ft_free(w->path);
    ft_free(w);
}

int64_t ft_stw_count(const ft_stw *w) { return w->n; }

ft_status ft_stw_set_metadata(ft_stw *w, const char *key, const char *value) {
    if (!key || !value) return FT_ERR(FT_E_ARG, "%s: metadata key and value must not be NULL", w->path);
    for (int64_t i = 0; i < w->nmeta; i++) {
        if (strcmp(w->mkey[i], key) == 0) {
            char *v;
            FT_TRY(ft_strdup(&v, value, "safetensors metadata"));
            ft_free(w->mval[i]);
            w->mval[i] = v;
            return FT_OK;
        }
    }
    int64_t kcap = w->mcap;
    FT_TRY(ft_grow((void **)&w->mkey, &kcap, w->nmeta + 1, sizeof(char *), "safetensors metadata"));
    FT_TRY(ft_grow((void **)&w->mval, &w->mcap, w->nmeta + 1, sizeof(char *), "safetensors metadata"));
    char *k, *v;
    FT_TRY(ft_strdup(&k, key, "safetensors metadata"));
    ft_status st = ft_strdup(&v, value, "safetensors metadata");
    if (st != FT_OK) {
        ft_free(k);
        return st;
    }
    w->mkey[w->nmeta] = k;
    w->mval[w->nmeta] = v;
    w->nmeta++;
    return FT_OK;
}

static ft_status ft_stw_add_impl(ft_stw *w, const char *name, ft_st_dtype dtype, int ndim, const int64_t *shape,
                                 const void *data, ft_stw_fill_fn fill, void *user) {
    if (!name || !name[0]) return FT_ERR(FT_E_ARG, "%s: tensor name is empty", w->path);
    if (strcmp(name, "__metadata__") == 0)
        return FT_ERR(FT_E_ARG, "%s: \"__metadata__\" is reserved and cannot name a tensor", w->path);
    if ((unsigned)dtype >= FT_ST_DTYPE_COUNT)
        return FT_ERR(FT_E_ARG, "%s: tensor \"%s\": invalid dtype %d", w->path, name, (int)dtype);
    if (ndim < 0 || ndim > FT_ST_MAX_DIMS || (ndim > 0 && !shape))
        return FT_ERR(FT_E_ARG, "%s: tensor \"%s\": %d dimensions (0..%d supported)", w->path, name, ndim,
                      (int)FT_ST_MAX_DIMS);
    int64_t nbytes;
    ft_status st = ft_st_dtype_nbytes(dtype, ndim, shape, NULL, &nbytes);
    if (st != FT_OK) return ft_error_wrap(FT_E_ARG, "%s: tensor \"%s\"", w->path, name);
    if (nbytes > 0 && !data && !fill) return FT_ERR(FT_E_ARG, "%s: tensor \"%s\": no data", w->path, name);
    FT_TRY(ft_grow((void **)&w->e, &w->cap, w->n + 1, sizeof *w->e, "safetensors writer"));
    ft_stw_entry *e = &w->e[w->n];
    memset(e, 0, sizeof *e);
    FT_TRY(ft_strdup(&e->name, name, "safetensors tensor name"));
    e->dtype = dtype;
    e->ndim = ndim;
    for (int i = 0; i < ndim; i++) e->shape[i] = shape[i];
    e->nbytes = nbytes;
    e->data = data;
    e->fill = fill;
    e->user = user;
    w->n++;
    return FT_OK;
}

ft_status ft_stw_add(ft_stw *w, const char *name, ft_st_dtype dtype, int ndim, const int64_t *shape,
                     const void *data) {
    return ft_stw_add_impl(w, name, dtype, ndim, shape, data, NULL, NULL);
}

ft_status ft_stw_add_fill(ft_stw *w, const char *name, ft_st_dtype dtype, int ndim, const int64_t *shape,
                          ft_stw_fill_fn fill, void *user) {
    if (!fill) return FT_ERR(FT_E_ARG, "%s: tensor \"%s\": NULL fill callback", w->path, name ? name : "");
    return ft_stw_add_impl(w, name, dtype, ndim, shape, NULL, fill, user);
}

/* ---------------------------------------------------------------------------------------------- */

static int ft_stw_cmp_name(const void *a, const void *b) {
    const ft_stw_entry *x = *(const ft_stw_entry *const *)a, *y = *(const ft_stw_entry *const *)b;
    return strcmp(x->name, y->name);
}

static ft_status ft_stw_check_duplicates(const ft_stw *w) {
    if (w->n < 2) return FT_OK;
    const ft_stw_entry **v;
    FT_TRY(ft_malloc((void **)&v, (size_t)w->n * sizeof *v, "safetensors writer"));
    for (int64_t i = 0; i < w->n; i++) v[i] = &w->e[i];
    qsort(v, (size_t)w->n, sizeof *v, ft_stw_cmp_name);
    ft_status st = FT_OK;
    for (int64_t i = 1; i < w->n; i++) {
        if (strcmp(v[i - 1]->name, v[i]->name) == 0) {
            st = FT_ERR(FT_E_ARG, "%s: tensor \"%s\" added twice", w->path, v[i]->name);
            break;
        }
    }
    ft_free(v);
    return st;
}

static cJSON *ft_stw_raw_int(int64_t v) {
    char buf[32];
    snprintf(buf, sizeof buf, "%lld", (long long)v);
    return cJSON_CreateRaw(buf);
}

/* Builds the padded header: *out (ft_malloc'd) holds the 8-byte length then the JSON. */
static ft_status ft_stw_header(const ft_stw *w, uint8_t **out, int64_t *out_len) {
    ft_status st = FT_OK;
    char *json = NULL;
    cJSON *root = cJSON_CreateObject();
    if (!root) goto oom;
    if (w->nmeta > 0) {
        cJSON *meta = cJSON_AddObjectToObject(root, "__metadata__");
        if (!meta) goto oom;
        for (int64_t i = 0; i < w->nmeta; i++)
            if (!cJSON_AddStringToObject(meta, w->mkey[i], w->mval[i])) goto oom;
    }
    int64_t off = 0;
    for (int64_t i = 0; i < w->n; i++) {
        const ft_stw_entry *e = &w->e[i];
        /* Children are attached to t before t joins root, so one cJSON_Delete frees a failure. */
        cJSON *t = cJSON_CreateObject();
        if (!t) goto oom;
        int ok = cJSON_AddStringToObject(t, "dtype", ft_st_dtype_name(e->dtype)) != NULL;
        cJSON *shape = ok ? cJSON_AddArrayToObject(t, "shape") : NULL, *offs = NULL;
        ok = ok && shape != NULL;
        for (int d = 0; d < e->ndim && ok; d++) ok = cJSON_AddItemToArray(shape, ft_stw_raw_int(e->shape[d]));
        ok = ok && (offs = cJSON_AddArrayToObject(t, "data_offsets")) != NULL;
        ok = ok && cJSON_AddItemToArray(offs, ft_stw_raw_int(off));
        ok = ok && cJSON_AddItemToArray(offs, ft_stw_raw_int(off + e->nbytes));
        ok = ok && cJSON_AddItemToObject(root, e->name, t);
        if (!ok) cJSON_Delete(t);
        if (!ok) goto oom;
        off += e->nbytes;
    }
    json = cJSON_PrintUnformatted(root);
    if (!json) goto oom;
    int64_t jlen = (int64_t)strlen(json);
    int64_t padded = (jlen + 7) / 8 * 8; /* data starts 8-aligned, as the reference writer does */
    uint8_t *buf;
    FT_CHECK_GOTO(st, ft_malloc((void **)&buf, (size_t)(8 + padded), "safetensors header"), done);
    for (int b = 0; b < 8; b++) buf[b] = (uint8_t)((uint64_t)padded >> (8 * b));
    memcpy(buf + 8, json, (size_t)jlen);
    memset(buf + 8 + jlen, ' ', (size_t)(padded - jlen));
    *out = buf;
    *out_len = 8 + padded;
    goto done;
oom:
    st = FT_ERR(FT_E_OOM, "%s: out of memory building the safetensors header", w->path);
done:
    cJSON_free(json);
    cJSON_Delete(root);
    return st;
}

static ft_status ft_stw_write_all(int fd, const void *buf, int64_t n, const char *path) {
    const uint8_t *p = buf;
    while (n > 0) {
        size_t chunk = n > (1 << 30) ? (size_t)1 << 30 : (size_t)n;
        ssize_t got = write(fd, p, chunk);
        if (got < 0) {
            if (errno == EINTR) continue;
            return FT_ERR(FT_E_IO, "%s: write failed: %s", path, strerror(errno));
        }
        if (got == 0) return FT_ERR(FT_E_IO, "%s: write made no progress", path);
        p += got;
        n -= got;
    }
    return FT_OK;
}

/* Creates a fresh temporary file next to `path` (the same file system, so rename is atomic).
 * O_EXCL with a pid/time-derived name keeps concurrent writers apart; mode 0666 lets the umask
 * decide the final permissions as for any other output file. */
static ft_status ft_stw_create_tmp(const char *path, char *tmp, size_t tmp_len, int *fd_out) {
    const char *slash = strrchr(path, '/');
    int dir_len = slash ? (int)(slash - path) + 1 : 0;
    const char *base = slash ? slash + 1 : path;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    for (int attempt = 0; attempt < 100; attempt++) {
        int n = snprintf(tmp, tmp_len, "%.*s.%s.tmp-%ld-%lx", dir_len, path, base, (long)getpid(),
                         (unsigned long)(ts.tv_nsec + attempt * 7919L));
        if (n < 0 || (size_t)n >= tmp_len) return FT_ERR(FT_E_IO, "%s: output path too long", path);
        int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd >= 0) {
            *fd_out = fd;
            return FT_OK;
        }
        if (errno != EEXIST) return FT_ERR(FT_E_IO, "%s: cannot create temporary file %s: %s", path, tmp, strerror(errno));
    }
    return FT_ERR(FT_E_IO, "%s: cannot create a unique temporary file", path);
}

static ft_status ft_stw_fsync_dir(const char *path) {
    const char *slash = strrchr(path, '/');
    char dir[4096];
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == path) snprintf(dir, sizeof dir, "/");
    else snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return FT_ERR(FT_E_IO, "%s: cannot open directory %s to sync it: %s", path, dir, strerror(errno));
    int rc = fsync(fd);
    int err = errno;
    close(fd);
    /* Some file systems cannot sync a directory (EINVAL); the rename is then as durable as they allow. */
    if (rc != 0 && err != EINVAL && err != ENOTSUP)
        return FT_ERR(FT_E_IO, "%s: fsync of directory %s failed: %s", path, dir, strerror(err));
    return FT_OK;
}

static ft_status ft_stw_write_data(const ft_stw *w, int fd) {
    int64_t bounce_len = 0;
    const int64_t chunk = (int64_t)4 << 20;
    for (int64_t i = 0; i < w->n; i++)
        if (w->e[i].fill && w->e[i].nbytes > bounce_len) bounce_len = w->e[i].nbytes < chunk ? w->e[i].nbytes : chunk;
    uint8_t *bounce = NULL;
    if (bounce_len > 0) FT_TRY(ft_malloc((void **)&bounce, (size_t)bounce_len, "safetensors write buffer"));
    ft_status st = FT_OK;
    for (int64_t i = 0; i < w->n && st == FT_OK; i++) {
        const ft_stw_entry *e = &w->e[i];
        if (!e->fill) {
            st = ft_stw_write_all(fd, e->data, e->nbytes, w->path);
            continue;
        }
        for (int64_t off = 0; off < e->nbytes && st == FT_OK; off += bounce_len) {
            int64_t n = e->nbytes - off < bounce_len ? e->nbytes - off : bounce_len;
            st = e->fill(e->user, bounce, off, n);
            if (st != FT_OK) {
                ft_error_wrap(st, "%s: producing tensor \"%s\"", w->path, e->name);
                break;
            }
            st = ft_stw_write_all(fd, bounce, n, w->path);
        }
    }
    ft_free(bounce);
    return st;
}

ft_status ft_stw_finish_tmp(ft_stw *w, char *tmp, size_t cap) {
    ft_status st;
    uint8_t *header = NULL;
    int64_t header_len = 0;
    int fd = -1, tmp_made = 0;
    if (!w) return FT_ERR(FT_E_ARG, "safetensors writer: finish without a writer");
    FT_CHECK_GOTO(st, ft_stw_check_duplicates(w), out);
    FT_CHECK_GOTO(st, ft_stw_header(w, &header, &header_len), out);
    FT_CHECK_GOTO(st, ft_stw_create_tmp(w->path, tmp, cap, &fd), out);
    tmp_made = 1;
    int64_t total = header_len;
    for (int64_t i = 0; i < w->n; i++) total += w->e[i].nbytes;
    FT_CHECK_GOTO(st, ft_reserve_file(fd, w->path, total), out);
    FT_CHECK_GOTO(st, ft_stw_write_all(fd, header, header_len, w->path), out);
    FT_CHECK_GOTO(st, ft_stw_write_data(w, fd), out);
    if (fsync(fd) != 0) {
        st = FT_ERR(FT_E_IO, "%s: fsync failed: %s", w->path, strerror(errno));
        goto out;
    }
    int rc = close(fd);
    fd = -1;
    if (rc != 0) { /* NFS and friends report deferred write errors here */
        st = FT_ERR(FT_E_IO, "%s: close failed: %s", w->path, strerror(errno));
        goto out;
    }
    tmp_made = 0;
out:
    if (fd >= 0) close(fd);
    if (tmp_made) unlink(tmp);
    ft_free(header);
    ft_stw_discard(w);
    return st;
}

ft_status ft_stw_finish(ft_stw *w) {
    char tmp[4200];
    if (!w) return FT_ERR(FT_E_ARG, "safetensors writer: finish without a writer");
    char *path = strdup(w->path); /* ft_stw_finish_tmp frees the writer that holds it */
    if (!path) {
        ft_stw_discard(w);
        return FT_ERR(FT_E_OOM, "out of memory");
    }
    ft_status st = ft_stw_finish_tmp(w, tmp, sizeof tmp);
    if (st == FT_OK && rename(tmp, path) != 0) {
        st = FT_ERR(FT_E_IO, "%s: cannot rename %s into place: %s", path, tmp, strerror(errno));
        unlink(tmp);
    } else if (st == FT_OK) {
        st = ft_stw_fsync_dir(path);
    }
    free(path);
    return st;
}
