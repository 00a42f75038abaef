/* cmd_export.c: `ftune export`: a trained adapter (a run directory, a checkpoint, or any PEFT
 * adapter directory) as a llama.cpp LoRA GGUF (with an optional Ollama Modelfile) or as a PEFT
 * directory. The conversions live in export/adapter.c; this file resolves what the user named
 * (a checkpoint file becomes an adapter in memory with the run's recipe.yaml), parses options
 * and reports. It also provides the run loop's end-of-run exports (ft_run_exports). */
#include <cJSON.h>
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "export/adapter.h"
#include "export/export_util.h"
#include "export/gguf_vocab.h"
#include "export/merge.h"
#include "export/ollama.h"
#include "trainer/gguf_config.h"
#include "kernels/log.h"
#include "trainer/checkpoint.h"
#include "trainer/cli.h"
#include "trainer/commands.h"
#include "trainer/hf_config.h"
#include "trainer/lora.h"
#include "trainer/model.h"
#include "trainer/outguard.h"
#include "trainer/recipe.h"
#include "trainer/safetensors_read.h"

/* The newest checkpoints/step-*.ckpt of a run directory, or "" when none. */
static void ft_latest_ckpt(const char *run_dir, char *out, size_t cap) {
    char d[4200];
    int64_t *steps = NULL, n = 0;
    out[0] = 0;
    snprintf(d, sizeof d, "%s/checkpoints", run_dir);
    if (ft_ckpt_list(d, &steps, &n) == FT_OK && n > 0) ft_ckpt_path(out, cap, d, steps[n - 1]);
    else ft_error_clear();
    free(steps);
}

/* A checkpoint (adapter parameters) + its run's recipe.yaml (alpha, rsLoRA, base model) as an
 * adapter, built in memory: the PEFT config text and the parameters under PEFT names
 * (ft_lora_peft_tensors, the mapping ft_lora_save writes final/ with) go through the same reading
 * and checks as a PEFT directory (ft_adapter_load_tensors). Nothing is written: a PEFT directory
 * under /tmp, as this once made, was left behind by Ctrl-C and could not be made on a read-only
 * or full /tmp. */
