/* tokenizer_decode.c: ids -> text as HF `Tokenizer::decode`: each id becomes its piece (added
 * token content first, then the vocab string; unknown ids are skipped; special added tokens are
 * skipped with skip_special), the decoder chain rewrites the list of pieces, and the result is
 * their concatenation (pieces joined with " " when there is no decoder). Each decoder works on
 * the whole list, as decode_chain does: ByteLevel (chars -> bytes, lossy UTF-8, one piece),
 * Metaspace, Replace, ByteFallback (<0xXX> runs -> UTF-8 or one U+FFFD per byte), Fuse, Strip. */
#include <stdlib.h>

#include "data/tokenizer_impl.h"
#include "data/unicode.h"
#include "kernels/mem.h"

static int ft_hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Appends bytes to ob as one piece of out. */
static ft_status ft_piece(ft_tok_buf *ob, ft_tok_spans *out, const char *s, int64_t n) {
    int64_t off = ob->n;
    FT_TRY(ft_tok_buf_put(ob, s, n));
    return ft_tok_spans_push(out, off, n, 0);
}

static ft_status ft_dec_step(const ft_tok_dec *d, const char *ib, const ft_tok_spans *in, ft_tok_buf *ob,
                             ft_tok_spans *out) {
    ob->n = 0;
    out->n = 0;
    switch (d->kind) {
    case FT_DEC_BYTELEVEL: {
        for (int64_t i = 0; i < in->n; i++) {
            const char *s = ib + in->v[i].off;
            int64_t n = in->v[i].len, mark = ob->n, j = 0;
            int ok = 1;
            while (j < n) {
                int cl;
                int32_t cp = ft_utf8_decode((const uint8_t *)s + j, n - j, &cl);
                int b = cp < 0 ? -1 : ft_tok_unicode_to_byte((uint32_t)cp);
                if (b < 0) {
                    ok = 0;
                    break;
                }
                char c = (char)b;
                FT_TRY(ft_tok_buf_put(ob, &c, 1));
                j += cl;
            }
            if (!ok) { /* a char outside the map: the token's own bytes */
                ob->n = mark;
                FT_TRY(ft_tok_buf_put(ob, s, n));
            }
        }
        if (!ft_utf8_valid(ob->p ? ob->p : "", ob->n)) {
            char *fixed;
            int64_t fl;
            FT_TRY(ft_utf8_lossy(ob->p, ob->n, &fixed, &fl));
            ob->n = 0;
            ft_status st = ft_tok_buf_put(ob, fixed, fl);
            free(fixed);
            FT_TRY(st);
        }
        return ft_tok_spans_push(out, 0, ob->n, 0);
    }
    case FT_DEC_METASPACE:
        for (int64_t i = 0; i < in->n; i++) {
            const char *s = ib + in->v[i].off;
            int64_t n = in->v[i].len, off = ob->n, j = 0;
            while (j < n) {
                if (n - j >= d->alen && memcmp(s + j, d->a, (size_t)d->alen) == 0) {
                    if (!(i == 0 && d->prepend)) FT_TRY(ft_tok_buf_put(ob, " ", 1));
                    j += d->alen;
                } else {
                    FT_TRY(ft_tok_buf_put(ob, s + j, 1));
                    j++;
                }
            }
            FT_TRY(ft_tok_spans_push(out, off, ob->n - off, 0));
        }
        return FT_OK;
    case FT_DEC_REPLACE:
        for (int64_t i = 0; i < in->n; i++) {
            const char *s = ib + in->v[i].off;
            int64_t n = in->v[i].len, off = ob->n, j = 0;
            while (j < n) {
                if (d->alen > 0 && n - j >= d->alen && memcmp(s + j, d->a, (size_t)d->alen) == 0) {
                    FT_TRY(ft_tok_buf_put(ob, d->b, d->blen));
                    j += d->alen;
                } else {
                    FT_TRY(ft_tok_buf_put(ob, s + j, 1));
                    j++;
                }
            }
            FT_TRY(ft_tok_spans_push(out, off, ob->n - off, 0));
        }
        return FT_OK;
    case FT_DEC_BYTEFALLBACK: {
        /* Pending bytes live at the end of ob until a non-byte piece flushes them. */
        int64_t pend = -1;
        for (int64_t i = 0; i <= in->n; i++) {
            const char *s = i < in->n ? ib + in->v[i].off : NULL;
            int64_t n = i < in->n ? in->v[i].len : 0;
            int byte = -1;
            if (s && n == 6 && memcmp(s, "<0x", 3) == 0 && s[5] == '>') {
                int h = ft_hexval(s[3]), l = ft_hexval(s[4]);
                if (h >= 0 && l >= 0) byte = h * 16 + l;
            }
            if (byte >= 0) {
                if (pend < 0) pend = ob->n;
                char c = (char)byte;
                FT_TRY(ft_tok_buf_put(ob, &c, 1));
                continue;
            }
            if (pend >= 0) {
                int64_t nb = ob->n - pend;
                if (ft_utf8_valid(ob->p + pend, nb)) {
                    FT_TRY(ft_tok_spans_push(out, pend, nb, 0));
                } else {
                    ob->n = pend;
                    for (int64_t k = 0; k < nb; k++) FT_TRY(ft_piece(ob, out, "\xEF\xBF\xBD", 3));
                }
                pend = -1;
            }
            if (s) FT_TRY(ft_piece(ob, out, s, n));
        }
        return FT_OK;
    }
    case FT_DEC_FUSE:
        for (int64_t i = 0; i < in->n; i++) FT_TRY(ft_tok_buf_put(ob, ib + in->v[i].off, in->v[i].len));
        return ft_tok_spans_push(out, 0, ob->n, 0);
    case FT_DEC_STRIP: {
        char cb[8];
        int cl = ft_utf8_encode(d->strip_cp, cb);
        for (int64_t i = 0; i < in->n; i++) {
            const char *s = ib + in->v[i].off;
            int64_t a = 0, b = in->v[i].len;
            for (int k = 0; k < d->start && b - a >= cl && memcmp(s + a, cb, (size_t)cl) == 0; k++) a += cl;
            for (int k = 0; k < d->stop && b - a >= cl && memcmp(s + b - cl, cb, (size_t)cl) == 0; k++) b -= cl;
            FT_TRY(ft_piece(ob, out, s + a, b - a));
        }
        return FT_OK;
    }
    }
    return FT_ERR(FT_E_INTERNAL, "unknown decoder step %d", (int)d->kind);
}

