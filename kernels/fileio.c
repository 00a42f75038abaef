/* fileio.c: see fileio.h. */
#include "kernels/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

ft_status ft_afile_open(ft_afile *af, const char *path) {
    memset(af, 0, sizeof *af);
    size_t n = strlen(path) + 32;
    af->path = strdup(path);
    af->tmp = malloc(n);
    if (!af->path || !af->tmp) {
        ft_afile_abort(af);
        return FT_ERR(FT_E_OOM, "out of memory opening %s", path);
    }
    snprintf(af->tmp, n, "%s.tmp.%ld", path, (long)getpid());
    af->f = fopen(af->tmp, "wb");
    if (!af->f) {
        ft_status st = FT_ERR(FT_E_IO, "%s: cannot create file: %s", path, strerror(errno));
        free(af->path);
        free(af->tmp);
        memset(af, 0, sizeof *af);
        return st;
    }
    return FT_OK;
}

ft_status ft_afile_write(ft_afile *af, const void *data, int64_t bytes) {
    if (af->failed) return FT_E_IO;
    if (bytes > 0 && fwrite(data, 1, (size_t)bytes, af->f) != (size_t)bytes) {
        af->failed = 1;
        return FT_ERR(FT_E_IO, "%s: write failed: %s", af->path, strerror(errno));
    }
    return FT_OK;
}

ft_status ft_fsync_dir_of(const char *path) {
    char *copy = strdup(path);
    if (!copy) return FT_ERR(FT_E_OOM, "out of memory");
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY);
    free(copy);
    if (fd < 0) return FT_OK; /* some filesystems refuse; the rename itself already happened */
    fsync(fd);
    close(fd);
    return FT_OK;
}

ft_status ft_afile_commit(ft_afile *af) {
    ft_status st = FT_OK;
    if (af->failed) {
        st = FT_E_IO;
    } else if (fflush(af->f) != 0 || fsync(fileno(af->f)) != 0) {
        st = FT_ERR(FT_E_IO, "%s: write failed: %s", af->path, strerror(errno));
    }
    if (fclose(af->f) != 0 && st == FT_OK) st = FT_ERR(FT_E_IO, "%s: write failed: %s", af->path, strerror(errno));
    af->f = NULL;
    if (st == FT_OK && rename(af->tmp, af->path) != 0)
        st = FT_ERR(FT_E_IO, "%s: cannot rename into place: %s", af->path, strerror(errno));
    if (st != FT_OK) {
        ft_afile_abort(af);
        return st;
    }
    st = ft_fsync_dir_of(af->path);
    free(af->path);
    free(af->tmp);
    memset(af, 0, sizeof *af);
    return st;
}

void ft_afile_abort(ft_afile *af) {
    if (af->f) fclose(af->f);
    if (af->tmp) unlink(af->tmp);
    free(af->path);
    free(af->tmp);
    memset(af, 0, sizeof *af);
}
