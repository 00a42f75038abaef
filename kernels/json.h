/* json.h: the one way ftune parses a JSON input file (config.json, tokenizer.json, adapter_config.json,
 * safetensors indexes, JSONL records, its own checkpoints and shard indexes), read as Python's json
 * module reads it, which is what transformers, tokenizers and peft use to write and read them:
 *   - the text is exactly one JSON value with only JSON whitespace (space, tab, LF, CR) around it;
 *     trailing data, a NUL byte, empty or truncated input is an error (cJSON alone accepts a prefix);
 *   - a key repeated in an object means its LAST occurrence, at the position of its first (a Python
 *     dict); cJSON keeps every occurrence and its lookups return the first, a silent mismatch.
 * ft_json_parse does both and names `what` (the file, "file:line" for a record) in its message.
 * ft_json_parse_quiet is the same parse for callers that word their own message (JSONL records).
 * cJSON is a system library (libcjson); kernels/ links it for this file only. */
#ifndef FT_JSON_H
#define FT_JSON_H

#include <stdint.h>

#include <cjson/cJSON.h>

#include "kernels/status.h"

/* Parses text[0, len) (len < 0: up to the NUL) into *out (the caller cJSON_Deletes it), duplicate keys
 * resolved last-wins. On failure *out is NULL and the message is one line:
 *   "WHAT: not valid JSON (malformed at byte N)" or
 *   "WHAT: not valid JSON (unexpected data after the JSON value at byte N)". */
ft_status ft_json_parse(const char *text, int64_t len, const char *what, cJSON **out);

/* ft_json_parse without the duplicate resolution: for a caller that rejects some duplicates (with its own
 * message) before it calls ft_json_dedupe, e.g. a tensor listed twice in a safetensors index. */
ft_status ft_json_parse_keep_dups(const char *text, int64_t len, const char *what, cJSON **out);

/* The parse and trailing-data check of ft_json_parse, without duplicate resolution and without recording
 * a message: NULL on failure with *err_at the byte offset of the problem and *after_value 1 when a whole
 * value parsed but something other than whitespace follows it (both optional). */
cJSON *ft_json_parse_quiet(const char *text, int64_t len, int64_t *err_at, int *after_value);

/* Resolves duplicate keys in every object under node as Python's json does (the last value wins, kept at
 * the first occurrence's position). Fails only on allocation (message names `what`). */
ft_status ft_json_dedupe(cJSON *node, const char *what);

/* The first member (in sorted key order) of the object `obj` whose key appears more than once at that
 * level, or NULL (not recursive; NULL for a non-object). For readers whose reference implementation
 * rejects duplicates instead of resolving them (the safetensors header). */
const cJSON *ft_json_dup_key(const cJSON *obj);

/* The chat template a checkpoint keeps in a file of its own, for when tokenizer_config.json has none:
 * DIR/chat_template.jinja (transformers >= 4.43), else the "chat_template" string of
 * DIR/chat_template.json (a vision-language checkpoint's processor, e.g. Mistral Small 3.1).
 * *out: malloc'd text, or NULL when neither file exists. A file that cannot be read, or a
 * chat_template.json that is not an object with a string "chat_template", is an error naming it. */
ft_status ft_json_chat_template_file(const char *dir, char **out);

/* Byte offset of the first \u0000 escape in s[0, n), a text that parsed as JSON, or -1. cJSON
 * ends its C strings at that NUL, so the text after it would be dropped silently; Python keeps it.
 * In valid JSON a backslash only occurs in a string, always starting an escape. */
int64_t ft_json_nul_escape_at(const char *s, int64_t n);

#endif
