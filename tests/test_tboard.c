/* test_tboard.c: the TensorBoard event file (trainer/tboard.h) and metrics.jsonl's events
 * (trainer/metrics.h with a TensorBoard directory), read back with this file's own TFRecord and
 * protobuf parser:
 *   - CRC-32C against RFC 3720's vector ("123456789" -> 0xE3069283), in one call and in pieces,
 *     and TFRecord's mask;
 *   - every record's length and data CRCs; the first record is file_version "brain.Event:2", the
 *     second a SessionLog START (field 7) at step 0; then the written steps, wall times, tags and
 *     float values, a non-finite value left out;
 *   - a resume at step 6 rewrites the history from metrics.jsonl's kept lines into one new file (the
 *     old one emptied; its wall times kept for steps 1-6), drops steps 7-10 and the eval at 10, and
 *     the resumed steps carry the new values: every step once; a second resume removes the emptied
 *     file; a torn last record (a kill mid-write) is dropped; the rewrites come within a second, in
 *     one process, as a rollback's does, and still get names of their own;
 *   - a TensorBoard directory that cannot be made is a warning: metrics.jsonl is written; a write
 *     that fails mid-run (RLIMIT_FSIZE: EFBIG, as a full disk's ENOSPC) is a warning too, the events
 *     stop, the caller still gets metrics.jsonl's own error, and the next lines are written.
 * Real TensorBoard reads the files in tests/cli/run_tensorboard.sh. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/harness.h"
#include "trainer/metrics.h"
#include "trainer/tboard.h"

#define MAXREC 64
#define MAXVAL 8

typedef struct tval {
    char tag[64];
    float value;
} tval;

typedef struct trec {
    double wall;
    int64_t step;
    char version[32];
    int session_status; /* -1: no session_log */
    int n;              /* summary values */
    tval v[MAXVAL];
} trec;

