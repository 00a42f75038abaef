/* run_limit.c: training.max_hours, a time limit on one `ftune train` process.
 *
 * A scheduler's job ends at its time limit (SLURM's --time sends SIGTERM and, 30 s later by
 * default, SIGKILL: a 70B step alone takes about 27 s on an H100), and a run started at night may
 * have to give the GPU back at 8 in the morning. So the run stops by itself first: before each step
 * it asks whether that step, the evaluation due after it, and the checkpoint the stop writes would
 * end past the limit, by the slowest of each this process has timed (not the mean: the stop must
 * come in time, and a step that ran slower once may again). Then it writes the checkpoint and ends
 * with FT_E_TIMEUP (exit 75); `--resume auto` goes on from there, bit for bit as any resume.
 *
 * Before the first step it has timed, the step is the plan's (ft_plan step_s), so a job whose
 * loading left too little time stops before it (exit 2: a retry would never train) instead of being
 * killed in its first step or evaluation.
 *
 * The clock starts at ft_run's start, so that preparing the data and loading the weights count, as
 * they do against a scheduler's limit. The final exports (export.merged: minutes for a 70B) are
 * not predicted: a job killed while writing them leaves nothing half-written, and a requeue with
 * --resume auto writes them again without training (docs/recipes.md, "Unattended runs").
 *
 * The test hook FT_FAULT_STEP_SECONDS=S (docs/design.md) adds S seconds to each step on this clock
 * alone, so tests/cli/run_timelimit.sh stops runs at a known step on any machine. */
#include "trainer/run_impl.h"

#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "export/export_util.h"
#include "kernels/log.h"

ft_status ft_run_limit_init(ft_run_state *R) {
    R->t_proc = ft_run_now();
    R->t_wall = (long long)time(NULL);
    int64_t s = 0;
    int set = 0;
    FT_TRY(ft_run_hook("FT_FAULT_STEP_SECONDS", 1, "each step counts that many seconds more against training.max_hours",
                       &s, &set));
    R->limit_fake_s = set ? (double)s : 0.0;
    return FT_OK;
}

void ft_run_limit_note(const ft_run_state *R) {
    char path[FT_PATH_MAX + 16], text[160];
    snprintf(path, sizeof path, "%s/job.json", R->dir);
    if (!(R->r->training.max_hours > 0)) {
        unlink(path);
        return;
    }
    snprintf(text, sizeof text, "{\"started\": %lld, \"max_hours\": %.17g, \"pid\": %lld}\n", R->t_wall,
             R->r->training.max_hours, (long long)getpid());
    if (ft_write_text(path, text) != FT_OK) {
        ft_warn("%s: not written (%s)", path, ft_error_msg());
        ft_error_clear();
    }
}

void ft_run_limit_step(ft_run_state *R, double s) {
    R->steps_timed++;
    R->limit_fake_total += R->limit_fake_s;
    s += R->limit_fake_s;
    if (s > R->step_s_max) R->step_s_max = s;
}

/* "40 s", "12.5 min", "11.30 h" */
static void ft_limit_fmt(char *buf, size_t cap, double s) {
    if (s < 120) snprintf(buf, cap, "%.0f s", s);
    else if (s < 7200) snprintf(buf, cap, "%.1f min", s / 60);
    else snprintf(buf, cap, "%.2f h", s / 3600);
}

static double ft_limit_used(const ft_run_state *R) { return ft_run_now() - R->t_proc + R->limit_fake_total; }

/* The checkpoint the stop writes: the slowest timed, else the plan's size at 200 MB/s (a slow
 * network filesystem; a local NVMe disk writes a 70B's 2.3 GiB in a few seconds). */
static double ft_limit_ckpt_s(const ft_run_state *R) {
    if (R->ckpt_s_max > 0) return R->ckpt_s_max;
    return R->plan && R->plan->disk_ckpt > 0 ? (double)R->plan->disk_ckpt / 200e6 : 0.0;
}

/* The evaluation after step `next`, if one is due there: the slowest timed, else the plan's. */
static double ft_limit_eval_s(const ft_run_state *R, int64_t next) {
    const int64_t every = R->r->eval.every_steps;
    if (next != R->total && !(every > 0 && next % every == 0)) return 0.0;
    if (R->eval_s_max > 0) return R->eval_s_max;
    return R->plan ? R->plan->eval_valid_s + R->plan->eval_gen_s : 0.0;
}

/* The next step: the slowest this process timed, else the plan's time of an optimizer step (within a
 * few percent on a GPU it has rates for). */
static double ft_limit_step_s(const ft_run_state *R) {
    if (R->steps_timed > 0) return R->step_s_max;
    return (R->plan && R->plan->step_s > 0 ? R->plan->step_s : 0.0) + R->limit_fake_s;
}

int ft_run_limit_reached(const ft_run_state *R) {
    const double limit = R->r->training.max_hours * 3600.0;
    if (!(limit > 0)) return 0;
    return ft_limit_used(R) + ft_limit_step_s(R) + ft_limit_eval_s(R, R->step + 1) + ft_limit_ckpt_s(R) > limit;
}

ft_status ft_run_limit_stop(ft_run_state *R) {
    const ft_recipe *r = R->r;
    const char *recipe = R->o->recipe_path ? R->o->recipe_path : "RECIPE";
    char used[32], step[32], rest[128] = "";
    ft_limit_fmt(used, sizeof used, ft_limit_used(R));
    ft_progress_clear(&R->prog);
    ft_limit_fmt(step, sizeof step, ft_limit_step_s(R));
    if (R->steps_timed == 0) /* exit 2, not 75: a requeue loop would start it again and again for nothing */
        return FT_ERR(FT_E_ARG, "training.max_hours %g: %s used before this job's first step (preparing the data and "
                                "loading the weights), and the step (%s by the plan) with its checkpoint would end past "
                                "it: nothing trained%s; raise training.max_hours",
                      r->training.max_hours, used, step, R->step > 0 ? " since the checkpoint it resumed from" : "");
    const double ev = ft_limit_eval_s(R, R->step + 1), ck = ft_limit_ckpt_s(R);
    if (ev > 0 || ck > 0) {
        char b1[32], b2[32];
        ft_limit_fmt(b1, sizeof b1, ev);
        ft_limit_fmt(b2, sizeof b2, ck);
        snprintf(rest, sizeof rest, "%s%s%s%s%s", ev > 0 ? ", an evaluation " : "", ev > 0 ? b1 : "",
                 ev > 0 && ck > 0 ? "," : "", ck > 0 ? " and a checkpoint " : "", ck > 0 ? b2 : "");
    }
    if (R->last_ckpt_step != R->step) {
        ft_run_plot(R);
        FT_TRY(ft_run_save_checkpoint(R));
    }
    ft_info("time limit: stopping after step %lld of %lld (training.max_hours %g)", (long long)R->step,
            (long long)R->total, r->training.max_hours);
    return FT_ERR(FT_E_TIMEUP,
                  "stopped at step %lld of %lld at the time limit (training.max_hours %g: %s used; the next step, %s%s, "
                  "would end past it): checkpoint %s; go on with: ftune train %s --resume auto",
                  (long long)R->step, (long long)R->total, r->training.max_hours, used, step, rest, R->last_ckpt_path,
                  recipe);
}
