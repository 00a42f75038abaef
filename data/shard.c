/* shard.c: see shard.h. Shards are compressed with zstd's streaming API straight from the three
 * payload arrays (no staging copy); reading decompresses each frame as a stream straight into its
 * slice of the example set, checking it on the way. */
#include "data/shard.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <xxhash.h>
#include <zstd.h>

#include "kernels/le.h"
#include "kernels/fileio.h"
#include "kernels/json.h"
#include "kernels/log.h"
#include "kernels/mem.h"

static int sh_little_endian(void) {
    const uint16_t one = 1;
    return *(const uint8_t *)&one == 1;
}

/* Writes n parts to path atomically (kernels/fileio.h: temp + fsync + rename + dir fsync). */
static ft_status sh_write_atomic(const char *path, const void *const *parts, const size_t *sizes, int n) {
    ft_afile af;
    FT_TRY(ft_afile_open(&af, path));
    for (int i = 0; i < n; i++) {
        ft_status st = ft_afile_write(&af, parts[i], (int64_t)sizes[i]);
        if (st != FT_OK) {
            ft_afile_abort(&af);
            return st;
        }
    }
    return ft_afile_commit(&af);
}

/* ---- writer -------------------------------------------------------------------------------- */

#define SH_MAX_THREADS 8 /* compressing shards: 8 x ~0.2 GB/s outruns a disk, and each holds its frame */

/* One shard compressed: its header and zstd frame, ready to write. The frame buffer is
 * ZSTD_compressBound of the payload, as it always was: zstd's output depends on the room it is
 * given (a smaller buffer that grows gave frames 40 bytes longer), and only the pages the frame
 * fills are touched (about a third of the payload for token ids), so a thread costs that much. */
typedef struct sh_frame {
    ZSTD_CCtx *cctx;
    uint8_t hdr[FT_SHARD_HEADER_BYTES];
    uint8_t *z;
    size_t zlen, zcap;
    uint64_t xx;
    int64_t targets;
    int64_t *offs;          /* rebased offsets of a shard taken from an example set */
    int64_t offs_cap;
    ft_status st;
    char msg[512];
} sh_frame;

static void sh_frame_free(sh_frame *f) {
    ZSTD_freeCCtx(f->cctx);
    free(f->z);
    free(f->offs);
    memset(f, 0, sizeof *f);
}

/* A shard's payload: examples [0, n) given by offsets[0..n] (offsets[0] = 0), tokens and mask. */
typedef struct sh_view {
    const int64_t *offsets;
    const int32_t *tokens;
    const uint8_t *mask;
    int64_t n, n_tokens;
} sh_view;

/* Compresses shard `number` into f (any thread: f's context and buffers are its own). The bytes
 * are those of one zstd stream at `level` over the three arrays, whatever the frame buffer's size. */
static ft_status sh_compress(sh_frame *f, const sh_view *v, int level, uint64_t fp_hash, int64_t number,
                             const char *path) {
    const void *parts[3] = {v->offsets, v->tokens, v->mask};
    const size_t sizes[3] = {(size_t)(v->n + 1) * 8, (size_t)v->n_tokens * 4, (size_t)v->n_tokens};
    const size_t payload = sizes[0] + sizes[1] + sizes[2];
    XXH3_state_t *h = XXH3_createState();
    if (!h) return FT_ERR(FT_E_OOM, "out of memory hashing %s", path);
    XXH3_64bits_reset(h);
    for (int i = 0; i < 3; i++) XXH3_64bits_update(h, parts[i], sizes[i]);
    f->xx = XXH3_64bits_digest(h);
    XXH3_freeState(h);
    f->targets = 0;
    for (int64_t i = 0; i < v->n; i++)
        for (int64_t k = v->offsets[i] + 1; k < v->offsets[i + 1]; k++) f->targets += v->mask[k] != 0;
    if (!f->cctx && !(f->cctx = ZSTD_createCCtx())) return FT_ERR(FT_E_OOM, "out of memory compressing %s", path);
    ZSTD_CCtx_reset(f->cctx, ZSTD_reset_session_and_parameters);
    ZSTD_CCtx_setParameter(f->cctx, ZSTD_c_compressionLevel, level);
    ZSTD_CCtx_setPledgedSrcSize(f->cctx, payload);
    const size_t bound = ZSTD_compressBound(payload);
    if (bound > f->zcap) {
        uint8_t *z = realloc(f->z, bound);
        if (!z) return FT_ERR(FT_E_OOM, "out of memory compressing %s (%zu bytes)", path, bound);
        f->z = z, f->zcap = bound;
    }
    ZSTD_outBuffer zo = {f->z, f->zcap, 0};
    for (int i = 0; i < 3; i++) {
        ZSTD_inBuffer zi = {parts[i], sizes[i], 0};
        ZSTD_EndDirective end = i == 2 ? ZSTD_e_end : ZSTD_e_continue;
        size_t rem;
        do {
            rem = ZSTD_compressStream2(f->cctx, &zo, &zi, end);
            if (ZSTD_isError(rem))
                return FT_ERR(FT_E_INTERNAL, "%s: zstd compression failed: %s", path, ZSTD_getErrorName(rem));
        } while (end == ZSTD_e_end ? rem != 0 : zi.pos < zi.size);
    }
    f->zlen = zo.pos;
    uint8_t *hdr = f->hdr;
    memset(hdr, 0, sizeof f->hdr);
    memcpy(hdr, FT_SHARD_MAGIC, 8);
    ft_put_u32(hdr + 8, FT_SHARD_VERSION);
    ft_put_u32(hdr + 12, FT_SHARD_HEADER_BYTES);
    ft_put_u64(hdr + 16, (uint64_t)v->n);
    ft_put_u64(hdr + 24, (uint64_t)v->n_tokens);
    ft_put_u64(hdr + 32, payload);
    ft_put_u64(hdr + 40, f->zlen);
    ft_put_u64(hdr + 48, f->xx);
    ft_put_u64(hdr + 56, fp_hash);
    ft_put_u64(hdr + 64, (uint64_t)number);
    ft_put_u64(hdr + 72, XXH3_64bits(hdr, 72));
    return FT_OK;
}

