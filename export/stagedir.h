/* stagedir.h: an output directory of several files that replaces its old version as one (a PEFT
 * adapter's adapter_model.safetensors + adapter_config.json: new tensors beside an old config load
 * as an adapter with the wrong alpha, and nothing would say so).
 *
 * The files are written into a staging directory beside the output, ".<name>.tmp-<pid>-d" (the
 * temporary's name trainer/outguard.c removes on SIGINT/SIGTERM and, for a dead process, on the
 * next export into that output). The commit then puts it in the output's place in one step:
 *   - no output yet: rename(2);
 *   - an output directory: the files in it that the export does not write are hard-linked into
 *     the staging directory, and renameat2(RENAME_EXCHANGE) swaps the two; the old version, now
 *     under the staging name, is removed. A crash at any instant leaves the old pair or the new
 *     one under the output's name, never a mix.
 *     The replacement keeps the old directory's owner, group and permissions, and a file another
 *     process creates in the output while the export runs is moved into the new version, not
 *     removed with the old one.
 * Where that cannot work, the files are written in the output directory itself and renamed into
 * place one by one, `last` last (the window between two renames stays): an output that is a
 * symbolic link or a mount point, holds a subdirectory, a file system without hard links or
 * without RENAME_EXCHANGE, a directory this process may not write (it is refused there, as
 * before: the exchange would replace a write-protected adapter), or one whose owner the
 * replacement could not be given. */
#ifndef FT_STAGEDIR_H
#define FT_STAGEDIR_H

#include "kernels/status.h"

typedef enum ft_stagedir_mode {
    FT_STAGEDIR_NEW = 0,  /* the output does not exist: stage, then rename */
    FT_STAGEDIR_EXCHANGE, /* an output directory: stage, link the others, exchange */
    FT_STAGEDIR_INPLACE,  /* write in the output directory; the caller renames file by file */
} ft_stagedir_mode;

typedef struct ft_stagedir {
    char dir[4096];   /* the output directory, as given (trailing slashes dropped) */
    char stage[8256]; /* the staging directory (unused in FT_STAGEDIR_INPLACE) */
    ft_stagedir_mode mode;
    int staged;       /* the staging directory exists and is ours to remove */
    unsigned mode_bits; /* the old output's permissions, given to its replacement */
    unsigned uid, gid;  /* the old output's owner and group, given to its replacement */
} ft_stagedir;

/* Decides the mode for output directory `dir` and creates the staging directory (a leftover of
 * this same process id is removed first). FT_E_IO when `dir` exists and is not a directory. */
ft_status ft_stagedir_begin(ft_stagedir *sd, const char *dir);
/* Where the files go: the staging directory, or `dir` itself in FT_STAGEDIR_INPLACE. */
const char *ft_stagedir_path(const ft_stagedir *sd);
/* Puts the staged files in the output's place (module comment). `last` is the file that makes the
 * directory what it is (adapter_config.json): renamed last when the exchange has to fall back to
 * file-by-file renames. Nothing to do in FT_STAGEDIR_INPLACE. On failure the output is as it was
 * and the staging directory is removed. */
ft_status ft_stagedir_commit(ft_stagedir *sd, const char *last);
/* After a failed write into ft_stagedir_path: removes the staging directory and rewrites the
 * failure's message to name the output directory instead of the staging one. Returns st. */
ft_status ft_stagedir_fail(ft_stagedir *sd, ft_status st);

#endif
