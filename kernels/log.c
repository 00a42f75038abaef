/* log.c: the process-wide log level (the one deliberate piece of process state: a logger
 * configured once by main, read-only afterwards). */
#include "kernels/log.h"

#include <stdarg.h>
#include <stdio.h>

static ft_log_level ft_log_level_cur = FT_LOG_INFO;

void ft_log_set_level(ft_log_level lvl) { ft_log_level_cur = lvl; }
ft_log_level ft_log_get_level(void) { return ft_log_level_cur; }

void ft_log_write(ft_log_level lvl, const char *fmt, ...) {
    static const char *tag[] = {"error: ", "warning: ", "", "debug: "};
    va_list ap;
    va_start(ap, fmt);
    fputs("ftune: ", stderr);
    fputs(tag[lvl], stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}
