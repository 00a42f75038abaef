/* fileio.h: whole-file reads and atomic output files.
 *
 * ft_read_file is the one "read a whole file into memory" of ftune (configs, recipes, indexes,
 * shards, templates). Everything ftune writes goes to "<path>.tmp.<pid>" in the same directory, is
 * flushed and fsync'd, renamed over <path>, and the directory is fsync'd; on any failure (a full
 * disk included) the temporary file is removed and <path> is left as it was. */
#ifndef FT_FILEIO_H
#define FT_FILEIO_H

#include <stdint.h>
#include <stdio.h>

#include "kernels/status.h"

typedef struct ft_afile {
    FILE *f;
    char *path;   /* final path */
    char *tmp;    /* temporary path */
    int failed;
} ft_afile;

/* Reads all of `path` into *out (malloc'd; free()) with a NUL after the last byte, so text can be
 * used as a C string; binary content is fine (*len counts the bytes, not the NUL). len may be NULL.
 * Reads to end of file, so pipes and /proc files work too.
 *   max_bytes > 0: a larger file is FT_E_FORMAT "PATH: N bytes exceeds the M-byte limit"
 *                  (checked before allocating); 0: no limit.
 *   missing != NULL: a file that does not exist (ENOENT, ENOTDIR) is not an error: *missing = 1,
 *                  *out = NULL, FT_OK. Otherwise *missing = 0.
 * Errors: FT_E_IO "PATH: cannot open: <strerror>" (a directory included), FT_E_IO
 * "PATH: read failed: <strerror>", FT_E_OOM. On failure *out is NULL. */
ft_status ft_read_file(const char *path, int64_t max_bytes, char **out, int64_t *len, int *missing);

ft_status ft_afile_open(ft_afile *af, const char *path);
/* fwrite that records failure (ENOSPC etc.) with the final path in the message. */
ft_status ft_afile_write(ft_afile *af, const void *data, int64_t bytes);
/* Flush, fsync and close the temporary file without renaming it, so that several files can be
 * complete on disk before any replaces its old version (a PEFT directory's pair: export/adapter.c).
 * On failure the temporary is removed and af freed. A second call does nothing. */
ft_status ft_afile_sync(ft_afile *af);
/* ft_afile_sync (unless done), rename, fsync the directory. Frees af. */
ft_status ft_afile_commit(ft_afile *af);
/* Removes the temporary file. Frees af. Safe to call after a failed commit or twice. */
void ft_afile_abort(ft_afile *af);

/* fsync the directory holding `path` (after a rename into it). */
ft_status ft_fsync_dir_of(const char *path);

#endif
