/* safetensors_read.h: opens an HF checkpoint (one safetensors file, or the shards named by a
 * `model.safetensors.index.json`) as read-only memory maps and describes its tensors.
 *
 * Contract
 * - Every shard is validated completely at open, as huggingface/safetensors does: header length
 *   within the file and <= 100,000,000 bytes, header valid UTF-8 JSON object, each entry with a
 *   known dtype, a non-negative integer shape and data_offsets whose span equals
 *   numel * dtype size, offsets that tile the data buffer exactly (no overlap, no gap, nothing
 *   past or left over at the end), `__metadata__` string-to-string; for an index: every shard it
 *   names exists and holds the tensors the weight_map assigns it, and no tensor is in two shards.
 *   A failure is one FT_E_FORMAT (FT_E_IO when a file cannot be opened) message naming the file.
 *   Garbage never crashes the reader.
 * - Dtypes that ftune does not compute with (I8, F64, F8_*, ...) are accepted at open; they are
 *   reported (FT_E_UNSUPPORTED, naming tensor and file) only by ft_st_tensor_dtype when used.
 * - Tensor data stays on disk until touched: shards are mmap'd MAP_PRIVATE read-only with
 *   MADV_SEQUENTIAL. A loader that consumes tensors one at a time calls
 *   ft_st_release_tensor_pages after each, which drops the pages from this process
 *   (MADV_DONTNEED) and from the page cache (POSIX_FADV_DONTNEED; on unified-memory machines the
 *   page cache competes with GPU allocations), so peak RSS while streaming stays near one tensor.
 *   The data stays readable afterwards (it is faulted back in from the file).
 * - Iteration order is file order: shards in name order (model-00001-of-N first), tensors by data
 *   offset within a shard, which is the order to stream them in.
 * - Tensor data carries no alignment guarantee beyond what the file's writer chose (the reference
 *   writer and ft_stw keep natural alignment); consumers of foreign files copy or use memcpy.
 * - The model is immutable after open; concurrent readers are safe. */
#ifndef FT_SAFETENSORS_READ_H
#define FT_SAFETENSORS_READ_H

#include <stddef.h>
#include <stdint.h>

#include "export/safetensors_write.h" /* ft_st_dtype and its table */
#include "kernels/dtype.h"
#include "kernels/status.h"

typedef struct ft_st_model ft_st_model; /* opaque */

/* One tensor. Pointers are owned by the model and valid until ft_st_close. */
typedef struct ft_st_tensor {
    const char *name;              /* "model.layers.0.self_attn.q_proj.weight" */
    ft_st_dtype st_dtype;          /* dtype as stored */
    ft_dtype dtype;                /* the ftune dtype, or FT_DTYPE_COUNT when none (see ft_st_tensor_dtype) */
    int ndim;                      /* 0 for a scalar */
    int64_t shape[FT_ST_MAX_DIMS]; /* PyTorch order (last dim fastest); entries past ndim are 0 */
    int64_t numel;
    int64_t nbytes;
    const void *data;              /* read-only, in the shard's mapping */
    int64_t file_offset;           /* absolute byte offset of data in the shard file */
    const char *shard;             /* path of the shard file holding it */
    int32_t shard_index;           /* 0-based, in shard name order */
} ft_st_tensor;

/* Opens `path`: a directory holding `model.safetensors` (preferred, as transformers does) or
 * `model.safetensors.index.json`, an index file (any name ending in ".json"), or a single
 * safetensors file of any name (e.g. adapter_model.safetensors). */
ft_status ft_st_open(ft_st_model **out, const char *path);
/* Unmaps everything. NULL is a no-op. */
void ft_st_close(ft_st_model *m);

int64_t ft_st_count(const ft_st_model *m);
int32_t ft_st_shard_count(const ft_st_model *m);
/* Path of shard i (0-based, name order); NULL when out of range. */
const char *ft_st_shard_path(const ft_st_model *m, int32_t i);
/* Sum of all tensors' nbytes. */
int64_t ft_st_total_bytes(const ft_st_model *m);

/* The i-th tensor in file order (0 <= i < ft_st_count); NULL when out of range. */
const ft_st_tensor *ft_st_at(const ft_st_model *m, int64_t i);
/* The name of a vision-language checkpoint's text-model tensor as a text-only checkpoint has it:
 * "language_model.model.X" and "model.language_model.X" -> "model.X", "language_model.lm_head.weight"
 * -> "lm_head.weight" (in buf); any other name is returned as it is. ft_st_lookup, ft_st_find and
 * ft_st_has fall back to those layouts when a "model." or "lm_head." name is not in the file. */
const char *ft_st_text_name(const char *name, char *buf, size_t cap);
/* Looks a tensor up by exact name (binary search). FT_E_FORMAT "<path>: no tensor named ..."
 * when absent; use ft_st_has for optional tensors. info may be NULL. */
ft_status ft_st_find(const ft_st_model *m, const char *name, ft_st_tensor *info);
/* The tensor of that name or NULL; sets no error. */
const ft_st_tensor *ft_st_lookup(const ft_st_model *m, const char *name);
int ft_st_has(const ft_st_model *m, const char *name);

/* The tensor's ftune dtype; FT_E_UNSUPPORTED naming dtype, tensor and shard when it has none. */
ft_status ft_st_tensor_dtype(const ft_st_tensor *t, ft_dtype *out);

/* A `__metadata__` value (first shard that has the key), or NULL. */
const char *ft_st_get_metadata(const ft_st_model *m, const char *key);
/* Metadata entries of all shards, in shard then file order (duplicates across shards included). */
int64_t ft_st_metadata_count(const ft_st_model *m);

/* Drops the pages of a consumed tensor from this process and the page cache (see contract).
 * The range is widened to whole pages; neighbouring tensors sharing a page stay readable. */
void ft_st_release_tensor_pages(const ft_st_model *m, const ft_st_tensor *t);

#endif
