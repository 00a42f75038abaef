/* test_gguf_config.c: trainer/gguf_config.c on GGUF files written here (ft_ggufw).
 *   - Llama 3.1 / 3.2 rope scaling (rope_freqs.weight as convert_hf_to_gguf.py writes it: the divisors
 *     of factor 8 / 32, low 1, high 4, original 8192, theta 500000, head_dim 128 and 64) comes back as
 *     exactly those parameters, and ftune's inv_freq from them equals the one from the true
 *     parameters (transformers' formula, kernels/rope.c) to the last bit;
 *   - the keys are checked against the tensors before anything is sized from them: a block_count of
 *     2^31, a feed_forward_length the tensors do not have, a missing norm, a wrong-shaped lm_head,
 *     a layer past block_count, a context_length of 0 are one FT_E_FORMAT line naming the file and the
 *     key or tensor. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "export/gguf.h"
#include "harness.h"
#include "kernels/log.h"
#include "trainer/gguf_config.h"

typedef struct {
    int64_t C, F, H, Hkv, D, L, V;
    double theta;
    const float *rope_freqs; /* D/2 divisors, or NULL */
    uint64_t block_count;    /* the key as written (0: L) */
    int64_t ffn_key;         /* feed_forward_length as written (0: F) */
    const char *skip;        /* a tensor left out */
    int64_t out_rows;        /* output.weight rows (0: V) */
    int extra_layer;         /* write blk.L.attn_norm.weight too */
    int ctx_zero;            /* write llama.context_length 0 */
} spec;

static ft_status zero_rows(void *user, int64_t row0, int64_t nrows, float *dst) {
    const int64_t *n0 = user;
    (void)row0;
    memset(dst, 0, (size_t)(nrows * *n0) * sizeof *dst);
    return FT_OK;
}

static ft_status copy_rows(void *user, int64_t row0, int64_t nrows, float *dst) {
    (void)row0, (void)nrows;
    const float *rf = user; /* rope_freqs: one row, its length first */
    memcpy(dst, rf + 1, (size_t)rf[0] * sizeof *dst);
    return FT_OK;
}

static ft_status add(ft_ggufw *w, const spec *s, const char *name, int64_t ne0, int64_t ne1, int64_t *n0) {
    if (s->skip && strcmp(s->skip, name) == 0) return FT_OK;
    *n0 = ne0;
    const int64_t ne[2] = {ne0, ne1};
    return ft_ggufw_add_tensor(w, name, FT_GGML_F32, ne1 > 1 ? 2 : 1, ne, zero_rows, n0);
}

