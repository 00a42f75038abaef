/* gguf_vocab.c: see gguf_vocab.h. Mirrors gguf-py's vocab.py / convert_hf_to_gguf.py
 * (_set_vocab_gpt2, _set_vocab_sentencepiece, SpecialVocab). */
#include "export/gguf_vocab.h"

#include "trainer/gguf_config.h"

#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/tokenizer_pre.h" /* the pre-tokenizer table, shared with the GGUF vocab loader */
#include "export/export_util.h"
#include "kernels/fileio.h"
#include "kernels/json.h"
#include "kernels/log.h"
#include "kernels/mem.h"

enum { FT_TT_NORMAL = 1, FT_TT_UNKNOWN = 2, FT_TT_CONTROL = 3, FT_TT_USER = 4, FT_TT_UNUSED = 5, FT_TT_BYTE = 6 };

void ft_vocab_info_free(ft_vocab_info *info) {
    if (!info) return;
    free(info->chat_template);
    info->chat_template = NULL;
}

static cJSON *ft_load_json(const char *path, ft_status *st) {
    char *text = NULL;
    int64_t len = 0;
    *st = ft_read_file(path, 0, &text, &len, NULL);
    if (*st != FT_OK) return NULL;
    cJSON *j = NULL;
    *st = ft_json_parse(text, len, path, &j); /* as transformers reads it: last key wins */
    free(text);
    return j;
}

/* Finds "type": want anywhere in a pre_tokenizer / decoder tree. */
static int ft_has_type(const cJSON *n, const char *want) {
    if (!n) return 0;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(n, "type");
    if (cJSON_IsString(t) && strcmp(t->valuestring, want) == 0) return 1;
    const cJSON *c;
    cJSON_ArrayForEach(c, n) {
        if (cJSON_IsObject(c) || cJSON_IsArray(c))
            if (ft_has_type(c, want)) return 1;
    }
    return 0;
}

/* The first Split regex in a pre_tokenizer tree. */
static const char *ft_split_regex(const cJSON *n) {
    if (!n) return NULL;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(n, "type");
    if (cJSON_IsString(t) && strcmp(t->valuestring, "Split") == 0) {
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(n, "pattern");
        const cJSON *r = p ? cJSON_GetObjectItemCaseSensitive(p, "Regex") : NULL;
        if (cJSON_IsString(r)) return r->valuestring;
    }
    const cJSON *c;
    cJSON_ArrayForEach(c, n) {
        if (cJSON_IsObject(c) || cJSON_IsArray(c)) {
            const char *s = ft_split_regex(c);
            if (s) return s;
        }
    }
    return NULL;
}

/* tokenizer_config.json value of a special token: "text" or {"content": "text"}. */
static const char *ft_tok_text(const cJSON *tc, const char *key) {
    const cJSON *v = tc ? cJSON_GetObjectItemCaseSensitive(tc, key) : NULL;
    if (cJSON_IsString(v)) return v->valuestring;
    if (cJSON_IsObject(v)) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(v, "content");
        if (cJSON_IsString(c)) return c->valuestring;
    }
    return NULL;
}

/* ---- tokenizer.model (sentencepiece ModelProto) --------------------------------------------- */

static int ft_varint(const uint8_t **p, const uint8_t *end, uint64_t *v) {
    *v = 0;
    for (int s = 0; s < 64 && *p < end; s += 7) {
        uint8_t b = *(*p)++;
        *v |= (uint64_t)(b & 0x7f) << s;
        if (!(b & 0x80)) return 1;
    }
    return 0;
}

/* Skips a field of wire type wt. */
static int ft_pb_skip(const uint8_t **p, const uint8_t *end, int wt) {
    uint64_t v;
    switch (wt) {
    case 0: return ft_varint(p, end, &v);
    case 1: if (end - *p < 8) return 0; *p += 8; return 1;
    case 5: if (end - *p < 4) return 0; *p += 4; return 1;
    case 2:
        if (!ft_varint(p, end, &v) || v > (uint64_t)(end - *p)) return 0;
        *p += v;
        return 1;
    default: return 0;
    }
}

