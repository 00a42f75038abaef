/* recipe.c: see recipe.h. ONE table (ft_recipe_keys) holds every key: its dotted path, type,
 * default, bounds, allowed values, help line and the struct field (offsetof). Defaults, the YAML
 * walk, `--set key=value`, range checks, ft_recipe_write and the docs/recipes.md table all read
 * it, so none of them can drift from another.
 *
 * Parsing uses libyaml's document API: nested mappings give dotted paths (training: {lr: ..} is
 * training.lr; a flat "training.lr: .." key is accepted too), each node carries its line and
 * column for messages ("recipe.yaml:7:7: training.lr: expected a number, got 'fast'"). Every
 * value, from YAML or from --set, goes through one typed setter (ft_rk_set) over a small
 * "value" view (null, scalar, or list of scalars), so both paths accept and reject the same
 * things. Paths in the file resolve against the file's directory, paths given with --set against
 * the current directory; stored paths are absolute and lexically normalized, which is what makes
 * ft_recipe_write's output reload to an identical recipe from anywhere. */
#include "trainer/recipe.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "kernels/fileio.h"
#include "trainer/arch.h"
#include "trainer/cli.h"

typedef enum {
    RK_STR = 0, /* free text */
    RK_PATH,    /* file or directory, resolved to an absolute path; "" = unset */
    RK_INT,     /* int64_t */
    RK_FLOAT,   /* double */
    RK_BOOL,    /* int 0/1 */
    RK_ENUM,    /* one of choices (aliases map to a canonical choice) */
    RK_ENUMS,   /* comma list / YAML list of choices, stored joined by commas */
    RK_PATHS,   /* list of paths: char *[max_items] + int count */
    RK_STRS,    /* list of strings: char *[max_items] + int count */
} rk_type;

enum { RK_GT = 1, RK_LT = 2, RK_REQUIRED = 4, RK_NONEMPTY = 8 }; /* min/max exclusive, required, non-empty list */

typedef struct rk {
    const char *key;     /* dotted path: "training.lr" */
    rk_type type;
    size_t off;          /* field in ft_recipe */
    size_t n_off;        /* RK_PATHS/RK_STRS: the int count field */
    int max_items;
    const char *def;     /* default as the text a user would write ("" = unset / empty list) */
    double min, max;     /* RK_INT / RK_FLOAT bounds (flags say whether exclusive) */
    int flags;
    const char *choices; /* RK_ENUM/RK_ENUMS: "a|b|c" ("" may be a choice: "|f16|...") */
    const char *aliases; /* "alias=canonical|..." or NULL */
    const char *help;
} rk;

#define F(field) offsetof(ft_recipe, field)
#define LIST(field, nfield, n) .off = F(field), .n_off = F(nfield), .max_items = (n)

