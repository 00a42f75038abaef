/* tokenizer_load.c: tokenizer.json -> ft_tok tables. Parses the model (BPE vocab and merges in
 * both serializations), the added tokens (two tries: raw and normalized patterns), and the
 * normalizer / pre_tokenizer / post_processor / decoder step lists. Anything we cannot run
 * exactly as HF does is refused here with FT_E_UNSUPPORTED, never approximated at encode time.
 * Every message names the tokenizer.json path. */
#include <stdio.h>
#include <stdlib.h>
#include <cjson/cJSON.h>

#include "data/tokenizer_impl.h"
#include "data/unicode.h"
#include "kernels/json.h"
#include "kernels/mem.h"

#define P (t->path)

void ft_tok_bytes_to_unicode(uint32_t cp[256]) {
    int n = 0;
    for (int b = 0; b < 256; b++) {
        if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF))
            cp[b] = (uint32_t)b;
        else
            cp[b] = 0x100u + (uint32_t)n++;
    }
}

int ft_tok_unicode_to_byte(uint32_t cp) {
    if (cp < 0x100) {
        if ((cp >= 0x21 && cp <= 0x7E) || (cp >= 0xA1 && cp <= 0xAC) || (cp >= 0xAE && cp <= 0xFF)) return (int)cp;
        return -1;
    }
    /* The 68 remapped bytes, in increasing order: 0x00-0x20, 0x7F-0xA0, 0xAD. */
    if (cp <= 0x120) return (int)(cp - 0x100);
    if (cp <= 0x142) return (int)(0x7F + (cp - 0x121));
    if (cp == 0x143) return 0xAD;
    return -1;
}

static int ft_json_bool(const cJSON *o, const char *key, int dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (cJSON_IsBool(v)) return cJSON_IsTrue(v);
    return dflt;
}

static const char *ft_json_str(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static ft_status ft_tok_strdup(char **out, const char *s, int64_t len) {
    FT_TRY(ft_malloc((void **)out, (size_t)len + 1, "tokenizer string"));
    memcpy(*out, s, (size_t)len);
    (*out)[len] = 0;
    return FT_OK;
}

pcre2_code *ft_tok_compile_regex(const char *pat, int64_t len, int literal, char *err, size_t errsz) {
    /* HF compiles Split patterns with Oniguruma, whose \s is Unicode White_Space; PCRE2's UCP \s
     * lacks U+0085 (NEL), so \s is widened here. Character-class bookkeeping is enough for the
     * patterns tokenizers ship (no nested classes). */
    ft_tok_buf b = {0};
    if (!literal) {
        int in_class = 0;
        for (int64_t i = 0; i < len; i++) {
            char c = pat[i];
            if (c == '\\' && i + 1 < len) {
                char d = pat[i + 1];
                const char *rep = NULL;
                if (d == 's') rep = in_class ? "\\s\\x{85}" : "[\\s\\x{85}]";
                else if (d == 'S' && !in_class) rep = "[^\\s\\x{85}]";
                if (rep) {
                    if (ft_tok_buf_put(&b, rep, (int64_t)strlen(rep)) != FT_OK) goto oom;
                } else if (ft_tok_buf_put(&b, pat + i, 2) != FT_OK) {
                    goto oom;
                }
                i++;
                continue;
            }
            if (!in_class && c == '[') {
                in_class = 1;
                if (ft_tok_buf_put(&b, &c, 1) != FT_OK) goto oom;
                if (i + 1 < len && pat[i + 1] == '^') {
                    if (ft_tok_buf_put(&b, "^", 1) != FT_OK) goto oom;
                    i++;
                }
                if (i + 1 < len && pat[i + 1] == ']') {
                    if (ft_tok_buf_put(&b, "]", 1) != FT_OK) goto oom;
                    i++;
                }
                continue;
            }
            if (in_class && c == '[' && i + 1 < len && pat[i + 1] == ':') {
                const char *end = strstr(pat + i, ":]");
                if (end && end - pat < len) {
                    int64_t n = (end - (pat + i)) + 2;
                    if (ft_tok_buf_put(&b, pat + i, n) != FT_OK) goto oom;
                    i += n - 1;
                    continue;
                }
            }
            if (in_class && c == ']') in_class = 0;
            if (ft_tok_buf_put(&b, &c, 1) != FT_OK) goto oom;
        }
    } else if (ft_tok_buf_put(&b, pat, len) != FT_OK) {
        goto oom;
    }
    int ec;
    PCRE2_SIZE eo;
    uint32_t opts = PCRE2_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP | PCRE2_MULTILINE);
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)(b.p ? b.p : ""), (PCRE2_SIZE)b.n, opts, &ec, &eo, NULL);
    if (!re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(ec, msg, sizeof msg);
        snprintf(err, errsz, "%s at offset %zu", (const char *)msg, (size_t)eo);
    } else {
        pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* falls back to the interpreter on failure */
    }
    ft_tok_buf_free(&b);
    return re;
