/* test_pack.c: packing examples into rows. For every strategy and both long-example policies it
 * checks, row by row, that positions restart at 0 per example, doc_start names the example's
 * first slot, no label crosses an example boundary (the last token of an example and padding are
 * -100), labels are exactly the next trainable token, each kept example appears once and whole
 * (or as its first seq_len tokens when truncated), and the counts of truncated/dropped examples.
 * It prints the packing efficiency on synthetic lengths and on the mlx WikiSQL text set (bytes as
 * tokens; the tokenizer-level figure comes from the chat/shard tests), and checks the seeded
 * train/validation split. The batcher part checks that each training epoch yields every row once
 * in a seed-determined order, that a cursor restored from its saved state continues with
 * byte-identical batches, that a state from another plan or seed is refused, and the padded
 * final batch of evaluation mode. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/batcher.h"
#include "data/pack.h"
#include "kernels/rng.h"
#include "tests/harness.h"

/* Random examples: lengths in [1, maxlen], tokens = 1000*ex + position (so a label names its
 * source), masks random with a "prompt" prefix masked. */
static void make_examples(ft_examples *ex, int64_t n, int64_t maxlen, uint64_t seed) {
    ft_examples_init(ex);
    ft_rng rng = {seed};
    int32_t *tok = malloc((size_t)maxlen * sizeof *tok);
    uint8_t *mask = malloc((size_t)maxlen);
    for (int64_t i = 0; i < n; i++) {
        int64_t len = 1 + (int64_t)(ft_rng_next(&rng) % (uint64_t)maxlen);
        int64_t prompt = (int64_t)(ft_rng_next(&rng) % (uint64_t)(len + 1));
        int all_masked = ft_rng_next(&rng) % 23 == 0; /* some examples with nothing to train */
        for (int64_t k = 0; k < len; k++) {
            tok[k] = (int32_t)(1000 * i + k);
            mask[k] = !all_masked && k >= prompt;
        }
        FT_CHECK_OK(ft_examples_add(ex, tok, mask, len));
    }
    free(tok);
    free(mask);
}

/* Checks every row of plan p against the examples; returns the number of pieces seen. */
static void check_plan(const ft_pack *p, const ft_examples *ex, const ft_pack_opts *o, const char *what) {
    const int64_t T = o->seq_len;
    int32_t *tk = malloc((size_t)T * 4), *lb = malloc((size_t)T * 4), *ps = malloc((size_t)T * 4),
            *ds = malloc((size_t)T * 4);
    int64_t *seen = calloc((size_t)ex->n, sizeof *seen);
    int64_t bad = 0, tokens = 0, targets = 0;
    for (int64_t r = 0; r < p->n_rows && bad < 5; r++) {
        ft_pack_row(p, ex, r, tk, lb, ps, ds);
        int64_t t = 0;
        if (o->strategy == FT_PACK_NONE && p->row_off[r + 1] - p->row_off[r] != 1) bad++;
        for (int64_t q = p->row_off[r]; q < p->row_off[r + 1]; q++) {
            int64_t e = p->piece_ex[q], L = p->piece_len[q], full = ft_examples_len(ex, e);
            seen[e]++;
            if (L != (full < T ? full : T)) bad++;
            for (int64_t i = 0; i < L; i++, t++) {
                int64_t g = ex->offsets[e] + i;
                int32_t want_label = (i + 1 < L && ex->mask[g + 1]) ? ex->tokens[g + 1] : -100;
                if (tk[t] != ex->tokens[g] || ps[t] != i || ds[t] != t - i || lb[t] != want_label) {
                    if (bad < 5)
                        printf("  %s row %lld slot %lld: tok %d pos %d doc %d label %d (want %d %lld %lld %d)\n", what,
                               (long long)r, (long long)t, tk[t], ps[t], ds[t], lb[t], ex->tokens[g], (long long)i,
                               (long long)(t - i), want_label);
                    bad++;
                }
                /* a label always comes from the same example: tokens are 1000*ex + pos */
                if (lb[t] >= 0 && lb[t] / 1000 != tk[t] / 1000) bad++;
                targets += lb[t] >= 0;
            }
        }
        tokens += t;
        if (t > T) bad++;
        for (; t < T; t++)
            if (tk[t] != o->pad_id || lb[t] != -100 || ps[t] != 0 || ds[t] != t) bad++;
    }
    FT_CHECK(bad == 0, "%s: %lld bad slots", what, (long long)bad);
    int64_t once = 1, placed = 0;
    for (int64_t e = 0; e < ex->n; e++) {
        once &= seen[e] <= 1;
        placed += seen[e];
    }
    const ft_pack_stats *s = &p->stats;
    FT_CHECK(once && placed == s->examples_packed, "%s: every example at most once (%lld placed, %lld stated)", what,
             (long long)placed, (long long)s->examples_packed);
    FT_CHECK(tokens == s->tokens && targets == s->targets && s->slots == p->n_rows * T,
             "%s: stats tokens %lld/%lld targets %lld/%lld", what, (long long)tokens, (long long)s->tokens,
             (long long)targets, (long long)s->targets);
    FT_CHECK(s->examples_packed + s->dropped_long + s->dropped_empty == s->examples_in, "%s: counts add up", what);
    free(tk), free(lb), free(ps), free(ds), free(seen);
}