static const rk ft_recipe_keys[] = {
    {.key = "model.path", .type = RK_PATH, .off = F(model.path), .def = "", .flags = RK_REQUIRED,
     .help = "Hugging Face checkpoint directory (config.json, *.safetensors, tokenizer.json)"},
    {.key = "model.config", .type = RK_PATH, .off = F(model.config), .def = "",
     .help = "config.json (or a directory holding one) for `ftune plan` when model.path is not on this machine; "
             "default: model.path/config.json"},
    {.key = "model.quant", .type = RK_ENUM, .off = F(model.quant), .def = "nf4", .choices = "nf4|bf16|none",
     .help = "storage of the frozen linear weights: nf4 (QLoRA) or the checkpoint's 16-bit width (bf16 and none "
             "are synonyms)"},
    {.key = "model.arch", .type = RK_STR, .off = F(model.arch), .def = "",
     .help = "optional check: config.json architectures[0] (LlamaForCausalLM) or model_type (llama) must match"},
    {.key = "model.device", .type = RK_ENUM, .off = F(model.device), .def = "auto", .choices = "auto|cpu|cuda",
     .help = "compute backend; auto = cuda when a GPU is present, else cpu"},
    {.key = "model.threads", .type = RK_INT, .off = F(model.threads), .def = "0", .min = 0, .max = 4096,
     .help = "CPU threads (0 = all cores)"},

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
    {.key = "lora.init", .type = RK_PATH, .off = F(lora.init), .def = "",
     .help = "initial A/B from a safetensors file under PEFT names (default: PEFT's random A, zero B)"},

    {.key = "data.train", .type = RK_PATHS, LIST(data.train, data.n_train, FT_RECIPE_MAX_FILES), .def = "",
     .flags = RK_REQUIRED, .help = "training files: JSONL/JSON (a path or a list of paths)"},
    {.key = "data.valid", .type = RK_PATHS, LIST(data.valid, data.n_valid, FT_RECIPE_MAX_FILES), .def = "",
     .help = "validation files (default: none, or data.val_fraction of data.train)"},
    {.key = "data.tokenizer", .type = RK_PATH, .off = F(data.tokenizer), .def = "",
     .help = "directory holding tokenizer.json (default: model.path)"},
    {.key = "data.format", .type = RK_ENUM, .off = F(data.format), .def = "auto",
     .choices = "auto|text|alpaca|prompt-completion|chat",
     .aliases = "prompt_completion=prompt-completion|completion=prompt-completion|messages=chat|sharegpt=chat",
     .help = "record format; auto detects it per record"},
    {.key = "data.template", .type = RK_ENUM, .off = F(data.template_name), .def = "auto",
     .choices = "auto|none|llama3|llama3.1|qwen2.5|qwen3|mistral|mistral-v3",
     .aliases = "llama3.2=llama3.1|llama3.3=llama3.1|qwen2=qwen2.5|mistral_v3=mistral-v3",
     .help = "chat template; auto reads tokenizer_config.json"},
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
    {.key = "training.spike_zscore", .type = RK_FLOAT, .off = F(training.spike_zscore), .def = "0", .min = 0,
     .max = 1000, .help = "skip a step whose loss is this many standard deviations above the recent mean (0 = off)"},
    {.key = "training.max_skips", .type = RK_INT, .off = F(training.max_skips), .def = "10", .min = 1, .max = 1e6,
     .help = "consecutive skipped steps (spikes, non-finite gradients) before the run stops"},

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

    {.key = "export.formats", .type = RK_ENUMS, .off = F(exports.formats), .def = "peft", .choices = "peft|gguf",
     .help = "adapter files written at the end: PEFT safetensors, llama.cpp LoRA GGUF, or both"},
    {.key = "export.merged", .type = RK_ENUM, .off = F(exports.merged), .def = "",
     .choices = "|f16|bf16|q8_0|q4_0|q4_k_m", .aliases = "none=",
     .help = "also write the base model merged with the adapter as a GGUF of this type (empty = no)"},

    {.key = "output_dir", .type = RK_PATH, .off = F(output_dir), .def = "",
     .help = "checkpoints, logs and exports (default: runs/RECIPE-NAME in the current directory, RECIPE-NAME being the recipe file name without .yaml)"},
};
enum { RK_COUNT = (int)(sizeof ft_recipe_keys / sizeof ft_recipe_keys[0]) };

#undef F
#undef LIST

/* ---- small helpers --------------------------------------------------------------------------- */

static char **rk_str(ft_recipe *r, const rk *k) { return (char **)(void *)((char *)r + k->off); }
static char *const *rk_cstr(const ft_recipe *r, const rk *k) { return (char *const *)(const void *)((const char *)r + k->off); }
static int *rk_count(ft_recipe *r, const rk *k) { return (int *)(void *)((char *)r + k->n_off); }
static const int *rk_ccount(const ft_recipe *r, const rk *k) { return (const int *)(const void *)((const char *)r + k->n_off); }
static int64_t *rk_int(ft_recipe *r, const rk *k) { return (int64_t *)(void *)((char *)r + k->off); }
static double *rk_float(ft_recipe *r, const rk *k) { return (double *)(void *)((char *)r + k->off); }
static int *rk_bool(ft_recipe *r, const rk *k) { return (int *)(void *)((char *)r + k->off); }
static int rk_is_list(const rk *k) { return k->type == RK_PATHS || k->type == RK_STRS; }

static ft_status rk_strdup(char **out, const char *s, size_t n) {
    char *p = malloc(n + 1);
    if (!p) return FT_ERR(FT_E_OOM, "out of memory reading the recipe");
    memcpy(p, s, n);
    p[n] = 0;
    *out = p;
    return FT_OK;
}

static const rk *rk_find(const char *key) {
    for (int i = 0; i < RK_COUNT; i++)
        if (strcmp(ft_recipe_keys[i].key, key) == 0) return &ft_recipe_keys[i];
    return NULL;
}

