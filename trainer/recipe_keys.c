/* recipe_keys.c: the ONE table (ft_recipe_keys) that holds every recipe key: its dotted path,
 * type, default, bounds, allowed values, help line and the struct field (offsetof). Defaults, the
 * YAML walk, `--set key=value`, range checks, ft_recipe_write and the docs/recipes.md table all
 * read it, so none of them can drift from another. Beside the table: lookups over it (exact key,
 * section, "did you mean" suggestion), path resolution, and the one typed setter (ft_rk_set) that
 * every value goes through, from YAML or from --set, over a small "value" view (null, scalar, or
 * list of scalars), so both paths accept and reject the same things. Stored paths are absolute and
 * lexically normalized, which is what makes ft_recipe_write's output reload to an identical recipe
 * from anywhere. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "trainer/cli.h"
#include "trainer/recipe_impl.h"

#define F(field) offsetof(ft_recipe, field)
#define LIST(field, nfield, n) .off = F(field), .n_off = F(nfield), .max_items = (n)

const rk ft_recipe_keys[] = {
    {.key = "model.path", .type = RK_PATH, .off = F(model.path), .def = "", .flags = RK_REQUIRED,
     .help = "Hugging Face checkpoint directory (config.json, *.safetensors, tokenizer.json), or a llama.cpp GGUF model "
             "file (llama, qwen2, qwen3): its quantized linears are trained on as stored, never requantized"},
    {.key = "model.config", .type = RK_PATH, .off = F(model.config), .def = "",
     .help = "config.json (or a directory holding one) for `ftune plan` when model.path is not on this machine; "
             "default: model.path/config.json"},
    {.key = "model.quant", .type = RK_ENUM, .off = F(model.quant), .def = "nf4", .choices = "nf4|bf16|none",
     .help = "storage of the frozen linear weights: nf4 (QLoRA) or the checkpoint's 16-bit width (bf16 and none "
             "are synonyms); a GGUF base's quantized linears keep their own type either way"},
    {.key = "model.arch", .type = RK_STR, .off = F(model.arch), .def = "",
     .help = "optional check: config.json architectures[0] (LlamaForCausalLM) or model_type (llama) must match; "
             "`MistralForCausalLM` also matches Mistral Small 3.1/3.2 (`Mistral3ForConditionalGeneration`, whose text "
             "model ftune trains)"},
    {.key = "model.device", .type = RK_ENUM, .off = F(model.device), .def = "auto", .choices = "auto|cpu|cuda",
     .help = "compute backend; auto = cuda when a GPU is present, else cpu"},
    {.key = "model.threads", .type = RK_INT, .off = F(model.threads), .def = "0", .min = 0, .max = 4096,
     .help = "CPU threads of the cpu backend and of tokenizing the data (0 = all cores)"},
    {.key = "model.memory_gib", .type = RK_FLOAT, .off = F(model.memory_gib), .def = "0", .min = 0, .max = 1e6,
     .help = "cap on the backend memory a run allocates, GiB (0 = none); `ftune plan` plans for it and an "
             "allocation past it fails as on a full device (a GPU shared with other jobs)"},

    {.key = "lora.r", .type = RK_INT, .off = F(lora.r), .def = "16", .min = 1, .max = 4096, .help = "LoRA rank"},
    {.key = "lora.alpha", .type = RK_FLOAT, .off = F(lora.alpha), .def = "32", .min = 0, .max = 1e6, .flags = RK_GT,
     .help = "LoRA alpha; the update is scaled by alpha / r (alpha / sqrt(r) with rslora)"},
    {.key = "lora.dropout", .type = RK_FLOAT, .off = F(lora.dropout), .def = "0", .min = 0, .max = 1, .flags = RK_LT,
     .help = "dropout on the LoRA input"},
    {.key = "lora.targets", .type = RK_ENUMS, .off = F(lora.targets), .def = "all",
     .choices = "all|q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj", .aliases = "all-linear=all",
     .flags = RK_NONEMPTY,
     .help = "adapted modules: all, or a list (YAML list or comma string) of module names"},
    {.key = "lora.rslora", .type = RK_BOOL, .off = F(lora.rslora), .def = "false",
     .help = "rank-stabilized scaling alpha / sqrt(r)"},
    {.key = "lora.dora", .type = RK_BOOL, .off = F(lora.dora), .def = "false",
     .help = "DoRA (PEFT's use_dora): each adapted module also trains a magnitude per output row; the backward "
             "runs some frozen products twice (about 10% slower; with lora.dropout, as PEFT, every one about twice "
             "more: ~2x slower; `ftune plan` counts it); merges and PEFT exports carry it, a llama.cpp adapter cannot"},
    {.key = "lora.init", .type = RK_PATH, .off = F(lora.init), .def = "",
     .help = "initial A/B from a safetensors file under PEFT names (default: PEFT's random A, zero B)"},
    {.key = "lora.trainable_tokens", .type = RK_STRS, LIST(lora.tokens, lora.n_tokens, FT_RECIPE_MAX_TOKENS),
     .def = "",
     .help = "tokens whose embedding and lm_head rows are trained whole (PEFT's trainable_token_indices): ids, "
             "token strings as the tokenizer spells them, or `auto`: the template's tokens this base never trained"},

    {.key = "data.train", .type = RK_PATHS, LIST(data.train, data.n_train, FT_RECIPE_MAX_FILES), .def = "",
     .flags = RK_REQUIRED, .help = "training files: JSONL/JSON (a path or a list of paths)"},
    {.key = "data.valid", .type = RK_PATHS, LIST(data.valid, data.n_valid, FT_RECIPE_MAX_FILES), .def = "",
     .help = "validation files (default: none, or data.val_fraction of data.train)"},
    {.key = "data.tokenizer", .type = RK_PATH, .off = F(data.tokenizer), .def = "",
     .help = "directory holding tokenizer.json, or a GGUF model file (default: model.path)"},
    {.key = "data.format", .type = RK_ENUM, .off = F(data.format), .def = "auto",
     .choices = "auto|text|alpaca|prompt-completion|chat",
     .aliases = "prompt_completion=prompt-completion|completion=prompt-completion|messages=chat|sharegpt=chat",
     .help = "record format; auto takes each file's from its first well-formed record"},
    {.key = "data.template", .type = RK_ENUM, .off = F(data.template_name), .def = "auto",
     .choices = "auto|none|llama3|llama3.1|qwen2|qwen2.5|qwen3|mistral|mistral-v3|mistral-v7",
     .aliases = "llama3.2=llama3.1|llama3.3=llama3.1|mistral_v3=mistral-v3|mistral_v7=mistral-v7|"
                "mistral-small=mistral-v7",
     .help = "chat template; auto recognizes the tokenizer's (tokenizer_config.json, else chat_template.jinja or "
             "a processor's chat_template.json)"},
    {.key = "data.loss", .type = RK_ENUM, .off = F(data.loss), .def = "auto", .choices = "auto|assistant|last|all",
     .help = "which tokens are trained: auto (assistant turns / outputs, all tokens of plain text), assistant, "
             "the last assistant turn, or all"},
    {.key = "data.seq_len", .type = RK_INT, .off = F(data.seq_len), .def = "2048", .min = 16, .max = 1048576,
     .help = "tokens per row"},
    {.key = "data.packing", .type = RK_ENUM, .off = F(data.packing), .def = "bfd", .choices = "bfd|sequential|none",
     .help = "how examples fill rows: best-fit decreasing, in order, or one example per row"},
    {.key = "data.long_examples", .type = RK_ENUM, .off = F(data.long_examples), .def = "truncate",
     .choices = "truncate|drop", .help = "examples longer than data.seq_len"},
    {.key = "data.val_fraction", .type = RK_FLOAT, .off = F(data.val_fraction), .def = "0", .min = 0, .max = 0.5,
     .help = "fraction of data.train held out for validation when data.valid is empty"},
    {.key = "data.on_error", .type = RK_ENUM, .off = F(data.on_error), .def = "skip", .choices = "skip|fatal",
     .help = "malformed records: skip (counted and reported) or stop"},

    {.key = "training.micro_batch", .type = RK_INT, .off = F(training.micro_batch), .def = "1", .min = 1,
     .max = 4096, .help = "rows per forward/backward pass"},
    {.key = "training.grad_accum", .type = RK_INT, .off = F(training.grad_accum), .def = "8", .min = 1,
     .max = 65536, .help = "micro-batches per optimizer step"},
    {.key = "training.steps", .type = RK_INT, .off = F(training.steps), .def = "0", .min = 0, .max = 1e12,
     .help = "optimizer steps (0 = derive from training.epochs)"},
    {.key = "training.epochs", .type = RK_FLOAT, .off = F(training.epochs), .def = "1", .min = 0, .max = 1000,
     .help = "passes over data.train, used when training.steps is 0"},
    {.key = "training.lr", .type = RK_FLOAT, .off = F(training.lr), .def = "2e-4", .min = 0, .max = 1, .flags = RK_GT,
     .help = "peak learning rate"},
    {.key = "training.schedule", .type = RK_ENUM, .off = F(training.schedule), .def = "cosine",
     .choices = "constant|linear|cosine", .help = "learning-rate decay after warmup"},
    {.key = "training.warmup", .type = RK_INT, .off = F(training.warmup), .def = "0", .min = 0, .max = 1e12,
     .help = "linear warmup steps (0 = use training.warmup_ratio)"},
    {.key = "training.warmup_ratio", .type = RK_FLOAT, .off = F(training.warmup_ratio), .def = "0.03", .min = 0,
     .max = 1, .flags = RK_LT, .help = "warmup as a fraction of the steps, used when training.warmup is 0"},
    {.key = "training.min_lr_ratio", .type = RK_FLOAT, .off = F(training.min_lr_ratio), .def = "0", .min = 0,
     .max = 1, .help = "floor of the decayed learning rate, as a fraction of training.lr"},
    {.key = "training.weight_decay", .type = RK_FLOAT, .off = F(training.weight_decay), .def = "0", .min = 0,
     .max = 10, .help = "AdamW decoupled weight decay"},
    {.key = "training.clip", .type = RK_FLOAT, .off = F(training.clip), .def = "1", .min = 0, .max = 1e6,
     .help = "max global gradient norm (0 = off)"},
    {.key = "training.beta1", .type = RK_FLOAT, .off = F(training.beta1), .def = "0.9", .min = 0, .max = 1,
     .flags = RK_LT, .help = "AdamW beta1"},
    {.key = "training.beta2", .type = RK_FLOAT, .off = F(training.beta2), .def = "0.999", .min = 0, .max = 1,
     .flags = RK_LT, .help = "AdamW beta2"},
    {.key = "training.eps", .type = RK_FLOAT, .off = F(training.eps), .def = "1e-8", .min = 0, .max = 1,
     .flags = RK_GT, .help = "AdamW epsilon"},
    {.key = "training.seed", .type = RK_INT, .off = F(training.seed), .def = "42", .min = 0, .max = 4294967295.0,
     .help = "seed of LoRA initialization, data order and dropout"},
    {.key = "training.recompute", .type = RK_BOOL, .off = F(training.recompute), .def = "true",
     .help = "keep only layer inputs and recompute each layer in the backward pass (gradient checkpointing)"},
    {.key = "training.host_boundaries", .type = RK_BOOL, .off = F(training.host_boundaries), .def = "false",
     .help = "with training.recompute: keep the layer inputs in (pinned) host memory, 2 slots on the device, "
             "copied alongside compute; same results, less device memory for long sequences"},
    {.key = "training.keep_attention", .type = RK_BOOL, .off = F(training.keep_attention), .def = "false",
     .help = "with training.recompute: keep each layer's attention output and log-sum-exp instead of recomputing "
             "attention in the backward; same results, one attention forward less per layer, more device memory"},
    {.key = "training.keep_layers", .type = RK_INT, .off = F(training.keep_layers), .def = "0", .min = 0, .max = 1e6,
     .flags = RK_MAX,
     .help = "with training.recompute: the last N layers keep their activations and are not recomputed (at most the "
             "model's layers; max: as many as fit in 96% of the device's memory when the run starts); same results, "
             "one layer's recompute less per layer kept, more device memory (`ftune plan` says how many fit)"},
    {.key = "training.mlp_chunk", .type = RK_INT, .off = F(training.mlp_chunk), .def = "0", .min = 0, .max = 1e9,
     .help = "with training.recompute: run each layer's MLP over this many tokens at a time (rounded up to a "
             "multiple of 4, at least 16; 0: all at once): its [tokens, intermediate] activations shrink to [mlp_chunk, "
             "intermediate], the most of a layer's working set, for the longest contexts (`ftune plan` offers it); "
             "the same FLOPs, results equal to rounding"},
    {.key = "training.boundary_every", .type = RK_INT, .off = F(training.boundary_every), .def = "0", .min = 0,
     .max = 64,
     .help = "with training.recompute (boundaries on the device): keep the input of every Nth layer only; the "
             "backward runs each segment of N layers forward once more to get the others back (two-level "
             "recomputation): about L/N + N layer inputs instead of L + 1 (N near sqrt(L): 9 for 80 layers, 18 instead "
             "of 81), for one more forward of (N-1)/N of the layers; results bit-identical; for the longest contexts "
             "where host memory cannot take the inputs (a DGX Spark's unified memory; `ftune plan` offers it); "
             "0/1: every layer's"},
    {.key = "training.spike_zscore", .type = RK_FLOAT, .off = F(training.spike_zscore), .def = "0", .min = 0,
     .max = 1000, .help = "skip a step whose loss is this many standard deviations above the recent mean (0 = off)"},
    {.key = "training.max_skips", .type = RK_INT, .off = F(training.max_skips), .def = "10", .min = 1, .max = 1e6,
     .help = "consecutive skipped steps (spikes, non-finite gradients) before the run stops"},
    {.key = "training.diverge_factor", .type = RK_FLOAT, .off = F(training.diverge_factor), .def = "2", .min = 0,
     .max = 1000,
     .help = "stop the run when 20 steps in a row have a loss above this many times the lowest recent mean (and at "
             "least 0.5 above it): the loss diverged; 0 = off, else > 1"},
    {.key = "training.max_rollbacks", .type = RK_INT, .off = F(training.max_rollbacks), .def = "0", .min = 0,
     .max = 100,
     .help = "when the loss diverges (training.diverge_factor), go back to the newest checkpoint before the rise and "
             "go on with the learning rate times training.rollback_lr_factor, up to this many times; then, or without "
             "such a checkpoint, the run stops (0 = stop at the first divergence)"},
    {.key = "training.rollback_lr_factor", .type = RK_FLOAT, .off = F(training.rollback_lr_factor), .def = "0.5",
     .min = 0, .max = 1, .flags = RK_GT | RK_LT,
     .help = "what each rollback multiplies the learning rate by (the whole schedule, warmup and floor included)"},
    {.key = "training.max_hours", .type = RK_FLOAT, .off = F(training.max_hours), .def = "0", .min = 0, .max = 1e6,
     .help = "stop this job before it has run this many hours (from the start of `ftune train`, loading included): "
             "before a step whose end, with its evaluation and a checkpoint, the run's slowest so far predict past the "
             "limit, it writes a checkpoint and exits 75; the same command line with `--resume auto` goes on (a "
             "scheduler's time limit, a morning deadline; `ftune plan` says where it stops); 0 = no limit"},
    {.key = "training.tensorboard", .type = RK_BOOL, .off = F(training.tensorboard), .def = "false",
     .help = "also write metrics.jsonl's scalars as a TensorBoard event file, OUTPUT_DIR/tensorboard/"
             "events.out.tfevents.* (train/loss, train/lr, train/grad_norm, train/tokens_per_s, train/mem_mb, "
             "eval/loss, eval/ppl at the optimizer step; `tensorboard --logdir OUTPUT_DIR`); a resume rewrites it "
             "from metrics.jsonl's kept lines"},

    {.key = "checkpoint.every_steps", .type = RK_INT, .off = F(checkpoint.every_steps), .def = "0", .min = 0,
     .max = 1e12, .help = "save a checkpoint every N optimizer steps (0 = off)"},
    {.key = "checkpoint.every_minutes", .type = RK_FLOAT, .off = F(checkpoint.every_minutes), .def = "30", .min = 0,
     .max = 1e6, .help = "save a checkpoint every M minutes of training (0 = off)"},
    {.key = "checkpoint.keep", .type = RK_INT, .off = F(checkpoint.keep), .def = "3", .min = 1, .max = 1000000,
     .help = "checkpoints kept (the last K)"},

    {.key = "eval.every_steps", .type = RK_INT, .off = F(eval.every_steps), .def = "0", .min = 0, .max = 1e12,
     .help = "evaluate every N optimizer steps (0 = only at the end)"},
    {.key = "eval.max_batches", .type = RK_INT, .off = F(eval.max_batches), .def = "0", .min = 0, .max = 1e12,
     .help = "validation micro-batches per evaluation (0 = all)"},
    {.key = "eval.prompts", .type = RK_STRS, LIST(eval.prompts, eval.n_prompts, FT_RECIPE_MAX_PROMPTS), .def = "",
     .help = "prompts completed at each evaluation (a string or a list)"},
    {.key = "eval.max_new_tokens", .type = RK_INT, .off = F(eval.max_new_tokens), .def = "128", .min = 1,
     .max = 65536, .help = "tokens generated per prompt"},
    {.key = "eval.keep_best", .type = RK_BOOL, .off = F(eval.keep_best), .def = "true",
     .help = "keep the adapter of the lowest validation loss so far in OUTPUT_DIR/best/ (PEFT files and "
             "ftune-best.json with its step and loss)"},
    {.key = "eval.at_start", .type = RK_BOOL, .off = F(eval.at_start), .def = "false",
     .help = "evaluate before the first step too (step 0: the base model, the adapter at zero): the baseline the "
             "validation curve and best/ are measured against"},
    {.key = "eval.patience", .type = RK_INT, .off = F(eval.patience), .def = "0", .min = 0, .max = 1e6,
     .help = "stop the run early after N evaluations in a row without a lower validation loss (0 = off); the run "
             "then ends as a finished one"},

    {.key = "export.formats", .type = RK_ENUMS, .off = F(exports.formats), .def = "peft", .choices = "peft|gguf",
     .help = "adapter files written at the end: PEFT safetensors, llama.cpp LoRA GGUF, or both"},
    {.key = "export.merged", .type = RK_ENUM, .off = F(exports.merged), .def = "",
     .choices = "|base|base-f16|f16|bf16|q8_0|q4_0|q4_k_m|q5_k_m|q6_k", .aliases = "none=",
     .help = "also write the base model merged with the adapter as a GGUF of this type (empty = no); base: as the "
             "base (a GGUF base's tensors copied in their own types, the merged ones re-encoded to theirs; a Hugging "
             "Face base's own 16-bit type), base-f16: a GGUF base's tensors as they are with the merged ones F16 "
             "(llama-export-lora's output: no requantization loss)"},
    {.key = "export.from", .type = RK_ENUM, .off = F(exports.from), .def = "last", .choices = "last|best",
     .help = "the adapter the formats and the merged model are made from: the last step's (final/) or the lowest "
             "validation loss's (best/, needs validation data and eval.keep_best); written beside it"},

    {.key = "output_dir", .type = RK_PATH, .off = F(output_dir), .def = "",
     .help = "checkpoints, logs and exports (default: runs/RECIPE-NAME in the current directory, RECIPE-NAME being the recipe file name without .yaml)"},
};
_Static_assert(sizeof ft_recipe_keys / sizeof ft_recipe_keys[0] == RK_COUNT,
               "RK_COUNT in recipe_impl.h must equal the number of keys in ft_recipe_keys");

#undef F
#undef LIST

/* ---- lookups, strings and paths -------------------------------------------------------------- */

