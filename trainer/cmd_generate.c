/* cmd_generate.c: `ftune generate`: greedy (temperature 0) or temperature/top-p sampling from a
 * prompt of token ids or text, printing the ids (prompt included) on one line or the text; with
 * --adapter through a LoRA adapter applied on the fly (a run's final/ or best/), and with --chat
 * the prompt as a user turn of the chat template, stopping where the assistant's turn ends: the
 * quick look at what an overnight run made, before exporting it. A KV cache (ft_model_decode) runs
 * the prompt once and then each new token alone. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/chat_prompt.h"
#include "data/tokenizer.h"
#include "kernels/mem.h"
#include "kernels/rng.h"
#include "trainer/adapter_attach.h"
#include "trainer/cli.h"
#include "trainer/commands.h"
#include "trainer/loader.h"
#include "trainer/token_file.h"

static const ft_opt ft_gen_opts[] = {
    {"model", FT_OPT_STR, "DIR|GGUF", NULL, "Hugging Face model directory or GGUF model file"},
    {"tokens", FT_OPT_STR, "IDS", "1", "prompt token ids, e.g. \"1 403 11\""},
    {"prompt", FT_OPT_STR, "TEXT", NULL, "prompt text, encoded with the model's tokenizer.json (BOS added)"},
    {"text", FT_OPT_FLAG, NULL, NULL, "print the decoded text instead of ids (with --chat: the reply only)"},
    {"chat", FT_OPT_STR, "TEMPLATE", NULL,
     "--prompt as a user turn of this chat template (auto: the tokenizer's; llama3.1, qwen3, mistral, ...), "
     "stopping at the end of the assistant's turn"},
    {"adapter", FT_OPT_STR, "DIR", NULL, "a LoRA adapter applied on the fly: PEFT directory (RUN/best), run directory (its final/) or checkpoint"},
    {"n", FT_OPT_INT, "N", "32", "tokens to generate"},
    {"temperature", FT_OPT_FLOAT, "T", "0", "0 for greedy argmax"},
    {"top-p", FT_OPT_FLOAT, "P", "0.9", "nucleus sampling mass (with temperature > 0)"},
    {"seed", FT_OPT_INT, "S", "42", "sampling seed"},
    {"stop", FT_OPT_STR, "IDS", NULL, "stop after generating one of these ids"},
    {"quant", FT_OPT_STR, "nf4|none", "none", "storage of the frozen linear weights"},
    {"device", FT_OPT_STR, "auto|cpu|cuda", "auto", "compute backend (auto: cuda when a GPU is present)"},
    {"threads", FT_OPT_INT, "N", "0", "CPU threads (0: all cores)"},
};

/* --text on a terminal prints as it generates (a 70B on a GB10 takes a while per token): after each
 * token, the decoded text's new bytes, held back while they end in U+FFFD (a byte-level token whose
 * character completes later) or in whitespace (a decoder may join it with what follows). If the
 * text stops extending what was shown (a decoder that rewrites earlier output), nothing more is
 * shown until the end, which then prints the whole text on a line of its own. Piped, the text is
 * printed once at the end, as before. */
typedef struct ft_stream {
    char *shown;     /* what was printed, malloc'd */
    size_t n;        /* its length */
    int broken;      /* the text no longer extends `shown` */
} ft_stream;