struct ft_shard_writer {
    char *dir, *name, *fingerprint;
    uint64_t fp_hash;
    int64_t shard_tokens;
    int level, threads;
    ft_examples buf;
    cJSON *shards;
    int64_t n_shards, n_examples, n_tokens, n_targets, bytes;
    /* examples by length, bucket b holding lengths [2^b, 2^(b+1)): count, tokens, sum of squares */
    int64_t len_n[FT_SHARD_LEN_BUCKETS], len_tokens[FT_SHARD_LEN_BUCKETS];
    double len_sq[FT_SHARD_LEN_BUCKETS];
    sh_frame fr[SH_MAX_THREADS];
};

/* Removes the temporaries of this dataset that a writer killed mid-file left (ft_afile's
 * "FILE.tmp.PID", the PID no longer running): nothing reads them, but each held up to a shard's
 * size on the disk for good. A live writer's are left alone. */
static void sh_remove_stale_tmp(const char *dir, const char *name) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *de;
    while ((de = readdir(d))) {
        char ds[512];
        long pid;
        if (!ft_shard_file_parse(de->d_name, ds, sizeof ds, &pid) || pid == 0 || strcmp(ds, name) != 0) continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue; /* running (EPERM: someone else's) */
        char path[4400];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        if (unlink(path) == 0) ft_info("data: removed %s, left by a writer that was killed", path);
    }
    closedir(d);
}

ft_status ft_shard_writer_open(ft_shard_writer **out, const char *dir, const char *name,
                               const ft_shard_writer_opts *opts) {
    *out = NULL;
    if (!sh_little_endian()) return FT_ERR(FT_E_UNSUPPORTED, "shards are little-endian; this host is not");
    if (!name[0] || strchr(name, '/')) return FT_ERR(FT_E_ARG, "bad shard dataset name \"%s\"", name);
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) return FT_ERR(FT_E_IO, "%s: not a directory", dir);
    sh_remove_stale_tmp(dir, name);
    ft_shard_writer *w;
    FT_TRY(ft_calloc((void **)&w, sizeof *w, "shard writer"));
    w->dir = strdup(dir);
    w->name = strdup(name);
    w->fingerprint = strdup(opts && opts->fingerprint ? opts->fingerprint : "");
    w->shard_tokens = opts && opts->shard_tokens > 0 ? opts->shard_tokens : (int64_t)16 << 20;
    w->level = opts && opts->zstd_level ? opts->zstd_level : 3;
    w->threads = opts && opts->threads > 1 ? opts->threads : 1;
    if (w->threads > SH_MAX_THREADS) w->threads = SH_MAX_THREADS;
    w->shards = cJSON_CreateArray();
    ft_examples_init(&w->buf);
    if (!w->dir || !w->name || !w->fingerprint || !w->shards) {
        ft_shard_writer_abort(w);
        return FT_ERR(FT_E_OOM, "out of memory opening shard writer for %s/%s", dir, name);
    }
    w->fp_hash = XXH3_64bits(w->fingerprint, strlen(w->fingerprint));
    *out = w;
    return FT_OK;
}

static void sh_shard_path(const ft_shard_writer *w, int64_t number, char *file, size_t flen, char *path, size_t plen) {
    snprintf(file, flen, "%s-%05lld.ftshard", w->name, (long long)number);
    snprintf(path, plen, "%s/%s", w->dir, file);
}

/* Writes the next shard, compressed in f, and adds it to the index (in shard order). */
static ft_status sh_commit(ft_shard_writer *w, const sh_frame *f, const sh_view *v) {
    char file[512], path[4096];
    sh_shard_path(w, w->n_shards, file, sizeof file, path, sizeof path);
    const void *fparts[2] = {f->hdr, f->z};
    const size_t fsizes[2] = {sizeof f->hdr, f->zlen};
    FT_TRY(sh_write_atomic(path, fparts, fsizes, 2));
    char hex[17];
    snprintf(hex, sizeof hex, "%016" PRIx64, f->xx);
    cJSON *e = cJSON_CreateObject();
    if (!e || !cJSON_AddStringToObject(e, "file", file) || !cJSON_AddNumberToObject(e, "n_examples", (double)v->n) ||
        !cJSON_AddNumberToObject(e, "n_tokens", (double)v->n_tokens) ||
        !cJSON_AddNumberToObject(e, "n_targets", (double)f->targets) ||
        !cJSON_AddNumberToObject(e, "bytes", (double)(sizeof f->hdr + f->zlen)) ||
        !cJSON_AddStringToObject(e, "xxh3", hex)) {
        cJSON_Delete(e);
        return FT_ERR(FT_E_OOM, "out of memory building the shard index");
    }
    cJSON_AddItemToArray(w->shards, e);
    w->n_shards++;
    w->n_examples += v->n;
    w->n_tokens += v->n_tokens;
    w->n_targets += f->targets;
    w->bytes += (int64_t)(sizeof f->hdr + f->zlen);
    return FT_OK;
}

