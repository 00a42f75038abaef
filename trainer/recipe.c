/* recipe.c: see recipe.h. Loading a recipe: defaults from the key table (recipe_keys.c), then
 * the YAML file, then each `--set key=value`, then the checks across keys; and freeing one.
 *
 * Parsing uses libyaml's document API: nested mappings give dotted paths (training: {lr: ..} is
 * training.lr; a flat "training.lr: .." key is accepted too), each node carries its line and
 * column for messages ("recipe.yaml:7:7: training.lr: expected a number, got 'fast'"). Every
 * value, from YAML or from --set, goes through the one typed setter (ft_rk_set). Paths in the
 * file resolve against the file's directory, paths given with --set against the current
 * directory. Where each key was last set (file line and column, or the --set argument) is kept so
 * that a cross-key check names the place the user should edit. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <yaml.h>

#include "kernels/fileio.h"
#include "trainer/arch.h"
#include "trainer/recipe_impl.h"

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
        const rk *k = ft_rk_find(path);
        if (k) {
            int i = rk_index(k);
            if (c->line[i])
                return FT_ERR(FT_E_ARG, "%s:%d:%d: %s: duplicate key (first set at line %d)", c->file, line, col, path,
                              c->line[i]);
            c->line[i] = line, c->col[i] = col;
            rv v;
            rv_from_node(c->doc, vn, &v);
            rorigin o = {c->file, (int)vn->start_mark.line + 1, (int)vn->start_mark.column + 1, NULL};
            FT_TRY(ft_rk_set(c->r, k, &v, c->dir, &o));
        } else if (ft_rk_is_section(path)) {
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
                              (int)vn->start_mark.line + 1, (int)vn->start_mark.column + 1, path, ft_rk_first_in(path),
                              vn->type == YAML_SEQUENCE_NODE ? "a list" : "a scalar");
            FT_TRY(rk_walk(c, vn, path, depth + 1));
        } else {
            char hint[128];
            ft_rk_suggest(path, hint, sizeof hint);
            return FT_ERR(FT_E_ARG, "%s:%d:%d: unknown key '%s'%s", c->file, line, col, path, hint);
        }
    }
    return FT_OK;
}

/* libyaml's scanner takes time quadratic in the nesting depth (every token rechecks each open
 * level): a 200 KB file of nested brackets keeps yaml_parser_load busy for minutes. A recipe
 * nests 3 levels (section, key, list), so a first pass over the events stops at this depth, long
 * before the cost grows. Returns 0 and the position of the first too-deep node, or 1. Syntax
 * errors end the pass quietly: yaml_parser_load reports them. */
#define RK_MAX_DEPTH 32
static int rk_depth_ok(const char *text, size_t len, int *line, int *col) {
    yaml_parser_t parser;
    yaml_event_t e;
    int depth = 0, ok = 1;
    if (!yaml_parser_initialize(&parser)) return 1; /* the load reports the failure */
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    while (ok && yaml_parser_parse(&parser, &e)) {
        const yaml_event_type_t t = e.type;
        if ((t == YAML_SEQUENCE_START_EVENT || t == YAML_MAPPING_START_EVENT) && ++depth > RK_MAX_DEPTH) {
            ok = 0;
            *line = (int)e.start_mark.line + 1;
            *col = (int)e.start_mark.column + 1;
        }
        if (t == YAML_SEQUENCE_END_EVENT || t == YAML_MAPPING_END_EVENT) depth--;
        yaml_event_delete(&e);
        if (t == YAML_STREAM_END_EVENT) break;
    }
    yaml_parser_delete(&parser);
    return ok;
}