oom:
    ft_tok_buf_free(&b);
    snprintf(err, errsz, "out of memory");
    return NULL;
}

/* pattern: {"String": s} or {"Regex": r}. Compiles both forms (a String is a literal). */
static ft_status ft_tok_pattern(ft_tok *t, const cJSON *pat, const char *what, pcre2_code **re, int *empty,
                                char **str, int64_t *slen) {
    const char *s = ft_json_str(pat, "String");
    const char *r = ft_json_str(pat, "Regex");
    if (!s && !r) return FT_ERR(FT_E_FORMAT, "%s: %s has no String or Regex pattern", P, what);
    const char *src = s ? s : r;
    if (empty) *empty = src[0] == 0;
    if (str) {
        FT_TRY(ft_tok_strdup(str, src, (int64_t)strlen(src)));
        *slen = (int64_t)strlen(src);
    }
    if (re && src[0]) {
        char err[200];
        *re = ft_tok_compile_regex(src, (int64_t)strlen(src), s != NULL, err, sizeof err);
        if (!*re) {
            if (str) free(*str), *str = NULL; /* the caller owns nothing on failure */
            return FT_ERR(FT_E_FORMAT, "%s: %s regex /%s/: %s", P, what, src, err);
        }
    }
    return FT_OK;
}

static ft_status ft_tok_utf8_char(ft_tok *t, const char *s, const char *what, char *buf, int *blen, uint32_t *cp) {
    int64_t n = s ? (int64_t)strlen(s) : 0;
    int k = 0;
    int32_t c = n ? ft_utf8_decode((const uint8_t *)s, n, &k) : -1;
    if (c < 0 || k != n) return FT_ERR(FT_E_FORMAT, "%s: %s must be one character", P, what);
    memcpy(buf, s, (size_t)k);
    buf[k] = 0;
    *blen = k;
    *cp = (uint32_t)c;
    return FT_OK;
}

/* ---- normalizer ---- */
static ft_status ft_tok_parse_norm(ft_tok *t, const cJSON *j) {
    if (!j || cJSON_IsNull(j)) return FT_OK;
    const char *type = ft_json_str(j, "type");
    if (!type) return FT_ERR(FT_E_FORMAT, "%s: normalizer without a type", P);
    if (!strcmp(type, "Sequence")) {
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(j, "normalizers"), *e;
        cJSON_ArrayForEach(e, arr) FT_TRY(ft_tok_parse_norm(t, e));
        return FT_OK;
    }
    ft_tok_norm n = {0};
    if (!strcmp(type, "NFC")) { n.kind = FT_NORM_NF; n.form = FT_NF_NFC; }
    else if (!strcmp(type, "NFD")) { n.kind = FT_NORM_NF; n.form = FT_NF_NFD; }
    else if (!strcmp(type, "NFKC")) { n.kind = FT_NORM_NF; n.form = FT_NF_NFKC; }
    else if (!strcmp(type, "NFKD")) { n.kind = FT_NORM_NF; n.form = FT_NF_NFKD; }
    else if (!strcmp(type, "Lowercase")) n.kind = FT_NORM_LOWER;
    else if (!strcmp(type, "Prepend")) {
        n.kind = FT_NORM_PREPEND;
        const char *s = ft_json_str(j, "prepend");
        if (!s) return FT_ERR(FT_E_FORMAT, "%s: Prepend normalizer without \"prepend\"", P);
        FT_TRY(ft_tok_strdup(&n.a, s, n.alen = (int64_t)strlen(s)));
    } else if (!strcmp(type, "Replace")) {
        n.kind = FT_NORM_REPLACE;
        const char *c = ft_json_str(j, "content");
        if (!c) return FT_ERR(FT_E_FORMAT, "%s: Replace normalizer without \"content\"", P);
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(j, "pattern");
        n.literal = ft_json_str(pat, "String") != NULL;
        FT_TRY(ft_tok_pattern(t, pat, "Replace normalizer", &n.re, NULL, &n.a, &n.alen));
        FT_TRY(ft_tok_strdup(&n.b, c, n.blen = (int64_t)strlen(c)));
    } else if (!strcmp(type, "Strip")) {
        n.kind = FT_NORM_STRIP;
        n.left = ft_json_bool(j, "strip_left", 1);
        n.right = ft_json_bool(j, "strip_right", 1);
    } else {
        return FT_ERR(FT_E_UNSUPPORTED, "%s: normalizer type %s is not supported", P, type);
    }
    ft_tok_norm *v = realloc(t->norm, (size_t)(t->n_norm + 1) * sizeof *v);
    if (!v) return FT_ERR(FT_E_OOM, "out of memory loading %s", P);
    t->norm = v;
    t->norm[t->n_norm++] = n;
    return FT_OK;
}

