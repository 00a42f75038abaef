/* unicode.c: UTF-8 coding, lossy repair, character classes and normalization (see unicode.h).
 * Normalization and general categories come from libutf8proc (Debian libutf8proc-dev); the
 * rest is small enough to be written here. */
#include "data/unicode.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "kernels/mem.h"

int32_t ft_utf8_decode(const uint8_t *s, int64_t len, int *n) {
    uint8_t b = s[0];
    if (b < 0x80) {
        *n = 1;
        return b;
    }
    int need;
    uint8_t lo = 0x80, hi = 0xBF;
    int32_t cp;
    if (b >= 0xC2 && b <= 0xDF) {
        need = 1;
        cp = b & 0x1F;
    } else if (b >= 0xE0 && b <= 0xEF) {
        need = 2;
        cp = b & 0x0F;
        if (b == 0xE0) lo = 0xA0;
        if (b == 0xED) hi = 0x9F;
    } else if (b >= 0xF0 && b <= 0xF4) {
        need = 3;
        cp = b & 0x07;
        if (b == 0xF0) lo = 0x90;
        if (b == 0xF4) hi = 0x8F;
    } else {
        *n = 1;
        return -1;
    }
    /* The maximal subpart: the lead byte plus every following byte that still fits a valid
     * sequence (the first continuation byte has the narrowed range). */
    int i = 1;
    for (; i <= need; i++) {
        if (i >= len) {
            *n = i;
            return -1;
        }
        uint8_t c = s[i];
        uint8_t l = i == 1 ? lo : 0x80, h = i == 1 ? hi : 0xBF;
        if (c < l || c > h) {
            *n = i;
            return -1;
        }
        cp = (cp << 6) | (c & 0x3F);
    }
    *n = need + 1;
    return cp;
}

int ft_utf8_encode(uint32_t cp, char *buf) {
    unsigned char *o = (unsigned char *)buf;
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

int ft_utf8_valid(const char *s, int64_t len) {
    const uint8_t *p = (const uint8_t *)s;
    int64_t i = 0;
    while (i < len) {
        /* ASCII fast path, 8 bytes at a time. */
        while (i + 8 <= len) {
            uint64_t w;
            memcpy(&w, p + i, 8);
            if (w & 0x8080808080808080ULL) break;
            i += 8;
        }
        if (i >= len) break;
        if (p[i] < 0x80) {
            i++;
            continue;
        }
        int n;
        if (ft_utf8_decode(p + i, len - i, &n) < 0) return 0;
        i += n;
    }
    return 1;
}

ft_status ft_utf8_lossy(const char *s, int64_t len, char **out, int64_t *out_len) {
    /* Worst case: every byte becomes a 3-byte U+FFFD. */
    char *o;
    FT_TRY(ft_malloc((void **)&o, (size_t)len * 3 + 1, "UTF-8 repair"));
    const uint8_t *p = (const uint8_t *)s;
    int64_t i = 0, w = 0;
    while (i < len) {
        int n;
        int32_t cp = ft_utf8_decode(p + i, len - i, &n);
        if (cp < 0) {
            memcpy(o + w, "\xEF\xBF\xBD", 3);
            w += 3;
        } else {
            memcpy(o + w, p + i, (size_t)n);
            w += n;
        }
        i += n;
    }
    o[w] = 0;
    *out = o;
    *out_len = w;
    return FT_OK;
}

int ft_uni_is_space(uint32_t cp) {
    if (cp < 0x80) return cp == ' ' || (cp >= 0x09 && cp <= 0x0D);
    if (cp == 0x85 || cp == 0xA0 || cp == 0x1680 || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
        cp == 0x205F || cp == 0x3000)
        return 1;
    return cp >= 0x2000 && cp <= 0x200A;
}

int ft_uni_is_word(uint32_t cp) {
    if (cp < 0x80)
        return (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') || (cp >= '0' && cp <= '9') || cp == '_';
    if (cp == 0x200C || cp == 0x200D) return 1;
    /* Other_Alphabetic symbols (circled / squared letters). */
    if ((cp >= 0x24B6 && cp <= 0x24E9) || (cp >= 0x1F130 && cp <= 0x1F149) || (cp >= 0x1F150 && cp <= 0x1F169) ||
        (cp >= 0x1F170 && cp <= 0x1F189))
        return 1;
    switch (utf8proc_category((utf8proc_int32_t)cp)) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_MC: case UTF8PROC_CATEGORY_ME: case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_PC:
        return 1;
    default:
        return 0;
    }
}

int ft_uni_is_numeric(uint32_t cp) {
    if (cp < 0x80) return cp >= '0' && cp <= '9';
    utf8proc_category_t c = utf8proc_category((utf8proc_int32_t)cp);
    return c == UTF8PROC_CATEGORY_ND || c == UTF8PROC_CATEGORY_NL || c == UTF8PROC_CATEGORY_NO;
}

/* A code point that NFC leaves alone whatever surrounds it, as long as its neighbours are such
 * code points too: combining class 0, not the second half of a composition, and without any
 * decomposition (test_tokenizer checks this against utf8proc over every code point). */
static int ft_nfc_safe(int32_t cp) {
    if (cp < 0x300) return 1;
    if (cp >= 0x1100 && cp <= 0x11FF) return cp < 0x1160; /* Hangul L jamo only */
    if (cp >= 0xAC00 && cp <= 0xD7A3) return 1; /* syllables; a following T jamo is flagged */
    const utf8proc_property_t *p = utf8proc_get_property(cp);
    if (p->combining_class != 0) return 0;
    if (p->comb_index != UINT16_MAX && (p->comb_index & 0x8000)) return 0;
    if (p->decomp_seqindex != UINT16_MAX) return 0; /* precomposed letters take the slow path */
    if (p->category == UTF8PROC_CATEGORY_CN) return 0; /* unassigned: let utf8proc decide */
    return 1;
}

int ft_uni_quick_stable(ft_norm_form form, const char *s, int64_t len) {
    const uint8_t *p = (const uint8_t *)s;
    int64_t i = 0;
    while (i < len) {
        if (p[i] < 0x80) {
            i++;
            continue;
        }
        if (form != FT_NF_NFC) return 0;
        int n;
        int32_t cp = ft_utf8_decode(p + i, len - i, &n);
        if (cp < 0 || !ft_nfc_safe(cp)) return 0;
        i += n;
    }
    return 1;
}

extern const uint32_t ft_uni_hf_inert[];
extern const int ft_uni_hf_inert_n;

/* 1 when HF treats cp as an inert starter that utf8proc knows better (unicode_hf_table.c). */
static int ft_uni_hf_is_inert(uint32_t cp) {
    if (cp < ft_uni_hf_inert[0]) return 0;
    int lo = 0, hi = ft_uni_hf_inert_n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (ft_uni_hf_inert[mid] == cp) return 1;
        if (ft_uni_hf_inert[mid] < cp) lo = mid + 1;
        else hi = mid - 1;
    }
    return 0;
}