/* A section is a proper prefix of some key: "training" for "training.lr". */
static int rk_is_section(const char *path) {
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
static void rk_suggest(const char *path, char *buf, size_t cap) {
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
static const char *rk_first_in(const char *section) {
    size_t n = strlen(section);
    for (int i = 0; i < RK_COUNT; i++)
        if (strncmp(ft_recipe_keys[i].key, section, n) == 0 && ft_recipe_keys[i].key[n] == '.')
            return ft_recipe_keys[i].key;
    return section;
}

/* Lexically normalized absolute path: base/rel with ".", "..", "//" folded; "~/" is $HOME. */
static ft_status rk_resolve(const char *base, const char *rel, char **out) {
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
    return rk_strdup(out, res, n);
}

/* ---- values: one view over YAML nodes and --set text ------------------------------------------ */

enum { RV_NULL = 0, RV_SCALAR, RV_LIST, RV_MAP };
enum { RV_MAX_ITEMS = 64 };

typedef struct rv {
    int kind;
    const char *s;                 /* RV_SCALAR */
    const char *items[RV_MAX_ITEMS];
    int n;                         /* RV_LIST: items (NULL item = a non-scalar element) */
    int too_many;
} rv;

/* Where a value came from, for messages and path resolution. */
typedef struct rorigin {
    const char *file;   /* recipe path, or NULL for --set / defaults */
    int line, col;      /* 1-based; 0 = none */
    const char *set;    /* the "--set key=value" argument */
} rorigin;

static void rk_where(const rorigin *o, char *buf, size_t cap) {
    if (o->set) snprintf(buf, cap, "--set %s: ", o->set);
    else if (o->file && o->line) snprintf(buf, cap, "%s:%d:%d: ", o->file, o->line, o->col);
    else if (o->file) snprintf(buf, cap, "%s: ", o->file);
    else buf[0] = 0;
}

#define RK_FAIL(o, k, ...)                                                                         \
    do {                                                                                           \
        char w_[4400], m_[1024];                                                                   \
        rk_where((o), w_, sizeof w_);                                                              \
        snprintf(m_, sizeof m_, __VA_ARGS__);                                                      \
        return FT_ERR(FT_E_ARG, "%s%s: %s", w_, (k)->key, m_);                                    \
    } while (0)

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
static ft_status rk_set(ft_recipe *r, const rk *k, const rv *v, const char *base, const rorigin *o) {
    int is_list = rk_is_list(k) || k->type == RK_ENUMS;
    if (v->kind == RV_MAP) RK_FAIL(o, k, "expected %s, got a mapping", is_list ? "a value or a list" : "a value");
    if (v->kind == RV_LIST && !is_list) RK_FAIL(o, k, "expected a single value, got a list");
    const char *s = v->kind == RV_SCALAR ? v->s : "";
    switch (k->type) {
    case RK_STR:
    case RK_PATH: {
        char *nv = NULL;
        if (k->type == RK_PATH && s[0]) FT_TRY(rk_resolve(base, s, &nv));
        else FT_TRY(rk_strdup(&nv, s, strlen(s)));
        free(*rk_str(r, k));
        *rk_str(r, k) = nv;
        return FT_OK;
    }
    case RK_INT: {
        int64_t x;
        if (v->kind == RV_NULL) RK_FAIL(o, k, "expected an integer, got nothing");
        if (ft_parse_int(s, &x) != FT_OK) {
            ft_error_clear();
            RK_FAIL(o, k, "expected an integer, got '%s'", s);
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
        FT_TRY(rk_strdup(&nv, canon, clen));
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
        FT_TRY(rk_strdup(&nv, buf, strlen(buf)));
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
                FT_TRY(rk_strdup(&split, s, strlen(s)));
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
                st = rk_resolve(base, items[i], &tmp[i]);
            } else {
                st = rk_strdup(&tmp[i], items[i], strlen(items[i]));
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

/* ---- YAML ------------------------------------------------------------------------------------- */

typedef struct rctx {
    ft_recipe *r;
    const char *file;          /* as the user named it (messages) */
    char *dir;                 /* absolute directory of the file (path resolution) */
    yaml_document_t *doc;
    int line[RK_COUNT];        /* where each key was set in the file (0 = not set) */
    int col[RK_COUNT];
    const char *set_arg[RK_COUNT]; /* or the --set argument that set it last */
    struct { char path[128]; int line; } secs[32];
    int n_secs;
} rctx;

static int rk_index(const rk *k) { return (int)(k - ft_recipe_keys); }

static int rv_is_null_scalar(const yaml_node_t *n) {
    if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) return 0;
    const char *s = (const char *)n->data.scalar.value;
    return !s[0] || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 || strcmp(s, "Null") == 0 ||
           strcmp(s, "NULL") == 0;
}

static void rv_from_node(yaml_document_t *doc, yaml_node_t *n, rv *v) {
    memset(v, 0, sizeof *v);
    if (n->type == YAML_MAPPING_NODE) {
        v->kind = RV_MAP;
    } else if (n->type == YAML_SEQUENCE_NODE) {
        v->kind = RV_LIST;
        for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++) {
            if (v->n == RV_MAX_ITEMS) {
                v->too_many = 1;
                break;
            }
            yaml_node_t *e = yaml_document_get_node(doc, *it);
            v->items[v->n++] = e && e->type == YAML_SCALAR_NODE ? (const char *)e->data.scalar.value : NULL;
        }
    } else if (rv_is_null_scalar(n)) {
        v->kind = RV_NULL;
    } else {
        v->kind = RV_SCALAR;
        v->s = (const char *)n->data.scalar.value;
    }
}

static ft_status rk_walk(rctx *c, yaml_node_t *map, const char *prefix, int depth) {
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *kn = yaml_document_get_node(c->doc, p->key), *vn = yaml_document_get_node(c->doc, p->value);
        int line = (int)kn->start_mark.line + 1, col = (int)kn->start_mark.column + 1;
        if (kn->type != YAML_SCALAR_NODE)
            return FT_ERR(FT_E_ARG, "%s:%d:%d: %s%skeys must be plain names, got a %s", c->file, line, col,
                          prefix, prefix[0] ? ": " : "", kn->type == YAML_MAPPING_NODE ? "mapping" : "list");
        char path[256];
        int n = snprintf(path, sizeof path, "%s%s%s", prefix, prefix[0] ? "." : "", (const char *)kn->data.scalar.value);
        if (n >= (int)sizeof path) return FT_ERR(FT_E_ARG, "%s:%d:%d: key too long", c->file, line, col);
        const rk *k = rk_find(path);
        if (k) {
            int i = rk_index(k);
            if (c->line[i])
                return FT_ERR(FT_E_ARG, "%s:%d:%d: %s: duplicate key (first set at line %d)", c->file, line, col, path,
                              c->line[i]);
            c->line[i] = line, c->col[i] = col;
            rv v;
            rv_from_node(c->doc, vn, &v);
            rorigin o = {c->file, (int)vn->start_mark.line + 1, (int)vn->start_mark.column + 1, NULL};
            FT_TRY(rk_set(c->r, k, &v, c->dir, &o));
        } else if (rk_is_section(path)) {
            for (int s = 0; s < c->n_secs; s++)
                if (strcmp(c->secs[s].path, path) == 0)
                    return FT_ERR(FT_E_ARG, "%s:%d:%d: %s: duplicate section (first at line %d)", c->file, line, col,
                                  path, c->secs[s].line);
            if (c->n_secs < 32 && strlen(path) < sizeof c->secs[0].path) {
                snprintf(c->secs[c->n_secs].path, sizeof c->secs[0].path, "%s", path);
                c->secs[c->n_secs++].line = line;
            }
            if (vn->type == YAML_SCALAR_NODE && rv_is_null_scalar(vn)) continue; /* "eval:" with no keys */
            if (vn->type != YAML_MAPPING_NODE || depth > 4)
                return FT_ERR(FT_E_ARG, "%s:%d:%d: %s: expected a mapping of keys (e.g. %s), got %s", c->file,
                              (int)vn->start_mark.line + 1, (int)vn->start_mark.column + 1, path, rk_first_in(path),
                              vn->type == YAML_SEQUENCE_NODE ? "a list" : "a scalar");
            FT_TRY(rk_walk(c, vn, path, depth + 1));
        } else {
            char hint[128];
            rk_suggest(path, hint, sizeof hint);
            return FT_ERR(FT_E_ARG, "%s:%d:%d: unknown key '%s'%s", c->file, line, col, path, hint);
        }
    }
    return FT_OK;
}

static ft_status rk_parse_yaml(rctx *c, const char *text, size_t len) {
    yaml_parser_t parser;
    yaml_document_t doc;
    ft_status st = FT_OK;
    if (!yaml_parser_initialize(&parser)) return FT_ERR(FT_E_OOM, "out of memory starting the YAML parser");
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        const yaml_mark_t *m = &parser.problem_mark;
        st = FT_ERR(FT_E_FORMAT, "%s:%d:%d: malformed YAML: %s%s%s", c->file, (int)m->line + 1, (int)m->column + 1,
                    parser.problem ? parser.problem : "syntax error", parser.context ? " " : "",
                    parser.context ? parser.context : "");
        yaml_parser_delete(&parser);
        return st;
    }
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    c->doc = &doc;
    if (!root) {
        st = FT_ERR(FT_E_ARG, "%s: the recipe is empty", c->file);
    } else if (root->type != YAML_MAPPING_NODE) {
        st = FT_ERR(FT_E_ARG, "%s:%d:%d: expected a mapping of keys (model:, lora:, data:, ...) at the top level, got %s",
                    c->file, (int)root->start_mark.line + 1, (int)root->start_mark.column + 1,
                    root->type == YAML_SEQUENCE_NODE ? "a list" : "a scalar");
    } else {
        st = rk_walk(c, root, "", 0);
    }
    c->doc = NULL;
    yaml_document_delete(&doc);
    if (st == FT_OK) { /* a second document would be silently ignored: refuse it */
        yaml_document_t doc2;
        if (!yaml_parser_load(&parser, &doc2)) {
            const yaml_mark_t *m = &parser.problem_mark;
            st = FT_ERR(FT_E_FORMAT, "%s:%d:%d: malformed YAML: %s", c->file, (int)m->line + 1, (int)m->column + 1,
                        parser.problem ? parser.problem : "syntax error");
        } else {
            yaml_node_t *r2 = yaml_document_get_root_node(&doc2);
            if (r2)
                st = FT_ERR(FT_E_ARG, "%s:%d: a recipe is one YAML document (found a second one)", c->file,
                            (int)r2->start_mark.line + 1);
            yaml_document_delete(&doc2);
        }
    }
    yaml_parser_delete(&parser);
    return st;
}

/* ---- --set ------------------------------------------------------------------------------------ */

static ft_status rk_apply_set(rctx *c, const char *arg, const char *cwd) {
    const char *eq = strchr(arg, '=');
    if (!eq || eq == arg) return FT_ERR(FT_E_ARG, "--set %s: expected key=value", arg);
    char key[256];
    size_t kl = (size_t)(eq - arg);
    while (kl && arg[kl - 1] == ' ') kl--;
    if (kl >= sizeof key) return FT_ERR(FT_E_ARG, "--set %s: key too long", arg);
    memcpy(key, arg, kl);
    key[kl] = 0;
    const rk *k = rk_find(key);
    if (!k) {
        char hint[128];
        if (rk_is_section(key))
            return FT_ERR(FT_E_ARG, "--set %s: '%s' is a section; set one of its keys (e.g. %s=...)", arg, key,
                          rk_first_in(key));
        rk_suggest(key, hint, sizeof hint);
        return FT_ERR(FT_E_ARG, "--set %s: unknown key '%s'%s", arg, key, hint);
    }
    const char *val = eq + 1;
    while (*val == ' ') val++;
    rorigin o = {NULL, 0, 0, arg};
    rv v = {.kind = RV_SCALAR, .s = val};
    size_t vl = strlen(val);
    ft_status st;
    if ((rk_is_list(k) || k->type == RK_ENUMS) && vl >= 2 && val[0] == '[' && val[vl - 1] == ']') {
        /* a YAML flow list: [a, "b, with comma"] */
        yaml_parser_t parser;
        yaml_document_t doc;
        if (!yaml_parser_initialize(&parser)) return FT_ERR(FT_E_OOM, "out of memory");
        yaml_parser_set_input_string(&parser, (const unsigned char *)val, vl);
        if (!yaml_parser_load(&parser, &doc)) {
            st = FT_ERR(FT_E_ARG, "--set %s: %s: malformed list: %s", arg, k->key,
                        parser.problem ? parser.problem : "syntax error");
            yaml_parser_delete(&parser);
            return st;
        }
        yaml_node_t *root = yaml_document_get_root_node(&doc);
        if (root) rv_from_node(&doc, root, &v);
        st = rk_set(c->r, k, &v, cwd, &o);
        yaml_document_delete(&doc);
        yaml_parser_delete(&parser);
    } else {
        if (!val[0]) v.kind = RV_NULL;
        st = rk_set(c->r, k, &v, cwd, &o);
    }
    if (st == FT_OK) c->set_arg[rk_index(k)] = arg;
    return st;
}

/* ---- validation across keys ------------------------------------------------------------------- */

static void rk_origin_of(const rctx *c, const char *key, rorigin *o) {
    const rk *k = rk_find(key);
    int i = rk_index(k);
    memset(o, 0, sizeof *o);
    if (c->set_arg[i]) o->set = c->set_arg[i];
    else o->file = c->file, o->line = c->line[i], o->col = c->col[i];
}

#define RK_CROSS(c, keyname, ...)                                                                  \
    do {                                                                                           \
        rorigin o_;                                                                                \
        rk_origin_of((c), (keyname), &o_);                                                         \
        RK_FAIL(&o_, rk_find(keyname), __VA_ARGS__);                                               \
    } while (0)

static ft_status rk_validate(rctx *c, int require) {
    const ft_recipe *r = c->r;
    if (require && !r->model.path[0]) RK_CROSS(c, "model.path", "required (the Hugging Face model directory)");
    if (require && r->data.n_train == 0) RK_CROSS(c, "data.train", "required (a JSONL file or a list of them)");
    if (r->training.steps == 0 && r->training.epochs == 0)
        RK_CROSS(c, "training.steps", "set training.steps or training.epochs (both are 0)");
    if (r->training.steps > 0 && r->training.warmup > r->training.steps)
        RK_CROSS(c, "training.warmup", "must not exceed training.steps (%lld > %lld)", (long long)r->training.warmup,
                 (long long)r->training.steps);
    if (r->data.n_valid > 0 && r->data.val_fraction > 0)
        RK_CROSS(c, "data.val_fraction", "set data.valid or data.val_fraction, not both");
    if (r->eval.every_steps > 0 && r->data.n_valid == 0 && r->data.val_fraction == 0 && r->eval.n_prompts == 0)
        RK_CROSS(c, "eval.every_steps", "nothing to evaluate: set data.valid, data.val_fraction or eval.prompts");
    if (r->model.arch[0]) {
        ft_arch a;
        if (!ft_arch_from_hf(r->model.arch, &a) && !ft_arch_from_model_type(r->model.arch, &a))
            RK_CROSS(c, "model.arch", "unknown architecture '%s' (expected one of %s, or llama, mistral, qwen2, qwen3)",
                     r->model.arch, ft_arch_supported_list());
    }
    if (r->training.micro_batch * r->data.seq_len > ((int64_t)1 << 31))
        RK_CROSS(c, "training.micro_batch", "micro_batch x seq_len must stay below 2^31 tokens");
    return FT_OK;
}

/* ---- load / defaults / free -------------------------------------------------------------------- */

static ft_status rk_set_defaults(ft_recipe *r) {
    rorigin o = {0};
    for (int i = 0; i < RK_COUNT; i++) {
        const rk *k = &ft_recipe_keys[i];
        rv v = {.kind = k->def[0] ? RV_SCALAR : RV_NULL, .s = k->def};
        if (k->type == RK_ENUM && !k->def[0]) v.kind = RV_SCALAR; /* "" is a choice */
        FT_TRY(rk_set(r, k, &v, "/", &o));
    }
    return FT_OK;
}

static ft_status rk_read_file(const char *path, char **out, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return FT_ERR(FT_E_IO, "%s: cannot open recipe: %s", path, strerror(errno));
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            cap = cap * 2 + 8192;
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(f);
                return FT_ERR(FT_E_OOM, "%s: out of memory reading the recipe", path);
            }
            buf = nb;
        }
        size_t got = fread(buf + n, 1, 4096, f);
        n += got;
        if (got < 4096) break;
        if (n > (16u << 20)) {
            free(buf);
            fclose(f);
            return FT_ERR(FT_E_ARG, "%s: recipe larger than 16 MiB", path);
        }
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
        free(buf);
        return FT_ERR(FT_E_IO, "%s: read failed", path);
    }
    buf[n] = 0;
    *out = buf, *len = n;
    return FT_OK;
}