/* ---- pre-tokenizer ---- */
static ft_status ft_tok_push_pre(ft_tok *t, const ft_tok_pre *p) {
    ft_tok_pre *v = realloc(t->pre, (size_t)(t->n_pre + 1) * sizeof *v);
    if (!v) return FT_ERR(FT_E_OOM, "out of memory loading %s", P);
    t->pre = v;
    t->pre[t->n_pre++] = *p;
    return FT_OK;
}

static ft_status ft_tok_parse_prepend(ft_tok *t, const cJSON *j, ft_tok_prepend_scheme *out) {
    const char *ps = ft_json_str(j, "prepend_scheme");
    if (ps) {
        if (!strcmp(ps, "always")) *out = FT_PREPEND_ALWAYS;
        else if (!strcmp(ps, "first")) *out = FT_PREPEND_FIRST;
        else if (!strcmp(ps, "never")) *out = FT_PREPEND_NEVER;
        else return FT_ERR(FT_E_FORMAT, "%s: unknown Metaspace prepend_scheme \"%s\"", P, ps);
    } else {
        *out = ft_json_bool(j, "add_prefix_space", 1) ? FT_PREPEND_ALWAYS : FT_PREPEND_NEVER;
    }
    return FT_OK;
}

static const char *FT_GPT2_REGEX =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static ft_status ft_tok_parse_pre(ft_tok *t, const cJSON *j) {
    if (!j || cJSON_IsNull(j)) return FT_OK;
    const char *type = ft_json_str(j, "type");
    if (!type) return FT_ERR(FT_E_FORMAT, "%s: pre_tokenizer without a type", P);
    if (!strcmp(type, "Sequence")) {
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(j, "pretokenizers"), *e;
        cJSON_ArrayForEach(e, arr) FT_TRY(ft_tok_parse_pre(t, e));
        return FT_OK;
    }
    if (t->byte_level && strcmp(type, "ByteLevel") != 0)
        return FT_ERR(FT_E_UNSUPPORTED, "%s: pre_tokenizer %s after ByteLevel is not supported", P, type);
    ft_tok_pre p = {0};
    if (!strcmp(type, "Split")) {
        p.kind = FT_PRE_SPLIT;
        /* the behavior is checked before the pattern is compiled, so that an error leaks no regex */
        const char *b = ft_json_str(j, "behavior");
        if (!b || !strcmp(b, "Isolated")) p.behavior = FT_SPLIT_ISOLATED;
        else if (!strcmp(b, "Removed")) p.behavior = FT_SPLIT_REMOVED;
        else if (!strcmp(b, "MergedWithPrevious")) p.behavior = FT_SPLIT_MERGED_PREV;
        else if (!strcmp(b, "MergedWithNext")) p.behavior = FT_SPLIT_MERGED_NEXT;
        else if (!strcmp(b, "Contiguous")) p.behavior = FT_SPLIT_CONTIGUOUS;
        else return FT_ERR(FT_E_FORMAT, "%s: unknown Split behavior \"%s\"", P, b);
        p.invert = ft_json_bool(j, "invert", 0);
        FT_TRY(ft_tok_pattern(t, cJSON_GetObjectItemCaseSensitive(j, "pattern"), "Split pre_tokenizer", &p.re,
                              &p.empty_pattern, NULL, NULL));
    } else if (!strcmp(type, "ByteLevel")) {
        p.kind = FT_PRE_BYTELEVEL;
        p.add_prefix_space = ft_json_bool(j, "add_prefix_space", 1);
        if (ft_json_bool(j, "use_regex", 1)) {
            char err[200];
            p.re = ft_tok_compile_regex(FT_GPT2_REGEX, (int64_t)strlen(FT_GPT2_REGEX), 0, err, sizeof err);
            if (!p.re) return FT_ERR(FT_E_INTERNAL, "%s: ByteLevel regex: %s", P, err);
            p.behavior = FT_SPLIT_ISOLATED;
        }
        t->byte_level = 1;
    } else if (!strcmp(type, "Metaspace")) {
        p.kind = FT_PRE_METASPACE;
        const char *r = ft_json_str(j, "replacement");
        FT_TRY(ft_tok_utf8_char(t, r ? r : "\xE2\x96\x81", "Metaspace replacement", p.repl, &p.repl_len, &p.repl_cp));
        FT_TRY(ft_tok_parse_prepend(t, j, &p.prepend));
        p.split = ft_json_bool(j, "split", 1);
    } else if (!strcmp(type, "Digits")) {
        p.kind = FT_PRE_DIGITS;
        p.individual_digits = ft_json_bool(j, "individual_digits", 0);
    } else {
        return FT_ERR(FT_E_UNSUPPORTED, "%s: pre_tokenizer type %s is not supported", P, type);
    }
    return ft_tok_push_pre(t, &p);
}