ft_status ft_rk_strdup(char **out, const char *s, size_t n) {
    char *p = malloc(n + 1);
    if (!p) return FT_ERR(FT_E_OOM, "out of memory reading the recipe");
    memcpy(p, s, n);
    p[n] = 0;
    *out = p;
    return FT_OK;
}

const rk *ft_rk_find(const char *key) {
    for (int i = 0; i < RK_COUNT; i++)
        if (strcmp(ft_recipe_keys[i].key, key) == 0) return &ft_recipe_keys[i];
    return NULL;
}

/* A section is a proper prefix of some key: "training" for "training.lr". */
int ft_rk_is_section(const char *path) {
    size_t n = strlen(path);
    for (int i = 0; i < RK_COUNT; i++)
        if (strncmp(ft_recipe_keys[i].key, path, n) == 0 && ft_recipe_keys[i].key[n] == '.') return 1;
    return 0;
}

static int rk_edit_distance(const char *a, const char *b) {
    int la = (int)strlen(a), lb = (int)strlen(b), row[130];
    if (la > 128 || lb > 128) return 1000;
    for (int j = 0; j <= lb; j++) row[j] = j;
    for (int i = 1; i <= la; i++) {
        int diag = row[0];
        row[0] = i;
        for (int j = 1; j <= lb; j++) {
            int up = row[j], best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            diag = up;
            row[j] = best;
        }
    }
    return row[lb];
}

