/* test_plan_jobs.c: `ftune plan` under training.max_hours (trainer/plan_time.c ft_plan_jobs). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/harness.h"
#include "trainer/plan.h"

/* training.max_hours: the steps a job trains are the most whose mean time (evaluations spread over
 * the steps) and the stop's checkpoint (at 200 MB/s) fit the limit; the jobs cover the steps; the
 * JSON says the same. 6.5 h of the 70B H100 recipe's 500 steps in 3 h jobs, one 100 h job, a limit
 * shorter than a step (no job trains: 0 and 0, shorter_than_a_step), and no limit (JSON null). */
static void check_time_limit(void) {
    char path[4200];
    snprintf(path, sizeof path, "%s/recipes/llama-3.3-70b-h100.yaml", ft_test_src_dir());
    const double hours[] = {3, 100, 0.001, 0};
    for (int i = 0; i < 4; i++) {
        char set[64];
        snprintf(set, sizeof set, "training.max_hours=%g", hours[i]);
        const char *sets[] = {set};
        ft_recipe rec;
        ft_plan *p = calloc(1, sizeof *p);
        ft_plan_opts po = {.device = "h100"};
        char *js = NULL;
        FT_CHECK_OK(ft_recipe_load(&rec, path, sets, 1));
        FT_CHECK_OK(ft_plan_make(p, &rec, &po));
        FT_CHECK_OK(ft_plan_json(p, &rec, &js));
        cJSON *j = cJSON_Parse(js ? js : "");
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "time"), *tl = cJSON_GetObjectItemCaseSensitive(t, "time_limit");
        if (hours[i] == 0) {
            FT_CHECK(p->jobs == 0 && cJSON_IsNull(tl), "no training.max_hours: jobs %lld, time_limit not null",
                     (long long)p->jobs);
        } else {
            const double per = p->hours * 3600.0 / (double)p->steps, ck = (double)p->disk_ckpt / 200e6;
            const double lim = hours[i] * 3600.0, k = (double)p->job_steps;
            /* a limit shorter than a step and its checkpoint: no job trains (run_limit.c stops it before its
             * first step, exit 2): 0 steps, 0 jobs, and shorter_than_a_step says why */
            const int most = p->job_short ? k == 0 && per + ck > lim
                                          : k * per + ck <= lim && (k == (double)p->steps || (k + 1) * per + ck > lim);
            const int cover = p->job_short ? p->jobs == 0
                                           : p->jobs * p->job_steps >= p->steps && (p->jobs - 1) * p->job_steps < p->steps;
            const int want = i == 0 ? p->jobs == 3 && !p->job_short
                           : i == 1 ? p->jobs == 1 && p->job_steps == 500
                                    : p->job_short && p->jobs == 0;
            FT_CHECK(p->steps == 500 && most && cover && want && ft_test_json_num(t, "time_limit", "steps_per_job") == k &&
                         ft_test_json_num(t, "time_limit", "jobs") == (double)p->jobs &&
                         ft_test_json_num(t, "time_limit", "max_hours") == hours[i] &&
                         cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(tl, "shorter_than_a_step")) == p->job_short,
                     "training.max_hours %g: %lld steps a job, %lld jobs (%.1f s a step, checkpoint %.1f s, %lld steps)",
                     hours[i], (long long)p->job_steps, (long long)p->jobs, per, ck, (long long)p->steps);
            printf("ok   training.max_hours %g: %lld of %lld steps a job, %lld jobs (%.1f h planned)\n", hours[i],
                   (long long)p->job_steps, (long long)p->steps, (long long)p->jobs, p->hours);
        }
        cJSON_Delete(j);
        free(js);
        free(p);
        ft_recipe_free(&rec);
    }
}

int main(void) {
    check_time_limit();
    return ft_test_finish();
}
