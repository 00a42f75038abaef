/* checkpoint.c: see checkpoint.h. Both directions stream: the payload is compressed from (or
 * decompressed into) the caller's host arrays in chunks, and the checksum is computed on the
 * bytes as they go to (or come from) the file. */
#include "trainer/checkpoint.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>
#include <zstd.h>

#include "kernels/le.h"
#include "kernels/fileio.h"
#include "kernels/json.h"
#include "kernels/log.h"
#include "kernels/mem.h"

#define FT_CKPT_HEADER 32
#define FT_CKPT_TRAILER 16
#define FT_CKPT_ZLEVEL 3

static const char *const ft_sections[3] = {"lora.params", "adamw.m", "adamw.v"};


/* ---- write -------------------------------------------------------------------------------- */

static char *ft_meta_json(const ft_ckpt_state *s) {
    char *toks = malloc((size_t)s->n_tokens * 12 + 1); /* ", " and up to 10 digits each */
    if (!toks) return NULL;
    size_t tl = 0;
    toks[0] = 0;
    for (int64_t i = 0; i < s->n_tokens; i++) tl += (size_t)sprintf(toks + tl, "%s%d", i ? ", " : "", s->tokens[i]);
    size_t cap = 4096 + tl;
    char *j = malloc(cap);
    if (!j) {
        free(toks);
        return NULL;
    }
    int64_t n = s->n_params;
    snprintf(j, cap,
             "{\n"
             "  \"format\": \"ftune-checkpoint\",\n"
             "  \"version\": %d,\n"
             "  \"step\": %" PRId64 ",\n"
             "  \"steps_total\": %" PRId64 ",\n"
             "  \"seed\": \"%" PRIu64 "\",\n"
             "  \"lora\": {\"n_params\": %" PRId64 ", \"r\": %" PRId64 ", \"layers\": %" PRId64
             ", \"targets\": %" PRIu32 ", \"tokens\": [%s], \"dora\": %s},\n"
             "  \"adamw_t\": %" PRId64 ",\n"
             "  \"data_cursor\": {\"seed\": \"%" PRIu64 "\", \"epoch\": %" PRId64 ", \"index\": %" PRId64
             ", \"rows\": %" PRId64 ", \"plan_hash\": \"%016" PRIx64 "\"},\n"
             "  \"guard\": {\"n\": %" PRId64 ", \"mean\": \"%a\", \"var\": \"%a\", \"consecutive\": %" PRId64
             ", \"skipped\": %" PRId64
             ", \"best\": \"%a\", \"best_step\": %" PRId64 ", \"above\": %" PRId64 ", \"above_from\": %" PRId64
             ", \"rollbacks\": %" PRId64 "},\n"
             "  \"validation\": {\"best\": \"%a\", \"step\": %" PRId64 ", \"since\": %" PRId64 "},\n"
             "  \"elapsed_s\": \"%a\",\n"
             "  \"elapsed_readable_s\": %.3f,\n"
             "  \"tokens_seen\": %" PRId64 ",\n"
             "  \"sections\": [\n"
             "    {\"name\": \"%s\", \"dtype\": \"F32\", \"offset\": 0, \"count\": %" PRId64 "},\n"
             "    {\"name\": \"%s\", \"dtype\": \"F32\", \"offset\": %" PRId64 ", \"count\": %" PRId64 "},\n"
             "    {\"name\": \"%s\", \"dtype\": \"F32\", \"offset\": %" PRId64 ", \"count\": %" PRId64 "}\n"
             "  ]\n"
             "}\n",
             FT_CKPT_VERSION, s->step, s->steps_total, s->seed, s->n_params, s->lora_r, s->lora_layers, s->lora_targets,
             toks, s->dora ? "true" : "false", s->adamw_t, s->cursor.seed, s->cursor.epoch, s->cursor.index, s->cursor.rows, s->cursor.plan_hash,
             s->guard.n, s->guard.mean, s->guard.var, s->guard.consecutive, s->guard.skipped,
             s->guard.best, s->guard.best_step, s->guard.above, s->guard.above_from, s->guard.rollbacks, s->val.loss,
             s->val.step, s->val.since, s->elapsed_s, s->elapsed_s,
             s->tokens_seen, ft_sections[0], n, ft_sections[1], n * 4, n, ft_sections[2], 2 * n * 4, n);
    free(toks);
    return j;
}

