/* test_stories.c: the converted stories260K model (trained weights, not random): its greedy
 * continuation of BOS reproduces, token for token, the greedy text documented with the model
 * (ids from the SentencePiece model, tests/ref/stories_greedy.py), and its loss on sample text
 * matches transformers per line. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tests/harness.h"
#include "trainer/loader.h"
#include "trainer/token_file.h"

static void ft_check_greedy(ft_model *m, const char *ids_path) {
    ft_token_seqs ref = {0};
    FT_CHECK_OK(ft_token_file_read(ids_path, &ref));
    if (!ref.n) return;
    int64_t n = ref.start[1], V = ft_model_get_dims(m)->V;
    int32_t *ids = calloc((size_t)n, 4);
    float *logits = calloc((size_t)V, 4);
    ids[0] = ref.ids[0];
    int64_t agree = 1;
    for (int64_t len = 1; len < n; len++) {
        ft_batch b = {.B = 1, .T = len, .tokens = ids};
        FT_CHECK_OK(ft_model_last_logits(m, &b, logits));
        int64_t best = 0;
        for (int64_t v = 1; v < V; v++)
            if (logits[v] > logits[best]) best = v;
        ids[len] = (int32_t)best;
        if (ids[len] != ref.ids[len]) break;
        agree++;
    }
    FT_CHECK(agree == n, "%s: greedy ids agree for %lld of %lld tokens (first difference at %lld)", ids_path,
             (long long)agree, (long long)n, (long long)agree);
    printf("ok   greedy generation reproduces %lld of %lld documented tokens (%s)\n", (long long)agree, (long long)n,
           strrchr(ids_path, '/') + 1);
    /* the same through the KV cache (ft_model_decode: BOS, then each new token alone) */
    ft_kv_cache *kv = NULL;
    FT_CHECK_OK(ft_model_kv_new(m, n, &kv));
    int64_t agree_kv = 1;
    for (int64_t len = 1; kv && len < n; len++) {
        FT_CHECK_OK(ft_model_decode(m, kv, ref.ids + len - 1, 1, logits));
        int64_t best = 0;
        for (int64_t v = 1; v < V; v++)
            if (logits[v] > logits[best]) best = v;
        if (best != ref.ids[len]) break;
        agree_kv++;
    }
    FT_CHECK(agree_kv == n, "%s: with the KV cache, greedy ids agree for %lld of %lld tokens", ids_path,
             (long long)agree_kv, (long long)n);
    printf("ok   greedy generation with the KV cache reproduces %lld of %lld documented tokens\n", (long long)agree_kv,
           (long long)n);
    /* the last documented token fills the cache (n tokens); a full cache refuses another */
    if (kv && agree_kv == n) FT_CHECK_OK(ft_model_decode(m, kv, ref.ids + n - 1, 1, logits));
    FT_CHECK(kv && ft_model_decode(m, kv, ref.ids, 1, logits) == FT_E_ARG, "a full KV cache took another token");
    ft_error_clear();
    ft_model_kv_free(m, kv);
    free(ids);
    free(logits);
    ft_token_seqs_free(&ref);
}

static void ft_check_sample_loss(ft_model *m, const char *fix) {
    char path[1024], *txt = NULL;
    ft_token_seqs seqs = {0};
    snprintf(path, sizeof path, "%s/sample_tokens.txt", fix);
    FT_CHECK_OK(ft_token_file_read(path, &seqs));
    snprintf(path, sizeof path, "%s/loss.json", fix);
    FT_CHECK_OK(ft_test_read_file(path, &txt, NULL));
    cJSON *j = cJSON_Parse(txt ? txt : "");
    const cJSON *per = cJSON_GetObjectItemCaseSensitive(j, "per_line");
    FT_CHECK(cJSON_GetArraySize(per) == seqs.n, "loss.json per_line has %d entries for %lld lines",
             cJSON_GetArraySize(per), (long long)seqs.n);
    for (int64_t s = 0; s < seqs.n && s < cJSON_GetArraySize(per); s++) {
        int64_t T = seqs.start[s + 1] - seqs.start[s];
        const int32_t *ids = seqs.ids + seqs.start[s];
        int32_t *labels = malloc((size_t)T * 4);
        for (int64_t t = 0; t < T; t++) labels[t] = t + 1 < T ? ids[t + 1] : -100;
        ft_batch b = {.B = 1, .T = T, .tokens = ids, .labels = labels};
        double loss = 0;
        int64_t n = 0;
        FT_CHECK_OK(ft_model_step(m, &b, 0.0f, 0, &loss, &n));
        double ours = loss / (double)n, ref = cJSON_GetArrayItem(per, (int)s)->valuedouble;
        double rel = fabs(ours - ref) / ref;
        FT_CHECK(rel <= 1e-5, "line %lld: loss %.7f vs transformers %.7f (rel %.2e)", (long long)s + 1, ours, ref, rel);
        printf("ok   sample line %lld: loss %.7f vs transformers %.7f\n", (long long)s + 1, ours, ref);
        free(labels);
    }
    cJSON_Delete(j);
    free(txt);
    ft_token_seqs_free(&seqs);
}

int main(void) {
    char model_dir[1024], fix[1024], path[1100];
    snprintf(model_dir, sizeof model_dir, "%s/models/stories260K", ft_test_src_dir());
    snprintf(fix, sizeof fix, "%s/tests/fixtures/stories260K", ft_test_src_dir());
    ft_backend *be = NULL;
    ft_model *m = NULL;
    ft_load_opts lo = {.quant = FT_QUANT_NONE};
    FT_CHECK_OK(ft_backend_cpu_create(&be, 0));
    FT_CHECK_OK(ft_model_load(&m, be, model_dir, &lo));
    if (m) {
        ft_check_sample_loss(m, fix);
        snprintf(path, sizeof path, "%s/greedy_ids.txt", fix);
        ft_check_greedy(m, path);
    }
    ft_model_free(m);
    ft_backend_free(be);
    return ft_test_finish();
}
