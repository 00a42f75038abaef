/* cmd_generate.c: `ftune generate`: greedy (temperature 0) or temperature/top-p sampling from a
 * prompt of token ids, printing the ids (prompt included) on one line. Without a KV cache each
 * step re-runs the prompt; fine for the small models this is meant for (demo, checks). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/tokenizer.h"
#include "kernels/mem.h"
#include "kernels/rng.h"
#include "trainer/cli.h"
#include "trainer/commands.h"
#include "trainer/loader.h"
#include "trainer/token_file.h"

static const ft_opt ft_gen_opts[] = {
    {"model", FT_OPT_STR, "DIR", NULL, "Hugging Face model directory"},
    {"tokens", FT_OPT_STR, "IDS", "1", "prompt token ids, e.g. \"1 403 11\""},
    {"prompt", FT_OPT_STR, "TEXT", NULL, "prompt text, encoded with the model's tokenizer.json (BOS added)"},
    {"text", FT_OPT_FLAG, NULL, NULL, "print the decoded text instead of ids"},
    {"n", FT_OPT_INT, "N", "32", "tokens to generate"},
    {"temperature", FT_OPT_FLOAT, "T", "0", "0 for greedy argmax"},
    {"top-p", FT_OPT_FLOAT, "P", "0.9", "nucleus sampling mass (with temperature > 0)"},
    {"seed", FT_OPT_INT, "S", "42", "sampling seed"},
    {"stop", FT_OPT_STR, "IDS", NULL, "stop after generating one of these ids"},
    {"quant", FT_OPT_STR, "nf4|none", "none", "storage of the frozen linear weights"},
    {"device", FT_OPT_STR, "auto|cpu|cuda", "auto", "compute backend (auto: cuda when a GPU is present)"},
    {"threads", FT_OPT_INT, "N", "0", "CPU threads (0: all cores)"},
};

typedef struct { float p; int32_t id; } ft_cand;
static int ft_cand_cmp(const void *a, const void *b) {
    float x = ((const ft_cand *)a)->p, y = ((const ft_cand *)b)->p;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* Picks the next id from logits[V]: argmax (lowest id on ties) or top-p sampling. */
static int32_t ft_pick(const float *logits, int64_t V, double temp, double top_p, ft_rng *rng, ft_cand *cand) {
    int64_t best = 0;
    for (int64_t i = 1; i < V; i++)
        if (logits[i] > logits[best]) best = i;
    if (temp <= 0) return (int32_t)best;
    double sum = 0;
    for (int64_t i = 0; i < V; i++) {
        cand[i].p = (float)exp((logits[i] - logits[best]) / temp);
        cand[i].id = (int32_t)i;
        sum += cand[i].p;
    }
    qsort(cand, (size_t)V, sizeof *cand, ft_cand_cmp);
    double mass = 0, r;
    int64_t k = 0;
    while (k < V && mass < top_p * sum) mass += cand[k++].p;
    r = ft_rng_uniform(rng) * mass;
    for (int64_t i = 0; i < k; i++) {
        r -= cand[i].p;
        if (r <= 0) return cand[i].id;
    }
    return cand[k - 1].id;
}