static ft_status rk_cwd(char *buf, size_t cap) {
    if (!getcwd(buf, cap)) return FT_ERR(FT_E_IO, "cannot read the current directory: %s", strerror(errno));
    return FT_OK;
}

/* output_dir default: <cwd>/runs/<recipe file stem> ("ftune" without a file). */
static ft_status rk_default_output(ft_recipe *r, const char *cwd) {
    if (r->output_dir[0]) return FT_OK;
    const char *b = strrchr(r->source, '/');
    b = b ? b + 1 : r->source;
    char stem[256], rel[300];
    snprintf(stem, sizeof stem, "%s", b[0] ? b : "ftune");
    char *dot = strrchr(stem, '.');
    if (dot && dot != stem && (strcmp(dot, ".yaml") == 0 || strcmp(dot, ".yml") == 0)) *dot = 0;
    snprintf(rel, sizeof rel, "runs/%s", stem);
    free(r->output_dir);
    r->output_dir = NULL;
    return rk_resolve(cwd, rel, &r->output_dir);
}

static ft_status rk_finish(rctx *c, const char *const *sets, int n_sets, int require) {
    char cwd[4096];
    FT_TRY(rk_cwd(cwd, sizeof cwd));
    for (int i = 0; i < n_sets; i++) FT_TRY(rk_apply_set(c, sets[i], cwd));
    FT_TRY(rk_default_output(c->r, cwd));
    return rk_validate(c, require);
}