/* ---- decoder ---- */
static ft_status ft_tok_parse_dec(ft_tok *t, const cJSON *j) {
    if (!j || cJSON_IsNull(j)) return FT_OK;
    t->has_decoder = 1;
    const char *type = ft_json_str(j, "type");
    if (!type) return FT_ERR(FT_E_FORMAT, "%s: decoder without a type", P);
    if (!strcmp(type, "Sequence")) {
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(j, "decoders"), *e;
        cJSON_ArrayForEach(e, arr) FT_TRY(ft_tok_parse_dec(t, e));
        return FT_OK;
    }
    ft_tok_dec d = {0};
    if (!strcmp(type, "ByteLevel")) d.kind = FT_DEC_BYTELEVEL;
    else if (!strcmp(type, "ByteFallback")) d.kind = FT_DEC_BYTEFALLBACK;
    else if (!strcmp(type, "Fuse")) d.kind = FT_DEC_FUSE;
    else if (!strcmp(type, "Metaspace")) {
        d.kind = FT_DEC_METASPACE;
        const char *r = ft_json_str(j, "replacement");
        char buf[8];
        int bl = 0;
        uint32_t cp;
        FT_TRY(ft_tok_utf8_char(t, r ? r : "\xE2\x96\x81", "Metaspace replacement", buf, &bl, &cp));
        ft_tok_prepend_scheme ps;
        FT_TRY(ft_tok_parse_prepend(t, j, &ps)); /* before the copy below, which an error would leak */
        d.prepend = ps != FT_PREPEND_NEVER;
        FT_TRY(ft_tok_strdup(&d.a, buf, d.alen = bl));
    } else if (!strcmp(type, "Replace")) {
        d.kind = FT_DEC_REPLACE;
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(j, "pattern");
        const char *s = ft_json_str(pat, "String"), *c = ft_json_str(j, "content");
        if (!s) return FT_ERR(FT_E_UNSUPPORTED, "%s: Replace decoder needs a String pattern", P);
        if (!c) return FT_ERR(FT_E_FORMAT, "%s: Replace decoder without \"content\"", P);
        FT_TRY(ft_tok_strdup(&d.a, s, d.alen = (int64_t)strlen(s)));
        FT_TRY(ft_tok_strdup(&d.b, c, d.blen = (int64_t)strlen(c)));
    } else if (!strcmp(type, "Strip")) {
        d.kind = FT_DEC_STRIP;
        const char *c = ft_json_str(j, "content");
        char buf[8];
        int bl;
        FT_TRY(ft_tok_utf8_char(t, c ? c : " ", "Strip content", buf, &bl, &d.strip_cp));
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, "start"), *b = cJSON_GetObjectItemCaseSensitive(j, "stop");
        d.start = cJSON_IsNumber(a) ? a->valueint : 0;
        d.stop = cJSON_IsNumber(b) ? b->valueint : 0;
    } else {
        return FT_ERR(FT_E_UNSUPPORTED, "%s: decoder type %s is not supported", P, type);
    }
    ft_tok_dec *v = realloc(t->dec, (size_t)(t->n_dec + 1) * sizeof *v);
    if (!v) return FT_ERR(FT_E_OOM, "out of memory loading %s", P);
    t->dec = v;
    t->dec[t->n_dec++] = d;
    return FT_OK;
}

/* ---- post-processor: folded into one single-sequence template (prefix ids, suffix ids) ---- */
static ft_status ft_tok_ids_append(ft_tok *t, int32_t **v, int *n, int32_t id) {
    int32_t *w = realloc(*v, (size_t)(*n + 1) * sizeof *w);
    if (!w) return FT_ERR(FT_E_OOM, "out of memory loading %s", P);
    *v = w;
    w[(*n)++] = id;
    return FT_OK;
}