typedef struct {
    char **piece;
    float *score;
    int32_t *type;
    int64_t n;
} ft_spm;

static void ft_spm_free(ft_spm *s) {
    for (int64_t i = 0; i < s->n; i++) free(s->piece[i]);
    free(s->piece);
    free(s->score);
    free(s->type);
    memset(s, 0, sizeof *s);
}

static ft_status ft_spm_load(const char *path, ft_spm *s) {
    char *buf = NULL;
    int64_t len = 0;
    memset(s, 0, sizeof *s);
    FT_TRY(ft_read_file(path, 0, &buf, &len, NULL));
    const uint8_t *p = (const uint8_t *)buf, *end = p + len;
    int64_t cap = 0;
    ft_status st = FT_OK;
    while (p < end) {
        uint64_t tag, l;
        if (!ft_varint(&p, end, &tag)) goto bad;
        if ((tag >> 3) != 1 || (tag & 7) != 2) {
            if (!ft_pb_skip(&p, end, (int)(tag & 7))) goto bad;
            continue;
        }
        if (!ft_varint(&p, end, &l) || l > (uint64_t)(end - p)) goto bad;
        const uint8_t *q = p, *qe = p + l;
        p = qe;
        if (s->n == cap) {
            cap = cap * 2 + 1024;
            char **np = realloc(s->piece, (size_t)cap * sizeof *np);
            float *ns = realloc(s->score, (size_t)cap * sizeof *ns);
            int32_t *nt = realloc(s->type, (size_t)cap * sizeof *nt);
            if (np) s->piece = np;
            if (ns) s->score = ns;
            if (nt) s->type = nt;
            if (!np || !ns || !nt) {
                st = FT_ERR(FT_E_OOM, "%s: out of memory", path);
                goto done;
            }
        }
        char *piece = NULL;
        float score = 0;
        int32_t type = FT_TT_NORMAL;
        while (q < qe) {
            uint64_t t2, v;
            if (!ft_varint(&q, qe, &t2)) goto bad_piece;
            int f = (int)(t2 >> 3), wt = (int)(t2 & 7);
            if (f == 1 && wt == 2) {
                if (!ft_varint(&q, qe, &v) || v > (uint64_t)(qe - q)) goto bad_piece;
                free(piece);
                piece = strndup((const char *)q, (size_t)v);
                q += v;
            } else if (f == 2 && wt == 5) {
                if (qe - q < 4) goto bad_piece;
                memcpy(&score, q, 4);
                q += 4;
            } else if (f == 3 && wt == 0) {
                if (!ft_varint(&q, qe, &v)) goto bad_piece;
                type = (int32_t)v;
            } else if (!ft_pb_skip(&q, qe, wt)) {
                goto bad_piece;
            }
        }
        if (!piece) piece = strdup("");
        s->piece[s->n] = piece, s->score[s->n] = score, s->type[s->n] = type;
        s->n++;
        continue;
    bad_piece:
        free(piece);
        goto bad;
    }
    goto done;
bad:
    st = FT_ERR(FT_E_FORMAT, "%s: not a sentencepiece model (bad protobuf)", path);
done:
    if (st != FT_OK) ft_spm_free(s);
    free(buf);
    return st;
}

/* ---- the writer ----------------------------------------------------------------------------- */

static int64_t ft_lookup(char **tokens, int64_t n, const char *text) {
    if (!text) return -1;
    for (int64_t i = 0; i < n; i++)
        if (tokens[i] && strcmp(tokens[i], text) == 0) return i;
    return -1;
}

static ft_status ft_read_template(const char *dir, const cJSON *tc, char **out) {
    *out = NULL;
    const cJSON *ct = tc ? cJSON_GetObjectItemCaseSensitive(tc, "chat_template") : NULL;
    if (cJSON_IsString(ct)) {
        *out = strdup(ct->valuestring);
    } else if (cJSON_IsArray(ct)) { /* [{"name": "default", "template": ...}, ...] */
        const cJSON *e;
        cJSON_ArrayForEach(e, ct) {
            const cJSON *nm = cJSON_GetObjectItemCaseSensitive(e, "name");
            const cJSON *tp = cJSON_GetObjectItemCaseSensitive(e, "template");
            if (cJSON_IsString(nm) && cJSON_IsString(tp) && strcmp(nm->valuestring, "default") == 0)
                *out = strdup(tp->valuestring);
        }
    } else {
        return ft_json_chat_template_file(dir, out); /* chat_template.jinja or a processor's .json */
    }
    return *out ? FT_OK : FT_ERR(FT_E_OOM, "out of memory");
}

