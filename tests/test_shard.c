/* test_shard.c: zstd example shards. An exact round trip of a multi-shard dataset (tokens, masks,
 * boundaries), no temporary files left behind, and clear errors naming the shard for a truncated
 * shard, a bit flip in the compressed data, a bit flip in the header, a missing shard, a shard
 * swapped between datasets, and a fingerprint mismatch; the index's length buckets. The load on 1
 * to 16 threads (each shard decompressed into its slice of a set reserved once) equals the
 * examples written and the former load's result (whole file, one-shot ZSTD_decompress, copy:
 * re-implemented here as the reference); with two bad shards the error names the first for any
 * thread count; an index whose counts disagree with a shard is refused before decoding. Shard file
 * names are told apart from other files. Prints read throughput (MB/s of shard files and of
 * payload, tokens/s). */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <xxhash.h>
#include <zstd.h>

#include "data/shard.h"
#include "kernels/rng.h"
#include "tests/harness.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Token ids with a skewed distribution (frequent small ids, a long tail up to 150k), roughly
 * like real text, so the compression ratio is not that of pure noise. */
static void make_examples(ft_examples *ex, int64_t target_tokens, uint64_t seed) {
    ft_examples_init(ex);
    ft_rng rng = {seed};
    int32_t *tok = malloc(4096 * sizeof *tok);
    uint8_t *mask = malloc(4096);
    while (ex->n_tokens < target_tokens) {
        int64_t len = 2 + (int64_t)(ft_rng_next(&rng) % 3000);
        int64_t prompt = (int64_t)(ft_rng_next(&rng) % (uint64_t)len);
        for (int64_t k = 0; k < len; k++) {
            uint64_t r = ft_rng_next(&rng);
            int bits = 4 + (int)(r % 14);
            tok[k] = (int32_t)((r >> 8) & ((1u << bits) - 1));
            mask[k] = k >= prompt;
        }
        FT_CHECK_OK(ft_examples_add(ex, tok, mask, len));
    }
    free(tok);
    free(mask);
}

static int same_examples(const ft_examples *a, const ft_examples *b) {
    return a->n == b->n && a->n_tokens == b->n_tokens &&
           !memcmp(a->offsets, b->offsets, (size_t)(a->n + 1) * 8) &&
           !memcmp(a->tokens, b->tokens, (size_t)a->n_tokens * 4) && !memcmp(a->mask, b->mask, (size_t)a->n_tokens);
}

static void copy_file(const char *from, const char *to, long truncate_by, long flip_at) {
    char *buf;
    int64_t len;
    FT_CHECK_OK(ft_test_read_file(from, &buf, &len));
    if (flip_at >= 0) buf[flip_at < 0 ? 0 : (flip_at < len ? flip_at : len - 1)] ^= 0x10;
    FILE *f = fopen(to, "wb");
    fwrite(buf, 1, (size_t)(len - truncate_by), f);
    fclose(f);
    free(buf);
}

static char dirbuf[1024];
static const char *subdir(const char *name) {
    snprintf(dirbuf, sizeof dirbuf, "%s/%s", ft_test_tmpdir(), name);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", dirbuf);
    if (system(cmd) != 0) printf("mkdir failed\n");
    return dirbuf;
}

