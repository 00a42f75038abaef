/* tokenizer_vocab.c: ft_tok from llama.cpp's GGUF tokenizer metadata (see ft_tok_load_vocab in
 * tokenizer.h). The tokenizer.json document the GGUF was converted from is rebuilt as a cJSON tree
 * and handed to the one tokenizer.json loader (tokenizer_load.c), so a GGUF tokenizer runs exactly
 * the code, and refuses exactly what, a tokenizer.json does; only what a GGUF cannot express in
 * tokenizer.json terms (special ids, add_bos/add_eos, the chat template) is set here directly.
 *
 * The pipeline of each kind is what transformers writes: byte-level BPE per the family table of
 * data/tokenizer_pre.h; SentencePiece BPE as LlamaConverter's legacy form (convert_slow_tokenizer.py),
 * because that is how llama.cpp tokenizes a "llama" vocabulary (a space before the text and after
 * every special token) and so how the model was trained. A SentencePiece GGUF normally carries
 * scores, not merges: the merges are recovered as transformers' generate_merges does (every split
 * of every token into two tokens, ranked by the token's score, then the longer left and right
 * parts first), which reproduces sentencepiece's highest-score-first merging, including Llama 2's
 * whitespace-run pieces ("▁▁", score -1e9) that merges ranked by id (Llama 2's own tokenizer.json)
 * apply too early: llama.cpp's llama-spm vectors pass 46/46 here, 36/46 with that tokenizer.json. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>

#include "data/tokenizer_impl.h"
#include "data/tokenizer_pre.h"
#include "kernels/log.h"
#include "kernels/mem.h"

#define FT_SPM_SPACE "\xE2\x96\x81" /* U+2581, SentencePiece's space */

static int32_t ft_vocab_type(const ft_tok_vocab *v, int64_t i) {
    return v->types ? v->types[i] : FT_TOK_TYPE_NORMAL;
}

/* "[PADi]" at id i with type UNUSED (UNKNOWN in older converts): a filler convert_hf_to_gguf.py
 * appended up to the embedding rows; the tokenizer.json it came from had no such id. */
static int ft_vocab_is_filler(const ft_tok_vocab *v, int64_t i) {
    int32_t ty = ft_vocab_type(v, i);
    if (ty != FT_TOK_TYPE_UNUSED && ty != FT_TOK_TYPE_UNKNOWN) return 0;
    char want[40];
    snprintf(want, sizeof want, "[PAD%lld]", (long long)i);
    return strcmp(v->tokens[i], want) == 0;
}

/* Whether token i is in model.vocab: SentencePiece keeps every piece there (Llama 2's tokenizer.json
 * has <unk>, <s>, </s> in both), byte-level BPE only the regular tokens (added tokens live in
 * added_tokens alone, as in Llama 3's and Qwen's tokenizer.json). */
static int ft_vocab_in_model(const ft_tok_vocab *v, int64_t i, int spm) {
    if (!v->tokens[i][0] || ft_vocab_is_filler(v, i)) return 0;
    if (spm) return 1;
    int32_t ty = ft_vocab_type(v, i);
    return ty != FT_TOK_TYPE_CONTROL && ty != FT_TOK_TYPE_USER_DEFINED && ty != FT_TOK_TYPE_UNKNOWN;
}

/* ---- merges recovered from SentencePiece scores (transformers generate_merges) ---- */

typedef struct {
    float score;       /* score of the merged token */
    int32_t lenl, lenr; /* code points of the parts */
    int32_t l, r;      /* part ids */
    int64_t seq;       /* generation order: token id, then (l id, r id) */
} ft_spm_merge;

static int ft_spm_merge_cmp(const void *pa, const void *pb) {
    const ft_spm_merge *a = pa, *b = pb;
    /* sorted(key=(score, len(l), len(r)), reverse=True) is stable: ties keep generation order */
    if (a->score != b->score) return a->score > b->score ? -1 : 1;
    if (a->lenl != b->lenl) return a->lenl > b->lenl ? -1 : 1;
    if (a->lenr != b->lenr) return a->lenr > b->lenr ? -1 : 1;
    return (a->seq > b->seq) - (a->seq < b->seq);
}

static int ft_spm_local_cmp(const void *pa, const void *pb) {
    const ft_spm_merge *a = pa, *b = pb;
    if (a->l != b->l) return a->l < b->l ? -1 : 1;
    return (a->r > b->r) - (a->r < b->r);
}

