/* bench_load.c: loading benchmarks of `ftune bench` (bench.h): time a checkpoint's load on a device
 * against reading its files, check its NF4 weights byte for byte against the CPU loader's, and write
 * random multi-shard bf16 checkpoints of the bench shapes to load.
 *
 * The files are read twice with read(2) into one buffer before loading: the first pass may come
 * from disk, the second from the page cache, which is where the load then reads too (a run cannot
 * drop the cache without privileges). The load is ft_model_load followed by ft_backend_sync (the
 * CUDA backend streams weights and ends the session there), so its time covers every byte on the
 * device. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "export/safetensors_write.h"
#include "kernels/dtype.h"
#include "kernels/fileio.h"
#include "kernels/log.h"
#include "kernels/mem.h"
#include "kernels/rng.h"
#include "trainer/bench.h"
#include "trainer/loader.h"
#include "trainer/safetensors_read.h"

static double ft_bl_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Reads every shard of dir once; *bytes = their total size. */
static ft_status ft_bl_read_all(const char *dir, int64_t *bytes, double *secs) {
    ft_st_model *st = NULL;
    FT_TRY(ft_st_open(&st, dir));
    const int32_t n = ft_st_shard_count(st);
    char **paths = calloc((size_t)n, sizeof *paths);
    ft_status rc = FT_OK;
    for (int32_t i = 0; i < n && paths; i++) paths[i] = strdup(ft_st_shard_path(st, i));
    ft_st_close(st); /* unmapped: the read below is a plain read */
    const size_t cap = (size_t)64 << 20;
    char *buf = malloc(cap);
    if (!paths || !buf) rc = FT_ERR(FT_E_OOM, "out of memory");
    *bytes = 0;
    double t0 = ft_bl_now();
    for (int32_t i = 0; i < n && rc == FT_OK; i++) {
        int fd = paths[i] ? open(paths[i], O_RDONLY) : -1;
        if (fd < 0) {
            rc = FT_ERR(FT_E_IO, "%s: cannot open", paths[i] ? paths[i] : "?");
            break;
        }
        for (;;) {
            ssize_t got = read(fd, buf, cap);
            if (got < 0) {
                rc = FT_ERR(FT_E_IO, "%s: read failed", paths[i]);
                break;
            }
            if (got == 0) break;
            *bytes += got;
        }
        close(fd);
    }
    *secs = ft_bl_now() - t0;
    for (int32_t i = 0; i < n && paths; i++) free(paths[i]);
    free(paths);
    free(buf);
    return rc;
}

/* Every frozen weight of m, in a fixed order, into list (room for 16 + 16 L). */
static int64_t ft_bl_weights(ft_model *m, ft_weight **list) {
    ft_model_weights *w = ft_model_get_weights(m);
    const ft_model_dims *d = ft_model_get_dims(m);
    int64_t n = 0;
    list[n++] = &w->embed;
    list[n++] = &w->final_norm;
    if (!d->tied) list[n++] = &w->lm_head;
    for (int64_t l = 0; l < d->L; l++) {
        ft_layer_weights *lw = &w->layers[l];
        list[n++] = &lw->attn_norm;
        list[n++] = &lw->ffn_norm;
        for (int k = 0; k < FT_MOD_COUNT; k++) list[n++] = &lw->lin[k];
        ft_weight *opt[] = {&lw->q_bias, &lw->k_bias, &lw->v_bias, &lw->o_bias, &lw->q_norm, &lw->k_norm};
        for (size_t k = 0; k < sizeof opt / sizeof *opt; k++)
            if (opt[k]->rows) list[n++] = opt[k];
    }
    return n;
}

/* Bytes of one backend array equal to the CPU backend's (host memory) copy? */
static ft_status ft_bl_same(ft_backend *be, const void *dev, const void *host, int64_t bytes, int *same) {
    void *tmp = NULL;
    FT_TRY(ft_malloc(&tmp, (size_t)(bytes > 0 ? bytes : 1), "comparison"));
    ft_status st = ft_backend_download(be, tmp, dev, bytes);
    *same = st == FT_OK && memcmp(tmp, host, (size_t)bytes) == 0;
    ft_free(tmp);
    return st;
}

