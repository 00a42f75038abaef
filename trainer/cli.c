/* cli.c: table-driven option parsing (see cli.h). */
#include "trainer/cli.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/mem.h"

static int ft_cli_find(const ft_cli *cli, const char *name, size_t len) {
    for (int i = 0; i < cli->nopts; i++)
        if (strlen(cli->opts[i].name) == len && strncmp(cli->opts[i].name, name, len) == 0) return i;
    return -1;
}

ft_status ft_cli_parse(ft_cli *cli, int argc, char **argv) {
    FT_ASSERT(cli->nopts <= FT_CLI_MAX_OPTS);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            cli->help = 1;
            continue;
        }
        char longform[8];
        if (a[0] == '-' && a[1] && a[1] != '-' && !a[2] && ft_cli_find(cli, a + 1, 1) >= 0) {
            snprintf(longform, sizeof longform, "--%c", a[1]); /* one-letter options also take one dash: -n */
            a = longform;
        }
        if (strncmp(a, "--", 2) != 0 || a[2] == 0) {
            if (a[0] == '-' && a[1] != 0 && strcmp(a, "-") != 0)
                return FT_ERR(FT_E_ARG, "%s: unknown option '%s' (see 'ftune %s --help')", cli->command, a,
                              cli->command);
            if (cli->npos >= FT_CLI_MAX_POS || !cli->positional)
                return FT_ERR(FT_E_ARG, "%s: unexpected argument '%s' (see 'ftune %s --help')", cli->command, a,
                              cli->command);
            cli->pos[cli->npos++] = a;
            continue;
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        int k = ft_cli_find(cli, name, len);
        if (k < 0)
            return FT_ERR(FT_E_ARG, "%s: unknown option '--%.*s' (see 'ftune %s --help')", cli->command, (int)len,
                          name, cli->command);
        const ft_opt *o = &cli->opts[k];
        const char *v;
        if (o->type == FT_OPT_FLAG) {
            if (eq) return FT_ERR(FT_E_ARG, "%s: option --%s takes no value", cli->command, o->name);
            v = "1";
        } else if (eq) {
            v = eq + 1;
        } else {
            if (i + 1 >= argc) return FT_ERR(FT_E_ARG, "%s: option --%s needs a value (%s)", cli->command, o->name,
                                             o->metavar ? o->metavar : "VALUE");
            v = argv[++i];
        }
        if (o->type == FT_OPT_LIST) {
            size_t old = cli->list[k] ? strlen(cli->list[k]) : 0, add = strlen(v);
            char *nl = realloc(cli->list[k], old + add + 2);
            if (!nl) return FT_ERR(FT_E_OOM, "out of memory parsing options");
            if (old) nl[old++] = '\n';
            memcpy(nl + old, v, add + 1);
            cli->list[k] = nl;
            cli->val[k] = nl;
        } else {
            cli->val[k] = v;
        }
    }
    return FT_OK;
}

void ft_cli_free(ft_cli *cli) {
    for (int i = 0; i < FT_CLI_MAX_OPTS; i++) {
        free(cli->list[i]);
        cli->list[i] = NULL;
    }
}

void ft_cli_usage(const ft_cli *cli) {
    printf("usage: ftune %s%s%s [options]\n\n%s\n\noptions:\n", cli->command, cli->positional ? " " : "",
           cli->positional ? cli->positional : "", cli->summary);
    for (int i = 0; i < cli->nopts; i++) {
        const ft_opt *o = &cli->opts[i];
        char left[64];
        snprintf(left, sizeof left, "%s%s%s%s", o->name[1] ? "--" : "-", o->name, o->metavar ? " " : "", o->metavar ? o->metavar : "");
        printf("  %-26s %s", left, o->help);
        if (o->def) printf(" (default: %s)", o->def);
        printf("\n");
    }
    printf("  %-26s %s\n", "--help", "show this help");
}

static const ft_opt *ft_cli_opt(const ft_cli *cli, const char *name, int *idx) {
    int k = ft_cli_find(cli, name, strlen(name));
    FT_ASSERT(k >= 0); /* a getter for an option missing from the table is a programming error */
    *idx = k;
    return &cli->opts[k];
}

int ft_cli_has(const ft_cli *cli, const char *name) {
    int k;
    ft_cli_opt(cli, name, &k);
    return cli->val[k] != NULL;
}

ft_status ft_cli_str(const ft_cli *cli, const char *name, const char **out) {
    int k;
    const ft_opt *o = ft_cli_opt(cli, name, &k);
    *out = cli->val[k] ? cli->val[k] : o->def;
    return FT_OK;
}

ft_status ft_cli_req(const ft_cli *cli, const char *name, const char **out) {
    FT_TRY(ft_cli_str(cli, name, out));
    if (!*out) return FT_ERR(FT_E_ARG, "%s: missing required option --%s", cli->command, name);
    return FT_OK;
}

ft_status ft_parse_int(const char *s, int64_t *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end) return FT_ERR(FT_E_ARG, "'%s' is not an integer", s);
    *out = v;
    return FT_OK;
}

ft_status ft_parse_float(const char *s, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v)) return FT_ERR(FT_E_ARG, "'%s' is not a finite number", s);
    *out = v;
    return FT_OK;
}

ft_status ft_cli_int(const ft_cli *cli, const char *name, int64_t *out) {
    const char *s;
    FT_TRY(ft_cli_req(cli, name, &s));
    if (ft_parse_int(s, out) != FT_OK)
        return FT_ERR(FT_E_ARG, "%s: --%s expects an integer, got '%s'", cli->command, name, s);
    return FT_OK;
}

ft_status ft_cli_float(const ft_cli *cli, const char *name, double *out) {
    const char *s;
    FT_TRY(ft_cli_req(cli, name, &s));
    if (ft_parse_float(s, out) != FT_OK)
        return FT_ERR(FT_E_ARG, "%s: --%s expects a number, got '%s'", cli->command, name, s);
    return FT_OK;
}

int ft_cli_flag(const ft_cli *cli, const char *name) {
    int k;
    ft_cli_opt(cli, name, &k);
    return cli->val[k] != NULL;
}