static void test_roundtrip_and_speed(void) {
    ft_examples ex, back;
    make_examples(&ex, 24 << 20, 1);
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", subdir("big"));
    ft_shard_writer *w;
    ft_shard_writer_opts o = {.shard_tokens = 4 << 20, .fingerprint = "tok=abc;tmpl=llama3;mask=assistant"};
    double t0 = now_s();
    FT_CHECK_OK(ft_shard_writer_open(&w, dir, "train", &o));
    FT_CHECK_OK(ft_shard_writer_add_all(w, &ex));
    FT_CHECK_OK(ft_shard_writer_finish(w));
    double t_write = now_s() - t0;
    char idx[1100];
    snprintf(idx, sizeof idx, "%s/train.index.json", dir);
    ft_shard_info info;
    t0 = now_s();
    FT_CHECK_OK(ft_shards_load(idx, "tok=abc;tmpl=llama3;mask=assistant", &back, &info));
    double t_read = now_s() - t0;
    FT_CHECK(same_examples(&ex, &back), "exact round trip of %lld examples / %lld tokens", (long long)ex.n,
             (long long)ex.n_tokens);
    FT_CHECK(info.n_shards == 6 && info.n_tokens == ex.n_tokens && info.n_examples == ex.n, "info: %lld shards",
             (long long)info.n_shards);
    printf("shards: %lld examples, %lld tokens, %lld shards, %.1f MB payload -> %.1f MB files (ratio %.2f); "
           "write %.2f s\n",
           (long long)info.n_examples, (long long)info.n_tokens, (long long)info.n_shards, info.payload_bytes / 1e6,
           info.compressed_bytes / 1e6, (double)info.payload_bytes / (double)info.compressed_bytes, t_write);
    printf("shard read throughput: %.0f MB/s of files, %.0f MB/s of payload, %.1f M tokens/s (%.3f s)\n",
           info.compressed_bytes / 1e6 / t_read, info.payload_bytes / 1e6 / t_read, info.n_tokens / 1e6 / t_read,
           t_read);
    ft_examples_free(&back);

    /* no temporaries left behind */
    DIR *d = opendir(dir);
    struct dirent *de;
    int tmp = 0, files = 0;
    while ((de = readdir(d))) {
        tmp += strstr(de->d_name, ".tmp") != NULL;
        files += de->d_name[0] != '.';
    }
    closedir(d);
    FT_CHECK(tmp == 0 && files == 7, "6 shards + index, no temporaries (%d files, %d tmp)", files, tmp);

    /* reading one shard alone */
    char shard[1100];
    snprintf(shard, sizeof shard, "%s/train-00002.ftshard", dir);
    ft_examples one;
    ft_examples_init(&one);
    FT_CHECK_OK(ft_shard_read(shard, &one));
    FT_CHECK(one.n > 0 && one.n_tokens >= 4 << 20, "single shard read");
    ft_examples_free(&one);
    ft_examples_free(&ex);
}

/* Loading must fail with a message containing needle1 (the shard path) and needle2. */
static void expect_fail(const char *idx, const char *fp, const char *needle1, const char *needle2, const char *what) {
    ft_examples back;
    ft_status st = ft_shards_load(idx, fp, &back, NULL);
    FT_CHECK(st != FT_OK && strstr(ft_error_msg(), needle1) && strstr(ft_error_msg(), needle2),
             "%s: got %s \"%s\"", what, ft_status_str(st), ft_error_msg());
    if (st == FT_OK) ft_examples_free(&back);
    else printf("ok   %s -> %s\n", what, ft_error_msg());
}

