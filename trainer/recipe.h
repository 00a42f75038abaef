/* recipe.h: a training recipe (one YAML file, libyaml) as a validated struct.
 *
 * Every key has a type, a default, bounds and a help line in ONE table (recipe_keys.c) that drives
 * parsing, `--set key=value` overrides, validation messages ("recipe.yaml:12: training.lr: must be
 * > 0") and docs/recipes.md, so they cannot drift. Unknown keys, wrong types, out-of-range values
 * and missing files are rejected before any weight is loaded. Strings are owned by the recipe. */
#ifndef FT_RECIPE_H
#define FT_RECIPE_H

#include <stdint.h>

#include "kernels/status.h"

#define FT_RECIPE_MAX_FILES 16
#define FT_RECIPE_MAX_PROMPTS 8
#define FT_RECIPE_MAX_TOKENS 64

typedef struct ft_recipe {
    char *source;                 /* path of the YAML file ("" for a recipe built from flags) */

    struct {
        char *path;               /* model.path: HF checkpoint directory (config.json + safetensors) */
        char *config;             /* model.config: config.json for `ftune plan` ("" = model.path/config.json) */
        char *quant;              /* model.quant: nf4 | bf16 (none) */
        char *arch;               /* model.arch: optional check against config.json architectures[0] */
        char *device;             /* model.device: cpu | cuda | auto */
        int64_t threads;          /* model.threads: CPU threads (0 = all) */
        double memory_gib;        /* model.memory_gib: cap on the run's backend memory, GiB (0 = none) */
    } model;

    struct {
        int64_t r;                /* lora.r */
        double alpha;             /* lora.alpha */
        double dropout;           /* lora.dropout */
        char *targets;            /* lora.targets: "all" or comma list / YAML list joined by commas */
        int rslora;               /* lora.rslora */
        int dora;                 /* lora.dora */
        char *init;               /* lora.init: optional PEFT-named safetensors with initial A/B */
        char *tokens[FT_RECIPE_MAX_TOKENS]; /* lora.trainable_tokens: ids, token strings, or `auto` */
        int n_tokens;
    } lora;

    struct {
        char *train[FT_RECIPE_MAX_FILES]; /* data.train: JSONL/JSON files (or one string) */
        int n_train;
        char *valid[FT_RECIPE_MAX_FILES]; /* data.valid: optional validation files */
        int n_valid;
        char *tokenizer;          /* data.tokenizer: dir with tokenizer.json (default: model.path) */
        char *format;             /* data.format: auto | text | alpaca | prompt-completion | chat (canonical; aliases accepted) */
        char *template_name;      /* data.template: auto | none | llama3 | llama3.1 | qwen2.5 | qwen3 | mistral | mistral-v3 | mistral-v7 */
        char *loss;               /* data.loss: auto | assistant | last | all */
        int64_t seq_len;          /* data.seq_len */
        char *packing;            /* data.packing: bfd | sequential | none */
        char *long_examples;      /* data.long_examples: truncate | drop */
        double val_fraction;      /* data.val_fraction: held-out fraction when data.valid is empty */
        char *on_error;           /* data.on_error: skip | fatal (malformed JSONL lines) */
    } data;

    struct {
        int64_t micro_batch;      /* training.micro_batch */
        int64_t grad_accum;       /* training.grad_accum */
        int64_t steps;            /* training.steps (0: derive from epochs) */
        double epochs;            /* training.epochs (used when steps == 0) */
        double lr;                /* training.lr */
        char *schedule;           /* training.schedule: constant | linear | cosine */
        int64_t warmup;           /* training.warmup: steps */
        double warmup_ratio;      /* training.warmup_ratio: fraction of steps (used when warmup == 0) */
        double min_lr_ratio;      /* training.min_lr_ratio */
        double weight_decay;      /* training.weight_decay */
        double clip;              /* training.clip: max grad norm, 0 = off */
        double beta1, beta2, eps; /* training.beta1 / beta2 / eps */
        int64_t seed;             /* training.seed */
        int recompute;            /* training.recompute: gradient checkpointing per layer */
        int host_boundaries;      /* training.host_boundaries: with recompute, layer boundaries in host memory */
        int keep_attention;       /* training.keep_attention: with recompute, attention outputs kept, not recomputed */
        int64_t keep_layers;      /* training.keep_layers: with recompute, the last N layers keep their activations
                                   * (-1: max, as many as the plan fits) */
        int64_t mlp_chunk;        /* training.mlp_chunk: with recompute, the MLP over this many tokens at a time (0: all) */
        int64_t boundary_every;   /* training.boundary_every: with recompute, the input of every Nth layer kept (two-level
                                   * recomputation; 0/1: every layer's) */
        double spike_zscore;      /* training.spike_zscore: skip a step whose loss is this many sd above the recent mean (0 = off) */
        int64_t max_skips;        /* training.max_skips: consecutive skipped steps before the run stops */
        double diverge_factor;    /* training.diverge_factor: stop when the loss stays this many times its best (0 = off) */
        int64_t max_rollbacks;    /* training.max_rollbacks: divergences answered by going back to the checkpoint before
                                   * the rise with a lower learning rate, before one stops the run (0: stop at the first) */
        double rollback_lr_factor; /* training.rollback_lr_factor: what each rollback multiplies training.lr by */
        double max_hours;         /* training.max_hours: this process stops, with a checkpoint, before it has run
                                   * this long (0 = no limit; trainer/run_limit.c) */
        int tensorboard;          /* training.tensorboard: OUTPUT_DIR/tensorboard/ event file of metrics.jsonl's scalars */
    } training;

    struct {
        int64_t every_steps;      /* checkpoint.every_steps (0 = off) */
        double every_minutes;     /* checkpoint.every_minutes (0 = off) */
        int64_t keep;             /* checkpoint.keep: last K kept */
    } checkpoint;

    struct {
        int64_t every_steps;      /* eval.every_steps (0 = only at the end) */
        int64_t max_batches;      /* eval.max_batches (0 = all) */
        char *prompts[FT_RECIPE_MAX_PROMPTS]; /* eval.prompts: completions written at each evaluation */
        int n_prompts;
        int64_t max_new_tokens;   /* eval.max_new_tokens */
        int keep_best;            /* eval.keep_best: the adapter of the lowest validation loss in best/ */
        int64_t patience;         /* eval.patience: stop after N evaluations without a new best (0 = off) */
        int at_start;             /* eval.at_start: an evaluation before the first step (step 0) */
    } eval;

    struct {
        char *formats;            /* export.formats: comma list of peft, gguf (adapter); "" = peft only */
        char *merged;             /* export.merged: "" | f16 | bf16 | q8_0 | q4_0 | q4_k_m (merged GGUF at the end) */
        char *from;               /* export.from: last | best (the adapter the exports are made from) */
    } exports;

    char *output_dir;             /* output_dir */
} ft_recipe;

/* Loads and validates a recipe: defaults, then the YAML file, then each "key=value" of sets in
 * order. Paths in the recipe are relative to the recipe file's directory. Does not check that
 * files exist (ft_recipe_check_files does). */
ft_status ft_recipe_load(ft_recipe *r, const char *path, const char *const *sets, int n_sets);
/* The defaults alone (for flag-built runs), then sets. */
ft_status ft_recipe_defaults(ft_recipe *r, const char *const *sets, int n_sets);
/* Model dir with config.json, data files, tokenizer, lora.init exist and are readable. */
ft_status ft_recipe_check_files(const ft_recipe *r);
/* Writes the resolved recipe (every key, defaults included) as YAML, atomically. */
ft_status ft_recipe_write(const ft_recipe *r, const char *path);
void ft_recipe_free(ft_recipe *r);
/* Prints docs for every key (markdown table rows) to f: the source of docs/recipes.md. */
void ft_recipe_doc(void *file);

#endif
