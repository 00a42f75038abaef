/* shard.c: see shard.h. Shards are compressed with zstd's streaming API straight from the three
 * payload arrays (no staging copy); reading decompresses one frame into a staging buffer,
 * validates it, and appends it to the example set. */
#include "data/shard.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

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

struct ft_shard_writer {
    char *dir, *name, *fingerprint;
    uint64_t fp_hash;
    int64_t shard_tokens;
    int level;
    ft_examples buf;
    cJSON *shards;
    int64_t n_shards, n_examples, n_tokens, n_targets, bytes;
    /* examples by length, bucket b holding lengths [2^b, 2^(b+1)): count, tokens, sum of squares */
    int64_t len_n[FT_SHARD_LEN_BUCKETS], len_tokens[FT_SHARD_LEN_BUCKETS];
    double len_sq[FT_SHARD_LEN_BUCKETS];
    ZSTD_CCtx *cctx;
    uint8_t *zbuf;
    size_t zcap;
};

ft_status ft_shard_writer_open(ft_shard_writer **out, const char *dir, const char *name,
                               const ft_shard_writer_opts *opts) {
    *out = NULL;
    if (!sh_little_endian()) return FT_ERR(FT_E_UNSUPPORTED, "shards are little-endian; this host is not");
    if (!name[0] || strchr(name, '/')) return FT_ERR(FT_E_ARG, "bad shard dataset name \"%s\"", name);
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) return FT_ERR(FT_E_IO, "%s: not a directory", dir);
    ft_shard_writer *w;
    FT_TRY(ft_calloc((void **)&w, sizeof *w, "shard writer"));
    w->dir = strdup(dir);
    w->name = strdup(name);
    w->fingerprint = strdup(opts && opts->fingerprint ? opts->fingerprint : "");
    w->shard_tokens = opts && opts->shard_tokens > 0 ? opts->shard_tokens : (int64_t)16 << 20;
    w->level = opts && opts->zstd_level ? opts->zstd_level : 3;
    w->shards = cJSON_CreateArray();
    w->cctx = ZSTD_createCCtx();
    ft_examples_init(&w->buf);
    if (!w->dir || !w->name || !w->fingerprint || !w->shards || !w->cctx) {
        ft_shard_writer_abort(w);
        return FT_ERR(FT_E_OOM, "out of memory opening shard writer for %s/%s", dir, name);
    }
    w->fp_hash = XXH3_64bits(w->fingerprint, strlen(w->fingerprint));
    *out = w;
    return FT_OK;
}