static ft_status ft_ckpt_adapter(const char *ckpt, ft_adapter *a) {
    char run_dir[4200], recipe_path[4300];
    ft_ckpt_state cs;
    float *data = NULL;
    ft_recipe rec = {0};
    ft_backend *be = NULL;
    ft_lora *lora = NULL;
    ft_st_tensor *ts = NULL;
    int64_t nt = 0;
    cJSON *j = NULL;
    char *text = NULL;
    ft_status st;
    /* RUN_DIR/checkpoints/step-N.ckpt */
    snprintf(run_dir, sizeof run_dir, "%s", ckpt);
    for (int k = 0; k < 2; k++) {
        char *sl = strrchr(run_dir, '/');
        if (sl) *sl = 0;
        else snprintf(run_dir, sizeof run_dir, ".");
    }
    if (!strrchr(ckpt, '/')) snprintf(run_dir, sizeof run_dir, "..");
    snprintf(recipe_path, sizeof recipe_path, "%s/recipe.yaml", run_dir);
    if (!ft_is_file(recipe_path))
        return FT_ERR(FT_E_ARG, "%s: cannot find the run's recipe.yaml (%s) that says the adapter's alpha and base model",
                      ckpt, recipe_path);
    FT_TRY(ft_ckpt_read(ckpt, &cs, &data));
    FT_CHECK_GOTO(st, ft_recipe_load(&rec, recipe_path, NULL, 0), done);
    ft_model_config cfg;
    FT_CHECK_GOTO(st, ft_cfg_load(&cfg, rec.model.path), done); /* a checkpoint directory or a GGUF file */
    if (cs.lora_layers != cfg.num_hidden_layers) {
        st = FT_ERR(FT_E_FORMAT, "%s: adapter has %lld layers but %s has %lld", ckpt, (long long)cs.lora_layers,
                    rec.model.path, (long long)cfg.num_hidden_layers);
        goto done;
    }
    ft_model_dims dims = {.C = cfg.hidden_size, .F = cfg.intermediate_size, .L = cfg.num_hidden_layers,
                          .H = cfg.num_attention_heads, .Hkv = cfg.num_key_value_heads, .D = cfg.head_dim,
                          .V = cfg.vocab_size};
    ft_lora_shapes shapes = ft_model_lora_shapes(&dims);
    /* the trainable tokens the checkpoint records, whose rows follow the LoRA tensors, and DoRA's
     * magnitudes after them (trainer/lora.h) */
    ft_lora_cfg lc = {.r = cs.lora_r, .alpha = rec.lora.alpha, .dropout = rec.lora.dropout, .rslora = rec.lora.rslora,
                      .targets = cs.lora_targets, .vlm = cfg.vlm, .tokens = cs.tokens, .n_tokens = cs.n_tokens,
                      .tied = cfg.tie_word_embeddings, .dora = cs.dora};
    /* the layout only (offsets of each A and B): the values are the checkpoint's, on the host. 0
     * threads: leaves OpenBLAS's process-wide pool as it is, for the backend that `eval --adapter
     * CKPT` or `generate` computes on (1 here made its logits differ from final/'s by an ulp) */
    FT_CHECK_GOTO(st, ft_backend_cpu_create(&be, 0), done);
    st = ft_lora_create(&lora, be, &lc, &shapes, cfg.num_hidden_layers);
    if (st != FT_OK) { /* e.g. the trainable tokens it records */
        ft_error_wrap(st, "%s", ckpt);
        goto done;
    }
    if (lora->n_params != cs.n_params) {
        st = FT_ERR(FT_E_FORMAT, "%s: %lld adapter parameters, the recipe's model implies %lld", ckpt,
                    (long long)cs.n_params, (long long)lora->n_params);
        goto done;
    }
    FT_CHECK_GOTO(st, ft_lora_peft_tensors(lora, data, &ts, &nt), done); /* data: params, then AdamW's m, v */
    j = cJSON_CreateObject();
    cJSON *mods = cJSON_CreateArray();
    for (int m = 0; m < FT_MOD_COUNT; m++)
        if (lc.targets & (1u << m)) cJSON_AddItemToArray(mods, cJSON_CreateString(ft_module_name(m)));
    cJSON_AddStringToObject(j, "peft_type", "LORA");
    cJSON_AddStringToObject(j, "task_type", "CAUSAL_LM");
    cJSON_AddStringToObject(j, "base_model_name_or_path", rec.model.path);
    cJSON_AddNumberToObject(j, "r", (double)lc.r);
    cJSON_AddNumberToObject(j, "lora_alpha", lc.alpha);
    cJSON_AddNumberToObject(j, "lora_dropout", lc.dropout);
    cJSON_AddItemToObject(j, "target_modules", mods);
    cJSON_AddBoolToObject(j, "use_rslora", lc.rslora);
    cJSON_AddBoolToObject(j, "use_dora", lc.dora);
    ft_adapter_tokens_json(j, lora->tok.ids, lora->tok.k, lora->tok.ids, lc.tied ? 0 : lora->tok.k);
    text = cJSON_Print(j);
    if (!text) {
        st = FT_ERR(FT_E_OOM, "out of memory");
        goto done;
    }
    FT_CHECK_GOTO(st, ft_adapter_load_tensors(a, ckpt, text, ts, nt), done);
    ft_info("%s: step %lld of the run in %s", ckpt, (long long)cs.step, run_dir);
done:
    free(text);
    cJSON_Delete(j);
    free(ts);
    ft_lora_free(lora, be);
    ft_backend_free(be);
    ft_recipe_free(&rec);
    free(data);
    return st;
}

ft_status ft_export_load_adapter(const char *path, ft_adapter *a) {
    char ckpt[4200] = "";
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISREG(sb.st_mode)) {
        snprintf(ckpt, sizeof ckpt, "%s", path);
    } else if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        char resolved[4096];
        if (ft_adapter_resolve(path, resolved, sizeof resolved) == FT_OK) return ft_adapter_load(a, resolved);
        ft_latest_ckpt(path, ckpt, sizeof ckpt);
        if (!ckpt[0]) return ft_adapter_resolve(path, resolved, sizeof resolved); /* its message */
        ft_error_clear();
    } else {
        return FT_ERR(FT_E_ARG, "%s: no such file or directory", path);
    }
    return ft_ckpt_adapter(ckpt, a);
}

