/* tokenizer_encode.c: text -> ids, in HF `tokenizers` order:
 *   1. repair invalid UTF-8 (U+FFFD per maximal invalid subpart);
 *   2. split out added tokens whose `normalized` is false, on the raw text (leftmost-longest,
 *      then single_word / lstrip / rstrip exactly as AddedVocabulary::find_matches);
 *   3. per remaining section: normalizer chain, then split out `normalized` added tokens;
 *   4. per remaining section: pre-tokenizer steps, then BPE per pre-token;
 *   5. with add_special, the single-sequence template around the result.
 * All scratch comes from a state borrowed from the tokenizer's pool. */
#include <stdlib.h>

#include "data/tokenizer_impl.h"
#include "data/unicode.h"

/* ---- normalizers ---- */

static int64_t ft_find_bytes(const char *h, int64_t hn, const char *n, int64_t nn) {
    if (nn == 0 || nn > hn) return -1;
    const char *p = h, *end = h + hn - nn + 1;
    while (p < end) {
        p = memchr(p, n[0], (size_t)(end - p));
        if (!p) return -1;
        if (memcmp(p, n, (size_t)nn) == 0) return p - h;
        p++;
    }
    return -1;
}

static ft_status ft_norm_replace(ft_tok_state *st, const ft_tok_norm *nm, const char *s, int64_t n, ft_tok_buf *ob) {
    if (nm->literal) {
        int64_t pos = 0;
        for (;;) {
            int64_t k = ft_find_bytes(s + pos, n - pos, nm->a, nm->alen);
            if (k < 0) break;
            FT_TRY(ft_tok_buf_put(ob, s + pos, k));
            FT_TRY(ft_tok_buf_put(ob, nm->b, nm->blen));
            pos += k + nm->alen;
        }
        return ft_tok_buf_put(ob, s + pos, n - pos);
    }
    FT_TRY(ft_pretok_find(st, nm->re, s, n));
    for (int64_t i = 0; i < st->seg.n; i++) {
        const ft_tok_span *g = &st->seg.v[i];
        if (g->first) FT_TRY(ft_tok_buf_put(ob, nm->b, nm->blen));
        else FT_TRY(ft_tok_buf_put(ob, s + g->off, g->len));
    }
    return FT_OK;
}

ft_status ft_tok_normalize(const ft_tok *t, ft_tok_state *st, const char *s, int64_t len, const char **out,
                           int64_t *out_len) {
    const char *cur = s;
    int64_t n = len;
    int pb = 0;
    for (int k = 0; k < t->n_norm; k++) {
        const ft_tok_norm *nm = &t->norm[k];
        ft_tok_buf *ob = &st->norm[pb];
        ob->n = 0;
        switch (nm->kind) {
        case FT_NORM_NF: {
            if (ft_uni_quick_stable((ft_norm_form)nm->form, cur, n)) continue;
            char *o;
            int64_t on;
            FT_TRY(ft_uni_normalize((ft_norm_form)nm->form, cur, n, &o, &on));
            ft_status st2 = ft_tok_buf_put(ob, o, on);
            free(o);
            FT_TRY(st2);
            break;
        }
        case FT_NORM_LOWER: {
            char *o;
            int64_t on;
            FT_TRY(ft_uni_lowercase(cur, n, &o, &on));
            ft_status st2 = ft_tok_buf_put(ob, o, on);
            free(o);
            FT_TRY(st2);
            break;
        }
        case FT_NORM_PREPEND:
            if (n == 0) continue;
            FT_TRY(ft_tok_buf_put(ob, nm->a, nm->alen));
            FT_TRY(ft_tok_buf_put(ob, cur, n));
            break;
        case FT_NORM_REPLACE:
            if (!nm->re || (nm->literal && ft_find_bytes(cur, n, nm->a, nm->alen) < 0)) continue;
            FT_TRY(ft_norm_replace(st, nm, cur, n, ob));
            break;
        case FT_NORM_STRIP: {
            int64_t a = 0, b = n;
            if (nm->left) {
                while (a < b) {
                    int cl;
                    int32_t cp = ft_utf8_decode((const uint8_t *)cur + a, b - a, &cl);
                    if (cp < 0 || !ft_uni_is_space((uint32_t)cp)) break;
                    a += cl;
                }
            }
            if (nm->right) {
                while (b > a) {
                    int64_t q = b - 1;
                    while (q > a && ((uint8_t)cur[q] & 0xC0) == 0x80) q--;
                    int cl;
                    int32_t cp = ft_utf8_decode((const uint8_t *)cur + q, b - q, &cl);
                    if (cp < 0 || !ft_uni_is_space((uint32_t)cp)) break;
                    b = q;
                }
            }
            FT_TRY(ft_tok_buf_put(ob, cur + a, b - a));
            break;
        }
        }
        cur = ob->p ? ob->p : "";
        n = ob->n;
        pb ^= 1;
    }
    *out = cur;
    *out_len = n;
    return FT_OK;
}