static int32_t ft_utf8_count(const char *s, int64_t n) {
    int32_t c = 0;
    for (int64_t i = 0; i < n; i++) c += ((uint8_t)s[i] & 0xC0) != 0x80;
    return c;
}

/* Appends the derived merges as [left, right] pairs to arr. vocab maps text -> id (last id of a
 * repeated text, as Python's dict comprehension keeps). */
static ft_status ft_spm_derive_merges(const ft_tok_vocab *v, const ft_tok_strmap *vocab, cJSON *arr) {
    ft_spm_merge *m = NULL;
    int64_t n = 0, cap = 0;
    ft_status st = FT_OK;
    for (int64_t i = 0; i < v->n_tokens && st == FT_OK; i++) {
        const char *tok = v->tokens[i];
        int64_t len = (int64_t)strlen(tok);
        if (ft_tok_strmap_get(vocab, tok, len) != (int32_t)i) continue; /* not in the vocab, or a repeat */
        float score = v->scores ? v->scores[i] : 0.0f;
        int64_t first = n;
        for (int64_t k = 1; k < len; k++) {
            if (((uint8_t)tok[k] & 0xC0) == 0x80) continue; /* split between code points only */
            int32_t l = ft_tok_strmap_get(vocab, tok, k), r = ft_tok_strmap_get(vocab, tok + k, len - k);
            if (l < 0 || r < 0) continue;
            if (n == cap) {
                int64_t nc = cap ? cap * 2 : 65536;
                ft_spm_merge *nm = realloc(m, (size_t)nc * sizeof *nm);
                if (!nm) {
                    st = FT_ERR(FT_E_OOM, "%s: out of memory deriving merges", v->path);
                    break;
                }
                m = nm, cap = nc;
            }
            m[n++] = (ft_spm_merge){score, ft_utf8_count(tok, k), ft_utf8_count(tok + k, len - k), l, r, 0};
        }
        if (st != FT_OK) break;
        if (n - first > 1) qsort(m + first, (size_t)(n - first), sizeof *m, ft_spm_local_cmp);
        for (int64_t j = first; j < n; j++) m[j].seq = j;
    }
    if (st == FT_OK && n) qsort(m, (size_t)n, sizeof *m, ft_spm_merge_cmp);
    for (int64_t j = 0; j < n && st == FT_OK; j++) {
        const char *pair[2] = {v->tokens[m[j].l], v->tokens[m[j].r]};
        cJSON *p = cJSON_CreateStringArray(pair, 2);
        if (!p || !cJSON_AddItemToArray(arr, p)) {
            cJSON_Delete(p);
            st = FT_ERR(FT_E_OOM, "%s: out of memory deriving merges", v->path);
        }
    }
    free(m);
    return st;
}

/* ---- the tokenizer.json document ---- */

static ft_status ft_oom(const ft_tok_vocab *v) {
    return FT_ERR(FT_E_OOM, "%s: out of memory building the tokenizer", v->path);
}

