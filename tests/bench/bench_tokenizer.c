/* bench_tokenizer.c: single-thread encode throughput of ft_tok over a text file, one encode per
 * line (the same unit tests/bench/bench_tokenizer.sh gives HF `tokenizers`). Prints load time and
 * MB/s; with a third argument writes the ids (one line of space-separated ids per input line) so
 * the script can check them against HF on every line. Built by bench_tokenizer.sh. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "data/tokenizer.h"
#include "kernels/fileio.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: bench_tokenizer TOKENIZER_DIR TEXT_FILE [IDS_OUT]\n");
        return 2;
    }
    double t0 = now();
    ft_tok *tok;
    if (ft_tok_load(&tok, argv[1]) != FT_OK) {
        fprintf(stderr, "load: %s\n", ft_error_msg());
        return 1;
    }
    double t_load = now() - t0;
    char *buf;
    int64_t n;
    if (ft_read_file(argv[2], 0, &buf, &n, NULL) != FT_OK) {
        fprintf(stderr, "read: %s\n", ft_error_msg());
        return 1;
    }
    /* lines, split on '\n' (as Python's str.split('\n')) */
    int64_t nl = 1;
    for (long i = 0; i < n; i++) nl += buf[i] == '\n';
    char **line = malloc(sizeof(char *) * (size_t)nl);
    int64_t *len = malloc(sizeof(int64_t) * (size_t)nl);
    int64_t k = 0;
    char *p = buf;
    for (;;) {
        char *q = memchr(p, '\n', (size_t)(buf + n - p));
        line[k] = p;
        len[k++] = q ? q - p : buf + n - p;
        if (!q) break;
        p = q + 1;
    }
    ft_tok_ids *out = calloc((size_t)k, sizeof *out);
    double best = 1e30, cold = 0;
    int64_t ntok = 0;
    for (int rep = 0; rep < 3; rep++) {
        double t1 = now();
        ntok = 0;
        for (int64_t i = 0; i < k; i++) {
            out[i].n = 0;
            if (ft_tok_encode_append(tok, line[i], len[i], 0, &out[i]) != FT_OK) {
                fprintf(stderr, "encode: %s\n", ft_error_msg());
                return 1;
            }
            ntok += out[i].n;
        }
        double dt = now() - t1;
        if (rep == 0) cold = dt;
        if (dt < best) best = dt;
    }
    printf("ftune: load %.3f s, %lld lines, %.2f MB, %lld tokens, first pass %.3f s (%.2f MB/s), best %.3f s = %.2f MB/s\n",
           t_load, (long long)k, n / 1e6, (long long)ntok, cold, n / 1e6 / cold, best, n / 1e6 / best);
    if (argc > 3) {
        FILE *o = fopen(argv[3], "w");
        for (int64_t i = 0; i < k; i++) {
            for (int64_t j = 0; j < out[i].n; j++) fprintf(o, j ? " %d" : "%d", out[i].ids[j]);
            fputc('\n', o);
        }
        fclose(o);
    }
    for (int64_t i = 0; i < k; i++) ft_tok_ids_free(&out[i]);
    free(out);
    free(line);
    free(len);
    free(buf);
    ft_tok_free(tok);
    return 0;
}
