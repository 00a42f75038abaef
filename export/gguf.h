/* gguf.h: GGUF v3 files (docs: formats.md section 1): a streaming, atomic writer and an mmap reader.
 *
 * Writer contract
 * - Metadata first (typed setters; counts and ids UINT32, float hparams FLOAT32, names STRING, as
 *   llama.cpp type-checks them, formats.md 1.3), then tensors are declared with their ggml type and
 *   ne (ne[0] fastest = the last PyTorch dim), each with a row source: a callback that produces
 *   float32 rows on demand, which the writer encodes to the tensor's type in chunks. Nothing is
 *   computed or written before ft_ggufw_finish, which writes header, tensor infos (offsets laid
 *   out consecutively in declaration order, 32-byte aligned, as the ggml reader requires) and then
 *   the data tensor by tensor, so peak memory is one chunk of rows, never the model. A tensor may
 *   instead be declared with its encoded bytes (ft_ggufw_add_tensor_bytes), written verbatim, and
 *   metadata copied key by key from a reader (ft_ggufw_copy_kv): a GGUF base rewritten with only
 *   its merged tensors re-encoded.
 * - The file goes to a temporary name beside the path, is fsync'd and renamed (kernels/fileio.h):
 *   on any failure (a callback error, a full disk) nothing is left at the output path.
 * - Names are checked when declared: unique, non-empty, at most 63 bytes (GGML_MAX_NAME - 1);
 *   ne[0] must be a multiple of the type's block size; ft_ggufw_finish reports duplicates.
 *
 * Reader contract
 * - ft_gguf_open maps the file read-only and validates all of it the way ggml's gguf.cpp does
 *   (magic, version 2 or 3, string/array caps, no nested arrays, duplicate keys, alignment a power
 *   of two of type UINT32, tensor names unique and < 64 bytes, n_dims <= 4, block-divisible ne[0],
 *   offsets consecutive in info order, data inside the file). Garbage never crashes it: every
 *   failure is one FT_E_FORMAT message naming the file. */
#ifndef FT_GGUF_H
#define FT_GGUF_H

#include <stdint.h>

#include "kernels/ggml_quants.h"
#include "kernels/status.h"

/* GGUF metadata value types (gguf.h enum gguf_type). */
typedef enum ft_gguf_vtype {
    FT_GGUF_UINT8 = 0,
    FT_GGUF_INT8 = 1,
    FT_GGUF_UINT16 = 2,
    FT_GGUF_INT16 = 3,
    FT_GGUF_UINT32 = 4,
    FT_GGUF_INT32 = 5,
    FT_GGUF_FLOAT32 = 6,
    FT_GGUF_BOOL = 7,
    FT_GGUF_STRING = 8,
    FT_GGUF_ARRAY = 9,
    FT_GGUF_UINT64 = 10,
    FT_GGUF_INT64 = 11,
    FT_GGUF_FLOAT64 = 12,
    FT_GGUF_VTYPE_COUNT
} ft_gguf_vtype;

#define FT_GGUF_ALIGNMENT 32
#define FT_GGUF_MAX_DIMS 4
#define FT_GGUF_MAX_NAME 63

const char *ft_gguf_vtype_name(int t);

/* ---- writer --------------------------------------------------------------------------------- */

typedef struct ft_ggufw ft_ggufw;
typedef struct ft_gguf ft_gguf; /* the reader (below) */

/* Produces rows [row0, row0 + nrows) of the tensor (rows = ne[1]*ne[2]*ne[3] rows of ne[0]
 * floats) into dst[nrows * ne[0]]. Called with increasing row0. A failure status aborts the file. */
typedef ft_status (*ft_ggufw_rows_fn)(void *user, int64_t row0, int64_t nrows, float *dst);

ft_status ft_ggufw_open(ft_ggufw **out, const char *path);
/* Frees without writing. NULL is a no-op. */
void ft_ggufw_discard(ft_ggufw *w);

/* Metadata setters (key copied; a repeated key replaces the earlier value in place). */
ft_status ft_ggufw_set_str(ft_ggufw *w, const char *key, const char *value);
ft_status ft_ggufw_set_u32(ft_ggufw *w, const char *key, uint32_t value);
ft_status ft_ggufw_set_i32(ft_ggufw *w, const char *key, int32_t value);
ft_status ft_ggufw_set_f32(ft_ggufw *w, const char *key, float value);
ft_status ft_ggufw_set_bool(ft_ggufw *w, const char *key, int value);
/* Arrays: copied. n elements. */
ft_status ft_ggufw_set_arr_str(ft_ggufw *w, const char *key, const char *const *values, int64_t n);
ft_status ft_ggufw_set_arr_i32(ft_ggufw *w, const char *key, const int32_t *values, int64_t n);
ft_status ft_ggufw_set_arr_u32(ft_ggufw *w, const char *key, const uint32_t *values, int64_t n);
ft_status ft_ggufw_set_arr_f32(ft_ggufw *w, const char *key, const float *values, int64_t n);