/* {"type": type} added to parent (an array, or an object under key). NULL when out of memory. */
static cJSON *ft_step(cJSON *parent, const char *key, const char *type) {
    cJSON *o = cJSON_CreateObject();
    if (!o || !cJSON_AddStringToObject(o, "type", type)) {
        cJSON_Delete(o);
        return NULL;
    }
    int ok = key ? cJSON_AddItemToObject(parent, key, o) : cJSON_AddItemToArray(parent, o);
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

/* {"type": ..., "pattern": {"String": pat}, "content": content} into arr (Replace steps). */
static int ft_replace_step(cJSON *arr, const char *pat, const char *content) {
    cJSON *r = ft_step(arr, NULL, "Replace");
    cJSON *p = r ? cJSON_AddObjectToObject(r, "pattern") : NULL;
    return p && cJSON_AddStringToObject(p, "String", pat) && cJSON_AddStringToObject(r, "content", content);
}

/* normalizer, pre_tokenizer and decoder of the family. */
static ft_status ft_vocab_pipeline(const ft_tok_vocab *v, cJSON *root, int spm, const ft_tok_pre_info *pre) {
    int ok = 1;
    if (spm) {
        /* LlamaConverter, legacy: normalizer Sequence[Prepend, Replace], no pre-tokenizer, and a
         * decoder that drops the one leading space the Prepend added */
        int prefix = v->add_space_prefix != 0;
        cJSON *n = ft_step(root, "normalizer", "Sequence");
        cJSON *nl = n ? cJSON_AddArrayToObject(n, "normalizers") : NULL;
        ok = nl != NULL;
        if (ok && prefix) {
            cJSON *p = ft_step(nl, NULL, "Prepend");
            ok = p && cJSON_AddStringToObject(p, "prepend", FT_SPM_SPACE);
        }
        ok = ok && ft_replace_step(nl, " ", FT_SPM_SPACE);
        ok = ok && cJSON_AddNullToObject(root, "pre_tokenizer");
        cJSON *d = ok ? ft_step(root, "decoder", "Sequence") : NULL;
        cJSON *dl = d ? cJSON_AddArrayToObject(d, "decoders") : NULL;
        ok = dl && ft_replace_step(dl, FT_SPM_SPACE, " ") && ft_step(dl, NULL, "ByteFallback") &&
             ft_step(dl, NULL, "Fuse");
        if (ok && prefix) {
            cJSON *s = ft_step(dl, NULL, "Strip");
            ok = s && cJSON_AddStringToObject(s, "content", " ") && cJSON_AddNumberToObject(s, "start", 1) &&
                 cJSON_AddNumberToObject(s, "stop", 0);
        }
        return ok ? FT_OK : ft_oom(v);
    }
    if (pre->nfc) ok = ft_step(root, "normalizer", "NFC") != NULL;
    else ok = cJSON_AddNullToObject(root, "normalizer") != NULL;
    cJSON *bl = NULL;
    if (ok && pre->regex) {
        cJSON *seq = ft_step(root, "pre_tokenizer", "Sequence");
        cJSON *list = seq ? cJSON_AddArrayToObject(seq, "pretokenizers") : NULL;
        cJSON *split = list ? ft_step(list, NULL, "Split") : NULL;
        cJSON *pat = split ? cJSON_AddObjectToObject(split, "pattern") : NULL;
        ok = pat && cJSON_AddStringToObject(pat, "Regex", pre->regex) &&
             cJSON_AddStringToObject(split, "behavior", "Isolated") && cJSON_AddFalseToObject(split, "invert");
        bl = ok ? ft_step(list, NULL, "ByteLevel") : NULL;
    } else if (ok) {
        bl = ft_step(root, "pre_tokenizer", "ByteLevel"); /* GPT-2: ByteLevel's own split */
    }
    ok = bl && cJSON_AddFalseToObject(bl, "add_prefix_space") && cJSON_AddTrueToObject(bl, "trim_offsets") &&
         cJSON_AddBoolToObject(bl, "use_regex", pre->regex == NULL);
    ok = ok && ft_step(root, "decoder", "ByteLevel");
    return ok ? FT_OK : ft_oom(v);
}

/* model: BPE with vocab and merges (given, or derived for SentencePiece). */
static ft_status ft_vocab_model(const ft_tok_vocab *v, cJSON *root, int spm, const ft_tok_pre_info *pre,
                                int32_t unk_id) {
    cJSON *m = ft_step(root, "model", "BPE");
    if (!m) return ft_oom(v);
    int has_unk = unk_id >= 0 && ft_vocab_in_model(v, unk_id, spm);
    int ok = cJSON_AddNullToObject(m, "dropout") &&
             (has_unk ? cJSON_AddStringToObject(m, "unk_token", v->tokens[unk_id]) != NULL
                      : cJSON_AddNullToObject(m, "unk_token") != NULL) &&
             cJSON_AddBoolToObject(m, "fuse_unk", spm) && cJSON_AddBoolToObject(m, "byte_fallback", spm) &&
             cJSON_AddBoolToObject(m, "ignore_merges", !spm && pre->ignore_merges);
    cJSON *vocab = ok ? cJSON_AddObjectToObject(m, "vocab") : NULL;
    cJSON *merges = vocab ? cJSON_AddArrayToObject(m, "merges") : NULL;
    if (!merges) return ft_oom(v);
    ft_tok_strmap map = {0};
    ft_status st = ft_tok_strmap_init(&map, v->n_tokens);
    for (int64_t i = 0; i < v->n_tokens && st == FT_OK; i++) {
        if (!ft_vocab_in_model(v, i, spm)) continue;
        int64_t len = (int64_t)strlen(v->tokens[i]);
        /* a repeated text: the last id wins, as in the dict transformers builds (rare: the linear
         * detach is fine) */
        if (ft_tok_strmap_get(&map, v->tokens[i], len) >= 0)
            cJSON_Delete(cJSON_DetachItemFromObjectCaseSensitive(vocab, v->tokens[i]));
        if (!cJSON_AddNumberToObject(vocab, v->tokens[i], (double)i)) st = ft_oom(v);
        else st = ft_tok_strmap_put(&map, v->tokens[i], len, (int32_t)i);
    }
    if (st == FT_OK && v->n_merges > 0) {
        for (int64_t i = 0; i < v->n_merges && st == FT_OK; i++) {
            const char *s = v->merges[i];
            /* llama.cpp splits at the first space at index >= 1; the tokenizer.json string form splits
             * at the first space, so a part that starts with a space goes as a pair */
            const char *sp = s[0] ? strchr(s + 1, ' ') : NULL;
            if (!sp) {
                st = FT_ERR(FT_E_FORMAT, "%s: tokenizer.ggml.merges[%lld] \"%s\" is not \"left right\"", v->path,
                            (long long)i, s);
                break;
            }
            cJSON *e;
            if (s[0] != ' ') {
                e = cJSON_CreateString(s);
            } else {
                char *l = NULL;
                if ((st = ft_malloc((void **)&l, (size_t)(sp - s) + 1, "merge"))) break;
                memcpy(l, s, (size_t)(sp - s));
                l[sp - s] = 0;
                const char *pair[2] = {l, sp + 1};
                e = cJSON_CreateStringArray(pair, 2);
                free(l);
            }
            if (!e || !cJSON_AddItemToArray(merges, e)) {
                cJSON_Delete(e);
                st = ft_oom(v);
            }
        }
    } else if (st == FT_OK && spm) {
        st = ft_spm_derive_merges(v, &map, merges);
    } else if (st == FT_OK) {
        /* llama.cpp: "cannot find tokenizer merges in model file" */
        st = FT_ERR(FT_E_FORMAT, "%s: a gpt2 (byte-level BPE) vocabulary without merges", v->path);
    }
    ft_tok_strmap_free(&map);
    return st;
}

/* added_tokens: CONTROL and UNKNOWN special, USER_DEFINED not; all matched on the raw text. */
static ft_status ft_vocab_added(const ft_tok_vocab *v, cJSON *root) {
    cJSON *arr = cJSON_AddArrayToObject(root, "added_tokens");
    if (!arr) return ft_oom(v);
    for (int64_t i = 0; i < v->n_tokens; i++) {
        int32_t ty = ft_vocab_type(v, i);
        if ((ty != FT_TOK_TYPE_CONTROL && ty != FT_TOK_TYPE_UNKNOWN && ty != FT_TOK_TYPE_USER_DEFINED) ||
            !v->tokens[i][0] || ft_vocab_is_filler(v, i))
            continue;
        cJSON *a = cJSON_CreateObject();
        int ok = a && cJSON_AddItemToArray(arr, a);
        if (!ok) cJSON_Delete(a);
        ok = ok && cJSON_AddNumberToObject(a, "id", (double)i) && cJSON_AddStringToObject(a, "content", v->tokens[i]) &&
             cJSON_AddFalseToObject(a, "single_word") && cJSON_AddFalseToObject(a, "lstrip") &&
             cJSON_AddFalseToObject(a, "rstrip") && cJSON_AddFalseToObject(a, "normalized") &&
             cJSON_AddBoolToObject(a, "special", ty != FT_TOK_TYPE_USER_DEFINED);
        if (!ok) return ft_oom(v);
    }
    return FT_OK;
}

/* A special id from the GGUF, checked against the vocabulary (llama.cpp ignores one past it). */
static int32_t ft_vocab_special(const ft_tok_vocab *v, int32_t id, int32_t dflt, const char *what) {
    if (id < 0) id = dflt < v->n_tokens ? dflt : -1;
    if (id >= v->n_tokens) {
        ft_warn("%s: %s %d is outside the %lld-token vocabulary; ignored", v->path, what, id, (long long)v->n_tokens);
        return -1;
    }
    return id;
}

ft_status ft_tok_load_vocab(ft_tok **out, const ft_tok_vocab *v) {
    *out = NULL;
    const char *path = v->path ? v->path : "(GGUF vocabulary)";
    if (!v->model) return FT_ERR(FT_E_FORMAT, "%s: no tokenizer model", path);
    int spm = strcmp(v->model, "llama") == 0;
    if (!spm && strcmp(v->model, "gpt2") != 0)
        return FT_ERR(FT_E_UNSUPPORTED, "%s: tokenizer model \"%s\" is not supported (gpt2 and llama only)", path,
                      v->model);
    const char *pre_name = v->pre ? v->pre : "default";
    const ft_tok_pre_info *pre = spm ? ft_tok_pre_find("default") : ft_tok_pre_find(pre_name);
    if (!pre)
        return FT_ERR(FT_E_UNSUPPORTED,
                      "%s: pre-tokenizer \"%s\" is not supported (llama-bpe, qwen2, tekken and default/gpt-2 are): "
                      "encoding with a different split would not match the model's training",
                      path, pre_name);
    if (v->n_tokens <= 0 || v->n_tokens > INT32_MAX - 1 || !v->tokens)
        return FT_ERR(FT_E_FORMAT, "%s: a vocabulary of %lld tokens (1 to 2^31-2 needed)", path, (long long)v->n_tokens);
    for (int64_t i = 0; i < v->n_tokens; i++)
        if (!v->tokens[i]) return FT_ERR(FT_E_FORMAT, "%s: token %lld has no text", path, (long long)i);
    ft_tok_vocab src = *v;
    src.path = path;
    v = &src;

    /* llama.cpp's defaults for a SentencePiece vocabulary without the keys: bos 1, eos 2, unk 0 */
    int32_t bos = ft_vocab_special(v, v->bos_id, spm ? 1 : -1, "bos_token_id");
    int32_t eos = ft_vocab_special(v, v->eos_id, spm ? 2 : -1, "eos_token_id");
    int32_t unk = ft_vocab_special(v, v->unk_id, spm ? 0 : -1, "unknown_token_id");
    int32_t pad = ft_vocab_special(v, v->pad_id, -1, "padding_token_id");
    if (spm && unk < 0)
        for (int64_t i = 0; i < v->n_tokens && unk < 0; i++)
            if (ft_vocab_type(v, i) == FT_TOK_TYPE_UNKNOWN && !ft_vocab_is_filler(v, i)) unk = (int32_t)i;

    cJSON *root = cJSON_CreateObject();
    /* no post_processor: BOS/EOS are set below from the GGUF's flags, as the config would */
    int ok = root && cJSON_AddStringToObject(root, "version", "1.0") && cJSON_AddNullToObject(root, "truncation") &&
             cJSON_AddNullToObject(root, "padding") && cJSON_AddNullToObject(root, "post_processor");
    ft_status st = ok ? FT_OK : ft_oom(v);
    if (st == FT_OK) st = ft_vocab_added(v, root);
    if (st == FT_OK) st = ft_vocab_pipeline(v, root, spm, pre);
    if (st == FT_OK) st = ft_vocab_model(v, root, spm, pre, unk);
    ft_tok *t = NULL;
    if (st == FT_OK) st = ft_tok_new(&t, path);
    if (st == FT_OK) st = ft_tok_parse_root(t, root);
    cJSON_Delete(root);

    if (st == FT_OK) {
        t->bos_id = bos, t->eos_id = eos, t->pad_id = pad, t->cfg_unk_id = unk;
        /* the single-sequence template: BOS / EOS as llama.cpp adds them (its defaults when the keys
         * are absent: SentencePiece adds BOS; byte-level per the pre-tokenizer family) */
        int add_bos = v->add_bos >= 0 ? v->add_bos : (spm ? 1 : pre->add_bos);
        int add_eos = v->add_eos >= 0 ? v->add_eos : 0;
        if (add_bos && bos >= 0 && (st = ft_malloc((void **)&t->tmpl_prefix, sizeof(int32_t), "template")) == FT_OK)
            t->tmpl_prefix[t->n_prefix++] = bos;
        if (st == FT_OK && add_eos && eos >= 0 &&
            (st = ft_malloc((void **)&t->tmpl_suffix, sizeof(int32_t), "template")) == FT_OK)
            t->tmpl_suffix[t->n_suffix++] = eos;
    }
    if (st == FT_OK && v->chat_template) {
        size_t n = strlen(v->chat_template);
        if ((st = ft_malloc((void **)&t->chat_template, n + 1, "chat template")) == FT_OK)
            memcpy(t->chat_template, v->chat_template, n + 1);
    }
    if (st != FT_OK) {
        ft_tok_free(t);
        return st;
    }
    *out = t;
    return FT_OK;
}