static ft_status ft_tok_wrap(ft_tok *t, const int32_t *pre, int npre, const int32_t *suf, int nsuf) {
    /* A later processor wraps what the earlier ones produced. */
    int32_t *np = NULL;
    int nn = 0;
    for (int i = 0; i < npre; i++) FT_TRY(ft_tok_ids_append(t, &np, &nn, pre[i]));
    for (int i = 0; i < t->n_prefix; i++) FT_TRY(ft_tok_ids_append(t, &np, &nn, t->tmpl_prefix[i]));
    free(t->tmpl_prefix);
    t->tmpl_prefix = np;
    t->n_prefix = nn;
    for (int i = 0; i < nsuf; i++) FT_TRY(ft_tok_ids_append(t, &t->tmpl_suffix, &t->n_suffix, suf[i]));
    return FT_OK;
}

static ft_status ft_tok_parse_post(ft_tok *t, const cJSON *j) {
    if (!j || cJSON_IsNull(j)) return FT_OK;
    const char *type = ft_json_str(j, "type");
    if (!type) return FT_ERR(FT_E_FORMAT, "%s: post_processor without a type", P);
    if (!strcmp(type, "Sequence")) {
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(j, "processors"), *e;
        cJSON_ArrayForEach(e, arr) FT_TRY(ft_tok_parse_post(t, e));
        return FT_OK;
    }
    if (!strcmp(type, "ByteLevel")) return FT_OK; /* offsets only */
    if (!strcmp(type, "RobertaProcessing") || !strcmp(type, "BertProcessing")) {
        const cJSON *sep = cJSON_GetObjectItemCaseSensitive(j, "sep"), *cls = cJSON_GetObjectItemCaseSensitive(j, "cls");
        const cJSON *si = cJSON_GetArrayItem(sep, 1), *ci = cJSON_GetArrayItem(cls, 1);
        if (!cJSON_IsNumber(si) || !cJSON_IsNumber(ci)) return FT_ERR(FT_E_FORMAT, "%s: %s without cls/sep ids", P, type);
        int32_t a = (int32_t)ci->valuedouble, b = (int32_t)si->valuedouble;
        return ft_tok_wrap(t, &a, 1, &b, 1);
    }
    if (strcmp(type, "TemplateProcessing") != 0)
        return FT_ERR(FT_E_UNSUPPORTED, "%s: post_processor type %s is not supported", P, type);
    const cJSON *single = cJSON_GetObjectItemCaseSensitive(j, "single"), *it;
    const cJSON *specials = cJSON_GetObjectItemCaseSensitive(j, "special_tokens");
    int32_t *pre = NULL, *suf = NULL;
    int npre = 0, nsuf = 0, seen_a = 0;
    ft_status st = FT_OK;
    cJSON_ArrayForEach(it, single) {
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(it, "SpecialToken");
        if (cJSON_GetObjectItemCaseSensitive(it, "Sequence")) {
            seen_a = 1;
            continue;
        }
        const char *name = ft_json_str(sp, "id");
        const cJSON *def = name ? cJSON_GetObjectItemCaseSensitive(specials, name) : NULL;
        const cJSON *ids = cJSON_GetObjectItemCaseSensitive(def, "ids"), *idv;
        if (!cJSON_IsArray(ids)) {
            st = FT_ERR(FT_E_FORMAT, "%s: TemplateProcessing special token %s has no ids", P, name ? name : "?");
            break;
        }
        cJSON_ArrayForEach(idv, ids) {
            if (seen_a) st = ft_tok_ids_append(t, &suf, &nsuf, (int32_t)idv->valuedouble);
            else st = ft_tok_ids_append(t, &pre, &npre, (int32_t)idv->valuedouble);
            if (st) break;
        }
        if (st) break;
    }
    if (st == FT_OK) st = ft_tok_wrap(t, pre, npre, suf, nsuf);
    free(pre);
    free(suf);
    return st;
}