static ft_status sh_flush(ft_shard_writer *w) {
    ft_examples *b = &w->buf;
    if (b->n == 0) return FT_OK;
    char file[512], path[4096];
    snprintf(file, sizeof file, "%s-%05lld.ftshard", w->name, (long long)w->n_shards);
    snprintf(path, sizeof path, "%s/%s", w->dir, file);
    const void *parts[3] = {b->offsets, b->tokens, b->mask};
    const size_t sizes[3] = {(size_t)(b->n + 1) * 8, (size_t)b->n_tokens * 4, (size_t)b->n_tokens};
    const size_t payload = sizes[0] + sizes[1] + sizes[2];
    uint64_t xx;
    {
        XXH3_state_t *h = XXH3_createState();
        if (!h) return FT_ERR(FT_E_OOM, "out of memory hashing %s", path);
        XXH3_64bits_reset(h);
        for (int i = 0; i < 3; i++) XXH3_64bits_update(h, parts[i], sizes[i]);
        xx = XXH3_64bits_digest(h);
        XXH3_freeState(h);
    }
    size_t bound = ZSTD_compressBound(payload);
    if (bound > w->zcap) {
        uint8_t *z = realloc(w->zbuf, bound);
        if (!z) return FT_ERR(FT_E_OOM, "out of memory compressing %s (%zu bytes)", path, bound);
        w->zbuf = z;
        w->zcap = bound;
    }
    ZSTD_CCtx_reset(w->cctx, ZSTD_reset_session_and_parameters);
    ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_compressionLevel, w->level);
    ZSTD_CCtx_setPledgedSrcSize(w->cctx, payload);
    ZSTD_outBuffer zo = {w->zbuf, w->zcap, 0};
    for (int i = 0; i < 3; i++) {
        ZSTD_inBuffer zi = {parts[i], sizes[i], 0};
        ZSTD_EndDirective end = i == 2 ? ZSTD_e_end : ZSTD_e_continue;
        size_t rem;
        do {
            rem = ZSTD_compressStream2(w->cctx, &zo, &zi, end);
            if (ZSTD_isError(rem)) return FT_ERR(FT_E_INTERNAL, "%s: zstd compression failed: %s", path, ZSTD_getErrorName(rem));
        } while (end == ZSTD_e_end ? rem != 0 : zi.pos < zi.size);
    }
    uint8_t hdr[FT_SHARD_HEADER_BYTES] = {0};
    memcpy(hdr, FT_SHARD_MAGIC, 8);
    ft_put_u32(hdr + 8, FT_SHARD_VERSION);
    ft_put_u32(hdr + 12, FT_SHARD_HEADER_BYTES);
    ft_put_u64(hdr + 16, (uint64_t)b->n);
    ft_put_u64(hdr + 24, (uint64_t)b->n_tokens);
    ft_put_u64(hdr + 32, payload);
    ft_put_u64(hdr + 40, zo.pos);
    ft_put_u64(hdr + 48, xx);
    ft_put_u64(hdr + 56, w->fp_hash);
    ft_put_u64(hdr + 64, (uint64_t)w->n_shards);
    ft_put_u64(hdr + 72, XXH3_64bits(hdr, 72));
    const void *fparts[2] = {hdr, w->zbuf};
    const size_t fsizes[2] = {sizeof hdr, zo.pos};
    FT_TRY(sh_write_atomic(path, fparts, fsizes, 2));

    int64_t targets = 0;
    for (int64_t i = 0; i < b->n; i++) targets += ft_examples_targets(b, i);
    char hex[17];
    snprintf(hex, sizeof hex, "%016" PRIx64, xx);
    cJSON *e = cJSON_CreateObject();
    if (!e || !cJSON_AddStringToObject(e, "file", file) || !cJSON_AddNumberToObject(e, "n_examples", (double)b->n) ||
        !cJSON_AddNumberToObject(e, "n_tokens", (double)b->n_tokens) ||
        !cJSON_AddNumberToObject(e, "n_targets", (double)targets) ||
        !cJSON_AddNumberToObject(e, "bytes", (double)(sizeof hdr + zo.pos)) ||
        !cJSON_AddStringToObject(e, "xxh3", hex)) {
        cJSON_Delete(e);
        return FT_ERR(FT_E_OOM, "out of memory building the shard index");
    }
    cJSON_AddItemToArray(w->shards, e);
    w->n_shards++;
    w->n_examples += b->n;
    w->n_tokens += b->n_tokens;
    w->n_targets += targets;
    w->bytes += (int64_t)(sizeof hdr + zo.pos);
    b->n = b->n_tokens = 0; /* keep the allocation */
    return FT_OK;
}

ft_status ft_shard_writer_add(ft_shard_writer *w, const int32_t *tokens, const uint8_t *mask, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (tokens[i] < 0) return FT_ERR(FT_E_ARG, "%s: negative token id %d in example", w->name, tokens[i]);
    FT_TRY(ft_examples_add(&w->buf, tokens, mask, n));
    if (n > 0) {
        const int b = 63 - __builtin_clzll((unsigned long long)n);
        w->len_n[b]++, w->len_tokens[b] += n, w->len_sq[b] += (double)n * (double)n;
    }
    if (w->buf.n_tokens >= w->shard_tokens) FT_TRY(sh_flush(w));
    return FT_OK;
}

ft_status ft_shard_writer_add_all(ft_shard_writer *w, const ft_examples *ex) {
    for (int64_t i = 0; i < ex->n; i++)
        FT_TRY(ft_shard_writer_add(w, ex->tokens + ex->offsets[i], ex->mask + ex->offsets[i], ft_examples_len(ex, i)));
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
    ZSTD_freeCCtx(w->cctx);
    free(w->zbuf);
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