typedef struct ft_ckpt_out {
    ft_afile af;
    XXH3_state_t *h;
} ft_ckpt_out;

static ft_status ft_out(ft_ckpt_out *o, const void *p, size_t n) {
    XXH3_64bits_update(o->h, p, n);
    return ft_afile_write(&o->af, p, (int64_t)n);
}

ft_status ft_ckpt_write(const char *path, const ft_ckpt_state *s, const float *params, const float *m,
                        const float *v) {
    ft_ckpt_out o = {0};
    ZSTD_CCtx *cz = NULL;
    uint8_t *zbuf = NULL;
    char *meta = ft_meta_json(s);
    ft_status st;
    int opened = 0;
    o.h = XXH3_createState();
    cz = ZSTD_createCCtx();
    size_t zcap = ZSTD_CStreamOutSize();
    zbuf = malloc(zcap);
    if (!meta || !o.h || !cz || !zbuf) {
        st = FT_ERR(FT_E_OOM, "%s: out of memory writing the checkpoint", path);
        goto done;
    }
    XXH3_64bits_reset(o.h);
    const size_t meta_len = strlen(meta), vec = (size_t)s->n_params * 4;
    uint8_t hdr[FT_CKPT_HEADER] = {0};
    memcpy(hdr, FT_CKPT_MAGIC, 8);
    ft_put_u32(hdr + 8, FT_CKPT_VERSION);
    ft_put_u32(hdr + 12, FT_CKPT_HEADER);
    ft_put_u64(hdr + 16, meta_len);
    ft_put_u64(hdr + 24, 3 * (uint64_t)vec);
    FT_CHECK_GOTO(st, ft_afile_open(&o.af, path), done);
    opened = 1;
    FT_CHECK_GOTO(st, ft_out(&o, hdr, sizeof hdr), done);
    FT_CHECK_GOTO(st, ft_out(&o, meta, meta_len), done);

    ZSTD_CCtx_setParameter(cz, ZSTD_c_compressionLevel, FT_CKPT_ZLEVEL);
    ZSTD_CCtx_setParameter(cz, ZSTD_c_checksumFlag, 0); /* the file has its own checksum */
    ZSTD_CCtx_setPledgedSrcSize(cz, 3 * (unsigned long long)vec);
    const float *parts[3] = {params, m, v};
    uint64_t zbytes = 0;
    for (int i = 0; i < 3; i++) {
        ZSTD_inBuffer in = {parts[i], vec, 0};
        ZSTD_EndDirective end = i == 2 ? ZSTD_e_end : ZSTD_e_continue;
        for (;;) {
            ZSTD_outBuffer out = {zbuf, zcap, 0};
            size_t rem = ZSTD_compressStream2(cz, &out, &in, end);
            if (ZSTD_isError(rem)) {
                st = FT_ERR(FT_E_INTERNAL, "%s: zstd compression failed: %s", path, ZSTD_getErrorName(rem));
                goto done;
            }
            FT_CHECK_GOTO(st, ft_out(&o, zbuf, out.pos), done);
            zbytes += out.pos;
            if (end == ZSTD_e_end ? rem == 0 : in.pos == in.size) break;
        }
    }
    uint8_t tail[8];
    ft_put_u64(tail, zbytes);
    FT_CHECK_GOTO(st, ft_out(&o, tail, 8), done);
    ft_put_u64(tail, XXH3_64bits_digest(o.h));
    FT_CHECK_GOTO(st, ft_afile_write(&o.af, tail, 8), done);
    opened = 0;
    st = ft_afile_commit(&o.af);
done:
    if (opened) ft_afile_abort(&o.af);
    XXH3_freeState(o.h);
    ZSTD_freeCCtx(cz);
    free(zbuf);
    free(meta);
    return st;
}

