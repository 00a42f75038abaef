/* export_util.c: see export_util.h. */
#include "export/export_util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include "kernels/fileio.h"

int ft_is_file(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

int ft_is_dir(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

ft_status ft_copy_path(char *dst, size_t cap, const char *src) {
    size_t n = strlen(src);
    if (n >= cap) return FT_ERR(FT_E_ARG, "path too long: %s", src);
    memcpy(dst, src, n + 1);
    return FT_OK;
}

ft_status ft_write_bytes(const char *path, const void *data, size_t len) {
    ft_afile af;
    FT_TRY(ft_afile_open(&af, path));
    ft_status st = ft_afile_write(&af, data, (int64_t)len);
    if (st != FT_OK) {
        ft_afile_abort(&af);
        return st;
    }
    return ft_afile_commit(&af);
}

ft_status ft_write_text(const char *path, const char *text) { return ft_write_bytes(path, text, strlen(text)); }

ft_status ft_copy_file(const char *src, const char *dst) {
    char *buf = NULL;
    int64_t n = 0;
    FT_TRY(ft_read_file(src, 0, &buf, &n, NULL));
    ft_afile af;
    ft_status st = ft_afile_open(&af, dst);
    if (st == FT_OK) {
        st = ft_afile_write(&af, buf, n);
        if (st == FT_OK) st = ft_afile_commit(&af);
        else ft_afile_abort(&af);
    }
    free(buf);
    return st;
}

ft_status ft_reserve_file(int fd, const char *path, int64_t bytes) {
    if (bytes <= 0 || fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, (off_t)bytes) == 0) return FT_OK;
    int err = errno;
    if (err != ENOSPC && err != EDQUOT && err != EFBIG) return FT_OK; /* no fallocate here: writes will tell */
    struct statvfs v;
    double fr = fstatvfs(fd, &v) == 0 ? (double)v.f_bavail * (double)v.f_frsize : -1;
    /* MiB below a GiB: "it needs 0.00 GiB, 0.00 GiB free" said nothing for a small model */
    const int gib = (double)bytes >= (double)(1 << 30);
    const double unit = gib ? (double)(1 << 30) : (double)(1 << 20);
    return FT_ERR(FT_E_IO, "%s: write failed: %s (it needs %.2f %s, %.2f %s free)", path, strerror(err),
                  (double)bytes / unit, gib ? "GiB" : "MiB", fr / unit, gib ? "GiB" : "MiB");
}
