/* test_recipe.c: recipe parsing and validation (trainer/recipe.h).
 *
 * A table of bad recipes (YAML text and --set arguments), each with the status and the message
 * it must produce (file:line:col and the key path), then good recipes: nested and flat keys,
 * lists, defaults, path resolution against the recipe's directory, --set overrides, the
 * write/reload round trip, the missing-file checks, every recipe in recipes/ (the demo's files
 * exist), and docs/recipes.md in sync with the key table. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "harness.h"
#include "trainer/plan.h"
#include "trainer/recipe.h"

static char g_path[4096];  /* tmpdir/r.yaml */

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    FT_CHECK(f != NULL, "cannot write %s", path);
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

/* The minimal valid recipe every bad case edits. */
#define A13 "a, a, a, a, a, a, a, a, a, a, a, a, a, " /* 13 list items */
#define BASE "model:\n  path: m\ndata:\n  train: t.jsonl\ntraining:\n  steps: 10\n"

typedef struct bad_case {
    const char *yaml;
    const char *set;       /* one --set argument or NULL */
    ft_status status;
    const char *msg;       /* substring of the message ("r.yaml" stands for the file) */
} bad_case;

static const bad_case bad_cases[] = {
    /* types */
    {BASE "  lr: fast\n", NULL, FT_E_ARG, "r.yaml:7:7: training.lr: expected a number, got 'fast'"},
    {BASE "lora:\n  r: 2.5\n", NULL, FT_E_ARG, "r.yaml:8:6: lora.r: expected an integer, got '2.5'"},
    {BASE "lora:\n  rslora: maybe\n", NULL, FT_E_ARG, "lora.rslora: expected true or false, got 'maybe'"},
    {BASE "  lr: [1, 2]\n", NULL, FT_E_ARG, "r.yaml:7:7: training.lr: expected a single value, got a list"},
    {BASE "lora:\n  r:\n    a: 1\n", NULL, FT_E_ARG, "lora.r: expected a value, got a mapping"},
    {BASE "  seed:\n", NULL, FT_E_ARG, "training.seed: expected an integer, got nothing"},
    {"model:\n  path: m\ndata:\n  train:\n    - {a: 1}\ntraining:\n  steps: 1\n", NULL, FT_E_ARG,
     "data.train: item 1: expected a string, got a list or mapping"},
    /* enums and lists */
    {BASE "model:\n", NULL, FT_E_ARG, "r.yaml:7:1: model: duplicate section (first at line 1)"},
    {"model:\n  path: m\n  quant: nf8\ndata:\n  train: t.jsonl\n", NULL, FT_E_ARG,
     "r.yaml:3:10: model.quant: expected nf4, bf16 or none, got 'nf8'"},
    {BASE "lora:\n  targets: [q_proj, qproj]\n", NULL, FT_E_ARG,
     "lora.targets: unknown value 'qproj' (expected all, q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj or "
     "down_proj)"},
    {BASE "lora:\n  targets: all,q_proj\n", NULL, FT_E_ARG, "lora.targets: 'all' cannot be combined with module names"},
    {BASE "lora:\n  targets: []\n", NULL, FT_E_ARG, "lora.targets: expected at least one value"},
    {BASE "export:\n  merged: q5_k\n", NULL, FT_E_ARG, "export.merged: expected \"\", base, base-f16, f16, bf16, q8_0, q4_0, q4_k_m, q5_k_m or q6_k, got 'q5_k'"},
    {BASE "data:\n  format: csv\n", NULL, FT_E_ARG, "r.yaml:7:1: data: duplicate section (first at line 3)"},
    {"model: {path: m}\ndata: {train: t.jsonl, format: csv}\n", NULL, FT_E_ARG,
     "data.format: expected auto, text, alpaca, prompt-completion or chat, got 'csv'"},
    {"model: {path: m}\ndata:\n  train: [a, b, c, d, e, f, g, h, i, j, k, l, m, n, o, p, q]\n", NULL, FT_E_ARG,
     "data.train: at most 16 entries (got 17)"},
    /* ranges */
    {BASE "lora:\n  r: 0\n", NULL, FT_E_ARG, "r.yaml:8:6: lora.r: must be >= 1 (got 0)"},
    {BASE "lora:\n  dropout: 1\n", NULL, FT_E_ARG, "lora.dropout: must be < 1 (got 1)"},
    {BASE "lora:\n  dropout: -0.1\n", NULL, FT_E_ARG, "lora.dropout: must be >= 0 (got -0.1)"},
    {BASE "lora: {alpha: 0}\n", NULL, FT_E_ARG, "r.yaml:7:15: lora.alpha: must be > 0 (got 0)"},
    {"model: {path: m}\ndata: {train: t.jsonl, seq_len: 8}\n", NULL, FT_E_ARG, "data.seq_len: must be >= 16 (got 8)"},
    {BASE "  lr: 0\n", NULL, FT_E_ARG, "r.yaml:7:7: training.lr: must be > 0 (got 0)"},
    {BASE "  micro_batch: 0\n", NULL, FT_E_ARG, "training.micro_batch: must be >= 1 (got 0)"},
    {BASE "checkpoint:\n  keep: 0\n", NULL, FT_E_ARG, "checkpoint.keep: must be >= 1 (got 0)"},
    {BASE "  beta2: 1\n", NULL, FT_E_ARG, "training.beta2: must be < 1 (got 1)"},
    {BASE "  host_boundaries: sometimes\n", NULL, FT_E_ARG,
     "r.yaml:7:20: training.host_boundaries: expected true or false, got 'sometimes'"},
    {BASE "  host_boundaries: [true]\n", NULL, FT_E_ARG, "training.host_boundaries: expected a single value, got a list"},
    {BASE "model.memory_gib: -1\n", NULL, FT_E_ARG, "r.yaml:7:19: model.memory_gib: must be >= 0 (got -1)"},
    {BASE "model.memory_gib: lots\n", NULL, FT_E_ARG, "model.memory_gib: expected a number, got 'lots'"},
    /* keys and structure */
    {BASE "  lrr: 1e-4\n", NULL, FT_E_ARG, "r.yaml:7:3: unknown key 'training.lrr' (did you mean training.lr?)"},
    {BASE "trainig:\n  lr: 1\n", NULL, FT_E_ARG, "r.yaml:7:1: unknown key 'trainig' (did you mean training?)"},
    {BASE "  lr: 1e-4\n  lr: 2e-4\n", NULL, FT_E_ARG, "r.yaml:8:3: training.lr: duplicate key (first set at line 7)"},
    {BASE "training.steps: 5\n", NULL, FT_E_ARG, "r.yaml:7:1: training.steps: duplicate key (first set at line 6)"},
    {BASE "eval: 5\n", NULL, FT_E_ARG, "r.yaml:7:7: eval: expected a mapping of keys (e.g. eval.every_steps), got a scalar"},
    {"- model\n- data\n", NULL, FT_E_ARG, "r.yaml:1:1: expected a mapping of keys (model:, lora:, data:, ...) at the top level, got a list"},
    {"", NULL, FT_E_ARG, "r.yaml: the recipe is empty"},
    {BASE "---\nmodel: {}\n", NULL, FT_E_ARG, "r.yaml:8: a recipe is one YAML document"},
    {BASE "  lr: [1, 2\n", NULL, FT_E_ARG, "r.yaml:8:1: malformed YAML: did not find expected ',' or ']'"},
    {"model:\n\tpath: m\n", NULL, FT_E_ARG, "r.yaml:2:1: malformed YAML: found character that cannot start any token"},
    {BASE "? [a]\n: 1\n", NULL, FT_E_ARG, "r.yaml:7:3: keys must be plain names, got a list"},
    /* bytes that are not UTF-8 (libyaml reports a byte offset for them, not a line): at their line */
    {BASE "  lr: 0.1 # caf\xe9!\n", NULL, FT_E_ARG, "r.yaml:7:17: malformed YAML: invalid trailing UTF-8 octet"},
    {BASE "  seed: \xff\n", NULL, FT_E_ARG, "r.yaml:7:9: malformed YAML: invalid leading UTF-8 octet"},
    /* cross-field */
    {"data:\n  train: t.jsonl\n", NULL, FT_E_ARG, "r.yaml: model.path: required"},
    {"model:\n  path: m\n", NULL, FT_E_ARG, "r.yaml: data.train: required"},
    {BASE "  epochs: 0\n  steps: 0\n", NULL, FT_E_ARG, "r.yaml:8:3: training.steps: duplicate key (first set at line 6)"},
    {"model: {path: m}\ndata: {train: t.jsonl}\ntraining: {steps: 0, epochs: 0}\n", NULL, FT_E_ARG,
     "training.steps: set training.steps or training.epochs (both are 0)"},
    {BASE "  warmup: 20\n", NULL, FT_E_ARG, "r.yaml:7:3: training.warmup: must not exceed training.steps (20 > 10)"},
    {BASE "  schedule: cosin\n", NULL, FT_E_ARG,
     "r.yaml:7:13: training.schedule: expected constant, linear or cosine, got 'cosin'"},
    {"model: {path: m}\ndata: {train: t.jsonl, valid: v.jsonl, val_fraction: 0.1}\n", NULL, FT_E_ARG,
     "r.yaml:2:40: data.val_fraction: set data.valid or data.val_fraction, not both"},
    {BASE "eval:\n  every_steps: 5\n", NULL, FT_E_ARG,
     "r.yaml:8:3: eval.every_steps: nothing to evaluate: set data.valid, data.val_fraction or eval.prompts"},
    {BASE "model.arch: Gpt2LMHeadModel\n", NULL, FT_E_ARG, "model.arch: unknown architecture 'Gpt2LMHeadModel'"},
    {BASE "eval:\n  patience: 2\n", NULL, FT_E_ARG,
     "eval.patience: needs validation data: set data.valid or data.val_fraction"},
    {"model: {path: m}\ndata: {train: t.jsonl, seq_len: 1048576}\ntraining: {steps: 1, micro_batch: 4096}\n", NULL,
     FT_E_ARG, "training.micro_batch: micro_batch x seq_len must stay below 2^31 tokens"},
    /* a list longer than the reader keeps (64 items): refused at the key's own limit, not cut short */
    {"model: {path: m}\ndata:\n  train: [" A13 A13 A13 A13 A13 "a]\n", NULL, FT_E_ARG, "data.train: at most 16 entries"},
    /* a second document that is not YAML: a syntax error, named by its line */
    {BASE "---\n[a\n", NULL, FT_E_ARG, "r.yaml:9:1: malformed YAML"},
    /* --set */
    {BASE, "training.lr=fast", FT_E_ARG, "--set training.lr=fast: training.lr: expected a number, got 'fast'"},
    {BASE, "training.lrr=1", FT_E_ARG, "--set training.lrr=1: unknown key 'training.lrr' (did you mean training.lr?)"},
    {BASE, "lora.r", FT_E_ARG, "--set lora.r: expected key=value"},
    {BASE, "training=1", FT_E_ARG, "--set training=1: 'training' is a section; set one of its keys (e.g. training.micro_batch=...)"},
    {BASE, "lora.r=100000", FT_E_ARG, "--set lora.r=100000: lora.r: must be <= 4096 (got 100000)"},
    {BASE, "training.warmup=11", FT_E_ARG, "--set training.warmup=11: training.warmup: must not exceed training.steps"},
    {BASE, "data.train=[a, {b: 1}]", FT_E_ARG, "data.train: item 2: expected a string"},
    {BASE, "data.train=[[a]", FT_E_ARG, "--set data.train=[[a]: data.train: malformed list: did not find expected ',' or ']'"},
    /* what followed the list was dropped ("[a, b]]" read as [a, b]) */
    {BASE, "lora.targets=[q_proj, v_proj]]", FT_E_ARG,
     "--set lora.targets=[q_proj, v_proj]]: lora.targets: malformed list: unexpected data after its closing ']'"},
    {BASE, "training.diverge_factor=0.5", FT_E_ARG,
     "--set training.diverge_factor=0.5: training.diverge_factor: must be 0 (off) or above 1 (got 0.5)"},
    {BASE, "training.host_boundaries=2", FT_E_ARG,
     "--set training.host_boundaries=2: training.host_boundaries: expected true or false, got '2'"},
};

