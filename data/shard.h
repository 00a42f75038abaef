/* shard.h: pre-tokenized example shards on disk, so a dataset is tokenized once and every run
 * (and every resume) reads the same token ids.
 *
 * A dataset `name` in `dir` is an index `<dir>/<name>.index.json` plus shard files
 * `<dir>/<name>-NNNNN.ftshard`. A shard is a fixed 80-byte little-endian header followed by one
 * zstd frame:
 *    0  char[8] magic "FTSHARD1"          40  u64 compressed_bytes (the zstd frame)
 *    8  u32     version (1)               48  u64 payload_xxh3 (XXH3_64bits, uncompressed)
 *   12  u32     header_bytes (80)         56  u64 fingerprint_hash (XXH3 of the index fingerprint)
 *   16  u64     n_examples                64  u64 shard number
 *   24  u64     n_tokens                  72  u64 header_xxh3 (XXH3_64bits of bytes 0..71)
 *   32  u64     payload_bytes
 * The uncompressed payload is i64 offsets[n_examples + 1] (offsets[0] = 0), i32 tokens[n_tokens],
 * u8 mask[n_tokens] (the ft_examples layout of pack.h). The index (JSON) records the format and
 * version, the fingerprint string (tokenizer + template + masking identity, chosen by the caller),
 * totals, the examples' lengths ("lengths": [min, examples, tokens, sum of squared lengths] per
 * power-of-two bucket [min, 2 min), the empty ones left out: what `ftune plan` reads to count the
 * attention of packed rows without reading the shards), and per shard its file, counts, size and
 * payload checksum.
 *
 * Every file is written to a temporary name, fsync'd and renamed (then the directory fsync'd);
 * the index is written last, so a crash never leaves an index naming a half-written shard. The
 * reader checks magic, version, header checksum, sizes, the counts against the index, the zstd
 * frame, the payload checksum and the offsets, and every failure names the shard file. */
#ifndef FT_SHARD_H
#define FT_SHARD_H

#include <stddef.h>
#include <stdint.h>

#include "data/pack.h"
#include "kernels/status.h"

#define FT_SHARD_MAGIC "FTSHARD1"
#define FT_SHARD_VERSION 1
#define FT_SHARD_HEADER_BYTES 80
#define FT_SHARD_LEN_BUCKETS 63 /* the index's length buckets: [2^b, 2^(b+1)) for b < 63 */

typedef struct ft_shard_writer_opts {
    int64_t shard_tokens;     /* start a new shard once this many tokens are buffered; 0 = 16M */
    int zstd_level;           /* 0 = 3 */
    int threads;              /* ft_shard_writer_add_all compresses up to this many shards at once (at most 8;
                               * 0 or 1: one); the files are the same bytes for any count */
    const char *fingerprint;  /* identity of tokenizer + recipe (stored in the index); NULL = "" */
} ft_shard_writer_opts;

typedef struct ft_shard_writer ft_shard_writer;

/* Starts dataset `name` in directory `dir` (which must exist). opts may be NULL. */
ft_status ft_shard_writer_open(ft_shard_writer **out, const char *dir, const char *name,
                               const ft_shard_writer_opts *opts);
/* Appends one example (mask NULL: all trainable). Writes a shard when the buffer is full. */
ft_status ft_shard_writer_add(ft_shard_writer *w, const int32_t *tokens, const uint8_t *mask, int64_t n);
ft_status ft_shard_writer_add_all(ft_shard_writer *w, const ft_examples *ex);
/* Writes the last shard and the index, then frees w (also on failure). */
ft_status ft_shard_writer_finish(ft_shard_writer *w);
/* Frees w without writing an index (shards already renamed stay; they are unreferenced). */
void ft_shard_writer_abort(ft_shard_writer *w);

typedef struct ft_shard_info {
    int64_t n_shards;
    int64_t n_examples;
    int64_t n_tokens;
    int64_t compressed_bytes;  /* shard files, headers included */
    int64_t payload_bytes;     /* uncompressed */
    char fingerprint[256];
} ft_shard_info;

/* Reads one shard file and appends its examples to ex (initialized by the caller). */
ft_status ft_shard_read(const char *path, ft_examples *ex);
/* Reads a whole dataset through its index into ex (initialized by the call). If fingerprint is
 * not NULL the index's must equal it (a dataset tokenized for another tokenizer or recipe is
 * refused). info may be NULL. The set is allocated once from the index's counts and each shard is
 * decompressed straight into its slice, on up to `threads` threads (at most 16; below 1: one):
 * the examples are the same for any count, and so is the error, that of the index's first bad
 * shard, naming its file. ft_shards_load reads on one thread. */
ft_status ft_shards_load_threads(const char *index_path, const char *fingerprint, int threads, ft_examples *ex,
                                 ft_shard_info *info);
ft_status ft_shards_load(const char *index_path, const char *fingerprint, ft_examples *ex, ft_shard_info *info);

/* The dataset a file of a shard directory belongs to, from its name alone: "<name>.index.json" or
 * "<name>-NNNNN.ftshard", or either as a writer's temporary "FILE.tmp.PID" (*pid = PID, else 0).
 * 0 for any other name; 1 with name (cap bytes) filled. */
int ft_shard_file_parse(const char *file, char *name, size_t cap, long *pid);

#endif