ft_status ft_recipe_load(ft_recipe *r, const char *path, const char *const *sets, int n_sets) {
    rctx c;
    char *text = NULL, *abs = NULL;
    size_t len = 0;
    char cwd[4096];
    ft_status st;
    memset(r, 0, sizeof *r);
    memset(&c, 0, sizeof c);
    c.r = r, c.file = path;
    FT_CHECK_GOTO(st, rk_set_defaults(r), fail);
    FT_CHECK_GOTO(st, rk_strdup(&r->source, path, strlen(path)), fail);
    FT_CHECK_GOTO(st, rk_cwd(cwd, sizeof cwd), fail);
    FT_CHECK_GOTO(st, rk_resolve(cwd, path, &abs), fail);
    char *slash = strrchr(abs, '/');
    if (slash == abs) slash[1] = 0;
    else *slash = 0;
    c.dir = abs;
    FT_CHECK_GOTO(st, rk_read_file(path, &text, &len), fail);
    FT_CHECK_GOTO(st, rk_parse_yaml(&c, text, len), fail);
    FT_CHECK_GOTO(st, rk_finish(&c, sets, n_sets, 1), fail);
    free(text);
    free(abs);
    return FT_OK;
fail:
    free(text);
    free(abs);
    ft_recipe_free(r);
    return st;
}

