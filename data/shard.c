/* shard.c: see shard.h. Shards are compressed with zstd's streaming API straight from the three
 * payload arrays (no staging copy); reading decompresses one frame into a staging buffer,
 * validates it, and appends it to the example set. */
#include "data/shard.h"

#include <dirent.h>
#include <errno.h>
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

/* ---- little-endian header fields ---------------------------------------------------------- */

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
    const size_t nl = strlen(name);
    struct dirent *de;
    while ((de = readdir(d))) {
        const char *f = de->d_name, *t = strstr(f, ".tmp.");
        if (strncmp(f, name, nl) != 0 || (f[nl] != '-' && f[nl] != '.') || !t) continue;
        char *end;
        const long pid = strtol(t + 5, &end, 10);
        if (*end || pid <= 0) continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue; /* running (EPERM: someone else's) */
        char path[4400];
        snprintf(path, sizeof path, "%s/%s", dir, f);
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

typedef struct sh_header {
    uint64_t n_examples, n_tokens, payload_bytes, compressed_bytes, xxh3, fp_hash, number;
} sh_header;

static ft_status sh_read(const char *path, ft_examples *ex, sh_header *h) {
    if (!sh_little_endian()) return FT_ERR(FT_E_UNSUPPORTED, "shards are little-endian; this host is not");
    uint8_t *buf = NULL, *payload = NULL;
    int64_t len;
    int missing = 0;
    FT_TRY(ft_read_file(path, 0, (char **)&buf, &len, &missing));
    if (missing) return FT_ERR(FT_E_IO, "%s: cannot open shard: %s", path, strerror(ENOENT));
    ft_status st = FT_OK;
    const uint8_t *p = buf;
    if (len < FT_SHARD_HEADER_BYTES) {
        st = FT_ERR(FT_E_FORMAT, "%s: truncated shard: %lld bytes, shorter than the %d-byte header", path, (long long)len,
                    FT_SHARD_HEADER_BYTES);
        goto done;
    }
    if (memcmp(p, FT_SHARD_MAGIC, 8) != 0) {
        st = FT_ERR(FT_E_FORMAT, "%s: not an ftune shard (bad magic)", path);
        goto done;
    }
    uint32_t version = ft_get_u32(p + 8), hbytes = ft_get_u32(p + 12);
    if (version != FT_SHARD_VERSION) {
        st = FT_ERR(FT_E_FORMAT, "%s: shard version %u is not supported (this build reads version %d)", path, version,
                    FT_SHARD_VERSION);
        goto done;
    }
    if (hbytes != FT_SHARD_HEADER_BYTES || ft_get_u64(p + 72) != XXH3_64bits(p, 72)) {
        st = FT_ERR(FT_E_FORMAT, "%s: shard header checksum mismatch (corrupt header)", path);
        goto done;
    }
    h->n_examples = ft_get_u64(p + 16);
    h->n_tokens = ft_get_u64(p + 24);
    h->payload_bytes = ft_get_u64(p + 32);
    h->compressed_bytes = ft_get_u64(p + 40);
    h->xxh3 = ft_get_u64(p + 48);
    h->fp_hash = ft_get_u64(p + 56);
    h->number = ft_get_u64(p + 64);
    if (h->n_examples > ((uint64_t)1 << 40) || h->n_tokens > ((uint64_t)1 << 40) ||
        h->payload_bytes != (h->n_examples + 1) * 8 + h->n_tokens * 5) {
        st = FT_ERR(FT_E_FORMAT, "%s: inconsistent shard header (%llu examples, %llu tokens, %llu payload bytes)", path,
                    (unsigned long long)h->n_examples, (unsigned long long)h->n_tokens,
                    (unsigned long long)h->payload_bytes);
        goto done;
    }
    if ((uint64_t)len != FT_SHARD_HEADER_BYTES + h->compressed_bytes) {
        st = FT_ERR(FT_E_FORMAT, "%s: %s shard: %lld bytes, the header says %llu", path,
                    (uint64_t)len < FT_SHARD_HEADER_BYTES + h->compressed_bytes ? "truncated" : "oversized",
                    (long long)len, (unsigned long long)(FT_SHARD_HEADER_BYTES + h->compressed_bytes));
        goto done;
    }
    const uint8_t *z = p + FT_SHARD_HEADER_BYTES;
    unsigned long long fcs = ZSTD_getFrameContentSize(z, h->compressed_bytes);
    if (fcs != h->payload_bytes) {
        st = FT_ERR(FT_E_FORMAT, "%s: corrupt shard data (zstd frame size %lld, header says %llu)", path,
                    fcs == ZSTD_CONTENTSIZE_ERROR ? -1LL : (long long)fcs, (unsigned long long)h->payload_bytes);
        goto done;
    }
    FT_CHECK_GOTO(st, ft_malloc((void **)&payload, h->payload_bytes, path), done);
    size_t got = ZSTD_decompress(payload, h->payload_bytes, z, h->compressed_bytes);
    if (ZSTD_isError(got) || got != h->payload_bytes) {
        st = FT_ERR(FT_E_FORMAT, "%s: corrupt shard data (zstd: %s)", path,
                    ZSTD_isError(got) ? ZSTD_getErrorName(got) : "short frame");
        goto done;
    }
    uint64_t xx = XXH3_64bits(payload, h->payload_bytes);
    if (xx != h->xxh3) {
        st = FT_ERR(FT_E_FORMAT, "%s: shard payload checksum mismatch (xxh3 %016" PRIx64 ", header %016" PRIx64
                    "): the shard is corrupt",
                    path, xx, h->xxh3);
        goto done;
    }
    const int64_t n = (int64_t)h->n_examples, nt = (int64_t)h->n_tokens;
    int64_t offs_first;
    memcpy(&offs_first, payload, 8);
    const uint8_t *tok = payload + (n + 1) * 8, *msk = tok + nt * 4;
    int64_t prev = 0, ok = offs_first == 0;
    for (int64_t i = 1; i <= n && ok; i++) {
        int64_t o;
        memcpy(&o, payload + i * 8, 8);
        ok = o >= prev && o <= nt;
        prev = o;
    }
    if (!ok || prev != nt) {
        st = FT_ERR(FT_E_FORMAT, "%s: shard example offsets are not monotone from 0 to %lld", path, (long long)nt);
        goto done;
    }
    FT_CHECK_GOTO(st, ft_examples_reserve(ex, ex->n_tokens + nt, ex->n + n), done);
    memcpy(ex->tokens + ex->n_tokens, tok, (size_t)nt * 4);
    memcpy(ex->mask + ex->n_tokens, msk, (size_t)nt);
    for (int64_t i = 1; i <= n; i++) {
        int64_t o;
        memcpy(&o, payload + i * 8, 8);
        ex->offsets[ex->n + i] = ex->n_tokens + o;
    }
    ex->n += n;
    ex->n_tokens += nt;
done:
    free(payload);
    free(buf);
    return st;
}

ft_status ft_shard_read(const char *path, ft_examples *ex) {
    sh_header h;
    return sh_read(path, ex, &h);
}

static int64_t js_int(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : -1;
}

ft_status ft_shards_load(const char *index_path, const char *fingerprint, ft_examples *ex, ft_shard_info *info) {
    ft_examples_init(ex);
    ft_shard_info inf;
    memset(&inf, 0, sizeof inf);
    char *text = NULL;
    int64_t len;
    FT_TRY(ft_read_file(index_path, 0, &text, &len, NULL));
    ft_status st = FT_OK;
    cJSON *idx = NULL;
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
    const uint64_t fp_hash = XXH3_64bits(fp->valuestring, strlen(fp->valuestring));
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", index_path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    else snprintf(dir, sizeof dir, ".");
    const cJSON *e;
    cJSON_ArrayForEach(e, shards) {
        const cJSON *file = cJSON_GetObjectItemCaseSensitive(e, "file");
        const cJSON *xx = cJSON_GetObjectItemCaseSensitive(e, "xxh3");
        if (!cJSON_IsString(file) || strchr(file->valuestring, '/') || !cJSON_IsString(xx)) {
            st = FT_ERR(FT_E_FORMAT, "%s: shard entry %lld has no valid \"file\"/\"xxh3\"", index_path,
                        (long long)inf.n_shards);
            goto done;
        }
        char path[8300];
        snprintf(path, sizeof path, "%s/%s", dir, file->valuestring);
        sh_header h;
        FT_CHECK_GOTO(st, sh_read(path, ex, &h), done);
        char hex[17];
        snprintf(hex, sizeof hex, "%016" PRIx64, h.xxh3);
        if ((int64_t)h.n_examples != js_int(e, "n_examples") || (int64_t)h.n_tokens != js_int(e, "n_tokens") ||
            strcmp(hex, xx->valuestring) != 0 || h.number != (uint64_t)inf.n_shards || h.fp_hash != fp_hash) {
            st = FT_ERR(FT_E_FORMAT,
                        "%s: shard does not match its index entry in %s (examples %llu vs %lld, tokens %llu vs %lld, "
                        "xxh3 %s vs %s, number %llu vs %lld%s)",
                        path, index_path, (unsigned long long)h.n_examples, (long long)js_int(e, "n_examples"),
                        (unsigned long long)h.n_tokens, (long long)js_int(e, "n_tokens"), hex, xx->valuestring,
                        (unsigned long long)h.number, (long long)inf.n_shards,
                        h.fp_hash != fp_hash ? ", other fingerprint" : "");
            goto done;
        }
        inf.n_shards++;
        inf.compressed_bytes += FT_SHARD_HEADER_BYTES + (int64_t)h.compressed_bytes;
        inf.payload_bytes += (int64_t)h.payload_bytes;
    }
    inf.n_examples = ex->n;
    inf.n_tokens = ex->n_tokens;
    if (inf.n_examples != js_int(idx, "n_examples") || inf.n_tokens != js_int(idx, "n_tokens")) {
        st = FT_ERR(FT_E_FORMAT, "%s: shard totals (%lld examples, %lld tokens) differ from the index", index_path,
                    (long long)inf.n_examples, (long long)inf.n_tokens);
        goto done;
    }
    if (info) *info = inf;
done:
    cJSON_Delete(idx);
    if (st != FT_OK) ft_examples_free(ex);
    return st;
}
