/* test_adapter_dora.c: DoRA adapters (PEFT's use_dora) where they enter and leave ftune outside
 * training (export/adapter.c, adapter_dora.c), on PEFT's own adapter
 * tests/fixtures/train_dora/llama_gqa4/peft_adapter (tests/ref/make_dora_golden.py: r 4, alpha 8, every
 * q/k/v/o/gate/up/down of 2 layers, 14 lora_magnitude_vector [out]):
 *   - reading: use_dora, every module's magnitude as the file holds it, from the directory and from
 *     memory (ft_adapter_load_tensors, as `ftune export CHECKPOINT` builds one), with PEFT's key and
 *     with a ".weight" suffix (which PEFT's loader takes too);
 *   - bad input, one FT_E_FORMAT line naming the file and tensor: magnitudes without use_dora, a
 *     module without one under use_dora, NaN, a length other than lora_B's rows, a 2-D magnitude, one
 *     given twice, use_dora of another type than a flag;
 *   - PEFT export: the magnitudes under PEFT's keys (the fixture's key set), "use_dora": true, read
 *     back to the same values; written twice, the same bytes;
 *   - llama.cpp adapter: refused (FT_E_UNSUPPORTED) pointing at `ftune merge`, nothing written;
 *   - ft_adapter_apply_rows (what both merges apply) against the formula in double on a synthetic
 *     module, plain and with a llama-arch GGUF row permutation (the magnitude follows its row).
 * The merges of that adapter against PEFT's merge_and_unload logits: tests/test_merge_tokens.c. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "export/adapter.h"
#include "kernels/log.h"
#include "tests/harness.h"
#include "trainer/safetensors_read.h"

static char g_dir[1200], g_cfg_text[1 << 14];

/* The fixture's tensors as descriptors (data in its mapping), and its config text with `from`
 * replaced by `to` (NULL: as it is). */
static ft_st_tensor *ft_fixture_tensors(ft_st_model **sm, int64_t *n) {
    char p[1400];
    snprintf(p, sizeof p, "%s/adapter_model.safetensors", g_dir);
    FT_CHECK_OK(ft_st_open(sm, p));
    if (!*sm) return NULL;
    *n = ft_st_count(*sm);
    ft_st_tensor *ts = calloc((size_t)*n + 1, sizeof *ts);
    for (int64_t i = 0; i < *n; i++) ts[i] = *ft_st_at(*sm, i);
    return ts;
}

static const char *ft_config(const char *from, const char *to) {
    static char buf[1 << 14];
    if (!from) return g_cfg_text;
    const char *at = strstr(g_cfg_text, from);
    if (!FT_CHECK(at != NULL, "config has no '%s'", from)) return g_cfg_text;
    snprintf(buf, sizeof buf, "%.*s%s%s", (int)(at - g_cfg_text), g_cfg_text, to, at + strlen(from));
    return buf;
}

static int ft_is_mag(const char *name) {
    size_t k;
    return ft_adapter_dora_match(name, &k);
}

/* Expects ft_adapter_load_tensors of (cfg, ts) to fail with `code` and a message holding both needles. */
static void ft_expect_bad(const char *what, const char *cfg, const ft_st_tensor *ts, int64_t n, ft_status code,
                          const char *needle1, const char *needle2) {
    ft_adapter a;
    ft_status st = ft_adapter_load_tensors(&a, "mem-adapter", cfg, ts, n);
    const char *msg = ft_error_msg();
    FT_CHECK(st == code && strstr(msg, "mem-adapter") && (!needle1 || strstr(msg, needle1)) &&
                 (!needle2 || strstr(msg, needle2)) && !strchr(msg, '\n'),
             "%s: status %d (want %d), message '%s'", what, (int)st, (int)code, msg);
    if (st == FT_OK) ft_adapter_free(&a);
    ft_error_clear();
}

