/* cmd_inspect.c: `ftune inspect FILE.gguf`: the metadata and the tensor table of a GGUF file
 * (validated by export/gguf_read.c), to stdout. */
#include <stdio.h>
#include <string.h>

#include "export/gguf.h"
#include "trainer/cli.h"
#include "trainer/commands.h"

static const ft_opt ft_inspect_opts[] = {
    {"tensors", FT_OPT_INT, "N", "-1", "print at most N tensors (-1: all)"},
};

ft_status ft_cmd_inspect(int argc, char **argv) {
    ft_cli cli = {.command = "inspect", .summary = "Print the metadata and tensor table of a GGUF file.",
                  .positional = "FILE.gguf", .opts = ft_inspect_opts,
                  .nopts = sizeof ft_inspect_opts / sizeof *ft_inspect_opts};
    ft_status st = ft_cli_parse(&cli, argc, argv);
    ft_gguf *g = NULL;
    if (st != FT_OK) goto done;
    if (cli.help) {
        ft_cli_usage(&cli);
        goto done;
    }
    if (cli.npos != 1) {
        st = FT_ERR(FT_E_ARG, "inspect: expected one FILE.gguf (see 'ftune inspect --help')");
        goto done;
    }
    int64_t maxt;
    FT_CHECK_GOTO(st, ft_cli_int(&cli, "tensors", &maxt), done);
    FT_CHECK_GOTO(st, ft_gguf_open(&g, cli.pos[0]), done);
    printf("file: %s\nversion: %u\nsize: %lld bytes\nalignment: %lld\nmetadata: %lld keys\n", cli.pos[0],
           ft_gguf_version(g), (long long)ft_gguf_file_size(g), (long long)ft_gguf_alignment(g),
           (long long)ft_gguf_kv_count(g));
    char buf[256];
    for (int64_t i = 0; i < ft_gguf_kv_count(g); i++) {
        ft_gguf_kv_format(g, i, buf, sizeof buf);
        int t = ft_gguf_kv_type(g, i);
        printf("  %-44s %-8s %s\n", ft_gguf_kv_key(g, i), t == FT_GGUF_ARRAY ? "ARRAY" : ft_gguf_vtype_name(t), buf);
    }
    int64_t nt = ft_gguf_tensor_count(g), total = 0, counts[64] = {0};
    printf("tensors: %lld\n", (long long)nt);
    for (int64_t i = 0; i < nt; i++) {
        const ft_gguf_tensor *t = ft_gguf_tensor_at(g, i);
        total += t->nelem;
        if (t->type >= 0 && t->type < 64) counts[t->type]++;
        if (maxt >= 0 && i >= maxt) continue;
        char shape[96];
        int o = snprintf(shape, sizeof shape, "[");
        for (int d = 0; d < t->n_dims; d++) o += snprintf(shape + o, sizeof shape - (size_t)o, "%s%lld", d ? ", " : "", (long long)t->ne[d]);
        snprintf(shape + o, sizeof shape - (size_t)o, "]");
        printf("  %4lld %-40s %-6s %-22s %12lld bytes\n", (long long)i, t->name, ft_ggml_type_name(t->type), shape,
               (long long)t->nbytes);
    }
    printf("parameters: %lld\ntypes:", (long long)total);
    for (int k = 0; k < 64; k++)
        if (counts[k]) printf(" %s=%lld", ft_ggml_type_name(k), (long long)counts[k]);
    printf("\n");
done:
    ft_gguf_close(g);
    ft_cli_free(&cli);
    return st;
}
