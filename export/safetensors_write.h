/* safetensors_write.h: the safetensors dtype table and a streaming, atomic safetensors writer.
 *
 * The dtype table (ft_st_dtype) lives here rather than in the reader because export/ may not
 * depend on trainer/ (docs/design.md); trainer/safetensors_read.h includes this header.
 *
 * Writer contract: declare every tensor first (name, dtype, PyTorch shape, and either a host
 * pointer that stays valid until ft_stw_finish or a fill callback that produces the bytes on
 * demand in chunks), optionally add `__metadata__` string pairs, then ft_stw_finish writes
 *   8-byte LE header length | header JSON padded with spaces to a multiple of 8 | data
 * with tensors in the order they were added (the data offsets tile the buffer exactly, as
 * huggingface/safetensors requires). The file is written to a temporary name in the same
 * directory, fsync'd, renamed over `path`, and the directory fsync'd; on any failure the
 * temporary file is removed, `path` is untouched, and FT_E_IO names `path`.
 * No tensor is padded: for naturally aligned data add the larger dtypes first (F32 before
 * F16/BF16), as the reference writer does by ordering on dtype size.
 * PEFT/transformers expect `__metadata__` {"format": "pt"}: callers exporting for them set it. */
#ifndef FT_SAFETENSORS_WRITE_H
#define FT_SAFETENSORS_WRITE_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/dtype.h"
#include "kernels/status.h"

/* Every dtype string of the safetensors format (huggingface/safetensors tensor.rs). */
typedef enum ft_st_dtype {
    FT_ST_BOOL = 0,
    FT_ST_U8,
    FT_ST_I8,
    FT_ST_F8_E5M2,
    FT_ST_F8_E4M3,
    FT_ST_F8_E8M0,
    FT_ST_I16,
    FT_ST_U16,
    FT_ST_F16,
    FT_ST_BF16,
    FT_ST_I32,
    FT_ST_U32,
    FT_ST_F32,
    FT_ST_F64,
    FT_ST_I64,
    FT_ST_U64,
    FT_ST_C64,
    FT_ST_F4,      /* 4-bit: a tensor's element count must fill whole bytes */
    FT_ST_F6_E2M3, /* 6-bit */
    FT_ST_F6_E3M2, /* 6-bit */
    FT_ST_DTYPE_COUNT
} ft_st_dtype;

/* Most dimensions a tensor may have (the format has no limit; models use at most 4). */
enum { FT_ST_MAX_DIMS = 8 };

/* The format's dtype string ("BF16"), or "?" for an invalid value. */
const char *ft_st_dtype_name(ft_st_dtype t);
/* Parses a dtype string (case-sensitive, as the format defines it). Returns 1 when known. */
int ft_st_dtype_from_name(const char *s, ft_st_dtype *out);
/* Bits per element (4, 6, 8, 16, 32 or 64). */
int ft_st_dtype_bits(ft_st_dtype t);
/* The ftune element type of a safetensors dtype (F32/F16/BF16/I32/U8). Returns 1 when it has one. */
int ft_st_dtype_to_ft(ft_st_dtype t, ft_dtype *out);
/* The safetensors dtype of an ftune element type. Returns 1 when it has one (NF4 has none). */
int ft_st_dtype_from_ft(ft_dtype t, ft_st_dtype *out);
/* Element count and byte size of a tensor, overflow-checked. FT_E_FORMAT (message without a file
 * name: callers wrap it) for a negative dimension, a 64-bit overflow, more than FT_ST_MAX_DIMS
 * dimensions, or a sub-byte dtype whose elements do not end on a byte boundary. */
ft_status ft_st_dtype_nbytes(ft_st_dtype t, int ndim, const int64_t *shape, int64_t *numel, int64_t *nbytes);
/* Writes "[a, b, c]" into buf (truncated to n bytes) for messages. Returns buf. */
char *ft_st_shape_str(char *buf, int64_t n, int ndim, const int64_t *shape);

typedef struct ft_stw ft_stw; /* opaque writer */

/* Produces bytes [offset, offset + nbytes) of one tensor into dst. Called in increasing offset
 * order with chunks of at most a few MiB; a failure status aborts the write (its message kept). */
typedef ft_status (*ft_stw_fill_fn)(void *user, void *dst, int64_t offset, int64_t nbytes);

/* Starts a writer for `path` (nothing is created until ft_stw_finish). */
ft_status ft_stw_open(ft_stw **out, const char *path);
/* Adds one `__metadata__` entry (both strings copied; a repeated key replaces the value). */
ft_status ft_stw_set_metadata(ft_stw *w, const char *key, const char *value);
/* Adds a tensor whose bytes are at `data` (numel(shape) * dtype size bytes, kept by the caller
 * until ft_stw_finish). The name is copied. FT_E_ARG for an empty name, "__metadata__", a
 * negative dimension or more than FT_ST_MAX_DIMS dims; duplicates are reported by finish. */
ft_status ft_stw_add(ft_stw *w, const char *name, ft_st_dtype dtype, int ndim, const int64_t *shape,
                     const void *data);
/* Same, with the bytes produced by `fill(user, ...)` while the file is written. */
ft_status ft_stw_add_fill(ft_stw *w, const char *name, ft_st_dtype dtype, int ndim, const int64_t *shape,
                          ft_stw_fill_fn fill, void *user);
/* Number of tensors added so far. */
int64_t ft_stw_count(const ft_stw *w);
/* Writes the file atomically and frees the writer (also on failure). */
ft_status ft_stw_finish(ft_stw *w);
/* The first half of ft_stw_finish: writes the whole file to a fresh temporary next to the path
 * (".<name>.tmp-<pid>-<n>", which trainer/outguard.c removes on Ctrl-C), fsync'd and closed, and
 * puts its name in tmp[cap]; the caller renames it over the path (and fsyncs the directory) or
 * unlinks it. For outputs that must change together (a PEFT directory's two files). Frees the
 * writer; on failure the temporary is removed. */
ft_status ft_stw_finish_tmp(ft_stw *w, char *tmp, size_t cap);
/* Frees the writer without writing anything. NULL is a no-op. */
void ft_stw_discard(ft_stw *w);

#endif