/* " (did you mean training.lr?)" for the closest key or section name, or "". */
void ft_rk_suggest(const char *path, char *buf, size_t cap) {
    int best = 1000;
    char best_name[128] = "", name[128];
    for (int i = 0; i < RK_COUNT; i++) {
        const char *k = ft_recipe_keys[i].key;
        for (const char *dot = k;; dot++) { /* the key itself and each of its sections */
            dot = strchr(dot, '.');
            size_t n = dot ? (size_t)(dot - k) : strlen(k);
            if (n >= sizeof name) break;
            memcpy(name, k, n);
            name[n] = 0;
            int d = rk_edit_distance(path, name);
            if (d < best) best = d, snprintf(best_name, sizeof best_name, "%s", name);
            if (!dot) break;
        }
    }
    int limit = (int)strlen(path) / 3;
    if (limit < 2) limit = 2;
    if (best_name[0] && best <= limit) snprintf(buf, cap, " (did you mean %s?)", best_name);
    else buf[0] = 0;
}

/* The first key of a section, for examples in messages. */
const char *ft_rk_first_in(const char *section) {
    size_t n = strlen(section);
    for (int i = 0; i < RK_COUNT; i++)
        if (strncmp(ft_recipe_keys[i].key, section, n) == 0 && ft_recipe_keys[i].key[n] == '.')
            return ft_recipe_keys[i].key;
    return section;
}

