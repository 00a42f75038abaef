/* commands.h: the subcommands of the ftune executable. Each parses its own options (cli.h),
 * returns a status with its message set, and never exits; main() prints the message and maps
 * FT_E_ARG to exit code 2 and other failures to 1. */
#ifndef FT_COMMANDS_H
#define FT_COMMANDS_H

#include "kernels/status.h"

ft_status ft_cmd_eval(int argc, char **argv);
ft_status ft_cmd_generate(int argc, char **argv);
ft_status ft_cmd_plan(int argc, char **argv);
ft_status ft_cmd_data(int argc, char **argv);
ft_status ft_cmd_train(int argc, char **argv);
int ft_cmd_tokenize(int argc, char **argv); /* returns the exit code itself */
ft_status ft_cmd_export(int argc, char **argv);
ft_status ft_cmd_merge(int argc, char **argv);
ft_status ft_cmd_inspect(int argc, char **argv);
ft_status ft_cmd_status(int argc, char **argv);
ft_status ft_cmd_bench(int argc, char **argv);

/* cmd_export.c: the adapter a user names (PEFT directory, run directory, or checkpoint file; a
 * checkpoint is read with its run's recipe.yaml), shared by `export` and `merge`. */
struct ft_adapter;
ft_status ft_export_load_adapter(const char *path, struct ft_adapter *a);
/* cmd_export.c: the run loop's end-of-run exports (an ft_export_fn of trainer/run.h): recipe
 * export.formats gguf -> final/adapter.gguf, export.merged TYPE -> final/model-TYPE.gguf. */
struct ft_recipe;
ft_status ft_run_exports(void *user, const struct ft_recipe *r, const char *final_dir);

#endif