ft_status ft_recipe_defaults(ft_recipe *r, const char *const *sets, int n_sets) {
    rctx c;
    ft_status st;
    memset(r, 0, sizeof *r);
    memset(&c, 0, sizeof c);
    c.r = r, c.file = "recipe";
    FT_CHECK_GOTO(st, rk_set_defaults(r), fail);
    FT_CHECK_GOTO(st, rk_strdup(&r->source, "", 0), fail);
    FT_CHECK_GOTO(st, rk_finish(&c, sets, n_sets, 0), fail);
    return FT_OK;
fail:
    ft_recipe_free(r);
    return st;
}

void ft_recipe_free(ft_recipe *r) {
    if (!r) return;
    for (int i = 0; i < RK_COUNT; i++) {
        const rk *k = &ft_recipe_keys[i];
        if (k->type == RK_INT || k->type == RK_FLOAT || k->type == RK_BOOL) continue;
        if (rk_is_list(k)) {
            for (int j = 0; j < k->max_items; j++) free(rk_str(r, k)[j]);
        } else {
            free(*rk_str(r, k));
        }
    }
    free(r->source);
    memset(r, 0, sizeof *r);
}

/* ---- files ------------------------------------------------------------------------------------ */

static const char *rk_src(const ft_recipe *r) { return r->source && r->source[0] ? r->source : "recipe"; }

