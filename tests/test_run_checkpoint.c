/* test_run_checkpoint.c: the checkpoint file (trainer/checkpoint.h).
 *   - round trip: every scalar of the state (doubles bit for bit, u64 above 2^53) and the three
 *     f32 vectors (special values included) come back exactly;
 *   - every single-byte corruption of a checkpoint (each byte of the file XOR 0x01, in turn) and
 *     truncations to many lengths are refused with "PATH: checksum mismatch (file corrupt)";
 *   - a checkpoint of an older version (no "validation" record, no divergence state in "guard")
 *     reads with those fields as "none yet";
 *   - intact files (checksum redone) that are no checkpoint of this build (a newer version, other
 *     magic, sections or payload that disagree with the header, metadata that is not JSON) are
 *     refused, each by its own message naming the file;
 *   - a write into a missing directory fails with FT_E_IO and leaves nothing;
 *   - listing (ascending steps, temporary and foreign names ignored), pruning to the last K, and
 *     removal of temporary files left by a killed write;
 *   - pruning also removes a rollback's set-aside "*.ckpt.superseded" files once rotation has
 *     passed their step (before: kept for good, up to checkpoint.keep - 1 per rollback). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "kernels/le.h"
#include "kernels/rng.h"
#include "tests/harness.h"
#include "trainer/checkpoint.h"

#define N 1000

static int same_double(double a, double b) { return memcmp(&a, &b, sizeof a) == 0; }

static void touch(const char *dir, const char *name) {
    char p[8400];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    if (f) fclose(f);
}

static int exists(const char *dir, const char *name) {
    char p[8400];
    struct stat sb;
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return stat(p, &sb) == 0;
}

int main(void) {
    const char *tmp = ft_test_tmpdir();
    char path[4096];
    ft_ckpt_path(path, sizeof path, tmp, 120);
    FT_CHECK(strstr(path, "/step-000120.ckpt") != NULL, "path format: %s", path);

    /* ---- round trip ---- */
    ft_ckpt_state s = {.step = 120, .steps_total = 600, .seed = 0xfedcba9876543210ull, .n_params = N, .lora_r = 8,
                       .lora_layers = 5, .lora_targets = 0x7f, .adamw_t = 118,
                       .cursor = {.seed = 18446744073709551615ull, .epoch = 3, .index = 7, .rows = 40,
                                  .plan_hash = 0x8000000000000001ull},
                       .guard = {.n = 110, .mean = 1.0 / 3.0, .var = 1e-300, .consecutive = 2, .skipped = 5,
                                 .best = 0.1, .best_step = 17, .above = 4, .above_from = 113},
                       .val = {.loss = 2.0 / 3.0, .step = 96, .since = 2},
                       .elapsed_s = 12345.678901234567, .tokens_seen = 9876543210};
    float *v = malloc(3 * N * sizeof *v);
    ft_rng rng = {42};
    for (int i = 0; i < 3 * N; i++) v[i] = (ft_rng_uniform(&rng) - 0.5f) * 1e-3f;
    v[0] = -0.0f, v[1] = 1e-42f /* denormal */, v[2] = INFINITY, v[3] = 3.4e38f;
    FT_CHECK_OK(ft_ckpt_write(path, &s, v, v + N, v + 2 * N));
    {   /* the plan's bound holds, here for values that barely compress */
        struct stat sb;
        FT_CHECK(stat(path, &sb) == 0 && sb.st_size <= ft_ckpt_max_bytes(N) && sb.st_size > 8 * N,
                 "checkpoint of %d parameters: %lld bytes, the plan's bound %lld", N, (long long)sb.st_size,
                 (long long)ft_ckpt_max_bytes(N));
    }
    ft_ckpt_state r;
    float *back = NULL;
    FT_CHECK_OK(ft_ckpt_read(path, &r, &back));
    FT_CHECK(back && memcmp(back, v, 3 * N * sizeof *v) == 0, "tensors round trip bit for bit");
    FT_CHECK(r.step == s.step && r.steps_total == s.steps_total && r.seed == s.seed && r.n_params == s.n_params &&
                 r.lora_r == s.lora_r && r.lora_layers == s.lora_layers && r.lora_targets == s.lora_targets &&
                 r.adamw_t == s.adamw_t && r.tokens_seen == s.tokens_seen,
             "integer state round trips");
    FT_CHECK(r.cursor.seed == s.cursor.seed && r.cursor.epoch == s.cursor.epoch && r.cursor.index == s.cursor.index &&
                 r.cursor.rows == s.cursor.rows && r.cursor.plan_hash == s.cursor.plan_hash,
             "data cursor round trips (u64 seed %llu)", (unsigned long long)r.cursor.seed);
    FT_CHECK(r.guard.n == s.guard.n && same_double(r.guard.mean, s.guard.mean) && same_double(r.guard.var, s.guard.var) &&
                 r.guard.consecutive == s.guard.consecutive && r.guard.skipped == s.guard.skipped &&
                 same_double(r.elapsed_s, s.elapsed_s),
             "doubles round trip bit for bit");
    FT_CHECK(same_double(r.guard.best, s.guard.best) && r.guard.best_step == s.guard.best_step &&
                 r.guard.above == s.guard.above && r.guard.above_from == s.guard.above_from,
             "the divergence guard's state round trips (above %lld from step %lld)", (long long)r.guard.above,
             (long long)r.guard.above_from);
    FT_CHECK(same_double(r.val.loss, s.val.loss) && r.val.step == s.val.step && r.val.since == s.val.since,
             "the validation record round trips");
    free(back);

    /* ---- every single-byte corruption ---- */
    char *file = NULL;
    int64_t size = 0;
    FT_CHECK_OK(ft_test_read_file(path, &file, &size));
    char bad[4200];
    snprintf(bad, sizeof bad, "%s/bad.ckpt", tmp);
    int64_t undetected = 0, wrong_msg = 0;
    for (int64_t i = 0; i < size; i++) {
        file[i] ^= 1;
        FILE *f = fopen(bad, "wb");
        fwrite(file, 1, (size_t)size, f);
        fclose(f);
        file[i] ^= 1;
        float *d = NULL;
        ft_status st = ft_ckpt_read(bad, &r, &d);
        free(d);
        if (st == FT_OK) undetected++;
        else if (st != FT_E_FORMAT || !strstr(ft_error_msg(), "bad.ckpt: checksum mismatch (file corrupt)")) wrong_msg++;
    }
    FT_CHECK(undetected == 0 && wrong_msg == 0, "all %lld single-byte flips detected (%lld undetected, %lld other messages)",
             (long long)size, (long long)undetected, (long long)wrong_msg);
    printf("single-byte corruption: %lld of %lld flips detected\n", (long long)(size - undetected), (long long)size);
    undetected = 0;
    int64_t tried = 0;
    for (int64_t len = 0; len < size; len += len < 64 ? 1 : 97, tried++) {
        FILE *f = fopen(bad, "wb");
        fwrite(file, 1, (size_t)len, f);
        fclose(f);
        float *d = NULL;
        ft_status st = ft_ckpt_read(bad, &r, &d);
        free(d);
        if (st == FT_OK || !strstr(ft_error_msg(), "checksum mismatch (file corrupt)")) undetected++;
    }
    FT_CHECK(undetected == 0, "all %lld truncations detected", (long long)tried);

    /* ---- a checkpoint of the version before the divergence guard and eval.keep_best ---- */
    {
        const uint64_t meta_len = ft_get_u64((const uint8_t *)file + 16);
        char *old = malloc((size_t)size), *o = old + 32;
        memcpy(old, file, 32);
        for (const char *l = file + 32, *end = file + 32 + meta_len; l < end;) {
            const char *nl = memchr(l, '\n', (size_t)(end - l));
            size_t len = nl ? (size_t)(nl - l) + 1 : (size_t)(end - l);
            const char *cut = memmem(l, len, ", \"best\":", 9);
            if (strncmp(l, "  \"validation\":", 15) == 0) {
                /* dropped */
            } else if (strncmp(l, "  \"guard\":", 10) == 0 && cut) {
                memcpy(o, l, (size_t)(cut - l)), o += cut - l;
                memcpy(o, "},\n", 3), o += 3;
            } else {
                memcpy(o, l, len), o += len;
            }
            l += len;
        }
        const int64_t rest = size - 32 - (int64_t)meta_len, old_size = (o - old) + rest;
        ft_put_u64((uint8_t *)old + 16, (uint64_t)(o - old - 32));
        memcpy(o, file + 32 + meta_len, (size_t)rest);
        ft_put_u64((uint8_t *)old + old_size - 8, XXH3_64bits(old, (size_t)(old_size - 8)));
        FILE *f = fopen(bad, "wb");
        fwrite(old, 1, (size_t)old_size, f);
        fclose(f);
        free(old);
        float *d = NULL;
        ft_status st = ft_ckpt_read(bad, &r, &d);
        FT_CHECK(st == FT_OK, "an older version's checkpoint reads: %s", ft_error_msg());
        FT_CHECK(old_size < size && r.guard.n == s.guard.n && r.guard.best == 0 && r.guard.above == 0 &&
                     r.guard.above_from == 0 && isnan(r.val.loss) && r.val.step == -1 && r.val.since == 0,
                 "its missing fields read as none yet (guard best %g, above %lld; validation step %lld)",
                 r.guard.best, (long long)r.guard.above, (long long)r.val.step);
        FT_CHECK(d && memcmp(d, v, 3 * N * sizeof *v) == 0, "its tensors read as written");
        free(d);
    }

    /* ---- intact files (their checksum redone) that are not this build's checkpoint: a newer
     * version, another format's bytes, a header whose sections disagree with the file, a payload
     * of the wrong size for n_params, metadata of another program: each refused by name, FT_E_FORMAT
     * (the checksum alone let none of these through before; each was read past the checksum) ---- */
    {
        static const struct { int64_t off; int width; uint64_t val; int bump; const char *want; } seal[] = {
            {8, 4, 2, 0, "bad.ckpt: checkpoint version 2 is not supported (this build reads version 1)"},
            {0, 4, 0x46554747, 0, "bad.ckpt: not an ftune checkpoint"},
            {16, 8, 0, 1, "bad.ckpt: checkpoint sections do not add up to the file size"},
            {24, 8, 12, 0, "bad.ckpt: payload of 12 bytes does not hold 3 x 1000 floats"},
            {32, 1, '[', 0, "bad.ckpt (checkpoint metadata)"},
        };
        for (size_t k = 0; k < sizeof seal / sizeof *seal; k++) {
            char *c = malloc((size_t)size);
            memcpy(c, file, (size_t)size);
            uint8_t *at = (uint8_t *)c + seal[k].off;
            if (seal[k].bump) ft_put_u64(at, ft_get_u64(at) + 1); /* meta_len + 1 */
            else if (seal[k].width == 8) ft_put_u64(at, seal[k].val);
            else if (seal[k].width == 4) ft_put_u32(at, (uint32_t)seal[k].val);
            else *at = (uint8_t)seal[k].val;
            ft_put_u64((uint8_t *)c + size - 8, XXH3_64bits(c, (size_t)(size - 8)));
            FILE *f = fopen(bad, "wb");
            fwrite(c, 1, (size_t)size, f);
            fclose(f);
            free(c);
            float *d = NULL;
            ft_status st = ft_ckpt_read(bad, &r, &d);
            free(d);
            FT_CHECK(st == FT_E_FORMAT && strstr(ft_error_msg(), seal[k].want), "want \"%s\": %s", seal[k].want,
                     st ? ft_error_msg() : "read");
        }
    }
    free(file);

    /* ---- failed write leaves nothing ---- */
    char nodir[4200];
    snprintf(nodir, sizeof nodir, "%s/missing/step-000001.ckpt", tmp);
    ft_status st = ft_ckpt_write(nodir, &s, v, v + N, v + 2 * N);
    FT_CHECK(st == FT_E_IO && strstr(ft_error_msg(), "missing/step-000001.ckpt"), "write into a missing dir: %s",
             ft_error_msg());

    /* ---- listing, pruning, temporary files ---- */
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/ck", tmp);
    mkdir(dir, 0777);
    const char *names[] = {"step-000005.ckpt", "step-000001.ckpt", "step-000010.ckpt", "step-1234567.ckpt",
                           "step-000003.ckpt", "step-000007.ckpt.tmp.999", "step-000002.ckpt.corrupt",
                           "step-12.ckpt", "notes.txt"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) touch(dir, names[i]);
    int64_t *steps = NULL, n = 0;
    FT_CHECK_OK(ft_ckpt_list(dir, &steps, &n));
    int64_t want[] = {1, 3, 5, 10, 1234567};
    FT_CHECK(n == 5 && steps && memcmp(steps, want, sizeof want) == 0, "list: %lld checkpoints in ascending order",
             (long long)n);
    free(steps);
    FT_CHECK_OK(ft_ckpt_prune(dir, 2));
    FT_CHECK(!exists(dir, "step-000001.ckpt") && !exists(dir, "step-000003.ckpt") && !exists(dir, "step-000005.ckpt") &&
                 exists(dir, "step-000010.ckpt") && exists(dir, "step-1234567.ckpt") &&
                 exists(dir, "step-000002.ckpt.corrupt") && exists(dir, "notes.txt"),
             "prune keeps the newest 2 and nothing else is touched");
    ft_ckpt_clean_tmp(dir);
    FT_CHECK(!exists(dir, "step-000007.ckpt.tmp.999") && exists(dir, "notes.txt"), "temporary file removed");

    /* ---- rollbacks' set-aside checkpoints are rotated too ----
     * each rollback renames the checkpoints after its target to step-N.ckpt.superseded; a soak of
     * 5 rollbacks at checkpoint.keep 7 left 9 of them (4.1 MB beside 1.8 MB kept) for good. Those
     * older than the oldest kept checkpoint go; the newer ones (the diverged state) and corrupt
     * ones (evidence) stay. Here: a rollback from step 28 to 8, then training on to step 36 */
    char rb[4200];
    snprintf(rb, sizeof rb, "%s/rb", tmp);
    mkdir(rb, 0777);
    for (int k = 12; k <= 28; k += 4) {
        char name[64];
        snprintf(name, sizeof name, "step-%06d.ckpt.superseded", k);
        touch(rb, name);
    }
    touch(rb, "step-000004.ckpt.corrupt");
    for (int k = 8; k <= 36; k += 4) {
        char name[64];
        snprintf(name, sizeof name, "step-%06d.ckpt", k);
        touch(rb, name);
        FT_CHECK_OK(ft_ckpt_prune(rb, 3)); /* as ft_run_save_checkpoint does after each write */
    }
    int left = 0;
    for (int k = 12; k <= 28; k += 4) {
        char name[64];
        snprintf(name, sizeof name, "step-%06d.ckpt.superseded", k);
        left += exists(rb, name);
    }
    FT_CHECK(left == 1 && exists(rb, "step-000028.ckpt.superseded") &&
                 exists(rb, "step-000028.ckpt") && !exists(rb, "step-000024.ckpt") && exists(rb, "step-000004.ckpt.corrupt"),
             "prune at keep 3 up to step 36: only step 28's superseded checkpoint is left (%d of 5), those "
             "before the oldest kept (28) are gone, the corrupt one stays", left);
    snprintf(nodir, sizeof nodir, "%s/nope", tmp);
    FT_CHECK_OK(ft_ckpt_list(nodir, &steps, &n));
    FT_CHECK(n == 0, "a missing directory lists as empty");
    free(v);
    return ft_test_finish();
}
