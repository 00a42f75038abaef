/* tboard.h: a TensorBoard event file of scalars (training.tensorboard), written without TensorFlow.
 *
 * The file, DIR/events.out.tfevents.<unix seconds>.<hostname>.<pid>.ftune (TensorBoard reads the
 * files whose names hold "tfevents"), is a sequence of TFRecords: uint64 LE length, uint32 LE
 * masked CRC-32C of those 8 bytes, the data, uint32 LE masked CRC-32C of the data. Each record is
 * one serialized tensorboard.Event (tensorboard/compat/proto/event.proto, summary.proto):
 *   wall_time double = 1, step int64 = 2, file_version string = 3 (the first record:
 *   "brain.Event:2"), summary Summary = 5 { repeated Value value = 1 { tag string = 1,
 *   simple_value float = 2 } }, session_log SessionLog = 7 { status = 1, START = 1 } (7, not 6:
 *   6 is the deprecated log_message; tests/ref/read_tfevents.py prints the numbers tensorboard has).
 * A file opens with its file_version record and a SessionLog START at step 0 (why: tboard.c).
 * Writes are flushed record by record, as metrics.jsonl's lines are: a killed run leaves at most a
 * torn last record, which readers drop. */
#ifndef FT_TBOARD_H
#define FT_TBOARD_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/status.h"

typedef struct ft_tb ft_tb;

typedef struct ft_tb_scalar {
    const char *tag;  /* "train/loss" */
    double value;     /* written as a float; a non-finite value is left out of the record */
} ft_tb_scalar;

/* CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), continuing from crc (0 to start):
 * ft_crc32c(0, "123456789", 9) == 0xE3069283 (RFC 3720). */
uint32_t ft_crc32c(uint32_t crc, const void *data, size_t n);
/* TFRecord's masked form of a CRC: ((c >> 15) | (c << 17)) + 0xa282ead8. */
uint32_t ft_crc32c_mask(uint32_t crc);
/* Unix time in seconds, as the events' wall_time. */
double ft_tb_now(void);

/* Creates dir when missing and a new event file in it (a file of the same name is replaced),
 * with its first two records. */
ft_status ft_tb_open(ft_tb **out, const char *dir);
/* One Event at `step` and `wall_time` holding the n scalars (their finite ones), flushed. */
ft_status ft_tb_write(ft_tb *tb, int64_t step, double wall_time, const ft_tb_scalar *v, int n);
/* Empties the directory's other ftune event files (*.tfevents.*.ftune; ones already empty are
 * removed): the one open now holds the whole history. Files of other writers stay. */
ft_status ft_tb_prune(const ft_tb *tb);
const char *ft_tb_path(const ft_tb *tb);
void ft_tb_close(ft_tb *tb);

/* wall[s] (s = 0..max_step) = the wall_time of step s's first summary record (its training line's,
 * before its evaluation's) in the directory's ftune event files, the newest file's where several
 * have it, NAN where none has. A missing directory, a torn or corrupt record (the rest of
 * that file is skipped) are not errors: the times are a nicety of a rewritten file. */
ft_status ft_tb_walls(const char *dir, int64_t max_step, double *wall);

#endif