static void test_corruption(void) {
    ft_examples ex;
    make_examples(&ex, 300000, 2);
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", subdir("small"));
    ft_shard_writer *w;
    ft_shard_writer_opts o = {.shard_tokens = 100000, .fingerprint = "fp1"};
    FT_CHECK_OK(ft_shard_writer_open(&w, dir, "ds", &o));
    FT_CHECK_OK(ft_shard_writer_add_all(w, &ex));
    FT_CHECK_OK(ft_shard_writer_finish(w));
    char idx[1100], s1[1100], keep[1200];
    snprintf(idx, sizeof idx, "%s/ds.index.json", dir);
    snprintf(s1, sizeof s1, "%s/ds-00001.ftshard", dir);
    snprintf(keep, sizeof keep, "%s.orig", s1);
    copy_file(s1, keep, 0, -1);
    ft_examples back;
    FT_CHECK_OK(ft_shards_load(idx, "fp1", &back, NULL));
    FT_CHECK(same_examples(&ex, &back), "small round trip");
    ft_examples_free(&back);

    copy_file(keep, s1, 100, -1);
    expect_fail(idx, "fp1", s1, "truncated", "truncated shard");
    copy_file(keep, s1, 0, 5000);
    expect_fail(idx, "fp1", s1, "corrupt", "bit flip in compressed data");
    copy_file(keep, s1, 0, 20);
    expect_fail(idx, "fp1", s1, "header checksum", "bit flip in header");
    copy_file(keep, s1, 0, 3);
    expect_fail(idx, "fp1", s1, "bad magic", "bit flip in magic");
    /* a shard cut inside its header */
    {
        char *buf;
        int64_t len;
        FT_CHECK_OK(ft_test_read_file(keep, &buf, &len));
        FILE *f = fopen(s1, "wb");
        fwrite(buf, 1, 40, f);
        fclose(f);
        free(buf);
    }
    expect_fail(idx, "fp1", s1, "shorter than the 80-byte header", "shard cut inside its header");
    /* a valid shard from another position: counts/number differ from the index entry */
    char s0[1100];
    snprintf(s0, sizeof s0, "%s/ds-00000.ftshard", dir);
    copy_file(s0, s1, 0, -1);
    expect_fail(idx, "fp1", s1, "does not match its index entry", "shard swapped for another");
    remove(s1);
    expect_fail(idx, "fp1", s1, "cannot open shard", "missing shard");
    copy_file(keep, s1, 0, -1);
    expect_fail(idx, "fp2", idx, "fingerprint \"fp1\"", "fingerprint mismatch");
    FT_CHECK_OK(ft_shards_load(idx, NULL, &back, NULL));
    ft_examples_free(&back);
    ft_examples_free(&ex);
}

/* The index's length buckets (what `ftune plan` reads for packed rows' attention): per power-of-two
 * bucket [min, 2 min) the examples, their tokens and squared lengths, counted here with a plain loop
 * over lengths of 1, 2, 3, 63, 64, 65, 1000, 4096 (one each; six buckets) across shards; empty buckets left out. */
static void test_lengths(void) {
    static const int64_t lens[] = {1, 2, 3, 63, 64, 65, 1000, 4096};
    const int n = (int)(sizeof lens / sizeof *lens);
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", subdir("lengths"));
    ft_shard_writer *w;
    ft_shard_writer_opts o = {.shard_tokens = 1000, .fingerprint = "fp"};
    int32_t *tok = calloc(4096, sizeof *tok);
    FT_CHECK_OK(ft_shard_writer_open(&w, dir, "ds", &o));
    for (int i = 0; i < n; i++) FT_CHECK_OK(ft_shard_writer_add(w, tok, NULL, lens[i]));
    FT_CHECK_OK(ft_shard_writer_finish(w));
    free(tok);
    double want[64][3] = {{0}};
    for (int i = 0; i < n; i++) {
        int b = 0;
        while (((int64_t)2 << b) <= lens[i]) b++;
        want[b][0] += 1, want[b][1] += (double)lens[i], want[b][2] += (double)(lens[i] * lens[i]);
    }
    char idx[1100], *text = NULL;
    int64_t len = 0;
    snprintf(idx, sizeof idx, "%s/ds.index.json", dir);
    FT_CHECK_OK(ft_test_read_file(idx, &text, &len));
    cJSON *j = cJSON_Parse(text);
    const cJSON *lj = cJSON_GetObjectItemCaseSensitive(j, "lengths"), *e;
    int rows = 0, nonempty = 0;
    for (int b = 0; b < 64; b++) nonempty += want[b][0] > 0;
    cJSON_ArrayForEach(e, lj) {
        int b = 0;
        const double lo = cJSON_GetArrayItem(e, 0) ? cJSON_GetArrayItem(e, 0)->valuedouble : -1;
        while (b < 63 && (double)((int64_t)1 << b) < lo) b++;
        FT_CHECK(cJSON_GetArraySize(e) == 4 && lo == (double)((int64_t)1 << b) && want[b][0] > 0, "bucket from %g", lo);
        for (int k = 0; k < 3 && cJSON_GetArraySize(e) == 4; k++)
            FT_CHECK(cJSON_GetArrayItem(e, k + 1)->valuedouble == want[b][k], "bucket %g field %d: %g, expected %g", lo,
                     k + 1, cJSON_GetArrayItem(e, k + 1)->valuedouble, want[b][k]);
        rows++;
    }
    FT_CHECK(rows == nonempty && nonempty == 6, "%d buckets in the index, %d non-empty counted", rows, nonempty);
    cJSON_Delete(j);
    free(text);
}

