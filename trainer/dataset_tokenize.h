/* dataset_tokenize.h: a recipe's JSONL files to tokenized examples on several threads, for
 * trainer/dataset.c (its only caller; not a public interface).
 *
 * Each record is read (data/jsonl.h, malformed ones skipped or fatal per the policy), rendered
 * (data/chat_template.h) and encoded with the tokenizer, and appended to the examples in file
 * order. The examples, every log line and every error (FILE:LINE, which record is the first
 * skipped, where a fatal policy stops) are exactly those of reading, rendering, encoding and
 * appending one record at a time, for any thread count; see dataset_tokenize.c for how. */
#ifndef FT_DATASET_TOKENIZE_H
#define FT_DATASET_TOKENIZE_H

#include <stdint.h>

#include "data/chat_template.h"
#include "data/jsonl.h"
#include "data/pack.h"
#include "data/tokenizer.h"
#include "kernels/status.h"

typedef struct ft_tokenize_job {
    /* in */
    const ft_tok *tok;            /* thread-safe (data/tokenizer.h) */
    const ft_render_opts *ro;
    ft_jsonl_opts jo;             /* format and policy (quiet is ignored) */
    int threads;                  /* >= 1 */
    /* in/out: accumulated over calls */
    ft_data_format format;        /* the first record's format, when FT_FMT_AUTO on entry */
    int64_t records;              /* records read, kept + skipped */
    int64_t skipped;
    char first_error[512];        /* "FILE:LINE: problem" of the first skipped record */
    double seconds;               /* wall time spent */
} ft_tokenize_job;

/* Appends the examples of files[0..n_files) to ex (initialized by the caller). Logs one line per
 * file and a throughput line ("data: tokenized N records into T tokens in S s ..."). */
ft_status ft_tokenize_files(ft_tokenize_job *job, char *const *files, int n_files, ft_examples *ex);

#endif