static ft_status ft_stream_step(ft_stream *sm, const ft_tok *tok, const int32_t *ids, int64_t n, int final) {
    char *t = NULL;
    FT_TRY(ft_tok_decode(tok, ids, n, 1, &t, NULL));
    size_t tl = strlen(t), end = tl;
    if (!sm->broken && (tl < sm->n || memcmp(t, sm->shown, sm->n) != 0)) sm->broken = 1;
    if (sm->broken) {
        if (final) printf("%s%s\n", sm->n ? "\n" : "", t);
        free(t);
        return FT_OK;
    }
    if (!final) {
        while (end > sm->n && (t[end - 1] == ' ' || t[end - 1] == '\n' || t[end - 1] == '\t')) end--;
        while (end >= sm->n + 3 && memcmp(t + end - 3, "\xEF\xBF\xBD", 3) == 0) end -= 3;
    }
    if (end > sm->n) {
        fwrite(t + sm->n, 1, end - sm->n, stdout);
        fflush(stdout);
        t[end] = 0;
        free(sm->shown);
        sm->shown = t, sm->n = end, t = NULL;
    }
    if (final) printf("\n");
    free(t);
    return FT_OK;
}

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
    ft_kv_cache *kv = NULL;
    ft_stream sm = {0};
    ft_lora *lora = NULL;
    ft_adapter ad = {0};
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
    const char *dir, *tok_s, *quant_s, *device, *stop_s, *prompt_s, *chat_s, *adapter;
    int32_t turn_end[2] = {-1, -1}; /* with --chat: the template's end of turn and EOS */
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
    FT_CHECK_GOTO(st, ft_cli_str(&cli, "chat", &chat_s), done);
    FT_CHECK_GOTO(st, ft_cli_str(&cli, "adapter", &adapter), done);
    if (chat_s && !prompt_s) {
        st = FT_ERR(FT_E_ARG, "generate: --chat needs --prompt TEXT");
        goto done;
    }
    if (n < 0 || temp < 0 || !(top_p > 0 && top_p <= 1)) {
        st = FT_ERR(FT_E_ARG, "generate: need -n >= 0, --temperature >= 0 and 0 < --top-p <= 1");
        goto done;
    }
    FT_CHECK_GOTO(st, ft_quant_parse(quant_s, &lo.quant), done);
    if (prompt_s || ft_cli_flag(&cli, "text")) FT_CHECK_GOTO(st, ft_model_tokenizer(&tok, dir), done);
    if (prompt_s) {
        int32_t *pids = NULL;
        int64_t np = 0;
        if (chat_s) {
            ft_render_opts ro = {0};
            ft_render_opts_from_tok(&ro, tok);
            if (strcmp(chat_s, "auto") == 0) {
                const char *jinja = ft_tok_chat_template(tok);
                st = jinja ? ft_chat_template_detect(jinja, &ro.tmpl)
                           : FT_ERR(FT_E_ARG, "%s: the tokenizer has no chat_template: name one with --chat", dir);
                if (st != FT_OK) {
                    st = ft_error_wrap(FT_E_ARG, "generate --chat auto");
                    goto done;
                }
            } else if ((st = ft_chat_template_parse(chat_s, &ro.tmpl)) != FT_OK) {
                st = ft_error_wrap(FT_E_ARG, "generate --chat");
                goto done;
            }
            st = ft_chat_prompt_ids(tok, &ro, prompt_s, &pids, &np);
            if (st != FT_OK) { /* e.g. a template whose special tokens this tokenizer lacks: the choice is wrong */
                st = ft_error_wrap(st == FT_E_OOM ? st : FT_E_ARG, "generate --chat %s", chat_s);
                goto done;
            }
            turn_end[0] = ft_chat_turn_end_id(tok, ro.tmpl), turn_end[1] = ft_tok_eos_id(tok);
        } else {
            FT_CHECK_GOTO(st, ft_tok_encode(tok, prompt_s, (int64_t)strlen(prompt_s), 1, &pids, &np), done);
        }
        prompt.ids = pids, prompt.n = 1;
        st = ft_malloc((void **)&prompt.start, 2 * sizeof *prompt.start, "prompt");
        if (st != FT_OK) goto done;
        prompt.start[0] = 0, prompt.start[1] = np;
    } else {
        FT_CHECK_GOTO(st, ft_token_list_parse(tok_s, "--tokens", &prompt), done);
    }
    if (stop_s) FT_CHECK_GOTO(st, ft_token_list_parse(stop_s, "--stop", &stop), done);
    if (adapter) FT_CHECK_GOTO(st, ft_adapter_load_for(dir, adapter, &ad), done); /* before the weights */
    FT_CHECK_GOTO(st, ft_backend_open(&be, device, (int)threads), done);
    FT_CHECK_GOTO(st, ft_model_load(&model, be, dir, &lo), done);
    if (adapter) FT_CHECK_GOTO(st, ft_model_attach_adapter(model, be, &ad, &lora), done);
    int64_t V = ft_model_get_dims(model)->V, len = prompt.start[1];
    FT_CHECK_GOTO(st, ft_malloc((void **)&ids, (size_t)(len + n) * 4, "ids"), done);
    FT_CHECK_GOTO(st, ft_malloc((void **)&logits, (size_t)V * 4, "logits"), done);
    FT_CHECK_GOTO(st, ft_malloc((void **)&cand, (size_t)V * sizeof *cand, "sampling"), done);
    memcpy(ids, prompt.ids, (size_t)len * 4);
    ft_rng rng = {(uint64_t)seed};
    /* a chat prints the assistant's reply; otherwise the prompt and its continuation */
    const int64_t from = chat_s ? prompt.start[1] : 0;
    const int as_text = ft_cli_flag(&cli, "text"), stream = as_text && isatty(STDOUT_FILENO);
    if (n > 0) FT_CHECK_GOTO(st, ft_model_kv_new(model, len + n, &kv), done);
    for (int64_t i = 0; i < n; i++) { /* the prompt once, then each new token alone */
        const int64_t fed = ft_model_kv_len(kv);
        FT_CHECK_GOTO(st, ft_model_decode(model, kv, ids + fed, len - fed, logits), done);
        int32_t next = ft_pick(logits, V, temp, top_p, &rng, cand);
        ids[len++] = next;
        int stop_now = next >= 0 && (next == turn_end[0] || next == turn_end[1]);
        for (int64_t k = 0; stop.n && k < stop.start[1]; k++) stop_now |= stop.ids[k] == next;
        if (stop_now) break;
        if (stream) FT_CHECK_GOTO(st, ft_stream_step(&sm, tok, ids + from, len - from, 0), done);
    }
    if (stream) {
        FT_CHECK_GOTO(st, ft_stream_step(&sm, tok, ids + from, len - from, 1), done);
    } else if (as_text) {
        FT_CHECK_GOTO(st, ft_tok_decode(tok, ids + from, len - from, 1, &text, NULL), done);
        printf("%s\n", text);
    } else {
        for (int64_t i = 0; i < len; i++) printf(i ? " %d" : "%d", ids[i]);
        printf("\n");
    }
done:
    free(sm.shown);
    ft_model_kv_free(model, kv);
    free(text);
    ft_tok_free(tok);
    free(ids);
    free(logits);
    free(cand);
    ft_token_seqs_free(&prompt);
    ft_token_seqs_free(&stop);
    if (model) ft_model_set_lora(model, NULL);
    ft_lora_free(lora, be);
    ft_adapter_free(&ad);
    ft_model_free(model);
    ft_backend_free(be);
    ft_cli_free(&cli);
    return st;
}