/* ---- read --------------------------------------------------------------------------------- */

static ft_status ft_corrupt(const char *path) { return FT_ERR(FT_E_FORMAT, "%s: checksum mismatch (file corrupt)", path); }

/* Pass 1: XXH3 of bytes [0, size - 8) against the last 8 bytes. */
static ft_status ft_verify(FILE *f, const char *path, int64_t size) {
    if (size < FT_CKPT_HEADER + FT_CKPT_TRAILER) return ft_corrupt(path);
    XXH3_state_t *h = XXH3_createState();
    const size_t cap = 4 << 20;
    uint8_t *buf = malloc(cap);
    ft_status st = FT_OK;
    if (!h || !buf) {
        st = FT_ERR(FT_E_OOM, "%s: out of memory verifying the checkpoint", path);
        goto done;
    }
    XXH3_64bits_reset(h);
    int64_t left = size - 8;
    while (left > 0) {
        size_t want = left < (int64_t)cap ? (size_t)left : cap;
        if (fread(buf, 1, want, f) != want) {
            st = FT_ERR(FT_E_IO, "%s: read failed: %s", path, strerror(errno));
            goto done;
        }
        XXH3_64bits_update(h, buf, want);
        left -= (int64_t)want;
    }
    uint8_t tail[8];
    if (fread(tail, 1, 8, f) != 8) {
        st = FT_ERR(FT_E_IO, "%s: read failed: %s", path, strerror(errno));
        goto done;
    }
    if (ft_get_u64(tail) != XXH3_64bits_digest(h)) st = ft_corrupt(path);
done:
    XXH3_freeState(h);
    free(buf);
    return st;
}

static int64_t js_i64(const cJSON *o, const char *key, int *ok) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v)) {
        *ok = 0;
        return 0;
    }
    return (int64_t)v->valuedouble;
}

static uint64_t js_u64(const cJSON *o, const char *key, int base, int *ok) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    char *end;
    if (!cJSON_IsString(v) || !v->valuestring[0]) {
        *ok = 0;
        return 0;
    }
    errno = 0;
    uint64_t x = strtoull(v->valuestring, &end, base);
    if (errno || *end) *ok = 0;
    return x;
}

static double js_hexf(const cJSON *o, const char *key, int *ok) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    char *end;
    if (!cJSON_IsString(v)) {
        *ok = 0;
        return 0;
    }
    double x = strtod(v->valuestring, &end);
    if (end == v->valuestring || *end) *ok = 0;
    return x;
}