/* The buffered examples as the next shard. */
static ft_status sh_flush(ft_shard_writer *w) {
    ft_examples *b = &w->buf;
    if (b->n == 0) return FT_OK;
    char file[512], path[4096];
    sh_shard_path(w, w->n_shards, file, sizeof file, path, sizeof path);
    const sh_view v = {b->offsets, b->tokens, b->mask, b->n, b->n_tokens};
    FT_TRY(sh_compress(&w->fr[0], &v, w->level, w->fp_hash, w->n_shards, path));
    FT_TRY(sh_commit(w, &w->fr[0], &v));
    b->n = b->n_tokens = 0; /* keep the allocation */
    return FT_OK;
}

/* Checks one example and counts it in the index's length buckets (every example, in order). */
static ft_status sh_take(ft_shard_writer *w, const int32_t *tokens, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (tokens[i] < 0) return FT_ERR(FT_E_ARG, "%s: negative token id %d in example", w->name, tokens[i]);
    if (n > 0) {
        const int b = 63 - __builtin_clzll((unsigned long long)n);
        w->len_n[b]++, w->len_tokens[b] += n, w->len_sq[b] += (double)n * (double)n;
    }
    return FT_OK;
}

ft_status ft_shard_writer_add(ft_shard_writer *w, const int32_t *tokens, const uint8_t *mask, int64_t n) {
    FT_TRY(sh_take(w, tokens, n));
    FT_TRY(ft_examples_add(&w->buf, tokens, mask, n));
    if (w->buf.n_tokens >= w->shard_tokens) FT_TRY(sh_flush(w));
    return FT_OK;
}

/* A batch of whole shards cut straight from an example set, compressed on several threads. */
typedef struct sh_batch {
    ft_shard_writer *w;
    const ft_examples *ex;
    int64_t first[SH_MAX_THREADS + 1]; /* shard s holds examples first[s] .. first[s + 1] - 1 */
    int n;
    int next;                          /* next shard to take (atomic) */
} sh_batch;

static sh_view sh_batch_view(const sh_batch *b, int s) {
    const ft_examples *ex = b->ex;
    const sh_frame *f = &b->w->fr[s];
    const int64_t a = b->first[s], n = b->first[s + 1] - a, t0 = ex->offsets[a];
    const sh_view v = {f->offs, ex->tokens + t0, ex->mask + t0, n, ex->offsets[a + n] - t0};
    return v;
}

static void *sh_batch_worker(void *arg) {
    sh_batch *b = arg;
    for (int s; (s = __atomic_fetch_add(&b->next, 1, __ATOMIC_RELAXED)) < b->n;) {
        ft_shard_writer *w = b->w;
        sh_frame *f = &w->fr[s];
        const int64_t a = b->first[s], n = b->first[s + 1] - a;
        char file[512], path[4096];
        sh_shard_path(w, w->n_shards + s, file, sizeof file, path, sizeof path);
        f->st = FT_OK;
        if (n + 1 > f->offs_cap) {
            int64_t *o = realloc(f->offs, (size_t)(n + 1) * sizeof *o);
            if (!o) {
                f->st = FT_ERR(FT_E_OOM, "out of memory compressing %s", path);
            } else {
                f->offs = o, f->offs_cap = n + 1;
            }
        }
        if (f->st == FT_OK) {
            for (int64_t i = 0; i <= n; i++) f->offs[i] = b->ex->offsets[a + i] - b->ex->offsets[a];
            const sh_view v = sh_batch_view(b, s);
            f->st = sh_compress(f, &v, w->level, w->fp_hash, w->n_shards + s, path);
        }
        if (f->st != FT_OK) snprintf(f->msg, sizeof f->msg, "%s", ft_error_msg());
    }
    return NULL;
}

/* Compresses the batch's shards on up to w->threads threads (this one included), then writes them
 * in order: the files and the index are those of adding the examples one at a time. */
static ft_status sh_batch_run(sh_batch *b) {
    ft_shard_writer *w = b->w;
    pthread_t th[SH_MAX_THREADS];
    int n_th = 0;
    b->next = 0;
    for (int i = 1; i < w->threads && i < b->n; i++) { /* fewer threads if refused: the same bytes */
        if (pthread_create(&th[n_th], NULL, sh_batch_worker, b) != 0) break;
        n_th++;
    }
    sh_batch_worker(b);
    for (int i = 0; i < n_th; i++) pthread_join(th[i], NULL);
    for (int s = 0; s < b->n; s++) {
        if (w->fr[s].st != FT_OK) return FT_ERR(w->fr[s].st, "%s", w->fr[s].msg);
        const sh_view v = sh_batch_view(b, s);
        FT_TRY(sh_commit(w, &w->fr[s], &v));
    }
    return FT_OK;
}

