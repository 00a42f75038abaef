/* log.h: leveled diagnostics on stderr. Stdout is for results (ids, losses, tables).
 * The level check happens before argument formatting (FT_LOG is a macro), so filtered
 * debug lines cost nothing. The level is per process (set once by main from -v/-q). */
#ifndef FT_LOG_H
#define FT_LOG_H

typedef enum { FT_LOG_ERROR = 0, FT_LOG_WARN, FT_LOG_INFO, FT_LOG_DEBUG } ft_log_level;

void ft_log_set_level(ft_log_level lvl);
ft_log_level ft_log_get_level(void);
void ft_log_write(ft_log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define FT_LOG(lvl, ...)                                  \
    do {                                                  \
        if ((lvl) <= ft_log_get_level())                  \
            ft_log_write((lvl), __VA_ARGS__);             \
    } while (0)
#define ft_warn(...) FT_LOG(FT_LOG_WARN, __VA_ARGS__)
#define ft_info(...) FT_LOG(FT_LOG_INFO, __VA_ARGS__)
#define ft_debug(...) FT_LOG(FT_LOG_DEBUG, __VA_ARGS__)

#endif