static ft_status ft_parse_meta(const char *path, const char *text, size_t len, ft_ckpt_state *s) {
    cJSON *j = NULL;
    char what[4200];
    snprintf(what, sizeof what, "%s (checkpoint metadata)", path);
    FT_TRY(ft_json_parse(text, (int64_t)len, what, &j));
    int ok = 1;
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(j, "format");
    const cJSON *lora = cJSON_GetObjectItemCaseSensitive(j, "lora");
    const cJSON *cur = cJSON_GetObjectItemCaseSensitive(j, "data_cursor");
    const cJSON *g = cJSON_GetObjectItemCaseSensitive(j, "guard");
    if (!cJSON_IsString(fmt) || strcmp(fmt->valuestring, "ftune-checkpoint") != 0 || !cJSON_IsObject(lora) ||
        !cJSON_IsObject(cur) || !cJSON_IsObject(g))
        ok = 0;
    memset(s, 0, sizeof *s);
    if (ok) {
        s->step = js_i64(j, "step", &ok);
        s->steps_total = js_i64(j, "steps_total", &ok);
        s->seed = js_u64(j, "seed", 10, &ok);
        s->n_params = js_i64(lora, "n_params", &ok);
        s->lora_r = js_i64(lora, "r", &ok);
        s->lora_layers = js_i64(lora, "layers", &ok);
        s->lora_targets = (uint32_t)js_i64(lora, "targets", &ok);
        const cJSON *toks = cJSON_GetObjectItemCaseSensitive(lora, "tokens"); /* absent before trainable tokens */
        if (toks && (!cJSON_IsArray(toks) || cJSON_GetArraySize(toks) > FT_CKPT_MAX_TOKENS)) ok = 0;
        const cJSON *t, *list = ok ? toks : NULL;
        cJSON_ArrayForEach(t, list) {
            if (!cJSON_IsNumber(t) || !(t->valuedouble >= 0 && t->valuedouble < 2147483647.0) ||
                t->valuedouble != (double)(int32_t)t->valuedouble) {
                ok = 0;
                break;
            }
            s->tokens[s->n_tokens++] = (int32_t)t->valuedouble;
        }
        const cJSON *dora = cJSON_GetObjectItemCaseSensitive(lora, "dora"); /* absent before DoRA */
        if (dora && !cJSON_IsBool(dora)) ok = 0;
        s->dora = cJSON_IsTrue(dora);
        s->adamw_t = js_i64(j, "adamw_t", &ok);
        s->cursor.seed = js_u64(cur, "seed", 10, &ok);
        s->cursor.epoch = js_i64(cur, "epoch", &ok);
        s->cursor.index = js_i64(cur, "index", &ok);
        s->cursor.rows = js_i64(cur, "rows", &ok);
        s->cursor.plan_hash = js_u64(cur, "plan_hash", 16, &ok);
        s->guard.n = js_i64(g, "n", &ok);
        s->guard.mean = js_hexf(g, "mean", &ok);
        s->guard.var = js_hexf(g, "var", &ok);
        s->guard.consecutive = js_i64(g, "consecutive", &ok);
        s->guard.skipped = js_i64(g, "skipped", &ok);
        if (cJSON_GetObjectItemCaseSensitive(g, "best")) { /* absent before the divergence guard: it starts over */
            s->guard.best = js_hexf(g, "best", &ok);
            s->guard.best_step = js_i64(g, "best_step", &ok);
            s->guard.above = js_i64(g, "above", &ok);
        }
        if (cJSON_GetObjectItemCaseSensitive(g, "above_from")) /* absent before it: 0, counted back from the step */
            s->guard.above_from = js_i64(g, "above_from", &ok);
        if (cJSON_GetObjectItemCaseSensitive(g, "rollbacks")) /* absent before training.max_rollbacks: none */
            s->guard.rollbacks = js_i64(g, "rollbacks", &ok);
        const cJSON *val = cJSON_GetObjectItemCaseSensitive(j, "validation");
        s->val = (ft_val_best){.loss = NAN, .step = -1, .since = 0}; /* absent before eval.keep_best */
        if (val) {
            s->val.loss = js_hexf(val, "best", &ok);
            s->val.step = js_i64(val, "step", &ok);
            s->val.since = js_i64(val, "since", &ok);
        }
        s->elapsed_s = js_hexf(j, "elapsed_s", &ok);
        s->tokens_seen = js_i64(j, "tokens_seen", &ok);
    }
    cJSON_Delete(j);
    if (!ok || s->step < 0 || s->n_params < 0)
        return FT_ERR(FT_E_FORMAT, "%s: checkpoint metadata lacks a field or has a bad value", path);
    return FT_OK;
}

