/* mem.h: host allocation that reports failure as a status instead of exiting, and the
 * process's resident-memory readings used by tests and `ftune plan` comparisons. */
#ifndef FT_MEM_H
#define FT_MEM_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/status.h"

/* *out = malloc(bytes) (calloc for ft_calloc); FT_E_OOM with `what` in the message on failure. */
ft_status ft_malloc(void **out, size_t bytes, const char *what);
ft_status ft_calloc(void **out, size_t bytes, const char *what);
void ft_free(void *p);
/* *out = a malloc'd copy of s. */
ft_status ft_strdup(char **out, const char *s, const char *what);
/* Grows the array *arr of elem-byte items (capacity *cap) to hold at least `need` items,
 * doubling; contents are kept. */
ft_status ft_grow(void **arr, int64_t *cap, int64_t need, size_t elem, const char *what);

/* Current and peak resident set size of this process in bytes (from /proc/self/status). */
int64_t ft_rss_bytes(void);
int64_t ft_peak_rss_bytes(void);

#endif