/* ---- model ---- */
static ft_status ft_tok_parse_model(ft_tok *t, const cJSON *m) {
    const char *type = ft_json_str(m, "type");
    if (type && strcmp(type, "BPE") != 0) return FT_ERR(FT_E_UNSUPPORTED, "%s: model type %s is not supported (BPE only)", P, type);
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(m, "vocab"), *e;
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(m, "merges");
    if (!cJSON_IsObject(vocab)) return FT_ERR(FT_E_FORMAT, "%s: model.vocab is not an object", P);
    t->ignore_merges = ft_json_bool(m, "ignore_merges", 0);
    t->byte_fallback = ft_json_bool(m, "byte_fallback", 0);
    t->fuse_unk = ft_json_bool(m, "fuse_unk", 0);
    const char *pfx = ft_json_str(m, "continuing_subword_prefix"), *sfx = ft_json_str(m, "end_of_word_suffix");
    if (pfx && pfx[0]) FT_TRY(ft_tok_strdup(&t->cont_prefix, pfx, t->cont_prefix_len = (int64_t)strlen(pfx)));
    if (sfx && sfx[0]) FT_TRY(ft_tok_strdup(&t->eow_suffix, sfx, t->eow_suffix_len = (int64_t)strlen(sfx)));
    const cJSON *drop = cJSON_GetObjectItemCaseSensitive(m, "dropout");
    if (cJSON_IsNumber(drop) && drop->valuedouble > 0)
        return FT_ERR(FT_E_UNSUPPORTED, "%s: BPE dropout %g is not supported", P, drop->valuedouble);

    int64_t nv = cJSON_GetArraySize(vocab);
    FT_TRY(ft_tok_strmap_init(&t->vocab, nv));
    int32_t max_id = -1;
    cJSON_ArrayForEach(e, vocab) {
        if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble > INT32_MAX - 1)
            return FT_ERR(FT_E_FORMAT, "%s: vocab entry \"%s\" has no valid id", P, e->string);
        int32_t id = (int32_t)e->valuedouble;
        FT_TRY(ft_tok_strmap_put(&t->vocab, e->string, (int64_t)strlen(e->string), id));
        if (id > max_id) max_id = id;
    }
    t->n_ids = (int64_t)max_id + 1;
    const char *unk = ft_json_str(m, "unk_token");
    t->unk_id = unk ? ft_tok_strmap_get(&t->vocab, unk, (int64_t)strlen(unk)) : -1;
    if (unk && t->unk_id < 0) return FT_ERR(FT_E_FORMAT, "%s: unk_token \"%s\" is not in the vocab", P, unk);
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        t->byte_fallback_id[b] = ft_tok_strmap_get(&t->vocab, name, 6);
    }

    int64_t nm = cJSON_GetArraySize(merges);
    FT_TRY(ft_tok_pairmap_init(&t->merges, nm));
    ft_tok_buf cat = {0};
    int64_t rank = 0;
    ft_status st = FT_OK;
    cJSON_ArrayForEach(e, merges) {
        const char *a, *b;
        int64_t al, bl;
        if (cJSON_IsString(e)) {
            const char *sp = strchr(e->valuestring, ' ');
            if (!sp) {
                st = FT_ERR(FT_E_FORMAT, "%s: merge %lld \"%s\" is not \"a b\"", P, (long long)rank, e->valuestring);
                break;
            }
            a = e->valuestring;
            al = sp - a;
            b = sp + 1;
            bl = (int64_t)strlen(b);
        } else if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 && cJSON_IsString(e->child) &&
                   cJSON_IsString(e->child->next)) {
            a = e->child->valuestring;
            b = e->child->next->valuestring;
            al = (int64_t)strlen(a);
            bl = (int64_t)strlen(b);
        } else {
            st = FT_ERR(FT_E_FORMAT, "%s: merge %lld is neither \"a b\" nor [a, b]", P, (long long)rank);
            break;
        }
        int32_t ia = ft_tok_strmap_get(&t->vocab, a, al), ib = ft_tok_strmap_get(&t->vocab, b, bl);
        int64_t skip = t->cont_prefix_len <= bl ? t->cont_prefix_len : 0;
        cat.n = 0;
        if ((st = ft_tok_buf_put(&cat, a, al)) || (st = ft_tok_buf_put(&cat, b + skip, bl - skip))) break;
        int32_t in = ft_tok_strmap_get(&t->vocab, cat.p, cat.n);
        if (ia < 0 || ib < 0 || in < 0) {
            st = FT_ERR(FT_E_FORMAT, "%s: merge %lld (%.*s %.*s) uses a token that is not in the vocab", P,
                        (long long)rank, (int)al, a, (int)bl, b);
            break;
        }
        /* Later duplicates overwrite earlier ones, as HF's HashMap collect does. */
        if ((st = ft_tok_pairmap_put(&t->merges, ((uint64_t)(uint32_t)ia << 32) | (uint32_t)ib, (int32_t)rank, in)))
            break;
        rank++;
    }
    ft_tok_buf_free(&cat);
    return st;
}

/* Byte-level tokenizers run BPE on raw bytes: the vocab keys are mapped back through the
 * bytes_to_unicode table (keys with other characters can never be produced and are left out). */