ft_status ft_shard_writer_add_all(ft_shard_writer *w, const ft_examples *ex) {
    int64_t i = 0;
    /* one thread, or a shard already begun: example by example */
    for (; i < ex->n && (w->threads == 1 || w->buf.n > 0); i++)
        FT_TRY(ft_shard_writer_add(w, ex->tokens + ex->offsets[i], ex->mask + ex->offsets[i], ft_examples_len(ex, i)));
    /* then whole shards straight from ex (no copy into the buffer), where add() would cut them: after
     * the example that brings a shard to shard_tokens */
    for (;;) {
        sh_batch b = {.w = w, .ex = ex, .n = 0};
        b.first[0] = i;
        int64_t j = i;
        while (b.n < w->threads && j < ex->n) {
            const int64_t t0 = ex->offsets[j];
            for (; j < ex->n && ex->offsets[j] - t0 < w->shard_tokens; j++)
                FT_TRY(sh_take(w, ex->tokens + ex->offsets[j], ft_examples_len(ex, j)));
            if (ex->offsets[j] - t0 < w->shard_tokens) break; /* the rest is a partial shard: buffered below */
            b.first[++b.n] = j;
        }
        if (b.n > 0) FT_TRY(sh_batch_run(&b));
        i = b.first[b.n];
        if (b.n < w->threads) break;
    }
    /* the last, partial shard: buffered (counted already), written by finish */
    for (; i < ex->n; i++) FT_TRY(ft_examples_add(&w->buf, ex->tokens + ex->offsets[i], ex->mask + ex->offsets[i],
                                                 ft_examples_len(ex, i)));
    return FT_OK;
}

ft_status ft_shard_writer_finish(ft_shard_writer *w) {
    ft_status st = sh_flush(w);
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.index.json", w->dir, w->name);
    cJSON *idx = cJSON_CreateObject();
    char *text = NULL;
    if (st == FT_OK) {
        int ok = idx && cJSON_AddStringToObject(idx, "format", "ftune-shards") &&
                 cJSON_AddNumberToObject(idx, "version", FT_SHARD_VERSION) &&
                 cJSON_AddStringToObject(idx, "name", w->name) &&
                 cJSON_AddStringToObject(idx, "fingerprint", w->fingerprint) &&
                 cJSON_AddNumberToObject(idx, "n_examples", (double)w->n_examples) &&
                 cJSON_AddNumberToObject(idx, "n_tokens", (double)w->n_tokens) &&
                 cJSON_AddNumberToObject(idx, "n_targets", (double)w->n_targets) &&
                 cJSON_AddNumberToObject(idx, "bytes", (double)w->bytes);
        cJSON *lens = ok ? cJSON_AddArrayToObject(idx, "lengths") : NULL; /* before the long shard list */
        ok = lens != NULL;
        for (int b = 0; ok && b < FT_SHARD_LEN_BUCKETS; b++) {
            if (!w->len_n[b]) continue;
            const double v[4] = {(double)((int64_t)1 << b), (double)w->len_n[b], (double)w->len_tokens[b], w->len_sq[b]};
            cJSON *e = cJSON_CreateDoubleArray(v, 4);
            ok = e && cJSON_AddItemToArray(lens, e);
        }
        if (ok) {
            cJSON_AddItemToObject(idx, "shards", w->shards);
            w->shards = NULL;
            text = cJSON_Print(idx);
        }
        if (!text) st = FT_ERR(FT_E_OOM, "out of memory writing %s", path);
    }
    if (st == FT_OK) {
        size_t len = strlen(text);
        text[len] = '\n'; /* cJSON_Print's NUL becomes the final newline */
        const void *parts[1] = {text};
        const size_t sizes[1] = {len + 1};
        st = sh_write_atomic(path, parts, sizes, 1);
    }
    cJSON_free(text);
    cJSON_Delete(idx);
    ft_shard_writer_abort(w);
    return st;
}

void ft_shard_writer_abort(ft_shard_writer *w) {
    if (!w) return;
    free(w->dir);
    free(w->name);
    free(w->fingerprint);
    ft_examples_free(&w->buf);
    cJSON_Delete(w->shards);
    for (int i = 0; i < SH_MAX_THREADS; i++) sh_frame_free(&w->fr[i]);
    free(w);
}

/* ---- reader -------------------------------------------------------------------------------- */

/* A shard is decompressed as a stream straight into its slice of the example set, through one reused
 * input buffer a thread, and hashed while in cache. Reading each shard into a fresh buffer, then
 * decompressing into another and copying into a growing set, spent 19 of 29 s in the kernel on a
 * 4 GB chat set (docs/perf.md): three passes of page faults for one of data. */
#define SH_READ_CHUNK ((size_t)1 << 20)
#define SH_MAX_READ_THREADS 16 /* a thread decompresses about 1 GB/s: past this the memory bus is the limit */

typedef struct sh_header { /* the header's fields from byte 16 on, in their order */
    uint64_t n_examples, n_tokens, payload_bytes, compressed_bytes, xxh3, fp_hash, number;
} sh_header;

/* One reading thread's decompression context, hash state and input buffer, reused from shard to
 * shard, and the shard it has open. */
typedef struct sh_reader {
    ZSTD_DCtx *dctx;
    XXH3_state_t *xx;
    uint8_t *in;
    size_t in_len, in_pos;  /* bytes of `in` filled, consumed */
    uint64_t left;          /* bytes of the frame not read yet */
    int fd;
} sh_reader;

static void sh_reader_free(sh_reader *r) {
    if (r->fd >= 0) close(r->fd);
    ZSTD_freeDCtx(r->dctx);
    XXH3_freeState(r->xx);
    free(r->in);
    *r = (sh_reader){.fd = -1};
}

static ft_status sh_reader_init(sh_reader *r) {
    *r = (sh_reader){.dctx = ZSTD_createDCtx(), .xx = XXH3_createState(), .in = malloc(SH_READ_CHUNK), .fd = -1};
    if (r->dctx && r->xx && r->in) return FT_OK;
    sh_reader_free(r);
    return FT_ERR(FT_E_OOM, "out of memory reading shards");
}

