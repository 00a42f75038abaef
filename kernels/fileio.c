/* fileio.c: see fileio.h. */
#include "kernels/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kernels/mem.h"

ft_status ft_read_file(const char *path, int64_t max_bytes, char **out, int64_t *len, int *missing) {
    *out = NULL;
    if (len) *len = 0;
    if (missing) *missing = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        if (missing && (e == ENOENT || e == ENOTDIR)) {
            *missing = 1;
            return FT_OK;
        }
        return FT_ERR(FT_E_IO, "%s: cannot open: %s", path, strerror(e));
    }
    struct stat sb;
    ft_status st = FT_OK;
    char *buf = NULL;
    int64_t n = 0, cap = 0;
    if (fstat(fd, &sb) != 0) {
        st = FT_ERR(FT_E_IO, "%s: cannot open: %s", path, strerror(errno));
    } else if (S_ISDIR(sb.st_mode)) {
        st = FT_ERR(FT_E_IO, "%s: cannot open: %s", path, strerror(EISDIR));
    } else if (max_bytes > 0 && S_ISREG(sb.st_mode) && (int64_t)sb.st_size > max_bytes) {
        st = FT_ERR(FT_E_FORMAT, "%s: %lld bytes exceeds the %lld-byte limit", path, (long long)sb.st_size,
                    (long long)max_bytes);
    } else {
        /* The size from fstat sizes the buffer; reading goes on to end of file (files in /proc
         * report 0, a pipe reports nothing), growing only when the file is longer than that. */
        cap = (S_ISREG(sb.st_mode) ? (int64_t)sb.st_size : 0) + 1;
        if (cap < 4096 && !S_ISREG(sb.st_mode)) cap = 4096;
        st = ft_malloc((void **)&buf, (size_t)cap, path);
    }
    while (st == FT_OK) {
        if (n + 1 >= cap) { /* full: probe for end of file before growing */
            char probe[4096];
            ssize_t r = read(fd, probe, sizeof probe);
            if (r < 0 && errno == EINTR) continue;
            if (r < 0) {
                st = FT_ERR(FT_E_IO, "%s: read failed: %s", path, strerror(errno));
                break;
            }
            if (r == 0) break;
            if (max_bytes > 0 && n + r > max_bytes) {
                st = FT_ERR(FT_E_FORMAT, "%s: exceeds the %lld-byte limit", path, (long long)max_bytes);
                break;
            }
            st = ft_grow((void **)&buf, &cap, n + r + 1, 1, path);
            if (st != FT_OK) break;
            memcpy(buf + n, probe, (size_t)r);
            n += r;
            continue;
        }
        ssize_t r = read(fd, buf + n, (size_t)(cap - 1 - n));
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            st = FT_ERR(FT_E_IO, "%s: read failed: %s", path, strerror(errno));
            break;
        }
        if (r == 0) break;
        n += r;
        if (max_bytes > 0 && n > max_bytes) {
            st = FT_ERR(FT_E_FORMAT, "%s: exceeds the %lld-byte limit", path, (long long)max_bytes);
            break;
        }
    }
    close(fd);
    if (st != FT_OK) {
        free(buf);
        return st;
    }
    buf[n] = 0;
    *out = buf;
    if (len) *len = n;
    return FT_OK;
}

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

ft_status ft_afile_sync(ft_afile *af) {
    if (!af->tmp) return FT_ERR(FT_E_ARG, "atomic file: sync after abort"); /* a caller's bug, not an I/O error */
    if (!af->f) return FT_OK; /* synced already */
    ft_status st = FT_OK;
    if (af->failed) {
        st = FT_E_IO; /* ft_afile_write's message stands */
    } else if (fflush(af->f) != 0 || fsync(fileno(af->f)) != 0) {
        st = FT_ERR(FT_E_IO, "%s: write failed: %s", af->path, strerror(errno));
    }
    if (fclose(af->f) != 0 && st == FT_OK) st = FT_ERR(FT_E_IO, "%s: write failed: %s", af->path, strerror(errno));
    af->f = NULL;
    if (st != FT_OK) ft_afile_abort(af);
    return st;
}

ft_status ft_afile_commit(ft_afile *af) {
    FT_TRY(ft_afile_sync(af));
    if (rename(af->tmp, af->path) != 0) {
        ft_status st = FT_ERR(FT_E_IO, "%s: cannot rename into place: %s", af->path, strerror(errno));
        ft_afile_abort(af);
        return st;
    }
    ft_status st = ft_fsync_dir_of(af->path);
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