static ft_status ft_tok_build_byte_map(ft_tok *t) {
    if (t->cont_prefix_len || t->eow_suffix_len)
        return FT_ERR(FT_E_UNSUPPORTED, "%s: continuing_subword_prefix/end_of_word_suffix with ByteLevel", P);
    int16_t inv[0x144];
    for (int i = 0; i < 0x144; i++) inv[i] = -1;
    uint32_t m[256];
    ft_tok_bytes_to_unicode(m);
    for (int b = 0; b < 256; b++) inv[m[b]] = (int16_t)b;
    FT_TRY(ft_tok_strmap_init(&t->model_map, t->vocab.n));
    ft_tok_buf raw = {0};
    ft_status st = FT_OK;
    for (int64_t e = 0; e < t->vocab.n && st == FT_OK; e++) {
        const ft_tok_strent *en = &t->vocab.ent[e];
        const uint8_t *s = (const uint8_t *)t->vocab.keys.p + en->off;
        raw.n = 0;
        int ok = 1;
        for (int64_t i = 0; i < en->len && ok;) {
            int n;
            int32_t cp = ft_utf8_decode(s + i, en->len - i, &n);
            if (cp < 0 || cp >= 0x144 || inv[cp] < 0) {
                ok = 0;
                break;
            }
            char c = (char)inv[cp];
            if ((st = ft_tok_buf_put(&raw, &c, 1))) break;
            i += n;
        }
        if (ok && st == FT_OK) st = ft_tok_strmap_put(&t->model_map, raw.p ? raw.p : "", raw.n, en->val);
    }
    ft_tok_buf_free(&raw);
    for (int b = 0; b < 256 && st == FT_OK; b++) {
        char c = (char)b;
        t->byte_unit[b] = ft_tok_strmap_get(&t->model_map, &c, 1);
    }
    return st;
}

static ft_status ft_tok_parse_added(ft_tok *t, const cJSON *arr) {
    int64_t n = cJSON_GetArraySize(arr);
    if (n == 0) return FT_OK;
    FT_TRY(ft_calloc((void **)&t->added, (size_t)n * sizeof *t->added, "added tokens"));
    const cJSON *e;
    cJSON_ArrayForEach(e, arr) {
        const char *c = ft_json_str(e, "content");
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(e, "id");
        if (!c || !cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble > INT32_MAX - 1)
            return FT_ERR(FT_E_FORMAT, "%s: added_tokens entry %lld lacks content or id", P, (long long)t->n_added);
        ft_tok_added *a = &t->added[t->n_added++];
        FT_TRY(ft_tok_strdup(&a->content, c, a->len = (int64_t)strlen(c)));
        a->special = (uint8_t)ft_json_bool(e, "special", 0);
        a->normalized = (uint8_t)ft_json_bool(e, "normalized", !a->special);
        a->single_word = (uint8_t)ft_json_bool(e, "single_word", 0);
        a->lstrip = (uint8_t)ft_json_bool(e, "lstrip", 0);
        a->rstrip = (uint8_t)ft_json_bool(e, "rstrip", 0);
        /* HF gives a token that the model vocab already has the model's id. */
        int32_t vid = ft_tok_strmap_get(&t->vocab, a->content, a->len);
        a->id = vid >= 0 ? vid : (int32_t)id->valuedouble;
        if (a->id >= t->n_ids) t->n_ids = (int64_t)a->id + 1;
    }
    return FT_OK;
}

/* Patterns: raw content for normalized=false; normalized content (through the normalizer
 * chain) for normalized=true. Special tokens first, then the others, as HF orders them. */
static ft_status ft_tok_build_tries(ft_tok *t) {
    ft_tok_state *st;
    FT_TRY(ft_tok_state_get(t, &st));
    ft_status s = FT_OK;
    for (int pass = 0; pass < 2 && s == FT_OK; pass++) {
        for (int64_t i = 0; i < t->n_added && s == FT_OK; i++) {
            ft_tok_added *a = &t->added[i];
            if ((pass == 0) != (a->special != 0)) continue;
            if (!a->normalized) {
                a->pattern = a->content;
                a->plen = a->len;
                s = ft_tok_trie_add(&t->trie_raw, a->content, a->len, (int32_t)i);
            } else {
                const char *o;
                int64_t ol;
                if ((s = ft_tok_normalize(t, st, a->content, a->len, &o, &ol))) break;
                if ((s = ft_tok_strdup(&a->pattern, o, ol))) break;
                a->plen = ol;
                s = ft_tok_trie_add(&t->trie_norm, a->pattern, a->plen, (int32_t)i);
            }
        }
    }
    ft_tok_state_put(t, st);
    return s;
}