static void test_read(void) {
    ft_adapter a = {0}, b = {0};
    ft_st_model *sm = NULL;
    int64_t n = 0;
    FT_CHECK_OK(ft_adapter_load(&a, g_dir));
    ft_st_tensor *ts = ft_fixture_tensors(&sm, &n);
    if (!ts || a.n == 0) goto done;
    FT_CHECK(a.dora == 1 && a.n == 14 && n == 42, "dora %d, %lld modules, %lld tensors", a.dora, (long long)a.n,
             (long long)n);
    int64_t good = 0;
    for (int64_t k = 0; k < a.n; k++) {
        const ft_adapter_mod *m = &a.m[k];
        char name[256];
        snprintf(name, sizeof name, "base_model.model.model.layers.%lld.%s.lora_magnitude_vector", (long long)m->layer,
                 strstr(ft_linear_info_get(m->lin)->hf_module, "%d") + 3);
        const ft_st_tensor *t = ft_st_lookup(sm, name);
        good += m->mag && t && t->ndim == 1 && t->shape[0] == m->out && memcmp(t->data, m->mag, (size_t)m->out * 4) == 0;
    }
    FT_CHECK(good == a.n, "%lld of %lld modules hold the file's magnitude", (long long)good, (long long)a.n);

    /* from memory, and with ".weight" after the magnitude's key: the same adapter */
    char (*names)[256] = calloc((size_t)n, sizeof *names);
    ft_st_tensor *tw = calloc((size_t)n, sizeof *tw);
    for (int64_t i = 0; i < n; i++) {
        tw[i] = ts[i];
        if (ft_is_mag(ts[i].name)) {
            snprintf(names[i], sizeof names[i], "%s.weight", ts[i].name);
            tw[i].name = names[i];
        }
    }
    for (int pass = 0; pass < 2; pass++) {
        FT_CHECK_OK(ft_adapter_load_tensors(&b, "mem-adapter", ft_config(NULL, NULL), pass ? tw : ts, n));
        int same = b.n == a.n && b.dora;
        for (int64_t k = 0; same && k < a.n; k++)
            same = b.m[k].mag && memcmp(a.m[k].mag, b.m[k].mag, (size_t)a.m[k].out * 4) == 0 &&
                   memcmp(a.m[k].B, b.m[k].B, (size_t)(a.m[k].out * a.m[k].r) * 4) == 0;
        FT_CHECK(same, "from memory%s: not the directory's adapter", pass ? " (keys with .weight)" : "");
        ft_adapter_free(&b);
    }

    /* bad input */
    ft_expect_bad("magnitudes without use_dora", ft_config("\"use_dora\": true", "\"use_dora\": false"), ts, n,
                  FT_E_FORMAT, "lora_magnitude_vector", "use_dora");
    ft_expect_bad("use_dora a string", ft_config("\"use_dora\": true", "\"use_dora\": \"true\""), ts, n, FT_E_FORMAT,
                  "use_dora", "true or false");
    ft_st_tensor *t2 = calloc((size_t)n + 1, sizeof *t2);
    int64_t n2 = 0, dropped = -1;
    for (int64_t i = 0; i < n; i++) {
        if (dropped < 0 && ft_is_mag(ts[i].name) && strstr(ts[i].name, "layers.1.")) {
            dropped = i;
            continue;
        }
        t2[n2++] = ts[i];
    }
    ft_expect_bad("use_dora, one magnitude missing", ft_config(NULL, NULL), t2, n2, FT_E_FORMAT, "layer 1",
                  "no lora_magnitude_vector");
    int64_t mi = -1;
    for (int64_t i = 0; i < n && mi < 0; i++)
        if (ft_is_mag(ts[i].name)) mi = i;
    if (FT_CHECK(mi >= 0, "no magnitude in the fixture")) {
        const int64_t out = ts[mi].shape[0];
        float *v = malloc((size_t)(out + 1) * 4);
        memcpy(v, ts[mi].data, (size_t)out * 4);
        memcpy(t2, ts, (size_t)n * sizeof *ts);
        t2[mi].data = v;
        v[out / 2] = NAN;
        ft_expect_bad("NaN magnitude", ft_config(NULL, NULL), t2, n, FT_E_FORMAT, ts[mi].name, "NaN");
        v[out / 2] = 1.0f;
        t2[mi].shape[0] = out - 1, t2[mi].numel = out - 1, t2[mi].nbytes = (out - 1) * 4;
        ft_expect_bad("magnitude of out - 1 values", ft_config(NULL, NULL), t2, n, FT_E_FORMAT, "lora_magnitude_vector",
                      "rows");
        t2[mi] = ts[mi];
        t2[mi].ndim = 2, t2[mi].shape[0] = 1, t2[mi].shape[1] = out;
        ft_expect_bad("2-D magnitude", ft_config(NULL, NULL), t2, n, FT_E_FORMAT, ts[mi].name, "1-D");
        memcpy(t2, ts, (size_t)n * sizeof *ts);
        t2[n] = tw[mi]; /* the same magnitude again, with .weight */
        ft_expect_bad("magnitude twice", ft_config(NULL, NULL), t2, n + 1, FT_E_FORMAT, "twice", NULL);
        free(v);
    }
    free(t2);
    free(tw);
    free(names);
done:
    free(ts);
    ft_st_close(sm);
    ft_adapter_free(&a);
}

