/* run_impl.h: the state of one recipe run, shared by run.c (set-up and loop), run_ckpt.c
 * (checkpoints and resume) and run_eval.c (evaluation, samples, final adapter). Private to
 * those three files. */
#ifndef FT_RUN_IMPL_H
#define FT_RUN_IMPL_H

#include <stdint.h>

#include "trainer/checkpoint.h"
#include "trainer/dataset.h"
#include "trainer/guard.h"
#include "trainer/metrics.h"
#include "trainer/model.h"
#include "trainer/plan.h"
#include "trainer/progress.h"
#include "trainer/run.h"
#include "trainer/train.h"

#define FT_PATH_MAX 4096

typedef struct ft_run_state {
    const ft_recipe *r;
    const ft_run_opts *o;
    char dir[FT_PATH_MAX], ckpt_dir[FT_PATH_MAX], samples_dir[FT_PATH_MAX], final_dir[FT_PATH_MAX];
    char best_dir[FT_PATH_MAX];
    char metrics_path[FT_PATH_MAX], svg_path[FT_PATH_MAX];
    char tb_dir[FT_PATH_MAX]; /* OUTPUT_DIR/tensorboard (training.tensorboard) */
    int lock_fd;

    ft_dataset *ds;
    ft_backend *be;
    ft_plan *plan;            /* the run's plan on be; be's out-of-memory explanation reads it */
    ft_model *model;
    ft_lora *lora;
    ft_adamw *opt;
    ft_schedule sched;
    ft_step_ctx ctx;
    ft_rows *mb;              /* [K] micro-batch buffers of the current step */
    int64_t K;
    float *logits;            /* [V] generation scratch */

    ft_metrics *metrics;
    ft_progress prog;
    ft_guard guard;
    ft_guard_verdict verdict; /* of the current step */
    double z;

    int64_t step;             /* optimizer steps completed */
    int64_t total;            /* planned steps */
    int64_t tokens_seen;
    double elapsed_base;      /* training seconds before this process (from the checkpoint) */
    double t_start;           /* monotonic time this process started training */
    int64_t last_ckpt_step;   /* -1: none written or loaded */
    double last_ckpt_time;
    int64_t last_eval_step;
    ft_val_best val;          /* the lowest validation loss so far; best_dir holds its adapter (eval.keep_best) */
    char last_ckpt_path[FT_PATH_MAX + 32];

    int64_t rollback_step;    /* >= 0: the loss diverged and the run goes back to this step's checkpoint
                               * (training.max_rollbacks; ft_run_rollback) */

    /* training.max_hours (run_limit.c): this process's clock and the slowest of what it timed */
    double t_proc;            /* monotonic time ft_run began */
    long long t_wall;         /* and the wall clock's, seconds since the epoch (job.json) */
    double limit_fake_s;      /* FT_FAULT_STEP_SECONDS: seconds each step adds to the limit's clock (test hook) */
    double limit_fake_total;  /* those added so far */
    int64_t steps_timed;      /* steps this process ran */
    double step_s_max, eval_s_max, ckpt_s_max; /* the slowest step, evaluation and checkpoint it timed */

    int64_t fault_kill_step;  /* FT_FAULT_KILL_AFTER_STEP (0: off); test hook, see run.c */
    int64_t fault_term_step;  /* FT_FAULT_TERM_AFTER_STEP (0: off) */
} ft_run_state;

double ft_run_now(void);
double ft_run_elapsed(const ft_run_state *R);
/* The directory of the run's TensorBoard events, NULL when training.tensorboard is off. */
static inline const char *ft_run_tb_dir(const ft_run_state *R) { return R->r->training.tensorboard ? R->tb_dir : NULL; }

/* The loss chart (loss.svg) from metrics.jsonl; a failure is a warning. */
void ft_run_plot(ft_run_state *R);

/* run_limit.c: training.max_hours */
/* Reads the FT_FAULT_STEP_SECONDS test hook; starts the limit's clock at ft_run's start. */
ft_status ft_run_limit_init(ft_run_state *R);
/* OUTPUT_DIR/job.json: when this job started and its training.max_hours, for `ftune status` while it
 * runs (removed without a limit, so an older job's never stands); a failure is a warning. */
void ft_run_limit_note(const ft_run_state *R);
/* A step ran in s seconds (its data, the step, its metrics line): its time on the limit's clock. */
void ft_run_limit_step(ft_run_state *R, double s);
/* 1: the next step, with its evaluation if one is due and the checkpoint the stop writes, would end
 * past training.max_hours. */
int ft_run_limit_reached(const ft_run_state *R);
/* Stops at the limit: a checkpoint of the current step (unless there is one), and FT_E_TIMEUP
 * with the line that says how to go on. */
ft_status ft_run_limit_stop(ft_run_state *R);

/* run_ckpt.c */
ft_status ft_run_save_checkpoint(ft_run_state *R);
/* A test hook (docs/design.md): the integer environment variable `name` (>= min) into *value with
 * *set 1 and a warning that it is armed (`what` it does); unset or empty: *set 0. */
ft_status ft_run_hook(const char *name, int64_t min, const char *what, int64_t *value, int *set);
/* Before any weight is read: what the run will still write under its directory (the checkpoints past
 * those on disk, the final adapter, the exports: R->plan's disk figures) against what the filesystem
 * has free. A run whose last outputs cannot be written fails at once, not at its end. */
ft_status ft_run_check_disk(const ft_run_state *R);
/* Picks and loads the checkpoint named by R->o->resume; sets R->step etc., and the learning rate its
 * rollbacks left (training.rollback_lr_factor^rollbacks). */
ft_status ft_run_resume(ft_run_state *R);
/* The loss diverged: back to R->rollback_step's checkpoint as a resume would go (later checkpoints
 * set aside, metrics.jsonl cut there, best/ checked), one more rollback on the learning rate, and a
 * checkpoint of that state at once, so a kill from here on resumes with it. */
ft_status ft_run_rollback(ft_run_state *R);

/* run_best.c */
/* An evaluation's loss: a new lowest one is kept in best_dir (eval.keep_best), else it counts
 * toward eval.patience. */
ft_status ft_run_track_best(ft_run_state *R, double loss);
/* At the start: best_dir must hold the adapter of the checkpoint's lowest loss. One written after
 * the checkpoint (an abandoned future), half-written, or of an earlier run is moved aside. A
 * missing or moved-aside one is written again when the checkpoint is the lowest loss's own step;
 * otherwise the record (eval.keep_best) starts over, unless the run has ended (steps, patience). */
void ft_run_check_best(ft_run_state *R);
/* eval.patience evaluations in a row without a new lowest validation loss. */
int ft_run_patience_out(const ft_run_state *R);

/* run_eval.c */
/* best/ and final/'s adapter_config.json (PEFT). */
ft_status ft_run_write_adapter_config(ft_run_state *R, const char *path);
/* Validation loss and samples, and the lowest loss's tracking (run_best.c). */
ft_status ft_run_eval(ft_run_state *R);
/* final/: the last step's adapter; then the exports of export.formats / export.merged, made from
 * final/ or best/ (export.from). */
ft_status ft_run_write_final(ft_run_state *R);

#endif
