/* test_safetensors.c: the safetensors writer (export/safetensors_write) and reader
 * (trainer/safetensors_read): round trips of every dtype and several shapes with metadata, a
 * sharded index round trip, a file written by huggingface/safetensors, streaming with bounded
 * RSS, atomic-write failure paths, a table of malformed files and indexes (status + message
 * naming the file), and truncation/byte-flip fuzzing that must never crash (run under ASan). */
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "export/safetensors_write.h"
#include "kernels/mem.h"
#include "tests/harness.h"
#include "trainer/safetensors_read.h"

/* A file written by huggingface/safetensors 0.8.0 (torch 2.15):
 *   save_file({"b.bf16": bf16 [[1,-2,.5],[3,0,-.25]], "a.f32": f32 [1.5,-1], "c.i64": i64 [7],
 *              "d.f16": f16 [.5], "e.u8": u8 [1,2,3]}, metadata={"format": "pt"})
 * Its writer orders tensors by dtype size, then name, and pads the header to 8 bytes. */
static const uint8_t hf_file[] = {
    0x48, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x7b, 0x22, 0x5f, 0x5f, 0x6d, 0x65, 0x74, 0x61, 0x64, 0x61, 0x74, 0x61,
    0x5f, 0x5f, 0x22, 0x3a, 0x7b, 0x22, 0x66, 0x6f, 0x72, 0x6d, 0x61, 0x74, 0x22, 0x3a, 0x22, 0x70, 0x74, 0x22, 0x7d, 0x2c,
    0x22, 0x63, 0x2e, 0x69, 0x36, 0x34, 0x22, 0x3a, 0x7b, 0x22, 0x64, 0x74, 0x79, 0x70, 0x65, 0x22, 0x3a, 0x22, 0x49, 0x36,
    0x34, 0x22, 0x2c, 0x22, 0x73, 0x68, 0x61, 0x70, 0x65, 0x22, 0x3a, 0x5b, 0x31, 0x5d, 0x2c, 0x22, 0x64, 0x61, 0x74, 0x61,
    0x5f, 0x6f, 0x66, 0x66, 0x73, 0x65, 0x74, 0x73, 0x22, 0x3a, 0x5b, 0x30, 0x2c, 0x38, 0x5d, 0x7d, 0x2c, 0x22, 0x61, 0x2e,
    0x66, 0x33, 0x32, 0x22, 0x3a, 0x7b, 0x22, 0x64, 0x74, 0x79, 0x70, 0x65, 0x22, 0x3a, 0x22, 0x46, 0x33, 0x32, 0x22, 0x2c,
    0x22, 0x73, 0x68, 0x61, 0x70, 0x65, 0x22, 0x3a, 0x5b, 0x32, 0x5d, 0x2c, 0x22, 0x64, 0x61, 0x74, 0x61, 0x5f, 0x6f, 0x66,
    0x66, 0x73, 0x65, 0x74, 0x73, 0x22, 0x3a, 0x5b, 0x38, 0x2c, 0x31, 0x36, 0x5d, 0x7d, 0x2c, 0x22, 0x62, 0x2e, 0x62, 0x66,
    0x31, 0x36, 0x22, 0x3a, 0x7b, 0x22, 0x64, 0x74, 0x79, 0x70, 0x65, 0x22, 0x3a, 0x22, 0x42, 0x46, 0x31, 0x36, 0x22, 0x2c,
    0x22, 0x73, 0x68, 0x61, 0x70, 0x65, 0x22, 0x3a, 0x5b, 0x32, 0x2c, 0x33, 0x5d, 0x2c, 0x22, 0x64, 0x61, 0x74, 0x61, 0x5f,
    0x6f, 0x66, 0x66, 0x73, 0x65, 0x74, 0x73, 0x22, 0x3a, 0x5b, 0x31, 0x36, 0x2c, 0x32, 0x38, 0x5d, 0x7d, 0x2c, 0x22, 0x64,
    0x2e, 0x66, 0x31, 0x36, 0x22, 0x3a, 0x7b, 0x22, 0x64, 0x74, 0x79, 0x70, 0x65, 0x22, 0x3a, 0x22, 0x46, 0x31, 0x36, 0x22,
    0x2c, 0x22, 0x73, 0x68, 0x61, 0x70, 0x65, 0x22, 0x3a, 0x5b, 0x31, 0x5d, 0x2c, 0x22, 0x64, 0x61, 0x74, 0x61, 0x5f, 0x6f,
    0x66, 0x66, 0x73, 0x65, 0x74, 0x73, 0x22, 0x3a, 0x5b, 0x32, 0x38, 0x2c, 0x33, 0x30, 0x5d, 0x7d, 0x2c, 0x22, 0x65, 0x2e,
    0x75, 0x38, 0x22, 0x3a, 0x7b, 0x22, 0x64, 0x74, 0x79, 0x70, 0x65, 0x22, 0x3a, 0x22, 0x55, 0x38, 0x22, 0x2c, 0x22, 0x73,
    0x68, 0x61, 0x70, 0x65, 0x22, 0x3a, 0x5b, 0x33, 0x5d, 0x2c, 0x22, 0x64, 0x61, 0x74, 0x61, 0x5f, 0x6f, 0x66, 0x66, 0x73,
    0x65, 0x74, 0x73, 0x22, 0x3a, 0x5b, 0x33, 0x30, 0x2c, 0x33, 0x33, 0x5d, 0x7d, 0x7d, 0x20, 0x20, 0x07, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc0, 0x3f, 0x00, 0x00, 0x80, 0xbf, 0x80, 0x3f, 0x00, 0xc0, 0x00, 0x3f, 0x40, 0x40,
    0x00, 0x00, 0x80, 0xbe, 0x00, 0x38, 0x01, 0x02, 0x03,
};

static char *path_in(const char *dir, const char *name) {
    static char buf[8][1024]; /* test-only rotating buffers */
    static int k;
    char *p = buf[k++ % 8];
    snprintf(p, 1024, "%s/%s", dir, name);
    return p;
}