static void test_bad(void) {
    int n = (int)(sizeof bad_cases / sizeof *bad_cases);
    FT_CHECK(n >= 20, "at least 20 bad recipes (%d)", n);
    for (int i = 0; i < n; i++) {
        const bad_case *c = &bad_cases[i];
        write_text(g_path, c->yaml);
        ft_recipe r;
        const char *sets[1] = {c->set};
        ft_status st = ft_recipe_load(&r, g_path, sets, c->set ? 1 : 0);
        /* messages name the file as given: replace the tmpdir prefix by nothing */
        const char *msg = ft_error_msg();
        int ok_msg = strstr(msg, c->msg) != NULL;
        FT_CHECK(st == c->status && ok_msg, "bad case %d: status %s (want %s), message:\n    %s\n  want substring:\n    %s", i,
                 ft_status_str(st), ft_status_str(c->status), msg, c->msg);
        if (st == FT_OK) ft_recipe_free(&r);
    }
}

/* Deeply nested YAML (fuzz sweep): libyaml alone takes minutes on 200 KB of brackets, so the
 * loader refuses a recipe nested deeper than any real one, in the file and in a --set list. */
static void test_deep(void) {
    const int n = 20000;
    char *y = malloc((size_t)(2 * n) + 256), *set = malloc((size_t)(2 * n) + 256);
    char *p = y + sprintf(y, BASE "  lr: ");
    memset(p, '[', (size_t)n), memset(p + n, ']', (size_t)n), p[2 * n] = 0;
    write_text(g_path, y);
    ft_recipe r;
    ft_status st = ft_recipe_load(&r, g_path, NULL, 0);
    FT_CHECK(st == FT_E_ARG && strstr(ft_error_msg(), "r.yaml:7:37: malformed YAML: nested more than 32 levels deep"),
             "deep file: %s", st ? ft_error_msg() : "accepted");
    if (st == FT_OK) ft_recipe_free(&r);
    write_text(g_path, BASE);
    p = set + sprintf(set, "data.train=");
    memset(p, '[', (size_t)n), memset(p + n, ']', (size_t)n), p[2 * n] = 0;
    const char *sets[1] = {set};
    st = ft_recipe_load(&r, g_path, sets, 1);
    FT_CHECK(st == FT_E_ARG && strstr(ft_error_msg(), "data.train: malformed list: nested more than"),
             "deep --set: %s", st ? ft_error_msg() : "accepted");
    if (st == FT_OK) ft_recipe_free(&r);
    free(y);
    free(set);
}