/* kind: 'f' a readable file, 'd' a directory, 'c' config.json or a directory holding it. inside:
 * a file that must exist in the directory. */
static ft_status rk_need(const ft_recipe *r, const char *key, const char *path, int kind, const char *inside) {
    struct stat sb;
    if (stat(path, &sb) != 0)
        return FT_ERR(FT_E_IO, "%s: %s: %s '%s' not found", rk_src(r), key, kind == 'd' ? "directory" : "file", path);
    int is_dir = S_ISDIR(sb.st_mode);
    if (kind == 'd' && !is_dir) return FT_ERR(FT_E_IO, "%s: %s: '%s' is not a directory", rk_src(r), key, path);
    if (kind == 'f' && is_dir) return FT_ERR(FT_E_IO, "%s: %s: '%s' is a directory, not a file", rk_src(r), key, path);
    if (is_dir && inside) {
        char p[8192];
        snprintf(p, sizeof p, "%s/%s", path, inside);
        if (access(p, R_OK) != 0)
            return FT_ERR(FT_E_IO, "%s: %s: '%s' has no readable %s", rk_src(r), key, path, inside);
    } else if (access(path, R_OK) != 0) {
        return FT_ERR(FT_E_IO, "%s: %s: cannot read '%s': %s", rk_src(r), key, path, strerror(errno));
    }
    return FT_OK;
}

ft_status ft_recipe_check_files(const ft_recipe *r) {
    if (!r->model.path[0]) return FT_ERR(FT_E_ARG, "%s: model.path: required (the Hugging Face model directory)", rk_src(r));
    FT_TRY(rk_need(r, "model.path", r->model.path, 'd', "config.json"));
    if (r->model.config[0]) FT_TRY(rk_need(r, "model.config", r->model.config, 'c', "config.json"));
    if (r->data.n_train == 0) return FT_ERR(FT_E_ARG, "%s: data.train: required (a JSONL file or a list of them)", rk_src(r));
    for (int i = 0; i < r->data.n_train; i++) FT_TRY(rk_need(r, "data.train", r->data.train[i], 'f', NULL));
    for (int i = 0; i < r->data.n_valid; i++) FT_TRY(rk_need(r, "data.valid", r->data.valid[i], 'f', NULL));
    if (r->data.tokenizer[0]) FT_TRY(rk_need(r, "data.tokenizer", r->data.tokenizer, 'd', "tokenizer.json"));
    else FT_TRY(rk_need(r, "model.path (the tokenizer; or set data.tokenizer)", r->model.path, 'd', "tokenizer.json"));
    if (r->lora.init[0]) FT_TRY(rk_need(r, "lora.init", r->lora.init, 'f', NULL));
    struct stat sb;
    if (stat(r->output_dir, &sb) == 0 && !S_ISDIR(sb.st_mode))
        return FT_ERR(FT_E_IO, "%s: output_dir: '%s' exists and is not a directory", rk_src(r), r->output_dir);
    return FT_OK;
}

/* ---- writing and docs ------------------------------------------------------------------------- */

/* Appends s as a YAML double-quoted scalar. */
static void rk_quote(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
        else if (*p == '\n') fputs("\\n", f);
        else if (*p == '\t') fputs("\\t", f);
        else if (*p < 0x20 || *p == 0x7f) fprintf(f, "\\x%02x", *p);
        else fputc(*p, f);
    }
    fputc('"', f);
}

