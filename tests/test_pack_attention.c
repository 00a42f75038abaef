/* test_pack_attention.c: packed rows do not leak across examples. Three examples packed into
 * one row (positions restarting at 0, doc_start marking each example's start) give, for each
 * example, the same logits as that example run alone; changing one example's tokens leaves the
 * others' logits unchanged. Runs the real model (stories260K) through ft_model_logits, so the
 * attention op's doc_start masks and the RoPE positions are what is tested. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tests/harness.h"
#include "trainer/loader.h"

static void logits_of(ft_model *m, const int32_t *tok, const int32_t *pos, const int32_t *ds, int64_t T, float *out) {
    ft_batch b = {.B = 1, .T = T, .tokens = tok, .pos = pos, .doc_start = ds};
    FT_CHECK_OK(ft_model_logits(m, &b, out));
}

int main(void) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/models/stories260K", ft_test_src_dir());
    ft_backend *be = NULL;
    ft_model *m = NULL;
    ft_load_opts lo = {.quant = FT_QUANT_NONE};
    FT_CHECK_OK(ft_backend_cpu_create(&be, 0));
    FT_CHECK_OK(ft_model_load(&m, be, dir, &lo));
    if (!m) return ft_test_finish();
    int64_t V = ft_model_get_dims(m)->V;
    /* three examples of 7, 12 and 9 tokens */
    const int64_t len[3] = {7, 12, 9}, T = 28; /* 28 = 7 + 12 + 9: one row, no padding */
    int32_t tok[28], pos[28], ds[28];
    int64_t at = 0;
    for (int e = 0; e < 3; e++) {
        for (int64_t i = 0; i < len[e]; i++, at++) {
            tok[at] = i == 0 ? 1 : (int32_t)(300 + 17 * e + 5 * i) % 500 + 3;
            pos[at] = (int32_t)i;
            ds[at] = (int32_t)(at - i);
        }
    }
    float *packed = malloc((size_t)(T * V) * 4), *alone = malloc((size_t)(T * V) * 4),
          *changed = malloc((size_t)(T * V) * 4);
    logits_of(m, tok, pos, ds, T, packed);

    at = 0;
    for (int e = 0; e < 3; e++) {
        char what[64];
        logits_of(m, tok + at, NULL, NULL, len[e], alone);
        snprintf(what, sizeof what, "example %d packed vs alone", e + 1);
        FT_CHECK_CLOSE(packed + at * V, alone, len[e] * V, 1e-6, what);
        at += len[e];
    }

    /* change every token of the middle example: the first and last are untouched */
    int32_t tok2[28];
    memcpy(tok2, tok, sizeof tok);
    for (int64_t i = 8; i < 7 + 12; i++) tok2[i] = (tok2[i] * 7 + 11) % 500 + 3;
    logits_of(m, tok2, pos, ds, T, changed);
    FT_CHECK(memcmp(packed, changed, (size_t)(7 * V) * 4) == 0, "example 1 changed when example 2's tokens did");
    FT_CHECK(memcmp(packed + 19 * V, changed + 19 * V, (size_t)(9 * V) * 4) == 0,
             "example 3 changed when example 2's tokens did");
    double diff = 0;
    for (int64_t i = 8 * V; i < 19 * V; i++) diff += fabs((double)packed[i] - changed[i]);
    FT_CHECK(diff > 1.0, "example 2's own logits did not change (diff %g): the check would be vacuous", diff);

    /* without doc_start the same row leaks (proves the mask is what isolates examples) */
    logits_of(m, tok2, pos, NULL, T, changed);
    FT_CHECK(memcmp(packed + 19 * V, changed + 19 * V, (size_t)(9 * V) * 4) != 0,
             "plain causal attention should let example 2 influence example 3");
    printf("packing: three examples isolated by doc_start; positions restart per example\n");
    free(packed);
    free(alone);
    free(changed);
    ft_model_free(m);
    ft_backend_free(be);
    return ft_test_finish();
}