/* ---- added tokens ---- */

/* Longest pattern of the trie starting at s[pos]; returns its length (0: none). */
static int64_t ft_trie_longest(const ft_tok_trie *tr, const char *s, int64_t len, int64_t pos, int32_t *idx) {
    int32_t node = 0;
    int64_t best = 0;
    for (int64_t i = pos; i < len; i++) {
        const ft_tok_pairslot *e = ft_tok_pairmap_get(&tr->edges, ((uint64_t)node << 8) | (uint8_t)s[i]);
        if (!e) break;
        node = e->a;
        if (tr->term[node] >= 0) {
            best = i + 1 - pos;
            *idx = tr->term[node];
        }
    }
    return best;
}

static int32_t ft_last_cp(const char *s, int64_t end) {
    int64_t q = end - 1;
    while (q > 0 && ((uint8_t)s[q] & 0xC0) == 0x80) q--;
    int n;
    return ft_utf8_decode((const uint8_t *)s + q, end - q, &n);
}

/* AddedVocabulary::find_matches: sections covering s, tokens with first = added index. */
static ft_status ft_added_split(const ft_tok *t, const ft_tok_trie *tr, const char *s, int64_t len, ft_tok_spans *out) {
    out->n = 0;
    int64_t start_offset = 0, pos = 0;
    while (pos < len) {
        /* next leftmost match */
        int64_t a = pos, mlen = 0;
        int32_t idx = -1;
        for (; a < len; a++) {
            if (!tr->first[(uint8_t)s[a]]) continue;
            if ((mlen = ft_trie_longest(tr, s, len, a, &idx)) > 0) break;
        }
        if (mlen == 0) break;
        int64_t start = a, stop = a + mlen;
        pos = stop; /* the automaton resumes after the match, kept or not */
        const ft_tok_added *ad = &t->added[idx];
        if (ad->single_word) {
            int n;
            int start_space = start == 0 || !ft_uni_is_word((uint32_t)ft_last_cp(s, start));
            int stop_space = stop == len || !ft_uni_is_word((uint32_t)ft_utf8_decode((const uint8_t *)s + stop, len - stop, &n));
            if (!start_space || !stop_space) continue;
        }
        if (ad->lstrip) {
            int64_t ns = start;
            while (ns > 0) {
                int64_t q = ns - 1;
                while (q > 0 && ((uint8_t)s[q] & 0xC0) == 0x80) q--;
                int n;
                int32_t cp = ft_utf8_decode((const uint8_t *)s + q, ns - q, &n);
                if (cp < 0 || !ft_uni_is_space((uint32_t)cp)) break;
                ns = q;
            }
            start = ns > start_offset ? ns : start_offset;
        }
        if (ad->rstrip) {
            while (stop < len) {
                int n;
                int32_t cp = ft_utf8_decode((const uint8_t *)s + stop, len - stop, &n);
                if (cp < 0 || !ft_uni_is_space((uint32_t)cp)) break;
                stop += n;
            }
        }
        if (start_offset < start) FT_TRY(ft_tok_spans_push(out, start_offset, start - start_offset, -1));
        FT_TRY(ft_tok_spans_push(out, start, stop - start, idx));
        start_offset = stop;
    }
    if (start_offset != len) FT_TRY(ft_tok_spans_push(out, start_offset, len - start_offset, -1));
    return FT_OK;
}

/* ---- pipeline ---- */

static ft_status ft_encode_pretok(const ft_tok *t, ft_tok_state *st, const char *s, int64_t n, int at_start,
                                  ft_tok_ids *v) {
    if (n == 0) return FT_OK;
    const char *buf;
    const ft_tok_spans *pieces;
    FT_TRY(ft_pretok_run(t, st, s, n, at_start, &buf, &pieces));
    for (int64_t i = 0; i < pieces->n; i++) FT_TRY(ft_tok_bpe(t, st, buf + pieces->v[i].off, pieces->v[i].len, v));
    return FT_OK;
}

