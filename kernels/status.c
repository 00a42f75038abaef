/* status.c: thread-local error message storage behind FT_ERR. */
#include "kernels/status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { FT_ERRBUF = 1024 };

typedef struct {
    char msg[FT_ERRBUF];
    char where[128];
    int sig;
} ft_errstate;

static _Thread_local ft_errstate ft_err_tls;

const char *ft_status_str(ft_status s) {
    switch (s) {
    case FT_OK: return "ok";
    case FT_E_ARG: return "invalid argument";
    case FT_E_IO: return "i/o error";
    case FT_E_FORMAT: return "malformed input";
    case FT_E_OOM: return "out of memory";
    case FT_E_UNSUPPORTED: return "unsupported";
    case FT_E_CUDA: return "cuda error";
    case FT_E_INTERRUPTED: return "interrupted";
    case FT_E_STOPPED: return "stopped by the guard";
    case FT_E_TIMEUP: return "stopped at the time limit";
    case FT_E_INTERNAL: return "internal error";
    }
    return "unknown status";
}

ft_status ft_error_set(ft_status s, const char *src_file, int src_line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ft_err_tls.msg, sizeof ft_err_tls.msg, fmt, ap);
    va_end(ap);
    const char *base = strrchr(src_file, '/');
    snprintf(ft_err_tls.where, sizeof ft_err_tls.where, "%s:%d", base ? base + 1 : src_file, src_line);
    ft_err_tls.sig = 0;
    return s;
}

ft_status ft_error_wrap(ft_status s, const char *fmt, ...) {
    char prefix[FT_ERRBUF], old[FT_ERRBUF];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, ft_err_tls.msg, sizeof old);
    /* prefix + ": " + old message, truncated to the buffer (the end of a long message goes first) */
    size_t np = strnlen(prefix, FT_ERRBUF - 3);
    memcpy(ft_err_tls.msg, prefix, np);
    ft_err_tls.msg[np] = ':', ft_err_tls.msg[np + 1] = ' ';
    size_t room = FT_ERRBUF - np - 3, no = strnlen(old, room);
    memcpy(ft_err_tls.msg + np + 2, old, no);
    ft_err_tls.msg[np + 2 + no] = 0;
    return s;
}

const char *ft_error_msg(void) { return ft_err_tls.msg; }
const char *ft_error_where(void) { return ft_err_tls.where; }
void ft_error_clear(void) { ft_err_tls.msg[0] = 0, ft_err_tls.where[0] = 0, ft_err_tls.sig = 0; }

void ft_assert_fail(const char *expr, const char *file, int line) {
    fprintf(stderr, "ftune: internal assertion failed: %s (%s:%d)\n", expr, file, line);
    abort();
}

void ft_error_note_signal(int sig) { ft_err_tls.sig = sig; }
int ft_error_signal(void) { return ft_err_tls.sig; }