static ft_status ft_uni_normalize_chunk(int opt, const char *s, int64_t len, char **out, int64_t *out_len) {
    if (len == 0) {
        FT_TRY(ft_calloc((void **)out, 1, "normalized text"));
        *out_len = 0;
        return FT_OK;
    }
    utf8proc_uint8_t *dst = NULL;
    utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)len, &dst, (utf8proc_option_t)opt);
    if (r < 0) {
        if (r == UTF8PROC_ERROR_NOMEM) return FT_ERR(FT_E_OOM, "out of memory normalizing %lld bytes", (long long)len);
        return FT_ERR(FT_E_INTERNAL, "unicode normalization failed: %s", utf8proc_errmsg(r));
    }
    *out = (char *)dst;
    *out_len = r;
    return FT_OK;
}

ft_status ft_uni_normalize(ft_norm_form form, const char *s, int64_t len, char **out, int64_t *out_len) {
    int opt = UTF8PROC_STABLE;
    switch (form) {
    case FT_NF_NFC: opt |= UTF8PROC_COMPOSE; break;
    case FT_NF_NFD: opt |= UTF8PROC_DECOMPOSE; break;
    case FT_NF_NFKC: opt |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT; break;
    case FT_NF_NFKD: opt |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT; break;
    }
    /* HF's tables predate some code points; it treats them as inert starters, which never
     * reorder or compose with their neighbours: normalizing the runs between them separately and
     * keeping them as they are gives HF's result. */
    const uint8_t *p = (const uint8_t *)s;
    char *o = NULL;
    int64_t on = 0, ocap = 0, run = 0;
    ft_status st = FT_OK;
    for (int64_t i = 0; i <= len && st == FT_OK;) {
        int n = 1, inert = 0;
        if (i < len && p[i] >= 0x80) {
            int32_t cp = ft_utf8_decode(p + i, len - i, &n);
            inert = cp >= 0 && ft_uni_hf_is_inert((uint32_t)cp);
        }
        if (i == len || inert) {
            if (!o && i == len) return ft_uni_normalize_chunk(opt, s, len, out, out_len); /* none found */
            char *c = NULL;
            int64_t cn = 0;
            st = ft_uni_normalize_chunk(opt, s + run, i - run, &c, &cn);
            if (st == FT_OK && on + cn + n + 1 > ocap) {
                int64_t cap = (on + cn + n + 1) * 2;
                char *g = realloc(o, (size_t)cap);
                if (!g) st = FT_ERR(FT_E_OOM, "out of memory normalizing %lld bytes", (long long)len);
                else o = g, ocap = cap;
            }
            if (st == FT_OK) {
                memcpy(o + on, c, (size_t)cn);
                on += cn;
                if (i < len) memcpy(o + on, s + i, (size_t)n);
                if (i < len) on += n;
                o[on] = 0;
            }
            free(c);
            if (i == len) break;
            run = i + n;
        }
        i += n;
    }
    if (st != FT_OK) {
        free(o);
        return st;
    }
    *out = o;
    *out_len = on;
    return FT_OK;
}

ft_status ft_uni_lowercase(const char *s, int64_t len, char **out, int64_t *out_len) {
    char *o;
    /* Lowercasing grows a code point by at most 1 byte (U+0130 -> 3 bytes); 2x is plenty. */
    FT_TRY(ft_malloc((void **)&o, (size_t)len * 2 + 4, "lowercased text"));
    const uint8_t *p = (const uint8_t *)s;
    int64_t i = 0, w = 0;
    while (i < len) {
        int n;
        int32_t cp = ft_utf8_decode(p + i, len - i, &n);
        if (cp < 0) {
            memcpy(o + w, p + i, (size_t)n);
            w += n;
        } else if (cp == 0x130) {
            memcpy(o + w, "i\xCC\x87", 3);
            w += 3;
        } else {
            w += ft_utf8_encode((uint32_t)utf8proc_tolower(cp), o + w);
        }
        i += n;
    }
    o[w] = 0;
    *out = o;
    *out_len = w;
    return FT_OK;
}