static ft_status ft_encode_section(const ft_tok *t, ft_tok_state *st, const char *s, int64_t n, int at_start,
                                   ft_tok_ids *v) {
    if (n == 0) return FT_OK;
    const char *ns;
    int64_t nn;
    FT_TRY(ft_tok_normalize(t, st, s, n, &ns, &nn));
    if (t->trie_norm.n_patterns == 0) return ft_encode_pretok(t, st, ns, nn, at_start, v);
    FT_TRY(ft_added_split(t, &t->trie_norm, ns, nn, &st->sect2));
    for (int64_t i = 0; i < st->sect2.n; i++) {
        const ft_tok_span *sp = &st->sect2.v[i];
        if (sp->first >= 0) FT_TRY(ft_tok_ids_push(v, t->added[sp->first].id));
        else FT_TRY(ft_encode_pretok(t, st, ns + sp->off, sp->len, at_start && sp->off == 0, v));
    }
    return FT_OK;
}

static ft_status ft_encode_with(const ft_tok *t, ft_tok_state *st, const char *text, int64_t len, int add_special,
                                int at_start, ft_tok_ids *v) {
    if (add_special)
        for (int i = 0; i < t->n_prefix; i++) FT_TRY(ft_tok_ids_push(v, t->tmpl_prefix[i]));
    if (t->trie_raw.n_patterns == 0) {
        FT_TRY(ft_encode_section(t, st, text, len, at_start, v));
    } else {
        FT_TRY(ft_added_split(t, &t->trie_raw, text, len, &st->sect));
        /* sect is not touched below (normalized matches use sect2). */
        for (int64_t i = 0; i < st->sect.n; i++) {
            const ft_tok_span sp = st->sect.v[i];
            if (sp.first >= 0) FT_TRY(ft_tok_ids_push(v, t->added[sp.first].id));
            else FT_TRY(ft_encode_section(t, st, text + sp.off, sp.len, at_start && sp.off == 0, v));
        }
    }
    if (add_special)
        for (int i = 0; i < t->n_suffix; i++) FT_TRY(ft_tok_ids_push(v, t->tmpl_suffix[i]));
    return FT_OK;
}

static ft_status ft_encode_append(const ft_tok *t, const char *text, int64_t len, int add_special, int at_start,
                                  ft_tok_ids *v) {
    if (len < 0) len = (int64_t)strlen(text);
    char *fixed = NULL;
    if (!ft_utf8_valid(text, len)) {
        int64_t fl;
        FT_TRY(ft_utf8_lossy(text, len, &fixed, &fl));
        text = fixed;
        len = fl;
    }
    ft_tok_state *st;
    ft_status s = ft_tok_state_get(t, &st);
    if (s == FT_OK) {
        int64_t n0 = v->n;
        s = ft_encode_with(t, st, text, len, add_special, at_start, v);
        if (s != FT_OK) v->n = n0;
        ft_tok_state_put(t, st);
    }
    free(fixed);
    return s;
}

ft_status ft_tok_encode_append(const ft_tok *t, const char *text, int64_t len, int add_special, ft_tok_ids *v) {
    return ft_encode_append(t, text, len, add_special, 1, v);
}

ft_status ft_tok_encode_run(const ft_tok *t, const char *text, int64_t len, int at_start, ft_tok_ids *v) {
    return ft_encode_append(t, text, len, 0, at_start, v);
}

ft_status ft_tok_encode(const ft_tok *t, const char *text, int64_t len, int add_special, int32_t **ids, int64_t *n) {
    ft_tok_ids v = {0};
    ft_status s = ft_tok_encode_append(t, text, len, add_special, &v);
    if (s != FT_OK) {
        ft_tok_ids_free(&v);
        *ids = NULL;
        *n = 0;
        return s;
    }
    if (!v.ids) { /* empty result: still hand back a freeable pointer */
        v.ids = malloc(sizeof(int32_t));
        if (!v.ids) return FT_ERR(FT_E_OOM, "out of memory");
    }
    *ids = v.ids;
    *n = v.n;
    return FT_OK;
}