ft_status ft_run_exports(void *user, const ft_recipe *r, const char *final_dir) {
    (void)user;
    ft_adapter a = {0};
    ft_model_config cfg;
    char base_dir[4096], out[4300];
    ft_status st;
    signal(SIGXFSZ, SIG_IGN);
    FT_TRY(ft_adapter_load(&a, final_dir));
    FT_CHECK_GOTO(st, ft_adapter_base_config(&a, r->model.path, &cfg, base_dir, sizeof base_dir), done);
    FT_CHECK_GOTO(st, ft_adapter_check(&a, &cfg, base_dir), done);
    snprintf(a.base, sizeof a.base, "%s", base_dir); /* the run's base: trainable tokens' base rows */
    const char *f = r->exports.formats ? r->exports.formats : "";
    while (*f) {
        size_t len = strcspn(f, ", ");
        if (len == 4 && strncmp(f, "gguf", 4) == 0) {
            snprintf(out, sizeof out, "%s/adapter.gguf", final_dir);
            FT_CHECK_GOTO(st, ft_adapter_write_gguf(&a, &cfg, out, FT_GGML_F32), done);
            printf("export: %s (llama.cpp LoRA adapter)\n", out);
        } else if (len && !(len == 4 && strncmp(f, "peft", 4) == 0)) {
            st = FT_ERR(FT_E_ARG, "export.formats: unknown format '%.*s' (expected peft, gguf)", (int)len, f);
            goto done;
        }
        f += len;
        f += strspn(f, ", ");
    }
    if (r->exports.merged && r->exports.merged[0]) {
        ft_merge_opts o = {.base_dir = base_dir, .adapter = &a, .out = out};
        if (!ft_merge_kind_parse(r->exports.merged, &o.kind) || o.kind == FT_MERGE_SAFETENSORS) {
            st = FT_ERR(FT_E_ARG, "export.merged: unknown type '%s'", r->exports.merged);
            goto done;
        }
        /* model.path may be a GGUF file: "base" keeps its tensors (merged ones in their own types) */
        snprintf(out, sizeof out, "%s/model-%s.gguf", final_dir, r->exports.merged);
        FT_CHECK_GOTO(st, ft_merge(&o, NULL), done);
        printf("export: %s (merged model, %s)\n", out,
               o.kind == FT_MERGE_BASE       ? "in the base's types"
               : o.kind == FT_MERGE_BASE_F16 ? "in the base's types, the merged tensors F16"
                                             : r->exports.merged);
    }
done:
    ft_adapter_free(&a);
    return st;
}

static const ft_opt ft_export_opts[] = {
    {"format", FT_OPT_STR, "gguf|peft", "gguf", "llama.cpp LoRA GGUF or PEFT directory"},
    {"out", FT_OPT_STR, "PATH", NULL, "output file (gguf) or directory (peft); default: beside the adapter"},
    {"type", FT_OPT_STR, "f32|f16|bf16|q8_0", "f32", "tensor type of the GGUF adapter"},
    {"base", FT_OPT_STR, "DIR|GGUF", NULL, "base model directory or GGUF file (default: the adapter's base_model_name_or_path)"},
    {"ollama", FT_OPT_FLAG, NULL, NULL, "also write an Ollama Modelfile beside the GGUF"},
    {"ollama-from", FT_OPT_STR, "GGUF|NAME", NULL, "FROM of the Modelfile (default: base.gguf beside the adapter)"},
};

