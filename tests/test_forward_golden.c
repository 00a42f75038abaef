/* test_forward_golden.c: the CPU forward pass against transformers on tiny random models of
 * every supported architecture (fixtures by tests/ref/make_forward_golden.py): logits and loss
 * with the weights as stored, and with the linear weights quantized to NF4 (compared with
 * transformers run on bitsandbytes' dequantization of the same NF4 codes). Then GGUF bases
 * quantized by llama.cpp (tests/fixtures/gguf_base, tests/ref/make_gguf_base_golden.py): their
 * logits against transformers on gguf-py's decoding of the same blocks. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/harness.h"
#include "trainer/loader.h"
#include "trainer/token_file.h"

static double ft_json_number(const char *path, const char *key) {
    char *txt = NULL;
    if (ft_test_read_file(path, &txt, NULL) != FT_OK) return NAN;
    cJSON *j = cJSON_Parse(txt);
    free(txt);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    double r = cJSON_IsNumber(v) ? v->valuedouble : NAN;
    cJSON_Delete(j);
    return r;
}

/* Runs one case with the given quantization against logits file `lname` and loss file; the model is
 * `model` (a checkpoint directory or a GGUF file), the fixture files are in dir. */
static void ft_check_case(ft_backend *be, const char *dir, const char *model, ft_quant q, const char *lname,
                          const char *jname) {
    char path[1024], what[256];
    snprintf(path, sizeof path, "%s/%s", dir, lname);
    if (access(path, R_OK) != 0) return;
    ft_load_opts lo = {.quant = q};
    ft_model *m = NULL;
    ft_token_seqs seqs = {0};
    char tok_path[1024];
    snprintf(tok_path, sizeof tok_path, "%s/tokens.txt", dir);
    FT_CHECK_OK(ft_token_file_read(tok_path, &seqs));
    FT_CHECK_OK(ft_model_load(&m, be, model, &lo));
    if (!m || !seqs.n) return;
    int64_t V = ft_model_get_dims(m)->V, total_tok = seqs.start[seqs.n];
    float *ours = calloc((size_t)(total_tok * V), 4), *ref = NULL;
    char *raw = NULL;
    int64_t len = 0;
    double loss = 0;
    int64_t n = 0;
    for (int64_t s = 0; s < seqs.n; s++) {
        int64_t T = seqs.start[s + 1] - seqs.start[s];
        const int32_t *ids = seqs.ids + seqs.start[s];
        int32_t *labels = malloc((size_t)T * 4);
        for (int64_t t = 0; t < T; t++) labels[t] = t + 1 < T ? ids[t + 1] : -100;
        ft_batch b = {.B = 1, .T = T, .tokens = ids, .labels = labels};
        FT_CHECK_OK(ft_model_logits(m, &b, ours + seqs.start[s] * V));
        FT_CHECK_OK(ft_model_step(m, &b, 0.0f, 0, &loss, &n));
        free(labels);
    }
    FT_CHECK_OK(ft_test_read_file(path, &raw, &len));
    snprintf(what, sizeof what, "%s %s logits", strrchr(dir, '/') + 1,
             model != dir ? "gguf" : q == FT_QUANT_NF4 ? "nf4" : "f32");
    if (FT_CHECK(len == total_tok * V * 4, "%s: %s has %lld bytes, want %lld", what, path, (long long)len,
                 (long long)(total_tok * V * 4))) {
        ref = (float *)raw;
        FT_CHECK_CLOSE(ours, ref, total_tok * V, 1e-5, what);
    }
    /* incremental decoding: the first third of each sequence as a prompt, then one token at a time
     * through the KV cache; each call's logits are the last token's, transformers' row for it */
    if (ref) {
        float *dec = calloc((size_t)V, 4);
        double worst = 0;
        int64_t rows = 0;
        for (int64_t s = 0; s < seqs.n; s++) {
            const int64_t T = seqs.start[s + 1] - seqs.start[s], p0 = (T + 2) / 3;
            const int32_t *ids = seqs.ids + seqs.start[s];
            ft_kv_cache *kv = NULL;
            FT_CHECK_OK(ft_model_kv_new(m, T, &kv));
            for (int64_t t = p0; kv && t <= T; t++) {
                const int64_t from = t == p0 ? 0 : t - 1;
                FT_CHECK_OK(ft_model_decode(m, kv, ids + from, t - from, dec));
                const ft_cmp c = ft_compare_f32(dec, ref + (seqs.start[s] + t - 1) * V, V);
                const double e = c.n_nonfinite ? NAN : c.rel_l2;
                worst = !(e <= worst) ? e : worst; /* NaN sticks */
                rows++;
            }
            ft_model_kv_free(m, kv);
        }
        FT_CHECK(worst <= 1e-5, "%s through the KV cache: worst row rel_l2 %.3e over %lld rows (tol 1e-5)", what,
                 worst, (long long)rows);
        printf("ok   %s through the KV cache: worst row rel_l2 %.2e over %lld decoding steps\n", what, worst,
               (long long)rows);
        free(dec);
    }
    snprintf(path, sizeof path, "%s/%s", dir, jname);
    double ref_loss = ft_json_number(path, "loss"), our_loss = n ? loss / (double)n : NAN;
    double rel = fabs(our_loss - ref_loss) / fabs(ref_loss);
    FT_CHECK(rel <= 1e-5, "%s: loss %.8f vs transformers %.8f (rel %.2e)", what, our_loss, ref_loss, rel);
    printf("ok   %s: loss %.8f vs %.8f (rel %.2e)\n", what, our_loss, ref_loss, rel);
    free(raw);
    free(ours);
    ft_model_free(m);
    ft_token_seqs_free(&seqs);
}