/* A fresh directory under the test tmpdir; each call gets its own buffer (at most 32 per run). */
static const char *mkdir_in(const char *name) {
    static char dirs[32][1024];
    static int k;
    char *p = dirs[k++ % 32];
    snprintf(p, 1024, "%s/%s", ft_test_tmpdir(), name);
    mkdir(p, 0755);
    return p;
}

static void write_bytes(const char *path, const void *b, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(b, 1, n, f) != n)) {
        perror(path);
        abort();
    }
    fclose(f);
}

/* Writes 8-byte length (hlen, or strlen(json) when hlen < 0) + json + data_len bytes of data. */
static void write_st(const char *path, const char *json, int64_t hlen, int64_t data_len) {
    size_t jl = strlen(json);
    uint64_t n = hlen < 0 ? jl : (uint64_t)hlen;
    size_t total = 8 + jl + (size_t)data_len;
    uint8_t *b = calloc(1, total);
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(n >> (8 * i));
    memcpy(b + 8, json, jl);
    for (int64_t i = 0; i < data_len; i++) b[8 + jl + i] = (uint8_t)(i * 7 + 1);
    write_bytes(path, b, total);
    free(b);
}

/* Files in dir whose name contains ".tmp-" (leftover temporaries of the writer). */
static int count_tmp_files(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strstr(e->d_name, ".tmp-")) n++;
    if (d) closedir(d);
    return n;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint8_t rnd8(void) {
    rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
    return (uint8_t)(rng_state >> 24);
}

/* ---------------------------------------------------------------------------------------------- */

static void test_dtype_table(void) {
    for (int i = 0; i < FT_ST_DTYPE_COUNT; i++) {
        ft_st_dtype t;
        FT_CHECK(ft_st_dtype_from_name(ft_st_dtype_name((ft_st_dtype)i), &t) && t == (ft_st_dtype)i, "dtype %d name",
                 i);
        FT_CHECK(ft_st_dtype_bits((ft_st_dtype)i) > 0, "dtype %d bits", i);
    }
    ft_st_dtype t;
    FT_CHECK(!ft_st_dtype_from_name("bf16", &t), "dtype names are case-sensitive");
    FT_CHECK(ft_st_dtype_bits(FT_ST_BF16) == 16 && ft_st_dtype_bits(FT_ST_F4) == 4 && ft_st_dtype_bits(FT_ST_C64) == 64,
             "bits");
    ft_dtype fd;
    FT_CHECK(ft_st_dtype_to_ft(FT_ST_BF16, &fd) && fd == FT_BF16, "BF16 maps");
    FT_CHECK(!ft_st_dtype_to_ft(FT_ST_I8, &fd), "I8 has no ft dtype");
    FT_CHECK(ft_st_dtype_from_ft(FT_F16, &t) && t == FT_ST_F16, "F16 maps back");
    FT_CHECK(!ft_st_dtype_from_ft(FT_NF4, &t), "NF4 has no safetensors dtype");
    int64_t numel, nbytes, shp[2] = {3, 5};
    FT_CHECK_OK(ft_st_dtype_nbytes(FT_ST_F6_E2M3, 2, (int64_t[]){4, 3}, &numel, &nbytes));
    FT_CHECK(numel == 12 && nbytes == 9, "F6 [4,3] = 9 bytes (got %lld)", (long long)nbytes);
    FT_CHECK(ft_st_dtype_nbytes(FT_ST_F4, 2, shp, &numel, &nbytes) == FT_E_FORMAT, "F4 [3,5] is not byte aligned");
}

/* Fill callback: byte i of the tensor is pattern(seed, i). */
typedef struct { uint8_t seed; int calls; } fill_ctx;
static uint8_t pattern(uint8_t seed, int64_t i) { return (uint8_t)(seed + i * 31 + (i >> 8)); }
static ft_status fill_pattern(void *user, void *dst, int64_t off, int64_t n) {
    fill_ctx *c = user;
    c->calls++;
    for (int64_t i = 0; i < n; i++) ((uint8_t *)dst)[i] = pattern(c->seed, off + i);
    return FT_OK;
}