/* Lexically normalized absolute path: base/rel with ".", "..", "//" folded; "~/" is $HOME. */
ft_status ft_rk_resolve(const char *base, const char *rel, char **out) {
    char tmp[8192];
    const char *home = getenv("HOME");
    if (rel[0] == '/') snprintf(tmp, sizeof tmp, "%s", rel);
    else if (rel[0] == '~' && (rel[1] == '/' || !rel[1]) && home) snprintf(tmp, sizeof tmp, "%s%s", home, rel + 1);
    else snprintf(tmp, sizeof tmp, "%s/%s", base, rel);
    char res[8192];
    size_t n = 0;
    const char *p = tmp;
    while (*p) {
        while (*p == '/') p++;
        const char *e = strchr(p, '/');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == 0) break;
        if (len == 1 && p[0] == '.') {
        } else if (len == 2 && p[0] == '.' && p[1] == '.') {
            while (n > 0 && res[n - 1] != '/') n--;
            if (n > 0) n--; /* drop the '/' too */
        } else {
            if (n + len + 2 >= sizeof res) return FT_ERR(FT_E_ARG, "path too long: %s", tmp);
            res[n++] = '/';
            memcpy(res + n, p, len);
            n += len;
        }
        p += len;
    }
    if (n == 0) res[n++] = '/';
    return ft_rk_strdup(out, res, n);
}