static ft_status rk_parse_yaml(rctx *c, const char *text, size_t len) {
    yaml_parser_t parser;
    yaml_document_t doc;
    ft_status st = FT_OK;
    int dl, dc;
    if (!rk_depth_ok(text, len, &dl, &dc))
        return FT_ERR(FT_E_FORMAT, "%s:%d:%d: malformed YAML: nested more than %d levels deep", c->file, dl, dc,
                      RK_MAX_DEPTH);
    if (!yaml_parser_initialize(&parser)) return FT_ERR(FT_E_OOM, "out of memory starting the YAML parser");
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        yaml_mark_t m = parser.problem_mark;
        if (parser.error == YAML_READER_ERROR) { /* bad encoding: libyaml gives a byte offset, not a mark */
            m.line = m.column = 0;
            for (size_t i = 0; i < parser.problem_offset && i < len; i++) {
                if (text[i] == '\n') m.line++, m.column = 0;
                else m.column++;
            }
        }
        st = FT_ERR(FT_E_FORMAT, "%s:%d:%d: malformed YAML: %s%s%s", c->file, (int)m.line + 1, (int)m.column + 1,
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
    const rk *k = ft_rk_find(key);
    if (!k) {
        char hint[128];
        if (ft_rk_is_section(key))
            return FT_ERR(FT_E_ARG, "--set %s: '%s' is a section; set one of its keys (e.g. %s=...)", arg, key,
                          ft_rk_first_in(key));
        ft_rk_suggest(key, hint, sizeof hint);
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
        int dl, dc;
        if (!rk_depth_ok(val, vl, &dl, &dc))
            return FT_ERR(FT_E_ARG, "--set %.40s...: %s: malformed list: nested more than %d levels deep", arg, k->key,
                          RK_MAX_DEPTH);
        if (!yaml_parser_initialize(&parser)) return FT_ERR(FT_E_OOM, "out of memory");
        yaml_parser_set_input_string(&parser, (const unsigned char *)val, vl);
        if (!yaml_parser_load(&parser, &doc)) {
            st = FT_ERR(FT_E_ARG, "--set %s: %s: malformed list: %s", arg, k->key,
                        parser.problem ? parser.problem : "syntax error");
            yaml_parser_delete(&parser);
            return st;
        }
        /* what follows the list ("[a, b]]"): a second load fails, or finds a document; it was dropped */
        yaml_document_t rest;
        int clean = yaml_parser_load(&parser, &rest);
        if (clean) {
            clean = yaml_document_get_root_node(&rest) == NULL;
            yaml_document_delete(&rest);
        }
        if (!clean) {
            yaml_document_delete(&doc);
            yaml_parser_delete(&parser);
            return FT_ERR(FT_E_ARG, "--set %s: %s: malformed list: unexpected data after its closing ']'", arg, k->key);
        }
        yaml_node_t *root = yaml_document_get_root_node(&doc);
        if (root) rv_from_node(&doc, root, &v);
        st = ft_rk_set(c->r, k, &v, cwd, &o);
        yaml_document_delete(&doc);
        yaml_parser_delete(&parser);
    } else {
        if (!val[0]) v.kind = RV_NULL;
        st = ft_rk_set(c->r, k, &v, cwd, &o);
    }
    if (st == FT_OK) c->set_arg[rk_index(k)] = arg;
    return st;
}

/* ---- validation across keys ------------------------------------------------------------------- */

static void rk_origin_of(const rctx *c, const char *key, rorigin *o) {
    const rk *k = ft_rk_find(key);
    int i = rk_index(k);
    memset(o, 0, sizeof *o);
    if (c->set_arg[i]) o->set = c->set_arg[i];
    else o->file = c->file, o->line = c->line[i], o->col = c->col[i];
}

#define RK_CROSS(c, keyname, ...)                                                                  \
    do {                                                                                           \
        rorigin o_;                                                                                \
        rk_origin_of((c), (keyname), &o_);                                                         \
        RK_FAIL(&o_, ft_rk_find(keyname), __VA_ARGS__);                                               \
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
        if (!ft_arch_from_hf(r->model.arch, &a) && !ft_arch_from_model_type(r->model.arch, &a) &&
            !ft_arch_vlm(r->model.arch, NULL, NULL))
            RK_CROSS(c, "model.arch", "unknown architecture '%s' (expected one of %s, or llama, mistral, qwen2, qwen3)",
                     r->model.arch, ft_arch_supported_list());
    }
    if (strcmp(r->exports.from, "best") == 0 && (!r->eval.keep_best || (r->data.n_valid == 0 && r->data.val_fraction == 0)))
        RK_CROSS(c, "export.from", "best needs validation data (data.valid or data.val_fraction) and eval.keep_best true");
    if (r->eval.patience > 0 && r->data.n_valid == 0 && r->data.val_fraction == 0)
        RK_CROSS(c, "eval.patience", "needs validation data: set data.valid or data.val_fraction");
    if (r->eval.patience > 0 && r->eval.every_steps == 0)
        RK_CROSS(c, "eval.patience", "needs evaluations during the run: set eval.every_steps");
    if (r->training.diverge_factor > 0 && !(r->training.diverge_factor > 1))
        RK_CROSS(c, "training.diverge_factor", "must be 0 (off) or above 1 (got %g)", r->training.diverge_factor);
    if (r->training.boundary_every > 1 && r->training.host_boundaries)
        RK_CROSS(c, "training.boundary_every", "not with training.host_boundaries: true (the layer inputs are in host "
                                               "memory already; keep one of the two)");
    if (r->training.micro_batch * r->data.seq_len > ((int64_t)1 << 31))
        RK_CROSS(c, "training.micro_batch", "micro_batch x seq_len must stay below 2^31 tokens");
    /* before training, not at the end of the run: a llama.cpp adapter has no per-row magnitude (export/adapter_dora.c) */
    if (r->lora.dora && r->exports.formats && strstr(r->exports.formats, "gguf"))
        RK_CROSS(c, "export.formats", "gguf: a DoRA adapter (lora.dora: true) cannot go into a llama.cpp adapter (llama.cpp "
                                      "has no per-row magnitude): drop gguf and set export.merged, or `ftune merge` the "
                                      "adapter after the run");
    return FT_OK;
}