/* A llama GGUF of spec s (zero weights; the config reads the keys and the tensors' shapes). */
static void write_gguf(const char *path, const spec *s) {
    ft_ggufw *w = NULL;
    static int64_t n0[64]; /* each tensor's row width, alive until finish */
    int k = 0;
    FT_CHECK_OK(ft_ggufw_open(&w, path));
    if (!w) return;
    FT_CHECK_OK(ft_ggufw_set_str(w, "general.architecture", "llama"));
    ft_status st = ft_ggufw_set_u32(w, "llama.block_count", (uint32_t)(s->block_count ? s->block_count : (uint64_t)s->L));
    if (st == FT_OK) st = ft_ggufw_set_u32(w, "llama.embedding_length", (uint32_t)s->C);
    if (st == FT_OK) st = ft_ggufw_set_u32(w, "llama.feed_forward_length", (uint32_t)(s->ffn_key ? s->ffn_key : s->F));
    if (st == FT_OK) st = ft_ggufw_set_u32(w, "llama.attention.head_count", (uint32_t)s->H);
    if (st == FT_OK) st = ft_ggufw_set_u32(w, "llama.attention.head_count_kv", (uint32_t)s->Hkv);
    if (st == FT_OK) st = ft_ggufw_set_u32(w, "llama.rope.dimension_count", (uint32_t)s->D);
    if (st == FT_OK) st = ft_ggufw_set_f32(w, "llama.rope.freq_base", (float)s->theta);
    if (st == FT_OK && s->ctx_zero) st = ft_ggufw_set_u32(w, "llama.context_length", 0);
    FT_CHECK_OK(st);
    if (s->rope_freqs) {
        static float rf[257];
        static int64_t half;
        half = s->D / 2;
        rf[0] = (float)half;
        memcpy(rf + 1, s->rope_freqs, (size_t)half * sizeof *rf);
        FT_CHECK_OK(ft_ggufw_add_tensor(w, "rope_freqs.weight", FT_GGML_F32, 1, &half, copy_rows, rf));
    }
    const int64_t Q = s->H * s->D, KV = s->Hkv * s->D;
    st = add(w, s, "token_embd.weight", s->C, s->V, &n0[k++]);
    if (st == FT_OK) st = add(w, s, "output_norm.weight", s->C, 1, &n0[k++]);
    if (st == FT_OK) st = add(w, s, "output.weight", s->C, s->out_rows ? s->out_rows : s->V, &n0[k++]);
    for (int64_t l = 0; l < s->L + (s->extra_layer ? 1 : 0) && st == FT_OK; l++) {
        char nm[64];
        const struct { const char *n; int64_t ne0, ne1; } t[] = {
            {"attn_norm.weight", s->C, 1}, {"attn_q.weight", s->C, Q},     {"attn_k.weight", s->C, KV},
            {"attn_v.weight", s->C, KV},   {"attn_output.weight", Q, s->C}, {"ffn_norm.weight", s->C, 1},
            {"ffn_gate.weight", s->C, s->F}, {"ffn_up.weight", s->C, s->F}, {"ffn_down.weight", s->F, s->C}};
        for (size_t i = 0; i < sizeof t / sizeof *t && st == FT_OK; i++) {
            if (l == s->L && i > 0) break; /* the extra layer: its norm only */
            snprintf(nm, sizeof nm, "blk.%lld.%s", (long long)l, t[i].n);
            st = add(w, s, nm, t[i].ne0, t[i].ne1, &n0[k++]);
        }
    }
    FT_CHECK_OK(st);
    FT_CHECK_OK(ft_ggufw_finish(w));
}

static ft_status cfg_of(const char *path, ft_model_config *cfg) {
    ft_gguf *g = NULL;
    FT_TRY(ft_gguf_open(&g, path));
    ft_status st = ft_cfg_from_gguf(cfg, g, path);
    ft_gguf_close(g);
    return st;
}

/* convert_hf_to_gguf.py LlamaModel.generate_extra_tensors: freqs in float32 (torch), the rest in
 * Python doubles, stored as float32. */
static void llama3_divisors(double theta, int64_t dim, double factor, double low, double high, double old, float *out) {
    const double lw = old / low, hw = old / high;
    for (int64_t i = 0; i < dim / 2; i++) {
        const float freq = 1.0f / powf((float)theta, (float)(2 * i) / (float)dim);
        const double wavelen = 2 * M_PI / (double)freq;
        if (wavelen < hw) out[i] = 1;
        else if (wavelen > lw) out[i] = (float)factor;
        else {
            const double smooth = (old / wavelen - low) / (high - low);
            out[i] = (float)(1 / ((1 - smooth) / factor + smooth));
        }
    }
}