static void test_write(void) {
    ft_adapter a = {0}, b = {0};
    char out[1400], out2[1400], p[1500], q[1500];
    FT_CHECK_OK(ft_adapter_load(&a, g_dir));
    if (!a.n) return;
    snprintf(out, sizeof out, "%s/peft", ft_test_tmpdir());
    snprintf(out2, sizeof out2, "%s/peft2", ft_test_tmpdir());
    FT_CHECK_OK(ft_adapter_write_peft(&a, out, NULL));
    FT_CHECK_OK(ft_adapter_write_peft(&a, out2, NULL));
    snprintf(p, sizeof p, "%s/adapter_model.safetensors", out);
    snprintf(q, sizeof q, "%s/adapter_model.safetensors", out2);
    FT_CHECK(ft_test_files_equal(p, q), "two PEFT exports of one adapter differ");
    /* PEFT's key set */
    ft_st_model *ours = NULL, *ref = NULL;
    FT_CHECK_OK(ft_st_open(&ours, p));
    snprintf(q, sizeof q, "%s/adapter_model.safetensors", g_dir);
    FT_CHECK_OK(ft_st_open(&ref, q));
    if (ours && ref) {
        int64_t found = 0;
        for (int64_t i = 0; i < ft_st_count(ref); i++) {
            const ft_st_tensor *t = ft_st_at(ref, i), *o = ft_st_lookup(ours, t->name);
            found += o && o->ndim == t->ndim && o->shape[0] == t->shape[0];
        }
        FT_CHECK(found == ft_st_count(ref) && ft_st_count(ours) == ft_st_count(ref),
                 "PEFT export: %lld of PEFT's %lld keys, %lld tensors", (long long)found, (long long)ft_st_count(ref),
                 (long long)ft_st_count(ours));
    }
    ft_st_close(ours);
    ft_st_close(ref);
    char *cfg = NULL;
    snprintf(p, sizeof p, "%s/adapter_config.json", out);
    FT_CHECK_OK(ft_test_read_file(p, &cfg, NULL));
    FT_CHECK(cfg && strstr(cfg, "\"use_dora\":\ttrue"), "PEFT export's config: %s", cfg ? cfg : "(none)");
    free(cfg);
    FT_CHECK_OK(ft_adapter_load(&b, out));
    int same = b.n == a.n && b.dora;
    for (int64_t k = 0; same && k < a.n; k++)
        same = b.m[k].mag && memcmp(a.m[k].mag, b.m[k].mag, (size_t)a.m[k].out * 4) == 0;
    FT_CHECK(same, "PEFT export read back: other magnitudes");
    ft_adapter_free(&b);

    /* llama.cpp adapter: refused, nothing written */
    ft_model_config cfgm;
    char bdir[4096];
    FT_CHECK_OK(ft_adapter_base_config(&a, NULL, &cfgm, bdir, sizeof bdir));
    snprintf(p, sizeof p, "%s/dora.gguf", ft_test_tmpdir());
    ft_status st = ft_adapter_write_gguf(&a, &cfgm, p, FT_GGML_F32);
    FT_CHECK(st == FT_E_UNSUPPORTED && strstr(ft_error_msg(), "DoRA") && strstr(ft_error_msg(), "ftune merge") &&
                 strstr(ft_error_msg(), a.dir) && access(p, F_OK) != 0,
             "DoRA adapter as llama.cpp GGUF: status %d '%s'", (int)st, ft_error_msg());
    ft_error_clear();
    ft_adapter_free(&a);
}