/* ---- load / defaults / free -------------------------------------------------------------------- */

static ft_status rk_set_defaults(ft_recipe *r) {
    rorigin o = {0};
    for (int i = 0; i < RK_COUNT; i++) {
        const rk *k = &ft_recipe_keys[i];
        rv v = {.kind = k->def[0] ? RV_SCALAR : RV_NULL, .s = k->def};
        if (k->type == RK_ENUM && !k->def[0]) v.kind = RV_SCALAR; /* "" is a choice */
        FT_TRY(ft_rk_set(r, k, &v, "/", &o));
    }
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
    return ft_rk_resolve(cwd, rel, &r->output_dir);
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
    int64_t len = 0;
    char cwd[4096];
    ft_status st;
    memset(r, 0, sizeof *r);
    memset(&c, 0, sizeof c);
    c.r = r, c.file = path;
    FT_CHECK_GOTO(st, rk_set_defaults(r), fail);
    FT_CHECK_GOTO(st, ft_rk_strdup(&r->source, path, strlen(path)), fail);
    FT_CHECK_GOTO(st, rk_cwd(cwd, sizeof cwd), fail);
    FT_CHECK_GOTO(st, ft_rk_resolve(cwd, path, &abs), fail);
    char *slash = strrchr(abs, '/');
    if (slash == abs) slash[1] = 0;
    else *slash = 0;
    c.dir = abs;
    st = ft_read_file(path, 16 << 20, &text, &len, NULL);
    if (st != FT_OK) {
        st = ft_error_wrap(st, "recipe");
        goto fail;
    }
    FT_CHECK_GOTO(st, rk_parse_yaml(&c, text, (size_t)len), fail);
    FT_CHECK_GOTO(st, rk_finish(&c, sets, n_sets, 1), fail);
    free(text);
    free(abs);
    return FT_OK;
fail:
    free(text);
    free(abs);
    ft_recipe_free(r);
    /* whatever is wrong with the recipe (unreadable, malformed YAML, a bad value, a data file that
     * is not there) is the user's to fix: one status, exit 2; memory and broken invariants stay */
    return st == FT_E_OOM || st == FT_E_INTERNAL ? st : FT_E_ARG;
}

ft_status ft_recipe_defaults(ft_recipe *r, const char *const *sets, int n_sets) {
    rctx c;
    ft_status st;
    memset(r, 0, sizeof *r);
    memset(&c, 0, sizeof c);
    c.r = r, c.file = "recipe";
    FT_CHECK_GOTO(st, rk_set_defaults(r), fail);
    FT_CHECK_GOTO(st, ft_rk_strdup(&r->source, "", 0), fail);
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
