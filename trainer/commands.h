/* commands.h: the subcommands of the ftune executable. Each parses its own options (cli.h),
 * returns a status with its message set, and never exits; main() prints the message and maps
 * FT_E_ARG to exit code 2 and other failures to 1. */
#ifndef FT_COMMANDS_H
#define FT_COMMANDS_H

#include "kernels/status.h"

ft_status ft_cmd_eval(int argc, char **argv);
ft_status ft_cmd_generate(int argc, char **argv);
ft_status ft_cmd_train(int argc, char **argv);
int ft_cmd_tokenize(int argc, char **argv); /* returns the exit code itself */

#endif
