/* tokenizer.c: ft_tok lifecycle (load from a directory or files, free), tokenizer_config.json
 * (special tokens, add_bos/eos, chat template), the public look-ups, and the pool of per-call
 * scratch states that makes a const ft_tok safe to share between threads (a thread mostly gets
 * back, without a lock, the state it used last). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>

#include "data/tokenizer_impl.h"
#include "kernels/fileio.h"
#include "kernels/json.h"
#include "kernels/log.h"
#include "kernels/mem.h"

/* bos_token etc.: a string, an AddedToken object {"content": ...}, or null. */
static const char *ft_tok_cfg_token(const cJSON *cfg, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (cJSON_IsString(v)) return v->valuestring;
    if (cJSON_IsObject(v)) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(v, "content");
        if (cJSON_IsString(c)) return c->valuestring;
    }
    return NULL;
}

static ft_status ft_tok_cfg_id(ft_tok *t, const cJSON *cfg, const char *key, const char *path, int32_t *out) {
    const char *s = ft_tok_cfg_token(cfg, key);
    if (!s) return FT_OK;
    int32_t id = ft_tok_token_to_id(t, s);
    /* transformers would add such a token; we cannot give it an embedding, so it stays unset. */
    if (id < 0) ft_warn("%s: %s \"%s\" is not a token of %s; ignored", path, key, s, t->path);
    else *out = id;
    return FT_OK;
}

ft_status ft_tok_parse_config(ft_tok *t, const char *json, int64_t len, const char *path) {
    cJSON *cfg = NULL;
    FT_TRY(ft_json_parse(json, len, path, &cfg)); /* as transformers reads it: a repeated key, the last wins */
    ft_status st = FT_OK;
    if (!cJSON_IsObject(cfg)) st = FT_ERR(FT_E_FORMAT, "%s: not a JSON object", path);
    if (st == FT_OK) st = ft_tok_cfg_id(t, cfg, "bos_token", path, &t->bos_id);
    if (st == FT_OK) st = ft_tok_cfg_id(t, cfg, "eos_token", path, &t->eos_id);
    if (st == FT_OK) st = ft_tok_cfg_id(t, cfg, "pad_token", path, &t->pad_id);
    if (st == FT_OK) st = ft_tok_cfg_id(t, cfg, "unk_token", path, &t->cfg_unk_id);
    /* transformers rebuilds the single template from add_bos_token/add_eos_token when either is
     * given explicitly (TokenizersBackend.update_post_processor). */
    const cJSON *ab = cJSON_GetObjectItemCaseSensitive(cfg, "add_bos_token");
    const cJSON *ae = cJSON_GetObjectItemCaseSensitive(cfg, "add_eos_token");
    if (st == FT_OK && (cJSON_IsBool(ab) || cJSON_IsBool(ae))) {
        free(t->tmpl_prefix);
        free(t->tmpl_suffix);
        t->tmpl_prefix = t->tmpl_suffix = NULL;
        t->n_prefix = t->n_suffix = 0;
        if (cJSON_IsTrue(ab) && t->bos_id >= 0) {
            st = ft_malloc((void **)&t->tmpl_prefix, sizeof(int32_t), "template");
            if (st == FT_OK) t->tmpl_prefix[t->n_prefix++] = t->bos_id;
        }
        if (st == FT_OK && cJSON_IsTrue(ae) && t->eos_id >= 0) {
            st = ft_malloc((void **)&t->tmpl_suffix, sizeof(int32_t), "template");
            if (st == FT_OK) t->tmpl_suffix[t->n_suffix++] = t->eos_id;
        }
    }
    const cJSON *ct = cJSON_GetObjectItemCaseSensitive(cfg, "chat_template");
    const char *tmpl = NULL;
    if (cJSON_IsString(ct)) {
        tmpl = ct->valuestring;
    } else if (cJSON_IsArray(ct)) {
        const cJSON *e;
        cJSON_ArrayForEach(e, ct) {
            const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "name"));
            const char *tx = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "template"));
            if (tx && (!tmpl || (name && !strcmp(name, "default")))) tmpl = tx;
        }
    }
    if (st == FT_OK && tmpl) {
        size_t n = strlen(tmpl);
        st = ft_malloc((void **)&t->chat_template, n + 1, "chat template");
        if (st == FT_OK) memcpy(t->chat_template, tmpl, n + 1);
    }
    cJSON_Delete(cfg);
    return st;
}