/* Copies key i of an open GGUF file with its type and value (arrays of any element type included),
 * as every other setter does: a key already set is replaced in place. Exact for every type the
 * reader has a getter for (all but scalar UINT8/INT8/UINT16/INT16/UINT64/INT64/FLOAT64, which go
 * through the reader's display text: exact for the integers up to 2^53, 9 significant digits for a
 * FLOAT64 scalar, with a warning naming the key when that may lose digits). */
ft_status ft_ggufw_copy_kv(ft_ggufw *w, const ft_gguf *g, int64_t i);

/* Declares a tensor of n_dims (1..4) dims ne[] (ne[0] fastest) and ggml type (one ftune can encode)
 * whose float rows come from fn(user, ...) at finish time. */
ft_status ft_ggufw_add_tensor(ft_ggufw *w, const char *name, ft_ggml_type type, int n_dims, const int64_t *ne,
                              ft_ggufw_rows_fn fn, void *user);

/* Produces bytes [offset, offset + nbytes) of a verbatim tensor's data into dst. Called with
 * increasing offsets, chunks of a few MiB. A failure status aborts the file. */
typedef ft_status (*ft_ggufw_bytes_fn)(void *user, void *dst, int64_t offset, int64_t nbytes);

/* Declares a tensor whose data is written verbatim, already encoded: ft_ggml_row_size(type, ne[0])
 * bytes a row, from fn(user, ...) at finish time. Any ggml type of known block geometry (including
 * ones ftune cannot encode, e.g. Q2_K, Q3_K: a GGUF base's tensors are copied without re-encoding). */
ft_status ft_ggufw_add_tensor_bytes(ft_ggufw *w, const char *name, int type, int n_dims, const int64_t *ne,
                                    ft_ggufw_bytes_fn fn, void *user);
int64_t ft_ggufw_tensor_count(const ft_ggufw *w);
/* Bytes the file will have (known once everything is declared). */
int64_t ft_ggufw_file_size(const ft_ggufw *w);
/* Writes everything atomically and frees the writer (also on failure). */
ft_status ft_ggufw_finish(ft_ggufw *w);

/* ---- reader --------------------------------------------------------------------------------- */

typedef struct ft_gguf_tensor {
    const char *name;
    int type;                      /* ggml type id */
    int n_dims;
    int64_t ne[FT_GGUF_MAX_DIMS];  /* ne[0] fastest; unused dims are 1 */
    int64_t nelem;
    int64_t nbytes;
    int64_t offset;                /* relative to the data section */
    const void *data;              /* in the mapping */
} ft_gguf_tensor;

ft_status ft_gguf_open(ft_gguf **out, const char *path);
void ft_gguf_close(ft_gguf *g);

uint32_t ft_gguf_version(const ft_gguf *g);
int64_t ft_gguf_alignment(const ft_gguf *g);
int64_t ft_gguf_data_offset(const ft_gguf *g);
int64_t ft_gguf_file_size(const ft_gguf *g);

int64_t ft_gguf_kv_count(const ft_gguf *g);
const char *ft_gguf_kv_key(const ft_gguf *g, int64_t i);
/* Index of a key or -1. */
int64_t ft_gguf_find_key(const ft_gguf *g, const char *key);
/* Value type of kv i; for arrays also the element type and count. */
int ft_gguf_kv_type(const ft_gguf *g, int64_t i);
int ft_gguf_arr_type(const ft_gguf *g, int64_t i);
int64_t ft_gguf_arr_n(const ft_gguf *g, int64_t i);
/* Scalar getters: 1 when kv i has exactly that type (llama.cpp's rule), else 0 and *out untouched.
 * Strings are returned as pointer + length into the mapping (not NUL-terminated). */
int ft_gguf_get_u32(const ft_gguf *g, int64_t i, uint32_t *out);
int ft_gguf_get_i32(const ft_gguf *g, int64_t i, int32_t *out);
int ft_gguf_get_f32(const ft_gguf *g, int64_t i, float *out);
int ft_gguf_get_bool(const ft_gguf *g, int64_t i, int *out);
int ft_gguf_get_str(const ft_gguf *g, int64_t i, const char **s, int64_t *len);
/* Array element j: numbers as double (any numeric element type), strings as pointer + length. */
int ft_gguf_arr_num(const ft_gguf *g, int64_t i, int64_t j, double *out);
int ft_gguf_arr_str(const ft_gguf *g, int64_t i, int64_t j, const char **s, int64_t *len);
/* Any scalar formatted for display ("llama", "4096", "1e-05", "true"); arrays as "[N x TYPE]". */
void ft_gguf_kv_format(const ft_gguf *g, int64_t i, char *buf, int64_t cap);

int64_t ft_gguf_tensor_count(const ft_gguf *g);
const ft_gguf_tensor *ft_gguf_tensor_at(const ft_gguf *g, int64_t i);
/* By name, or NULL. */
const ft_gguf_tensor *ft_gguf_tensor_find(const ft_gguf *g, const char *name);
/* Decodes rows [row0, row0+nrows) of a tensor into dst[nrows * ne[0]] float32.
 * FT_E_UNSUPPORTED for a type ftune cannot decode. */
ft_status ft_gguf_tensor_rows_f32(const ft_gguf *g, const ft_gguf_tensor *t, int64_t row0, int64_t nrows, float *dst);

#endif