/* W' row o = mag[o] / ||W[o] + s (B A)[o]|| * (W[o] + s (B A)[o]), GGUF row r holding HF row perm(r). */
static void test_apply_rows(void) {
    enum { OUT = 16, IN = 12, R = 3, D = 8 };
    static float A[R * IN], B[OUT * R], mag[OUT], W[OUT * IN], dst[OUT * IN];
    uint64_t x = 12345;
    for (int i = 0; i < R * IN + OUT * R + OUT + OUT * IN; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        float u = (float)((x >> 40) & 0xffff) / 65536.0f - 0.5f;
        if (i < R * IN) A[i] = u;
        else if (i < R * IN + OUT * R) B[i - R * IN] = u;
        else if (i < R * IN + OUT * R + OUT) mag[i - R * IN - OUT * R] = 1.0f + u;
        else W[i - R * IN - OUT * R - OUT] = u;
    }
    ft_adapter_mod m = {.r = R, .in = IN, .out = OUT, .scale = 2.0, .A = A, .B = B, .mag = mag};
    for (int perm = 0; perm < 2; perm++) {
        float *scratch = NULL;
        int64_t cap = 0;
        double worst = 0;
        for (int64_t row0 = 0; row0 < OUT; row0 += 5) { /* chunks of whole rows */
            const int64_t nr = OUT - row0 < 5 ? OUT - row0 : 5;
            for (int64_t r = 0; r < nr; r++) {
                const int64_t o = perm ? ft_gguf_permuted_row(row0 + r, D) : row0 + r;
                memcpy(dst + (row0 + r) * IN, W + o * IN, IN * 4);
            }
            FT_CHECK_OK(ft_adapter_apply_rows(&m, row0, nr, perm ? D : 0, &scratch, &cap, dst + row0 * IN));
        }
        for (int64_t r = 0; r < OUT; r++) {
            const int64_t o = perm ? ft_gguf_permuted_row(r, D) : r;
            double row[IN], ss = 0;
            for (int c = 0; c < IN; c++) {
                double d = 0;
                for (int k = 0; k < R; k++) d += (double)B[o * R + k] * A[k * IN + c];
                row[c] = W[o * IN + c] + 2.0 * d;
                ss += row[c] * row[c];
            }
            for (int c = 0; c < IN; c++) {
                double want = mag[o] / sqrt(ss) * row[c], err = fabs(dst[r * IN + c] - want);
                if (!(err <= worst)) worst = err;
            }
        }
        FT_CHECK(worst <= 1e-6, "apply_rows%s: max |err| %g vs the formula in double", perm ? " (permuted)" : "", worst);
        free(scratch);
    }
    memset(W, 0, sizeof W);
    memset(B, 0, sizeof B);
    memcpy(dst, W, sizeof W);
    FT_CHECK_OK(ft_adapter_apply_rows(&m, 0, OUT, 0, NULL, NULL, dst));
    int zero = 1;
    for (int i = 0; i < OUT * IN; i++) zero &= dst[i] == 0.0f;
    FT_CHECK(zero, "a zero row stays zero (no NaN)");
}

int main(void) {
    ft_log_set_level(FT_LOG_WARN);
    snprintf(g_dir, sizeof g_dir, "%s/tests/fixtures/train_dora/llama_gqa4/peft_adapter", ft_test_src_dir());
    char p[1400], *text = NULL;
    int64_t len = 0;
    snprintf(p, sizeof p, "%s/adapter_config.json", g_dir);
    FT_CHECK_OK(ft_test_read_file(p, &text, &len));
    if (text && len < (int64_t)sizeof g_cfg_text) memcpy(g_cfg_text, text, (size_t)len);
    free(text);
    test_read();
    test_write();
    test_apply_rows();
    return ft_test_finish();
}