static void test_good(void) {
    const char *tmp = ft_test_tmpdir();
    char sub[4200], path[4300], want[4400];
    snprintf(sub, sizeof sub, "%s/sub", tmp);
    mkdir(sub, 0755);
    snprintf(path, sizeof path, "%s/good.yaml", sub);
    write_text(path, "# a comment\n"
                     "model:\n  path: ../models/m   # relative to this file\n  quant: bf16\n"
                     "lora:\n  r: 32\n  alpha: 64\n  targets: [q_proj, v_proj]\n  rslora: yes\n"
                     "data:\n  train:\n    - a.jsonl\n    - /abs/b.jsonl\n  format: prompt_completion\n"
                     "  template: llama3.3\n  seq_len: 4096\n"
                     "training.lr: 1e-4\n"
                     "training:\n  micro_batch: 2\n  epochs: 2.5\n"
                     "eval:\n  prompts: \"Once upon a time, there was\"\n"
                     "export:\n  formats: peft, gguf\n  merged: q8_0\n");
    ft_recipe r;
    FT_CHECK_OK(ft_recipe_load(&r, path, NULL, 0));
    snprintf(want, sizeof want, "%s/models/m", tmp);
    FT_CHECK(strcmp(r.model.path, want) == 0, "model.path resolved to %s, want %s", r.model.path, want);
    snprintf(want, sizeof want, "%s/a.jsonl", sub);
    FT_CHECK(r.data.n_train == 2 && strcmp(r.data.train[0], want) == 0 && strcmp(r.data.train[1], "/abs/b.jsonl") == 0,
             "data.train %d: %s", r.data.n_train, r.data.n_train ? r.data.train[0] : "");
    FT_CHECK(strcmp(r.model.quant, "bf16") == 0 && r.lora.r == 32 && r.lora.alpha == 64 && r.lora.rslora == 1,
             "model/lora values");
    FT_CHECK(strcmp(r.lora.targets, "q_proj,v_proj") == 0, "targets %s", r.lora.targets);
    FT_CHECK(strcmp(r.data.format, "prompt-completion") == 0, "format alias -> %s", r.data.format);
    FT_CHECK(strcmp(r.data.template_name, "llama3.1") == 0, "template alias -> %s", r.data.template_name);
    FT_CHECK(r.data.seq_len == 4096 && r.training.lr == 1e-4 && r.training.micro_batch == 2 && r.training.epochs == 2.5,
             "data/training values");
    FT_CHECK(r.eval.n_prompts == 1 && strcmp(r.eval.prompts[0], "Once upon a time, there was") == 0,
             "a prompt with a comma stays one prompt");
    FT_CHECK(strcmp(r.exports.formats, "peft,gguf") == 0 && strcmp(r.exports.merged, "q8_0") == 0, "export");
    /* defaults */
    FT_CHECK(r.training.grad_accum == 8 && r.training.steps == 0 && r.training.recompute == 1 &&
                 strcmp(r.training.schedule, "cosine") == 0 && r.checkpoint.keep == 3 && r.training.seed == 42 &&
                 r.lora.dropout == 0 && strcmp(r.model.device, "auto") == 0 && r.data.n_valid == 0 &&
                 strcmp(r.lora.init, "") == 0 && strcmp(r.data.packing, "bfd") == 0 && r.training.host_boundaries == 0 &&
                 r.model.memory_gib == 0,
             "defaults");
    char cwd[4096];
    FT_CHECK(getcwd(cwd, sizeof cwd) != NULL, "getcwd");
    snprintf(want, sizeof want, "%s/runs/good", cwd);
    FT_CHECK(strcmp(r.output_dir, want) == 0, "default output_dir %s, want %s", r.output_dir, want);

    /* the round trip: write, reload, write again: identical text and values */
    char out1[4300], out2[4300];
    snprintf(out1, sizeof out1, "%s/resolved1.yaml", tmp);
    snprintf(out2, sizeof out2, "%s/resolved2.yaml", sub);
    FT_CHECK_OK(ft_recipe_write(&r, out1));
    ft_recipe r2;
    FT_CHECK_OK(ft_recipe_load(&r2, out1, NULL, 0));
    FT_CHECK_OK(ft_recipe_write(&r2, out2));
    char *t1 = NULL, *t2 = NULL;
    int64_t l1 = 0, l2 = 0;
    FT_CHECK_OK(ft_test_read_file(out1, &t1, &l1));
    FT_CHECK_OK(ft_test_read_file(out2, &t2, &l2));
    FT_CHECK(t1 && t2 && l1 == l2 && memcmp(t1, t2, (size_t)l1) == 0, "write -> load -> write is identical");
    FT_CHECK(strcmp(r2.model.path, r.model.path) == 0 && strcmp(r2.output_dir, r.output_dir) == 0 &&
                 r2.training.lr == r.training.lr && r2.lora.alpha == r.lora.alpha && r2.data.n_train == 2 &&
                 strcmp(r2.data.train[1], r.data.train[1]) == 0 && strcmp(r2.lora.targets, r.lora.targets) == 0 &&
                 r2.eval.n_prompts == 1 && strcmp(r2.eval.prompts[0], r.eval.prompts[0]) == 0 &&
                 r2.training.beta2 == r.training.beta2 && r2.training.eps == r.training.eps &&
                 strcmp(r2.exports.merged, "q8_0") == 0 && r2.lora.rslora == 1,
             "reloaded recipe equals the original");
    free(t1);
    free(t2);
    ft_recipe_free(&r2);
    ft_recipe_free(&r);

    /* --set overrides (after the file, in order; paths against the current directory) */
    const char *sets[] = {"training.lr=3e-5", "lora.r=8", "lora.r=64", "lora.targets=q_proj, k_proj",
                          "data.train=x.jsonl,y.jsonl", "eval.prompts=[\"a, b\", c]", "export.merged=",
                          "training.recompute=false", "model.path=/abs/model", "training.host_boundaries=yes",
                          "model.memory_gib=0.5"};
    FT_CHECK_OK(ft_recipe_load(&r, path, sets, (int)(sizeof sets / sizeof *sets)));
    snprintf(want, sizeof want, "%s/x.jsonl", cwd);
    FT_CHECK(r.training.lr == 3e-5 && r.lora.r == 64, "set lr %g r %lld", r.training.lr, (long long)r.lora.r);
    FT_CHECK(strcmp(r.lora.targets, "q_proj,k_proj") == 0, "set targets %s", r.lora.targets);
    FT_CHECK(r.data.n_train == 2 && strcmp(r.data.train[0], want) == 0, "set data.train resolves against cwd: %s",
             r.data.n_train ? r.data.train[0] : "");
    FT_CHECK(r.eval.n_prompts == 2 && strcmp(r.eval.prompts[0], "a, b") == 0 && strcmp(r.eval.prompts[1], "c") == 0,
             "set a flow list");
    FT_CHECK(strcmp(r.exports.merged, "") == 0 && r.training.recompute == 0 && strcmp(r.model.path, "/abs/model") == 0,
             "set empty / bool / absolute path");
    FT_CHECK(r.training.host_boundaries == 1 && r.model.memory_gib == 0.5, "set host_boundaries %d, memory_gib %g",
             r.training.host_boundaries, r.model.memory_gib);
    ft_recipe_free(&r);

    /* defaults alone (flag-built runs) do not require model.path / data.train */
    const char *dset[] = {"training.steps=3"};
    FT_CHECK_OK(ft_recipe_defaults(&r, dset, 1));
    FT_CHECK(r.training.steps == 3 && strcmp(r.source, "") == 0 && r.data.n_train == 0, "defaults + set");
    snprintf(want, sizeof want, "%s/runs/ftune", cwd);
    FT_CHECK(strcmp(r.output_dir, want) == 0, "defaults output_dir %s", r.output_dir);
    FT_CHECK(ft_recipe_check_files(&r) == FT_E_ARG && strstr(ft_error_msg(), "model.path: required"),
             "check_files without model.path: %s", ft_error_msg());
    ft_recipe_free(&r);
    ft_recipe_free(&r); /* twice is safe */
}