static void test_strategies(void) {
    ft_examples ex;
    make_examples(&ex, 3000, 700, 42);
    /* expected counts, computed directly */
    const int64_t T = 512;
    int64_t n_long = 0, empty_trunc = 0, empty_drop = 0, cut = 0, cut_longest = 0;
    for (int64_t e = 0; e < ex.n; e++) {
        int64_t len = ft_examples_len(&ex, e), tg = 0, all = 0;
        for (int64_t k = 1; k < (len < T ? len : T); k++) tg += ex.mask[ex.offsets[e] + k];
        for (int64_t k = 1; k < len; k++) all += ex.mask[ex.offsets[e] + k];
        if (len > T) n_long++;
        if (tg == 0) empty_trunc++;
        if (len <= T && tg == 0) empty_drop++;
        if (len > T && tg == 0 && all > 0) cut++, cut_longest = len > cut_longest ? len : cut_longest;
    }
    FT_CHECK(cut > 0, "the examples include some whose targets all lie past seq_len (%lld)", (long long)cut);
    static const char *names[] = {"bfd", "sequential", "none"};
    for (int strat = 0; strat < 3; strat++) {
        for (int pol = 0; pol < 2; pol++) {
            ft_pack_opts o = {.seq_len = T, .strategy = (ft_pack_strategy)strat, .long_policy = (ft_long_policy)pol,
                              .pad_id = 7};
            ft_pack p;
            FT_CHECK_OK(ft_pack_build(&ex, &o, &p));
            char what[64], line[256];
            snprintf(what, sizeof what, "%s/%s", names[strat], pol ? "drop" : "truncate");
            check_plan(&p, &ex, &o, what);
            const ft_pack_stats *s = &p.stats;
            if (pol == 0) {
                int64_t trunc_kept = 0; /* long examples that still have a target after truncation */
                for (int64_t e = 0; e < ex.n; e++) {
                    int64_t tg = 0;
                    if (ft_examples_len(&ex, e) <= T) continue;
                    for (int64_t k = 1; k < T; k++) tg += ex.mask[ex.offsets[e] + k];
                    trunc_kept += tg > 0;
                }
                FT_CHECK(s->truncated == trunc_kept && s->dropped_long == 0 && s->dropped_empty == empty_trunc,
                         "%s: truncated %lld (want %lld) dropped_empty %lld (want %lld)", what, (long long)s->truncated,
                         (long long)trunc_kept, (long long)s->dropped_empty, (long long)empty_trunc);
                /* of those, the ones truncation emptied: named apart (a longer seq_len keeps them) */
                FT_CHECK(s->dropped_cut == cut && s->cut_longest == cut_longest, "%s: dropped_cut %lld (want %lld), longest %lld (want %lld)",
                         what, (long long)s->dropped_cut, (long long)cut, (long long)s->cut_longest, (long long)cut_longest);
            } else {
                FT_CHECK(s->dropped_cut == 0, "%s: dropped_cut %lld under drop (long ones count as too long)", what,
                         (long long)s->dropped_cut);
                FT_CHECK(s->truncated == 0 && s->dropped_long == n_long && s->dropped_empty == empty_drop,
                         "%s: dropped_long %lld (want %lld) dropped_empty %lld (want %lld)", what,
                         (long long)s->dropped_long, (long long)n_long, (long long)s->dropped_empty,
                         (long long)empty_drop);
            }
            int64_t lower = (s->tokens + T - 1) / T;
            ft_pack_stats_str(s, line, sizeof line);
            printf("%-16s %s (lower bound %lld rows)\n", what, line, (long long)lower);
            if (strat == FT_PACK_BFD) FT_CHECK(s->rows <= lower + lower / 50 + 1, "bfd within 2%% of the bound");
            /* deterministic: same plan twice */
            ft_pack p2;
            FT_CHECK_OK(ft_pack_build(&ex, &o, &p2));
            FT_CHECK(ft_pack_hash(&p) == ft_pack_hash(&p2) && p.n_rows == p2.n_rows, "%s deterministic", what);
            ft_pack_free(&p2);
            ft_pack_free(&p);
        }
    }
    ft_examples_free(&ex);
}