/* ---- values: one setter over YAML nodes and --set text ---------------------------------------- */

void ft_rk_where(const rorigin *o, char *buf, size_t cap) {
    if (o->set) snprintf(buf, cap, "--set %s: ", o->set);
    else if (o->file && o->line) snprintf(buf, cap, "%s:%d:%d: ", o->file, o->line, o->col);
    else if (o->file) snprintf(buf, cap, "%s: ", o->file);
    else buf[0] = 0;
}

/* Looks a word up in "a|b|c" (aliases "x=a|..." first). Returns the canonical choice (static
 * storage in the table) via *canon and its length. */
static int rk_choice(const rk *k, const char *s, size_t len, const char **canon, size_t *clen) {
    if (k->aliases) {
        for (const char *p = k->aliases; *p;) {
            const char *eq = strchr(p, '='), *bar = strchr(p, '|');
            if (!bar) bar = p + strlen(p);
            if ((size_t)(eq - p) == len && strncmp(p, s, len) == 0) {
                *canon = eq + 1, *clen = (size_t)(bar - eq - 1);
                return 1;
            }
            p = *bar ? bar + 1 : bar;
        }
    }
    const char *p = k->choices;
    for (;;) {
        const char *bar = strchr(p, '|');
        size_t n = bar ? (size_t)(bar - p) : strlen(p);
        if (n == len && strncmp(p, s, len) == 0) {
            *canon = p, *clen = n;
            return 1;
        }
        if (!bar) return 0;
        p = bar + 1;
    }
}

