/* recipe_io.c: a loaded recipe against the outside world. ft_recipe_check_files checks that the
 * model directory, data files, tokenizer and lora.init exist and are readable before any weight is
 * loaded; ft_recipe_write writes the resolved recipe (every key, defaults included) as YAML,
 * atomically, in a form that reloads to an identical recipe; ft_recipe_doc prints the key table as
 * the markdown rows of docs/recipes.md. All three walk the key table of recipe_keys.c. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kernels/fileio.h"
#include "trainer/gguf_config.h"
#include "trainer/recipe_impl.h"

/* ---- files ------------------------------------------------------------------------------------ */

static const char *rk_src(const ft_recipe *r) { return r->source && r->source[0] ? r->source : "recipe"; }

/* kind: 'f' a readable file, 'd' a directory, 'c' config.json or a directory holding it, 'm' a
 * directory or a GGUF model file (which holds the config and the tokenizer). inside: a file that must
 * exist in the directory. */
static ft_status rk_need(const ft_recipe *r, const char *key, const char *path, int kind, const char *inside) {
    struct stat sb;
    if (stat(path, &sb) != 0 && kind == 'm')
        return FT_ERR(FT_E_IO, "%s: %s: '%s' not found (a model directory or a GGUF file)", rk_src(r), key, path);
    if (stat(path, &sb) != 0)
        return FT_ERR(FT_E_IO, "%s: %s: %s '%s' not found", rk_src(r), key, kind == 'd' ? "directory" : "file", path);
    int is_dir = S_ISDIR(sb.st_mode);
    if (kind == 'm' && !is_dir) {
        if (access(path, R_OK) != 0)
            return FT_ERR(FT_E_IO, "%s: %s: cannot read '%s': %s", rk_src(r), key, path, strerror(errno));
        if (!ft_is_gguf_file(path))
            return FT_ERR(FT_E_IO, "%s: %s: '%s' is neither a directory nor a GGUF file", rk_src(r), key, path);
        return FT_OK;
    }
    if (kind == 'm') kind = 'd';
    if (kind == 'd' && !is_dir) return FT_ERR(FT_E_IO, "%s: %s: '%s' is not a directory", rk_src(r), key, path);
    if (kind == 'f' && is_dir) return FT_ERR(FT_E_IO, "%s: %s: '%s' is a directory, not a file", rk_src(r), key, path);
    if (kind == 'f' && !S_ISREG(sb.st_mode)) /* a pipe would hang the second read, or feed it nothing */
        return FT_ERR(FT_E_IO, "%s: %s: '%s' is not a regular file (it is read twice: to fingerprint it for the "
                               "data cache, then to tokenize it)", rk_src(r), key, path);
    if (is_dir && inside) {
        char p[8192];
        snprintf(p, sizeof p, "%s/%s", path, inside);
        if (access(p, R_OK) != 0)
            return FT_ERR(FT_E_IO, "%s: %s: '%s' has no readable %s", rk_src(r), key, path, inside);
        if (stat(p, &sb) == 0 && S_ISDIR(sb.st_mode)) /* readable, but no file (it would be read as DIR/inside) */
            return FT_ERR(FT_E_IO, "%s: %s: '%s' is a directory, not a file", rk_src(r), key, p);
    } else if (access(path, R_OK) != 0) {
        return FT_ERR(FT_E_IO, "%s: %s: cannot read '%s': %s", rk_src(r), key, path, strerror(errno));
    }
    return FT_OK;
}

ft_status ft_recipe_check_files(const ft_recipe *r) {
    if (!r->model.path[0]) return FT_ERR(FT_E_ARG, "%s: model.path: required (the Hugging Face model directory)", rk_src(r));
    FT_TRY(rk_need(r, "model.path", r->model.path, 'm', "config.json"));
    if (r->model.config[0]) FT_TRY(rk_need(r, "model.config", r->model.config, 'c', "config.json"));
    if (r->data.n_train == 0) return FT_ERR(FT_E_ARG, "%s: data.train: required (a JSONL file or a list of them)", rk_src(r));
    for (int i = 0; i < r->data.n_train; i++) FT_TRY(rk_need(r, "data.train", r->data.train[i], 'f', NULL));
    for (int i = 0; i < r->data.n_valid; i++) FT_TRY(rk_need(r, "data.valid", r->data.valid[i], 'f', NULL));
    if (r->data.tokenizer[0]) FT_TRY(rk_need(r, "data.tokenizer", r->data.tokenizer, 'm', "tokenizer.json"));
    else FT_TRY(rk_need(r, "model.path (the tokenizer; or set data.tokenizer)", r->model.path, 'm', "tokenizer.json"));
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
    case RK_INT:
        if ((k->flags & RK_MAX) && *rk_int((ft_recipe *)r, k) == -1) fprintf(f, " max\n");
        else fprintf(f, " %lld\n", (long long)*rk_int((ft_recipe *)r, k));
        break;
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
            snprintf(allowed, sizeof allowed, "%c%.15g, %.15g%c%s", (k->flags & RK_GT) ? '(' : '[', k->min, k->max,
                     (k->flags & RK_LT) ? ')' : ']', (k->flags & RK_MAX) ? ", `max`" : "");
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
