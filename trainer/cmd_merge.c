/* cmd_merge.c: `ftune merge`: base (+ adapter) -> llama.cpp model GGUF or merged HF checkpoint
 * (export/merge.c), and with --check the validation loss of the training-time model (NF4 base +
 * adapter, as trained) beside the loss of exactly what was written (the merged file read back:
 * the GGUF's tensors dequantized and un-permuted into the one model of trainer/model.c, or the
 * merged safetensors loaded as they are), so the cost of merging and quantizing is a number.
 * A GGUF base (a llama.cpp model file, export/merge_gguf.c) merges into a GGUF in its own types by
 * default (--type base); its check's training-time model is the GGUF as a run loads it
 * (ft_model_load: the blocks as stored) + adapter, and the merged file is loaded back the same way. */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "export/adapter.h"
#include "export/gguf.h"
#include "export/merge.h"
#include "kernels/log.h"
#include "kernels/mem.h"
#include "trainer/adapter_attach.h"
#include "trainer/cli.h"
#include "trainer/commands.h"
#include "trainer/hf_config.h"
#include "trainer/loader.h"
#include "trainer/outguard.h"
#include "trainer/dataset.h"
#include "trainer/gguf_config.h"
#include "trainer/recipe.h"
#include "trainer/token_file.h"

#include <ftw.h>
#include <limits.h>
#include <unistd.h>

static const ft_opt ft_merge_opts_tab[] = {
    {"base", FT_OPT_STR, "DIR|FILE.gguf", NULL,
     "base model: Hugging Face directory (config.json, safetensors, tokenizer) or llama.cpp GGUF file"},
    {"adapter", FT_OPT_STR, "DIR", NULL, "run directory, checkpoint or PEFT adapter to merge (none: base alone)"},
    {"out", FT_OPT_STR, "PATH", NULL, "output .gguf file (or directory with --type safetensors)"},
    {"type", FT_OPT_STR, "TYPE", NULL,
     "base (as the base: a GGUF base's own tensor types, the default for one; a Hugging Face base's dtype), "
     "base-f16 (a GGUF base's tensors as they are, the merged ones F16, as llama-export-lora), f32, f16 (the "
     "default for a Hugging Face base), bf16, q8_0, q4_0, q4_k_m, q5_k_m, q6_k (llama-quantize's per-tensor "
     "types) or safetensors"},
    {"merge-into", FT_OPT_STR, "base|nf4", "base", "merge into the original weights or their NF4 round trip"},
    {"name", FT_OPT_STR, "NAME", NULL, "general.name of the GGUF (default: base directory name; a GGUF base's own)"},
    {"check", FT_OPT_STR, "VALID", NULL,
     "validation data (.jsonl/.json rendered as in training, or a token-id file): loss before and after merging"},
    {"device", FT_OPT_STR, "cpu|cuda|auto", "cpu", "compute backend of --check"},
    {"threads", FT_OPT_INT, "N", "0", "CPU threads of --check (0: all cores)"},
};

/* Validation data: a token-id file (one sequence per line, as `ftune eval --tokens`), or JSONL/JSON
 * records rendered, encoded and packed by the training data pipeline (trainer/dataset.h) with the
 * run's recipe when the adapter comes from a run (its data.format/template/loss/seq_len), else
 * recipe defaults. */
typedef struct {
    ft_token_seqs seqs;
    ft_recipe rec;
    int have_rec;
    ft_dataset *ds;
    ft_rows rows;
    char tmp[64];
} ft_valid;

static int ft_rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *f) {
    (void)sb, (void)flag, (void)f;
    return remove(p);
}