/* read(2) until len bytes or the end of the file: the bytes read, or -1 (errno). */
static int64_t sh_read_full(int fd, void *buf, size_t len) {
    size_t got = 0;
    while (got < len) {
        const ssize_t k = read(fd, (char *)buf + got, len - got);
        if (k == 0 || (k < 0 && errno != EINTR)) return k < 0 ? -1 : (int64_t)got;
        got += k > 0 ? (size_t)k : 0;
    }
    return (int64_t)got;
}

/* Opens shard `path` in r and checks its header (into h) and its size; r is left at the frame. */
static ft_status sh_open(sh_reader *r, const char *path, sh_header *h) {
    if (!sh_little_endian()) return FT_ERR(FT_E_UNSUPPORTED, "shards are little-endian; this host is not");
    if (r->fd >= 0) close(r->fd);
    r->in_len = r->in_pos = 0, r->left = 0;
    r->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (r->fd < 0) return FT_ERR(FT_E_IO, "%s: cannot open shard: %s", path, strerror(errno));
    struct stat sb = {0};
    const int stat_ok = fstat(r->fd, &sb) == 0;
    if (!stat_ok || !S_ISREG(sb.st_mode))
        return FT_ERR(FT_E_IO, "%s: cannot open shard: %s", path, stat_ok ? "not a regular file" : strerror(errno));
    const int64_t len = (int64_t)sb.st_size;
    uint8_t p[FT_SHARD_HEADER_BYTES];
    const int64_t got = len < FT_SHARD_HEADER_BYTES ? len : sh_read_full(r->fd, p, sizeof p);
    if (got < 0) return FT_ERR(FT_E_IO, "%s: read failed: %s", path, strerror(errno));
    if (got < FT_SHARD_HEADER_BYTES)
        return FT_ERR(FT_E_FORMAT, "%s: truncated shard: %lld bytes, shorter than the %d-byte header", path,
                      (long long)got, FT_SHARD_HEADER_BYTES);
    if (memcmp(p, FT_SHARD_MAGIC, 8) != 0) return FT_ERR(FT_E_FORMAT, "%s: not an ftune shard (bad magic)", path);
    const uint32_t version = ft_get_u32(p + 8), hbytes = ft_get_u32(p + 12);
    if (version != FT_SHARD_VERSION)
        return FT_ERR(FT_E_FORMAT, "%s: shard version %u is not supported (this build reads version %d)", path, version,
                      FT_SHARD_VERSION);
    if (hbytes != FT_SHARD_HEADER_BYTES || ft_get_u64(p + 72) != XXH3_64bits(p, 72))
        return FT_ERR(FT_E_FORMAT, "%s: shard header checksum mismatch (corrupt header)", path);
    *h = (sh_header){ft_get_u64(p + 16), ft_get_u64(p + 24), ft_get_u64(p + 32), ft_get_u64(p + 40),
                     ft_get_u64(p + 48), ft_get_u64(p + 56), ft_get_u64(p + 64)};
    if (h->n_examples > ((uint64_t)1 << 40) || h->n_tokens > ((uint64_t)1 << 40) ||
        h->payload_bytes != (h->n_examples + 1) * 8 + h->n_tokens * 5)
        return FT_ERR(FT_E_FORMAT, "%s: inconsistent shard header (%llu examples, %llu tokens, %llu payload bytes)",
                      path, (unsigned long long)h->n_examples, (unsigned long long)h->n_tokens,
                      (unsigned long long)h->payload_bytes);
    if ((uint64_t)len != FT_SHARD_HEADER_BYTES + h->compressed_bytes)
        return FT_ERR(FT_E_FORMAT, "%s: %s shard: %lld bytes, the header says %llu", path,
                      (uint64_t)len < FT_SHARD_HEADER_BYTES + h->compressed_bytes ? "truncated" : "oversized",
                      (long long)len, (unsigned long long)(FT_SHARD_HEADER_BYTES + h->compressed_bytes));
    r->left = h->compressed_bytes;
    return FT_OK;
}

/* The next compressed bytes of the frame into r->in. */
static ft_status sh_refill(sh_reader *r, const char *path) {
    const size_t want = r->left < SH_READ_CHUNK ? (size_t)r->left : SH_READ_CHUNK;
    const int64_t got = sh_read_full(r->fd, r->in, want);
    if (got < 0) return FT_ERR(FT_E_IO, "%s: read failed: %s", path, strerror(errno));
    if ((size_t)got < want) return FT_ERR(FT_E_FORMAT, "%s: truncated shard: the file ended while it was read", path);
    r->in_len = want, r->in_pos = 0, r->left -= want;
    return FT_OK;
}

/* One step of the stream into zo: refills the input when it is used up, hashes what came out. */
static ft_status sh_step(sh_reader *r, const char *path, ZSTD_outBuffer *zo, size_t *rem) {
    if (r->in_pos == r->in_len && r->left > 0) FT_TRY(sh_refill(r, path));
    ZSTD_inBuffer zi = {r->in, r->in_len, r->in_pos};
    const size_t pos0 = zo->pos;
    *rem = ZSTD_decompressStream(r->dctx, zo, &zi);
    if (ZSTD_isError(*rem)) return FT_ERR(FT_E_FORMAT, "%s: corrupt shard data (zstd: %s)", path, ZSTD_getErrorName(*rem));
    if (zo->pos > pos0) XXH3_64bits_update(r->xx, (const uint8_t *)zo->dst + pos0, zo->pos - pos0);
    if (zo->pos == pos0 && zi.pos == r->in_pos && *rem != 0 && zi.pos == zi.size && r->left == 0) /* stuck */
        return FT_ERR(FT_E_FORMAT, "%s: corrupt shard data (zstd: the frame ends early)", path);
    r->in_pos = zi.pos;
    return FT_OK;
}