static void test_round_trip(void) {
    const char *dir = mkdir_in("rt");
    const char *path = path_in(dir, "all.safetensors");
    /* shapes: scalar, empty, a zero dim, 1-D, 3-D, 5-D of ones; all with element counts that fill
     * whole bytes for the 4- and 6-bit dtypes (multiples of 4) */
    static const int nd[] = {0, 1, 3, 1, 3, 5};
    static const int64_t shapes[][5] = {{0}, {0}, {4, 0, 2}, {8}, {2, 3, 4}, {1, 1, 1, 1, 4}};
    enum { NS = 6 };
    const int nt = FT_ST_DTYPE_COUNT * NS;
    uint8_t *bufs[FT_ST_DTYPE_COUNT * NS] = {0};
    fill_ctx fills[FT_ST_DTYPE_COUNT * NS];
    char names[FT_ST_DTYPE_COUNT * NS][64];
    ft_stw *w;
    FT_CHECK_OK(ft_stw_open(&w, path));
    FT_CHECK_OK(ft_stw_set_metadata(w, "format", "pt"));
    FT_CHECK_OK(ft_stw_set_metadata(w, "note", "x"));
    FT_CHECK_OK(ft_stw_set_metadata(w, "note", "quote \" backslash \\ newline \n utf8 \xc3\xa9")); /* replaces */
    int k = 0;
    for (int d = FT_ST_DTYPE_COUNT - 1; d >= 0; d--) { /* any order is legal; the reader sorts by offset */
        for (int s = 0; s < NS; s++, k++) {
            int64_t numel = 1, nbytes = 0;
            snprintf(names[k], sizeof names[k], "t.%s.%d", ft_st_dtype_name((ft_st_dtype)d), s);
            if (ft_st_dtype_bits((ft_st_dtype)d) < 8 && nd[s] == 0) { /* a 4/6-bit scalar is not whole bytes */
                FT_CHECK(ft_stw_add(w, names[k], (ft_st_dtype)d, 0, NULL, "") == FT_E_ARG, "%s rejected", names[k]);
                names[k][0] = 0;
                continue;
            }
            FT_CHECK_OK(ft_st_dtype_nbytes((ft_st_dtype)d, nd[s], shapes[s], &numel, &nbytes));
            fills[k].seed = (uint8_t)k;
            fills[k].calls = 0;
            bufs[k] = malloc((size_t)nbytes + 1);
            for (int64_t i = 0; i < nbytes; i++) bufs[k][i] = pattern((uint8_t)k, i);
            if (k % 3 == 0)
                FT_CHECK_OK(ft_stw_add_fill(w, names[k], (ft_st_dtype)d, nd[s], shapes[s], fill_pattern, &fills[k]));
            else
                FT_CHECK_OK(ft_stw_add(w, names[k], (ft_st_dtype)d, nd[s], shapes[s], bufs[k]));
        }
    }
    int ntw = 0;
    for (int i = 0; i < nt; i++) ntw += names[i][0] != 0;
    FT_CHECK(ft_stw_count(w) == ntw, "count before finish");
    FT_CHECK_OK(ft_stw_finish(w));
    FT_CHECK(count_tmp_files(dir) == 0, "no temporary file left behind");

    /* the header is padded to 8 with spaces */
    char *raw;
    int64_t rawlen;
    FT_CHECK_OK(ft_test_read_file(path, &raw, &rawlen));
    uint64_t hl = 0;
    for (int i = 0; i < 8; i++) hl |= (uint64_t)(uint8_t)raw[i] << (8 * i);
    FT_CHECK(hl % 8 == 0 && raw[8] == '{', "header length %llu is a multiple of 8", (unsigned long long)hl);
    FT_CHECK(strstr(raw + 8, "\"format\":\"pt\"") != NULL, "metadata written");
    free(raw);

    ft_st_model *m = NULL;
    FT_CHECK_OK(ft_st_open(&m, path));
    if (!m) return;
    FT_CHECK(ft_st_count(m) == ntw, "count %lld", (long long)ft_st_count(m));
    FT_CHECK(ft_st_shard_count(m) == 1 && strcmp(ft_st_shard_path(m, 0), path) == 0, "one shard");
    FT_CHECK(strcmp(ft_st_get_metadata(m, "format"), "pt") == 0, "metadata format");
    FT_CHECK(strcmp(ft_st_get_metadata(m, "note"), "quote \" backslash \\ newline \n utf8 \xc3\xa9") == 0,
             "metadata escapes survive");
    FT_CHECK(ft_st_get_metadata(m, "absent") == NULL, "absent metadata");
    FT_CHECK(ft_st_metadata_count(m) == 2, "2 metadata entries");
    int64_t total = 0, prev_off = -1;
    for (int64_t i = 0, j = 0; i < ft_st_count(m); i++, j++) {
        const ft_st_tensor *t = ft_st_at(m, i);
        while (!names[j][0]) j++;
        /* file order = the order they were added (zero-size tensors share offsets: header order) */
        FT_CHECK(strcmp(t->name, names[j]) == 0, "order %lld: %s vs %s", (long long)i, t->name, names[j]);
        FT_CHECK(t->file_offset >= prev_off, "offsets increase");
        prev_off = t->file_offset;
        total += t->nbytes;
    }
    FT_CHECK(ft_st_total_bytes(m) == total, "total bytes");
    FT_CHECK(ft_st_at(m, -1) == NULL && ft_st_at(m, ntw) == NULL, "at() range");
    k = 0;
    for (int d = FT_ST_DTYPE_COUNT - 1; d >= 0; d--) {
        for (int s = 0; s < NS; s++, k++) {
            ft_st_tensor t;
            if (!names[k][0]) continue;
            FT_CHECK_OK(ft_st_find(m, names[k], &t));
            int ok = t.st_dtype == (ft_st_dtype)d && t.ndim == nd[s];
            for (int j = 0; j < nd[s]; j++) ok = ok && t.shape[j] == shapes[s][j];
            int64_t nbytes;
            ft_st_dtype_nbytes((ft_st_dtype)d, nd[s], shapes[s], NULL, &nbytes);
            ok = ok && t.nbytes == nbytes && memcmp(t.data, bufs[k], (size_t)nbytes) == 0;
            ok = ok && strcmp(t.shard, path) == 0 && t.shard_index == 0;
            FT_CHECK(ok, "tensor %s round trips", names[k]);
            ft_dtype fd;
            int maps = ft_st_dtype_to_ft((ft_st_dtype)d, &fd);
            ft_status st = ft_st_tensor_dtype(&t, &fd);
            FT_CHECK(maps ? st == FT_OK : st == FT_E_UNSUPPORTED, "%s: dtype support", names[k]);
            if (!maps)
                FT_CHECK(strstr(ft_error_msg(), names[k]) && strstr(ft_error_msg(), path) &&
                             strstr(ft_error_msg(), ft_st_dtype_name((ft_st_dtype)d)),
                         "unsupported dtype message names tensor, file, dtype: %s", ft_error_msg());
            free(bufs[k]);
        }
    }
    FT_CHECK(fills[0].calls >= 0, "fill used");
    FT_CHECK(ft_st_find(m, "nope", NULL) == FT_E_FORMAT && strstr(ft_error_msg(), "no tensor named \"nope\"") &&
                 strstr(ft_error_msg(), path), "find of a missing tensor: %s", ft_error_msg());
    FT_CHECK(!ft_st_has(m, "nope") && ft_st_has(m, ft_st_at(m, 0)->name), "has()");
    ft_st_close(m);
}