/* "nf4, bf16 or none" from the choices. */
static void rk_choices_text(const rk *k, char *buf, size_t cap) {
    size_t n = 0;
    int count = 1, i = 0;
    for (const char *p = k->choices; *p; p++) count += *p == '|';
    for (const char *p = k->choices;; i++) {
        const char *bar = strchr(p, '|');
        int len = bar ? (int)(bar - p) : (int)strlen(p);
        const char *sep = i == 0 ? "" : i == count - 1 ? " or " : ", ";
        n += (size_t)snprintf(buf + n, n < cap ? cap - n : 0, "%s%s%.*s", sep, len ? "" : "\"\"", len, p);
        if (!bar || n >= cap) break;
        p = bar + 1;
    }
}

static int rk_bool_word(const char *s, int *out) {
    static const char *const t[] = {"true", "yes", "on"}, *const f[] = {"false", "no", "off"};
    for (int i = 0; i < 3; i++) {
        if (strcasecmp(s, t[i]) == 0) return *out = 1, 1;
        if (strcasecmp(s, f[i]) == 0) return *out = 0, 1;
    }
    return 0;
}

static ft_status rk_check_range(const rorigin *o, const rk *k, double v, const char *text) {
    int lo_ok = (k->flags & RK_GT) ? v > k->min : v >= k->min;
    int hi_ok = (k->flags & RK_LT) ? v < k->max : v <= k->max;
    if (!lo_ok) RK_FAIL(o, k, "must be %s %.15g (got %s)", (k->flags & RK_GT) ? ">" : ">=", k->min, text);
    if (!hi_ok) RK_FAIL(o, k, "must be %s %.15g (got %s)", (k->flags & RK_LT) ? "<" : "<=", k->max, text);
    return FT_OK;
}