/* ft_recipe_check_files: every missing file named with its key. */
static void test_files(void) {
    const char *tmp = ft_test_tmpdir();
    char dir[4200], p[4400], model[4300];
    snprintf(dir, sizeof dir, "%s/files", tmp);
    mkdir(dir, 0755);
    snprintf(model, sizeof model, "%s/model", dir);
    mkdir(model, 0755);
    snprintf(p, sizeof p, "%s/f.yaml", dir);
    struct { const char *yaml; const char *msg; } cases[] = {
        {"model: {path: nope}\ndata: {train: t.jsonl}\n", "model.path: '%s/nope' not found (a model directory or a GGUF file)"},
        {"model: {path: ok.jsonl}\ndata: {train: t.jsonl}\n", "model.path: '%s/ok.jsonl' is neither a directory nor a GGUF file"},
        {"model: {path: model2}\ndata: {train: ok.jsonl, tokenizer: ok.jsonl}\n", "data.tokenizer: '%s/ok.jsonl' is neither a directory nor a GGUF file"},
        {"model: {path: model}\ndata: {train: t.jsonl}\n", "model.path: '%s/model' has no readable config.json"},
        {"model: {path: model2}\ndata: {train: t.jsonl}\n", "data.train: file '%s/t.jsonl' not found"},
        {"model: {path: model2}\ndata: {train: [ok.jsonl, model2]}\n", "data.train: '%s/model2' is a directory, not a file"},
        {"model: {path: model2}\ndata: {train: ok.jsonl, valid: v.jsonl}\n", "data.valid: file '%s/v.jsonl' not found"},
        {"model: {path: model2}\ndata: {train: ok.jsonl}\n", "model.path (the tokenizer; or set data.tokenizer): '%s/model2' has no readable tokenizer.json"},
        {"model: {path: model2}\ndata: {train: ok.jsonl, tokenizer: model}\n", "data.tokenizer: '%s/model' has no readable tokenizer.json"},
        {"model: {path: model2}\ndata: {train: ok.jsonl, tokenizer: tok}\nlora: {init: a.safetensors}\n", "lora.init: file '%s/a.safetensors' not found"},
    };
    char f[4500];
    snprintf(f, sizeof f, "%s/model2", dir);
    mkdir(f, 0755);
    snprintf(f, sizeof f, "%s/model2/config.json", dir);
    write_text(f, "{}");
    snprintf(f, sizeof f, "%s/ok.jsonl", dir);
    write_text(f, "{\"text\": \"hi\"}\n");
    snprintf(f, sizeof f, "%s/tok", dir);
    mkdir(f, 0755);
    snprintf(f, sizeof f, "%s/tok/tokenizer.json", dir);
    write_text(f, "{}");
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        write_text(p, cases[i].yaml);
        ft_recipe r;
        FT_CHECK_OK(ft_recipe_load(&r, p, NULL, 0));
        char want[9000], full[13400];
        snprintf(want, sizeof want, cases[i].msg, dir);
        snprintf(full, sizeof full, "%s: %s", p, want);
        ft_status st = ft_recipe_check_files(&r);
        FT_CHECK(st != FT_OK && strstr(ft_error_msg(), full), "files case %zu:\n    %s\n  want:\n    %s", i,
                 ft_error_msg(), full);
        ft_recipe_free(&r);
    }
    write_text(p, "model: {path: model2}\ndata: {train: ok.jsonl, tokenizer: tok}\n");
    ft_recipe r;
    FT_CHECK_OK(ft_recipe_load(&r, p, NULL, 0));
    FT_CHECK_OK(ft_recipe_check_files(&r));
    ft_recipe_free(&r);
}