static void test_hf_written(void) {
    const char *path = path_in(ft_test_tmpdir(), "hf.safetensors");
    write_bytes(path, hf_file, sizeof hf_file);
    ft_st_model *m = NULL;
    FT_CHECK_OK(ft_st_open(&m, path));
    if (!m) return;
    static const char *order[] = {"c.i64", "a.f32", "b.bf16", "d.f16", "e.u8"};
    FT_CHECK(ft_st_count(m) == 5, "5 tensors");
    for (int i = 0; i < 5 && i < ft_st_count(m); i++)
        FT_CHECK(strcmp(ft_st_at(m, i)->name, order[i]) == 0, "file order %d: %s", i, ft_st_at(m, i)->name);
    FT_CHECK(strcmp(ft_st_get_metadata(m, "format"), "pt") == 0, "format pt");
    ft_st_tensor t;
    float f[6];
    FT_CHECK_OK(ft_st_find(m, "b.bf16", &t));
    FT_CHECK(t.dtype == FT_BF16 && t.ndim == 2 && t.shape[0] == 2 && t.shape[1] == 3 && t.numel == 6, "b.bf16 info");
    ft_to_f32(f, t.data, FT_BF16, 6);
    static const float want_b[6] = {1.0f, -2.0f, 0.5f, 3.0f, 0.0f, -0.25f};
    FT_CHECK(memcmp(f, want_b, sizeof want_b) == 0, "b.bf16 values");
    FT_CHECK_OK(ft_st_find(m, "a.f32", &t));
    memcpy(f, t.data, 8);
    FT_CHECK(f[0] == 1.5f && f[1] == -1.0f, "a.f32 values");
    FT_CHECK_OK(ft_st_find(m, "d.f16", &t));
    ft_to_f32(f, t.data, FT_F16, 1);
    FT_CHECK(f[0] == 0.5f, "d.f16 value");
    FT_CHECK_OK(ft_st_find(m, "c.i64", &t));
    FT_CHECK(t.st_dtype == FT_ST_I64 && t.dtype == FT_DTYPE_COUNT && ((const uint8_t *)t.data)[0] == 7, "c.i64");
    FT_CHECK_OK(ft_st_find(m, "e.u8", &t));
    FT_CHECK(t.dtype == FT_U8 && ((const uint8_t *)t.data)[2] == 3, "e.u8");
    ft_st_close(m);
}

/* Writes shard s of a 3-shard checkpoint: tensors "w.<s>.<j>" (F32 [j+1, 4]). */
static void write_shard(const char *dir, int s, int n) {
    char name[128], file[64];
    snprintf(file, sizeof file, "model-%05d-of-00003.safetensors", s + 1);
    ft_stw *w;
    FT_CHECK_OK(ft_stw_open(&w, path_in(dir, file)));
    FT_CHECK_OK(ft_stw_set_metadata(w, "format", "pt"));
    float *data = malloc(sizeof(float) * 4 * 8 * (size_t)n);
    for (int j = 0; j < n; j++) {
        snprintf(name, sizeof name, "w.%d.%d", s, j);
        for (int e = 0; e < (j + 1) * 4; e++) data[j * 32 + e] = (float)(s * 1000 + j * 10 + e);
        FT_CHECK_OK(ft_stw_add(w, name, FT_ST_F32, 2, (int64_t[]){j + 1, 4}, data + j * 32));
    }
    FT_CHECK_OK(ft_stw_finish(w));
    free(data);
}

static void write_index(const char *dir, const char *body) {
    char *p = path_in(dir, "model.safetensors.index.json");
    char buf[4096];
    snprintf(buf, sizeof buf, "{\"metadata\": {\"total_size\": 1}, \"weight_map\": {%s}}", body);
    write_bytes(p, buf, strlen(buf));
}

static void test_sharded(void) {
    const char *dir = mkdir_in("sharded");
    /* shard 2 first on disk, to show order comes from names, not creation */
    write_shard(dir, 1, 2);
    write_shard(dir, 0, 3);
    write_shard(dir, 2, 1);
    write_index(dir, "\"w.1.1\": \"model-00002-of-00003.safetensors\", \"w.0.0\": \"model-00001-of-00003.safetensors\","
                     "\"w.0.1\": \"model-00001-of-00003.safetensors\", \"w.0.2\": \"model-00001-of-00003.safetensors\","
                     "\"w.1.0\": \"model-00002-of-00003.safetensors\", \"w.2.0\": \"model-00003-of-00003.safetensors\"");
    for (int via_file = 0; via_file < 2; via_file++) {
        ft_st_model *m = NULL;
        const char *p = via_file ? path_in(dir, "model.safetensors.index.json") : dir;
        FT_CHECK_OK(ft_st_open(&m, p));
        if (!m) continue;
        static const char *order[] = {"w.0.0", "w.0.1", "w.0.2", "w.1.0", "w.1.1", "w.2.0"};
        FT_CHECK(ft_st_count(m) == 6 && ft_st_shard_count(m) == 3, "6 tensors in 3 shards");
        for (int i = 0; i < 6 && i < ft_st_count(m); i++) {
            const ft_st_tensor *t = ft_st_at(m, i);
            FT_CHECK(strcmp(t->name, order[i]) == 0, "sharded order %d: %s", i, t->name);
            int s = order[i][2] - '0', j = order[i][4] - '0';
            FT_CHECK(t->shard_index == s && strstr(t->shard, s == 0 ? "model-00001" : s == 1 ? "model-00002" : "model-00003"),
                     "%s in shard %d", t->name, s);
            FT_CHECK(t->shape[0] == j + 1 && ((const float *)t->data)[1] == (float)(s * 1000 + j * 10 + 1),
                     "%s data", t->name);
            ft_st_release_tensor_pages(m, t);
            FT_CHECK(((const float *)t->data)[1] == (float)(s * 1000 + j * 10 + 1), "%s readable after release",
                     t->name);
        }
        ft_st_tensor t;
        FT_CHECK_OK(ft_st_find(m, "w.2.0", &t));
        FT_CHECK(strcmp(ft_st_get_metadata(m, "format"), "pt") == 0 && ft_st_metadata_count(m) == 3, "shard metadata");
        ft_st_close(m);
    }
    /* a directory with both prefers model.safetensors (as transformers does) */
    ft_stw *w;
    FT_CHECK_OK(ft_stw_open(&w, path_in(dir, "model.safetensors")));
    FT_CHECK_OK(ft_stw_add(w, "only", FT_ST_U8, 1, (int64_t[]){3}, "abc"));
    FT_CHECK_OK(ft_stw_finish(w));
    ft_st_model *m = NULL;
    FT_CHECK_OK(ft_st_open(&m, dir));
    FT_CHECK(m && ft_st_count(m) == 1 && ft_st_has(m, "only"), "model.safetensors preferred");
    ft_st_close(m);
    /* an empty directory */
    const char *empty = mkdir_in("empty");
    FT_CHECK(ft_st_open(&m, empty) == FT_E_IO && strstr(ft_error_msg(), "no model.safetensors") &&
                 strstr(ft_error_msg(), empty), "empty dir: %s", ft_error_msg());
    FT_CHECK(ft_st_open(&m, path_in(empty, "nothing.safetensors")) == FT_E_IO && strstr(ft_error_msg(), "nothing"),
             "missing file: %s", ft_error_msg());
}

