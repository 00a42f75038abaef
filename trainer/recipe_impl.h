/* recipe_impl.h: what the recipe files share; private to them. recipe_keys.c holds the key table
 * (ft_recipe_keys: every key's dotted path, type, default, bounds, allowed values, help line and
 * struct field), the lookups over it, path resolution and the one typed setter (ft_rk_set);
 * recipe.c reads YAML and --set through that setter, validates across keys and owns
 * load/defaults/free; recipe_io.c checks that files exist, writes the resolved recipe and prints
 * the docs table. The typed accessors below turn a key's offsetof into its field of ft_recipe. */
#ifndef FT_RECIPE_IMPL_H
#define FT_RECIPE_IMPL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "kernels/status.h"
#include "trainer/recipe.h"

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

/* min/max exclusive, required, non-empty list; RK_MAX: an RK_INT that also takes the word `max`, stored as
 * -1 (the largest value the plan finds room for) */
enum { RK_GT = 1, RK_LT = 2, RK_REQUIRED = 4, RK_NONEMPTY = 8, RK_MAX = 16 };

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

/* The number of keys in ft_recipe_keys: a constant because rctx (recipe.c) sizes arrays by it;
 * recipe_keys.c refuses to compile when it and the table disagree. */
enum { RK_COUNT = 68 };
extern const rk ft_recipe_keys[RK_COUNT];

/* ---- typed accessors: key k's field in r ------------------------------------------------------ */

static inline char **rk_str(ft_recipe *r, const rk *k) { return (char **)(void *)((char *)r + k->off); }
static inline char *const *rk_cstr(const ft_recipe *r, const rk *k) { return (char *const *)(const void *)((const char *)r + k->off); }
static inline int *rk_count(ft_recipe *r, const rk *k) { return (int *)(void *)((char *)r + k->n_off); }
static inline const int *rk_ccount(const ft_recipe *r, const rk *k) { return (const int *)(const void *)((const char *)r + k->n_off); }
static inline int64_t *rk_int(ft_recipe *r, const rk *k) { return (int64_t *)(void *)((char *)r + k->off); }
static inline double *rk_float(ft_recipe *r, const rk *k) { return (double *)(void *)((char *)r + k->off); }
static inline int *rk_bool(ft_recipe *r, const rk *k) { return (int *)(void *)((char *)r + k->off); }
static inline int rk_is_list(const rk *k) { return k->type == RK_PATHS || k->type == RK_STRS; }

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

/* Returns FT_E_ARG with "<where>key: <message>" from the function it is used in. */
#define RK_FAIL(o, k, ...)                                                                         \
    do {                                                                                           \
        char w_[4400], m_[1024];                                                                   \
        ft_rk_where((o), w_, sizeof w_);                                                           \
        snprintf(m_, sizeof m_, __VA_ARGS__);                                                      \
        return FT_ERR(FT_E_ARG, "%s%s: %s", w_, (k)->key, m_);                                    \
    } while (0)

const rk *ft_rk_find(const char *key);
/* A section is a proper prefix of some key: "training" for "training.lr". */
int ft_rk_is_section(const char *path);
/* " (did you mean training.lr?)" for the closest key or section name, or "". */
void ft_rk_suggest(const char *path, char *buf, size_t cap);
/* The first key of a section, for examples in messages. */
const char *ft_rk_first_in(const char *section);
ft_status ft_rk_strdup(char **out, const char *s, size_t n);
/* Lexically normalized absolute path: base/rel with ".", "..", "//" folded; "~/" is $HOME. */
ft_status ft_rk_resolve(const char *base, const char *rel, char **out);
/* "file:line:col: ", "--set arg: ", "file: " or "" for messages. */
void ft_rk_where(const rorigin *o, char *buf, size_t cap);
/* The one typed setter: value v (from YAML or --set) into key k of r. base: directory that
 * relative paths resolve against. */
ft_status ft_rk_set(ft_recipe *r, const rk *k, const rv *v, const char *base, const rorigin *o);

#endif
