/* test_run_progress.c: the step line's ETA (trainer/progress.h) counts the time between steps.
 *   A run spends part of its wall clock outside the training steps: evaluations, samples, the
 *   loss chart, checkpoints. The ETA used to be the smoothed training-step seconds times the
 *   steps left, so it left all of that out (a soak of the demo at eval.every_steps 10 and
 *   checkpoint.every_steps 5 had it at half the time that was left: docs/perf.md). Here each
 *   step reports 1 ms of training while 40 ms pass between steps; after 10 of 200 steps the ETA
 *   must be about 190 x 40 ms = 7.6 s, where the old one said 0:00. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kernels/log.h"
#include "tests/harness.h"
#include "trainer/progress.h"

static void sleep_ms(long ms) {
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

int main(void) {
    char path[4200];
    snprintf(path, sizeof path, "%s/progress.log", ft_test_tmpdir());
    fflush(stderr);
    const int saved = dup(STDERR_FILENO);
    FILE *log = fopen(path, "w+");
    FT_CHECK(saved >= 0 && log, "redirect stderr to %s", path);
    if (!log || saved < 0) return ft_test_finish();
    dup2(fileno(log), STDERR_FILENO); /* not a terminal: one plain line per step for a run of <= 200 steps */
    ft_log_set_level(FT_LOG_INFO);
    ft_progress p;
    ft_progress_init(&p, 200);
    for (int64_t s = 1; s <= 10; s++) {
        sleep_ms(40); /* the step's 1 ms and an evaluation's or a checkpoint's time after it */
        ft_progress_step st = {.step = s, .loss = 1.0, .lr = 1e-4, .tok_s = 1000, .step_s = 0.001, .mem_bytes = 0};
        ft_progress_update(&p, &st);
    }
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);

    char line[512], last[512] = "";
    rewind(log);
    while (fgets(line, sizeof line, log))
        if (strstr(line, "step 10/200")) snprintf(last, sizeof last, "%s", line);
    fclose(log);
    int m = -1, sec = -1;
    const char *eta = strstr(last, "ETA ");
    FT_CHECK(eta && sscanf(eta, "ETA %d:%d", &m, &sec) == 2, "step 10's line has an ETA: '%s'", last);
    const int eta_s = 60 * m + sec;
    /* 7.6 s expected; the sleeps only ever run long, so the lower bound is firm and the upper
     * one leaves a loaded machine room */
    FT_CHECK(eta_s >= 7 && eta_s <= 30, "ETA at step 10 of 200 with 40 ms between steps: %d s (want ~8 s, "
             "the wall clock between steps; the training steps alone would give 0 s)", eta_s);
    return ft_test_finish();
}