static void test_llama3_real(void) {
    static const struct { const char *name; int64_t D; double factor; } cases[] = {
        {"Llama 3.1 (head_dim 128, factor 8)", 128, 8}, {"Llama 3.2 1B (head_dim 64, factor 32)", 64, 32},
        {"Llama 3.2 3B (head_dim 128, factor 32)", 128, 32}, {"head_dim 64, factor 8", 64, 8}};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        const int64_t D = cases[c].D;
        float div[256];
        llama3_divisors(500000.0, D, cases[c].factor, 1, 4, 8192, div);
        char path[4200];
        snprintf(path, sizeof path, "%s/l3-%zu.gguf", ft_test_tmpdir(), c);
        spec s = {.C = 256, .F = 256, .H = 256 / D, .Hkv = 1, .D = D, .L = 1, .V = 8, .theta = 500000.0, .rope_freqs = div};
        write_gguf(path, &s);
        ft_model_config cfg;
        ft_status st = cfg_of(path, &cfg);
        FT_CHECK(st == FT_OK, "%s: %s", cases[c].name, ft_error_msg());
        if (st != FT_OK) continue;
        const ft_rope_cfg *r = &cfg.rope;
        FT_CHECK(r->type == FT_ROPE_LLAMA3 && r->factor == cases[c].factor && r->low_freq_factor == 1 &&
                     r->high_freq_factor == 4 && r->original_max_pos == 8192,
                 "%s: recovered factor %.17g low %.17g high %.17g original %lld", cases[c].name, r->factor,
                 r->low_freq_factor, r->high_freq_factor, (long long)r->original_max_pos);
        ft_rope_cfg truth = {FT_ROPE_LLAMA3, 500000.0, D, cases[c].factor, 1, 4, 8192};
        float got[256], want[256];
        FT_CHECK_OK(ft_rope_inv_freq(r, got));
        FT_CHECK_OK(ft_rope_inv_freq(&truth, want));
        int64_t diff = 0;
        double worst = 0;
        for (int64_t i = 0; i < D / 2; i++) {
            diff += got[i] != want[i];
            worst = fmax(worst, fabs((double)got[i] - want[i]) / want[i]);
        }
        if (diff) printf("  %s: max relative inv_freq difference %.3g\n", cases[c].name, worst);
        FT_CHECK(diff == 0, "%s: %lld of %lld inv_freq differ from the true parameters'", cases[c].name,
                 (long long)diff, (long long)(D / 2));
    }
}

/* expect FT_E_FORMAT with a message holding each of the strings */
static void expect_format(const char *what, const spec *s, const char *want1, const char *want2) {
    char path[4200];
    snprintf(path, sizeof path, "%s/bad-%s.gguf", ft_test_tmpdir(), what);
    write_gguf(path, s);
    ft_model_config cfg;
    ft_status st = cfg_of(path, &cfg);
    const char *m = ft_error_msg();
    FT_CHECK(st == FT_E_FORMAT && strstr(m, path) && strstr(m, want1) && (!want2 || strstr(m, want2)),
             "%s: got %s: %s", what, ft_status_str(st), m);
}

static void test_keys_against_tensors(void) {
    const spec ok = {.C = 64, .F = 128, .H = 2, .Hkv = 2, .D = 32, .L = 2, .V = 8, .theta = 10000.0};
    char path[4200];
    snprintf(path, sizeof path, "%s/ok.gguf", ft_test_tmpdir());
    write_gguf(path, &ok);
    ft_model_config cfg;
    FT_CHECK_OK(cfg_of(path, &cfg));
    spec s = ok;
    s.block_count = 1ull << 31;
    expect_format("block_count", &s, "llama.block_count is 2147483648, more layers than the file has tensors", NULL);
    s = ok, s.block_count = 3;
    expect_format("block_count3", &s, "no tensor blk.2.attn_norm.weight", "block_count is 3");
    s = ok, s.ffn_key = 1 << 30;
    expect_format("ffn", &s, "tensor blk.0.ffn_gate.weight has ne [64, 128]", "implies [64, 1073741824]");
    s = ok, s.skip = "blk.1.ffn_norm.weight";
    expect_format("norm", &s, "no tensor blk.1.ffn_norm.weight", NULL);
    s = ok, s.out_rows = 7;
    expect_format("output", &s, "tensor output.weight has ne [64, 7]", NULL);
    s = ok, s.ctx_zero = 1;
    expect_format("ctx", &s, "llama.context_length must be positive", NULL);
    s = ok, s.extra_layer = 1;
    expect_format("extra", &s, "block_count is 2 but the file has tensors of layer 2", NULL);
}

int main(void) {
    ft_log_set_level(FT_LOG_WARN);
    test_llama3_real();
    test_keys_against_tensors();
    return ft_test_finish();
}