ft_status ft_tok_new(ft_tok **out, const char *path) {
    *out = NULL;
    ft_tok *t;
    FT_TRY(ft_calloc((void **)&t, sizeof *t, "tokenizer"));
    pthread_mutex_init(&t->pool_lock, NULL);
    t->bos_id = t->eos_id = t->pad_id = t->cfg_unk_id = t->unk_id = -1;
    t->cache_cap_log2 = 15;
    size_t pl = strlen(path);
    ft_status st = ft_malloc((void **)&t->path, pl + 1, "tokenizer path");
    if (st != FT_OK) {
        ft_tok_free(t);
        return st;
    }
    memcpy(t->path, path, pl + 1);
    *out = t;
    return FT_OK;
}

ft_status ft_tok_load_files(ft_tok **out, const char *tokenizer_json, const char *config_path) {
    *out = NULL;
    ft_tok *t;
    FT_TRY(ft_tok_new(&t, tokenizer_json));
    char *json = NULL;
    int64_t len = 0;
    ft_status st = ft_read_file(tokenizer_json, 0, &json, &len, NULL);
    if (st == FT_OK) st = ft_tok_parse_json(t, json, len);
    free(json);
    json = NULL;
    if (st == FT_OK && config_path) {
        int missing = 0;
        st = ft_read_file(config_path, 0, &json, &len, &missing);
        if (st == FT_OK && !missing) st = ft_tok_parse_config(t, json, len, config_path);
        free(json);
    }
    if (st == FT_OK && t->bos_id < 0 && !config_path && t->n_prefix == 1) t->bos_id = t->tmpl_prefix[0];
    if (st != FT_OK) {
        ft_tok_free(t);
        return st;
    }
    *out = t;
    return FT_OK;
}

ft_status ft_tok_load(ft_tok **out, const char *dir) {
    size_t n = strlen(dir) + 64;
    char *tj = malloc(n), *cj = malloc(n);
    if (!tj || !cj) {
        free(tj);
        free(cj);
        return FT_ERR(FT_E_OOM, "out of memory");
    }
    snprintf(tj, n, "%s/tokenizer.json", dir);
    snprintf(cj, n, "%s/tokenizer_config.json", dir);
    ft_status st = ft_tok_load_files(out, tj, cj);
    if (st == FT_OK && !(*out)->chat_template) {
        /* transformers >= 4.43 may save the template beside the config; a processor in chat_template.json */
        st = ft_json_chat_template_file(dir, &(*out)->chat_template);
        if (st != FT_OK) {
            ft_tok_free(*out);
            *out = NULL;
        }
    }
    free(tj);
    free(cj);
    return st;
}

static void ft_tok_state_free(ft_tok_state *s) {
    if (!s) return;
    ft_tok_buf_free(&s->repaired);
    for (int i = 0; i < 2; i++) {
        ft_tok_buf_free(&s->norm[i]);
        ft_tok_buf_free(&s->pre[i]);
        ft_tok_buf_free(&s->dec[i]);
        free(s->spans[i].v);
        free(s->dspans[i].v);
    }
    free(s->seg.v);
    free(s->sect.v);
    free(s->sect2.v);
    ft_tok_buf_free(&s->key);
    free(s->sym);
    free(s->heap);
    free(s->cache.slot);
    ft_tok_buf_free(&s->cache.keys);
    ft_tok_buf_free(&s->cache.ids);
    if (s->md) pcre2_match_data_free(s->md);
    if (s->mctx) pcre2_match_context_free(s->mctx);
    if (s->jit) pcre2_jit_stack_free(s->jit);
    free(s);
}

void ft_tok_free(ft_tok *t) {
    if (!t) return;
    ft_tok_free_parts(t);
    ft_tok_state *s = t->pool;
    while (s) {
        ft_tok_state *n = s->next_free;
        ft_tok_state_free(s);
        s = n;
    }
    for (int i = 0; i < FT_TOK_AFFINE_SLOTS; i++) {
        ft_tok_state *a = atomic_load(&t->affine[i].s);
        if (a) ft_tok_state_free(a);
    }
    pthread_mutex_destroy(&t->pool_lock);
    free(t->chat_template);
    free(t->path);
    free(t);
}

