/* test_untrained.c: the untrained-token scan (trainer/untrained.h) on the untied llama_gqa4 fixture
 * (vocab 256, hidden 64) with rows set as Llama 3 and 3.1 base checkpoints ship them. The rule is
 * Unsloth's fix_untrained_tokens: a row whose largest element is <= 1e-16 is untrained (so a row of
 * only negative values is too), and an lm_head row of a token with an untrained embedding is
 * untrained when another such token's lm_head row equals it to 3 decimals. The expected flags
 * follow from the rows written here; every other row is the fixture's random (trained) one. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/weight.h"
#include "tests/harness.h"
#include "trainer/loader.h"
#include "trainer/untrained.h"

static void ft_set_row(float *w, int64_t C, int64_t r, float v, float step) {
    for (int64_t c = 0; c < C; c++) w[r * C + c] = v + step * (float)c;
}

int main(void) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/tests/fixtures/forward/llama_gqa4", ft_test_src_dir());
    ft_backend *be = NULL;
    ft_model *m = NULL;
    ft_load_opts lo = {.quant = FT_QUANT_NONE};
    FT_CHECK_OK(ft_backend_open(&be, "cpu", 1));
    FT_CHECK_OK(ft_model_load(&m, be, dir, &lo));
    if (!m) return ft_test_finish();
    ft_model_weights *w = ft_model_get_weights(m);
    const int64_t V = w->embed.rows, C = w->embed.cols;
    FT_CHECK(w->lm_head.data != w->embed.data && w->lm_head.rows == V, "the fixture's lm_head is its own matrix");
    float *e = malloc((size_t)(V * C) * 4), *h = malloc((size_t)(V * C) * 4);
    FT_CHECK_OK(ft_weight_get_f32(be, &w->embed, e));
    FT_CHECK_OK(ft_weight_get_f32(be, &w->lm_head, h));

    /* the fixture as made: every row trained (random normal rows have positive elements) */
    uint8_t *flags = NULL;
    FT_CHECK_OK(ft_untrained_scan(be, w, &flags));
    int64_t n0 = 0;
    for (int64_t v = 0; v < V && flags; v++) n0 += flags[v] != 0;
    FT_CHECK(flags && n0 == 0, "random fixture: %lld rows flagged, expected 0", (long long)n0);
    free(flags);

    ft_set_row(e, C, 3, 0.0f, 0.0f);     /* Llama 3 base: embedding and lm_head both zero */
    ft_set_row(h, C, 3, 0.0f, 0.0f);
    ft_set_row(e, C, 7, 0.0f, 0.0f);     /* Llama 3.1 base: zero embeddings, lm_head rows that repeat */
    ft_set_row(e, C, 9, 0.0f, 0.0f);
    ft_set_row(h, C, 7, 0.01f, 0.0001f);
    ft_set_row(h, C, 9, 0.01f, 0.0001f);
    h[9 * C] += 0.0004f;                 /* equal to 3 decimals (0.0100 -> 0.0104 rounds to 0.010) */
    ft_set_row(e, C, 11, 0.0f, 0.0f);    /* a zero embedding whose lm_head row is its own: trained */
    ft_set_row(h, C, 11, 0.02f, 0.0003f);
    ft_set_row(h, C, 20, 0.0f, 0.0f);    /* lm_head alone */
    ft_set_row(e, C, 30, -0.5f, -0.01f); /* all negative: the largest element is <= 1e-16 */
    ft_set_row(e, C, 40, 0.0f, 0.0f);    /* zero but one element of 1e-3: trained */
    e[40 * C + 5] = 1e-3f;
    FT_CHECK_OK(ft_weight_set(be, &w->embed, e, FT_F32));
    FT_CHECK_OK(ft_weight_set(be, &w->lm_head, h, FT_F32));
    FT_CHECK_OK(ft_backend_sync(be));

    flags = NULL;
    FT_CHECK_OK(ft_untrained_scan(be, w, &flags));
    const uint8_t E = FT_UNTRAINED_EMBED, H = FT_UNTRAINED_LM_HEAD;
    const struct { int64_t id; uint8_t want; } cases[] = {
        {3, E | H}, {7, E | H}, {9, E | H}, {11, E}, {20, H}, {30, E}, {40, 0}, {0, 0}, {255, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases && flags; i++)
        FT_CHECK(flags[cases[i].id] == cases[i].want, "token %lld: flags %d, expected %d", (long long)cases[i].id,
                 flags[cases[i].id], cases[i].want);
    int64_t n = 0;
    for (int64_t v = 0; v < V && flags; v++) n += flags[v] != 0;
    FT_CHECK(n == 6, "%lld rows flagged, expected 6", (long long)n);
    free(flags);
    free(e);
    free(h);
    ft_model_free(m);
    ft_backend_free(be);
    return ft_test_finish();
}
