/* progress.c: see progress.h. */
#include "trainer/progress.h"

#include <math.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "kernels/log.h"

static double ft_mono(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void ft_progress_init(ft_progress *p, int64_t total) {
    p->tty = isatty(STDERR_FILENO);
    p->line_open = 0;
    p->total = total;
    p->last_print = 0;
    p->t_first = 0;
    p->first_step = -1;
}

void ft_format_duration(char *buf, int cap, double s) {
    if (!isfinite(s) || s < 0) s = 0;
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, (size_t)cap, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else snprintf(buf, (size_t)cap, "%ld:%02ld", t / 60, t % 60);
}

void ft_progress_update(ft_progress *p, const ft_progress_step *s) {
    /* ETA from the wall clock since this loop's first step, not from the steps' own seconds: the
     * evaluations and checkpoints between steps take time too (a soak of the demo at eval.every_steps
     * 10 and checkpoint.every_steps 5 spent 25-60% of its wall time there, and an ETA from the
     * training steps alone said half the time that was left: docs/perf.md). The mean over the whole
     * loop spreads each evaluation over the steps between two, where a short window would jump at
     * each one. */
    const double now = ft_mono();
    if (p->first_step < 0 || s->step <= p->first_step) p->first_step = s->step - 1, p->t_first = now - s->step_s;
    const double per_step = (now - p->t_first) / (double)(s->step - p->first_step);
    char eta[32], line[256];
    ft_format_duration(eta, sizeof eta, per_step * (double)(p->total - s->step));
    snprintf(line, sizeof line, "step %lld/%lld  loss %.4f%s  lr %.2e  tok/s %.0f  ETA %s  mem %.0f MB",
             (long long)s->step, (long long)p->total, s->loss, s->skipped ? " (skipped)" : "", s->lr, s->tok_s, eta,
             (double)s->mem_bytes / 1048576.0);
    if (p->tty) {
        if (ft_log_get_level() < FT_LOG_INFO) return;
        fprintf(stderr, "\r\033[K%s", line);
        fflush(stderr);
        p->line_open = 1;
        return;
    }
    int64_t every = p->total <= 200 ? 1 : p->total / 100;
    if (s->step == 1 || s->step == p->total || s->step % every == 0 || now - p->last_print >= 30) {
        ft_info("%s", line);
        p->last_print = now;
    }
}

void ft_progress_clear(ft_progress *p) {
    if (p->tty && p->line_open) {
        fprintf(stderr, "\r\033[K");
        fflush(stderr);
    }
    p->line_open = 0;
}