static ft_status ft_bl_compare(ft_backend *be, ft_model *mg, ft_model *mc, int64_t *compared, int64_t *differing) {
    const ft_model_dims *d = ft_model_get_dims(mg);
    const int64_t cap = 16 + 16 * d->L;
    ft_weight **a = calloc((size_t)cap, sizeof *a), **b = calloc((size_t)cap, sizeof *b);
    ft_status st = FT_OK;
    if (!a || !b) st = FT_ERR(FT_E_OOM, "out of memory");
    const int64_t n = st == FT_OK ? ft_bl_weights(mg, a) : 0;
    if (st == FT_OK && ft_bl_weights(mc, b) != n) st = FT_ERR(FT_E_INTERNAL, "weight lists differ");
    for (int64_t i = 0; i < n && st == FT_OK; i++) {
        const ft_weight *g = a[i], *c = b[i];
        const int64_t numel = ft_weight_numel(g);
        int same = g->dtype == c->dtype && g->rows == c->rows && g->cols == c->cols, s1 = 1, s2 = 1, s3 = 1;
        if (same && g->dtype == FT_NF4) {
            st = ft_bl_same(be, g->nf4.codes, c->nf4.codes, (numel + 1) / 2, &s1);
            if (st == FT_OK) st = ft_bl_same(be, g->nf4.qabsmax, c->nf4.qabsmax, ft_nf4_nblocks(numel), &s2);
            if (st == FT_OK) st = ft_bl_same(be, g->nf4.absmax2, c->nf4.absmax2, 4 * ft_nf4_nblocks2(numel), &s3);
            same = s1 && s2 && s3 && memcmp(&g->nf4.offset, &c->nf4.offset, 4) == 0;
        } else if (same) {
            st = ft_bl_same(be, g->data, c->data, ft_dtype_nbytes(g->dtype, numel), &s1);
            same = s1;
        }
        (*compared)++;
        if (!same) {
            if (++*differing <= 5)
                ft_warn("bench: weight %lld (%lld x %lld %s) differs from the CPU loader's%s%s%s%s", (long long)i,
                        (long long)g->rows, (long long)g->cols, ft_dtype_name(g->dtype), s1 ? "" : " (codes/data)",
                        s2 ? "" : " (qabsmax)", s3 ? "" : " (absmax2)",
                        g->dtype == FT_NF4 && memcmp(&g->nf4.offset, &c->nf4.offset, 4) ? " (offset)" : "");
        }
    }
    free(a);
    free(b);
    return st;
}

ft_status ft_bench_load(const ft_bench_load_opts *o, ft_bench_load_result *r) {
    memset(r, 0, sizeof *r);
    double cold = 0;
    int64_t bytes2 = 0;
    FT_TRY(ft_bl_read_all(o->dir, &r->file_bytes, &cold));
    FT_TRY(ft_bl_read_all(o->dir, &bytes2, &r->read_s));
    ft_backend *be = NULL, *cpu = NULL;
    ft_model *mg = NULL, *mc = NULL;
    ft_load_opts lo = {.quant = FT_QUANT_NF4, .model = {.recompute = 1}};
    ft_status st;
    FT_CHECK_GOTO(st, ft_backend_open(&be, o->device, o->threads), done);
    double t0 = ft_bl_now();
    FT_CHECK_GOTO(st, ft_model_load(&mg, be, o->dir, &lo), done);
    FT_CHECK_GOTO(st, ft_backend_sync(be), done);
    r->load_s = ft_bl_now() - t0;
    const double gb = (double)r->file_bytes / 1e9;
    if (o->out) {
        fprintf(o->out, "load %s: %.3f GB of safetensors\n", o->dir, gb);
        fprintf(o->out, "  read (first pass)     %8.3f s  %7.2f GB/s\n", cold, gb / cold);
        fprintf(o->out, "  read (second pass)    %8.3f s  %7.2f GB/s\n", r->read_s, gb / r->read_s);
        fprintf(o->out, "  load on %-4s (NF4)   %8.3f s  %7.2f GB/s  = %.2f x the second read\n", ft_backend_name(be),
                r->load_s, gb / r->load_s, r->load_s / r->read_s);
        fflush(o->out);
    }
    if (o->compare_cpu) {
        FT_CHECK_GOTO(st, ft_backend_cpu_create(&cpu, o->threads), done);
        double t1 = ft_bl_now();
        FT_CHECK_GOTO(st, ft_model_load(&mc, cpu, o->dir, &lo), done);
        const double cpu_s = ft_bl_now() - t1;
        FT_CHECK_GOTO(st, ft_bl_compare(be, mg, mc, &r->tensors_compared, &r->tensors_differing), done);
        if (o->out) {
            fprintf(o->out, "  load on cpu  (NF4)   %8.3f s  %7.2f GB/s\n", cpu_s, gb / cpu_s);
            fprintf(o->out, "  %lld weights compared with the CPU loader's: %lld differ%s\n",
                    (long long)r->tensors_compared, (long long)r->tensors_differing,
                    r->tensors_differing ? "" : " (NF4 codes, constants and offsets identical)");
        }
        if (r->tensors_differing)
            st = FT_ERR(FT_E_INTERNAL, "bench --load: %lld of %lld weights differ from the CPU loader's",
                        (long long)r->tensors_differing, (long long)r->tensors_compared);
    }
done:
    ft_model_free(mc);
    ft_model_free(mg);
    ft_backend_free(cpu);
    ft_backend_free(be);
    return st;
}

