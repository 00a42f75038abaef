/* dataset.h: a recipe's data, from JSONL files to micro-batches of packed rows.
 *
 * ft_dataset_open runs the data pipeline of data/ once per run:
 *   tokenizer (data.tokenizer, default model.path)
 *   -> records of data.train (and data.valid) files, malformed ones skipped or fatal per
 *      data.on_error, counts reported
 *   -> rendered per data.format / data.template / data.loss (chat template, Alpaca, raw text with
 *      the tokenizer's BOS/EOS and loss on everything) and encoded to ids + loss mask on
 *      model.threads threads (0 = all cores), chunk by chunk; the examples, their order, the
 *      shards and every message are the same for any thread count (trainer/dataset_tokenize.h)
 *   -> split: data.valid when given, else a data.val_fraction held out by training.seed
 *   -> zstd shards + index under OUTPUT_DIR/data/, named by a fingerprint (XXH3 of the tokenizer
 *      files, the data files' contents and every key that changes the examples), so a resumed or
 *      re-run job with the same inputs never tokenizes again (the shards are read back on
 *      model.threads threads); once this fingerprint's cache is complete, the caches of other
 *      fingerprints (earlier inputs) are removed unless another ftune process is using the
 *      directory (dataset.c, "the cache directory")
 *   -> packed into rows of data.seq_len (data.packing, data.long_examples)
 *   -> a resumable training batcher of training.micro_batch rows and an evaluation batcher.
 * The training position is a small ft_data_cursor a checkpoint stores; restoring it yields the
 * micro-batches the interrupted run would have seen next (a changed dataset is refused).
 *
 * This header deliberately does not include data/batcher.h: that header's ft_batch (rows with
 * positions) and trainer/model.h's ft_batch share a name, so only dataset.c sees the former and
 * hands rows out as ft_rows. */
#ifndef FT_DATASET_H
#define FT_DATASET_H

#include <stdint.h>

#include "kernels/status.h"
#include "trainer/recipe.h"

typedef struct ft_dataset ft_dataset;

/* The training data position (data/batcher.h ft_batcher_state, field for field). */
typedef struct ft_data_cursor {
    uint64_t seed;
    int64_t epoch;        /* epoch of the next row (0-based) */
    int64_t index;        /* position of the next row in that epoch's order */
    int64_t rows;         /* packed rows per epoch of the plan it belongs to */
    uint64_t plan_hash;   /* ft_pack_hash of that plan bound to the training tokens' hash (dataset.c
                           * ft_cursor_hash): data edited in place with the same layout is refused too;
                           * a checkpoint of an older build holds the plan's hash alone, still accepted */
} ft_data_cursor;

/* One micro-batch of B packed rows of T tokens: every array [B*T] (N = B*T, row-major). */
typedef struct ft_rows {
    int64_t B, T;
    int32_t *tokens;
    int32_t *labels;      /* next-token targets, -100 where ignored */
    int32_t *pos;         /* RoPE positions, restarting per packed example */
    int32_t *doc_start;   /* query t attends keys doc_start[t] .. t of its row */
    int64_t n_rows;       /* rows holding data (0: evaluation is over) */
    int64_t n_targets;
} ft_rows;

typedef struct ft_dataset_info {
    int64_t train_examples, valid_examples;
    int64_t train_rows, valid_rows;
    int64_t train_targets;      /* trainable tokens per epoch */
    int64_t skipped_records;    /* malformed or unrenderable records skipped (data.on_error: skip) */
    int32_t max_token_id;       /* largest id in the examples (must be < the model's vocabulary) */
    int cached;                 /* the tokenized shards were reused */
    const char *format;         /* data format in use ("text", "chat", ...) */
    const char *template_name;  /* chat template in use ("none" for raw) */
    /* the preparation itself (`ftune data` prints these; strings belong to the dataset) */
    int64_t records;            /* records read (kept + skipped); 0 when cached */
    const char *first_error;    /* "FILE:LINE: problem" of the first skipped record, "" if none */
    int64_t train_tokens, valid_tokens;  /* tokens of the examples */
    int64_t valid_targets;      /* trainable tokens of the held-out rows */
    double train_fill;          /* packing of the training rows: real tokens / slots */
    double train_efficiency;    /* targets / slots */
    double train_attn_len;      /* packed rows: sum(l^2) / sum(l) over the training rows' examples, the mean length of
                                 * the example a token sits in (`ftune plan`'s S of the attention FLOPs) */
    const char *train_packing;  /* ft_pack_stats_str of the training rows */
    int64_t shard_files, shard_bytes;    /* train + valid shard files on disk (headers included) */
    const char *train_index;    /* OUTPUT_DIR/data/train-<fingerprint>.index.json */
    double tokenize_seconds;    /* reading, rendering and encoding (0 when cached) */
    int threads;                /* threads that encoded (model.threads, 0 = all cores) */
} ft_dataset_info;

/* Prepares the recipe's data under output_dir/data (created, with its parents, if needed). The run
 * and `ftune data` both call it. */
ft_status ft_dataset_open(ft_dataset **out, const ft_recipe *r, const char *output_dir);
void ft_dataset_free(ft_dataset *ds);
void ft_dataset_get_info(const ft_dataset *ds, ft_dataset_info *info);
/* Epochs done, fractional. */
double ft_dataset_epoch(const ft_dataset *ds);

/* Buffers for this dataset's micro-batches (B = training.micro_batch, T = data.seq_len). */
ft_status ft_rows_alloc(const ft_dataset *ds, ft_rows *rows);
void ft_rows_free(ft_rows *rows);

/* The next training micro-batch (always B full rows; epochs run on without a gap). */
ft_status ft_dataset_next(ft_dataset *ds, ft_rows *rows);
void ft_dataset_get_cursor(const ft_dataset *ds, ft_data_cursor *c);
/* FT_E_ARG naming what changed when the cursor belongs to other data, packing or seed. */
ft_status ft_dataset_set_cursor(ft_dataset *ds, const ft_data_cursor *c);

/* Validation: rewinds to the first held-out row; ft_dataset_eval_next then yields the held-out
 * rows once in order (the last batch padded with empty rows) and n_rows == 0 at the end. */
ft_status ft_dataset_eval_begin(ft_dataset *ds);
ft_status ft_dataset_eval_next(ft_dataset *ds, ft_rows *rows);

/* A generation prompt as the model saw prompts in training: through the chat template with the
 * assistant header when one is in use, else the Alpaca prompt or the raw text, after BOS when the
 * tokenizer adds one. *ids is malloc'd. */
ft_status ft_dataset_prompt_ids(const ft_dataset *ds, const char *prompt, int32_t **ids, int64_t *n);
/* Decodes ids (special tokens skipped) into a malloc'd string. */
ft_status ft_dataset_decode(const ft_dataset *ds, const int32_t *ids, int64_t n, char **text);
/* 1 when id ends a generated answer: the tokenizer's EOS or the chat template's end of turn. */
int ft_dataset_is_stop(const ft_dataset *ds, int32_t id);

#endif