/* Decompresses the frame of the shard open in r into ends[0..n) (the payload's offsets[1..n]: the
 * examples' ends within the shard), tok[0..nt) and mask[0..nt), checks the payload's checksum and
 * offsets, then adds t0 to the ends (where the shard's tokens begin in the set). */
static ft_status sh_decode(sh_reader *r, const char *path, const sh_header *h, int64_t *ends, int32_t *tok,
                           uint8_t *mask, int64_t t0) {
    const int64_t n = (int64_t)h->n_examples, nt = (int64_t)h->n_tokens;
    int64_t first = -1; /* the payload's offsets[0] */
    void *const dst[4] = {&first, ends, tok, mask};
    const size_t len[4] = {8, (size_t)n * 8, (size_t)nt * 4, (size_t)nt};
    FT_TRY(sh_refill(r, path));
    const unsigned long long fcs = ZSTD_getFrameContentSize(r->in, r->in_len);
    if (fcs != h->payload_bytes)
        return FT_ERR(FT_E_FORMAT, "%s: corrupt shard data (zstd frame size %lld, header says %llu)", path,
                      fcs == ZSTD_CONTENTSIZE_ERROR ? -1LL : (long long)fcs, (unsigned long long)h->payload_bytes);
    ZSTD_DCtx_reset(r->dctx, ZSTD_reset_session_only);
    XXH3_64bits_reset(r->xx);
    size_t rem = 1;
    for (int k = 0; k < 4; k++) {
        ZSTD_outBuffer zo = {dst[k], len[k], 0};
        while (zo.pos < zo.size) {
            if (rem == 0) return FT_ERR(FT_E_FORMAT, "%s: corrupt shard data (zstd: short frame)", path);
            FT_TRY(sh_step(r, path, &zo, &rem));
        }
    }
    while (rem != 0) { /* the payload is out: the frame must end here, with nothing more to give */
        uint8_t extra;
        ZSTD_outBuffer zo = {&extra, 1, 0};
        FT_TRY(sh_step(r, path, &zo, &rem));
        if (zo.pos) return FT_ERR(FT_E_FORMAT, "%s: corrupt shard data (more than the header's payload)", path);
    }
    if (r->in_pos != r->in_len || r->left != 0)
        return FT_ERR(FT_E_FORMAT, "%s: corrupt shard data (bytes after the zstd frame)", path);
    const uint64_t xx = XXH3_64bits_digest(r->xx);
    if (xx != h->xxh3)
        return FT_ERR(FT_E_FORMAT, "%s: shard payload checksum mismatch (xxh3 %016" PRIx64 ", header %016" PRIx64
                      "): the shard is corrupt",
                      path, xx, h->xxh3);
    int64_t prev = 0;
    int ok = first == 0;
    for (int64_t i = 0; i < n && ok; prev = ends[i++]) ok = ends[i] >= prev && ends[i] <= nt;
    if (!ok || prev != nt)
        return FT_ERR(FT_E_FORMAT, "%s: shard example offsets are not monotone from 0 to %lld", path, (long long)nt);
    for (int64_t i = 0; i < n; i++) ends[i] += t0;
    return FT_OK;
}

ft_status ft_shard_read(const char *path, ft_examples *ex) {
    sh_reader r;
    sh_header h;
    FT_TRY(sh_reader_init(&r));
    ft_status st = sh_open(&r, path, &h);
    /* at least one token of room, so that the slices below are never taken from NULL */
    if (st == FT_OK) st = ft_examples_reserve(ex, ex->n_tokens + (int64_t)h.n_tokens + 1, ex->n + (int64_t)h.n_examples);
    if (st == FT_OK)
        st = sh_decode(&r, path, &h, ex->offsets + ex->n + 1, ex->tokens + ex->n_tokens, ex->mask + ex->n_tokens,
                       ex->n_tokens);
    if (st == FT_OK) ex->n += (int64_t)h.n_examples, ex->n_tokens += (int64_t)h.n_tokens;
    sh_reader_free(&r);
    return st;
}

/* A count from the index: -1 unless a number in [0, 2^53] (a cast of anything else is undefined). */
static int64_t js_int(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble <= 9007199254740992.0 ? (int64_t)v->valuedouble
                                                                                              : -1;
}

/* One shard of a load: its index entry and its slice of the example set. */
typedef struct sh_slice {
    const char *file, *xxh3;      /* the index entry's (owned by the parsed index) */
    int64_t n, nt;                /* its examples and tokens, per the index */
    int64_t e0, t0;               /* its first example and first token in the set */
    int64_t compressed, payload;  /* bytes, from its header once read */
} sh_slice;

typedef struct sh_load {
    const char *dir, *index_path;
    sh_slice *sl;
    int64_t n_sl, next;  /* next: the next shard to take (atomic) */
    uint64_t fp_hash;
    ft_examples *ex;
    int stop;            /* a shard failed: take no more (atomic) */
} sh_load;