static ft_status ft_decode_with(const ft_tok *t, ft_tok_state *st, const int32_t *ids, int64_t n, int skip_special,
                                char **text, int64_t *len) {
    ft_tok_buf *ib = &st->dec[0];
    ft_tok_spans *in = &st->dspans[0];
    ib->n = 0;
    in->n = 0;
    for (int64_t i = 0; i < n; i++) {
        const char *p = ft_tok_id_to_piece(t, ids[i]);
        if (!p) continue;
        if (skip_special && ft_tok_is_special(t, ids[i])) continue;
        FT_TRY(ft_piece(ib, in, p, (int64_t)strlen(p)));
    }
    int cur = 0;
    for (int k = 0; k < t->n_dec; k++) {
        FT_TRY(ft_dec_step(&t->dec[k], st->dec[cur].p, &st->dspans[cur], &st->dec[cur ^ 1], &st->dspans[cur ^ 1]));
        cur ^= 1;
    }
    const char *b = st->dec[cur].p;
    const ft_tok_spans *sp = &st->dspans[cur];
    int64_t total = 0;
    for (int64_t i = 0; i < sp->n; i++) total += sp->v[i].len + (t->has_decoder ? 0 : 1);
    char *o;
    FT_TRY(ft_malloc((void **)&o, (size_t)total + 1, "decoded text"));
    int64_t w = 0;
    for (int64_t i = 0; i < sp->n; i++) {
        if (!t->has_decoder && i > 0) o[w++] = ' ';
        if (sp->v[i].len) memcpy(o + w, b + sp->v[i].off, (size_t)sp->v[i].len);
        w += sp->v[i].len;
    }
    o[w] = 0;
    *text = o;
    if (len) *len = w;
    return FT_OK;
}

ft_status ft_tok_decode(const ft_tok *t, const int32_t *ids, int64_t n, int skip_special, char **text, int64_t *len) {
    ft_tok_state *st;
    FT_TRY(ft_tok_state_get(t, &st));
    ft_status s = ft_decode_with(t, st, ids, n, skip_special, text, len);
    ft_tok_state_put(t, st);
    return s;
}