static void ft_valid_close(ft_valid *v) {
    ft_rows_free(&v->rows);
    ft_dataset_free(v->ds);
    v->ds = NULL;
    if (v->have_rec) ft_recipe_free(&v->rec);
    v->have_rec = 0;
    ft_token_seqs_free(&v->seqs);
    if (v->tmp[0]) nftw(v->tmp, ft_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    v->tmp[0] = 0;
}

/* recipe.yaml of the run an adapter path belongs to ("" when none). */
static void ft_run_recipe(const char *adapter, char *out, size_t cap) {
    static const char *const up[] = {"", "/..", "/../.."};
    out[0] = 0;
    for (int i = 0; adapter && i < 3; i++) {
        char p[4200];
        snprintf(p, sizeof p, "%s%s/recipe.yaml", adapter, up[i]);
        if (access(p, R_OK) == 0) {
            snprintf(out, cap, "%s", p);
            return;
        }
    }
}

static ft_status ft_valid_open(ft_valid *v, const char *path, const char *base, const char *adapter) {
    memset(v, 0, sizeof *v);
    size_t n = strlen(path);
    int records = (n > 6 && strcmp(path + n - 6, ".jsonl") == 0) || (n > 5 && strcmp(path + n - 5, ".json") == 0);
    if (!records) {
        ft_model_config c;
        FT_TRY(ft_cfg_load(&c, base)); /* a checkpoint directory or a GGUF file */
        FT_TRY(ft_token_file_read(path, &v->seqs));
        for (int64_t s = 0; s < v->seqs.n; s++)
            for (int64_t k = v->seqs.start[s]; k < v->seqs.start[s + 1]; k++)
                if (v->seqs.ids[k] >= c.vocab_size)
                    return FT_ERR(FT_E_FORMAT, "%s: sequence %lld: token id %d is outside the vocabulary of %s (0..%lld)",
                                  path, (long long)s + 1, v->seqs.ids[k], base, (long long)c.vocab_size - 1);
        return FT_OK;
    }
    char absv[PATH_MAX], absb[PATH_MAX], recipe[4200];
    if (!realpath(path, absv)) return FT_ERR(FT_E_IO, "%s: cannot open", path);
    if (!realpath(base, absb)) return FT_ERR(FT_E_IO, "%s: cannot open", base);
    snprintf(v->tmp, sizeof v->tmp, "/tmp/ftune-check-XXXXXX");
    if (!mkdtemp(v->tmp)) {
        v->tmp[0] = 0;
        return FT_ERR(FT_E_IO, "cannot create a temporary directory");
    }
    char s_model[PATH_MAX + 16], s_train[PATH_MAX + 16], s_valid[PATH_MAX + 16], s_out[128];
    snprintf(s_model, sizeof s_model, "model.path=%s", absb);
    snprintf(s_train, sizeof s_train, "data.train=%s", absv);
    snprintf(s_valid, sizeof s_valid, "data.valid=%s", absv);
    snprintf(s_out, sizeof s_out, "output_dir=%s", v->tmp);
    const char *sets[] = {s_model, s_train, s_valid, s_out, "data.tokenizer="};
    ft_run_recipe(adapter, recipe, sizeof recipe);
    ft_status st = recipe[0] ? ft_recipe_load(&v->rec, recipe, sets, 5) : ft_recipe_defaults(&v->rec, sets, 5);
    if (st != FT_OK) return st;
    v->have_rec = 1;
    if (recipe[0]) ft_info("--check: %s rendered as in %s", path, recipe);
    FT_TRY(ft_dataset_open(&v->ds, &v->rec, v->tmp));
    return ft_rows_alloc(v->ds, &v->rows);
}

/* Mean next-token loss of a model over the validation data. */
static ft_status ft_valid_loss(ft_valid *v, ft_model *m, double *mean) {
    double total = 0;
    int64_t count = 0;
    int32_t *labels = NULL;
    ft_status st = FT_OK;
    if (v->ds) {
        FT_TRY(ft_dataset_eval_begin(v->ds));
        for (;;) {
            FT_TRY(ft_dataset_eval_next(v->ds, &v->rows));
            if (v->rows.n_rows == 0) break;
            ft_batch b = {.B = v->rows.B, .T = v->rows.T, .tokens = v->rows.tokens, .labels = v->rows.labels,
                          .pos = v->rows.pos, .doc_start = v->rows.doc_start};
            double loss = 0;
            int64_t n = 0;
            FT_TRY(ft_model_step(m, &b, 0.0f, 0, &loss, &n));
            total += loss, count += n;
        }
    }
    for (int64_t s = 0; s < v->seqs.n; s++) {
        int64_t T = v->seqs.start[s + 1] - v->seqs.start[s];
        const int32_t *ids = v->seqs.ids + v->seqs.start[s];
        free(labels);
        labels = NULL;
        FT_CHECK_GOTO(st, ft_malloc((void **)&labels, (size_t)(T + 1) * 4, "labels"), done);
        for (int64_t t = 0; t < T; t++) labels[t] = t + 1 < T ? ids[t + 1] : -100;
        ft_batch b = {.B = 1, .T = T, .tokens = ids, .labels = labels};
        double loss = 0;
        int64_t n = 0;
        FT_CHECK_GOTO(st, ft_model_step(m, &b, 0.0f, 0, &loss, &n), done);
        total += loss, count += n;
    }
    if (!count) st = FT_ERR(FT_E_FORMAT, "--check: the validation data has no target tokens");
    *mean = count ? total / (double)count : 0;
done:
    free(labels);
    return st;
}

/* --check on the CPU loads the merged model whole: float32 from a GGUF (4 bytes a weight), the
 * checkpoint's 16 bits from safetensors. A 70B's 280 GB would fail after the merge's hour, or
 * bring in the OOM killer: refused before the merge starts when it exceeds this machine's memory. */
static ft_status ft_check_fits(const char *base, ft_merge_kind kind) {
    ft_model_config c;
    ft_param_counts pc;
    FT_TRY(ft_cfg_load(&c, base));
    FT_TRY(ft_cfg_param_counts(&c, &pc));
    double need = (double)pc.total * (kind == FT_MERGE_SAFETENSORS ? 2.0 : 4.0);
    if (ft_is_gguf_path(base)) {
        /* loaded as a run loads a GGUF (the linears' blocks as written, the rest BF16): about the
         * merged file's tensors, plus the 16-bit embeddings and lm_head a quantized file holds smaller */
        int64_t bytes = 0;
        FT_TRY(ft_merge_output_tensor_bytes(base, &c, kind, &bytes, NULL));
        need = (double)bytes + 2.0 * (double)(pc.embedding + pc.lm_head);
    }
    const long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
    const double have = pages > 0 && psize > 0 ? (double)pages * (double)psize : 0;
    if (have > 0 && need > have)
        return FT_ERR(FT_E_ARG,
                      "merge --check: the check loads the merged model whole (%s, %.1f GiB), more than this "
                      "machine's %.1f GiB of memory: merge without --check, or check on --device cuda",
                      ft_is_gguf_path(base) ? "as stored" : kind == FT_MERGE_SAFETENSORS ? "16-bit" : "float32",
                      need / (1 << 30), have / (1 << 30));
    return FT_OK;
}

static ft_status ft_merge_check(ft_valid *vd, const char *valid, const char *base, const ft_adapter *a,
                                const char *out, ft_merge_kind kind, const char *device, int threads) {
    ft_backend *be = NULL;
    ft_model *m = NULL;
    ft_lora *lora = NULL;
    ft_status st;
    ft_model_config c;
    double loss_train = NAN, loss_base = NAN, loss_merged = NAN;
    const int gguf = ft_is_gguf_path(base);
    FT_TRY(ft_cfg_load(&c, base));
    FT_CHECK_GOTO(st, ft_backend_open(&be, device, threads), done);
    /* 1. the training-time model: NF4 base + adapter (or the NF4 base alone); a GGUF base as a run
     * loads it (its quantized linears as stored, 16-bit ones NF4 as model.quant's default) */
    ft_load_opts lo = {.quant = FT_QUANT_NF4};
    FT_CHECK_GOTO(st, ft_model_load(&m, be, base, &lo), done);
    FT_CHECK_GOTO(st, ft_valid_loss(vd, m, &loss_base), done);
    if (a) {
        /* the adapter as `ftune eval --adapter` applies it (trainer/adapter_attach.h: its trainable
         * tokens' rows too); one rank and scale only: per-module patterns are the merge's alone */
        int uniform = a->n > 0;
        for (int64_t k = 0; k < a->n; k++)
            uniform &= a->m[k].r == a->m[0].r && fabs(a->m[k].scale - a->m[0].scale) <= 1e-12 * fabs(a->m[0].scale);
        ft_status at = uniform ? ft_model_attach_adapter(m, be, a, &lora) : FT_E_UNSUPPORTED;
        if (at == FT_OK) {
            FT_CHECK_GOTO(st, ft_valid_loss(vd, m, &loss_train), done);
            ft_model_set_lora(m, NULL);
        } else if (at == FT_E_UNSUPPORTED) { /* what the merge applies and ft_lora cannot hold */
            ft_warn("--check: %s: training-time loss skipped", uniform  ? ft_error_msg()
                                                               : a->n ? "the adapter has per-module ranks/alphas"
                                                                      : "the adapter has no LoRA module");
            ft_error_clear();
        } else {
            st = at;
            goto done;
        }
    }
    ft_model_free(m);
    m = NULL;
    /* 2. the merged file as written: from a GGUF base, loaded as a GGUF base is (each tensor in the
     * type the merge wrote, 16-bit ones kept 16-bit); from a checkpoint, its GGUF decoded to float32
     * throughout (its exact values) */
    ft_load_opts lm = {.quant = FT_QUANT_NONE, .gguf_f32 = kind != FT_MERGE_SAFETENSORS && !gguf};
    FT_CHECK_GOTO(st, ft_model_load(&m, be, out, &lm), done);
    FT_CHECK_GOTO(st, ft_valid_loss(vd, m, &loss_merged), done);
    printf("check %s:\n", valid);
    printf(gguf ? "  base GGUF loss           %.6f\n" : "  base NF4 loss            %.6f\n", loss_base);
    if (a) printf("  training-time loss       %.6f   (%s base + adapter)\n", loss_train, gguf ? "GGUF" : "NF4");
    printf("  merged %-8s loss      %.6f   (%s)\n", ft_merge_kind_name(kind), loss_merged, out);
    if (a && !isnan(loss_train)) printf("  merge cost               %+.6f\n", loss_merged - loss_train);
done:
    if (m) ft_model_set_lora(m, NULL);
    ft_lora_free(lora, be);
    ft_model_free(m);
    ft_backend_free(be);
    return st;
}

ft_status ft_cmd_merge(int argc, char **argv) {
    ft_cli cli = {.command = "merge",
                  .summary = "Write a base model (+ a merged LoRA adapter) as a llama.cpp GGUF or HF checkpoint.",
                  .opts = ft_merge_opts_tab,
                  .nopts = sizeof ft_merge_opts_tab / sizeof *ft_merge_opts_tab};
    ft_status st = ft_cli_parse(&cli, argc, argv);
    ft_adapter a = {0};
    ft_valid vd = {0};
    int have_adapter = 0;
    if (st != FT_OK) goto done;
    if (cli.help) {
        ft_cli_usage(&cli);
        goto done;
    }
    const char *base, *adapter, *out, *type_s, *into, *name, *check, *device;
    int64_t threads;
    FT_CHECK_GOTO(st, ft_cli_req(&cli, "base", &base), done);
    FT_CHECK_GOTO(st, ft_cli_req(&cli, "out", &out), done);
    FT_CHECK_GOTO(st, ft_cli_str(&cli, "adapter", &adapter), done);
    FT_CHECK_GOTO(st, ft_cli_str(&cli, "type", &type_s), done);
    FT_CHECK_GOTO(st, ft_cli_str(&cli, "merge-into", &into), done);
    FT_CHECK_GOTO(st, ft_cli_str(&cli, "name", &name), done);
    FT_CHECK_GOTO(st, ft_cli_str(&cli, "check", &check), done);
    FT_CHECK_GOTO(st, ft_cli_str(&cli, "device", &device), done);
    FT_CHECK_GOTO(st, ft_cli_int(&cli, "threads", &threads), done);
    ft_merge_opts o = {.base_dir = base, .out = out, .name = name};
    const int gguf_base = ft_is_gguf_path(base);
    if (!type_s) type_s = gguf_base ? "base" : "f16";
    if (!ft_merge_kind_parse(type_s, &o.kind)) {
        st = FT_ERR(FT_E_ARG,
                    "merge: unknown --type '%s' (expected base, base-f16, f32, f16, bf16, q8_0, q4_0, q4_k_m, q5_k_m, "
                    "q6_k or safetensors)",
                    type_s);
        goto done;
    }
    if (gguf_base && o.kind == FT_MERGE_SAFETENSORS) { /* before the adapter is read: one line, at once */
        st = FT_ERR(FT_E_ARG, "merge: --type safetensors needs a Hugging Face base; %s is a GGUF file (its merge is a "
                    "GGUF: --type base, f16, q8_0, ...)", base);
        goto done;
    }
    char rb[PATH_MAX], ro[PATH_MAX];
    if ((o.kind == FT_MERGE_SAFETENSORS || gguf_base) && realpath(base, rb) && realpath(out, ro) && strcmp(rb, ro) == 0) {
        st = FT_ERR(FT_E_ARG, "merge: --out %s is the base model's %s: the merged weights would replace the base they "
                    "are read from", out, gguf_base ? "file" : "directory");
        goto done;
    }
    if (strcmp(into, "nf4") == 0) o.merge_into_nf4 = 1;
    else if (strcmp(into, "base") != 0) {
        st = FT_ERR(FT_E_ARG, "merge: unknown --merge-into '%s' (expected base or nf4)", into);
        goto done;
    }
    if (adapter) {
        FT_CHECK_GOTO(st, ft_export_load_adapter(adapter, &a), done);
        have_adapter = 1;
        o.adapter = &a;
    }
    /* the validation data is read first: a bad --check file fails now, not after an hour of merging */
    if (check) FT_CHECK_GOTO(st, ft_valid_open(&vd, check, base, adapter), done);
    if (check && strcmp(device, "cpu") == 0) FT_CHECK_GOTO(st, ft_check_fits(base, o.kind), done);
    signal(SIGXFSZ, SIG_IGN); /* a file size limit is a clean write error, not a kill mid-file */
    ft_vocab_info vi = {0};
    ft_outguard guard;
    ft_outguard_arm(&guard, out); /* Ctrl-C mid-merge: no temporary the size of the model left behind */
    st = ft_merge(&o, o.kind == FT_MERGE_SAFETENSORS ? NULL : &vi);
    ft_outguard_disarm(&guard);
    if (st != FT_OK) goto done;
    if (o.kind == FT_MERGE_SAFETENSORS)
        printf("wrote %s: merged Hugging Face checkpoint%s\n", out, have_adapter ? " (base + adapter)" : "");
    else
        printf("wrote %s: %s GGUF%s, tokenizer %s/%s with %lld tokens\n", out,
               o.kind == FT_MERGE_BASE ? "as-the-base" : ft_merge_kind_name(o.kind),
               have_adapter ? " (base + adapter merged)" : " (base)", vi.model, vi.pre, (long long)vi.n_tokens);
    ft_vocab_info_free(&vi);
    ft_info("merge: peak RSS %.1f MiB", (double)ft_peak_rss_bytes() / (1 << 20));
    if (check)
        FT_CHECK_GOTO(st, ft_merge_check(&vd, check, base, have_adapter ? &a : NULL, out, o.kind, device, (int)threads),
                      done);
done:
    ft_valid_close(&vd);
    ft_adapter_free(&a);
    ft_cli_free(&cli);
    return st;
}
