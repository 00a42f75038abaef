/* export_util.h: small file helpers shared by the export modules (paths, atomic text writes, copies;
 * reading a whole file is ft_read_file in kernels/fileio.h). */
#ifndef FT_EXPORT_UTIL_H
#define FT_EXPORT_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/status.h"

int ft_is_file(const char *path);
int ft_is_dir(const char *path);
/* Copies src into dst[cap]; FT_E_ARG when it does not fit. */
ft_status ft_copy_path(char *dst, size_t cap, const char *src);
/* Writes len bytes atomically (kernels/fileio.h: temporary, fsync, rename). */
ft_status ft_write_bytes(const char *path, const void *data, size_t len);
/* ft_write_bytes of a NUL-terminated text. */
ft_status ft_write_text(const char *path, const char *text);
/* Copies a file atomically (dst may be a path in another directory). */
ft_status ft_copy_file(const char *src, const char *dst);
/* Allocates `bytes` of disk for the file open at fd (named `path` in messages) before it is written,
 * so that a full disk or quota fails at once with what is needed and free rather than after an
 * hour of merging: FT_E_IO "PATH: write failed: <strerror> (it needs N GiB, M GiB free)". The file
 * size is unchanged (FALLOC_FL_KEEP_SIZE); file systems without fallocate are not an error. */
ft_status ft_reserve_file(int fd, const char *path, int64_t bytes);

#endif