/* id -> piece table over the vocab and the added tokens (added content wins, as in HF). */
static ft_status ft_tok_build_pieces(ft_tok *t) {
    FT_TRY(ft_malloc((void **)&t->piece_off, (size_t)t->n_ids * sizeof *t->piece_off, "token pieces"));
    FT_TRY(ft_malloc((void **)&t->added_of_id, (size_t)t->n_ids * sizeof *t->added_of_id, "token pieces"));
    for (int64_t i = 0; i < t->n_ids; i++) {
        t->piece_off[i] = -1;
        t->added_of_id[i] = -1;
    }
    for (int64_t e = 0; e < t->vocab.n; e++) {
        const ft_tok_strent *en = &t->vocab.ent[e];
        t->piece_off[en->val] = t->piece_store.n;
        FT_TRY(ft_tok_buf_put(&t->piece_store, t->vocab.keys.p + en->off, en->len));
        FT_TRY(ft_tok_buf_put(&t->piece_store, "", 1));
    }
    for (int64_t i = 0; i < t->n_added; i++) {
        const ft_tok_added *a = &t->added[i];
        if (t->added_of_id[a->id] >= 0) continue; /* first definition wins */
        t->added_of_id[a->id] = (int32_t)i;
        t->piece_off[a->id] = t->piece_store.n;
        FT_TRY(ft_tok_buf_put(&t->piece_store, a->content, a->len));
        FT_TRY(ft_tok_buf_put(&t->piece_store, "", 1));
    }
    return FT_OK;
}

ft_status ft_tok_parse_json(ft_tok *t, const char *json, int64_t len) {
    cJSON *root = NULL;
    FT_TRY(ft_json_parse(json, len, P, &root)); /* trailing data rejected; a repeated key: the last wins */
    ft_status st = ft_tok_parse_root(t, root);
    cJSON_Delete(root);
    return st;
}

ft_status ft_tok_parse_root(ft_tok *t, const cJSON *root) {
    ft_status st = FT_OK;
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *trunc = cJSON_GetObjectItemCaseSensitive(root, "truncation");
    const cJSON *pad = cJSON_GetObjectItemCaseSensitive(root, "padding");
    if (!cJSON_IsObject(model)) st = FT_ERR(FT_E_FORMAT, "%s: no \"model\" object", P);
    else if (trunc && !cJSON_IsNull(trunc)) st = FT_ERR(FT_E_UNSUPPORTED, "%s: truncation is set; only null is supported", P);
    else if (pad && !cJSON_IsNull(pad)) st = FT_ERR(FT_E_UNSUPPORTED, "%s: padding is set; only null is supported", P);
    if (st == FT_OK) st = ft_tok_parse_model(t, model);
    if (st == FT_OK) st = ft_tok_parse_norm(t, cJSON_GetObjectItemCaseSensitive(root, "normalizer"));
    if (st == FT_OK) st = ft_tok_parse_pre(t, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"));
    if (st == FT_OK) st = ft_tok_parse_post(t, cJSON_GetObjectItemCaseSensitive(root, "post_processor"));
    if (st == FT_OK) st = ft_tok_parse_dec(t, cJSON_GetObjectItemCaseSensitive(root, "decoder"));
    if (st == FT_OK) st = ft_tok_parse_added(t, cJSON_GetObjectItemCaseSensitive(root, "added_tokens"));
    if (st == FT_OK && t->byte_level) st = ft_tok_build_byte_map(t);
    if (st == FT_OK) st = ft_tok_build_tries(t);
    if (st == FT_OK) st = ft_tok_build_pieces(t);
    return st;
}

void ft_tok_free_parts(ft_tok *t) {
    ft_tok_strmap_free(&t->vocab);
    ft_tok_strmap_free(&t->model_map);
    ft_tok_pairmap_free(&t->merges);
    free(t->cont_prefix);
    free(t->eow_suffix);
    free(t->piece_off);
    free(t->added_of_id);
    ft_tok_buf_free(&t->piece_store);
    for (int64_t i = 0; i < t->n_added; i++) {
        if (t->added[i].pattern != t->added[i].content) free(t->added[i].pattern);
        free(t->added[i].content);
    }
    free(t->added);
    ft_tok_trie_free(&t->trie_raw);
    ft_tok_trie_free(&t->trie_norm);
    for (int i = 0; i < t->n_norm; i++) {
        free(t->norm[i].a);
        free(t->norm[i].b);
        if (t->norm[i].re) pcre2_code_free(t->norm[i].re);
    }
    free(t->norm);
    for (int i = 0; i < t->n_pre; i++)
        if (t->pre[i].re) pcre2_code_free(t->pre[i].re);
    free(t->pre);
    for (int i = 0; i < t->n_dec; i++) {
        free(t->dec[i].a);
        free(t->dec[i].b);
    }
    free(t->dec);
    free(t->tmpl_prefix);
    free(t->tmpl_suffix);
}