/* ft_vocab_info_read of a GGUF model file: tokenizer.chat_template and the eos token's text. */
static ft_status ft_vocab_info_gguf(const char *path, ft_vocab_info *info) {
    ft_gguf *g = NULL;
    FT_TRY(ft_gguf_open(&g, path));
    ft_status st = FT_OK;
    const char *s;
    int64_t len, k = ft_gguf_find_key(g, "tokenizer.chat_template");
    if (k >= 0 && ft_gguf_get_str(g, k, &s, &len)) {
        st = ft_malloc((void **)&info->chat_template, (size_t)len + 1, "chat template");
        if (st == FT_OK) memcpy(info->chat_template, s, (size_t)len), info->chat_template[len] = 0;
    }
    uint32_t eos;
    k = ft_gguf_find_key(g, "tokenizer.ggml.eos_token_id");
    const int64_t toks = ft_gguf_find_key(g, "tokenizer.ggml.tokens");
    if (st == FT_OK && k >= 0 && toks >= 0 && ft_gguf_get_u32(g, k, &eos) && ft_gguf_arr_str(g, toks, eos, &s, &len)) {
        info->eos = eos;
        snprintf(info->eos_text, sizeof info->eos_text, "%.*s", (int)(len < 63 ? len : 63), s);
    }
    ft_gguf_close(g);
    return st;
}

ft_status ft_vocab_info_read(const char *dir, ft_vocab_info *info) {
    memset(info, 0, sizeof *info);
    info->bos = info->eos = info->eot = -1;
    if (ft_is_gguf_file(dir)) return ft_vocab_info_gguf(dir, info);
    char p[4200];
    ft_status st = FT_OK;
    cJSON *tc = NULL;
    snprintf(p, sizeof p, "%s/tokenizer_config.json", dir);
    if (ft_is_file(p) && !(tc = ft_load_json(p, &st))) return st;
    st = ft_read_template(dir, tc, &info->chat_template);
    const char *eos = ft_tok_text(tc, "eos_token");
    if (eos) snprintf(info->eos_text, sizeof info->eos_text, "%s", eos);
    cJSON_Delete(tc);
    return st;
}