/* The case directories under root, sorted; returns their count. */
static int ft_cases(const char *root, char names[32][256]) {
    DIR *dp = opendir(root);
    FT_CHECK(dp != NULL, "cannot open %s", root);
    int cases = 0;
    struct dirent *e;
    while (dp && (e = readdir(dp)) && cases < 32) {
        if (e->d_name[0] == '.') continue;
        snprintf(names[cases++], 256, "%s", e->d_name);
    }
    if (dp) closedir(dp);
    qsort(names, (size_t)cases, 256, (int (*)(const void *, const void *))strcmp);
    return cases;
}

int main(void) {
    char root[1024], names[32][256];
    ft_backend *be = NULL;
    FT_CHECK_OK(ft_backend_cpu_create(&be, 0));
    snprintf(root, sizeof root, "%s/tests/fixtures/forward", ft_test_src_dir());
    int cases = ft_cases(root, names);
    for (int i = 0; i < cases; i++) {
        char dir[1300];
        snprintf(dir, sizeof dir, "%s/%s", root, names[i]);
        ft_check_case(be, dir, dir, FT_QUANT_NONE, "logits.bin", "loss.json");
        ft_check_case(be, dir, dir, FT_QUANT_NF4, "logits_nf4.bin", "loss_nf4.json");
    }
    FT_CHECK(cases >= 5, "expected at least 5 architecture cases, found %d", cases);
    /* GGUF bases: model.quant nf4 must not touch their quantized linears */
    snprintf(root, sizeof root, "%s/tests/fixtures/gguf_base", ft_test_src_dir());
    cases = ft_cases(root, names);
    for (int i = 0; i < cases; i++) {
        char dir[1300], model[1400];
        snprintf(dir, sizeof dir, "%s/%s", root, names[i]);
        snprintf(model, sizeof model, "%s/model.gguf", dir);
        ft_check_case(be, dir, model, FT_QUANT_NF4, "logits.bin", "loss.json");
    }
    FT_CHECK(cases >= 7, "expected at least 7 GGUF base cases, found %d", cases);
    ft_backend_free(be);
    return ft_test_finish();
}