typedef struct sh_load_thread {
    sh_load *ld;
    sh_reader r;
    int64_t failed_at;  /* the shard that failed (its status and message below), -1 if none */
    ft_status st;
    char msg[1024];
} sh_load_thread;

/* Reads shard s into its slice (any thread: the slices are disjoint, offsets[0] is the caller's). */
static ft_status sh_load_one(sh_load *ld, sh_reader *r, int64_t s) {
    sh_slice *e = &ld->sl[s];
    char path[8300];
    snprintf(path, sizeof path, "%s/%s", ld->dir, e->file);
    sh_header h;
    FT_TRY(sh_open(r, path, &h));
    char hex[17];
    snprintf(hex, sizeof hex, "%016" PRIx64, h.xxh3);
    /* before decoding: the slice was sized by the index */
    if ((int64_t)h.n_examples != e->n || (int64_t)h.n_tokens != e->nt || strcmp(hex, e->xxh3) != 0 ||
        h.number != (uint64_t)s || h.fp_hash != ld->fp_hash)
        return FT_ERR(FT_E_FORMAT,
                      "%s: shard does not match its index entry in %s (examples %llu vs %lld, tokens %llu vs %lld, "
                      "xxh3 %s vs %s, number %llu vs %lld%s)",
                      path, ld->index_path, (unsigned long long)h.n_examples, (long long)e->n,
                      (unsigned long long)h.n_tokens, (long long)e->nt, hex, e->xxh3, (unsigned long long)h.number,
                      (long long)s, h.fp_hash != ld->fp_hash ? ", other fingerprint" : "");
    ft_examples *ex = ld->ex;
    FT_TRY(sh_decode(r, path, &h, ex->offsets + e->e0 + 1, ex->tokens + e->t0, ex->mask + e->t0, e->t0));
    e->compressed = FT_SHARD_HEADER_BYTES + (int64_t)h.compressed_bytes;
    e->payload = (int64_t)h.payload_bytes;
    return FT_OK;
}

/* Takes shards in order until none is left or one fails. Shards are taken in increasing order and a
 * thread finishes the one it holds, so every shard before a failed one is read: the lowest failure
 * over the threads is the first bad shard of the index, whatever the thread count. */
static void *sh_load_worker(void *arg) {
    sh_load_thread *t = arg;
    sh_load *ld = t->ld;
    while (!__atomic_load_n(&ld->stop, __ATOMIC_RELAXED)) {
        const int64_t s = __atomic_fetch_add(&ld->next, 1, __ATOMIC_RELAXED);
        if (s >= ld->n_sl) break;
        const ft_status st = sh_load_one(ld, &t->r, s);
        if (st != FT_OK) {
            t->st = st, t->failed_at = s;
            snprintf(t->msg, sizeof t->msg, "%s", ft_error_msg());
            ft_error_clear();
            __atomic_store_n(&ld->stop, 1, __ATOMIC_RELAXED);
            break;
        }
    }
    return NULL;
}

/* Reads every shard into its slice on up to `threads` threads (this one included). */
static ft_status sh_load_run(sh_load *ld, int threads) {
    threads = threads < 1 ? 1 : threads > SH_MAX_READ_THREADS ? SH_MAX_READ_THREADS : threads;
    if (threads > ld->n_sl) threads = (int)ld->n_sl;
    sh_load_thread *t = NULL;
    pthread_t th[SH_MAX_READ_THREADS];
    FT_TRY(ft_calloc((void **)&t, (size_t)threads * sizeof *t, "shard readers"));
    ft_status st = FT_OK;
    for (int i = 0; i < threads; i++) t[i].r.fd = -1, t[i].ld = ld, t[i].failed_at = -1;
    for (int i = 0; i < threads && st == FT_OK; i++) st = sh_reader_init(&t[i].r);
    int n_th = 0; /* fewer threads if refused: the same result */
    for (int i = 1; st == FT_OK && i < threads && pthread_create(&th[n_th], NULL, sh_load_worker, &t[i]) == 0; i++)
        n_th++;
    if (st == FT_OK) sh_load_worker(&t[0]);
    for (int i = 0; i < n_th; i++) pthread_join(th[i], NULL);
    const sh_load_thread *bad = NULL;
    for (int i = 0; i < threads; i++) {
        if (t[i].failed_at >= 0 && (!bad || t[i].failed_at < bad->failed_at)) bad = &t[i];
        sh_reader_free(&t[i].r);
    }
    if (bad) st = FT_ERR(bad->st, "%s", bad->msg);
    ft_free(t);
    return st;
}