/* Writes ex as dataset "ds" in subdirectory sub: `lead` examples through ft_shard_writer_add first
 * (a shard begun before add_all), the rest through ft_shard_writer_add_all on `threads` threads. */
static void write_ds(const char *sub, const ft_examples *ex, int64_t lead, int threads, char *dir, size_t dlen) {
    snprintf(dir, dlen, "%s", subdir(sub));
    ft_shard_writer *w;
    ft_shard_writer_opts o = {.shard_tokens = 40000, .fingerprint = "fp", .threads = threads};
    FT_CHECK_OK(ft_shard_writer_open(&w, dir, "ds", &o));
    for (int64_t i = 0; i < lead; i++)
        FT_CHECK_OK(ft_shard_writer_add(w, ex->tokens + ex->offsets[i], ex->mask + ex->offsets[i], ft_examples_len(ex, i)));
    ft_examples rest = *ex; /* a view of examples lead.. (offsets stay absolute, as add_all reads them) */
    rest.offsets += lead, rest.n -= lead;
    FT_CHECK_OK(ft_shard_writer_add_all(w, &rest));
    FT_CHECK_OK(ft_shard_writer_finish(w));
}

/* Shards compressed on several threads (ft_shard_writer_add_all) are the same files, byte for byte
 * and the index included, as those of one thread adding one example at a time. */
static void test_threads(void) {
    ft_examples ex;
    make_examples(&ex, 1 << 20, 5);
    char ref[1024], dir[1024];
    write_ds("thr-ref", &ex, ex.n, 1, ref, sizeof ref);
    static const struct { int threads; int64_t lead; } cases[] = {{2, 0}, {3, 0}, {8, 0}, {3, 7}, {16, 1}};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        char sub[64];
        snprintf(sub, sizeof sub, "thr-%d-%lld", cases[c].threads, (long long)cases[c].lead);
        write_ds(sub, &ex, cases[c].lead, cases[c].threads, dir, sizeof dir);
        int files = 0, same = 1;
        DIR *d = opendir(ref);
        struct dirent *de;
        while ((de = readdir(d))) {
            if (de->d_name[0] == '.') continue;
            char a[1400], b[1400], *x = NULL, *y = NULL;
            int64_t lx = 0, ly = 0;
            snprintf(a, sizeof a, "%s/%s", ref, de->d_name);
            snprintf(b, sizeof b, "%s/%s", dir, de->d_name);
            FT_CHECK_OK(ft_test_read_file(a, &x, &lx));
            FT_CHECK_OK(ft_test_read_file(b, &y, &ly));
            same &= lx == ly && x && y && !memcmp(x, y, (size_t)lx);
            free(x), free(y);
            files++;
        }
        closedir(d);
        FT_CHECK(files > 20 && same, "%d threads after %lld examples: the same %d files", cases[c].threads,
                 (long long)cases[c].lead, files);
    }
    ft_examples_free(&ex);
}

static int exists(const char *dir, const char *f) {
    char p[1400];
    snprintf(p, sizeof p, "%s/%s", dir, f);
    FILE *fp = fopen(p, "rb");
    if (fp) fclose(fp);
    return fp != NULL;
}

