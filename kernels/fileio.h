/* fileio.h: atomic output files. Everything ftune writes goes to "<path>.tmp.<pid>" in the same
 * directory, is flushed and fsync'd, renamed over <path>, and the directory is fsync'd; on any
 * failure (a full disk included) the temporary file is removed and <path> is left as it was. */
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

ft_status ft_afile_open(ft_afile *af, const char *path);
/* fwrite that records failure (ENOSPC etc.) with the final path in the message. */
ft_status ft_afile_write(ft_afile *af, const void *data, int64_t bytes);
/* Flush, fsync, rename, fsync the directory. Frees af. */
ft_status ft_afile_commit(ft_afile *af);
/* Removes the temporary file. Frees af. Safe to call after a failed commit or twice. */
void ft_afile_abort(ft_afile *af);

/* fsync the directory holding `path` (after a rename into it). */
ft_status ft_fsync_dir_of(const char *path);

#endif