ft_status ft_cmd_export(int argc, char **argv) {
    ft_cli cli = {.command = "export",
                  .summary = "Convert a trained LoRA adapter for llama.cpp/Ollama (GGUF) or PEFT.",
                  .positional = "RUN_DIR|CHECKPOINT|PEFT_DIR",
                  .opts = ft_export_opts,
                  .nopts = sizeof ft_export_opts / sizeof *ft_export_opts};
    ft_status st = ft_cli_parse(&cli, argc, argv);
    ft_adapter a = {0};
    ft_vocab_info vi = {0};
    ft_outguard guard;
    int armed = 0;
    if (st != FT_OK) goto done;
    if (cli.help) {
        ft_cli_usage(&cli);
        goto done;
    }
    if (cli.npos != 1) {
        st = FT_ERR(FT_E_ARG, "export: expected one RUN_DIR, CHECKPOINT or PEFT_DIR (see 'ftune export --help')");
        goto done;
    }
    const char *fmt, *out, *type_s, *base, *from;
    FT_CHECK_GOTO(st, ft_cli_str(&cli, "format", &fmt), done);
    FT_CHECK_GOTO(st, ft_cli_str(&cli, "out", &out), done);
    FT_CHECK_GOTO(st, ft_cli_str(&cli, "type", &type_s), done);
    FT_CHECK_GOTO(st, ft_cli_str(&cli, "base", &base), done);
    FT_CHECK_GOTO(st, ft_cli_str(&cli, "ollama-from", &from), done);
    int gguf = strcmp(fmt, "gguf") == 0;
    if (!gguf && strcmp(fmt, "peft") != 0) {
        st = FT_ERR(FT_E_ARG, "export: unknown --format '%s' (expected gguf or peft)", fmt);
        goto done;
    }
    ft_ggml_type gt = FT_GGML_F32;
    if (!ft_ggml_type_from_name(type_s, &gt) ||
        (gt != FT_GGML_F32 && gt != FT_GGML_F16 && gt != FT_GGML_BF16 && gt != FT_GGML_Q8_0)) {
        st = FT_ERR(FT_E_ARG, "export: unknown --type '%s' (expected f32, f16, bf16 or q8_0)", type_s);
        goto done;
    }
    if (ft_cli_flag(&cli, "ollama") && !gguf) {
        st = FT_ERR(FT_E_ARG, "export: --ollama needs --format gguf");
        goto done;
    }
    signal(SIGXFSZ, SIG_IGN); /* a file size limit is a clean write error, not a kill mid-file */
    FT_CHECK_GOTO(st, ft_export_load_adapter(cli.pos[0], &a), done);
    if (gguf) FT_CHECK_GOTO(st, ft_adapter_dora_gguf_refuse(&a), done); /* at once, before the base is read */
    char outbuf[4300];
    if (!out) {
        struct stat sb;
        const char *beside = stat(a.dir, &sb) == 0 && S_ISDIR(sb.st_mode) ? a.dir : ".";
        if (gguf) snprintf(outbuf, sizeof outbuf, "%s/adapter-%s.gguf", beside, type_s);
        else snprintf(outbuf, sizeof outbuf, "%s/peft", beside);
        out = outbuf;
    }
    ft_model_config cfg;
    char base_dir[4096] = "";
    ft_outguard_arm(&guard, out); /* Ctrl-C mid-write: no temporary file left behind */
    armed = 1;
    if (gguf || base) {
        FT_CHECK_GOTO(st, ft_adapter_base_config(&a, base, &cfg, base_dir, sizeof base_dir), done);
        FT_CHECK_GOTO(st, ft_adapter_check(&a, &cfg, base_dir), done);
        /* the base the user named is where a trainable token's base row is read from (the GGUF pairs
         * hold new - base rows), not base_model_name_or_path */
        if (base) snprintf(a.base, sizeof a.base, "%s", base_dir);
    }
    if (gguf) {
        FT_CHECK_GOTO(st, ft_adapter_write_gguf(&a, &cfg, out, gt), done);
        printf("wrote %s: LoRA adapter GGUF for %s, %lld modules, rank %lld, type %s\n", out,
               ft_arch_get(cfg.arch)->gguf_arch, (long long)a.n, (long long)a.r, ft_ggml_type_name(gt));
        if (ft_cli_flag(&cli, "ollama")) {
            char mf[4200], dflt[4200], adapter_ref[4200];
            snprintf(mf, sizeof mf, "%s", out);
            char *slash = strrchr(mf, '/');
            const char *fname = slash ? slash + 1 : out;
            snprintf(adapter_ref, sizeof adapter_ref, "./%s", fname);
            if (slash) snprintf(slash + 1, sizeof mf - (size_t)(slash + 1 - mf), "Modelfile");
            else snprintf(mf, sizeof mf, "Modelfile");
            if (!from && ft_is_gguf_file(base_dir)) { /* the GGUF the adapter was trained on is the FROM */
                if (!realpath(base_dir, dflt)) snprintf(dflt, sizeof dflt, "%s", base_dir);
                from = dflt;
            }
            if (!from) {
                snprintf(dflt, sizeof dflt, "./base.gguf");
                from = dflt;
                ft_warn("Modelfile: FROM ./base.gguf: write it with 'ftune merge --base %s --out base.gguf --type f16' "
                        "(or pass --ollama-from)", base_dir);
            }
            FT_CHECK_GOTO(st, ft_vocab_info_read(base_dir, &vi), done);
            FT_CHECK_GOTO(st, ft_ollama_write(mf, from, adapter_ref, vi.chat_template, vi.eos_text), done);
            printf("wrote %s\n", mf);
        }
    } else {
        FT_CHECK_GOTO(st, ft_adapter_write_peft(&a, out, base ? base_dir : NULL), done);
        printf("wrote %s: PEFT adapter, %lld modules, rank %lld\n", out, (long long)a.n, (long long)a.r);
    }
done:
    if (armed) ft_outguard_disarm(&guard);
    ft_vocab_info_free(&vi);
    ft_adapter_free(&a);
    ft_cli_free(&cli);
    return st;
}