/* A small hand-made case with exact expected rows. */
static void test_exact(void) {
    ft_examples ex;
    ft_examples_init(&ex);
    int32_t a[] = {10, 11, 12, 13}, b[] = {20, 21, 22}, c[] = {30, 31, 32, 33, 34, 35, 36, 37, 38, 39};
    uint8_t ma[] = {0, 0, 1, 1}, mb[] = {1, 1, 1}, mc[] = {0, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    FT_CHECK_OK(ft_examples_add(&ex, a, ma, 4));
    FT_CHECK_OK(ft_examples_add(&ex, b, mb, 3));
    FT_CHECK_OK(ft_examples_add(&ex, c, mc, 10));
    ft_pack_opts o = {.seq_len = 8, .strategy = FT_PACK_SEQUENTIAL, .long_policy = FT_LONG_TRUNCATE, .pad_id = 0};
    ft_pack p;
    FT_CHECK_OK(ft_pack_build(&ex, &o, &p));
    FT_CHECK(p.n_rows == 2 && p.stats.truncated == 1, "rows %lld", (long long)p.n_rows);
    int32_t tk[8], lb[8], ps[8], ds[8];
    ft_pack_row(&p, &ex, 0, tk, lb, ps, ds);
    const int32_t wt[] = {10, 11, 12, 13, 20, 21, 22, 0}, wl[] = {-100, 12, 13, -100, 21, 22, -100, -100},
                  wp[] = {0, 1, 2, 3, 0, 1, 2, 0}, wd[] = {0, 0, 0, 0, 4, 4, 4, 7};
    FT_CHECK(!memcmp(tk, wt, sizeof wt) && !memcmp(lb, wl, sizeof wl) && !memcmp(ps, wp, sizeof wp) &&
                 !memcmp(ds, wd, sizeof wd),
             "row 0 exact");
    ft_pack_row(&p, &ex, 1, tk, lb, ps, ds);
    const int32_t wl1[] = {31, 32, 33, 34, 35, 36, 37, -100}; /* truncated: the last kept token has no label */
    FT_CHECK(!memcmp(lb, wl1, sizeof wl1) && ps[7] == 7 && ds[7] == 0, "row 1 truncated");
    FT_CHECK(p.stats.targets == 2 + 2 + 7 && p.stats.tokens == 15, "targets %lld", (long long)p.stats.targets);
    ft_pack_free(&p);

    /* BFD puts the 3-token example beside the 4-token one? T=8: 8(c) | 4+3 -> 2 rows */
    o.strategy = FT_PACK_BFD;
    FT_CHECK_OK(ft_pack_build(&ex, &o, &p));
    FT_CHECK(p.n_rows == 2 && p.piece_ex[0] == 2 && p.piece_ex[1] == 0 && p.piece_ex[2] == 1, "bfd order");
    ft_pack_free(&p);
    o.seq_len = 1;
    FT_CHECK(ft_pack_build(&ex, &o, &p) == FT_E_ARG, "seq_len 1 rejected");
    ft_examples_free(&ex);
}

static void test_split(void) {
    ft_examples ex, tr, va, tr2, va2;
    make_examples(&ex, 101, 30, 7);
    FT_CHECK_OK(ft_examples_split(&ex, 0.1, 1234, &tr, &va));
    FT_CHECK(va.n == 10 && tr.n == 91 && tr.n_tokens + va.n_tokens == ex.n_tokens, "split sizes %lld/%lld",
             (long long)tr.n, (long long)va.n);
    FT_CHECK_OK(ft_examples_split(&ex, 0.1, 1234, &tr2, &va2));
    FT_CHECK(va2.n_tokens == va.n_tokens && !memcmp(va.tokens, va2.tokens, (size_t)va.n_tokens * 4), "same seed same split");
    ft_examples_free(&tr2);
    ft_examples_free(&va2);
    FT_CHECK_OK(ft_examples_split(&ex, 0.1, 999, &tr2, &va2));
    FT_CHECK(va2.n == 10 && (va2.n_tokens != va.n_tokens || memcmp(va.tokens, va2.tokens, (size_t)va.n_tokens * 4)),
             "other seed other split");
    /* disjoint and covering: every example's first token (1000*i) lands in exactly one side */
    int *cnt = calloc(101, sizeof *cnt);
    for (int64_t i = 0; i < tr.n; i++) cnt[tr.tokens[tr.offsets[i]] / 1000]++;
    for (int64_t i = 0; i < va.n; i++) cnt[va.tokens[va.offsets[i]] / 1000]++;
    int ok = 1;
    for (int i = 0; i < 101; i++) ok &= cnt[i] == 1;
    FT_CHECK(ok, "split is a partition");
    free(cnt);
    ft_examples_free(&tr), ft_examples_free(&va), ft_examples_free(&tr2), ft_examples_free(&va2);
    FT_CHECK(ft_examples_split(&ex, 1.0, 1, &tr, &va) == FT_E_ARG, "fraction 1 rejected");
    FT_CHECK_OK(ft_examples_split(&ex, 0.0, 1, &tr, &va));
    FT_CHECK(tr.n == 101 && va.n == 0, "fraction 0");
    ft_examples_free(&tr), ft_examples_free(&va);
    ft_examples_free(&ex);
}

static int same_examples(const ft_examples *a, const ft_examples *b) {
    return a->n == b->n && a->n_tokens == b->n_tokens &&
           !memcmp(a->offsets, b->offsets, (size_t)(a->n + 1) * sizeof *a->offsets) &&
           (!a->n_tokens || (!memcmp(a->tokens, b->tokens, (size_t)a->n_tokens * sizeof *a->tokens) &&
                             !memcmp(a->mask, b->mask, (size_t)a->n_tokens)));
}

/* ft_examples_split_move gives ft_examples_split's examples without copying the training tokens:
 * the dataset's peak memory is one copy of the data, not two (docs/perf.md, "Data pipeline at
 * scale"). The training set keeps the input's buffers, and only the validation tokens are new. */
static void test_split_move(void) {
    static const double fr[] = {0.0, 0.01, 0.1, 0.37, 0.5};
    for (size_t f = 0; f < sizeof fr / sizeof *fr; f++) {
        for (uint64_t seed = 1; seed <= 3; seed++) {
            ft_examples ex, tr, va, tr2, va2;
            make_examples(&ex, 257, 40, seed);
            FT_CHECK_OK(ft_examples_split(&ex, fr[f], seed * 77, &tr, &va));
            const int32_t *buf = ex.tokens;
            FT_CHECK_OK(ft_examples_split_move(&ex, fr[f], seed * 77, &tr2, &va2));
            FT_CHECK(ex.n == 0 && !ex.tokens && !ex.offsets, "the input is moved out");
            FT_CHECK(same_examples(&tr, &tr2) && same_examples(&va, &va2), "split_move == split (fraction %g)", fr[f]);
            if (fr[f] == 0.0) FT_CHECK(tr2.tokens == buf, "fraction 0: the training set is the input, not a copy");
            /* still a growable set: an append after the in-place compaction and the shrink */
            const int32_t more[3] = {7, 8, 9};
            FT_CHECK_OK(ft_examples_add(&tr2, more, NULL, 3));
            FT_CHECK(tr2.n == tr.n + 1 && tr2.tokens[tr2.n_tokens - 1] == 9 && tr2.mask[tr2.n_tokens - 1] == 1,
                     "append after split_move");
            ft_examples_free(&tr), ft_examples_free(&va), ft_examples_free(&tr2), ft_examples_free(&va2);
        }
    }
    ft_examples ex, tr, va;
    make_examples(&ex, 5, 10, 1);
    FT_CHECK(ft_examples_split_move(&ex, 1.0, 1, &tr, &va) == FT_E_ARG && ex.n == 5, "a refused split leaves the input");
    ft_examples_free(&ex);
}

/* Packing efficiency on a real file, bytes standing in for tokens. */
static void test_real_sample(void) {
    char path[1024];
    snprintf(path, sizeof path, "%s/assets/datasets/mlx-wikisql-text/train.jsonl", ft_test_shared_dir());
    FILE *f = fopen(path, "rb");
    if (!f) {
        printf("skip: %s not found\n", path);
        return;
    }
    ft_examples ex;
    ft_examples_init(&ex);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int32_t *tok = malloc(1 << 20);
    while ((n = getline(&line, &cap, f)) > 0) {
        for (ssize_t i = 0; i < n; i++) tok[i] = (unsigned char)line[i];
        FT_CHECK_OK(ft_examples_add(&ex, tok, NULL, n));
    }
    fclose(f);
    free(line);
    free(tok);
    for (int strat = 0; strat < 3; strat++) {
        ft_pack_opts o = {.seq_len = 2048, .strategy = (ft_pack_strategy)strat};
        ft_pack p;
        FT_CHECK_OK(ft_pack_build(&ex, &o, &p));
        char s[256];
        ft_pack_stats_str(&p.stats, s, sizeof s);
        printf("wikisql bytes T=2048 %-10s %s\n", strat == 0 ? "bfd" : strat == 1 ? "sequential" : "none", s);
        if (strat == 0) FT_CHECK(p.stats.rows <= (p.stats.tokens + 2047) / 2048 + 3, "bfd within 3 rows of the bound on wikisql");
        ft_pack_free(&p);
    }
    ft_examples_free(&ex);
}

/* Row identity: the first token of a row (tokens are 1000*example + position, so unique). */
static int64_t row_of(const ft_pack *p, const ft_examples *ex, int32_t first_token) {
    for (int64_t r = 0; r < p->n_rows; r++)
        if (ex->tokens[ex->offsets[p->piece_ex[p->row_off[r]]]] == first_token) return r;
    return -1;
}

static void test_batcher(void) {
    ft_examples ex;
    make_examples(&ex, 500, 300, 99);
    ft_pack_opts po = {.seq_len = 256, .strategy = FT_PACK_BFD, .pad_id = 3};
    ft_pack p;
    FT_CHECK_OK(ft_pack_build(&ex, &po, &p));
    const int64_t rows = p.n_rows, B = 4, T = p.seq_len;
    ft_batcher *b;
    ft_batcher_opts bo = {.batch_rows = B, .mode = FT_BATCH_TRAIN, .seed = 1234};
    FT_CHECK_OK(ft_batcher_create(&b, &p, &ex, &bo));
    ft_row_batch bt;
    FT_CHECK_OK(ft_row_batch_alloc(b, &bt));
    /* three epochs: each row exactly once per epoch, orders differ between epochs */
    int64_t *order = malloc((size_t)(3 * rows + B) * sizeof *order), n = 0;
    int64_t targets = 0, want_targets = 0;
    while (n < 3 * rows) {
        FT_CHECK_OK(ft_batcher_next(b, &bt));
        for (int64_t i = 0; i < B; i++) order[n++] = row_of(&p, &ex, bt.tokens[i * T]);
        int64_t c = 0;
        for (int64_t t = 0; t < B * T; t++) c += bt.labels[t] != -100;
        FT_CHECK(c == bt.n_targets && bt.n_rows == B, "batch target count");
        targets += bt.n_targets;
    }
    want_targets = 3 * p.stats.targets; /* n == 3*rows exactly only if rows % B == 0; compare per epoch below */
    int ok = 1;
    for (int e = 0; e < 3; e++) {
        int *seen = calloc((size_t)rows, sizeof *seen);
        for (int64_t i = e * rows; i < (e + 1) * rows; i++) ok &= order[i] >= 0 && ++seen[order[i]] == 1;
        free(seen);
    }
    FT_CHECK(ok, "every row once per epoch (%lld rows)", (long long)rows);
    FT_CHECK(memcmp(order, order + rows, (size_t)rows * sizeof *order) != 0, "epochs 0 and 1 in different orders");
    if (n == 3 * rows) FT_CHECK(targets == want_targets, "targets over 3 epochs");
    FT_CHECK(ft_batcher_batches_per_epoch(b) == (rows + B - 1) / B, "batches per epoch");

    /* resume: state after 7 batches, then 2 epochs' worth compared byte for byte */
    ft_batcher *b1, *b2;
    FT_CHECK_OK(ft_batcher_create(&b1, &p, &ex, &bo));
    for (int i = 0; i < 7; i++) FT_CHECK_OK(ft_batcher_next(b1, &bt));
    ft_batcher_state saved;
    ft_batcher_get_state(b1, &saved);
    FT_CHECK(saved.epoch == (7 * B) / rows && saved.index == (7 * B) % rows, "state after 7 batches");
    ft_examples ex_copy; /* a fresh process would rebuild the plan from the shards */
    int64_t *all = malloc((size_t)ex.n * sizeof *all);
    for (int64_t i = 0; i < ex.n; i++) all[i] = i;
    FT_CHECK_OK(ft_examples_subset(&ex, all, ex.n, &ex_copy));
    free(all);
    ft_pack p2;
    FT_CHECK_OK(ft_pack_build(&ex_copy, &po, &p2));
    FT_CHECK_OK(ft_batcher_create(&b2, &p2, &ex_copy, &bo));
    FT_CHECK_OK(ft_batcher_set_state(b2, &saved));
    ft_row_batch x1, x2;
    FT_CHECK_OK(ft_row_batch_alloc(b1, &x1));
    FT_CHECK_OK(ft_row_batch_alloc(b2, &x2));
    int same = 1;
    for (int64_t i = 0; i < 2 * rows / B + 3; i++) {
        FT_CHECK_OK(ft_batcher_next(b1, &x1));
        FT_CHECK_OK(ft_batcher_next(b2, &x2));
        size_t bytes = (size_t)(B * T) * 4;
        same &= !memcmp(x1.tokens, x2.tokens, bytes) && !memcmp(x1.labels, x2.labels, bytes) &&
                !memcmp(x1.positions, x2.positions, bytes) && !memcmp(x1.doc_start, x2.doc_start, bytes) &&
                x1.epoch == x2.epoch;
    }
    FT_CHECK(same, "resumed cursor yields identical batches across epoch boundaries");
    ft_row_batch_free(&x1);
    ft_row_batch_free(&x2);

    /* refused states */
    ft_pack_opts po3 = po;
    po3.seq_len = 300;
    ft_pack p3;
    FT_CHECK_OK(ft_pack_build(&ex, &po3, &p3));
    ft_batcher *b3;
    FT_CHECK_OK(ft_batcher_create(&b3, &p3, &ex, &bo));
    FT_CHECK(ft_batcher_set_state(b3, &saved) == FT_E_ARG && strstr(ft_error_msg(), "packing options changed"),
             "state of another plan refused: %s", ft_error_msg());
    ft_batcher_free(b3);
    ft_batcher_opts bo4 = bo;
    bo4.seed = 5;
    FT_CHECK_OK(ft_batcher_create(&b3, &p, &ex, &bo4));
    FT_CHECK(ft_batcher_set_state(b3, &saved) == FT_E_ARG && strstr(ft_error_msg(), "seed"), "other seed refused");
    ft_batcher_free(b3);

    /* eval: rows in order, last batch padded, then empty */
    ft_batcher *ev;
    ft_batcher_opts eo = {.batch_rows = B, .mode = FT_BATCH_EVAL};
    FT_CHECK_OK(ft_batcher_create(&ev, &p, &ex, &eo));
    int64_t got = 0, in_order = 1, tg = 0, pad_ok = 1;
    for (;;) {
        FT_CHECK_OK(ft_batcher_next(ev, &bt));
        if (bt.n_rows == 0) break;
        for (int64_t i = 0; i < bt.n_rows; i++) in_order &= row_of(&p, &ex, bt.tokens[i * T]) == got + i;
        for (int64_t i = bt.n_rows; i < B; i++)
            for (int64_t t = 0; t < T; t++) pad_ok &= bt.labels[i * T + t] == -100 && bt.doc_start[i * T + t] == t;
        got += bt.n_rows;
        tg += bt.n_targets;
    }
    FT_CHECK(got == rows && in_order && pad_ok && tg == p.stats.targets, "eval pass: %lld rows in order, padded tail",
             (long long)got);
    ft_batcher_free(ev);

    ft_batcher_free(b);
    ft_batcher_free(b1);
    ft_batcher_free(b2);
    ft_row_batch_free(&bt);
    free(order);
    ft_pack_free(&p);
    ft_pack_free(&p2);
    ft_pack_free(&p3);
    ft_examples_free(&ex);
    ft_examples_free(&ex_copy);
}

int main(void) {
    test_exact();
    test_strategies();
    test_split();
    test_split_move();
    test_real_sample();
    test_batcher();
    return ft_test_finish();
}