/* ---- random checkpoints -------------------------------------------------------------------------- */

typedef struct ft_bl_tensor {
    char name[128];
    int ndim;
    int64_t shape[2];
    uint64_t seed;
    float mean, scale;
    int shard;
} ft_bl_tensor;

/* bf16 bytes [off, off + nbytes) of a tensor: the values ft_weight_init_random would make. */
static ft_status ft_bl_fill(void *user, void *dst, int64_t off, int64_t nbytes) {
    const ft_bl_tensor *t = user;
    uint16_t *p = dst;
    for (int64_t i = 0; i < nbytes / 2; i++) {
        const float u = 2.0f * ft_uniform(t->seed, (uint64_t)(off / 2 + i)) - 1.0f;
        const float prod = u * t->scale;
        p[i] = ft_f32_to_bf16(prod + t->mean);
    }
    return FT_OK;
}

ft_status ft_bench_write_checkpoint(const ft_bench_shape *s, int64_t layers, int64_t vocab, int shards,
                                    const char *dir, uint64_t seed) {
    const int64_t L = layers > 0 ? layers : s->L, V = vocab > 0 ? vocab : s->V, C = s->C, F = s->F;
    const int64_t q = s->H * s->D, kv = s->Hkv * s->D;
    const int qk_norm = strcmp(s->arch, "Qwen3ForCausalLM") == 0;
    if (shards < 1) shards = 1;
    if (mkdir(dir, 0755) != 0) {
        struct stat sb;
        if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) return FT_ERR(FT_E_IO, "%s: cannot create directory", dir);
    }
    const int64_t cap = 4 + 11 * L;
    ft_bl_tensor *t = calloc((size_t)cap, sizeof *t);
    if (!t) return FT_ERR(FT_E_OOM, "out of memory");
    int64_t n = 0;
    const float w = 0.02f * 1.7320508f;