/* A writer killed mid-file leaves its temporary (FILE.tmp.PID); the next writer of that dataset
 * removes it once the PID is gone, and leaves a running writer's and other datasets' alone. */
static void test_stale_tmp(void) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", subdir("stale"));
    pid_t dead = fork();
    if (dead == 0) _exit(0);
    waitpid(dead, NULL, 0);
    char f_dead[64], f_idx[64], f_live[64], f_other[64];
    snprintf(f_dead, sizeof f_dead, "ds-00003.ftshard.tmp.%ld", (long)dead);
    snprintf(f_idx, sizeof f_idx, "ds.index.json.tmp.%ld", (long)dead);
    snprintf(f_live, sizeof f_live, "ds-00004.ftshard.tmp.%ld", (long)getpid());
    snprintf(f_other, sizeof f_other, "dsx-00000.ftshard.tmp.%ld", (long)dead);
    const char *all[4] = {f_dead, f_idx, f_live, f_other};
    for (int i = 0; i < 4; i++) {
        char p[1400];
        snprintf(p, sizeof p, "%s/%s", dir, all[i]);
        FILE *fp = fopen(p, "wb");
        if (fp) fputs("partial", fp), fclose(fp);
    }
    ft_shard_writer *w;
    FT_CHECK_OK(ft_shard_writer_open(&w, dir, "ds", NULL));
    ft_shard_writer_abort(w);
    FT_CHECK(!exists(dir, f_dead) && !exists(dir, f_idx), "a killed writer's temporaries are removed");
    FT_CHECK(exists(dir, f_live) && exists(dir, f_other), "a running writer's and another dataset's are kept");
}

/* The load as it was before the slices: each shard file read whole, decompressed one-shot into a
 * buffer, checked, and appended example by example (the reference the new load must equal). */
static int old_load(const char *dir, const char *name, int64_t n_shards, ft_examples *ex) {
    ft_examples_init(ex);
    for (int64_t s = 0; s < n_shards; s++) {
        char path[1400], *buf = NULL;
        int64_t len = 0;
        snprintf(path, sizeof path, "%s/%s-%05lld.ftshard", dir, name, (long long)s);
        if (ft_test_read_file(path, &buf, &len) != FT_OK || len < 80) return 0;
        uint64_t n, nt, payload, xx;
        memcpy(&n, buf + 16, 8), memcpy(&nt, buf + 24, 8), memcpy(&payload, buf + 32, 8), memcpy(&xx, buf + 48, 8);
        uint8_t *p = malloc(payload);
        const size_t got = ZSTD_decompress(p, payload, buf + 80, (size_t)len - 80);
        int ok = got == payload && XXH3_64bits(p, payload) == xx;
        const int64_t *offs = (const int64_t *)p;
        const int32_t *tok = (const int32_t *)(p + (n + 1) * 8);
        const uint8_t *mask = (const uint8_t *)(tok + nt);
        for (uint64_t i = 0; ok && i < n; i++)
            ok = ft_examples_add(ex, tok + offs[i], mask + offs[i], offs[i + 1] - offs[i]) == FT_OK;
        free(p);
        free(buf);
        if (!ok) return 0;
    }
    return 1;
}

/* The load on 1..16 threads equals the examples written, the former load and the one-shard reader;
 * the set is reserved once (no doubling); the first bad shard is the error whatever the threads. */
