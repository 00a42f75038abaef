/* progress.h: the human-facing step line on stderr. On a terminal one line is rewritten in
 * place ("\r"): "step 12/60  loss 2.314  lr 2.0e-04  tok/s 1234  ETA 0:45  mem 120 MB"; other
 * log lines clear it first (ft_progress_clear) and it is redrawn on the next step. When stderr
 * is not a terminal (a log file, a pipe, nohup) the same content goes out as plain log lines:
 * every step for short runs, else about every 1% of the run or every 30 s. */
#ifndef FT_PROGRESS_H
#define FT_PROGRESS_H

#include <stdint.h>

typedef struct ft_progress {
    int tty;             /* stderr is a terminal */
    int line_open;       /* a \r line is on screen */
    int64_t total;       /* planned steps */
    double last_print;   /* monotonic seconds of the last plain line */
    double t_first;      /* monotonic seconds when step first_step ended (the ETA's origin) */
    int64_t first_step;  /* the step before this loop's first update; -1 before it */
} ft_progress;

typedef struct ft_progress_step {
    int64_t step;        /* 1-based */
    double loss, lr, tok_s;
    double step_s;       /* this step's training seconds (the ETA takes the wall clock instead) */
    int64_t mem_bytes;
    int skipped;
} ft_progress_step;

void ft_progress_init(ft_progress *p, int64_t total);
void ft_progress_update(ft_progress *p, const ft_progress_step *s);
/* Erases the in-place line (terminal only) so a log line can be printed. */
void ft_progress_clear(ft_progress *p);
/* "1:02:03" or "2:03" into buf. */
void ft_format_duration(char *buf, int cap, double seconds);

#endif
