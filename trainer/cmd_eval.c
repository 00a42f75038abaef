/* cmd_eval.c: `ftune eval`: mean next-token loss and perplexity of a model (with a LoRA adapter
 * applied on the fly, --adapter) over token-id sequences, optionally dumping the logits as raw
 * little-endian float32 [sequences, positions, V] (sequences of unequal length are written back
 * to back). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "kernels/fileio.h"
#include "kernels/mem.h"
#include "trainer/adapter_attach.h"
#include "trainer/cli.h"
#include "trainer/commands.h"
#include "trainer/loader.h"
#include "trainer/token_file.h"

static const ft_opt ft_eval_opts[] = {
    {"model", FT_OPT_STR, "DIR|GGUF", NULL, "Hugging Face model directory (config.json + safetensors) or GGUF model file"},
    {"tokens", FT_OPT_STR, "FILE", NULL, "token ids, one sequence per line"},
    {"quant", FT_OPT_STR, "nf4|none", "none", "storage of the frozen linear weights"},
    {"adapter", FT_OPT_STR, "DIR", NULL, "a LoRA adapter applied on the fly: PEFT directory (RUN/best), run directory (its final/) or checkpoint"},
    {"dump-logits", FT_OPT_STR, "OUT", NULL, "write logits as float32 [sequences, positions, vocab]"},
    {"device", FT_OPT_STR, "auto|cpu|cuda", "auto", "compute backend (auto: cuda when a GPU is present)"},
    {"threads", FT_OPT_INT, "N", "0", "CPU threads (0: all cores)"},
};

ft_status ft_cmd_eval(int argc, char **argv) {
    ft_cli cli = {.command = "eval", .summary = "Mean next-token loss and perplexity of a model on token ids.",
                  .opts = ft_eval_opts, .nopts = sizeof ft_eval_opts / sizeof *ft_eval_opts};
    ft_status st = ft_cli_parse(&cli, argc, argv);
    ft_backend *be = NULL;
    ft_model *model = NULL;
    ft_lora *lora = NULL;
    ft_adapter ad = {0};
    ft_token_seqs seqs = {0};
    ft_afile dump = {0};
    int32_t *labels = NULL;
    float *logits = NULL;
    if (st != FT_OK) goto done;
    if (cli.help) {
        ft_cli_usage(&cli);
        goto done;
    }
    const char *dir, *tokens, *quant_s, *device, *dump_path, *adapter;
    int64_t threads;
    ft_load_opts lo = {0};
    FT_CHECK_GOTO(st, ft_cli_req(&cli, "model", &dir), done);
    FT_CHECK_GOTO(st, ft_cli_req(&cli, "tokens", &tokens), done);
    FT_CHECK_GOTO(st, ft_cli_str(&cli, "quant", &quant_s), done);
    FT_CHECK_GOTO(st, ft_cli_str(&cli, "device", &device), done);
    FT_CHECK_GOTO(st, ft_cli_str(&cli, "dump-logits", &dump_path), done);
    FT_CHECK_GOTO(st, ft_cli_str(&cli, "adapter", &adapter), done);
    FT_CHECK_GOTO(st, ft_cli_int(&cli, "threads", &threads), done);
    FT_CHECK_GOTO(st, ft_quant_parse(quant_s, &lo.quant), done);

    FT_CHECK_GOTO(st, ft_token_file_read(tokens, &seqs), done);
    int64_t longest = 0;
    for (int64_t s = 0; s < seqs.n; s++)
        if (seqs.start[s + 1] - seqs.start[s] > longest) longest = seqs.start[s + 1] - seqs.start[s];
    if (longest < 2) { /* before the weights load (minutes for a 70B), not after them */
        st = FT_ERR(FT_E_FORMAT, "%s: no sequence has two or more tokens, nothing to predict", tokens);
        goto done;
    }
    if (adapter) FT_CHECK_GOTO(st, ft_adapter_load_for(dir, adapter, &ad), done); /* before the weights */
    FT_CHECK_GOTO(st, ft_backend_open(&be, device, (int)threads), done);
    FT_CHECK_GOTO(st, ft_model_load(&model, be, dir, &lo), done);
    if (adapter) FT_CHECK_GOTO(st, ft_model_attach_adapter(model, be, &ad, &lora), done);
    const ft_model_dims *d = ft_model_get_dims(model);
    if (dump_path) FT_CHECK_GOTO(st, ft_afile_open(&dump, dump_path), done);

    double total = 0;
    int64_t count = 0;
    for (int64_t s = 0; s < seqs.n; s++) {
        int64_t T = seqs.start[s + 1] - seqs.start[s];
        const int32_t *ids = seqs.ids + seqs.start[s];
        free(labels);
        labels = NULL;
        FT_CHECK_GOTO(st, ft_malloc((void **)&labels, (size_t)T * 4, "labels"), done);
        for (int64_t t = 0; t < T; t++) labels[t] = t + 1 < T ? ids[t + 1] : -100;
        ft_batch b = {.B = 1, .T = T, .tokens = ids, .labels = labels};
        double loss = 0;
        int64_t n = 0;
        st = ft_model_step(model, &b, 0.0f, 0, &loss, &n);
        if (st != FT_OK) {
            ft_error_wrap(st, "%s: sequence %lld", tokens, (long long)s + 1);
            goto done;
        }
        printf("seq %lld: %lld tokens, loss %.6f\n", (long long)s + 1, (long long)T, n ? loss / n : 0.0);
        total += loss, count += n;
        if (dump_path) {
            free(logits);
            logits = NULL;
            FT_CHECK_GOTO(st, ft_malloc((void **)&logits, (size_t)(T * d->V) * 4, "logits"), done);
            FT_CHECK_GOTO(st, ft_model_logits(model, &b, logits), done);
            FT_CHECK_GOTO(st, ft_afile_write(&dump, logits, T * d->V * 4), done);
        }
    }
    if (dump_path) FT_CHECK_GOTO(st, ft_afile_commit(&dump), done);
    printf("tokens %lld\n", (long long)count);
    printf("loss %.6f\n", total / count);
    printf("ppl %.4f\n", exp(total / count));
done:
    if (dump.f) ft_afile_abort(&dump);
    free(labels);
    free(logits);
    ft_token_seqs_free(&seqs);
    if (model) ft_model_set_lora(model, NULL);
    ft_lora_free(lora, be);
    ft_adapter_free(&ad);
    ft_model_free(model);
    ft_backend_free(be);
    ft_cli_free(&cli);
    return st;
}