/* Streams a 64 MiB file tensor by tensor: with release, resident memory stays near one tensor
 * (4 MiB); without it (control), it grows with the file. */
static void test_streaming_rss(void) {
    const char *path = path_in(ft_test_tmpdir(), "big.safetensors");
    enum { NT = 16, NEL = 1 << 20 }; /* 16 x 4 MiB F32 */
    fill_ctx fc = {3, 0};
    ft_stw *w;
    FT_CHECK_OK(ft_stw_open(&w, path));
    for (int i = 0; i < NT; i++) {
        char name[32];
        snprintf(name, sizeof name, "big.%02d", i);
        FT_CHECK_OK(ft_stw_add_fill(w, name, FT_ST_F32, 1, (int64_t[]){NEL}, fill_pattern, &fc));
    }
    FT_CHECK_OK(ft_stw_finish(w));
    FT_CHECK(fc.calls >= NT, "fill called per chunk (%d)", fc.calls);
    for (int release = 1; release >= 0; release--) {
        ft_st_model *m = NULL;
        FT_CHECK_OK(ft_st_open(&m, path));
        if (!m) return;
        int64_t base = ft_rss_bytes(), peak = 0;
        uint64_t sum = 0;
        for (int64_t i = 0; i < ft_st_count(m); i++) {
            const ft_st_tensor *t = ft_st_at(m, i);
            const uint8_t *p = t->data;
            for (int64_t b = 0; b < t->nbytes; b += 512) sum += p[b];
            int64_t d = ft_rss_bytes() - base;
            if (d > peak) peak = d;
            if (release) ft_st_release_tensor_pages(m, t);
        }
        printf("streaming %s release: peak RSS growth %.1f MiB (checksum %llu)\n", release ? "with" : "without",
               peak / 1048576.0, (unsigned long long)sum);
        if (release) FT_CHECK(peak < (16 << 20), "with release, RSS grows %lld bytes (< 16 MiB)", (long long)peak);
        else FT_CHECK(peak > (40 << 20), "control: without release RSS grows %lld bytes (> 40 MiB)", (long long)peak);
        ft_st_close(m);
    }
}

static ft_status fill_fail(void *user, void *dst, int64_t off, int64_t n) {
    (void)user, (void)dst, (void)off, (void)n;
    return FT_ERR(FT_E_CUDA, "device copy failed");
}

static void test_writer_errors(void) {
    const char *dir = mkdir_in("werr");
    const char *path = path_in(dir, "out.safetensors");
    float x[4] = {1, 2, 3, 4};
    ft_stw *w;
    /* an existing output survives every failure below untouched */
    FT_CHECK_OK(ft_stw_open(&w, path));
    FT_CHECK_OK(ft_stw_add(w, "keep", FT_ST_F32, 1, (int64_t[]){4}, x));
    FT_CHECK_OK(ft_stw_finish(w));
    char *before;
    int64_t before_len;
    FT_CHECK_OK(ft_test_read_file(path, &before, &before_len));

    FT_CHECK_OK(ft_stw_open(&w, path));
    FT_CHECK(ft_stw_add(w, "", FT_ST_F32, 1, (int64_t[]){4}, x) == FT_E_ARG, "empty name");
    FT_CHECK(ft_stw_add(w, "__metadata__", FT_ST_F32, 1, (int64_t[]){4}, x) == FT_E_ARG, "reserved name");
    FT_CHECK(ft_stw_add(w, "neg", FT_ST_F32, 1, (int64_t[]){-4}, x) == FT_E_ARG && strstr(ft_error_msg(), "negative"),
             "negative dim: %s", ft_error_msg());
    FT_CHECK(ft_stw_add(w, "many", FT_ST_F32, 9, (int64_t[]){1, 1, 1, 1, 1, 1, 1, 1, 1}, x) == FT_E_ARG, "9 dims");
    FT_CHECK(ft_stw_add(w, "f4", FT_ST_F4, 1, (int64_t[]){3}, x) == FT_E_ARG, "F4 odd count");
    FT_CHECK_OK(ft_stw_add(w, "dup", FT_ST_F32, 1, (int64_t[]){4}, x));
    FT_CHECK_OK(ft_stw_add(w, "dup", FT_ST_F32, 1, (int64_t[]){4}, x));
    FT_CHECK(ft_stw_finish(w) == FT_E_ARG && strstr(ft_error_msg(), "\"dup\" added twice") &&
                 strstr(ft_error_msg(), path), "duplicate: %s", ft_error_msg());

    FT_CHECK_OK(ft_stw_open(&w, path));
    FT_CHECK_OK(ft_stw_add(w, "a", FT_ST_F32, 1, (int64_t[]){4}, x));
    FT_CHECK_OK(ft_stw_add_fill(w, "from_gpu", FT_ST_F32, 1, (int64_t[]){4}, fill_fail, NULL));
    ft_status st = ft_stw_finish(w);
    FT_CHECK(st == FT_E_CUDA && strstr(ft_error_msg(), path) && strstr(ft_error_msg(), "from_gpu") &&
                 strstr(ft_error_msg(), "device copy failed"), "fill failure: %s", ft_error_msg());

    /* a real write error: a file-size limit makes write() fail with EFBIG, as ENOSPC would */
    struct rlimit old, lim;
    getrlimit(RLIMIT_FSIZE, &old);
    lim = old;
    lim.rlim_cur = 64 << 10;
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    float *big = calloc(1 << 20, sizeof(float));
    FT_CHECK_OK(ft_stw_open(&w, path));
    FT_CHECK_OK(ft_stw_add(w, "big", FT_ST_F32, 1, (int64_t[]){1 << 20}, big));
    setrlimit(RLIMIT_FSIZE, &lim);
    st = ft_stw_finish(w);
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, prev);
    free(big);
    FT_CHECK(st == FT_E_IO && strstr(ft_error_msg(), path) && strstr(ft_error_msg(), "write failed"),
             "EFBIG: %s", ft_error_msg());

    FT_CHECK(count_tmp_files(dir) == 0, "failed writes leave no temporary file");
    char *after;
    int64_t after_len;
    FT_CHECK_OK(ft_test_read_file(path, &after, &after_len));
    FT_CHECK(after_len == before_len && memcmp(before, after, (size_t)after_len) == 0, "existing output untouched");
    free(before);
    free(after);

    FT_CHECK_OK(ft_stw_open(&w, "/nonexistent-dir-ftune/x.safetensors"));
    FT_CHECK_OK(ft_stw_add(w, "a", FT_ST_F32, 1, (int64_t[]){4}, x));
    FT_CHECK(ft_stw_finish(w) == FT_E_IO && strstr(ft_error_msg(), "/nonexistent-dir-ftune/x.safetensors"),
             "missing directory: %s", ft_error_msg());
    ft_stw_discard(NULL);
    FT_CHECK_OK(ft_stw_open(&w, path));
    ft_stw_discard(w); /* nothing written */
}

