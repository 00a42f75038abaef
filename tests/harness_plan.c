/* harness_plan.c: plans of the real models' committed config.json files (tests/fixtures/configs),
 * for the plan tests (test_plan, test_plan_context). */
#include <math.h>
#include <stdio.h>

#include <cjson/cJSON.h>

#include "tests/harness.h"
#include "trainer/plan.h"
#include "trainer/recipe.h"

/* A plan from a committed config.json (no weights needed), with options. */
void ft_test_plan_cfg_opts(ft_plan *p, const char *config_dir, const ft_plan_opts *po, const char *const *extra,
                          int n_extra) {
    char s_cfg[4200];
    snprintf(s_cfg, sizeof s_cfg, "model.config=%s/tests/fixtures/configs/%s/config.json", ft_test_src_dir(),
             config_dir);
    const char *sets[16] = {s_cfg, "model.path=/models/none"};
    int n = 2;
    for (int i = 0; i < n_extra && n < 16; i++) sets[n++] = extra[i];
    ft_recipe rec;
    FT_CHECK_OK(ft_recipe_defaults(&rec, sets, n));
    FT_CHECK_OK(ft_plan_make(p, &rec, po));
    ft_recipe_free(&rec);
}

void ft_test_plan_cfg(ft_plan *p, const char *config_dir, const char *device, const char *const *extra, int n_extra) {
    ft_plan_opts po = {.device = device};
    ft_test_plan_cfg_opts(p, config_dir, &po, extra, n_extra);
}

double ft_test_json_num(const cJSON *j, const char *a, const char *b) {
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(j, a);
    o = b ? cJSON_GetObjectItemCaseSensitive(o, b) : o;
    return cJSON_IsNumber(o) ? o->valuedouble : NAN;
}
