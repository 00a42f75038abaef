/* tboard.c: see tboard.h.
 *
 * Resume and rollback: metrics.c rewrites the history from metrics.jsonl's kept lines into a new
 * event file and then empties the old ones (ft_tb_prune), rather than appending a SessionLog START
 * at the resume step after the abandoned steps. Checked against tensorboard 2.21: the Python
 * accumulator (plugin_event_accumulator._CheckForRestartAndMaybePurge) ignores the first START it
 * sees and purges only at a later one, so the old file would need a START of its own; the default
 * loader (--load_fast=auto: the Rust data server, tensorboard-data-server 0.7.2) shows no purge logic
 * of its own (its binary holds no purge or orphan message); and a script reading the files
 * (EventFileLoader, tbparse, pandas) sees every record, abandoned ones included. A directory whose
 * one non-empty file holds each step once is right for every reader.
 * Each file opens with a START at step 0, for a TensorBoard that watched the run while it was
 * resumed: the Python loader, finding the old file emptied, moves on to the new one, whose START is
 * the second it sees and purges everything it had (step >= 0) before the rewritten history is read;
 * a reader of the new file alone sees one START and purges nothing. Both loaders were run against a
 * live resume (tests/cli/run_tensorboard.sh checks the files with the Python reader). */
#include "trainer/tboard.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kernels/log.h"
#include "kernels/mem.h"

#define FT_TB_SUFFIX ".ftune"
#define FT_TB_MAX_RECORD (1 << 20) /* ours are ~150 bytes; a larger length is a corrupt file */

struct ft_tb {
    char *dir, *path;
    FILE *f;
};

uint32_t ft_crc32c(uint32_t crc, const void *data, size_t n) {
    /* four bits at a time: a 16-entry table, no table to build at start-up */
    static const uint32_t t[16] = {0x00000000, 0x105ec76f, 0x20bd8ede, 0x30e349b1, 0x417b1dbc, 0x5125dad3,
                                   0x61c69362, 0x7198540d, 0x82f63b78, 0x92a8fc17, 0xa24bb5a6, 0xb21572c9,
                                   0xc38d26c4, 0xd3d3e1ab, 0xe330a81a, 0xf36e6f75};
    const unsigned char *p = data;
    crc = ~crc;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        crc = (crc >> 4) ^ t[crc & 15];
        crc = (crc >> 4) ^ t[crc & 15];
    }
    return ~crc;
}

uint32_t ft_crc32c_mask(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xa282ead8u; }

double ft_tb_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- protobuf encoding: only what an Event of scalars needs ---------------------------------- */

typedef struct ft_pb {
    unsigned char *p;
    size_t n, cap;
    int overflow;
} ft_pb;