/* ---------------------------------------------------------------------------------------------- */

typedef struct bad_case {
    const char *name;
    const char *json; /* header; NULL: raw bytes */
    int64_t hlen;     /* header length field; -1: strlen(json) */
    int64_t data_len;
    const char *raw;
    int64_t raw_len;
    ft_status want;
    const char *substr; /* expected in the message, besides the file path */
} bad_case;

/* One F32-style tensor "t" with the given dtype, shape and data_offsets texts. */
#define T1(dtype, shape, offs) "{\"t\":{\"dtype\":\"" dtype "\",\"shape\":" shape ",\"data_offsets\":" offs "}}"
#define F32_AT(name, b, e) "\"" name "\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[" #b "," #e "]}"

static const bad_case bad_files[] = {
    {"empty file", NULL, 0, 0, "", 0, FT_E_FORMAT, "is 0 bytes, too short"},
    {"5-byte file", NULL, 0, 0, "\x02\x00\x00\x00\x00", 5, FT_E_FORMAT, "is 5 bytes, too short"},
    {"huge header length", "{}", 1LL << 40, 0, NULL, 0, FT_E_FORMAT, "exceeds the 100000000-byte limit"},
    {"header length past EOF", "{}", 1000, 0, NULL, 0, FT_E_FORMAT, "runs past the end of the file"},
    {"truncated header JSON", "{\"t\":{\"dtype\":\"F32\",\"sha", -1, 0, NULL, 0, FT_E_FORMAT, "not valid JSON"},
    {"bad JSON", "{\"t\" 5}", -1, 0, NULL, 0, FT_E_FORMAT, "not valid JSON"},
    {"zero-length header", "", 0, 8, NULL, 0, FT_E_FORMAT, "not valid JSON"},
    {"header not an object", "[1, 2, 3]", -1, 0, NULL, 0, FT_E_FORMAT, "header is not a JSON object"},
    {"header is a string", "\"abc\"", -1, 0, NULL, 0, FT_E_FORMAT, "header is not a JSON object"},
    {"garbage after JSON", "{}  x", -1, 0, NULL, 0, FT_E_FORMAT, "unexpected bytes after the header JSON"},
    {"invalid UTF-8", "{\"\xff\xfe\":{}}", -1, 0, NULL, 0, FT_E_FORMAT, "not valid UTF-8"},
    {"entry not an object", "{\"t\": 5}", -1, 0, NULL, 0, FT_E_FORMAT, "tensor \"t\": entry is not a JSON object"},
    {"missing dtype", "{\"t\":{\"shape\":[1],\"data_offsets\":[0,4]}}", -1, 4, NULL, 0, FT_E_FORMAT,
     "tensor \"t\": missing \"dtype\""},
    {"missing shape", "{\"t\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", -1, 4, NULL, 0, FT_E_FORMAT,
     "tensor \"t\": missing \"shape\""},
    {"missing data_offsets", "{\"t\":{\"dtype\":\"F32\",\"shape\":[1]}}", -1, 4, NULL, 0, FT_E_FORMAT,
     "tensor \"t\": missing \"data_offsets\""},
    {"dtype not a string", "{\"t\":{\"dtype\":5,\"shape\":[1],\"data_offsets\":[0,4]}}", -1, 4, NULL, 0, FT_E_FORMAT,
     "\"dtype\" is not a string"},
    {"unknown dtype", T1("Q9", "[1]", "[0,4]"), -1, 4, NULL, 0, FT_E_FORMAT, "unknown dtype \"Q9\""},
    {"lower-case dtype", T1("f32", "[1]", "[0,4]"), -1, 4, NULL, 0, FT_E_FORMAT, "unknown dtype \"f32\""},
    {"negative shape", T1("F32", "[-2]", "[0,8]"), -1, 8, NULL, 0, FT_E_FORMAT, "shape[0] = -2 is negative"},
    {"fractional shape", T1("F32", "[4, 1.5]", "[0,24]"), -1, 24, NULL, 0, FT_E_FORMAT,
     "shape[1] is not a non-negative integer"},
    {"string shape", T1("F32", "[\"4\"]", "[0,16]"), -1, 16, NULL, 0, FT_E_FORMAT, "shape[0] is not a non-negative"},
    {"shape not a list", T1("F32", "4", "[0,16]"), -1, 16, NULL, 0, FT_E_FORMAT, "\"shape\" is not an array"},
    {"9 dimensions", T1("F32", "[1,1,1,1,1,1,1,1,1]", "[0,4]"), -1, 4, NULL, 0, FT_E_UNSUPPORTED, "9 dimensions"},
    {"offsets not a pair", T1("F32", "[1]", "[0]"), -1, 4, NULL, 0, FT_E_FORMAT, "not a pair of non-negative integers"},
    {"negative offset", T1("F32", "[1]", "[-4,0]"), -1, 4, NULL, 0, FT_E_FORMAT, "not a pair of non-negative"},
    {"offset beyond 2^53", T1("F32", "[1]", "[0,1e300]"), -1, 4, NULL, 0, FT_E_FORMAT, "not a pair of non-negative"},
    {"end before begin", T1("F32", "[1]", "[8,4]"), -1, 8, NULL, 0, FT_E_FORMAT, "[8, 4] end before they begin"},
    {"offsets past EOF", T1("F32", "[16]", "[0,64]"), -1, 16, NULL, 0, FT_E_FORMAT,
     "[0, 64] run past the end of the data (16 bytes; file truncated?)"},
    {"wrong byte count for shape", T1("F32", "[3]", "[0,8]"), -1, 8, NULL, 0, FT_E_FORMAT,
     "span 8 bytes but F32 [3] needs 12"},
    {"shape overflows", T1("F32", "[1099511627776,1099511627776]", "[0,4]"), -1, 4, NULL, 0, FT_E_FORMAT, "overflows"},
    {"F4 not byte aligned", T1("F4", "[3]", "[0,2]"), -1, 2, NULL, 0, FT_E_FORMAT, "byte boundary"},
    {"overlapping offsets", "{" F32_AT("a", 0, 8) "," F32_AT("b", 4, 12) "}", -1, 12, NULL, 0, FT_E_FORMAT,
     "tensors \"a\" [0, 8) and \"b\" [4, 12) overlap"},
    {"gap between tensors", "{" F32_AT("a", 0, 8) "," F32_AT("b", 12, 20) "}", -1, 20, NULL, 0, FT_E_FORMAT,
     "4 unused bytes before tensor \"b\""},
    {"first tensor not at 0", "{" F32_AT("a", 4, 12) "}", -1, 12, NULL, 0, FT_E_FORMAT,
     "4 unused bytes before tensor \"a\""},
    {"trailing data", "{" F32_AT("a", 0, 8) "}", -1, 12, NULL, 0, FT_E_FORMAT, "4 bytes after the last tensor"},
    {"duplicate tensor name", "{" F32_AT("a", 0, 8) "," F32_AT("a", 8, 16) "}", -1, 16, NULL, 0, FT_E_FORMAT,
     "tensor \"a\" appears twice"},
    {"metadata value not a string", "{\"__metadata__\":{\"format\":1}}", -1, 0, NULL, 0, FT_E_FORMAT,
     "\"__metadata__\" value of \"format\" is not a string"},
    {"metadata not an object", "{\"__metadata__\":[\"pt\"]}", -1, 0, NULL, 0, FT_E_FORMAT,
     "\"__metadata__\" is not a JSON object"},
};

