/* cmd_plan.c: `ftune plan RECIPE.yaml`: the memory budget line by line, FLOPs per token and the
 * estimated time of the recipe's run on a device, from config.json alone (trainer/plan.h).
 * Without --device, a recipe that may run on a GPU (model.device auto or cuda) is planned for the
 * GPU of this machine when ftune is built with CUDA and one is present (its profile and memory),
 * else for an h100. Exits 0 when the run fits, 1 with the knob to turn when it does not; `--json`
 * prints the same plan as one JSON object (trainer/plan_json.c) for scripts. `--keys`
 * and `--devices` print the recipe key and device tables (the generated parts of docs/recipes.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"
#include "kernels/log.h"
#include "trainer/cli.h"
#include "trainer/commands.h"
#include "trainer/plan.h"
#include "trainer/recipe.h"

static const ft_opt ft_plan_cli_opts[] = {
    {"set", FT_OPT_LIST, "KEY=VALUE", NULL, "override a recipe key (repeatable)"},
    {"device", FT_OPT_STR, "cpu|h100|h200|gb10", NULL,
     "device whose memory and speed to plan for (default: cpu when model.device is cpu, else the GPU present, "
     "else h100)"},
    {"tflops", FT_OPT_FLOAT, "X", NULL,
     "sustained TFLOP/s of a whole training step, flat (default: the sum of the step's parts at the device's rates)"},
    {"memory-gb", FT_OPT_FLOAT, "X", NULL,
     "device memory in GiB (default: model.memory_gib when set, else the device's usable memory)"},
    {"host-boundaries", FT_OPT_FLAG, NULL, NULL,
     "plan with the layer boundaries in host memory (training.host_boundaries: true; needs training.recompute)"},
    {"keep-attention", FT_OPT_FLAG, NULL, NULL,
     "plan with every layer's attention output kept (training.keep_attention: true; needs training.recompute)"},
    {"json", FT_OPT_FLAG, NULL, NULL,
     "print the plan as one JSON object (bytes and seconds; the exit status as without it) instead of the report"},
    {"keys", FT_OPT_FLAG, NULL, NULL, "print the table of recipe keys (markdown, as in docs/recipes.md) and exit"},
    {"devices", FT_OPT_FLAG, NULL, NULL, "print the table of device profiles (markdown, as in docs/recipes.md) and exit"},
};

/* Splits the '\n'-joined --set values in place. */
static int ft_split_sets(char *joined, const char **out, int cap) {
    int n = 0;
    for (char *p = joined; p && *p && n < cap;) {
        char *nl = strchr(p, '\n');
        if (nl) *nl = 0;
        out[n++] = p;
        p = nl ? nl + 1 : NULL;
    }
    return n;
}

/* The profile of this machine's GPU, when ftune has CUDA and one is present: 1 and *out filled,
 * else 0 (no error left behind). Opening the backend is the device query `ftune train` makes. */
static int ft_plan_local_gpu(ft_plan_device *out) {
    ft_backend *be = NULL;
    int found = ft_backend_cuda_create(&be, 0) == FT_OK && ft_plan_device_detect(be, out) == FT_OK;
    if (!found) ft_error_clear();
    ft_backend_free(be);
    return found;
}

ft_status ft_cmd_plan(int argc, char **argv) {
    ft_cli cli = {.command = "plan",
                  .summary = "Predict the memory and time of a recipe's run (reads config.json only).",
                  .positional = "RECIPE.yaml",
                  .opts = ft_plan_cli_opts,
                  .nopts = sizeof ft_plan_cli_opts / sizeof *ft_plan_cli_opts};
    ft_recipe r = {0};
    ft_plan *p = NULL;
    char *sets_buf = NULL;
    const char *sets[256];
    ft_status st = ft_cli_parse(&cli, argc, argv);
    if (st != FT_OK) goto done;
    if (cli.help) {
        ft_cli_usage(&cli);
        goto done;
    }
    if (ft_cli_flag(&cli, "keys")) {
        ft_recipe_doc(stdout);
        goto done;
    }
    if (ft_cli_flag(&cli, "devices")) {
        ft_plan_devices_doc(stdout);
        goto done;
    }
    if (cli.npos != 1) {
        st = FT_ERR(FT_E_ARG, "plan: expected one recipe file (see 'ftune plan --help')");
        goto done;
    }
    ft_plan_opts po = {0};
    const char *set_s;
    FT_CHECK_GOTO(st, ft_cli_str(&cli, "device", &po.device), done);
    po.host_boundaries = ft_cli_flag(&cli, "host-boundaries");
    po.keep_attention = ft_cli_flag(&cli, "keep-attention");
    if (ft_cli_has(&cli, "tflops")) FT_CHECK_GOTO(st, ft_cli_float(&cli, "tflops", &po.tflops), done);
    if (ft_cli_has(&cli, "memory-gb")) FT_CHECK_GOTO(st, ft_cli_float(&cli, "memory-gb", &po.memory_gib), done);
    if ((ft_cli_has(&cli, "tflops") && !(po.tflops > 0)) || (ft_cli_has(&cli, "memory-gb") && !(po.memory_gib > 0))) {
        st = FT_ERR(FT_E_ARG, "plan: --tflops and --memory-gb must be > 0");
        goto done;
    }
    FT_CHECK_GOTO(st, ft_cli_str(&cli, "set", &set_s), done);
    int n_sets = 0;
    if (set_s) {
        sets_buf = strdup(set_s);
        if (!sets_buf) {
            st = FT_ERR(FT_E_OOM, "out of memory");
            goto done;
        }
        n_sets = ft_split_sets(sets_buf, sets, (int)(sizeof sets / sizeof *sets));
    }
    FT_CHECK_GOTO(st, ft_recipe_load(&r, cli.pos[0], sets, n_sets), done);
    p = calloc(1, sizeof *p);
    if (!p) {
        st = FT_ERR(FT_E_OOM, "out of memory");
        goto done;
    }
    ft_plan_device gpu;
    const int gpu_recipe = strcmp(r.model.device, "cpu") != 0;
    if (!po.device && gpu_recipe && ft_plan_local_gpu(&gpu)) po.dev = &gpu;
    FT_CHECK_GOTO(st, ft_plan_make(p, &r, &po), done);
    if (ft_cli_flag(&cli, "json")) {
        char *js = NULL;
        FT_CHECK_GOTO(st, ft_plan_json(p, &r, &js), done);
        printf("%s\n", js);
        free(js);
    } else {
        ft_plan_print(p, &r, stdout);
    }
    fflush(stdout);
    /* a recipe written for a Spark, planned on a laptop, must not pass for the Spark's plan */
    if (!po.device && !po.dev && gpu_recipe)
        ft_warn("plan: no GPU on this machine, so this is the h100's plan; --device h200 or --device gb10 for "
                "another");
    if (!p->fits) {
        char have[48];
        ft_plan_format_bytes(p->device_bytes, have, sizeof have);
        st = FT_ERR(FT_E_OOM, "plan: the run does not fit in %s's %s: %s", p->dev.name, have, p->advice);
    }
done:
    free(p);
    free(sets_buf);
    ft_recipe_free(&r);
    ft_cli_free(&cli);
    return st;
}
