/* unicode.h: the UTF-8 and Unicode helpers the tokenizer needs, and nothing more.
 *
 * Decoding/encoding single code points, validation, Rust `String::from_utf8_lossy`-style repair
 * (each maximal invalid subpart becomes one U+FFFD, as Hugging Face tokenizers see Python strings
 * that were decoded with errors="replace"), the character classes used by the tokenizer pipeline
 * (Rust/Oniguruma semantics: White_Space, \w, numeric), and normalization forms through
 * libutf8proc. All functions are pure and thread-safe. */
#ifndef FT_UNICODE_H
#define FT_UNICODE_H

#include <stdint.h>

#include "kernels/status.h"

/* Decodes the code point at s[0..len) (len >= 1). Returns it and its byte length in *n, or -1 with
 * *n = length of the maximal invalid subpart (>= 1) when the bytes are not valid UTF-8. */
int32_t ft_utf8_decode(const uint8_t *s, int64_t len, int *n);
/* Encodes cp (<= 0x10FFFF) into buf (4 bytes room); returns the byte count. */
int ft_utf8_encode(uint32_t cp, char *buf);
/* Byte length of the UTF-8 sequence starting with byte b (1 for continuation/invalid bytes). */
static inline int ft_utf8_len(uint8_t b) {
    return b < 0x80 ? 1 : b < 0xE0 ? (b >= 0xC0 ? 2 : 1) : b < 0xF0 ? 3 : b < 0xF8 ? 4 : 1;
}
/* 1 when s[0..len) is valid UTF-8 (no surrogates, no overlongs, <= U+10FFFF). */
int ft_utf8_valid(const char *s, int64_t len);
/* Copies s with every maximal invalid subpart replaced by U+FFFD (Rust from_utf8_lossy).
 * *out is malloc'd and NUL-terminated. */
ft_status ft_utf8_lossy(const char *s, int64_t len, char **out, int64_t *out_len);

/* Unicode White_Space (Rust char::is_whitespace, Oniguruma \s). */
int ft_uni_is_space(uint32_t cp);
/* Rust regex \w: alphabetic, marks, decimal digits, connector punctuation, join controls. */
int ft_uni_is_word(uint32_t cp);
/* Rust char::is_numeric: general categories Nd, Nl, No. */
int ft_uni_is_numeric(uint32_t cp);

typedef enum { FT_NF_NFC = 0, FT_NF_NFD, FT_NF_NFKC, FT_NF_NFKD } ft_norm_form;
/* Normalizes s[0..len) (valid UTF-8) into a malloc'd, NUL-terminated *out. */
ft_status ft_uni_normalize(ft_norm_form form, const char *s, int64_t len, char **out, int64_t *out_len);
/* 1 when s[0..len) is certainly unchanged by `form` (a cheap scan; 0 means "maybe"). */
int ft_uni_quick_stable(ft_norm_form form, const char *s, int64_t len);
/* Rust str lowercase mapping applied char by char (full mapping: U+0130 -> "i\u0307").
 * Writes into a malloc'd *out. */
ft_status ft_uni_lowercase(const char *s, int64_t len, char **out, int64_t *out_len);

#endif
