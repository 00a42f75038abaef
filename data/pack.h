/* pack.h: tokenized examples and their packing into fixed-length rows.
 *
 * An ft_examples set holds tokenized examples back to back: token ids plus a per-token
 * "trainable" flag (mask[i] = 1: token i is a training target, i.e. its logit at position i-1
 * is in the loss). The flag of an example's first token is ignored (nothing predicts it).
 *
 * Packing places whole examples into rows of seq_len tokens without cross-contamination. A row
 * is materialized (ft_pack_row) as four int32 arrays of T = seq_len:
 *   tokens[t]     token id (pad_id in the unused tail)
 *   labels[t]     next-token target tokens[t+1] when that token is trainable and belongs to the
 *                 same example, else -100: the last token of an example never predicts the next
 *                 example's first token, and a truncated example's last kept token has no label
 *   positions[t]  position within its example (restarts at 0 for each example; RoPE input)
 *   doc_start[t]  row position where t's example begins: query t attends keys j with
 *                 doc_start[t] <= j <= t (the contract of ft_op_attention in kernels/ops.h)
 * Padding slots: tokens = pad_id, labels = -100, positions = 0, doc_start[t] = t (a pad attends
 * only to itself, so no row has an empty softmax).
 *
 * Strategies, all deterministic for a given example order:
 *   FT_PACK_NONE        one example per row (unpacked), tail padded
 *   FT_PACK_SEQUENTIAL  examples in order; a new row when the next does not fit
 *   FT_PACK_BFD         best-fit decreasing: by length (longest first, ties by index), each into
 *                       the fullest row it fits (O(n log n + n*T/4096))
 * Examples longer than seq_len are truncated to their first seq_len tokens or dropped
 * (ft_long_policy); examples left without any target (fewer than 2 tokens, or all targets
 * masked or truncated away) are dropped. Everything dropped or truncated is counted. */
#ifndef FT_PACK_H
#define FT_PACK_H

#include <stdint.h>

#include "kernels/status.h"

#define FT_IGNORE_INDEX (-100)

/* ---- tokenized examples ------------------------------------------------------------------ */

typedef struct ft_examples {
    int32_t *tokens;   /* [n_tokens] token ids */
    uint8_t *mask;     /* [n_tokens] 1: token is a training target */
    int64_t *offsets;  /* [n + 1] example i is tokens[offsets[i] .. offsets[i + 1]) */
    int64_t n;         /* examples */
    int64_t n_tokens;
    int64_t cap_tokens, cap_examples; /* allocation (internal) */
} ft_examples;

/* An empty set (no allocation until the first add). */
void ft_examples_init(ft_examples *ex);
void ft_examples_free(ft_examples *ex);
/* Ensures room for n_tokens tokens and n_examples examples in total (bulk appends). */
ft_status ft_examples_reserve(ft_examples *ex, int64_t n_tokens, int64_t n_examples);
/* Appends one example of n tokens (mask may be NULL: every token trainable). */
ft_status ft_examples_add(ft_examples *ex, const int32_t *tokens, const uint8_t *mask, int64_t n);
static inline int64_t ft_examples_len(const ft_examples *ex, int64_t i) { return ex->offsets[i + 1] - ex->offsets[i]; }
/* dst (initialized by the call) = src's examples idx[0..n) in that order. */
ft_status ft_examples_subset(const ft_examples *src, const int64_t *idx, int64_t n, ft_examples *dst);
/* perm[0..n) = a permutation of 0..n-1 determined by seed alone (Fisher-Yates over SplitMix64). */
void ft_permutation(int64_t *perm, int64_t n, uint64_t seed);
/* A deterministic train/validation split: the validation set is round(valid_fraction * n)
 * examples (at least 1 when valid_fraction > 0 and n >= 2) chosen by a seeded permutation; both
 * keep the original relative order. valid_fraction in [0, 1). train/valid are initialized. */
ft_status ft_examples_split(const ft_examples *all, double valid_fraction, uint64_t seed, ft_examples *train,
                            ft_examples *valid);
/* The same split without a second copy of the training tokens: all's buffers become train's (its
 * examples compacted in place), only the validation examples are copied, and all is left empty,
 * so the peak is one copy of the data (ft_examples_split holds two). On failure all is unchanged. */
ft_status ft_examples_split_move(ft_examples *all, double valid_fraction, uint64_t seed, ft_examples *train,
                                 ft_examples *valid);

/* ---- packing ------------------------------------------------------------------------------ */

typedef enum ft_pack_strategy { FT_PACK_BFD = 0, FT_PACK_SEQUENTIAL, FT_PACK_NONE } ft_pack_strategy;
typedef enum ft_long_policy { FT_LONG_TRUNCATE = 0, FT_LONG_DROP } ft_long_policy;

typedef struct ft_pack_opts {
    int64_t seq_len;            /* T, >= 2 */
    ft_pack_strategy strategy;
    ft_long_policy long_policy;
    int32_t pad_id;             /* token id written into padding slots (never a target) */
} ft_pack_opts;

typedef struct ft_pack_stats {
    int64_t examples_in;     /* examples offered */
    int64_t examples_packed; /* examples placed in rows */
    int64_t truncated;       /* placed after truncation to seq_len */
    int64_t dropped_long;    /* longer than seq_len under FT_LONG_DROP */
    int64_t dropped_empty;   /* no target left (too short, all masked, or truncated away) */
    int64_t dropped_cut;     /* of dropped_empty: targets only past seq_len, truncated away (a longer
                              * data.seq_len would keep them) */
    int64_t cut_longest;     /* the longest of those, tokens */
    int64_t rows;
    int64_t slots;           /* rows * seq_len */
    int64_t tokens;          /* real tokens placed (slots - padding) */
    int64_t targets;         /* labels != -100 */
    double fill;             /* tokens / slots */
    double efficiency;       /* targets / slots: the share of the batch that trains */
} ft_pack_stats;

/* The packing plan: which (prefix of which) example goes where. Rows are materialized on demand. */
typedef struct ft_pack {
    int64_t seq_len;
    int32_t pad_id;
    int64_t n_rows;
    int64_t n_pieces;
    int64_t *row_off;    /* [n_rows + 1] row r holds pieces row_off[r] .. row_off[r + 1] - 1 */
    int64_t *piece_ex;   /* [n_pieces] example index */
    int64_t *piece_len;  /* [n_pieces] tokens used: the example's first piece_len tokens */
    ft_pack_stats stats;
} ft_pack;

/* Plans rows over ex (which must outlive the plan's use by ft_pack_row). */
ft_status ft_pack_build(const ft_examples *ex, const ft_pack_opts *opts, ft_pack *out);
/* Writes row r (0 <= r < n_rows) into four [T] arrays (see the top of this file). */
void ft_pack_row(const ft_pack *p, const ft_examples *ex, int64_t r, int32_t *tokens, int32_t *labels,
                 int32_t *positions, int32_t *doc_start);
/* XXH3 fingerprint of the plan (seq_len and every piece), for checking a resumed run sees the
 * same rows. */
uint64_t ft_pack_hash(const ft_pack *p);
void ft_pack_free(ft_pack *p);
/* One-line summary ("rows 12, fill 97.1%, efficiency 61.0%, truncated 1, ...") into buf. */
void ft_pack_stats_str(const ft_pack_stats *s, char *buf, int64_t buflen);

#endif
