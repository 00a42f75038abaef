/* pretokenize.c: the pre-tokenizer steps of a tokenizer.json, run over one section of
 * normalized text, with HF `tokenizers` semantics:
 *   - a Split finds matches like Oniguruma's find_iter (an empty match right after the previous
 *     match is skipped), turns them into (segment, is_match) runs covering the text, merges them
 *     per behaviour (Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous; invert
 *     flips is_match) and drops empty pieces;
 *   - ByteLevel adds a prefix space (add_prefix_space) and splits with the GPT-2 regex
 *     (use_regex); its byte -> char mapping is not done here because BPE runs on raw bytes;
 *   - Metaspace replaces ' ' with the replacement, prepends it (always / first piece of the
 *     input / never, unless the piece already starts with it) and splits MergedWithNext;
 *   - Digits isolates numeric characters (one by one, or contiguous runs).
 * Pieces are spans into either the caller's text or a state buffer (after a transform). */
#include "data/tokenizer_impl.h"
#include "data/unicode.h"

ft_status ft_pretok_find(ft_tok_state *st, const pcre2_code *re, const char *s, int64_t len) {
    st->seg.n = 0;
    if (len == 0) return ft_tok_spans_push(&st->seg, 0, 0, 0);
    int64_t prev = 0, pos = 0, last_match_end = -1;
    while (pos <= len) {
        int rc = pcre2_match(re, (PCRE2_SPTR)s, (PCRE2_SIZE)len, (PCRE2_SIZE)pos, PCRE2_NO_UTF_CHECK, st->md, st->mctx);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return FT_ERR(FT_E_INTERNAL, "tokenizer regex failed on a %lld-byte text: %s", (long long)len,
                          (const char *)msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(st->md);
        int64_t a = (int64_t)ov[0], b = (int64_t)ov[1];
        if (a == b && b == last_match_end) {
            if (pos >= len) break;
            pos += ft_utf8_len((uint8_t)s[pos]);
            continue;
        }
        if (prev != a) FT_TRY(ft_tok_spans_push(&st->seg, prev, a - prev, 0));
        FT_TRY(ft_tok_spans_push(&st->seg, a, b - a, 1));
        prev = b;
        last_match_end = b;
        pos = b;
    }
    if (prev != len) FT_TRY(ft_tok_spans_push(&st->seg, prev, len - prev, 0));
    return FT_OK;
}

/* Segments where a character predicate holds (each such character is its own match). */
enum { FT_PRED_CHAR, FT_PRED_NUMERIC };
static ft_status ft_pretok_find_chars(ft_tok_state *st, int pred, uint32_t cp_match, const char *s, int64_t len) {
    st->seg.n = 0;
    if (len == 0) return ft_tok_spans_push(&st->seg, 0, 0, 0);
    int64_t last = 0, i = 0;
    while (i < len) {
        int n;
        int32_t cp = ft_utf8_decode((const uint8_t *)s + i, len - i, &n);
        int hit = pred == FT_PRED_CHAR ? cp == (int32_t)cp_match : (cp >= 0 && ft_uni_is_numeric((uint32_t)cp));
        if (hit) {
            if (last < i) FT_TRY(ft_tok_spans_push(&st->seg, last, i - last, 0));
            FT_TRY(ft_tok_spans_push(&st->seg, i, n, 1));
            last = i + n;
        }
        i += n;
    }
    if (len > last) FT_TRY(ft_tok_spans_push(&st->seg, last, len - last, 0));
    return FT_OK;
}

/* Turns st->seg (relative to a piece at `base`) into output pieces per behaviour. */
static ft_status ft_pretok_emit(ft_tok_state *st, ft_tok_split_behavior bh, int invert, int64_t base, int first,
                                ft_tok_spans *out) {
    int64_t start = out->n;
    int prev_match = 0;
    const int64_t n = st->seg.n;
    for (int64_t k = 0; k < n; k++) {
        int64_t i = bh == FT_SPLIT_MERGED_NEXT ? n - 1 - k : k;
        const ft_tok_span *g = &st->seg.v[i];
        int is_match = g->first ^ (invert != 0);
        ft_tok_span *last = out->n > start ? &out->v[out->n - 1] : NULL;
        switch (bh) {
        case FT_SPLIT_REMOVED:
            if (!is_match) FT_TRY(ft_tok_spans_push(out, g->off, g->len, 0));
            break;
        case FT_SPLIT_ISOLATED:
            FT_TRY(ft_tok_spans_push(out, g->off, g->len, 0));
            break;
        case FT_SPLIT_CONTIGUOUS:
            if (is_match == prev_match && last) last->len = g->off + g->len - last->off;
            else FT_TRY(ft_tok_spans_push(out, g->off, g->len, 0));
            break;
        case FT_SPLIT_MERGED_PREV:
            if (is_match && !prev_match && last) last->len = g->off + g->len - last->off;
            else FT_TRY(ft_tok_spans_push(out, g->off, g->len, 0));
            break;
        case FT_SPLIT_MERGED_NEXT:
            if (is_match && !prev_match && last) {
                last->len += last->off - g->off;
                last->off = g->off;
            } else {
                FT_TRY(ft_tok_spans_push(out, g->off, g->len, 0));
            }
            break;
        }
        prev_match = is_match;
    }
    if (bh == FT_SPLIT_MERGED_NEXT) {
        for (int64_t a = start, b = out->n - 1; a < b; a++, b--) {
            ft_tok_span tmp = out->v[a];
            out->v[a] = out->v[b];
            out->v[b] = tmp;
        }
    }
    /* Drop empty pieces, rebase, and mark the piece that starts the input. */
    int64_t w = start;
    for (int64_t r = start; r < out->n; r++) {
        ft_tok_span sp = out->v[r];
        if (sp.len == 0) continue;
        sp.first = first && sp.off == 0;
        sp.off += base;
        out->v[w++] = sp;
    }
    out->n = w;
    return FT_OK;
}

ft_status ft_pretok_run(const ft_tok *t, ft_tok_state *st, const char *s, int64_t len, int at_start,
                        const char **buf, const ft_tok_spans **pieces) {
    const char *cur_buf = s;
    int which = 0, pb = 0;
    ft_tok_spans *cur = &st->spans[0];
    cur->n = 0;
    FT_TRY(ft_tok_spans_push(cur, 0, len, at_start));
    for (int k = 0; k < t->n_pre; k++) {
        const ft_tok_pre *p = &t->pre[k];
        ft_tok_spans *nxt = &st->spans[which ^ 1];
        nxt->n = 0;
        switch (p->kind) {
        case FT_PRE_SPLIT:
            for (int64_t i = 0; i < cur->n; i++) {
                const ft_tok_span sp = cur->v[i];
                if (p->empty_pattern) {
                    st->seg.n = 0;
                    FT_TRY(ft_tok_spans_push(&st->seg, 0, sp.len, 0));
                } else {
                    FT_TRY(ft_pretok_find(st, p->re, cur_buf + sp.off, sp.len));
                }
                FT_TRY(ft_pretok_emit(st, p->behavior, p->invert, sp.off, sp.first, nxt));
            }
            break;
        case FT_PRE_BYTELEVEL:
            if (p->add_prefix_space) {
                ft_tok_buf *ob = &st->pre[pb];
                ob->n = 0;
                for (int64_t i = 0; i < cur->n; i++) {
                    const ft_tok_span sp = cur->v[i];
                    int64_t off = ob->n;
                    if (sp.len > 0 && cur_buf[sp.off] != ' ') FT_TRY(ft_tok_buf_put(ob, " ", 1));
                    FT_TRY(ft_tok_buf_put(ob, cur_buf + sp.off, sp.len));
                    FT_TRY(ft_tok_spans_push(nxt, off, ob->n - off, sp.first));
                }
                cur_buf = ob->p;
                pb ^= 1;
                which ^= 1;
                cur = &st->spans[which];
                nxt = &st->spans[which ^ 1];
                nxt->n = 0;
            }
            for (int64_t i = 0; i < cur->n; i++) {
                const ft_tok_span sp = cur->v[i];
                if (p->re) {
                    FT_TRY(ft_pretok_find(st, p->re, cur_buf + sp.off, sp.len));
                    FT_TRY(ft_pretok_emit(st, FT_SPLIT_ISOLATED, 0, sp.off, sp.first, nxt));
                } else {
                    FT_TRY(ft_tok_spans_push(nxt, sp.off, sp.len, sp.first));
                }
            }
            break;
        case FT_PRE_METASPACE: {
            ft_tok_buf *ob = &st->pre[pb];
            ob->n = 0;
            ft_tok_spans *dst = nxt;
            for (int64_t i = 0; i < cur->n; i++) {
                const ft_tok_span sp = cur->v[i];
                int64_t off = ob->n;
                const char *src = cur_buf + sp.off;
                int starts = sp.len >= p->repl_len && memcmp(src, p->repl, (size_t)p->repl_len) == 0;
                if (sp.len > 0 && src[0] == ' ') starts = 1; /* ' ' becomes the replacement first */
                int prepend = sp.len > 0 && !starts &&
                              (p->prepend == FT_PREPEND_ALWAYS || (p->prepend == FT_PREPEND_FIRST && sp.first));
                if (prepend) FT_TRY(ft_tok_buf_put(ob, p->repl, p->repl_len));
                for (int64_t j = 0; j < sp.len; j++) {
                    int64_t r = j;
                    while (r < sp.len && src[r] != ' ') r++;
                    FT_TRY(ft_tok_buf_put(ob, src + j, r - j));
                    if (r < sp.len) FT_TRY(ft_tok_buf_put(ob, p->repl, p->repl_len));
                    j = r;
                }
                if (!p->split) {
                    FT_TRY(ft_tok_spans_push(dst, off, ob->n - off, sp.first));
                } else {
                    FT_TRY(ft_pretok_find_chars(st, FT_PRED_CHAR, p->repl_cp, ob->p + off, ob->n - off));
                    FT_TRY(ft_pretok_emit(st, FT_SPLIT_MERGED_NEXT, 0, off, sp.first, dst));
                }
            }
            cur_buf = ob->p;
            pb ^= 1;
            break;
        }
        case FT_PRE_DIGITS:
            for (int64_t i = 0; i < cur->n; i++) {
                const ft_tok_span sp = cur->v[i];
                FT_TRY(ft_pretok_find_chars(st, FT_PRED_NUMERIC, 0, cur_buf + sp.off, sp.len));
                FT_TRY(ft_pretok_emit(st, p->individual_digits ? FT_SPLIT_ISOLATED : FT_SPLIT_CONTIGUOUS, 0, sp.off,
                                      sp.first, nxt));
            }
            break;
        }
        which ^= 1;
        cur = &st->spans[which];
    }
    *buf = cur_buf;
    *pieces = cur;
    return FT_OK;
}