static uint64_t le(const unsigned char *p, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static int varint(const unsigned char **p, const unsigned char *end, uint64_t *v) {
    *v = 0;
    for (int s = 0; *p < end && s < 64; s += 7) {
        unsigned char c = *(*p)++;
        *v |= (uint64_t)(c & 0x7f) << s;
        if (!(c & 0x80)) return 1;
    }
    return 0;
}

/* One length-delimited field's bytes: key already read. */
static int lenfield(const unsigned char **p, const unsigned char *end, const unsigned char **s, uint64_t *n) {
    if (!varint(p, end, n) || *n > (uint64_t)(end - *p)) return 0;
    *s = *p, *p += *n;
    return 1;
}

static int parse_value(const unsigned char *p, const unsigned char *end, tval *v) {
    memset(v, 0, sizeof *v);
    v->value = NAN;
    while (p < end) {
        uint64_t key, n;
        const unsigned char *s;
        if (!varint(&p, end, &key)) return 0;
        if (key == (1 << 3 | 2)) {
            if (!lenfield(&p, end, &s, &n) || n >= sizeof v->tag) return 0;
            memcpy(v->tag, s, n);
        } else if (key == (2 << 3 | 5)) {
            if (end - p < 4) return 0;
            uint32_t u = (uint32_t)le(p, 4);
            memcpy(&v->value, &u, 4);
            p += 4;
        } else {
            return 0; /* the writer emits nothing else in a Value */
        }
    }
    return 1;
}

static int parse_event(const unsigned char *p, size_t len, trec *r) {
    const unsigned char *end = p + len;
    memset(r, 0, sizeof *r);
    r->wall = NAN, r->session_status = -1;
    while (p < end) {
        uint64_t key, n, v;
        const unsigned char *s;
        if (!varint(&p, end, &key)) return 0;
        switch (key) {
        case 1 << 3 | 1: /* wall_time double */
            if (end - p < 8) return 0;
            v = le(p, 8), p += 8;
            memcpy(&r->wall, &v, 8);
            break;
        case 2 << 3 | 0: /* step int64 */
            if (!varint(&p, end, &v)) return 0;
            r->step = (int64_t)v;
            break;
        case 3 << 3 | 2: /* file_version */
            if (!lenfield(&p, end, &s, &n) || n >= sizeof r->version) return 0;
            memcpy(r->version, s, n);
            break;
        case 5 << 3 | 2: { /* summary: repeated Value (field 1) */
            if (!lenfield(&p, end, &s, &n)) return 0;
            const unsigned char *q = s, *qe = s + n;
            while (q < qe) {
                uint64_t k, vn;
                const unsigned char *vs;
                if (!varint(&q, qe, &k) || k != (1 << 3 | 2) || !lenfield(&q, qe, &vs, &vn) || r->n >= MAXVAL) return 0;
                if (!parse_value(vs, vs + vn, &r->v[r->n++])) return 0;
            }
            break;
        }
        case 7 << 3 | 2: { /* session_log: status (field 1) */
            if (!lenfield(&p, end, &s, &n)) return 0;
            const unsigned char *q = s;
            if (n != 2 || !varint(&q, s + n, &key) || key != (1 << 3 | 0) || !varint(&q, s + n, &v)) return 0;
            r->session_status = (int)v;
            break;
        }
        default:
            return 0;
        }
    }
    return 1;
}

/* Reads a file's records; *torn: bytes after the last whole record. Returns the record count, or
 * -1 on a CRC or parse failure (reported). */
static int read_events(const char *path, trec *recs, int max, int *torn) {
    char *buf = NULL;
    int64_t len = 0;
    *torn = 0;
    if (ft_test_read_file(path, &buf, &len) != FT_OK) {
        FT_CHECK(0, "%s: cannot read", path);
        return -1;
    }
    const unsigned char *p = (const unsigned char *)buf, *end = p + len;
    int n = 0;
    while (p < end) {
        if (end - p < 12) break;
        uint64_t dl = le(p, 8);
        if (!FT_CHECK(le(p + 8, 4) == ft_crc32c_mask(ft_crc32c(0, p, 8)), "%s: record %d: length CRC", path, n)) {
            n = -1;
            break;
        }
        if ((uint64_t)(end - p) < 16 + dl) break;
        if (!FT_CHECK(le(p + 12 + dl, 4) == ft_crc32c_mask(ft_crc32c(0, p + 12, (size_t)dl)), "%s: record %d: data CRC",
                      path, n) ||
            !FT_CHECK(n < max, "too many records") ||
            !FT_CHECK(parse_event(p + 12, (size_t)dl, &recs[n]), "%s: record %d: parse", path, n)) {
            n = -1;
            break;
        }
        n++;
        p += 16 + dl;
    }
    if (n >= 0) *torn = (int)(end - p);
    free(buf);
    return n;
}

/* The directory's ftune event files: the non-empty one into path (exactly one expected), counts. */
static void list_dir(const char *dir, char *path, size_t cap, int *nonempty, int *empty) {
    *nonempty = *empty = 0;
    path[0] = 0;
    DIR *d = opendir(dir);
    if (!FT_CHECK(d != NULL, "%s: cannot list", dir)) return;
    for (struct dirent *e; (e = readdir(d));) {
        if (strncmp(e->d_name, "events.out.tfevents.", 20) != 0) continue;
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat sb;
        stat(p, &sb);
        if (sb.st_size == 0) {
            (*empty)++;
            continue;
        }
        (*nonempty)++;
        snprintf(path, cap, "%s", p);
        /* events.out.tfevents.<seconds>.<host>.<pid>.ftune */
        char pid[32];
        snprintf(pid, sizeof pid, ".%ld.ftune", (long)getpid());
        const char *sec = e->d_name + 20;
        FT_CHECK(strspn(sec, "0123456789") >= 10 && sec[strspn(sec, "0123456789")] == '.' && strstr(e->d_name, pid) &&
                     strcmp(e->d_name + strlen(e->d_name) - strlen(pid), pid) == 0,
                 "file name %s", e->d_name);
    }
    closedir(d);
}

static const tval *find(const trec *r, const char *tag) {
    for (int i = 0; i < r->n; i++)
        if (strcmp(r->v[i].tag, tag) == 0) return &r->v[i];
    return NULL;
}

/* value of tag at step in records (NaN-safe equality to a float, rel tol) */
static int has(const trec *recs, int n, int64_t step, const char *tag, double want, double rtol) {
    int found = 0, ok = 0;
    for (int i = 0; i < n; i++) {
        if (recs[i].step != step) continue;
        const tval *v = find(&recs[i], tag);
        if (!v) continue;
        found++;
        double err = fabs((double)v->value - want);
        ok = err <= rtol * fabs(want);
        if (!ok) FT_CHECK(0, "step %lld %s: %.9g, want %.9g", (long long)step, tag, (double)v->value, want);
    }
    return FT_CHECK(found == 1, "step %lld %s: found %d times", (long long)step, tag, found) && ok;
}

static int count_tag(const trec *recs, int n, const char *tag) {
    int c = 0;
    for (int i = 0; i < n; i++) c += find(&recs[i], tag) != NULL;
    return c;
}

static void train_line(ft_metrics *m, int64_t step, double loss, double lr) {
    ft_metrics_train t = {.step = step, .loss = loss, .lr = lr, .grad_norm = 0.25 * (double)step, .targets = 100,
                          .tokens = 128, .epoch = 0.1, .elapsed_s = (double)step, .step_s = 1,
                          .tok_s = 1000.0 + (double)step, .mem_bytes = (int64_t)step << 20, .rss_bytes = 1 << 20};
    FT_CHECK_OK(ft_metrics_train_line(m, &t));
}

static double loss_at(int64_t s, int resumed) { return s == 3 ? NAN : (resumed ? 5.0 : 3.0) / (double)s; }

int main(void) {
    /* ---- CRC-32C ---- */
    FT_CHECK(ft_crc32c(0, "123456789", 9) == 0xE3069283u, "crc32c(123456789) = %08x", ft_crc32c(0, "123456789", 9));
    FT_CHECK(ft_crc32c(ft_crc32c(0, "1234", 4), "56789", 5) == 0xE3069283u, "crc32c in two pieces");
    FT_CHECK(ft_crc32c(0, "", 0) == 0, "crc32c of nothing");
    unsigned char zeros[32] = {0};
    FT_CHECK(ft_crc32c(0, zeros, 32) == 0x8A9136AAu, "crc32c of 32 zero bytes (RFC 3720 B.4) = %08x",
             ft_crc32c(0, zeros, 32));
    FT_CHECK(ft_crc32c_mask(0) == 0xa282ead8u &&
                 ft_crc32c_mask(0x12345678u) == ((0x12345678u >> 15 | 0x12345678u << 17) + 0xa282ead8u),
             "mask");

    /* ---- a file of three events ---- */
    char dir[4096], path[4096];
    snprintf(dir, sizeof dir, "%s/tb1", ft_test_tmpdir());
    ft_tb *tb = NULL;
    FT_CHECK_OK(ft_tb_open(&tb, dir));
    const double w0 = 1.7e9 + 0.125;
    for (int64_t s = 1; s <= 3; s++) {
        ft_tb_scalar v[3] = {{"train/loss", 2.0 / (double)s}, {"train/lr", s == 2 ? NAN : 1e-4 * (double)s},
                             {"eval/ppl", 1e30}};
        FT_CHECK_OK(ft_tb_write(tb, s * 10, w0 + (double)s, v, 3));
    }
    ft_tb_close(tb);
    int ne, em, torn;
    list_dir(dir, path, sizeof path, &ne, &em);
    FT_CHECK(ne == 1 && em == 0, "one event file (%d, %d empty)", ne, em);
    trec recs[MAXREC], first[MAXREC];
    int n = read_events(path, recs, MAXREC, &torn);
    if (FT_CHECK(n == 5 && torn == 0, "5 records, got %d (+%d bytes)", n, torn)) {
        FT_CHECK(strcmp(recs[0].version, "brain.Event:2") == 0 && recs[0].n == 0, "file_version: %s", recs[0].version);
        FT_CHECK(recs[1].session_status == 1 && recs[1].step == 0, "SessionLog START at step 0 (%d, %lld)",
                 recs[1].session_status, (long long)recs[1].step);
        const double now = ft_tb_now();
        FT_CHECK(fabs(recs[0].wall - now) < 60, "file_version wall_time is now: %.3f vs %.3f", recs[0].wall, now);
        for (int i = 2; i < 5; i++) {
            const int64_t s = i - 1;
            FT_CHECK(recs[i].step == 10 * s && !(fabs(recs[i].wall - (w0 + (double)s)) > 0) &&
                         recs[i].session_status < 0,
                     "record %d: step %lld wall %.6f", i, (long long)recs[i].step, recs[i].wall);
            const tval *l = find(&recs[i], "train/loss"), *lr = find(&recs[i], "train/lr");
            const tval *pp = find(&recs[i], "eval/ppl");
            FT_CHECK(l && l->value == (float)(2.0 / (double)s), "step %lld train/loss %g", (long long)s,
                     l ? l->value : NAN);
            FT_CHECK(pp && pp->value == 1e30f, "eval/ppl 1e30");
            if (s == 2)
                FT_CHECK(!lr && recs[i].n == 2, "a NaN lr is left out (%d values)", recs[i].n);
            else
                FT_CHECK(lr && lr->value == (float)(1e-4 * (double)s), "train/lr %g", lr ? lr->value : NAN);
        }
    }

    /* ---- metrics.jsonl's events, a resume at step 6 ---- */
    char mpath[4096], tdir[4096], first_path[4096];
    snprintf(mpath, sizeof mpath, "%s/metrics.jsonl", ft_test_tmpdir());
    snprintf(tdir, sizeof tdir, "%s/tensorboard", ft_test_tmpdir());
    ft_metrics *m = NULL;
    FT_CHECK_OK(ft_metrics_open_tb(&m, mpath, tdir, -1, INT64_MAX));
    for (int64_t s = 1; s <= 10; s++) {
        train_line(m, s, loss_at(s, 0), 1e-3 * (double)s);
        if (s % 5 == 0) FT_CHECK_OK(ft_metrics_eval_line(m, s, 1.0 / (double)s, 500, (double)s));
    }
    ft_metrics_close(m);
    list_dir(tdir, first_path, sizeof first_path, &ne, &em);
    int nf = read_events(first_path, first, MAXREC, &torn);
    FT_CHECK(ne == 1 && nf == 2 + 10 + 2 && torn == 0, "run: %d records in %d files", nf, ne);
    FT_CHECK(count_tag(first, nf, "train/loss") == 9 && count_tag(first, nf, "train/lr") == 10 &&
                 count_tag(first, nf, "eval/loss") == 2 && count_tag(first, nf, "eval/ppl") == 2,
             "tags: a NaN loss left out");
    has(first, nf, 5, "eval/ppl", exp(1.0 / 5.0), 1e-7);
    has(first, nf, 4, "train/mem_mb", 4.0, 0);
    has(first, nf, 4, "train/tokens_per_s", 1004.0, 0);
    has(first, nf, 4, "train/grad_norm", 1.0, 0);

    FT_CHECK_OK(ft_metrics_open_tb(&m, mpath, tdir, 6, INT64_MAX));
    for (int64_t s = 7; s <= 8; s++) train_line(m, s, loss_at(s, 1), 2e-3 * (double)s);
    ft_metrics_close(m);
    list_dir(tdir, path, sizeof path, &ne, &em);
    FT_CHECK(ne == 1 && em == 1 && strcmp(path, first_path) != 0, "resume: one new file, the old one emptied (%d, %d)",
             ne, em);
    n = read_events(path, recs, MAXREC, &torn);
    if (FT_CHECK(n == 2 + 8 + 1 && torn == 0, "resumed: %d records", n)) {
        FT_CHECK(strcmp(recs[0].version, "brain.Event:2") == 0 && recs[1].session_status == 1, "header records");
        for (int64_t s = 1; s <= 8; s++) {
            const int resumed = s > 6;
            if (s != 3) has(recs, n, s, "train/loss", loss_at(s, resumed), 1e-7);
            has(recs, n, s, "train/lr", (resumed ? 2e-3 : 1e-3) * (double)s, 1e-7);
            has(recs, n, s, "train/tokens_per_s", 1000.0 + (double)s, 1e-7);
        }
        FT_CHECK(count_tag(recs, n, "train/loss") == 7 && count_tag(recs, n, "train/lr") == 8, "each step once");
        FT_CHECK(count_tag(recs, n, "eval/loss") == 1 && count_tag(recs, n, "eval/ppl") == 1, "the eval at 10 dropped");
        has(recs, n, 5, "eval/loss", 0.2, 1e-7);
        /* wall times of the kept steps are the first run's */
        for (int i = 2; i < n && recs[i].step <= 6; i++)
            for (int j = 2; j < nf; j++)
                if (first[j].step == recs[i].step && find(&first[j], "train/lr") && find(&recs[i], "train/lr"))
                    FT_CHECK(!(fabs(recs[i].wall - first[j].wall) > 0), "step %lld keeps its wall time (%.6f vs %.6f)",
                             (long long)recs[i].step, recs[i].wall, first[j].wall);
    }

    /* a kill mid-record: the torn tail is dropped; a second resume removes the emptied file */
    {
        FILE *f = fopen(path, "ab");
        const unsigned char half[7] = {40, 0, 0, 0, 0, 0, 0};
        fwrite(half, 1, sizeof half, f);
        fclose(f);
    }
    FT_CHECK_OK(ft_metrics_open_tb(&m, mpath, tdir, 7, INT64_MAX));
    ft_metrics_close(m);
    list_dir(tdir, path, sizeof path, &ne, &em);
    FT_CHECK(ne == 1 && em == 1, "second resume: one file and one emptied (%d, %d)", ne, em);
    n = read_events(path, recs, MAXREC, &torn);
    FT_CHECK(n == 2 + 7 + 1 && torn == 0, "second resume: %d records", n);
    has(recs, n, 7, "train/loss", loss_at(7, 1), 1e-7);

    /* ---- a TensorBoard directory that cannot be made: a warning, metrics.jsonl written ---- */
    char bad[4096], mpath2[4096], sub[4200];
    snprintf(bad, sizeof bad, "%s/not-a-dir", ft_test_tmpdir());
    snprintf(mpath2, sizeof mpath2, "%s/metrics2.jsonl", ft_test_tmpdir());
    FILE *f = fopen(bad, "w");
    fclose(f);
    snprintf(sub, sizeof sub, "%s/sub", bad);
    FT_CHECK_OK(ft_metrics_open_tb(&m, mpath2, sub, -1, INT64_MAX));
    if (m) {
        train_line(m, 1, 1.5, 1e-3);
        FT_CHECK_OK(ft_metrics_eval_line(m, 1, 1.25, 10, 1));
        ft_metrics_close(m);
    }
    char *text = NULL;
    FT_CHECK_OK(ft_test_read_file(mpath2, &text, NULL));
    FT_CHECK(text && strstr(text, "\"loss\":1.5") && strstr(text, "\"val_loss\":1.25"), "metrics.jsonl written: %s",
             text ? text : "");
    free(text);

    /* ---- a write that fails mid-run ---- */
    char mpath3[4096], tdir3[4096];
    snprintf(mpath3, sizeof mpath3, "%s/metrics3.jsonl", ft_test_tmpdir());
    snprintf(tdir3, sizeof tdir3, "%s/tb3", ft_test_tmpdir());
    FT_CHECK_OK(ft_metrics_open_tb(&m, mpath3, tdir3, -1, INT64_MAX));
    if (m) {
        train_line(m, 1, 1.5, 1e-3);
        list_dir(tdir3, path, sizeof path, &ne, &em);
        struct stat sb0, sb1;
        stat(path, &sb0);
        struct rlimit old, lim;
        getrlimit(RLIMIT_FSIZE, &old);
        lim = old;
        lim.rlim_cur = (rlim_t)sb0.st_size + 20; /* the next record is torn, metrics.jsonl's line refused */
        void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
        setrlimit(RLIMIT_FSIZE, &lim);
        ft_metrics_train t = {.step = 2, .loss = 1.25, .lr = 1e-3, .tok_s = 1, .mem_bytes = 1};
        ft_status st = ft_metrics_train_line(m, &t);
        const char *msg = ft_error_msg();
        FT_CHECK(st == FT_E_IO && strstr(msg, "metrics3.jsonl: write failed"),
                 "a failed line is metrics.jsonl's error: %s", msg);
        ft_error_clear();
        setrlimit(RLIMIT_FSIZE, &old);
        signal(SIGXFSZ, prev);
        t.step = 3, t.loss = 1.125;
        FT_CHECK_OK(ft_metrics_train_line(m, &t));
        ft_metrics_close(m);
        stat(path, &sb1);
        FT_CHECK(sb1.st_size == sb0.st_size + 20, "events stop after the failure (%lld -> %lld bytes)",
                 (long long)sb0.st_size, (long long)sb1.st_size);
        n = read_events(path, recs, MAXREC, &torn);
        FT_CHECK(n == 3 && torn == 20, "the events before the failure read back (%d records, %d torn bytes)", n, torn);
        FT_CHECK_OK(ft_test_read_file(mpath3, &text, NULL));
        FT_CHECK(text && strstr(text, "\"step\":1,") && strstr(text, "\"step\":3,\"loss\":1.125"),
                 "metrics.jsonl goes on: %s", text ? text : "");
        free(text);
    }
    return ft_test_finish();
}