ft_status ft_cmd_generate(int argc, char **argv) {
    ft_cli cli = {.command = "generate", .summary = "Generate token ids from a prompt (greedy or top-p).",
                  .opts = ft_gen_opts, .nopts = sizeof ft_gen_opts / sizeof *ft_gen_opts};
    ft_status st = ft_cli_parse(&cli, argc, argv);
    ft_backend *be = NULL;
    ft_model *model = NULL;
    ft_token_seqs prompt = {0}, stop = {0};
    int32_t *ids = NULL;
    float *logits = NULL;
    ft_cand *cand = NULL;
    ft_tok *tok = NULL;
    char *text = NULL;
    if (st != FT_OK) goto done;
    if (cli.help) {
        ft_cli_usage(&cli);
        goto done;
    }
    const char *dir, *tok_s, *quant_s, *device, *stop_s, *prompt_s;
    int64_t n, seed, threads;
    double temp, top_p;
    ft_load_opts lo = {0};
    FT_CHECK_GOTO(st, ft_cli_req(&cli, "model", &dir), done);
    FT_CHECK_GOTO(st, ft_cli_str(&cli, "tokens", &tok_s), done);
    FT_CHECK_GOTO(st, ft_cli_str(&cli, "prompt", &prompt_s), done);
    FT_CHECK_GOTO(st, ft_cli_int(&cli, "n", &n), done);
    FT_CHECK_GOTO(st, ft_cli_float(&cli, "temperature", &temp), done);
    FT_CHECK_GOTO(st, ft_cli_float(&cli, "top-p", &top_p), done);
    FT_CHECK_GOTO(st, ft_cli_int(&cli, "seed", &seed), done);
    FT_CHECK_GOTO(st, ft_cli_str(&cli, "stop", &stop_s), done);
    FT_CHECK_GOTO(st, ft_cli_str(&cli, "quant", &quant_s), done);
    FT_CHECK_GOTO(st, ft_cli_str(&cli, "device", &device), done);
    FT_CHECK_GOTO(st, ft_cli_int(&cli, "threads", &threads), done);
    if (n < 0 || temp < 0 || !(top_p > 0 && top_p <= 1)) {
        st = FT_ERR(FT_E_ARG, "generate: need -n >= 0, --temperature >= 0 and 0 < --top-p <= 1");
        goto done;
    }
    FT_CHECK_GOTO(st, ft_quant_parse(quant_s, &lo.quant), done);
    if (prompt_s || ft_cli_flag(&cli, "text")) FT_CHECK_GOTO(st, ft_tok_load(&tok, dir), done);
    if (prompt_s) {
        int32_t *pids = NULL;
        int64_t np = 0;
        FT_CHECK_GOTO(st, ft_tok_encode(tok, prompt_s, (int64_t)strlen(prompt_s), 1, &pids, &np), done);
        prompt.ids = pids, prompt.n = 1;
        st = ft_malloc((void **)&prompt.start, 2 * sizeof *prompt.start, "prompt");
        if (st != FT_OK) goto done;
        prompt.start[0] = 0, prompt.start[1] = np;
    } else {
        FT_CHECK_GOTO(st, ft_token_list_parse(tok_s, "--tokens", &prompt), done);
    }
    if (stop_s) FT_CHECK_GOTO(st, ft_token_list_parse(stop_s, "--stop", &stop), done);
    FT_CHECK_GOTO(st, ft_backend_open(&be, device, (int)threads), done);
    FT_CHECK_GOTO(st, ft_model_load(&model, be, dir, &lo), done);
    int64_t V = ft_model_get_dims(model)->V, len = prompt.start[1];
    FT_CHECK_GOTO(st, ft_malloc((void **)&ids, (size_t)(len + n) * 4, "ids"), done);
    FT_CHECK_GOTO(st, ft_malloc((void **)&logits, (size_t)V * 4, "logits"), done);
    FT_CHECK_GOTO(st, ft_malloc((void **)&cand, (size_t)V * sizeof *cand, "sampling"), done);
    memcpy(ids, prompt.ids, (size_t)len * 4);
    ft_rng rng = {(uint64_t)seed};
    for (int64_t i = 0; i < n; i++) {
        ft_batch b = {.B = 1, .T = len, .tokens = ids};
        FT_CHECK_GOTO(st, ft_model_last_logits(model, &b, logits), done);
        int32_t next = ft_pick(logits, V, temp, top_p, &rng, cand);
        ids[len++] = next;
        int stop_now = 0;
        for (int64_t k = 0; stop.n && k < stop.start[1]; k++) stop_now |= stop.ids[k] == next;
        if (stop_now) break;
    }
    if (ft_cli_flag(&cli, "text")) {
        FT_CHECK_GOTO(st, ft_tok_decode(tok, ids, len, 1, &text, NULL), done);
        printf("%s\n", text);
    } else {
        for (int64_t i = 0; i < len; i++) printf(i ? " %d" : "%d", ids[i]);
        printf("\n");
    }
done:
    free(text);
    ft_tok_free(tok);
    free(ids);
    free(logits);
    free(cand);
    ft_token_seqs_free(&prompt);
    ft_token_seqs_free(&stop);
    ft_model_free(model);
    ft_backend_free(be);
    ft_cli_free(&cli);
    return st;
}