ft_status ft_gguf_vocab_write(ft_ggufw *w, const char *dir, int64_t V, int64_t cfg_bos, int64_t cfg_eos,
                              ft_vocab_info *info_out) {
    char p[4200];
    ft_status st = FT_OK;
    cJSON *tj = NULL, *tc = NULL;
    char **tokens = NULL;
    int32_t *types = NULL;
    float *scores = NULL;
    char **merges = NULL;
    int64_t n_merges = 0;
    ft_spm spm = {0};
    ft_vocab_info info = {.bos = -1, .eos = -1, .eot = -1};
    char pad[32];

    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    char spm_path[4200];
    snprintf(spm_path, sizeof spm_path, "%s/tokenizer.model", dir);
    int have_json = ft_is_file(p), have_spm = ft_is_file(spm_path);
    if (!have_json && !have_spm)
        return FT_ERR(FT_E_FORMAT,
                      "%s: no tokenizer.json or tokenizer.model: a llama.cpp model GGUF needs the tokenizer (copy the "
                      "base model's tokenizer files into this directory)",
                      dir);
    if (have_json && !(tj = ft_load_json(p, &st))) goto done;
    snprintf(p, sizeof p, "%s/tokenizer_config.json", dir);
    if (ft_is_file(p) && !(tc = ft_load_json(p, &st))) goto done;

    const cJSON *model = tj ? cJSON_GetObjectItemCaseSensitive(tj, "model") : NULL;
    const cJSON *mtype = model ? cJSON_GetObjectItemCaseSensitive(model, "type") : NULL;
    const cJSON *vocab = model ? cJSON_GetObjectItemCaseSensitive(model, "vocab") : NULL;
    if (tj && (!cJSON_IsString(mtype) || strcmp(mtype->valuestring, "BPE") != 0 || !cJSON_IsObject(vocab))) {
        st = FT_ERR(FT_E_UNSUPPORTED, "%s/tokenizer.json: model type %s is not supported for GGUF export (BPE only)",
                    dir, cJSON_IsString(mtype) ? mtype->valuestring : "missing");
        goto done;
    }
    const cJSON *pre_tok = tj ? cJSON_GetObjectItemCaseSensitive(tj, "pre_tokenizer") : NULL;
    int byte_level = tj && ft_has_type(pre_tok, "ByteLevel");
    int spm_like = !tj || (!byte_level && (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(model, "byte_fallback")) ||
                                           ft_has_type(pre_tok, "Metaspace") ||
                                           ft_has_type(cJSON_GetObjectItemCaseSensitive(tj, "normalizer"), "Prepend")));
    if (!byte_level && !spm_like) {
        st = FT_ERR(FT_E_UNSUPPORTED, "%s/tokenizer.json: neither byte-level BPE nor SentencePiece BPE", dir);
        goto done;
    }
    FT_CHECK_GOTO(st, ft_calloc((void **)&tokens, (size_t)V * sizeof *tokens, "vocab"), done);
    FT_CHECK_GOTO(st, ft_calloc((void **)&types, (size_t)V * sizeof *types, "vocab"), done);
    FT_CHECK_GOTO(st, ft_calloc((void **)&scores, (size_t)V * sizeof *scores, "vocab"), done);
    int64_t n_tok = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, vocab) {
        if (!cJSON_IsNumber(e) || e->valuedouble < 0) continue;
        int64_t id = (int64_t)e->valuedouble;
        if (id >= V) {
            st = FT_ERR(FT_E_FORMAT, "%s/tokenizer.json: token '%s' has id %lld but config.json vocab_size is %lld: "
                        "tokenizer and model do not match", dir, e->string, (long long)id, (long long)V);
            goto done;
        }
        free(tokens[id]);
        tokens[id] = strdup(e->string);
        types[id] = FT_TT_NORMAL;
        scores[id] = spm_like ? -(float)id : 0.0f;
        if (spm_like && strlen(e->string) == 6 && strncmp(e->string, "<0x", 3) == 0 && e->string[5] == '>')
            types[id] = FT_TT_BYTE;
        if (id + 1 > n_tok) n_tok = id + 1;
    }
    const cJSON *added = tj ? cJSON_GetObjectItemCaseSensitive(tj, "added_tokens") : NULL;
    cJSON_ArrayForEach(e, added) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(e, "id"), *ct = cJSON_GetObjectItemCaseSensitive(e, "content");
        if (!cJSON_IsNumber(id) || !cJSON_IsString(ct)) continue;
        int64_t i = (int64_t)id->valuedouble;
        if (i < 0 || i >= V) {
            st = FT_ERR(FT_E_FORMAT, "%s/tokenizer.json: added token '%s' has id %lld but config.json vocab_size is %lld",
                        dir, ct->valuestring, (long long)i, (long long)V);
            goto done;
        }
        free(tokens[i]);
        tokens[i] = strdup(ct->valuestring);
        int special = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "special"));
        size_t L = strlen(ct->valuestring);
        if (L >= 4 && strncmp(ct->valuestring, "<|", 2) == 0 && strcmp(ct->valuestring + L - 2, "|>") == 0) special = 1;
        types[i] = special ? FT_TT_CONTROL : FT_TT_USER;
        scores[i] = 0;
        if (i + 1 > n_tok) n_tok = i + 1;
    }
    if (spm_like && ft_is_file(spm_path)) {
        /* sentencepiece's own pieces, scores and types (what convert uses) */
        FT_CHECK_GOTO(st, ft_spm_load(spm_path, &spm), done);
        if (spm.n > V) {
            st = FT_ERR(FT_E_FORMAT, "%s: %lld pieces but config.json vocab_size is %lld", spm_path, (long long)spm.n,
                        (long long)V);
            goto done;
        }
        for (int64_t i = 0; i < spm.n; i++) {
            free(tokens[i]);
            tokens[i] = strdup(spm.piece[i]);
            scores[i] = spm.score[i];
            types[i] = spm.type[i] >= 1 && spm.type[i] <= 6 ? spm.type[i] : FT_TT_NORMAL;
        }
        if (spm.n > n_tok) n_tok = spm.n;
    }
    for (int64_t i = 0; i < V; i++) {
        if (!tokens[i]) {
            snprintf(pad, sizeof pad, "[PAD%lld]", (long long)i);
            tokens[i] = strdup(pad);
            types[i] = FT_TT_UNUSED;
            scores[i] = 0;
        }
        if (!tokens[i]) {
            st = FT_ERR(FT_E_OOM, "out of memory");
            goto done;
        }
    }
    info.n_tokens = n_tok;
    snprintf(info.model, sizeof info.model, "%s", byte_level ? "gpt2" : "llama");
    snprintf(info.pre, sizeof info.pre, "default");
    if (byte_level) {
        const char *pre_name = ft_tok_pre_name_for_regex(ft_split_regex(pre_tok));
        if (pre_name) snprintf(info.pre, sizeof info.pre, "%s", pre_name);
        else ft_warn("%s/tokenizer.json: unknown pre-tokenizer regex: writing tokenizer.ggml.pre = \"default\" "
                     "(llama.cpp will split text with the GPT-2 rule)", dir);
        const cJSON *mg = cJSON_GetObjectItemCaseSensitive(model, "merges");
        int64_t nm = cJSON_GetArraySize(mg);
        FT_CHECK_GOTO(st, ft_calloc((void **)&merges, (size_t)(nm + 1) * sizeof *merges, "merges"), done);
        cJSON_ArrayForEach(e, mg) {
            char *m = NULL;
            if (cJSON_IsString(e)) {
                m = strdup(e->valuestring);
            } else if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2) {
                const cJSON *x = cJSON_GetArrayItem(e, 0), *y = cJSON_GetArrayItem(e, 1);
                if (cJSON_IsString(x) && cJSON_IsString(y)) {
                    size_t lx = strlen(x->valuestring), ly = strlen(y->valuestring);
                    if ((m = malloc(lx + ly + 2))) {
                        memcpy(m, x->valuestring, lx);
                        m[lx] = ' ';
                        memcpy(m + lx + 1, y->valuestring, ly + 1);
                    }
                }
            }
            if (!m) {
                st = FT_ERR(FT_E_FORMAT, "%s/tokenizer.json: bad merge entry %lld", dir, (long long)n_merges);
                goto done;
            }
            merges[n_merges++] = m;
        }
        if (n_merges == 0) {
            st = FT_ERR(FT_E_FORMAT, "%s/tokenizer.json: byte-level BPE without merges", dir);
            goto done;
        }
    }

    /* special tokens */
    int64_t bos = ft_lookup(tokens, V, ft_tok_text(tc, "bos_token"));
    int64_t eos = ft_lookup(tokens, V, ft_tok_text(tc, "eos_token"));
    int64_t unk = ft_lookup(tokens, V, ft_tok_text(tc, "unk_token"));
    int64_t padid = ft_lookup(tokens, V, ft_tok_text(tc, "pad_token"));
    if (bos < 0 && cfg_bos >= 0 && cfg_bos < V) bos = cfg_bos;
    if (eos < 0 && cfg_eos >= 0 && cfg_eos < V) eos = cfg_eos;
    if (spm_like && unk < 0) unk = ft_lookup(tokens, V, "<unk>");
    if (spm_like && bos < 0) bos = ft_lookup(tokens, V, "<s>");
    if (spm_like && eos < 0) eos = ft_lookup(tokens, V, "</s>");
    info.bos = bos, info.eos = eos;
    if (eos >= 0) snprintf(info.eos_text, sizeof info.eos_text, "%s", tokens[eos]);
    static const char *const eot_names[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>"};
    for (size_t k = 0; k < sizeof eot_names / sizeof *eot_names && info.eot < 0; k++) {
        info.eot = ft_lookup(tokens, V, eot_names[k]);
        if (info.eot >= 0) snprintf(info.eot_text, sizeof info.eot_text, "%s", eot_names[k]);
    }

    FT_CHECK_GOTO(st, ft_ggufw_set_str(w, "tokenizer.ggml.model", info.model), done);
    FT_CHECK_GOTO(st, ft_ggufw_set_str(w, "tokenizer.ggml.pre", info.pre), done);
    FT_CHECK_GOTO(st, ft_ggufw_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)tokens, V), done);
    if (spm_like) FT_CHECK_GOTO(st, ft_ggufw_set_arr_f32(w, "tokenizer.ggml.scores", scores, V), done);
    FT_CHECK_GOTO(st, ft_ggufw_set_arr_i32(w, "tokenizer.ggml.token_type", types, V), done);
    if (n_merges) FT_CHECK_GOTO(st, ft_ggufw_set_arr_str(w, "tokenizer.ggml.merges", (const char *const *)merges, n_merges), done);
    if (bos >= 0) FT_CHECK_GOTO(st, ft_ggufw_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)bos), done);
    if (eos >= 0) FT_CHECK_GOTO(st, ft_ggufw_set_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)eos), done);
    if (unk >= 0) FT_CHECK_GOTO(st, ft_ggufw_set_u32(w, "tokenizer.ggml.unknown_token_id", (uint32_t)unk), done);
    if (padid >= 0) FT_CHECK_GOTO(st, ft_ggufw_set_u32(w, "tokenizer.ggml.padding_token_id", (uint32_t)padid), done);
    /* add_bos / add_eos: tokenizer_config.json, else a TemplateProcessing post-processor */
    const cJSON *ab = tc ? cJSON_GetObjectItemCaseSensitive(tc, "add_bos_token") : NULL;
    const cJSON *ae = tc ? cJSON_GetObjectItemCaseSensitive(tc, "add_eos_token") : NULL;
    if (cJSON_IsBool(ab)) {
        FT_CHECK_GOTO(st, ft_ggufw_set_bool(w, "tokenizer.ggml.add_bos_token", cJSON_IsTrue(ab)), done);
    } else {
        const cJSON *pp = tj ? cJSON_GetObjectItemCaseSensitive(tj, "post_processor") : NULL;
        if (ft_has_type(pp, "TemplateProcessing")) {
            /* the "single" template starts with a SpecialToken: BOS is added */
            const cJSON *tp = pp;
            if (!cJSON_GetObjectItemCaseSensitive(tp, "single")) {
                const cJSON *procs = cJSON_GetObjectItemCaseSensitive(pp, "processors");
                cJSON_ArrayForEach(e, procs) if (cJSON_GetObjectItemCaseSensitive(e, "single")) tp = e;
            }
            const cJSON *single = cJSON_GetObjectItemCaseSensitive(tp, "single");
            const cJSON *first = cJSON_GetArrayItem(single, 0);
            FT_CHECK_GOTO(st, ft_ggufw_set_bool(w, "tokenizer.ggml.add_bos_token",
                                                first && cJSON_GetObjectItemCaseSensitive(first, "SpecialToken") != NULL),
                          done);
        }
    }
    if (cJSON_IsBool(ae)) FT_CHECK_GOTO(st, ft_ggufw_set_bool(w, "tokenizer.ggml.add_eos_token", cJSON_IsTrue(ae)), done);
    FT_CHECK_GOTO(st, ft_read_template(dir, tc, &info.chat_template), done);
    if (info.chat_template) FT_CHECK_GOTO(st, ft_ggufw_set_str(w, "tokenizer.chat_template", info.chat_template), done);
    if (info_out) {
        *info_out = info;
        info.chat_template = NULL;
    }
done:
    ft_vocab_info_free(&info);
    if (tokens)
        for (int64_t i = 0; i < V; i++) free(tokens[i]);
    free(tokens);
    free(types);
    free(scores);
    for (int64_t i = 0; i < n_merges; i++) free(merges[i]);
    free(merges);
    ft_spm_free(&spm);
    cJSON_Delete(tj);
    cJSON_Delete(tc);
    return st;
}