static void ft_pb_bytes(ft_pb *b, const void *src, size_t n) {
    if (b->n + n > b->cap) {
        b->overflow = 1;
        return;
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}

static void ft_pb_varint(ft_pb *b, uint64_t v) {
    unsigned char x[10];
    size_t n = 0;
    do {
        x[n++] = (unsigned char)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
    ft_pb_bytes(b, x, n);
}

static void ft_pb_le(ft_pb *b, uint64_t v, int bytes) {
    unsigned char x[8];
    for (int i = 0; i < bytes; i++) x[i] = (unsigned char)(v >> (8 * i));
    ft_pb_bytes(b, x, (size_t)bytes);
}

static void ft_pb_key(ft_pb *b, int field, int wire) { ft_pb_varint(b, (uint64_t)(field << 3 | wire)); }

static void ft_pb_str(ft_pb *b, int field, const void *s, size_t n) {
    ft_pb_key(b, field, 2);
    ft_pb_varint(b, n);
    ft_pb_bytes(b, s, n);
}

static void ft_pb_double(ft_pb *b, int field, double v) {
    uint64_t u;
    memcpy(&u, &v, 8);
    ft_pb_key(b, field, 1);
    ft_pb_le(b, u, 8);
}

static void ft_pb_float(ft_pb *b, int field, float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    ft_pb_key(b, field, 5);
    ft_pb_le(b, u, 4);
}

/* ---- the file --------------------------------------------------------------------------------- */

static ft_status ft_tb_record(ft_tb *tb, const ft_pb *data) {
    if (data->overflow) return FT_ERR(FT_E_ARG, "%s: an event record too large", tb->path);
    unsigned char head[12], tail[4];
    for (int i = 0; i < 8; i++) head[i] = (unsigned char)((uint64_t)data->n >> (8 * i));
    uint32_t c = ft_crc32c_mask(ft_crc32c(0, head, 8));
    for (int i = 0; i < 4; i++) head[8 + i] = (unsigned char)(c >> (8 * i));
    c = ft_crc32c_mask(ft_crc32c(0, data->p, data->n));
    for (int i = 0; i < 4; i++) tail[i] = (unsigned char)(c >> (8 * i));
    fwrite(head, 1, 12, tb->f);
    fwrite(data->p, 1, data->n, tb->f);
    fwrite(tail, 1, 4, tb->f);
    if (ferror(tb->f) || fflush(tb->f) != 0) {
        clearerr(tb->f);
        return FT_ERR(FT_E_IO, "%s: write failed: %s", tb->path, strerror(errno));
    }
    return FT_OK;
}

ft_status ft_tb_open(ft_tb **out, const char *dir) {
    *out = NULL;
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) return FT_ERR(FT_E_IO, "%s: cannot create: %s", dir, strerror(errno));
    ft_tb *tb;
    FT_TRY(ft_calloc((void **)&tb, sizeof *tb, "tensorboard"));
    ft_status st = FT_OK;
    char host[256] = "localhost";
    if (gethostname(host, sizeof host - 1) != 0) snprintf(host, sizeof host, "localhost");
    host[sizeof host - 1] = 0;
    for (char *h = host; *h; h++)
        if (*h == '/') *h = '_';
    size_t cap = strlen(dir) + strlen(host) + 96;
    tb->dir = strdup(dir);
    tb->path = malloc(cap);
    if (!tb->dir || !tb->path) {
        st = FT_ERR(FT_E_OOM, "out of memory");
        goto fail;
    }
    /* a name of its own that sorts after every older file's (TensorBoard's directory watcher moves on
     * only to a later name): a rollback or resume within the same second would otherwise rewrite a
     * file in place under a TensorBoard reading it, and a clock set back would name an earlier one */
    long long t0 = (long long)time(NULL);
    DIR *dd = opendir(dir);
    for (struct dirent *e; dd && (e = readdir(dd)) != NULL;) {
        long long t;
        if (sscanf(e->d_name, "events.out.tfevents.%lld.", &t) == 1 && t >= t0) t0 = t + 1;
    }
    if (dd) closedir(dd);
    struct stat sb;
    for (long long t = t0;; t++) {
        snprintf(tb->path, cap, "%s/events.out.tfevents.%lld.%s.%ld" FT_TB_SUFFIX, dir, t, host, (long)getpid());
        if (stat(tb->path, &sb) != 0) break;
    }
    tb->f = fopen(tb->path, "wb");
    if (!tb->f) {
        st = FT_ERR(FT_E_IO, "%s: cannot open for writing: %s", tb->path, strerror(errno));
        goto fail;
    }
    unsigned char buf[64];
    const double now = ft_tb_now();
    ft_pb b = {.p = buf, .cap = sizeof buf};
    ft_pb_double(&b, 1, now);
    ft_pb_str(&b, 3, "brain.Event:2", 13);
    FT_CHECK_GOTO(st, ft_tb_record(tb, &b), fail);
    const unsigned char start[2] = {0x08, 0x01}; /* SessionLog { status: START } */
    b = (ft_pb){.p = buf, .cap = sizeof buf};
    ft_pb_double(&b, 1, now);
    ft_pb_key(&b, 2, 0);
    ft_pb_varint(&b, 0);
    ft_pb_str(&b, 7, start, sizeof start);
    FT_CHECK_GOTO(st, ft_tb_record(tb, &b), fail);
    *out = tb;
    return FT_OK;
fail:
    ft_tb_close(tb);
    return st;
}

ft_status ft_tb_write(ft_tb *tb, int64_t step, double wall_time, const ft_tb_scalar *v, int n) {
    unsigned char sbuf[2048], ebuf[2100], vbuf[256];
    ft_pb s = {.p = sbuf, .cap = sizeof sbuf};
    for (int i = 0; i < n; i++) {
        if (!isfinite(v[i].value)) continue;
        ft_pb val = {.p = vbuf, .cap = sizeof vbuf};
        ft_pb_str(&val, 1, v[i].tag, strlen(v[i].tag));
        ft_pb_float(&val, 2, (float)v[i].value);
        s.overflow |= val.overflow;
        ft_pb_str(&s, 1, val.p, val.n);
    }
    ft_pb e = {.p = ebuf, .cap = sizeof ebuf, .overflow = s.overflow};
    ft_pb_double(&e, 1, wall_time);
    ft_pb_key(&e, 2, 0);
    ft_pb_varint(&e, (uint64_t)step);
    ft_pb_str(&e, 5, s.p, s.n);
    return ft_tb_record(tb, &e);
}

static int ft_tb_ours(const char *name) {
    size_t l = strlen(name), ls = strlen(FT_TB_SUFFIX);
    return strstr(name, "tfevents") && l > ls && strcmp(name + l - ls, FT_TB_SUFFIX) == 0;
}

ft_status ft_tb_prune(const ft_tb *tb) {
    DIR *d = opendir(tb->dir);
    if (!d) return FT_ERR(FT_E_IO, "%s: cannot list: %s", tb->dir, strerror(errno));
    const char *mine = strrchr(tb->path, '/') + 1;
    ft_status st = FT_OK;
    for (struct dirent *e; (e = readdir(d));) {
        if (!ft_tb_ours(e->d_name) || strcmp(e->d_name, mine) == 0) continue;
        char p[8192];
        snprintf(p, sizeof p, "%s/%s", tb->dir, e->d_name);
        /* emptied, not removed: TensorBoard's Python loader (--load_fast=false) reopens the file it
         * is on by name, and one removed under it stops it for good; an empty one it passes by for the
         * next. The ones emptied before (which it has passed) go. */
        struct stat sb;
        const int gone = stat(p, &sb) == 0 && sb.st_size == 0 ? unlink(p) : truncate(p, 0);
        if (gone != 0 && errno != ENOENT && st == FT_OK)
            st = FT_ERR(FT_E_IO, "%s: cannot empty the superseded event file: %s", p, strerror(errno));
    }
    closedir(d);
    return st;
}

const char *ft_tb_path(const ft_tb *tb) { return tb->path; }

void ft_tb_close(ft_tb *tb) {
    if (!tb) return;
    if (tb->f) fclose(tb->f);
    free(tb->dir);
    free(tb->path);
    ft_free(tb);
}

/* ---- reading back the wall times of a file's records ------------------------------------------ */

static uint64_t ft_le(const unsigned char *p, int bytes) {
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static int ft_pb_read_varint(const unsigned char **p, const unsigned char *end, uint64_t *v) {
    *v = 0;
    for (int shift = 0; *p < end && shift < 64; shift += 7) {
        unsigned char c = *(*p)++;
        *v |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) return 1;
    }
    return 0;
}

/* The Event's step, wall_time and whether it has a summary; 0 when it does not parse. */
static int ft_tb_parse_event(const unsigned char *p, size_t n, int64_t *step, double *wall, int *summary) {
    const unsigned char *end = p + n;
    *step = 0, *wall = NAN, *summary = 0;
    while (p < end) {
        uint64_t key, v;
        if (!ft_pb_read_varint(&p, end, &key)) return 0;
        const int field = (int)(key >> 3), wire = (int)(key & 7);
        if (wire == 0) {
            if (!ft_pb_read_varint(&p, end, &v)) return 0;
            if (field == 2) *step = (int64_t)v;
        } else if (wire == 1) {
            if (end - p < 8) return 0;
            v = ft_le(p, 8), p += 8;
            if (field == 1) memcpy(wall, &v, 8);
        } else if (wire == 5) {
            if (end - p < 4) return 0;
            p += 4;
        } else if (wire == 2) {
            if (!ft_pb_read_varint(&p, end, &v) || v > (uint64_t)(end - p)) return 0;
            if (field == 5) *summary = 1;
            p += v;
        } else {
            return 0;
        }
    }
    return 1;
}

static void ft_tb_walls_file(const char *path, int64_t max_step, double *wall) {
    FILE *f = fopen(path, "rb");
    if (!f) return;
    unsigned char head[12], tail[4], *data = NULL;
    size_t cap = 0;
    int64_t prev = -1; /* a step's first record (its training line) gives its time, not its evaluation's */
    while (fread(head, 1, 12, f) == 12) {
        const uint64_t n = ft_le(head, 8);
        if (ft_le(head + 8, 4) != ft_crc32c_mask(ft_crc32c(0, head, 8)) || n > FT_TB_MAX_RECORD) break;
        if (n > cap) {
            unsigned char *d = realloc(data, (size_t)n);
            if (!d) break;
            data = d, cap = (size_t)n;
        }
        if (fread(data, 1, (size_t)n, f) != n || fread(tail, 1, 4, f) != 4 ||
            ft_le(tail, 4) != ft_crc32c_mask(ft_crc32c(0, data, (size_t)n)))
            break;
        int64_t step;
        double w;
        int summary;
        if (ft_tb_parse_event(data, (size_t)n, &step, &w, &summary) && summary && step >= 0 && step <= max_step &&
            isfinite(w) && step != prev)
            wall[step] = w;
        if (summary) prev = step;
    }
    free(data);
    fclose(f);
}

ft_status ft_tb_walls(const char *dir, int64_t max_step, double *wall) {
    for (int64_t s = 0; s <= max_step; s++) wall[s] = NAN;
    DIR *d = opendir(dir);
    if (!d) return FT_OK;
    /* oldest file first (names carry the creation time), so a later file's time of a step wins */
    char **names = NULL;
    size_t n = 0, cap = 0;
    ft_status st = FT_OK;
    for (struct dirent *e; (e = readdir(d));) {
        if (!ft_tb_ours(e->d_name)) continue;
        if (n == cap) {
            char **nn = realloc(names, (cap = cap ? 2 * cap : 8) * sizeof *nn);
            if (!nn) {
                st = FT_ERR(FT_E_OOM, "out of memory");
                break;
            }
            names = nn;
        }
        if (!(names[n] = strdup(e->d_name))) {
            st = FT_ERR(FT_E_OOM, "out of memory");
            break;
        }
        n++;
    }
    closedir(d);
    for (size_t i = 1; i < n; i++) /* a handful of files: insertion sort */
        for (size_t j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
            char *t = names[j];
            names[j] = names[j - 1], names[j - 1] = t;
        }
    for (size_t i = 0; i < n; i++) {
        if (st == FT_OK) {
            char p[8192];
            snprintf(p, sizeof p, "%s/%s", dir, names[i]);
            ft_tb_walls_file(p, max_step, wall);
        }
        free(names[i]);
    }
    free(names);
    return st;
}
