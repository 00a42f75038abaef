/* metrics.h: the run's machine-readable record, OUTPUT_DIR/metrics.jsonl, and its picture,
 * OUTPUT_DIR/loss.svg.
 *
 * One JSON object per line, appended and flushed as the run goes:
 *   {"type":"train","step":12,"loss":2.314,"lr":0.0002,"grad_norm":0.53,"targets":511,
 *    "tokens":512,"epoch":0.41,"skipped":null,
 *    "wall":{"elapsed_s":3.2,"step_s":0.11,"tok_s":4650,"mem_mb":12.5,"rss_mb":80.1}}
 *   {"type":"eval","step":20,"val_loss":2.1,"val_ppl":8.17,"val_targets":1234,"wall":{...}}
 *   {"type":"rollback","step":8,"diverged_at":31,"rollback":1,"lr":0.003}  (training.max_rollbacks:
 *    the run went back to step 8's checkpoint with that learning rate)
 * A skipped step has "skipped":"nonfinite" or "spike" (and "z"); a non-finite loss is null.
 * Everything outside "wall" is a deterministic function of the recipe and the data, so a run
 * resumed from a checkpoint writes the same lines (outside "wall") as an uninterrupted one: on
 * resume the file is cut back to the checkpoint's step (lines of later steps, and a torn last
 * line, are dropped) before appending.
 *
 * With a TensorBoard directory (training.tensorboard), the same train and eval lines also go to an
 * event file there (trainer/tboard.h): train/loss, train/lr, train/grad_norm, train/tokens_per_s,
 * train/mem_mb and eval/loss, eval/ppl at the optimizer step. On resume the event file is written
 * anew from the kept lines and the older ones removed (why: trainer/tboard.c), so TensorBoard shows
 * every step once with the values metrics.jsonl has. It is a log: a failure to write it is a
 * warning, and the events stop for the rest of the process; metrics.jsonl goes on. */
#ifndef FT_METRICS_H
#define FT_METRICS_H

#include <stdint.h>

#include "kernels/status.h"

typedef struct ft_metrics ft_metrics;

typedef struct ft_metrics_train {
    int64_t step;          /* 1-based */
    double loss, lr, grad_norm;
    int64_t targets, tokens;
    double epoch;
    const char *skipped;   /* NULL, "nonfinite" or "spike" */
    double z;              /* the guard's z-score (written when skipped) */
    /* wall-clock and machine dependent */
    double elapsed_s, step_s, tok_s;
    int64_t mem_bytes, rss_bytes;
} ft_metrics_train;

/* resume_step < 0: a new file (an existing one is replaced). Otherwise keeps the lines of steps
 * <= resume_step and reloads their history for the chart. */
ft_status ft_metrics_open(ft_metrics **out, const char *path, int64_t resume_step);
/* The same for a checkpoint that counts `rollbacks` (its guard record): rollback lines numbered
 * above it go too, a rollback's line written before a kill took its checkpoint. */
ft_status ft_metrics_open_at(ft_metrics **out, const char *path, int64_t resume_step, int64_t rollbacks);
/* ft_metrics_open_at with TensorBoard events in tb_dir (NULL: none). */
ft_status ft_metrics_open_tb(ft_metrics **out, const char *path, const char *tb_dir, int64_t resume_step,
                             int64_t rollbacks);
void ft_metrics_close(ft_metrics *m);
/* Append a line. A write failure is returned (the caller may carry on: the file is a log). */
ft_status ft_metrics_train_line(ft_metrics *m, const ft_metrics_train *t);
ft_status ft_metrics_eval_line(ft_metrics *m, int64_t step, double val_loss, int64_t val_targets, double elapsed_s);
/* A rollback to `step`'s checkpoint from a divergence detected at `diverged_at`, the n-th, at learning rate lr. */
ft_status ft_metrics_rollback_line(ft_metrics *m, int64_t step, int64_t diverged_at, int64_t n, double lr);
/* Last validation loss recorded (NaN if none). */
double ft_metrics_last_eval(const ft_metrics *m);
/* Writes the loss chart: training loss (raw and smoothed) and validation loss against step. */
ft_status ft_metrics_plot(const ft_metrics *m, const char *svg_path, const char *title, int64_t total_steps);

#endif