/* Every recipe in recipes/ loads and plans; the demo's files are in the repo; each fits the
 * device it is written for (named in the file name: -h100, -spark) and states its planned total
 * (and, for a GPU, its planned tokens/s) in its header comment. */
static void test_shipped(void) {
    char dir[4300];
    snprintf(dir, sizeof dir, "%s/recipes", ft_test_src_dir());
    DIR *dp = opendir(dir);
    FT_CHECK(dp != NULL, "cannot list %s", dir);
    if (!dp) return;
    int n = 0, demo = 0;
    for (struct dirent *e; (e = readdir(dp));) {
        size_t l = strlen(e->d_name);
        if (l < 6 || strcmp(e->d_name + l - 5, ".yaml") != 0) continue;
        char p[4600];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        const char *device = strstr(e->d_name, "-spark") ? "gb10" : strstr(e->d_name, "-h100") ? "h100" : "cpu";
        ft_recipe r;
        ft_status st = ft_recipe_load(&r, p, NULL, 0);
        FT_CHECK(st == FT_OK, "%s: %s", e->d_name, ft_error_msg());
        if (st != FT_OK) continue;
        n++;
        if (strcmp(e->d_name, "demo-stories260k.yaml") == 0) {
            demo = 1;
            FT_CHECK_OK(ft_recipe_check_files(&r));
            FT_CHECK(strcmp(r.model.device, "cpu") == 0 && r.training.steps <= 100, "the demo runs on the CPU, briefly");
        }
        ft_plan *plan = calloc(1, sizeof *plan);
        ft_plan_opts po = {.device = device};
        FT_CHECK_OK(ft_plan_make(plan, &r, &po));
        FT_CHECK(plan->fits, "%s does not fit %s: %s", e->d_name, device, plan->advice);
        char *text = NULL, want[64];
        int64_t len;
        FT_CHECK_OK(ft_test_read_file(p, &text, &len));
        ft_plan_format_bytes(plan->total_bytes, want, sizeof want);
        FT_CHECK(text && strstr(text, want), "%s: header comment should state the planned total '%s' (device %s)",
                 e->d_name, want, device);
        if (strcmp(device, "cpu") != 0) { /* a CPU's rate depends on the machine; a GPU profile's does not */
            snprintf(want, sizeof want, "~%.0f tokens/s", plan->tokens_per_s);
            FT_CHECK(text && strstr(text, want), "%s: header comment should state the planned rate '%s' (device %s)",
                     e->d_name, want, device);
        }
        free(text);
        free(plan);
        ft_recipe_free(&r);
    }
    closedir(dp);
    FT_CHECK(n >= 9 && demo, "recipes/: %d recipes, demo %d", n, demo);
}

/* docs/recipes.md holds ft_recipe_doc's table between markers. */
static void test_docs(void) { ft_test_doc_section("docs/recipes.md", "keys", "ftune plan --keys", ft_recipe_doc); }

int main(void) {
    snprintf(g_path, sizeof g_path, "%s/r.yaml", ft_test_tmpdir());
    test_bad();
    test_deep();
    test_good();
    test_files();
    test_shipped();
    test_docs();
    return ft_test_finish();
}