static void rk_write_value(FILE *f, const ft_recipe *r, const rk *k, const char *indent) {
    switch (k->type) {
    case RK_INT: fprintf(f, " %lld\n", (long long)*rk_int((ft_recipe *)r, k)); break;
    case RK_FLOAT: { /* the shortest text that reads back as the same double */
        double v = *rk_float((ft_recipe *)r, k);
        char buf[64];
        for (int prec = 15; prec <= 17; prec++) {
            snprintf(buf, sizeof buf, "%.*g", prec, v);
            if (strtod(buf, NULL) == v) break;
        }
        fprintf(f, " %s\n", buf);
        break;
    }
    case RK_BOOL: fprintf(f, " %s\n", *rk_bool((ft_recipe *)r, k) ? "true" : "false"); break;
    case RK_PATHS:
    case RK_STRS: {
        int n = *rk_ccount(r, k);
        if (n == 0) {
            fputs(" []\n", f);
            break;
        }
        fputc('\n', f);
        for (int i = 0; i < n; i++) {
            fprintf(f, "%s  - ", indent);
            rk_quote(f, rk_cstr(r, k)[i]);
            fputc('\n', f);
        }
        break;
    }
    default:
        fputc(' ', f);
        rk_quote(f, *rk_cstr(r, k));
        fputc('\n', f);
    }
}

static void rk_write_all(FILE *f, const ft_recipe *r) {
    char section[64] = "";
    fputs("# ftune recipe, resolved: every key with its value (defaults included)\n", f);
    for (int i = 0; i < RK_COUNT; i++) {
        const rk *k = &ft_recipe_keys[i];
        const char *dot = strchr(k->key, '.');
        if (dot) {
            if (strlen(section) != (size_t)(dot - k->key) || strncmp(section, k->key, (size_t)(dot - k->key)) != 0) {
                snprintf(section, sizeof section, "%.*s", (int)(dot - k->key), k->key);
                fprintf(f, "%s:\n", section);
            }
            fprintf(f, "  %s:", dot + 1);
            rk_write_value(f, r, k, "  ");
        } else {
            section[0] = 0;
            fprintf(f, "%s:", k->key);
            rk_write_value(f, r, k, "");
        }
    }
}

ft_status ft_recipe_write(const ft_recipe *r, const char *path) {
    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    if (!mem) return FT_ERR(FT_E_OOM, "%s: out of memory", path);
    rk_write_all(mem, r);
    if (fclose(mem) != 0) {
        free(buf);
        return FT_ERR(FT_E_OOM, "%s: out of memory", path);
    }
    ft_afile af;
    ft_status st = ft_afile_open(&af, path);
    if (st == FT_OK) {
        st = ft_afile_write(&af, buf, (int64_t)len);
        if (st == FT_OK) st = ft_afile_commit(&af);
        else ft_afile_abort(&af);
    }
    free(buf);
    return st;
}

static const char *rk_type_name(const rk *k) {
    switch (k->type) {
    case RK_STR: return "string";
    case RK_PATH: return "path";
    case RK_INT: return "integer";
    case RK_FLOAT: return "number";
    case RK_BOOL: return "bool";
    case RK_ENUM: return "choice";
    case RK_ENUMS: return "list of choices";
    case RK_PATHS: return "list of paths";
    case RK_STRS: return "list of strings";
    }
    return "?";
}

void ft_recipe_doc(void *file) {
    FILE *f = file;
    fputs("| key | type | default | allowed | meaning |\n|---|---|---|---|---|\n", f);
    for (int i = 0; i < RK_COUNT; i++) {
        const rk *k = &ft_recipe_keys[i];
        char def[128], allowed[256];
        if (k->flags & RK_REQUIRED) snprintf(def, sizeof def, "required");
        else if (!k->def[0]) snprintf(def, sizeof def, "%s", rk_is_list(k) ? "`[]`" : "(none)");
        else snprintf(def, sizeof def, "`%s`", k->def);
        if (k->type == RK_INT || k->type == RK_FLOAT) {
            snprintf(allowed, sizeof allowed, "%c%.15g, %.15g%c", (k->flags & RK_GT) ? '(' : '[', k->min, k->max,
                     (k->flags & RK_LT) ? ')' : ']');
        } else if (k->type == RK_ENUM || k->type == RK_ENUMS) {
            size_t n = 0;
            for (const char *p = k->choices;;) {
                const char *bar = strchr(p, '|');
                int len = bar ? (int)(bar - p) : (int)strlen(p);
                n += (size_t)snprintf(allowed + n, n < sizeof allowed ? sizeof allowed - n : 0, "%s%s%.*s%s",
                                      n ? ", " : "", len ? "`" : "`\"\"", len, p, "`");
                if (!bar) break;
                p = bar + 1;
            }
        } else if (k->type == RK_BOOL) {
            snprintf(allowed, sizeof allowed, "`true`, `false`");
        } else if (rk_is_list(k)) {
            snprintf(allowed, sizeof allowed, "up to %d%s", k->max_items, k->type == RK_PATHS ? ", relative to the recipe" : "");
        } else {
            snprintf(allowed, sizeof allowed, "%s", k->type == RK_PATH ? "relative to the recipe" : "any");
        }
        fprintf(f, "| `%s` | %s | %s | %s | %s |\n", k->key, rk_type_name(k), def, allowed, k->help);
    }
}