ft_status ft_ckpt_read(const char *path, ft_ckpt_state *s, float **data) {
    *data = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return FT_ERR(FT_E_IO, "%s: cannot open checkpoint: %s", path, strerror(errno));
    ft_status st;
    char *meta = NULL;
    uint8_t *zin = NULL;
    float *out = NULL;
    ZSTD_DCtx *dz = NULL;
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0) {
        st = FT_ERR(FT_E_IO, "%s: cannot stat: %s", path, strerror(errno));
        goto done;
    }
    const int64_t size = (int64_t)sb.st_size;
    FT_CHECK_GOTO(st, ft_verify(f, path, size), done);

    /* pass 2: the file is intact; parse it */
    uint8_t hdr[FT_CKPT_HEADER], tail[8];
    rewind(f);
    if (fread(hdr, 1, sizeof hdr, f) != sizeof hdr) {
        st = FT_ERR(FT_E_IO, "%s: read failed", path);
        goto done;
    }
    if (memcmp(hdr, FT_CKPT_MAGIC, 8) != 0) {
        st = FT_ERR(FT_E_FORMAT, "%s: not an ftune checkpoint", path);
        goto done;
    }
    if (ft_get_u32(hdr + 8) != FT_CKPT_VERSION || ft_get_u32(hdr + 12) != FT_CKPT_HEADER) {
        st = FT_ERR(FT_E_FORMAT, "%s: checkpoint version %u is not supported (this build reads version %d)", path,
                    ft_get_u32(hdr + 8), FT_CKPT_VERSION);
        goto done;
    }
    const uint64_t meta_len = ft_get_u64(hdr + 16), payload = ft_get_u64(hdr + 24);
    if (fseeko(f, size - FT_CKPT_TRAILER, SEEK_SET) != 0 || fread(tail, 1, 8, f) != 8) {
        st = FT_ERR(FT_E_IO, "%s: read failed", path);
        goto done;
    }
    const uint64_t zbytes = ft_get_u64(tail);
    if (meta_len > (uint64_t)size || zbytes > (uint64_t)size ||
        FT_CKPT_HEADER + meta_len + zbytes + FT_CKPT_TRAILER != (uint64_t)size) {
        st = FT_ERR(FT_E_FORMAT, "%s: checkpoint sections do not add up to the file size", path);
        goto done;
    }
    FT_CHECK_GOTO(st, ft_malloc((void **)&meta, meta_len + 1, "checkpoint metadata"), done);
    if (fseeko(f, FT_CKPT_HEADER, SEEK_SET) != 0 || fread(meta, 1, meta_len, f) != meta_len) {
        st = FT_ERR(FT_E_IO, "%s: read failed", path);
        goto done;
    }
    meta[meta_len] = 0;
    FT_CHECK_GOTO(st, ft_parse_meta(path, meta, meta_len, s), done);
    if (payload != 3 * (uint64_t)s->n_params * 4) {
        st = FT_ERR(FT_E_FORMAT, "%s: payload of %llu bytes does not hold 3 x %lld floats", path,
                    (unsigned long long)payload, (long long)s->n_params);
        goto done;
    }
    FT_CHECK_GOTO(st, ft_malloc((void **)&out, payload ? payload : 4, "checkpoint tensors"), done);
    const size_t cap = ZSTD_DStreamInSize();
    FT_CHECK_GOTO(st, ft_malloc((void **)&zin, cap, "checkpoint read buffer"), done);
    dz = ZSTD_createDCtx();
    if (!dz) {
        st = FT_ERR(FT_E_OOM, "%s: out of memory", path);
        goto done;
    }
    ZSTD_outBuffer zo = {out, payload, 0};
    uint64_t left = zbytes;
    size_t ret = 1;
    while (left > 0) {
        size_t want = left < cap ? (size_t)left : cap;
        if (fread(zin, 1, want, f) != want) {
            st = FT_ERR(FT_E_IO, "%s: read failed", path);
            goto done;
        }
        left -= want;
        ZSTD_inBuffer zi = {zin, want, 0};
        while (zi.pos < zi.size) {
            ret = ZSTD_decompressStream(dz, &zo, &zi);
            if (ZSTD_isError(ret)) {
                st = FT_ERR(FT_E_FORMAT, "%s: checkpoint payload does not decompress: %s", path, ZSTD_getErrorName(ret));
                goto done;
            }
            if (ret == 0 && zi.pos < zi.size) break;
        }
    }
    if (ret != 0 || zo.pos != payload) {
        st = FT_ERR(FT_E_FORMAT, "%s: checkpoint payload is %zu bytes, expected %llu", path, zo.pos,
                    (unsigned long long)payload);
        goto done;
    }
    *data = out;
    out = NULL;
    st = FT_OK;