/* Validates and appends one comma-separated piece list of choices into buf. */
static ft_status rk_add_choices(const rorigin *o, const rk *k, const char *s, char *buf, size_t cap) {
    for (const char *p = s;;) {
        while (*p == ' ' || *p == '\t') p++;
        const char *c = strchr(p, ',');
        size_t len = c ? (size_t)(c - p) : strlen(p);
        while (len && (p[len - 1] == ' ' || p[len - 1] == '\t')) len--;
        if (len) {
            const char *canon;
            size_t clen;
            char choices[256];
            if (!rk_choice(k, p, len, &canon, &clen)) {
                rk_choices_text(k, choices, sizeof choices);
                RK_FAIL(o, k, "unknown value '%.*s' (expected %s)", (int)len, p, choices);
            }
            size_t used = strlen(buf);
            if (used + clen + 2 >= cap) RK_FAIL(o, k, "too many values");
            snprintf(buf + used, cap - used, "%s%.*s", used ? "," : "", (int)clen, canon);
        }
        if (!c) break;
        p = c + 1;
    }
    return FT_OK;
}

/* The one typed setter: value v (from YAML or --set) into key k of r. base: directory that
 * relative paths resolve against. */
ft_status ft_rk_set(ft_recipe *r, const rk *k, const rv *v, const char *base, const rorigin *o) {
    int is_list = rk_is_list(k) || k->type == RK_ENUMS;
    if (v->kind == RV_MAP) RK_FAIL(o, k, "expected %s, got a mapping", is_list ? "a value or a list" : "a value");
    if (v->kind == RV_LIST && !is_list) RK_FAIL(o, k, "expected a single value, got a list");
    const char *s = v->kind == RV_SCALAR ? v->s : "";
    switch (k->type) {
    case RK_STR:
    case RK_PATH: {
        char *nv = NULL;
        if (k->type == RK_PATH && s[0]) FT_TRY(ft_rk_resolve(base, s, &nv));
        else FT_TRY(ft_rk_strdup(&nv, s, strlen(s)));
        free(*rk_str(r, k));
        *rk_str(r, k) = nv;
        return FT_OK;
    }
    case RK_INT: {
        int64_t x;
        if (v->kind == RV_NULL) RK_FAIL(o, k, "expected an integer, got nothing");
        if ((k->flags & RK_MAX) && strcmp(s, "max") == 0) {
            *rk_int(r, k) = -1;
            return FT_OK;
        }
        if (ft_parse_int(s, &x) != FT_OK) {
            ft_error_clear();
            RK_FAIL(o, k, "expected an integer%s, got '%s'", (k->flags & RK_MAX) ? " or max" : "", s);
        }
        FT_TRY(rk_check_range(o, k, (double)x, s));
        *rk_int(r, k) = x;
        return FT_OK;
    }
    case RK_FLOAT: {
        double x;
        if (v->kind == RV_NULL) RK_FAIL(o, k, "expected a number, got nothing");
        if (ft_parse_float(s, &x) != FT_OK) {
            ft_error_clear();
            RK_FAIL(o, k, "expected a number, got '%s'", s);
        }
        FT_TRY(rk_check_range(o, k, x, s));
        *rk_float(r, k) = x;
        return FT_OK;
    }
    case RK_BOOL: {
        int b;
        if (!rk_bool_word(s, &b)) RK_FAIL(o, k, "expected true or false, got '%s'", s);
        *rk_bool(r, k) = b;
        return FT_OK;
    }
    case RK_ENUM: {
        const char *canon;
        size_t clen;
        char choices[256];
        if (!rk_choice(k, s, strlen(s), &canon, &clen)) {
            rk_choices_text(k, choices, sizeof choices);
            RK_FAIL(o, k, "expected %s, got '%s'", choices, s);
        }
        char *nv = NULL;
        FT_TRY(ft_rk_strdup(&nv, canon, clen));
        free(*rk_str(r, k));
        *rk_str(r, k) = nv;
        return FT_OK;
    }
    case RK_ENUMS: {
        char buf[512] = "";
        if (v->kind == RV_LIST) {
            for (int i = 0; i < v->n; i++) {
                if (!v->items[i]) RK_FAIL(o, k, "item %d: expected a name, got a list or mapping", i + 1);
                FT_TRY(rk_add_choices(o, k, v->items[i], buf, sizeof buf));
            }
        } else {
            FT_TRY(rk_add_choices(o, k, s, buf, sizeof buf));
        }
        if (strstr(buf, "all") == buf && buf[3] == ',')
            RK_FAIL(o, k, "'all' cannot be combined with module names");
        if (strstr(buf, ",all")) RK_FAIL(o, k, "'all' cannot be combined with module names");
        if (!buf[0] && (k->flags & RK_NONEMPTY)) RK_FAIL(o, k, "expected at least one value");
        char *nv = NULL;
        FT_TRY(ft_rk_strdup(&nv, buf, strlen(buf)));
        free(*rk_str(r, k));
        *rk_str(r, k) = nv;
        return FT_OK;
    }
    case RK_PATHS:
    case RK_STRS: {
        /* collect items: a list, or one scalar (split at commas for paths) */
        const char *items[RV_MAX_ITEMS];
        int n = 0;
        char *split = NULL;
        if (v->too_many) RK_FAIL(o, k, "at most %d entries", k->max_items);
        if (v->kind == RV_LIST) {
            for (int i = 0; i < v->n; i++) {
                if (!v->items[i]) RK_FAIL(o, k, "item %d: expected a string, got a list or mapping", i + 1);
                items[n++] = v->items[i];
            }
        } else if (v->kind == RV_SCALAR && s[0]) {
            if (k->type == RK_PATHS) {
                FT_TRY(ft_rk_strdup(&split, s, strlen(s)));
                for (char *p = split; p && n < RV_MAX_ITEMS;) {
                    char *c = strchr(p, ',');
                    if (c) *c = 0;
                    while (*p == ' ') p++;
                    for (char *e = p + strlen(p); e > p && e[-1] == ' ';) *--e = 0;
                    if (*p) items[n++] = p;
                    p = c ? c + 1 : NULL;
                }
            } else {
                items[n++] = s;
            }
        }
        ft_status st = FT_OK;
        char *tmp[RV_MAX_ITEMS] = {0};
        if (n > k->max_items) {
            free(split);
            RK_FAIL(o, k, "at most %d entries (got %d)", k->max_items, n);
        }
        for (int i = 0; i < n && st == FT_OK; i++) {
            if (k->type == RK_PATHS) {
                if (!items[i][0]) {
                    free(split);
                    for (int j = 0; j < i; j++) free(tmp[j]);
                    RK_FAIL(o, k, "item %d: empty path", i + 1);
                }
                st = ft_rk_resolve(base, items[i], &tmp[i]);
            } else {
                st = ft_rk_strdup(&tmp[i], items[i], strlen(items[i]));
            }
        }
        free(split);
        if (st != FT_OK) {
            for (int i = 0; i < n; i++) free(tmp[i]);
            return st;
        }
        char **arr = rk_str(r, k);
        for (int i = 0; i < *rk_count(r, k); i++) free(arr[i]), arr[i] = NULL;
        for (int i = 0; i < n; i++) arr[i] = tmp[i];
        *rk_count(r, k) = n;
        return FT_OK;
    }
    }
    return FT_ERR(FT_E_INTERNAL, "recipe key %s: bad type", k->key);
}
