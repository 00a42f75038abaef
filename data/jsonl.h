/* jsonl.h: streaming reader of training records from JSONL (one JSON object per line, any line
 * length) or from a .json file holding one JSON array of records (LLaMA-Factory style).
 *
 * Each record is parsed with cJSON and classified into one of four formats:
 *   text               {"text": "..."}                                   plain causal LM
 *   alpaca             {"instruction", "input" (optional), "output"}     Stanford Alpaca
 *   prompt-completion  {"prompt", "completion"}
 *   chat               {"messages": [{"role": "system|user|assistant", "content": "...",
 *                                     "reasoning_content": "..." (optional)}]}
 *                      or ShareGPT {"conversations": [{"from": "system|human|gpt", "value"}]}
 * The format is forced by the caller or auto-detected from the first well-formed record; every
 * later record must then have that format. Extra keys are ignored.
 *
 * Contract on bad input: a malformed record (invalid JSON, bytes that are not UTF-8, a \u0000
 * escape (cJSON would end the string there), not an object, missing key, wrong type, unknown
 * role, empty target text, a chat without an assistant turn) is reported as
 * "FILE:LINE: problem". With the skip policy it is logged (the first `max_logged` of them),
 * counted, and summarized when the file ends; with the fatal policy ft_jsonl_next fails with that
 * message. A record is never dropped silently. Blank lines are ignored and counted. Later stages
 * that reject a record (a template refusing a role order, a tokenizer failure) report it through
 * ft_jsonl_reject so the same FILE:LINE and policy apply. In a .json array a syntax error is
 * always fatal (the reader cannot resynchronize); LINE is the line where the element starts. */
#ifndef FT_JSONL_H
#define FT_JSONL_H

#include <stdint.h>

#include "kernels/status.h"

typedef enum ft_data_format {
    FT_FMT_AUTO = 0,
    FT_FMT_TEXT,
    FT_FMT_ALPACA,
    FT_FMT_PROMPT_COMPLETION,
    FT_FMT_CHAT,
} ft_data_format;

typedef enum ft_role { FT_ROLE_SYSTEM = 0, FT_ROLE_USER, FT_ROLE_ASSISTANT } ft_role;

typedef struct ft_chat_msg {
    ft_role role;
    const char *content;   /* never NULL (may be "") */
    const char *reasoning; /* "reasoning_content" (Qwen3 thinking), NULL when absent */
} ft_chat_msg;

/* One record. All strings are NUL-terminated UTF-8 owned by the reader and valid until the next
 * ft_jsonl_next or ft_jsonl_close. Fields of other formats are NULL. */
typedef struct ft_record {
    ft_data_format format;
    const char *source;   /* the file path */
    int64_t line;         /* 1-based line where the record starts */
    int64_t index;        /* 0-based index among the well-formed records of this file */
    const char *text;                              /* text */
    const char *instruction, *input, *output;      /* alpaca; input is "" when absent */
    const char *prompt, *completion;               /* prompt-completion */
    const ft_chat_msg *messages;                   /* chat: n_messages >= 1 */
    int64_t n_messages;
} ft_record;

typedef struct ft_jsonl_opts {
    ft_data_format format; /* FT_FMT_AUTO: detect from the first well-formed record */
    int fatal;             /* 1: the first malformed record fails; 0: skip, count and report */
    int64_t max_logged;    /* skipped records logged one by one (then only counted); 0 = 20 */
    int quiet;             /* 1: log nothing (a look-ahead reader whose records another reader reports) */
} ft_jsonl_opts;

typedef struct ft_jsonl_stats {
    int64_t lines;        /* physical lines read (JSONL) */
    int64_t records;      /* well-formed records returned */
    int64_t blank;        /* blank lines ignored */
    int64_t skipped;      /* malformed records skipped (including ft_jsonl_reject) */
    char first_error[512];/* "FILE:LINE: problem" of the first skipped record, "" if none */
} ft_jsonl_stats;

typedef struct ft_jsonl ft_jsonl;

/* Opens `path` (.json or a file starting with '[' is read as one array; anything else as JSONL).
 * opts may be NULL (auto format, skip policy). */
ft_status ft_jsonl_open(ft_jsonl **out, const char *path, const ft_jsonl_opts *opts);
/* Next well-formed record in *rec, or *rec = NULL at the end of the file (the skipped-record
 * summary is logged then). Fails on I/O errors and, with the fatal policy, on a malformed record
 * (message "FILE:LINE: problem"). */
ft_status ft_jsonl_next(ft_jsonl *r, const ft_record **rec);
/* Rejects the record last returned with a printf-style problem: counted and logged as
 * "FILE:LINE: problem" (skip policy, returns FT_OK) or returned as FT_E_FORMAT (fatal policy). */
ft_status ft_jsonl_reject(ft_jsonl *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The format in force (FT_FMT_AUTO until the first record has been classified). */
ft_data_format ft_jsonl_format(const ft_jsonl *r);
void ft_jsonl_get_stats(const ft_jsonl *r, ft_jsonl_stats *out);
void ft_jsonl_close(ft_jsonl *r);

/* "text", "alpaca", "prompt-completion", "chat" ("auto" for FT_FMT_AUTO). */
const char *ft_data_format_name(ft_data_format f);
/* Inverse of ft_data_format_name (also accepts "completion" and "sharegpt"/"messages"). */
ft_status ft_data_format_parse(const char *name, ft_data_format *out);
const char *ft_role_name(ft_role r);

#endif
