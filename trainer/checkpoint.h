/* checkpoint.h: training checkpoints, the unit of exact resume.
 *
 * A checkpoint holds everything a resumed run needs to continue bit for bit: the LoRA
 * parameters, AdamW's moments and step count, the optimizer step, the data cursor (dropout seeds
 * are a pure function of training.seed and the step, see train.h), the guard's loss statistics
 * and the elapsed time. Layout (little-endian), one file per checkpoint:
 *     0  char[8] magic "FTCKPT1\n"
 *     8  u32     version (1)
 *    12  u32     header bytes (32)
 *    16  u64     meta_bytes: the JSON that follows (self-describing: every scalar of the state,
 *                and the payload's sections by name, dtype, offset and count)
 *    24  u64     payload_bytes (uncompressed)
 *    32  meta JSON
 *        one zstd frame: the payload, sections back to back (lora.params, adamw.m, adamw.v: f32)
 *        u64     zstd_bytes
 *        u64     XXH3-64 of every byte before it
 * Integers above 2^53 (seeds, hashes) are decimal/hex strings and doubles are C99 "%a" hex
 * strings in the JSON, so every value round-trips exactly.
 *
 * Writing goes through kernels/fileio.h (temporary file, fsync, rename, directory fsync): a
 * failure (full disk, file size limit, unwritable directory) leaves no partial file and every
 * earlier checkpoint untouched. Reading verifies the checksum over the whole file before parsing
 * anything, so a truncated or bit-flipped file is "PATH: checksum mismatch (file corrupt)".
 *
 * Checkpoints of a run live in OUTPUT_DIR/checkpoints/step-NNNNNN.ckpt (six or more digits). */
#ifndef FT_CHECKPOINT_H
#define FT_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/status.h"
#include "trainer/dataset.h"
#include "trainer/guard.h"

#define FT_CKPT_MAGIC "FTCKPT1\n"
#define FT_CKPT_VERSION 1
#define FT_CKPT_MAX_TOKENS 1024 /* trainable tokens a checkpoint records (lora.h FT_LORA_MAX_TOKENS) */

/* The lowest validation loss of the run so far (eval.keep_best, eval.patience). */
typedef struct ft_val_best {
    double loss;              /* NAN: no evaluation yet */
    int64_t step;             /* the step it was measured at (-1: none) */
    int64_t since;            /* evaluations after it without a lower loss */
} ft_val_best;

typedef struct ft_ckpt_state {
    int64_t step;             /* optimizer steps completed */
    int64_t steps_total;      /* steps the run was planned for */
    uint64_t seed;            /* training.seed */
    int64_t n_params;         /* adapter layout: a checkpoint restores only into the same one */
    int64_t lora_r, lora_layers;
    uint32_t lora_targets;    /* ft_module bitmask */
    int64_t n_tokens;         /* the adapter's trainable tokens (lora.h ft_lora_tokens), ascending */
    int32_t tokens[FT_CKPT_MAX_TOKENS];
    int dora;                 /* the adapter is DoRA (lora.h): its magnitudes follow the rest in the parameters */
    int64_t adamw_t;          /* AdamW steps taken (skipped steps do not count) */
    ft_data_cursor cursor;
    ft_guard guard;
    ft_val_best val;
    double elapsed_s;         /* training time so far, across resumes */
    int64_t tokens_seen;      /* input tokens processed so far */
} ft_ckpt_state;

/* The most bytes a checkpoint of n_params takes: the header, its JSON state (well under 64 KiB) and
 * the payload's zstd frame, which incompressible values grow by at most 1/128 (ZSTD_compressBound:
 * 1/256, plus its frame). `ftune plan` counts the disk with it. */
static inline int64_t ft_ckpt_max_bytes(int64_t n_params) { return 12 * n_params + 12 * n_params / 128 + (64 << 10); }

/* Writes a checkpoint: params, m and v are host f32 [s->n_params] each. */
ft_status ft_ckpt_write(const char *path, const ft_ckpt_state *s, const float *params, const float *m,
                        const float *v);
/* Verifies and reads a checkpoint. *data (malloc'd) is [3 * n_params] f32: params, m, v. */
ft_status ft_ckpt_read(const char *path, ft_ckpt_state *s, float **data);

/* "<dir>/step-000120.ckpt". */
void ft_ckpt_path(char *buf, size_t cap, const char *dir, int64_t step);
/* Steps of the checkpoint files in dir, ascending (temporary files ignored). *steps malloc'd;
 * a missing directory is an empty list. */
ft_status ft_ckpt_list(const char *dir, int64_t **steps, int64_t *n);
/* Deletes all but the newest `keep` checkpoints (keep <= 0: keeps all), and the set-aside
 * "step-N.ckpt.superseded" files older than the oldest one kept. */
ft_status ft_ckpt_prune(const char *dir, int64_t keep);
/* Removes temporary files left by a write that was killed. */
void ft_ckpt_clean_tmp(const char *dir);

#endif