/* The affine slot of the calling thread (Fibonacci hash of its id). */
static int ft_tok_affine_slot(void) {
    return (int)((((uint64_t)pthread_self() * 0x9E3779B97F4A7C15ull) >> 32) % FT_TOK_AFFINE_SLOTS);
}

ft_status ft_tok_state_get(const ft_tok *tc, ft_tok_state **out) {
    ft_tok *t = (ft_tok *)tc; /* only the pool (atomic slots, mutex-guarded list) is touched */
    ft_tok_state *mine = atomic_exchange(&t->affine[ft_tok_affine_slot()].s, NULL);
    if (mine) {
        *out = mine;
        return FT_OK;
    }
    pthread_mutex_lock(&t->pool_lock);
    ft_tok_state *s = t->pool;
    if (s) t->pool = s->next_free;
    pthread_mutex_unlock(&t->pool_lock);
    if (!s) {
        FT_TRY(ft_calloc((void **)&s, sizeof *s, "tokenizer scratch"));
        s->md = pcre2_match_data_create(1, NULL);
        s->mctx = pcre2_match_context_create(NULL);
        s->jit = pcre2_jit_stack_create(32 * 1024, 4 * 1024 * 1024, NULL);
        if (!s->md || !s->mctx || !s->jit) {
            ft_tok_state_free(s);
            return FT_ERR(FT_E_OOM, "out of memory creating tokenizer scratch");
        }
        pcre2_jit_stack_assign(s->mctx, NULL, s->jit);
    }
    s->next_free = NULL;
    *out = s;
    return FT_OK;
}

void ft_tok_state_put(const ft_tok *tc, ft_tok_state *s) {
    ft_tok *t = (ft_tok *)tc;
    ft_tok_state *empty = NULL;
    if (atomic_compare_exchange_strong(&t->affine[ft_tok_affine_slot()].s, &empty, s)) return;
    pthread_mutex_lock(&t->pool_lock);
    s->next_free = t->pool;
    t->pool = s;
    pthread_mutex_unlock(&t->pool_lock);
}

int32_t ft_tok_token_to_id(const ft_tok *t, const char *piece) {
    int64_t n = (int64_t)strlen(piece);
    for (int64_t i = 0; i < t->n_added; i++)
        if (t->added[i].len == n && memcmp(t->added[i].content, piece, (size_t)n) == 0) return t->added[i].id;
    return ft_tok_strmap_get(&t->vocab, piece, n);
}

const char *ft_tok_id_to_piece(const ft_tok *t, int32_t id) {
    if (id < 0 || id >= t->n_ids || t->piece_off[id] < 0) return NULL;
    return t->piece_store.p + t->piece_off[id];
}

int ft_tok_is_special(const ft_tok *t, int32_t id) {
    if (id < 0 || id >= t->n_ids || t->added_of_id[id] < 0) return 0;
    return t->added[t->added_of_id[id]].special;
}

int64_t ft_tok_vocab_size(const ft_tok *t) { return t->n_ids; }
int32_t ft_tok_bos_id(const ft_tok *t) { return t->bos_id; }
int32_t ft_tok_eos_id(const ft_tok *t) { return t->eos_id; }
int32_t ft_tok_pad_id(const ft_tok *t) { return t->pad_id; }
int32_t ft_tok_unk_id(const ft_tok *t) { return t->cfg_unk_id >= 0 ? t->cfg_unk_id : t->unk_id; }
int ft_tok_adds_bos(const ft_tok *t) { return t->bos_id >= 0 && t->n_prefix > 0 && t->tmpl_prefix[0] == t->bos_id; }
const char *ft_tok_chat_template(const ft_tok *t) { return t->chat_template; }
const char *ft_tok_path(const ft_tok *t) { return t->path; }

ft_status ft_tok_ids_push(ft_tok_ids *v, int32_t id) {
    if (v->n == v->cap) {
        int64_t cap = v->cap ? v->cap * 2 : 64;
        int32_t *p = realloc(v->ids, (size_t)cap * sizeof *p);
        if (!p) return FT_ERR(FT_E_OOM, "out of memory growing a token id list to %lld", (long long)cap);
        v->ids = p;
        v->cap = cap;
    }
    v->ids[v->n++] = id;
    return FT_OK;
}

void ft_tok_ids_free(ft_tok_ids *v) {
    free(v->ids);
    v->ids = NULL;
    v->n = v->cap = 0;
}
