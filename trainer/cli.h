/* cli.h: one option table per command drives parsing, validation and the usage text, so
 * they cannot drift. Values are kept as strings and converted by typed getters that name the
 * option in their error. Parse errors are FT_E_ARG (main maps them to exit code 2). */
#ifndef FT_CLI_H
#define FT_CLI_H

#include <stdint.h>

#include "kernels/status.h"

typedef enum { FT_OPT_STR = 0, FT_OPT_INT, FT_OPT_FLOAT, FT_OPT_FLAG, FT_OPT_LIST } ft_opt_type;

typedef struct ft_opt {
    const char *name;     /* long name without dashes: "model" for --model */
    ft_opt_type type;     /* FT_OPT_LIST may repeat (e.g. --set k=v); values joined by '\n' */
    const char *metavar;  /* "DIR", "N"; NULL for flags */
    const char *def;      /* default shown in usage and returned when absent (may be NULL) */
    const char *help;
} ft_opt;

#define FT_CLI_MAX_OPTS 48
#define FT_CLI_MAX_POS 8

typedef struct ft_cli {
    const char *command;  /* "eval" */
    const char *summary;  /* one line */
    const char *positional; /* usage text for positionals, e.g. "RECIPE.yaml" or NULL */
    const ft_opt *opts;
    int nopts;
    const char *val[FT_CLI_MAX_OPTS];   /* NULL when not given */
    char *list[FT_CLI_MAX_OPTS];        /* joined FT_OPT_LIST values (owned) */
    const char *pos[FT_CLI_MAX_POS];
    int npos;
    int help;             /* --help was given */
} ft_cli;

/* Parses argv[1..] (argv[0] is the command name). `--name value` and `--name=value` forms. */
ft_status ft_cli_parse(ft_cli *cli, int argc, char **argv);
void ft_cli_free(ft_cli *cli);
void ft_cli_usage(const ft_cli *cli);

int ft_cli_has(const ft_cli *cli, const char *name);
/* Getters return the default when the option is absent (FT_E_ARG if neither exists for a
 * required getter). */
ft_status ft_cli_str(const ft_cli *cli, const char *name, const char **out);
ft_status ft_cli_int(const ft_cli *cli, const char *name, int64_t *out);
ft_status ft_cli_float(const ft_cli *cli, const char *name, double *out);
int ft_cli_flag(const ft_cli *cli, const char *name);
/* A required string option. */
ft_status ft_cli_req(const ft_cli *cli, const char *name, const char **out);

/* Strict number parsing shared by recipes and the CLI. */
ft_status ft_parse_int(const char *s, int64_t *out);
ft_status ft_parse_float(const char *s, double *out);

#endif