static void check_error(ft_status got, ft_status want, const char *what, const char *path, const char *substr) {
    const char *msg = ft_error_msg();
    FT_CHECK(got == want, "%s: status %s, want %s (%s)", what, ft_status_str(got), ft_status_str(want), msg);
    FT_CHECK(strstr(msg, path) != NULL, "%s: message names %s: %s", what, path, msg);
    FT_CHECK(strstr(msg, substr) != NULL, "%s: message has \"%s\": %s", what, substr, msg);
    if (strchr(msg, '\n')) FT_CHECK(0, "%s: message is one line: %s", what, msg);
}

static void test_bad_files(void) {
    const char *dir = mkdir_in("bad");
    int n = (int)(sizeof bad_files / sizeof bad_files[0]);
    for (int i = 0; i < n; i++) {
        const bad_case *c = &bad_files[i];
        char file[64];
        snprintf(file, sizeof file, "case%02d.safetensors", i);
        const char *path = path_in(dir, file);
        if (c->json) write_st(path, c->json, c->hlen, c->data_len);
        else write_bytes(path, c->raw, (size_t)c->raw_len);
        ft_st_model *m = (ft_st_model *)&m; /* must be reset to NULL on failure */
        ft_error_clear();
        ft_status st = ft_st_open(&m, path);
        check_error(st, c->want, c->name, path, c->substr);
        FT_CHECK(m == NULL, "%s: *out is NULL on failure", c->name);
        if (st == FT_OK) ft_st_close(m);
    }
    printf("ok   %d malformed files rejected\n", n);

    /* nesting deeper than cJSON's limit: an error, not a stack overflow */
    enum { DEPTH = 20000 };
    char *deep = malloc(DEPTH + 16);
    strcpy(deep, "{\"a\":");
    memset(deep + 5, '[', DEPTH);
    deep[5 + DEPTH] = 0;
    const char *path = path_in(dir, "deep.safetensors");
    write_st(path, deep, -1, 0);
    free(deep);
    ft_st_model *m = NULL;
    check_error(ft_st_open(&m, path), FT_E_FORMAT, "deep nesting", path, "not valid JSON");

    /* JSON whitespace around the header object is fine (the reference reader accepts it) */
    path = path_in(dir, "spaces.safetensors");
    write_st(path, " \n{" F32_AT("a", 0, 8) "}\t ", -1, 8);
    FT_CHECK_OK(ft_st_open(&m, path));
    FT_CHECK(m && ft_st_count(m) == 1, "whitespace-padded header");
    ft_st_close(m);
}

typedef struct index_case {
    const char *name;
    const char *shard1, *shard2; /* headers of model-00001/2-of-00002 (each tensor F32 [2]); NULL: absent */
    const char *index;           /* index file text */
    ft_status want;
    int names_shard;             /* message names shard 1 rather than the index */
    const char *substr;
} index_case;