ft_status ft_shards_load_threads(const char *index_path, const char *fingerprint, int threads, ft_examples *ex,
                                 ft_shard_info *info) {
    ft_examples_init(ex);
    ft_shard_info inf;
    memset(&inf, 0, sizeof inf);
    char *text = NULL;
    int64_t len;
    FT_TRY(ft_read_file(index_path, 0, &text, &len, NULL));
    ft_status st = FT_OK;
    cJSON *idx = NULL;
    sh_slice *sl = NULL;
    char what[4200];
    snprintf(what, sizeof what, "%s (shard index)", index_path);
    st = ft_json_parse(text, len, what, &idx);
    free(text);
    FT_TRY(st);
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(idx, "format");
    const cJSON *fp = cJSON_GetObjectItemCaseSensitive(idx, "fingerprint");
    const cJSON *shards = cJSON_GetObjectItemCaseSensitive(idx, "shards");
    if (!cJSON_IsString(fmt) || strcmp(fmt->valuestring, "ftune-shards") != 0 || !cJSON_IsString(fp) ||
        !cJSON_IsArray(shards)) {
        st = FT_ERR(FT_E_FORMAT, "%s: not an ftune shard index (needs format, fingerprint, shards)", index_path);
        goto done;
    }
    if (js_int(idx, "version") != FT_SHARD_VERSION) {
        st = FT_ERR(FT_E_FORMAT, "%s: shard index version %lld is not supported (this build reads %d)", index_path,
                    (long long)js_int(idx, "version"), FT_SHARD_VERSION);
        goto done;
    }
    if (fingerprint && strcmp(fingerprint, fp->valuestring) != 0) {
        st = FT_ERR(FT_E_FORMAT,
                    "%s: dataset was tokenized for fingerprint \"%s\" but this run expects \"%s\" (tokenize it again)",
                    index_path, fp->valuestring, fingerprint);
        goto done;
    }
    snprintf(inf.fingerprint, sizeof inf.fingerprint, "%s", fp->valuestring);
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", index_path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    else snprintf(dir, sizeof dir, ".");
    /* the slices from the index's counts (each shard's header must agree before it is decoded) */
    const int64_t n_sl = cJSON_GetArraySize(shards);
    FT_CHECK_GOTO(st, ft_calloc((void **)&sl, (size_t)(n_sl > 0 ? n_sl : 1) * sizeof *sl, "shard list"), done);
    int64_t n_ex = 0, n_tok = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, shards) {
        const cJSON *file = cJSON_GetObjectItemCaseSensitive(e, "file");
        const cJSON *xx = cJSON_GetObjectItemCaseSensitive(e, "xxh3");
        const int64_t n = js_int(e, "n_examples"), nt = js_int(e, "n_tokens");
        if (!cJSON_IsString(file) || strchr(file->valuestring, '/') || !cJSON_IsString(xx) || n < 0 || nt < 0 ||
            n > ((int64_t)1 << 40) || nt > ((int64_t)1 << 40)) {
            st = FT_ERR(FT_E_FORMAT, "%s: shard entry %lld has no valid \"file\"/\"xxh3\"/counts", index_path,
                        (long long)inf.n_shards);
            goto done;
        }
        sl[inf.n_shards++] = (sh_slice){.file = file->valuestring, .xxh3 = xx->valuestring, .n = n, .nt = nt,
                                        .e0 = n_ex, .t0 = n_tok};
        n_ex += n, n_tok += nt;
    }
    if (n_ex != js_int(idx, "n_examples") || n_tok != js_int(idx, "n_tokens")) {
        st = FT_ERR(FT_E_FORMAT, "%s: shard totals (%lld examples, %lld tokens) differ from the index", index_path,
                    (long long)n_ex, (long long)n_tok);
        goto done;
    }
    if (n_sl > 0) {
        /* the whole set at once (exact: pack.c); a token more keeps every slice off NULL */
        FT_CHECK_GOTO(st, ft_examples_reserve(ex, n_tok + 1, n_ex), done);
        sh_load ld = {.dir = dir, .index_path = index_path, .sl = sl, .n_sl = n_sl, .ex = ex,
                      .fp_hash = XXH3_64bits(fp->valuestring, strlen(fp->valuestring))};
        FT_CHECK_GOTO(st, sh_load_run(&ld, threads), done);
        ex->n = n_ex, ex->n_tokens = n_tok;
    }
    for (int64_t s = 0; s < n_sl; s++) inf.compressed_bytes += sl[s].compressed, inf.payload_bytes += sl[s].payload;
    inf.n_examples = n_ex, inf.n_tokens = n_tok;
    if (info) *info = inf;
done:
    ft_free(sl);
    cJSON_Delete(idx);
    if (st != FT_OK) ft_examples_free(ex);
    return st;
}

ft_status ft_shards_load(const char *index_path, const char *fingerprint, ft_examples *ex, ft_shard_info *info) {
    return ft_shards_load_threads(index_path, fingerprint, 1, ex, info);
}

static size_t sh_suffix(const char *s, size_t len, const char *suffix) { /* len - its length, 0 if s lacks it */
    const size_t k = strlen(suffix);
    return len > k && memcmp(s + len - k, suffix, k) == 0 ? len - k : 0;
}

int ft_shard_file_parse(const char *file, char *name, size_t cap, long *pid) {
    *pid = 0;
    size_t len = strlen(file), n;
    const char *tmp = NULL;
    for (const char *p = strstr(file, ".tmp."); p; p = strstr(p + 1, ".tmp.")) tmp = p; /* the last one */
    if (tmp) { /* fileio.h's "FILE.tmp.PID" */
        char *end = NULL;
        errno = 0;
        *pid = tmp[5] >= '0' && tmp[5] <= '9' ? strtol(tmp + 5, &end, 10) : 0;
        if (*pid <= 0 || *end || errno) return 0;
        len = (size_t)(tmp - file);
    }
    if (!(n = sh_suffix(file, len, ".index.json")) && (n = sh_suffix(file, len, ".ftshard"))) {
        size_t d = n; /* back over the shard number: 5 digits or more, after a '-' */
        while (d > 0 && file[d - 1] >= '0' && file[d - 1] <= '9') d--;
        n = n - d >= 5 && d >= 2 && file[d - 1] == '-' ? d - 1 : 0;
    }
    if (n == 0 || n >= cap) return 0;
    memcpy(name, file, n);
    name[n] = 0;
    return 1;
}