static void test_load_threads(void) {
    ft_examples ex, ref, back;
    make_examples(&ex, 3 << 20, 11);
    char dir[1024], idx[1100];
    snprintf(dir, sizeof dir, "%s", subdir("load-threads"));
    ft_shard_writer *w;
    ft_shard_writer_opts o = {.shard_tokens = 150000, .fingerprint = "fp", .threads = 2};
    FT_CHECK_OK(ft_shard_writer_open(&w, dir, "ds", &o));
    FT_CHECK_OK(ft_shard_writer_add_all(w, &ex));
    FT_CHECK_OK(ft_shard_writer_finish(w));
    snprintf(idx, sizeof idx, "%s/ds.index.json", dir);
    ft_shard_info info;
    FT_CHECK_OK(ft_shards_load(idx, "fp", &back, &info));
    const int64_t n_shards = info.n_shards;
    FT_CHECK(n_shards >= 20 && old_load(dir, "ds", n_shards, &ref) && same_examples(&ref, &ex),
             "the former load's result is the examples written (%lld shards)", (long long)n_shards);
    ft_examples_free(&back);
    static const int threads[] = {1, 2, 3, 7, 16, 64, 0};
    for (size_t k = 0; k < sizeof threads / sizeof *threads; k++) {
        ft_shard_info ti;
        ft_status st = ft_shards_load_threads(idx, "fp", threads[k], &back, &ti);
        FT_CHECK(st == FT_OK && same_examples(&back, &ref) && back.offsets[0] == 0,
                 "%d threads: the same %lld examples", threads[k], (long long)back.n);
        FT_CHECK(st == FT_OK && back.cap_tokens == back.n_tokens + 1 && back.cap_examples == back.n + 1 &&
                     ti.n_shards == info.n_shards && ti.compressed_bytes == info.compressed_bytes &&
                     ti.payload_bytes == info.payload_bytes && ti.n_tokens == ex.n_tokens,
                 "%d threads: reserved exactly once (%lld tokens, capacity %lld), the same info", threads[k],
                 (long long)back.n_tokens, (long long)back.cap_tokens);
        if (st == FT_OK) ft_examples_free(&back);
    }
    /* the one-shard reader, appending shard after shard */
    ft_examples one;
    ft_examples_init(&one);
    for (int64_t s = 0; s < n_shards; s++) {
        char path[1400];
        snprintf(path, sizeof path, "%s/ds-%05lld.ftshard", dir, (long long)s);
        FT_CHECK_OK(ft_shard_read(path, &one));
    }
    FT_CHECK(same_examples(&one, &ref), "ft_shard_read shard by shard: the same examples");
    ft_examples_free(&one);

    /* shards 5 and 12 corrupt (12 first in time on some threads): shard 5 is named, for every count */
    char s5[1100], s12[1100], k5[1200], k12[1200];
    snprintf(s5, sizeof s5, "%s/ds-00005.ftshard", dir);
    snprintf(s12, sizeof s12, "%s/ds-00012.ftshard", dir);
    snprintf(k5, sizeof k5, "%s.orig", s5);
    snprintf(k12, sizeof k12, "%s.orig", s12);
    copy_file(s5, k5, 0, -1);
    copy_file(s12, k12, 0, -1);
    copy_file(k5, s5, 0, 3000);
    copy_file(k12, s12, 50, -1);
    for (size_t k = 0; k < 5; k++) {
        char what[64];
        snprintf(what, sizeof what, "two bad shards, %d threads", threads[k]);
        ft_status st = ft_shards_load_threads(idx, "fp", threads[k], &back, NULL);
        FT_CHECK(st == FT_E_FORMAT && strstr(ft_error_msg(), s5) && strstr(ft_error_msg(), "corrupt") &&
                     !strstr(ft_error_msg(), "00012") && back.n == 0 && back.tokens == NULL,
                 "%s: the first is named, the set freed: %s", what, ft_error_msg());
        ft_error_clear();
    }
    copy_file(k5, s5, 0, -1);
    for (size_t k = 0; k < 3; k++) {
        FT_CHECK(ft_shards_load_threads(idx, "fp", threads[k], &back, NULL) == FT_E_FORMAT &&
                     strstr(ft_error_msg(), s12) && strstr(ft_error_msg(), "truncated"),
                 "shard 12 truncated, %d threads: %s", threads[k], ft_error_msg());
        ft_error_clear();
    }
    copy_file(k12, s12, 0, -1);

    /* an index that sizes a slice larger than its shard (entry and totals both raised): refused from the
     * shard's header before anything is decoded into the set */
    char *text = NULL;
    int64_t len = 0;
    FT_CHECK_OK(ft_test_read_file(idx, &text, &len));
    cJSON *j = cJSON_Parse(text);
    free(text);
    cJSON *e3 = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "shards"), 3);
    const double nt3 = cJSON_GetObjectItemCaseSensitive(e3, "n_tokens")->valuedouble;
    cJSON_SetNumberValue(cJSON_GetObjectItemCaseSensitive(e3, "n_tokens"), nt3 + 1000);
    cJSON *tot = cJSON_GetObjectItemCaseSensitive(j, "n_tokens");
    cJSON_SetNumberValue(tot, tot->valuedouble + 1000);
    char idx2[1100];
    snprintf(idx2, sizeof idx2, "%s/ds2.index.json", dir);
    text = cJSON_Print(j);
    FILE *f = fopen(idx2, "w");
    fputs(text, f);
    fclose(f);
    cJSON_free(text);
    FT_CHECK(ft_shards_load_threads(idx2, "fp", 4, &back, NULL) == FT_E_FORMAT &&
                 strstr(ft_error_msg(), "ds-00003.ftshard: shard does not match its index entry"),
             "index counts above the shard's: %s", ft_error_msg());
    ft_error_clear();
    cJSON_SetNumberValue(tot, -5);
    text = cJSON_Print(j);
    f = fopen(idx2, "w");
    fputs(text, f);
    fclose(f);
    cJSON_free(text);
    FT_CHECK(ft_shards_load_threads(idx2, "fp", 4, &back, NULL) == FT_E_FORMAT &&
                 strstr(ft_error_msg(), "shard totals") && strstr(ft_error_msg(), "differ from the index"),
             "totals unlike the entries': %s", ft_error_msg());
    ft_error_clear();
    cJSON_Delete(j);
    ft_examples_free(&ref);
    ft_examples_free(&ex);
}