#define FT_T(nm_fmt, l, nd, d0, d1, mn, sc)                                      \
    do {                                                                         \
        snprintf(t[n].name, sizeof t[n].name, nm_fmt, (long long)(l));           \
        t[n].ndim = (nd), t[n].shape[0] = (d0), t[n].shape[1] = (d1);            \
        t[n].mean = (mn), t[n].scale = (sc), t[n].seed = ft_mix64(seed ^ ft_mix64((uint64_t)n + 1)); \
        n++;                                                                     \
    } while (0)
    FT_T("model.embed_tokens.weight%.0lld", 0LL, 2, V, C, 0.0f, w);
    for (int64_t l = 0; l < L; l++) {
        FT_T("model.layers.%lld.input_layernorm.weight", l, 1, C, 0, 1.0f, 0.1f);
        FT_T("model.layers.%lld.self_attn.q_proj.weight", l, 2, q, C, 0.0f, w);
        FT_T("model.layers.%lld.self_attn.k_proj.weight", l, 2, kv, C, 0.0f, w);
        FT_T("model.layers.%lld.self_attn.v_proj.weight", l, 2, kv, C, 0.0f, w);
        FT_T("model.layers.%lld.self_attn.o_proj.weight", l, 2, C, q, 0.0f, w);
        if (qk_norm) {
            FT_T("model.layers.%lld.self_attn.q_norm.weight", l, 1, s->D, 0, 1.0f, 0.1f);
            FT_T("model.layers.%lld.self_attn.k_norm.weight", l, 1, s->D, 0, 1.0f, 0.1f);
        }
        FT_T("model.layers.%lld.post_attention_layernorm.weight", l, 1, C, 0, 1.0f, 0.1f);
        FT_T("model.layers.%lld.mlp.gate_proj.weight", l, 2, F, C, 0.0f, w);
        FT_T("model.layers.%lld.mlp.up_proj.weight", l, 2, F, C, 0.0f, w);
        FT_T("model.layers.%lld.mlp.down_proj.weight", l, 2, C, F, 0.0f, w);
    }
    FT_T("model.norm.weight%.0lld", 0LL, 1, C, 0, 1.0f, 0.1f);
    FT_T("lm_head.weight%.0lld", 0LL, 2, V, C, 0.0f, w);
#undef FT_T
    /* shards of about equal size, in tensor order */
    int64_t total = 0;
    for (int64_t i = 0; i < n; i++) total += 2 * t[i].shape[0] * (t[i].ndim == 2 ? t[i].shape[1] : 1);
    int64_t acc = 0;
    for (int64_t i = 0; i < n; i++) {
        int sh = (int)(acc * shards / (total > 0 ? total : 1));
        t[i].shard = sh < shards ? sh : shards - 1;
        acc += 2 * t[i].shape[0] * (t[i].ndim == 2 ? t[i].shape[1] : 1);
    }
    ft_status st = FT_OK;
    char path[4200], json[2048];
    for (int sh = 0; sh < shards && st == FT_OK; sh++) {
        ft_stw *wr = NULL;
        snprintf(path, sizeof path, "%s/model-%05d-of-%05d.safetensors", dir, sh + 1, shards);
        st = ft_stw_open(&wr, path);
        if (st == FT_OK) st = ft_stw_set_metadata(wr, "format", "pt");
        for (int64_t i = 0; i < n && st == FT_OK; i++)
            if (t[i].shard == sh) st = ft_stw_add_fill(wr, t[i].name, FT_ST_BF16, t[i].ndim, t[i].shape, ft_bl_fill, &t[i]);
        if (st == FT_OK) st = ft_stw_finish(wr);
        else ft_stw_discard(wr);
    }
    /* the index, then config.json */
    size_t icap = (size_t)n * 200 + 256, il = 0;
    char *idx = malloc(icap);
    if (!idx) st = FT_ERR(FT_E_OOM, "out of memory");
    if (st == FT_OK && idx) {
        il += (size_t)snprintf(idx + il, icap - il, "{\"metadata\": {\"total_size\": %lld}, \"weight_map\": {", (long long)total);
        for (int64_t i = 0; i < n; i++)
            il += (size_t)snprintf(idx + il, icap - il, "%s\"%s\": \"model-%05d-of-%05d.safetensors\"", i ? ", " : "",
                                   t[i].name, t[i].shard + 1, shards);
        il += (size_t)snprintf(idx + il, icap - il, "}}\n");
        snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
        ft_afile af;
        st = ft_afile_open(&af, path);
        if (st == FT_OK) {
            st = ft_afile_write(&af, idx, (int64_t)il);
            if (st == FT_OK) st = ft_afile_commit(&af);
            else ft_afile_abort(&af);
        }
    }
    if (st == FT_OK) {
        ft_bench_config_json(s, L, V, json, sizeof json);
        snprintf(path, sizeof path, "%s/config.json", dir);
        ft_afile af;
        st = ft_afile_open(&af, path);
        if (st == FT_OK) {
            st = ft_afile_write(&af, json, (int64_t)strlen(json));
            if (st == FT_OK) st = ft_afile_commit(&af);
            else ft_afile_abort(&af);
        }
    }
    free(idx);
    free(t);
    return st;
}
