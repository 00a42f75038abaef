/* export_util.h: small file helpers shared by the export modules (paths, whole-file text I/O). */
#ifndef FT_EXPORT_UTIL_H
#define FT_EXPORT_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/status.h"

int ft_is_file(const char *path);
int ft_is_dir(const char *path);
/* Copies src into dst[cap]; FT_E_ARG when it does not fit. */
ft_status ft_copy_path(char *dst, size_t cap, const char *src);
/* Reads a whole file (NUL-terminated, malloc'd). FT_E_IO naming the file. len may be NULL. */
ft_status ft_read_text(const char *path, char **out, int64_t *len);
/* Writes text atomically (kernels/fileio.h). */
ft_status ft_write_text(const char *path, const char *text);
/* Copies a file atomically (dst may be a path in another directory). */
ft_status ft_copy_file(const char *src, const char *dst);

#endif