/* Which files are a dataset's: index, shards and writers' temporaries, and nothing else. */
static void test_file_names(void) {
    static const struct {
        const char *file, *name;
        long pid;
    } cases[] = {
        {"train-0123456789abcdef.index.json", "train-0123456789abcdef", 0},
        {"train-0123456789abcdef-00012.ftshard", "train-0123456789abcdef", 0},
        {"valid-0123456789abcdef-123456.ftshard", "valid-0123456789abcdef", 0},
        {"ds-00003.ftshard.tmp.4242", "ds", 4242},
        {"ds.index.json.tmp.77", "ds", 77},
        {"a.tmp.b.index.json.tmp.9", "a.tmp.b", 9},
        {"ds-0003.ftshard", NULL, 0},        /* four digits: not ours */
        {"ds00003.ftshard", NULL, 0},        /* no dash */
        {"-00003.ftshard", NULL, 0},         /* no name */
        {".index.json", NULL, 0},
        {"ds.index.json.bak", NULL, 0},
        {"ds.index.json.tmp.", NULL, 0},
        {"ds.index.json.tmp.12x", NULL, 0},
        {"ds.index.json.tmp.-3", NULL, 0},
        {"notes.txt", NULL, 0},
        {"ds-00003.ftshard.orig", NULL, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char name[64] = "";
        long pid = -1;
        const int got = ft_shard_file_parse(cases[i].file, name, sizeof name, &pid);
        FT_CHECK(cases[i].name ? got && strcmp(name, cases[i].name) == 0 && pid == cases[i].pid : !got,
                 "%s: %s (got %d \"%s\" pid %ld)", cases[i].file, cases[i].name ? cases[i].name : "not a dataset's",
                 got, got ? name : "", pid);
    }
}

int main(void) {
    test_file_names();
    test_load_threads();
    test_lengths();
    test_threads();
    test_stale_tmp();
    test_roundtrip_and_speed();
    test_corruption();
    return ft_test_finish();
}