#define S1 "model-00001-of-00002.safetensors"
#define S2 "model-00002-of-00002.safetensors"
static const index_case bad_indexes[] = {
    {"index names a missing shard", "{" F32_AT("x", 0, 8) "}", NULL,
     "{\"weight_map\":{\"x\":\"" S1 "\",\"y\":\"" S2 "\"}}", FT_E_IO, 0,
     "shard \"" S2 "\" listed in weight_map is missing"},
    {"tensor missing from its shard", "{" F32_AT("x", 0, 8) "}", NULL,
     "{\"weight_map\":{\"x\":\"" S1 "\",\"z\":\"" S1 "\"}}", FT_E_FORMAT, 0,
     "tensor \"z\" listed in weight_map is missing from shard " S1},
    {"tensor in two shards", "{" F32_AT("x", 0, 8) "}", "{" F32_AT("x", 0, 8) "," F32_AT("y", 8, 16) "}",
     "{\"weight_map\":{\"x\":\"" S1 "\",\"y\":\"" S2 "\"}}", FT_E_FORMAT, 1, "tensor \"x\" appears in two shards"},
    {"tensor listed under the wrong shard", "{" F32_AT("x", 0, 8) "}", "{" F32_AT("y", 0, 8) "}",
     "{\"weight_map\":{\"x\":\"" S2 "\",\"y\":\"" S1 "\"}}", FT_E_FORMAT, 0,
     "tensor \"x\" is listed under shard " S2 " but stored in"},
    {"index not JSON", NULL, NULL, "{\"weight_map\": {", FT_E_FORMAT, 0, "not valid JSON"},
    {"index not an object", NULL, NULL, "[]", FT_E_FORMAT, 0, "not a JSON object"},
    {"index without weight_map", NULL, NULL, "{\"metadata\":{\"total_size\":8}}", FT_E_FORMAT, 0,
     "missing \"weight_map\""},
    {"empty weight_map", NULL, NULL, "{\"weight_map\":{}}", FT_E_FORMAT, 0, "\"weight_map\" is not a non-empty"},
    {"weight_map value not a string", NULL, NULL, "{\"weight_map\":{\"x\":1}}", FT_E_FORMAT, 0,
     "weight_map entry \"x\" is not a string"},
    {"shard outside the directory", NULL, NULL, "{\"weight_map\":{\"x\":\"../" S1 "\"}}", FT_E_FORMAT, 0,
     "must be a plain file name"},
    {"tensor listed twice", "{" F32_AT("x", 0, 8) "}", NULL,
     "{\"weight_map\":{\"x\":\"" S1 "\",\"x\":\"" S1 "\"}}", FT_E_FORMAT, 0, "lists tensor \"x\" twice"},
    {"corrupt shard", "{\"x\":", NULL, "{\"weight_map\":{\"x\":\"" S1 "\"}}", FT_E_FORMAT, 1, "not valid JSON"},
};

static void test_bad_indexes(void) {
    int n = (int)(sizeof bad_indexes / sizeof bad_indexes[0]);
    for (int i = 0; i < n; i++) {
        const index_case *c = &bad_indexes[i];
        char sub[32];
        snprintf(sub, sizeof sub, "badidx%02d", i);
        const char *dir = mkdir_in(sub);
        if (c->shard1) write_st(path_in(dir, S1), c->shard1, -1, (int64_t)(strstr(c->shard1, "\"y\"") ? 16 : 8));
        if (c->shard2) write_st(path_in(dir, S2), c->shard2, -1, (int64_t)(strstr(c->shard2, "16]") ? 16 : 8));
        const char *ipath = path_in(dir, "model.safetensors.index.json");
        write_bytes(ipath, c->index, strlen(c->index));
        ft_st_model *m = NULL;
        ft_status st = ft_st_open(&m, dir);
        check_error(st, c->want, c->name, c->names_shard ? path_in(dir, S1) : ipath, c->substr);
        if (st == FT_OK) ft_st_close(m);
    }
    printf("ok   %d malformed indexes rejected\n", n);
}

/* Truncations and random byte flips of a valid file: never a crash, every truncation rejected. */
static void test_fuzz(void) {
    const char *path = path_in(ft_test_tmpdir(), "fuzz.safetensors");
    int accepted = 0, truncs_rejected = 0;
    for (size_t len = 0; len < sizeof hf_file; len++) {
        write_bytes(path, hf_file, len);
        ft_st_model *m = NULL;
        if (ft_st_open(&m, path) == FT_OK) ft_st_close(m);
        else truncs_rejected++;
    }
    FT_CHECK(truncs_rejected == (int)sizeof hf_file, "every truncation rejected (%d of %zu)", truncs_rejected,
             sizeof hf_file);
    uint8_t buf[sizeof hf_file];
    for (int it = 0; it < 3000; it++) {
        memcpy(buf, hf_file, sizeof buf);
        int flips = 1 + rnd8() % 3;
        for (int f = 0; f < flips; f++) {
            size_t at = (size_t)((rnd8() << 8 | rnd8()) % (it % 2 ? 8 + 0x148 : sizeof buf)); /* mostly the header */
            buf[at] = rnd8();
        }
        write_bytes(path, buf, sizeof buf);
        ft_st_model *m = NULL;
        if (ft_st_open(&m, path) == FT_OK) {
            accepted++;
            for (int64_t i = 0; i < ft_st_count(m); i++) { /* touch every accepted tensor byte */
                const ft_st_tensor *t = ft_st_at(m, i);
                volatile uint8_t s = 0;
                for (int64_t b = 0; b < t->nbytes; b++) s ^= ((const uint8_t *)t->data)[b];
                (void)s;
            }
            ft_st_close(m);
        }
    }
    printf("ok   fuzz: %zu truncations rejected, 3000 mutations (%d still valid) without a crash\n", sizeof hf_file,
           accepted);
}

int main(void) {
    test_dtype_table();
    test_round_trip();
    test_hf_written();
    test_sharded();
    test_streaming_rss();
    test_writer_errors();
    test_bad_files();
    test_bad_indexes();
    test_fuzz();
    return ft_test_finish();
}