done:
    ZSTD_freeDCtx(dz);
    ft_free(zin);
    ft_free(out);
    ft_free(meta);
    fclose(f);
    return st;
}

/* ---- directory ---------------------------------------------------------------------------- */

void ft_ckpt_path(char *buf, size_t cap, const char *dir, int64_t step) {
    snprintf(buf, cap, "%s/step-%06lld.ckpt", dir, (long long)step);
}

/* step of "step-NNNNNN<suffix>" (suffix ".ckpt", or ".ckpt.superseded"), or -1 */
static int64_t ft_ckpt_name_step_as(const char *name, const char *suffix) {
    if (strncmp(name, "step-", 5) != 0) return -1;
    const char *p = name + 5;
    int64_t v = 0;
    int digits = 0;
    while (*p >= '0' && *p <= '9' && digits < 18) v = v * 10 + (*p++ - '0'), digits++;
    return digits >= 6 && strcmp(p, suffix) == 0 ? v : -1;
}

static int64_t ft_ckpt_name_step(const char *name) { return ft_ckpt_name_step_as(name, ".ckpt"); }

static int ft_cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

ft_status ft_ckpt_list(const char *dir, int64_t **steps, int64_t *n) {
    *steps = NULL, *n = 0;
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT) return FT_OK;
        return FT_ERR(FT_E_IO, "%s: cannot list checkpoints: %s", dir, strerror(errno));
    }
    int64_t cap = 0;
    struct dirent *e;
    ft_status st = FT_OK;
    while ((e = readdir(d))) {
        int64_t s = ft_ckpt_name_step(e->d_name);
        if (s < 0) continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            int64_t *p = realloc(*steps, (size_t)cap * sizeof *p);
            if (!p) {
                st = FT_ERR(FT_E_OOM, "out of memory listing %s", dir);
                break;
            }
            *steps = p;
        }
        (*steps)[(*n)++] = s;
    }
    closedir(d);
    if (st != FT_OK) {
        free(*steps);
        *steps = NULL, *n = 0;
        return st;
    }
    if (*n) qsort(*steps, (size_t)*n, sizeof **steps, ft_cmp_i64);
    return FT_OK;
}

/* Removes the "step-N.ckpt.superseded" files (a rollback's or a --resume PATH's abandoned future,
 * run_ckpt.c) of steps before `oldest`, the oldest checkpoint rotation keeps. Rotation never saw
 * them, so each rollback used to leave up to checkpoint.keep - 1 full-size checkpoints for good
 * (a 70B adapter's: 2.3 GiB each), which the start-up disk check does not count either. Those at
 * or after `oldest` stay until rotation passes them, for a look at the diverged state. */
static void ft_ckpt_prune_superseded(const char *dir, int64_t oldest) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        const int64_t s = ft_ckpt_name_step_as(e->d_name, ".ckpt.superseded");
        if (s < 0 || s >= oldest) continue;
        char path[4200];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (unlink(path) != 0) ft_warn("cannot remove old checkpoint %s: %s", path, strerror(errno));
    }
    closedir(d);
}

ft_status ft_ckpt_prune(const char *dir, int64_t keep) {
    if (keep <= 0) return FT_OK;
    int64_t *steps, n;
    FT_TRY(ft_ckpt_list(dir, &steps, &n));
    for (int64_t i = 0; i + keep < n; i++) {
        char path[4200];
        ft_ckpt_path(path, sizeof path, dir, steps[i]);
        if (unlink(path) != 0) ft_warn("cannot remove old checkpoint %s: %s", path, strerror(errno));
    }
    if (n > 0) ft_ckpt_prune_superseded(dir, steps[n > keep ? n - keep : 0]);
    free(steps);
    return FT_OK;
}

void ft_ckpt_clean_tmp(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, "step-", 5) != 0 || !strstr(e->d_name, ".ckpt.tmp.")) continue;
        char path[4200];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (unlink(path) == 0) ft_info("removed %s (left by an interrupted checkpoint write)", path);
    }
    closedir(d);
}
