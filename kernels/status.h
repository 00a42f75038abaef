/* status.h: the one error convention of ftune.
 *
 * Every library function that can fail returns an ft_status. The failure site records a
 * one-line, user-facing message (naming the file or key and the problem) with FT_ERR; callers
 * propagate with FT_TRY. Only main() turns a status into an exit code. The message lives in
 * thread-local storage, so there is no shared mutable global. */
#ifndef FT_STATUS_H
#define FT_STATUS_H

#include <stdarg.h>

typedef enum ft_status {
    FT_OK = 0,
    FT_E_ARG,          /* bad user argument, option or recipe value */
    FT_E_IO,           /* open/read/write/fsync/rename failed, disk full */
    FT_E_FORMAT,       /* malformed file: safetensors, GGUF, JSON, YAML, shard, checkpoint */
    FT_E_OOM,          /* allocation failed */
    FT_E_UNSUPPORTED,  /* valid input we do not handle: architecture, dtype, rope type */
    FT_E_CUDA,         /* CUDA / cuBLAS / cuDNN failure */
    FT_E_INTERRUPTED,  /* SIGINT/SIGTERM honoured (ft_error_signal says which) */
    FT_E_STOPPED,      /* training stopped by its guard: the loss diverged, too many skipped steps */
    FT_E_TIMEUP,       /* training stopped at its time limit (training.max_hours), a checkpoint written */
    FT_E_INTERNAL,     /* broken invariant */
} ft_status;

/* Short name of a status ("io error", ...). */
const char *ft_status_str(ft_status s);

/* Records a printf-style message for the current thread and returns s. Use FT_ERR. */
ft_status ft_error_set(ft_status s, const char *src_file, int src_line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The last message recorded on this thread ("" if none). */
const char *ft_error_msg(void);
/* Source location of the last message ("file.c:123"), for debug logs. */
const char *ft_error_where(void);
/* Prefix the current message with more context: "ctx: <old message>". Returns s. */
ft_status ft_error_wrap(ft_status s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void ft_error_clear(void);
/* The signal behind an FT_E_INTERRUPTED status: recorded after its FT_ERR (which resets it to 0),
 * so that main can end the process by the same signal, as the shell and a scheduler expect. */
void ft_error_note_signal(int sig);
int ft_error_signal(void);

#define FT_ERR(status, ...) ft_error_set((status), __FILE__, __LINE__, __VA_ARGS__)

/* Propagate a failure: FT_TRY(ft_foo(...)); */
#define FT_TRY(expr)                        \
    do {                                    \
        ft_status ft_try_s_ = (expr);       \
        if (ft_try_s_ != FT_OK)             \
            return ft_try_s_;               \
    } while (0)

/* Same, but jump to a cleanup label with the status stored in `st`. */
#define FT_CHECK_GOTO(st, expr, label)      \
    do {                                    \
        (st) = (expr);                      \
        if ((st) != FT_OK)                  \
            goto label;                     \
    } while (0)

/* Invariant check for programming errors only (never for user input): aborts with location. */
#define FT_ASSERT(cond) ((cond) ? (void)0 : ft_assert_fail(#cond, __FILE__, __LINE__))
void ft_assert_fail(const char *expr, const char *file, int line) __attribute__((noreturn));

#endif
